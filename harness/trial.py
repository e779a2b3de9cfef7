"""Single-trial runner: data set -> split -> (features) -> backbone + method -> fit -> one JSON record.

    python -m harness.trial --dataset ml-100k --backbone sasrec --method id --epochs 50 --seed 0 [--out r.json]
    python -m harness.trial --dataset ml-1m --backbone sasrec --method kdsr --encoder minilm-l6 --K 50 --D 8 --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from pathlib import Path

import torch

from encoders.registry import registry
from harness.data import DataError, PreprocessOptions, load_dataset, unknown_dataset, make_split
from harness.data.split import (POPULARITY_BUCKETS, ProtocolOptions, decide_history_exclusion, histories,
                                keep_recent_training,
                                RandomCrops, popularity_buckets, popularity_thresholds, seen_items,
                                train_item_counts, training_rows, training_windows)
from harness.features import FeatureSettings, load_modalities
from harness.presets import preset_values
from harness.record import config_key, make_record, runtime_info, write_record
from kdsr_util.settings import Setting, SettingError, declared, setting
from methods.backbones import BACKBONE_SETTINGS, BACKBONES, BackboneSettings
from methods.evaluate import EvalSet
from methods.losses import LossSettings
from methods.multimodal import METHODS, DistillSettings, build_method_model
from methods.trainer import TrainConfig, fit, resolve_device, seed_everything


@dataclass
class TrialSettings:
    """What a trial is (the grid's main axes besides the encoder) and how many threads it uses."""

    dataset: str = setting("ml-100k", help="ml-100k, ml-1m, amazon-<category> (2014), amazon2018-<Category>, "
                                           "amazon2023-<Category>, amazon2023-last_out-<Category>, or a folder of "
                                           "RecBole atomic files")
    backbone: str = setting("sasrec", choices=tuple(BACKBONES))
    method: str = setting("id", choices=tuple(METHODS))
    seed: int = setting(0, interval="[0, inf)")
    threads: int = setting(0, interval="[0, inf)", execution=True, help="torch threads; 0: leave torch's default")


# Each component's declared settings, in the order `--help` shows them. A trial setting is declared once,
# in one of these dataclasses, beside the code that reads it.
COMPONENTS = {"trial": TrialSettings, "data": PreprocessOptions, "protocol": ProtocolOptions,
              "backbone": BackboneSettings, "loss": LossSettings, "features": FeatureSettings, "method": DistillSettings,
              "training": TrainConfig}
# The settings whose values entered every result key up to the settings refactor (2026-12). A setting
# outside this frozen list enters a trial's key only when it differs from its default, so adding a
# setting moves no existing key (for a setting whose default is a new behaviour, `before` names the old one:
# the setting enters a key when it differs from that). Never edit this list.
KEYED_FIELDS_V1 = frozenset("""
    dataset backbone method encoder seed split user_k item_k dedup max_len train_fraction exclude_history dim
    n_layers n_heads inner_dim dropout attn_dropout gru_hidden gru_dropout mask_prob reduce reduce_dim fusion
    init_std K D codebook_sample tau holistic_form lambda_hol lambda_code lambda_mse lambda_contrastive
    pairs_per_seq async_gamma async_schedule epochs batch_size lr weight_decay patience precision
    stop_at_valid""".split())


def collect_settings(components: dict) -> dict[str, Setting]:
    out: dict[str, Setting] = {}
    for group, cls in components.items():
        for declaration in declared(cls, group):
            if declaration.name in out:
                raise TypeError(f"setting {declaration.name!r} is declared by both {out[declaration.name].group} "
                                f"and {group}: declare it once, beside the code that reads it")
            out[declaration.name] = declaration
    return out


class TrialConfigBase:
    """Canonical form, key, checks and routing of a flat trial config, all loops over `SETTINGS`."""

    SETTINGS: dict[str, Setting] = {}

    def is_used(self, name: str) -> bool:
        """Whether this trial's backbone and method read the setting (the others are reset by canonical)."""
        declaration = self.SETTINGS[name]
        if not declaration.applies(getattr(self, declaration.when[0]) if declaration.when else None):
            return False
        if declaration.group == "backbone" and self.backbone in BACKBONES:
            return name in BACKBONES[self.backbone].reads
        if declaration.group == "loss" and self.backbone in BACKBONES and not BACKBONES[self.backbone].trained:
            return False
        if declaration.needs and self.method in METHODS:
            return getattr(METHODS[self.method], declaration.needs)
        return True

    def canonical(self):
        """The same trial with every setting its method and backbone ignore reset to the default, so that
        e.g. an `id` trial is one trial whatever encoder, K or tau a grid lists (and hashes to one key)."""
        return replace(self, **{name: s.fresh_default() for name, s in self.SETTINGS.items()
                                if not self.is_used(name)})

    def key(self) -> str:
        """The result-store key: a hash of the canonical config without execution-only settings."""
        return config_key(self.canonical().key_fields())

    def key_fields(self) -> dict:
        out = {}
        for name, value in asdict(self).items():
            declaration = self.SETTINGS[name]
            if declaration.execution:
                continue
            if name in KEYED_FIELDS_V1 or (value != declaration.implied and self.is_used(name)):
                out[name] = value
        return out

    @classmethod
    def from_config(cls, config: dict):
        """A stored record's config: settings it predates take the value it implied (Setting.before)."""
        implied = {name: s.before for name, s in cls.SETTINGS.items() if s.before is not None and name not in config}
        return cls(**{**implied, **config})

    def with_values(self, values: dict):
        """This trial with some settings replaced; each value is parsed and checked by its declaration (a
        search's float for a per-modality weight becomes a one-element list)."""
        unknown = sorted(set(values) - set(self.SETTINGS))
        if unknown:
            raise SettingError(f"unknown settings {unknown}; valid settings: {', '.join(self.SETTINGS)}")
        return replace(self, **{name: self.SETTINGS[name].parse(value) for name, value in values.items()})

    def part(self, component, **extra):
        """The component's own config (e.g. TrainConfig) from this trial's values; `extra` overrides."""
        values = asdict(self)
        return component(**{**{s.name: values[s.name] for s in declared(component)}, **extra})

    def backbone_settings(self) -> dict:
        return {s.name: getattr(self, s.name) for s in BACKBONE_SETTINGS}

    def validate(self, encoders_file=None) -> None:
        """Every value, list length and combination, before anything is loaded. Raises ValueError naming the
        setting, the value and what is allowed."""
        for name, declaration in self.SETTINGS.items():
            declaration.check(getattr(self, name))
        unknown = unknown_dataset(self.dataset)
        if unknown is not None:
            raise unknown
        spec = METHODS[self.method]
        if spec.modalities and not self.encoder:
            raise SettingError(f"method {self.method!r} needs --encoder (e.g. --encoder minilm-l6)")
        if self.backbone == "pop" and self.method != "id":
            raise SettingError("the pop backbone has no input embeddings: use --method id")
        if self.train_samples == "stride" and self.sample_stride > self.max_len:
            raise SettingError(f"sample_stride {self.sample_stride} > max_len {self.max_len} would leave training "
                               "targets out of every window; use a stride of at most max_len")
        if self.loss_positions == "last" and not BACKBONES[self.backbone].next_item:
            next_item = ", ".join(name for name, spec in BACKBONES.items() if spec.next_item)
            raise SettingError(f"loss_positions last needs a next-item backbone ({next_item}), not "
                               f"{self.backbone!r}")
        if self.train_fraction < 1 and self.split != "loo":
            raise SettingError("train_fraction below 1 is defined for the leave-one-out split only (split loo)")
        for name, declaration in self.SETTINGS.items():
            value = getattr(self, name)
            if declaration.per_modality and self.is_used(name) and len(value) not in (1, len(self.encoder)):
                raise SettingError(f"{name}: {len(value)} values {value} for {len(self.encoder)} modalities; "
                                   f"give one value (every modality) or one per modality")
        for problem in BACKBONES[self.backbone].problems(self.backbone_settings()):
            raise SettingError(problem)
        if self.encoder:
            known = registry(encoders_file)
            unknown = [n for n in self.encoder if n not in known]
            if unknown:
                raise SettingError(f"encoder: unknown encoder {unknown[0]!r}; valid encoders: {', '.join(known)} "
                                   "(or add one with --encoders-file)")


def make_trial_config(settings: dict[str, Setting], name: str = "TrialConfig") -> type:
    """A flat dataclass with one field per declared setting (every setting can be a grid axis)."""
    specs = [(n, s.kind, field(default_factory=s.fresh_default) if s.kind is list else field(default=s.default))
             for n, s in settings.items()]
    cls = make_dataclass(name, specs, bases=(TrialConfigBase,), namespace={"SETTINGS": dict(settings)})
    cls.__module__ = __name__  # pickled by reference, as harness.trial.TrialConfig
    return cls


SETTINGS = collect_settings(COMPONENTS)
TrialConfig = make_trial_config(SETTINGS)
TrialConfig.__doc__ = ("One trial, flat: every declared setting (see COMPONENTS) is a field, and so can be a grid "
                       "axis. `python -m harness.trial --help` lists them by component.")


TRAINING_TARGETS = {
    "windows": "every training prefix, once per epoch, in windows of max_len",
    "last": "each user's most recent {L} training targets, once per epoch (SASRec+)",
    "crop": "one random window of up to {L} consecutive training targets per user, drawn anew every epoch",
    "stride": "overlapping windows of up to {L} training targets ending every {stride} targets, once per epoch",
    "prefix": "one row per training target, ending at it with up to {L} items of context, once per epoch",
}


def _eval_set(data, positions, max_len, counts, thresholds) -> EvalSet:
    targets = data.item_seq[positions]
    offsets, seen = seen_items(data, positions)
    groups = popularity_buckets(counts, targets, thresholds)
    return EvalSet(histories=torch.from_numpy(histories(data, positions, max_len)),
                   targets=torch.from_numpy(targets), seen_offsets=torch.from_numpy(offsets),
                   seen_items=torch.from_numpy(seen), groups=torch.from_numpy(groups),
                   group_names=POPULARITY_BUCKETS)


def run_trial(cfg: TrialConfig, data_dir=None, image_dir=None, model_dir=None, encoders_file=None,
              progress: bool = True, checkpoint=None, on_epoch=None) -> dict:
    """One trial -> its record. `checkpoint`: a file the training state is saved to after every epoch and
    resumed from when it exists (the caller deletes it once the record is safe); `on_epoch`: see methods.trainer.fit."""
    cfg.validate(encoders_file)
    cfg = cfg.canonical()
    started = time.perf_counter()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    data = load_dataset(cfg.dataset, cfg.part(PreprocessOptions), data_dir=data_dir, image_dir=image_dir,
                        verbose=progress)
    split = make_split(data, cfg.split)
    if cfg.train_fraction < 1:
        data = keep_recent_training(data, split, cfg.train_fraction)
        split = make_split(data, cfg.split)
    counts = train_item_counts(data, split)
    thresholds = popularity_thresholds(counts)
    windows = training_windows(data, split, cfg.max_len)
    valid = _eval_set(data, split.valid_pos, cfg.max_len, counts, thresholds)
    test = _eval_set(data, split.test_pos, cfg.max_len, counts, thresholds)

    spec = METHODS[cfg.method]
    modalities, feature_summaries = [], []
    if spec.modalities:
        modalities, feature_summaries = load_modalities(
            data, cfg.part(FeatureSettings), windows, model_dim=cfg.dim, seed=cfg.seed, need_codes=spec.codes,
            device=device, model_dir=model_dir, encoders_file=encoders_file, progress=progress)
        seed_everything(cfg.seed)  # extraction and k-means must not shift the model's initialisation
    distill = cfg.part(DistillSettings, proj_dim=cfg.dim, seed=cfg.seed)
    model = build_method_model(cfg.method, cfg.backbone, data.n_items, cfg.max_len, modalities, distill,
                               item_counts=torch.from_numpy(counts), backbone_settings=cfg.backbone_settings(),
                               loss=cfg.part(LossSettings))
    exclude_history, history_decision = decide_history_exclusion(cfg.exclude_history, data, split)
    # fast kernels are new trials, so their evaluation may also skip all-padding columns (the same scores up to
    # float rounding; fast records made before 2026-12-03's evaluation change evaluated at full width)
    train_cfg = cfg.part(TrainConfig, device=device, seed=cfg.seed, progress=progress, exclude_history=exclude_history,
                         trim_eval=cfg.kernels == "fast")
    setup_seconds = time.perf_counter() - started  # data, split, features, codebook, model: the harness's share
    samples = (RandomCrops(data, split, cfg.max_len) if cfg.train_samples == "crop" else
               torch.from_numpy(windows if cfg.train_samples == "windows" else
                                training_rows(data, split, cfg.max_len, cfg.train_samples, cfg.sample_stride)))
    result = fit(model, samples, valid, test, train_cfg, checkpoint=checkpoint, on_epoch=on_epoch)
    protocol = {
        "split": split.describe(),
        "ranking": "full ranking over all items (no sampled negatives); ties count against the model",
        "history_excluded": exclude_history,
        "history_decision": history_decision,
        "model_selection": f"best validation {train_cfg.valid_metric} (patience {cfg.patience}); test evaluated once",
        "training_targets": TRAINING_TARGETS[cfg.train_samples].format(L=cfg.max_len, stride=cfg.sample_stride),
        "train_fraction": cfg.train_fraction,
        "n_train_targets": int(len(split.train_pos)),
        "n_valid": len(valid),
        "n_test": len(test),
        "popularity_buckets": thresholds,
    }
    record = make_record(cfg.key(), asdict(cfg), protocol, data.stats(), result, runtime_info(device, torch.get_num_threads()))
    record["timing"] = {"setup_seconds": setup_seconds, "trial_seconds": time.perf_counter() - started}
    record["features"] = feature_summaries
    record["method"] = {"name": cfg.method, **asdict(spec), "settings": asdict(distill) if spec.modalities else None}
    record["retention_curve"] = [{"epoch": c["epoch"], **c["retention"]} for c in result["curves"] if "retention" in c]
    if spec.modalities:
        record["retention_probe"] = ("Spearman of student vs teacher cosines over 2,000 fixed pairs of items with "
                                     "content that occur in training; curves[].retention_all_items: pairs of any "
                                     "items with content (the probe of records before 2026-12)")
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {}
    for name, cls in COMPONENTS.items():
        module = "harness.trial" if cls.__module__ == "__main__" else cls.__module__
        groups[name] = parser.add_argument_group(f"{name} settings ({module}.{cls.__name__})")
    for name, declaration in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        group = groups[declaration.group]
        notes = [declaration.help] if declaration.help else []
        interval = f", in {declaration.interval}" if declaration.interval else ""
        notes.append(f"default {declaration.default}{interval}")
        if declaration.needs:
            notes.append(f"read by methods with {declaration.needs}")
        help_text = "; ".join(notes).replace("%", "%%")
        if declaration.kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=declaration.default, help=help_text)
        elif declaration.kind is list:
            group.add_argument(flag, nargs="*", type=declaration.element, default=declaration.fresh_default(),
                               help=help_text)
        else:
            group.add_argument(flag, type=declaration.kind, default=declaration.default,
                               choices=declaration.choices or None, help=help_text)
    parser.add_argument("--data-dir", default=None, help="folder with downloaded files (Amazon)")
    parser.add_argument("--image-dir", default=None, help="local item images named <item id>.jpg")
    parser.add_argument("--model-dir", default=None, help="pre-downloaded models (<dir>/<hub id>)")
    parser.add_argument("--encoders-file", default=None, help="YAML/JSON with extra encoder entries")
    parser.add_argument("--out", default=None, help="also write the JSON record to this file")
    parser.add_argument("--checkpoint", default=None,
                        help="save the training state here after every epoch; resume from it if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--preset", default=None,
                        help="start from a named preset's values for this data set (harness/presets/); explicit "
                             "flags still win")
    return parser


def explicit_settings(parser: argparse.ArgumentParser, argv) -> set[str]:
    """The settings given on the command line (not left at their defaults)."""
    defaults = {action.dest: action.default for action in parser._actions}
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    try:
        given, _ = parser.parse_known_args(argv)
    finally:
        for action in parser._actions:
            action.default = defaults[action.dest]
    return set(vars(given)) & set(SETTINGS)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {name: getattr(args, name) for name in SETTINGS}
    try:
        if args.preset:
            given = explicit_settings(parser, argv)
            preset = preset_values(args.preset, args.dataset, args.backbone, SETTINGS)
            values.update({k: v for k, v in preset.items() if k not in given})
        cfg = TrialConfig(**values)
        record = run_trial(cfg, data_dir=args.data_dir, image_dir=args.image_dir, model_dir=args.model_dir,
                           encoders_file=args.encoders_file, progress=not args.quiet,
                           checkpoint=args.checkpoint)
    except (DataError, ValueError, KeyError, ModuleNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        write_record(record, args.out)
    if args.checkpoint:
        Path(args.checkpoint).unlink(missing_ok=True)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
