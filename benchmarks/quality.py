"""Backbone sanity check: ID-only backbones over seeds, beside published and RecBole peers.

    python benchmarks/quality.py --dataset ml-100k --backbones sasrec gru4rec pop --seeds 0 1 2 --jobs 2

(Grids over methods and encoders are `python -m harness.sweep`; this script only places our backbones
next to peer numbers under the same protocol.)

Each trial runs `python -m harness.trial` in its own process (--threads torch threads, default 1, and
OMP_WAIT_POLICY=PASSIVE) and leaves its record in results/quality/<name>/; finished records are reused,
so the script resumes. The summary goes to results/quality/<name>.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from harness.anchors import load_anchors

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20")
COLD = ("HR@10", "NDCG@10")

def run_one(args, backbone: str, method: str, seed: int, out_dir: Path) -> Path:
    out = out_dir / f"{backbone}-{method}-s{seed}.json"
    if out.exists():
        return out
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # trials may share cores with each other or other jobs
    cmd = [sys.executable, "-m", "harness.trial", "--dataset", args.dataset, "--backbone", backbone, "--method", method,
           "--seed", str(seed), "--threads", str(args.threads), "--train-fraction", str(args.train_fraction),
           "--quiet", "--out", str(out), *args.extra]
    if method != "id":
        cmd += ["--encoder", *args.encoder]
    log = out.with_suffix(".log")
    with open(log, "w") as handle:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=handle).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); see {log}")
    log.unlink()
    print(f"done {args.dataset} {backbone} {method} seed {seed}", flush=True)
    return out


def cell(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def summarise(dataset: str, records: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["config"]["backbone"], record["config"].get("method", "id")), []).append(record)
    head = ("| backbone | method | seeds | " + " | ".join(METRICS) + " | " + " | ".join(f"cold {m}" for m in COLD)
            + " | retention (start → best epoch) | best epoch | median s/epoch |")
    lines = [head, "|" + "---|" * (len(METRICS) + len(COLD) + 6)]
    for (backbone, method), group in sorted(groups.items()):
        cells = [cell([r["test"]["overall"][m] for r in group]) for m in METRICS]
        cold = [cell([r["test"]["cold"].get(m, 0.0) for r in group]) if group[0]["test"]["cold"]["n"] else "–"
                for m in COLD]
        retention = "–"
        if group[0].get("retention_curve"):
            starts, ends = [], []
            for r in group:
                curve = {c["epoch"]: c for c in r["retention_curve"]}
                name = next(k for k in r["retention_curve"][0] if k != "epoch")
                starts.append(curve[0][name])
                ends.append(curve[r["best_epoch"]][name])
            retention = f"{np.mean(starts):.2f} → {np.mean(ends):.2f}"
        epochs = ", ".join(str(r["best_epoch"]) for r in group)
        # median epoch: robust to a run paused or slowed by other work on the machine
        speed = np.mean([np.median([c["train_seconds"] for c in r["curves"] if c["epoch"] > 0] or [0.0])
                         for r in group])
        lines.append(f"| {backbone} | {method} | {len(group)} | " + " | ".join(cells + cold)
                     + f" | {retention} | {epochs} | {speed:.1f} |")
    comparable = all(r["config"].get("train_fraction", 1) == 1 and r["config"].get("method", "id") == "id"
                     for r in records)
    for anchor in load_anchors().get(dataset, []) if comparable else []:  # harness/anchors.yaml
        history = {True: "history excluded", False: "history included", None: "history: not stated"}
        lines.append(f"| {anchor.model} ({anchor.paper}; {anchor.source}; {anchor.protocol}; "
                     f"{history[anchor.history_excluded]}) | | – | "
                     + " | ".join(f"{anchor.test[m]:.4f}" if m in anchor.test else "–" for m in METRICS)
                     + " | – | – | | | |")
    first = records[0]
    protocol, stats, cfg = first["protocol"], first["dataset_stats"], first["config"]
    encoders = sorted({e for r in records for e in r["config"].get("encoder", [])})
    fraction = cfg.get("train_fraction", 1)
    sparse = "" if fraction == 1 else f"; sparse regime: each user's most recent {fraction:.0%} of training kept"
    caption = (f"Test metrics on {dataset} ({stats['users']} users, {stats['items']} items, "
               f"{stats['interactions']} interactions after {cfg['user_k']}-core{sparse}); "
               f"mean ± std over seeds. Protocol: {protocol['split']}; {protocol['ranking']}; history excluded: "
               f"{protocol['history_excluded']}; {protocol['model_selection']}. Cold: test items with ≤ "
               f"{protocol['popularity_buckets']['cold_max_train_count']} training interactions "
               f"(n = {first['test']['cold']['n']}). Encoders: {', '.join(encoders) or 'none'}. d={cfg['dim']}, max "
               f"length {cfg['max_len']}, batch {cfg['batch_size']} windows, lr {cfg['lr']}, "
               f"{first['runtime']['torch_threads']} torch thread(s) per trial. Retention: Spearman between student "
               f"and teacher cosines on fixed item pairs.")
    return caption + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--backbones", nargs="+", default=["sasrec", "gru4rec", "pop"])
    parser.add_argument("--methods", nargs="+", default=["id"])
    parser.add_argument("--encoder", nargs="+", default=["minilm-l6"], help="for methods other than id")
    parser.add_argument("--train-fraction", type=float, default=1.0)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="trials at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument("--name", default=None, help="output name (default: the data set)")
    parser.add_argument("--out", default=str(ROOT / "results" / "quality"))
    parser.add_argument("extra", nargs="*", help="extra harness.trial options after --")
    args = parser.parse_args()
    name = args.name or args.dataset
    out_dir = Path(args.out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(b, m, s) for b in args.backbones for m in (args.methods if b != "pop" else ["id"])
             for s in (args.seeds if b != "pop" else args.seeds[:1])]
    with ThreadPoolExecutor(args.jobs) as pool:
        paths = list(pool.map(lambda t: run_one(args, *t, out_dir), tasks))
    records = [json.loads(p.read_text()) for p in paths]
    table = summarise(args.dataset, records)
    (Path(args.out) / f"{name}.md").write_text(f"# {name}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
