"""Pooling of token states into one vector per item. Padding never contributes."""
from __future__ import annotations

import torch


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over positions where mask == 1. states [b, t, d], mask [b, t] -> [b, d]."""
    weights = mask.to(states.dtype).unsqueeze(-1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def last_token(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at the last position where mask == 1; correct for left and right padding."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values.clamp(min=0)
    return states[torch.arange(states.shape[0], device=states.device), last]


def pool_tokens(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "mean":
        return masked_mean(states, mask)
    if pooling == "last":
        return last_token(states, mask)
    if pooling == "cls":
        return states[:, 0]
    raise ValueError(f"unknown token pooling {pooling!r}")
