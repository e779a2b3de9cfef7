"""`--search optuna`: per grid cell (the trials that differ only by seed), Optuna TPE with a seeded sampler
over lr, dropout and the method's loss weights, tau, K and D, on the validation metric with the cell's
first seed; the best setting is then run with every seed of the cell as ordinary grid trials.

Search trials are stored apart (<storage>/search/records/) so the report only sees the final runs; the
best setting per cell is kept in <storage>/search/<cell>.json, so a rerun does not search again.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import optuna
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from harness.raytune import SUMMARY_METRIC, SweepOptions, concurrency, fit_tuner, prepare_features, trial_params
from harness.record import write_record
from harness.store import ResultStore
from harness.trial import TrialConfig

SEARCH_RECORDS = "search/records"


# setting -> (distribution, arguments); a trial searches the settings its backbone and method read
SEARCH_SPACE = {
    "lr": ("loguniform", (1e-4, 1e-2)),
    "dropout": ("uniform", (0.0, 0.5)),
    "gru_dropout": ("uniform", (0.0, 0.5)),
    "lambda_hol": ("loguniform", (0.1, 10.0)),
    "tau": ("uniform", (0.5, 3.0)),
    "lambda_code": ("loguniform", (0.05, 5.0)),
    "K": ("choice", ([20, 50, 100],)),
    "D": ("choice", ([1, 4, 8, 16],)),
}


class SearchInterrupted(RuntimeError):
    """A cell's search stopped before its samples finished (e.g. Ctrl-C): nothing is chosen or stored."""


def cell_space(cfg: TrialConfig, space: dict | None = None) -> dict:
    """The cell's search space as {setting: (distribution, arguments)}: `space` (a grid's `search:`) or
    SEARCH_SPACE, limited to the settings the cell's backbone and method read."""
    if cfg.backbone == "pop":
        return {}
    return {name: spec for name, spec in (space or SEARCH_SPACE).items() if cfg.is_used(name)}


def search_space(cfg: TrialConfig, space: dict | None = None) -> dict:
    """The Ray Tune space of a cell (see cell_space)."""
    return {name: getattr(tune, kind)(*arguments) for name, (kind, arguments) in cell_space(cfg, space).items()}


def optuna_cells(trials: list[TrialConfig], store: ResultStore, resources: dict, options: SweepOptions,
                 grid_name: str, space: dict | None = None) -> list[TrialConfig]:
    """Search each cell (or read its stored best setting) -> the cells' best settings x their seeds."""
    cells: dict[str, list[TrialConfig]] = {}
    for cfg in trials:
        cells.setdefault(replace(cfg, seed=0).key(), []).append(cfg)
    final = []
    for cell, members in cells.items():
        members = sorted(members, key=lambda c: c.seed)
        summary_path = store.root / "search" / f"{cell}.json"
        wanted = {name: [kind, *arguments] for name, (kind, arguments) in cell_space(members[0], space).items()}
        if summary_path.is_file():
            stored = json.loads(summary_path.read_text())
            if "space" in stored and stored["space"] != json.loads(json.dumps(wanted)):
                raise ValueError(f"{summary_path}: this cell was searched over another space ({stored['space']}); "
                                 "delete the file to search again, or use another --storage")
            best = stored["best"]
            if members[0].backbone == "gru4rec" and "dropout" in best:  # summaries before 2026-12 named it so
                best = {("gru_dropout" if k == "dropout" else k): v for k, v in best.items()}
        else:
            best = search_cell(cell, members[0], store, resources, options, grid_name, space)
            write_record({"cell": asdict(members[0]), "best": best, "samples": options.num_samples,
                          "space": wanted,
                          "metric": SUMMARY_METRIC, "sampler": "optuna TPESampler(seed=0)"}, summary_path)
        final += [c.with_values(best) for c in members]
    return final


def search_cell(cell: str, base: TrialConfig, store: ResultStore, resources: dict, options: SweepOptions,
                grid_name: str, space: dict | None = None) -> dict:
    space = search_space(base, space)
    if not space:
        return {}
    prepare_features([base], options)
    searcher = ConcurrencyLimiter(
        OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0), metric=SUMMARY_METRIC, mode="max"),
        max_concurrent=max(1, concurrency(resources, options)))
    results = fit_tuner(f"{grid_name}-search-{cell}", store, resources,
                        {"run": trial_params(base, store, SEARCH_RECORDS, resources, options), "hp": space}, options,
                        search_alg=searcher, num_samples=options.num_samples, metric=SUMMARY_METRIC, mode="max")
    best, score = choose_best(results, options.num_samples, cell, store.root / SEARCH_RECORDS / "failed")
    print(f"[search] cell {cell} ({base.method}/{base.backbone}): best valid NDCG@10 {score:.4f} with {best}",
          flush=True)
    return best


def choose_best(results, num_samples: int, cell: str, failed_folder) -> tuple[dict, float]:
    """The searched values of the best finished trial and its score. Only finished trials count (an
    epoch's intermediate report of an interrupted or failed trial is not a result); a search that stopped
    before all its samples finished or failed (Ctrl-C) raises SearchInterrupted, so no best is stored."""
    finished = [r for r in results if r.metrics and r.metrics.get("final") and SUMMARY_METRIC in r.metrics]
    if len(finished) + results.num_errors < num_samples:
        raise SearchInterrupted(f"the search of cell {cell} stopped after {len(finished)} finished and "
                                f"{results.num_errors} failed of {num_samples} samples; no best setting was stored. "
                                "Rerun the same command to resume (finished trials are reused).")
    if not finished:
        raise RuntimeError(f"the Optuna search of cell {cell} produced no successful trial; see {failed_folder}")
    best = max(finished, key=lambda r: r.metrics[SUMMARY_METRIC])
    return dict(best.config["hp"]), best.metrics[SUMMARY_METRIC]

