"""Fetch every item's image URL into a local, content-addressed cache that feeds image extraction.

    python -m harness.data images --dataset amazon2023-All_Beauty --out data/images/All_Beauty
    python -m harness.sweep ... --image-dir data/images/All_Beauty/items

Layout of --out: `objects/<sha256[:2]>/<sha256>.<jpg|png>` holds each distinct image once (validated by
decoding it with PIL; formats other than JPEG / PNG are converted to PNG), `items/<item id>.<ext>` is a
hard link to its object (what `--image-dir` reads), `failures.jsonl` lists every item that has no image
with the URL, the reason and the attempts, and `summary.json` the counts. Downloads run in parallel
threads with a timeout per request and an overall deadline per image, retry transient failures (time-outs,
connection errors, HTTP 429 / 5xx, truncated bodies) with exponential backoff, and refuse bodies over
`max_bytes`. Every file is written to a temporary name and renamed, so a kill leaves no half-written file;
a rerun skips the items already in `items/` and retries the rest.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}


@dataclass(frozen=True)
class FetchOptions:
    workers: int = 16
    timeout: float = 10.0  # seconds per connect / read
    deadline: float = 30.0  # seconds for one attempt at one image, however slowly the bytes drip in
    retries: int = 3  # extra attempts after a transient failure
    backoff: float = 1.0  # seconds before the first retry, doubled after each
    max_bytes: int = 20 * 2 ** 20
    user_agent: str = "kdsr-bench-image-fetcher/1"


class Permanent(Exception):
    """A failure a retry cannot fix (HTTP 404, not an image, too large)."""


class Transient(Exception):
    """A failure worth retrying (time-out, connection error, HTTP 429 / 5xx, truncated body)."""


def _download(url: str, options: FetchOptions) -> bytes:
    try:  # non-ASCII characters in a path or query are percent-encoded, as a browser would
        request = urllib.request.Request(urllib.parse.quote(url, safe=":/?#[]@!$&'()*+,;=%~"),
                                         headers={"User-Agent": options.user_agent})
    except ValueError as err:
        raise Permanent(f"not a valid URL ({err})") from None
    start = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=options.timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > options.max_bytes:
                raise Permanent(f"larger than {options.max_bytes} bytes (Content-Length {declared})")
            chunks, size = [], 0
            while True:
                if time.monotonic() - start > options.deadline:
                    raise Transient(f"slower than the {options.deadline:g} s deadline")
                chunk = response.read1(64 * 1024)  # returns what has arrived: a slow drip meets the deadline
                if not chunk:
                    break
                size += len(chunk)
                if size > options.max_bytes:
                    raise Permanent(f"larger than {options.max_bytes} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            if declared and declared.isdigit() and len(body) < int(declared):
                raise Transient(f"truncated body ({len(body)} of {declared} bytes)")
            return body
    except urllib.error.HTTPError as err:
        if err.code == 429 or err.code >= 500:
            raise Transient(f"HTTP {err.code}") from None
        raise Permanent(f"HTTP {err.code}") from None
    except (http.client.InvalidURL, ValueError) as err:
        raise Permanent(f"not a valid URL ({err})") from None
    except (OSError, http.client.HTTPException) as err:  # time-outs, refused / reset connections, short reads
        reason = getattr(err, "reason", err)
        raise Transient(f"{type(err).__name__}: {reason}") from None


def _validate(body: bytes) -> tuple[bytes, str]:
    """(bytes to store, extension): the image decoded in full by PIL, non-JPEG/PNG converted to PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            image.verify()
        with Image.open(io.BytesIO(body)) as image:
            image.load()  # verify() misses truncated pixel data; a full decode does not
            fmt = image.format
            if fmt in EXTENSIONS:
                return body, EXTENSIONS[fmt]
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue(), ".png"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise Permanent(f"not a decodable image ({type(err).__name__}: {err})") from None


def _write_atomic(path: Path, data: bytes, replace: bool = True) -> None:
    """Write `path` through a temporary file. `replace=False` creates it only if it does not exist yet (a
    content-addressed object): a rename over it would give an earlier writer's item links another inode
    than a later one's (seen under load with two threads storing the same image), so the file is created
    with a hard link, which never replaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if replace:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another writer stored the same content first
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _link_atomic(target: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:  # a file system without hard links: a copy
        _write_atomic(tmp, target.read_bytes())
    os.replace(tmp, link)


def remove_stale_temporaries(out: Path) -> int:
    """Temporary files a killed run left behind (never read: every final name is written by rename)."""
    stale = [p for p in out.rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def fetch_one(item: str, url: str, out: Path, options: FetchOptions) -> dict:
    """Fetch, validate and store one item's image; returns its outcome (never raises for bad URLs)."""
    attempts, delay = 0, options.backoff
    while True:
        attempts += 1
        try:
            body, ext = _validate(_download(url, options))
            digest = hashlib.sha256(body).hexdigest()
            obj = out / "objects" / digest[:2] / f"{digest}{ext}"
            if not obj.is_file():
                _write_atomic(obj, body, replace=False)
            _link_atomic(obj, out / "items" / f"{item}{ext}")
            return {"item": item, "url": url, "ok": True, "sha256": digest, "attempts": attempts}
        except Permanent as err:
            return {"item": item, "url": url, "ok": False, "reason": str(err), "attempts": attempts}
        except Transient as err:
            if attempts > options.retries:
                return {"item": item, "url": url, "ok": False, "reason": str(err), "attempts": attempts}
            time.sleep(delay)
            delay *= 2
        except Exception as err:  # noqa: BLE001 - one odd image must not end the run: recorded, counted
            return {"item": item, "url": url, "ok": False, "reason": f"unexpected {type(err).__name__}: {err}",
                    "attempts": attempts}


def done_items(out: Path) -> set[str]:
    folder = out / "items"
    return {p.stem for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def fetch_images(items: list[tuple[str, str]], out: str | Path, options: FetchOptions | None = None,
                 progress: bool = True) -> dict:
    """Fetch (item id, URL) pairs into `out`; items without a URL are counted as failures ("no URL")."""
    options, out = options or FetchOptions(), Path(out)
    (out / "items").mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    items = list(dict(items).items())  # one entry per item id (the last URL given wins)
    already = done_items(out)
    todo = [(i, u) for i, u in items if i not in already and u.startswith(("http://", "https://"))]
    failures = [{"item": i, "url": u, "ok": False, "reason": "no URL", "attempts": 0}
                for i, u in items if i not in already and not u.startswith(("http://", "https://"))]
    fetched = 0
    pool = ThreadPoolExecutor(max_workers=options.workers)
    try:
        with tqdm(total=len(todo), unit="image", desc="images", disable=not progress) as bar:
            futures = [pool.submit(fetch_one, i, u, out, options) for i, u in todo]
            for future in as_completed(futures):
                outcome = future.result()
                if outcome["ok"]:
                    fetched += 1
                else:
                    failures.append(outcome)
                bar.update(1)
    finally:  # Ctrl-C or an error: drop the queued downloads, let the running ones end
        pool.shutdown(wait=True, cancel_futures=True)
    failures.sort(key=lambda f: f["item"])
    reasons: dict[str, int] = {}
    for failure in failures:
        key = failure["reason"].split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = {"items": len(items), "already_present": len(already & {i for i, _ in items}), "fetched": fetched,
               "failed": len(failures), "failure_reasons": reasons, "options": asdict(options),
               "image_dir": str(out / "items")}
    _write_atomic(out / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures).encode())
    _write_atomic(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary
