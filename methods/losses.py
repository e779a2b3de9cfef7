"""The recommendation loss over a batch's target positions: full-softmax cross-entropy, sampled softmax
with a logQ correction, or gBCE (gSASRec, Petrov & Macdonald 2023).

Sampled losses score each position against its target and `n_negatives` items shared by the batch, so a
step needs [positions x n_negatives] logits instead of [positions x n_items]: on a 1M-item catalogue that
is what fits in memory. Negatives come from the global torch RNG (seeded and checkpointed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdsr_util.settings import setting
from methods.kernels import chunked_softmax_ce

LOSSES = ("ce", "sampled", "gbce")


@dataclass
class LossSettings:
    loss: str = setting("ce", choices=LOSSES,
                        help="ce: softmax over every item; sampled: softmax over the target and sampled "
                             "negatives (logQ-corrected); gbce: gSASRec's generalised binary cross-entropy")
    n_negatives: int = setting(256, interval="[1, inf)", when=("loss", ("sampled", "gbce")),
                               help="negatives per step, shared by the batch's positions")
    negatives: str = setting("uniform", choices=("uniform", "popularity"), when=("loss", ("sampled", "gbce")),
                             help="negative distribution: uniform over items, or training counts + 1")
    loss_positions: str = setting("all", choices=("all", "last"),
                                  help="all: a loss at every real target of a training row; last: at each row's "
                                       "last real target only (with train_samples prefix: RecBole's one sample "
                                       "per training prefix); next-item backbones only")
    gbce_t: float = setting(0.75, interval="[0, 1]", when=("loss", ("gbce",)),
                            help="gBCE calibration t (0: plain BCE, 1: calibrated to the full softmax)")


class RecLoss:
    """loss(states [P, d], targets [P] item ids, items [n_items + 1, d] output vectors) -> scalar."""

    def __init__(self, settings: LossSettings | None = None, item_counts: torch.Tensor | None = None,
                 fused: bool = False):
        self.settings = settings or LossSettings()
        self.fused = fused  # ce without holding the logits (methods.kernels)
        if self.settings.loss not in LOSSES:
            raise ValueError(f"loss {self.settings.loss!r}: choose from {', '.join(LOSSES)}")
        self.item_counts = item_counts
        if self.settings.negatives == "popularity" and self.settings.loss != "ce" and item_counts is None:
            raise ValueError("popularity negatives need the training item counts")

    def __call__(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.settings.loss == "ce":
            if self.fused:
                return chunked_softmax_ce(states, items[1:], targets - 1)
            return F.cross_entropy((states @ items[1:].T).float(), targets - 1)
        n_items = items.shape[0] - 1
        negatives, log_q = self.sample(n_items, states.device)
        positive = (states * items[targets]).sum(-1).float()  # [P]
        negative = (states @ items[negatives].T).float()  # [P, n]
        hit = negatives[None, :] == targets[:, None]  # a sampled negative that is the position's target
        if self.settings.loss == "sampled":
            logits = torch.cat([(positive - log_q[targets])[:, None], negative - log_q[negatives][None]], dim=1)
            logits[:, 1:] = logits[:, 1:].masked_fill(hit, torch.finfo(logits.dtype).min)
            return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=states.device))
        alpha = len(negatives) / max(n_items - 1, 1)
        t = self.settings.gbce_t
        beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
        negative_terms = F.softplus(negative).masked_fill(hit, 0).sum(-1)  # -log(1 - sigmoid(s))
        # -log(sigmoid(s)^beta) for the target; averaged over the 1 + n logits per position, as gSASRec's BCE
        return ((beta * F.softplus(-positive) + negative_terms) / (1 + len(negatives))).mean()

    def sample(self, n_items: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """`n_negatives` item ids in 1..n_items and log q of every item id (index 0 unused)."""
        n = self.settings.n_negatives
        if self.settings.negatives == "uniform":
            ids = torch.randint(1, n_items + 1, (n,), device=device)
            return ids, torch.full((n_items + 1,), -float(torch.log(torch.tensor(float(n_items)))), device=device)
        weights = self.item_counts.float().to(device)[: n_items + 1] + 1
        weights[0] = 0
        q = weights / weights.sum()
        ids = torch.multinomial(q, n, replacement=True)
        return ids, torch.log(q.clamp(min=1e-30))
