"""Throughput and peak memory of `audit run --outputs` (auditing outputs already on disk).

For each size N (default 10,000 and 100,000) the script writes a manifest of N audited rows
(split ``test``, column ``restored`` filled) of N / 20 people (20 images each) in four groups
(gender x skin_tone), plus 400 training rows (20 people, ``split=train``, no output), and runs

    audit run --manifest <dir>/manifest-N.csv --outputs restored --classifier-epochs 0
              --image-size 64 --tracking-uri sqlite:///<dir>/mlflow-N.db --out <dir>/result-N

as a child process, timing it and recording its peak resident memory.

Images: a pool of 512 distinct seeded 64x64 RGB originals (128 per group) and, for each, one
output (the original plus seeded Gaussian noise whose strength differs by group) are written
once as PNGs; every row's original and output is a *hard link* to a pool file (a copy where the
file system refuses links), so N rows are N distinct paths (outputs must be distinct) but only
1,024 distinct files. Every decode is real (PIL opens, parses and inflates each path), but the
files sit in the page cache: this measures the audit's CPU cost, not a cold disk's.

``--classifier-epochs 0``: training the attribute classifier is a fixed cost (it depends on the
training rows, not on N) and is not output throughput, so it is skipped; the classifier's
labelling of every original and output (which does scale with N) is therefore not measured.

Numbers:

- wall s: the whole child process (Python start-up, imports, manifest checks, the streamed
  scoring, the interval tables and bootstrap, figures, MLflow logging);
- pairs/s, whole run: N / wall;
- pairs/s, marginal: (N2 - N1) / (t2 - t1) between consecutive sizes, which removes every cost
  that does not grow with N (start-up, imports, MLflow's schema, figures): the cost of one more
  audited pair through everything that scales with N (manifest checks, decoding, scoring and the
  tables), not the scoring loop alone;
- peak RSS: ``ru_maxrss`` of that child from ``os.wait4`` (its own peak, not other children's).
  Linux carries the RSS of the process that spawned it over into this number (the child is
  forked from, or vforked in, this script's memory before it execs), so this script keeps to
  the standard library and does its numpy/PIL work in a separate child; its own RSS at spawn
  time is printed, as the most it can add. As a cross-check, the child's ``VmHWM`` (the
  high-water mark of its own address space, which starts fresh at exec) is polled from /proc
  every 50 ms.

Then (unless ``--no-stages``) a separate child times the two streamed stages apart on the first
2,000 audited rows: loading (the dataset items DiskSource batches: original and output decoded)
and ``score_batch`` on those batches in memory, with each metric and the skin-tone shift alone.
The run decodes in a DataLoader worker beside the scoring process, so the slower of the two
(plus the per-batch work outside ``score_batch``) bounds its streaming rate. Thread and allocator settings in the environment (``OMP_NUM_THREADS``,
``MALLOC_MMAP_THRESHOLD_``, ...) pass through to every child and are printed.

    .venv/bin/python benchmarks/outputs_throughput.py [--sizes 10000,100000] [--workdir DIR] [--keep]

Prints a Markdown table for docs/benchmarks.md. Nothing is asserted: the targets (at least
2,000 pairs/s; peak RSS under 2 GB at 100,000 rows) are printed beside the numbers.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

SIDE = 64
POOL_PER_GROUP = 128
GROUPS = (("female", "darker"), ("female", "lighter"), ("male", "darker"), ("male", "lighter"))
NOISE_BY_GROUP = (0.06, 0.04, 0.05, 0.03)  # the outputs' noise sd per group: a disparity to find
IMAGES_PER_PERSON = 20
TRAIN_PEOPLE = 20
FILES_PER_FOLDER = 1_000
TARGET_PAIRS_PER_SECOND = 2_000
TARGET_RSS_BYTES = 2_000_000_000  # "under 2 GB", read as 2 * 10^9 bytes (1,907 MiB), the stricter reading
TARGET_RSS_ROWS = 100_000
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_")


# --- the data (runs in a child: numpy and PIL stay out of this process's memory) -------------


def generate(folder: Path, rows: int) -> None:
    """The image pool, ``rows`` audited rows' hard links, the training rows' links; seeded."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pool = folder / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / (SIDE - 1)
    for index in range(len(GROUPS) * POOL_PER_GROUP):
        group = index % len(GROUPS)
        skin = np.array([0.55, 0.40, 0.30]) if GROUPS[group][1] == "darker" else np.array([0.90, 0.75, 0.65])
        skin = skin * rng.uniform(0.9, 1.1, 3)
        cx, cy, r = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.35)
        face = (((x - cx) / r) ** 2 + ((y - cy) / (1.25 * r)) ** 2 < 1.0)[..., None]
        background = rng.uniform(0.1, 0.9, 3) * (0.7 + 0.3 * y[..., None])
        image = np.where(face, skin * (0.85 + 0.15 * x[..., None]), background)
        image = np.clip(image + rng.normal(0, 0.01, image.shape), 0, 1)
        output = np.clip(image + rng.normal(0, NOISE_BY_GROUP[group], image.shape), 0, 1)
        if (pool / f"out{index:04d}.png").exists():  # a reused --workdir: rewriting would touch every link
            continue
        Image.fromarray((image * 255).round().astype(np.uint8)).save(pool / f"orig{index:04d}.png")
        Image.fromarray((output * 255).round().astype(np.uint8)).save(pool / f"out{index:04d}.png")
    linked = [0, 0]
    for name, pool_file in iter_rows(rows):
        for kind, column in (("orig", "path"), ("out", "restored")):
            target = folder / name[column]
            if name[column] == "" or target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = pool / f"{kind}{pool_file:04d}.png"
            try:
                os.link(source, target)
                linked[0] += 1
            except OSError:
                shutil.copyfile(source, target)
                linked[1] += 1
    print(f"{linked[0]} hard links, {linked[1]} copies", file=sys.stderr)


def iter_rows(rows: int):
    """(manifest row, pool index) of the training rows, then ``rows`` audited rows."""
    for kind, count in (("train", TRAIN_PEOPLE * IMAGES_PER_PERSON), ("test", rows)):
        for row in range(count):
            person = row // IMAGES_PER_PERSON
            group = person % len(GROUPS)
            pool_file = group + len(GROUPS) * ((person * 7 + row % IMAGES_PER_PERSON) % POOL_PER_GROUP)
            folder = f"{row // FILES_PER_FOLDER:04d}"
            subject = f"{kind}{person:06d}"
            yield {
                "path": f"img/{kind}/orig/{folder}/r{row:07d}.png",
                "subject": subject,
                "gender": GROUPS[group][0],
                "skin_tone": GROUPS[group][1],
                "split": kind,
                "restored": f"img/{kind}/out/{folder}/r{row:07d}.png" if kind == "test" else "",
            }, pool_file


def write_manifest(folder: Path, rows: int) -> Path:
    path = folder / f"manifest-{rows}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "subject", "gender", "skin_tone", "split", "restored"],
                                lineterminator="\n")
        writer.writeheader()
        for row, _ in iter_rows(rows):
            writer.writerow(row)
    return path


# --- the stages alone (a child: torch stays out of this process's memory) --------------------


def stages(folder: Path, manifest_rows: int, rows: int = 2_000, rounds: int = 3) -> None:
    """Pairs/s of the two streamed stages apart, in one process, on the first ``rows`` audited rows
    of ``manifest-<manifest_rows>.csv``.

    Loading: the run's dataset items (original + output decoded, the output's aspect ratio checked
    against the original's decoded size) through a DataLoader, batch 32, no workers (the run decodes
    in one worker beside the scoring). Scoring:
    ``score_batch`` on those batches held in memory, and each of its parts. Prints one line each.
    """
    import torch
    from torch.utils.data import DataLoader

    from genfair.audit import metrics, skin
    from genfair.audit.panel import score_batch
    from genfair.datasets import load_manifest
    from genfair.datasets.datamodule import ManifestImageDataset

    manifest = load_manifest(folder / f"manifest-{manifest_rows}.csv", outputs="restored", images="skip")
    dataset = ManifestImageDataset(manifest, manifest.output_rows[:rows], image_size=SIDE)
    start = time.perf_counter()
    batches = [{"image": b["image"], "output": b["output"]} for b in DataLoader(dataset, batch_size=32)]
    load = time.perf_counter() - start
    print(f"stage load: {len(dataset)} pairs in {load:.2f} s = {len(dataset) / load:,.0f} pairs/s")
    parts = {"score_batch (all)": lambda b: score_batch(b["image"], b["output"])}
    for name in metrics.names():
        parts[name] = lambda b, fn=metrics.get(name).fn: fn(b["output"], b["image"])
    parts["ita_shift"] = lambda b: skin.per_sample_ita_shift(b["output"], b["image"])
    best = dict.fromkeys(parts, float("inf"))
    for work in parts.values():
        work(batches[0])  # warm-up
    for _ in range(rounds):  # rounds interleave the parts, so a burst of other load does not hit one part only
        for name, work in parts.items():
            start = time.perf_counter()
            for batch in batches:
                work(batch)
            best[name] = min(best[name], time.perf_counter() - start)
    for name, elapsed in best.items():
        print(f"stage score {name}: {len(dataset) / elapsed:,.0f} pairs/s ({1e3 * elapsed / len(dataset):.2f} ms a "
              f"pair, best of {rounds})")
    print(f"torch threads: {torch.get_num_threads()}")


# --- the measurement --------------------------------------------------------------------------


def own_rss_mib() -> float:
    """This process's current resident memory, MiB (what a spawned child's ru_maxrss may inherit)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def poll_hwm(pid: int, seen: list[float], done: threading.Event) -> None:
    """Keep the largest VmHWM (MiB) of ``pid`` in ``seen[0]`` until ``done``."""
    path = f"/proc/{pid}/status"
    while not done.is_set():
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        seen[0] = max(seen[0], int(line.split()[1]) / 1024)
                        break
        except OSError:
            return
        done.wait(0.05)


def timed_audit(audit: str, folder: Path, rows: int) -> dict[str, float]:
    manifest = write_manifest(folder, rows)
    command = [audit, "run", "--manifest", str(manifest), "--outputs", "restored", "--classifier-epochs", "0",
               "--image-size", str(SIDE), "--tracking-uri", f"sqlite:///{folder}/mlflow-{rows}.db",
               "--out", str(folder / f"result-{rows}")]
    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = folder / f"audit-{rows}.log"
    load_before = os.getloadavg()[0]
    parent_rss = own_rss_mib()
    seen, done = [0.0], threading.Event()
    with log.open("wb") as output:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT)
        poller = threading.Thread(target=poll_hwm, args=(child.pid, seen, done), daemon=True)
        poller.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        poller.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"audit run failed at {rows} rows (log {log}):\n{log.read_text()[-4000:]}")
    return {"rows": rows, "seconds": seconds, "maxrss": usage.ru_maxrss / 1024, "hwm": seen[0],
            "cpu": usage.ru_utime + usage.ru_stime, "parent_rss": parent_rss, "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated audited row counts")
    parser.add_argument("--workdir", type=Path, help="folder for the images, manifests and runs (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep a temporary workdir")
    parser.add_argument("--no-stages", action="store_true", help="skip the in-process load / score breakdown")
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)  # internal: the data-writing child
    parser.add_argument("--stages", type=int, help=argparse.SUPPRESS)  # internal: the stage-breakdown child
    args = parser.parse_args()
    if args.generate is not None:
        generate(args.workdir, args.generate)
        return
    if args.stages is not None:
        stages(args.workdir, args.stages)
        return
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    audit = shutil.which("audit", path=str(Path(sys.executable).parent))
    if audit is None:
        sys.exit("the `audit` command is not installed next to this Python: run `make setup` first")
    temporary = None
    if args.workdir is None:
        temporary = tempfile.mkdtemp(prefix="genfair-outputs-bench-")
        args.workdir = Path(temporary)
    folder = args.workdir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--workdir", str(folder), "--generate", str(sizes[-1])], check=True)
        generated = time.perf_counter() - start
        runs = []
        for rows in sizes:
            runs.append(timed_audit(audit, folder, rows))
            print(f"  {rows} rows: {runs[-1]['seconds']:.1f} s, ru_maxrss {runs[-1]['maxrss']:.0f} MiB",
                  file=sys.stderr, flush=True)
        breakdown = ""
        if not args.no_stages:
            breakdown = subprocess.run(
                [sys.executable, __file__, "--workdir", str(folder), "--stages", str(sizes[0])],
                check=True, capture_output=True, text=True,
            ).stdout
    finally:
        if temporary is not None and not args.keep:
            shutil.rmtree(temporary, ignore_errors=True)
    report(runs, generated, folder if temporary is None or args.keep else None, breakdown)


def report(runs: list[dict[str, float]], generated: float, kept: Path | None, breakdown: str) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{datetime.now():%Y-%m-%d %H:%M}")
    print(f"data: {len(GROUPS) * POOL_PER_GROUP} distinct originals and outputs (64x64 RGB PNG), hard-linked to "
          f"every row; written in {generated:.1f} s" + (f"; kept in {kept}" if kept else ""))
    settings = {key: os.environ[key] for key in ENVIRONMENT if key in os.environ}
    print(f"thread and allocator settings passed to the children: {settings or 'none (the defaults)'}")
    print("command: audit run --manifest manifest-N.csv --outputs restored --classifier-epochs 0 --image-size 64 "
          "--tracking-uri sqlite:///<dir>/mlflow-N.db --out <dir>/result-N")
    print()
    print("| audited rows | wall (s) | pairs/s, whole run | pairs/s, marginal | CPU s (user+sys) | "
          "peak RSS, ru_maxrss (MiB) | peak RSS, VmHWM polled (MiB) | load before / after |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    previous = None
    for run in runs:
        marginal = "-"
        if previous is not None and run["seconds"] > previous["seconds"]:
            marginal = f"{(run['rows'] - previous['rows']) / (run['seconds'] - previous['seconds']):,.0f}"
        print(f"| {run['rows']:,} | {run['seconds']:.1f} | {run['rows'] / run['seconds']:,.0f} | {marginal} | "
              f"{run['cpu']:.1f} | {run['maxrss']:,.0f} | {run['hwm']:,.0f} | "
              f"{run['load_before']:.2f} / {run['load_after']:.2f} |")
        previous = run
    print()
    print(f"(this script's own RSS when it spawned each child, which ru_maxrss may include: "
          f"{max(run['parent_rss'] for run in runs):.0f} MiB at most)")
    if len(runs) > 1 and runs[-1]["seconds"] <= runs[0]["seconds"]:
        print("throughput target: the sizes are too close for a marginal rate (the larger run was not slower)")
    elif len(runs) > 1:
        first, last = runs[0], runs[-1]
        slope = (last["rows"] - first["rows"]) / (last["seconds"] - first["seconds"])
        met = "met" if slope >= TARGET_PAIRS_PER_SECOND else "NOT met"
        print(f"throughput target (>= {TARGET_PAIRS_PER_SECOND:,} pairs/s, marginal {first['rows']:,} -> "
              f"{last['rows']:,}): {slope:,.0f} pairs/s: {met}")
    else:
        print("throughput target: give two sizes for the marginal rate")
    large = [run for run in runs if run["rows"] >= TARGET_RSS_ROWS]
    if large:
        peak = max(run["maxrss"] for run in large) * 2**20
        met = "met" if peak < TARGET_RSS_BYTES else "NOT met"
        print(f"memory target (peak RSS < 2 GB at {TARGET_RSS_ROWS:,} rows): {peak / 1e9:.2f} GB: {met}")
    else:
        print(f"memory target: not measured (no size of {TARGET_RSS_ROWS:,} rows or more)")
    growth = runs[-1]["maxrss"] - runs[0]["maxrss"]
    if len(runs) > 1:
        per_row = growth * 2**20 / (runs[-1]["rows"] - runs[0]["rows"])
        print(f"peak RSS growth {runs[0]['rows']:,} -> {runs[-1]['rows']:,} rows: {growth:+,.0f} MiB "
              f"({per_row:,.0f} bytes per audited row)")
    if breakdown:
        print()
        print("the streamed stages apart (one process, in memory after loading; the audit runs them in series):")
        print(breakdown.rstrip())


if __name__ == "__main__":
    main()
