"""Export processed data (after k-core and dedup) as RecBole atomic files, so RecBole or any atomic-file tool
runs on exactly our data and split.

    python -m harness.data export --dataset ml-100k --format recbole --out exports/ml-100k

Writes `<out>/<name>.inter` (`user_id:token item_id:token timestamp:float`, one row per interaction, each
user's rows in our chronological order) and `<out>/<name>.item` (`item_id:token text:token_seq`, plus
`image:token` where items have images). Timestamps are integers that keep our order: a user's timestamp is
its original value in whole seconds, raised to one more than the previous row's where rounding or a tie
would let a sort reorder them (so RecBole's stable time sort and our leave-one-out see the same order).
Tabs and line breaks inside texts become spaces.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.data.dataset import SequenceData

FORMATS = ("recbole",)


def ordered_timestamps(data: SequenceData) -> np.ndarray:
    """Integer seconds, strictly increasing within each user (ties and rounding nudged forward by 1 s)."""
    stamps = np.floor(data.timestamps).astype(np.int64)
    counts = np.diff(data.user_offsets)
    rank = np.arange(len(stamps)) - np.repeat(data.user_offsets[:-1], counts)  # position within the user
    user = np.repeat(np.arange(len(counts)), counts)
    # out[k] = rank[k] + running max of (stamp - rank) within the user: the smallest strictly increasing
    # integers that are never below the original seconds
    shifted = pd.Series(stamps - rank).groupby(user).cummax().to_numpy()
    return shifted + rank


def _clean(values: pd.Series) -> pd.Series:
    return values.astype(str).str.replace(r"[\t\r\n]+", " ", regex=True).str.strip()


def export_recbole(data: SequenceData, out: str | Path, name: str | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = name or data.name
    raw_item = data.items["raw_id"].to_numpy(dtype=str)
    users = np.repeat(data.user_raw_ids.astype(str), np.diff(data.user_offsets))
    inter = pd.DataFrame({"user_id:token": users, "item_id:token": raw_item[data.item_seq],
                          "timestamp:float": ordered_timestamps(data)})
    items = data.items.iloc[1:]
    table = pd.DataFrame({"item_id:token": items["raw_id"].astype(str).to_numpy(),
                          "text:token_seq": _clean(items["text"]).to_numpy()})
    if (items["image"].astype(str) != "").any():
        table["image:token"] = _clean(items["image"]).to_numpy()
    paths = [out / f"{name}.inter", out / f"{name}.item"]
    for frame, path in ((inter, paths[0]), (table, paths[1])):
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n", quoting=csv.QUOTE_NONE)
        tmp.replace(path)
    (out / "export.json").write_text(json.dumps({"source": data.name, "format": "recbole", "users": data.n_users,
                                                 "items": data.n_items, "interactions": data.n_interactions,
                                                 "preprocessing": data.meta.get("options")}, indent=2) + "\n")
    return paths
