"""The Ray plumbing shared by the grid sweep (harness.sweep) and the Optuna search (harness.search):
starting or joining a cluster, the trial function Tune runs, feature preparation as Ray tasks, resources
and concurrency, and the one place a Tuner is built.

The trainable is `harness.raytune.grid_trainable`, a module-level function, so Ray workers import it by
name (with this checkout on their PYTHONPATH, see worker_env).
"""
from __future__ import annotations

import os
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
import torch
from ray import tune

from harness.data import PreprocessOptions
from harness.data.cache import cache_root
from harness.features import prepare
from harness.store import ResultStore
from harness.trial import TrialConfig, run_trial

SUMMARY_METRIC = "valid_ndcg10"


@dataclass(frozen=True)
class SweepOptions:
    """How and where a sweep runs (the command line's choices, read once)."""

    address: str | None = None  # join a running cluster; None: start a local one
    num_cpus: int | None = None  # CPUs of a local cluster (default: all)
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None  # None: the grid's default
    gpus_per_trial: float | None = None
    retries: int = 1
    num_samples: int = 8  # Optuna trials per grid cell
    data_dir: str | None = None
    image_dir: str | None = None
    model_dir: str | None = None
    encoders_file: str | None = None

    @property
    def paths(self) -> dict:
        return {"data_dir": self.data_dir, "image_dir": self.image_dir, "model_dir": self.model_dir,
                "encoders_file": self.encoders_file}


def trial_label(cfg: TrialConfig) -> str:
    encoders = "+".join(cfg.encoder) or "-"
    return f"{cfg.dataset}/{cfg.backbone}/{cfg.method}/{encoders}/s{cfg.seed} [{cfg.key()[:6]}]"


def summary_metrics(record: dict) -> dict:
    return {SUMMARY_METRIC: record["valid"]["overall"]["NDCG@10"], "test_ndcg10": record["test"]["overall"]["NDCG@10"],
            "best_epoch": record["best_epoch"], "key": record["key"], "final": True}


def trial_params(cfg: TrialConfig, store: ResultStore, records_dir: str, resources: dict,
                 options: SweepOptions) -> dict:
    """What grid_trainable needs to run one trial: its settings, where to store it, threads and paths."""
    return {"trial": asdict(cfg), "storage": str(store.root), "records_dir": records_dir,
            "threads": max(1, int(resources["cpu"])), "paths": options.paths}


def grid_trainable(config: dict) -> None:
    """Ray Tune function trainable: one trial -> one record in the store (or a failure entry, re-raised so
    that Tune retries it). `config` = {"run": trial_params(...), "hp": searched setting values}."""
    params = config["run"]
    store = ResultStore(params["storage"], params.get("records_dir", "records"))
    cfg = TrialConfig(**params["trial"]).with_values(config.get("hp", {}))
    key = cfg.key()
    if store.has(key):  # finished meanwhile, e.g. by a trial orphaned from a killed driver
        tune.report(summary_metrics(store.load(key)))
        return
    cfg = cfg.with_values({"threads": params["threads"], "device": "cuda" if ray.get_gpu_ids() else "cpu"})

    def report_epoch(curve: dict, best_score: float, best_epoch: int) -> None:
        tune.report({SUMMARY_METRIC: curve["valid"]["NDCG@10"], "epoch": curve["epoch"],
                     "best_valid_ndcg10": best_score, "best_epoch": best_epoch, "final": False})

    try:
        record = run_trial(cfg, progress=False, checkpoint=store.checkpoint_path(key), on_epoch=report_epoch,
                           **params.get("paths", {}))
    except Exception as err:
        attempt = (store.failure(key) or {}).get("attempts", 0) + 1
        store.put_failure(key, cfg.key_fields(), f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}", attempt)
        raise
    store.put(record)
    tune.report(summary_metrics(record))


def worker_env(concurrent_per_node: bool) -> dict:
    env = {"KDSR_CACHE_DIR": str(cache_root().resolve()), "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH")]))}
    for name in ("HF_HOME", "HF_HUB_OFFLINE", "KDSR_ENCODERS_FILE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if concurrent_per_node:  # busy-waiting OpenMP threads of concurrent trials slowed training ~5x here
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def start_ray(address: str | None, num_cpus: int | None, concurrent: bool = True) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    if ray.is_initialized():
        return
    runtime_env = {"env_vars": worker_env(concurrent)}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:  # "local": never attach to a stale cluster file left by another job
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False)


def trial_resources(grid_resources: dict, options: SweepOptions, cluster_gpus: float) -> dict:
    cpus = options.cpus_per_trial or grid_resources.get("cpus_per_trial", 1)
    gpus = options.gpus_per_trial if options.gpus_per_trial is not None else grid_resources.get("gpus_per_trial", 0)
    return {"cpu": float(cpus), "gpu": float(gpus) if cluster_gpus > 0 else 0.0}


def concurrency(resources: dict, options: SweepOptions) -> int:
    cluster = ray.cluster_resources()
    by_cpu = cluster.get("CPU", 1) / max(resources["cpu"], 1e-9)
    by_gpu = cluster.get("GPU", 0) / resources["gpu"] if resources["gpu"] else float("inf")
    limit = min(by_cpu, by_gpu)
    return int(min(limit, options.max_concurrent)) if options.max_concurrent else int(limit)


def task_cpus(most: int = 4) -> int:
    """CPUs for a preparation task: at most `most`, and no more than the largest node has (a task asking
    for more than any one node holds would wait forever)."""
    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=1)
    return max(1, int(min(largest, most)))


def prepare_features(trials: list[TrialConfig], options: SweepOptions) -> None:
    """One Ray task per data set (preprocessing) and its encoders (extraction into the cache), with a GPU
    where the cluster has one."""
    wanted: dict[tuple[str, PreprocessOptions], set[str]] = {}
    for cfg in trials:
        wanted.setdefault((cfg.dataset, cfg.part(PreprocessOptions)), set()).update(cfg.encoder)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=task_cpus(), num_gpus=gpus)(_prepare_task)
    refs = [task.remote(dataset, preprocess, sorted(encoders), options.paths)
            for (dataset, preprocess), encoders in wanted.items()]
    for summary in ray.get(refs):
        print(f"[sweep] prepared {summary['dataset']} ({summary['items']} items); features: "
              + (", ".join(f"{k} {v:.1f}s" for k, v in summary["extract_seconds"].items()) or "none"), flush=True)


def _prepare_task(dataset, preprocess, encoders, paths):
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    return prepare(dataset, preprocess, encoders, device=device, **paths)


def fit_tuner(name: str, store: ResultStore, resources: dict, param_space: dict, options: SweepOptions,
              callbacks=(), **tune_config) -> tune.ResultGrid:
    """Build and run the Tuner (the one construction both the grid and the search use)."""
    tuner = tune.Tuner(
        tune.with_resources(grid_trainable, resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(**tune_config),
        run_config=tune.RunConfig(name=name, storage_path=str(store.root / "ray"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=options.retries),
                                  callbacks=list(callbacks)),
    )
    return tuner.fit()
