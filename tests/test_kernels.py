"""`--kernels fast` (methods/kernels.py): the same loss, gradients and predictions as the reference kernels,
dropout that keeps the right share of units, determinism per seed."""
import pytest
import torch
import torch.nn.functional as F

from methods.backbones import build_backbone
from methods.kernels import attention, chunked_softmax_ce, fast_dropout
from methods.trainer import TrainConfig, fit, seed_everything
from test_trainer import toy_problem


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_ce_matches_cross_entropy_value_and_gradients(chunk):
    torch.manual_seed(0)
    states = torch.randn(53, 8, dtype=torch.float64, requires_grad=True)
    items = torch.randn(41, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 41, (53,))
    reference = F.cross_entropy(states @ items.T, targets)
    grads = torch.autograd.grad(reference * 3, (states, items))
    value = chunked_softmax_ce(states, items, targets, chunk)
    fused = torch.autograd.grad(value * 3, (states, items))  # the upstream gradient is applied
    assert torch.allclose(value, reference, atol=1e-12)
    for mine, theirs in zip(fused, grads):
        assert torch.allclose(mine, theirs, atol=1e-12)


def test_chunked_ce_with_only_one_input_needing_gradients():
    torch.manual_seed(1)
    states, items = torch.randn(9, 4), torch.randn(6, 4, requires_grad=True)
    targets = torch.randint(0, 6, (9,))
    (mine,) = torch.autograd.grad(chunked_softmax_ce(states, items, targets, 4), items)
    (theirs,) = torch.autograd.grad(F.cross_entropy(states @ items.T, targets), items)
    assert torch.allclose(mine, theirs, atol=1e-6)
    with torch.no_grad():
        assert torch.isclose(chunked_softmax_ce(states, items, targets, 4), F.cross_entropy(states @ items.T, targets))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_keeps_one_minus_p_and_preserves_the_mean(p):
    torch.manual_seed(0)
    out = fast_dropout(torch.ones(400_001), p)
    kept = (out != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.005  # 400k draws: the standard error is < 0.001
    assert abs(out.mean().item() - 1) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))
    # every 16-bit lane of a 64-bit draw is used: the mask is not periodic in 4
    lanes = (out[:400_000].view(-1, 4) != 0).float().mean(dim=0)
    assert (lanes - (1 - p)).abs().max() < 0.01


def test_fast_dropout_is_seeded_and_off_outside_training():
    x = torch.randn(3, 5, 7)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, fast_dropout(x, 0.3))
    assert fast_dropout(x, 0.3, training=False) is x and fast_dropout(x, 0.0) is x


def test_written_out_attention_matches_sdpa_without_dropout_and_drops_with_it():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 1, 6, 4) for _ in range(3))
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
    scores = (q @ k.transpose(-2, -1) / 2).masked_fill(~causal, float("-inf")).softmax(-1)
    assert torch.allclose(scores @ v, reference, atol=1e-6)
    torch.manual_seed(0)
    dropped = attention(q, k, v, causal, 0.5, fast=True)
    assert dropped.shape == reference.shape and not torch.allclose(dropped, reference)


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec", "gru4rec"])
def test_fast_and_reference_models_share_weights_predictions_and_loss(backbone):
    seed_everything(0)
    reference = build_backbone(backbone, 30, 8, settings={"kernels": "reference"})
    seed_everything(0)
    fast = build_backbone(backbone, 30, 8, settings={"kernels": "fast"})
    assert reference.state_dict().keys() == fast.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), fast.state_dict().values()))
    reference.eval(), fast.eval()
    histories = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8]])
    assert torch.allclose(reference.predict(histories), fast.predict(histories), atol=1e-5)
    if backbone != "bert4rec":  # BERT4Rec's loss draws its cloze mask: compare the deterministic models only
        windows = torch.tensor([[1, 2, 3, 4, 0, 0, 0, 0, 0], [2, 3, 4, 5, 6, 7, 8, 9, 10]])
        assert torch.allclose(reference.losses(windows)["rec"], fast.losses(windows)["rec"], atol=1e-5)


def test_fast_kernels_learn_and_rerun_identically():
    data, windows, valid, test = toy_problem()
    results = []
    for _ in range(2):
        seed_everything(0)
        model = build_backbone("sasrec", data.n_items, 8, settings={"kernels": "fast"})
        results.append(fit(model, windows, valid, test, TrainConfig(epochs=15, batch_size=16, lr=5e-3,
                                                                   patience=50, progress=False, ks=(1, 5, 10))))
    assert results[0]["test"]["overall"]["HR@10"] > 0.9  # random: 10 / 30
    untimed = [[{k: v for k, v in c.items() if not k.endswith("seconds")} for c in r["curves"]] for r in results]
    assert results[0]["test"] == results[1]["test"] and untimed[0] == untimed[1]


def test_chunked_ce_under_bf16_autocast_takes_bf16_matmuls_and_an_fp32_softmax():
    torch.manual_seed(2)
    states = torch.randn(40, 16, requires_grad=True)
    items = torch.randn(30, 16, requires_grad=True)
    targets = torch.randint(0, 30, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = chunked_softmax_ce(states, items, targets, 8)
        reference = F.cross_entropy((states @ items.T).float(), targets)
    assert value.dtype == torch.float32 and torch.isclose(value, reference, rtol=1e-2)
    exact = F.cross_entropy(states @ items.T, targets)
    assert not torch.equal(value, exact) and torch.isclose(value, exact, rtol=2e-2)
    mine = torch.autograd.grad(value, (states, items))
    theirs = torch.autograd.grad(exact, (states, items))
    for a, b in zip(mine, theirs):
        assert a.dtype == torch.float32 and torch.allclose(a, b, atol=2e-2 * b.abs().max().item())


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_the_last_block_at_one_position_per_row_equals_the_full_forward_there(backbone):
    seed_everything(0)
    model = build_backbone(backbone, 30, 8, settings={"kernels": "fast"}).eval()
    seq = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8], [9, 0, 0, 0, 0, 0, 0, 0]])
    at = torch.tensor([2, 7, 0])
    with torch.no_grad():
        full = model.encode(seq)[torch.arange(3), at]
        assert torch.allclose(model.encode(seq, at=at), full, atol=1e-5)
