import math

import pytest
import torch

from methods.metrics import NonFiniteScoresError, metrics_from_ranks, rank_metrics, target_ranks


def test_rank_is_one_plus_higher_items():
    # items 1..4 (column 0 = padding, scored huge to prove it is never ranked)
    scores = torch.tensor([[99.0, 0.1, 0.9, 0.5, 0.3]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [1]
    assert target_ranks(scores, torch.tensor([3])).tolist() == [2]
    assert target_ranks(scores, torch.tensor([1])).tolist() == [4]


def test_ties_count_against_the_model():
    constant = torch.zeros(2, 6)
    # a constant scorer gets the worst rank (5 items -> rank 5) for any target
    assert target_ranks(constant, torch.tensor([1, 5])).tolist() == [5, 5]
    scores = torch.tensor([[0.0, 1.0, 2.0, 2.0, 2.0, 0.5]])
    # target 3 ties with items 2 and 4: two others equal -> rank 3
    assert target_ranks(scores, torch.tensor([3])).tolist() == [3]


def test_hand_computed_metrics():
    # ranks 1, 3, 12 for three users
    scores = torch.tensor([
        [0, 5.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # target 1 best -> rank 1
        [0, 1.0, 3, 2, 9, 1, 1, 1, 1, 1, 1, 1, 1],  # target 3 (2): items 2 (3), 4 (9) higher -> rank 3
        [0, 0.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # target 1 (0) below the 11 others -> rank 12
    ])
    targets = torch.tensor([1, 3, 1])
    assert target_ranks(scores, targets).tolist() == [1, 3, 12]
    m = rank_metrics(scores, targets, ks=(1, 5, 10))
    assert m["HR@1"] == pytest.approx(1 / 3)
    assert m["HR@5"] == pytest.approx(2 / 3)
    assert m["HR@10"] == pytest.approx(2 / 3)
    assert m["NDCG@5"] == pytest.approx((1.0 + 1 / math.log2(4)) / 3)  # = (1 + 0.5) / 3
    assert m["NDCG@5"] == pytest.approx(0.5)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["MRR@1"] == pytest.approx(1 / 3)


def test_ndcg_uses_single_relevant_item_ideal_dcg():
    # the reference code divided by the ideal DCG of k relevant items; ours is 1/log2(rank+1)
    m = metrics_from_ranks(torch.tensor([2]), ks=(5,))
    assert m["NDCG@5"] == pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_raise(bad):
    scores = torch.tensor([[0.0, 0.2, bad, 0.1]])
    with pytest.raises(NonFiniteScoresError):
        target_ranks(scores, torch.tensor([1]))


def test_nan_in_padding_column_is_ignored():
    scores = torch.tensor([[float("nan"), 0.2, 0.1]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [1]


def test_history_exclusion_removes_items_but_never_the_target():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.1]])
    exclude = torch.tensor([[False, True, False, True, False]])
    assert target_ranks(scores, torch.tensor([3]), exclude).tolist() == [2]  # item 1 excluded, 2 remains
    # the target itself in the exclusion set still gets ranked
    assert target_ranks(scores, torch.tensor([1]), exclude).tolist() == [1]


def test_padding_target_rejected():
    with pytest.raises(ValueError):
        target_ranks(torch.zeros(1, 3), torch.tensor([0]))


def test_chunked_ranks_equal_full_ranks_with_ties_and_history():
    import torch

    from methods.evaluate import chunked_ranks

    torch.manual_seed(0)
    states = torch.randn(6, 4)
    items = torch.randn(23, 4)
    items[5] = items[3]  # an exact tie with item 3
    targets = torch.tensor([3, 5, 1, 22, 7, 3])
    scores = states @ items.T
    rows, seen = torch.tensor([0, 0, 1, 4]), torch.tensor([9, 10, 3, 22])
    exclude = torch.zeros(6, 23, dtype=torch.bool)
    exclude[rows, seen] = True
    for chunk in (1, 4, 7, 100):
        assert chunked_ranks(states, items, targets, None, chunk).tolist() == target_ranks(scores, targets).tolist()
        assert (chunked_ranks(states, items, targets, (rows, seen), chunk).tolist()
                == target_ranks(scores, targets, exclude).tolist())


def test_evaluation_in_item_chunks_gives_the_same_metrics():
    import torch

    from harness.data.split import histories, leave_one_out, seen_items
    from methods.backbones import build_backbone
    from methods.evaluate import EvalSet, evaluate
    from test_trainer import toy_problem

    data, _, _, _ = toy_problem()
    split = leave_one_out(data)
    offsets, seen = seen_items(data, split.test_pos)
    ev = EvalSet(torch.from_numpy(histories(data, split.test_pos, 8)), torch.from_numpy(data.item_seq[split.test_pos]),
                 torch.from_numpy(offsets), torch.from_numpy(seen))
    for name in ("sasrec", "bert4rec", "gru4rec"):
        torch.manual_seed(0)
        model = build_backbone(name, data.n_items, 8, dim=16)
        for exclude in (False, True):
            full = evaluate(model, ev, exclude_history=exclude, batch_size=16)
            assert evaluate(model, ev, exclude_history=exclude, batch_size=16, item_chunk=7) == full, (name, exclude)
