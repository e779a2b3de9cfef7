"""Amazon review data sets (McAuley Lab): the 2014, 2018 and 2023 releases. Each loader returns a RawData.

- 2014 (`amazon-<Category>`): `reviews_<Category>_5.json.gz` (or `ratings_<Category>.csv`) and
  `meta_<Category>.json.gz`, whose lines are Python dict literals (parsed with `ast.literal_eval`,
  which evaluates literals only, never code).
- 2018 (`amazon2018-<Category>`): `<Category>_5.json.gz` or `<Category>.json.gz` (reviewerID, asin,
  overall, unixReviewTime) and `meta_<Category>.json.gz` (strict JSON lines).
- 2023 (`amazon2023-<Category>`): read with Hugging Face `datasets.load_dataset`, from a local folder
  (`<Category>.jsonl[.gz]` + `meta_<Category>.jsonl[.gz]`, or the Hub's Parquet folders
  `raw_review_<Category>/` + `raw_meta_<Category>/`) or else from the Hub (`McAuley-Lab/Amazon-Reviews-2023`,
  `raw/review_categories/<Category>.jsonl`; the HF cache, HF_HOME and HF_HUB_OFFLINE apply). The files are
  named with hf:// paths for datasets' `json` / `parquet` / `csv` builders, not by config name: the
  repository's loading script (`raw_review_<Category>` configs) no longer runs in datasets >= 4
  (hyp1231/AmazonReviews2023 issue 41).
  `amazon2023-last_out-<Category>` reads the official benchmark split instead
  (`benchmark/5core/last_out/<Category>.{train,valid,test}.csv`): each user's rows are ordered train,
  valid, test, so that leave-one-out reproduces the published split exactly.

Item text, in this order, each part truncated (TEXT_LIMITS): title, brand / store, categories, features,
description, details (2023); the whole text at most MAX_TEXT characters. Images: the first image URL
(2023: the MAIN image's `large`, else `hi_res`; 2018: `imageURLHighRes`; 2014: `imUrl`), or a local
file `<image_dir>/<item id>.(jpg|jpeg|png)` when one exists (see `python -m harness.data images`).
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from harness.data.errors import DataError
from harness.data.files import compression, read_csv, read_lines
from harness.data.sources import RawData, build_interactions, require_file

AMAZON_CATEGORIES = {  # 2014 short names
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "clothing": "Clothing_Shoes_and_Jewelry",
}
HUB_REPO = os.environ.get("KDSR_AMAZON2023_REPO", "McAuley-Lab/Amazon-Reviews-2023")
TEXT_LIMITS = {"title": 200, "brand": 80, "categories": 6, "features": 5, "description": 2, "details": 8}
MAX_TEXT = 1000
STAGES = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------- shared
def _records(path: Path, literals: bool, needed_key: str | None = None, wanted: set[str] | None = None):
    """Yield (line number, dict) per line of JSON (or, with `literals`, Python dict literals). With `wanted`,
    lines whose `needed_key` value is not in it are skipped before parsing (meta files list every item)."""
    pattern = re.compile(r"""['"]%s['"]\s*:\s*['"]([^'"]+)['"]""" % needed_key) if wanted is not None else None
    for number, line in read_lines(path):
        if pattern is not None:
            match = pattern.search(line)
            if match is None or match.group(1) not in wanted:
                continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if not literals:
                raise DataError(path, None, f"line {number} is not JSON",
                                "use the original files: one JSON object per line") from None
            try:
                record = ast.literal_eval(line)  # literals only: code is refused, never run
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise DataError(path, None, f"line {number} is neither JSON nor a Python dict literal",
                                "use the original Amazon 2014 files or strict JSON lines") from None
        if not isinstance(record, dict):
            raise DataError(path, None, f"line {number} is not an object", "one JSON object per line")
        yield number, record


def _as_list(value) -> list:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [f"{k}: {v}" for k, v in value.items() if v not in (None, "")]
    try:
        return list(value)
    except TypeError:
        return [value]


def item_text(title=None, brand=None, categories=None, features=None, description=None, details=None) -> str:
    """The item text from its fields in a fixed order, each truncated (TEXT_LIMITS), the whole to MAX_TEXT."""
    parts = []
    title = str(title or "").strip()[:TEXT_LIMITS["title"]]
    if title:
        parts.append(title)
    brand = str(brand or "").strip()[:TEXT_LIMITS["brand"]]
    if brand:
        parts.append(f"Brand: {brand}")
    flat = []
    for entry in _as_list(categories):
        for category in _as_list(entry):  # 2014: a list of category paths
            category = str(category).strip()
            if category and category not in flat:
                flat.append(category)
    if flat:
        parts.append("Categories: " + ", ".join(flat[:TEXT_LIMITS["categories"]]))
    for name, label in (("features", "Features: "), ("description", "")):
        values = [str(v).strip() for v in _as_list(features if name == "features" else description) if str(v).strip()]
        if values:
            parts.append(label + " ".join(values[:TEXT_LIMITS[name]]))
    if isinstance(details, str) and details.strip().startswith("{"):
        try:
            details = json.loads(details)  # the Hub's Parquet files store details as a JSON string
        except json.JSONDecodeError:
            pass
    detail_lines = [str(v) for v in _as_list(details)][:TEXT_LIMITS["details"]]
    if detail_lines:
        parts.append("Details: " + "; ".join(detail_lines))
    return ". ".join(p.rstrip(". ") for p in parts)[:MAX_TEXT]


def local_image(image_dir: Path | None, item: str, url: str) -> str:
    if image_dir is None:
        return url
    local = next((image_dir / f"{item}{ext}" for ext in (".jpg", ".jpeg", ".png")
                  if (image_dir / f"{item}{ext}").is_file()), None)
    return str(local) if local else url


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def _meta_rows(records, id_key: str, text, image, image_dir: Path | None) -> pd.DataFrame:
    rows = [(str(r.get(id_key, "")), text(r), local_image(image_dir, str(r.get(id_key, "")), image(r) or ""))
            for r in records]
    return pd.DataFrame(rows, columns=["item", "text", "image"]).drop_duplicates("item", keep="first")


def _release_files(folder: Path, category: str, release: str, review_names: list[str]) -> tuple[Path, Path]:
    """(the first review file of `review_names` found in `folder`, the meta file), or a DataError naming them."""
    reviews = _first_existing([folder / n for n in review_names])
    if reviews is None:
        raise DataError(folder / review_names[0], None, f"review file not found (nor {review_names[-1]})",
                        f"download {review_names[0]} (Amazon {release}) into {folder}")
    meta = _first_existing([folder / f"meta_{category}.json.gz", folder / f"meta_{category}.json"])
    meta = require_file(meta or folder / f"meta_{category}.json.gz", "item metadata file",
                        f"download meta_{category}.json.gz (Amazon {release}) into {folder}")
    return reviews, meta


# ---------------------------------------------------------------------------------------------- 2014
def amazon_files(folder: str | Path, category: str) -> tuple[str, Path, Path]:
    """(category, reviews or ratings file, meta file) of an Amazon 2014 category in `folder`."""
    folder = Path(folder)
    category = AMAZON_CATEGORIES.get(category.lower(), category)
    source, meta = _release_files(folder, category, "2014", [f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json",
                                                             f"ratings_{category}.csv"])
    return category, source, meta


def _review_interactions(path: Path, keys: tuple[str, str, str], release: str) -> tuple[pd.DataFrame, int]:
    users, items, times = [], [], []
    for number, record in _records(path, literals=release == "2014"):
        for key in keys:
            if key not in record:
                raise DataError(path, key, f"missing on line {number}",
                                f"use the Amazon {release} review format ({', '.join(keys)})")
        users.append(record[keys[0]])
        items.append(record[keys[1]])
        times.append(record[keys[2]])
    return build_interactions(users, items, times, path, keys[2])


def load_amazon(folder: str | Path, category: str, image_dir: str | Path | None = None) -> RawData:
    category, source, meta_path = amazon_files(folder, category)
    if source.name.startswith("reviews_"):
        interactions, invalid = _review_interactions(source, ("reviewerID", "asin", "unixReviewTime"), "2014")
    else:
        table = read_csv(source, header=None, dtype=str, keep_default_na=False)
        if table.shape[1] != 4:
            raise DataError(source, None, f"expected 4 columns (user,item,rating,timestamp), found {table.shape[1]}",
                            "use the Amazon 2014 ratings-only CSV without a header")
        interactions, invalid = build_interactions(table[0], table[1], table[3], source, "timestamp (column 4)")
    wanted = set(interactions["item"].unique())
    records = (r for _, r in _records(meta_path, literals=True, needed_key="asin", wanted=wanted))
    items = _meta_rows(records, "asin", lambda r: item_text(r.get("title"), r.get("brand"), r.get("categories"),
                                                            description=r.get("description")),
                       lambda r: str(r.get("imUrl") or ""), Path(image_dir) if image_dir else None)
    return RawData(name=f"amazon-{category}", interactions=interactions, items=items.reset_index(drop=True),
                   files=[source, meta_path], invalid_rows=invalid)


# ---------------------------------------------------------------------------------------------- 2018
def amazon2018_files(folder: str | Path, category: str) -> tuple[Path, Path]:
    folder = Path(folder)
    reviews, meta = _release_files(folder, category, "2018", [f"{category}_5.json.gz", f"{category}_5.json",
                                                            f"{category}.json.gz", f"{category}.json"])
    return reviews, meta


def _first_url(value) -> str:
    urls = [u for u in _as_list(value) if isinstance(u, str) and u.startswith(("http://", "https://"))]
    return urls[0] if urls else ""


def load_amazon2018(folder: str | Path, category: str, image_dir: str | Path | None = None) -> RawData:
    reviews, meta_path = amazon2018_files(folder, category)
    interactions, invalid = _review_interactions(reviews, ("reviewerID", "asin", "unixReviewTime"), "2018")
    wanted = set(interactions["item"].unique())
    records = (r for _, r in _records(meta_path, literals=False, needed_key="asin", wanted=wanted))
    items = _meta_rows(records, "asin",
                       lambda r: item_text(r.get("title"), r.get("brand"), r.get("category"), r.get("feature"),
                                           r.get("description")),
                       lambda r: _first_url(r.get("imageURLHighRes")) or _first_url(r.get("imageURL")),
                       Path(image_dir) if image_dir else None)
    return RawData(name=f"amazon2018-{category}", interactions=interactions, items=items.reset_index(drop=True),
                   files=[reviews, meta_path], invalid_rows=invalid)


# ---------------------------------------------------------------------------------------------- 2023
def parse_amazon2023(name: str) -> tuple[str, bool]:
    """'amazon2023-All_Beauty' -> ('All_Beauty', False); 'amazon2023-last_out-All_Beauty' -> (.., True)."""
    rest = name[len("amazon2023-"):]
    benchmark = rest.startswith("last_out-")
    return (rest[len("last_out-"):] if benchmark else rest), benchmark


def amazon2023_files(folder: str | Path | None, category: str, benchmark: bool) -> dict[str, tuple[str, list[str]]]:
    """{part: (datasets builder, data files)} for reviews (or the benchmark's train/valid/test) and meta:
    local files in `folder` where they exist, else hf:// paths into the Hub repository."""
    folder = Path(folder) if folder else None
    hub = f"hf://datasets/{HUB_REPO}"

    def local(names: list[str], parquet_dir: str | None) -> tuple[str, list[str]] | None:
        if folder is None:
            return None
        found = _first_existing([folder / n for n in names])
        if found is not None:
            return ("csv" if ".csv" in found.name else "json"), [str(found)]
        if parquet_dir and (folder / parquet_dir).is_dir():
            shards = sorted(str(p) for p in (folder / parquet_dir).glob("*.parquet"))
            if shards:
                return "parquet", shards
        return None

    parts = {}
    if benchmark:
        for stage in STAGES:
            names = [f"{category}.{stage}.csv", f"{category}.{stage}.csv.gz"]
            parts[stage] = local(names, None) or ("csv", [f"{hub}/benchmark/5core/last_out/{category}.{stage}.csv"])
    else:
        names = [f"{category}.jsonl", f"{category}.jsonl.gz"]
        parts["reviews"] = local(names, f"raw_review_{category}") or (
            "json", [f"{hub}/raw/review_categories/{category}.jsonl"])
    names = [f"meta_{category}.jsonl", f"meta_{category}.jsonl.gz"]
    parts["meta"] = local(names, f"raw_meta_{category}") or ("json", [f"{hub}/raw/meta_categories/meta_{category}.jsonl"])
    return parts


def _hf_table(builder: str, files: list[str], columns: list[str], what: str, optional: tuple = ()) -> pd.DataFrame:
    """One part through datasets.load_dataset, only `columns` (and those of `optional` it has), as pandas;
    any failure is a DataError."""
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(files[0], None, "needs the Hugging Face `datasets` package", "pip install datasets") from None
    for file in files:  # a local file that is truncated or mislabelled: say so before datasets trips on it
        if "://" not in file:
            compression(Path(file))
    try:
        table = datasets.load_dataset(builder, data_files=files, split="train")
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "this part did not load"
        if any("://" not in f for f in files):
            for file in files:
                if "://" not in file and file.endswith(".gz"):
                    for _ in read_lines(file):  # raises the precise truncation / decoding error
                        pass
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        fix = ("download the files once online (or into --data-dir), then HF_HUB_OFFLINE=1 reads the HF cache"
               if offline or "://" in files[0] else "check the file: one JSON object per line, or a Parquet / CSV table")
        raise DataError(files[0], None, f"{what} could not be loaded with datasets ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})", fix) from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(files[0], missing[0], f"column missing (found: {', '.join(table.column_names)})",
                        f"use the Amazon 2023 {what} files ({', '.join(columns)})")
    return table.select_columns(columns + [c for c in optional if c in table.column_names]).to_pandas()


def _millis_to_seconds(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    numeric = pd.to_numeric(frame["timestamp"], errors="coerce")
    if numeric.isna().any():
        row = int(np.flatnonzero(numeric.isna().to_numpy())[0])
        raise DataError(file, "timestamp", f"cannot parse {frame['timestamp'].iloc[row]!r} (data row {row + 1}) "
                        "as unix milliseconds", "use the Amazon 2023 files, whose timestamps are milliseconds")
    return frame.assign(timestamp=numeric.to_numpy(dtype=np.float64) / 1000.0)


def _image_2023(images) -> str:
    """`images` is a list of {thumb, large, variant, hi_res} (JSONL) or a dict of lists (the Hub's Parquet)."""
    if isinstance(images, dict):
        keys = [k for k in ("variant", "large", "hi_res") if k in images]
        length = max((len(_as_list(images[k])) for k in keys), default=0)
        images = [{k: _as_list(images[k])[i] if i < len(_as_list(images[k])) else None for k in keys}
                  for i in range(length)]
    entries = [e for e in _as_list(images) if isinstance(e, dict)]
    entries.sort(key=lambda e: e.get("variant") != "MAIN")  # stable: the MAIN image first, else file order
    for entry in entries:
        for key in ("large", "hi_res"):
            url = entry.get(key)
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url
    return ""


def load_amazon2023(folder: str | Path | None, name: str, image_dir: str | Path | None = None) -> RawData:
    category, benchmark = parse_amazon2023(name)
    parts = amazon2023_files(folder, category, benchmark)
    review_columns = ["user_id", "parent_asin", "timestamp"]
    if benchmark:
        frames = []
        for rank, stage in enumerate(STAGES):
            builder, files = parts[stage]
            frame = _millis_to_seconds(_hf_table(builder, files, review_columns, f"benchmark {stage}"), files[0])
            frames.append(frame.assign(stage=rank))
            if stage != "train":
                repeated = frame["user_id"].duplicated()
                if repeated.any():
                    raise DataError(files[0], "user_id", f"user {frame['user_id'][repeated].iloc[0]!r} has more than "
                                    f"one {stage} row", "use the last_out split: one valid and one test row per user")
        reviews = pd.concat(frames, ignore_index=True)
        users = [set(f["user_id"]) for f in frames]
        for stage, other in ((1, 0), (2, 1)):
            if users[stage] != users[other]:
                odd = next(iter(users[stage] ^ users[other]))
                raise DataError(parts[STAGES[stage]][1][0], "user_id",
                                f"user {odd!r} is in only one of {STAGES[other]} and {STAGES[stage]}",
                                "use the three files of one last_out split")
        files = [f for stage in STAGES for f in parts[stage][1]]
    else:
        builder, files = parts["reviews"]
        reviews = _millis_to_seconds(_hf_table(builder, files, review_columns, "reviews"), files[0])
    interactions, invalid = build_interactions(reviews["user_id"], reviews["parent_asin"], reviews["timestamp"],
                                               Path(files[0]), "timestamp",
                                               extra={"stage": reviews["stage"]} if benchmark else None)
    builder, meta_files = parts["meta"]
    table = _hf_table(builder, meta_files, ["parent_asin"], "item metadata",
                      optional=("title", "store", "categories", "features", "description", "details", "images"))
    records = table[table["parent_asin"].isin(set(interactions["item"]))].to_dict("records")
    items = _meta_rows(records, "parent_asin",
                       lambda r: item_text(r.get("title"), r.get("store"), r.get("categories"), r.get("features"),
                                           r.get("description"), r.get("details")),
                       lambda r: _image_2023(r.get("images")), Path(image_dir) if image_dir else None)
    prefix = "amazon2023-last_out-" if benchmark else "amazon2023-"
    return RawData(name=prefix + category, interactions=interactions, items=items.reset_index(drop=True),
                   files=[Path(f) for f in files + meta_files if "://" not in f], invalid_rows=invalid,
                   presplit=benchmark)

