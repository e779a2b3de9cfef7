import gzip
import json

import numpy as np
import pandas as pd
import pytest

from harness.data import DataError, PreprocessOptions, load_dataset
from harness.data.preprocess import k_core, preprocess
from harness.data.amazon import load_amazon
from harness.data.sources import RawData, load_atomic
from helpers import dense_inter_rows, write_atomic


def raw(rows, items=None):
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame["timestamp"] = frame["timestamp"].astype(float)
    return RawData("t", frame, items if items is not None else pd.DataFrame(columns=["item", "text", "image"]))


# ------------------------------------------------------------------------------------------- preprocessing
def test_k_core_is_iterative():
    # item c has 2 users; dropping it leaves user u2 with 1 interaction, which then must go too
    frame = pd.DataFrame({"user": ["u1", "u1", "u2", "u2", "u3", "u3"], "item": ["a", "b", "a", "c", "b", "a"]})
    kept = k_core(frame, user_k=2, item_k=2)
    assert set(kept["user"]) == {"u1", "u3"} and set(kept["item"]) == {"a", "b"}


def test_stable_chronological_order_and_remapping():
    rows = [("u", "x", 5), ("u", "y", 1), ("u", "z", 5), ("v", "y", 2), ("v", "x", 3), ("v", "z", 4)]
    data = preprocess(raw(rows), PreprocessOptions(user_k=1, item_k=1))
    raw_ids = data.items["raw_id"].tolist()
    assert raw_ids[0] == ""  # padding
    # user u: y (t=1), then x and z tied at t=5 keep file order
    assert [raw_ids[i] for i in data.sequence(0)] == ["y", "x", "z"]
    assert data.n_users == 2 and data.n_items == 3 and sorted(data.item_seq.tolist()) == [1, 1, 2, 2, 3, 3]


def test_duplicates_dropped():
    rows = [("u", "x", 1), ("u", "x", 1), ("u", "x", 2), ("u", "y", 3)]
    exact = preprocess(raw(rows), PreprocessOptions(1, 1, "exact"))
    assert exact.n_interactions == 3 and exact.meta["rows_exact_duplicate"] == 1
    pair = preprocess(raw(rows), PreprocessOptions(1, 1, "pair"))
    assert pair.n_interactions == 2


def test_empty_after_filtering_is_a_clear_error():
    with pytest.raises(DataError, match="no interactions left after 5/5-core"):
        preprocess(raw([("u", "x", 1), ("u", "y", 2)]), PreprocessOptions())


# ------------------------------------------------------------------------------------------- atomic files
def test_atomic_loader_with_items(tmp_path):
    folder = write_atomic(tmp_path / "toy", "toy", dense_inter_rows(8, 10, 6) + [("u0", "", 5, 1)],
                          [(f"it{i}", f"Title {i}", f"img/{i}.jpg") for i in range(10)])
    data = load_dataset(str(folder), PreprocessOptions(3, 3), cache_dir=tmp_path / "cache", verbose=False)
    assert data.n_users == 8 and data.meta["rows_invalid"] == 1
    row = data.items.iloc[1]
    assert row["text"] == f"Title {row['raw_id'][2:]}" and row["image"].endswith(".jpg")


def test_atomic_missing_column_names_file_field_and_fix(tmp_path):
    folder = write_atomic(tmp_path / "bad", "bad", [("u", "i", 1, 1)],
                          inter_header="user_id:token\titem:token\trating:float\ttimestamp:float")
    with pytest.raises(DataError) as err:
        load_atomic(folder)
    message = str(err.value)
    assert "bad.inter" in message and "'item_id'" in message and "Fix:" in message and "found: user_id, item" in message


def test_unparsable_timestamp(tmp_path):
    folder = write_atomic(tmp_path / "ts", "ts", [("u", "i", 1, 100), ("u", "j", 1, "yesterday-ish")])
    with pytest.raises(DataError, match=r"ts.inter: field 'timestamp': cannot parse 'yesterday-ish' \(data row 2\)"):
        load_atomic(folder)


def test_iso_dates_are_accepted(tmp_path):
    folder = write_atomic(tmp_path / "iso", "iso", [("u", "i", 1, "2003-02-28 17:49:50"), ("u", "j", 1, "2003-03-01")])
    frame = load_atomic(folder).interactions
    assert frame["timestamp"].tolist() == [1046454590.0, 1046476800.0]


def test_missing_folder_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown data set"):
        load_dataset(str(tmp_path / "nope"), cache_dir=tmp_path, verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="exactly one"):
        load_atomic(tmp_path / "empty")


# ------------------------------------------------------------------------------------------- cache
def test_cache_reuse_and_rebuild_on_change(tmp_path):
    rows = dense_inter_rows(10, 12, 6)
    folder = write_atomic(tmp_path / "c", "c", rows)
    cache = tmp_path / "cache"
    first = load_dataset(str(folder), PreprocessOptions(3, 3), cache_dir=cache, verbose=False)
    again = load_dataset(str(folder), PreprocessOptions(3, 3), cache_dir=cache, verbose=False)
    assert first.meta["cache_dir"] == again.meta["cache_dir"]
    assert np.array_equal(first.item_seq, again.item_seq)
    other_option = load_dataset(str(folder), PreprocessOptions(4, 4), cache_dir=cache, verbose=False)
    assert other_option.meta["cache_dir"] != first.meta["cache_dir"]
    write_atomic(folder, "c", rows[:-1])  # a changed file rebuilds
    changed = load_dataset(str(folder), PreprocessOptions(3, 3), cache_dir=cache, verbose=False)
    assert changed.meta["cache_dir"] != first.meta["cache_dir"]
    assert changed.n_interactions == first.n_interactions - 1


def test_failed_build_leaves_nothing_in_cache(tmp_path):
    folder = write_atomic(tmp_path / "tiny", "tiny", [("u", "i", 1, 1), ("u", "j", 1, 2)])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="no interactions left"):
        load_dataset(str(folder), cache_dir=cache, verbose=False)
    assert not cache.exists() or not any(cache.iterdir())


def test_interrupted_write_is_never_read(tmp_path, monkeypatch):
    folder = write_atomic(tmp_path / "k", "k", dense_inter_rows(6, 8, 5))
    cache = tmp_path / "cache"
    from harness.data.dataset import SequenceData

    def crash(self, target):
        (target / "interactions.parquet").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(SequenceData, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(str(folder), PreprocessOptions(2, 2), cache_dir=cache, verbose=False)
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    data = load_dataset(str(folder), PreprocessOptions(2, 2), cache_dir=cache, verbose=False)
    assert data.n_users == 6


# ------------------------------------------------------------------------------------------- Amazon 2014
def _write_amazon(folder, reviews=True):
    folder.mkdir(parents=True, exist_ok=True)
    rows = dense_inter_rows(6, 7, 5, seed=1)
    if reviews:
        with gzip.open(folder / "reviews_Beauty_5.json.gz", "wt") as f:
            for user, item, rating, ts in rows:
                f.write(json.dumps({"reviewerID": user, "asin": item, "overall": float(rating),
                                    "unixReviewTime": ts, "reviewTime": "01 1, 2014"}) + "\n")
    else:
        (folder / "ratings_Beauty.csv").write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows))
    with gzip.open(folder / "meta_Beauty.json.gz", "wt") as f:
        for i in range(7):
            # the 2014 meta lines are Python dict literals (single quotes), not JSON
            record = {"asin": f"it{i}", "title": f"Lipstick {i}", "imUrl": f"http://x/{i}.jpg",
                      "categories": [["Beauty", "Makeup"]], "description": "It's red"}
            f.write(repr(record) + "\n")
        f.write(json.dumps({"asin": "unreviewed", "title": "never used"}) + "\n")
        f.write("{'asin': 'other', 'title': __import__('os').system('echo pwned')}\n")
    return folder


@pytest.mark.parametrize("reviews", [True, False])
def test_amazon_loader(tmp_path, reviews):
    folder = _write_amazon(tmp_path / "amz", reviews)
    images = tmp_path / "images"
    images.mkdir()
    (images / "it3.jpg").write_bytes(b"\xff\xd8")
    data = load_dataset("amazon-beauty", PreprocessOptions(2, 2), data_dir=folder, image_dir=images,
                        cache_dir=tmp_path / "cache", verbose=False)
    assert data.n_users == 6 and data.n_items == 7
    by_id = data.items.set_index("raw_id")
    assert by_id.loc["it1", "text"] == "Lipstick 1. Categories: Beauty, Makeup. It's red"
    assert by_id.loc["it3", "image"] == str(images / "it3.jpg")
    assert by_id.loc["it2", "image"] == "http://x/2.jpg"


def test_amazon_malicious_meta_line_is_not_evaluated(tmp_path):
    folder = _write_amazon(tmp_path / "amz")
    # make the malicious line one of the wanted items: literal_eval must refuse it, never run it
    text = gzip.open(folder / "meta_Beauty.json.gz", "rt").read().replace("'asin': 'other'", "'asin': 'it0'")
    with gzip.open(folder / "meta_Beauty.json.gz", "wt") as f:
        f.write(text)
    with pytest.raises(DataError, match="neither JSON nor a Python dict literal"):
        load_amazon(folder, "beauty")


def test_amazon_missing_files(tmp_path):
    with pytest.raises(DataError, match="reviews_Beauty_5.json.gz.*review file not found"):
        load_amazon(tmp_path, "beauty")
    folder = _write_amazon(tmp_path / "m")
    (folder / "meta_Beauty.json.gz").unlink()
    with pytest.raises(DataError, match="meta_Beauty.json.gz: item metadata file not found"):
        load_amazon(folder, "beauty")


def test_amazon_missing_review_field(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    with gzip.open(folder / "reviews_Beauty_5.json.gz", "wt") as f:
        f.write(json.dumps({"reviewerID": "u", "asin": "a"}) + "\n")
    with gzip.open(folder / "meta_Beauty.json.gz", "wt") as f:
        f.write(repr({"asin": "a", "title": "t"}) + "\n")
    with pytest.raises(DataError, match="field 'unixReviewTime': missing on line 1"):
        load_amazon(folder, "beauty")


def test_large_file_hashes_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import kdsr_util

    monkeypatch.setenv("KDSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kdsr_util, "MEMO_MIN_BYTES", 10)
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100)
    first = kdsr_util.sha256_file(path)
    memo = json.loads((tmp_path / "cache" / "file-hashes.json").read_text())
    assert list(memo.values()) == [first]
    key = next(iter(memo))
    (tmp_path / "cache" / "file-hashes.json").write_text(json.dumps({key: "remembered"}))
    assert kdsr_util.sha256_file(path) == "remembered"  # not re-read while size, inode and mtime hold
    path.write_bytes(b"y" * 101)
    assert kdsr_util.sha256_file(path) != first != "remembered"
