"""Training loop: full-softmax cross-entropy, Adam, early stopping on validation, test once at the best epoch."""
from __future__ import annotations

import random
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from methods import checkpoint as ckpt
from methods.backbones import count_trainable
from methods.evaluate import EvalSet, evaluate


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 32  # training windows per step (each holds up to max_len targets)
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a validation improvement before stopping
    valid_metric: str = "NDCG@10"
    ks: tuple[int, ...] = (5, 10, 20)
    eval_batch_size: int = 512
    exclude_history: bool = False
    device: str = "cpu"
    precision: str = "fp32"  # "bf16": autocast for the training forward/backward (evaluation stays fp32)
    seed: int = 0
    progress: bool = True
    stop_at: float | None = None  # stop once validation reaches this value (time-to-quality benchmarks only)
    # asynchronous learning for the model's `slow_parameters()` (KDSR's modality tables): their lr starts at
    # lr / gamma^len(schedule) and is multiplied by gamma at each epoch in the schedule
    async_gamma: float = 2.0
    async_schedule: tuple[int, ...] = ()

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
EXECUTION_ONLY = ("progress", "device", "eval_batch_size")


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
                       exclude_history=cfg.exclude_history)
    curves: list[dict] = []
    train_seconds: list[float] = []
    eval_seconds: list[float] = []
    best_score, best_epoch, best_state, stop_reason = -1.0, 0, None, "no training (no trainable parameters)"
    resumed_from = 0

    if n_params > 0:
        optimizer = _optimizer(model, cfg)
        generator = torch.Generator().manual_seed(cfg.seed)
        autocast = torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                                  dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        stale = 0
        stop_reason = f"reached {cfg.epochs} epochs"
        fingerprint = {**{k: v for k, v in cfg.as_dict().items() if k not in EXECUTION_ONLY},
                       "ks": list(cfg.ks), "async_schedule": list(cfg.async_schedule),
                       "trainable_params": n_params, "train_windows": list(train_windows.shape)}
        saved = ckpt.load(checkpoint, fingerprint) if checkpoint else None
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            generator.set_state(saved["generator"])
            ckpt.restore_rng(saved["rng"])
            best_score, best_epoch, best_state, stale = (saved["best_score"], saved["best_epoch"],
                                                         saved["best_state"], saved["stale"])
            curves, train_seconds, eval_seconds = saved["curves"], saved["train_seconds"], saved["eval_seconds"]
            resumed_from = saved["epoch"]
            if cfg.progress:
                tqdm.write(f"resuming from {checkpoint} after epoch {resumed_from}")
        else:
            initial = model.epoch_metrics() if hasattr(model, "epoch_metrics") else {}
            if initial:
                curves.append({"epoch": 0, **initial})
        for epoch in range(resumed_from + 1, cfg.epochs + 1):
            model.train()
            for group in optimizer.param_groups:
                if group["name"] == "slow":
                    group["lr"] = async_lr(epoch, cfg.lr, cfg.async_gamma, cfg.async_schedule)
            start = time.perf_counter()
            order = torch.randperm(len(train_windows), generator=generator)
            total, steps = 0.0, 0
            terms: dict[str, float] = {}
            bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch}", leave=False,
                       disable=not cfg.progress, unit="batch")
            for lo in bar:
                batch = train_windows[order[lo:lo + cfg.batch_size]].to(device, non_blocking=True)
                with autocast:
                    parts = model.losses(batch)
                    loss = sum(parts.values())
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, "
                                             f"step {steps}: lower the learning rate or use fp32")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
                for name, value in parts.items():
                    terms[name] = terms.get(name, 0.0) + value.item()
                steps += 1
                if steps % 20 == 0:
                    bar.set_postfix(loss=f"{total / steps:.4f}")
            train_seconds.append(time.perf_counter() - start)

            start = time.perf_counter()
            valid_result = evaluate(model, valid, **eval_kwargs)["overall"]
            eval_seconds.append(time.perf_counter() - start)
            score = valid_result[cfg.valid_metric]
            curves.append({"epoch": epoch, "train_loss": total / max(steps, 1),
                           "train_losses": {k: v / max(steps, 1) for k, v in terms.items()},
                           "train_seconds": train_seconds[-1], "eval_seconds": eval_seconds[-1],
                           "valid": valid_result,
                           **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups if g["name"] == "slow"},
                           **(model.epoch_metrics() if hasattr(model, "epoch_metrics") else {})})
            if cfg.progress:
                tqdm.write(f"epoch {epoch:3d}  loss {total / max(steps, 1):.4f}  valid {cfg.valid_metric} "
                           f"{score:.4f}  ({train_seconds[-1]:.1f}s train, {eval_seconds[-1]:.1f}s eval)")
            improved = score > best_score
            if improved:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            if on_epoch is not None:
                on_epoch(curves[-1], best_score, best_epoch)
            if improved and cfg.stop_at is not None and score >= cfg.stop_at:
                stop_reason = f"validation {cfg.valid_metric} reached the target {cfg.stop_at}"
                break
            if stale >= cfg.patience:
                stop_reason = f"early stop: no {cfg.valid_metric} improvement for {cfg.patience} epochs"
                break
            if checkpoint:
                ckpt.save(checkpoint, {"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                                       "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                                       "rng": ckpt.rng_state(), "best_score": best_score, "best_epoch": best_epoch,
                                       "best_state": best_state, "stale": stale, "curves": curves,
                                       "train_seconds": train_seconds, "eval_seconds": eval_seconds})
        model.load_state_dict(best_state)

    start = time.perf_counter()
    valid_best = evaluate(model, valid, **eval_kwargs)
    test_result = evaluate(model, test, **eval_kwargs)
    final_eval = time.perf_counter() - start
    peak, peak_kind = peak_memory_mb(device)
    return {
        "valid": valid_best,
        "test": test_result,
        "best_epoch": best_epoch,
        "epochs_run": sum(1 for c in curves if c["epoch"] > 0),
        "stop_reason": stop_reason,
        "resumed_after_epoch": resumed_from,
        "curves": curves,
        "trainable_params": n_params,
        "seconds_per_epoch": float(np.mean(train_seconds)) if train_seconds else 0.0,
        "eval_seconds": float(np.mean(eval_seconds)) if eval_seconds else final_eval / 2,
        "train_seconds_total": float(np.sum(train_seconds)),
        "peak_memory_mb": peak,
        "peak_memory_kind": peak_kind,
    }
