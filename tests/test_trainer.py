import numpy as np
import pytest
import torch

from harness.data.split import histories, leave_one_out, training_windows
from methods.backbones import GRU4Rec, MostPopular, SASRec, build_backbone
from methods.evaluate import EvalSet, evaluate
from methods.trainer import NonFiniteLossError, TrainConfig, fit, seed_everything, target_weights
from helpers import make_data


def toy_problem(n_users=60, n_items=30, length=12, seed=0):
    """Users walk through items in a fixed cyclic order: the next item is fully predictable."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(n_users):
        start = rng.integers(n_items)
        sequences.append([(start + t) % n_items + 1 for t in range(length)])
    data = make_data(sequences)
    split = leave_one_out(data)
    windows = torch.from_numpy(training_windows(data, split, 8))

    def eval_set(pos):
        return EvalSet(torch.from_numpy(histories(data, pos, 8)), torch.from_numpy(data.item_seq[pos]))
    return data, windows, eval_set(split.valid_pos), eval_set(split.test_pos)


def train(backbone, epochs=5, seed=0, **kw):
    data, windows, valid, test = toy_problem()
    seed_everything(seed)
    model = build_backbone(backbone, data.n_items, 8, **kw)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, patience=50, seed=seed, progress=False, ks=(1, 5, 10))
    return fit(model, windows, valid, test, cfg), model


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_learns_a_predictable_sequence(backbone):
    result, _ = train(backbone, epochs=30)
    assert result["test"]["overall"]["HR@1"] > 0.8  # random would be 1/30


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_same_seed_same_metrics(backbone):
    first, _ = train(backbone, epochs=3, seed=7)
    second, _ = train(backbone, epochs=3, seed=7)
    assert first["test"] == second["test"] and first["curves"][-1]["train_loss"] == second["curves"][-1]["train_loss"]
    other, _ = train(backbone, epochs=3, seed=8)
    assert other["curves"][-1]["train_loss"] != first["curves"][-1]["train_loss"]


def test_best_weights_are_copied_and_restored(monkeypatch):
    """Validation peaks at epoch 2 (scripted); the returned model must be the epoch-2 weights."""
    import methods.trainer as trainer

    data, windows, valid, test = toy_problem()
    seed_everything(0)
    model = SASRec(data.n_items, 8, dim=16, n_heads=2, inner_dim=32)
    snapshots = []
    scripted = iter([0.1, 0.5, 0.2, 0.3, 0.1])
    real_evaluate = trainer.evaluate

    def fake_evaluate(m, data_, **kw):
        if data_ is valid and len(snapshots) < 5:
            snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
            return {"overall": {"NDCG@10": next(scripted)}}
        return real_evaluate(m, data_, **kw)

    monkeypatch.setattr(trainer, "evaluate", fake_evaluate)
    result = fit(model, windows, valid, test, TrainConfig(epochs=5, batch_size=16, patience=3, progress=False))
    assert result["best_epoch"] == 2 and result["epochs_run"] == 5
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not torch.equal(final["item_emb.weight"], snapshots[4]["item_emb.weight"])


def test_early_stopping_patience():
    data, windows, valid, test = toy_problem()
    seed_everything(0)
    model = SASRec(data.n_items, 8, dim=16, inner_dim=32)
    cfg = TrainConfig(epochs=200, batch_size=16, lr=5e-3, patience=2, progress=False)
    result = fit(model, windows, valid, test, cfg)
    assert result["epochs_run"] < 200 and result["epochs_run"] == result["best_epoch"] + 2
    assert result["stop_reason"].startswith("early stop")


def test_nan_loss_fails_clearly():
    data, windows, valid, test = toy_problem()
    model = GRU4Rec(data.n_items, dim=8, hidden=8)
    with torch.no_grad():
        model.item_emb.weight[3] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        fit(model, windows, valid, test, TrainConfig(epochs=1, progress=False))


def test_most_popular_needs_no_training():
    data, windows, valid, test = toy_problem()
    counts = torch.bincount(windows.flatten(), minlength=data.n_items + 1)
    result = fit(MostPopular(counts), windows, valid, test, TrainConfig(progress=False))
    assert result["epochs_run"] == 0 and result["trainable_params"] == 0
    assert 0 <= result["test"]["overall"]["HR@10"] <= 1


def test_evaluation_independent_of_batch_size():
    data, windows, valid, test = toy_problem()
    seed_everything(0)
    model = SASRec(data.n_items, 8, dim=16, inner_dim=32)
    a = evaluate(model, test, batch_size=7)
    b = evaluate(model, test, batch_size=1000)
    assert a == b


def test_padding_never_leaks_into_real_positions():
    """Right padding + causal mask: a real position's state ignores what follows it."""
    seed_everything(0)
    model = SASRec(20, 6, dim=16, inner_dim=32).eval()
    short = torch.tensor([[3, 4, 5, 0, 0, 0]])
    longer = torch.tensor([[3, 4, 5, 9, 1, 2]])
    with torch.no_grad():
        assert torch.allclose(model.encode(short)[0, :3], model.encode(longer)[0, :3], atol=1e-6)
        assert torch.isfinite(model.encode(torch.zeros(2, 6, dtype=torch.long))).all()


def test_training_loss_ignores_padding_targets():
    seed_everything(0)
    model = GRU4Rec(10, dim=8, hidden=8).eval()  # no dropout noise
    padded = torch.tensor([[1, 2, 3, 0, 0]])
    trimmed = torch.tensor([[1, 2, 3]])
    assert torch.allclose(model.losses(padded)["rec"], model.losses(trimmed)["rec"])


def test_target_weights_make_length_sorted_batches_weigh_every_target_alike():
    """Weighted batch means sum to n_batches x the mean over all targets, however lengths are grouped; plain
    batch means (the `batch` mode) overweight the targets of short rows."""
    torch.manual_seed(0)
    targets = torch.tensor([1, 2, 40, 50, 3, 45])
    losses = [torch.rand(int(n)) for n in targets]  # a loss per target of each row
    batches = [torch.tensor([0, 1, 4]), torch.tensor([2, 3, 5])]  # short rows together, long rows together
    means = [torch.cat([losses[i] for i in rows]).mean() for rows in batches]
    weights = target_weights(targets, batches)
    overall = torch.cat(losses).mean()
    assert abs(sum(w * m for w, m in zip(weights, means)) - len(batches) * overall) < 1e-5
    assert weights[0] < 0.2 < 1.8 < weights[1]
    assert target_weights(torch.tensor([0, 0]), [torch.tensor([0]), torch.tensor([1])]) == [1.0, 1.0]


def test_bucket_weights_enter_a_key_only_when_not_the_default_and_buckets_are_on():
    """`batch` (the behaviour before the setting existed) keeps earlier keys; `targets` is another trial; an
    unbucketed trial is one trial whatever bucket_weights says (the setting does not apply to it)."""
    from harness.trial import TrialConfig
    bucketed = {"dataset": "ml-1m", "backbone": "sasrec", "method": "id", "exclude_history": True, "length_buckets": 16}
    assert TrialConfig.from_config(bucketed).bucket_weights == "batch"
    assert TrialConfig(**bucketed, bucket_weights="targets").key() != TrialConfig.from_config(bucketed).key()
    assert "bucket_weights" not in TrialConfig(**bucketed).key_fields()
    unbucketed = {"dataset": "ml-1m", "backbone": "sasrec", "method": "id", "exclude_history": True}
    assert TrialConfig(**unbucketed, bucket_weights="targets").key() == TrialConfig(**unbucketed).key()


def test_batches_keep_full_width_by_default_and_skip_padding_with_length_buckets():
    """Full-width rows by default (other shapes draw other dropout masks: earlier records reproduce);
    with length_buckets, rows of similar length share a batch and all-padding columns are cut."""
    data = make_data([list(range(1, 5)), list(range(1, 15)), list(range(3, 8)), list(range(2, 20))])
    split = leave_one_out(data)
    windows = torch.from_numpy(training_windows(data, split, 12))
    ev = EvalSet(torch.from_numpy(histories(data, split.valid_pos, 12)), torch.from_numpy(data.item_seq[split.valid_pos]))
    for buckets, expect_full in ((0, True), (2, False)):
        seed_everything(0)
        model = build_backbone("sasrec", data.n_items, 12, dim=8, n_heads=1, inner_dim=16)
        widths = []
        original = model.losses
        model.losses = lambda batch: (widths.append(batch.shape[1]), original(batch))[1]
        fit(model, windows, ev, ev, TrainConfig(epochs=1, batch_size=1, length_buckets=buckets, progress=False))
        assert (set(widths) == {13}) == expect_full, widths
