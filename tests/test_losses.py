"""Recommendation losses against hand-computed values, and training with sampled negatives."""
import math

import pytest
import torch
import torch.nn.functional as F

from methods.backbones import build_backbone
from methods.losses import LossSettings, RecLoss
from methods.trainer import TrainConfig, fit, seed_everything
from test_trainer import toy_problem


def fixed(loss: RecLoss, ids, log_q):
    loss.sample = lambda n_items, device: (torch.tensor(ids), torch.tensor(log_q))
    return loss


STATES = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
ITEMS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])  # row 0 = padding
TARGETS = torch.tensor([1, 3])


def test_full_softmax_is_cross_entropy_over_every_item():
    logits = STATES @ ITEMS[1:].T
    assert torch.isclose(RecLoss()(STATES, TARGETS, ITEMS), F.cross_entropy(logits, TARGETS - 1))


def test_sampled_softmax_with_logq_correction_and_accidental_hits_removed():
    log_q = [0.0, math.log(0.1), math.log(0.2), math.log(0.3), math.log(0.4)]
    loss = fixed(RecLoss(LossSettings(loss="sampled", n_negatives=2, negatives="popularity"),
                         torch.ones(5)), [2, 3], log_q)
    value = loss(STATES, TARGETS, ITEMS)
    # position 0: target 1 (score 1), negatives 2 (score 0) and 3 (score 1)
    row0 = torch.tensor([1 - log_q[1], 0 - log_q[2], 1 - log_q[3]])
    # position 1: target 3 (score 2); negative 3 is its own target (removed), negative 2 (score 2)
    row1 = torch.tensor([2 - log_q[3], 2 - log_q[2]])
    expected = (-torch.log_softmax(row0, 0)[0] - torch.log_softmax(row1, 0)[0]) / 2
    assert torch.isclose(value, expected)


@pytest.mark.parametrize("t", [0.0, 1.0])
def test_gbce_by_hand(t):
    n_items, ids = 4, [2, 4]
    loss = fixed(RecLoss(LossSettings(loss="gbce", n_negatives=2, gbce_t=t)), ids, [0.0] * 5)
    alpha = 2 / (n_items - 1)
    beta = 1.0 if t == 0 else alpha  # t = 0: plain BCE; t = 1: beta = alpha
    sig = torch.sigmoid
    # position 0: target 1 score 1; negatives 2 (0), 4 (-1); position 1: target 3 score 2; negatives 2 (2), 4 (0)
    term0 = -beta * torch.log(sig(torch.tensor(1.0))) - torch.log(1 - sig(torch.tensor(0.0))) \
        - torch.log(1 - sig(torch.tensor(-1.0)))
    term1 = -beta * torch.log(sig(torch.tensor(2.0))) - torch.log(1 - sig(torch.tensor(2.0))) \
        - torch.log(1 - sig(torch.tensor(0.0)))
    assert torch.isclose(loss(STATES, TARGETS, ITEMS), (term0 + term1) / 2 / 3)  # mean over 1 + 2 logits


@pytest.mark.parametrize("kind", ["sampled", "gbce"])
def test_sampled_losses_learn_a_predictable_sequence(kind):
    data, windows, valid, test = toy_problem()
    seed_everything(0)
    model = build_backbone("sasrec", data.n_items, 8, loss=LossSettings(loss=kind, n_negatives=8))
    result = fit(model, windows, valid, test, TrainConfig(epochs=20, batch_size=16, lr=5e-3, patience=50,
                                                          progress=False, ks=(1, 5, 10)))
    assert result["test"]["overall"]["HR@10"] > 0.9  # random: 10 / 30


def test_a_sampled_step_on_a_large_catalogue_never_scores_every_item(monkeypatch):
    """200k items, 2 x 64 positions: full CE would build 128 x 200k logits; sampled builds 128 x 64."""
    seed_everything(0)
    model = build_backbone("sasrec", 200_000, 64, loss=LossSettings(loss="sampled", n_negatives=64),
                           dim=16, inner_dim=32)
    shapes = []
    real_matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: (shapes.append(b.shape), real_matmul(a, b))[1])
    windows = torch.randint(1, 200_001, (2, 65))
    model.losses(windows)["rec"].backward()
    assert max(s[-1] for s in shapes) == 64


@pytest.mark.parametrize("backbone, kernels", [("sasrec", "reference"), ("sasrec", "fast"), ("gru4rec", "reference")])
def test_loss_at_the_last_position_only(backbone, kernels):
    """loss_positions last: the CE of each row's last real target, from the state at that position alone."""
    seed_everything(0)
    model = build_backbone(backbone, 30, 6, loss=LossSettings(loss_positions="last"), dim=8,
                           **({"inner_dim": 16, "kernels": kernels} if backbone == "sasrec" else {}))
    model.eval()  # no dropout: the two computations must agree exactly
    windows = torch.tensor([[3, 4, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7], [9, 8, 0, 0, 0, 0, 0]])
    states = model.encode(windows[:, :-1])
    last = torch.tensor([1, 5, 0])  # the last real target's position in windows[:, 1:]
    logits = states[torch.arange(3), last] @ model.output_items()[1:].T
    expected = F.cross_entropy(logits, torch.tensor([5, 7, 8]) - 1)
    assert torch.isclose(model.losses(windows)["rec"], expected, atol=1e-5)
    every = build_backbone(backbone, 30, 6, dim=8, **({"inner_dim": 16} if backbone == "sasrec" else {}))
    every.load_state_dict(model.state_dict())
    every.eval()
    assert not torch.isclose(every.losses(windows)["rec"], expected, atol=1e-5)  # all positions: another mean
