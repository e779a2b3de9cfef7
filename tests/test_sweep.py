"""Grids and the Ray Tune sweep, on a real local Ray cluster (started once for this module)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.grid import GridError, load_grid, shipped_grids
from harness.store import ResultStore
from harness.sweep import Progress, main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 2, "patience": 1, "dim": 16, "inner_dim": 32, "n_layers": 1, "max_len": 20,
        "train_fraction": 0.3, "K": 8, "D": 4, "codebook_sample": 5000}


def grid_file(folder: Path, name: str, axes: dict, fixed: dict = TINY, **extra) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"description": name, "fixed": fixed, "axes": axes, **extra}))
    return path


def test_long_trials_print_their_epochs_at_most_once_a_minute(capsys):
    progress = Progress(total=2, concurrency=1, labels={"t1": "ml-1m/sasrec/kdsr/minilm-l6/s0 [abc123]"})
    progress.start("t1")
    epoch = {"final": False, "epoch": 3, "valid_ndcg10": 0.1, "best_valid_ndcg10": 0.12, "best_epoch": 2}
    progress.epoch("t1", epoch)  # started just now: a short trial prints no epoch lines
    progress.epoch_interval = 0.0
    progress.epoch("t1", {"final": True, "valid_ndcg10": 0.12})  # the final result is the trial's summary
    assert "epoch" not in capsys.readouterr().out.split("| start")[-1]
    progress.epoch("t1", epoch)
    assert ("| ml-1m/sasrec/kdsr/minilm-l6/s0 [abc123] epoch 3: valid NDCG@10 0.1000 (best 0.1200 at epoch 2)"
            in capsys.readouterr().out)


# ---------------------------------------------------------------- grids (no Ray)
def test_dry_run_counts_of_every_shipped_grid(capsys):
    expected = {"demo": 3, "smoke": 3, "ml1m": 3, "sparse": 2 * (1 + 3 * 2) * 3, "sparse-ml1m": 1 + 2 * 2, "kdsr-knobs": 3 * 5,
                "samples-ml100k": 2 * 4 * 3, "buckets-ml100k": 3 + 2 * 3, "holistic-ml100k": 2 * 3, "strong-ml1m": 3, "strong-ml100k": 2 * 2 * 5, "search-ml100k": 3 * 5, "kdsr-strong-ml100k": 2 * 6 * 3,
                "scaling-cpu": 5 * (1 + 6 * 3), "scaling-sparse-cpu": 5 * (1 + 6 * 3), "kd-ladder-cpu": 3 * 3 * 9,
                "strong-ml1m-fast": 3, "kdsr-strong-ml1m": 4 * 3, "kernels-ml100k": 2 * 2 * 5, "included-ml100k": 2 * 5, "prefix-ml100k": 3, "width-ml1m": 1, "cpu": 2 * (1 + 8 * 2) * 3, "paper": 4 * 3 * (1 + 8 * 3) * 3,
                # per encoder: 3 baselines that ignore K and D + kdsr over 3 K x 4 D; 3 seeds
                "scaling": 16 * (3 + 12) * 3}
    # full = paper + scaling - their overlap (beauty, sasrec, vit-base / clip-b32-text, 4 methods, K 50 D 8)
    expected["full"] = expected["paper"] + expected["scaling"] - 2 * 4 * 3
    assert set(shipped_grids()) == set(expected)
    for name, count in expected.items():
        started = time.perf_counter()
        assert sweep_main(["--grid", name, "--dry-run", "--storage", "/nonexistent/store"]) == 0
        assert time.perf_counter() - started < 10
        tail = capsys.readouterr().out.strip().splitlines()[-1]
        assert tail.startswith(f"{count} trials (0 done, 0 failed, {count} to run)"), (name, tail)


def test_methods_that_ignore_an_axis_run_once(tmp_path):
    path = grid_file(tmp_path, "g", {"dataset": ["ml-100k"], "backbone": ["sasrec", "pop"],
                                     "encoder": ["minilm-l6", "smollm2-135m"], "method": ["id", "kdsr"],
                                     "K": [20, 50], "seed": [0]})
    trials = load_grid(str(path)).trials
    # sasrec id once; sasrec kdsr 2 encoders x 2 K; pop only with id, once
    assert sorted((t.backbone, t.method) for t in trials).count(("sasrec", "id")) == 1
    assert len([t for t in trials if t.method == "kdsr"]) == 4
    assert [t.method for t in trials if t.backbone == "pop"] == ["id"]


@pytest.mark.parametrize("axes, message", [
    ({"method": ["kdsr", "magic"]}, "method: 'magic' is not allowed; choose from id, frozen"),
    ({"backbone": ["transformerxl"]}, "choose from sasrec"),
    ({"encoder": ["gpt-9"], "method": ["kdsr"]}, "unknown encoder 'gpt-9'; valid encoders: minilm-l6"),
    ({"dataset": ["netflix"]}, "netflix: unknown data set"),
    ({"learning_rate": [0.1]}, "unknown setting 'learning_rate'; valid settings:"),
    ({"lr": "0.1"}, "axes.lr: give a non-empty list"),
    ({"epochs": [2.5]}, "2.5 is not a int"),
])
def test_bad_grids_name_the_problem(tmp_path, axes, message):
    path = grid_file(tmp_path, "bad", {"dataset": ["ml-100k"], "method": ["id"], **axes})
    with pytest.raises(GridError, match=message.replace("(", r"\(")):
        load_grid(str(path))


def test_grid_files_are_data_not_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("axes: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grid(str(path))
    assert not Path("pwned").exists()


# ---------------------------------------------------------------- the sweep on real Ray
@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    from harness.raytune import start_ray

    start_ray(None, num_cpus=2, concurrent=True)
    yield
    ray.shutdown()


def records_by_key(store: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in (store / "records").glob("*.json")}


def test_smoke_grid_end_to_end_and_rerun_skips_finished(ray_cluster, tmp_path):
    store = tmp_path / "store"
    assert sweep_main(["--grid", "smoke", "--storage", str(store)]) == 0
    records = records_by_key(store)
    assert set(records) == set(load_grid("smoke").keys())
    for raw in records.values():
        record = json.loads(raw)
        assert record["test"]["overall"]["NDCG@10"] >= 0 and record["runtime"]["torch_threads"] == 1
    kdsr = next(json.loads(r) for r in records.values() if json.loads(r)["config"]["method"] == "kdsr")
    assert kdsr["retention_curve"] and kdsr["features"][0]["encoder"] == "minilm-l6"
    report = (store / "README.md").read_text()
    assert "main-minilm-l6" in report and (store / "tables" / "main-minilm-l6.tex").is_file()
    # a rerun finds every key done: nothing runs, nothing is rewritten
    assert sweep_main(["--grid", "smoke", "--storage", str(store), "--no-report"]) == 0
    assert records_by_key(store) == records


def test_failing_trial_is_recorded_and_the_others_finish(ray_cluster, tmp_path):
    path = grid_file(tmp_path, "fail", {"dataset": ["ml-100k"], "backbone": ["sasrec"], "method": ["id"],
                                        "lr": [1.0e30, 0.001]})
    store = tmp_path / "store"
    assert sweep_main(["--grid", str(path), "--storage", str(store), "--retries", "1", "--no-report"]) == 1
    bad, good = load_grid(str(path)).keys()
    assert ResultStore(store).has(good) and not ResultStore(store).has(bad)
    failure = ResultStore(store).failure(bad)
    assert failure["attempts"] == 2 and "non-finite training loss" in failure["error"]


def test_optuna_search_then_seeds(ray_cluster, tmp_path):
    store = tmp_path / "store"
    assert sweep_main(["--grid", "smoke", "--only", "method=id,kdsr", "--search", "optuna", "--num-samples", "2",
                       "--seeds", "0", "--storage", str(store), "--no-report"]) == 0
    summaries = sorted((store / "search").glob("*.json"))
    assert len(summaries) == 2
    searched = [json.loads(p.read_text()) for p in summaries]
    kdsr_best = next(s["best"] for s in searched if s["cell"]["method"] == "kdsr")
    assert {"lr", "dropout", "lambda_hol", "tau", "lambda_code", "K", "D"} == set(kdsr_best)
    assert len(list((store / "search" / "records").glob("*.json"))) == 4  # 2 samples x 2 cells
    finals = [json.loads(r) for r in records_by_key(store).values()]
    assert len(finals) == 2
    kdsr = next(r for r in finals if r["config"]["method"] == "kdsr")
    assert kdsr["config"]["K"] == kdsr_best["K"] and kdsr["config"]["lr"] == pytest.approx(kdsr_best["lr"])


def test_kill_9_then_resume_runs_every_trial_once(ray_cluster, tmp_path):
    """Killed while one trial is done and another is mid-training: the rerun keeps the finished record,
    resumes the unfinished trial from its last epoch checkpoint and leaves no checkpoint or temp file."""
    path = grid_file(tmp_path, "kill", {"dataset": ["ml-100k"], "backbone": ["sasrec"], "method": ["id"],
                                        "seed": [0, 1, 2, 3]}, fixed={**TINY, "epochs": 8, "patience": 50})
    store = tmp_path / "store"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    driver = subprocess.Popen([sys.executable, "-m", "harness.sweep", "--grid", str(path), "--storage", str(store),
                               "--num-cpus", "1", "--no-report"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def unfinished_checkpoints():
        done = {p.stem for p in (store / "records").glob("*.json")}
        return [p for p in (store / "checkpoints").glob("*.pt") if p.stem not in done] if done else []

    deadline = time.time() + 240
    while not unfinished_checkpoints() and time.time() < deadline and driver.poll() is None:
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(3)  # let the killed cluster's orphaned workers exit
    before = records_by_key(store)
    assert 1 <= len(before) < 4, "the driver must be killed mid-sweep"
    interrupted = {p.stem for p in unfinished_checkpoints()}
    assert interrupted, "a trial must be mid-training when the driver is killed"
    assert sweep_main(["--grid", str(path), "--storage", str(store), "--resume", "--no-report"]) == 0
    after = records_by_key(store)
    assert set(after) == set(load_grid(str(path)).keys())
    assert all(after[key] == raw for key, raw in before.items())  # finished records never rewritten
    assert all(json.loads(after[key])["resumed_after_epoch"] >= 1 for key in interrupted)
    assert not list((store / "records").glob(".*"))  # no temp files left behind
    assert not list((store / "checkpoints").glob("*"))  # checkpoints go once their record is stored


def test_a_grid_names_its_search_space_and_a_stored_search_of_another_space_is_refused(tmp_path):
    """`search:` replaces the default space, limited per cell to the settings its backbone reads (no
    mask_prob for SASRec); a malformed entry names the file and the key; a cell searched before over
    another space is not silently reused."""
    from harness.raytune import SweepOptions
    from harness.search import optuna_cells, search_space

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"axes": {"dataset": ["ml-100k"], "backbone": ["sasrec"], "method": ["id"]},
                                    "search": {"lr": ["loguniform", 1e-4, 1e-2], "n_layers": ["choice", [1, 2, 3]],
                                               "mask_prob": ["uniform", 0.1, 0.6]}}))
    grid = load_grid(str(path))
    assert grid.search == {"lr": ("loguniform", (1e-4, 1e-2)), "n_layers": ("choice", ([1, 2, 3],)),
                           "mask_prob": ("uniform", (0.1, 0.6))}
    assert sorted(search_space(grid.trials[0], grid.search)) == ["lr", "n_layers"]
    store = ResultStore(tmp_path / "store")
    cell = grid.trials[0].key()
    summary = store.root / "search" / f"{cell}.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"best": {"lr": 0.002}, "space": {"lr": ["loguniform", 1e-4, 1e-2]}}))
    with pytest.raises(ValueError, match="searched over another space"):
        optuna_cells(grid.trials, store, {"cpu": 1}, SweepOptions(), "g", grid.search)
    summary.write_text(json.dumps({"best": {"lr": 0.002, "n_layers": 3},
                                   "space": {"lr": ["loguniform", 1e-4, 1e-2], "n_layers": ["choice", [1, 2, 3]]}}))
    [final] = optuna_cells(grid.trials, store, {"cpu": 1}, SweepOptions(), "g", grid.search)
    assert final.lr == 0.002 and final.n_layers == 3
    for bad, message in (({"nope": ["uniform", 0, 1]}, "search.nope: unknown setting"),
                         ({"lr": ["normal", 0, 1]}, r"search.lr: give \[loguniform"),
                         ({"lr": ["uniform", 0.1, 0.01]}, "low 0.1 must be below high 0.01"),
                         ({"n_layers": ["choice", [0]]}, "n_layers")):
        path.write_text(yaml.safe_dump({"axes": {"method": ["id"]}, "search": bad}))
        with pytest.raises(GridError, match=message):
            load_grid(str(path))


def test_an_interrupted_search_chooses_nothing_and_only_finished_trials_count():
    """Ctrl-C during a cell's search leaves trials that reported epochs but never finished: their
    intermediate validation must neither be chosen nor let a partial search store a best setting."""
    from types import SimpleNamespace

    from harness.search import SUMMARY_METRIC, SearchInterrupted, choose_best

    def trial(score, lr, final=True):
        return SimpleNamespace(metrics={SUMMARY_METRIC: score, "final": final}, config={"hp": {"lr": lr}})

    class Results(list):
        num_errors = 0

    partial = Results([trial(0.05, 1e-3), trial(0.04, 2e-3), trial(0.09, 3e-3, final=False)])
    with pytest.raises(SearchInterrupted, match="2 finished and 0 failed of 3 samples"):
        choose_best(partial, 3, "c", "failed/")
    failed = Results([trial(0.05, 1e-3), trial(0.04, 2e-3), trial(0.09, 3e-3, final=False)])
    failed.num_errors = 1  # the third failed after an epoch: the search is complete, its epoch is no result
    assert choose_best(failed, 3, "c", "failed/") == ({"lr": 1e-3}, 0.05)
    nothing = Results([trial(0.09, 3e-3, final=False)])
    nothing.num_errors = 1
    with pytest.raises(RuntimeError, match="no successful trial"):
        choose_best(nothing, 1, "c", "failed/")
