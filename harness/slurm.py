"""Submit a sweep to SLURM as one job that starts a Ray cluster over its nodes; follow it.

    python -m harness.slurm submit --grid full --nodes 4 --gpus-per-node 8 --partition gpu --time 24:00:00 \
        --storage /shared/kdsr [--account A] [--env-setup "module load cuda/12.4"] [--dry-run]
    python -m harness.slurm status JOBID [--storage /shared/kdsr]

The script (slurm/ray-sweep.sbatch.tmpl) starts the Ray head on the first node and a worker on each other
node (`srun --overlap`), with per-job ports and temp dir, waits for every node, runs
`python -m harness.sweep --address ... --storage ... --resume`, and always stops Ray at exit. SLURM sends
USR1 `--signal-ahead` seconds before the time limit (or on preemption); the job then stops cleanly and
requeues itself, and the requeued run resumes the sweep from the result store.

Every value that lands in the script is validated (names, numbers, times) or shell-quoted (paths, grid),
and --env-setup commands may hold plain words only, each quoted: no value can inject shell code.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.grid import GridError, filter_trials, grid_path, load_grid
from harness.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "slurm" / "ray-sweep.sbatch.tmpl"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,-]*$")
TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$|^\d+-\d+$")
SHELL_META = set(";&|$`<>(){}\\\"'*?![]#~\n")


class SubmitError(ValueError):
    pass


def _name(value: str | None, what: str) -> str | None:
    if value is not None and not NAME.match(value):
        raise SubmitError(f"--{what} {value!r}: only letters, digits and _ . , - are allowed")
    return value


def _env_setup(commands: list[str]) -> str:
    lines = []
    for command in commands:
        try:
            words = shlex.split(command)
        except ValueError as err:
            raise SubmitError(f"--env-setup {command!r}: {err}") from None
        bad = [w for w in words if SHELL_META & set(w)]
        if bad or not words:
            raise SubmitError(f"--env-setup {command!r}: give one plain command per --env-setup (e.g. "
                              f"'module load cuda/12.4'); shell syntax such as {bad[:1] or [';']} is not allowed")
        lines.append(" ".join(shlex.quote(w) for w in words))
    return "\n".join(lines)


def render(args) -> str:
    """The sbatch script for these arguments (every value validated or quoted)."""
    try:
        grid = grid_path(args.grid)
    except GridError as err:
        raise SubmitError(str(err)) from None
    grid_arg = args.grid if grid.parent == ROOT / "harness" / "grids" and NAME.match(args.grid) else str(grid.resolve())
    if args.nodes < 1 or args.cpus_per_node < 1 or args.gpus_per_node < 0:
        raise SubmitError("--nodes and --cpus-per-node must be >= 1 and --gpus-per-node >= 0")
    if not TIME.match(args.time):
        raise SubmitError(f"--time {args.time!r}: use a SLURM time such as 24:00:00, 30:00 or 1-12:00:00")
    extra = []
    if _name(args.partition, "partition"):
        extra.append(f"#SBATCH --partition={args.partition}")
    if _name(args.account, "account"):
        extra.append(f"#SBATCH --account={args.account}")
    if args.gpus_per_node:
        extra.append(f"#SBATCH --gpus-per-node={args.gpus_per_node}")
    storage = Path(args.storage).resolve()
    if "\n" in str(storage) or "%" in str(storage):  # % is a filename pattern for sbatch --output
        raise SubmitError(f"--storage {args.storage!r}: newlines and % are not allowed in the path")
    sweep_args = []
    for item in args.only:
        if "=" not in item or SHELL_META & set(item):
            raise SubmitError(f"--only {item!r}: expected axis=value[,value]")
        sweep_args += ["--only", item]
    for flag in ("data_dir", "model_dir", "image_dir"):
        if getattr(args, flag):
            sweep_args += ["--" + flag.replace("_", "-"), str(Path(getattr(args, flag)).resolve())]
    if args.max_concurrent:
        sweep_args += ["--max-concurrent", str(int(args.max_concurrent))]
    if args.gpus_per_trial is not None:
        sweep_args += ["--gpus-per-trial", str(float(args.gpus_per_trial))]
    if args.cpus_per_trial is not None:
        sweep_args += ["--cpus-per-trial", str(float(args.cpus_per_trial))]
    from harness.data.cache import cache_root

    values = {
        "job_name": "kdsr-" + re.sub(r"[^A-Za-z0-9_.-]", "_", grid.stem),
        "nodes": str(int(args.nodes)), "cpus_per_node": str(int(args.cpus_per_node)),
        "gpus_per_node": str(int(args.gpus_per_node)), "time": args.time,
        "signal_seconds": str(int(args.signal_ahead)), "sbatch_extra": "\n".join(extra),
        "env_setup": _env_setup(args.env_setup), "bin_dir": shlex.quote(str(Path(sys.executable).parent)),
        "cache_dir": shlex.quote(str(cache_root().resolve())), "workdir": shlex.quote(str(ROOT)),
        "grid": shlex.quote(grid_arg), "storage": shlex.quote(str(storage)),
        "sweep_args": " ".join(shlex.quote(a) for a in sweep_args),
    }
    text = TEMPLATE.read_text()
    missing = set(re.findall(r"\{\{ *(\w+) *\}\}", text)) - set(values)
    if missing:
        raise SubmitError(f"{TEMPLATE}: unknown placeholders {sorted(missing)}")
    return re.sub(r"\{\{ *(\w+) *\}\}", lambda m: values[m.group(1)], text)


def submit(args) -> int:
    script = render(args)
    if args.dry_run:
        print(script)
        return 0
    if shutil.which("sbatch") is None:
        raise SubmitError("sbatch not found: run this on a SLURM login node (or use --dry-run to see the script)")
    storage = Path(args.storage).resolve()
    folder = storage / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sweep-{Path(args.grid).stem}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(script)
    # the log path goes on sbatch's command line (an argument list, no shell): #SBATCH lines cannot quote spaces
    log = folder / "%x-%j.out"
    out = subprocess.run(["sbatch", "--parsable", f"--output={log}", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SubmitError(f"sbatch failed: {out.stderr.strip()}")
    job = out.stdout.strip().split(";")[0]
    jobs = folder / "jobs.json"
    index = json.loads(jobs.read_text()) if jobs.is_file() else {}
    index[job] = {"grid": args.grid, "only": args.only, "script": str(path), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")}
    jobs.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"submitted job {job}\n  script: {path}\n  log:    {folder}/kdsr-{Path(args.grid).stem}-{job}.out\n"
          f"  follow: python -m harness.slurm status {job} --storage {shlex.quote(str(storage))}")
    return 0


def job_state(job: str) -> dict:
    """State from squeue / scontrol (which forget a job MinJobAge seconds after it ends)."""
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    info = dict(re.findall(r"(\w+)=(\S+)", out.stdout))
    for line in out.stdout.splitlines():  # paths may hold spaces: these fields take the rest of their line
        key, _, value = line.strip().partition("=")
        if key in ("Command", "WorkDir", "StdOut"):
            info[key] = value
    return info


def status(args) -> int:
    if not re.match(r"^\d+$", args.job):
        raise SubmitError(f"{args.job!r}: a job id is a number")
    info = job_state(args.job)
    storage = Path(args.storage).resolve() if args.storage else None
    if storage is None and info.get("Command"):
        storage = Path(info["Command"]).parent.parent  # scripts live in <storage>/slurm/
    if storage is None:
        raise SubmitError(f"job {args.job} is no longer known to SLURM; give --storage")
    index = json.loads((storage / "slurm" / "jobs.json").read_text()) if (storage / "slurm" / "jobs.json").is_file() else {}
    grid_name = index.get(args.job, {}).get("grid")
    only = index.get(args.job, {}).get("only") or []
    print(f"job {args.job}: {info.get('JobState', 'unknown to SLURM now (finished more than MinJobAge ago?)')}"
          + (f", run time {info['RunTime']}, nodes {info.get('NodeList')}, exit {info.get('ExitCode')}" if info else ""))
    store = ResultStore(storage)
    done, failed = store.done_keys(), store.failed_keys()
    if grid_name:
        keys = {t.key() for t in filter_trials(load_grid(grid_name).trials, only)}
        print(f"sweep {grid_name} in {storage}: {len(keys & done)}/{len(keys)} trials done, "
              f"{len(keys & failed - done)} failed")
    else:
        print(f"store {storage}: {len(done)} records, {len(failed - done)} failed")
    logs = sorted((storage / "slurm").glob(f"*-{args.job}.out"))
    if logs:
        tail = logs[-1].read_text(errors="replace").splitlines()[-5:]
        print(f"log {logs[-1]}:\n  " + "\n  ".join(tail))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.slurm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("submit", help="render the sbatch script and submit it")
    sub.add_argument("--grid", required=True)
    sub.add_argument("--storage", required=True, help="result store on a file system every node sees")
    sub.add_argument("--nodes", type=int, default=1)
    sub.add_argument("--gpus-per-node", type=int, default=0)
    sub.add_argument("--cpus-per-node", type=int, default=8)
    sub.add_argument("--partition", default=None)
    sub.add_argument("--account", default=None)
    sub.add_argument("--time", default="24:00:00")
    sub.add_argument("--signal-ahead", type=int, default=300, help="seconds before the limit to stop and requeue")
    sub.add_argument("--env-setup", action="append", default=[], help="a command run first, e.g. 'module load "
                                                                        "cuda/12.4' (repeatable; plain words only)")
    sub.add_argument("--only", action="append", default=[])
    sub.add_argument("--max-concurrent", type=int, default=None)
    sub.add_argument("--data-dir", default=None, help="Amazon files, on a shared file system")
    sub.add_argument("--model-dir", default=None, help="pre-downloaded models (<dir>/<hub id>) for offline nodes")
    sub.add_argument("--image-dir", default=None)
    sub.add_argument("--gpus-per-trial", type=float, default=None)
    sub.add_argument("--cpus-per-trial", type=float, default=None)
    sub.add_argument("--dry-run", action="store_true", help="print the script; submit nothing")
    stat = commands.add_parser("status", help="the job's state and the sweep's progress")
    stat.add_argument("job")
    stat.add_argument("--storage", default=None)
    args = parser.parse_args(argv)
    try:
        return submit(args) if args.command == "submit" else status(args)
    except SubmitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
