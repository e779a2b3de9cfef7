"""Sweep grids: YAML files of axes whose product is a list of trials.

A grid file (harness/grids/NAME.yaml, or any path):

    description: what the grid is for
    include: [paper, scaling]        # optional: union with other grids (names or paths)
    preset: strong                   # optional: harness/presets/strong.yaml's values per data set / backbone
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
    search:                          # optional: the space of `--search optuna` (else harness.search's)
      lr: [loguniform, 1.0e-4, 1.0e-2]
      n_layers: [choice, [1, 2, 3]]

Trials are canonicalised (settings a method or backbone ignores are reset, see TrialConfig.canonical),
so an axis a method ignores does not multiply its trials; duplicates are dropped by key. Grid files are
data: read with yaml.safe_load, and every value of every trial is checked (TrialConfig.validate) before
anything runs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.presets import preset_values
from harness.trial import SETTINGS, TrialConfig
from kdsr_util.settings import SettingError

GRID_DIR = Path(__file__).resolve().parent / "grids"
FILE_KEYS = {"description", "include", "preset", "fixed", "axes", "exclude", "resources", "search"}
DISTRIBUTIONS = {"loguniform": 2, "uniform": 2, "choice": 1}  # name -> number of arguments
RESOURCE_KEYS = {"cpus_per_trial", "gpus_per_trial"}


class GridError(ValueError):
    """A grid file that cannot be run; the message names the file, the key and the fix."""


@dataclass
class Grid:
    name: str
    description: str
    trials: list[TrialConfig]  # canonical, unique by key, in grid order
    resources: dict = field(default_factory=dict)
    search: dict | None = None  # setting -> (distribution, arguments) for --search optuna; None: the default

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
    trials, resources, description, search = _expand(path, encoders_file, seen=())
    unique: dict[str, TrialConfig] = {}
    for trial in trials:
        unique.setdefault(trial.key(), trial)
    return Grid(path.stem, description, list(unique.values()), resources, search)


def _search_space(path: Path, raw) -> dict | None:
    """A grid's `search:` mapping -> {setting: (distribution, arguments)}, every name and value checked."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise GridError(f"{path}: search: a mapping of setting -> [distribution, arguments...], "
                        "e.g. lr: [loguniform, 1.0e-4, 1.0e-2]")
    space = {}
    for name, spec in raw.items():
        where = f"{path}: search.{name}"
        if name not in SETTINGS:
            raise GridError(f"{where}: unknown setting; valid settings: {', '.join(SETTINGS)}")
        if not isinstance(spec, list) or not spec or spec[0] not in DISTRIBUTIONS or len(spec) - 1 != DISTRIBUTIONS[spec[0]]:
            raise GridError(f"{where}: give [loguniform, low, high], [uniform, low, high] or [choice, [values]]")
        kind, arguments = spec[0], spec[1:]
        values = arguments[0] if kind == "choice" else arguments
        if kind == "choice" and (not isinstance(values, list) or not values):
            raise GridError(f"{where}: choice needs a non-empty list of values")
        for value in values:
            _check(path, f"search.{name}", name, value)
        if kind != "choice" and not values[0] < values[1]:
            raise GridError(f"{where}: low {values[0]} must be below high {values[1]}")
        space[name] = (kind, (values,) if kind == "choice" else tuple(arguments))
    return space


def filter_trials(trials: list[TrialConfig], only: list[str]) -> list[TrialConfig]:
    """`--only axis=value[,value]` filters (all must hold); values compared as the grid's strings."""
    for item in only:
        if "=" not in item:
            raise GridError(f"--only {item!r}: expected axis=value, e.g. --only method=kdsr")
        axis, values = item.split("=", 1)
        if axis not in SETTINGS:
            raise GridError(f"--only {item!r}: unknown axis {axis!r}; valid axes: {', '.join(SETTINGS)}")
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


def _expand(path: Path, encoders_file, seen: tuple) -> tuple[list[TrialConfig], dict, str, dict | None]:
    """A grid file -> its trials (with those of its includes), resources, description and search space
    (this file's own: an included grid's space is checked but not inherited)."""
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
        included, included_resources, _, _ = _expand(grid_path(str(name)), encoders_file, seen)
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
            lists[axis] = [_check(path, f"axes.{axis}", axis, v) for v in values]
        base = {k: _check(path, f"fixed.{k}", k, v) for k, v in fixed.items()}
        excludes = [_exclusion(path, i, item) for i, item in enumerate(data.get("exclude") or [])]
        preset = data.get("preset")
        for combo in itertools.product(*lists.values()):
            setting = {**base, **dict(zip(lists, combo))}
            if preset:  # the preset's values for this data set and backbone; fixed and axes win
                try:
                    setting = {**preset_values(str(preset), setting.get("dataset", SETTINGS["dataset"].default),
                                               setting.get("backbone", SETTINGS["backbone"].default), SETTINGS),
                               **setting}
                except SettingError as err:
                    raise GridError(f"{path}: preset: {err}") from None
            if any(all(setting.get(k, SETTINGS[k].default) in vs for k, vs in ex.items()) for ex in excludes):
                continue
            if setting.get("backbone") == "pop" and setting.get("method", SETTINGS["method"].default) != "id":
                continue  # the most-popular baseline has no input embeddings to fuse modalities into
            trials.append(_checked_trial(path, setting, encoders_file))
    elif fixed or data.get("exclude") or data.get("preset"):
        raise GridError(f"{path}: 'fixed', 'exclude' and 'preset' need 'axes' (they apply to this file's axes)")
    if not trials:
        raise GridError(f"{path}: the grid has no trials (empty axes, or everything excluded)")
    return trials, resources, str(data.get("description", "")).strip(), _search_space(path, data.get("search"))


def _exclusion(path: Path, index: int, item) -> dict:
    if not isinstance(item, dict):
        raise GridError(f"{path}: exclude[{index}]: give a mapping axis -> value or list of values")
    out = {}
    for axis, values in item.items():
        values = values if isinstance(values, list) and axis != "encoder" else [values]
        out[axis] = [_check(path, f"exclude[{index}].{axis}", axis, v) for v in values]
    return out


def _check(path: Path, where: str, name: str, value):
    """Validate one setting's value and return it in TrialConfig's type."""
    if name not in SETTINGS:
        raise GridError(f"{path}: {where}: unknown setting {name!r}; valid settings: {', '.join(SETTINGS)}")
    try:
        return SETTINGS[name].parse(value)
    except SettingError as err:
        raise GridError(f"{path}: {where}: {err}") from None


def _checked_trial(path: Path, setting: dict, encoders_file) -> TrialConfig:
    """A trial of the grid, every value and combination checked (names, list lengths, data set, encoders)."""
    trial = TrialConfig(**setting)
    try:
        trial.validate(encoders_file)
    except ValueError as err:
        shown = " ".join(f"{k}={_as_text(v)}" for k, v in setting.items())
        raise GridError(f"{path}: trial {shown}: {err}") from None
    return trial.canonical()
