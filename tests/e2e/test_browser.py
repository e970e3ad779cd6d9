"""The headless-Chromium harness (`browser.py`) on pages made here: a clean one, and a broken one.

Without Chromium (and no way to install it) the browser tests are skipped with the reason;
the negative test makes sure the harness reports trouble rather than passing everything.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

import browser
from browser import open_page


def _png_data_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


CLEAN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genfair comparison</title>
<style>table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #999; padding: 2px 6px; }}</style>
</head><body>
<h1>Which model serves every group?</h1>
<img alt="error by group" src="{png}">
<table><thead><tr><th>model</th><th>MSE</th><th>worst group</th></tr></thead>
<tbody><tr><td>vae</td><td>0.0134</td><td>female / darker</td></tr>
<tr><td>cnn</td><td>0.0121</td><td>male / darker</td></tr></tbody></table>
<script>console.log("rendered");</script>
</body></html>
"""

BROKEN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>broken</title></head><body>
<p>still some text</p>
<img alt="fine" src="{png}">
<img alt="missing" src="no-such-figure.png">
<img alt="remote" src="https://example.invalid/figure.png">
<script>console.error("deliberate console error");</script>
<img alt="lazy and missing" loading="lazy" src="also-missing.png" style="margin-top: 4000px">
</body></html>
"""


def test_a_self_contained_page_has_no_errors_and_every_image_loads(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(CLEAN_PAGE.format(png=_png_data_uri(24, 12)), encoding="utf-8")

    report = open_page(page, screenshot=tmp_path / "shots" / "report.png")

    assert report.problems == []
    assert report.console_errors == () and report.network_requests == ()
    assert len(report.images) == 1
    image = report.images[0]
    assert image.loaded and (image.width, image.height) == (24, 12) and image.alt == "error by group"
    assert image.src.startswith("data:image/png;base64,")
    assert report.title == "genfair comparison"
    for text in ("Which model serves every group?", "vae", "0.0134", "female / darker", "cnn", "male / darker"):
        assert text in report.text
    assert report.screenshot == tmp_path / "shots" / "report.png"
    with Image.open(report.screenshot) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height > 0


def test_a_broken_image_a_console_error_and_network_use_are_reported(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(BROKEN_PAGE.format(png=_png_data_uri(8, 8)), encoding="utf-8")

    report = open_page(page, screenshot=tmp_path / "broken.png")

    assert any("deliberate console error" in message for message in report.console_errors), report.console_errors
    assert any("no-such-figure.png" in message and "ERR_FILE_NOT_FOUND" in message
               for message in report.console_errors), report.console_errors
    loaded = {image.alt: image.loaded for image in report.images}
    assert loaded == {"fine": True, "missing": False, "remote": False, "lazy and missing": False}
    assert report.network_requests == ("https://example.invalid/figure.png",)
    assert len(report.problems) >= 5  # 1 console error + 2 failed loads, 3 broken images, 1 request
    assert "still some text" in report.text
    assert report.screenshot.is_file()


def test_no_chromium_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "_find_or_install", lambda: "chromium is not on PATH (test)")
    with pytest.raises(browser.ChromiumUnavailable, match="chromium is not on PATH"):
        browser.find_chromium()
    with pytest.raises(pytest.skip.Exception, match="no headless Chromium: chromium is not on PATH"):
        browser.require_chromium()


def test_open_page_needs_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="open_page needs an HTML file"):
        open_page(tmp_path / "missing.html", screenshot=tmp_path / "x.png")
