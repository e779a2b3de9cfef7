"""Splits and the protocol's tensors-to-be: training windows, evaluation histories, popularity buckets.

A split is three arrays of *target positions* (indices into `SequenceData.item_seq`); the history of a
target is everything before it in the same user's sequence. This covers leave-one-out and the
reference code's per-user ratio split with one representation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.dataset import SequenceData
from harness.data.errors import DataError
from kdsr_util.settings import AUTO, setting


SPLITS = ("loo", "ratio")
TRAIN_SAMPLES = ("windows", "last", "crop", "stride", "prefix")


@dataclass(frozen=True)
class ProtocolOptions:
    """How a trial's data are split and cut into model inputs."""

    split: str = setting("loo", choices=SPLITS, help="loo: chronological leave-one-out; ratio: per-user ratio")
    max_len: int = setting(50, interval="[1, inf)", help="longest history a model sees (training windows too)")
    train_fraction: float = setting(1.0, interval="(0, 1]",
                                    help="<1: sparse regime, keep each user's most recent training interactions")
    train_samples: str = setting("windows", choices=TRAIN_SAMPLES,
                                 help="training rows of max_len targets, loss at every position: windows = every "
                                      "target once in fixed non-overlapping windows cut from the end; last = each "
                                      "user's most recent window only (SASRec+); crop = one random full-length "
                                      "window per user, fresh every epoch; stride = overlapping windows ending "
                                      "every sample_stride targets; prefix = one row per training target, "
                                      "ending at it (with loss_positions last: RecBole's per-prefix samples)")
    exclude_history: bool | str = setting(AUTO, auto=True, item=bool, before=False,
                                          help="remove the user's earlier items from the ranking; auto: decided "
                                               "from the training data (excluded when no user repeats an item, "
                                               "as in MovieLens); records before 2026-12-02 included them unless "
                                               "set")
    sample_stride: int = setting(25, interval="[1, inf)", when=("train_samples", ("stride",)),
                                 help="targets between the ends of overlapping windows (train_samples stride)")


@dataclass
class Split:
    kind: str
    train_pos: np.ndarray  # positions used as training targets (never a user's first item)
    valid_pos: np.ndarray
    test_pos: np.ndarray
    train_end: np.ndarray  # [n_users]: position one past the user's last training item

    def describe(self) -> str:
        return {
            "loo": "chronological leave-one-out (last item test, second-to-last validation, rest train)",
            "ratio": "per-user chronological ratio split",
        }[self.kind]


def leave_one_out(data: SequenceData) -> Split:
    start, end = data.user_offsets[:-1], data.user_offsets[1:]
    if (end - start < 3).any():
        raise DataError(None, "user sequence length", "leave-one-out needs at least 3 interactions per user",
                        "use k-core filtering with --user-k >= 3")
    train_end = end - 2
    return Split("loo", _ranges(start + 1, train_end), end - 2, end - 1, train_end)


def ratio_split(data: SequenceData, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    """Per user: the first ratios[0] of the sequence trains, the next ratios[1] validates, the rest tests.

    Every user keeps at least 1 validation and 1 test target (as in the reference code's split).
    """
    if abs(sum(ratios) - 1) > 1e-6 or min(ratios) <= 0:
        raise DataError(None, "split ratios", f"{ratios} must be positive and sum to 1", "e.g. 0.8,0.1,0.1")
    start, end = data.user_offsets[:-1], data.user_offsets[1:]
    length = end - start
    if (length < 3).any():
        raise DataError(None, "user sequence length", "the ratio split needs at least 3 interactions per user",
                        "use k-core filtering with --user-k >= 3")
    n_test = np.maximum(1, np.round(length * ratios[2]).astype(np.int64))
    n_valid = np.maximum(1, np.round(length * ratios[1]).astype(np.int64))
    n_train = np.maximum(1, length - n_test - n_valid)
    n_valid = length - n_train - n_test
    train_end = start + n_train
    valid_end = train_end + n_valid
    return Split("ratio", _ranges(start + 1, train_end), _ranges(train_end, valid_end), _ranges(valid_end, end),
                 train_end)


def make_split(data: SequenceData, kind: str = "loo") -> Split:
    if data.meta.get("published_split") and kind != "loo":
        raise DataError(None, "split", f"{data.name} is a published split, which leave-one-out reproduces; "
                        f"{kind!r} would re-split it", "use --split loo with this data set")
    if kind == "loo":
        return leave_one_out(data)
    if kind == "ratio":
        return ratio_split(data)
    raise DataError(None, "split", f"unknown split {kind!r}", f"use one of {', '.join(SPLITS)}")


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of arange(lo[i], hi[i]) for all i, vectorised."""
    counts = np.maximum(hi - lo, 0)
    if counts.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return (np.arange(counts.sum()) + offsets).astype(np.int64)


# ------------------------------------------------------------------------------------------ protocol arrays
def training_windows(data: SequenceData, split: Split, max_len: int) -> np.ndarray:
    """Every training target exactly once, in windows of up to `max_len` targets: int64 [n, max_len + 1].

    Row = [i_0 .. i_L] right-padded with 0: inputs are row[:-1], targets row[1:]. Windows are cut from
    the end of each user's training part, so the most recent targets get the longest context.
    A user's training targets are positions start+1 .. train_end-1 (every prefix predicts its next item).
    """
    return training_rows(data, split, max_len, "windows")


def training_rows(data: SequenceData, split: Split, max_len: int, samples: str = "windows",
                  stride: int = 0) -> np.ndarray:
    """The fixed training rows of a `train_samples` mode (see ProtocolOptions): int64 [n, max_len + 1]."""
    start = data.user_offsets[:-1]
    n_targets = np.maximum(split.train_end - start - 1, 0)
    if samples == "windows":
        step, per_user = max_len, -(-n_targets // max_len)  # ceil
    elif samples == "last":
        step, per_user = max_len, np.minimum(n_targets, 1)
    elif samples == "stride":
        if not 1 <= stride <= max_len:
            raise ValueError(f"stride {stride}: use 1 <= stride <= max_len ({max_len})")
        step = stride
        per_user = np.where(n_targets > 0, 1 + -(-np.maximum(n_targets - max_len, 0) // stride), 0)
    elif samples == "prefix":  # one row per target, ending at it
        user = data.user_of_position()[split.train_pos]
        return _window_rows(data, user, split.train_pos, max_len)
    else:
        raise ValueError(f"train_samples {samples!r} has no fixed rows; choose from windows, last, stride, prefix "
                         "(crop: RandomCrops)")
    user = np.repeat(np.arange(data.n_users), per_user)
    j = _ranges(np.zeros_like(per_user), per_user)  # 0 = the most recent window of the user
    return _window_rows(data, user, split.train_end[user] - 1 - j * step, max_len)


def _window_rows(data: SequenceData, user: np.ndarray, last: np.ndarray, max_len: int) -> np.ndarray:
    """Rows whose targets are the positions up to `last` (at most max_len of them, none before the user's
    second item), preceded by their first input."""
    first = np.maximum(data.user_offsets[:-1][user] + 1, last - max_len + 1)
    cols = np.arange(max_len + 1)
    index = first[:, None] - 1 + cols[None, :]
    valid = index <= last[:, None]
    return np.where(valid, data.item_seq[np.where(valid, index, 0)], 0).astype(np.int64)


class RandomCrops:
    """train_samples crop: per epoch, one window of min(max_len, the user's training targets) consecutive
    targets per user, ending at a uniformly drawn position. Called with an integer seed (the trainer draws
    it from its own generator, so a resumed run draws the same crops)."""

    def __init__(self, data: SequenceData, split: Split, max_len: int):
        self.data, self.max_len = data, max_len
        start = data.user_offsets[:-1]
        n_targets = np.maximum(split.train_end - start - 1, 0)
        self.users = np.flatnonzero(n_targets > 0)
        self.lowest_end = (start + np.minimum(n_targets, max_len))[self.users]  # the window is then full
        self.highest_end = split.train_end[self.users] - 1

    def __call__(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        last = rng.integers(self.lowest_end, self.highest_end + 1)
        return _window_rows(self.data, self.users, last, self.max_len)

    def __repr__(self) -> str:
        return f"RandomCrops(users={len(self.users)}, max_len={self.max_len})"


def histories(data: SequenceData, positions: np.ndarray, max_len: int) -> np.ndarray:
    """The last `max_len` items before each target position, right-padded: int64 [n, max_len]."""
    user = data.user_of_position()[positions]
    start = data.user_offsets[:-1][user]
    length = np.minimum(positions - start, max_len)
    cols = np.arange(max_len)
    index = (positions - length)[:, None] + cols[None, :]
    valid = cols[None, :] < length[:, None]
    return np.where(valid, data.item_seq[np.where(valid, index, 0)], 0).astype(np.int64)


def seen_items(data: SequenceData, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (offsets [n + 1], items) of *all* items before each target (for history exclusion)."""
    user = data.user_of_position()[positions]
    start = data.user_offsets[:-1][user]
    flat = _ranges(start, positions)
    offsets = np.concatenate([[0], np.cumsum(positions - start)]).astype(np.int64)
    return offsets, data.item_seq[flat]


POPULARITY_BUCKETS = ("cold", "warm", "hot")


def users_repeating_items(data: SequenceData, split: Split) -> int:
    """Users whose training part holds some item more than once."""
    start = data.user_offsets[:-1]
    users = np.repeat(np.arange(data.n_users), split.train_end - start)
    items = data.item_seq[_ranges(start, split.train_end)]
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    repeated = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    return len(np.unique(users[1:][repeated]))


def decide_history_exclusion(setting, data: SequenceData, split: Split) -> tuple[bool, str]:
    """`exclude_history` (True, False or "auto") -> (exclude?, the reason stated in the record and captions).
    Auto excludes the user's earlier items from the ranking when no user repeats an item in training: on
    such data the next item is never one of them, and ranking them only spends top-k slots."""
    if setting != AUTO:
        return bool(setting), "set explicitly"
    repeating = users_repeating_items(data, split)
    if repeating == 0:
        return True, "auto: no user repeats an item in the training data"
    return False, f"auto: {repeating} of {data.n_users} users repeat an item in the training data"


def train_item_counts(data: SequenceData, split: Split) -> np.ndarray:
    """Interactions per item inside the training part (including each user's first item)."""
    start = data.user_offsets[:-1]
    train_items = data.item_seq[_ranges(start, split.train_end)]
    return np.bincount(train_items, minlength=data.n_items + 1)


def popularity_thresholds(counts: np.ndarray, cold_max: int = 5, hot_quantile: float = 0.8) -> dict:
    """Cold: <= cold_max training interactions; hot: at or above the `hot_quantile` of item training
    counts (and above cold); warm: between."""
    hot_min = max(cold_max + 1, int(np.ceil(np.quantile(counts[1:], hot_quantile))))
    return {"cold_max_train_count": cold_max, "hot_min_train_count": hot_min}


def popularity_buckets(counts: np.ndarray, targets: np.ndarray, thresholds: dict) -> np.ndarray:
    """Bucket index (0 cold, 1 warm, 2 hot, as in POPULARITY_BUCKETS) of each target item."""
    c = counts[targets]
    return np.where(c <= thresholds["cold_max_train_count"], 0,
                    np.where(c >= thresholds["hot_min_train_count"], 2, 1))


def keep_recent_training(data: SequenceData, split: Split, fraction: float) -> SequenceData:
    """Sparse regime: keep only the most recent `fraction` of each user's training interactions (at least
    one); validation and test items, and so their targets, are unchanged. Item ids stay the same."""
    if not 0 < fraction <= 1:
        raise DataError(None, "train_fraction", f"{fraction} is not in (0, 1]", "use e.g. 0.2")
    start, end = data.user_offsets[:-1], data.user_offsets[1:]
    n_train = split.train_end - start
    kept = np.maximum(1, np.ceil(n_train * fraction).astype(np.int64))
    new_start = split.train_end - kept
    positions = _ranges(new_start, end)
    offsets = np.concatenate([[0], np.cumsum(end - new_start)]).astype(np.int64)
    meta = {**data.meta, "train_fraction": fraction}
    return SequenceData(name=data.name, item_seq=data.item_seq[positions], timestamps=data.timestamps[positions],
                        user_offsets=offsets, user_raw_ids=data.user_raw_ids, items=data.items, meta=meta)
