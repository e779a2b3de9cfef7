"""Sweep grids: YAML files of axes whose product is a list of trials.

A grid file (harness/grids/NAME.yaml, or any path):

    description: what the grid is for
    include: [paper, scaling]        # optional: union with other grids (names or paths)
    fixed: {epochs: 200}             # optional: settings for every trial of this file
    axes:                            # every key is a harness.trial setting; each value a list
      dataset: [ml-100k]
      backbone: [sasrec, gru4rec]
      encoder: [minilm-l6, [clip-b32-image, clip-b32-text]]   # a list = one encoder per modality
      method: [id, two_stage, kdsr]
      seed: [0, 1, 2]
    exclude:                         # optional: drop trials that match every entry of one item
      - {backbone: gru4rec, method: [mse_kd, contrastive_kd]}
    resources: {cpus_per_trial: 1, gpus_per_trial: 0.25}   # optional defaults for the sweep

Trials are canonicalised (settings a method or backbone ignores are reset, see TrialConfig.canonical),
so an axis a method ignores does not multiply its trials; duplicates are dropped by key. Grid files are
data: read with yaml.safe_load and every name checked before anything runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from harness.data.sources import AMAZON_CATEGORIES, MOVIELENS
from harness.trial import TrialConfig
from methods.backbones import BACKBONES
from methods.multimodal import METHODS

GRID_DIR = Path(__file__).resolve().parent / "grids"
FILE_KEYS = {"description", "include", "fixed", "axes", "exclude", "resources"}
RESOURCE_KEYS = {"cpus_per_trial", "gpus_per_trial"}
CONFIG_FIELDS = {f.name: f for f in fields(TrialConfig)}


class GridError(ValueError):
    """A grid file that cannot be run; the message names the file, the key and the fix."""


@dataclass
class Grid:
    name: str
    description: str
    trials: list[TrialConfig]  # canonical, unique by key, in grid order
    resources: dict = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [t.key() for t in self.trials]


def shipped_grids() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


def grid_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = GRID_DIR / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise GridError(f"{name}: no such grid; shipped grids are {', '.join(shipped_grids())}, "
                    "or give the path of a .yaml grid file")


def load_grid(name: str, encoders_file=None) -> Grid:
    path = grid_path(name)
    trials, resources, description = _expand(path, encoders_file, seen=())
    unique: dict[str, TrialConfig] = {}
    for trial in trials:
        unique.setdefault(trial.key(), trial)
    return Grid(path.stem, description, list(unique.values()), resources)


def filter_trials(trials: list[TrialConfig], only: list[str]) -> list[TrialConfig]:
    """`--only axis=value[,value]` filters (all must hold); values compared as the grid's strings."""
    for item in only:
        if "=" not in item:
            raise GridError(f"--only {item!r}: expected axis=value, e.g. --only method=kdsr")
        axis, values = item.split("=", 1)
        if axis not in CONFIG_FIELDS:
            raise GridError(f"--only {item!r}: unknown axis {axis!r}; valid axes: {', '.join(CONFIG_FIELDS)}")
        wanted = {v.strip() for v in values.split(",")}
        trials = [t for t in trials if _as_text(getattr(t, axis)) in wanted]
    return trials


def _as_text(value) -> str:
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise GridError(f"{path}: a grid file is a mapping with keys {', '.join(sorted(FILE_KEYS))}")
    unknown = set(data) - FILE_KEYS
    if unknown:
        raise GridError(f"{path}: unknown keys {sorted(unknown)}; valid keys: {', '.join(sorted(FILE_KEYS))}")
    return data


def _expand(path: Path, encoders_file, seen: tuple) -> tuple[list[TrialConfig], dict, str]:
    if path.resolve() in seen:
        raise GridError(f"{path}: includes itself (through {' -> '.join(p.name for p in seen)})")
    data = _read(path)
    seen = seen + (path.resolve(),)
    trials: list[TrialConfig] = []
    resources = dict(data.get("resources") or {})
    bad = set(resources) - RESOURCE_KEYS
    if bad:
        raise GridError(f"{path}: resources: unknown keys {sorted(bad)}; valid: {', '.join(sorted(RESOURCE_KEYS))}")
    for name in data.get("include") or []:
        included, included_resources, _ = _expand(grid_path(str(name)), encoders_file, seen)
        trials += included
        resources = {**included_resources, **resources}
    axes = data.get("axes") or {}
    fixed = data.get("fixed") or {}
    if not isinstance(axes, dict) or not isinstance(fixed, dict):
        raise GridError(f"{path}: 'axes' and 'fixed' are mappings of setting -> values")
    if axes:
        lists = {}
        for axis, values in axes.items():
            if not isinstance(values, list) or not values:
                raise GridError(f"{path}: axes.{axis}: give a non-empty list of values, e.g. {axis}: [value]")
            lists[axis] = [_check(path, f"axes.{axis}", axis, v, encoders_file) for v in values]
        base = {k: _check(path, f"fixed.{k}", k, v, encoders_file) for k, v in fixed.items()}
        excludes = [_exclusion(path, i, item, encoders_file) for i, item in enumerate(data.get("exclude") or [])]
        for combo in itertools.product(*lists.values()):
            setting = {**base, **dict(zip(lists, combo))}
            if any(all(setting.get(k, getattr(TrialConfig(), k)) in vs for k, vs in ex.items()) for ex in excludes):
                continue
            trial = TrialConfig(**setting)
            if trial.backbone == "pop" and trial.method != "id":
                continue  # the most-popular baseline has no input embeddings to fuse modalities into
            trials.append(trial.canonical())
    elif fixed or data.get("exclude"):
        raise GridError(f"{path}: 'fixed' and 'exclude' need 'axes'")
    if not trials:
        raise GridError(f"{path}: the grid has no trials (empty axes, or everything excluded)")
    return trials, resources, str(data.get("description", "")).strip()


def _exclusion(path: Path, index: int, item, encoders_file) -> dict:
    if not isinstance(item, dict):
        raise GridError(f"{path}: exclude[{index}]: give a mapping axis -> value or list of values")
    out = {}
    for axis, values in item.items():
        values = values if isinstance(values, list) and axis != "encoder" else [values]
        out[axis] = [_check(path, f"exclude[{index}].{axis}", axis, v, encoders_file) for v in values]
    return out


def _check(path: Path, where: str, name: str, value, encoders_file):
    """Validate one setting's value and return it in TrialConfig's type."""
    if name not in CONFIG_FIELDS:
        raise GridError(f"{path}: {where}: unknown setting {name!r}; valid settings: {', '.join(CONFIG_FIELDS)}")
    default = getattr(TrialConfig(), name)
    if name == "encoder":
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GridError(f"{path}: {where}: an encoder value is a name or a list of names (one per modality)")
        from encoders.registry import registry

        known = registry(encoders_file)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise GridError(f"{path}: {where}: unknown encoder {unknown[0]!r}; valid encoders: {', '.join(known)} "
                            "(or add one with --encoders-file)")
        return list(names)
    if name == "method" and value not in METHODS:
        raise GridError(f"{path}: {where}: unknown method {value!r}; valid methods: {', '.join(METHODS)}")
    if name == "backbone" and value not in BACKBONES:
        raise GridError(f"{path}: {where}: unknown backbone {value!r}; valid backbones: {', '.join(BACKBONES)}")
    if name == "dataset":
        amazon = [f"amazon-{c}" for c in AMAZON_CATEGORIES]
        if not isinstance(value, str) or not (value in MOVIELENS or value in amazon or Path(value).exists()):
            raise GridError(f"{path}: {where}: unknown data set {value!r}; valid data sets: "
                            f"{', '.join(list(MOVIELENS) + amazon)}, or a folder of RecBole atomic files")
        return value
    if isinstance(default, list):
        values = value if isinstance(value, list) else [value]
        kind = type(default[0]) if default else str
        return [_coerce(path, where, kind, v) for v in values]
    return _coerce(path, where, type(default), value)


def _coerce(path: Path, where: str, kind: type, value):
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    raise GridError(f"{path}: {where}: {value!r} is not a {kind.__name__}")
