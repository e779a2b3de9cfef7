"""Small helpers shared by the data cache (harness/data) and the feature cache (encoders), which must not
import each other: where the caches live and content hashes of files."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "KDSR_CACHE_DIR"


def cache_root() -> Path:
    """`$KDSR_CACHE_DIR`, else `~/.cache/kdsr-bench`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kdsr-bench")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
