"""Fixtures for the datasets unit tests: tiny manifests with real (tiny) image files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from genfair.datasets import SyntheticFacesConfig, generate_synthetic_faces


def write_image(path: Path, *, size: tuple[int, int] = (8, 8), value: int = 128, mode: str = "RGB") -> Path:
    """A tiny solid image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color: Any = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, color).save(path)
    return path


def default_rows() -> list[dict[str, str]]:
    """Six images of three subjects, two attributes."""
    return [
        {"path": f"img/{s}_{n}.png", "subject": s, "gender": g, "skin_tone": t}
        for s, g, t in (("a", "female", "darker"), ("b", "male", "lighter"), ("c", "male", "darker"))
        for n in (1, 2)
    ]


@pytest.fixture
def make_manifest(tmp_path: Path) -> Callable[..., Path]:
    """``make_manifest(rows=None, *, suffix=".csv", images=True)``: write a manifest (and its images).

    Rows are dicts; images are written for every row whose path is a non-blank relative string
    (set ``images=False`` to skip them all, or pass ``skip_images`` paths).
    """

    def make(
        rows: Sequence[dict[str, Any]] | None = None,
        *,
        suffix: str = ".csv",
        images: bool = True,
        skip_images: Sequence[str] = (),
        name: str = "manifest",
    ) -> Path:
        rows = default_rows() if rows is None else list(rows)
        frame = pd.DataFrame(rows)
        target = tmp_path / f"{name}{suffix}"
        if suffix == ".csv":
            frame.to_csv(target, index=False, lineterminator="\n")
        else:
            frame.to_parquet(target, index=False)
        if images:
            for row in rows:
                path = str(row.get("path", ""))
                if path.strip() and not Path(path).is_absolute() and path not in skip_images:
                    if not (tmp_path / path).exists():
                        write_image(tmp_path / path, value=sum(path.encode()) % 200 + 20)
        return target

    return make


TINY = {
    "image_size": 16,
    "images_per_subject": 2,
    "train_lighter_male": 2,
    "train_lighter_female": 1,
    "train_darker_male": 1,
    "train_darker_female": 1,
    "val_subjects_per_group": 1,
    "test_subjects_per_group": 1,
}


@pytest.fixture
def tiny_config() -> SyntheticFacesConfig:
    """13 subjects x 2 images of 16x16."""
    return SyntheticFacesConfig(**TINY)


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifest of a generated tiny synthetic dataset (shared, read-only)."""
    return generate_synthetic_faces(SyntheticFacesConfig(**TINY), tmp_path_factory.mktemp("faces") / "tiny")


@pytest.fixture(name="write_image")
def write_image_fixture() -> Callable[..., Path]:
    """``write_image(path, *, size=(8, 8), value=128, mode="RGB")``."""
    return write_image
