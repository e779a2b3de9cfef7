"""Harness overhead of a finished sweep: the share of each trial's wall time not spent training.

    python benchmarks/sweep_overhead.py --storage results/cpu --grid cpu [--out results/speed/sweep-overhead-cpu.md]

Per trial (Tune's trial directory + our record): wall = trial start on the driver (Tune's event-file
stamp) to the trial's report; fit = the trainer's time (epochs + evaluation); setup = data, split,
cached features, codebook and model construction inside the worker (record "timing"). Overhead =
(wall - fit) / wall: scheduling, worker start, imports, data and feature loading. Also the whole-sweep
efficiency sum(fit) / (concurrency x span), which adds idle slots (e.g. the tail of the sweep).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


def trial_rows(storage: Path, grid: str) -> list[dict]:
    rows = []
    for folder in sorted((storage / "ray" / grid).glob("*/")):
        events = list(folder.glob("events.out.tfevents.*"))
        result_file = folder / "result.json"
        if not events or not result_file.is_file() or not result_file.read_text().strip():
            continue
        start = int(re.search(r"tfevents\.(\d+)\.", events[0].name).group(1))
        result = json.loads(result_file.read_text().strip().splitlines()[-1])
        record_path = storage / "records" / f"{result['key']}.json"
        if not record_path.is_file():
            continue
        record = json.loads(record_path.read_text())
        timing = record.get("timing")
        if not timing:
            continue  # records made before the sweep existed
        wall = result["timestamp"] - start
        fit = timing["trial_seconds"] - timing["setup_seconds"]
        rows.append({"key": result["key"], "method": record["config"]["method"], "start": start,
                     "end": result["timestamp"], "wall": wall, "setup": timing["setup_seconds"], "fit": fit})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--grid", required=True, help="the Tune experiment name (the grid's name)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = trial_rows(Path(args.storage), args.grid)
    if not rows:
        raise SystemExit(f"{args.storage}: no trial with both a Tune result and a timed record")
    wall = np.array([r["wall"] for r in rows], dtype=float)
    fit = np.array([r["fit"] for r in rows])
    setup = np.array([r["setup"] for r in rows])
    overhead = (wall - fit) / wall
    span = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    lines = [
        f"# Sweep overhead: {args.grid} ({len(rows)} trials run by the sweep, {args.concurrency} at a time)\n",
        "| quantity | value |", "|---|---|",
        f"| trial wall time, median (s) | {np.median(wall):.1f} |",
        f"| of which training + evaluation, median (s) | {np.median(fit):.1f} |",
        f"| of which in-worker setup (data, cached features, codebook, model), median (s) | {np.median(setup):.2f} |",
        f"| per-trial overhead (wall - fit) / wall: median | {100 * np.median(overhead):.1f}% |",
        f"| per-trial overhead: mean, 90th percentile | {100 * overhead.mean():.1f}%, {100 * np.quantile(overhead, 0.9):.1f}% |",
        f"| total overhead sum(wall - fit) / sum(wall) | {100 * (wall - fit).sum() / wall.sum():.1f}% |",
        f"| sweep efficiency sum(fit) / ({args.concurrency} x span) | {100 * fit.sum() / (args.concurrency * span):.1f}% "
        f"(span {span / 60:.1f} min) |",
        "", "Wall time is measured at 1 s resolution (Tune's stamps).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
