"""Per-epoch training checkpoints, so that a killed or preempted long trial resumes where it stopped.

A checkpoint holds everything the next epoch depends on (model, optimizer, the shuffling generator, the
global RNGs, early-stopping state and the curves so far): a resumed run gives the same result as an
uninterrupted one. Files are written atomically and loaded with `weights_only=True` (no pickled code).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached], "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainingState:
    """The trainer's state between epochs. With the model, the optimizer, the shuffling generator and the
    global RNGs it is everything the next epoch depends on; `save` and `load` write and read all of it."""

    epoch: int = 0  # the last finished epoch
    best_score: float = -1.0
    best_epoch: int = 0
    best_state: dict | None = None  # the model's weights at the best epoch
    stale: int = 0  # epochs since the last improvement
    curves: list = field(default_factory=list)
    train_seconds: list = field(default_factory=list)
    eval_seconds: list = field(default_factory=list)

    def save(self, path: str | Path, fingerprint: dict, model, optimizer, generator: torch.Generator) -> None:
        """Write atomically (temp file + rename): a kill during the write leaves the previous checkpoint."""
        payload = {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "generator": generator.get_state(), "rng": rng_state(),
                   **{f.name: getattr(self, f.name) for f in fields(self)}}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, fingerprint: dict, model, optimizer,
             generator: torch.Generator) -> "TrainingState | None":
        """Restore model, optimizer, generator and RNGs from the checkpoint at `path` and return the state;
        None when there is none. One written for another training setup is an error (resuming it would
        mix two trials), and so is an unreadable file."""
        saved = _read(Path(path), fingerprint)
        if saved is None:
            return None
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        restore_rng(saved["rng"])
        return cls(**{f.name: saved[f.name] for f in fields(cls)})


def _read(path: Path, fingerprint: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: never resume from it silently
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: {first_line[:200]}); "
                         f"delete it to start the trial over") from err
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        theirs = (state.get("fingerprint") if isinstance(state, dict) else None) or {}
        differ = sorted(k for k in set(theirs) | set(fingerprint) if theirs.get(k) != fingerprint.get(k))
        raise ValueError(f"checkpoint {path} was written by a different training setup (differs in "
                         f"{', '.join(differ)}); delete it to start the trial over")
    missing = [f.name for f in fields(TrainingState) if f.name not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {', '.join(missing)} (written by an older version); "
                         "delete it to start the trial over")
    return state
