"""KDSR and the method axis: losses against hand-computed cases, codes, no N x N, the asynchronous
schedule, the retention probe, BERT4Rec, and every method name through the real runner."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.data.split import histories, leave_one_out, training_windows
from methods.backbones import BERT4Rec, build_backbone
from methods.distill import (CodeLoss, HolisticLoss, correlation_vectors, fit_codebook, nearest_centroid, retention,
                             retention_pairs, subspaces)
from methods.evaluate import EvalSet
from methods.multimodal import METHODS, DistillSettings, Modality, build_method_model
from methods.trainer import TrainConfig, async_lr, fit, seed_everything
from helpers import make_data, run_killed_in_validation


def identity_projections(loss: HolisticLoss):
    with torch.no_grad():
        for p in (loss.p1, loss.p2):
            p.weight.copy_(torch.eye(p.weight.shape[0], p.weight.shape[1]))
            p.bias.zero_()
    return loss


def test_holistic_norm_form_hand_computed():
    # student rows: e1 = (1, 0), e2 = (0, 1), e3 = (1, 1)/..; teacher rows as unit vectors
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    valid = torch.tensor([[True, True, True]])
    loss = identity_projections(HolisticLoss(2, 2, tau=2.0))(student, teacher, valid)
    r = 1 / math.sqrt(2)
    # student cosines: (1,2)=0, (1,3)=r, (2,3)=r; teacher: (1,2)=1, (1,3)=0, (2,3)=0; both orders counted
    diffs = [0 - 1, r - 0, r - 0]
    expected = math.sqrt(2 * sum((d / 2.0) ** 2 for d in diffs))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # a padded / content-less position contributes nothing
    masked = identity_projections(HolisticLoss(2, 2, tau=2.0))(student, teacher, torch.tensor([[True, True, False]]))
    assert masked.item() == pytest.approx(math.sqrt(2 * (0.5 ** 2)), rel=1e-5)


def test_holistic_kl_form_hand_computed():
    student = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    valid = torch.tensor([[True, True, True]])
    loss = identity_projections(HolisticLoss(2, 2, tau=0.5, form="kl"))(student, teacher, valid)
    r = 1 / math.sqrt(2)
    s_hat = np.array([[0, 0, r], [0, 0, r], [r, r, 0]])
    s = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    total = 0.0
    for i in range(3):
        cols = [j for j in range(3) if j != i]
        p = np.exp(s[i, cols] / 0.5) / np.exp(s[i, cols] / 0.5).sum()
        log_q = s_hat[i, cols] / 0.5 - np.log(np.exp(s_hat[i, cols] / 0.5).sum())
        total += (p * (np.log(p) - log_q)).sum()
    assert loss.item() == pytest.approx(total / 3, rel=1e-5)


def test_codes_are_the_nearest_centroid():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(30, 12)).astype(np.float32)
    pairs = rng.integers(1, 30, size=(500, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    centroids = fit_codebook(teacher, pairs, n_codes=5, n_sub=3, seed=0)
    assert centroids.shape == (5, 3)
    sub = subspaces(torch.from_numpy(teacher), 3)
    left, right = torch.from_numpy(pairs[:50, 0]), torch.from_numpy(pairs[:50, 1])
    vectors = correlation_vectors(sub, left, right)
    # the sub-space cosines, computed directly
    t = teacher
    direct = np.stack([[np.dot(t[i, 4 * s:4 * s + 4], t[j, 4 * s:4 * s + 4]) /
                        np.linalg.norm(t[i, 4 * s:4 * s + 4]) / np.linalg.norm(t[j, 4 * s:4 * s + 4])
                        for s in range(3)] for i, j in pairs[:50]])
    assert np.allclose(vectors.numpy(), direct, atol=1e-5)
    brute = np.argmin(((direct[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert nearest_centroid(vectors, torch.from_numpy(centroids)).tolist() == brute.tolist()


def test_code_loss_is_cross_entropy_of_the_mlp():
    torch.manual_seed(0)
    loss = CodeLoss(4, 3, hidden=5)
    e_i, e_j = torch.randn(6, 4), torch.randn(6, 4)
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = torch.nn.functional.cross_entropy(loss.mlp((e_i - e_j).abs()), codes)
    assert torch.allclose(loss(e_i, e_j, codes), expected)


def test_async_schedule():
    lrs = [async_lr(epoch, 1e-3, 2.0, (5, 10)) for epoch in range(1, 13)]
    assert lrs == [2.5e-4] * 4 + [5e-4] * 5 + [1e-3] * 3
    assert async_lr(1, 1e-3, 2.0, ()) == 1e-3


def test_retention_probe_equals_scipy_spearman():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    student, teacher = torch.randn(50, 8), torch.randn(50, 16)
    mask = np.ones(50, dtype=bool)
    mask[0] = False
    pairs = retention_pairs(mask, 300, seed=3)
    assert (pairs[:, 0] != pairs[:, 1]).all() and mask[pairs].all()
    assert np.array_equal(pairs, retention_pairs(mask, 300, seed=3))  # fixed sample
    t = torch.nn.functional.normalize(teacher, dim=1)
    s = student.numpy()
    cos = lambda m, i, j: (m[i] * m[j]).sum(-1) / np.linalg.norm(m[i], axis=1) / np.linalg.norm(m[j], axis=1)  # noqa
    expected = spearmanr(cos(s, pairs[:, 0], pairs[:, 1]), cos(teacher.numpy(), pairs[:, 0], pairs[:, 1])).statistic
    assert retention(student, t, torch.from_numpy(pairs)) == pytest.approx(expected, abs=1e-6)
    del rng


# ------------------------------------------------------------------------------------------- models
def toy(n_items=40, n_users=60, length=12, seed=0):
    rng = np.random.default_rng(seed)
    sequences = [[(s + t) % n_items + 1 for t in range(length)] for s in rng.integers(n_items, size=n_users)]
    data = make_data(sequences)
    split = leave_one_out(data)
    windows = training_windows(data, split, 8)
    ev = lambda pos: EvalSet(torch.from_numpy(histories(data, pos, 8)), torch.from_numpy(data.item_seq[pos]))  # noqa
    features = rng.normal(size=(n_items + 1, 24)).astype(np.float32)
    features[0] = 0
    mask = np.ones(n_items + 1, dtype=bool)
    mask[0] = False
    return data, windows, ev(split.valid_pos), ev(split.test_pos), features, mask


def modality(features, mask, windows, n_codes=4, n_sub=4):
    from harness.features import window_pairs

    pairs = window_pairs(windows, 2000, 0)
    return Modality("text:toy", features[:, :16], features, mask, fit_codebook(features, pairs, n_codes, n_sub, 0))


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_with_every_backbone_trains(backbone, method):
    data, windows, valid, test, features, mask = toy()
    seed_everything(0)
    model = build_method_model(method, backbone, data.n_items, 8, [modality(features, mask, windows)],
                               DistillSettings(proj_dim=16), dim=16,
                               **({"hidden": 16} if backbone == "gru4rec" else {"inner_dim": 32}))
    spec = METHODS[method]
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, async_schedule=(2,) if spec.asynchronous else ())
    result = fit(model, torch.from_numpy(windows), valid, test, cfg)
    assert result["epochs_run"] == 2 and 0 <= result["test"]["overall"]["HR@10"] <= 1
    terms = set(result["curves"][-1]["train_losses"])
    assert "rec" in terms
    assert ("hol:text:toy" in terms) == spec.holistic and ("code:text:toy" in terms) == spec.codes
    if spec.modalities:
        assert [c["epoch"] for c in result["curves"]][0] == 0 and "retention" in result["curves"][-1]
    if spec.asynchronous:
        assert [c["lr_slow"] for c in result["curves"][1:]] == [5e-4, 1e-3]
    if method == "frozen":
        table = model.fusion.tables[0].weight
        assert not table.requires_grad
        assert result["curves"][0]["retention"] == result["curves"][-1]["retention"]


def test_no_item_by_item_matrix_is_ever_built():
    """200k items: an N x N float matrix would need 160 GB; teacher prep and a training step must not."""
    n_items = 200_000
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_items + 1, 16)).astype(np.float32)
    mask = np.ones(n_items + 1, dtype=bool)
    mask[0] = False
    seqs = rng.integers(1, n_items + 1, size=(64, 9))
    from harness.features import window_pairs

    centroids = fit_codebook(features, window_pairs(seqs, 20_000, 0), 8, 4, 0)
    seed_everything(0)
    model = build_method_model("kdsr", "sasrec", n_items, 8, [Modality("t", features, features, mask, centroids)],
                               DistillSettings(proj_dim=16, probe_pairs=500), dim=16, inner_dim=32)
    losses = model.losses(torch.from_numpy(seqs))
    sum(losses.values()).backward()
    assert set(losses) == {"rec", "hol:t", "code:t"}
    assert 0 <= abs(model.epoch_metrics()["retention"]["t"]) <= 1


def test_bert4rec_predicts_with_a_mask_token_after_the_history():
    seed_everything(0)
    model = BERT4Rec(10, 4, dim=8, n_heads=2, inner_dim=16).eval()
    seen = []
    original = model.encode
    model.encode = lambda seq: (seen.append(seq.clone()), original(seq))[1]
    model.predict(torch.tensor([[3, 4, 0, 0], [1, 2, 3, 4]]))
    assert seen[0].tolist() == [[3, 4, 11, 0], [2, 3, 4, 11]]


def test_bert4rec_learns_a_predictable_sequence():
    data, windows, valid, test, _, _ = toy()
    seed_everything(0)
    model = BERT4Rec(data.n_items, 8, dim=32, n_heads=2, inner_dim=64, dropout=0.1, attn_dropout=0.1)
    result = fit(model, torch.from_numpy(windows), valid, test,
                 TrainConfig(epochs=40, batch_size=16, lr=5e-3, patience=40, progress=False))
    assert result["test"]["overall"]["HR@10"] > 0.8  # random: 10/40


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_fused_scoring_lets_an_items_content_reach_its_score(backbone):
    """score_with=id (reference): an item's modality row cannot change its score; fused: it does, in
    prediction and in the training loss."""
    data, windows, _, _, features, mask = toy()
    history = torch.from_numpy(windows[:4, :-1])
    for score_with, should_change in (("id", False), ("fused", True)):
        seed_everything(0)
        model = build_method_model("two_stage", backbone, data.n_items, 8, [modality(features, mask, windows)],
                                   DistillSettings(proj_dim=16, score_with=score_with), dim=16,
                                   inner_dim=32).eval()
        item = 7
        before = model.predict(history)[:, item].clone()
        others = model.predict(history)[:, item + 1].clone()
        with torch.no_grad():
            model.fusion.tables[0].weight[item] += 1.0
        # history rows that contain the item change through the input too: compare a history without it
        rows = ~(history == item).any(dim=1)
        after = model.predict(history)[:, item]
        assert rows.any()
        assert torch.allclose(model.predict(history)[rows, item + 1], others[rows])
        assert (not torch.allclose(after[rows], before[rows])) == should_change, score_with


@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result(backbone, tmp_path, monkeypatch):
    """KDSR (asynchronous schedule, sampled pairs, dropout; BERT4Rec's random masks) killed after epoch 3 and
    resumed from its checkpoint gives exactly the curves and metrics of an uninterrupted run."""

    data, windows, valid, test, features, mask = toy()

    def run(checkpoint=None):
        seed_everything(0)
        model = build_method_model("kdsr", backbone, data.n_items, 8, [modality(features, mask, windows)],
                                   DistillSettings(proj_dim=16), dim=16, inner_dim=32)
        cfg = TrainConfig(epochs=6, batch_size=16, patience=50, progress=False, async_schedule=(2, 4))
        return fit(model, torch.from_numpy(windows), valid, test, cfg, checkpoint=checkpoint)

    def comparable(result):
        curves = [{k: v for k, v in c.items() if not k.endswith("_seconds")} for c in result["curves"]]
        return result["test"], result["valid"], result["best_epoch"], curves

    uninterrupted = run()
    path = tmp_path / "trial.pt"
    run_killed_in_validation(monkeypatch, lambda: run(path), call=4)  # the process dies in epoch 4's validation
    assert torch.load(path, weights_only=True)["epoch"] == 3
    resumed = run(path)
    assert resumed["resumed_after_epoch"] == 3 and uninterrupted["resumed_after_epoch"] == 0
    assert comparable(resumed) == comparable(uninterrupted)
    assert len(resumed["curves"]) == 7 and resumed["epochs_run"] == 6


def test_a_checkpoint_from_another_setup_is_refused(tmp_path):
    data, windows, valid, test, features, mask = toy()
    path = tmp_path / "trial.pt"

    def run(lr):
        seed_everything(0)
        model = build_backbone("sasrec", data.n_items, 8, dim=16, inner_dim=32)
        return fit(model, torch.from_numpy(windows), valid, test,
                   TrainConfig(epochs=1, batch_size=16, lr=lr, progress=False), checkpoint=path)

    run(1e-3)
    with pytest.raises(ValueError, match=r"trial.pt was written by a different training setup \(differs in lr\)"):
        run(2e-3)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read.*delete it"):
        run(1e-3)


def test_the_shared_holistic_projection_gives_a_symmetric_student_similarity():
    from methods.distill import HolisticLoss

    torch.manual_seed(0)
    shared, separate = HolisticLoss(8, 4, 1.0, shared=True), HolisticLoss(8, 4, 1.0, shared=False)
    assert shared.p1 is shared.p2 and separate.p1 is not separate.p2
    student = torch.randn(1, 5, 8)
    for loss, symmetric in ((shared, True), (separate, False)):
        pred = F.normalize(loss.p1(student), dim=-1) @ F.normalize(loss.p2(student), dim=-1).transpose(1, 2)
        assert torch.allclose(pred, pred.transpose(1, 2), atol=1e-6) == symmetric
