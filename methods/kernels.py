"""Faster CPU kernels (`--kernels fast`): the same model and loss, computed with less memory traffic and
cheaper random numbers. Measured on ML-1M at max length 200: results/speed/long-sequences-ml-1m*.md (the
evaluation side, the last block at the scored position only, lives in methods/backbones.py).

- `chunked_softmax_ce`: full-softmax cross-entropy whose gradients are computed chunk by chunk during the
  forward pass, so the [positions x items] logits never exist whole and each chunk's softmax stays in cache
  (the reference `F.cross_entropy` writes and re-reads them several times: log-softmax, its backward, the
  zero-filled NLL gradient). Same value and gradients up to float rounding.
- `fast_dropout`: inverted dropout whose keep mask comes from 16 random bits per element, four elements per
  draw of torch's int64 `random_` (the same seeded, checkpointed generator), instead of a Bernoulli draw per
  element, which is ~4x slower on CPU. The drop probability is rounded to a multiple of 1/65536.
- `attention`: with attention dropout in training, the softmax-dropout-matmul written out so the dropout is
  `fast_dropout` (SDPA falls back to the same math path with its own Bernoulli dropout there).

Both draw other random numbers than the reference kernels, so a `fast` trial is a different (equally valid)
run from its `reference` twin, not a bitwise copy: hence a setting of its own, recorded in every record.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

KERNELS = ("reference", "fast")
_FULL_RANGE = (-2**63, 2**63 - 1)  # random_(from, to) draws all 64 bits (up to one value) in this range


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0:
        return x
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(*_FULL_RANGE)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= round(p * 65536) - 32768
    return (x * keep.to(x.dtype)).mul_(1 / (1 - p))  # the scale as a Python float: exact in bf16 too


class Dropout(nn.Module):
    """nn.Dropout, or `fast_dropout` with `fast=True` (no parameters either way: state dicts are the same)."""

    def __init__(self, p: float, fast: bool = False):
        super().__init__()
        self.p, self.fast = p, fast

    def forward(self, x):
        return fast_dropout(x, self.p, self.training) if self.fast else F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, fast={self.fast}"


def attention(q, k, v, mask: torch.Tensor, dropout_p: float, fast: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) where `mask`, else -inf) v, with dropout on the weights (0 outside training).
    q, k, v: [B, H, L, d_head]; mask: bool, broadcastable to [B, H, L, L], True = attend."""
    if not fast or dropout_p == 0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = (q @ k.transpose(-2, -1)).mul_(1 / math.sqrt(q.shape[-1])).masked_fill_(~mask, float("-inf"))
    return fast_dropout(scores.softmax(dim=-1), dropout_p) @ v


def ce_chunk_rows(n_items: int) -> int:
    """Positions per chunk: about a million logits (4 MB in fp32), at least 16 rows."""
    return max(16, 2**20 // max(n_items, 1))


class _ChunkedSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states, items, targets, chunk, matmul_dtype, grad_enabled):
        need_states = grad_enabled and ctx.needs_input_grad[0]
        need_items = grad_enabled and ctx.needs_input_grad[1]
        grad_states = torch.empty_like(states) if need_states else None
        grad_items = torch.zeros_like(items) if need_items else None
        low = (lambda x: x.to(matmul_dtype)) if matmul_dtype is not None else (lambda x: x)
        items_mm = low(items)
        total = torch.zeros((), dtype=torch.float64, device=states.device)
        for lo in range(0, len(states), chunk):
            part, target = low(states[lo:lo + chunk]), targets[lo:lo + chunk]
            logits = part @ items_mm.T
            if matmul_dtype is not None:
                logits = logits.float()  # the softmax is taken in fp32 (or the inputs' wider dtype)
            rows = torch.arange(len(target), device=states.device)
            picked = logits[rows, target]
            top = logits.amax(dim=1, keepdim=True)
            probs = logits.sub_(top).exp_()  # in place: the chunk's logits become its softmax
            norm = probs.sum(dim=1, keepdim=True)
            total += (norm.log() + top).squeeze(1).sub(picked).sum(dtype=torch.float64)
            if grad_states is None and grad_items is None:
                continue
            probs.div_(norm)
            probs[rows, target] -= 1  # d loss_i / d logits_i = softmax_i - one_hot(target_i)
            probs = low(probs)
            if grad_states is not None:
                grad_states[lo:lo + chunk] = probs @ items_mm
            if grad_items is not None:
                grad_items += probs.T @ part
        ctx.save_for_backward(grad_states, grad_items)
        ctx.count = max(len(states), 1)
        return (total / ctx.count).to(torch.promote_types(states.dtype, torch.float32))

    @staticmethod
    @once_differentiable  # the gradients were computed in forward: no second derivatives
    def backward(ctx, grad):
        grad_states, grad_items = ctx.saved_tensors
        scale = grad / ctx.count
        return (grad_states * scale if grad_states is not None else None,
                grad_items * scale if grad_items is not None else None, None, None, None, None)


def chunked_softmax_ce(states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                       chunk: int | None = None) -> torch.Tensor:
    """Mean of -log softmax(states @ items.T)[target] over the rows: `F.cross_entropy(states @ items.T,
    targets)` without holding the logits. states [P, d], items [N, d], targets [P] in 0..N-1. Under autocast
    the matmuls run in its dtype (bf16) and the softmax in fp32, as autocast's own cross-entropy does."""
    if len(states) == 0:
        return F.cross_entropy(states @ items.T, targets)  # nan, as the reference
    device = states.device.type
    matmul_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    with torch.autocast(device, enabled=False):
        return _ChunkedSoftmaxCE.apply(states, items, targets, chunk or ce_chunk_rows(len(items)), matmul_dtype,
                                       torch.is_grad_enabled())
