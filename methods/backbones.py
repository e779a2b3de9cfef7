"""Sequential backbones behind one interface.

    embed(item_seq [B, L] right-padded) -> input embeddings [B, L, d]: the item-ID embedding, or, when a
        fusion module is installed (`input_fusion`), the fusion of the ID embedding with modality tables
    encode(item_seq) -> per-position states [B, L, d]
    score(states [..., d]) -> scores over all items [..., n_items + 1] (column 0 = padding)
    losses(windows [B, L + 1]) -> {"rec": full-softmax cross-entropy}
    predict(histories [B, L]) -> scores [B, n_items + 1] for the item after each history

Right padding means a position only ever sees real items before it under a causal mask, so no
attention row is fully masked (the left-padding NaN trap) and GRU states at real positions are exact.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kdsr_util.settings import declared, setting
from methods.kernels import KERNELS, Dropout, attention
from methods.losses import LossSettings, RecLoss


SCORE_WITH = ("id", "fused")  # id: scores use the ID embeddings (the reference); fused: the fused item vectors


class SequentialRecommender(nn.Module):
    """Base: item embedding table shared by input and output (scores = states . item embeddings)."""

    def __init__(self, n_items: int, dim: int, extra_tokens: int = 0, kernels: str = "reference"):
        super().__init__()
        if kernels not in KERNELS:
            raise ValueError(f"kernels {kernels!r}: choose from {', '.join(KERNELS)}")
        self.n_items = n_items
        self.dim = dim
        self.kernels = kernels  # methods/kernels.py: "fast" trains with chunked CE and cheaper dropout masks
        self.item_emb = nn.Embedding(n_items + 1 + extra_tokens, dim, padding_idx=0)
        self.rec_loss = RecLoss()  # full-softmax cross-entropy unless build_backbone passes another
        self.input_fusion: nn.Module | None = None  # fuses modality tables into the inputs (use_item_fusion)
        self.score_fused = False  # score against the fused item vectors instead of the ID embeddings

    def use_item_fusion(self, fusion: nn.Module | None, score_with: str = "id") -> None:
        """Called once by `build_backbone`, after this model's own weights are initialised."""
        if score_with not in SCORE_WITH:
            raise ValueError(f"score_with {score_with!r}: choose from {', '.join(SCORE_WITH)}")
        if score_with == "fused" and fusion is None:
            raise ValueError("score_with 'fused' needs modality tables (a method other than id)")
        self.input_fusion = fusion
        self.score_fused = score_with == "fused"

    def embed(self, item_seq: torch.Tensor) -> torch.Tensor:
        ids = self.item_emb(item_seq)
        return ids if self.input_fusion is None else self.input_fusion(item_seq, ids)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_items(self) -> torch.Tensor:
        """[n_items + 1, d] vectors the states are scored against (row 0 = padding)."""
        if self.score_fused and self.input_fusion is not None:
            ids = torch.arange(self.n_items + 1, device=self.item_emb.weight.device)[None]
            return self.input_fusion(ids, self.item_emb(ids))[0]
        return self.item_emb.weight[:self.n_items + 1]

    def score(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.output_items().T

    def losses(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Next-item CE at every real position of the windows, softmax over all items (padding excluded)."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        if self.rec_loss.settings.loss_positions == "last":  # each row's last real target only
            last = (targets > 0).sum(dim=1) - 1
            rows = torch.arange(len(windows), device=windows.device)[last >= 0]
            last = last[rows]
            return {"rec": self.rec_loss(self.states_at(inputs[rows], last), targets[rows, last], self.output_items())}
        states = self.encode(inputs)
        mask = targets > 0
        return {"rec": self.rec_loss(states[mask], targets[mask], self.output_items())}

    def states_at(self, item_seq: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """[B, d]: the state at one position `at` [B] of each row."""
        return self.encode(item_seq)[torch.arange(len(item_seq), device=item_seq.device), at]

    def last_state(self, item_seq: torch.Tensor) -> torch.Tensor:
        """State at each row's last real position (histories are right-padded)."""
        return self.states_at(item_seq, (item_seq > 0).sum(dim=1).clamp(min=1) - 1)

    def predict_states(self, item_seq: torch.Tensor) -> torch.Tensor:
        """[B, d] states whose dot products with output_items() are the scores of the next item."""
        return self.last_state(item_seq)

    def predict(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.score(self.predict_states(item_seq))


class TransformerRecommender(SequentialRecommender):
    """Shared by SASRec and BERT4Rec: learned positions, input LayerNorm + dropout, post-LN blocks."""

    def __init__(self, n_items: int, max_len: int, dim: int, n_layers: int, n_heads: int, inner_dim: int,
                 dropout: float, attn_dropout: float, extra_tokens: int = 0, kernels: str = "reference"):
        super().__init__(n_items, dim, extra_tokens, kernels)
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        self.max_len = max_len
        self.pos_emb = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim, eps=1e-12)
        fast = kernels == "fast"
        self.input_drop = Dropout(dropout, fast)
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, n_heads, inner_dim, dropout, attn_dropout, fast) for _ in range(n_layers)])
        self.apply(_init_normal)

    def attention_mask(self, item_seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, item_seq, at: torch.Tensor | None = None):
        """States [B, L, d]; with `at` (one position per row) only those rows' states [B, d]: the last block
        then computes its query, output and feed-forward at that position alone (keys and values still
        come from every position), about half of a two-block forward."""
        positions = torch.arange(item_seq.shape[1], device=item_seq.device)
        x = self.input_drop(self.input_norm(self.embed(item_seq) + self.pos_emb(positions)[None]))
        mask = self.attention_mask(item_seq)
        for index, block in enumerate(self.blocks):
            x = block(x, mask, at if index == len(self.blocks) - 1 else None)
        return x

    def states_at(self, item_seq, at):
        return super().states_at(item_seq, at) if self.kernels != "fast" else self.encode(item_seq, at=at)


class SASRec(TransformerRecommender):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), post-LN blocks as in RecBole."""

    def __init__(self, n_items: int, max_len: int, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_dim: int = 256, dropout: float = 0.2, attn_dropout: float = 0.2, kernels: str = "reference"):
        super().__init__(n_items, max_len, dim, n_layers, n_heads, inner_dim, dropout, attn_dropout,
                         kernels=kernels)

    def attention_mask(self, item_seq):
        length = item_seq.shape[1]
        return torch.ones(length, length, dtype=torch.bool, device=item_seq.device).tril()  # causal


class TransformerBlock(nn.Module):
    def __init__(self, dim, n_heads, inner_dim, dropout, attn_dropout, fast: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.fast = fast
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.drop1 = Dropout(dropout, fast)
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(dim, inner_dim), nn.GELU(), nn.Linear(inner_dim, dim), Dropout(dropout, fast))
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x, mask, at: torch.Tensor | None = None):
        """x [B, L, d] -> [B, L, d]; with `at` [B] positions, the outputs at those positions only, [B, d]."""
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if at is not None:
            rows = torch.arange(b, device=x.device)
            q, x = q[rows, :, at][:, :, None], x[rows, at][:, None]  # [B, H, 1, d_head], [B, 1, d]
            mask = mask.expand(b, 1, l, l)[rows, :, at][:, :, None]  # [B, 1, 1, L]
            l = 1
        attn = attention(q, k, v, mask, self.attn_dropout if self.training else 0.0, self.fast)
        x = self.norm1(x + self.drop1(self.out(attn.transpose(1, 2).reshape(b, l, d))))
        x = self.norm2(x + self.ff(x))
        return x if at is None else x[:, 0]


class GRU4Rec(SequentialRecommender):
    """GRU4Rec (Hidasi et al. 2016) in its next-item CE form: embedding dropout, GRU, projection."""

    def __init__(self, n_items: int, dim: int = 64, hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.3, kernels: str = "reference"):
        super().__init__(n_items, dim, kernels=kernels)
        self.emb_drop = Dropout(dropout, kernels == "fast")
        self.gru = nn.GRU(dim, hidden, n_layers, batch_first=True)
        self.proj = nn.Linear(hidden, dim)
        nn.init.xavier_normal_(self.item_emb.weight)
        for name, param in self.gru.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(param)

    def encode(self, item_seq):
        states, _ = self.gru(self.emb_drop(self.embed(item_seq)))
        return self.proj(states)


class BERT4Rec(TransformerRecommender):
    """BERT4Rec (Sun et al. 2019): bidirectional Transformer trained with the cloze task.

    Training masks each item with probability `mask_prob` (at least one per sequence) and predicts
    the masked items over all items; prediction appends a [mask] token after the history.
    """

    def __init__(self, n_items: int, max_len: int, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_dim: int = 256, dropout: float = 0.2, attn_dropout: float = 0.2, mask_prob: float = 0.2,
                 kernels: str = "reference"):
        super().__init__(n_items, max_len, dim, n_layers, n_heads, inner_dim, dropout, attn_dropout, extra_tokens=1,
                         kernels=kernels)
        self.mask_token = n_items + 1
        self.mask_prob = mask_prob

    def attention_mask(self, item_seq):
        # bidirectional: every position sees every real item (and itself, so padded rows are never empty)
        eye = torch.eye(item_seq.shape[1], dtype=torch.bool, device=item_seq.device)
        return (item_seq > 0)[:, None, None, :] | eye

    def losses(self, windows):
        seq = windows[:, 1:]  # the window's items (row[0] only gives context to next-item models)
        real = seq > 0
        masked = (torch.rand(seq.shape, device=seq.device) < self.mask_prob) & real
        # at least one masked item per sequence: the last real one where none was drawn
        last = real.sum(dim=1).clamp(min=1) - 1
        none = ~masked.any(dim=1)
        masked[torch.arange(len(seq), device=seq.device)[none], last[none]] = True
        states = self.encode(torch.where(masked, torch.full_like(seq, self.mask_token), seq))
        return {"rec": self.rec_loss(states[masked], seq[masked], self.output_items())}

    def predict_states(self, item_seq):
        lengths = (item_seq > 0).sum(dim=1)
        full = lengths >= item_seq.shape[1]
        seq = item_seq.clone()
        seq[full] = torch.roll(seq[full], -1, dims=1)  # drop the oldest item to make room for [mask]
        position = torch.where(full, lengths - 1, lengths)
        rows = torch.arange(len(seq), device=seq.device)
        seq[rows, position] = self.mask_token
        return self.states_at(seq, position)


class MostPopular(nn.Module):
    """Scores every item by its training popularity, the same for every user. No trainable parameters."""

    def __init__(self, item_counts: torch.Tensor):
        super().__init__()
        self.register_buffer("counts", item_counts.float())
        self.n_items = len(item_counts) - 1

    def predict(self, item_seq):
        return self.counts[None].expand(len(item_seq), -1)


def _init_normal(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@dataclass
class BackboneSettings:
    """Every backbone setting of a trial; each backbone reads the ones its `BackboneSpec` lists."""

    dim: int = setting(64, interval="[1, inf)", help="item embedding and model width")
    n_layers: int = setting(2, interval="[1, inf)", help="Transformer blocks")
    n_heads: int = setting(2, interval="[1, inf)", help="attention heads (must divide dim)")
    inner_dim: int = setting(256, interval="[1, inf)", help="feed-forward width of a block")
    dropout: float = setting(0.2, interval="[0, 1)", help="Transformer hidden dropout")
    attn_dropout: float = setting(0.2, interval="[0, 1)", help="attention dropout")
    gru_hidden: int = setting(128, interval="[1, inf)", help="GRU4Rec hidden size")
    gru_dropout: float = setting(0.3, interval="[0, 1)", help="GRU4Rec embedding dropout")
    mask_prob: float = setting(0.2, interval="(0, 1]", help="BERT4Rec cloze masking probability")
    kernels: str = setting("reference", choices=KERNELS,
                           help="fast: chunked full-softmax CE and cheaper dropout masks (methods/kernels.py; "
                                "same model, other random draws, ~1.5x faster per epoch on CPU); reference: "
                                "every record before 2026-12-03")


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone class and the settings it takes: flat setting name -> constructor argument."""

    cls: type
    reads: dict[str, str] = field(default_factory=dict)
    takes_max_len: bool = True
    trained: bool = True  # has a training loss (methods.losses settings apply)
    next_item: bool = True  # predicts the next item at every position (loss_positions last applies)

    def kwargs(self, settings: dict) -> dict:
        return {argument: settings[name] for name, argument in self.reads.items()}

    def problems(self, settings: dict) -> list[str]:
        """Constraints between settings, checked before anything runs."""
        if "n_heads" in self.reads and settings["dim"] % settings["n_heads"]:
            return [f"dim {settings['dim']} must be divisible by n_heads {settings['n_heads']}"]
        return []


def _same(*names: str) -> dict[str, str]:
    return {name: name for name in names}


_TRANSFORMER = _same("dim", "n_layers", "n_heads", "inner_dim", "dropout", "attn_dropout", "kernels")
BACKBONES = {
    "sasrec": BackboneSpec(SASRec, _TRANSFORMER),
    "gru4rec": BackboneSpec(GRU4Rec, {"dim": "dim", "gru_hidden": "hidden", "gru_dropout": "dropout",
                                      "kernels": "kernels"},
                            takes_max_len=False),
    "bert4rec": BackboneSpec(BERT4Rec, {**_TRANSFORMER, "mask_prob": "mask_prob"}, next_item=False),
    "pop": BackboneSpec(MostPopular, takes_max_len=False, trained=False, next_item=False),
}
BACKBONE_SETTINGS = tuple(declared(BackboneSettings, "backbone"))


def build_backbone(name: str, n_items: int, max_len: int, item_counts: torch.Tensor | None = None,
                   settings: dict | None = None, item_fusion=None, score_with: str = "id",
                   loss: LossSettings | None = None, **hparams) -> nn.Module:
    """The backbone `name`, taking the settings its spec lists from `settings` (flat names, defaults for the
    rest) or constructor arguments directly as `hparams`. `item_fusion(dim)` builds a module that fuses
    modality tables into the input embeddings, after the backbone's own weights are initialised (so the
    backbone's initialisation is the same with or without it); `score_with="fused"` scores against the
    fused item vectors instead of the ID embeddings; `loss`: the recommendation loss (methods.losses)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    if name == "pop":
        if item_counts is None:
            raise ValueError("the pop backbone needs training item counts")
        if item_fusion is not None:
            raise ValueError("the pop backbone has no input embeddings to fuse modalities into: use method id")
        return MostPopular(item_counts)
    if settings is not None:
        values = {**asdict(BackboneSettings()), **settings}
        hparams = {**spec.kwargs(values), **hparams}
    model = spec.cls(n_items, max_len, **hparams) if spec.takes_max_len else spec.cls(n_items, **hparams)
    model.rec_loss = RecLoss(loss, item_counts, fused=model.kernels == "fast")
    if item_fusion is not None or score_with != "id":
        model.use_item_fusion(item_fusion(model.dim) if item_fusion is not None else None, score_with)
    return model


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BACKBONES", "BACKBONE_SETTINGS", "BERT4Rec", "BackboneSettings", "BackboneSpec", "GRU4Rec", "MostPopular",
           "SASRec", "SequentialRecommender", "build_backbone", "count_trainable"]
