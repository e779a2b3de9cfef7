"""SASRec on a synthetic 1M-item catalogue: training steps with sampled negatives (sampled softmax, gBCE)
within this machine's memory, where full-softmax CE would need a B x L x N logit matrix, and full-ranking
evaluation over every item streamed in item chunks (never a users x N score matrix).

    python benchmarks/large_catalogue.py --items 1000000 --threads 2 [--out results/speed/large-catalogue.md]

Prints s/step, the process's peak memory after each phase, and what full CE would need.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import torch

from methods.backbones import build_backbone
from methods.evaluate import ITEM_CHUNK, EvalSet, evaluate
from methods.losses import LossSettings
from methods.trainer import seed_everything


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--users", type=int, default=1024, help="users ranked against every item")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    n, b, length = args.items, args.batch_size, args.max_len
    lines = [f"# SASRec on a synthetic {n:,}-item catalogue", "",
             f"d 64, 2 blocks, batch {b} windows x max length {length}, {args.threads} threads, fp32, "
             f"{args.negatives} shared negatives per step; torch {torch.__version__}; load average "
             f"{os.getloadavg()[0]:.1f} at the start (above ~0.5: other work shared the cores).", ""]
    full_ce_gib = b * length * n * 4 * 2 / 2**30  # logits and their gradient, fp32
    lines += [f"- full-softmax CE would need {b * length:,} x {n:,} logits: {full_ce_gib:,.0f} GiB (fp32, "
              "logits + gradient) on a 24 GiB machine", ""]
    lines += ["| loss | s/step (mean of steps 2..) | peak RSS after (GiB) |", "|---|---|---|"]
    windows = torch.randint(1, n + 1, (b, length + 1))
    for loss in ("sampled", "gbce"):
        seed_everything(0)
        model = build_backbone("sasrec", n, length, loss=LossSettings(loss=loss, n_negatives=args.negatives))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            loss_value = model.losses(windows)["rec"]
            optimizer.zero_grad(set_to_none=True)
            loss_value.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        mean = sum(times[1:]) / max(len(times) - 1, 1)
        lines.append(f"| {loss} | {mean:.3f} | {peak_gib():.2f} |")
        print(lines[-1], flush=True)
    model.eval()
    histories = torch.randint(1, n + 1, (args.users, length))
    targets = torch.randint(1, n + 1, (args.users,))
    offsets = torch.arange(0, (args.users + 1) * length, length)
    ev = EvalSet(histories, targets, offsets, histories.flatten())
    start = time.perf_counter()
    result = evaluate(model, ev, batch_size=256, exclude_history=True)
    seconds = time.perf_counter() - start
    dense_gib = 256 * n * 4 / 2**30
    lines += ["", f"- full-ranking evaluation of {args.users:,} users over all {n:,} items, history excluded, "
              f"in item chunks of {ITEM_CHUNK:,} (batches of 256 users; one dense batch would hold {dense_gib:.1f} "
              f"GiB of scores): {seconds:.1f} s ({args.users / seconds:.0f} users/s), peak RSS {peak_gib():.2f} "
              f"GiB; HR@10 of the untrained model {result['overall']['HR@10']:.4f} (chance {10 / n:.1e})"]
    print("\n".join(lines[-1:]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
