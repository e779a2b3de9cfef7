"""Real end-to-end runs of the single-trial CLI on the embedded ML-100k (kept in CI: ~30 s)."""
import json
import subprocess
import sys

import pytest

from harness.record import validate_record


def run_trial(*args, cache):
    cmd = [sys.executable, "-m", "harness.trial", "--quiet", "--threads", "2", *args]
    env = {"KDSR_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_sasrec_beats_most_popular_on_ml100k(cache, tmp_path):
    pop = run_trial("--dataset", "ml-100k", "--backbone", "pop", cache=cache)
    assert pop.returncode == 0, pop.stderr
    out = tmp_path / "sasrec.json"
    sasrec = run_trial("--dataset", "ml-100k", "--backbone", "sasrec", "--epochs", "6", "--seed", "0",
                       "--out", str(out), cache=cache)
    assert sasrec.returncode == 0, sasrec.stderr
    record = json.loads(sasrec.stdout)
    assert json.loads(out.read_text()) == record
    validate_record(record)
    pop_hr = json.loads(pop.stdout)["test"]["overall"]["HR@10"]
    hr = record["test"]["overall"]["HR@10"]
    assert hr > 1.5 * pop_hr, (hr, pop_hr)
    assert record["dataset_stats"]["users"] == 943 and record["test"]["overall"]["n"] == 943
    assert record["epochs_run"] == 6 and 1 <= record["best_epoch"] <= 6
    assert record["trainable_params"] > 0 and record["seconds_per_epoch"] > 0 and record["peak_memory_mb"] > 0
    assert "leave-one-out" in record["protocol"]["split"] and record["protocol"]["history_excluded"] is True
    assert record["protocol"]["history_decision"] == "auto: no user repeats an item in the training data"
    assert sum(record["test"][b]["n"] for b in ("cold", "warm", "hot")) == 943


def test_bad_dataset_is_one_clear_line(cache):
    result = run_trial("--dataset", "/no/such/folder", cache=cache)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: /no/such/folder: unknown data set") and "Fix:" in result.stderr


def test_method_without_encoder_says_so(cache):
    result = run_trial("--method", "kdsr", "--epochs", "1", cache=cache)
    assert result.returncode == 2 and "needs --encoder" in result.stderr and "Traceback" not in result.stderr


def test_a_preset_trial_records_the_preset_values_and_explicit_flags_win(cache):
    result = run_trial("--preset", "strong", "--dataset", "ml-100k", "--epochs", "1", "--max-len", "20",
                       "--train-samples", "last", cache=cache)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    config = record["config"]
    assert config["n_heads"] == 1 and config["dropout"] == 0.1 and config["exclude_history"] is True
    assert config["max_len"] == 20 and record["protocol"]["history_excluded"] is True
    assert record["protocol"]["training_targets"] == "each user's most recent 20 training targets, once per epoch (SASRec+)"
