"""Streaming full-ranking evaluation: one batch of scores in memory at a time, always in fp32."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.metrics import DEFAULT_KS, NonFiniteScoresError, metrics_from_ranks, target_ranks
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


def _seen_pairs(data: EvalSet, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row in `index`, item) for every history item of the rows `index` (CSR seen_offsets / seen_items)."""
    starts, ends = data.seen_offsets[index], data.seen_offsets[index + 1]
    counts = ends - starts
    rows = torch.repeat_interleave(torch.arange(len(index)), counts)
    first = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)
    return rows, data.seen_items[first + torch.arange(int(counts.sum()))]


# catalogues larger than this are scored in chunks of this many items (ranks counted chunk by chunk), so a
# batch never holds a users x n_items score matrix; smaller ones are scored in one matrix (the same ranks)
ITEM_CHUNK = 65_536


@torch.no_grad()
def chunked_ranks(states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, seen: tuple | None,
                  chunk: int = ITEM_CHUNK) -> torch.Tensor:
    """Ranks of the targets among items 1..n (ties against the model, `seen` items excluded) from states
    [B, d] and output item vectors [n + 1, d], counting higher and equal scores one item chunk at a time.
    Two passes: the first takes each target's score from the same chunk product the second compares it
    with, so a tie is a tie exactly as in one full score matrix."""
    bounds = [(lo, min(lo + chunk, items.shape[0])) for lo in range(1, items.shape[0], chunk)]
    target_score = torch.empty(len(states), 1, device=states.device)
    for lo, hi in bounds:
        inside = ((targets >= lo) & (targets < hi)).nonzero().flatten()
        if len(inside):
            scores = states.float() @ items[lo:hi].float().T
            target_score[inside, 0] = scores[inside, targets[inside] - lo]
    ahead = torch.zeros(len(states), dtype=torch.long, device=states.device)
    rows_seen, items_seen = seen if seen is not None else (None, None)
    for lo, hi in bounds:
        scores = states.float() @ items[lo:hi].float().T
        if not torch.isfinite(scores).all():
            raise NonFiniteScoresError(f"non-finite scores among items {lo}..{hi - 1}: refusing to rank")
        counted = (scores > target_score) | (scores == target_score)
        inside = (targets >= lo) & (targets < hi)  # the target never counts against itself
        counted[inside.nonzero().flatten(), targets[inside] - lo] = False
        if rows_seen is not None:
            in_chunk = (items_seen >= lo) & (items_seen < hi)
            counted[rows_seen[in_chunk], items_seen[in_chunk] - lo] = False
        ahead += counted.sum(dim=1)
    return 1 + ahead


@torch.no_grad()
def evaluate(model, data: EvalSet, ks=DEFAULT_KS, batch_size: int = 512, device="cpu",
             exclude_history: bool = False, item_chunk: int = ITEM_CHUNK, trim: bool = False) -> dict:
    """-> {"overall": {metric: value, "n": count}, "<group name>": {...}, ...}. Models with more than
    `item_chunk` items (and predict_states / output_items) are ranked chunk by chunk. Users are batched in
    order of history length (exact: ranks are written back per user); `trim` also cuts each batch to its
    longest history, which is faster but changes attention scores in the last bits."""
    if exclude_history and data.seen_offsets is None:
        raise ValueError("exclude_history needs seen_offsets/seen_items in the EvalSet")
    was_training = model.training
    model.eval()
    # rows in order of history length, so that with `trim` each batch is cut to its own longest history
    order = torch.argsort((data.histories > 0).sum(dim=1), stable=True)
    ranks = torch.zeros(len(data), dtype=torch.long)
    # the output item vectors once per evaluation (fused scoring computes them from the modality tables)
    items = model.output_items() if hasattr(model, "predict_states") else None
    chunked = items is not None and items.shape[0] - 1 > item_chunk
    for index in order.split(batch_size):
        # one spare column: BERT4Rec appends its [mask] token after the longest history
        history = data.histories[index]
        history = (trim_padding(history, keep=1) if trim else history).to(device)
        targets = data.targets[index].to(device)
        seen = _seen_pairs(data, index) if exclude_history else None
        if chunked:
            if seen is not None:  # the target is never excluded
                keep = seen[1] != targets.cpu()[seen[0]]
                seen = (seen[0][keep].to(device), seen[1][keep].to(device))
            ranks[index] = chunked_ranks(model.predict_states(history), items, targets, seen,
                                         item_chunk).cpu()
            continue
        scores = model.predict(history).float()
        exclude = None
        if seen is not None:
            exclude = torch.zeros(scores.shape, dtype=torch.bool)
            exclude[seen] = True
            exclude = exclude.to(device)
        ranks[index] = target_ranks(scores, targets, exclude).cpu()
    model.train(was_training)
    result = {"overall": {**metrics_from_ranks(ranks, ks), "n": len(ranks)}}
    if data.groups is not None:
        for index, name in enumerate(data.group_names):
            members = ranks[data.groups == index]
            result[name] = {**metrics_from_ranks(members, ks), "n": len(members)} if len(members) else {"n": 0}
    return result
