"""The resampling engine of the audit statistics: subject clusters, cluster bootstrap, relabelling tests.

Pure functions over per-cluster sums, shared by :mod:`genfair.audit.stats`,
:mod:`genfair.audit.compare` and :mod:`genfair.audit.attribution`. A *cluster* is one subject
within one group: its images' metric totals and its number of images. What the statistics
mean, and why they resample subjects, is told in :mod:`genfair.audit.stats`; this module
only makes them fast:

- **Bootstrap** (:func:`_bootstrap_means`): ``B`` resamples of each group's ``n`` subjects
  are ``rng.integers(0, n, (B, n))``, drawn in blocks of about :data:`_RESAMPLE_BLOCK`
  draws so that the draws and what is computed from them stay in the processor's cache (at
  1,000,000 images, blocks of 4M draws took twice as long). The draws are the same whatever
  the block size, so equal seeds give equal resamples.
- **Relabelling tests** (:func:`_permutation_tests`): one set of shuffles of the subject ->
  group labels gives both the per-group p-values ("this group is served worse than the
  rest") and the disparity p-value ("the groups' true means are equal"). Each is the usual
  ``(1 + #{T* >= T}) / (1 + n_permutations)``; sharing the shuffles halves the work (a
  shuffle of 100,000 labels costs ~10 ns a label, most of the test's time).

numpy, pandas and scipy are imported inside the functions so that importing
``genfair.audit`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Most elements of one block of permutation indices in :mod:`genfair.audit.compare`'s
#: representation tests (bounds memory).
_BLOCK = 1 << 22
#: Most draws in one block of bootstrap resamples: the draws, multiplicities and weights of a
#: block (2 MiB each) stay in cache.
_RESAMPLE_BLOCK = 1 << 18
#: Most labels in one block of shuffles (and of pairwise Welch statistics) of the relabelling tests.
_PERMUTATION_BLOCK = 1 << 20


@dataclass(frozen=True)
class _Clusters:
    """The subjects of one grouping, as clusters (one per subject within a group).

    Attributes:
        group: (K,) int64 group index of each cluster.
        sums: (K, M) float64 sum of each metric over the cluster's images.
        counts: (K,) float64 number of images of each cluster.
        n_groups: G.
    """

    group: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    n_groups: int

    def n_subjects(self) -> np.ndarray:
        """(G,) int64 number of clusters (subjects) per group."""
        import numpy as np

        return np.bincount(self.group, minlength=self.n_groups).astype(np.int64)


def _clusters(codes: np.ndarray, subjects: np.ndarray, values: np.ndarray, n_groups: int) -> _Clusters:
    """Sum ``values`` (N, M) per (group, subject) cluster; ``subjects`` are int codes.

    Clusters come in order of (group, subject code), so each group's clusters are contiguous.
    """
    import numpy as np
    import pandas as pd

    n_subjects = int(subjects.max()) + 1 if subjects.size else 0
    keys = codes.astype(np.int64) * n_subjects + subjects
    inverse, unique = pd.factorize(keys, sort=True)  # np.unique's result, hashed instead of sorted: 3x faster
    k = unique.size
    sums = np.empty((k, values.shape[1]))
    for j in range(values.shape[1]):
        sums[:, j] = np.bincount(inverse, weights=values[:, j], minlength=k)
    counts = np.bincount(inverse, minlength=k).astype(np.float64)
    return _Clusters(group=unique // max(n_subjects, 1), sums=sums, counts=counts, n_groups=n_groups)


def _multiplicities(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """(rows, n) float64: how often each of ``n`` units is drawn in each of ``rows`` resamples."""
    import numpy as np

    draws = rng.integers(0, n, size=(rows, n))
    draws += (np.arange(rows, dtype=np.int64) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def _bootstrap_means(
    clusters: _Clusters, include: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, G, M) resampled group means: subjects drawn with replacement within each group.

    A resample's group mean is the sum of the drawn subjects' totals over the sum of their
    image counts. Groups not in ``include`` are NaN. The draws are
    ``rng.integers(0, n, (B, n))`` for each included group in turn (``n`` its subjects),
    made in blocks of about :data:`_RESAMPLE_BLOCK` draws; however the sums are then formed,
    they are the same draws. When one column has to be summed (one metric, and every
    subject of the group has the same number of images, so that every resample has ``n``
    times as many) the drawn subjects' totals are summed directly; otherwise how often each
    subject is drawn is counted and multiplied in (one product for every metric and the
    image counts).
    """
    import numpy as np

    m = clusters.sums.shape[1]
    out = np.full((n_resamples, clusters.n_groups, m), np.nan)
    order = np.argsort(clusters.group, kind="stable")
    bounds = np.searchsorted(clusters.group[order], np.arange(clusters.n_groups + 1))
    for g in range(clusters.n_groups):
        if not include[g]:
            continue
        members = order[bounds[g] : bounds[g + 1]]
        sums, counts = clusters.sums[members], clusters.counts[members]
        n = members.size
        fixed = n > 0 and bool(np.all(counts == counts[0]))  # then every resample has n * counts[0] images
        column = np.ascontiguousarray(sums[:, 0]) if fixed and m == 1 else None
        step = max(1, _RESAMPLE_BLOCK // max(n, 1))
        for start in range(0, n_resamples, step):
            rows = min(step, n_resamples - start)
            with np.errstate(invalid="ignore", divide="ignore"):  # a non-finite subject makes a NaN group
                if column is not None:
                    totals = np.take(column, rng.integers(0, n, size=(rows, n))).sum(axis=1)[:, None]
                    images = np.full(rows, n * counts[0])
                else:
                    weights = _multiplicities(rng, n, rows)
                    totals = weights @ sums
                    images = np.full(rows, n * counts[0]) if fixed else weights @ counts
                out[start : start + rows, g, :] = totals / images[:, None]
    return out


def _range_statistic(moments: tuple[np.ndarray | None, ...], n_clusters: np.ndarray, studentized: bool) -> np.ndarray:
    """(R,) disparity statistic of each row of group moments.

    ``moments`` are five (R, G) arrays, each group's sums over its clusters of ``S`` (the
    cluster's metric total), ``c`` (its image count), ``S^2``, ``S*c`` and ``c^2``; the
    last three may be None when ``studentized`` is False. ``n_clusters`` (G,) are the
    groups' numbers of clusters.

    Unstudentized: ``max - min`` of the group means (each the sum of its images' values over
    their number). Studentized: for every pair of groups Welch's statistic
    ``t = |m_g - m_h| / sqrt(se_g^2 + se_h^2)``, with ``se_g`` the subject-clustered standard
    error of group ``g``'s mean (the linearised variance of a ratio of cluster totals) and
    Welch-Satterthwaite degrees of freedom from the two groups' subject counts; the statistic
    is the largest ``-log(p)`` over pairs, ``p`` the two-sided Student-t tail of ``t``. Taking
    the t tail (rather than ``t`` itself) lets a 5-subject group with a noisy mean count
    less than a 40-subject one, so the permutation distribution fits the null's better.
    """
    import numpy as np
    from scipy.special import stdtr

    s, c, ss, sc, cc = moments
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        means = s / c
        if not studentized:
            return means.max(axis=-1) - means.min(axis=-1)
        n = n_clusters.astype(np.float64)
        residual = np.maximum(ss - 2.0 * means * sc + means * means * cc, 0.0)
        variance = n / (n - 1.0) * residual / (c * c)
        gap = np.abs(means[..., :, None] - means[..., None, :])
        v_g, v_h = variance[..., :, None], variance[..., None, :]
        scale = np.sqrt(v_g + v_h)
        tolerance = 1e-12 * np.maximum(np.abs(means[..., :, None]), np.abs(means[..., None, :]))
        t = np.where(gap <= tolerance, 0.0, np.where(scale > 0, gap / scale, np.inf))
        df = (v_g + v_h) ** 2 / (v_g**2 / (n[:, None] - 1.0) + v_h**2 / (n[None, :] - 1.0))
        df = np.where(np.isfinite(df) & (df > 0), df, 1.0)
        statistic = -np.log(2.0 * stdtr(df, -t))
    return statistic.reshape(statistic.shape[:-2] + (-1,)).max(axis=-1)


def _permutation_tests(
    clusters: _Clusters,
    column: int,
    eligible: np.ndarray,
    higher: bool,
    n_permutations: int,
    rng: np.random.Generator,
    *,
    studentized: bool,
) -> tuple[np.ndarray, float]:
    """Per-group and disparity permutation p-values of one metric, from the same relabellings.

    Only clusters of ``eligible`` groups take part. Each permutation shuffles their group
    labels (each subject keeps all its images, each group its number of subjects) and
    recomputes every group's moments:

    - per group ``g`` (returned (G,), NaN for the groups not eligible): one-sided "``g`` is
      served worse than the other eligible groups", statistic ``mean(g) - mean(rest)`` of
      the images, sign flipped when ``higher`` (scores);
    - the disparity (returned float): "the eligible groups' true means are equal", the
      statistic of :func:`_range_statistic`.

    ``p = (1 + #{T* >= T}) / (1 + n_permutations)`` (a permuted value within a relative 1e-9
    of ``T`` counts as reaching it). Everything is NaN with 0 permutations or fewer than 2
    eligible groups. The shuffles are ``rng.permuted`` of the labels in blocks of rows, the
    same draws whatever the block size.
    """
    import numpy as np

    p_groups = np.full(clusters.n_groups, np.nan)
    if n_permutations == 0 or eligible.sum() < 2:
        return p_groups, float("nan")
    keep = eligible[clusters.group]
    labels = (np.cumsum(eligible) - 1)[clusters.group[keep]]
    sums, counts = clusters.sums[keep, column], clusters.counts[keep]
    g, k = int(eligible.sum()), labels.size
    n_clusters = np.bincount(labels, minlength=g)
    # With one image count for every subject, a group's count totals are that count times its
    # number of subjects, which relabelling keeps: only the metric's totals need summing.
    fixed = bool(np.all(counts == counts[0]))
    step = max(1, _PERMUTATION_BLOCK // (k + (g * g if studentized else 0)))
    rows_max = min(step, n_permutations)
    weights = [sums] + ([] if fixed else [counts])
    if studentized:
        weights += [sums * sums] + ([] if fixed else [sums * counts, counts * counts])
    tiled = [np.tile(w, rows_max) for w in weights]
    offsets = (np.arange(rows_max, dtype=np.int64) * g)[:, None]

    def moments(shuffled: np.ndarray) -> tuple[np.ndarray | None, ...]:
        """The five (R, g) moment sums of rows of labels (R, K); see :func:`_range_statistic`."""
        rows = shuffled.shape[0]
        flat = (shuffled + offsets[:rows]).ravel()
        totals = [np.bincount(flat, w[: rows * k], rows * g).reshape(rows, g) for w in tiled]
        s = totals.pop(0)
        c = np.broadcast_to(counts[0] * n_clusters, s.shape) if fixed else totals.pop(0)
        if not studentized:
            return s, c, None, None, None
        ss = totals.pop(0)
        if fixed:
            return s, c, ss, counts[0] * s, np.broadcast_to(counts[0] ** 2 * n_clusters, s.shape)
        return s, c, ss, totals[0], totals[1]

    total_sum, total_count = sums.sum(), counts.sum()
    sign = -1.0 if higher else 1.0

    def served_worse(s: np.ndarray, c: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return sign * (s / c - (total_sum - s) / (total_count - c))

    observed_moments = moments(labels[None, :])
    observed_groups = served_worse(*observed_moments[:2])[0]
    observed_range = _range_statistic(observed_moments, n_clusters, studentized)[0]
    scale = float(np.max(np.abs(sums / counts)))
    group_tolerance = 1e-9 * max(scale, float(np.max(np.abs(observed_groups))))
    range_tolerance = 1e-9 * (1.0 if studentized else max(scale, 1e-300))
    exceed_groups = np.zeros(g)
    exceed_range = 0
    # Shuffled in place in a C-ordered buffer: rng.permuted of a broadcast array returns it in
    # Fortran order, where each row's shuffle strides through memory (1.5-2x slower; same draws).
    buffer = np.empty((rows_max, k), dtype=np.int64)
    for start in range(0, n_permutations, step):
        rows = min(step, n_permutations - start)
        shuffled = buffer[:rows]
        shuffled[...] = labels
        rng.permuted(shuffled, axis=1, out=shuffled)
        permuted = moments(shuffled)
        exceed_groups += (served_worse(*permuted[:2]) >= observed_groups - group_tolerance).sum(axis=0)
        exceed_range += int((_range_statistic(permuted, n_clusters, studentized) >= observed_range - range_tolerance).sum())
    p_groups[eligible] = (1.0 + exceed_groups) / (1.0 + n_permutations)
    return p_groups, (1.0 + exceed_range) / (1.0 + n_permutations)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """A generator for one named stream of draws: equal seeds give equal draws."""
    import numpy as np

    return np.random.default_rng([seed, *stream])
