"""The embedded default data sets, read from the pip packages (no network)."""
from harness.data import load_dataset
from harness.data.split import leave_one_out


def test_ml100k_after_5_core(tmp_path):
    data = load_dataset("ml-100k", cache_dir=tmp_path, verbose=False)
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1349, 99287)
    texts = set(data.items["text"])
    assert "Toy Story (1995). Genres: Animation, Children's, Comedy." in texts
    split = leave_one_out(data)
    assert len(split.test_pos) == 943
    # chronological: each user's test item is the latest (ties broken by file order)
    last = data.timestamps[split.test_pos]
    prev = data.timestamps[split.valid_pos]
    assert (last >= prev).all()
