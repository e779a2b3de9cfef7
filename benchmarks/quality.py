"""Quality check: SASRec / GRU4Rec / most-popular over seeds, mean and std of test metrics, beside peers.

    python benchmarks/quality.py --dataset ml-100k --backbones sasrec gru4rec pop --seeds 0 1 2 --jobs 2

Each trial runs `python -m harness.trial` in its own process (--threads torch threads, default 1, and
OMP_WAIT_POLICY=PASSIVE) and leaves its record in results/quality/<dataset>/; finished records are
reused, so the script resumes. The summary goes to results/quality/<dataset>.md.
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

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20")

# Peers under the same protocol (5-core, leave-one-out, full ranking, d=64, max length 50, CE loss).
PEERS = {
    "ml-100k": [
        ("RecBole 1.2.1 SASRec (1 seed, measured by the issue author)", {"HR@10": 0.126, "NDCG@10": 0.061}),
        ("RecBole 1.2.1 GRU4Rec (1 seed, measured by the issue author)", {"HR@10": 0.130, "NDCG@10": 0.064}),
    ],
}


def run_one(dataset: str, backbone: str, seed: int, out_dir: Path, threads: int, extra: list[str]) -> Path:
    out = out_dir / f"{backbone}-s{seed}.json"
    if out.exists():
        return out
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # trials may share cores with each other or other jobs
    cmd = [sys.executable, "-m", "harness.trial", "--dataset", dataset, "--backbone", backbone, "--seed", str(seed),
           "--threads", str(threads), "--quiet", "--out", str(out), *extra]
    log = out.with_suffix(".log")
    with open(log, "w") as handle:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=handle).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}); see {log}")
    log.unlink()
    print(f"done {dataset} {backbone} seed {seed}", flush=True)
    return out


def summarise(dataset: str, records: list[dict]) -> str:
    by_backbone: dict[str, list[dict]] = {}
    for record in records:
        by_backbone.setdefault(record["config"]["backbone"], []).append(record)
    head = "| model | seeds | " + " | ".join(METRICS) + " | best epoch | s/epoch |"
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for backbone, group in sorted(by_backbone.items()):
        cells = []
        for metric in METRICS:
            values = np.array([r["test"]["overall"][metric] for r in group])
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}")
        epochs = ", ".join(str(r["best_epoch"]) for r in group)
        speed = np.mean([r["seconds_per_epoch"] for r in group])
        lines.append(f"| {backbone} (ours) | {len(group)} | " + " | ".join(cells) + f" | {epochs} | {speed:.1f} |")
    for name, values in PEERS.get(dataset, []):
        lines.append(f"| {name} | 1 | " + " | ".join(f"{values[m]:.3f}" if m in values else "–" for m in METRICS)
                     + " | | |")
    protocol = records[0]["protocol"]
    stats = records[0]["dataset_stats"]
    cfg = records[0]["config"]
    caption = (f"Test metrics on {dataset} ({stats['users']} users, {stats['items']} items, "
               f"{stats['interactions']} interactions after {cfg['user_k']}-core); mean ± std over seeds. "
               f"Protocol: {protocol['split']}; {protocol['ranking']}; history excluded: "
               f"{protocol['history_excluded']}; {protocol['model_selection']}. d={cfg['dim']}, max length "
               f"{cfg['max_len']}, batch {cfg['batch_size']} windows, lr {cfg['lr']}, {records[0]['runtime']['torch_threads']} torch thread(s) per trial.")
    return caption + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--backbones", nargs="+", default=["sasrec", "gru4rec", "pop"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="trials at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    parser.add_argument("--out", default=str(ROOT / "results" / "quality"))
    parser.add_argument("extra", nargs="*", help="extra harness.trial options after --")
    args = parser.parse_args()
    out_dir = Path(args.out) / args.dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(b, s) for b in args.backbones for s in (args.seeds if b != "pop" else args.seeds[:1])]
    with ThreadPoolExecutor(args.jobs) as pool:
        paths = list(pool.map(lambda t: run_one(args.dataset, t[0], t[1], out_dir, args.threads, args.extra), tasks))
    records = [json.loads(p.read_text()) for p in paths]
    table = summarise(args.dataset, records)
    (Path(args.out) / f"{args.dataset}.md").write_text(f"# {args.dataset}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
