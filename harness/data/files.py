"""Reading users' files safely: compression checked against the name, truncation and bad bytes reported
as one DataError naming the file, what is wrong and the fix (never a traceback from inside gzip)."""
from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from harness.data.errors import DataError

MAGIC = {  # format: (leading bytes, suffixes)
    "gzip": (b"\x1f\x8b", (".gz", ".gzip")),
    "bzip2": (b"BZh", (".bz2",)),
    "xz": (b"\xfd7zXZ\x00", (".xz",)),
    "zstd": (b"\x28\xb5\x2f\xfd", (".zst", ".zstd")),
    "zip": (b"PK\x03\x04", (".zip",)),
}
OPENERS = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
READ_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, UnicodeDecodeError)
REDOWNLOAD = "download the file again (it is incomplete or damaged), or decompress it and pass the plain file"


def compression(path: Path) -> str | None:
    """The compression the file's bytes show (None: plain), checked against its suffix."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise DataError(path, None, f"cannot be read ({err.strerror})", "check the path and its permissions") from None
    found = next((name for name, (magic, _) in MAGIC.items() if head.startswith(magic)), None)
    named = next((name for name, (_, suffixes) in MAGIC.items() if path.suffix.lower() in suffixes), None)
    if named and found != named:
        what = f"{found} data" if found else ("empty" if not head else "not compressed")
        raise DataError(path, None, f"is named {path.suffix} but is {what} (starts with {head[:4]!r})",
                        f"rename it to match its content, or download the {named} file again")
    if found in ("zstd", "zip"):
        raise DataError(path, None, f"is {found}-compressed, which this reader does not open",
                        "decompress it (or recompress it with gzip) and pass that file")
    return found


@contextmanager
def open_text(path: str | Path) -> Iterator:
    """A text handle over a plain or gzip / bzip2 / xz file; read errors become one DataError."""
    path = Path(path)
    kind = compression(path)
    opener = OPENERS.get(kind, open)
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield handle
    except READ_ERRORS as err:
        raise _read_error(path, err) from None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for every non-empty line; truncation names the last good line."""
    path = Path(path)
    number = 0
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if line:
                    yield number, line
        except READ_ERRORS as err:
            raise _read_error(path, err, after_line=number) from None


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv with the compression check and read errors as DataError."""
    path = Path(path)
    kind = compression(path)
    try:
        return pd.read_csv(path, compression={"gzip": "gzip", "bzip2": "bz2", "xz": "xz"}.get(kind), **kwargs)
    except READ_ERRORS as err:
        raise _read_error(path, err) from None
    except pd.errors.EmptyDataError:
        raise DataError(path, None, "is empty", "write a header line and at least one row") from None
    except pd.errors.ParserError as err:
        raise DataError(path, None, f"is not a well-formed CSV file ({str(err).splitlines()[0]})",
                        "write one comma-separated row per line under a header") from None


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(path, None, f"is not a readable Parquet file ({str(err).splitlines()[0]})", REDOWNLOAD) from None


def _read_error(path: Path, err: Exception, after_line: int | None = None) -> DataError:
    where = f" after line {after_line}" if after_line else ""
    if isinstance(err, UnicodeDecodeError):
        return DataError(path, None, f"is not UTF-8 text{where} ({err.reason} at byte {err.start})",
                         "re-encode the file as UTF-8")
    if isinstance(err, EOFError) or "end-of-stream" in str(err) or "truncated" in str(err).lower():
        return DataError(path, None, f"ends early: the compressed stream is truncated{where}", REDOWNLOAD)
    return DataError(path, None, f"cannot be decompressed{where} ({type(err).__name__}: {err})", REDOWNLOAD)
