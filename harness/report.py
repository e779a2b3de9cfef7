"""Paper-style tables and figures from the result store, and nothing else.

    python -m harness.report --results runs/demo --out results/demo [--metrics HR@10 NDCG@10 ...] [--split test]

Writes under --out: trials_long.csv (one row per trial x split x group x metric), tables/ (main, ablation,
encoder scaling, K x D, efficiency; each as wide CSV, standalone LaTeX with booktabs, and Markdown),
figures/ (encoder scaling, K x D heatmaps, modality retention; PNG and PDF) and README.md with every
table. The same records always give byte-identical files; a missing cell is shown as "–", never as 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from harness.anchors import load_anchors
from harness.store import load_records
from harness.trial import SETTINGS, TrialConfig

DEFAULT_METRICS = ("HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20", "MRR@20")
KDSR, ABLATIONS = "kdsr", ("kdsr_no_hol", "kdsr_no_code", "kdsr_no_async")
METHOD_ORDER = ("id", "frozen", "two_stage", "mse_kd", "contrastive_kd", KDSR, *ABLATIONS)
BACKBONE_ORDER = ("pop", "gru4rec", "sasrec", "bert4rec")
AXES = ("dataset", "backbone", "method", "encoder", "seed")
MISSING = "–"


# ---------------------------------------------------------------- records -> frames
def variant(config: dict) -> str:
    """Settings that differ from the trial defaults, other than the grid's main axes (e.g. "K=20 D=4"); a
    setting a record predates counts with the value it implied (e.g. holistic_projection=separate)."""
    known = {k: v for k, v in config.items() if k in SETTINGS}  # a setting removed since: ignored here
    trial = asdict(TrialConfig.from_config(known).canonical())
    defaults = asdict(TrialConfig(method=config["method"], backbone=config["backbone"]).canonical())
    diffs = [f"{k}={_fmt_value(v)}" for k, v in sorted(trial.items())
             if k not in AXES and not SETTINGS[k].execution and v != defaults[k]]
    return " ".join(diffs)


def core_variant(text: str) -> str:
    """A variant without the settings that only hold the value records implied before the setting existed
    (e.g. holistic_projection=separate): what was the default when the trial ran. Tables that keep "default
    settings only" filter on this, and label rows with the full variant."""
    kept = []
    for token in text.split():
        name, _, value = token.partition("=")
        before = SETTINGS[name].before if name in SETTINGS else None
        if before is None or _fmt_value(before) != value:
            kept.append(token)
    return " ".join(kept)


def _labelled(method: str, setting: str) -> str:
    return method + (f" ({setting})" if setting else "")


def _fmt_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def trials_frame(records: list[dict]) -> pd.DataFrame:
    """One row per trial: axes, variant, encoder facts, efficiency."""
    rows = []
    for r in records:
        c = r["config"]
        feats = r.get("features") or []
        curves = [e["train_seconds"] for e in r.get("curves", []) if e.get("epoch", 0) > 0 and "train_seconds" in e]
        rows.append({
            "key": r["key"], "dataset": c["dataset"], "backbone": c["backbone"], "method": c["method"],
            "encoder": "+".join(c.get("encoder") or []) or MISSING, "seed": c["seed"], "variant": variant(c),
            "K": c.get("K"), "D": c.get("D"),
            "encoder_params": sum(f.get("params") or 0 for f in feats) or None,
            "family": "+".join(f"{f['family']}:{f['modality']}" for f in feats) or None,
            "trainable_params": r.get("trainable_params"), "best_epoch": r.get("best_epoch"),
            "seconds_per_epoch": float(np.median(curves)) if curves else r.get("seconds_per_epoch"),
            "peak_memory_mb": r.get("peak_memory_mb"), "device": r.get("runtime", {}).get("device"),
        })
    return pd.DataFrame(rows)


def long_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        c = r["config"]
        base = {"key": r["key"], "dataset": c["dataset"], "backbone": c["backbone"], "method": c["method"],
                "encoder": "+".join(c.get("encoder") or []) or MISSING, "seed": c["seed"], "variant": variant(c)}
        for split in ("valid", "test"):
            for group, metrics in sorted(r[split].items()):
                for metric, value in sorted(metrics.items()):
                    if metric != "n":
                        rows.append({**base, "split": split, "group": group, "n": metrics.get("n"),
                                     "metric": metric, "value": value})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["dataset", "backbone", "method", "encoder", "variant", "seed", "split", "group",
                              "metric"], kind="stable").reset_index(drop=True)


def _order(values, preferred) -> list:
    values = list(dict.fromkeys(values))
    return sorted(values, key=lambda v: (preferred.index(v) if v in preferred else len(preferred), str(v)))


# ---------------------------------------------------------------- tables
class Table:
    """A table as strings (cells already formatted) plus marks: 'bold' / 'underline' per cell."""

    def __init__(self, name: str, caption: str, header: list[str], rows: list[list[str]],
                 marks: dict | None = None, groups: list[int] | None = None, numeric: pd.DataFrame | None = None,
                 stars: dict | None = None):
        self.name, self.caption, self.header, self.rows = name, caption, header, rows
        self.marks = marks or {}
        self.stars = stars or {}  # (row, column) -> "*" or "**": significance markers
        self.groups = groups or []  # row indices that start a new group (a midrule before them)
        self.numeric = numeric  # the wide CSV

    def markdown(self) -> str:
        def cell(i, j, text):
            mark = self.marks.get((i, j))
            text = f"**{text}**" if mark == "bold" else f"<u>{text}</u>" if mark == "underline" else text
            return text + (f"<sup>{self.stars[(i, j)]}</sup>" if (i, j) in self.stars else "")

        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(i, j, t) for j, t in enumerate(row)) + " |" for i, row in enumerate(self.rows)]
        return f"{self.caption}\n\n" + "\n".join(lines) + "\n"

    def latex(self) -> str:
        def cell(i, j, text):
            text = _tex(text)
            mark = self.marks.get((i, j))
            text = f"\\textbf{{{text}}}" if mark == "bold" else f"\\underline{{{text}}}" if mark == "underline" else text
            return text + (f"$^{{{self.stars[(i, j)]}}}$" if (i, j) in self.stars else "")

        spec = "l" * 2 + "r" * (len(self.header) - 2)
        body = []
        for i, row in enumerate(self.rows):
            if i in self.groups and i > 0:
                body.append("\\midrule")
            body.append(" & ".join(cell(i, j, t) for j, t in enumerate(row)) + " \\\\")
        return ("\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\usepackage{booktabs}\n"
                "\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n\\begin{document}\n\\begin{table}[t]\n"
                "\\centering\\scriptsize\n"
                f"\\caption{{{_tex(self.caption)}}}\n\\begin{{tabular}}{{{spec}}}\n\\toprule\n"
                + " & ".join(_tex(h) for h in self.header) + " \\\\\n\\midrule\n" + "\n".join(body)
                + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n\\end{document}\n")

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{self.name}.md", folder / f"{self.name}.tex", folder / f"{self.name}.csv"]
        paths[0].write_text(self.markdown())
        paths[1].write_text(self.latex())
        numeric = self.numeric if self.numeric is not None else pd.DataFrame(self.rows, columns=self.header)
        numeric.to_csv(paths[2], index=False, float_format="%.6g", lineterminator="\n")
        return paths


TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
               "±": r"$\pm$", "–": "--", "→": r"$\rightarrow$", "≤": r"$\leq$", "×": r"$\times$"}


def _tex(text: str) -> str:
    return "".join(TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _mean_std(values: list[float]) -> str:
    if not values:
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def _paired_p(a: dict, b: dict) -> float | None:
    """Paired t-test over the seeds both methods have (needs at least 2)."""
    from scipy.stats import ttest_rel

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    if np.allclose(x - y, (x - y)[0]):
        return None  # constant differences: the test is undefined
    return float(ttest_rel(x, y).pvalue)


def protocol_caption(records: list[dict], split: str, extra: str = "") -> str:
    protocols = {r["protocol"]["split"] for r in records}
    first = records[0]["protocol"]
    seeds = sorted({r["config"]["seed"] for r in records})
    history = {r["protocol"]["history_excluded"] for r in records}
    decisions = sorted({r["protocol"]["history_decision"] for r in records if "history_decision" in r["protocol"]})
    decided = f" ({'; '.join(decisions)})" if decisions else ""  # records before 2026-12-02 have none
    fractions = sorted({r["protocol"].get("train_fraction", 1.0) for r in records})
    sparse = "" if fractions == [1.0] else f"; training kept per user (sparse regime): {fractions}"
    return (f"{split.capitalize()} split. Protocol: {'; '.join(sorted(protocols))}; {first['ranking']}; "
            f"history items excluded from ranking: {', '.join(map(str, sorted(history)))}{decided}; model selection: "
            f"{first['model_selection'].split(' (')[0]} on validation only; mean ± std over seeds {seeds}"
            f"{sparse}.{(' ' + extra) if extra else ''}")


class RowKey(NamedTuple):
    backbone: str
    method: str
    variant: str  # settings that differ from the defaults, e.g. "K=20 D=4"


class Column(NamedTuple):
    dataset: str
    metric: str


METRIC_LABELS = ["backbone", "method"]  # the label columns before the metric columns


def metric_table(name: str, title: str, records: list[dict], long: pd.DataFrame, metrics: list[str], split: str,
                 methods: list[str] | None = None, group: str = "overall") -> Table | None:
    """Rows = methods grouped by backbone; columns = data set x metric; bold best / underline second per
    backbone group; an Improv. row (KDSR over the best baseline) with paired-test markers."""
    rows_long = long[(long["split"] == split) & (long["group"] == group) & long["metric"].isin(metrics)]
    if methods is not None:
        rows_long = rows_long[rows_long["method"].isin(methods)]
    if rows_long.empty:
        return None
    columns = [Column(d, m) for d in _order(rows_long["dataset"], ()) for m in metrics]
    header = METRIC_LABELS + [f"{c.dataset} {c.metric}" for c in columns]
    first = len(METRIC_LABELS)  # table column of columns[0]
    seeds: dict[tuple[RowKey, Column], dict[int, float]] = {}  # (row, column) -> {seed: value}
    for rec in rows_long.itertuples():
        seeds.setdefault((RowKey(rec.backbone, rec.method, rec.variant), Column(rec.dataset, rec.metric)),
                         {})[rec.seed] = rec.value
    row_keys = sorted({row for row, _ in seeds}, key=lambda r: (_order_index(r.backbone, BACKBONE_ORDER),
                                                                 _order_index(r.method, METHOD_ORDER), r.variant))
    rows, marks, groups, numeric, all_stars = [], {}, [], [], {}
    # settings every row shares go to the caption, not into each row's label
    common = set.intersection(*(set(r.variant.split()) for r in row_keys)) if row_keys else set()

    def own_settings(row: RowKey) -> str:
        return " ".join(t for t in row.variant.split() if t not in common)

    for backbone in _order([r.backbone for r in row_keys], BACKBONE_ORDER):
        block = [r for r in row_keys if r.backbone == backbone]
        start = len(rows)
        groups.append(start)
        for row in block:
            label = row.method + (f" ({own_settings(row)})" if own_settings(row) else "")
            cells = []
            for column in columns:
                values = seeds.get((row, column), {})
                cells.append(_mean_std([values[s] for s in sorted(values)]))
                numeric.append({"backbone": row.backbone, "method": row.method, "variant": row.variant,
                                "dataset": column.dataset, "metric": column.metric,
                                "mean": np.mean(list(values.values())) if values else np.nan,
                                "std": np.std(list(values.values()), ddof=1) if len(values) > 1 else np.nan,
                                "seeds": len(values)})
            rows.append([row.backbone, label] + cells)
        # marks: best and second best mean per column within the backbone group
        for j, column in enumerate(columns):
            means = [(np.mean(list(seeds[(row, column)].values())), i) for i, row in enumerate(block, start)
                     if seeds.get((row, column))]
            ranked = sorted(means, key=lambda t: -t[0])
            distinct = sorted({round(m, 12) for m, _ in ranked}, reverse=True)
            if len(distinct) < 2 and len(ranked) > 1:
                continue  # all equal: nothing is best
            for value, i in ranked:
                if round(value, 12) == distinct[0]:
                    marks[(i, first + j)] = "bold"
                elif len(distinct) > 1 and distinct[1] > 0 and round(value, 12) == distinct[1]:
                    marks[(i, first + j)] = "underline"
        for row in block:
            improv = _improvement_row(row, block, columns, seeds) if row.method == KDSR else None
            if improv is None:
                continue
            cells, stars = improv
            own = own_settings(row)
            rows.append([backbone, f"Improv. (kdsr{' ' + own if own else ''} vs best baseline)"] + cells)
            for j, star in stars.items():
                all_stars[(start + block.index(row), first + j)] = star
    shared = f" Settings of every row: {' '.join(sorted(common))}." if common else ""
    caption = f"{title}.{shared} " + protocol_caption(records, split, "Bold: best, underlined: second best per backbone. "
                                              "Improv.: KDSR over the best baseline (not KDSR or its ablations) in "
                                              "%; * p < 0.05, ** p < 0.01 in a paired t-test over seeds.")
    return Table(name, caption, header, rows, marks, groups, pd.DataFrame(numeric), all_stars)


def overview_table(long: pd.DataFrame, metric: str, split: str, records) -> Table | None:
    """One glance: rows = method (and setting), columns = data set x backbone x encoder, one metric.
    Encoder-free rows (id, pop) fill every encoder column of their backbone. Bold: best per column."""
    sub = long[(long["split"] == split) & (long["group"] == "overall") & (long["metric"] == metric)]
    if sub.empty:
        return None
    seeds: dict[tuple, dict[int, float]] = {}
    for rec in sub.itertuples():
        seeds.setdefault((rec.dataset, rec.backbone, rec.encoder, rec.method, rec.variant), {})[rec.seed] = rec.value
    encoders = _order([k[2] for k in seeds if k[2] != MISSING], ()) or [MISSING]
    columns = sorted({(k[0], k[1]) for k in seeds}, key=lambda c: (c[0], _order_index(c[1], BACKBONE_ORDER)))
    columns = [(d, b, e) for d, b in columns for e in encoders
               if any(k[:3] == (d, b, e) for k in seeds) or e == MISSING]
    row_ids = sorted({(k[3], k[4]) for k in seeds}, key=lambda r: (_order_index(r[0], METHOD_ORDER), r[1]))
    rows, marks, numeric = [], {}, []
    for method, setting in row_ids:
        cells = []
        for d, b, e in columns:
            values = seeds.get((d, b, e, method, setting)) or seeds.get((d, b, MISSING, method, setting)) or {}
            cells.append(_mean_std([values[s] for s in sorted(values)]))
            numeric.append({"dataset": d, "backbone": b, "encoder": e, "method": method, "variant": setting,
                            "mean": np.mean(list(values.values())) if values else np.nan,
                            "std": np.std(list(values.values()), ddof=1) if len(values) > 1 else np.nan,
                            "seeds": len(values)})
        rows.append([method + (f" ({setting})" if setting else "")] + cells)
    means = np.array([cell["mean"] for cell in numeric]).reshape(len(row_ids), len(columns))
    for j in range(len(columns)):
        if np.isfinite(means[:, j]).sum() > 1:
            for i in np.flatnonzero(means[:, j] == np.nanmax(means[:, j])):
                marks[(int(i), j + 1)] = "bold"
    header = ["method"] + [f"{d} {b}" + (f" + {e}" if e != MISSING else "") for d, b, e in columns]
    caption = (f"Overview: {split} {metric} per method (rows) and data set, backbone and encoder (columns); "
               f"encoder-free methods repeat in every encoder column. Bold: best per column. "
               + protocol_caption(records, split))
    return Table("overview", caption, header, rows, marks, numeric=pd.DataFrame(numeric))


def _order_index(value, preferred) -> int:
    return preferred.index(value) if value in preferred else len(preferred)


def _improvement_row(kdsr: RowKey, block: list[RowKey], columns: list[Column], seeds: dict):
    """KDSR row `kdsr` against the best baseline of its backbone block (any setting), per column."""
    baselines = [r for r in block if r.method not in (KDSR, *ABLATIONS) and r.method != "pop"]
    if not baselines:
        return None
    cells, stars = [], {}
    for j, column in enumerate(columns):
        mine = seeds.get((kdsr, column))
        scored = [(np.mean(list(seeds[(b, column)].values())), b) for b in baselines if seeds.get((b, column))]
        if not mine or not scored:
            cells.append(MISSING)
            continue
        best_value, best = max(scored, key=lambda t: t[0])
        ours = np.mean(list(mine.values()))
        cells.append(f"{100 * (ours - best_value) / best_value:+.1f}% vs {best.method}" if best_value else MISSING)
        p = _paired_p(mine, seeds[(best, column)])
        if p is not None and p < 0.05:
            stars[j] = "**" if p < 0.01 else "*"
    return cells, stars


ANCHOR_METRICS = ("HR@10", "NDCG@10")


def anchors_table(records: list[dict], long: pd.DataFrame, split: str) -> Table | None:
    """Our ID-only backbones (full training data) beside the published and peer anchors of the same data set
    (harness/anchors.yaml), each row with its source and protocol. Anchors are test numbers: test split only."""
    anchors = load_anchors()
    ours = [r for r in records if r["config"]["method"] == "id" and r["config"]["dataset"] in anchors
            and r["protocol"].get("train_fraction", 1.0) == 1.0]
    if split != "test" or not ours:
        return None
    keys = {r["key"]: r for r in ours}
    sub = long[long["key"].isin(keys) & (long["split"] == "test") & (long["group"] == "overall")
               & long["metric"].isin(ANCHOR_METRICS)]
    cells: dict[tuple, dict[str, dict[int, float]]] = {}
    for rec in sub.itertuples():
        history = keys[rec.key]["protocol"]["history_excluded"]
        cells.setdefault((rec.dataset, rec.backbone, rec.variant, history), {}).setdefault(rec.metric, {})[rec.seed] = rec.value
    header = ["data set", "model", "source", "protocol", "history excluded", "seeds", *ANCHOR_METRICS]
    rows, groups, numeric = [], [], []
    for dataset in _order([k[0] for k in cells], ()):
        groups.append(len(rows))
        own = sorted((k for k in cells if k[0] == dataset), key=lambda k: (_order_index(k[1], BACKBONE_ORDER), k[2]))
        for key in own:
            values = cells[key]
            n = max(len(v) for v in values.values())
            settings = " ".join(t for t in key[2].split() if not t.startswith("exclude_history=")) or "defaults"
            rows.append([dataset, f"ours: {key[1]}", "this benchmark", settings, str(key[3]), str(n),
                         *(_mean_std([values[m][s] for s in sorted(values[m])]) if m in values else MISSING
                           for m in ANCHOR_METRICS)])
            numeric.append({"dataset": dataset, "model": f"ours: {key[1]}", "source": "this benchmark",
                            "protocol": settings, "history_excluded": key[3], "seeds": n,
                            **{m: np.mean(list(values[m].values())) if m in values else np.nan for m in ANCHOR_METRICS}})
        for anchor in anchors[dataset]:
            history = MISSING if anchor.history_excluded is None else str(anchor.history_excluded)
            rows.append([dataset, anchor.model, f"{anchor.paper}; {anchor.source}", anchor.protocol, history, MISSING,
                         *(f"{anchor.test[m]:.4f}" if m in anchor.test else MISSING for m in ANCHOR_METRICS)])
            numeric.append({"dataset": dataset, "model": anchor.model, "source": f"{anchor.paper}; {anchor.source}",
                            "protocol": anchor.protocol, "history_excluded": anchor.history_excluded, "seeds": np.nan,
                            **{m: anchor.test.get(m, np.nan) for m in ANCHOR_METRICS}})
    caption = ("Anchors: our ID-only backbones (mean ± std over seeds, full training data) beside published and "
               "peer numbers on the same data set (harness/anchors.yaml). Test split. Every row: chronological "
               "leave-one-out, full ranking over all items, 5-core; the protocol column gives each row's settings "
               "(ours: those that differ from the trial defaults), and history excluded whether the user's earlier "
               "items were removed from the ranking (– where the source does not say). A row compares with another "
               "only under the same protocol.")
    return Table("anchors", caption, header, rows, groups=groups, numeric=pd.DataFrame(numeric))


def _cell_of(config: dict) -> tuple:
    return config["dataset"], config["backbone"], config["method"], tuple(config.get("encoder") or ())


def _format_setting(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else _fmt_value(value)


def search_table(store: Path) -> Table | None:
    """The Optuna search behind a store's final runs (<store>/search/, written by `--search optuna`): every
    sampled setting of each cell with its validation NDCG@10 (the searched metric, seed 0), best first, the
    chosen one in bold. Validation only: a search trial's test numbers are never shown."""
    folder = store / "search"
    if not (folder / "records").is_dir():
        return None
    summaries = {_cell_of(summary["cell"]): summary
                 for summary in (json.loads(path.read_text()) for path in sorted(folder.glob("*.json")))}
    cells: dict[tuple, list[dict]] = {}
    for record in load_records(folder / "records"):
        cells.setdefault(_cell_of(record["config"]), []).append(record)
    if not cells:
        return None
    searched = {cell: list(summaries[cell]["space"]) if cell in summaries else _searched_names(records)
                for cell, records in cells.items()}  # a cell whose search has no summary yet: what varies
    names = list(dict.fromkeys([name for summary in summaries.values() for name in summary["space"]]
                               + [name for cell_names in searched.values() for name in cell_names]))
    header = ["data set", "backbone", "method", "encoder", "status", "rank", "valid NDCG@10", "best epoch",
              "epochs", *names]
    rows, marks, groups, numeric = [], {}, [], []
    order = sorted(cells, key=lambda c: (c[0], _order_index(c[1], BACKBONE_ORDER), _order_index(c[2], METHOD_ORDER)))
    for cell in order:
        summary = summaries.get(cell)
        records = sorted(cells[cell], key=lambda r: -r["valid"]["overall"]["NDCG@10"])
        status = (f"done ({len(records)} of {summary['samples']})" if summary
                  else f"searching ({len(records)} so far)")
        groups.append(len(rows))
        for rank, record in enumerate(records, 1):
            config, score = record["config"], record["valid"]["overall"]["NDCG@10"]
            chosen = summary is not None and all(config.get(k) == v for k, v in summary["best"].items())
            if chosen:
                marks.update({(len(rows), j): "bold" for j in range(len(header))})
            rows.append([cell[0], cell[1], cell[2], ",".join(cell[3]) or MISSING, status, str(rank), f"{score:.4f}",
                         str(record["best_epoch"]), str(record["epochs_run"]),
                         *(_format_setting(config[name]) if name in searched[cell] else MISSING for name in names)])
            numeric.append({"dataset": cell[0], "backbone": cell[1], "method": cell[2], "encoder": ",".join(cell[3]),
                            "status": status, "rank": rank, "valid_NDCG@10": score, "chosen": chosen,
                            "best_epoch": record["best_epoch"], "epochs": record["epochs_run"],
                            **{name: _fmt_value(config[name]) if name in searched[cell] else "" for name in names}})
    samplers = sorted({summary["sampler"] for summary in summaries.values()}) or ["optuna TPESampler(seed=0)"]
    caption = ("Hyper-parameter search (`--search optuna`, " + ", ".join(samplers) + "): every sampled setting "
               "of each cell with its best validation NDCG@10 on seed 0, best first; bold: the setting chosen "
               "(the cell's best), which then ran with every seed (the main table). Validation split only: the "
               "search never sees test numbers. Status: done (trials of samples asked) or still searching (an "
               "interrupted search; its trials are reused when the sweep reruns). – : a setting the cell does "
               "not search.")
    return Table("search", caption, header, rows, marks=marks, groups=groups, numeric=pd.DataFrame(numeric))


def _searched_names(records: list[dict]) -> list[str]:
    """Settings that vary among a cell's search trials (for a cell whose search has no summary yet)."""
    configs = [r["config"] for r in records]
    return [name for name in configs[0] if name not in ("seed", "threads", "device")
            and len({json.dumps(c.get(name)) for c in configs}) > 1]


def efficiency_table(records: list[dict], trials: pd.DataFrame) -> Table:
    grouped = trials.groupby(["dataset", "backbone", "method", "encoder", "variant"], sort=False)
    rows, numeric = [], []
    keys = sorted(grouped.groups, key=lambda k: (k[0], _order_index(k[1], BACKBONE_ORDER),
                                                 _order_index(k[2], METHOD_ORDER), k[3], k[4]))
    for key in keys:
        g = grouped.get_group(key)
        entry = {"dataset": key[0], "backbone": key[1], "method": key[2], "encoder": key[3], "variant": key[4],
                 "trials": len(g),
                 "trainable_params": int(g["trainable_params"].median()),
                 "seconds_per_epoch": float(g["seconds_per_epoch"].median()),
                 "peak_memory_mb": float(g["peak_memory_mb"].median()),
                 "device": ",".join(sorted(set(g["device"].dropna())))}
        numeric.append(entry)
        rows.append([key[0], key[1], key[2] + (f" ({key[4]})" if key[4] else ""), key[3], str(len(g)),
                     f"{entry['trainable_params']:,}",
                     f"{entry['seconds_per_epoch']:.2f}", f"{entry['peak_memory_mb']:.0f}", entry["device"]])
    extraction = {}
    for r in records:
        for f in r.get("features") or []:
            extraction.setdefault((r["config"]["dataset"], f["encoder"]), f)
    caption = ("Efficiency: trainable parameters, median seconds per training epoch and peak memory (process RSS on "
               "CPU, allocator peak on GPU), medians over trials. Feature extraction (once per data set and encoder, "
               "cached): " + ("; ".join(f"{d} {e}: {f['extract_seconds']:.1f} s, {f['items_per_second']:.1f} items/s"
                                        for (d, e), f in sorted(extraction.items())) or "none") + ".")
    header = ["dataset", "backbone", "method", "encoder", "trials", "trainable params", "s/epoch", "peak MB", "device"]
    return Table("efficiency", caption, header, rows, numeric=pd.DataFrame(numeric))


def _sets_k_or_d(variant_text: str) -> bool:
    return any(token.partition("=")[0] in ("K", "D") for token in variant_text.split())


def scaling_rows(long: pd.DataFrame, trials: pd.DataFrame, metric: str, split: str) -> tuple[pd.DataFrame, set]:
    """Per-trial rows of single-encoder trials at the default K and D, methods labelled with the settings
    that set them apart, and the settings every row shares (e.g. a preset's), which captions state once."""
    sub = long[(long["split"] == split) & (long["group"] == "overall") & (long["metric"] == metric)]
    sub = sub.merge(trials[["key", "encoder_params", "family"]], on="key")
    sub = sub[sub["encoder_params"].notna() & ~sub["encoder"].str.contains("+", regex=False)
              & ~sub["variant"].map(_sets_k_or_d)]
    if sub.empty:
        return sub, set()
    labels, common = _without_common_settings([_labelled(m, core_variant(v))
                                               for m, v in zip(sub["method"], sub["variant"])])
    return sub.assign(method=labels), common


def _every_row(common: set) -> str:
    return f"Every row: {' '.join(sorted(common))}. " if common else ""


def scaling_table(long: pd.DataFrame, trials: pd.DataFrame, metric: str, split: str, records) -> Table | None:
    sub, common = scaling_rows(long, trials, metric, split)
    if sub.empty or sub["encoder_params"].nunique() < 2:  # one encoder size is no scaling
        return None
    grouped = sub.groupby(["dataset", "backbone", "family", "encoder", "encoder_params", "method"])["value"]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    stats = stats.sort_values(["dataset", "backbone", "family", "encoder_params", "method"], kind="stable")
    rows = [[r.dataset, r.backbone, r.family, r.encoder, f"{r.encoder_params / 1e6:.1f}M", r.method,
             _mean_std_from(r.mean, r.std, r.count)] for r in stats.itertuples()]
    caption = (f"Encoder scaling: {split} {metric} by encoder size (default K and D). " + _every_row(common)
               + protocol_caption(records, split))
    table = Table("encoder_scaling", caption, ["dataset", "backbone", "family:modality", "encoder", "params", "method",
                                               metric], rows, numeric=stats)
    table.common = common  # the settings every line shares: the figure's title and its ID-only reference
    return table


def scaling_slope_table(long: pd.DataFrame, trials: pd.DataFrame, metric: str, split: str, records) -> Table | None:
    """Per data set, backbone, modality and method: the least-squares slope of the metric on log10 encoder
    parameters over every trial (each seed of each encoder one point), its 95% confidence interval, and
    whether that interval excludes zero. Only where a method ran with at least three encoder sizes."""
    from scipy import stats as scipy_stats

    sub, common = scaling_rows(long, trials, metric, split)
    if sub.empty:
        return None
    sub = sub.assign(modality=sub["family"].str.split(":").str[-1])
    rows, numeric, skipped = [], [], []
    sub = sub[np.isfinite(sub["value"].to_numpy(float))]
    for (dataset, backbone, modality, method), g in sub.groupby(["dataset", "backbone", "modality", "method"],
                                                                 sort=False):
        # the seeds of one encoder share its features: the encoders are the independent points, so the fit
        # runs on per-encoder means with n_encoders - 2 degrees of freedom
        means = g.groupby("encoder_params")["value"].mean()
        if len(means) < 3:
            skipped.append(f"{method} ({len(means)} sizes)")
            continue
        x, y = np.log10(means.index.to_numpy(float)), means.to_numpy(float)
        fit = scipy_stats.linregress(x, y)
        half = float(scipy_stats.t.ppf(0.975, len(x) - 2) * fit.stderr)
        entry = {"dataset": dataset, "backbone": backbone, "modality": modality, "method": method,
                 "encoders": len(means), "trials": len(g), "slope_per_decade": float(fit.slope),
                 "ci_low": float(fit.slope - half), "ci_high": float(fit.slope + half), "p_value": float(fit.pvalue),
                 "relative_per_decade": float(fit.slope / y.mean()) if y.mean() else float("nan"),
                 "nonzero": bool(fit.slope - half > 0 or fit.slope + half < 0)}
        numeric.append(entry)
    if not numeric:
        return None
    numeric.sort(key=lambda e: (e["dataset"], _order_index(e["backbone"], BACKBONE_ORDER), e["modality"],
                                _order_index(e["method"].split(" (")[0], METHOD_ORDER), e["method"]))
    for e in numeric:
        rows.append([e["dataset"], e["backbone"], e["modality"], e["method"], str(e["encoders"]), str(e["trials"]),
                     f"{e['slope_per_decade']:+.4f}", f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]",
                     f"{100 * e['relative_per_decade']:+.1f}%", f"{e['p_value']:.3f}", "yes" if e["nonzero"] else "no"])
    caption = (f"Encoder-size slope: least-squares fit of {split} {metric} (the mean over seeds per encoder) on "
               "log10(encoder parameters), one point per encoder, default K and D; 95% confidence interval from "
               "the t distribution with encoders - 2 degrees of freedom; 'distinguishable' = the interval "
               "excludes 0. Relative: the slope over the mean. Encoder families differ along the ladder (sentence "
               "encoders, then decoder LLMs), so size and family move together. "
               + (f"Fewer than 3 sizes, not fitted: {', '.join(skipped)}. " if skipped else "")
               + _every_row(common) + protocol_caption(records, split))
    header = ["dataset", "backbone", "modality", "method", "encoders", "trials", f"{metric} per decade", "95% CI",
              "relative", "p", "distinguishable from 0"]
    return Table("encoder_scaling_slope", caption, header, rows, numeric=pd.DataFrame(numeric))


def encoder_cost_table(records: list[dict], trials: pd.DataFrame) -> Table | None:
    """Per data set and encoder: size, extraction dtype and speed, cache size, codebook (teacher) preparation
    and the KDSR training epoch, from the records that used it."""
    entries: dict = {}
    for r in records:
        for f in r.get("features") or []:
            key = (r["config"]["dataset"], f["encoder"])
            e = entries.setdefault(key, {"dataset": key[0], "encoder": key[1], "teacher": []})
            if e.get("compute_dtype") is None:  # one record's extraction facts; newer records carry more fields
                e.update({field: f.get(field) for field in ("params", "dim", "compute_dtype", "items_per_second",
                                                            "extract_seconds", "cache_mb")})
            if r["config"]["method"] in (KDSR, *ABLATIONS) and f.get("teacher_seconds"):
                e["teacher"].append(f["teacher_seconds"])
    if not entries:
        return None
    default_kd = trials["variant"].map(lambda v: not _sets_k_or_d(v))
    kdsr = trials[(trials["method"] == KDSR) & default_kd].groupby(["dataset", "encoder", "backbone"])[
        "seconds_per_epoch"].median()
    rows, numeric = [], []
    dash = lambda v, fmt: MISSING if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)  # noqa: E731
    for key in sorted(entries, key=lambda k: (k[0], entries[k]["params"] or 0, k[1])):
        e = entries[key]
        e["teacher_seconds"] = float(np.median(e.pop("teacher"))) if e["teacher"] else None
        per_backbone = {b: float(v) for (d, enc, b), v in kdsr.items() if (d, enc) == key}
        e["kdsr_seconds_per_epoch"] = "; ".join(f"{b} {v:.2f}" for b, v in sorted(per_backbone.items())) or None
        numeric.append(e)
        rows.append([e["dataset"], e["encoder"], dash(e["params"] and e["params"] / 1e6, "{:.1f}M"),
                     dash(e["dim"], "{}"), e["compute_dtype"] or MISSING, dash(e["items_per_second"], "{:.1f}"),
                     dash(e["extract_seconds"], "{:.1f}"), dash(e["cache_mb"], "{:.1f}"),
                     dash(e["teacher_seconds"], "{:.2f}"), e["kdsr_seconds_per_epoch"] or MISSING])
    caption = ("Cost per encoder: feature extraction once per data set (compute dtype, items/s and seconds as "
               "recorded when the cache entry was made; bf16 against fp32 on this CPU: results/speed/"
               "extract-dtype-*.md), cache size, the KDSR teacher's codebook fit (median seconds per trial; – where "
               "it came from the cache or the record predates the field) and the KDSR median s/epoch per backbone "
               "(default K and D).")
    header = ["dataset", "encoder", "params", "dim", "dtype", "items/s", "extract s", "cache MB", "codebook s",
              "KDSR s/epoch"]
    return Table("encoder_costs", caption, header, rows, numeric=pd.DataFrame(numeric))


def _mean_std_from(mean, std, count) -> str:
    return f"{mean:.4f}" if count == 1 or not math.isfinite(std) else f"{mean:.4f} ± {std:.4f}"


def kd_table(long: pd.DataFrame, trials: pd.DataFrame, metric: str, split: str, records) -> Table | None:
    sub = long[(long["split"] == split) & (long["group"] == "overall") & (long["metric"] == metric)
               & (long["method"] == KDSR)].merge(trials[["key", "K", "D"]], on="key")
    if sub[["K", "D"]].drop_duplicates().shape[0] < 2:
        return None
    # settings other than K and D (e.g. holistic_projection=separate) keep their own cells and panels
    sub = sub.assign(settings=[" ".join(t for t in v.split() if t.partition("=")[0] not in ("K", "D"))
                               for v in sub["variant"]])
    stats = sub.groupby(["dataset", "backbone", "encoder", "settings", "K", "D"])["value"].agg(
        ["mean", "std", "count"]).reset_index()
    rows = [[r.dataset, r.backbone, r.encoder, r.settings or MISSING, str(int(r.K)), str(int(r.D)),
             _mean_std_from(r.mean, r.std, r.count)] for r in stats.itertuples()]
    caption = f"KDSR over the codebook size K and the number of sub-spaces D: {split} {metric}. " + protocol_caption(
        records, split)
    return Table("k_d", caption, ["dataset", "backbone", "encoder", "settings", "K", "D", metric], rows, numeric=stats)


def retention_table(records: list[dict]) -> Table | None:
    """Modality retention (Spearman of student vs teacher cosines on fixed pairs): epoch 0, best epoch, last."""
    cells: dict[tuple, list[tuple]] = {}
    for r in records:
        curve = {p["epoch"]: p for p in r.get("retention_curve") or []}
        if 0 not in curve:
            continue
        c = r["config"]
        for modality in (k for k in curve[0] if k != "epoch"):
            best = curve.get(r["best_epoch"], {}).get(modality, np.nan)
            last = curve[max(curve)].get(modality, np.nan)
            key = (c["dataset"], c["backbone"], modality, c["method"], variant(c))
            cells.setdefault(key, []).append((curve[0][modality], best, last))
    if not cells:
        return None
    keys = sorted(cells, key=lambda k: (k[0], _order_index(k[1], BACKBONE_ORDER), k[2],
                                        _order_index(k[3], METHOD_ORDER), k[4]))
    rows, numeric = [], []
    for key in keys:
        values = np.array(cells[key], dtype=float)
        means = [float(col[np.isfinite(col)].mean()) if np.isfinite(col).any() else np.nan for col in values.T]
        numeric.append(dict(zip(("dataset", "backbone", "modality", "method", "variant"), key),
                            start=means[0], best_epoch=means[1], last=means[2], trials=len(values)))
        rows.append([key[0], key[1], key[2], key[3] + (f" ({key[4]})" if key[4] else ""), str(len(values)),
                     *(f"{m:.2f}" if np.isfinite(m) else MISSING for m in means)])
    caption = ("Modality retention: Spearman correlation between student cosines (the trained modality table) and "
               "teacher cosines (frozen features) on a fixed sample of item pairs, at epoch 0, at the best "
               "validation epoch and at the last epoch; mean over trials.")
    return Table("retention", caption, ["dataset", "backbone", "modality", "method", "trials", "start", "best epoch",
                                        "last"], rows, numeric=pd.DataFrame(numeric))


# ---------------------------------------------------------------- figures
def _figure_setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "kdsr", "font.size": 8})
    return plt


def _color(method: str) -> str:
    """One colour per method in every figure."""
    method = method.split(" (")[0]  # a labelled row, e.g. "kdsr (holistic_projection=separate)"
    return f"C{METHOD_ORDER.index(method) % 10}" if method in METHOD_ORDER else "black"


def _save(fig, folder: Path, name: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None, "Producer": None,
                                                         "Creator": None})
    return paths


def _without_common_settings(labels: list[str]) -> tuple[list[str], set]:
    """Line labels "method (settings)" without the settings every label shares (those go to the title)."""
    settings = [label.partition(" (")[2].rstrip(")").split() for label in labels]
    common = set.intersection(*map(set, settings)) if settings else set()
    return [_labelled(label.split(" (")[0], " ".join(t for t in own if t not in common))
            for label, own in zip(labels, settings)], common


def scaling_figure(table: Table, metric: str, folder: Path, reference: dict, methods: list[str],
                   name: str) -> list[Path] | None:
    """One panel per data set, backbone and modality: every encoder of that modality, whatever its family,
    on one log-size axis (the families are in the encoders' names), so a line is a ladder. Points are
    means over seeds with ± one standard error; the ID-only backbone (`reference`: (data set, backbone,
    settings) -> mean, standard error, drawn where its settings are the ones all lines share) is a band. `methods`: the lines to draw (e.g. without the ablations)."""
    stats = table.numeric.copy()
    stats = stats[stats["method"].map(lambda m: m.split(" (")[0]).isin(methods)]
    if stats.empty:
        return None
    plt = _figure_setup()
    common = getattr(table, "common", set())
    stats["panel"] = [f"{f.split(':')[-1]} encoders" for f in stats["family"]]
    panels = list(dict.fromkeys(zip(stats["dataset"], stats["backbone"], stats["panel"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False, constrained_layout=True)
    for ax, (dataset, backbone, panel) in zip(axes[0], panels):
        sub = stats[(stats["dataset"] == dataset) & (stats["backbone"] == backbone) & (stats["panel"] == panel)]
        # the ID-only trials whose settings are the most of those every line shares (a method-only setting
        # such as score_with=fused does not apply to them)
        matching = [k for k in reference if k[:2] == (dataset, backbone) and set(k[2].split()) <= common]
        if matching:
            mean, error = reference[max(matching, key=lambda k: (len(k[2].split()), k[2]))]
            ax.axhspan(mean - error, mean + error, color=_color("id"), alpha=0.2, linewidth=0)
            ax.axhline(mean, color=_color("id"), linewidth=0.8, linestyle="--", label="id (no encoder)")
        for method in _order(sub["method"], METHOD_ORDER):
            m = sub[sub["method"] == method].sort_values("encoder_params")
            error = (m["std"] / np.sqrt(m["count"])).fillna(0.0)
            ax.errorbar(m["encoder_params"], m["mean"], yerr=error, marker="o", markersize=3, capsize=2,
                        label=method, color=_color(method), linewidth=1.2)
        ladder = sorted(set(zip(sub["encoder"], sub["encoder_params"])), key=lambda t: t[1])
        for k, (encoder, params) in enumerate(ladder):  # neighbours alternate bottom / top
            top = k % 2 == 1
            ax.annotate(encoder, (params, 1.0 if top else 0.0), xycoords=("data", "axes fraction"),
                        xytext=(0, -2 if top else 2), textcoords="offset points", fontsize=5, rotation=90,
                        va="top" if top else "bottom", ha="center", alpha=0.6)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_title(f"{dataset} {backbone}\n{panel}")
        ax.set_xlabel("encoder parameters (log)")
    axes[0][0].set_ylabel(f"{metric} (mean ± s.e. over seeds)")
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    if common:
        fig.suptitle("every line: " + " ".join(sorted(common)), fontsize=6)
    paths = _save(fig, folder, name)
    plt.close(fig)
    return paths


def id_reference(long: pd.DataFrame, metric: str, split: str) -> dict:
    """(data set, backbone, settings) -> (mean, standard error) of the ID-only backbone; the figure draws the
    one whose settings are those all its lines share."""
    sub = long[(long["split"] == split) & (long["group"] == "overall") & (long["metric"] == metric)
               & (long["method"] == "id")]
    sub = sub.assign(settings=sub["variant"].map(core_variant))
    out = {}
    for (dataset, backbone, settings), values in sub.groupby(["dataset", "backbone", "settings"])["value"]:
        error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        out[(dataset, backbone, settings)] = (float(values.mean()), error)
    return out


def kd_figure(table: Table, metric: str, folder: Path, sizes: dict | None = None) -> list[Path]:
    """One heatmap per data set, backbone, encoder (in order of encoder size where `sizes` knows it) and
    setting, each cell annotated with its mean (and seed count when under the most seeds); settings all
    panels share go to the figure title; one y label, colour-bar labels only where they cannot overlap."""
    plt = _figure_setup()
    stats = table.numeric
    panels = list(dict.fromkeys(zip(stats["dataset"], stats["backbone"], stats["encoder"], stats["settings"])))
    panels.sort(key=lambda p: (p[0], p[1], (sizes or {}).get(p[2], 0), p[2], p[3]))
    shared = set.intersection(*(set(p[3].split()) for p in panels)) if panels else set()
    most = int(stats["count"].max())
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 2.7), squeeze=False, constrained_layout=True)
    for ax, (dataset, backbone, encoder, settings) in zip(axes[0], panels):
        sub = stats[(stats["dataset"] == dataset) & (stats["backbone"] == backbone) & (stats["encoder"] == encoder)
                    & (stats["settings"] == settings)]
        grid = sub.pivot_table(index="K", columns="D", values="mean")
        counts = sub.pivot_table(index="K", columns="D", values="count")
        image = ax.imshow(grid.values, cmap="viridis", aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                value, n = grid.values[i, j], counts.values[i, j]
                if np.isfinite(value):
                    ax.text(j, i, f"{value:.4f}" + (f"\n(n={int(n)})" if n < most else ""), ha="center",
                            va="center", fontsize=5.5, color="white" if value < np.nanmean(grid.values) else "black")
        ax.set_xticks(range(len(grid.columns)), [str(int(d)) for d in grid.columns])
        ax.set_yticks(range(len(grid.index)), [str(int(k)) for k in grid.index])
        ax.set_xlabel("D")
        own = " ".join(t for t in settings.split() if t not in shared)
        ax.set_title(f"{dataset} {backbone}\n{encoder}" + (f"\n{own}" if own else ""), fontsize=7)
        fig.colorbar(image, ax=ax, shrink=0.85)
    axes[0][0].set_ylabel("K")
    fig.suptitle(f"{metric}, mean over seeds (n={most} unless marked)"
                 + (f"; every panel: {' '.join(sorted(shared))}" if shared else ""), fontsize=6)
    paths = _save(fig, folder, "k_d_heatmap")
    plt.close(fig)
    return paths


def retention_figure(records: list[dict], folder: Path) -> list[Path] | None:
    curves = []
    for r in records:
        for point in r.get("retention_curve") or []:
            for modality, value in point.items():
                if modality != "epoch":
                    c = r["config"]
                    curves.append({"dataset": c["dataset"], "backbone": c["backbone"], "method": c["method"],
                                   "modality": modality, "epoch": point["epoch"], "value": value, "seed": c["seed"],
                                   "variant": variant(c)})
    if not curves:
        return None
    frame = pd.DataFrame(curves)
    plt = _figure_setup()
    # one panel per data set, backbone, modality and non-default setting; methods share a panel
    frame["core"] = frame["variant"].map(core_variant)
    if (frame["core"] == "").any():  # default settings only, where a grid also varies K, D, ...
        frame = frame[frame["core"] == ""].copy()
    # panels by the core variant; a legacy-valued setting (dropped from the core) labels its method's line
    frame["method"] = [_labelled(m, " ".join(t for t in v.split() if t not in c.split()))
                       for m, v, c in zip(frame["method"], frame["variant"], frame["core"])]
    frame["variant"] = frame["core"]
    frame["method"], common = _without_common_settings(list(frame["method"]))
    panels = sorted(set(zip(frame["dataset"], frame["backbone"], frame["modality"], frame["variant"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False, constrained_layout=True)
    for ax, (dataset, backbone, modality, setting) in zip(axes[0], panels):
        sub = frame[(frame["dataset"] == dataset) & (frame["backbone"] == backbone) & (frame["modality"] == modality)
                    & (frame["variant"] == setting)]
        for method in _order(sub["method"], METHOD_ORDER):
            # mean over the seeds that reached each epoch
            m = sub[sub["method"] == method].groupby("epoch")["value"].mean()
            ax.plot(m.index, m.values, label=method, color=_color(method),
                    linewidth=1.8 if method.split(" (")[0] in ("two_stage", KDSR) else 0.8)
        ax.set_title(f"{dataset} {backbone}\n{modality}" + (f"\n{setting[:40]}" if setting else ""))
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("retention (Spearman)")
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    if common:
        fig.suptitle("every line: " + " ".join(sorted(common)), fontsize=6)
    paths = _save(fig, folder, "retention")
    plt.close(fig)
    return paths


# ---------------------------------------------------------------- driver
def write_report(results: str | Path, out: str | Path, metrics=DEFAULT_METRICS, split: str = "test") -> Path:
    results = Path(results)
    if (results / "records").is_dir():
        results = results / "records"
    store = results.parent if results.name == "records" else results
    records = load_records(results)
    out = Path(out)
    if not records:
        raise ValueError(f"{results}: no result records yet; run a sweep first")
    metrics = list(metrics)
    long = long_frame(records)
    trials = trials_frame(records)
    out.mkdir(parents=True, exist_ok=True)
    long.to_csv(out / "trials_long.csv", index=False, float_format="%.6g", lineterminator="\n")
    tables_dir, figures_dir = out / "tables", out / "figures"
    tables: list[Table] = []
    figures: list[str] = []
    overview = overview_table(long, "NDCG@10", split, records)
    if overview:
        tables.append(overview)
    main_title = "Main results"
    for encoder in _order(trials.loc[trials["encoder"] != MISSING, "encoder"], ()) or [MISSING]:
        keys = set(trials.loc[trials["encoder"].isin([encoder, MISSING]), "key"])
        sub_records = [r for r in records if r["key"] in keys]
        suffix = "" if encoder == MISSING else f"-{encoder}"
        table = metric_table(f"main{suffix}", f"{main_title}, encoder {encoder}", sub_records,
                             long[long["key"].isin(keys)], metrics, split,
                             methods=[m for m in METHOD_ORDER if m not in ABLATIONS] + ["pop"])
        if table:
            tables.append(table)
        cold = metric_table(f"cold{suffix}", f"Cold test items (≤ 5 training interactions), encoder {encoder}",
                            sub_records, long[long["key"].isin(keys)], metrics[:2], split, group="cold")
        if cold and encoder != MISSING:
            tables.append(cold)
        ablation = metric_table(f"ablation{suffix}", f"Ablation of KDSR, encoder {encoder}", sub_records,
                                long[long["key"].isin(keys)], metrics[:3], split, methods=[KDSR, *ABLATIONS])
        if ablation and encoder != MISSING and len(ablation.rows) > len(ablation.groups):
            tables.append(ablation)
    anchors = anchors_table(records, long, split)
    if anchors:
        tables.append(anchors)
    scaling = scaling_table(long, trials, "NDCG@10", split, records)
    if scaling:
        tables.append(scaling)
        reference = id_reference(long, "NDCG@10", split)
        drawn_methods = set(scaling.numeric["method"].map(lambda m: m.split(" (")[0]))
        for methods, name in (([m for m in METHOD_ORDER if m not in ABLATIONS], "encoder_scaling"),
                              ([KDSR, *ABLATIONS], "encoder_scaling_ablations")):
            if name.endswith("ablations") and not drawn_methods & set(ABLATIONS):
                continue  # ablations get a figure of their own only where a grid ran them
            drawn = scaling_figure(scaling, f"{split} NDCG@10", figures_dir, reference, methods, name)
            if drawn:
                figures.append(drawn[0].name)
    slope = scaling_slope_table(long, trials, "NDCG@10", split, records)
    if slope:
        tables.append(slope)
    kd = kd_table(long, trials, "NDCG@10", split, records)
    if kd:
        tables.append(kd)
        sizes = dict(zip(trials["encoder"], trials["encoder_params"]))
        figures.append(kd_figure(kd, f"{split} NDCG@10", figures_dir, sizes)[0].name)
    retention_rows = retention_table(records)
    if retention_rows:
        tables.append(retention_rows)
    search = search_table(store)
    if search:
        tables.append(search)
    tables.append(efficiency_table(records, trials))
    costs = encoder_cost_table(records, trials)
    if costs:
        tables.append(costs)
    retention = retention_figure(records, figures_dir)
    if retention:
        figures.append(retention[0].name)
    written = {path for table in tables for path in table.write(tables_dir)}
    for stale in tables_dir.glob("*"):  # a table an earlier report wrote that these records no longer give
        if stale.suffix in (".md", ".tex", ".csv") and stale not in written:
            stale.unlink()
    doc = [f"# Report: {len(records)} trials from {results.name}/\n",
           "Regenerate: `python -m harness.report --results <store> --out <this folder>`. Long CSV: "
           "[trials_long.csv](trials_long.csv). Every table also as [LaTeX and CSV](tables/).\n"]
    for table in tables:
        doc.append(f"## {table.name}\n\n{table.markdown()}")
    for figure in figures:
        doc.append(f"## Figure: {figure.removesuffix('.png')}\n\n![{figure}](figures/{figure})\n")
    (out / "README.md").write_text("\n".join(doc))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="a result store (or its records/ folder)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--split", choices=["test", "valid"], default="test")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.results, args.out, args.metrics, args.split)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
