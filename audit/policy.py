"""The fairness policy and the checks behind ``audit check``: pure functions over audit results.

A **policy** (a TOML file, :func:`load_policy`) says how unfair a model may be. A **check**
(:func:`check`) recomputes the audit statistics from a result's per-image frame with the
policy's options, judges every rule, and returns a :class:`CheckReport`: one row per rule
evaluation, each ``"pass"``, ``"warn"`` or ``"fail"``. :func:`junit_xml` renders the report
for CI systems. Nothing here logs to MLflow, prints or exits: the CLI does that.

**Absolute rules** (the run against the policy's limits), per grouping (each sensitive
attribute, and their intersection when there are two or more; ``groupings`` restricts them):

- ``metrics.<metric>.max_ratio`` / ``min_ratio``: the disparity ratio ``worst / best``
  (above 1 for ``*_error`` metrics, so a maximum; below 1 for ``*_score`` metrics, so a
  minimum). ``max_difference``: ``|worst - best|`` in the metric's units. ``max_worst`` /
  ``min_worst``: the worst group's mean. Values, intervals and p-values are those of
  :func:`genfair.audit.interval_tables` (groups with too few subjects left out).
- ``skin_tone.max_abs_shift``: every group's mean ΔITA (degrees, output minus original,
  the ``ita_shift`` column), the overall mean included, must lie within ``±limit``;
  ``skin_tone.max_difference``: the gap between the most and the least lightened group.
- ``lightness.max_abs_shift`` / ``lightness.max_difference``: the same for the shift of the
  skin's perceptual lightness ΔL* (L* units, 0 black to 100 white; the ``lightness_shift``
  column; positive: the output is lighter).
- ``hue.max_abs_shift`` / ``hue.max_difference``: the same for the shift of the skin's hue
  angle Δh* (degrees, ``h* = atan2(b*, a*)``; the ``hue_shift`` column; positive: yellower,
  negative: redder). Neither sign is the harm, so both rules are symmetric: ``|mean| <= limit``
  and the gap ``max - min`` between groups (:data:`genfair.audit.metrics.MEASURE_DIRECTIONS`).
- ``identity.max_drift`` / ``identity.max_lost_share`` (``audit run --identity``): every
  group's mean identity drift (face-embedding distance, output to original, the
  ``identity_drift`` column) and every group's share of outputs no longer recognised as their
  original (``identity_lost``: drift at or above dlib's 0.6), the overall group included, must not
  exceed the limit; ``identity.max_difference``: the gap in mean drift between the most and the
  least drifted group. Regression quantities ``identity_drift`` and ``identity_lost``.
- ``attribute_preservation.max_gap``: per attribute ``a``, the groups of ``a`` have each a
  kept rate (the share of their outputs that the attribute classifier labels as it labels the
  output's own original, ``classified_<a>_output == classified_<a>``: one minus the flip rate
  of :func:`genfair.audit.label_noise.label_flips`, so the classifier's own mistakes are not
  the model's); the gap ``max - min`` of those rates must not exceed the limit. It is judged on the grouping by ``a`` alone, whatever
  ``groupings`` says. Where the run's ``classifier_validity`` table (``result.tables``) marks a
  group of ``a`` unreliable for ``a``, the gap is not judged (the verdict of
  ``insufficient_evidence``, the groups named), nor is its regression: flips read by an
  instrument that misreads a group are not evidence about the model.

**Judging a limit** (``judge``). With ``"interval"`` (the default) a rule *fails* when the
whole confidence interval is beyond the limit (for a maximum: the lower bound exceeds it),
*warns* when only the point estimate is beyond it, and passes otherwise. With
``"estimate"`` it fails when the point estimate is beyond the limit. A value without an
interval (a non-finite estimate) cannot fail under ``"interval"``: it warns instead.

**Insufficient evidence.** A group with fewer than ``min_subjects`` subjects has no interval
and takes no part in the disparities (:mod:`genfair.audit.stats`). It is never reported as
fair: each such group gets a ``min_subjects`` row, a per-group rule on it (a mean shift) is not
judged, and a disparity with fewer than two groups to compare is not judged; all of those
rows get the policy's ``insufficient_evidence`` verdict (``"fail"`` or ``"warn"``).

**Regression rules** (the run against a baseline audit, :func:`regression_rules`): for every
quantity the policy names (each metric, ΔITA, ΔL*, Δh*, attribute preservation) and grouping, the
disparity ``|worst - best|`` may not grow by more than ``regression.tolerance.<quantity>``
(in the quantity's units, default 0) *and* significantly. ``value`` is the worsening
``disparity(run) - disparity(baseline)`` (positive: the run is less fair). This is a
non-inferiority test with the tolerance as its margin: a rule fails when the whole interval
of the worsening lies above the tolerance (its lower bound is a one-sided
``(1 + level) / 2`` confidence bound: 97.5% by default), warns when only the point worsening
does, and passes otherwise.

- ``method = "paired"``, when both audits cover the same images (same ``path`` set, and
  the same manifest file where both recorded its SHA-256: :func:`genfair.audit.result.pairing_problem`):
  :func:`genfair.audit.compare_models`'s paired cluster bootstrap gives the interval (the
  same people resampled for both audits). Its one-sided sign-flip permutation test of "the
  run is less fair than the baseline", Holm-adjusted across the paired rows, is reported
  beside it as ``p_value`` but does not decide: it tests a worsening of 0, not of the
  tolerance, and with 5 people in a group no sign-flip p-value can go below 1/32, so after
  Holm it could never fail a regression on a small panel (a 3x error for one group of 5
  people gives p_holm ~ 0.45 while its interval lies far above the tolerance).
- ``method = "unpaired"``, when the images differ: each audit's own disparity interval;
  ``ci_low = run.ci_low - baseline.ci_high`` and ``ci_high = run.ci_high - baseline.ci_low``
  (a conservative interval for the worsening, no p-value). Fail when ``ci_low`` exceeds the
  tolerance (the run's interval lies above the baseline's by more than it); warn when
  only the point worsening does.

A result checked against itself, or an identical re-run, has a worsening of exactly 0 and
never fails. ``judge`` does not apply to regression rules.

The rows (:data:`RULE_COLUMNS`) name in ``rule`` the policy key whose value is the row's
``limit`` (``"metrics.mse_error.max_ratio"``, ``"min_subjects"``,
``"regression.tolerance.mse_error"``), so a failure says what to look at. numpy, pandas
and scipy are imported inside the functions.
"""

from __future__ import annotations

import difflib
import logging
import math
import numbers
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .grouping import GROUPING_SEPARATOR, OVERALL_GROUPING, _higher_is_better
from .metrics import MEASURE_DIRECTIONS, METRICS
from .stats import EVIDENCE_INSUFFICIENT, StatsConfig

if TYPE_CHECKING:
    import pandas as pd

    from .result import AuditResult

__all__ = [
    "CHECKS",
    "RULE_COLUMNS",
    "VERDICTS",
    "CheckReport",
    "HueLimits",
    "IdentityLimits",
    "LightnessLimits",
    "MetricLimits",
    "Policy",
    "PolicyError",
    "PreservationLimits",
    "RegressionOptions",
    "SkinToneLimits",
    "absolute_rules",
    "check",
    "junit_xml",
    "load_policy",
    "parse_policy",
    "regression_rules",
]

logger = logging.getLogger(__name__)

#: The kinds of check a rule row belongs to.
CHECKS = ("absolute", "regression")
#: Rule verdicts, from best to worst.
VERDICTS = ("pass", "warn", "fail")
#: Values of ``insufficient_evidence`` and ``judge``.
INSUFFICIENT_EVIDENCE_VERDICTS = ("fail", "warn")
JUDGES = ("interval", "estimate")
#: The per-image columns of the skin-colour shifts (output minus original): ΔITA (degrees),
#: ΔL* (L* units) and Δh* (degrees).
ITA_SHIFT_COLUMN = "ita_shift"
LIGHTNESS_SHIFT_COLUMN = "lightness_shift"
HUE_SHIFT_COLUMN = "hue_shift"
#: The columns of :attr:`CheckReport.rules`, in order.
RULE_COLUMNS = (
    "check",
    "rule",
    "grouping",
    "metric",
    "group",
    "method",
    "value",
    "ci_low",
    "ci_high",
    "limit",
    "p_value",
    "verdict",
    "reason",
)
#: The metric label of attribute-preservation rows, and the policy sections.
PRESERVATION = "attribute_preservation"
SKIN_TONE = "skin_tone"
LIGHTNESS = "lightness"
HUE = "hue"
#: The identity section (``audit run --identity``) and its per-image columns (genfair.audit.identity).
IDENTITY = "identity"
IDENTITY_DRIFT_COLUMN = "identity_drift"
IDENTITY_LOST_COLUMN = "identity_lost"

# Messages reused by the tests: each raise appends what it received.
POLICY_NOT_FOUND_MSG = "policy file not found"
POLICY_UNREADABLE_MSG = "cannot read policy file"
INVALID_TOML_MSG = "is not valid TOML"
UNKNOWN_KEY_MSG = "unknown key"
BAD_VALUE_MSG = "is invalid"
NOTHING_TO_CHECK_MSG = "the policy checks nothing"
MISSING_QUANTITY_MSG = "the audit has no data for policy key"
NO_ATTRIBUTES_MSG = "the audit result does not say its sensitive attributes"
BAD_RULES_MSG = "CheckReport.rules must be a DataFrame with the columns of RULE_COLUMNS"
BAD_VERDICT_MSG = "CheckReport.rules has a verdict outside"

_TOP_KEYS = (
    "min_subjects",
    "insufficient_evidence",
    "judge",
    "groupings",
    "statistics",
    "metrics",
    SKIN_TONE,
    LIGHTNESS,
    HUE,
    IDENTITY,
    PRESERVATION,
    "regression",
)
_STATISTICS_KEYS = ("n_resamples", "n_permutations", "level", "seed", "interval", "studentized")
_SKIN_KEYS = ("max_abs_shift", "max_difference")
_IDENTITY_KEYS = ("max_drift", "max_lost_share", "max_difference")
_PRESERVATION_KEYS = ("max_gap", "attributes")
_REGRESSION_KEYS = ("tolerance",)
#: Limits of a metric, by direction: lower is better (errors) / higher is better (scores).
_ERROR_LIMITS = ("max_ratio", "max_difference", "max_worst")
_SCORE_LIMITS = ("min_ratio", "max_difference", "min_worst")
_ERROR_NOTE = "an error: lower is better"
_SCORE_NOTE = "a score: higher is better"
_ALL_LIMITS = ("max_ratio", "min_ratio", "max_difference", "max_worst", "min_worst")
#: Rules whose rows judge one group (the others judge a whole grouping).
_PER_GROUP_RULES = ("min_subjects", f"{SKIN_TONE}.max_abs_shift", f"{LIGHTNESS}.max_abs_shift", f"{HUE}.max_abs_shift",
                    f"{IDENTITY}.max_drift", f"{IDENTITY}.max_lost_share")
#: Relative slack under which a worsening counts as none (floating-point noise).
_NUMERICAL_SLACK = 1e-9

Verdict = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class _ShiftSection:
    """A policy section that limits a signed skin-colour shift: its per-image column and its words."""

    column: str
    symbol: str  # ΔITA
    unit: str  # appended to a value: "°", " L*"
    expected: str  # what a limit must be, for the error
    positive: str  # what a positive mean says about the outputs
    negative: str


#: The skin-colour sections, in the order the policy and its rows take them.
_SHIFT_SECTIONS: dict[str, _ShiftSection] = {
    SKIN_TONE: _ShiftSection(ITA_SHIFT_COLUMN, "ΔITA", "°", "a number of degrees >= 0", "lighter", "darker"),
    LIGHTNESS: _ShiftSection(LIGHTNESS_SHIFT_COLUMN, "ΔL*", " L*", "a number of L* units >= 0", "lighter", "darker"),
    HUE: _ShiftSection(HUE_SHIFT_COLUMN, "Δh*", "°", "a number of degrees >= 0", "yellower", "redder"),
}


class PolicyError(ValueError):
    """A policy that cannot be used; the one-line message names the file and the dotted key."""


def _suggest(key: str, allowed: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``allowed``, or ``""``."""
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(dotted: str, allowed: Sequence[str], note: str = "") -> PolicyError:
    """The error for an unknown key: what is allowed and the closest valid key."""
    key = dotted.rsplit(".", 1)[-1]
    return PolicyError(
        f"{UNKNOWN_KEY_MSG} {dotted!r}{note}; expected one of {sorted(allowed)}{_suggest(key, allowed)}"
    )


def _invalid(dotted: str, expected: str, value: Any) -> PolicyError:
    """The error for a key with a value of the wrong type or out of range."""
    return PolicyError(f"{dotted!r} {BAD_VALUE_MSG}: expected {expected}, got {value!r} ({type(value).__name__})")


def _number(value: Any, dotted: str, expected: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float if it is a finite real number (not a bool) with ``ok(value)``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not ok(float(value))
    ):
        raise _invalid(dotted, expected, value)
    return float(value)


def _choice(value: Any, dotted: str, choices: Sequence[str]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise _invalid(dotted, f"one of {list(choices)}", value)


def _names(value: Any, dotted: str) -> tuple[str, ...]:
    """``value`` as a tuple of distinct non-empty strings, or raise."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(item, str) and item for item in value)
        or len(set(value)) != len(value)
    ):
        raise _invalid(dotted, "a non-empty list of distinct names", value)
    return tuple(value)


# --- the policy ---------------------------------------------------------------------------------------


def _metric_direction(metric: Any) -> bool:
    """``higher_is_better`` of a metric named in ``[metrics]``, or a PolicyError naming the key."""
    dotted = f"metrics.{metric}"
    if not isinstance(metric, str) or not metric:
        raise _invalid("metrics", "metric names as keys", metric)
    if metric in (IDENTITY_DRIFT_COLUMN, IDENTITY_LOST_COLUMN):
        raise PolicyError(
            f"{UNKNOWN_KEY_MSG} {dotted!r}: {metric} is not a reconstruction metric; limit it under "
            f"[{IDENTITY}] ({', '.join(_IDENTITY_KEYS)})"
        )
    if metric in MEASURE_DIRECTIONS:
        section = next((name for name, spec in _SHIFT_SECTIONS.items() if spec.column == metric), SKIN_TONE)
        raise PolicyError(
            f"{UNKNOWN_KEY_MSG} {dotted!r}: {metric} is not a reconstruction metric; limit it under "
            f"[{section}] (max_abs_shift, max_difference)"
        )
    try:
        return _higher_is_better(metric)
    except ValueError as err:
        raise _unknown(
            dotted, list(METRICS), note=" (neither registered nor named *_score, *_error or *_loss)"
        ) from err


@dataclass(frozen=True, kw_only=True)
class MetricLimits:
    """The limits on one per-image metric's disparities (``[metrics.<metric>]``).

    Which keys apply depends on the metric's direction. For ``*_error`` metrics (lower is
    better) ``max_ratio`` (>= 1), ``max_difference`` (>= 0) and ``max_worst`` (the worst,
    i.e. largest, group mean); for ``*_score`` metrics ``min_ratio`` (in (0, 1]: the worst
    group's score over the best's), ``max_difference`` and ``min_worst`` (the smallest group
    mean). ``None`` means no limit; a metric with none is still a regression quantity.

    Attributes:
        metric: per-image metric column, e.g. ``"mse_error"``.
        max_ratio, min_ratio: limit on ``worst / best``.
        max_difference: limit on ``|worst - best|``, in the metric's units.
        max_worst, min_worst: limit on the worst group's mean, in the metric's units.

    Raises:
        PolicyError: unknown metric direction, a limit that does not fit the direction, or a
            value of the wrong type or range.
    """

    metric: str
    max_ratio: float | None = None
    min_ratio: float | None = None
    max_difference: float | None = None
    max_worst: float | None = None
    min_worst: float | None = None

    def __post_init__(self) -> None:
        higher = _metric_direction(self.metric)
        allowed = _SCORE_LIMITS if higher else _ERROR_LIMITS
        kind = _SCORE_NOTE if higher else _ERROR_NOTE
        checks = {
            "max_ratio": ("a number >= 1", lambda x: x >= 1.0),
            "min_ratio": ("a number in (0, 1]", lambda x: 0.0 < x <= 1.0),
            "max_difference": ("a number >= 0", lambda x: x >= 0.0),
            "max_worst": ("a finite number", lambda x: True),
            "min_worst": ("a finite number", lambda x: True),
        }
        for name in _ALL_LIMITS:
            value = getattr(self, name)
            if value is None:
                continue
            dotted = f"metrics.{self.metric}.{name}"
            if name not in allowed:
                raise _unknown(dotted, allowed, note=f" ({self.metric} is {kind})")
            expected, ok = checks[name]
            object.__setattr__(self, name, _number(value, dotted, expected, ok))

    @property
    def higher_is_better(self) -> bool:
        """Whether higher values of the metric are better."""
        return _higher_is_better(self.metric)

    def limits(self) -> dict[str, float]:
        """The limits that are set, ``{key: value}``, in :data:`_ALL_LIMITS` order."""
        return {name: getattr(self, name) for name in _ALL_LIMITS if getattr(self, name) is not None}


@dataclass(frozen=True, kw_only=True)
class _ShiftLimits:
    """Limits on one signed skin-colour shift: ``max_abs_shift`` and ``max_difference`` (see subclasses)."""

    section: ClassVar[str] = SKIN_TONE
    max_abs_shift: float | None = None
    max_difference: float | None = None

    def __post_init__(self) -> None:
        expected = _SHIFT_SECTIONS[self.section].expected
        for name in _SKIN_KEYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _number(value, f"{self.section}.{name}", expected, lambda x: x >= 0.0))


@dataclass(frozen=True, kw_only=True)
class SkinToneLimits(_ShiftLimits):
    """Limits on the skin-tone shift ΔITA (``[skin_tone]``, degrees).

    Attributes:
        max_abs_shift: every group's mean ΔITA (overall included) must lie in
            ``[-max_abs_shift, max_abs_shift]``; ``None``: no limit.
        max_difference: limit on the gap between the most and the least lightened group's
            mean ΔITA; ``None``: no limit.

    Raises:
        PolicyError: a value that is not a number >= 0.
    """

    section: ClassVar[str] = SKIN_TONE


@dataclass(frozen=True, kw_only=True)
class LightnessLimits(_ShiftLimits):
    """Limits on the skin's lightness shift ΔL* (``[lightness]``, L* units: 0 black, 100 white).

    Attributes:
        max_abs_shift: every group's mean ΔL* (overall included) must lie in
            ``[-max_abs_shift, max_abs_shift]``; ``None``: no limit.
        max_difference: limit on the gap between the most and the least lightened group's
            mean ΔL*; ``None``: no limit.

    Raises:
        PolicyError: a value that is not a number >= 0.
    """

    section: ClassVar[str] = LIGHTNESS


@dataclass(frozen=True, kw_only=True)
class HueLimits(_ShiftLimits):
    """Limits on the skin's hue shift Δh* (``[hue]``, degrees; positive: yellower, negative: redder).

    Both limits are symmetric in the sign: a hue moved toward red and one moved toward yellow
    count alike.

    Attributes:
        max_abs_shift: every group's mean Δh* (overall included) must lie in
            ``[-max_abs_shift, max_abs_shift]``; ``None``: no limit.
        max_difference: limit on the gap ``max - min`` between the groups' mean Δh*;
            ``None``: no limit.

    Raises:
        PolicyError: a value that is not a number >= 0.
    """

    section: ClassVar[str] = HUE


@dataclass(frozen=True, kw_only=True)
class IdentityLimits:
    """Limits on identity drift (``[identity]``; the columns of ``audit run --identity``).

    Attributes:
        max_drift: every group's mean ``identity_drift`` (face-embedding distance, overall
            included) must not exceed it; ``None``: no limit.
        max_lost_share: every group's share of outputs no longer recognised (``identity_lost``,
            in [0, 1]) must not exceed it; ``None``: no limit.
        max_difference: limit on the gap in mean drift between the most and the least drifted
            group; ``None``: no limit.

    Raises:
        PolicyError: a value of the wrong type or range.
    """

    max_drift: float | None = None
    max_lost_share: float | None = None
    max_difference: float | None = None

    def __post_init__(self) -> None:
        checks = {"max_drift": ("a distance >= 0", lambda x: x >= 0.0),
                  "max_lost_share": ("a share in [0, 1]", lambda x: 0.0 <= x <= 1.0),
                  "max_difference": ("a distance >= 0", lambda x: x >= 0.0)}
        for name, (expected, ok) in checks.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _number(value, f"{IDENTITY}.{name}", expected, ok))


@dataclass(frozen=True, kw_only=True)
class PreservationLimits:
    """Limit on the attribute-preservation gap (``[attribute_preservation]``).

    Attributes:
        max_gap: limit on ``max - min`` over an attribute's groups of the rate at which the
            classifier labels their outputs as the person's own group, in [0, 1]; ``None``:
            no limit (the gap is still a regression quantity).
        attributes: the attributes to check; ``None``: every attribute whose per-image frame
            has a ``classified_<a>_output`` column.

    Raises:
        PolicyError: a value of the wrong type or range.
    """

    max_gap: float | None = None
    attributes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_gap is not None:
            object.__setattr__(
                self, "max_gap", _number(self.max_gap, f"{PRESERVATION}.max_gap", "a rate in [0, 1]",
                                         lambda x: 0.0 <= x <= 1.0)
            )
        if self.attributes is not None:
            object.__setattr__(self, "attributes", _names(self.attributes, f"{PRESERVATION}.attributes"))


@dataclass(frozen=True, kw_only=True)
class RegressionOptions:
    """How a run is compared with a baseline (``[regression]``).

    Attributes:
        tolerance: ``{quantity: tolerance}``: how much a disparity may grow before it counts,
            in the quantity's units; quantities are the policy's metric names,
            ``"skin_tone"`` (degrees), ``"lightness"`` (L* units), ``"hue"`` (degrees) and
            ``"attribute_preservation"`` (a rate); missing: 0.

    Raises:
        PolicyError: a value of the wrong type or range.
    """

    tolerance: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.tolerance, Mapping):
            raise _invalid("regression.tolerance", "a table of quantity = tolerance", self.tolerance)
        object.__setattr__(
            self,
            "tolerance",
            {
                str(key): _number(value, f"regression.tolerance.{key}", "a number >= 0", lambda x: x >= 0.0)
                for key, value in self.tolerance.items()
            },
        )


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A fairness policy: what to check, the limits, and how to judge them.

    Build one with :func:`load_policy` (a TOML file) or :func:`parse_policy` (a mapping).

    Attributes:
        metrics: the limits per metric, in file order.
        skin_tone: ΔITA limits, or ``None`` (ΔITA not checked).
        lightness: ΔL* limits, or ``None`` (ΔL* not checked).
        hue: Δh* limits, or ``None`` (Δh* not checked).
        attribute_preservation: attribute-preservation limit, or ``None`` (not checked).
        insufficient_evidence: verdict of a group or disparity with too few subjects,
            ``"warn"`` (default) or ``"fail"``; never ``"pass"``.
        judge: ``"interval"`` (fail when the whole interval is beyond a limit, warn when only
            the estimate is) or ``"estimate"`` (fail when the estimate is).
        groupings: the groupings to check (``"gender"``, ``"gender x skin_tone"``), or
            ``None`` for all of them.
        stats: the statistics options; ``stats.min_subjects`` is the file's ``min_subjects``.
        regression: the regression options.

    Raises:
        PolicyError: an invalid value, a regression tolerance for a quantity the policy does
            not check, or a policy that checks nothing.
    """

    metrics: tuple[MetricLimits, ...] = ()
    skin_tone: SkinToneLimits | None = None
    lightness: LightnessLimits | None = None
    hue: HueLimits | None = None
    identity: IdentityLimits | None = None
    attribute_preservation: PreservationLimits | None = None
    insufficient_evidence: Literal["fail", "warn"] = "warn"
    judge: Literal["interval", "estimate"] = "interval"
    groupings: tuple[str, ...] | None = None
    stats: StatsConfig = field(default_factory=StatsConfig)
    regression: RegressionOptions = field(default_factory=RegressionOptions)

    def __post_init__(self) -> None:
        _choice(self.insufficient_evidence, "insufficient_evidence", INSUFFICIENT_EVIDENCE_VERDICTS)
        _choice(self.judge, "judge", JUDGES)
        if self.groupings is not None:
            object.__setattr__(self, "groupings", _names(self.groupings, "groupings"))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        names = [limits.metric for limits in self.metrics]
        if len(set(names)) != len(names):
            raise _invalid("metrics", "each metric once", names)
        if not names and not self.shift_limits() and self.identity is None and self.attribute_preservation is None:
            raise PolicyError(
                f"{NOTHING_TO_CHECK_MSG}: add a [metrics.<metric>] table (e.g. [metrics.mse_error] max_ratio = 1.25), "
                f"[{SKIN_TONE}], [{LIGHTNESS}], [{HUE}], [{IDENTITY}] or [{PRESERVATION}]"
            )
        quantities = self.quantities()
        for key in self.regression.tolerance:
            if key not in quantities:
                raise _unknown(f"regression.tolerance.{key}", quantities, note=" (not a quantity this policy checks)")

    @property
    def min_subjects(self) -> int:
        """Fewest subjects a group needs to be judged (``stats.min_subjects``)."""
        return self.stats.min_subjects

    def shift_limits(self) -> dict[str, _ShiftLimits]:
        """The skin-colour sections the policy checks, ``{section: limits}``: ``skin_tone``, ``lightness``, ``hue``."""
        return {section: getattr(self, section) for section in _SHIFT_SECTIONS if getattr(self, section) is not None}

    def quantities(self) -> list[str]:
        """The regression quantities: the metric names, the skin-colour sections, then ``attribute_preservation``."""
        names = [limits.metric for limits in self.metrics]
        names += list(self.shift_limits())
        names += [IDENTITY_DRIFT_COLUMN, IDENTITY_LOST_COLUMN] if self.identity is not None else []
        names += [PRESERVATION] if self.attribute_preservation is not None else []
        return names


def _table(value: Any, dotted: str, allowed: Sequence[str] | None = None) -> dict[str, Any]:
    """``value`` as a dict (a TOML table) whose keys are all in ``allowed``, or raise."""
    if not isinstance(value, Mapping):
        raise _invalid(dotted, "a table", value)
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise _unknown(f"{dotted}.{key}" if dotted else str(key), allowed)
    return dict(value)


def parse_policy(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """Build a :class:`Policy` from a parsed TOML document (a nested mapping).

    Args:
        data: the document, e.g. ``tomllib.load(file)``.
        source: what the errors call the document (the file name).

    Returns:
        The policy.

    Raises:
        PolicyError: one line ``"<source>: ..."`` naming the dotted key: an unknown key (with
            the closest valid one), a wrong type or out-of-range value.

    Example:
        >>> policy = parse_policy({"metrics": {"mse_error": {"max_ratio": 1.25}}, "min_subjects": 4})
        >>> policy.metrics[0].max_ratio, policy.min_subjects, policy.judge
        (1.25, 4, 'interval')
        >>> try:
        ...     parse_policy({"metrics": {"mse_error": {"max_ratoi": 1.25}}}, source="fairness.toml")
        ... except PolicyError as err:
        ...     print(*str(err).split("; "), sep="\\n")
        fairness.toml: unknown key 'metrics.mse_error.max_ratoi'
        expected one of ['max_difference', 'max_ratio', 'max_worst']
        did you mean 'max_ratio'?
    """
    try:
        return _parse(data)
    except PolicyError as err:
        raise PolicyError(f"{source}: {err}") from err


def _parse(data: Mapping[str, Any]) -> Policy:
    """:func:`parse_policy` without the source prefix."""
    top = _table(data, "", _TOP_KEYS)
    stats: dict[str, Any] = {}
    for key, value in _table(top.get("statistics", {}), "statistics", _STATISTICS_KEYS).items():
        stats[key] = _stats_value(key, value, f"statistics.{key}")
    if "min_subjects" in top:
        stats["min_subjects"] = _stats_value("min_subjects", top["min_subjects"], "min_subjects")
    metrics = []
    for metric, limits in _table(top.get("metrics", {}), "metrics").items():
        higher = _metric_direction(metric)
        allowed, kind = (_SCORE_LIMITS, _SCORE_NOTE) if higher else (_ERROR_LIMITS, _ERROR_NOTE)
        table = _table(limits, f"metrics.{metric}")
        for key in table:
            if key not in allowed:  # a limit of the other direction: say which this metric has
                note = f" ({metric} is {kind})" if key in _ALL_LIMITS else ""
                raise _unknown(f"metrics.{metric}.{key}", allowed, note)
        metrics.append(MetricLimits(metric=metric, **table))
    shifts = {cls.section: cls(**_table(top[cls.section], cls.section, _SKIN_KEYS))
              for cls in (SkinToneLimits, LightnessLimits, HueLimits) if top.get(cls.section) is not None}
    identity = top.get(IDENTITY)
    preservation = top.get(PRESERVATION)
    if preservation is not None:
        preservation = _table(preservation, PRESERVATION, _PRESERVATION_KEYS)
        if "attributes" in preservation:
            preservation["attributes"] = _names(preservation["attributes"], f"{PRESERVATION}.attributes")
    regression = _table(top.get("regression", {}), "regression", _REGRESSION_KEYS)
    if "tolerance" in regression:
        regression["tolerance"] = _table(regression["tolerance"], "regression.tolerance")
    groupings = top.get("groupings")
    return Policy(
        metrics=tuple(metrics),
        skin_tone=shifts.get(SKIN_TONE),
        lightness=shifts.get(LIGHTNESS),
        hue=shifts.get(HUE),
        identity=None if identity is None else IdentityLimits(**_table(identity, IDENTITY, _IDENTITY_KEYS)),
        attribute_preservation=None if preservation is None else PreservationLimits(**preservation),
        insufficient_evidence=top.get("insufficient_evidence", "warn"),
        judge=top.get("judge", "interval"),
        groupings=None if groupings is None else _names(groupings, "groupings"),
        stats=StatsConfig(**stats),
        regression=RegressionOptions(**regression),
    )


def _stats_value(name: str, value: Any, dotted: str) -> Any:
    """Validate one :class:`StatsConfig` field alone, so the error names its key."""
    try:
        StatsConfig(**{name: value})
    except (TypeError, ValueError) as err:
        raise PolicyError(f"{dotted!r} {BAD_VALUE_MSG}: {err}") from err
    return value


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read a policy TOML file (see ``docs/fairness-policy.example.toml``).

    Args:
        path: the file.

    Returns:
        The policy.

    Raises:
        PolicyError: one line naming the file: it is missing or unreadable, not valid TOML,
            or has an unknown key or an invalid value (named by its dotted key).
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError as err:
        raise PolicyError(
            f"{source}: {POLICY_NOT_FOUND_MSG}; copy docs/fairness-policy.example.toml and pass its path"
        ) from err
    except OSError as err:
        raise PolicyError(f"{source}: {POLICY_UNREADABLE_MSG}: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{source}: {INVALID_TOML_MSG}: {err}") from err
    except UnicodeDecodeError as err:
        raise PolicyError(f"{source}: {INVALID_TOML_MSG}: not UTF-8 ({err.reason})") from err
    return parse_policy(data, source=source)


# --- what the checks measure --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Quantity:
    """One thing a check measures: a per-image column, its label in the rows, its tolerance key.

    ``groupings`` is ``None`` for "every checked grouping" or the one grouping it is defined on.
    """

    column: str
    metric: str
    tolerance_key: str
    groupings: tuple[str, ...] | None = None


def _attributes(result: AuditResult, attributes: Sequence[str] | None) -> list[str]:
    """The sensitive attributes: given, else ``result.metadata["attributes"]``."""
    if attributes is None:
        attributes = result.metadata.get("attributes")
    if isinstance(attributes, str) or not isinstance(attributes, Sequence) or not attributes:
        raise ValueError(
            f"{NO_ATTRIBUTES_MSG}: metadata['attributes'] is {attributes!r}; pass attributes=[...]"
        )
    return [str(attribute) for attribute in attributes]


def _unreliable_groups(result: AuditResult, attribute: str) -> list[str]:
    """The groups of the grouping ``attribute`` whose ``attribute`` the run's classifier reads unreliably.

    From ``result.tables["classifier_validity"]`` (:func:`genfair.audit.classifier_validity`);
    none when the run has no such table.
    """
    from .attributes import CLASSIFIER_VALID

    validity = result.tables.get("classifier_validity")
    if validity is None or validity.empty:
        return []
    cells = validity[(validity["grouping"].astype(str) == attribute) & (validity["attribute"].astype(str) == attribute)
                     & (validity["status"].astype(str) != CLASSIFIER_VALID)]
    return sorted(cells["group"].astype(str).unique())


def _unreliable_reason(groups: Sequence[str], attribute: str, where: str = "") -> str:
    return (f"classifier unreliable{where}: it reads {attribute} of {', '.join(groups)} right less often than its "
            f"threshold (classifier_validity), so their flips are not evidence about the model; not judged")


def _measured(
    per_image: pd.DataFrame, policy: Policy, attributes: list[str], label: str
) -> tuple[pd.DataFrame, list[_Quantity]]:
    """The per-image frame with an own-group column per preserved attribute, and the quantities.

    Raises:
        PolicyError: a quantity the policy names has no data in ``per_image``.
    """
    from .attributes import classified_column

    columns = list(per_image.columns)
    quantities: list[_Quantity] = []
    for limits in policy.metrics:
        if limits.metric not in columns:
            numeric = [c for c in columns if c.endswith(("_error", "_loss", "_score"))]
            raise PolicyError(
                f"{MISSING_QUANTITY_MSG} 'metrics.{limits.metric}': the {label}'s per-image frame has no "
                f"{limits.metric!r} column; its metrics: {numeric}{_suggest(limits.metric, numeric)}"
            )
        quantities.append(_Quantity(limits.metric, limits.metric, limits.metric))
    for section in policy.shift_limits():
        spec = _SHIFT_SECTIONS[section]
        if spec.column not in columns:
            # ΔL* and Δh* are newer than ΔITA: a baseline audited before them has ΔITA alone
            older = label == "baseline" and section != SKIN_TONE and ITA_SHIFT_COLUMN in columns
            fix = (f"re-record the baseline audit (it predates {spec.symbol}) or remove [{section}] from the policy"
                   if older else f"remove [{section}] from the policy")
            raise PolicyError(
                f"{MISSING_QUANTITY_MSG} {section!r}: the {label}'s per-image frame has no {spec.column!r} "
                f"column ({spec.symbol} is measured on face datasets in colour); {fix}"
            )
        quantities.append(_Quantity(spec.column, spec.column, section))
    if policy.identity is not None:
        for column in (IDENTITY_DRIFT_COLUMN, IDENTITY_LOST_COLUMN):
            if column not in columns:
                raise PolicyError(
                    f"{MISSING_QUANTITY_MSG} {IDENTITY!r}: the {label}'s per-image frame has no {column!r} column; "
                    f"audit with --identity (pip install 'genfair[faces]') or remove [{IDENTITY}] from the policy"
                )
            quantities.append(_Quantity(column, column, column))
    frame = per_image
    if policy.attribute_preservation is not None:
        chosen = policy.attribute_preservation.attributes
        if chosen is None:
            chosen = tuple(a for a in attributes if classified_column(a, output=True) in columns)
            if not chosen:
                raise PolicyError(
                    f"{MISSING_QUANTITY_MSG} {PRESERVATION!r}: the {label}'s per-image frame has no "
                    f"classified_<attribute>_output column; audit with the attribute classifier "
                    f"(--classifier-epochs > 0) or remove [{PRESERVATION}]"
                )
        frame = per_image.copy()
        for index, attribute in enumerate(chosen):
            output = classified_column(attribute, output=True)
            if attribute not in attributes:
                raise _unknown(f"{PRESERVATION}.attributes.{attribute}", attributes,
                               note=" (not a sensitive attribute of the audit)")
            if output not in columns:
                raise PolicyError(
                    f"{MISSING_QUANTITY_MSG} '{PRESERVATION}.attributes': the {label}'s per-image frame has no "
                    f"{output!r} column; audit with the attribute classifier (--classifier-epochs > 0)"
                )
            column = f"genfair_preserved_{index}_score"
            original = classified_column(attribute)
            if original not in columns:
                raise PolicyError(
                    f"{MISSING_QUANTITY_MSG} '{PRESERVATION}.attributes': the {label}'s per-image frame has no "
                    f"{original!r} column (the classifier's label of the original); audit with the attribute "
                    f"classifier (--classifier-epochs > 0)"
                )
            # kept: the output is labelled as its own original is (the classifier's own errors cancel)
            frame[column] = (per_image[output].astype(str) == per_image[original].astype(str)).astype("float64")
            quantities.append(_Quantity(column, PRESERVATION, PRESERVATION, (attribute,)))
    return frame, quantities


def _checked_groupings(policy: Policy, attributes: list[str]) -> list[str]:
    """The groupings the policy checks, in :func:`group_table` order; PolicyError for an unknown one."""
    available = list(attributes) + ([GROUPING_SEPARATOR.join(attributes)] if len(attributes) > 1 else [])
    if policy.groupings is None:
        return available
    for name in policy.groupings:
        if name not in available:
            raise _unknown(f"groupings.{name}", available, note=" (not a grouping of the audit)")
    return [name for name in available if name in policy.groupings]


def _stats_options(policy: Policy) -> dict[str, Any]:
    """The keyword arguments of :func:`interval_tables` and :func:`compare_models`."""
    stats = policy.stats
    return {
        "n_resamples": stats.n_resamples,
        "n_permutations": stats.n_permutations,
        "level": stats.level,
        "seed": stats.seed,
        "min_subjects": stats.min_subjects,
        "interval": stats.interval,
    }


# --- judging ------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    """A number for a reason: 4 significant digits."""
    return f"{value:.4g}"


def _interval_text(low: float, high: float) -> str:
    return "" if math.isnan(low) or math.isnan(high) else f" [{_fmt(low)}, {_fmt(high)}]"


def _judge(value: float, low: float, high: float, limit: float, *, upper: bool, judge: str) -> tuple[Verdict, str]:
    """Verdict of one limit and a phrase saying why.

    ``upper``: the value must not exceed ``limit`` (else: must not fall below it).
    """
    beyond = value > limit if upper else value < limit
    side = "above the maximum" if upper else "below the minimum"
    within = f"within the {'maximum' if upper else 'minimum'} {_fmt(limit)}"
    if judge == "estimate":
        return ("fail", f"estimate {side} {_fmt(limit)}") if beyond else ("pass", within)
    has_interval = not (math.isnan(low) or math.isnan(high))
    if has_interval and (low > limit if upper else high < limit):
        return "fail", f"whole interval {side} {_fmt(limit)}"
    if beyond:
        why = "the interval reaches within it" if has_interval else "no interval"
        return "warn", f"estimate {side} {_fmt(limit)}, but {why}"
    return "pass", within


def _judge_abs(value: float, low: float, high: float, limit: float, *, judge: str) -> tuple[Verdict, str]:
    """Verdict of ``|value| <= limit`` (a signed value such as a mean ΔITA) and why."""
    if judge == "estimate":
        if abs(value) > limit:
            return "fail", f"estimate beyond ±{_fmt(limit)}"
        return "pass", f"within ±{_fmt(limit)}"
    has_interval = not (math.isnan(low) or math.isnan(high))
    if has_interval and (low > limit or high < -limit):
        return "fail", f"whole interval beyond ±{_fmt(limit)}"
    if abs(value) > limit:
        why = "the interval reaches within it" if has_interval else "no interval"
        return "warn", f"estimate beyond ±{_fmt(limit)}, but {why}"
    return "pass", f"within ±{_fmt(limit)}"


def _row(
    check: str,
    rule: str,
    grouping: str | None,
    metric: str | None,
    group: str | None,
    method: str,
    value: float,
    ci_low: float,
    ci_high: float,
    limit: float,
    p_value: float,
    verdict: Verdict,
    reason: str,
) -> dict[str, Any]:
    return {
        "check": check,
        "rule": rule,
        "grouping": grouping,
        "metric": metric,
        "group": group,
        "method": method,
        "value": float(value),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "limit": float(limit),
        "p_value": float(p_value),
        "verdict": verdict,
        "reason": reason,
    }


def _rules_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a frame with :data:`RULE_COLUMNS`: text columns as strings, numbers as float64."""
    from .stats import _frame

    text = ("check", "rule", "grouping", "metric", "group", "method", "verdict", "reason")
    return _frame(rows, RULE_COLUMNS, dict.fromkeys(text, "str"))


def _insufficient_reason(row: Any, min_subjects: int) -> str:
    """Why a disparity cannot be judged."""
    return (
        f"insufficient evidence: {int(row['n_groups'])} group(s) with >= {min_subjects} subjects, "
        f"two are needed to compare"
    )


# --- the absolute check -------------------------------------------------------------------------------


def absolute_rules(
    result: AuditResult, policy: Policy, *, attributes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Judge a result against the policy's limits: one row per rule evaluation.

    The statistics are recomputed from ``result.per_image`` with the policy's
    ``[statistics]`` and ``min_subjects`` (:func:`genfair.audit.interval_tables`), so a check
    does not depend on the options the audit ran with.

    Args:
        result: the audit; its per-image frame needs ``subject``, the attributes and the
            columns the policy names (``ita_shift`` for ``[skin_tone]``, ``lightness_shift``
            for ``[lightness]``, ``hue_shift`` for ``[hue]``, ``classified_<a>_output`` for
            ``[attribute_preservation]``).
        policy: the policy.
        attributes: the sensitive attributes; default ``result.metadata["attributes"]``.

    Returns:
        DataFrame with columns :data:`RULE_COLUMNS`, ``check == "absolute"``: the
        ``min_subjects`` rows first, then per metric, ΔITA, ΔL*, Δh* and attribute preservation.

    Raises:
        ValueError: no attributes, or a per-image frame that the statistics reject.
        PolicyError: the policy names a quantity or grouping the result does not have.
    """
    import numpy as np

    from .stats import interval_tables

    attrs = _attributes(result, attributes)
    groupings = _checked_groupings(policy, attrs)
    frame, quantities = _measured(result.per_image, policy, attrs, "run")
    per_group, disparities = interval_tables(
        frame, attributes=attrs, metrics=[q.column for q in quantities], **_stats_options(policy),
        studentized=policy.stats.studentized,
    )
    by_disparity = {(row["grouping"], row["metric"]): row for row in disparities.to_dict("records")}
    min_subjects = policy.min_subjects
    insufficient = policy.insufficient_evidence
    method = policy.judge
    rows: list[dict[str, Any]] = []

    seen: set[tuple[str, str]] = set()
    for row in per_group.to_dict("records"):
        key = (row["grouping"], row["group"])
        if row["grouping"] in groupings and row["evidence"] == EVIDENCE_INSUFFICIENT and key not in seen:
            seen.add(key)
            rows.append(_row(
                "absolute", "min_subjects", row["grouping"], None, row["group"], method,
                row["n_subjects"], np.nan, np.nan, min_subjects, np.nan, insufficient,
                f"insufficient evidence: {row['n_subjects']} subject(s), fewer than {min_subjects}; no interval, "
                f"left out of the disparities (an anecdote, not evidence of fairness)",
            ))

    def disparity_rows(quantity: _Quantity, limits: Mapping[str, float], prefix: str) -> None:
        for grouping in quantity.groupings or groupings:
            row = by_disparity[(grouping, quantity.column)]
            for name, limit in limits.items():
                rule = f"{prefix}.{name}"
                if row["evidence"] == EVIDENCE_INSUFFICIENT:
                    rows.append(_row(
                        "absolute", rule, grouping, quantity.metric, None, method, np.nan, np.nan, np.nan,
                        limit, np.nan, insufficient, _insufficient_reason(row, min_subjects),
                    ))
                    continue
                part = name.split("_", 1)[1]  # ratio, difference, worst, gap
                column = {"gap": "difference"}.get(part, part)
                upper = name.startswith("max_")
                value, low, high = row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
                verdict, why = _judge(value, low, high, limit, upper=upper, judge=policy.judge)
                label = {"difference": "|worst - best|", "ratio": "worst / best", "worst": "worst group's mean",
                         "gap": "own-group rate gap"}[part]
                rows.append(_row(
                    "absolute", rule, grouping, quantity.metric, row["worst_group"], method, value, low, high,
                    limit, row["p_holm"], verdict,
                    f"{label} {_fmt(value)}{_interval_text(low, high)}: {why}; worst {row['worst_group']} "
                    f"({_fmt(row['worst'])}), best {row['best_group']} ({_fmt(row['best'])})",
                ))

    by_metric = {quantity.metric: quantity for quantity in quantities}
    for limits in policy.metrics:
        disparity_rows(by_metric[limits.metric], limits.limits(), f"metrics.{limits.metric}")

    for section, shift in policy.shift_limits().items():
        column = _SHIFT_SECTIONS[section].column
        if shift.max_abs_shift is not None:
            rows += _shift_rows(per_group, groupings, shift.max_abs_shift, policy, section)
        if shift.max_difference is not None:
            disparity_rows(by_metric[column], {"max_difference": shift.max_difference}, section)

    identity = policy.identity
    if identity is not None:
        for column, limit, name in ((IDENTITY_DRIFT_COLUMN, identity.max_drift, "max_drift"),
                                    (IDENTITY_LOST_COLUMN, identity.max_lost_share, "max_lost_share")):
            if limit is not None:
                rows += _identity_rows(per_group, groupings, column, limit, policy, f"{IDENTITY}.{name}")
        if identity.max_difference is not None:
            disparity_rows(by_metric[IDENTITY_DRIFT_COLUMN], {"max_difference": identity.max_difference}, IDENTITY)

    preservation = policy.attribute_preservation
    if preservation is not None and preservation.max_gap is not None:
        for quantity in quantities:
            if quantity.metric != PRESERVATION:
                continue
            (attribute,) = quantity.groupings
            withheld = _unreliable_groups(result, attribute)
            if withheld:
                rows.append(_row(
                    "absolute", f"{PRESERVATION}.max_gap", attribute, PRESERVATION, ", ".join(withheld), method,
                    np.nan, np.nan, np.nan, preservation.max_gap, np.nan, insufficient,
                    _unreliable_reason(withheld, attribute),
                ))
                continue
            disparity_rows(quantity, {"max_gap": preservation.max_gap}, PRESERVATION)
    logger.debug("absolute check: %d rule rows", len(rows))
    return _rules_frame(rows)


def _shift_rows(
    per_group: pd.DataFrame, groupings: list[str], limit: float, policy: Policy, section: str
) -> list[dict[str, Any]]:
    """``<section>.max_abs_shift`` rows: each group's mean shift within ``±limit`` (overall first)."""
    import numpy as np

    spec = _SHIFT_SECTIONS[section]
    rows = []
    table = per_group[
        (per_group["metric"] == spec.column)
        & per_group["grouping"].isin([OVERALL_GROUPING, *groupings])
    ]
    for row in table.to_dict("records"):
        value, low, high = row["estimate"], row["ci_low"], row["ci_high"]
        rule = f"{section}.max_abs_shift"
        common = ("absolute", rule, row["grouping"], spec.column, row["group"], policy.judge)
        direction = spec.positive if value > 0 else spec.negative
        mean = f"mean {spec.symbol} {_fmt(value)}{spec.unit}"
        if row["evidence"] == EVIDENCE_INSUFFICIENT:
            rows.append(_row(
                *common, value, np.nan, np.nan, limit, np.nan, policy.insufficient_evidence,
                f"insufficient evidence: {mean} from {row['n_subjects']} subject(s), fewer than "
                f"{policy.min_subjects}; not judged",
            ))
            continue
        verdict, why = _judge_abs(value, low, high, limit, judge=policy.judge)
        rows.append(_row(
            *common, value, low, high, limit, row["p_holm"], verdict,
            f"{mean}{_interval_text(low, high)} (outputs {direction}): {why}",
        ))
    return rows


def _identity_rows(per_group: pd.DataFrame, groupings: list[str], column: str, limit: float, policy: Policy,
                   rule: str) -> list[dict[str, Any]]:
    """``identity.max_drift`` / ``identity.max_lost_share`` rows: each group's mean at most ``limit`` (overall first)."""
    import numpy as np

    what = "mean identity drift" if column == IDENTITY_DRIFT_COLUMN else "share no longer recognised"
    rows = []
    table = per_group[(per_group["metric"] == column) & per_group["grouping"].isin([OVERALL_GROUPING, *groupings])]
    for row in table.to_dict("records"):
        value, low, high = row["estimate"], row["ci_low"], row["ci_high"]
        common = ("absolute", rule, row["grouping"], column, row["group"], policy.judge)
        if row["evidence"] == EVIDENCE_INSUFFICIENT:
            rows.append(_row(
                *common, value, np.nan, np.nan, limit, np.nan, policy.insufficient_evidence,
                f"insufficient evidence: {what} {_fmt(value)} from {row['n_subjects']} subject(s), fewer than "
                f"{policy.min_subjects}; not judged",
            ))
            continue
        verdict, why = _judge(value, low, high, limit, upper=True, judge=policy.judge)
        rows.append(_row(*common, value, low, high, limit, row["p_holm"], verdict,
                         f"{what} {_fmt(value)}{_interval_text(low, high)}: {why}"))
    return rows


# --- the regression check -----------------------------------------------------------------------------


def _same_images(run: pd.DataFrame, baseline: pd.DataFrame) -> bool:
    """Whether the two per-image frames cover exactly the same image paths (each once)."""
    from .compare import PATH_COLUMN

    if PATH_COLUMN not in run or PATH_COLUMN not in baseline:
        return False
    a, b = run[PATH_COLUMN], baseline[PATH_COLUMN]
    return not a.duplicated().any() and not b.duplicated().any() and set(a) == set(b)


def regression_rules(
    result: AuditResult,
    baseline: AuditResult,
    policy: Policy,
    *,
    attributes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Judge whether a result's disparities grew against a baseline's: one row per (quantity, grouping).

    Paired (:func:`genfair.audit.compare_models`, Holm-adjusted sign-flip p-values) when the
    two audits cover the same images, unpaired (each audit's own disparity interval)
    otherwise; see the module docstring.

    Args:
        result: the run to check.
        baseline: the audit it must not be less fair than.
        policy: the policy (its quantities, statistics and ``[regression]`` options).
        attributes: the sensitive attributes; default ``result.metadata["attributes"]``.

    Returns:
        DataFrame with columns :data:`RULE_COLUMNS`, ``check == "regression"``,
        ``rule == "regression.tolerance.<quantity>"``, ``value`` the worsening
        ``disparity(run) - disparity(baseline)``, ``method`` ``"paired"`` or
        ``"unpaired"``, ``limit`` the tolerance.

    Raises:
        ValueError: no attributes, frames the statistics reject, or (paired) audits that
            disagree on an image's subject or attributes.
        PolicyError: the policy names a quantity or grouping an audit does not have.
    """
    import numpy as np

    from .result import pairing_problem
    from .stats import holm, interval_tables

    attrs = _attributes(result, attributes)
    groupings = _checked_groupings(policy, attrs)
    run_frame, quantities = _measured(result.per_image, policy, attrs, "run")
    base_frame, _ = _measured(baseline.per_image, policy, attrs, "baseline")
    columns = [q.column for q in quantities]
    options = _stats_options(policy)
    paired = _same_images(run_frame, base_frame) and pairing_problem(result, baseline) is None
    if paired:
        from .compare import compare_models

        # A = the run, B = the baseline: compare_models' one-sided p-value "B is fairer than
        # A" is then "the run is less fair than the baseline".
        table = compare_models(run_frame, base_frame, attributes=attrs, metrics=columns, **options).disparities
        found = {(row["grouping"], row["metric"]): row for row in table.to_dict("records")}
    else:
        studentized = {"studentized": policy.stats.studentized}
        run_table = interval_tables(run_frame, attributes=attrs, metrics=columns, **options, **studentized)[1]
        base_table = interval_tables(base_frame, attributes=attrs, metrics=columns, **options, **studentized)[1]
        base_rows = {(row["grouping"], row["metric"]): row for row in base_table.to_dict("records")}
        found = {
            (row["grouping"], row["metric"]): (row, base_rows[(row["grouping"], row["metric"])])
            for row in run_table.to_dict("records")
        }

    pending: list[dict[str, Any]] = []
    for quantity in quantities:
        tolerance = policy.regression.tolerance.get(quantity.tolerance_key, 0.0)
        rule = f"regression.tolerance.{quantity.tolerance_key}"
        for grouping in quantity.groupings or groupings:
            entry = found[(grouping, quantity.column)]
            if paired:
                sufficient = entry["evidence"] != EVIDENCE_INSUFFICIENT
                before, after = entry["disparity_b"], entry["disparity_a"]
                low, high = -entry["ci_high"], -entry["ci_low"]
                p_value, worst = entry["p_value"], entry["worst_group_a"]
            else:
                run_row, base_row = entry
                sufficient = EVIDENCE_INSUFFICIENT not in (run_row["evidence"], base_row["evidence"])
                before, after = base_row["difference"], run_row["difference"]
                low = run_row["difference_ci_low"] - base_row["difference_ci_high"]
                high = run_row["difference_ci_high"] - base_row["difference_ci_low"]
                p_value, worst = np.nan, run_row["worst_group"]
            withheld = ""
            if quantity.metric == PRESERVATION:
                for label, audited in (("", result), (" in the baseline", baseline)):
                    groups = _unreliable_groups(audited, grouping)
                    if groups and not withheld:
                        withheld = _unreliable_reason(groups, grouping, label)
            pending.append({
                "rule": rule, "grouping": grouping, "metric": quantity.metric, "group": worst,
                "sufficient": sufficient and not withheld, "withheld": withheld, "before": before, "after": after,
                "low": low, "high": high, "p_value": p_value, "tolerance": tolerance,
            })

    if paired:
        tested = [i for i, item in enumerate(pending) if item["sufficient"] and not math.isnan(item["p_value"])]
        adjusted = holm([pending[i]["p_value"] for i in tested])
        for i, p in zip(tested, adjusted, strict=True):
            pending[i]["p_value"] = float(p)

    method = "paired" if paired else "unpaired"
    rows = []
    for item in pending:
        before, after, tolerance = item["before"], item["after"], item["tolerance"]
        common = ("regression", item["rule"], item["grouping"], item["metric"], item["group"], method)
        if not item["sufficient"]:
            rows.append(_row(
                *common, np.nan, np.nan, np.nan, tolerance, np.nan, policy.insufficient_evidence,
                item["withheld"] or f"insufficient evidence: fewer than two groups with >= {policy.min_subjects} "
                f"subjects in the run or the baseline; not compared",
            ))
            continue
        change = after - before
        if abs(change) <= _NUMERICAL_SLACK * max(abs(before), abs(after)):
            change = 0.0  # the same disparity, up to the order of a floating-point sum
        low, high, p_value = item["low"] + 0.0, item["high"] + 0.0, item["p_value"]  # + 0.0: no "-0"
        story = f"disparity {_fmt(before)} -> {_fmt(after)} ({change:+.4g}{_interval_text(low, high)})"
        if not change > tolerance:
            verdict: Verdict = "pass"
            why = f"within tolerance {_fmt(tolerance)}"
        elif low > tolerance:
            verdict = "fail"
            why = f"worse by more than {_fmt(tolerance)}: the whole {method} interval lies above it"
        else:
            verdict = "warn"
            why = f"worse by more than {_fmt(tolerance)}, but the {method} interval reaches within it"
        if paired:
            why += f" (sign-flip p, Holm: {_fmt(p_value)})"
        rows.append(_row(*common, change, low, high, tolerance, p_value, verdict, f"{story}: {why}"))
    logger.debug("regression check (%s): %d rule rows", method, len(rows))
    return _rules_frame(rows)


# --- the report ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CheckReport:
    """The outcome of ``audit check``: every rule evaluation and the overall verdict.

    A failed check is a result, not an exception; the CLI maps :attr:`exit_code` to the
    process's exit status.

    Attributes:
        rules: one row per rule evaluation, columns :data:`RULE_COLUMNS`: ``check``
            (absolute/regression), ``rule`` (the policy key of ``limit``), ``grouping``,
            ``metric``, ``group`` (the judged group, or the worst group of a disparity),
            ``method`` (interval/estimate, paired/unpaired), ``value``, ``ci_low``,
            ``ci_high``, ``limit``, ``p_value``, ``verdict`` (pass/warn/fail), ``reason``.

    Raises:
        TypeError: ``rules`` is not a DataFrame.
        ValueError: it lacks a column or has a verdict outside :data:`VERDICTS`.
    """

    rules: pd.DataFrame

    def __post_init__(self) -> None:
        import pandas as pd

        if not isinstance(self.rules, pd.DataFrame):
            raise TypeError(f"{BAD_RULES_MSG}, got {type(self.rules).__name__}")
        missing = [column for column in RULE_COLUMNS if column not in self.rules.columns]
        if missing:
            raise ValueError(f"{BAD_RULES_MSG}, missing {missing}")
        bad = sorted(set(map(str, self.rules["verdict"])) - set(VERDICTS))
        if bad:
            raise ValueError(f"{BAD_VERDICT_MSG} {list(VERDICTS)}: {bad}")

    @property
    def counts(self) -> dict[str, int]:
        """``{"pass": n, "warn": n, "fail": n}``."""
        values = list(self.rules["verdict"])
        return {verdict: values.count(verdict) for verdict in VERDICTS}

    @property
    def verdict(self) -> Verdict:
        """``"fail"`` if any rule fails, else ``"warn"`` if any warns, else ``"pass"``."""
        counts = self.counts
        return "fail" if counts["fail"] else "warn" if counts["warn"] else "pass"

    @property
    def exit_code(self) -> int:
        """0 when no rule fails (warnings included), 1 when any rule fails."""
        return 1 if self.counts["fail"] else 0


def check(
    result: AuditResult,
    policy: Policy,
    *,
    baseline: AuditResult | None = None,
    attributes: Sequence[str] | None = None,
) -> CheckReport:
    """Run the absolute check and, with a baseline, the regression check.

    Args:
        result: the audit to check.
        policy: the policy.
        baseline: an earlier audit the result must not be less fair than; ``None`` skips the
            regression check.
        attributes: the sensitive attributes; default ``result.metadata["attributes"]``.

    Returns:
        A :class:`CheckReport`: the absolute rows, then the regression rows.

    Raises:
        ValueError, PolicyError: as :func:`absolute_rules` and :func:`regression_rules`.

    Example:
        >>> import pandas as pd
        >>> from genfair.audit import summarize
        >>> per_image = pd.DataFrame({
        ...     "path": [f"{i}.png" for i in range(12)], "subject": [f"s{i}" for i in range(12)],
        ...     "gender": ["female"] * 6 + ["male"] * 6,
        ...     "mse_error": [0.30, 0.32, 0.31, 0.33, 0.30, 0.32, 0.10, 0.11, 0.10, 0.12, 0.11, 0.10],
        ... })
        >>> result = summarize(per_image, attributes=["gender"], metrics=["mse_error"],
        ...                    metadata={"attributes": ["gender"]})
        >>> policy = parse_policy({"metrics": {"mse_error": {"max_ratio": 1.5}},
        ...                        "statistics": {"n_resamples": 200, "n_permutations": 200}})
        >>> report = check(result, policy, baseline=result)
        >>> for row in report.rules[["check", "rule", "group", "verdict"]].values.tolist():
        ...     print(row)
        ['absolute', 'metrics.mse_error.max_ratio', 'female', 'fail']
        ['regression', 'regression.tolerance.mse_error', 'female', 'pass']
        >>> report.verdict, report.exit_code
        ('fail', 1)
    """
    import pandas as pd

    frames = [absolute_rules(result, policy, attributes=attributes)]
    if baseline is not None:
        frames.append(regression_rules(result, baseline, policy, attributes=attributes))
    rules = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return CheckReport(rules=rules)


# --- JUnit XML ----------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A cell as text: '' for a missing value."""
    import pandas as pd

    return "" if value is None or pd.isna(value) else str(value)


def _case_name(row: Mapping[str, Any]) -> str:
    """A testcase name that stays the same between runs (a disparity's worst group is left out)."""
    where = _text(row["grouping"]) or OVERALL_GROUPING
    if row["rule"] in _PER_GROUP_RULES and _text(row["group"]):
        where = f"{where}: {_text(row['group'])}"
    return f"{row['rule']} [{where}]"


def _details(row: Mapping[str, Any]) -> str:
    """Every field of a rule row, one per line (the testcase's system-out)."""
    lines = [f"{column}: {_text(row[column])}" for column in RULE_COLUMNS if _text(row[column])]
    return "\n".join(lines) + "\n"


def junit_xml(report: CheckReport, *, name: str = "genfair fairness check") -> str:
    """The report as JUnit XML: one ``<testsuite>``, one ``<testcase>`` per rule row.

    A ``"fail"`` row gets a ``<failure>``, a ``"warn"`` row a ``<skipped>`` (GitLab's test
    report and the GitHub JUnit reporters show skipped tests, with their message, apart
    from passed and failed ones, without failing the pipeline). Every testcase's
    ``<system-out>`` holds all the row's fields. ``classname`` is
    ``genfair.fairness.<check>``; ``name`` is ``"<rule> [<grouping>]"`` (and the group for
    per-group rules), stable between runs so that CI can track a rule's history.

    Args:
        report: the check's report.
        name: the testsuite's name.

    Returns:
        The XML document, with declaration, as a string.

    Example:
        >>> import xml.etree.ElementTree as ET
        >>> rows = _rules_frame([_row("absolute", "metrics.mse_error.max_ratio", "gender", "mse_error", "female",
        ...                           "interval", 2.0, 1.5, 2.5, 1.25, 0.01, "fail", "too large")])
        >>> suite = ET.fromstring(junit_xml(CheckReport(rules=rows))).find("testsuite")
        >>> suite.get("tests"), suite.get("failures"), suite.get("skipped")
        ('1', '1', '0')
    """
    import xml.etree.ElementTree as ET

    counts = report.counts
    totals = {"tests": str(len(report.rules)), "failures": str(counts["fail"]), "errors": "0",
              "skipped": str(counts["warn"])}
    root = ET.Element("testsuites", {"name": name, **totals})
    suite = ET.SubElement(root, "testsuite", {"name": name, **totals})
    for row in report.rules.to_dict("records"):
        case = ET.SubElement(
            suite, "testcase", {"classname": f"genfair.fairness.{row['check']}", "name": _case_name(row), "time": "0"}
        )
        if row["verdict"] == "fail":
            failure = ET.SubElement(case, "failure", {"message": _text(row["reason"]), "type": "fairness"})
            failure.text = _details(row)
        elif row["verdict"] == "warn":
            ET.SubElement(case, "skipped", {"message": f"warn: {_text(row['reason'])}"})
        ET.SubElement(case, "system-out").text = _details(row)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
