"""The PULSE finding: does a prior trained on a skewed set lighten darker faces and turn women into men?

Runs ``audit run --model pulse`` twice on the same audit panel, once with the prior trained on the
data as given (faces: 43/6/12/1 people) and once on its balanced counterfactual
(``--composition balanced``), then compares the two on the same test images, paired by person
(:func:`genfair.audit.compare_models`): each group's ΔITA (degrees, positive: the output is
lighter), ΔL*, and the share of outputs the classifier reads as the other gender.

    python benchmarks/pulse_finding.py OUT [audit run options...]
    python benchmarks/pulse_finding.py build/finding --image-size 32 --epochs 5
    python benchmarks/pulse_finding.py build/london --manifest ../shared/data/london-faces/manifest.csv \\
        --attributes race_binary,gender --compositions as-given

Prints one Markdown table per measure (as-given, balanced and the paired difference with its
95% interval, per group); each run's own tables are saved in ``OUT/<composition>/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from audit_child import installed_audit, timed_audit_run

MEASURES = {"ita_shift": "ΔITA° (+: lighter)", "lightness_shift": "ΔL* (+: lighter)",
            "gender_swap_error": "gender read as the other"}


def _with_swaps(per_image, attributes):
    """The per-image frame with ``gender_swap_error``: 1 where the output's gender label is not the person's."""
    from genfair.audit.attributes import classified_column

    if "gender" not in attributes or classified_column("gender", output=True) not in per_image:
        return per_image
    swapped = per_image[classified_column("gender", output=True)].astype(str) != per_image["gender"].astype(str)
    return per_image.assign(gender_swap_error=swapped.astype(float))


def main(out: Path, options: list[str]) -> None:
    from genfair.audit import compare_models
    from genfair.audit.result import AuditResult

    # absolute: each child runs in its own folder, so a relative OUT would nest there (OUT/<composition>/OUT/...)
    out = out.resolve()
    compositions = ["as-given", "balanced"]
    if "--compositions" in options:
        at = options.index("--compositions")
        compositions = options[at + 1].split(",")
        options = options[:at] + options[at + 2:]
    audit = installed_audit()
    results = {}
    for composition in compositions:
        folder = out / composition
        folder.mkdir(parents=True, exist_ok=True)
        args = ["--model", "pulse", *options, "--composition", composition, "--out", str(folder / "result")]
        seconds, stages, _ = timed_audit_run(audit, folder, args)
        print(f"{composition}: {seconds:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in stages.items())})", flush=True)
        results[composition] = AuditResult.load(folder / "result")
    attributes = list(next(iter(results.values())).metadata["attributes"])
    frames = {name: _with_swaps(result.per_image, attributes) for name, result in results.items()}
    metrics = [m for m in MEASURES if all(m in frame for frame in frames.values())]
    if len(frames) == 1:
        (frame,) = frames.values()
        from genfair.audit.stats import group_intervals

        table = group_intervals(frame, attributes=attributes, metrics=metrics, seed=0)
        for metric in metrics:
            print(f"\n{MEASURES[metric]}\n\n| grouping | group | people | mean | 95% CI |\n|---|---|---:|---:|---|")
            for row in table[table["metric"] == metric].itertuples(index=False):
                print(f"| {row.grouping} | {row.group} | {row.n_subjects} | {row.estimate:+.3f} | "
                      f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}] |")
        return
    comparison = compare_models(frames["balanced"], frames["as-given"], attributes=attributes, metrics=metrics, seed=0)
    for metric in metrics:
        print(f"\n{MEASURES[metric]}: prior trained as given (43/6/12/1) against balanced, paired by person\n")
        print("| grouping | group | people | balanced | as given | as given − balanced | 95% CI | Wilcoxon p |")
        print("|---|---|---:|---:|---:|---:|---|---:|")
        rows = comparison.per_group[comparison.per_group["metric"] == metric]
        for row in rows.itertuples(index=False):
            print(f"| {row.grouping} | {row.group} | {row.n_subjects} | {row.mean_a:+.3f} | {row.mean_b:+.3f} | "
                  f"{row.difference:+.3f} | [{row.ci_low:+.3f}, {row.ci_high:+.3f}] | {row.p_value:.3g} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2:])
