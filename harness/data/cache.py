"""Cache keys from source files + options, and atomic directory writes (a kill never leaves a readable half)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from kdsr_util import CACHE_ENV, cache_root, sha256_file  # noqa: F401  (re-exported for harness.data)


def cache_key(kind: str, files: list[Path], options: dict, version: int) -> str:
    """Explicit key: loader kind, format version, options and the content hash of every source file."""
    payload = {
        "kind": kind,
        "version": version,
        "options": options,
        "files": [[Path(f).name, sha256_file(f)] for f in files],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling folder; on success rename it to `final`, on any error remove it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        (tmp / "COMPLETE").write_text("ok\n")
        if final.exists():  # another process finished first; theirs is as good as ours
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(folder: Path) -> bool:
    return (folder / "COMPLETE").is_file()
