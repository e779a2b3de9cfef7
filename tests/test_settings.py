"""Declared settings: one declaration per setting, every bad value refused before anything runs, and
result keys that never move (every committed record's key recomputes from its stored config)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import yaml

from harness.grid import GridError, load_grid
from harness.trial import (COMPONENTS, KEYED_FIELDS_V1, SETTINGS, TrialConfig, collect_settings, main as trial_main,
                           make_trial_config)
from kdsr_util.settings import Setting, SettingError, declared, setting
from methods.backbones import BACKBONES
from methods.multimodal import METHODS
from methods.trainer import TrainConfig, early_stopping

ROOT = Path(__file__).resolve().parents[1]


def committed_records() -> list[Path]:
    return sorted(ROOT.glob("results/*/records/*.json")) + sorted(ROOT.glob("results/*/search/records/*.json"))


def test_every_committed_record_key_recomputes_from_its_config():
    paths = committed_records()
    assert len(paths) >= 179
    for path in paths:
        record = json.loads(path.read_text())
        assert TrialConfig.from_config(record["config"]).key() == record["key"] == path.stem, path


def test_a_new_setting_moves_no_existing_key():
    """A setting added later (here a dummy one) enters a key only when set to a non-default value."""
    extended = make_trial_config({**SETTINGS, "dummy_knob": Setting("dummy_knob", 3, interval="[0, 9]",
                                                                    group="training")}, name="Extended")
    for path in committed_records()[::10]:
        record = json.loads(path.read_text())
        assert extended.from_config(record["config"]).key() == record["key"]
    base = asdict(TrialConfig())
    assert extended(**base, dummy_knob=4).key() != TrialConfig().key()
    with pytest.raises(SettingError, match=r"dummy_knob: 10 is outside the allowed range \[0, 9\]"):
        extended(dummy_knob=10).validate()


def test_the_frozen_key_list_holds_only_declared_settings():
    assert KEYED_FIELDS_V1 <= set(SETTINGS)
    # settings added since the list was frozen, or never keyed (execution only)
    assert set(SETTINGS) - KEYED_FIELDS_V1 == {"score_with", "device", "threads", "eval_batch_size", "train_samples",
                                               "sample_stride", "loss", "n_negatives", "negatives", "gbce_t",
                                               "length_buckets", "holistic_projection", "loss_positions",
                                               "bucket_weights", "kernels"}


def test_a_new_default_behaviour_gets_new_keys_and_old_records_keep_theirs():
    """A setting whose default is a new behaviour declares the old one (`before`): stored configs without it
    read with the old value and keep their keys; today's default trial is a new trial."""
    extended = make_trial_config({**SETTINGS, "new_mode": Setting("new_mode", "new", choices=("old", "new"),
                                                                  before="old", needs="holistic", group="method")},
                                 name="Extended")
    path = next(p for p in committed_records() if json.loads(p.read_text())["config"]["method"] == "kdsr")
    record = json.loads(path.read_text())
    old = extended.from_config(record["config"])
    assert old.new_mode == "old" and old.key() == record["key"]
    assert extended(**record["config"]).key() != record["key"]  # the same settings today: a new trial
    id_trial = extended(method="id")
    assert id_trial.key() == TrialConfig(method="id").key()  # a setting its method does not read: never keyed


def test_a_setting_is_declared_once():
    @dataclass
    class Other:
        lr: float = setting(0.1)

    with pytest.raises(TypeError, match="'lr' is declared by both training and other"):
        collect_settings({**COMPONENTS, "other": Other})


def test_routing_hands_each_component_its_own_settings():
    cfg = TrialConfig(backbone="gru4rec", method="kdsr", encoder=["minilm-l6"], gru_hidden=32, lr=0.01, tau=2.0,
                      async_schedule=[3])
    assert cfg.part(TrainConfig, progress=False).lr == 0.01
    assert cfg.part(TrainConfig).async_schedule == [3]
    assert BACKBONES["gru4rec"].kwargs(cfg.backbone_settings()) == {"dim": 64, "hidden": 32, "dropout": 0.3,
                                                                          "kernels": "reference"}
    assert {s.name for s in declared(TrainConfig)} >= {"epochs", "lr", "precision", "async_schedule"}


def test_canonical_resets_what_the_method_and_backbone_ignore():
    cfg = TrialConfig(backbone="gru4rec", method="id", encoder=["minilm-l6"], tau=3.0, K=20, n_heads=4, gru_hidden=32)
    canonical = cfg.canonical()
    assert canonical.encoder == [] and canonical.tau == 1.5 and canonical.K == 50 and canonical.n_heads == 2
    assert canonical.gru_hidden == 32
    # a setting that matters only for some value of another (`when`)
    assert TrialConfig(sample_stride=5).canonical().sample_stride == 25
    assert TrialConfig(train_samples="stride", sample_stride=5).canonical().sample_stride == 5
    assert TrialConfig(n_negatives=64).key() == TrialConfig().key() != TrialConfig(loss="sampled").key()
    assert TrialConfig(backbone="pop", loss="gbce").canonical().loss == "ce"
    for name, declaration in SETTINGS.items():  # every `needs` names a MethodSpec flag
        assert not declaration.needs or hasattr(METHODS["kdsr"], declaration.needs), name


@pytest.mark.parametrize("values, message", [
    ({"precision": "fp16"}, "precision: 'fp16' is not allowed; choose from fp32, bf16"),
    ({"fusion": "attention", "method": "kdsr", "encoder": ["minilm-l6"]}, "fusion: 'attention' is not allowed; "
                                                                         "choose from gate, concat, sum"),
    ({"holistic_form": "l1"}, "holistic_form: 'l1' is not allowed; choose from norm, kl"),
    ({"reduce": "umap"}, "reduce: 'umap' is not allowed; choose from none, pca, autoencoder"),
    ({"score_with": "both"}, "score_with: 'both' is not allowed; choose from id, fused"),
    ({"split": "random"}, "split: 'random' is not allowed; choose from loo, ratio"),
    ({"dedup": "fuzzy"}, "dedup: 'fuzzy' is not allowed; choose from exact, pair"),
    ({"device": "tpu"}, "device: 'tpu' is not allowed; expected auto, cpu, cuda or cuda:N"),
    ({"method": "magic"}, "method: 'magic' is not allowed; choose from id, frozen"),
    ({"backbone": "transformerxl"}, "backbone: 'transformerxl' is not allowed; choose from sasrec"),
    ({"train_fraction": 1.5}, r"train_fraction: 1.5 is outside the allowed range (0, 1]"),
    ({"train_fraction": 0.0}, r"train_fraction: 0.0 is outside the allowed range (0, 1]"),
    ({"dropout": 1.0}, r"dropout: 1.0 is outside the allowed range [0, 1)"),
    ({"lr": -1e-3}, r"lr: -0.001 is outside the allowed range (0, inf)"),
    ({"epochs": 0}, r"epochs: 0 is outside the allowed range [1, inf)"),
    ({"K": 1}, r"K: 1 is outside the allowed range [2, inf)"),
    ({"async_schedule": [5, 0]}, r"async_schedule: 0 is outside the allowed range [1, inf)"),
    ({"lambda_hol": [4.0, 1.0], "method": "kdsr", "encoder": ["minilm-l6"]},
     "lambda_hol: 2 values [4.0, 1.0] for 1 modalities; give one value"),
    ({"lambda_code": [], "method": "kdsr", "encoder": ["minilm-l6"]}, "lambda_code: 0 values [] for 1 modalities"),
    ({"dim": 64, "n_heads": 3}, "dim 64 must be divisible by n_heads 3"),
    ({"method": "kdsr"}, "method 'kdsr' needs --encoder"),
    ({"method": "kdsr", "encoder": ["gpt-9"]}, "encoder: unknown encoder 'gpt-9'; valid encoders: minilm-l6"),
    ({"backbone": "pop", "method": "two_stage", "encoder": ["minilm-l6"]}, "the pop backbone has no input"),
    ({"split": "ratio", "train_fraction": 0.5}, "leave-one-out split only"),
    ({"dataset": "netflix"}, "netflix: unknown data set (not a built-in name nor a folder of atomic files). Fix:"),
    ({"epochs": 2.5}, "epochs: 2.5 is not a int"),
    ({"train_samples": "all"}, "train_samples: 'all' is not allowed; choose from windows, last, crop, stride"),
    ({"train_samples": "stride", "sample_stride": 60}, "sample_stride 60 > max_len 50 would leave training targets"),
    ({"backbone": "bert4rec", "loss_positions": "last"}, "loss_positions last needs a next-item backbone"),
    ({"loss": "bpr"}, "loss: 'bpr' is not allowed; choose from ce, sampled, gbce"),
    ({"loss": "gbce", "gbce_t": 1.5}, r"gbce_t: 1.5 is outside the allowed range [0, 1]"),
    ({"negatives": "hard"}, "negatives: 'hard' is not allowed; choose from uniform, popularity"),
])
def test_every_bad_value_is_refused_before_anything_runs(values, message):
    with pytest.raises(ValueError, match=_literal(message)):
        TrialConfig(**values).validate()


def test_a_list_setting_matches_the_number_of_modalities():
    TrialConfig(method="kdsr", encoder=["minilm-l6", "smollm2-135m"], lambda_hol=[4.0, 1.0]).validate()
    TrialConfig(method="kdsr", encoder=["minilm-l6", "smollm2-135m"], lambda_hol=[4.0]).validate()
    TrialConfig(method="id", lambda_hol=[1.0, 2.0, 3.0]).validate()  # ignored by id


def test_a_bad_grid_is_refused_naming_the_file_the_trial_and_the_choices(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"axes": {"method": ["kdsr"], "encoder": ["minilm-l6"],
                                             "lambda_hol": [[1.0, 2.0]], "seed": [0]}}))
    with pytest.raises(GridError, match=_literal(f"{path}: trial encoder=minilm-l6 lambda_hol=1.0+2.0 method=kdsr "
                                                 "seed=0: lambda_hol: 2 values")):  # yaml sorts the axes
        load_grid(str(path))
    path.write_text(yaml.safe_dump({"axes": {"precision": ["fp32", "fp16"]}}))
    with pytest.raises(GridError, match=_literal(f"{path}: axes.precision: precision: 'fp16' is not allowed; "
                                                 "choose from fp32, bf16")):
        load_grid(str(path))


def test_the_trial_command_refuses_a_bad_value_in_one_line(capsys):
    assert trial_main(["--method", "kdsr", "--encoder", "minilm-l6", "--lambda-hol", "1", "2", "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("error: lambda_hol: 2 values [1.0, 2.0] for 1 modalities; give one "
                                               "value (every modality) or one per modality")


def test_search_values_are_parsed_by_their_declarations():
    cfg = TrialConfig(method="kdsr", encoder=["minilm-l6"]).with_values({"lambda_hol": 0.5, "K": 20, "lr": 1})
    assert cfg.lambda_hol == [0.5] and cfg.K == 20 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(SettingError, match="unknown settings"):
        TrialConfig().with_values({"learning_rate": 0.1})


def test_early_stopping_is_a_pure_rule():
    assert early_stopping(0.2, 0.1, 3, 5) == (0.2, 0, True, False)
    assert early_stopping(0.1, 0.2, 3, 5) == (0.2, 4, False, False)
    assert early_stopping(0.1, 0.2, 4, 5) == (0.2, 5, False, True)
    assert early_stopping(0.2, 0.2, 0, 1) == (0.2, 1, False, True)  # equal is no improvement


def _literal(text: str) -> str:
    return re.escape(text)


def test_the_symmetric_holistic_projection_is_the_new_default_and_old_records_stay_asymmetric():
    path = next(p for p in committed_records() if json.loads(p.read_text())["config"]["method"] == "kdsr"
                and "holistic_projection" not in json.loads(p.read_text())["config"])
    record = json.loads(path.read_text())
    assert TrialConfig.from_config(record["config"]).holistic_projection == "separate"
    assert TrialConfig().holistic_projection == "shared"
    assert TrialConfig(**record["config"]).key() != record["key"]  # today's default: a different trial
