"""Training loop: full-softmax cross-entropy, Adam, early stopping on validation, test once at the best epoch."""
from __future__ import annotations

import random
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from kdsr_util.settings import declared, setting
from methods.backbones import count_trainable
from methods.checkpoint import TrainingState
from methods.evaluate import EvalSet, evaluate
from methods.padding import trim_padding


PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    epochs: int = setting(200, interval="[1, inf)", help="at most this many epochs")
    batch_size: int = setting(32, interval="[1, inf)",
                              help="training windows per step (up to max_len targets each); 32 beat 128 on "
                                   "ML-100k validation")
    lr: float = setting(1e-3, interval="(0, inf)", help="Adam learning rate")
    weight_decay: float = setting(0.0, interval="[0, inf)")
    patience: int = setting(10, interval="[1, inf)",
                            help="epochs without a validation improvement before stopping")
    eval_batch_size: int = setting(512, interval="[1, inf)", execution=True, help="users per evaluation batch")
    exclude_history: bool = False  # remove the user's earlier items from the ranking (the harness decides it)
    trim_eval: bool = False  # evaluation batches cut to their longest history (the harness sets it with fast kernels)
    device: str = setting("cpu", pattern=r"auto|cpu|cuda(:\d+)?", execution=True,
                          help="auto, cpu, cuda or cuda:N")
    precision: str = setting("fp32", choices=PRECISIONS,
                             help="bf16: autocast for the training forward/backward (evaluation stays fp32)")
    length_buckets: int = setting(0, interval="[0, inf)",
                                  help="0: plain shuffled batches of full-width rows (every record before "
                                       "2026-12); N: each run of N batches of shuffled rows is sorted by length "
                                       "before it is cut into batches (then the batches are shuffled), and "
                                       "training and evaluation batches skip their all-padding columns")
    bucket_weights: str = setting("batch", choices=("batch", "targets"), when=("length_buckets", "[1, inf)"),
                                  help="with length buckets, batch: every batch's mean loss weighs the same (so "
                                       "targets in batches of short rows weigh more); targets: weighted by its "
                                       "share of the epoch's targets, as in unsorted batches (measured no better: "
                                       "results/buckets-ml100k)")
    stop_at_valid: float = setting(0.0, interval="[0, inf)",
                                   help=">0: stop once validation NDCG@10 reaches it (time-to-quality benchmarks)")
    # asynchronous learning for the model's `slow_parameters()` (KDSR's modality tables): their lr starts at
    # lr / gamma^len(schedule) and is multiplied by gamma at each epoch in the schedule
    async_gamma: float = setting(2.0, interval="(0, inf)", needs="asynchronous",
                                 help="slow-group lr factor per milestone")
    async_schedule: list[int] = setting([5, 10], interval="[1, inf)", needs="asynchronous",
                                        help="epochs at which the slow group's lr is multiplied by gamma")
    valid_metric: str = "NDCG@10"
    ks: tuple[int, ...] = (5, 10, 20)
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        """The declared checks also guard direct use (e.g. fp16, which used to train silently in fp32)."""
        for declaration in declared(TrainConfig):
            declaration.check(getattr(self, declaration.name))

    def as_dict(self) -> dict:
        return asdict(self)


class NonFiniteLossError(FloatingPointError):
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return name


def peak_memory_mb(device: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_max_rss"


def async_lr(epoch: int, lr: float, gamma: float, schedule: tuple[int, ...]) -> float:
    """Learning rate of the slow group at a 1-based epoch: lr / gamma^(milestones not yet reached)."""
    return lr / gamma ** sum(1 for milestone in schedule if epoch < milestone)


def _optimizer(model, cfg: TrainConfig):
    """Adam with a separate 'slow' group when the model has slow parameters and a schedule is set."""
    slow = [p for p in getattr(model, "slow_parameters", lambda: [])() if p.requires_grad]
    slow_ids = {id(p) for p in slow} if cfg.async_schedule else set()
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in slow_ids]
    groups = [{"params": rest, "name": "model"}]
    if slow_ids:
        groups.append({"params": slow, "name": "slow"})
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


# TrainConfig fields that do not change what a run computes: a checkpoint may resume under other values.
EXECUTION_ONLY = ("progress", "device", "eval_batch_size", "trim_eval")


def early_stopping(score: float, best: float, stale: int, patience: int) -> tuple[float, int, bool, bool]:
    """-> (best, stale, improved, stop) after an epoch's validation `score` (bigger is better), as RecBole's
    `early_stopping`: `stale` counts the epochs since the last improvement; stop once it reaches `patience`."""
    improved = score > best
    best, stale = (score, 0) if improved else (best, stale + 1)
    return best, stale, improved, stale >= patience


def length_bucketed(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, buckets: int,
                    generator: torch.Generator) -> list[torch.Tensor]:
    """Batches of similar lengths: each run of `buckets` batches of the shuffled `order` is sorted by length
    and cut into batches; the batches are then shuffled."""
    batches = []
    for run in order.split(batch_size * buckets):
        batches += list(run[torch.sort(lengths[run], stable=True).indices].split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def target_weights(targets_per_row: torch.Tensor, batches: list[torch.Tensor]) -> list[float]:
    """A weight per batch for its mean loss: its targets over the mean targets per batch, so that the sum of
    weighted batch means is the mean over all targets times the number of batches, as in unsorted batches
    (where every batch holds about the mean). Length-sorted batches of short rows would otherwise give each of
    their few targets a larger share of the epoch."""
    per_batch = [float(targets_per_row[rows].sum()) for rows in batches]
    mean = sum(per_batch) / max(len(per_batch), 1)
    return [n / mean if mean > 0 else 1.0 for n in per_batch]


def train_epoch(model, windows, optimizer, generator: torch.Generator, cfg: TrainConfig,
                epoch: int) -> tuple[float, dict[str, float]]:
    """One pass over the training rows in a fresh shuffled order -> (mean loss, mean of each loss term).
    `windows`: a tensor [n, L + 1], or a callable seed -> int64 array [n, L + 1] drawn anew each epoch."""
    model.train()
    for group in optimizer.param_groups:
        if group["name"] == "slow":
            group["lr"] = async_lr(epoch, cfg.lr, cfg.async_gamma, tuple(cfg.async_schedule))
    device = cfg.device
    autocast = torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                              enabled=cfg.precision == "bf16")
    if not isinstance(windows, torch.Tensor):  # rows drawn afresh each epoch (e.g. random crops)
        windows = torch.from_numpy(windows(int(torch.randint(2**62, (1,), generator=generator))))
    order = torch.randperm(len(windows), generator=generator)
    batches = (length_bucketed(order, (windows > 0).sum(dim=1), cfg.batch_size, cfg.length_buckets, generator)
               if cfg.length_buckets else order.split(cfg.batch_size))
    weights = (target_weights((windows[:, 1:] > 0).sum(dim=1), batches)
               if cfg.length_buckets and cfg.bucket_weights == "targets" else [1.0] * len(batches))
    total, steps = 0.0, 0
    terms: dict[str, float] = {}
    bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not cfg.progress, unit="batch")
    for rows, weight in zip(bar, weights):
        batch = windows[rows]
        if cfg.length_buckets:  # cut to the longest real row (other shapes draw other dropout masks: opt-in)
            batch = trim_padding(batch)
        batch = batch.to(device, non_blocking=True)
        with autocast:
            parts = model.losses(batch)
            loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {steps}: "
                                     "lower the learning rate or use fp32")
        optimizer.zero_grad(set_to_none=True)
        (loss * weight if weight != 1.0 else loss).backward()
        optimizer.step()
        total += loss.item()
        for name, value in parts.items():
            terms[name] = terms.get(name, 0.0) + value.item()
        steps += 1
        if steps % 20 == 0:
            bar.set_postfix(loss=f"{total / steps:.4f}")
    steps = max(steps, 1)
    return total / steps, {k: v / steps for k, v in terms.items()}


def _epoch_metrics(model) -> dict:
    return model.epoch_metrics() if hasattr(model, "epoch_metrics") else {}


def fit(model, train_windows: torch.Tensor, valid: EvalSet, test: EvalSet, cfg: TrainConfig,
        checkpoint: str | None = None, on_epoch=None) -> dict:
    """Train with early stopping on `cfg.valid_metric`; the test set is evaluated once, at the best epoch.
    With `checkpoint` (a file path) the state is saved after every epoch and a run finds and resumes it.
    `on_epoch(curve_entry, best_score, best_epoch)` is called after every epoch (progress reporting)."""
    device = cfg.device
    model.to(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    n_params = count_trainable(model)
    eval_kwargs = dict(ks=cfg.ks, batch_size=cfg.eval_batch_size, device=device,
                       exclude_history=cfg.exclude_history, trim=cfg.length_buckets > 0 or cfg.trim_eval)
    state = TrainingState()
    stop_reason = "no training (no trainable parameters)"
    resumed_from = 0

    if n_params > 0:
        optimizer = _optimizer(model, cfg)
        generator = torch.Generator().manual_seed(cfg.seed)
        stop_reason = f"reached {cfg.epochs} epochs"
        fingerprint = {**{k: v for k, v in cfg.as_dict().items() if k not in EXECUTION_ONLY},
                       "ks": list(cfg.ks), "async_schedule": list(cfg.async_schedule),
                       "trainable_params": n_params,
                       "train_windows": list(train_windows.shape) if isinstance(train_windows, torch.Tensor)
                       else repr(train_windows)}
        saved = TrainingState.load(checkpoint, fingerprint, model, optimizer, generator) if checkpoint else None
        if saved is not None:
            state, resumed_from = saved, saved.epoch
            if cfg.progress:
                tqdm.write(f"resuming from {checkpoint} after epoch {resumed_from}")
        elif initial := _epoch_metrics(model):
            state.curves.append({"epoch": 0, **initial})
        for epoch in range(resumed_from + 1, cfg.epochs + 1):
            start = time.perf_counter()
            loss, terms = train_epoch(model, train_windows, optimizer, generator, cfg, epoch)
            state.train_seconds.append(time.perf_counter() - start)

            start = time.perf_counter()
            valid_result = evaluate(model, valid, **eval_kwargs)["overall"]
            state.eval_seconds.append(time.perf_counter() - start)
            score = valid_result[cfg.valid_metric]
            state.curves.append({"epoch": epoch, "train_loss": loss, "train_losses": terms,
                                 "train_seconds": state.train_seconds[-1], "eval_seconds": state.eval_seconds[-1],
                                 "valid": valid_result,
                                 **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups if g["name"] == "slow"},
                                 **_epoch_metrics(model)})
            if cfg.progress:
                tqdm.write(f"epoch {epoch:3d}  loss {loss:.4f}  valid {cfg.valid_metric} {score:.4f}  "
                           f"({state.train_seconds[-1]:.1f}s train, {state.eval_seconds[-1]:.1f}s eval)")
            state.best_score, state.stale, improved, stop = early_stopping(score, state.best_score, state.stale,
                                                                           cfg.patience)
            if improved:
                state.best_epoch = epoch
                state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if on_epoch is not None:
                on_epoch(state.curves[-1], state.best_score, state.best_epoch)
            if improved and cfg.stop_at_valid and score >= cfg.stop_at_valid:
                stop_reason = f"validation {cfg.valid_metric} reached the target {cfg.stop_at_valid}"
                break
            if stop:
                stop_reason = f"early stop: no {cfg.valid_metric} improvement for {cfg.patience} epochs"
                break
            if checkpoint:
                state.epoch = epoch
                state.save(checkpoint, fingerprint, model, optimizer, generator)
        model.load_state_dict(state.best_state)

    start = time.perf_counter()
    valid_best = evaluate(model, valid, **eval_kwargs)
    test_result = evaluate(model, test, **eval_kwargs)
    final_eval = time.perf_counter() - start
    peak, peak_kind = peak_memory_mb(device)
    return {
        "valid": valid_best,
        "test": test_result,
        "best_epoch": state.best_epoch,
        "epochs_run": sum(1 for c in state.curves if c["epoch"] > 0),
        "stop_reason": stop_reason,
        "resumed_after_epoch": resumed_from,
        "curves": state.curves,
        "trainable_params": n_params,
        "seconds_per_epoch": float(np.mean(state.train_seconds)) if state.train_seconds else 0.0,
        "eval_seconds": float(np.mean(state.eval_seconds)) if state.eval_seconds else final_eval / 2,
        "train_seconds_total": float(np.sum(state.train_seconds)),
        "peak_memory_mb": peak,
        "peak_memory_kind": peak_kind,
    }
