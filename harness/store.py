"""The result store: one JSON record per finished trial, named by the trial's key.

    <root>/records/<key>.json   finished trials (harness.record schema), never rewritten
    <root>/failed/<key>.json    trials that failed after their retries: config, error text, attempts
    <root>/search/...           Optuna search trials (kept apart from the grid's records)
    <root>/ray/                 Ray Tune's own experiment state (not needed to resume)

Every write is a temp file + rename, so a kill leaves either the old state or the new one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from harness.record import validate_record, write_record


class ResultStore:
    def __init__(self, root: str | Path, records_dir: str = "records"):
        self.root = Path(root).resolve()
        self.records = self.root / records_dir
        self.failed = self.root / "failed" if records_dir == "records" else self.root / records_dir / "failed"

    def record_path(self, key: str) -> Path:
        return self.records / f"{key}.json"

    def checkpoint_path(self, key: str) -> Path:
        """Where a running trial keeps its per-epoch training state (removed once its record is stored)."""
        return self.root / "checkpoints" / f"{key}.pt"

    def has(self, key: str) -> bool:
        return self.record_path(key).is_file()

    def done_keys(self) -> set[str]:
        return {p.stem for p in self.records.glob("*.json")} if self.records.is_dir() else set()

    def failed_keys(self) -> set[str]:
        return {p.stem for p in self.failed.glob("*.json")} if self.failed.is_dir() else set()

    def load(self, key: str) -> dict:
        return json.loads(self.record_path(key).read_text())

    def put(self, record: dict) -> Path | None:
        """Store a finished trial; an existing record is kept (a finished result is never rewritten)."""
        validate_record(record)
        path = self.record_path(record["key"])
        written = not path.exists()
        if written:
            write_record(record, path)
            (self.failed / f"{record['key']}.json").unlink(missing_ok=True)
        self.checkpoint_path(record["key"]).unlink(missing_ok=True)  # only once the record is on disk
        return path if written else None

    def put_failure(self, key: str, config: dict, error: str, attempt: int) -> Path:
        return write_record({"key": key, "config": config, "error": error, "attempts": attempt,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                            self.failed / f"{key}.json")

    def failure(self, key: str) -> dict | None:
        path = self.failed / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None


def load_records(folder: str | Path) -> list[dict]:
    """Every record in a folder, sorted by key; a malformed file is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such results folder (give the store's records/ folder or its root)")
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            validate_record(record)
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{path}: not a result record ({err}); delete it or rerun its trial") from None
        records.append(record)
    return records
