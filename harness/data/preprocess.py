"""Raw interactions -> SequenceData: clean, iterative k-core, stable chronological order, id remapping."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harness.data.dataset import SequenceData
from kdsr_util.settings import setting
from harness.data.errors import DataError
from harness.data.sources import RawData


DEDUP = ("exact", "pair")


@dataclass(frozen=True)
class PreprocessOptions:
    user_k: int = setting(5, interval="[1, inf)",
                          help="keep users with at least this many interactions (iteratively, with item_k)")
    item_k: int = setting(5, interval="[1, inf)", help="keep items with at least this many interactions")
    dedup: str = setting("exact", choices=DEDUP,
                         help="exact: drop rows equal in (user, item, timestamp); pair: keep a user's first "
                              "interaction with each item")

    def as_dict(self) -> dict:
        return asdict(self)


def k_core(frame: pd.DataFrame, user_k: int, item_k: int) -> pd.DataFrame:
    """Iteratively drop users with < user_k and items with < item_k interactions until both hold."""
    while True:
        user_counts = frame["user"].map(frame["user"].value_counts())
        item_counts = frame["item"].map(frame["item"].value_counts())
        keep = (user_counts >= user_k) & (item_counts >= item_k)
        if keep.all():
            return frame
        frame = frame[keep]


def preprocess(raw: RawData, options: PreprocessOptions) -> SequenceData:
    if options.dedup not in DEDUP:
        raise DataError(None, "dedup", f"unknown value {options.dedup!r}", "use 'exact' or 'pair'")
    frame = raw.interactions.copy()
    frame["order"] = np.arange(len(frame))  # file order breaks timestamp ties
    n_read = len(frame)
    # a published split keeps every row and orders each user's rows by stage first (train, valid, test),
    # so that leave-one-out reproduces it; it is already k-cored by its publisher
    when = ["stage", "timestamp", "order"] if raw.presplit else ["timestamp", "order"]
    if not raw.presplit:
        frame = frame.drop_duplicates(["user", "item", "timestamp"], keep="first")
    n_exact_dupes = n_read - len(frame)
    frame = frame.sort_values(["user", *when], kind="stable")
    if options.dedup == "pair" and not raw.presplit:
        frame = frame.drop_duplicates(["user", "item"], keep="first")
    n_deduped = n_read - len(frame)
    if not raw.presplit:
        frame = k_core(frame, options.user_k, options.item_k)
    source = ", ".join(str(f) for f in raw.files) or raw.name
    if frame.empty:
        raise DataError(source, None,
                        f"no interactions left after {options.user_k}/{options.item_k}-core filtering "
                        f"({n_read} rows read)",
                        "lower --user-k/--item-k or use a larger data set")

    # id remapping: users and items numbered by first appearance in chronological order; item 0 = padding
    frame = frame.sort_values(["user", *when], kind="stable")
    first_seen = frame.sort_values(when, kind="stable")
    item_raw = pd.unique(first_seen["item"])
    user_raw = pd.unique(first_seen["user"])
    item_index = pd.Series(np.arange(1, len(item_raw) + 1), index=item_raw)
    user_index = pd.Series(np.arange(len(user_raw)), index=user_raw)
    frame = frame.assign(uid=frame["user"].map(user_index).to_numpy(), iid=frame["item"].map(item_index).to_numpy())
    frame = frame.sort_values(["uid", *when], kind="stable")

    counts = np.bincount(frame["uid"].to_numpy(), minlength=len(user_raw))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    side = raw.items.set_index("item") if len(raw.items) else pd.DataFrame(columns=["text", "image"])
    items = pd.DataFrame({"raw_id": np.concatenate([[""], item_raw.astype(str)])})
    items["text"] = side["text"].reindex(items["raw_id"]).fillna("").to_numpy(dtype=str) if len(side) else ""
    items["image"] = side["image"].reindex(items["raw_id"]).fillna("").to_numpy(dtype=str) if len(side) else ""
    items.loc[0, ["text", "image"]] = ""

    meta = {
        "options": options.as_dict(),
        "source_files": [str(f) for f in raw.files],
        "rows_read": n_read + raw.invalid_rows,
        "rows_invalid": raw.invalid_rows,
        "rows_exact_duplicate": n_exact_dupes,
        "rows_dropped_by_dedup": n_deduped,
        "rows_dropped_by_k_core": n_read - n_deduped - len(frame),
        **({"published_split": "k-core and dedup not applied; each user's rows ordered train, valid, test"}
           if raw.presplit else {}),
        "items_without_side_info": int((~items["raw_id"].iloc[1:].isin(side.index)).sum()) if len(side) else len(item_raw),
    }
    return SequenceData(name=raw.name, item_seq=frame["iid"].to_numpy(dtype=np.int64),
                        timestamps=frame["timestamp"].to_numpy(dtype=np.float64), user_offsets=offsets,
                        user_raw_ids=np.asarray(user_raw, dtype=str), items=items, meta=meta)
