"""Published and peer numbers our backbones are held against: harness/anchors.yaml, read and checked."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import yaml

ANCHORS_FILE = Path(__file__).with_name("anchors.yaml")
FIELDS = ("model", "backbone", "paper", "source", "protocol", "history_excluded", "test")


class Anchor(NamedTuple):
    model: str
    backbone: str
    paper: str
    source: str
    protocol: str
    history_excluded: bool | None  # None: the source does not say
    test: dict  # metric -> value, as the source states it


def load_anchors(path: str | Path = ANCHORS_FILE) -> dict[str, list[Anchor]]:
    """Data set -> its anchors; a malformed entry stops with the file, the entry and the field to fix."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    out: dict[str, list[Anchor]] = {}
    for dataset, entries in raw.items():
        for i, entry in enumerate(entries or []):
            where = f"{path}: {dataset} entry {i + 1}"
            missing = [f for f in FIELDS if f not in (entry or {})]
            if missing:
                raise ValueError(f"{where}: missing field(s) {', '.join(missing)}; every anchor needs "
                                 f"{', '.join(FIELDS)}")
            if entry["history_excluded"] not in (True, False, None):
                raise ValueError(f"{where}: history_excluded must be true, false or null, not "
                                 f"{entry['history_excluded']!r}")
            if not isinstance(entry["test"], dict) or not all(isinstance(v, (int, float)) for v in entry["test"].values()):
                raise ValueError(f"{where}: test must map metric names to numbers, e.g. {{NDCG@10: 0.18}}")
            out.setdefault(dataset, []).append(Anchor(**{f: entry[f] for f in FIELDS}))
    return out
