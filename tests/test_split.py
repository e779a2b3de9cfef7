import numpy as np
import pytest

from harness.data import DataError
from harness.data.split import (histories, leave_one_out, popularity_buckets, popularity_thresholds, ratio_split,
                                seen_items, train_item_counts, training_windows)
from helpers import make_data, run_killed_in_validation


def test_leave_one_out_positions():
    data = make_data([[1, 2, 3, 4, 5], [6, 7, 8]])
    split = leave_one_out(data)
    assert data.item_seq[split.test_pos].tolist() == [5, 8]
    assert data.item_seq[split.valid_pos].tolist() == [4, 7]
    # every prefix of the training part predicts its next item; a user's first item is never a target
    assert data.item_seq[split.train_pos].tolist() == [2, 3]
    assert split.train_end.tolist() == [3, 6]


def test_leave_one_out_needs_three_items():
    with pytest.raises(DataError, match="at least 3"):
        leave_one_out(make_data([[1, 2]]))


def test_histories_are_right_padded_and_truncated():
    data = make_data([[1, 2, 3, 4, 5], [6, 7, 8]])
    split = leave_one_out(data)
    assert histories(data, split.test_pos, 3).tolist() == [[2, 3, 4], [6, 7, 0]]
    assert histories(data, split.valid_pos, 10).tolist() == [[1, 2, 3] + [0] * 7, [6] + [0] * 9]


def test_training_windows_cover_every_target_once():
    seq = list(range(1, 13))  # 12 items: train part 1..10, targets 2..10
    data = make_data([seq, [20, 21, 22, 23]])
    split = leave_one_out(data)
    windows = training_windows(data, split, max_len=4)
    targets = windows[:, 1:][windows[:, 1:] > 0]
    assert sorted(targets.tolist()) == sorted(data.item_seq[split.train_pos].tolist())
    # the most recent window has full context; test/valid items never appear as targets or inputs
    as_lists = [w for w in windows.tolist()]
    assert [6, 7, 8, 9, 10] in as_lists
    assert [2, 3, 4, 5, 6] in as_lists
    assert [1, 2, 0, 0, 0] in as_lists
    assert [20, 21, 0, 0, 0] in as_lists
    assert not np.isin(windows, [11, 12, 22, 23]).any()


def test_ratio_split_is_chronological_per_user():
    data = make_data([list(range(1, 21))])
    split = ratio_split(data, (0.8, 0.1, 0.1))
    assert data.item_seq[split.test_pos].tolist() == [19, 20]
    assert data.item_seq[split.valid_pos].tolist() == [17, 18]
    assert data.item_seq[split.train_pos].tolist() == list(range(2, 17))


def test_seen_items_hold_all_history():
    data = make_data([[1, 2, 3, 4, 5]])
    offsets, items = seen_items(data, leave_one_out(data).test_pos)
    assert offsets.tolist() == [0, 4] and items.tolist() == [1, 2, 3, 4]


def test_popularity_buckets_from_training_counts():
    data = make_data([[1, 2, 3, 4, 5], [1, 2, 3, 6, 7], [1, 3, 6, 8, 9]])
    split = leave_one_out(data)
    counts = train_item_counts(data, split)
    assert counts[1] == 3 and counts[4] == 0 and counts[6] == 1
    thresholds = popularity_thresholds(counts, cold_max=1)
    bucket = popularity_buckets(counts, np.array([1, 4]), thresholds)
    assert thresholds["hot_min_train_count"] >= 2
    assert bucket.tolist() == [2, 0]


def test_keep_recent_training_leaves_targets_unchanged():
    from harness.data.split import keep_recent_training

    data = make_data([list(range(1, 13)), [20, 21, 22, 23]])
    split = leave_one_out(data)
    sparse = keep_recent_training(data, split, 0.2)
    sparse_split = leave_one_out(sparse)
    assert sparse.item_seq[sparse_split.test_pos].tolist() == [12, 23]
    assert sparse.item_seq[sparse_split.valid_pos].tolist() == [11, 22]
    # user 0 had 10 training items -> keeps the 2 most recent; user 1 had 2 -> keeps 1
    assert sparse.sequence(0).tolist() == [9, 10, 11, 12] and sparse.sequence(1).tolist() == [21, 22, 23]
    assert sparse.n_items == data.n_items


def test_training_sample_modes_by_hand():
    """User 0: items 1..12, train part 1..10 (targets 2..10); user 1: train part 20, 21 (target 21)."""
    from harness.data.split import RandomCrops, training_rows

    data = make_data([list(range(1, 13)), [20, 21, 22, 23]])
    split = leave_one_out(data)
    assert training_rows(data, split, 4, "windows").tolist() == training_windows(data, split, 4).tolist() == [
        [6, 7, 8, 9, 10], [2, 3, 4, 5, 6], [1, 2, 0, 0, 0], [20, 21, 0, 0, 0]]
    assert training_rows(data, split, 4, "last").tolist() == [[6, 7, 8, 9, 10], [20, 21, 0, 0, 0]]
    # windows ending every 2 targets until the oldest target (2) is covered: ends 10, 8, 6, 4
    assert training_rows(data, split, 4, "stride", stride=2).tolist() == [
        [6, 7, 8, 9, 10], [4, 5, 6, 7, 8], [2, 3, 4, 5, 6], [1, 2, 3, 4, 0], [20, 21, 0, 0, 0]]
    assert training_rows(data, split, 4, "stride", stride=4).tolist() == training_windows(data, split, 4).tolist()
    # one row per training target, ending at it, with up to 4 targets (RecBole's per-prefix samples)
    assert training_rows(data, split, 4, "prefix").tolist() == [
        [1, 2, 0, 0, 0], [1, 2, 3, 0, 0], [1, 2, 3, 4, 0], [1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7],
        [4, 5, 6, 7, 8], [5, 6, 7, 8, 9], [6, 7, 8, 9, 10], [20, 21, 0, 0, 0]]
    crops = RandomCrops(data, split, 4)
    seen = set()
    for seed in range(40):
        rows = crops(seed)
        assert rows.shape == (2, 5) and rows[1].tolist() == [20, 21, 0, 0, 0]
        first = rows[0, 0]
        assert rows[0].tolist() == list(range(first, first + 5))  # always full: 4 consecutive targets
        seen.add(int(first))
    assert seen == {1, 2, 3, 4, 5, 6} and crops(7).tolist() == crops(7).tolist()  # ends 5..10


def test_crop_training_resumes_with_the_same_crops(tmp_path, monkeypatch):
    """The trainer draws each epoch's crop seed from its checkpointed generator: killed during epoch 3 and
    resumed, a run gives the uninterrupted curves."""
    import torch

    from harness.data.split import RandomCrops
    from methods.backbones import build_backbone
    from methods.evaluate import EvalSet
    from methods.trainer import TrainConfig, fit, seed_everything

    data = make_data([list(range(1, 30)), list(range(5, 25)), list(range(2, 20))])
    split = leave_one_out(data)
    ev = EvalSet(torch.from_numpy(histories(data, split.valid_pos, 6)), torch.from_numpy(data.item_seq[split.valid_pos]))

    def run(checkpoint=None):
        seed_everything(0)
        model = build_backbone("sasrec", data.n_items, 6, dim=8, n_heads=1, inner_dim=16)
        return fit(model, RandomCrops(data, split, 6), ev, ev,
                   TrainConfig(epochs=4, patience=99, batch_size=2, progress=False), checkpoint=checkpoint)

    full = run()
    path = tmp_path / "c.pt"
    run_killed_in_validation(monkeypatch, lambda: run(path), call=3)
    resumed = run(path)
    strip = lambda r: [{k: v for k, v in c.items() if not k.endswith("seconds")} for c in r["curves"]]  # noqa: E731
    assert resumed["resumed_after_epoch"] == 2 and strip(resumed) == strip(full)


def test_history_exclusion_is_decided_from_the_training_data():
    """auto: excluded when no user repeats an item in training (MovieLens); included, with the count, when
    some do; an explicit value is kept. Repeats outside the training part do not count."""
    from harness.data.split import decide_history_exclusion

    once = make_data([[1, 2, 3, 4], [2, 3, 4, 5]])
    assert decide_history_exclusion("auto", once, leave_one_out(once)) == (
        True, "auto: no user repeats an item in the training data")
    repeats = make_data([[1, 2, 1, 4, 5], [2, 3, 4, 5], [3, 3, 4, 5]])
    assert decide_history_exclusion("auto", repeats, leave_one_out(repeats)) == (
        False, "auto: 2 of 3 users repeat an item in the training data")
    only_in_test = make_data([[1, 2, 3, 1], [2, 3, 4, 5]])  # the test target repeats the first item
    assert decide_history_exclusion("auto", only_in_test, leave_one_out(only_in_test))[0] is True
    assert decide_history_exclusion(False, once, leave_one_out(once)) == (False, "set explicitly")
