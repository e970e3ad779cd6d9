"""Super-resolution of simulated density fields, audited by cosmic-web environment.

Two measures beside the per-patch pixel errors (which the generic tables break down by each patch's
dominant environment):

- **Per-pixel errors by environment** (:func:`per_sample_environment_errors`): every pixel is
  labelled void, filament or knot (2-D T-web of the target's box, made by the dataset), and the
  squared and absolute errors are summed per label. An environment's MSE is its pixels' mean
  squared error over the whole test split (pixel-weighted), so small knots weigh by their area;
  its relative error is that summed squared error over the summed squared target (dense knots
  have larger values, hence larger absolute errors, by construction).
- **Power-spectrum fidelity** (:func:`per_sample_power_spectrum`): the output's binned power
  spectrum over the target's, per octave of ``|k|`` (in units of the patch's fundamental
  ``2 pi / H``), pooled over the patches of each dominant environment: ``sum P_out / sum P_target``.
  1 is a faithful spectrum; below 1 the output is too smooth at those scales (what averaging loses
  and bicubic does not restore), above 1 it adds power. Bins at or above the input's Nyquist
  ``H / (2 s)`` hold scales the low-resolution input does not resolve. The patches are not
  periodic, so both spectra carry the same edge leakage; the ratio compares like with like.

Patches cut from one simulated box are not independent: every interval resamples boxes (the ``box``
column), with the small-sample expansion of :mod:`genfair.audit.stats`. A table row resting on fewer
than ``min_boxes`` boxes has ``evidence = "insufficient"`` and no interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "BOX_COLUMN",
    "PIXEL_GROUPING",
    "ENVIRONMENT_ERROR_COLUMNS",
    "POWER_SPECTRUM_COLUMNS",
    "environment_error_table",
    "octave_edges",
    "per_sample_environment_errors",
    "per_sample_power_spectrum",
    "power_spectrum_table",
    "cosmology_columns",
]

BOX_COLUMN = "box"
#: ``grouping`` of the per-pixel table (its groups are pixel labels, not the patches' attribute).
PIXEL_GROUPING = "pixel_environment"
ENVIRONMENT_ERROR_COLUMNS = ("grouping", "group", "pixels", "pixel_share", "boxes", "evidence", "mse_error", "ci_low",
                             "ci_high", "mae_error", "mae_ci_low", "mae_ci_high", "relative_error", "relative_ci_low",
                             "relative_ci_high")
POWER_SPECTRUM_COLUMNS = ("grouping", "group", "metric", "k_low", "k_high", "beyond_input", "patches", "boxes", "evidence",
                          "power_ratio", "ci_low", "ci_high")
_PREFIX = "cosmo_"


def octave_edges(size: int) -> tuple[float, ...]:
    """Octave bin edges of ``|k|`` for an ``size x size`` patch: ``1, 2, 4, ..., size / 2``.

    Bins are ``[edge_i, edge_{i+1})`` in units of the patch's fundamental; ``k = 0`` (the mean)
    and modes beyond the patch's Nyquist ``size / 2`` are left out.

    Raises:
        ValueError: ``size`` is under 4.

    Example:
        >>> octave_edges(16)
        (1.0, 2.0, 4.0, 8.0)
    """
    if size < 4:
        raise ValueError(f"a power spectrum needs patches of at least 4x4 pixels, got {size}")
    edges = [1.0]
    while edges[-1] * 2 <= size / 2:
        edges.append(edges[-1] * 2)
    return tuple(edges)


def per_sample_power_spectrum(images: Tensor, *, edges: Sequence[float]) -> Tensor:
    """Each image's binned power spectrum: the mean of ``|FFT(x - mean x)|^2 / (H W)`` over each bin's modes.

    Args:
        images: ``(N, C, H, W)`` float, square (``H == W``); channels are averaged first.
        edges: increasing bin edges of ``|k|`` (units of the fundamental ``2 pi / H``), e.g.
            :func:`octave_edges`; bin ``b`` holds ``edges[b] <= |k| < edges[b + 1]``.

    Returns:
        ``(N, len(edges) - 1)`` float, on the input's device.

    Raises:
        ValueError: images that are not ``(N, C, H, H)``, or a bin with no modes.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[0, 0, :, ::2] = 1.0  # 0.5 + 0.5 cos(pi x): all the power, 32^2 / 64, at k = (0, 4)
        >>> per_sample_power_spectrum(x, edges=(1.0, 4.0, 4.01))  # [4, 4.01) holds (0, 4) and (4, 0)
        tensor([[0., 8.]])
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be (N, C, H, H), got {tuple(images.shape)}")
    field = images.float().mean(dim=1)
    field = field - field.mean(dim=(-2, -1), keepdim=True)
    size = field.shape[-1]
    power = torch.fft.fft2(field).abs().square() / (size * size)
    k = torch.fft.fftfreq(size, d=1.0 / size, device=images.device)
    modulus = torch.hypot(k[:, None], k[None, :])
    columns = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (modulus >= low) & (modulus < high)
        if not bool(inside.any()):
            raise ValueError(f"power-spectrum bin [{low}, {high}) holds no modes of a {size}x{size} patch")
        columns.append(power[:, inside].mean(dim=1))
    return torch.stack(columns, dim=1)


def per_sample_environment_errors(preds: Tensor, target: Tensor, environments: Tensor, *,
                                  n_environments: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each image's squared and absolute errors summed over the pixels of each environment.

    Args:
        preds: ``(N, C, H, W)`` float in [0, 1].
        target: same shape as ``preds``.
        environments: ``(N, H, W)`` or ``(N, 1, H, W)`` integer codes in ``0 .. n_environments - 1``.
        n_environments: E.

    Returns:
        ``(squared, absolute, pixels)``, each ``(N, E)`` float: the sums of the channel-mean squared
        and absolute errors over each environment's pixels, and how many pixels it has.

    Raises:
        ValueError: shapes that differ, or a code out of range.

    Example:
        >>> preds, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.5, 0.1], [0.2, 0.0]]]])
        >>> squared, absolute, pixels = per_sample_environment_errors(
        ...     preds, target, torch.tensor([[[0, 0], [1, 1]]]), n_environments=3)
        >>> squared, pixels
        (tensor([[0.2600, 0.0400, 0.0000]]), tensor([[2., 2., 0.]]))
    """
    if preds.shape != target.shape:
        raise ValueError(f"preds and target must have the same shape, got {tuple(preds.shape)} and {tuple(target.shape)}")
    codes = environments.reshape(environments.shape[0], *environments.shape[-2:]).long()
    if codes.shape != (preds.shape[0], *preds.shape[-2:]):
        raise ValueError(f"environments must be (N, H, W) = {(preds.shape[0], *preds.shape[-2:])}, "
                         f"got {tuple(environments.shape)}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= n_environments):
        raise ValueError(f"environment codes must be in 0..{n_environments - 1}, got {int(codes.min())}..{int(codes.max())}")
    difference = preds.float() - target.float()
    one_hot = torch.nn.functional.one_hot(codes.flatten(1), n_environments).to(difference.dtype)  # (N, HW, E)
    squared = torch.einsum("np,npe->ne", difference.square().mean(dim=1).flatten(1), one_hot)
    absolute = torch.einsum("np,npe->ne", difference.abs().mean(dim=1).flatten(1), one_hot)
    return squared, absolute, one_hot.sum(dim=1)


def cosmology_columns(preds: Tensor, target: Tensor, environments: Tensor, *, environment_names: Sequence[str],
                      edges: Sequence[float]) -> dict[str, Tensor]:
    """The per-image columns the cosmology tables read: ``cosmo_{sse,sae,pixels,sst}_<env>``, ``cosmo_pk_{output,target}_<b>``.

    ``sst`` is the target's own summed square over the environment's pixels (the relative error's denominator).

    Args:
        preds, target: ``(N, C, H, W)`` in [0, 1]; environments: ``(N, H, W)`` codes into ``environment_names``.
        edges: the power-spectrum bins (:func:`octave_edges`).

    Returns:
        Column name -> ``(N,)`` float tensor.
    """
    squared, absolute, pixels = per_sample_environment_errors(preds, target, environments,
                                                              n_environments=len(environment_names))
    signal, _, _ = per_sample_environment_errors(torch.zeros_like(target), target, environments,
                                                 n_environments=len(environment_names))  # sum of target^2
    columns: dict[str, Tensor] = {}
    for e, name in enumerate(environment_names):
        columns.update({f"{_PREFIX}sse_{name}": squared[:, e], f"{_PREFIX}sae_{name}": absolute[:, e],
                        f"{_PREFIX}pixels_{name}": pixels[:, e], f"{_PREFIX}sst_{name}": signal[:, e]})
    for label, images in (("output", preds), ("target", target)):
        spectrum = per_sample_power_spectrum(images, edges=edges)
        columns.update({f"{_PREFIX}pk_{label}_{b}": spectrum[:, b] for b in range(spectrum.shape[1])})
    return columns


def _box_resamples(boxes: np.ndarray, values: np.ndarray, *, n_resamples: int, seed: int) -> tuple[np.ndarray, int]:
    """(B, M) resampled column totals: boxes drawn with replacement, each with all its rows; and the box count."""
    import numpy as np
    import pandas as pd

    from .resampling import _multiplicities, _rng

    codes, unique = pd.factorize(boxes, sort=True)
    per_box = np.stack([np.bincount(codes, weights=values[:, j], minlength=len(unique))
                        for j in range(values.shape[1])], axis=1)
    weights = _multiplicities(_rng(seed, 17), len(unique), n_resamples)
    return weights @ per_box, len(unique)


def _interval(estimate: float, resampled: np.ndarray, n_boxes: int, level: float) -> tuple[float, float]:
    """The expanded percentile interval of :mod:`genfair.audit.stats` about ``estimate``."""
    import numpy as np

    from .stats import _expand, _expansion, _quantiles

    factor = _expansion(np.array([n_boxes]), level, "expanded")
    spread = _expand(resampled[:, None, None], np.array([[estimate]]), factor)[:, 0, 0]
    low, high = _quantiles(spread, level)
    return float(low), float(high)


#: Per environment: the table's estimate, its interval's columns, and the (numerator, denominator) sums.
_ENVIRONMENT_ESTIMATES = (("mse_error", "ci_low", "ci_high", "sse", "pixels"),
                          ("mae_error", "mae_ci_low", "mae_ci_high", "sae", "pixels"),
                          ("relative_error", "relative_ci_low", "relative_ci_high", "sse", "sst"))
_ENVIRONMENT_SUMS = ("sse", "sae", "pixels", "sst")


def environment_error_table(per_image: pd.DataFrame, *, environment_names: Sequence[str], n_resamples: int = 1000,
                            level: float = 0.95, seed: int = 0, min_boxes: int = 5) -> pd.DataFrame:
    """Per-pixel MSE, MAE and relative squared error of each environment over the test split, with intervals over boxes.

    ``relative_error`` is the environment's summed squared error over its summed squared target
    (error power over signal power, both in image units), so a dense environment's larger values do
    not by themselves make its error look larger.

    Args:
        per_image: one row per patch with ``box`` and :func:`cosmology_columns`' ``sse``, ``sae``,
            ``pixels`` and ``sst`` columns.
        environment_names: the environments, in code order.
        n_resamples, level, seed: the box bootstrap (every environment of a drawn box together).
        min_boxes: fewest boxes with pixels of an environment for an interval.

    Returns:
        One row per environment (``grouping`` :data:`PIXEL_GROUPING`, ``group`` the environment),
        columns :data:`ENVIRONMENT_ERROR_COLUMNS`; ``pixel_share`` is the environment's share of all
        test pixels.
    """
    import numpy as np
    import pandas as pd

    at = {(name, kind): j for j, (name, kind) in enumerate((n, k) for n in environment_names for k in _ENVIRONMENT_SUMS)}
    values = per_image[[f"{_PREFIX}{kind}_{name}" for name, kind in at]].to_numpy(dtype=np.float64)
    boxes = per_image[BOX_COLUMN].astype(str).to_numpy()
    resampled, _ = _box_resamples(boxes, values, n_resamples=n_resamples, seed=seed)
    totals = values.sum(axis=0)
    all_pixels = sum(totals[at[(name, "pixels")]] for name in environment_names)
    rows = []
    for name in environment_names:
        pixels = totals[at[(name, "pixels")]]
        n_boxes = int(pd.Series(values[:, at[(name, "pixels")]] > 0).groupby(boxes).any().sum())
        row = {"grouping": PIXEL_GROUPING, "group": name, "pixels": int(pixels),
               "pixel_share": pixels / all_pixels if all_pixels else np.nan, "boxes": n_boxes,
               "evidence": "sufficient" if n_boxes >= min_boxes else "insufficient"}
        for estimate, low, high, numerator, denominator in _ENVIRONMENT_ESTIMATES:
            top, bottom = at[(name, numerator)], at[(name, denominator)]
            row[estimate] = totals[top] / totals[bottom] if totals[bottom] else np.nan
            row[low] = row[high] = np.nan
            if row["evidence"] == "sufficient":
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = resampled[:, top] / resampled[:, bottom]
                row[low], row[high] = _interval(row[estimate], ratio, n_boxes, level)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ENVIRONMENT_ERROR_COLUMNS))


def power_spectrum_table(per_image: pd.DataFrame, *, attribute: str, edges: Sequence[float], input_nyquist: float,
                         n_resamples: int = 1000, level: float = 0.95, seed: int = 0, min_boxes: int = 5) -> pd.DataFrame:
    """Output over target power per k-bin, for all patches and per dominant environment, with intervals over boxes.

    Args:
        per_image: one row per patch with ``box``, ``attribute`` and :func:`cosmology_columns`'
            ``pk`` columns.
        attribute: the patch-level environment column (e.g. ``environment``).
        edges: the bins the ``pk`` columns were made with.
        input_nyquist: the low-resolution input's Nyquist ``|k|`` (``H / (2 s)``); a bin with
            ``k_high > input_nyquist`` is marked ``beyond_input``.
        n_resamples, level, seed, min_boxes: as :func:`environment_error_table` (boxes resampled
            within each group).

    Returns:
        Rows of grouping ``overall`` (group ``all``) then of ``attribute``'s groups, each per bin
        (``metric`` names the bin: ``k_4_8``); columns :data:`POWER_SPECTRUM_COLUMNS`.
    """
    import numpy as np
    import pandas as pd

    n_bins = len(edges) - 1
    columns = [f"{_PREFIX}pk_{label}_{b}" for label in ("output", "target") for b in range(n_bins)]
    rows = []
    groups = [("overall", "all", per_image)]
    groups += [(attribute, str(g), part) for g, part in per_image.groupby(attribute, sort=True)]
    for number, (grouping, group, part) in enumerate(groups):
        values = part[columns].to_numpy(dtype=np.float64)
        resampled, n_boxes = _box_resamples(part[BOX_COLUMN].astype(str).to_numpy(), values,
                                            n_resamples=n_resamples, seed=seed + number)
        totals = values.sum(axis=0)
        for b in range(n_bins):
            row = {"grouping": grouping, "group": group, "metric": f"k_{edges[b]:g}_{edges[b + 1]:g}", "k_low": edges[b], "k_high": edges[b + 1], "beyond_input": edges[b + 1] > input_nyquist,
                   "patches": len(part), "boxes": n_boxes,
                   "evidence": "sufficient" if n_boxes >= min_boxes else "insufficient",
                   "power_ratio": totals[b] / totals[n_bins + b], "ci_low": np.nan, "ci_high": np.nan}
            if row["evidence"] == "sufficient":
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = resampled[:, b] / resampled[:, n_bins + b]
                row["ci_low"], row["ci_high"] = _interval(row["power_ratio"], ratio, n_boxes, level)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(POWER_SPECTRUM_COLUMNS))
