"""``epaiqa report DIR...``: the paper's tables from a set of run folders, through the results records.

Rows are models, columns Type-1..Type-4 and Overall, SRCC and PLCC each; one table per task (Table 1 =
harmony, Table 2 = naturalness, Table 3 = overall on prompt completion 3, §5.1). Runs are grouped by (task,
model, setting): runs that differ only in their seed form one row, shown as mean ± std over the seeds; runs of
two settings of one model are two rows, labelled by the overrides that tell them apart — settings are never
averaged together. Runs on other random splits (``data.split_seed``) are repetitions too: a row of three or more
runs also shows the median (HyperIQA's convention for 10 random splits). The best value of each column is in bold
and the second in italics (the paper's red and blue); ``n`` is the test samples behind the Overall column. The
markdown shows SRCC and either the raw PLCC or the PLCC after VQEG's 4-parameter logistic fit (``plcc``), and
says which; the CSV carries SRCC, both PLCCs, KRCC, RMSE and n, each as mean, std and median.

Tables 5–7 (the ablations, §5.3) come from the EPAIQA stage runs: Table 5 the stage-3 overall score (prompt
completion 3) with and without CoT, Table 6 stage-2 harmony and Table 7 stage-3 overall without stage 1,
with the reference box, and with stage 1 (versions told apart by the chain's lineage and the ablation presets'
model names). Tasks whose metrics are plain numbers (grounding, completion) get a table with one column per
metric. Failed jobs (``failed.json``) are listed with their traceback file.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from epaiqa.errors import EPAIQAError
from epaiqa.io import atomic_write_text
from epaiqa.records.results import (
    ALL_COLUMNS,
    COMPLETION3,
    TYPE_LABELS,
    RunRecord,
    find_records,
    read_record,
)
from epaiqa.report.preferences import find_preference_records, write_preference_tables
from epaiqa.report.table4 import find_judgements, write_table4
from epaiqa.runs import EPAIQA_PREFIX

TABLE_TITLES = {
    "harmony": "Table 1: global harmony",
    "naturalness": "Table 2: local naturalness",
    "overall": "Table 3: overall editing quality (prompt completion 3)",
    "overall_all": "Overall editing quality, all test samples",
    "table5": "Table 5: overall quality scoring with / without CoT (stage 3, prompt completion 3)",
    "table6": "Table 6: stage-2 harmony, grounding pre-training ablation",
    "table7": "Table 7: stage-3 overall quality (prompt completion 3), grounding pre-training ablation",
}
#: every metric of a correlation cell that the CSV carries
CELL_METRICS = ("srcc", "plcc", "plcc_logistic", "krcc", "rmse", "n")
#: the PLCC a markdown table shows: raw, or after the 4-parameter logistic fit
PLCC_CHOICES = {"plcc": "raw PLCC", "plcc_logistic": "PLCC after the 4-parameter logistic fit (VQEG)"}

Cell = tuple[str, str]


@dataclass
class Row:
    """One row of a table: the runs of one model in one setting (seeds), per cell their values."""

    label: str
    values: dict[Any, list[float]] = field(default_factory=lambda: defaultdict(list))
    seeds: list[int | None] = field(default_factory=list)
    split_seeds: list[int | None] = field(default_factory=list)

    def mean(self, key: Any) -> float | None:
        """Mean over the runs of a cell (None if no run has it)."""
        values = self.values.get(key) or []
        return float(np.mean(values)) if values else None

    def std(self, key: Any) -> float | None:
        """Sample standard deviation over the runs of a cell (None with fewer than two)."""
        values = self.values.get(key) or []
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    def median(self, key: Any) -> float | None:
        """Median over the runs of a cell (None if no run has it)."""
        values = self.values.get(key) or []
        return float(np.median(values)) if values else None


@dataclass
class Report:
    """Per task, its rows (correlation tables or plain numbers), and the failed or unreadable jobs found."""

    tables: dict[str, list[Row]] = field(default_factory=dict)
    scalars: dict[str, list[Row]] = field(default_factory=dict)
    ablations: dict[str, list[Row]] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    judged: list[dict[str, Any]] = field(default_factory=list)  # judge.json files: Table 4 (epaiqa.report.table4)
    preferences: list[dict[str, Any]] = field(default_factory=list)  # preferences.json (epaiqa.report.preferences)


def _labels(records: list[RunRecord]) -> dict[tuple[str, str, str], str]:
    """Row labels per (task, model, setting key): the model, plus the overrides that tell its settings apart.

    Where a task's table holds runs that saw different views of the image (the record's ``data.view``: whole,
    region, context …), every row of it is marked with its view (``hyperiqa · context``), so models are compared
    on the same input by reading one table.
    """
    settings: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(dict)
    view_of = {(r.task, r.model, r.setting.key): str(r.data.get("view") or "?") for r in records}
    views: dict[str, set[str]] = defaultdict(set)
    for (task, _, _), view in view_of.items():
        views[task].add(view)
    for r in records:
        settings[(r.task, r.model)][r.setting.key] = set(r.setting.overrides)
    labels = {}
    for (task, model), by_key in settings.items():
        shared = set.intersection(*by_key.values())
        for key, overrides in by_key.items():
            extra = sorted(overrides - shared)
            label = f"{model} [{', '.join(extra) if extra else 'setting ' + key[:6]}]" if len(by_key) > 1 else model
            if len(views[task]) > 1:
                label = f"{label} · {view_of[(task, model, key)]}"
            labels[(task, model, key)] = label
    return labels


def _table_cells(metrics: dict[str, Any]) -> dict[Cell, float]:
    return {
        (c, m): float(v) for c in ALL_COLUMNS for m in CELL_METRICS if (v := (metrics.get(c) or {}).get(m)) is not None
    }


def columns(rows: list[Row]) -> tuple[str, ...]:
    """The table's columns: the four edit types and the overall, and the unknown type where a row has it."""
    return tuple(c for c in ALL_COLUMNS if c != "unknown" or any(k[0] == c for r in rows for k in r.values))


#: model-name suffixes of the ablation presets (conf/ablation/) and of chains without stage 1
SUFFIXES = ("_wo_cot", "_wo_stage1", "_reference")
#: the EPAIQA stages whose runs Tables 5–7 compare
STAGES = ("scoring", "explain")


def epaiqa_version(record: RunRecord) -> tuple[str, str, bool] | None:
    """(model without ablation suffixes, pre-training version, with CoT) of an EPAIQA stage-2/3 run, else None.

    The pre-training version is ``reference`` (the boxed-region preset), ``w stage-1`` (grounding in the chain
    that made the weights) or ``wo stage-1``.
    """
    if not record.model.startswith(EPAIQA_PREFIX) or not record.lineage or record.lineage[-1] not in STAGES:
        return None
    name = record.model
    if name.endswith("_reference") or record.data.get("reference") is True:
        version = "reference"
    else:
        version = "w stage-1" if "grounding" in record.lineage else "wo stage-1"
    base = name
    for suffix in SUFFIXES:
        base = base.replace(suffix, "")
    return base, version, "_wo_cot" not in name


def ablation_entries(record: RunRecord) -> list[tuple[str, str, dict[Cell, float]]]:
    """The (table, row label, cells) entries of Tables 5–7 that a record gives (none for most records)."""
    found = epaiqa_version(record)
    if found is None or not record.is_table:
        return []
    _, version, cot = found
    stage = record.lineage[-1]
    if stage == "scoring" and record.task == "harmony":
        return [("table6", version, _table_cells(record.test))]
    sub = (record.subsets.get(COMPLETION3) or {}).get("test")
    if stage != "explain" or record.task != "overall" or not sub:
        return []
    cells = _table_cells(sub)
    cot_label = ("w CoT" if cot else "w/o CoT") + ("" if version == "w stage-1" else f", {version}")
    entries = [("table5", cot_label, cells)]
    if cot:
        entries.append(("table7", version, cells))
    return entries


def _add(row: Row, record: RunRecord, cells: dict[Any, float]) -> None:
    row.seeds.append(record.seed)
    row.split_seeds.append(record.split_seed)
    for key, value in cells.items():
        row.values[key].append(value)


def _ablation_rows(records: list[RunRecord]) -> dict[str, list[Row]]:
    """Tables 5–7: rows by version; a version run in two settings (or of two models) is two rows."""
    groups: dict[str, dict[tuple[str, str, str], list[tuple[RunRecord, dict[Cell, float]]]]] = defaultdict(dict)
    for r in records:
        entries = ablation_entries(r)
        base = epaiqa_version(r)[0] if entries else ""  # type: ignore[index]
        for table, label, cells in entries:
            groups[table].setdefault((label, base, r.setting.key), []).append((r, cells))
    out = {}
    for table, by_key in sorted(groups.items()):
        bases = {base for _, base, _ in by_key}
        rows = []
        for label, base, key in sorted(by_key):
            twins = sum(1 for other, b, _ in by_key if (other, b) == (label, base)) > 1
            text = label + (f" · {base}" if len(bases) > 1 else "") + (f" [setting {key[:6]}]" if twins else "")
            row = Row(text)
            for record, cells in by_key[(label, base, key)]:
                _add(row, record, cells)
            rows.append(row)
        out[table] = rows
    return out


def collect(dirs: list[str | Path]) -> Report:
    """Read every results record and failed job under ``dirs`` into a report."""
    paths, failed = find_records(dirs)
    report = Report()
    records = []
    for path in paths:
        try:
            records.append(read_record(path))
        except EPAIQAError:
            report.unreadable.append(str(path))
    labels = _labels(records)
    rows: dict[tuple[str, str], dict[str, Row]] = defaultdict(dict)  # (kind, task) → label → row
    for r in records:
        label = labels[(r.task, r.model, r.setting.key)]
        if r.is_table:
            entries = [("table", "overall_all" if r.task == "overall" else r.task, _table_cells(r.test))]
            sub = (r.subsets.get(COMPLETION3) or {}).get("test")
            if r.task == "overall" and sub:
                entries.append(("table", "overall", _table_cells(sub)))
        else:
            plain = {k: float(v) for k, v in r.test.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            entries = [("scalar", r.task, plain)]
        for kind, task, cells in entries:
            row = rows[(kind, task)].setdefault(label, Row(label))
            _add(row, r, cells)
            if kind == "scalar":  # a metric that is None in every run still gets its column
                for name in r.test:
                    row.values.setdefault(name, [])
    for (kind, task), by_label in sorted(rows.items()):
        target = report.tables if kind == "table" else report.scalars
        target[task] = [by_label[label] for label in sorted(by_label)]
    report.ablations = _ablation_rows(records)
    report.judged, unjudged = find_judgements(dirs)
    report.unreadable += unjudged
    report.preferences, unread = find_preference_records(dirs)
    report.unreadable += unread
    for path in failed:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            report.failed.append({"dir": str(path.parent), **data})
        except (OSError, ValueError):
            report.unreadable.append(str(path))
    return report


def ranks(rows: list[Row], metrics: tuple[str, ...] = ("srcc", "plcc")) -> dict[Cell, list[list[str]]]:
    """Per column, the labels of the best and second-best mean (ties share a place)."""
    out = {}
    for key in ((c, m) for c in columns(rows) for m in metrics):
        scored = sorted({v for row in rows if (v := row.mean(key)) is not None}, reverse=True)
        out[key] = [[row.label for row in rows if row.mean(key) == v] for v in scored[:2]]
    return out


def _cell(row: Row, key: Any, digits: int = 4) -> str:
    mean, std = row.mean(key), row.std(key)
    if mean is None:
        return "—"
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    if len(row.values.get(key) or []) >= 3:
        text += f" (median {row.median(key):.{digits}f})"
    return text


def _seeds(values: list[int | None]) -> str:
    return ", ".join(str(s) for s in sorted({s for s in values if s is not None}))


def _row_label(row: Row) -> str:
    if len(row.seeds) == 1:
        return row.label
    what = f"seeds {_seeds(row.seeds)}"
    if len({s for s in row.split_seeds if s is not None}) > 1:
        what += f"; split seeds {_seeds(row.split_seeds)}"
    return f"{row.label} (mean ± std of {len(row.seeds)} runs, {what})"


def _n(row: Row) -> str:
    values = sorted({int(v) for v in row.values.get(("all", "n")) or []})
    return "—" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def to_markdown(task: str, rows: list[Row], plcc: str = "plcc") -> str:
    """The paper-style table: best in bold, second best in italics; ``plcc`` picks raw or logistic PLCC."""
    if plcc not in PLCC_CHOICES:
        raise ValueError(f"plcc must be one of {', '.join(PLCC_CHOICES)}, got {plcc!r}")
    metrics = ("srcc", plcc)
    places = ranks(rows, metrics)
    shown = columns(rows)
    head = "| Models | n | " + " | ".join(f"{TYPE_LABELS[c]} SRCC | {TYPE_LABELS[c]} PLCC" for c in shown) + " |"
    title = f"**{TABLE_TITLES.get(task, task)}** (best in bold, second in italics; {PLCC_CHOICES[plcc]})"
    lines = [title, "", head, "|---|---:|" + "---:|" * (2 * len(shown))]
    for row in rows:
        cells = []
        for key in ((c, m) for c in shown for m in metrics):
            text = _cell(row, key)
            if row.mean(key) is not None and places[key] and row.label in places[key][0]:
                text = f"**{text}**"
            elif row.mean(key) is not None and len(places[key]) > 1 and row.label in places[key][1]:
                text = f"_{text}_"
            cells.append(text)
        lines.append(f"| {_row_label(row)} | {_n(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _names(rows: list[Row]) -> list[str]:
    return sorted({name for row in rows for name in row.values})


def scalars_to_markdown(task: str, rows: list[Row]) -> str:
    """A plain table of a task's numeric metrics, one row per model and setting."""
    names = _names(rows)
    lines = [f"**{task}**", "", "| Models | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in rows:
        cells = [f"{row.mean(n):g}" if n == "n" and row.mean(n) is not None else _cell(row, n) for n in names]
        lines.append(f"| {_row_label(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv(header: list[str], lines: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(lines)
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def scalars_to_csv(rows: list[Row]) -> str:
    """One row per model and setting: each metric's mean and std, and the number of runs."""
    names = _names(rows)
    header = ["model", "runs", *(f"{n}{s}" for n in names for s in ("", "_std"))]
    lines = [[r.label, len(r.seeds), *(_num(f(n)) for n in names for f in (r.mean, r.std))] for r in rows]
    return _csv(header, lines)


def to_csv(rows: list[Row]) -> str:
    """One row per model and setting: columns ``<type>_<metric>`` with ``_std`` and ``_median``, and the runs."""
    keys = [(c, m) for c in columns(rows) for m in CELL_METRICS]
    header = ["model", "runs", *(f"{c}_{m}{s}" for c, m in keys for s in ("", "_std", "_median"))]
    lines = [[r.label, len(r.seeds), *(_num(f(k)) for k in keys for f in (r.mean, r.std, r.median))] for r in rows]
    return _csv(header, lines)


def write_report(report: Report, out: str | Path, plcc: str = "plcc") -> list[Path]:
    """Write ``<task>.csv`` and ``<task>.md`` per table (and ``table5``–``table7``) into ``out``."""
    out = Path(out)
    written = []
    for task, rows in (report.tables | report.ablations).items():
        written.append(atomic_write_text(out / f"{task}.csv", to_csv(rows)))
        written.append(atomic_write_text(out / f"{task}.md", to_markdown(task, rows, plcc)))
    for task, rows in report.scalars.items():
        written.append(atomic_write_text(out / f"{task}.csv", scalars_to_csv(rows)))
        written.append(atomic_write_text(out / f"{task}.md", scalars_to_markdown(task, rows)))
    written += write_table4(report.judged, out)
    written += write_preference_tables(report.preferences, out)
    return written


def log_to_wandb(report: Report) -> bool:
    """Log each table to the active W&B run, if there is one; True if logged."""
    try:
        import wandb
    except ImportError:
        return False
    if wandb.run is None:
        return False
    for task, rows in (report.tables | report.ablations).items():
        keys = [(c, m) for c in columns(rows) for m in CELL_METRICS]
        data = [[row.label, len(row.seeds), *(row.mean(k) for k in keys)] for row in rows]
        header = ["model", "runs", *(f"{c}_{m}" for c, m in keys)]
        wandb.log({f"report/{task}": wandb.Table(columns=header, data=data)})
    return True
