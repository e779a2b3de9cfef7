"""The report from hand-made records: known tables, marks, improvement and p-value markers, missing cells,
byte-identical regeneration."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.report import main as report_main
from harness.report import write_report
from harness.trial import TrialConfig

PROTOCOL = {"split": "chronological leave-one-out", "ranking": "full ranking over all items",
            "history_excluded": False, "model_selection": "best validation NDCG@10 (patience 10); test once",
            "train_fraction": 1.0, "popularity_buckets": {"cold_max_train_count": 5, "hot_min_train_count": 30}}


def record(method: str, seed: int, ndcg: float, dataset="ml-100k", backbone="sasrec", encoder=("minilm-l6",),
           retention=None, **settings) -> dict:
    cfg = TrialConfig(dataset=dataset, backbone=backbone, method=method, seed=seed, encoder=list(encoder),
                      **settings).canonical()
    metrics = {"HR@10": 2 * ndcg, "NDCG@10": ndcg, "MRR@10": ndcg / 2, "n": 100}
    features = [] if method == "id" else [{"encoder": e, "modality": "text", "family": "text-encoder",
                                           "params": 22_700_000, "extract_seconds": 10.0, "items_per_second": 100.0}
                                          for e in encoder]
    return {"schema": 1, "key": cfg.key(), "config": asdict(cfg), "protocol": PROTOCOL,
            "valid": {"overall": metrics}, "test": {"overall": metrics, "cold": {**metrics, "n": 5}},
            "best_epoch": 3, "epochs_run": 5, "trainable_params": 1000, "seconds_per_epoch": 2.0,
            "peak_memory_mb": 500.0, "runtime": {"device": "cpu"}, "features": features,
            "curves": [{"epoch": e, "train_seconds": 2.0} for e in range(1, 4)],
            "retention_curve": [{"epoch": e, "text:minilm-l6": v} for e, v in enumerate(retention or [])]}


def write(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / f"{r['key']}.json").write_text(json.dumps(r))
    return folder


def main_rows(out, name="main-minilm-l6"):
    lines = (out / "tables" / f"{name}.md").read_text().splitlines()
    rows = [line.strip("|").split("|") for line in lines if line.startswith("| ") and "---" not in line]
    return {(r[0].strip(), r[1].strip()): [c.strip() for c in r[2:]] for r in rows[1:]}


def test_main_table_marks_improvement_and_significance(tmp_path):
    records = []
    for seed, (i, t, k) in enumerate([(0.100, 0.080, 0.130), (0.110, 0.090, 0.141), (0.120, 0.100, 0.150)]):
        records += [record("id", seed, i), record("two_stage", seed, t), record("kdsr", seed, k)]
    out = write_report(write(tmp_path / "records", records), tmp_path / "report", metrics=["NDCG@10"])
    rows = main_rows(out)
    # kdsr best (bold), id second (underlined); kdsr - id = 0.030, 0.031, 0.030: paired t-test p < 0.01
    assert rows[("sasrec", "kdsr")] == ["**0.1403 ± 0.0100**<sup>**</sup>"]
    assert rows[("sasrec", "id")] == ["<u>0.1100 ± 0.0100</u>"]
    assert rows[("sasrec", "two_stage")] == ["0.0900 ± 0.0100"]
    assert rows[("sasrec", "Improv. (kdsr vs best baseline)")] == ["+27.6% vs id"]
    latex = (out / "tables" / "main-minilm-l6.tex").read_text()
    assert "\\textbf{0.1403 $\\pm$ 0.0100}$^{**}$" in latex and "two\\_stage" in latex
    for needed in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{document}", "\\end{document}"):
        assert needed in latex
    assert latex.count("{") == latex.count("}")


def test_no_marker_without_significance(tmp_path):
    records = []
    for seed, (i, k) in enumerate([(0.10, 0.13), (0.11, 0.09), (0.12, 0.13)]):
        records += [record("id", seed, i), record("kdsr", seed, k)]
    rows = main_rows(write_report(write(tmp_path / "r", records), tmp_path / "o", metrics=["NDCG@10"]))
    assert rows[("sasrec", "kdsr")] == ["**0.1167 ± 0.0231**"]  # best, but p > 0.05: no star
    assert rows[("sasrec", "Improv. (kdsr vs best baseline)")] == ["+6.1% vs id"]


def test_missing_cells_are_shown_as_missing_and_partial_sweeps_report(tmp_path):
    records = [record("id", 0, 0.1), record("kdsr", 0, 0.12), record("id", 0, 0.2, dataset="ml-1m")]
    out = write_report(write(tmp_path / "r", records), tmp_path / "o", metrics=["NDCG@10"])
    rows = main_rows(out)
    assert rows[("sasrec", "kdsr")] == ["**0.1200**", "–"]  # no ml-1m kdsr trial: missing, not 0
    assert rows[("sasrec", "id")] == ["<u>0.1000</u>", "**0.2000**"]
    csv = (out / "tables" / "main-minilm-l6.csv").read_text()
    assert "ml-1m,NDCG@10,,," in csv  # mean and std empty for the missing cell


def test_a_rewritten_report_drops_the_tables_its_records_no_longer_give(tmp_path):
    store = write(tmp_path / "r", [record("id", 0, 0.1)])
    out = write_report(store, tmp_path / "o", metrics=["NDCG@10"])
    (out / "tables" / "main-old-layout.csv").write_text("stale")
    (out / "tables" / "notes.txt").write_text("not a table: kept")
    write_report(store, out, metrics=["NDCG@10"])
    assert not (out / "tables" / "main-old-layout.csv").exists()
    assert (out / "tables" / "notes.txt").exists() and (out / "tables" / "overview.md").exists()


def test_overview_repeats_encoder_free_rows_per_encoder_and_bolds_the_best(tmp_path):
    records = [record("id", 0, 0.10), record("id", 1, 0.12), record("kdsr", 0, 0.13),
               record("kdsr", 0, 0.09, encoder=("smollm2-135m",)), record("frozen", 0, 0.11, backbone="gru4rec"),
               record("kdsr", 0, 0.14, init_std=0.1)]
    out = write_report(write(tmp_path / "r", records), tmp_path / "o", metrics=["NDCG@10"])
    lines = (out / "tables" / "overview.md").read_text().splitlines()
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    assert table[0] == ["method", "ml-100k gru4rec + minilm-l6", "ml-100k sasrec + minilm-l6",
                        "ml-100k sasrec + smollm2-135m"]
    rows = {r[0]: r[1:] for r in table[1:]}
    assert rows["id"] == ["–", "0.1100 ± 0.0141", "**0.1100 ± 0.0141**"]  # the ID-only trials in both encoders
    assert rows["frozen"] == ["0.1100", "–", "–"]  # a single value in its column: not marked best
    assert rows["kdsr"] == ["–", "0.1300", "0.0900"]
    assert rows["kdsr (init_std=0.1)"] == ["–", "**0.1400**", "–"]
    assert "Test split" in lines[0] and "mean ± std over seeds [0, 1]" in lines[0]


def test_regeneration_is_byte_identical(tmp_path):
    records = [record(m, s, 0.1 + 0.01 * s + 0.005 * i, retention=[0.7, 0.6 - 0.1 * i, 0.5])
               for i, m in enumerate(["id", "two_stage", "kdsr", "kdsr_no_hol"]) for s in range(2)]
    records += [record("kdsr", 0, 0.1 + 0.001 * k * d, K=k, D=d) for k in (20, 50) for d in (4, 8)]
    source = write(tmp_path / "r", records)
    first, second = write_report(source, tmp_path / "a"), write_report(source, tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert {"figures/retention.png", "figures/retention.pdf", "figures/k_d_heatmap.png",
            "tables/k_d.tex", "tables/ablation-minilm-l6.md", "trials_long.csv"} <= {str(f) for f in files}
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_cli_errors_name_the_folder(tmp_path, capsys):
    assert report_main(["--results", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("{}")
    assert report_main(["--results", str(tmp_path / "bad"), "--out", str(tmp_path / "o")]) == 2
    assert "x.json" in capsys.readouterr().err


@pytest.mark.parametrize("metric", ["HR@10", "MRR@10"])
def test_other_metrics(tmp_path, metric):
    records = [record("id", 0, 0.1), record("kdsr", 0, 0.2)]
    rows = main_rows(write_report(write(tmp_path / "r", records), tmp_path / "o", metrics=[metric]))
    factor = {"HR@10": 2, "MRR@10": 0.5}[metric]
    assert rows[("sasrec", "kdsr")] == [f"**{0.2 * factor:.4f}**"]


def test_latex_tables_compile_with_a_real_engine(tmp_path):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("pdflatex") is None:
        if os.environ.get("KDSR_REQUIRE_LATEX") == "1":
            pytest.fail("KDSR_REQUIRE_LATEX=1 but pdflatex is missing (apt-get install texlive-latex-recommended)")
        pytest.skip("no pdflatex here (CI installs texlive-latex-base and texlive-latex-recommended)")
    records = [record(m, s, 0.1 + 0.01 * s + 0.005 * i) for i, m in enumerate(["id", "two_stage", "kdsr",
                                                                               "kdsr_no_code"]) for s in range(3)]
    out = write_report(write(tmp_path / "r", records), tmp_path / "o")
    script = Path(__file__).resolve().parents[1] / "scripts" / "compile_latex.sh"
    result = subprocess.run(["bash", str(script), str(out / "tables")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "compiled" in result.stdout


@pytest.mark.parametrize("store", ["cpu", "ml1m"])
def test_committed_reports_regenerate_byte_identical(store, tmp_path):
    """The committed report of a result store is exactly what its committed records give today (all stores:
    scripts/regenerate_reports.sh)."""
    committed = Path(__file__).resolve().parents[1] / "results" / store
    out = write_report(committed / "records", tmp_path / store)
    produced = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert produced == sorted(p.relative_to(committed) for p in committed.rglob("*")
                              if p.is_file() and p.relative_to(committed).parts[0] not in ("records", "search"))
    for relative in produced:
        assert (out / relative).read_bytes() == (committed / relative).read_bytes(), relative


def test_core_variant_drops_values_records_implied_before_a_setting_existed():
    from harness.report import core_variant

    assert core_variant("K=20 holistic_projection=separate") == "K=20"
    assert core_variant("holistic_projection=shared") == "holistic_projection=shared"


def test_anchors_table_puts_our_backbones_beside_the_published_numbers_with_their_protocol(tmp_path):
    """ID-only rows of ours (per backbone and protocol) and every anchor of the data set, each with its source;
    sparse-regime trials never sit beside full-data anchors."""
    from harness.anchors import load_anchors

    records = [record("id", s, 0.1 + 0.01 * s, exclude_history=True) for s in range(3)]
    records += [record("kdsr", 0, 0.2), record("id", 0, 0.05, train_fraction=0.2)]
    records[-1]["protocol"] = {**PROTOCOL, "train_fraction": 0.2}
    for r in records[:3]:
        r["protocol"] = {**PROTOCOL, "history_excluded": True}
    out = write_report(write(tmp_path / "r", records), tmp_path / "o")
    lines = (out / "tables" / "anchors.md").read_text().splitlines()
    ours = [line for line in lines if "| ours:" in line]
    assert len(ours) == 1 and "| True | 3 | 0.2200 ± 0.0200 | 0.1100 ± 0.0100 |" in ours[0]
    for anchor in load_anchors()["ml-100k"]:
        row = next(line for line in lines if f"| {anchor.model} |" in line)
        assert anchor.source in row and f"{anchor.test['NDCG@10']:.4f}" in row and "| False |" in row


def test_a_malformed_anchor_names_the_file_the_entry_and_the_field(tmp_path):
    from harness.anchors import load_anchors

    path = tmp_path / "anchors.yaml"
    path.write_text("ml-1m:\n  - model: X\n    backbone: sasrec\n    paper: P\n    source: S\n    protocol: L\n"
                    "    history_excluded: maybe\n    test: {NDCG@10: 0.1}\n  - model: Y\n")
    with pytest.raises(ValueError, match=r"anchors.yaml: ml-1m entry 1: history_excluded must be true, false or null"):
        load_anchors(path)
    path.write_text("ml-1m:\n  - model: Y\n")
    with pytest.raises(ValueError, match=r"ml-1m entry 1: missing field\(s\) backbone, paper"):
        load_anchors(path)


def test_scaling_slope_is_fitted_per_method_with_a_confidence_interval(tmp_path):
    import numpy as np
    from scipy import stats as scipy_stats

    records = []
    for k, (name, params) in enumerate((("minilm-l6", 1e7), ("mpnet-base", 1e8), ("qwen2.5-1.5b", 1e9))):
        for seed in range(4):
            noise = 0.0004 * ((k + seed) % 3 - 1)  # per-encoder means deviate a little from the line
            for method, value in (("kdsr", 0.05 + 0.01 * k + noise), ("two_stage", 0.06 + 0.002 * (k == 1) + noise)):
                r = record(method, seed, value, encoder=(name,))
                r["features"][0]["params"] = int(params)
                records.append(r)
    out = write_report(write(tmp_path / "r", records), tmp_path / "out")
    rows = {r[3].strip(): [c.strip() for c in r] for r in
            (line.strip("|").split("|") for line in (out / "tables" / "encoder_scaling_slope.md").read_text()
             .splitlines() if line.startswith("| ml-100k"))}
    # the fit is on the 3 per-encoder means (1 degree of freedom), not on 12 trials as independent points
    means = [0.05 + 0.01 * k + 0.0004 * np.mean([(k + s) % 3 - 1 for s in range(4)]) for k in range(3)]
    fit = scipy_stats.linregress([7, 8, 9], means)
    half = scipy_stats.t.ppf(0.975, 1) * fit.stderr
    assert rows["kdsr"][6] == f"{fit.slope:+.4f}" and rows["kdsr"][4:6] == ["3", "12"]
    assert rows["kdsr"][7] == f"[{fit.slope - half:+.4f}, {fit.slope + half:+.4f}]"
    assert rows["kdsr"][10] == ("yes" if fit.slope - half > 0 else "no")
    assert rows["two_stage"][10] == "no" and abs(float(rows["two_stage"][6])) < 0.0005  # a hump, no slope
    costs = (out / "tables" / "encoder_costs.md").read_text()
    assert "| ml-100k | qwen2.5-1.5b | 1000.0M |" in costs


def test_search_table_lists_every_sampled_setting_best_first_and_bolds_the_chosen_one(tmp_path):
    """The report of a searched store shows the search (validation only); a cell whose search was
    interrupted (records, no summary) is labelled as still searching, with nothing bold."""
    store = tmp_path / "store"
    write(store / "records", [record("id", s, 0.05, encoder=()) for s in (0, 1)])
    sasrec = [record("id", 0, v, encoder=(), lr=lr, dropout=d) for v, lr, d in
              ((0.04, 1e-3, 0.1), (0.06, 2e-3, 0.3), (0.05, 5e-4, 0.2))]
    for r in sasrec:
        r["test"]["overall"] = {**r["test"]["overall"], "NDCG@10": 0.999}  # must never appear
    gru = [record("id", 0, v, encoder=(), backbone="gru4rec", lr=lr) for v, lr in ((0.03, 1e-3), (0.02, 3e-3))]
    write(store / "search" / "records", sasrec + gru)
    cell = asdict(TrialConfig(dataset="ml-100k", backbone="sasrec", method="id").canonical())
    (store / "search" / "summary.json").write_text(json.dumps(
        {"cell": cell, "best": {"lr": 2e-3, "dropout": 0.3}, "samples": 3, "sampler": "optuna TPESampler(seed=0)",
         "space": {"lr": ["loguniform", 1e-4, 1e-2], "dropout": ["uniform", 0.0, 0.5]}}))
    out = write_report(store, tmp_path / "out")
    text = (out / "tables" / "search.md").read_text()
    assert "0.999" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 5  # backbones in the tables' order: gru4rec, then sasrec
    assert all("searching (2 so far)" in row and "**" not in row for row in rows[:2])
    assert "0.0300" in rows[0] and "0.0200" in rows[1]
    assert "**0.0600**" in rows[2] and "**0.002**" in rows[2] and "done (3 of 3)" in rows[2]
    assert "0.0500" in rows[3] and "**" not in rows[3] and "0.0400" in rows[4]
    assert "## search" in (out / "README.md").read_text()
