"""A seeded generator of synthetic Faces95-style face images.

Faces95 (Libor Spacek, University of Essex) holds about 20 images of each of 72 people, taken as
they step towards the camera: the head shifts, turns a little and grows, expression and lighting
change, and the background stays put. Its people are skewed: 43 lighter-skinned men, 6
lighter-skinned women, 12 darker-skinned men, 1 darker-skinned woman. This module draws cartoon
faces with the same structure, so an audit can run offline, quickly and reproducibly:

- each subject has a fixed identity: face shape, skin tone (a 10-step Monk-like scale, steps 1-5
  "lighter", 6-10 "darker"), hair colour and length (long hair is likelier for women, so groups
  differ in intrinsic difficulty, as they do in photographs), eye colour and spacing, brows,
  mouth width, clothing and background scene;
- each image varies pose (shift, slight rotation), scale, expression (smile, open mouth, blinks),
  lighting (brightness and a side gradient) and sensor noise.

The training subjects follow Faces95's imbalance (configurable); the validation and test subjects
form balanced panels, the same number of subjects per (gender x skin tone) group, so the audit
compares groups on equal evidence. Images are drawn at 4x the output size and area-averaged down
(smooth edges). The same config gives byte-identical files.

Every image comes with a skin mask (a greyscale PNG of the same size, 0 or 255): 255 where the
visible skin of the face shows, that is the face ellipse and the nose, minus the eyes (with their
rims), the brows, the lips and mouth, and any hair over the face. The neck (drawn in a shaded
tone), the ears and the shoulders are left out: the mask is the face only. A pixel is skin when at
least half of its 4x4 supersamples are (at tiny sizes, where no pixel reaches half, the
most-covered pixels), so every mask is non-empty and lies inside the face ellipse.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ._cache import CONFIG_NAME, MANIFEST_NAME, check_empty_folder, ensure_cached

__all__ = [
    "CONFIG_NAME",
    "GENDERS",
    "MANIFEST_NAME",
    "MONK_TONES_RGB",
    "SKIN_TONES",
    "SyntheticFacesConfig",
    "cache_key",
    "ensure_new_people",
    "ensure_synthetic_faces",
    "generate_new_people",
    "generate_synthetic_faces",
    "synthetic_config_of",
]

logger = logging.getLogger(__name__)

GENDERS: tuple[str, ...] = ("female", "male")
SKIN_TONES: tuple[str, ...] = ("lighter", "darker")
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "mask_path", "subject", "split", "gender", "skin_tone", "tone")

# Bump when the drawing or the files change, so cached datasets made by older code are not reused.
# 2: a skin mask per image and the manifest's mask_path column.
GENERATOR_VERSION = 2

# Ten skin tones from very light to very dark, after the Monk Skin Tone scale's swatches (sRGB).
MONK_TONES_RGB: tuple[tuple[int, int, int], ...] = (
    (246, 237, 228),
    (243, 231, 219),
    (247, 234, 208),
    (234, 218, 186),
    (215, 189, 150),
    (160, 126, 86),
    (130, 92, 67),
    (96, 65, 52),
    (58, 49, 42),
    (41, 36, 32),
)

_HAIR_RGB = np.array(
    [(22, 18, 16), (58, 38, 26), (102, 68, 40), (148, 108, 68), (212, 178, 118), (156, 70, 34), (168, 166, 160)],
    dtype=float,
)
_HAIR_P = {"lighter": (0.14, 0.24, 0.2, 0.12, 0.16, 0.08, 0.06), "darker": (0.62, 0.28, 0.05, 0.01, 0.01, 0.01, 0.02)}
_EYE_RGB = np.array(
    [(48, 28, 16), (96, 58, 30), (118, 98, 50), (76, 118, 68), (66, 108, 170), (118, 128, 140)], dtype=float
)
_EYE_P = {"lighter": (0.2, 0.22, 0.15, 0.11, 0.23, 0.09), "darker": (0.62, 0.3, 0.05, 0.01, 0.01, 0.01)}
_LONG_HAIR_P = {"female": 0.8, "male": 0.12}
_SUPERSAMPLE = 4


@dataclass(frozen=True, kw_only=True)
class SyntheticFacesConfig:
    """What to generate. Plain data: ``dataclasses.asdict`` round-trips through JSON.

    Attributes:
        image_size: output side in pixels (square RGB images), 8..1024.
        images_per_subject: images per subject (Faces95: about 20), >= 1.
        seed: the generator's seed (>= 0); everything drawn depends only on the config.
        train_lighter_male: training subjects per group; the default mirrors Faces95's skew
            (43 lighter men, 6 lighter women, 12 darker men, 1 darker woman).
        train_lighter_female: see ``train_lighter_male``.
        train_darker_male: see ``train_lighter_male``.
        train_darker_female: see ``train_lighter_male``.
        val_subjects_per_group: validation subjects in each of the 4 groups (balanced), >= 0.
        test_subjects_per_group: test (audit panel) subjects in each of the 4 groups, >= 1.
    """

    image_size: int = 64
    images_per_subject: int = 20
    seed: int = 0
    train_lighter_male: int = 43
    train_lighter_female: int = 6
    train_darker_male: int = 12
    train_darker_female: int = 1
    val_subjects_per_group: int = 1
    test_subjects_per_group: int = 5

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"SyntheticFacesConfig.{field.name} must be an int, got {value!r}")
        bounds = {
            "image_size": (8, 1024),
            "images_per_subject": (1, 1000),
            "seed": (0, 2**63 - 1),
            "test_subjects_per_group": (1, 10_000),
        }
        for name in ("train_lighter_male", "train_lighter_female", "train_darker_male", "train_darker_female"):
            bounds[name] = (0, 10_000)
        bounds["val_subjects_per_group"] = (0, 10_000)
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"SyntheticFacesConfig.{name} must be in [{low}, {high}], got {value!r}")
        if sum(self.train_composition().values()) == 0:
            raise ValueError(
                "SyntheticFacesConfig needs at least one training subject, got 0 in every train_* field; "
                "set e.g. train_lighter_male=1"
            )

    def train_composition(self) -> dict[tuple[str, str], int]:
        """Training subjects per ``(gender, skin_tone)`` group."""
        return {
            ("male", "lighter"): self.train_lighter_male,
            ("female", "lighter"): self.train_lighter_female,
            ("male", "darker"): self.train_darker_male,
            ("female", "darker"): self.train_darker_female,
        }

    @property
    def n_subjects(self) -> int:
        """Subjects in all splits."""
        panels = len(GENDERS) * len(SKIN_TONES) * (self.val_subjects_per_group + self.test_subjects_per_group)
        return sum(self.train_composition().values()) + panels

    @property
    def n_images(self) -> int:
        """Rows of the manifest: ``n_subjects * images_per_subject``."""
        return self.n_subjects * self.images_per_subject

    def to_json(self) -> str:
        """The config (and the generator version) as canonical JSON: what the cache is keyed on."""
        return json.dumps({"generator_version": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)


def cache_key(config: SyntheticFacesConfig) -> str:
    """Short hex hash (12 characters) of ``config.to_json()``."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Subjects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Subject:
    subject: str
    split: str
    gender: str
    skin_tone: str
    tone: int
    index: int


def _subjects(config: SyntheticFacesConfig) -> list[_Subject]:
    """Every subject with its split and group, in a fixed order (train, val, test; by group)."""
    plan: list[tuple[str, str, str, int]] = []
    for (gender, tone_group), count in config.train_composition().items():
        plan.append(("train", gender, tone_group, count))
    for split, per_group in (("val", config.val_subjects_per_group), ("test", config.test_subjects_per_group)):
        for gender in GENDERS:
            for tone_group in SKIN_TONES:
                plan.append((split, gender, tone_group, per_group))
    subjects: list[_Subject] = []
    for split, gender, tone_group, count in plan:
        for _ in range(count):
            subjects.append(_subject(config, len(subjects), split, gender, tone_group))
    return subjects


def _subject(config: SyntheticFacesConfig, index: int, split: str, gender: str, tone_group: str) -> _Subject:
    """Person number ``index`` of ``config``'s population: its id, group and Monk-like tone step.

    Everything drawn about a person (tone, look, every image) comes from generators seeded by
    ``(config.seed, index, ...)``: the index *is* the person.
    """
    rng = np.random.default_rng([config.seed, index, 0])
    low = 1 if tone_group == "lighter" else 6
    tone = int(rng.integers(low, low + 5))
    return _Subject(f"syn{index:04d}", split, gender, tone_group, tone, index)


def _new_people(config: SyntheticFacesConfig, *, train_per_group: int, held_out_per_group: int) -> list[_Subject]:
    """People ``config``'s dataset does not hold: indices from ``config.n_subjects`` on, balanced.

    ``train_per_group`` people of every (gender x skin tone) group with split ``train``, then
    ``held_out_per_group`` of every group with split ``test``.
    """
    subjects: list[_Subject] = []
    for split, count in (("train", train_per_group), ("test", held_out_per_group)):
        for gender in GENDERS:
            for tone_group in SKIN_TONES:
                for _ in range(count):
                    subjects.append(_subject(config, config.n_subjects + len(subjects), split, gender, tone_group))
    return subjects


def _identity(config: SyntheticFacesConfig, subject: _Subject) -> dict[str, Any]:
    """The fixed look of one subject, drawn from its own seeded generator."""
    rng = np.random.default_rng([config.seed, subject.index, 1])
    skin = np.array(MONK_TONES_RGB[subject.tone - 1], dtype=float) * rng.uniform(0.96, 1.03, size=3)
    female = subject.gender == "female"
    hair = _HAIR_RGB[rng.choice(len(_HAIR_RGB), p=_HAIR_P[subject.skin_tone])] * rng.uniform(0.9, 1.1)
    long_hair = bool(rng.random() < _LONG_HAIR_P[subject.gender])
    receding = (not female) and bool(rng.random() < 0.1)
    background = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.15, 0.45), rng.uniform(0.35, 0.7))
    clutter = [
        (
            rng.uniform(0, 1, size=4),
            _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.8)),
            int(rng.integers(0, 2)),
        )
        for _ in range(int(rng.integers(2, 6)))
    ]
    return {
        "skin": skin,
        "aspect": rng.uniform(0.7, 0.8) if female else rng.uniform(0.76, 0.9),
        "face_height": rng.uniform(0.26, 0.3),
        "hair": hair,
        "long_hair": long_hair,
        "hair_length": rng.uniform(1.1, 1.6),
        "hairline": rng.uniform(0.82, 0.92) if receding else rng.uniform(0.42, 0.62),
        "hair_volume": rng.uniform(1.02, 1.12),
        "eye": _EYE_RGB[rng.choice(len(_EYE_RGB), p=_EYE_P[subject.skin_tone])],
        "eye_spacing": rng.uniform(0.34, 0.46),
        "eye_size": rng.uniform(0.12, 0.17),
        "brow_tilt": rng.uniform(-0.05, 0.04),  # > 0: inner ends low (a frown)
        "brow_thickness": rng.uniform(0.02, 0.035) if female else rng.uniform(0.03, 0.05),
        "mouth_width": rng.uniform(0.4, 0.6),
        "lip": rng.uniform(0.05, 0.09) if female else rng.uniform(0.03, 0.06),
        "nose": rng.uniform(0.1, 0.16),
        "clothing": _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.85)),
        "background": background,
        "clutter": clutter,
    }


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """An HSV colour (each in [0, 1]) as an RGB float array in [0, 255], shape ``(3,)``."""
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255.0


def _rgb(color: Any) -> tuple[int, int, int]:
    """An RGB float colour (a length-3 sequence) as ints clipped to [0, 255]."""
    r, g, b = (min(255, max(0, round(float(c)))) for c in color)
    return (r, g, b)


@functools.lru_cache(maxsize=512)
def _arc(n: int, start: float, end: float) -> np.ndarray:
    """``(n, 2)`` cosines and sines of ``n`` angles from ``start`` to ``end`` degrees."""
    theta = np.radians(np.linspace(start, end, n, endpoint=(end - start) < 360.0))
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


class _Pen:
    """Draws shapes given in face-local units (1 = the face's half-height, y down) onto an image.

    A point ``p`` lands at ``center + unit * R(angle) @ p``, so the whole head shifts, scales and
    rotates as one rigid body; the background is not touched. With a ``mask`` (an ``"L"`` image of
    the same size), every shape is also painted onto it, 255 when the call says ``skin=True`` (the
    face's skin) and 0 otherwise, so after the last shape the mask shows where face skin is visible.
    """

    def __init__(
        self,
        draw: ImageDraw.ImageDraw,
        center: tuple[float, float],
        unit: float,
        angle: float,
        mask: ImageDraw.ImageDraw | None = None,
    ) -> None:
        radians = math.radians(angle)
        cos, sin = math.cos(radians), math.sin(radians)
        self.draw = draw
        self.mask = mask
        self.unit = unit
        self.matrix = unit * np.array([[cos, sin], [-sin, cos]])
        self.offset = np.asarray(center, dtype=float)

    def _points(self, points: np.ndarray) -> list[float]:
        """Flat ``[x0, y0, x1, y1, ...]`` image coordinates of ``(M, 2)`` local points."""
        mapped = np.asarray(points, dtype=float) @ self.matrix.T + self.offset
        return mapped.ravel().tolist()

    def polygon(self, points: np.ndarray, fill: tuple[int, int, int], *, skin: bool = False) -> None:
        flat = self._points(points)
        self.draw.polygon(flat, fill=fill)
        if self.mask is not None:
            self.mask.polygon(flat, fill=255 if skin else 0)

    def line(self, points: np.ndarray, fill: tuple[int, int, int], width: float, *, skin: bool = False) -> None:
        flat = self._points(points)
        pixels = max(1, round(width * self.unit))
        self.draw.line(flat, fill=fill, width=pixels)
        if self.mask is not None:
            self.mask.line(flat, fill=255 if skin else 0, width=pixels)

    def ellipse(
        self,
        center: tuple[float, float],
        radii: tuple[float, float],
        fill: tuple[int, int, int],
        *,
        start: float = 0.0,
        end: float = 360.0,
        skin: bool = False,
    ) -> None:
        """A filled ellipse, or the chord of its arc from ``start`` to ``end`` degrees (clockwise on screen)."""
        perimeter = math.pi * (radii[0] + radii[1]) * self.unit * (end - start) / 360.0
        n = min(96, max(12, 4 * round(perimeter / 16.0)))
        points = _arc(n, start, end) * radii + center
        self.polygon(points, fill, skin=skin)


def _rounded_rectangle(x0: float, y0: float, x1: float, y1: float, radius: float) -> np.ndarray:
    """Outline points ``(M, 2)`` of a rectangle with rounded corners."""
    corners = (
        (x1 - radius, y1 - radius, 0),
        (x0 + radius, y1 - radius, 90),
        (x0 + radius, y0 + radius, 180),
        (x1 - radius, y0 + radius, 270),
    )
    arcs = []
    for cx, cy, start in corners:
        theta = np.radians(np.linspace(start, start + 90, 10))
        arcs.append(np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1))
    return np.concatenate(arcs)


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _draw_background(identity: dict[str, Any], side: int) -> Image.Image:
    """The subject's fixed scene (a wall, a floor and a few objects): RGB, ``side x side``."""
    image = Image.new("RGB", (side, side), _rgb(identity["background"]))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(side * 0.82), side, side), fill=_rgb(identity["background"] * 0.8))
    for box, color, kind in identity["clutter"]:
        x0, y0 = box[:2] * side
        w, h = (0.1 + 0.3 * box[2:]) * side
        shape = (x0 - w / 2, y0 - h / 2, x0 + w / 2, y0 + h / 2)
        (draw.rectangle if kind == 0 else draw.ellipse)(shape, fill=_rgb(color))
    return image


def _pose(rng: np.random.Generator, side: int, face_height: float) -> tuple[tuple[float, float], float, float]:
    """The head's placement in one image: centre (pixels), unit (pixels per face unit), angle (degrees).

    Draws its three random numbers from ``rng`` first, so callers can replay an image's pose.
    """
    scale = rng.uniform(0.88, 1.12)
    center = (side * (0.5 + rng.uniform(-0.07, 0.07)), side * (0.5 + rng.uniform(-0.04, 0.05)))
    angle = float(rng.normal(0.0, 4.0))
    return center, face_height * side * scale, angle


def _image_rng(config: SyntheticFacesConfig, subject: _Subject, number: int) -> np.random.Generator:
    """The generator of everything that varies in image ``number`` of ``subject``."""
    return np.random.default_rng([config.seed, subject.index, 2, number])


def _draw_image(
    config: SyntheticFacesConfig, identity: dict[str, Any], background: Image.Image, subject: _Subject, number: int
) -> tuple[Image.Image, Image.Image]:
    """Image ``number`` (1-based) of a subject and its skin mask, both ``(image_size, image_size)``.

    The head is drawn at ``_SUPERSAMPLE`` times the output size over the subject's background,
    area-averaged down, then lit (brightness times a linear gradient) and given sensor noise. The
    mask is painted alongside (see :class:`_Pen`), area-averaged the same way, then thresholded by
    :func:`_binarize_mask`.

    Returns:
        The RGB image and the ``"L"`` mask (0 or 255; 255 = visible skin of the face).
    """
    rng = _image_rng(config, subject, number)
    side = background.width
    center, unit, angle = _pose(rng, side, identity["face_height"])
    expression = {
        "smile": float(np.clip(rng.normal(0.25, 0.45), -0.6, 1.0)),
        "open": float(max(0.0, rng.normal(0.0, 0.35))),
        "blink": bool(rng.random() < 0.08),
        "gaze": float(rng.uniform(-0.25, 0.25)),
        "brow_raise": float(rng.uniform(-0.02, 0.04)),
    }
    canvas = background.copy()
    mask = Image.new("L", (side, side), 0)
    pen = _Pen(ImageDraw.Draw(canvas), center, unit, angle, mask=ImageDraw.Draw(mask))
    _draw_head(pen, identity, expression)
    return _light(canvas.reduce(_SUPERSAMPLE), rng), _binarize_mask(mask.reduce(_SUPERSAMPLE))


def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``image`` (RGB, square) under this shot's lighting: brightness times a linear gradient, plus noise."""
    size = image.width
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    gradient = np.float32(math.cos(direction)) * ramp[None, :] + np.float32(math.sin(direction)) * ramp[:, None]
    light = np.float32(rng.uniform(0.78, 1.15)) * (1.0 + np.float32(rng.uniform(0.0, 0.22)) * gradient)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(rng.uniform(1.5, 4.0))
    pixels = np.asarray(image, dtype=np.float32) * light[:, :, None] + noise
    np.clip(pixels, 0.0, 255.0, out=pixels)
    return Image.fromarray(np.rint(pixels).astype(np.uint8), "RGB")


def _binarize_mask(coverage: Image.Image) -> Image.Image:
    """A 0/255 mask from an ``"L"`` coverage image (mean of the supersamples, 0..255).

    A pixel is in when at least half of it is covered, or, when no pixel reaches half (tiny
    images), when it is among the most covered; a coverage of 0 is never in.
    """
    values = np.asarray(coverage)
    threshold = max(1, min(128, int(values.max())))
    return Image.fromarray(np.where(values >= threshold, 255, 0).astype(np.uint8), "L")


def _draw_head(pen: _Pen, identity: dict[str, Any], expression: dict[str, Any]) -> None:
    """Shoulders, neck, hair, face and features, in face-local units (the face is 2a x 2).

    Only the face ellipses and the nose are ``skin=True``: everything drawn over the face after them
    (hair, brows, eyes, mouth) cuts its shape out of the skin mask.
    """
    a = identity["aspect"]
    v = identity["hair_volume"]
    skin = identity["skin"]
    hair = _rgb(identity["hair"])

    pen.ellipse((0.0, 2.12), (2.4 * a, 1.08), _rgb(identity["clothing"]))
    pen.polygon(np.array([(-0.42 * a, 0.5), (0.42 * a, 0.5), (0.42 * a, 1.25), (-0.42 * a, 1.25)]), _rgb(skin * 0.82))
    if identity["long_hair"]:
        pen.polygon(_rounded_rectangle(-1.28 * a * v, -1.12 * v, 1.28 * a * v, identity["hair_length"], 0.9 * a), hair)
    else:
        for sign in (-1, 1):
            pen.ellipse((sign * 0.98 * a, 0.01), (0.14 * a, 0.21), _rgb(skin * 0.92))

    pen.ellipse((0.0, 0.0), (a, 1.0), _rgb(skin * 0.94), skin=True)  # jaw shading shows as a rim below
    pen.ellipse((0.0, -0.05), (0.95 * a, 0.93), _rgb(skin), skin=True)

    hairline = identity["hairline"]
    top = -1.08 * v
    half = max(-hairline - top, 0.05) / 2.0
    pen.ellipse((0.0, top + 2 * half), (1.05 * a * v, 2 * half), hair, start=180.0, end=360.0)
    if identity["long_hair"]:  # side locks framing the face
        for sign in (-1, 1):
            outer = sign * 1.06 * a * v
            pen.polygon(np.array([(outer, -hairline - 0.1), (sign * 0.8 * a, -hairline), (outer, 0.6)]), hair)

    eye_y = -0.1
    spacing = identity["eye_spacing"] * a * 2
    eye_w = identity["eye_size"] * a * 2
    eye_h = eye_w * 0.55
    brow_y = eye_y - 0.2 - expression["brow_raise"]
    tilt = identity["brow_tilt"]
    brow = _rgb(identity["hair"] * 0.8)
    for sign in (-1, 1):
        ex = sign * spacing / 2
        pen.line(
            np.array([(ex - sign * eye_w * 0.75, brow_y + tilt), (ex + sign * eye_w * 0.75, brow_y - tilt * 0.5)]),
            brow,
            identity["brow_thickness"] * 2,
        )
        if expression["blink"]:
            pen.line(np.array([(ex - eye_w / 2, eye_y), (ex + eye_w / 2, eye_y)]), _rgb(skin * 0.45), eye_h * 0.25)
            continue
        rim = eye_h * 0.1
        pen.ellipse((ex, eye_y), (eye_w / 2 + rim, eye_h / 2 + rim), _rgb(skin * 0.5))
        pen.ellipse((ex, eye_y), (eye_w / 2, eye_h / 2), (245, 243, 238))
        iris = eye_h * 0.48
        ix = ex + expression["gaze"] * (eye_w / 2 - iris)
        pen.ellipse((ix, eye_y), (iris, iris), _rgb(identity["eye"]))
        pen.ellipse((ix, eye_y), (iris * 0.45, iris * 0.45), (12, 10, 10))

    nose = identity["nose"] * a * 2
    pen.ellipse((0.0, 0.28), (nose / 2, nose * 0.3), _rgb(skin * 0.86), skin=True)
    pen.line(np.array([(0.0, 0.02), (-nose * 0.15, 0.28)]), _rgb(skin * 0.88), nose * 0.12, skin=True)
    _draw_mouth(pen, identity, expression)


def _draw_mouth(pen: _Pen, identity: dict[str, Any], expression: dict[str, Any]) -> None:
    """Lips bent by ``smile`` (corners up when > 0) and parted by ``open``, in face-local units."""
    half_width = identity["mouth_width"] * identity["aspect"]
    my = 0.56
    curve = expression["smile"] * 0.09
    opening = min(expression["open"], 1.0) * 0.14
    lip = identity["lip"]
    xs = np.linspace(-1.0, 1.0, 17)
    bow = 1.0 - xs**2
    mid = my + curve * (bow - 0.5)
    upper = mid - lip * np.sqrt(bow) * 0.9 - opening * bow * 0.35
    lower = mid + lip * np.sqrt(bow) * 1.1 + opening * bow
    x = xs * half_width
    lip_color = identity["skin"] * 0.62 + np.array([150.0, 60.0, 60.0]) * 0.38
    outline = np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1]])
    pen.polygon(outline, _rgb(lip_color * 0.9))
    if opening > lip * 0.15:
        top = np.stack([x, mid - opening * bow * 0.35], 1)[2:-2]
        bottom = np.stack([x, mid + opening * bow * 0.8], 1)[2:-2]
        inner = np.concatenate([top, bottom[::-1]])
        pen.polygon(inner, (40, 14, 18))
    else:
        pen.line(np.stack([x, mid], 1), _rgb(lip_color * 0.55), lip * 0.35)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def generate_synthetic_faces(config: SyntheticFacesConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Draw every image of ``config`` (and its skin mask) into ``out_dir`` and write its manifest.

    Layout (as Faces95): ``out_dir/images/<subject>/<subject>.<n>.png`` with ``n`` from 1, the
    masks at ``out_dir/masks/<subject>/<subject>.<n>.png`` (greyscale, 0 or 255, the image's size;
    see the module docstring), plus ``manifest.csv`` (columns ``path, mask_path, subject, split,
    gender, skin_tone, tone``; ``tone`` is the Monk-like step 1..10) and ``config.json``
    (``config.to_json()``), written last.

    Args:
        config: what to draw.
        out_dir: an empty or missing folder.

    Returns:
        The manifest's path, ``out_dir / "manifest.csv"``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not an empty folder.
    """
    out = Path(out_dir)
    _check_output_folder(out)
    rows = _draw_subjects(config, _subjects(config), out)
    manifest = out / MANIFEST_NAME
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(manifest, index=False, lineterminator="\n")
    (out / CONFIG_NAME).write_text(config.to_json() + "\n", encoding="utf-8")
    logger.info("generated %d synthetic face images of %d subjects in %s", len(rows), config.n_subjects, out)
    return manifest


def _check_output_folder(out: Path) -> None:
    check_empty_folder(out, what="synthetic faces", ensure="ensure_synthetic_faces")


def _draw_subjects(config: SyntheticFacesConfig, subjects: list[_Subject], out: Path) -> list[dict[str, Any]]:
    """Draw ``config.images_per_subject`` images (and masks) of each subject into ``out``; their manifest rows."""
    rows: list[dict[str, Any]] = []
    for subject in subjects:
        identity = _identity(config, subject)
        background = _draw_background(identity, config.image_size * _SUPERSAMPLE)
        for folder in ("images", "masks"):
            (out / folder / subject.subject).mkdir(parents=True, exist_ok=True)
        for number in range(1, config.images_per_subject + 1):
            relative = f"images/{subject.subject}/{subject.subject}.{number}.png"
            mask_relative = f"masks/{subject.subject}/{subject.subject}.{number}.png"
            image, mask = _draw_image(config, identity, background, subject, number)
            image.save(out / relative, format="PNG", compress_level=1)
            mask.save(out / mask_relative, format="PNG", compress_level=1)
            rows.append(
                {
                    "path": relative,
                    "mask_path": mask_relative,
                    "subject": subject.subject,
                    "split": subject.split,
                    "gender": subject.gender,
                    "skin_tone": subject.skin_tone,
                    "tone": subject.tone,
                }
            )
    return rows


def _new_people_json(config: SyntheticFacesConfig, train_per_group: int, held_out_per_group: int,
                     images_per_subject: int) -> str:
    """The canonical JSON of a set of new people: the dataset's config and the counts."""
    return json.dumps({"dataset": json.loads(config.to_json()), "new_people": {
        "train_per_group": train_per_group, "held_out_per_group": held_out_per_group,
        "images_per_subject": images_per_subject}}, sort_keys=True)


def generate_new_people(
    config: SyntheticFacesConfig,
    out_dir: str | os.PathLike[str],
    *,
    train_per_group: int,
    held_out_per_group: int,
    images_per_subject: int | None = None,
) -> Path:
    """Draw balanced people that ``config``'s dataset does not hold (for an attribute classifier).

    The people continue ``config``'s population past its last person: person ``i`` for ``i``
    from ``config.n_subjects`` on, so every id (``syn<i>``) and every generator seed
    ``(config.seed, i, ...)`` of their look, tone and images differs from those of the dataset's
    training people, validation panel and audit panel (same seed, image size and drawing).
    ``train_per_group`` people of each of the four groups have split ``train``,
    then ``held_out_per_group`` of each group split ``test`` (held out: people a classifier
    trained on the others never saw). Layout and manifest columns as
    :func:`generate_synthetic_faces`; ``config.json`` holds :func:`_new_people_json`.

    Args:
        config: the config of the dataset whose people are to be avoided.
        out_dir: an empty or missing folder.
        train_per_group: people of each group to train on, >= 1.
        held_out_per_group: people of each group to hold out, >= 1.
        images_per_subject: images of each person, >= 1; None: ``config.images_per_subject``
            (fewer images of more people teach a classifier more faces for the same work).

    Returns:
        The manifest's path.

    Raises:
        ValueError: a count below 1.
        FileExistsError: ``out_dir`` exists and is not an empty folder.
    """
    images = config.images_per_subject if images_per_subject is None else images_per_subject
    for name, count in (("train_per_group", train_per_group), ("held_out_per_group", held_out_per_group),
                        ("images_per_subject", images)):
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            raise ValueError(f"generate_new_people: {name} must be an int in [1, 10000], got {count!r}")
    out = Path(out_dir)
    _check_output_folder(out)
    subjects = _new_people(config, train_per_group=train_per_group, held_out_per_group=held_out_per_group)
    rows = _draw_subjects(dataclasses.replace(config, images_per_subject=images), subjects, out)
    manifest = out / MANIFEST_NAME
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(manifest, index=False, lineterminator="\n")
    (out / CONFIG_NAME).write_text(_new_people_json(config, train_per_group, held_out_per_group, images) + "\n",
                                   encoding="utf-8")
    logger.info("generated %d images of %d new synthetic people in %s", len(rows), len(subjects), out)
    return manifest


def ensure_new_people(
    config: SyntheticFacesConfig, cache_dir: str | os.PathLike[str], *, train_per_group: int,
    held_out_per_group: int, images_per_subject: int | None = None,
) -> Path:
    """The manifest of :func:`generate_new_people`, cached in ``cache_dir`` like :func:`ensure_synthetic_faces`.

    The folder is ``faces-<cache_key(config)>-new-<train_per_group>-<held_out_per_group>-<images_per_subject>``.
    """
    images = config.images_per_subject if images_per_subject is None else images_per_subject
    text = _new_people_json(config, train_per_group, held_out_per_group, images)
    people = (train_per_group + held_out_per_group) * len(GENDERS) * len(SKIN_TONES)
    return ensure_cached(
        Path(cache_dir) / f"faces-{cache_key(config)}-new-{train_per_group}-{held_out_per_group}-{images}",
        config_json=text,
        n_rows=people * images,
        generate=lambda folder: generate_new_people(config, folder, train_per_group=train_per_group,
                                                    held_out_per_group=held_out_per_group, images_per_subject=images),
        what="new synthetic people",
    )


def synthetic_config_of(manifest_path: str | os.PathLike[str]) -> SyntheticFacesConfig:
    """The :class:`SyntheticFacesConfig` that generated the dataset of ``manifest_path`` (its ``config.json``).

    Raises:
        ValueError: the manifest's folder has no readable ``config.json`` of synthetic faces.
    """
    path = Path(manifest_path).parent / CONFIG_NAME
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        values.pop("generator_version")
        return SyntheticFacesConfig(**values)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not the config.json of generated synthetic faces ({err}); regenerate the "
                         f"dataset (delete its cache folder)") from err


def ensure_synthetic_faces(config: SyntheticFacesConfig, cache_dir: str | os.PathLike[str]) -> Path:
    """The manifest of ``config``'s images, generating them on first use.

    The images live in ``cache_dir / f"faces-{cache_key(config)}"``. They are drawn into a
    temporary sibling folder that is renamed into place when finished, so a crash or a concurrent
    run never leaves a half-written dataset where a finished one is expected. A folder is reused
    when its ``config.json`` equals the config and its manifest has ``config.n_images`` rows;
    otherwise it is replaced.

    Args:
        config: what to draw.
        cache_dir: folder for cached datasets (created if missing).

    Returns:
        The manifest's path.
    """
    return ensure_cached(
        Path(cache_dir) / f"faces-{cache_key(config)}",
        config_json=config.to_json(),
        n_rows=config.n_images,
        generate=lambda folder: generate_synthetic_faces(config, folder),
        what="synthetic faces",
    )
