"""Small synthetic inputs shared by tests."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.data.dataset import SequenceData


def make_data(sequences: list[list[int]], name: str = "toy") -> SequenceData:
    """SequenceData from explicit per-user item sequences (item ids already 1..n)."""
    n_items = max(max(s) for s in sequences)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int64)
    items = pd.DataFrame({"raw_id": [""] + [f"i{i}" for i in range(1, n_items + 1)],
                          "text": [""] + [f"item {i}" for i in range(1, n_items + 1)], "image": ""})
    return SequenceData(name=name, item_seq=flat, timestamps=np.arange(len(flat), dtype=np.float64),
                        user_offsets=offsets, user_raw_ids=np.array([f"u{u}" for u in range(len(sequences))]),
                        items=items)


def write_atomic(folder, name, inter_rows, item_rows=None,
                 inter_header="user_id:token\titem_id:token\trating:float\ttimestamp:float",
                 item_header="item_id:token\ttitle:token_seq\timage:token"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.inter").write_text(inter_header + "\n" + "\n".join("\t".join(map(str, r)) for r in inter_rows) + "\n")
    if item_rows is not None:
        (folder / f"{name}.item").write_text(item_header + "\n" + "\n".join("\t".join(map(str, r)) for r in item_rows) + "\n")
    return folder


def dense_inter_rows(n_users: int, n_items: int, per_user: int, seed: int = 0) -> list[tuple]:
    """Rows (user, item, rating, timestamp) where every user rates `per_user` distinct items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=per_user, replace=False)):
            rows.append((f"u{u}", f"it{i}", 5, 1000 * u + t))
    return rows


def run_killed_in_validation(monkeypatch, run, call: int) -> None:
    """Run `run()` with the trainer's validation dying (KeyboardInterrupt) at its `call`-th evaluation, as a
    process killed during that epoch; the real evaluation is restored afterwards."""
    import pytest

    import methods.trainer as trainer

    real_evaluate, calls = trainer.evaluate, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", dying)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)
