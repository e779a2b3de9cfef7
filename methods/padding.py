"""Right padding (item id 0) that no model needs to compute on."""
from __future__ import annotations

import torch


def trim_padding(rows: torch.Tensor, keep: int = 0) -> torch.Tensor:
    """Right-padded rows cut to their longest real length plus `keep` columns (at most their width): no
    compute on columns that are padding in every row. Real positions see the same items at the same
    positions, so causal and bidirectional (padding-masked) models give the same outputs there."""
    width = int((rows > 0).sum(dim=1).max()) if len(rows) else 0
    return rows[:, :min(max(width + keep, 1), rows.shape[1])]
