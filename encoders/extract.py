"""Extract frozen-encoder features for every item once, into the feature cache; resumable and shardable.

    python -m encoders.extract --dataset ml-1m --encoder minilm-l6 [--batch-size N] [--device auto|cpu|cuda]

Data sets are resolved through the `kdsr_bench.item_sources` entry point (this project registers
`harness.data:item_content`), so `encoders` never imports the recommender side; `--items FILE` reads
any Parquet/CSV table with `text` and/or `image` columns instead (row i = item i + 1).
Several GPUs: run one process per GPU with `--shard i/n`; each encodes every n-th chunk and the last
one to finish assembles the entry.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from encoders.cache import (CorruptCacheError, FeatureSet, atomic_save, atomic_write_json, cache_root, content_digest,
                            entry_key, open_entry, remove_entry, sha256_file, weights_fingerprint)
from encoders.models import Encoder, compute_dtype, load_encoder
from encoders.reduce import reduce_features
from encoders.registry import EncoderSpec, get_spec, resolve_source


@dataclass
class ItemContent:
    """Per-item content in item-id order; index 0 is padding."""

    dataset: str
    texts: list[str]
    images: list[str]

    def values(self, modality: str) -> list[str]:
        return self.texts if modality == "text" else self.images


def has_content(values: list[str], modality: str) -> np.ndarray:
    present = np.array([bool(v and v.strip()) for v in values], dtype=bool)
    if modality == "image":
        present &= np.array([Path(v).is_file() if v else False for v in values], dtype=bool)
    present[0] = False
    return present


def entry_folder(content: ItemContent, spec: EncoderSpec, device: str, storage_dtype: str,
                 model_dir=None, cache_dir=None) -> tuple[Path, dict]:
    values = content.values(spec.modality)
    digest = content_digest(values, spec.modality)
    payload = {
        "spec": spec.identity(),
        "weights": weights_fingerprint(resolve_source(spec, model_dir)),
        "content": digest,
        "compute_dtype": str(compute_dtype(spec, device)).replace("torch.", ""),
        "storage_dtype": storage_dtype,
    }
    root = Path(cache_dir or cache_root()) / "features" / f"{content.dataset}-{digest[:12]}"
    return root / f"{spec.name}-{entry_key(payload)}", payload


def _chunk_ok(path: Path, rows: int, dim: int | None) -> bool:
    try:
        chunk = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return chunk.shape[0] == rows and (dim is None or chunk.shape[1] == dim)


def extract_features(content: ItemContent, spec: EncoderSpec, *, cache_dir=None, batch_size: int = 64,
                     device: str = "cpu", storage_dtype: str = "float32", chunk_size: int = 1024, model_dir=None,
                     shard: tuple[int, int] = (0, 1), progress: bool = True, encoder: Encoder | None = None,
                     log=print) -> FeatureSet | None:
    """Return the cached features, extracting what is missing. None when other shards still have work.
    Two processes asked for the same entry and shard take turns (a file lock): the second waits, then
    finds the entry (or the first one's finished chunks) instead of encoding everything again."""
    folder, payload = entry_folder(content, spec, device, storage_dtype, model_dir, cache_dir)
    with _shard_lock(folder, shard):
        return _cached_or_extracted(folder, payload, content, spec, batch_size, device, storage_dtype, chunk_size,
                                    model_dir, shard, progress, encoder, log)


@contextlib.contextmanager
def _shard_lock(folder: Path, shard: tuple[int, int]):
    """An exclusive lock on <features>/.locks/<entry>.<i>-of-<n>; released by the OS if the holder dies."""
    lock_path = folder.parent / ".locks" / f"{folder.name}.{shard[0]}-of-{shard[1]}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached_or_extracted(folder, payload, content, spec, batch_size, device, storage_dtype, chunk_size, model_dir,
                         shard, progress, encoder, log) -> FeatureSet | None:
    if (folder / "manifest.json").exists():
        try:
            return open_entry(folder)
        except CorruptCacheError as err:
            log(f"[features] {err}: rebuilding")
            remove_entry(folder)
    modality = spec.modality
    values = content.values(modality)
    present = has_content(values, modality)
    if not present.any():
        raise ValueError(f"no item of {content.dataset} has {modality} content for encoder {spec.name!r}"
                         + (" (MovieLens ships no images: pass --image-dir with <item id>.jpg files)"
                            if modality == "image" else ""))
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    ids = np.flatnonzero(present)
    order = ids[np.argsort([len(values[i]) for i in ids], kind="stable")]  # similar lengths batch together
    if (partial / "order.npy").exists() and not np.array_equal(np.load(partial / "order.npy"), order):
        raise CorruptCacheError(f"{partial}: item order changed under the same key; delete the folder")
    atomic_save(order, partial / "order.npy")
    try:
        return _extract_chunks(folder, partial, order, values, present, content, spec, payload, storage_dtype, device,
                               batch_size, chunk_size, model_dir, shard, progress, encoder, log)
    except FileNotFoundError:
        if (folder / "manifest.json").exists():  # another process finished this entry meanwhile: use its result
            return open_entry(folder)
        raise


def _extract_chunks(folder, partial, order, values, present, content, spec, payload, storage_dtype, device,
                    batch_size, chunk_size, model_dir, shard, progress, encoder, log) -> FeatureSet | None:
    n_chunks = -(-len(order) // chunk_size)
    chunk_path = lambda c: partial / f"chunk-{c:05d}.npy"  # noqa: E731
    rows = lambda c: len(order[c * chunk_size:(c + 1) * chunk_size])  # noqa: E731
    index, count = shard
    todo = [c for c in range(n_chunks) if c % count == index and not _chunk_ok(chunk_path(c), rows(c), None)]
    load_seconds = encode_seconds = 0.0
    if todo:
        start = time.perf_counter()
        encoder = encoder or load_encoder(spec, device, model_dir)
        load_seconds = time.perf_counter() - start
        start = time.perf_counter()
        bar = tqdm(total=sum(rows(c) for c in todo), unit="item", desc=f"{spec.name} on {content.dataset}",
                   disable=not progress, smoothing=0.1)
        for c in todo:
            chunk_ids = order[c * chunk_size:(c + 1) * chunk_size]
            parts = []
            for lo in range(0, len(chunk_ids), batch_size):
                batch = [values[i] for i in chunk_ids[lo:lo + batch_size]]
                parts.append(encoder.encode(batch).numpy())
                bar.update(len(batch))
            vectors = np.concatenate(parts).astype(storage_dtype)
            if not np.isfinite(vectors).all():
                raise FloatingPointError(f"{spec.name}: non-finite features in chunk {c} (try --storage-dtype float32)")
            atomic_save(vectors, chunk_path(c))
        bar.close()
        encode_seconds = time.perf_counter() - start
    if not all(_chunk_ok(chunk_path(c), rows(c), None) for c in range(n_chunks)):
        log(f"[features] shard {index}/{count} done; other shards still extracting into {partial}")
        return None
    return _assemble(folder, partial, order, n_chunks, content, spec, payload, present, storage_dtype, device,
                     batch_size, encoder, load_seconds, encode_seconds, sum(rows(c) for c in todo), log)


def _assemble(folder, partial, order, n_chunks, content, spec, payload, present, storage_dtype, device, batch_size,
              encoder, load_seconds, encode_seconds, n_encoded, log) -> FeatureSet:
    chunks = [np.load(partial / f"chunk-{c:05d}.npy") for c in range(n_chunks)]
    dim = chunks[0].shape[1]
    if dim != spec.dim:
        log(f"[features] warning: {spec.name} produced {dim}-d features, the registry says {spec.dim}")
    features = np.zeros((len(present), dim), dtype=storage_dtype)
    features[order] = np.concatenate(chunks)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save(features, folder / "features.npy")
    atomic_save(present, folder / "mask.npy")
    manifest = {
        "encoder": spec.name,
        "spec": spec.as_dict(),
        "key": folder.name,
        "weights_fingerprint": payload["weights"],
        "model_revision": getattr(encoder, "revision", "") if encoder else "",
        "pooling": spec.resolved_pooling,
        "compute_dtype": payload["compute_dtype"],
        "storage_dtype": storage_dtype,
        "dim": int(dim),
        "dataset": content.dataset,
        "content_digest": payload["content"],
        "n_items": len(present) - 1,
        "missing": int(len(present) - 1 - present.sum()),
        "missing_fallback": "zero vector, mask False",
        "device": device,
        "batch_size": batch_size,
        "load_seconds": round(load_seconds, 3),
        "extract_seconds": round(encode_seconds, 3),
        "items_per_second": round(n_encoded / encode_seconds, 2) if encode_seconds else None,
        "features_bytes": (folder / "features.npy").stat().st_size,
        "features_sha256": sha256_file(folder / "features.npy"),
        "reductions": {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(manifest, folder / "manifest.json")  # last: marks the entry complete
    remove_entry(partial)
    return open_entry(folder, verify=False)


# ------------------------------------------------------------------------------------------------ CLI
def items_from_source(dataset: str, **options) -> ItemContent:
    """Resolve a data set name through the `kdsr_bench.item_sources` entry point."""
    found = entry_points(group="kdsr_bench.item_sources")
    if not found:
        raise RuntimeError("no item source is registered: install this project (pip install -e .) or pass --items FILE")
    source = next((ep for ep in found if ep.name == "default"), next(iter(found)))
    result = source.load()(dataset, **options)
    return ItemContent(result["dataset"], list(result["texts"]), list(result["images"]))


def items_from_file(path: str) -> ItemContent:
    import pandas as pd

    table = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path, dtype=str, keep_default_na=False)
    if "text" not in table.columns and "image" not in table.columns:
        raise ValueError(f"{path}: needs a 'text' and/or an 'image' column (found {', '.join(table.columns)})")
    texts = [""] + table.get("text", pd.Series([""] * len(table))).fillna("").astype(str).tolist()
    images = [""] + table.get("image", pd.Series([""] * len(table))).fillna("").astype(str).tolist()
    return ItemContent(Path(path).stem, texts, images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoders.extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="a data set name the harness knows (ml-100k, ml-1m, amazon-beauty, a folder)")
    parser.add_argument("--items", help="or: a Parquet/CSV table with text/image columns")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--storage-dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--shard", default="0/1", help="i/n: encode every n-th chunk starting at i (one process per GPU)")
    parser.add_argument("--model-dir", default=None, help="folder of pre-downloaded models (<dir>/<hub id>)")
    parser.add_argument("--encoders-file", default=None, help="YAML/JSON with extra registry entries")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-dir", default=None)
    parser.add_argument("--reduce", default="none", choices=["none", "pca", "autoencoder"],
                        help="also cache a reduced copy (recorded in the manifest)")
    parser.add_argument("--reduce-dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.dataset) == bool(args.items):
        parser.error("give exactly one of --dataset or --items")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        spec = get_spec(args.encoder, args.encoders_file)
        content = (items_from_file(args.items) if args.items else
                   items_from_source(args.dataset, data_dir=args.data_dir, image_dir=args.image_dir))
        index, count = (int(x) for x in args.shard.split("/"))
        start = time.perf_counter()
        result = extract_features(content, spec, batch_size=args.batch_size, device=device,
                                  storage_dtype=args.storage_dtype, chunk_size=args.chunk_size,
                                  model_dir=args.model_dir, shard=(index, count), progress=not args.quiet,
                                  log=lambda m: print(m, file=sys.stderr))
    except (KeyError, ValueError, ModuleNotFoundError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is None:
        return 0
    if args.reduce != "none":
        reduce_features(result, args.reduce, args.reduce_dim)
    m = result.manifest
    print(json.dumps({"cache": str(result.path), "items": m["n_items"], "missing": m["missing"], "dim": m["dim"],
                      "items_per_second": m["items_per_second"], "seconds": round(time.perf_counter() - start, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
