"""Full-ranking metrics. Column 0 of every score matrix is padding and is never ranked.

Rank of the target = 1 + #items scored strictly higher + #other items scored equal: ties count against
the model, so a constant scorer gets the worst rank. Non-finite scores raise: with `1 + #higher` a NaN
row would silently rank its target first.
"""
from __future__ import annotations

import math

import torch

DEFAULT_KS = (5, 10, 20)
METRIC_NAMES = ("HR", "NDCG", "MRR")


class NonFiniteScoresError(FloatingPointError):
    pass


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each target among items 1..n (long [batch]).

    `exclude`: optional bool [batch, n_items + 1], True for items to drop from the ranking (e.g. the
    user's history); the target itself is never excluded.
    """
    if scores.dim() != 2 or targets.dim() != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores must be [batch, n_items + 1] and targets [batch]; got {tuple(scores.shape)} "
                         f"and {tuple(targets.shape)}")
    if ((targets < 1) | (targets >= scores.shape[1])).any():
        raise ValueError("targets must be item ids in 1..n_items (0 is padding)")
    scores = scores.float()
    if not torch.isfinite(scores[:, 1:]).all():
        bad = (~torch.isfinite(scores[:, 1:])).any(dim=1).nonzero().flatten()[:5].tolist()
        raise NonFiniteScoresError(f"non-finite scores (NaN or inf) in batch rows {bad}: refusing to rank")
    target_score = scores.gather(1, targets[:, None])
    items = scores[:, 1:]
    higher = items > target_score
    equal = items == target_score
    if exclude is not None:
        keep = ~exclude[:, 1:].clone()
        keep.scatter_(1, (targets - 1)[:, None], True)
        higher &= keep
        equal &= keep
    # the target is equal to itself: do not count it
    return 1 + higher.sum(dim=1) + equal.sum(dim=1) - 1


def metrics_from_ranks(ranks: torch.Tensor, ks=DEFAULT_KS) -> dict[str, float]:
    """Mean HR@k, NDCG@k (one relevant item: 1/log2(rank+1)), MRR@k over the ranks."""
    ranks = ranks.double()
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = hit.double().mean().item()
        out[f"NDCG@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0).mean().item()
        out[f"MRR@{k}"] = torch.where(hit, 1.0 / ranks, 0.0).mean().item()
    return out


def rank_metrics(scores: torch.Tensor, targets: torch.Tensor, ks=DEFAULT_KS) -> dict[str, float]:
    """Metrics averaged over the batch, e.g. {"HR@10": ..., "NDCG@10": ..., "MRR@10": ...}."""
    return metrics_from_ranks(target_ranks(scores, targets), ks)


def ndcg_single(rank: int) -> float:
    """Reference value of NDCG for one relevant item at 1-based `rank` (for tests and docs)."""
    return 1.0 / math.log2(rank + 1)
