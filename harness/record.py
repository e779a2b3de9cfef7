"""The result-record schema shared by the trial runner, the sweep and the report.

A record is one JSON object per finished trial. Keys (schema version 1):
  schema, key, config, protocol, dataset_stats, valid, test, best_epoch, epochs_run, stop_reason,
  curves, trainable_params, seconds_per_epoch, eval_seconds, train_seconds_total, peak_memory_mb,
  peak_memory_kind, runtime, created; resumed_after_epoch (> 0 when the run resumed from a checkpoint)
`valid` / `test` map a group ("overall", "cold", "warm", "hot") to metrics {"HR@10": ..., "n": ...}.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "key", "config", "protocol", "valid", "test", "best_epoch", "epochs_run",
                 "trainable_params", "seconds_per_epoch", "peak_memory_mb", "runtime")


def config_key(config: dict) -> str:
    """Stable hash of a resolved config (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def runtime_info(device: str, threads: int) -> dict:
    versions = {}
    for package in ("torch", "numpy", "pandas", "kdsr-bench"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "device": device,
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": git_commit(),
    }


def make_record(key: str, config: dict, protocol: dict, dataset_stats: dict, fit_result: dict, runtime: dict) -> dict:
    return {
        "schema": SCHEMA_VERSION,
        "key": key,
        "config": config,
        "protocol": protocol,
        "dataset_stats": dataset_stats,
        **fit_result,
        "runtime": runtime,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def validate_record(record: dict) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"result record is missing keys {missing}")
    if record["schema"] != SCHEMA_VERSION:
        raise ValueError(f"result record schema {record['schema']} != supported {SCHEMA_VERSION}")


def write_record(record: dict, path: str | Path) -> Path:
    """Atomic write (temp file + rename): a kill never leaves a half-written record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
