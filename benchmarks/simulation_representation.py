"""Do the representation tests keep their level when a person has many photos? Simulated audits.

Each simulated audit has groups of people with 20 photos each (or a number drawn per
person). Every person has their own chance ``q`` of keeping their group's label under the
model, drawn from a Beta distribution per group; each photo's output keeps the label with
probability ``q``, and otherwise is classified as one of the other groups, uniformly. A
person's photos therefore agree with each other more than photos of different people do:
this is the clustering that image-level tests ignore.

- RDP (equal own-group rates) holds when every group draws ``q`` from the same Beta.
- PR (outputs' class shares = people's shares) holds when every group loses as many
  photos as it receives: equal groups with equal keep rates, or unequal groups whose keep
  rates balance the flows (the "PR holds" scenarios below).

For every audit the script runs genfair's tests, RDP's subject permutation test
(:func:`genfair.audit.representation_demographic_parity`) and PR's Rao-Scott corrected
Stuart-Maxwell statistic with its p from a bootstrap of people within their groups, the null
imposed (:func:`genfair.audit.proportional_representation` with ``subjects``), and, for
contrast, the tests they replace: scipy's chi-square test of the (group x kept/changed) image
table, the Stuart-Maxwell test with every photo an independent pair, and PR's earlier p, the
same Rao-Scott statistic against F(dof, nu - dof + 1) with ``nu = people - groups``
(recomputed here from the result's ``statistic``, ``dof`` and ``n_units``). It reports how
often each rejects at the 5% level: the type I error where the criterion holds, the power where
it does not, each with its Monte Carlo standard error. A second table repeats PR alone on more
audits of the scenarios where PR holds (``--pr-audits``), to measure its level more finely.

UCPR's outputs come from independently drawn uninformative inputs, so its goodness-of-fit
test is checked on independent outputs (200 a run, as the audit draws): a last, small table.

    .venv/bin/python benchmarks/simulation_representation.py [--audits 1000] [--pr-audits 5000] [--permutations 999]
        [--seed 0] [--jobs 2]
    .venv/bin/python benchmarks/simulation_representation.py --quick   # 200 (PR: 500) audits, a smoke test
    .venv/bin/python benchmarks/simulation_representation.py --pr-scenario "3 × 10" --pr-audits 20000  # one rate

Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy import stats

from genfair.audit import (
    proportional_representation,
    representation_demographic_parity,
    uninformative_conditional_proportional_representation,
)

ALPHA = 0.05


def _beta(mean: float, concentration: float = 4.0) -> tuple[float, float]:
    """Beta parameters with this mean and ``a + b = concentration`` (Beta(2, 2) has mean 0.5)."""
    return mean * concentration, (1.0 - mean) * concentration


@dataclass(frozen=True)
class Scenario:
    """Groups as ``(people, beta_a, beta_b)``; photos per person drawn uniformly in ``photos``."""

    name: str
    groups: tuple[tuple[int, float, float], ...]
    rdp_holds: bool
    pr_holds: bool
    photos: tuple[int, int] = (20, 20)


NULL = (2.0, 2.0)
SCENARIOS = (
    Scenario("2 × 10 people, Beta(2, 2) (issue #14)", ((10, *NULL), (10, *NULL)), True, True),
    Scenario("3 × 10 people, Beta(2, 2)", ((10, *NULL),) * 3, True, True),
    Scenario("5 × 10 people, Beta(2, 2)", ((10, *NULL),) * 5, True, True),
    Scenario("2 × 10 people, 5–35 photos each", ((10, *NULL), (10, *NULL)), True, True, (5, 35)),
    Scenario("15 + 5 people, Beta(2, 2)", ((15, *NULL), (5, *NULL)), True, False),
    Scenario("14 + 8 + 5 people, Beta(2, 2)", ((14, *NULL), (8, *NULL), (5, *NULL)), True, False),
    Scenario("15 + 5 people, keep 0.8 / 0.4 (PR holds)", ((15, *_beta(0.8)), (5, *_beta(0.4))), False, True),
    Scenario("14 + 8 + 5 people, keep 0.79 / 0.63 / 0.4 (PR holds)",
             ((14, *_beta(11 / 14)), (8, *_beta(5 / 8)), (5, *_beta(0.4))), False, True),
    Scenario("2 × 10 people, one group Beta(4, 2)", ((10, *NULL), (10, 4.0, 2.0)), False, False),
    Scenario("2 × 10 people, one group Beta(8, 2)", ((10, *NULL), (10, 8.0, 2.0)), False, False),
    Scenario("3 × 10 people, one group Beta(4, 2)", ((10, *NULL), (10, *NULL), (10, 4.0, 2.0)), False, False),
    Scenario("5 × 10 people, one group Beta(4, 2)", ((10, *NULL),) * 4 + ((10, 4.0, 2.0),), False, False),
    # One group of very few people whose keep rate balances a large group's (added with the bootstrap p).
    Scenario("12 + 3 people, keep 0.85 / 0.4 (PR holds)", ((12, *_beta(0.85)), (3, *_beta(0.4))), False, True),
    Scenario("30 + 5 people, keep 0.9 / 0.4 (PR holds)", ((30, *_beta(0.9)), (5, *_beta(0.4))), False, True),
)
UCPR_OUTPUTS = 200
UCPR_STREAM = 12  # the stream after the first twelve scenarios', fixed so that adding scenarios keeps UCPR's audits


def simulate(rng: np.random.Generator, scenario: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One audit: ``(true group, predicted group, subject)`` codes per photo."""
    people = np.array([g[0] for g in scenario.groups])
    n_groups = people.size
    group_of = np.repeat(np.arange(n_groups), people)
    a = np.repeat([g[1] for g in scenario.groups], people)
    b = np.repeat([g[2] for g in scenario.groups], people)
    keep = rng.beta(a, b)
    low, high = scenario.photos
    photos = rng.integers(low, high + 1, size=group_of.size)
    subject = np.repeat(np.arange(group_of.size), photos)
    true = group_of[subject]
    kept = rng.random(subject.size) < keep[subject]
    other = (true + rng.integers(1, n_groups, size=subject.size)) % n_groups
    return true, np.where(kept, true, other), subject


def _image_chi2_pvalue(true: np.ndarray, predicted: np.ndarray, n_groups: int) -> float:
    """The image-level test RDP used to run: Pearson chi-square of (group x kept/changed)."""
    kept = np.bincount(true, weights=(true == predicted).astype(float), minlength=n_groups)
    table = np.column_stack([kept, np.bincount(true, minlength=n_groups) - kept])
    if np.any(table.sum(axis=0) == 0):
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def _stuart_maxwell_pvalue(true: np.ndarray, predicted: np.ndarray, n_groups: int) -> float:
    """The image-level test PR used to run: Stuart-Maxwell, every photo an independent pair."""
    table = np.zeros((n_groups, n_groups))
    np.add.at(table, (true, predicted), 1.0)
    rows, columns = table.sum(axis=1), table.sum(axis=0)
    covariance = -(table + table.T)
    np.fill_diagonal(covariance, rows + columns - 2 * np.diag(table))
    dof = int(np.linalg.matrix_rank(covariance, hermitian=True))
    if dof == 0:
        return 1.0
    difference = rows - columns
    return float(stats.chi2.sf(difference @ np.linalg.pinv(covariance, hermitian=True) @ difference, dof))


def _rao_scott_f_pvalue(statistic: float, dof: int, n_units: int, n_groups: int) -> float:
    """PR's earlier p: the Rao-Scott statistic against F(dof, nu - dof + 1), nu = people - groups."""
    if statistic == 0.0 or dof == 0:
        return 1.0
    if np.isinf(statistic):
        return 0.0
    nu = n_units - n_groups
    return float(stats.f.sf(statistic * (nu - dof + 1) / (nu * dof), dof, nu - dof + 1)) if nu >= dof else 1.0


def run(scenario: Scenario, audits: int, permutations: int, seed: int, stream: int) -> dict[str, float]:
    """Rejection rates at ALPHA of the five tests over ``audits`` simulated audits."""
    rng = np.random.default_rng([seed, stream])
    n_groups = len(scenario.groups)
    rejected = np.zeros(5)
    for index in range(audits):
        true, predicted, subject = simulate(rng, scenario)
        rdp = representation_demographic_parity(true, predicted, subjects=subject, n_resamples=1,
                                                n_permutations=permutations, seed=index, min_subjects=2)
        pr = proportional_representation(true, predicted, subjects=subject, seed=index)
        rejected += np.array([rdp.p_value, _image_chi2_pvalue(true, predicted, n_groups), pr.p_value,
                              _rao_scott_f_pvalue(pr.statistic, pr.dof, pr.n_units, n_groups),
                              _stuart_maxwell_pvalue(true, predicted, n_groups)]) < ALPHA
    return dict(zip(("rdp", "rdp_images", "pr", "pr_f", "pr_images"), rejected / audits, strict=True))


def run_pr(scenario: Scenario, audits: int, seed: int, stream: int, chunk: int | None = None) -> dict[str, float]:
    """PR's rejection rates at ALPHA, bootstrap and F, over ``audits`` audits of their own
    (``chunk``: one of several independent shares of a larger run, each its own stream)."""
    rng = np.random.default_rng([seed, stream, 1] if chunk is None else [seed, stream, 1, chunk])
    rejected = np.zeros(2)
    for index in range(audits):
        true, predicted, subject = simulate(rng, scenario)
        pr = proportional_representation(true, predicted, subjects=subject, seed=index)
        rejected += np.array([pr.p_value, _rao_scott_f_pvalue(pr.statistic, pr.dof, pr.n_units,
                                                              len(scenario.groups))]) < ALPHA
    return {"pr": rejected[0] / audits, "pr_f": rejected[1] / audits}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _cell(rate: float, audits: int) -> str:
    se = np.sqrt(rate * (1.0 - rate) / audits)
    return f"{100 * rate:.1f}% ± {100 * se:.1f}"


def ucpr_rows(audits: int, seed: int) -> list[tuple[int, float]]:
    """UCPR's rejection rate with uniform, independent outputs, per number of groups."""
    rng = np.random.default_rng([seed, UCPR_STREAM])
    rows = []
    for n_groups in (2, 3, 5):
        names = [str(g) for g in range(n_groups)]
        rejected = sum(
            uninformative_conditional_proportional_representation(rng.integers(0, n_groups, UCPR_OUTPUTS),
                                                                  group_names=names).p_value < ALPHA
            for _ in range(audits)
        )
        rows.append((n_groups, rejected / audits))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audits", type=int, default=1000, help="simulated audits a scenario")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (scenarios run in parallel)")
    parser.add_argument("--permutations", type=int, default=999, help="RDP's permutations an audit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pr-audits", type=int, default=5000,
                        help="simulated audits a scenario where PR holds, PR's test alone")
    parser.add_argument("--quick", action="store_true", help="200 audits a scenario, 500 for PR alone (a smoke test)")
    parser.add_argument("--pr-scenario", default=None,
                        help="only PR's level, on --pr-audits audits of the scenarios whose name contains this, "
                             "split over --jobs independent streams (to settle one rate)")
    args = parser.parse_args()
    if args.pr_scenario is not None:
        settle_pr(args)
        return
    audits = 200 if args.quick else args.audits
    pr_audits = 500 if args.quick else args.pr_audits
    started = time.perf_counter()
    print(f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}. Date: {date.today().isoformat()}.")
    print(f"- {audits} audits a scenario, {args.permutations} permutations an RDP test, seed {args.seed}; "
          f"rejection rate at the 5% level ± its Monte Carlo standard error.\n")
    print("| scenario | RDP holds | RDP: subject permutation | RDP: image χ² (before) | PR holds "
          "| PR: Rao–Scott, bootstrap of people | PR: Rao–Scott F (before) | PR: Stuart–Maxwell on images (before) |")
    print("|---|:-:|---:|---:|:-:|---:|---:|---:|")
    pr_only = [(stream, scenario) for stream, scenario in enumerate(SCENARIOS) if scenario.pr_holds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, scenario, audits, args.permutations, args.seed, stream)
                   for stream, scenario in enumerate(SCENARIOS)]
        pr_futures = [pool.submit(run_pr, scenario, pr_audits, args.seed, stream) for stream, scenario in pr_only]
        results = [future.result() for future in futures]
        pr_results = [future.result() for future in pr_futures]
    for scenario, rates in zip(SCENARIOS, results, strict=True):
        print(f"| {scenario.name} | {_yes(scenario.rdp_holds)} | {_cell(rates['rdp'], audits)} "
              f"| {_cell(rates['rdp_images'], audits)} | {_yes(scenario.pr_holds)} | {_cell(rates['pr'], audits)} "
              f"| {_cell(rates['pr_f'], audits)} | {_cell(rates['pr_images'], audits)} |", flush=True)
    print(f"\nPR alone where it holds, {pr_audits} other audits a scenario (type I error at the 5% level):\n")
    print("| scenario | PR: Rao–Scott, bootstrap of people | PR: Rao–Scott F (before) |")
    print("|---|---:|---:|")
    for (_, scenario), rates in zip(pr_only, pr_results, strict=True):
        print(f"| {scenario.name} | {_cell(rates['pr'], pr_audits)} | {_cell(rates['pr_f'], pr_audits)} |")
    print(f"\nUCPR, {UCPR_OUTPUTS} independent outputs classified uniformly (the criterion holds):\n")
    print("| groups | UCPR: Pearson χ², its null drawn from the multinomial |")
    print("|---:|---:|")
    for n_groups, rate in ucpr_rows(audits, args.seed):
        print(f"| {n_groups} | {_cell(rate, audits)} |")
    print(f"\n- Wall time: {time.perf_counter() - started:.0f} s.")


def settle_pr(args: argparse.Namespace) -> None:
    """PR's type I error alone, on many audits of the named scenarios (each split into --jobs chunks)."""
    chosen = [(stream, scenario) for stream, scenario in enumerate(SCENARIOS)
              if scenario.pr_holds and args.pr_scenario in scenario.name]
    if not chosen:
        raise SystemExit(f"--pr-scenario {args.pr_scenario!r}: no scenario where PR holds has it in its name")
    started = time.perf_counter()
    shares = np.array_split(np.arange(args.pr_audits), args.jobs)
    print(f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}. Date: {date.today().isoformat()}.")
    print(f"- PR alone, {args.pr_audits} audits a scenario in {args.jobs} independent streams, seed {args.seed}.\n")
    print("| scenario | PR: Rao–Scott, bootstrap of people | PR: Rao–Scott F (before) |")
    print("|---|---:|---:|")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for stream, scenario in chosen:
            parts = [pool.submit(run_pr, scenario, len(share), args.seed, stream, chunk)
                     for chunk, share in enumerate(shares)]
            counts = [(future.result(), len(share)) for future, share in zip(parts, shares, strict=True)]
            rates = {key: sum(rates[key] * n for rates, n in counts) / args.pr_audits for key in ("pr", "pr_f")}
            print(f"| {scenario.name} | {_cell(rates['pr'], args.pr_audits)} | {_cell(rates['pr_f'], args.pr_audits)} |",
                  flush=True)
    print(f"\n- Wall time: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
