"""Presets: values per data set, checked by the declarations, overridden by explicit flags / grid values."""
import pytest
import yaml

from harness.grid import GridError, load_grid
from harness.presets import preset_values, shipped_presets
from harness.trial import SETTINGS, build_parser, explicit_settings
from kdsr_util.settings import SettingError


def test_the_strong_preset_per_data_set():
    assert "strong" in shipped_presets()
    ml1m = preset_values("strong", "ml-1m", "sasrec", SETTINGS)
    assert ml1m["max_len"] == 200 and ml1m["exclude_history"] is True and ml1m["n_heads"] == 1
    assert ml1m["kernels"] == "fast"  # grids that ran with the preset before pin kernels: reference
    for grid in ("scaling-cpu", "strong-ml100k", "strong-ml1m", "kd-ladder-cpu"):
        assert {t.kernels for t in load_grid(grid).trials} == {"reference"}, grid
    assert preset_values("strong", "ml-100k", "sasrec", SETTINGS)["max_len"] == 50
    with pytest.raises(SettingError, match="no such preset; shipped presets: strong"):
        preset_values("weak", "ml-1m", "sasrec", SETTINGS)


def test_a_grid_starts_from_its_preset_and_its_own_values_win(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"preset": "strong", "fixed": {"dropout": 0.3},
                                    "axes": {"dataset": ["ml-1m", "ml-100k"], "n_heads": [1, 2], "seed": [0]}}))
    trials = load_grid(str(path)).trials
    assert sorted((t.dataset, t.max_len, t.n_heads) for t in trials) == [
        ("ml-100k", 50, 1), ("ml-100k", 50, 2), ("ml-1m", 200, 1), ("ml-1m", 200, 2)]
    assert all(t.dropout == 0.3 and t.attn_dropout == 0.1 and t.exclude_history for t in trials)
    path.write_text(yaml.safe_dump({"preset": "weak", "axes": {"seed": [0]}}))
    with pytest.raises(GridError, match="preset: preset 'weak': no such preset"):
        load_grid(str(path))


def test_explicit_flags_are_told_from_defaults():
    parser = build_parser()
    assert explicit_settings(parser, ["--preset", "strong", "--max-len", "50", "--dropout", "0.2"]) == {
        "max_len", "dropout"}
    assert parser.parse_args([]).max_len == 50  # the parser's defaults are restored
