"""The feature cache: one folder per (data set content, encoder, options), read by every trial.

Layout of a finished entry `<root>/features/<dataset>-<content digest>/<encoder>-<key>/`:
  features.npy   float32/float16 [n_items + 1, dim], row 0 = padding (zeros), memory-mappable
  mask.npy       bool [n_items + 1]: True where the item had content (text / a readable image)
  manifest.json  written last: an entry without it, or whose files disagree with it, is never used
While extracting, `<entry>.partial/` holds `order.npy` and one `chunk-NNNNN.npy` per finished chunk,
so a killed extraction resumes from the last finished chunk.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
VERIFY_HASH_BELOW = 1 << 30  # full sha256 check of features.npy on open when smaller than 1 GiB


from kdsr_util import cache_root, sha256_file  # noqa: F401  (re-exported for encoders.extract)


def content_digest(values: list[str], modality: str) -> str:
    """Digest of the item contents in id order; for images also each file's size and mtime."""
    digest = hashlib.sha256(modality.encode())
    for value in values:
        digest.update(value.encode("utf-8", "surrogatepass") + b"\0")
        if modality == "image" and value and os.path.isfile(value):
            stat = os.stat(value)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def weights_fingerprint(source: str) -> str:
    """Explicit, cheap identity of local weights: names, sizes and mtimes of the files in the folder."""
    path = Path(source)
    if not path.exists():
        return f"hub:{source}"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path.parent)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def entry_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps({**payload, "format": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()[:12]


def atomic_save(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two extractors never share one
    with open(tmp, "wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass
class FeatureSet:
    features: np.ndarray  # memory-mapped [n_items + 1, dim]
    mask: np.ndarray  # bool [n_items + 1]
    manifest: dict
    path: Path


class CorruptCacheError(RuntimeError):
    pass


def open_entry(folder: Path, verify: bool = True) -> FeatureSet:
    """Open a finished entry; raise CorruptCacheError when anything disagrees with the manifest."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise CorruptCacheError(f"{folder}: no manifest (unfinished extraction)")
    try:
        manifest = json.loads(manifest_path.read_text())
        features = np.load(folder / "features.npy", mmap_mode="r")
        mask = np.load(folder / "mask.npy")
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise CorruptCacheError(f"{folder}: unreadable ({err})") from None
    expected = (manifest["n_items"] + 1, manifest["dim"])
    if features.shape != expected or str(features.dtype) != manifest["storage_dtype"] or mask.shape != expected[:1]:
        raise CorruptCacheError(f"{folder}: features {features.shape} {features.dtype} disagree with the manifest")
    size = (folder / "features.npy").stat().st_size
    if size != manifest["features_bytes"]:
        raise CorruptCacheError(f"{folder}: features.npy has {size} bytes, manifest says {manifest['features_bytes']}")
    if verify and size < VERIFY_HASH_BELOW and sha256_file(folder / "features.npy") != manifest["features_sha256"]:
        raise CorruptCacheError(f"{folder}: features.npy checksum mismatch")
    return FeatureSet(features, mask, manifest, folder)


def remove_entry(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
