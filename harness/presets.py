"""Named presets: setting values per data set (and backbone) that a trial or a grid starts from.

    python -m harness.trial --preset strong --dataset ml-1m ...     # explicit flags still win
    # in a grid file:  preset: strong                               # fixed and axes still win

A preset file (harness/presets/NAME.yaml) holds `description`, `source`, `settings` (every data set),
`datasets: {name: {...}}` and `backbones: {name: {...}}`; later entries override earlier ones. Every
value is checked by its setting's declaration when the preset is read.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from kdsr_util.settings import Setting, SettingError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESET_KEYS = {"description", "source", "settings", "datasets", "backbones"}


def shipped_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_preset(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SettingError(f"preset {name!r}: no such preset; shipped presets: {', '.join(shipped_presets())}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - PRESET_KEYS
    if unknown:
        raise SettingError(f"{path}: unknown keys {sorted(unknown)}; valid keys: {', '.join(sorted(PRESET_KEYS))}")
    return data


def preset_values(name: str, dataset: str, backbone: str, settings: dict[str, Setting]) -> dict:
    """The preset's setting values for a trial on `dataset` with `backbone`, parsed and checked by the
    declarations in `settings` (harness.trial.SETTINGS)."""
    data = read_preset(name)
    values = {**(data.get("settings") or {}), **((data.get("datasets") or {}).get(dataset) or {}),
              **((data.get("backbones") or {}).get(backbone) or {})}
    out = {}
    for key, value in values.items():
        if key not in settings:
            raise SettingError(f"preset {name!r}: unknown setting {key!r}; valid settings: {', '.join(settings)}")
        out[key] = settings[key].parse(value)
    return out
