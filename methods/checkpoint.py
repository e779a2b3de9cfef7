"""Per-epoch training checkpoints, so that a killed or preempted long trial resumes where it stopped.

A checkpoint holds everything the next epoch depends on (model, optimizer, the shuffling generator, the
global RNGs, early-stopping state and the curves so far): a resumed run gives the same result as an
uninterrupted one. Files are written atomically and loaded with `weights_only=True` (no pickled code).
"""
from __future__ import annotations

import os
import random
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


def save(path: str | Path, state: dict) -> None:
    """Write atomically (temp file + rename): a kill during the write leaves the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str | Path, fingerprint: dict) -> dict | None:
    """The checkpoint at `path`, or None when there is none. One written for another training setup is an
    error (resuming it would mix two trials)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: never resume from it silently
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: {first_line[:200]}); "
                         f"delete it to start the trial over") from err
    if state.get("fingerprint") != fingerprint:
        theirs = state.get("fingerprint") or {}
        differ = sorted(k for k in set(theirs) | set(fingerprint) if theirs.get(k) != fingerprint.get(k))
        raise ValueError(f"checkpoint {path} was written by a different training setup (differs in "
                         f"{', '.join(differ)}); delete it to start the trial over")
    return state
