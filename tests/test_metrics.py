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
