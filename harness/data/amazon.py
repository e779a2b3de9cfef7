"""Amazon review data sets (McAuley Lab): the 2014, 2018 and 2023 releases. Each loader returns a RawData.

- 2014 (`amazon-<Category>`): `reviews_<Category>_5.json.gz` (or `ratings_<Category>.csv`) and
  `meta_<Category>.json.gz`, whose lines are Python dict literals (parsed with `ast.literal_eval`,
  which evaluates literals only, never code).
- 2018 (`amazon2018-<Category>`): `<Category>_5.json.gz` or `<Category>.json.gz` (reviewerID, asin,
  overall, unixReviewTime) and `meta_<Category>.json.gz` (strict JSON lines).
- 2023 (`amazon2023-<Category>`): from a local folder (`<Category>.jsonl[.gz]` + `meta_<Category>.jsonl[.gz]`,
  or the Hub's Parquet folders `raw_review_<Category>/` + `raw_meta_<Category>/`), else from the Hub dataset
  `McAuley-Lab/Amazon-Reviews-2023` (`raw/review_categories/<Category>.jsonl`, `raw/meta_categories/...`),
  downloaded once into the HF cache with `hf_hub_download` (HF_HOME and HF_HUB_OFFLINE apply; the
  repository's loading script no longer runs in datasets >= 4, hyp1231/AmazonReviews2023 issue 41). Reviews
  and the benchmark CSVs are read with `datasets.load_dataset` and explicit column types; meta JSONL line by
  line (its records vary in shape). `amazon2023-last_out-<Category>` reads the official benchmark split
  instead (`benchmark/5core/last_out/<Category>.{train,valid,test}.csv`): each user's rows are ordered
  train, valid, test, so that leave-one-out reproduces the published split exactly.

Item text, in this order, each part truncated (TEXT_LIMITS): title, brand / store, categories, features,
description, details (2023); the whole text at most MAX_TEXT characters. Images: the first image URL
(2023: the MAIN image's `large`, else `hi_res`; 2018: `imageURLHighRes`; 2014: `imUrl`); `load_dataset`'s
`image_dir` replaces it by a local `<item id>.(jpg|jpeg|png)` where one exists (`python -m harness.data images`).
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
from harness.data.files import compression, read_csv, read_lines, read_parquet
from harness.data.sources import RawData, build_interactions, require_file

AMAZON_CATEGORIES = {  # 2014 short names
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "clothing": "Clothing_Shoes_and_Jewelry",
}
HUB_REPO = os.environ.get("KDSR_AMAZON2023_REPO", "McAuley-Lab/Amazon-Reviews-2023")
# title and brand: characters; categories, features, description paragraphs and details: entries
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
        return [f"{k}: {v}" for k, v in value.items() if v is not None and not (isinstance(v, str) and not v)]
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


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def _meta_rows(records, id_key: str, text, image) -> pd.DataFrame:
    rows = [(str(r.get(id_key, "")), text(r), image(r) or "") for r in records]
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


def load_amazon(folder: str | Path, category: str) -> RawData:
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
                       lambda r: str(r.get("imUrl") or ""))
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


def load_amazon2018(folder: str | Path, category: str) -> RawData:
    reviews, meta_path = amazon2018_files(folder, category)
    interactions, invalid = _review_interactions(reviews, ("reviewerID", "asin", "unixReviewTime"), "2018")
    wanted = set(interactions["item"].unique())
    records = (r for _, r in _records(meta_path, literals=False, needed_key="asin", wanted=wanted))
    items = _meta_rows(records, "asin",
                       lambda r: item_text(r.get("title"), r.get("brand"), r.get("category"), r.get("feature"),
                                           r.get("description")),
                       lambda r: _first_url(r.get("imageURLHighRes")) or _first_url(r.get("imageURL")))
    return RawData(name=f"amazon2018-{category}", interactions=interactions, items=items.reset_index(drop=True),
                   files=[reviews, meta_path], invalid_rows=invalid)


# ---------------------------------------------------------------------------------------------- 2023
def parse_amazon2023(name: str) -> tuple[str, bool]:
    """'amazon2023-All_Beauty' -> ('All_Beauty', False); 'amazon2023-last_out-All_Beauty' -> (.., True)."""
    rest = name[len("amazon2023-"):]
    benchmark = rest.startswith("last_out-")
    return (rest[len("last_out-"):] if benchmark else rest), benchmark


def _part_names(category: str, benchmark: bool) -> dict[str, tuple[list[str], str | None, str]]:
    """{part: (local file names, local Parquet folder, path in the Hub repository)}."""
    parts = {}
    if benchmark:
        for stage in STAGES:
            parts[stage] = ([f"{category}.{stage}.csv", f"{category}.{stage}.csv.gz"], None,
                            f"benchmark/5core/last_out/{category}.{stage}.csv")
    else:
        parts["reviews"] = ([f"{category}.jsonl", f"{category}.jsonl.gz"], f"raw_review_{category}",
                            f"raw/review_categories/{category}.jsonl")
    parts["meta"] = ([f"meta_{category}.jsonl", f"meta_{category}.jsonl.gz"], f"raw_meta_{category}",
                     f"raw/meta_categories/meta_{category}.jsonl")
    return parts


def amazon2023_files(folder: str | Path | None, category: str, benchmark: bool) -> dict[str, list[Path]]:
    """{part: local files} for reviews (or the benchmark's train / valid / test) and meta: from `folder` when
    given (every part must be there), else downloaded once from the Hub into the HF cache with
    `huggingface_hub.hf_hub_download` (HF_HOME, HF_HUB_OFFLINE and KDSR_AMAZON2023_REVISION apply)."""
    parts = {}
    for part, (names, parquet_dir, hub_path) in _part_names(category, benchmark).items():
        if folder is not None:
            folder = Path(folder)
            found = _first_existing([folder / n for n in names])
            shards = sorted((folder / parquet_dir).rglob("*.parquet")) if parquet_dir and not found else []
            if not found and not shards:
                raise DataError(folder / names[0], None, f"Amazon 2023 {part} file not found"
                                + (f" (nor Parquet files under {parquet_dir}/)" if parquet_dir else ""),
                                f"download {hub_path} from the Hub dataset {HUB_REPO} into {folder}, or leave out "
                                "--data-dir to read the Hub through the HF cache")
            parts[part] = [found] if found else shards
        else:
            parts[part] = [_hub_file(hub_path)]
    return parts


def _hub_file(path: str) -> Path:
    from huggingface_hub import hf_hub_download

    revision = os.environ.get("KDSR_AMAZON2023_REVISION") or None
    try:
        return Path(hf_hub_download(HUB_REPO, path, repo_type="dataset", revision=revision))
    except Exception as err:  # noqa: BLE001 - offline, not found, no network: all mean "not available here"
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise DataError(f"hf://datasets/{HUB_REPO}/{path}", None,
                        f"not available ({type(err).__name__}{', HF_HUB_OFFLINE=1' if offline else ''})",
                        "download it once online (it stays in the HF cache, then HF_HUB_OFFLINE=1 works), or "
                        "put the files in a folder and pass --data-dir") from None


def _features(kind: str):
    """Explicit column types, so datasets never infers them from a first block (ids stay strings: ISBN-like
    item ids keep their leading zeros; images / details of any shape load)."""
    import datasets

    string, json_value = datasets.Value("string"), datasets.Json()
    if kind == "benchmark":
        return datasets.Features({"user_id": string, "parent_asin": string, "rating": datasets.Value("float64"),
                                  "timestamp": datasets.Value("int64")})
    return datasets.Features({"rating": datasets.Value("float64"), "title": string, "text": string,
                              "images": json_value, "asin": string, "parent_asin": string, "user_id": string,
                              "timestamp": json_value, "helpful_vote": json_value, "verified_purchase": json_value})


def _hf_table(files: list[Path], columns: list[str], what: str, kind: str) -> pd.DataFrame:
    """One part through datasets.load_dataset (json / csv with explicit types, or the publisher's Parquet),
    only `columns`, as pandas; any failure is one DataError naming the file."""
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError(files[0], None, "needs the Hugging Face `datasets` package", "pip install datasets") from None
    for file in files:  # a truncated or mislabelled file: say so before datasets trips on it
        compression(file)
    name = files[0].name
    builder = "parquet" if name.endswith(".parquet") else "csv" if ".csv" in name else "json"
    kwargs = {} if builder == "parquet" else {"features": _features(kind)}
    if builder == "csv":
        kwargs["usecols"] = list(kwargs["features"])
    try:
        table = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", **kwargs)
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "this part did not load"
        for file in files:
            if file.suffix == ".gz":
                for _ in read_lines(file):  # raises the precise truncation / decoding error
                    pass
        raise DataError(files[0], None, f"{what} could not be read with datasets ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})",
                        f"use the Amazon 2023 {what} files as published ({', '.join(columns)} per row)") from None
    frame = table.select_columns([c for c in columns if c in table.column_names]).to_pandas()
    # with explicit types datasets adds a column the files lack as all-null: either way it is missing
    missing = [c for c in columns if c not in frame.columns or frame[c].isna().all()]
    if missing:
        found = [c for c in table.column_names if c not in missing and table[c][0] is not None] if len(table) else []
        raise DataError(files[0], missing[0], f"column missing (found: {', '.join(found) or 'none'})",
                        f"use the Amazon 2023 {what} files ({', '.join(columns)})")
    empty = frame[["user_id", "parent_asin"]].isna().any(axis=1) | (frame[["user_id", "parent_asin"]] == "").any(axis=1)
    if kind == "benchmark" and empty.any():  # a dropped row would shift the published split
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(files[0], "user_id/parent_asin", f"empty on data row {row + 1}",
                        "use the benchmark files as published: every row has a user and an item")
    return frame


def _millis_to_seconds(frame: pd.DataFrame, file: Path) -> pd.DataFrame:
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
        columns = {k: _as_list(images[k]) for k in keys}
        length = max((len(v) for v in columns.values()), default=0)
        images = [{k: v[i] if i < len(v) else None for k, v in columns.items()} for i in range(length)]
    entries = [e for e in _as_list(images) if isinstance(e, dict)]
    entries.sort(key=lambda e: e.get("variant") != "MAIN")  # stable: the MAIN image first, else file order
    for entry in entries:
        for key in ("large", "hi_res"):
            url = entry.get(key)
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url
    return ""


def _text_2023(r: dict) -> str:
    return item_text(r.get("title"), r.get("store"), r.get("categories"), r.get("features"), r.get("description"),
                     r.get("details"))


def _meta_2023(files: list[Path], wanted: set[str]) -> pd.DataFrame:
    """Meta JSONL is read line by line (strict JSON; only reviewed items are parsed): its records vary in
    shape (details keys, prices as numbers or text) more than a columnar reader's fixed schema allows.
    The publisher's Parquet is read as it is."""
    if files[0].suffix == ".parquet":
        table = pd.concat([read_parquet(f) for f in files], ignore_index=True)
        if "parent_asin" not in table.columns:
            raise DataError(files[0], "parent_asin", f"column missing (found: {', '.join(table.columns)})",
                            "use the Amazon 2023 raw_meta Parquet files")
        records = table[table["parent_asin"].astype(str).isin(wanted)].to_dict("records")
    else:
        records = [r for f in files for _, r in _records(f, literals=False, needed_key="parent_asin", wanted=wanted)]
    return _meta_rows(records, "parent_asin", _text_2023, lambda r: _image_2023(r.get("images")))


def load_amazon2023(folder: str | Path | None, name: str, parts: dict[str, list[Path]] | None = None) -> RawData:
    """`parts`: the files amazon2023_files found (resolve_source passes them, so the Hub is asked once)."""
    category, benchmark = parse_amazon2023(name)
    parts = parts or amazon2023_files(folder, category, benchmark)
    review_columns = ["user_id", "parent_asin", "timestamp"]
    if benchmark:
        frames = []
        for rank, stage in enumerate(STAGES):
            files = parts[stage]
            frame = _millis_to_seconds(_hf_table(files, review_columns, f"benchmark {stage}", "benchmark"), files[0])
            frames.append(frame.assign(stage=rank))
            repeated = frame["user_id"].duplicated()
            if stage != "train" and repeated.any():
                raise DataError(files[0], "user_id", f"user {frame['user_id'][repeated].iloc[0]!r} has more than "
                                f"one {stage} row", "use the last_out split: one valid and one test row per user")
        users = [set(f["user_id"]) for f in frames]
        for stage, other in ((1, 0), (2, 1)):
            if users[stage] != users[other]:
                odd = sorted(users[stage] ^ users[other])[0]
                raise DataError(parts[STAGES[stage]][0], "user_id",
                                f"user {odd!r} is in only one of {STAGES[other]} and {STAGES[stage]}",
                                "use the three files of one last_out split")
        reviews = pd.concat(frames, ignore_index=True)
        files = [f for stage in STAGES for f in parts[stage]]
    else:
        files = parts["reviews"]
        reviews = _millis_to_seconds(_hf_table(files, review_columns, "reviews", "reviews"), files[0])
    interactions, invalid = build_interactions(reviews["user_id"], reviews["parent_asin"], reviews["timestamp"],
                                               files[0], "timestamp",
                                               extra={"stage": reviews["stage"]} if benchmark else None)
    items = _meta_2023(parts["meta"], set(interactions["item"]))
    prefix = "amazon2023-last_out-" if benchmark else "amazon2023-"
    return RawData(name=prefix + category, interactions=interactions, items=items.reset_index(drop=True),
                   files=files + parts["meta"], invalid_rows=invalid, presplit=benchmark)
