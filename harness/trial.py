"""Single-trial runner: data set -> split -> (features) -> backbone + method -> fit -> one JSON record.

    python -m harness.trial --dataset ml-100k --backbone sasrec --method id --epochs 50 --seed 0 [--out r.json]
    python -m harness.trial --dataset ml-1m --backbone sasrec --method kdsr --encoder minilm-l6 --K 50 --D 8 --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from harness.data import DataError, PreprocessOptions, load_dataset, make_split
from harness.data.split import (POPULARITY_BUCKETS, histories, keep_recent_training, popularity_buckets,
                                popularity_thresholds, seen_items, train_item_counts, training_windows)
from harness.record import config_key, make_record, runtime_info, write_record
from methods.backbones import BACKBONES, build_backbone
from methods.evaluate import EvalSet
from methods.multimodal import METHODS, DistillSettings, build_method_model
from methods.trainer import TrainConfig, fit, resolve_device, seed_everything


@dataclass
class TrialConfig:
    dataset: str = "ml-100k"
    backbone: str = "sasrec"
    method: str = "id"
    encoder: list[str] = field(default_factory=list)  # one encoder per modality
    seed: int = 0
    # data and protocol
    split: str = "loo"
    user_k: int = 5
    item_k: int = 5
    dedup: str = "exact"
    max_len: int = 50
    train_fraction: float = 1.0  # <1: sparse regime, keep each user's most recent training interactions
    exclude_history: bool = False
    # model
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_dim: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.2
    gru_hidden: int = 128
    gru_dropout: float = 0.3
    mask_prob: float = 0.2  # BERT4Rec cloze masking
    # modality tables and distillation (methods other than id)
    reduce: str = "pca"  # none | pca | autoencoder: how the table that starts from the features is reduced
    reduce_dim: int = 0  # 0: the model dimension
    fusion: str = "gate"
    score_with: str = "id"  # id: scores use ID embeddings (the reference); fused: the fused item vectors
    init_std: float = 0.02
    K: int = 50
    D: int = 8
    codebook_sample: int = 100_000
    tau: float = 1.5
    holistic_form: str = "norm"
    lambda_hol: list[float] = field(default_factory=lambda: [4.0])
    lambda_code: list[float] = field(default_factory=lambda: [0.5])
    lambda_mse: float = 1.0
    lambda_contrastive: float = 1.0
    pairs_per_seq: int = 64
    async_gamma: float = 2.0
    async_schedule: list[int] = field(default_factory=lambda: [5, 10])
    # optimisation
    epochs: int = 200
    batch_size: int = 32  # windows per step (up to max_len targets each); 32 beat 128 on ML-100k validation
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    eval_batch_size: int = 512
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0  # 0: leave torch's default
    stop_at_valid: float = 0.0  # >0: stop when validation NDCG@10 reaches it (time-to-quality benchmarks)

    def canonical(self) -> "TrialConfig":
        """The same trial with every setting its method and backbone ignore reset to the default, so that
        e.g. an `id` trial is one trial whatever encoder, K or tau a grid lists (and hashes to one key)."""
        spec = METHODS[self.method] if self.method in METHODS else None
        ignored: set[str] = set()
        if spec is not None:
            for flag, names in IGNORED_UNLESS.items():
                if not getattr(spec, flag):
                    ignored |= set(names)
        ignored |= set(BACKBONE_FIELDS) - set(BACKBONE_FIELDS_USED.get(self.backbone, ()))
        defaults = TrialConfig()
        return replace(self, **{name: getattr(defaults, name) for name in ignored})

    def key(self) -> str:
        """The result-store key: a hash of the canonical config without execution-only settings."""
        return config_key(self.canonical().key_fields())

    def key_fields(self) -> dict:
        defaults = TrialConfig.__dataclass_fields__
        return {k: v for k, v in asdict(self).items() if k not in EXECUTION_FIELDS
                and not (k in KEY_IF_SET and v == defaults[k].default)}

    def backbone_hparams(self) -> dict:
        transformer = dict(dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads, inner_dim=self.inner_dim,
                           dropout=self.dropout, attn_dropout=self.attn_dropout)
        if self.backbone == "sasrec":
            return transformer
        if self.backbone == "bert4rec":
            return {**transformer, "mask_prob": self.mask_prob}
        if self.backbone == "gru4rec":
            return dict(dim=self.dim, hidden=self.gru_hidden, dropout=self.gru_dropout)
        return {}

    def distill_settings(self) -> DistillSettings:
        return DistillSettings(fusion=self.fusion, init_std=self.init_std, tau=self.tau,
                               holistic_form=self.holistic_form, lambda_hol=list(self.lambda_hol),
                               lambda_code=list(self.lambda_code), lambda_mse=self.lambda_mse,
                               lambda_contrastive=self.lambda_contrastive, pairs_per_seq=self.pairs_per_seq,
                               proj_dim=self.dim, seed=self.seed, score_with=self.score_with)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        uses_features = METHODS[self.method].modalities
        if uses_features and not self.encoder:
            raise ValueError(f"method {self.method!r} needs --encoder (e.g. --encoder minilm-l6)")
        if self.backbone == "pop" and self.method != "id":
            raise ValueError("the pop backbone has no input embeddings: use --method id")
        if self.score_with not in ("id", "fused"):
            raise ValueError(f"--score-with {self.score_with!r}: use id or fused")
        if self.train_fraction < 1 and self.split != "loo":
            raise ValueError("--train-fraction is defined for the leave-one-out split only")


# Settings that change where and how fast a trial runs, not what it computes: not part of its key.
EXECUTION_FIELDS = ("device", "threads", "eval_batch_size")
# Settings added after the first results: part of a key only when set to a non-default value, so the keys
# of earlier records stay valid.
KEY_IF_SET = ("score_with",)
# MethodSpec flag -> the settings that only matter when the flag is set.
IGNORED_UNLESS = {
    "modalities": ("encoder", "reduce", "reduce_dim", "fusion", "init_std", "score_with"),
    "holistic": ("tau", "holistic_form", "lambda_hol"),
    "codes": ("K", "D", "codebook_sample", "lambda_code", "pairs_per_seq"),
    "mse": ("lambda_mse",),
    "contrastive": ("lambda_contrastive",),
    "asynchronous": ("async_gamma", "async_schedule"),
}
BACKBONE_FIELDS = ("n_layers", "n_heads", "inner_dim", "dropout", "attn_dropout", "gru_hidden", "gru_dropout",
                   "mask_prob", "dim")
BACKBONE_FIELDS_USED = {
    "sasrec": ("dim", "n_layers", "n_heads", "inner_dim", "dropout", "attn_dropout"),
    "bert4rec": ("dim", "n_layers", "n_heads", "inner_dim", "dropout", "attn_dropout", "mask_prob"),
    "gru4rec": ("dim", "gru_hidden", "gru_dropout"),
    "pop": (),
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
    cfg.validate()
    cfg = cfg.canonical()
    started = time.perf_counter()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    data = load_dataset(cfg.dataset, PreprocessOptions(cfg.user_k, cfg.item_k, cfg.dedup), data_dir=data_dir,
                        image_dir=image_dir, verbose=progress)
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
        from harness.features import load_modalities  # imports transformers: only when features are needed

        modalities, feature_summaries = load_modalities(
            data, cfg.encoder, windows, reduce=cfg.reduce, reduce_dim=cfg.reduce_dim or cfg.dim, n_codes=cfg.K,
            n_sub=cfg.D, codebook_sample=cfg.codebook_sample, seed=cfg.seed, need_codes=spec.codes, device=device,
            model_dir=model_dir, encoders_file=encoders_file, progress=progress)
        seed_everything(cfg.seed)  # extraction and k-means must not shift the model's initialisation
    backbone = build_backbone(cfg.backbone, data.n_items, cfg.max_len, torch.from_numpy(counts),
                              **cfg.backbone_hparams())
    model = build_method_model(cfg.method, backbone, modalities, cfg.distill_settings())
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            patience=cfg.patience, eval_batch_size=cfg.eval_batch_size,
                            exclude_history=cfg.exclude_history, device=device, precision=cfg.precision,
                            seed=cfg.seed, progress=progress, stop_at=cfg.stop_at_valid or None,
                            async_gamma=cfg.async_gamma,
                            async_schedule=tuple(cfg.async_schedule) if spec.asynchronous else ())
    setup_seconds = time.perf_counter() - started  # data, split, features, codebook, model: the harness's share
    result = fit(model, torch.from_numpy(windows), valid, test, train_cfg, checkpoint=checkpoint, on_epoch=on_epoch)
    protocol = {
        "split": split.describe(),
        "ranking": "full ranking over all items (no sampled negatives); ties count against the model",
        "history_excluded": cfg.exclude_history,
        "model_selection": f"best validation {train_cfg.valid_metric} (patience {cfg.patience}); test evaluated once",
        "training_targets": "every training prefix, once per epoch, in windows of max_len",
        "train_fraction": cfg.train_fraction,
        "n_train_targets": int(len(split.train_pos)),
        "n_valid": len(valid),
        "n_test": len(test),
        "popularity_buckets": thresholds,
    }
    record = make_record(cfg.key(), asdict(cfg), protocol, data.stats(), result, runtime_info(device, torch.get_num_threads()))
    record["timing"] = {"setup_seconds": setup_seconds, "trial_seconds": time.perf_counter() - started}
    record["features"] = feature_summaries
    record["method"] = {"name": cfg.method, **asdict(spec),
                        "settings": asdict(cfg.distill_settings()) if spec.modalities else None}
    record["retention_curve"] = [{"epoch": c["epoch"], **c["retention"]} for c in result["curves"] if "retention" in c]
    return record


LIST_TYPES = {"encoder": str, "lambda_hol": float, "lambda_code": float, "async_schedule": int}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrialConfig()
    for f in fields(TrialConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, list):
            parser.add_argument(flag, nargs="*", type=LIST_TYPES[f.name], default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.add_argument("--data-dir", default=None, help="folder with downloaded files (Amazon)")
    parser.add_argument("--image-dir", default=None, help="local item images named <item id>.jpg")
    parser.add_argument("--model-dir", default=None, help="pre-downloaded models (<dir>/<hub id>)")
    parser.add_argument("--encoders-file", default=None, help="YAML/JSON with extra encoder entries")
    parser.add_argument("--out", default=None, help="also write the JSON record to this file")
    parser.add_argument("--checkpoint", default=None,
                        help="save the training state here after every epoch; resume from it if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = TrialConfig(**{f.name: getattr(args, f.name) for f in fields(TrialConfig)})
    try:
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
