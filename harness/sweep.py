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
The Ray plumbing (cluster, trainable, resources, the Tuner) is harness/raytune.py.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from harness.grid import Grid, GridError, filter_trials, load_grid
from harness.raytune import (SUMMARY_METRIC, SweepOptions, concurrency, fit_tuner, prepare_features, start_ray,
                             trial_label, trial_params, trial_resources)
from harness.report import write_report
from harness.search import SearchInterrupted, optuna_cells
from harness.store import ResultStore
from harness.trial import TrialConfig


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


class ProgressCallback(tune.Callback):
    """Feeds Tune's trial events to a Progress line."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.start(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.progress.epoch(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.progress.finish(trial.trial_id, trial.last_result, error=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.finish(trial.trial_id, None, error=True)


def print_plan(trials: list[TrialConfig], store: ResultStore, resources: dict) -> None:
    done, failed = store.done_keys(), store.failed_keys()
    rows = []
    for cfg in trials:
        key = cfg.key()
        other = {k: v for k, v in cfg.key_fields().items()
                 if v != TrialConfig.SETTINGS[k].implied and k not in ("dataset", "backbone", "method", "encoder", "seed")}
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


def run_trials(trials: list[TrialConfig], store: ResultStore, resources: dict, options: SweepOptions, name: str,
               records_dir: str = "records") -> int:
    """Run `trials` (none of them finished) under Tune; returns the number that failed."""
    params = [trial_params(cfg, store, records_dir, resources, options) for cfg in trials]
    labels: dict[str, str] = {}

    def name_trial(trial) -> str:
        label = trial_label(TrialConfig(**trial.config["run"]["trial"]))
        labels[trial.trial_id] = label
        return label

    progress = Progress(len(trials), concurrency(resources, options), labels)
    # one grid_search over whole trial settings: the product was already resolved from the grid file
    results = fit_tuner(name, store, resources, {"run": tune.grid_search(params)}, options,
                        callbacks=[ProgressCallback(progress)], max_concurrent_trials=options.max_concurrent,
                        trial_name_creator=name_trial, trial_dirname_creator=lambda trial: trial.trial_id)
    return sum(1 for result in results if result.error is not None)


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
    options = SweepOptions(address=args.address, num_cpus=args.num_cpus, max_concurrent=args.max_concurrent,
                           cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                           retries=args.retries, num_samples=args.num_samples, data_dir=args.data_dir,
                           image_dir=args.image_dir, model_dir=args.model_dir, encoders_file=args.encoders_file)
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
        print_plan(trials, store, trial_resources(grid.resources, options, cluster_gpus=1))
        return 0
    if not trials:
        print("error: no trial matches the --only filters", file=sys.stderr)
        return 2
    return run_sweep(grid, trials, store, options, resume=args.resume, search=args.search,
                     report=not args.no_report, only=args.only)


def run_sweep(grid: Grid, trials: list[TrialConfig], store: ResultStore, options: SweepOptions, resume: bool = False,
              search: str | None = None, report: bool = True, only: list[str] = ()) -> int:
    done, failed = store.done_keys(), store.failed_keys()
    skipped_failed = set() if resume else {t.key() for t in trials} & failed
    pending = [t for t in trials if t.key() not in done and t.key() not in skipped_failed]
    print(f"[sweep] grid {grid.name}: {len(trials)} trials, {len(trials) - len(pending) - len(skipped_failed)} "
          f"already in {store.records}, {len(skipped_failed)} recorded as failed (rerun them with --resume), "
          f"{len(pending)} to run", flush=True)
    start_ray(options.address, options.num_cpus, concurrent=True)
    resources = trial_resources(grid.resources, options, ray.cluster_resources().get("GPU", 0))
    n_failed = 0
    if search == "optuna":
        try:
            trials = optuna_cells(trials, store, resources, options, grid.name, grid.search)  # best settings x seeds
        except SearchInterrupted as err:
            print(f"[sweep] {err}", flush=True)
            return 130
        pending = [t for t in trials if t.key() not in store.done_keys()]
    if pending:
        prepare_features(pending, options)
        # sweeps over disjoint --only slices of one grid may share a store at the same time: each its own Tune run
        tune_name = grid.name + "".join("-" + re.sub(r"[^A-Za-z0-9]+", "_", f) for f in only)
        n_failed = run_trials(pending, store, resources, options, tune_name)
    finished = len(store.done_keys() & {t.key() for t in trials})
    print(f"[sweep] {finished}/{len(trials)} trials have records in {store.records}; {n_failed} failed this run "
          f"(errors in {store.failed})", flush=True)
    if report and finished:
        out = write_report(store.records, store.root)
        print(f"[sweep] report written to {out}", flush=True)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
