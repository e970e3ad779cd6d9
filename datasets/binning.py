"""Numeric attributes as groups: bins by edges or by quantiles of the people, and the rule that refuses
a numeric column with many values unbinned.

A column of numbers with many distinct values (age) is not a set of categories: unbinned, each
age would be a group of one or two people. :func:`bin_column` turns it into labelled intervals,
``age=18,30,45,65`` (edges) or ``age=quantiles:4`` (edges at the quantiles of the *people*, each
subject counted once, so the groups hold about equally many people). Intervals are closed on the
left and open on the right, except the last, which holds its upper edge too::

    edges 18, 30, 45, 65  ->  [18, 30) [30, 45) [45, 65]

Labels name the column and the interval: for whole numbers ``age 18-29``, ``age 30-44``,
``age 45-65`` (both ends included, as people read ages); otherwise ``bmi [18.5, 25)``. A value
outside the edges is an error, never a silent group of its own.

Pure numpy and pandas: no file is read here; :func:`genfair.datasets.load_manifest` applies it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MAX_CATEGORIES",
    "Bins",
    "bin_column",
    "numeric_values",
    "parse_bins",
    "parse_bins_mapping",
    "suggest_bins",
]

MAX_CATEGORIES = 10
"""A numeric attribute with more distinct values than this must be binned (``--bins``)."""

ERR_BAD_BINS = "bad bins"
_QUANTILES = re.compile(r"^quantiles:(\d+)$")


@dataclass(frozen=True)
class Bins:
    """How one numeric column becomes groups: explicit ``edges`` or ``quantiles`` of its people.

    Attributes:
        column: the attribute column.
        edges: ``k + 1`` strictly increasing edges of ``k`` intervals, or ``None``.
        quantiles: the number of quantile groups (2 or more), or ``None``.
    """

    column: str
    edges: tuple[float, ...] | None = None
    quantiles: int | None = None

    def __post_init__(self) -> None:
        if (self.edges is None) == (self.quantiles is None):
            raise ValueError(f"{ERR_BAD_BINS} for {self.column!r}: give edges or a number of quantiles, not both")
        if self.quantiles is not None and self.quantiles < 2:
            raise ValueError(f"{ERR_BAD_BINS} for {self.column!r}: quantiles:{self.quantiles} makes one group; "
                             f"fix: use quantiles:2 or more")
        if self.edges is not None:
            edges = np.asarray(self.edges, dtype=float)
            if len(edges) < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
                raise ValueError(
                    f"{ERR_BAD_BINS} for {self.column!r}: edges {list(self.edges)} must be at least two finite, "
                    f"strictly increasing numbers; fix: e.g. {self.column}=18,30,45,65"
                )

    @property
    def spec(self) -> str:
        """The text form, as ``--bins`` takes it: ``age=18,30,45,65`` or ``age=quantiles:4``."""
        if self.quantiles is not None:
            return f"{self.column}=quantiles:{self.quantiles}"
        return f"{self.column}=" + ",".join(_number(edge) for edge in self.edges or ())


def parse_bins(column: str, spec: str | Sequence[float] | int | Bins) -> Bins:
    """Read one column's bins: ``"18,30,45,65"``, ``"quantiles:4"``, a sequence of edges, or a :class:`Bins`.

    Raises:
        ValueError: one line with the problem and an example of the right form.
    """
    if isinstance(spec, Bins):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        match = _QUANTILES.match(text)
        if match:
            return Bins(column, quantiles=int(match.group(1)))
        try:
            edges = tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(
                f"{ERR_BAD_BINS} {column}={spec!r}: expected edges or quantiles:K; fix: e.g. --bins {column}=18,30,45,65 "
                f"or --bins {column}=quantiles:4"
            ) from None
        return Bins(column, edges=edges)
    return Bins(column, edges=tuple(float(edge) for edge in spec))


def parse_bins_mapping(bins: Mapping[str, str | Sequence[float] | Bins] | None) -> dict[str, Bins]:
    """Every column's :class:`Bins` from a mapping ``column -> spec`` (see :func:`parse_bins`)."""
    return {str(column): parse_bins(str(column), spec) for column, spec in (bins or {}).items()}


def numeric_values(values: pd.Series) -> np.ndarray:
    """``(N,)`` float: each cell as a number, NaN where it is not one (text cells are stripped first)."""
    return pd.to_numeric(values.astype("str").str.strip(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def bin_column(numbers: np.ndarray, subjects: np.ndarray, bins: Bins) -> tuple[np.ndarray, tuple[float, ...]]:
    """Each value's interval label, and the edges used.

    Args:
        numbers: ``(N,)`` float, finite, one per image.
        subjects: ``(N,)`` the subject of each image (quantiles count each subject once, at its
            first value).
        bins: the edges, or the number of quantile groups.

    Returns:
        ``(N,)`` object array of labels (``"age 18-29"``), and the ``k + 1`` edges. Quantile edges
        that coincide (many people of one age) merge, so there may be fewer groups than asked.

    Raises:
        ValueError: a value below the first edge or above the last; the message names the first
            such value and how many there are (callers add the row).
    """
    integer = bool(np.all(numbers == np.round(numbers)))
    if bins.quantiles is not None:
        first = pd.Series(numbers).groupby(pd.Series(subjects).to_numpy(), sort=False).first().to_numpy()
        levels = np.linspace(0.0, 1.0, bins.quantiles + 1)
        # "inverted_cdf": every edge is a value some person has, so whole-number ages keep whole-number edges
        edges = np.unique(np.quantile(first, levels, method="inverted_cdf"))
        edges[0], edges[-1] = first.min(), first.max()
        if len(edges) < 2:  # everyone has the same value
            edges = np.array([edges[0], edges[0] + 1.0])
    else:
        edges = np.asarray(bins.edges, dtype=float)
    below, above = numbers < edges[0], numbers > edges[-1]
    outside = below | above
    if outside.any():
        position = int(np.flatnonzero(outside)[0])
        side = "below the first edge" if below[position] else "above the last edge"
        raise ValueError(
            f"value {_number(numbers[position])} is {side} of {bins.spec} ({int(outside.sum())} value(s) outside "
            f"{_number(edges[0])}..{_number(edges[-1])})"
        )
    # intervals [e_i, e_i+1), the last one closed: searchsorted(side="right") - 1, clipped to the last interval
    which = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, len(edges) - 2)
    labels = np.array([_label(bins.column, edges, i, integer) for i in range(len(edges) - 1)], dtype=object)
    return labels[which], tuple(float(edge) for edge in edges)


def suggest_bins(column: str, numbers: np.ndarray, subjects: np.ndarray) -> str:
    """A ``--bins`` line from the column's own quartiles over its people: ``age=18,24,29,37,66``."""
    first = pd.Series(numbers).groupby(pd.Series(subjects).to_numpy(), sort=False).first().to_numpy()
    edges = np.quantile(first, [0.0, 0.25, 0.5, 0.75, 1.0])
    if np.all(first == np.round(first)):
        edges = np.round(edges)
        edges[0], edges[-1] = math.floor(first.min()), math.ceil(first.max())
    return Bins(column, edges=tuple(np.unique(edges))).spec if len(np.unique(edges)) > 1 else f"{column}=quantiles:2"


def _label(column: str, edges: np.ndarray, i: int, integer: bool) -> str:
    low, high = edges[i], edges[i + 1]
    last = i == len(edges) - 2
    if integer and low == round(low) and high == round(high):
        top = high if last else high - 1
        return f"{column} {_number(low)}-{_number(top)}" if top > low else f"{column} {_number(low)}"
    return f"{column} [{_number(low)}, {_number(high)}{']' if last else ')'}"


def _number(value: float) -> str:
    """``18.0`` -> ``"18"``, ``18.5`` -> ``"18.5"``."""
    return f"{value:g}" if value != round(value) else str(int(round(value)))
