"""`--search optuna`: per grid cell (the trials that differ only by seed), Optuna TPE with a seeded sampler
over lr, dropout and the method's loss weights, tau, K and D, on the validation metric with the cell's
first seed; the best setting is then run with every seed of the cell as ordinary grid trials.

Search trials are stored apart (<storage>/search/records/) so the report only sees the final runs; the
best setting per cell is kept in <storage>/search/<cell>.json, so a rerun does not search again.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace

from harness.record import write_record
from harness.store import ResultStore
from harness.trial import TrialConfig
from methods.multimodal import METHODS

SEARCH_RECORDS = "search/records"
# name -> (MethodSpec flag that must be set, or None; distribution; arguments)
SEARCH_SPACE = {
    "lr": (None, "loguniform", (1e-4, 1e-2)),
    "dropout": (None, "uniform", (0.0, 0.5)),
    "lambda_hol": ("holistic", "loguniform", (0.1, 10.0)),
    "tau": ("holistic", "uniform", (0.5, 3.0)),
    "lambda_code": ("codes", "loguniform", (0.05, 5.0)),
    "K": ("codes", "choice", ([20, 50, 100],)),
    "D": ("codes", "choice", ([1, 4, 8, 16],)),
}


def search_space(cfg: TrialConfig) -> dict:
    from ray import tune

    spec = METHODS[cfg.method]
    space = {}
    for name, (flag, kind, arguments) in SEARCH_SPACE.items():
        if flag is None or getattr(spec, flag):
            space[name] = getattr(tune, kind)(*arguments)
    return space if cfg.backbone != "pop" else {}


def apply_hp(trial: dict, hp: dict) -> dict:
    """Searched values -> trial settings (dropout means the GRU's dropout for GRU4Rec; loss weights are lists)."""
    out = dict(trial)
    for name, value in hp.items():
        if name == "dropout" and trial["backbone"] == "gru4rec":
            out["gru_dropout"] = value
        elif name in ("lambda_hol", "lambda_code"):
            out[name] = [float(value)]
        else:
            out[name] = value
    return out


def optuna_cells(trials: list[TrialConfig], store: ResultStore, resources: dict, args, grid_name: str
                 ) -> list[TrialConfig]:
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from harness.sweep import SUMMARY_METRIC, _concurrency, _paths, _task_cpus, grid_trainable, prepare_features

    cells: dict[str, list[TrialConfig]] = {}
    for cfg in trials:
        cells.setdefault(replace(cfg, seed=0).key(), []).append(cfg)
    final = []
    for cell, members in cells.items():
        members = sorted(members, key=lambda c: c.seed)
        summary_path = store.root / "search" / f"{cell}.json"
        if summary_path.is_file():
            best = json.loads(summary_path.read_text())["best"]
        else:
            base = members[0]
            space = search_space(base)
            best = {}
            if space:
                prepare_features([base], _paths(args), 0, cpus=_task_cpus())
                searcher = ConcurrencyLimiter(
                    OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0), metric=SUMMARY_METRIC, mode="max"),
                    max_concurrent=max(1, _concurrency(resources, args)))
                run = {"trial": asdict(base), "storage": str(store.root), "records_dir": SEARCH_RECORDS,
                       "threads": max(1, int(resources["cpu"])), "paths": _paths(args)}
                tuner = tune.Tuner(
                    tune.with_resources(grid_trainable, resources),
                    param_space={"run": run, "hp": space},
                    tune_config=tune.TuneConfig(search_alg=searcher, num_samples=args.num_samples,
                                                metric=SUMMARY_METRIC, mode="max"),
                    run_config=tune.RunConfig(name=f"{grid_name}-search-{cell}", storage_path=str(store.root / "ray"),
                                              verbose=0, failure_config=tune.FailureConfig(max_failures=args.retries)))
                result = tuner.fit().get_best_result()
                if result.config is None or result.metrics is None or SUMMARY_METRIC not in result.metrics:
                    raise RuntimeError(f"the Optuna search of cell {cell} produced no successful trial; "
                                       f"see {store.root / SEARCH_RECORDS / 'failed'}")
                best = dict(result.config["hp"])
                print(f"[search] cell {cell} ({base.method}/{base.backbone}): best valid NDCG@10 "
                      f"{result.metrics[SUMMARY_METRIC]:.4f} with {best}", flush=True)
            write_record({"cell": asdict(base), "best": best, "samples": args.num_samples,
                          "metric": SUMMARY_METRIC, "sampler": "optuna TPESampler(seed=0)"}, summary_path)
        final += [TrialConfig(**apply_hp(asdict(c), best)) for c in members]
    return final
