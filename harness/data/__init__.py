"""Data sets and protocol. `load_dataset` resolves a name to a source, preprocesses once and caches.

Names: `ml-100k`, `ml-1m` (embedded, from pip packages); Amazon 2014 `amazon-<beauty|sports|toys|clothing>`
or `amazon-<Category>`, Amazon 2018 `amazon2018-<Category>` (files in `data_dir`); Amazon 2023
`amazon2023-<Category>` and its official split `amazon2023-last_out-<Category>` (files in `data_dir`, else
the Hugging Face Hub through `datasets`); or a path to a folder of RecBole atomic files (`folder` or
`folder/<name>`). See harness/data/amazon.py for the files and fields each reads.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.data.cache import atomic_dir, cache_key, cache_root, is_complete
from harness.data.dataset import SequenceData, stats_table
from harness.data.errors import DataError
from harness.data.preprocess import PreprocessOptions, preprocess
from harness.data.amazon import (AMAZON_CATEGORIES, amazon2018_files, amazon2023_files, amazon_files, load_amazon,
                                 load_amazon2018, load_amazon2023, parse_amazon2023)
from harness.data.sources import MOVIELENS, apply_image_dir, atomic_files, load_atomic, load_movielens, movielens_folder
from harness.data.split import Split, make_split

# Bump when preprocessing changes meaning, so old caches are rebuilt.
FORMAT_VERSION = 1

PREFIXES = ("amazon-", "amazon2018-", "amazon2023-")

__all__ = ["DataError", "PreprocessOptions", "SequenceData", "Split", "unknown_dataset", "load_dataset",
           "make_split", "resolve_source", "stats_table"]


def unknown_dataset(name) -> DataError | None:
    """The error for a name that is no data set this harness can load (None when it can), checked without
    reading any file: a built-in name, `amazon-<category>` (its files are looked for when it loads) or a
    folder of RecBole atomic files (`folder`, or `folder/<name>` with `folder/<name>.inter`)."""
    if isinstance(name, str) and name:
        prefix = next((p for p in PREFIXES if name.startswith(p)), None)
        if name in MOVIELENS or (prefix and len(name) > len(prefix)):
            return None
        path = Path(name)
        if path.is_dir() or (path.parent.is_dir() and (path.parent / f"{path.name}.inter").is_file()):
            return None
    known = ", ".join(list(MOVIELENS) + [f"amazon-{c}" for c in AMAZON_CATEGORIES])
    return DataError(name, None, "unknown data set (not a built-in name nor a folder of atomic files)",
                     f"use one of {known} (or amazon-<Category>, amazon2018-<Category>, amazon2023-<Category>, "
                     "amazon2023-last_out-<Category>), or a folder that holds <name>.inter")


def resolve_source(name: str, data_dir: str | Path | None = None):
    """-> (kind, source files to fingerprint, loader). Nothing is parsed until the loader is called."""
    if name in MOVIELENS:
        folder = movielens_folder(name)
        _, files = atomic_files(folder, name)
        return "movielens", files, lambda: load_movielens(name)
    if name.startswith("amazon-"):
        folder = Path(data_dir or "data")
        category, source, meta = amazon_files(folder, name[len("amazon-"):])
        return "amazon", [source, meta], lambda: load_amazon(folder, category)
    if name.startswith("amazon2018-"):
        folder = Path(data_dir or "data")
        files = list(amazon2018_files(folder, name[len("amazon2018-"):]))
        return "amazon2018", files, lambda: load_amazon2018(folder, name[len("amazon2018-"):])
    if name.startswith("amazon2023-"):
        category, benchmark = parse_amazon2023(name)
        # local files, or the Hub's files once in the HF cache: fingerprinted by content like every source
        parts = amazon2023_files(data_dir, category, benchmark)
        files = [f for part in parts.values() for f in part]
        return "amazon2023", files, lambda: load_amazon2023(data_dir, name, parts)
    path = Path(name)
    if path.is_dir():
        _, files = atomic_files(path)
        return "atomic", files, lambda: load_atomic(path)
    if path.parent.is_dir() and (path.parent / f"{path.name}.inter").is_file():
        _, files = atomic_files(path.parent, path.name)
        return "atomic", files, lambda: load_atomic(path.parent, path.name)
    raise unknown_dataset(name) or DataError(name, None, "no such data set", "check the name")


def load_dataset(name: str, options: PreprocessOptions | None = None, data_dir: str | Path | None = None,
                 image_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 verbose: bool = True) -> SequenceData:
    """Load from the processed cache, or read, preprocess and cache atomically."""
    options = options or PreprocessOptions()
    kind, files, loader = resolve_source(name, data_dir)
    key = cache_key(kind, files, options.as_dict(), FORMAT_VERSION)
    folder = Path(cache_dir or cache_root() / "data") / f"{Path(name).name}-{key}"
    if is_complete(folder):
        data = SequenceData.load(folder)
    else:
        data = preprocess(loader(), options)
        data.meta["cache_key"] = key
        with atomic_dir(folder) as tmp:
            data.save(tmp)
        if verbose:
            print(f"[data] processed {name} -> {folder}", file=sys.stderr)
            print(stats_table([data.stats()]), file=sys.stderr)
    if image_dir:  # local images replace URLs after the cache, so a later fetch is seen without reprocessing
        data.items = apply_image_dir(data.items, image_dir)
        data.meta["image_dir"] = str(Path(image_dir).resolve())
    data.meta["cache_dir"] = str(folder)
    return data


def item_content(name: str, data_dir=None, image_dir=None, user_k: int = 5, item_k: int = 5,
                 dedup: str = "exact") -> dict:
    """Item texts and images in item-id order (index 0 = padding): the `kdsr_bench.item_sources` entry
    point through which `encoders.extract` reads data sets without importing the harness."""
    data = load_dataset(name, PreprocessOptions(user_k, item_k, dedup), data_dir=data_dir, image_dir=image_dir,
                        verbose=False)
    return {"dataset": Path(name).name, "texts": data.items["text"].tolist(), "images": data.items["image"].tolist()}
