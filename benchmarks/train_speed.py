"""Training speed on CPU: seconds per epoch, full evaluation time and wall time to a fixed validation
NDCG@10, for SASRec and GRU4Rec, fp32 vs bf16 autocast, default vs PASSIVE OpenMP waiting, side by side
with the matmul floor measured on the same machine.

    python benchmarks/train_speed.py --dataset ml-1m --epochs 2 --target 0.12 --threads 2

Run it on an otherwise idle machine; every number is printed and written to results/speed/<dataset>.md
(plus the raw records). Timed runs are separate processes so that the OpenMP setting takes effect.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, threads: int, seconds: float = 2.0) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


def epoch_flops(stats: dict, backbone: str, dim=64, layers=2, inner=256, hidden=128, max_len=50) -> float:
    """Forward + backward FLOPs of one epoch (3x forward), counting matmuls only."""
    targets, tokens = stats["targets"], stats["window_tokens"]
    softmax = 3 * 2 * targets * dim * stats["items"]
    if backbone == "sasrec":
        per_token = layers * (2 * dim * 3 * dim + 2 * dim * dim + 2 * 2 * dim * inner + 2 * 2 * max_len * dim)
    else:  # GRU: 3 gates over input and hidden, then the projection back to dim
        per_token = 3 * 2 * (dim * hidden + hidden * hidden) + 2 * hidden * dim
    return softmax + 3 * per_token * tokens


def protocol_sizes(dataset: str, max_len: int) -> dict:
    from harness.data import load_dataset, make_split
    from harness.data.split import training_windows

    data = load_dataset(dataset, verbose=False)
    windows = training_windows(data, make_split(data), max_len)
    return {"targets": int((windows[:, 1:] > 0).sum()), "window_tokens": int(windows[:, :-1].size),
            "items": data.n_items}


def run_trial(dataset, backbone, precision, omp, threads, epochs, out: Path, stop_at=0.0) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if omp != "default":
        env["OMP_WAIT_POLICY"] = omp
    cmd = [sys.executable, "-m", "harness.trial", "--dataset", dataset, "--backbone", backbone, "--precision",
           precision, "--threads", str(threads), "--epochs", str(epochs), "--patience", str(epochs), "--quiet",
           "--stop-at-valid", str(stop_at), "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--backbones", nargs="+", default=["sasrec", "gru4rec"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.12, help="validation NDCG@10 for the time-to-target runs")
    parser.add_argument("--max-epochs", type=int, default=30, help="give up on the target after this many epochs")
    parser.add_argument("--skip-target", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "speed"))
    args = parser.parse_args()
    out = Path(args.out)
    raw = out / args.dataset
    raw.mkdir(parents=True, exist_ok=True)

    sizes = protocol_sizes(args.dataset, 50)
    fp32 = matmul_gflops(sizes["targets"] // 600, 64, sizes["items"], torch.float32, args.threads)
    bf16 = matmul_gflops(sizes["targets"] // 600, 64, sizes["items"], torch.bfloat16, args.threads)
    lines = [f"# Training speed on {args.dataset}", "",
             f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch threads. "
             f"Measured matmul throughput (logits-shaped GEMM): fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s. "
             f"One epoch = {sizes['targets']:,} training targets in windows of 50 "
             f"({sizes['window_tokens']:,} positions incl. padding), full softmax over {sizes['items']:,} items.", "",
             "| backbone | precision | OMP_WAIT_POLICY | s/epoch | floor s/epoch | × floor | full eval s | valid NDCG@10 after "
             f"{args.epochs} ep |", "|---|---|---|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for backbone in args.backbones:
        flops = epoch_flops(sizes, backbone)
        for precision in ("fp32", "bf16"):
            for omp in ("default", "PASSIVE"):
                record = run_trial(args.dataset, backbone, precision, omp, args.threads, args.epochs,
                                   raw / f"{backbone}-{precision}-{omp}.json")
                floor = flops / ((fp32 if precision == "fp32" else bf16) * 1e9)
                spe = record["seconds_per_epoch"]
                row = (f"| {backbone} | {precision} | {omp} | {spe:.1f} | {floor:.1f} | {spe / floor:.2f} | "
                       f"{record['eval_seconds']:.2f} | {record['curves'][-1]['valid']['NDCG@10']:.4f} |")
                lines.append(row)
                print(row, flush=True)
    if not args.skip_target:
        lines += ["", f"Wall time (training + per-epoch validation) until validation NDCG@10 >= {args.target}, "
                      f"default OMP setting, seed 0, at most {args.max_epochs} epochs:", "",
                  "| backbone | precision | epochs | wall s | test NDCG@10 at that epoch |", "|---|---|---:|---:|---:|"]
        for backbone in args.backbones:
            for precision in ("fp32", "bf16"):
                record = run_trial(args.dataset, backbone, precision, "default", args.threads, args.max_epochs,
                                   raw / f"target-{backbone}-{precision}.json", stop_at=args.target)
                reached = record["stop_reason"].startswith("validation")
                wall = sum(c["train_seconds"] + c["eval_seconds"] for c in record["curves"])
                row = (f"| {backbone} | {precision} | {record['epochs_run']}{'' if reached else ' (not reached)'} | "
                       f"{wall:.0f} | {record['test']['overall']['NDCG@10']:.4f} |")
                lines.append(row)
                print(row, flush=True)
    (out / f"{args.dataset}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
