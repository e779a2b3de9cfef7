"""Cost of KDSR: seconds per epoch against two_stage on the same backbone and data (L = 50), and teacher
preparation (codebook fit + sub-space tables) on synthetic feature tables of growing size.

    python benchmarks/kdsr_cost.py --dataset ml-100k --threads 1
    python benchmarks/kdsr_cost.py --teacher-only --sizes 10000 100000 1000000

Written to results/speed/kdsr-cost.md. Teacher preparation must grow about linearly in the item count:
nothing builds an N x N matrix (the reference's dense approach needs N^2 floats: 4 TB at 1M items).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def epoch_seconds(dataset: str, backbone: str, method: str, encoder: str, epochs: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "harness.trial", "--dataset", dataset, "--backbone", backbone, "--method", method,
           "--encoder", encoder, "--epochs", str(epochs), "--patience", str(epochs), "--threads", str(threads),
           "--quiet"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    record = json.loads(out)
    return {"seconds_per_epoch": record["seconds_per_epoch"], "params": record["trainable_params"]}


def teacher_prep(n_items: int, dim: int, n_codes: int, n_sub: int, sample: int) -> tuple[float, float]:
    """Child process: time and peak RSS (MB) of everything KDSR precomputes for n_items."""
    code = f"""
import time, resource, numpy as np, torch
import sklearn.cluster, scipy.stats  # imported before the baseline so that their memory is not counted
from methods.distill import fit_codebook, subspaces, normalize_rows
rng = np.random.default_rng(0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
features = rng.normal(size=({n_items} + 1, {dim})).astype(np.float32)  # the N x d table itself is counted
start = time.perf_counter()
pairs = rng.integers(1, {n_items} + 1, size=({sample}, 2))
centroids = fit_codebook(features, pairs, {n_codes}, {n_sub}, 0)
sub = subspaces(torch.from_numpy(features), {n_sub})
unit = normalize_rows(torch.from_numpy(features))
print(time.perf_counter() - start, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    seconds, peak = out.split()
    return float(seconds), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--backbones", nargs="+", default=["sasrec", "gru4rec"])
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--teacher-only", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "speed" / "kdsr-cost.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = ["# KDSR cost", "", f"{os.cpu_count()} CPUs, {args.threads} torch thread(s), "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}.", ""]
    if not args.teacher_only:
        lines += [f"Seconds per training epoch on {args.dataset}, encoder {args.encoder}, L = 50, mean of "
                  f"{args.epochs} epochs:", "", "| backbone | two_stage s/epoch | kdsr s/epoch | ratio |",
                  "|---|---:|---:|---:|"]
        for backbone in args.backbones:
            base = epoch_seconds(args.dataset, backbone, "two_stage", args.encoder, args.epochs, args.threads)
            kdsr = epoch_seconds(args.dataset, backbone, "kdsr", args.encoder, args.epochs, args.threads)
            row = (f"| {backbone} | {base['seconds_per_epoch']:.2f} | {kdsr['seconds_per_epoch']:.2f} | "
                   f"{kdsr['seconds_per_epoch'] / base['seconds_per_epoch']:.2f} |")
            lines.append(row)
            print(row, flush=True)
        lines.append("")
    lines += ["Teacher preparation on synthetic features (d = 128, K = 50, D = 8, 100k sampled pairs): codebook "
              "fit, sub-space tables and unit rows; memory counts the N x d feature table too.", "", "| items | seconds | peak extra memory MB | "
              "dense N x N float32 would need |", "|---:|---:|---:|---:|"]
    for n in args.sizes:
        seconds, peak = teacher_prep(n, 128, 50, 8, 100_000)
        dense = n * n * 4 / 2**30
        row = f"| {n:,} | {seconds:.2f} | {peak:.0f} | {dense:,.1f} GiB |"
        lines.append(row)
        print(row, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
