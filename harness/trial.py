"""Single-trial runner: data set -> split -> backbone -> fit -> one JSON result record.

    python -m harness.trial --dataset ml-100k --backbone sasrec --method id --epochs 50 --seed 0 [--out r.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from harness.data import DataError, PreprocessOptions, load_dataset, make_split
from harness.data.split import (POPULARITY_BUCKETS, histories, popularity_buckets, seen_items, train_item_counts,
                                training_windows)
from harness.record import make_record, runtime_info, write_record
from methods.backbones import BACKBONES, build_backbone
from methods.evaluate import EvalSet
from methods.trainer import TrainConfig, fit, resolve_device, seed_everything

METHODS_AVAILABLE = ("id",)
METHODS_PLANNED = ("frozen", "two_stage", "mse_kd", "contrastive_kd", "kdsr", "kdsr_no_hol", "kdsr_no_code",
                   "kdsr_no_async")


@dataclass
class TrialConfig:
    dataset: str = "ml-100k"
    backbone: str = "sasrec"
    method: str = "id"
    seed: int = 0
    # data and protocol
    split: str = "loo"
    user_k: int = 5
    item_k: int = 5
    dedup: str = "exact"
    max_len: int = 50
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

    def backbone_hparams(self) -> dict:
        if self.backbone == "sasrec":
            return dict(dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads, inner_dim=self.inner_dim,
                        dropout=self.dropout, attn_dropout=self.attn_dropout)
        if self.backbone == "gru4rec":
            return dict(dim=self.dim, hidden=self.gru_hidden, dropout=self.gru_dropout)
        return {}


def _eval_set(data, split, positions, max_len, counts) -> EvalSet:
    targets = data.item_seq[positions]
    offsets, seen = seen_items(data, positions)
    groups, _ = popularity_buckets(counts, targets)
    return EvalSet(histories=torch.from_numpy(histories(data, positions, max_len)),
                   targets=torch.from_numpy(targets), seen_offsets=torch.from_numpy(offsets),
                   seen_items=torch.from_numpy(seen), groups=torch.from_numpy(groups),
                   group_names=POPULARITY_BUCKETS)


def run_trial(cfg: TrialConfig, data_dir=None, image_dir=None, progress: bool = True) -> dict:
    if cfg.method not in METHODS_AVAILABLE:
        if cfg.method in METHODS_PLANNED:
            raise NotImplementedError(f"method {cfg.method!r} is not implemented yet (KDSR and baselines: issue 4); "
                                      f"available: {', '.join(METHODS_AVAILABLE)}")
        raise ValueError(f"unknown method {cfg.method!r}")
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {', '.join(BACKBONES)}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    data = load_dataset(cfg.dataset, PreprocessOptions(cfg.user_k, cfg.item_k, cfg.dedup), data_dir=data_dir,
                        image_dir=image_dir, verbose=progress)
    split = make_split(data, cfg.split)
    counts = train_item_counts(data, split)
    _, thresholds = popularity_buckets(counts, np.array([1]))
    windows = torch.from_numpy(training_windows(data, split, cfg.max_len))
    valid = _eval_set(data, split, split.valid_pos, cfg.max_len, counts)
    test = _eval_set(data, split, split.test_pos, cfg.max_len, counts)

    model = build_backbone(cfg.backbone, data.n_items, cfg.max_len, torch.from_numpy(counts),
                           **cfg.backbone_hparams())
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            patience=cfg.patience, eval_batch_size=cfg.eval_batch_size,
                            exclude_history=cfg.exclude_history, device=device, precision=cfg.precision,
                            seed=cfg.seed, progress=progress, stop_at=cfg.stop_at_valid or None)
    result = fit(model, windows, valid, test, train_cfg)
    protocol = {
        "split": split.describe(),
        "ranking": "full ranking over all items (no sampled negatives); ties count against the model",
        "history_excluded": cfg.exclude_history,
        "model_selection": f"best validation {train_cfg.valid_metric} (patience {cfg.patience}); test evaluated once",
        "training_targets": "every training prefix, once per epoch, in windows of max_len",
        "n_train_targets": int(len(split.train_pos)),
        "n_valid": len(valid),
        "n_test": len(test),
        "popularity_buckets": thresholds,
    }
    return make_record(asdict(cfg), protocol, data.stats(), result, runtime_info(device, torch.get_num_threads()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrialConfig()
    for f in fields(TrialConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    parser.set_defaults()
    parser.add_argument("--data-dir", default=None, help="folder with downloaded files (Amazon)")
    parser.add_argument("--image-dir", default=None, help="local item images named <item id>.jpg")
    parser.add_argument("--out", default=None, help="also write the JSON record to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = TrialConfig(**{f.name: getattr(args, f.name) for f in fields(TrialConfig)})
    try:
        record = run_trial(cfg, data_dir=args.data_dir, image_dir=args.image_dir, progress=not args.quiet)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NotImplementedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out:
        write_record(record, args.out)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
