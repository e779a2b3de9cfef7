"""Modality inputs for a trial: cached encoder features (extracted once per data set and encoder),
the optional reduction that initialises the student tables, and the cached k-means codebook."""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass

import numpy as np

from encoders.cache import atomic_save
from encoders.extract import ItemContent, extract_features
from encoders.reduce import METHODS as REDUCTIONS
from encoders.reduce import reduce_features
from encoders.registry import get_spec
from harness.data import load_dataset
from harness.data.dataset import SequenceData
from methods.distill import fit_codebook
from kdsr_util.settings import setting
from methods.multimodal import Modality


@dataclass
class FeatureSettings:
    """Which frozen encoders give a trial its modalities, and how their features become student tables and
    codes. The teacher is always the raw cached features."""

    encoder: list[str] = setting([], item=str, needs="modalities",
                                 help="one encoder per modality (see python -m encoders.list)")
    reduce: str = setting("pca", choices=REDUCTIONS, needs="modalities",
                          help="how the table that starts from the features is reduced to its width")
    reduce_dim: int = setting(0, interval="[0, inf)", needs="modalities", help="0: the model dimension")
    K: int = setting(50, interval="[2, inf)", needs="codes", help="correlation codes (k-means centroids)")
    D: int = setting(8, interval="[1, inf)", needs="codes", help="sub-spaces of each correlation vector")
    codebook_sample: int = setting(100_000, interval="[1, inf)", needs="codes",
                                   help="item pairs the k-means codebook is fitted on")


def window_pairs(windows: np.ndarray, n_pairs: int, seed: int) -> np.ndarray:
    """A random sample of item pairs that co-occur in a training window: int64 [P, 2]."""
    rng = np.random.default_rng(seed)
    seq = windows[:, :-1]
    lengths = (seq > 0).sum(axis=1)
    rows = rng.choice(np.flatnonzero(lengths >= 2), n_pairs)
    a = (rng.random(n_pairs) * lengths[rows]).astype(np.int64)
    b = (rng.random(n_pairs) * (lengths[rows] - 1)).astype(np.int64)
    b += b >= a
    return np.stack([seq[rows, a], seq[rows, b]], axis=1)


def codebook(entry, teacher: np.ndarray, windows: np.ndarray, n_codes: int, n_sub: int, sample: int,
             seed: int) -> tuple[np.ndarray, float | None]:
    """(K x D centroids, seconds to fit them or None when they came from the cache), cached beside the
    features under (K, D, sample, seed, training-pair source)."""
    source = hashlib.sha256(np.ascontiguousarray(windows).tobytes()).hexdigest()[:12]
    path = entry.path / f"codebook-K{n_codes}-D{n_sub}-n{sample}-s{seed}-{source}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape == (n_codes, n_sub):
            return cached, None
    start = time.perf_counter()
    pairs = window_pairs(windows, sample, seed)
    pairs = pairs[entry.mask[pairs[:, 0]] & entry.mask[pairs[:, 1]]]
    centroids = fit_codebook(teacher, pairs, n_codes, n_sub, seed)
    atomic_save(centroids, path)
    return centroids, time.perf_counter() - start


def load_modalities(data: SequenceData, settings: FeatureSettings, windows: np.ndarray, *, model_dim: int, seed: int,
                    need_codes: bool, device: str = "cpu", model_dir=None, encoders_file=None,
                    progress: bool = True) -> tuple[list[Modality], list[dict]]:
    content = ItemContent(data.name, data.items["text"].tolist(), data.items["image"].tolist())
    reduce, reduce_dim = settings.reduce, settings.reduce_dim or model_dim
    n_codes, n_sub, codebook_sample = settings.K, settings.D, settings.codebook_sample
    modalities, summaries = [], []
    for name in settings.encoder:
        spec = get_spec(name, encoders_file)
        entry = extract_features(content, spec, device=device, model_dir=model_dir, progress=progress,
                                 log=lambda m: print(m, file=sys.stderr))
        teacher = np.array(entry.features, dtype=np.float32)  # a writable copy of the memory-mapped cache
        init = reduce_features(entry, reduce, reduce_dim, seed=0) if reduce != "none" else teacher
        centroids, teacher_seconds = (codebook(entry, teacher, windows, n_codes, n_sub, codebook_sample, seed)
                                      if need_codes else (None, None))
        trained = np.zeros(len(teacher), dtype=bool)
        trained[np.unique(windows)] = True  # items in the training rows (inputs or targets)
        trained[0] = False
        modalities.append(Modality(f"{spec.modality}:{name}", init, teacher, np.asarray(entry.mask), centroids,
                                   trained))
        summaries.append({"encoder": name, "modality": spec.modality, "family": spec.family, "params": spec.params,
                          "dim": entry.manifest["dim"], "pooling": entry.manifest["pooling"],
                          "missing": entry.manifest["missing"], "cache": str(entry.path),
                          "init": f"{reduce}-{reduce_dim}" if reduce != "none" else "raw",
                          "extract_seconds": entry.manifest["extract_seconds"],
                          "items_per_second": entry.manifest["items_per_second"],
                          "compute_dtype": entry.manifest["compute_dtype"],
                          "cache_mb": round(entry.features.nbytes / 2 ** 20, 2),
                          "teacher_seconds": None if teacher_seconds is None else round(teacher_seconds, 3)})
    return modalities, summaries


def prepare(dataset: str, options, encoders: list[str], device: str = "cpu", data_dir=None, image_dir=None,
            model_dir=None, encoders_file=None) -> dict:
    """Preprocess a data set and extract every encoder's features into the caches (the sweep runs this once
    per data set before the trials that read them). Returns what was prepared."""
    data = load_dataset(dataset, options, data_dir=data_dir, image_dir=image_dir, verbose=False)
    content = ItemContent(data.name, data.items["text"].tolist(), data.items["image"].tolist())
    seconds = {}
    for name in encoders:
        entry = extract_features(content, get_spec(name, encoders_file), device=device, model_dir=model_dir,
                                 progress=False, log=lambda m: print(m, file=sys.stderr))
        seconds[name] = entry.manifest["extract_seconds"]
    return {"dataset": dataset, "items": data.n_items, "extract_seconds": seconds}
