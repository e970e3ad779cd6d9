"""Simulated 2-D density fields for auditing super-resolution by cosmic-web environment.

Each simulated *box* is a periodic ``N x N`` field (``N = image_size * patches_per_side`` cells,
one cell = one high-resolution pixel) drawn as follows:

1. **Spectrum.** A target power spectrum ``P(k)`` of the density contrast ``delta = rho / rho_mean - 1``:
   a power law ``P ~ k^n`` (:func:`power_law_spectrum`) or a LambdaCDM-like shape, ``k^n_s T(k)^2``
   with the BBKS transfer function (:func:`lcdm_spectrum`; a 2-D toy with the 3-D shape, not a
   projection of a real 3-D spectrum). Normalised so that ``var(delta) = sigma**2``.
2. **Log-normal field** (:func:`lognormal_field`; Coles & Jones 1991): the target correlation
   function ``xi(r)`` (inverse FFT of ``P``) becomes the Gaussian one ``xi_G = ln(1 + xi)``; a
   Gaussian random field ``g`` with that spectrum (negative modes clipped to 0) is drawn and
   exponentiated, ``delta = exp(g - var(g) / 2) - 1``. Its spectrum follows the target one
   (tested), and ``rho >= 0`` everywhere, unlike a Gaussian field's.
3. **Environment** (:func:`tweb_environments`; the T-web of Hahn et al. 2007 and Forero-Romero et
   al. 2009): the density contrast smoothed with a Gaussian of ``smoothing`` cells, the potential
   from ``laplacian(phi) = delta_smoothed`` (in Fourier space, ``phi_k = -delta_k / k^2``), the
   tidal tensor ``T_ij = d_i d_j phi`` and, per cell, the number of its eigenvalues above
   ``threshold`` (``lambda_th``). In 3-D that count (0-3) names void, sheet, filament and knot. **In
   2-D there are only two eigenvalues, so three classes**: 0 above ``lambda_th`` is ``void``, 1 is
   ``filament`` (collapse along one axis of the plane: a ridge, the 2-D analogue of both the 3-D
   sheet and filament, which 2-D cannot tell apart) and 2 is ``knot``. There is no ``sheet`` here.

Each box is cut into ``patches_per_side**2`` non-overlapping ``image_size x image_size`` patches
(the high-resolution images; the low-resolution input a model sees is their block average, which
the DataModule makes with ``avg_pool2d``, what a coarser simulation of the same box resolves).
Patches of one box are cut from one realisation and are not independent, so the audit's intervals
resample boxes, and splits are by box. A manifest's attributes belong to its subjects (one value per
subject), while a patch's dominant environment varies within a box, so a patch's ``subject`` is its box
and its environment (``box07-void``): within an environment, subjects are exactly boxes, and the
per-environment intervals resample boxes. Comparisons *between* environments (the generic disparity
table and its permutation p-values) then treat one box's void and filament patches as independent,
which they are not; the cosmology tables (:mod:`genfair.audit.cosmology`) resample the ``box`` column
itself, every environment of a drawn box together.

Files (under ``out_dir``): ``images/box07_p03.png``, the density, 8-bit greyscale, pixel =
``round(255 * clip(rho / (rho_mean * density_max), 0, 1))`` (linear in density, so a block average
of pixels is the block average of the density; the fraction of clipped cells is logged);
``environments/box07_p03.png``, the per-pixel environment codes ``0, 1, 2`` (void, filament,
knot: see :data:`ENVIRONMENTS`; the image looks black); ``manifest.csv`` with ``path, subject, box,
split, environment`` (the patch's dominant environment, the most common of its pixels,
the attribute the audit groups by) and ``environment_path``; ``config.json`` last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

from ._cache import CONFIG_NAME, MANIFEST_NAME, check_empty_folder, ensure_cached

__all__ = [
    "BOX_COLUMN",
    "CosmoConfig",
    "ENVIRONMENTS",
    "ENVIRONMENT_COLUMN",
    "SPECTRA",
    "ensure_cosmo",
    "generate_cosmo",
    "lcdm_spectrum",
    "lognormal_field",
    "gaussian_random_field",
    "power_law_spectrum",
    "tweb_environments",
    "wavenumbers",
]

logger = logging.getLogger(__name__)

ENVIRONMENTS: tuple[str, ...] = ("void", "filament", "knot")
"""2-D T-web classes, by the number of tidal eigenvalues above ``lambda_th`` (0, 1, 2)."""
ENVIRONMENT_COLUMN = "environment_path"
"""Manifest column: each patch's per-pixel environment-code image (relative path)."""
Spectrum = Literal["power_law", "lcdm"]
SPECTRA: tuple[str, ...] = typing.get_args(Spectrum)
BOX_COLUMN = "box"
"""Manifest column: the simulated box a patch was cut from (``box07``), the unit the intervals resample."""
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "subject", "box", "split", "environment", ENVIRONMENT_COLUMN)

# Bump when the fields or the files change, so cached datasets written by older code are not reused.
COSMO_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class CosmoConfig:
    """What to simulate. Plain data: ``dataclasses.asdict`` round-trips through JSON.

    Attributes:
        image_size: patch side in cells (= pixels), 8..256.
        patches_per_side: patches along each side of a box (box side = ``image_size *
            patches_per_side`` cells), >= 1.
        boxes: simulated boxes (independent realisations, the subjects), >= 3.
        val_boxes: boxes in the validation split.
        test_boxes: boxes in the test split (the audit panel), >= 1.
        spectrum: ``"power_law"`` or ``"lcdm"`` (see the module docstring).
        spectral_index: ``n`` of ``P ~ k^n`` (power law) or ``n_s`` (lcdm); None: -1.5 for the
            power law (more small-scale power than a 2-D projection of LambdaCDM, so that
            super-resolution has something to restore), 1 for lcdm.
        box_mpc: box side in Mpc/h (only the lcdm shape depends on it).
        sigma: rms density contrast of the field at the cell scale, > 0.
        smoothing: Gaussian smoothing radius of the T-web, in cells, >= 0.
        threshold: the T-web's ``lambda_th`` (eigenvalues of ``d_i d_j phi`` with
            ``laplacian(phi) = delta_smoothed``, so in units of the density contrast).
        density_max: ``rho / rho_mean`` stored as the brightest pixel (higher values clip), > 1.
        seed: the generator's seed, >= 0.
    """

    image_size: int = 64
    patches_per_side: int = 4
    boxes: int = 16
    val_boxes: int = 2
    test_boxes: int = 6
    spectrum: Spectrum = "power_law"
    spectral_index: float | None = None
    box_mpc: float = 500.0
    sigma: float = 1.0
    smoothing: float = 2.0
    threshold: float = 0.2
    density_max: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "patches_per_side", "boxes", "val_boxes", "test_boxes", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"CosmoConfig.{name} must be an int, got {value!r}")
        for name, (low, high) in {"image_size": (8, 256), "patches_per_side": (1, 64), "boxes": (3, 10_000),
                                  "val_boxes": (0, 10_000), "test_boxes": (1, 10_000),
                                  "seed": (0, 2**63 - 1)}.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"CosmoConfig.{name} must be in [{low}, {high}], got {value!r}")
        if self.val_boxes + self.test_boxes >= self.boxes:
            raise ValueError(f"CosmoConfig: val_boxes + test_boxes ({self.val_boxes} + {self.test_boxes}) must "
                             f"leave training boxes out of boxes={self.boxes}; fix: raise boxes")
        if self.spectrum not in SPECTRA:
            raise ValueError(f"CosmoConfig.spectrum must be one of {list(SPECTRA)}, got {self.spectrum!r}")
        for name, low in (("sigma", 0.0), ("box_mpc", 0.0), ("density_max", 1.0)):
            if not getattr(self, name) > low:
                raise ValueError(f"CosmoConfig.{name} must be > {low}, got {getattr(self, name)!r}")
        if not self.smoothing >= 0:
            raise ValueError(f"CosmoConfig.smoothing must be >= 0 cells, got {self.smoothing!r}")

    @property
    def index(self) -> float:
        """The spectral index in use (``spectral_index``, or the spectrum's default)."""
        if self.spectral_index is not None:
            return self.spectral_index
        return -1.5 if self.spectrum == "power_law" else 1.0

    @property
    def box_cells(self) -> int:
        """Box side in cells."""
        return self.image_size * self.patches_per_side

    @property
    def n_images(self) -> int:
        """Rows of the manifest: every patch of every box."""
        return self.boxes * self.patches_per_side**2

    def to_json(self) -> str:
        """The config (and the writer's version) as canonical JSON: what the cache is keyed on."""
        return json.dumps({"generator_version": COSMO_VERSION, **dataclasses.asdict(self)}, sort_keys=True)


def wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The FFT grid's wavevector components of an ``n x n`` periodic box, in units of its fundamental.

    Returns:
        ``(ky, kx)``, each ``(n, n)`` float64 integers ``-n/2 .. n/2 - 1`` (numpy's FFT order);
        ``|k| = hypot(ky, kx)``, physical ``k = 2 pi |k| / L``.
    """
    k = np.fft.fftfreq(n, d=1.0 / n)
    return np.meshgrid(k, k, indexing="ij")


def power_law_spectrum(k: np.ndarray, *, index: float) -> np.ndarray:
    """``k**index`` for ``k > 0`` and 0 at ``k = 0`` (the mean is not a fluctuation). Unnormalised."""
    out = np.zeros_like(k, dtype=np.float64)
    positive = k > 0
    out[positive] = k[positive] ** index
    return out


def lcdm_spectrum(k: np.ndarray, *, box_mpc: float, n_s: float = 1.0, gamma: float = 0.21) -> np.ndarray:
    """A LambdaCDM-like shape ``k^n_s T(q)^2`` (BBKS 1986 transfer, ``q = k / gamma`` in h/Mpc), unnormalised.

    Args:
        k: ``|k|`` in units of the box's fundamental ``2 pi / box_mpc``.
        box_mpc: box side in Mpc/h.
        n_s: primordial index.
        gamma: shape parameter ``Omega_m h`` (0.21 for Omega_m = 0.3, h = 0.7).
    """
    physical = 2.0 * math.pi * np.asarray(k, dtype=np.float64) / box_mpc
    safe = np.where(physical > 0, physical, 1.0)
    q = safe / gamma
    transfer = np.log(1 + 2.34 * q) / (2.34 * q) * (1 + 3.89 * q + (16.1 * q) ** 2 + (5.46 * q) ** 3
                                                   + (6.71 * q) ** 4) ** -0.25
    return np.where(physical > 0, safe**n_s * transfer**2, 0.0)


def gaussian_random_field(spectrum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A periodic Gaussian random field with power spectrum ``spectrum``.

    Convention (unit cells, numpy's unnormalised FFT): ``E|fft2(field)[k]|^2 = n^2 spectrum[k]``,
    so ``var(field) = mean(spectrum)`` and the estimator ``|fft2(field)|^2 / n^2`` is unbiased.

    Args:
        spectrum: ``(n, n)`` float64 >= 0 on the FFT grid (:func:`wavenumbers`), symmetric under
            ``k -> -k``; its ``[0, 0]`` entry is ignored (the field has mean 0).
        rng: the source of the white noise.

    Returns:
        ``(n, n)`` float64, mean exactly 0.
    """
    noise = np.fft.fft2(rng.standard_normal(spectrum.shape))
    amplitude = np.sqrt(np.clip(spectrum, 0.0, None))
    amplitude[0, 0] = 0.0
    return np.fft.ifft2(noise * amplitude).real


def lognormal_field(spectrum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A log-normal density contrast whose power spectrum is ``spectrum`` (Coles & Jones 1991).

    Args:
        spectrum: ``(n, n)`` target spectrum of ``delta`` (the :func:`gaussian_random_field` convention).
        rng: the source of the white noise.

    Returns:
        ``delta``: ``(n, n)`` float64 > -1 (``rho / rho_mean - 1``).
    """
    target = spectrum.astype(np.float64).copy()
    target[0, 0] = 0.0
    xi = np.fft.ifft2(target).real  # xi(r) = (1/n^2) sum_k P(k) e^{ikr}
    gaussian_spectrum = np.fft.fft2(np.log1p(xi)).real
    gaussian_spectrum = np.clip(gaussian_spectrum, 0.0, None)
    gaussian_spectrum[0, 0] = 0.0
    g = gaussian_random_field(gaussian_spectrum, rng)
    return np.exp(g - gaussian_spectrum.mean() / 2.0) - 1.0  # var(g) = mean(spectrum): E[1 + delta] = 1


def tweb_environments(delta: np.ndarray, *, smoothing: float, threshold: float) -> np.ndarray:
    """Each cell's 2-D T-web class: how many tidal-tensor eigenvalues exceed ``threshold``.

    Args:
        delta: ``(n, n)`` float density contrast of a periodic box (unit cells).
        smoothing: Gaussian smoothing radius in cells (0: none).
        threshold: ``lambda_th``, in units of the density contrast.

    Returns:
        ``(n, n)`` uint8 in {0, 1, 2}: an index into :data:`ENVIRONMENTS` (void, filament, knot).
    """
    n = delta.shape[0]
    ky, kx = wavenumbers(n)
    ky, kx = 2.0 * math.pi * ky / n, 2.0 * math.pi * kx / n  # radians per cell
    k2 = kx**2 + ky**2
    smoothed = np.fft.fft2(delta) * np.exp(-0.5 * k2 * smoothing**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        over_k2 = np.where(k2 > 0, smoothed / k2, 0.0)  # -phi_k; T_ij,k = -k_i k_j phi_k = k_i k_j delta_k / k^2
    txx, tyy, txy = (np.fft.ifft2(a * b * over_k2).real for a, b in ((kx, kx), (ky, ky), (kx, ky)))
    half_trace, radius = (txx + tyy) / 2.0, np.hypot((txx - tyy) / 2.0, txy)
    return ((half_trace + radius > threshold).astype(np.uint8) + (half_trace - radius > threshold)).astype(np.uint8)


def _spectrum(config: CosmoConfig) -> np.ndarray:
    """The target spectrum on the box's FFT grid, normalised to ``var(delta) = sigma**2``."""
    ky, kx = wavenumbers(config.box_cells)
    k = np.hypot(ky, kx)
    if config.spectrum == "power_law":
        shape = power_law_spectrum(k, index=config.index)
    else:
        shape = lcdm_spectrum(k, box_mpc=config.box_mpc, n_s=config.index)
    return shape * (config.sigma**2 / shape.mean())


def generate_cosmo(config: CosmoConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Simulate ``config.boxes`` boxes, cut them into patches and write images, environments and a manifest.

    See the module docstring for the fields, the files and the split (the last
    ``test_boxes`` boxes are tested, the ``val_boxes`` before them validate, the rest train).

    ``config`` says what to simulate; ``out_dir`` must be an empty or missing folder (else
    FileExistsError). Returns ``out_dir / "manifest.csv"``.
    """
    out = Path(out_dir)
    check_empty_folder(out, what="cosmo", ensure="ensure_cosmo")
    for folder in ("images", "environments"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    spectrum, size, per_side = _spectrum(config), config.image_size, config.patches_per_side
    splits = ["train"] * (config.boxes - config.val_boxes - config.test_boxes) + ["val"] * config.val_boxes
    splits += ["test"] * config.test_boxes
    rows, clipped = [], 0
    for box in range(config.boxes):
        delta = lognormal_field(spectrum, np.random.default_rng([config.seed, box]))
        environments = tweb_environments(delta, smoothing=config.smoothing, threshold=config.threshold)
        scaled = (1.0 + delta) / config.density_max
        clipped += int((scaled > 1.0).sum())
        pixels = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
        for patch in range(per_side**2):
            rows_, cols_ = slice(patch // per_side * size, (patch // per_side + 1) * size), \
                slice(patch % per_side * size, (patch % per_side + 1) * size)
            name = f"box{box:02d}_p{patch:02d}.png"
            Image.fromarray(pixels[rows_, cols_], "L").save(out / "images" / name, compress_level=1)
            codes = environments[rows_, cols_]
            Image.fromarray(codes, "L").save(out / "environments" / name, compress_level=1)
            dominant = ENVIRONMENTS[int(np.bincount(codes.ravel(), minlength=len(ENVIRONMENTS)).argmax())]
            rows.append({"path": f"images/{name}", "subject": f"box{box:02d}-{dominant}", "box": f"box{box:02d}",
                         "split": splits[box],
                         "environment": dominant, ENVIRONMENT_COLUMN: f"environments/{name}"})
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(out / MANIFEST_NAME, index=False, lineterminator="\n")
    (out / CONFIG_NAME).write_text(config.to_json() + "\n", encoding="utf-8")
    logger.info("wrote %d density patches of %dx%d from %d boxes in %s (%.3f%% of cells clipped at rho/rho_mean=%g)",
                len(rows), size, size, config.boxes, out, 100.0 * clipped / (config.boxes * config.box_cells**2),
                config.density_max)
    return out / MANIFEST_NAME


def cache_key(config: CosmoConfig) -> str:
    """Short hex hash (12 characters) of ``config.to_json()``."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


def ensure_cosmo(config: CosmoConfig, cache_dir: str | os.PathLike[str]) -> Path:
    """The manifest of ``config``'s patches, simulating them on first use (cached like the digits).

    Returns:
        The manifest's path under ``cache_dir / f"cosmo-{cache_key(config)}"``.
    """
    return ensure_cached(Path(cache_dir) / f"cosmo-{cache_key(config)}", config_json=config.to_json(),
                         n_rows=config.n_images, generate=lambda folder: generate_cosmo(config, folder), what="cosmo")
