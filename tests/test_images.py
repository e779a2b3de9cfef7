"""The image fetcher against a local HTTP server on 127.0.0.1 (no other address is contacted): good images,
404s, slow responses, truncated bodies, non-images, oversized bodies and a flaky server; resume after a
kill; no half-written file left behind. And the RecBole export round trip."""
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from harness.data import PreprocessOptions, load_dataset
from harness.data.export import export_recbole, ordered_timestamps
from harness.data.images import FetchOptions, fetch_images
from helpers import make_data


def _image_bytes(fmt: str, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(out, format=fmt)
    return out.getvalue()


JPEG, PNG, WEBP = _image_bytes("JPEG"), _image_bytes("PNG", (0, 90, 200)), _image_bytes("WEBP", (9, 9, 9))


class Handler(BaseHTTPRequestHandler):
    hits: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def _send(self, body: bytes, status=200, length=None, ctype="image/jpeg"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a time-out under test)
            pass

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        Handler.hits[path] = Handler.hits.get(path, 0) + 1
        if path in ("/good.jpg", "/same.jpg"):
            self._send(JPEG)
        elif path == "/good.png":
            self._send(PNG, ctype="image/png")
        elif path == "/good.webp":
            self._send(WEBP, ctype="image/webp")
        elif path == "/slow.jpg":
            time.sleep(1.5)
            self._send(JPEG)
        elif path == "/truncated.jpg":  # promises more bytes than it sends, then closes
            self._send(JPEG[: len(JPEG) // 2], length=len(JPEG))
        elif path == "/cut.jpg":  # a complete response whose JPEG itself is cut short
            self._send(JPEG[: len(JPEG) - 40])
        elif path == "/page.html":
            self._send(b"<html>not an image</html>", ctype="text/html")
        elif path == "/huge.jpg":
            self._send(JPEG + b"\0" * 5000)
        elif path == "/flaky.jpg":
            if Handler.hits[path] == 1:
                self._send(b"busy", status=503, ctype="text/plain")
            else:
                self._send(JPEG)
        else:
            self._send(b"missing", status=404, ctype="text/plain")


@pytest.fixture()
def server():
    Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


OPTIONS = FetchOptions(workers=4, timeout=0.5, deadline=1.0, retries=2, backoff=0.01, max_bytes=3000)


def _items(base):
    names = ["good.jpg", "good.png", "good.webp", "same.jpg", "missing.jpg", "slow.jpg", "truncated.jpg", "cut.jpg",
             "page.html", "huge.jpg", "flaky.jpg"]
    return [(f"i{k}-{n.split('.')[0]}", f"{base}/{n}") for k, n in enumerate(names)] + [("i99-none", "")]


def test_fetch_outcomes_and_layout(tmp_path, server):
    assert len(JPEG) < OPTIONS.max_bytes < len(JPEG) + 5000
    summary = fetch_images(_items(server), tmp_path / "img", OPTIONS, progress=False)
    items = tmp_path / "img" / "items"
    assert sorted(p.name for p in items.iterdir()) == ["i0-good.jpg", "i1-good.png", "i10-flaky.jpg", "i2-good.png",
                                                       "i3-same.jpg"]
    assert summary["fetched"] == 5 and summary["failed"] == 7
    # content-addressed: the two identical JPEGs (and the flaky one) share one object; WEBP became PNG
    objects = list((tmp_path / "img" / "objects").rglob("*.*"))
    assert len(objects) == 3 and (items / "i0-good.jpg").stat().st_ino == (items / "i3-same.jpg").stat().st_ino
    with Image.open(items / "i2-good.png") as image:
        assert image.format == "PNG"
    failures = {f["item"]: f for f in map(json.loads, (tmp_path / "img" / "failures.jsonl").read_text().splitlines())}
    assert failures["i4-missing"]["reason"] == "HTTP 404" and failures["i4-missing"]["attempts"] == 1
    assert "not a decodable image" in failures["i8-page"]["reason"] and failures["i8-page"]["attempts"] == 1
    assert "not a decodable image" in failures["i7-cut"]["reason"]
    assert failures["i9-huge"]["reason"].startswith("larger than 3000 bytes")
    assert failures["i99-none"]["reason"] == "no URL"
    for transient in ("i5-slow", "i6-truncated"):  # retried, then given up
        assert failures[transient]["attempts"] == OPTIONS.retries + 1, failures[transient]
    assert Handler.hits["/flaky.jpg"] == 2  # the 503 was retried once
    assert summary["failure_reasons"]["HTTP 404"] == 1
    assert not [p for p in (tmp_path / "img").rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_rerun_skips_done_items_and_resumes_after_a_kill(tmp_path, server, monkeypatch):
    import harness.data.images as images

    good = [(f"g{k}", f"{server}/good.jpg?{k}") for k in range(6)]
    real, calls = images._validate, []

    def dies_on_the_fourth(body):  # a kill while the fourth image is being stored
        calls.append(1)
        if len(calls) >= 4:  # dead from then on
            raise KeyboardInterrupt
        return real(body)

    monkeypatch.setattr(images, "_validate", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        fetch_images(good, tmp_path / "img", FetchOptions(workers=1, retries=0), progress=False)
    monkeypatch.setattr(images, "_validate", real)
    before = Handler.hits["/good.jpg"]
    done = {p.stem for p in (tmp_path / "img" / "items").iterdir()}
    assert done == {"g0", "g1", "g2"}
    summary = fetch_images(good, tmp_path / "img", OPTIONS, progress=False)
    assert summary["already_present"] == 3 and summary["fetched"] == 3 and summary["failed"] == 0
    assert Handler.hits["/good.jpg"] - before == 3  # only the missing ones were fetched again
    assert not [p for p in (tmp_path / "img").rglob("*") if p.name.startswith(".")]


def test_fetched_images_feed_extraction_through_image_dir_even_after_the_data_cache(tmp_path, server):
    from encoders.extract import items_from_source
    from helpers import dense_inter_rows, write_atomic

    write_atomic(tmp_path / "src", "src", dense_inter_rows(8, 6, 5, seed=5),
                 [(f"it{i}", f"Item {i}", f"{server}/good.jpg?{i}" if i != 2 else f"{server}/missing.jpg")
                  for i in range(6)])
    data = load_dataset(str(tmp_path / "src"), verbose=False)  # processed and cached first, without images
    pairs = list(zip(data.items["raw_id"][1:], data.items["image"][1:]))
    first_batch = fetch_images(pairs[:2], tmp_path / "img", OPTIONS, progress=False)
    folder = tmp_path / "img" / "items"
    first = items_from_source(str(tmp_path / "src"), image_dir=str(folder))
    assert sum(p.startswith(str(folder)) for p in first.images) == first_batch["fetched"] >= 1
    fetch_images(pairs, tmp_path / "img", OPTIONS, progress=False)  # a later, resumed fetch adds the rest
    later = items_from_source(str(tmp_path / "src"), image_dir=str(folder))
    local = [p for p in later.images if p.startswith(str(folder))]
    assert len(local) == 5 and all(p.endswith(".jpg") for p in local)
    assert any(p.endswith("/missing.jpg") for p in later.images)  # no file: the URL stays


# ------------------------------------------------------------------------------------------------ export
def test_ordered_timestamps_keep_ties_and_fractions_in_order():
    data = make_data([[1, 2, 3], [2, 3]])
    data.timestamps = np.array([5.0, 5.0, 5.7, 9.9, 9.2])
    assert ordered_timestamps(data).tolist() == [5, 6, 7, 9, 10]


def test_recbole_export_round_trip(tmp_path):
    from helpers import dense_inter_rows, write_atomic

    rows = dense_inter_rows(9, 12, 6, seed=3)
    rows += [(u, i, r, 1000 * int(u[1:]) + 2) for u, i, r, _ in rows[:9:3]]  # timestamp ties
    write_atomic(tmp_path / "src", "src", rows, [(f"it{i}", f'Item "{i}", quoted', "") for i in range(12)])
    data = load_dataset(str(tmp_path / "src"), PreprocessOptions(3, 3, "pair"), cache_dir=tmp_path / "c",
                        verbose=False)
    paths = export_recbole(data, tmp_path / "out", "toy")
    assert [p.name for p in paths] == ["toy.inter", "toy.item"]
    assert (tmp_path / "out" / "toy.inter").read_text().splitlines()[0] == "user_id:token\titem_id:token\ttimestamp:float"
    back = load_dataset(str(tmp_path / "out"), PreprocessOptions(1, 1), cache_dir=tmp_path / "c2", verbose=False)
    assert back.n_users == data.n_users and back.n_items == data.n_items

    def sequences(d):
        raw = d.items["raw_id"].to_numpy()
        return {d.user_raw_ids[u]: [raw[i] for i in d.sequence(u)] for u in range(d.n_users)}

    assert sequences(back) == sequences(data)
    texts = lambda d: dict(zip(d.items["raw_id"], d.items["text"]))  # noqa: E731
    assert texts(back) == texts(data) and texts(back)["it1"] == 'Item "1", quoted'


def test_export_cleans_tabs_and_line_breaks(tmp_path):
    data = make_data([[1, 2, 3], [2, 3, 1]])
    data.items.loc[2, "text"] = "two\tcolumns\nand lines"
    export_recbole(data, tmp_path, "t")
    rows = (tmp_path / "t.item").read_text().splitlines()
    assert rows[0] == "item_id:token\ttext:token_seq" and rows[2] == "i2\ttwo columns and lines"


def test_cli_export_images_and_one_line_errors(tmp_path, server, capsys):
    from harness.data.__main__ import main
    from helpers import dense_inter_rows, write_atomic

    write_atomic(tmp_path / "src", "src", dense_inter_rows(5, 6, 4, seed=4),
                 [(f"it{i}", f"Item {i}", f"{server}/good.jpg?{i}" if i % 2 else f"{server}/missing.jpg")
                  for i in range(6)])
    assert main(["export", "--dataset", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--user-k", "2",
                 "--item-k", "2"]) == 0
    assert (tmp_path / "out" / "src.inter").is_file() and (tmp_path / "out" / "src.item").is_file()
    assert main(["images", "--dataset", str(tmp_path / "src"), "--out", str(tmp_path / "img"), "--user-k", "2",
                 "--item-k", "2", "--retries", "0"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["fetched"] == 3 and printed["failed"] == 3 and printed["failure_reasons"] == {"HTTP 404": 3}
    assert main(["export", "--dataset", "amazon2018-Beauty", "--data-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "Beauty_5.json.gz: review file not found" in error and "\n" not in error


def test_a_slow_drip_meets_the_deadline_and_odd_urls_are_failures_not_crashes(tmp_path, server):
    class Drip(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            try:
                for byte in JPEG:  # one byte every 0.2 s: never idle for the 0.5 s timeout
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        summary = fetch_images([("drip", f"http://127.0.0.1:{httpd.server_address[1]}/x.jpg"),
                                ("odd", f"{server}/ünïcode path.jpg"), ("bad", "http://[::1"),
                                ("dup", f"{server}/good.jpg"), ("dup", f"{server}/good.png")], tmp_path / "img",
                               FetchOptions(workers=4, timeout=0.5, deadline=1.0, retries=0), progress=False)
        assert time.monotonic() - started < 5
    finally:
        httpd.shutdown()
        httpd.server_close()
    failures = {f["item"]: f["reason"] for f in map(json.loads, (tmp_path / "img" / "failures.jsonl").read_text()
                                                     .splitlines())}
    assert failures["drip"] == "slower than the 1 s deadline"
    assert failures["odd"] == "HTTP 404" and failures["bad"].startswith("not a valid URL")
    assert summary["items"] == 4 and (tmp_path / "img" / "items" / "dup.png").is_file()  # one entry per item


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, server):
    stale = tmp_path / "img" / "objects" / "ab" / ".abc.jpg.123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    fetch_images([("a", f"{server}/good.jpg")], tmp_path / "img", OPTIONS, progress=False)
    assert not stale.exists()


def test_two_threads_storing_the_same_image_share_one_object(tmp_path, monkeypatch):
    """Both threads see no object yet (the race), both write it: the items still link one inode."""
    from pathlib import Path

    from harness.data import images
    barrier = threading.Barrier(2)
    real_is_file = Path.is_file

    def racing_is_file(self):
        exists = real_is_file(self)
        if "objects" in self.parts:
            barrier.wait(timeout=5)  # both threads have checked before either writes
        return exists

    monkeypatch.setattr(images, "_download", lambda url, options: JPEG)
    monkeypatch.setattr(Path, "is_file", racing_is_file)
    out = tmp_path / "img"
    (out / "items").mkdir(parents=True)  # as fetch_images makes it
    threads = [threading.Thread(target=images.fetch_one, args=(f"i{k}", "u", out, OPTIONS)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(Path, "is_file", real_is_file)
    assert (out / "items" / "i0.jpg").stat().st_ino == (out / "items" / "i1.jpg").stat().st_ino
    assert len([p for p in (out / "objects").rglob("*") if p.is_file()]) == 1
