"""Amazon 2018 and 2023 loaders on fixtures the tests write in each format (never real Amazon data), and
broken variants of every compressed format: each stops with one DataError naming the file and the fix."""
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from harness.data import DataError, PreprocessOptions, load_dataset, make_split
from harness.data.amazon import amazon2023_files, load_amazon, load_amazon2018, load_amazon2023
from helpers import dense_inter_rows

ROWS = dense_inter_rows(6, 7, 5, seed=2)  # (user, item, rating, timestamp seconds)


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    """datasets writes its Arrow cache under HF_HOME: a temporary one per test, never the hub."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _write_lines(path, lines):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def write_2018(folder):
    folder.mkdir(parents=True, exist_ok=True)
    _write_lines(folder / "Beauty_5.json.gz", [json.dumps({"reviewerID": u, "asin": i, "overall": float(r),
                                                            "unixReviewTime": t, "reviewTime": "01 1, 2018"})
                                               for u, i, r, t in ROWS])
    meta = [json.dumps({"asin": f"it{i}", "title": f"Serum {i}", "brand": "Acme", "category": ["Beauty", "Skin Care"],
                        "feature": ["vegan", "30 ml"], "description": [f"A serum number {i}."],
                        "imageURLHighRes": [f"https://img.example/{i}.jpg"]}) for i in range(7)]
    _write_lines(folder / "meta_Beauty.json.gz", meta + [json.dumps({"asin": "never", "title": "unreviewed"})])
    return folder


def _review_2023(u, i, r, t):
    return {"rating": float(r), "title": "ok", "text": "fine", "images": [], "asin": i + "-variant",
            "parent_asin": i, "user_id": u, "timestamp": t * 1000, "helpful_vote": 0, "verified_purchase": True}


def _meta_2023(i):
    return {"main_category": "All Beauty", "title": f"Brush {i}", "average_rating": 4.5, "rating_number": 3,
            "features": ["soft", "wooden handle"], "description": [f"Brush {i} for every day."], "price": None,
            "images": [{"thumb": f"https://img.example/t{i}.jpg", "large": f"https://img.example/l{i}.jpg",
                        "variant": "PT01", "hi_res": None},
                       {"thumb": None, "large": f"https://img.example/main{i}.jpg", "variant": "MAIN", "hi_res": None}],
            "videos": [], "store": "Acme", "categories": [], "details": {"Material": "Wood", "Colour": "Brown"},
            "parent_asin": f"it{i}", "bought_together": None}


def write_2023(folder, fmt="jsonl", category="All_Beauty"):
    folder.mkdir(parents=True, exist_ok=True)
    reviews = [_review_2023(*row) for row in ROWS]
    meta = [_meta_2023(i) for i in range(7)] + [dict(_meta_2023(99), parent_asin="never")]
    if fmt == "parquet":  # the Hub's Parquet layout: one folder per config
        for config, rows in ((f"raw_review_{category}", reviews), (f"raw_meta_{category}", meta)):
            (folder / config).mkdir()
            frame = pd.DataFrame(rows)
            if config.startswith("raw_meta"):
                frame["details"] = frame["details"].map(json.dumps)  # a JSON string in the Hub's Parquet
            frame.to_parquet(folder / config / "full-00000-of-00001.parquet")
    else:
        suffix = ".jsonl.gz" if fmt == "jsonl.gz" else ".jsonl"
        _write_lines(folder / f"{category}{suffix}", [json.dumps(r) for r in reviews])
        _write_lines(folder / f"meta_{category}{suffix}", [json.dumps(m) for m in meta])
    return folder


def write_benchmark(folder, category="All_Beauty", rows=ROWS):
    """The official last_out split: per user the last row is test, the one before valid (by time). The train
    file is shuffled, and one user's valid row is older than their last train row (publishers order by
    their own rules; the loader must keep the files' assignment, not re-sort by time)."""
    write_2023(folder, category=category)
    frame = pd.DataFrame([(u, i, r, t * 1000) for u, i, r, t in rows],
                         columns=["user_id", "parent_asin", "rating", "timestamp"])
    frame = frame.sort_values(["user_id", "timestamp"])
    rank = frame.groupby("user_id").cumcount(ascending=False)
    valid_of_u1 = frame.index[(frame["user_id"] == "u1") & (rank == 1)][0]
    frame.loc[valid_of_u1, "timestamp"] = frame.loc[frame["user_id"] == "u1", "timestamp"].min() - 1
    train = frame[rank >= 2].sample(frac=1.0, random_state=0)
    for stage, part in (("train", train), ("valid", frame[rank == 1]), ("test", frame[rank == 0])):
        part.to_csv(folder / f"{category}.{stage}.csv", index=False)
    return frame, rank, folder


# ------------------------------------------------------------------------------------------------ 2018
def test_amazon2018_reads_reviews_meta_text_and_images(tmp_path):
    folder = write_2018(tmp_path / "a18")
    raw = load_amazon2018(folder, "Beauty")
    assert len(raw.interactions) == len(ROWS) and raw.interactions["timestamp"].iloc[0] == float(ROWS[0][3])
    by_id = raw.items.set_index("item")
    assert "never" not in by_id.index  # meta of unreviewed items is skipped
    assert by_id.loc["it1", "text"] == ("Serum 1. Brand: Acme. Categories: Beauty, Skin Care. Features: vegan 30 ml. "
                                        "A serum number 1")
    assert by_id.loc["it1", "image"] == "https://img.example/1.jpg"
    data = load_dataset("amazon2018-Beauty", PreprocessOptions(2, 2), data_dir=folder, cache_dir=tmp_path / "c",
                        verbose=False)
    assert data.n_users == 6 and data.n_items == 7


def test_amazon2018_meta_is_strict_json(tmp_path):
    folder = write_2018(tmp_path / "a18")
    _write_lines(folder / "meta_Beauty.json.gz", ["{'asin': 'it0', 'title': __import__('os').system('touch pwned')}"])
    with pytest.raises(DataError, match=r"meta_Beauty.json.gz: line 1 is not JSON\. Fix:"):
        load_amazon2018(folder, "Beauty")
    assert not (tmp_path / "pwned").exists()


def test_amazon2018_missing_field_and_files(tmp_path):
    folder = write_2018(tmp_path / "a18")
    _write_lines(folder / "Beauty_5.json.gz", [json.dumps({"reviewerID": "u", "asin": "a", "overall": 5.0})])
    with pytest.raises(DataError, match="field 'unixReviewTime': missing on line 1"):
        load_amazon2018(folder, "Beauty")
    with pytest.raises(DataError, match="Beauty_5.json.gz: review file not found.*Amazon 2018"):
        load_amazon2018(tmp_path / "empty", "Beauty")


# ------------------------------------------------------------------------------------------------ 2023
@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "parquet"])
def test_amazon2023_local_files_through_datasets(tmp_path, fmt):
    folder = write_2023(tmp_path / "a23", fmt)
    raw = load_amazon2023(folder, "amazon2023-All_Beauty")
    assert len(raw.interactions) == len(ROWS)
    assert raw.interactions["timestamp"].tolist() == [float(t) for *_, t in ROWS]  # milliseconds -> seconds
    by_id = raw.items.set_index("item")
    assert sorted(by_id.index) == [f"it{i}" for i in range(7)]
    assert by_id.loc["it2", "text"] == ("Brush 2. Brand: Acme. Features: soft wooden handle. Brush 2 for every day. "
                                        "Details: Material: Wood; Colour: Brown")
    assert by_id.loc["it2", "image"] == "https://img.example/main2.jpg"  # the MAIN image first


def test_amazon2023_local_images_replace_urls(tmp_path):
    folder = write_2023(tmp_path / "a23")
    images = tmp_path / "img"
    images.mkdir()
    (images / "it4.png").write_bytes(b"png")
    data = load_dataset("amazon2023-All_Beauty", PreprocessOptions(2, 2), data_dir=folder, image_dir=images,
                        cache_dir=tmp_path / "c", verbose=False)
    by_id = data.items.set_index("raw_id")
    assert by_id.loc["it4", "image"] == str(images / "it4.png") and by_id.loc["it3", "image"].startswith("https://")


def test_amazon2023_real_shapes_ids_with_leading_zeros_and_ragged_meta(tmp_path):
    """Meta records of varying shape (details keys, prices as numbers or text, empty lists) and ISBN-like item
    ids whose leading zeros a type-inferring CSV reader would drop."""
    folder = write_benchmark(tmp_path / "b", rows=[(u, "0" + i[2:] + "439064872", r, t) for u, i, r, t in ROWS])[2]
    meta = [json.dumps(dict(_meta_2023(i), parent_asin=f"0{i}439064872", price=p, details=d, categories=c))
            for i, (p, d, c) in enumerate([(5.99, {"A": 1}, []), ("from 5", {"B": "x", "C": [1, 2]}, ["Tools"]),
                                           (None, {}, []), (3, {"D": None}, []), (1.5, {"E": "e"}, []),
                                           ("9", {"F": 2.5}, []), (0, {"G": {"nested": 1}}, [])])]
    _write_lines(folder / "meta_All_Beauty.jsonl", meta)
    data = load_dataset("amazon2023-last_out-All_Beauty", PreprocessOptions(), data_dir=folder,
                        cache_dir=tmp_path / "c", verbose=False)
    by_id = data.items.set_index("raw_id")
    assert sorted(by_id.index[1:]) == [f"0{i}439064872" for i in range(7)]
    assert by_id.loc["01439064872", "text"].endswith("Details: B: x; C: [1, 2]")
    assert "Categories: Tools" in by_id.loc["01439064872", "text"]


def test_amazon2023_hub_files_come_through_the_hf_cache(tmp_path, monkeypatch):
    """Without --data-dir every part is fetched with hf_hub_download (the HF cache; offline it raises), and the
    downloaded files are then read like local ones."""
    import huggingface_hub

    local = write_2023(tmp_path / "hub")
    asked = []

    def download(repo, path, repo_type, revision):
        asked.append((repo, path, repo_type, revision))
        return str(local / Path(path).name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setenv("KDSR_AMAZON2023_REVISION", "abc123")
    raw = load_amazon2023(None, "amazon2023-All_Beauty")
    assert len(raw.interactions) == len(ROWS) and len(raw.items) == 7
    assert asked == [("McAuley-Lab/Amazon-Reviews-2023", "raw/review_categories/All_Beauty.jsonl", "dataset", "abc123"),
                     ("McAuley-Lab/Amazon-Reviews-2023", "raw/meta_categories/meta_All_Beauty.jsonl", "dataset",
                      "abc123")]

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataError, match=r"hf://datasets/McAuley-Lab/Amazon-Reviews-2023/benchmark/5core/last_out/"
                                        r"All_Beauty.train.csv: not available \(LocalEntryNotFoundError, "
                                        r"HF_HUB_OFFLINE=1\)\. Fix: download it once online"):
        amazon2023_files(None, "All_Beauty", benchmark=True)


def test_amazon2023_data_dir_missing_a_part_is_an_error_not_a_download(tmp_path):
    folder = write_2023(tmp_path / "a23")
    (folder / "meta_All_Beauty.jsonl").unlink()
    with pytest.raises(DataError, match=r"meta_All_Beauty.jsonl: Amazon 2023 meta file not found \(nor Parquet "
                                        r"files under raw_meta_All_Beauty/\)"):
        load_amazon2023(folder, "amazon2023-All_Beauty")


def test_amazon2023_official_split_is_reproduced_exactly(tmp_path):
    frame, rank, _ = write_benchmark(tmp_path / "bench")
    data = load_dataset("amazon2023-last_out-All_Beauty", PreprocessOptions(), data_dir=tmp_path / "bench",
                        cache_dir=tmp_path / "c", verbose=False)
    split = make_split(data, "loo")
    raw_id = data.items["raw_id"].to_numpy()
    for stage, positions in (("valid", split.valid_pos), ("test", split.test_pos)):
        expected = frame[rank == (1 if stage == "valid" else 0)].set_index("user_id")["parent_asin"]
        got = {data.user_raw_ids[k]: raw_id[data.item_seq[positions[k]]] for k in range(data.n_users)}
        assert got == expected.to_dict(), stage
    assert data.meta["published_split"].startswith("k-core and dedup not applied") and data.n_users == 6


def test_amazon2023_official_split_checks_its_files(tmp_path):
    write_benchmark(tmp_path / "bench")
    valid = pd.read_csv(tmp_path / "bench" / "All_Beauty.valid.csv")
    pd.concat([valid, valid.iloc[:1]]).to_csv(tmp_path / "bench" / "All_Beauty.valid.csv", index=False)
    with pytest.raises(DataError, match="All_Beauty.valid.csv: field 'user_id': user 'u0' has more than one valid row"):
        load_amazon2023(tmp_path / "bench", "amazon2023-last_out-All_Beauty")


def test_amazon2023_broken_variants(tmp_path):
    folder = write_2023(tmp_path / "a23")
    lines = (folder / "All_Beauty.jsonl").read_text().splitlines()
    bad = json.loads(lines[3])
    bad["timestamp"] = "yesterday"
    (folder / "All_Beauty.jsonl").write_text("\n".join(lines[:3] + [json.dumps(bad)] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=r"All_Beauty.jsonl: field 'timestamp': cannot parse 'yesterday' \(data row 4\)"):
        load_amazon2023(folder, "amazon2023-All_Beauty")
    rows = [{k: v for k, v in json.loads(line).items() if k != "parent_asin"} for line in lines]
    (folder / "All_Beauty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"All_Beauty.jsonl: field 'parent_asin': column missing \(found: "):
        load_amazon2023(folder, "amazon2023-All_Beauty")


def test_amazon2023_empty_after_k_core(tmp_path):
    folder = write_2023(tmp_path / "a23")
    with pytest.raises(DataError, match="no interactions left after 50/5-core"):
        load_dataset("amazon2023-All_Beauty", PreprocessOptions(50, 5), data_dir=folder, cache_dir=tmp_path / "c",
                     verbose=False)


# ------------------------------------------------------------------------------------------------ compression
def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("loader", ["2014", "2018", "2023"])
def test_truncated_gzip_is_one_line_naming_the_file(tmp_path, loader):
    if loader == "2023":
        folder = write_2023(tmp_path / "x", "jsonl.gz")
        broken = folder / "All_Beauty.jsonl.gz"
        load = lambda: load_amazon2023(folder, "amazon2023-All_Beauty")  # noqa: E731
    elif loader == "2018":
        folder = write_2018(tmp_path / "x")
        broken = folder / "Beauty_5.json.gz"
        load = lambda: load_amazon2018(folder, "Beauty")  # noqa: E731
    else:
        folder = write_2018(tmp_path / "x")  # the 2014 review lines have the same fields
        (folder / "Beauty_5.json.gz").rename(folder / "reviews_Beauty_5.json.gz")
        broken = folder / "reviews_Beauty_5.json.gz"
        load = lambda: load_amazon(folder, "beauty")  # noqa: E731
    _truncate(broken)
    with pytest.raises(DataError) as err:
        load()
    message = str(err.value)
    assert str(broken) in message and "truncated" in message and "download the file again" in message
    assert "\n" not in message


@pytest.mark.parametrize("content,what", [(b"plain text, not gzip\n", "not compressed"), (b"", "empty"),
                                          (b"BZh91AY&SY", "bzip2 data")])
def test_gz_that_is_not_gzip(tmp_path, content, what):
    folder = write_2018(tmp_path / "x")
    (folder / "Beauty_5.json.gz").write_bytes(content)
    with pytest.raises(DataError, match=rf"Beauty_5.json.gz: is named .gz but is {what}.*Fix: rename it"):
        load_amazon2018(folder, "Beauty")


def test_bzip2_and_xz_reviews_are_read_when_named_so(tmp_path):
    import bz2
    import lzma

    folder = write_2018(tmp_path / "x")
    text = gzip.open(folder / "Beauty_5.json.gz", "rb").read()
    (folder / "Beauty_5.json.gz").unlink()
    for name, compress in (("Beauty_5.json", bz2.compress), ("Beauty_5.json", lzma.compress)):
        (folder / name).write_bytes(compress(text))  # named .json but compressed: read by content
        assert len(load_amazon2018(folder, "Beauty").interactions) == len(ROWS)


def test_ratings_csv_truncated(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    with gzip.open(folder / "ratings_Beauty.csv", "wb") as f:  # gzip bytes under a .csv name
        f.write(b"".join(f"{u},{i},{r},{t}\n".encode() for u, i, r, t in ROWS))
    _write_lines(folder / "meta_Beauty.json.gz", [repr({"asin": "it0", "title": "t"})])
    _truncate(folder / "ratings_Beauty.csv")
    with pytest.raises(DataError, match=r"ratings_Beauty.csv: ends early: the compressed stream is truncated"):
        load_amazon(folder, "beauty")


def test_atomic_files_compressed_or_broken(tmp_path):
    from helpers import write_atomic

    folder = write_atomic(tmp_path / "at", "at", [("u", "i", 1, 1), ("u", "j", 1, 2), ("u", "k", 1, 3)])
    inter = folder / "at.inter"
    inter.write_bytes(gzip.compress(inter.read_bytes()))  # gzip bytes under the plain name: read by content
    assert len(load_dataset(str(folder), PreprocessOptions(1, 1), cache_dir=tmp_path / "c", verbose=False)
               .item_seq) == 3
    _truncate(inter)
    with pytest.raises(DataError, match=r"at.inter: ends early: the compressed stream is truncated"):
        load_dataset(str(folder), PreprocessOptions(1, 1), cache_dir=tmp_path / "c2", verbose=False)
    inter.write_bytes(b"user_id:token\titem_id:token\ttimestamp:float\n\xff\xfe\x00bad\t1\t2\n")
    with pytest.raises(DataError, match=r"at.inter: is not UTF-8 text"):
        load_dataset(str(folder), PreprocessOptions(1, 1), cache_dir=tmp_path / "c3", verbose=False)


def test_published_split_refuses_a_re_split(tmp_path):
    write_benchmark(tmp_path / "bench")
    data = load_dataset("amazon2023-last_out-All_Beauty", PreprocessOptions(), data_dir=tmp_path / "bench",
                        cache_dir=tmp_path / "c", verbose=False)
    with pytest.raises(DataError, match="is a published split.*Fix: use --split loo"):
        make_split(data, "ratio")


@pytest.mark.parametrize("variant", ["missing column", "bad timestamp", "not gzip", "truncated parquet"])
def test_amazon2023_benchmark_and_parquet_broken_variants(tmp_path, variant):
    if variant == "truncated parquet":
        folder = write_2023(tmp_path / "p", "parquet")
        shard = next((folder / "raw_review_All_Beauty").glob("*.parquet"))
        _truncate(shard, 0.5)
        with pytest.raises(DataError, match=rf"{shard.name}: reviews could not be read with datasets"):
            load_amazon2023(folder, "amazon2023-All_Beauty")
        return
    _, _, folder = write_benchmark(tmp_path / "b")
    test_csv = folder / "All_Beauty.test.csv"
    if variant == "missing column":
        pd.read_csv(test_csv).drop(columns=["timestamp"]).to_csv(test_csv, index=False)
        match = r"All_Beauty.test.csv: .*timestamp"
    elif variant == "bad timestamp":
        frame = pd.read_csv(test_csv, dtype=str)
        frame.loc[0, "timestamp"] = "soon"
        frame.to_csv(test_csv, index=False)
        match = r"All_Beauty.test.csv: .*(timestamp|could not be read)"
    else:
        (folder / "All_Beauty.test.csv").unlink()
        (folder / "All_Beauty.test.csv.gz").write_text("user_id,parent_asin,rating,timestamp\n")
        match = r"All_Beauty.test.csv.gz: is named .gz but is not compressed"
    with pytest.raises(DataError, match=match):
        load_amazon2023(folder, "amazon2023-last_out-All_Beauty")


def test_amazon2023_reads_a_real_offline_hf_cache(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 with the files in the HF cache layout (refs/main -> snapshots/<commit>/<path>): the
    real hf_hub_download resolves them without any network."""
    import huggingface_hub.constants as hf_constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--McAuley-Lab--Amazon-Reviews-2023"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    source = write_2023(tmp_path / "src")
    for name, path in (("All_Beauty.jsonl", "raw/review_categories"), ("meta_All_Beauty.jsonl", "raw/meta_categories")):
        (repo / "snapshots" / commit / path).mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / path / name).write_bytes((source / name).read_bytes())
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    data = load_dataset("amazon2023-All_Beauty", PreprocessOptions(2, 2), cache_dir=tmp_path / "c", verbose=False)
    assert data.n_users == 6 and data.n_items == 7
    assert any(commit in f for f in data.meta["source_files"])  # the snapshot read is on record


def test_amazon2018_bad_timestamp_and_empty_after_k_core(tmp_path):
    folder = write_2018(tmp_path / "a18")
    lines = gzip.open(folder / "Beauty_5.json.gz", "rt").read().splitlines()
    bad = json.loads(lines[2])
    bad["unixReviewTime"] = "last tuesday"
    _write_lines(folder / "Beauty_5.json.gz", lines[:2] + [json.dumps(bad)] + lines[3:])
    with pytest.raises(DataError, match=r"Beauty_5.json.gz: field 'unixReviewTime': cannot parse 'last tuesday'"):
        load_amazon2018(folder, "Beauty")
    folder = write_2018(tmp_path / "b18")
    with pytest.raises(DataError, match="no interactions left after 9/5-core"):
        load_dataset("amazon2018-Beauty", PreprocessOptions(9, 5), data_dir=folder, cache_dir=tmp_path / "c",
                     verbose=False)
