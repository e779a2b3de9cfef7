"""SASRec at max length 200 on ML-1M (the anchors' setting): seconds per epoch for each training-sample
construction, with and without length-bucketed batches, fp32 and bf16, reference and fast kernels
(methods/kernels.py), against the epoch's matmul floor; each fast row also as a ratio to its reference twin.

    python benchmarks/long_sequences.py --threads 2 [--epochs 1] [--target 0.19]

Two floors per row, both at the measured GEMM rate: `padded` counts every position of every row (what
an implementation that computes on padding pays at best), `real` only the real positions (logits for real
targets, blocks for real tokens, attention over each row's real length). Run it on an otherwise idle
machine: it prints the load average before each run. Writes results/speed/long-sequences-<dataset>.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from train_speed import matmul_gflops  # a sibling script: run this file from the repository root
from harness.data import load_dataset, make_split
from harness.data.split import training_rows

ROOT = Path(__file__).resolve().parents[1]
STRONG = ["--max-len", "200", "--exclude-history", "--n-heads", "1", "--dropout", "0.1", "--attn-dropout", "0.1"]
CONFIGS = [  # (train_samples, length_buckets, precision, kernels)
    ("windows", 0, "fp32", "reference"), ("windows", 0, "fp32", "fast"),
    ("windows", 16, "fp32", "reference"), ("windows", 16, "fp32", "fast"),
    ("last", 16, "fp32", "reference"), ("last", 16, "fp32", "fast"),
    ("last", 0, "fp32", "reference"), ("windows", 16, "bf16", "reference"), ("last", 16, "bf16", "reference"),
]


def epoch_flops(rows: np.ndarray, n_items: int, dim=64, layers=2, inner=256, real=True) -> float:
    """Forward + backward (3x forward) matmul FLOPs of one epoch over `rows` [n, L + 1]."""
    lengths = (rows[:, :-1] > 0).sum(1) if real else np.full(len(rows), rows.shape[1] - 1)
    targets = (rows[:, 1:] > 0).sum() if real else rows[:, 1:].size
    tokens = lengths.sum()
    logits = 2 * targets * dim * n_items
    blocks = layers * tokens * (2 * dim * 3 * dim + 2 * dim * dim + 2 * 2 * dim * inner)
    attention = layers * 2 * 2 * dim * float((lengths.astype(np.float64) ** 2).sum())
    return 3 * (logits + blocks + attention)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--only", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5],
                        help="indices of CONFIGS to run (default: the six fp32 reference / fast pairs)")
    parser.add_argument("--out", default=str(ROOT / "results" / "speed"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    raw = out / f"long-{args.dataset}"
    raw.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, verbose=False)
    split = make_split(data)
    fp32 = matmul_gflops(2048, 64, data.n_items, torch.float32, args.threads)
    bf16 = matmul_gflops(2048, 64, data.n_items, torch.bfloat16, args.threads)
    lines = [f"# SASRec at max length 200 on {args.dataset}", "",
             f"{os.cpu_count()} CPUs, {args.threads} torch threads, torch {torch.__version__}; measured GEMM rate "
             f"(logits-shaped) fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s. Settings: {' '.join(STRONG)}, "
             f"d 64, 2 blocks, batch 32 rows, full-softmax CE over {data.n_items:,} items; {args.epochs} epoch(s) "
             "per row, seed 0. With length_buckets > 0 batches are sorted by length and cut to their longest "
             "row (methods/padding.py); with 0 they keep full width. `× reference`: s/epoch over the same row with "
             "reference kernels.", "",
             "| train_samples | length_buckets | precision | kernels | rows | s/epoch | × reference | floor padded s | "
             "floor real s | × real floor | valid s | valid NDCG@10 | load avg |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    reference: dict[tuple, float] = {}
    for index, (samples, buckets, precision, kernels) in enumerate(CONFIGS):
        if args.only is not None and index not in args.only:
            continue
        rows = training_rows(data, split, 200, samples)
        rate = (fp32 if precision == "fp32" else bf16) * 1e9
        floor_padded, floor_real = epoch_flops(rows, data.n_items, real=False) / rate, epoch_flops(rows, data.n_items) / rate
        load = os.getloadavg()[0]
        path = raw / f"{samples}-b{buckets}-{precision}-{kernels}.json"
        cmd = [sys.executable, "-m", "harness.trial", "--dataset", args.dataset, "--backbone", "sasrec", *STRONG,
               "--train-samples", samples, "--length-buckets", str(buckets), "--precision", precision,
               "--kernels", kernels,
               "--threads", str(args.threads), "--epochs", str(args.epochs), "--patience", str(args.epochs),
               "--quiet", "--out", str(path)]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        record = json.loads(path.read_text())
        spe = record["seconds_per_epoch"]
        if kernels == "reference":
            reference[samples, buckets, precision] = spe
        twin = reference.get((samples, buckets, precision))
        ratio = f"{spe / twin:.2f}" if twin and kernels != "reference" else "–"
        row = (f"| {samples} | {buckets} | {precision} | {kernels} | {len(rows):,} | {spe:.1f} | {ratio} | "
               f"{floor_padded:.1f} | "
               f"{floor_real:.1f} | {spe / floor_real:.2f} | {record['curves'][-1]['eval_seconds']:.1f} | "
               f"{record['curves'][-1]['valid']['NDCG@10']:.4f} | {load:.1f} |")
        lines.append(row)
        print(row, flush=True)
    (out / f"long-sequences-{args.dataset}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
