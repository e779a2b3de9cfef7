"""Small helpers shared by the data cache (harness/data) and the feature cache (encoders), which must not
import each other: where the caches live and content hashes of files."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_ENV = "KDSR_CACHE_DIR"


def cache_root() -> Path:
    """`$KDSR_CACHE_DIR`, else `~/.cache/kdsr-bench`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kdsr-bench")


MEMO_MIN_BYTES = 64 << 20  # files this large have their hash remembered (a 5 GB review dump takes ~10 s)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Content hash. For large files it is remembered in `<cache root>/file-hashes.json` under the file's
    real path, size, inode and modification time (ns), so repeated loads of a multi-GB dump do not re-read
    it; any change of those recomputes it."""
    path = Path(path)
    stat = path.stat()
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_ino}|{stat.st_mtime_ns}"
    memo_file = cache_root() / "file-hashes.json"
    if stat.st_size >= MEMO_MIN_BYTES:
        try:
            known = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            known = {}
        if memo_key in known:
            return known[memo_key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    value = digest.hexdigest()
    if stat.st_size >= MEMO_MIN_BYTES:
        _remember(memo_file, memo_key, value)
    return value


def _remember(memo_file: Path, key: str, value: str) -> None:
    """Add one entry (read, merge, atomic replace; a lost race only costs a recomputation later)."""
    try:
        known = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        known = {}
    known[key] = value
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_name(f".{memo_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, sort_keys=True))
        os.replace(tmp, memo_file)
    except OSError:
        pass  # a read-only cache: hashing still works, it is just not remembered
