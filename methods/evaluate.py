"""Streaming full-ranking evaluation: one batch of scores in memory at a time, always in fp32."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.metrics import DEFAULT_KS, metrics_from_ranks, target_ranks
from methods.padding import trim_padding


@dataclass
class EvalSet:
    histories: torch.Tensor  # long [n, L], right-padded
    targets: torch.Tensor  # long [n]
    seen_offsets: torch.Tensor | None = None  # long [n + 1]: CSR of all items before each target
    seen_items: torch.Tensor | None = None  # long [nnz]
    groups: torch.Tensor | None = None  # long [n]: bucket index of each target (e.g. item popularity)
    group_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.targets)


def _history_mask(data: EvalSet, lo: int, hi: int, n_columns: int, device) -> torch.Tensor:
    offsets = data.seen_offsets[lo:hi + 1]
    items = data.seen_items[offsets[0]:offsets[-1]]
    rows = torch.repeat_interleave(torch.arange(hi - lo), offsets.diff())
    mask = torch.zeros(hi - lo, n_columns, dtype=torch.bool)
    mask[rows, items] = True
    return mask.to(device)


@torch.no_grad()
def evaluate(model, data: EvalSet, ks=DEFAULT_KS, batch_size: int = 512, device="cpu",
             exclude_history: bool = False) -> dict:
    """-> {"overall": {metric: value, "n": count}, "<group name>": {...}, ...}."""
    if exclude_history and data.seen_offsets is None:
        raise ValueError("exclude_history needs seen_offsets/seen_items in the EvalSet")
    was_training = model.training
    model.eval()
    ranks = []
    for lo in range(0, len(data), batch_size):
        hi = min(lo + batch_size, len(data))
        # one spare column: BERT4Rec appends its [mask] token after the longest history
        scores = model.predict(trim_padding(data.histories[lo:hi], keep=1).to(device)).float()
        exclude = _history_mask(data, lo, hi, scores.shape[1], device) if exclude_history else None
        ranks.append(target_ranks(scores, data.targets[lo:hi].to(device), exclude).cpu())
    model.train(was_training)
    ranks = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)
    result = {"overall": {**metrics_from_ranks(ranks, ks), "n": len(ranks)}}
    if data.groups is not None:
        for index, name in enumerate(data.group_names):
            members = ranks[data.groups == index]
            result[name] = {**metrics_from_ranks(members, ks), "n": len(members)} if len(members) else {"n": 0}
    return result
