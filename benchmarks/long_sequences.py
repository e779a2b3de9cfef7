"""SASRec at max length 200 on ML-1M (the anchors' setting): seconds per epoch for each training-sample
construction, with and without length-bucketed batches, fp32 and bf16, reference and fast kernels
(methods/kernels.py), against the epoch's matmul floor; each fast row also as a ratio to its reference twin.
With --target, wall time until validation NDCG@10 reaches it instead (training + per-epoch validation).

    python benchmarks/long_sequences.py --threads 2                       # the fp32 reference / fast pairs
    python benchmarks/long_sequences.py --threads 2 --only 6 7 8 9 --name bf16   # the bf16 pairs
    python benchmarks/long_sequences.py --threads 2 --only 9 --target 0.19 --name time-to-0.19
    python benchmarks/long_sequences.py --threads 2 --only 7 --target 0.19 --lr 2e-3 --name time-to-0.19-lr2e-3

Two floors per row, both at the measured GEMM rate of the row's precision: `padded` counts every position
of every row (what an implementation that computes on padding pays at best), `real` only the real positions
(logits for real targets, blocks for real tokens, attention over each row's real length). Run it on an
otherwise idle machine: it prints the load average before each run. Writes
results/speed/long-sequences-<dataset>[-<name>].md and the raw records under results/speed/long-<dataset>/.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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
    ("windows", 0, "bf16", "reference"), ("windows", 0, "bf16", "fast"),
    ("windows", 16, "bf16", "reference"), ("windows", 16, "bf16", "fast"),
    ("last", 0, "fp32", "reference"), ("last", 16, "bf16", "reference"),
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


def time_to_target(record: dict, target: float) -> tuple[int | None, float]:
    """(first epoch whose validation NDCG@10 reaches `target`, training + validation seconds until then)."""
    seconds = 0.0
    for entry in record["curves"]:
        if entry["epoch"] == 0:
            continue
        seconds += entry["train_seconds"] + entry["eval_seconds"]
        if entry["valid"]["NDCG@10"] >= target:
            return entry["epoch"], seconds
    return None, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per speed row")
    parser.add_argument("--only", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5],
                        help="indices of CONFIGS to run (default: the six fp32 reference / fast pairs)")
    parser.add_argument("--target", type=float, default=None,
                        help="validation NDCG@10: time each row until it is reached (at most --max-epochs)")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of every row")
    parser.add_argument("--name", default="", help="suffix of the output file")
    parser.add_argument("--out", default=str(ROOT / "results" / "speed"))
    args = parser.parse_args(argv)
    if not args.only:
        parser.error("--only needs at least one index of CONFIGS")
    out = Path(args.out)
    raw = out / f"long-{args.dataset}"
    raw.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, verbose=False)
    split = make_split(data)
    rate = {"fp32": matmul_gflops(2048, 64, data.n_items, torch.float32, args.threads),
            "bf16": matmul_gflops(2048, 64, data.n_items, torch.bfloat16, args.threads)}
    lines = [f"# SASRec at max length 200 on {args.dataset}" + (f": time to validation NDCG@10 {args.target}"
                                                                  if args.target else ""), "",
             f"{os.cpu_count()} CPUs, {args.threads} torch threads, torch {torch.__version__}; measured GEMM rate "
             f"(logits-shaped) fp32 {rate['fp32']:.0f} GFLOP/s, bf16 {rate['bf16']:.0f} GFLOP/s. Settings: "
             f"{' '.join(STRONG)}, d 64, 2 blocks, batch 32 rows, lr {args.lr:g}, full-softmax CE over {data.n_items:,} "
             "items, seed 0. With length_buckets > 0 batches are sorted by length and cut to their longest row "
             "(methods/padding.py); with 0 they keep full width. `× reference`: over the same row with reference "
             "kernels; floors at the row's precision's GEMM rate.", ""]
    if args.target:
        lines += [f"Wall time = training + per-epoch validation seconds until the first epoch whose validation "
                  f"NDCG@10 >= {args.target} (process = the whole command, data loading included).", "",
                  "| train_samples | length_buckets | precision | kernels | epoch reached | wall s | process s | "
                  "s/epoch | valid s | load avg |", "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    else:
        lines += [f"{args.epochs} epoch(s) per row.", "",
                  "| train_samples | length_buckets | precision | kernels | rows | s/epoch | × reference | "
                  "floor padded s | floor real s | × real floor | valid s | valid NDCG@10 | load avg |",
                  "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    reference: dict[tuple, float] = {}
    for index, (samples, buckets, precision, kernels) in enumerate(CONFIGS):
        if index not in args.only:
            continue
        rows = training_rows(data, split, 200, samples)
        load = os.getloadavg()[0]
        epochs = args.max_epochs if args.target else args.epochs
        tag = (f"{samples}-b{buckets}-{precision}-{kernels}" + (f"-lr{args.lr:g}" if args.lr != 1e-3 else "")
               + (f"-to{args.target}" if args.target else ""))
        path = raw / f"{tag}.json"
        cmd = [sys.executable, "-m", "harness.trial", "--dataset", args.dataset, "--backbone", "sasrec", *STRONG,
               "--train-samples", samples, "--length-buckets", str(buckets), "--precision", precision,
               "--kernels", kernels, "--threads", str(args.threads), "--epochs", str(epochs), "--lr", str(args.lr),
               "--patience", str(epochs), "--quiet", "--out", str(path)]
        if args.target:
            cmd += ["--stop-at-valid", str(args.target)]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        process = time.perf_counter() - start
        record = json.loads(path.read_text())
        spe = record["seconds_per_epoch"]
        valid_s = float(np.mean([c["eval_seconds"] for c in record["curves"] if c["epoch"] > 0]))
        if args.target:
            epoch, wall = time_to_target(record, args.target)
            row = (f"| {samples} | {buckets} | {precision} | {kernels} | {epoch if epoch else f'not by {epochs}'} | "
                   f"{wall:.0f} | {process:.0f} | {spe:.1f} | {valid_s:.1f} | {load:.1f} |")
        else:
            if kernels == "reference":
                reference[samples, buckets, precision] = spe
            twin = reference.get((samples, buckets, precision))
            ratio = f"{spe / twin:.2f}" if twin and kernels != "reference" else "–"
            gemm = rate[precision] * 1e9
            floor_padded = epoch_flops(rows, data.n_items, real=False) / gemm
            floor_real = epoch_flops(rows, data.n_items) / gemm
            row = (f"| {samples} | {buckets} | {precision} | {kernels} | {len(rows):,} | {spe:.1f} | {ratio} | "
                   f"{floor_padded:.1f} | {floor_real:.1f} | {spe / floor_real:.2f} | {valid_s:.1f} | "
                   f"{record['curves'][-1]['valid']['NDCG@10']:.4f} | {load:.1f} |")
        lines.append(row)
        print(row, flush=True)
    name = f"long-sequences-{args.dataset}" + (f"-{args.name}" if args.name else "")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
