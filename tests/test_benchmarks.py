"""The RecBole race's arithmetic: strict and common-target times on hand-made curves."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "recbole_race.py"


def load_race():
    spec = importlib.util.spec_from_file_location("recbole_race", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curve(points):
    return [{"epoch": epoch, "valid_ndcg10": value, "wall": wall} for epoch, value, wall in points]


def test_time_to_is_the_first_epoch_at_or_above_the_target():
    race = load_race()
    points = curve([(1, 0.02, 10.0), (2, 0.05, 20.0), (3, 0.04, 30.0), (4, 0.06, 40.0)])
    assert race.time_to(points, 0.05) == (20.0, 2)
    assert race.time_to(points, 0.055) == (40.0, 4)
    assert race.time_to(points, 0.07) == (None, None)


def test_race_row_when_ours_never_reaches_the_peers_best():
    race = load_race()
    peer = {"curve": curve([(1, 0.05, 60.0), (2, 0.07, 120.0), (3, 0.06, 180.0)]), "test": {"ndcg@10": 0.061}}
    ours = {"curve": curve([(1, 0.04, 4.0), (2, 0.06, 8.0), (3, 0.065, 12.0), (4, 0.064, 16.0)]),
            "test": {"ndcg@10": 0.058}}
    cells = [cell.strip() for cell in race.race_row("sasrec", peer, ours, 1.5).strip("|").split("|")]
    assert cells[1:6] == ["0.0700 (2)", "0.0650 (3)", "120", "not reached", "–"]
    # common target 0.065: the peer first reaches it at epoch 2 (120 s), ours at epoch 3 (12 s)
    assert cells[6:10] == ["0.0650", "120", "12 (3)", "10.0x"]
    assert cells[10:12] == ["60.0", "4.0"]  # s/epoch over each whole run
    assert cells[12:] == ["0.0610", "0.0580", "1.5"]


def test_race_row_when_ours_reaches_the_peers_best():
    race = load_race()
    peer = {"curve": curve([(1, 0.05, 50.0), (2, 0.06, 100.0)]), "test": {"ndcg@10": 0.05}}
    ours = {"curve": curve([(1, 0.055, 5.0), (2, 0.07, 10.0)]), "test": {"ndcg@10": 0.06}}
    cells = [cell.strip() for cell in race.race_row("gru4rec", peer, ours, 0.0).strip("|").split("|")]
    assert cells[3:6] == ["100", "10 (2)", "10.0x"]
    assert cells[6:10] == ["0.0600", "100", "10 (2)", "10.0x"]
