"""The one internal representation of a processed data set, and its Parquet form on disk."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class SequenceData:
    """Users' chronologically ordered interactions, stored flat (CSR by user).

    Item ids are 1..n_items (0 is padding); user ids are 0..n_users-1. User u's sequence is
    `item_seq[user_offsets[u]:user_offsets[u + 1]]`, oldest first.
    """

    name: str
    item_seq: np.ndarray  # int64 [n_interactions]
    timestamps: np.ndarray  # float64 [n_interactions], seconds
    user_offsets: np.ndarray  # int64 [n_users + 1]
    user_raw_ids: np.ndarray  # str [n_users]
    items: pd.DataFrame  # index 0..n_items (row 0 = padding); columns raw_id, text, image
    meta: dict = field(default_factory=dict)  # options, source files, cleaning counts, cache key

    @property
    def n_users(self) -> int:
        return len(self.user_offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.items) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.item_seq)

    @property
    def seq_lengths(self) -> np.ndarray:
        return np.diff(self.user_offsets)

    def user_of_position(self) -> np.ndarray:
        """User id of every position in `item_seq`."""
        return np.repeat(np.arange(self.n_users), self.seq_lengths)

    def sequence(self, user: int) -> np.ndarray:
        return self.item_seq[self.user_offsets[user]:self.user_offsets[user + 1]]

    def stats(self) -> dict:
        lengths = self.seq_lengths
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "items_with_text": int((self.items["text"].iloc[1:] != "").sum()),
            "items_with_image": int((self.items["image"].iloc[1:] != "").sum()),
        }

    # ------------------------------------------------------------------------------------- disk form
    def save(self, folder: Path) -> None:
        """Write into `folder` (the caller makes it atomic: see `cache.atomic_dir`)."""
        users = np.repeat(np.arange(self.n_users, dtype=np.int32), self.seq_lengths)
        pd.DataFrame({"user": users, "item": self.item_seq.astype(np.int32), "timestamp": self.timestamps}) \
            .to_parquet(folder / "interactions.parquet", index=False)
        pd.DataFrame({"raw_id": self.user_raw_ids.astype(str)}).to_parquet(folder / "users.parquet", index=False)
        self.items.to_parquet(folder / "items.parquet", index=False)
        (folder / "meta.json").write_text(json.dumps({"name": self.name, **self.meta}, indent=2, sort_keys=True))
        stats = self.stats()
        (folder / "stats.json").write_text(json.dumps(stats, indent=2))
        (folder / "stats.md").write_text(stats_table([stats]) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "SequenceData":
        inter = pd.read_parquet(folder / "interactions.parquet")
        users = pd.read_parquet(folder / "users.parquet")["raw_id"].to_numpy(dtype=str)
        items = pd.read_parquet(folder / "items.parquet")
        meta = json.loads((folder / "meta.json").read_text())
        counts = np.bincount(inter["user"].to_numpy(), minlength=len(users))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(name=meta.pop("name"), item_seq=inter["item"].to_numpy(dtype=np.int64),
                   timestamps=inter["timestamp"].to_numpy(dtype=np.float64), user_offsets=offsets,
                   user_raw_ids=users, items=items, meta=meta)


def stats_table(all_stats: list[dict]) -> str:
    """Markdown table of `SequenceData.stats()` dicts, one row per data set (printed and saved)."""
    rows = ["| data set | users | items | interactions | density | mean length | median length | max length |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in all_stats:
        rows.append(f"| {s['dataset']} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | {s['density']:.2%} | "
                    f"{s['mean_length']:.1f} | {s['median_length']:.0f} | {s['max_length']:,} |")
    return "\n".join(rows)
