"""SLURM submission: the rendered script cannot be injected into, and a real SLURM runs the smoke grid.

The real-cluster test needs `sbatch` (`.ci/run` starts a one-node cluster with slurm/local_cluster.sh and
sets KDSR_REQUIRE_SLURM=1, so there it fails instead of skipping when SLURM is missing)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.grid import load_grid
from harness.slurm import main as slurm_main

ROOT = Path(__file__).resolve().parents[1]


def render(capsys, *args) -> tuple[int, str, str]:
    code = slurm_main(["submit", "--grid", "smoke", "--dry-run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("args", [
    ["--storage", "/tmp/s", "--partition", "gpu; touch /tmp/pwned"],
    ["--storage", "/tmp/s", "--account", "$(touch /tmp/pwned)"],
    ["--storage", "/tmp/s", "--time", "1:00:00 --wrap=id"],
    ["--storage", "/tmp/s", "--env-setup", "module load cuda; touch /tmp/pwned"],
    ["--storage", "/tmp/s", "--env-setup", "source `touch /tmp/pwned`"],
    ["--storage", "/tmp/s", "--env-setup", "export A=$(touch /tmp/pwned)"],
    ["--storage", "/tmp/s", "--only", "method=id;touch"],
])
def test_values_that_could_inject_are_refused(capsys, args):
    code, out, err = render(capsys, *args)
    assert code == 2 and err.startswith("error: ") and out == ""


def test_paths_and_env_setup_are_quoted(capsys, tmp_path):
    storage = tmp_path / "a b" / "$(touch pwned)'; echo x '"
    code, script, _ = render(capsys, "--storage", str(storage), "--env-setup", "module load cuda/12.4",
                             "--nodes", "3", "--gpus-per-node", "8", "--partition", "gpu")
    assert code == 0
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "#SBATCH --nodes=3" in script and "#SBATCH --gpus-per-node=8" in script
    assert "#SBATCH --partition=gpu" in script and "\nmodule load cuda/12.4\n" in script
    sweep_line = next(line for line in script.splitlines() if "harness.sweep" in line)
    # the shell sees the storage path as one literal word
    words = subprocess.run(["bash", "-c", 'printf "%s\\n" ' + sweep_line.split("--storage ", 1)[1].split(" --resume")[0]],
                           capture_output=True, text=True).stdout.splitlines()
    assert words == [str(storage)]
    assert "srun --overlap" in script and "ray stop" not in script.replace("`ray stop`", "")


def wait_for(job: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip()
        if not out:
            return
        time.sleep(0.25)
    subprocess.run(["scancel", job])
    raise AssertionError(f"job {job} did not finish within {timeout} s")


def test_smoke_grid_through_real_slurm(tmp_path, capsys):
    if shutil.which("sbatch") is None:
        if os.environ.get("KDSR_REQUIRE_SLURM") == "1":
            pytest.fail("KDSR_REQUIRE_SLURM=1 but sbatch is not on PATH (run slurm/local_cluster.sh start)")
        pytest.skip("no SLURM here: start one with `bash slurm/local_cluster.sh start` (CI does)")
    storage = tmp_path / "shared store" / "$(touch injected)"
    assert slurm_main(["submit", "--grid", "smoke", "--storage", str(storage), "--nodes", "1",
                       "--cpus-per-node", "1", "--time", "00:15:00"]) == 0
    job = capsys.readouterr().out.split()[2]
    wait_for(job, timeout=600)
    log = next((storage / "slurm").glob(f"*-{job}.out")).read_text()
    assert "[slurm] sweep finished with status 0" in log, log[-3000:]
    records = {p.stem for p in (storage / "records").glob("*.json")}
    assert records == set(load_grid("smoke").keys())
    assert (storage / "tables" / "main-minilm-l6.md").is_file() and (storage / "README.md").is_file()
    assert not (ROOT / "injected").exists() and not (storage / "slurm" / "injected").exists()
    assert slurm_main(["status", job, "--storage", str(storage)]) == 0
    assert "3/3 trials done" in capsys.readouterr().out
    # no Ray process of this job is left behind
    leftovers = subprocess.run(["pgrep", "-f", f"ray-{job}/"], capture_output=True, text=True).stdout.strip()
    assert leftovers == "", leftovers


def test_time_limit_signal_requeues_and_the_sweep_resumes(tmp_path, capsys):
    """USR1 is what `--signal` sends ahead of the time limit: the job stops cleanly, requeues itself, and
    its second run finishes the sweep without redoing finished trials."""
    if shutil.which("sbatch") is None:
        if os.environ.get("KDSR_REQUIRE_SLURM") == "1":
            pytest.fail("KDSR_REQUIRE_SLURM=1 but sbatch is not on PATH (run slurm/local_cluster.sh start)")
        pytest.skip("no SLURM here: start one with `bash slurm/local_cluster.sh start` (CI does)")
    storage = tmp_path / "store"
    assert slurm_main(["submit", "--grid", "smoke", "--storage", str(storage), "--cpus-per-node", "1",
                       "--time", "00:15:00"]) == 0
    job = capsys.readouterr().out.split()[2]
    deadline = time.time() + 300
    while not list((storage / "records").glob("*.json")) and time.time() < deadline:
        time.sleep(0.25)
    first = {p.name: p.read_bytes() for p in (storage / "records").glob("*.json")}
    assert first, "no trial finished before the signal"
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    wait_for(job, timeout=600)  # requeued (pending for SLURM's requeue delay), rerun, finished
    log = next((storage / "slurm").glob(f"*-{job}.out")).read_text()
    assert "[slurm] time limit ahead: stopping the sweep and requeueing" in log
    assert "(restart 1)" in log and "[slurm] sweep finished with status 0" in log, log[-3000:]
    records = {p.name: p.read_bytes() for p in (storage / "records").glob("*.json")}
    assert {Path(n).stem for n in records} == set(load_grid("smoke").keys())
    assert all(records[name] == raw for name, raw in first.items())  # finished trials were not redone


def test_two_node_job_runs_trials_on_both_nodes(tmp_path, capsys):
    """A Ray head on one SLURM node and a worker on the other (CI: SLURM_LOCAL_NODES=2, nodes in network
    namespaces): the sweep's trials run on both."""
    if shutil.which("sbatch") is None:
        pytest.skip("no SLURM here: start one with `SLURM_LOCAL_NODES=2 bash slurm/local_cluster.sh start`")
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()
    if len(set(nodes)) < 2:
        if os.environ.get("KDSR_REQUIRE_SLURM_NODES", "1") != "1":
            pytest.fail(f"KDSR_REQUIRE_SLURM_NODES is set but SLURM has nodes {nodes}")
        pytest.skip(f"one SLURM node ({nodes}); start with SLURM_LOCAL_NODES=2 for this test")
    storage = tmp_path / "store"
    assert slurm_main(["submit", "--grid", "smoke", "--storage", str(storage), "--nodes", "2",
                       "--cpus-per-node", "1", "--time", "00:15:00"]) == 0
    job = capsys.readouterr().out.split()[2]
    wait_for(job, timeout=600)
    log = next((storage / "slurm").glob(f"*-{job}.out")).read_text()
    assert "2 of 2 Ray nodes up" in log and "[slurm] sweep finished with status 0" in log, log[-3000:]
    assert {p.stem for p in (storage / "records").glob("*.json")} == set(load_grid("smoke").keys())
    ips = {json.loads(p.read_text().strip().splitlines()[-1])["node_ip"]
           for p in (storage / "ray" / "smoke").glob("*/result.json")}
    assert len(ips) == 2, ips
