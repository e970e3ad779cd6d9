"""A real-browser harness for the tests: open a local HTML file in headless Chromium and report.

Use it from any test under ``tests/e2e/`` (pytest puts this folder on ``sys.path``)::

    from browser import open_page

    def test_report_renders(tmp_path):
        report = open_page(tmp_path / "report.html", screenshot=tmp_path / "report.png")
        assert not report.problems, report.problems        # console errors, broken images, network use
        assert "vae" in report.text

:func:`open_page` skips the calling test (``pytest.skip`` with the reason, shown by ``-ra``)
when Chromium cannot be had: it looks for ``chromium`` and ``chromedriver`` on ``PATH``, and when
they are missing runs ``scripts/install-chromium.sh`` (Debian packages ``chromium`` and
``chromium-driver``; needs root or password-less sudo, and apt-get) once per test session. Set
``GENFAIR_INSTALL_CHROMIUM=0`` to never install. It never passes a test without a browser.

Chromium runs headless with ``--no-sandbox --disable-gpu`` and without background networking
(no component updates, no first-run, sync or field-trial traffic), driven by Selenium through
Debian's chromedriver. Requests to ``http(s)://`` are blocked by default, so a page that needs the
network shows up in :attr:`PageReport.network_requests` (and its images as not loaded).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM_FLAGS", "ChromiumUnavailable", "ImageStatus", "PageReport", "find_chromium", "open_page",
           "require_chromium"]

INSTALL_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-chromium.sh"
INSTALL_TIMEOUT_S = 900
#: Flags for a quiet, headless, offline-friendly Chromium in a container.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--password-store=basic",
    "--safebrowsing-disable-auto-update",
    "--hide-scrollbars",
    "--mute-audio",
)
_NETWORK_SCHEMES = ("http://", "https://", "ws://", "wss://", "ftp://")
_SRC_SHOWN = 80

# Waits (bounded by the script timeout) until every <img> has loaded or failed; lazy images are
# made eager first so that images below the fold are checked too.
_IMAGES_SCRIPT = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
for (const img of images) { if (img.loading === "lazy") { img.loading = "eager"; } }
const settled = img => img.complete ? Promise.resolve() : new Promise(resolve => {
  img.addEventListener("load", resolve, {once: true});
  img.addEventListener("error", resolve, {once: true});
});
Promise.all(images.map(settled)).then(() => done(images.map(img => ({
  src: img.currentSrc || img.getAttribute("src") || "",
  alt: img.alt || "",
  complete: img.complete,
  width: img.naturalWidth,
  height: img.naturalHeight,
}))));
"""


class ChromiumUnavailable(RuntimeError):
    """Chromium or chromedriver is missing and could not be installed; the message says why."""


@dataclass(frozen=True)
class ImageStatus:
    """One ``<img>`` of the page, in document order.

    Attributes:
        src: its URL (``data:`` URLs and long ones are shortened for messages).
        alt: its alt text.
        loaded: the image finished loading and decoded to a non-empty picture
            (``complete`` and ``naturalWidth > 0``).
        width: ``naturalWidth`` in pixels (0 when broken).
        height: ``naturalHeight`` in pixels (0 when broken).
    """

    src: str
    alt: str
    loaded: bool
    width: int
    height: int


@dataclass(frozen=True)
class PageReport:
    """What a headless Chromium saw when it opened the page.

    Attributes:
        console_errors: the browser log's errors, in order: ``console.error`` calls, uncaught
            exceptions, and resources that failed to load, as Chromium words them (e.g.
            ``'file:///.../x.png - Failed to load resource: net::ERR_FILE_NOT_FOUND'``).
        images: every ``<img>`` with whether it loaded.
        text: the rendered text of the page (``document.body.innerText``).
        screenshot: the PNG written (the whole page, not only the viewport).
        title: the document's title.
        network_requests: the ``http(s)``/``ws(s)``/``ftp`` URLs the page tried to fetch (blocked
            unless ``allow_network=True``); empty for a self-contained page.
        console_warnings: the browser log's warnings (``console.warn`` and the like), for reading.
    """

    console_errors: tuple[str, ...]
    images: tuple[ImageStatus, ...]
    text: str
    screenshot: Path
    title: str = ""
    network_requests: tuple[str, ...] = ()
    console_warnings: tuple[str, ...] = field(default=(), repr=False)

    @property
    def broken_images(self) -> tuple[ImageStatus, ...]:
        """The images that did not load."""
        return tuple(image for image in self.images if not image.loaded)

    @property
    def problems(self) -> list[str]:
        """Every console error, broken image and network request, one line each; empty when clean."""
        lines = [f"console error: {message}" for message in self.console_errors]
        lines += [f"image not loaded: {image.src}" for image in self.broken_images]
        lines += [f"network request: {url}" for url in self.network_requests]
        return lines


def find_chromium() -> tuple[Path, Path]:
    """The paths of Chromium and chromedriver, installing them once per session if allowed.

    Returns:
        ``(chromium, chromedriver)``.

    Raises:
        ChromiumUnavailable: they are missing and cannot be installed here (no root, no apt-get,
            ``GENFAIR_INSTALL_CHROMIUM=0``, or the install failed); the message says which.
    """
    found = _find_or_install()
    if isinstance(found, str):
        raise ChromiumUnavailable(found)
    return found


def require_chromium() -> tuple[Path, Path]:
    """:func:`find_chromium`, skipping the calling test with the reason when there is no Chromium.

    Also skips when Selenium (genfair's ``dev`` extra) is not installed.
    """
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")
    try:
        return find_chromium()
    except ChromiumUnavailable as err:
        pytest.skip(f"no headless Chromium: {err}")


def open_page(
    html: Path | str,
    *,
    screenshot: Path | str,
    width: int = 1280,
    height: int = 1024,
    timeout_s: float = 30.0,
    allow_network: bool = False,
) -> PageReport:
    """Open a local HTML file in headless Chromium and report what it shows.

    Waits for the page's ``load`` event and then for every image to load or fail (lazy images
    included), collects the browser log, the images' status and the rendered text, and writes a
    full-page screenshot. Errors logged after that (e.g. from timers) are not seen. Skips the
    calling test when Chromium is unavailable (see :func:`require_chromium`).

    Args:
        html: the HTML file to open (as ``file://``; relative links resolve next to it).
        screenshot: where to write the PNG (its folder is created).
        width: viewport width in CSS pixels.
        height: viewport height in CSS pixels (the screenshot covers the whole page).
        timeout_s: limit for loading the page and for the images to settle.
        allow_network: let the page fetch ``http(s)://`` resources; by default they are blocked,
            and listed in :attr:`PageReport.network_requests` either way.

    Returns:
        The :class:`PageReport`; ``report.problems`` is empty for a clean page.

    Raises:
        FileNotFoundError: ``html`` is not a file.
    """
    page = Path(html).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"open_page needs an HTML file, got {str(html)!r}, which is not a file")
    chromium, chromedriver = require_chromium()
    shot = Path(screenshot)
    shot.parent.mkdir(parents=True, exist_ok=True)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(chromedriver)))
    try:
        driver.set_page_load_timeout(timeout_s)
        driver.set_script_timeout(timeout_s)
        driver.execute_cdp_cmd("Network.enable", {})
        if not allow_network:
            blocked = [f"{scheme}*" for scheme in _NETWORK_SCHEMES]
            driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": blocked})
        driver.get(page.as_uri())
        images = driver.execute_async_script(_IMAGES_SCRIPT)
        text = driver.execute_script("return document.body ? document.body.innerText : '';")
        title = driver.title
        shot.write_bytes(_full_page_png(driver))
        log = driver.get_log("browser")
        requests = _network_requests(driver.get_log("performance"))
    finally:
        driver.quit()
    return PageReport(
        console_errors=tuple(entry["message"] for entry in log if entry.get("level") == "SEVERE"),
        images=tuple(
            ImageStatus(src=_shorten(image["src"]), alt=image["alt"],
                        loaded=bool(image["complete"]) and int(image["width"]) > 0,
                        width=int(image["width"]), height=int(image["height"]))
            for image in images
        ),
        text=text,
        screenshot=shot,
        title=title,
        network_requests=requests,
        console_warnings=tuple(entry["message"] for entry in log if entry.get("level") == "WARNING"),
    )


@functools.cache
def _find_or_install() -> tuple[Path, Path] | str:
    """The two paths, or why there are none; installs at most once per process."""
    found = _which()
    if found is not None:
        return found
    if os.environ.get("GENFAIR_INSTALL_CHROMIUM", "1") == "0":
        return "chromium or chromedriver is not on PATH and GENFAIR_INSTALL_CHROMIUM=0 forbids installing them"
    try:
        done = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"chromium is not on PATH and {INSTALL_SCRIPT.name} could not run: {err}"
    found = _which()
    if found is not None:
        return found
    tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    return f"chromium or chromedriver is not on PATH; {INSTALL_SCRIPT.name} exited {done.returncode}: {tail}"


def _which() -> tuple[Path, Path] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        return None
    return Path(chromium), Path(chromedriver)


def _full_page_png(driver: Any) -> bytes:
    import base64

    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    return base64.b64decode(shot["data"])


def _network_requests(performance_log: list[dict[str, Any]]) -> tuple[str, ...]:
    import json

    urls: list[str] = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.requestWillBeSent":
            continue
        url = message["params"]["request"]["url"]
        if url.startswith(_NETWORK_SCHEMES) and url not in urls:
            urls.append(url)
    return tuple(urls)


def _shorten(src: str) -> str:
    if src.startswith("data:"):
        return f"{src.split(',', 1)[0]},… ({len(src)} characters)"
    return src if len(src) <= _SRC_SHOWN else f"{src[:_SRC_SHOWN]}…"
