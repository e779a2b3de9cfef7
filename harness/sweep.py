"""Run a grid of trials with Ray Tune: data sets x backbones x encoders x methods x seeds.

    python -m harness.sweep --grid demo                      # the README's main job (2 CPU cores, < 10 min)
    python -m harness.sweep --grid full --dry-run            # the trial table, its count and resources
    python -m harness.sweep --grid cpu --storage runs/cpu    # rerun = resume: finished trials are skipped
    python -m harness.sweep --grid paper --address auto --storage /shared/kdsr --gpus-per-trial 0.25
    python -m harness.sweep --grid smoke --search optuna --num-samples 8

Finished trials live in the result store (<storage>/records/<key>.json, see harness/store.py), keyed by
the hash of the canonical trial config, so a rerun of the same grid (or of a grid with more values on
an axis) runs only the trials that have no record; `kill -9` of the driver loses only the trials that
were running. Failed trials are retried (--retries), then recorded under <storage>/failed/ with their
error, and the sweep goes on. Features are extracted once per (data set, encoder) as Ray tasks before
the trials, which only read the cache. At the end the report (harness.report) is written to <storage>.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

from harness.grid import GridError, filter_trials, load_grid
from harness.store import ResultStore
from harness.trial import TrialConfig

SUMMARY_METRIC = "valid_ndcg10"


def trial_label(cfg: TrialConfig) -> str:
    encoders = "+".join(cfg.encoder) or "-"
    return f"{cfg.dataset}/{cfg.backbone}/{cfg.method}/{encoders}/s{cfg.seed} [{cfg.key()[:6]}]"


def summary_metrics(record: dict) -> dict:
    return {SUMMARY_METRIC: record["valid"]["overall"]["NDCG@10"], "test_ndcg10": record["test"]["overall"]["NDCG@10"],
            "best_epoch": record["best_epoch"], "key": record["key"], "final": True}


def grid_trainable(config: dict) -> None:
    """Ray Tune function trainable: one trial -> one record in the store (or a failure entry, re-raised so
    that Tune retries it). `config` = {"run": trial settings and where to store, "hp": searched values}."""
    import ray
    from ray import tune

    from harness.search import apply_hp
    from harness.trial import run_trial

    params = config["run"]
    config = apply_hp(params["trial"], config.get("hp", {}))
    store = ResultStore(params["storage"], params.get("records_dir", "records"))
    cfg = TrialConfig(**config)
    key = cfg.key()
    if store.has(key):  # finished meanwhile, e.g. by a trial orphaned from a killed driver
        tune.report(summary_metrics(store.load(key)))
        return
    gpu = bool(ray.get_gpu_ids())
    cfg = replace(cfg, threads=params["threads"], device="cuda" if gpu else "cpu")
    paths = params.get("paths", {})
    try:
        def report_epoch(curve: dict, best_score: float, best_epoch: int) -> None:
            tune.report({SUMMARY_METRIC: curve["valid"]["NDCG@10"], "epoch": curve["epoch"],
                         "best_valid_ndcg10": best_score, "best_epoch": best_epoch, "final": False})

        record = run_trial(cfg, progress=False, checkpoint=store.checkpoint_path(key), on_epoch=report_epoch,
                           **paths)
    except Exception as err:
        attempt = (store.failure(key) or {}).get("attempts", 0) + 1
        store.put_failure(key, cfg.key_fields(), f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}", attempt)
        raise
    store.put(record)
    tune.report(summary_metrics(record))


class Progress:
    """Counts and an ETA on one line per event (Tune's own table is long with our nested configs)."""

    def __init__(self, total: int, concurrency: int, labels: dict[str, str]):
        self.total, self.concurrency, self.labels = total, max(concurrency, 1), labels
        self.done = self.failed = self.running = 0
        self.durations: list[float] = []
        self.started: dict[str, float] = {}
        self.last_epoch_line: dict[str, float] = {}
        self.epoch_interval = 60.0
        self.best: tuple[float, str] | None = None
        self.t0 = time.monotonic()

    def start(self, trial_id: str) -> None:
        self.started[trial_id] = time.monotonic()
        self.running += 1
        self._print(f"start {self.labels.get(trial_id, trial_id)}")

    def finish(self, trial_id: str, metrics: dict | None, error: bool) -> None:
        self.running = max(self.running - 1, 0)
        if trial_id in self.started:
            self.durations.append(time.monotonic() - self.started.pop(trial_id))
        label = self.labels.get(trial_id, trial_id)
        if error:
            self.failed += 1
            self._print(f"FAILED {label}")
            return
        self.done += 1
        score = (metrics or {}).get(SUMMARY_METRIC)
        if score is not None and (self.best is None or score > self.best[0]):
            self.best = (score, label)
        self._print(f"done {label}" + (f" valid NDCG@10 {score:.4f}" if score is not None else ""))

    def epoch(self, trial_id: str, result: dict) -> None:
        """A running trial's epoch; printed at most once per `epoch_interval` seconds per trial, so short
        trials print nothing here and long ones (ML-1M: an hour or more) show they are alive."""
        if result.get("final", True):
            return
        now = time.monotonic()
        last_line = self.last_epoch_line.get(trial_id, self.started.get(trial_id, now))
        if now - last_line < self.epoch_interval:
            return
        self.last_epoch_line[trial_id] = now
        self._print(f"{self.labels.get(trial_id, trial_id)} epoch {result['epoch']}: valid NDCG@10 "
                    f"{result[SUMMARY_METRIC]:.4f} (best {result['best_valid_ndcg10']:.4f} at epoch "
                    f"{result['best_epoch']})")

    def _print(self, event: str) -> None:
        left = self.total - self.done - self.failed
        eta = ""
        if self.durations and left:
            mean = sum(self.durations) / len(self.durations)
            eta = f" | ETA {_clock(mean * left / self.concurrency)}"
        best = f" | best {self.best[0]:.4f} {self.best[1]}" if self.best else ""
        print(f"[sweep {_clock(time.monotonic() - self.t0)}] {self.done}/{self.total} done, {self.failed} failed, "
              f"{self.running} running{eta}{best} | {event}", flush=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _tune_callback(progress: Progress):
    from ray import tune

    class Callback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.start(trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            progress.epoch(trial.trial_id, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finish(trial.trial_id, trial.last_result, error=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.finish(trial.trial_id, None, error=True)

    return Callback()


def trial_resources(grid_resources: dict, args, cluster_gpus: float) -> dict:
    cpus = args.cpus_per_trial or grid_resources.get("cpus_per_trial", 1)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else grid_resources.get("gpus_per_trial", 0)
    return {"cpu": float(cpus), "gpu": float(gpus) if cluster_gpus > 0 else 0.0}


def print_plan(trials: list[TrialConfig], store: ResultStore, resources: dict) -> None:
    import pandas as pd

    done, failed = store.done_keys(), store.failed_keys()
    defaults = asdict(TrialConfig())
    rows = []
    for cfg in trials:
        key = cfg.key()
        other = {k: v for k, v in cfg.key_fields().items()
                 if v != defaults[k] and k not in ("dataset", "backbone", "method", "encoder", "seed")}
        rows.append({"key": key, "dataset": cfg.dataset, "backbone": cfg.backbone, "method": cfg.method,
                     "encoder": "+".join(cfg.encoder) or "-", "seed": cfg.seed,
                     "settings": " ".join(f"{k}={v}" for k, v in other.items()),
                     "status": "done" if key in done else "failed" if key in failed else "pending"})
    table = pd.DataFrame(rows)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False))
    counts = table["status"].value_counts().to_dict()
    print(f"\n{len(table)} trials ({counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
          f"{counts.get('pending', 0)} to run); each asks for {resources['cpu']:g} CPU(s) and "
          f"{resources['gpu']:g} GPU(s) (the GPU share applies only on a cluster with GPUs)")


def _worker_env(concurrent_per_node: bool) -> dict:
    from harness.data.cache import cache_root

    env = {"KDSR_CACHE_DIR": str(cache_root().resolve()), "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH")]))}
    for name in ("HF_HOME", "HF_HUB_OFFLINE", "KDSR_ENCODERS_FILE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if concurrent_per_node:  # busy-waiting OpenMP threads of concurrent trials slowed training ~5x here
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def start_ray(address: str | None, num_cpus: int | None, concurrent: bool) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    if ray.is_initialized():
        return
    runtime_env = {"env_vars": _worker_env(concurrent)}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:  # "local": never attach to a stale cluster file left by another job
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False)


def prepare_features(trials: list[TrialConfig], paths: dict, gpus_available: float, cpus: int) -> None:
    """One Ray task per data set (preprocessing) and its encoders (extraction into the cache)."""
    import ray

    from harness.data import PreprocessOptions
    from harness.features import prepare

    wanted: dict[tuple, set[str]] = {}
    for cfg in trials:
        options = (cfg.dataset, cfg.user_k, cfg.item_k, cfg.dedup)
        wanted.setdefault(options, set()).update(cfg.encoder)
    task = ray.remote(num_cpus=cpus, num_gpus=1 if gpus_available >= 1 else 0)(_prepare_task)
    refs = [task.remote(prepare, dataset, PreprocessOptions(uk, ik, dedup), sorted(encoders), paths)
            for (dataset, uk, ik, dedup), encoders in wanted.items()]
    for summary in ray.get(refs):
        print(f"[sweep] prepared {summary['dataset']} ({summary['items']} items); features: "
              + (", ".join(f"{k} {v:.1f}s" for k, v in summary["extract_seconds"].items()) or "none"), flush=True)


def _task_cpus(most: int = 4) -> int:
    """CPUs for a preparation task: at most `most`, and no more than the largest node has (a task asking
    for more than any one node holds would wait forever)."""
    import ray

    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=1)
    return max(1, int(min(largest, most)))


def _prepare_task(prepare, dataset, options, encoders, paths):
    import ray
    import torch

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    return prepare(dataset, options, encoders, device=device, **paths)


def run_trials(trials: list[TrialConfig], store: ResultStore, resources: dict, args, name: str,
               records_dir: str = "records") -> int:
    """Run `trials` (none of them finished) under Tune; returns the number that failed."""
    from ray import tune

    params = [{"trial": asdict(cfg), "storage": str(store.root), "records_dir": records_dir,
               "threads": max(1, int(resources["cpu"])), "paths": _paths(args)} for cfg in trials]
    labels: dict[str, str] = {}

    def name_trial(trial) -> str:
        label = trial_label(TrialConfig(**trial.config["run"]["trial"]))
        labels[trial.trial_id] = label
        return label

    progress = Progress(len(trials), _concurrency(resources, args), labels)
    tuner = tune.Tuner(
        tune.with_resources(grid_trainable, resources),
        # one grid_search over whole trial settings: the product was already resolved from the grid file
        param_space={"run": tune.grid_search(params)},
        tune_config=tune.TuneConfig(max_concurrent_trials=args.max_concurrent, trial_name_creator=name_trial,
                                    trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(name=name, storage_path=str(store.root / "ray"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=args.retries),
                                  callbacks=[_tune_callback(progress)]),
    )
    results = tuner.fit()
    return sum(1 for result in results if result.error is not None)


def _paths(args) -> dict:
    return {"data_dir": args.data_dir, "image_dir": args.image_dir, "model_dir": args.model_dir,
            "encoders_file": args.encoders_file}


def _concurrency(resources: dict, args) -> int:
    import ray

    cluster = ray.cluster_resources()
    by_cpu = cluster.get("CPU", 1) / max(resources["cpu"], 1e-9)
    by_gpu = cluster.get("GPU", 0) / resources["gpu"] if resources["gpu"] else float("inf")
    limit = min(by_cpu, by_gpu)
    return int(min(limit, args.max_concurrent)) if args.max_concurrent else int(limit)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True, help="a shipped grid name (demo, smoke, cpu, ml1m, paper, scaling, "
                                                      "full) or a path to a grid .yaml")
    parser.add_argument("--storage", default=None, help="result store and Ray state (default runs/<grid>); a "
                                                        "shared file system on clusters")
    parser.add_argument("--dry-run", action="store_true", help="print the trial table and resources; run nothing")
    parser.add_argument("--address", default=None, help="join a running Ray cluster (e.g. auto or HOST:PORT)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    parser.add_argument("--cpus-per-trial", type=float, default=None)
    parser.add_argument("--gpus-per-trial", type=float, default=None)
    parser.add_argument("--only", action="append", default=[], metavar="AXIS=V[,V]",
                        help="run only trials with these values (repeatable), e.g. --only method=kdsr,id")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the grid's seed axis")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep in --storage; finished trials are always skipped, and this "
                             "flag also retries trials recorded as failed (without it they are left alone)")
    parser.add_argument("--retries", type=int, default=1, help="extra attempts for a failing trial")
    parser.add_argument("--search", choices=["optuna"], default=None,
                        help="tune lr, dropout and the method's loss weights, tau, K, D per grid cell on the "
                             "validation metric, then run the best setting with the grid's seeds")
    parser.add_argument("--num-samples", type=int, default=8, help="Optuna trials per grid cell")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-dir", default=None)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--encoders-file", default=os.environ.get("KDSR_ENCODERS_FILE"))
    args = parser.parse_args(argv)

    try:
        grid = load_grid(args.grid, args.encoders_file)
        trials = filter_trials(grid.trials, args.only)
    except GridError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.seeds is not None:
        trials = list({t.key(): t for t in (replace(c, seed=s) for c in trials for s in args.seeds)}.values())
    store = ResultStore(args.storage or Path("runs") / grid.name)
    if args.dry_run:
        print_plan(trials, store, trial_resources(grid.resources, args, cluster_gpus=1))
        return 0
    if not trials:
        print("error: no trial matches the --only filters", file=sys.stderr)
        return 2
    return run_sweep(grid, trials, store, args)


def run_sweep(grid, trials: list[TrialConfig], store: ResultStore, args) -> int:
    import ray

    done, failed = store.done_keys(), store.failed_keys()
    skipped_failed = set() if args.resume else {t.key() for t in trials} & failed
    pending = [t for t in trials if t.key() not in done and t.key() not in skipped_failed]
    print(f"[sweep] grid {grid.name}: {len(trials)} trials, {len(trials) - len(pending) - len(skipped_failed)} "
          f"already in {store.records}, {len(skipped_failed)} recorded as failed (rerun them with --resume), "
          f"{len(pending)} to run", flush=True)
    start_ray(args.address, args.num_cpus, concurrent=True)
    cluster = ray.cluster_resources()
    resources = trial_resources(grid.resources, args, cluster.get("GPU", 0))
    n_failed = 0
    if args.search:
        from harness.search import optuna_cells

        trials = optuna_cells(trials, store, resources, args, grid.name)  # the cells' best settings x seeds
        pending = [t for t in trials if t.key() not in store.done_keys()]
    if pending:
        prepare_features(pending, _paths(args), cluster.get("GPU", 0), cpus=_task_cpus())
        n_failed = run_trials(pending, store, resources, args, grid.name)
    finished = len(store.done_keys() & {t.key() for t in trials})
    print(f"[sweep] {finished}/{len(trials)} trials have records in {store.records}; {n_failed} failed this run "
          f"(errors in {store.failed})", flush=True)
    if not args.no_report and finished:
        from harness.report import write_report

        out = write_report(store.records, store.root)
        print(f"[sweep] report written to {out}", flush=True)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
