"""Sequential backbones behind one interface.

    encode(item_seq [B, L] right-padded, extra [B, L, d] | None) -> per-position states [B, L, d]
    score(states [..., d]) -> scores over all items [..., n_items + 1] (column 0 = padding)

Right padding means a position only ever sees real items before it under a causal mask, so no
attention row is fully masked (the left-padding NaN trap) and GRU states at real positions are exact.
`extra` is an optional per-position embedding summed into the input (modality fusion comes later).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


class SequentialRecommender(nn.Module):
    """Base: item embedding table shared by input and output (scores = states . item embeddings)."""

    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.n_items = n_items
        self.dim = dim
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)

    def encode(self, item_seq: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.item_emb.weight.T

    def last_state(self, item_seq: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """State at each row's last real position (histories are right-padded)."""
        states = self.encode(item_seq, extra)
        last = (item_seq > 0).sum(dim=1).clamp(min=1) - 1
        return states[torch.arange(len(item_seq), device=item_seq.device), last]

    def predict(self, item_seq: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.last_state(item_seq, extra))


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), post-LN blocks as in RecBole."""

    def __init__(self, n_items: int, max_len: int, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_dim: int = 256, dropout: float = 0.2, attn_dropout: float = 0.2):
        super().__init__(n_items, dim)
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        self.pos_emb = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim, eps=1e-12)
        self.input_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, n_heads, inner_dim, dropout, attn_dropout) for _ in range(n_layers)])
        self.apply(_init_normal)

    def encode(self, item_seq, extra=None):
        length = item_seq.shape[1]
        positions = torch.arange(length, device=item_seq.device)
        x = self.item_emb(item_seq) + self.pos_emb(positions)[None]
        if extra is not None:
            x = x + extra
        x = self.input_drop(self.input_norm(x))
        causal = torch.ones(length, length, dtype=torch.bool, device=item_seq.device).tril()
        for block in self.blocks:
            x = block(x, causal)
        return x


class TransformerBlock(nn.Module):
    def __init__(self, dim, n_heads, inner_dim, dropout, attn_dropout):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU(), nn.Linear(inner_dim, dim), nn.Dropout(dropout))
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x, mask):
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              dropout_p=self.attn_dropout if self.training else 0.0)
        x = self.norm1(x + self.drop1(self.out(attn.transpose(1, 2).reshape(b, l, d))))
        return self.norm2(x + self.ff(x))


class GRU4Rec(SequentialRecommender):
    """GRU4Rec (Hidasi et al. 2016) in its next-item CE form: embedding dropout, GRU, projection."""

    def __init__(self, n_items: int, dim: int = 64, hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.3):
        super().__init__(n_items, dim)
        self.emb_drop = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, n_layers, batch_first=True)
        self.proj = nn.Linear(hidden, dim)
        nn.init.xavier_normal_(self.item_emb.weight)
        for name, param in self.gru.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(param)

    def encode(self, item_seq, extra=None):
        x = self.item_emb(item_seq)
        if extra is not None:
            x = x + extra
        states, _ = self.gru(self.emb_drop(x))
        return self.proj(states)


class MostPopular(nn.Module):
    """Scores every item by its training popularity, the same for every user. No trainable parameters."""

    def __init__(self, item_counts: torch.Tensor):
        super().__init__()
        self.register_buffer("counts", item_counts.float())
        self.n_items = len(item_counts) - 1

    def predict(self, item_seq, extra=None):
        return self.counts[None].expand(len(item_seq), -1)


def _init_normal(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


BACKBONES = ("sasrec", "gru4rec", "pop")


def build_backbone(name: str, n_items: int, max_len: int, item_counts: torch.Tensor | None = None,
                   **hparams) -> nn.Module:
    if name == "sasrec":
        return SASRec(n_items, max_len, **hparams)
    if name == "gru4rec":
        return GRU4Rec(n_items, **hparams)
    if name == "pop":
        if item_counts is None:
            raise ValueError("the pop backbone needs training item counts")
        return MostPopular(item_counts)
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BACKBONES", "GRU4Rec", "MostPopular", "SASRec", "SequentialRecommender", "build_backbone",
           "count_trainable"]
