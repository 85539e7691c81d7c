"""``epaiqa report DIR...``: the paper's tables from a set of run folders, through the results records.

Rows are models, columns Type-1..Type-4 and Overall, SRCC and PLCC each; one table per task (Table 1 =
harmony, Table 2 = naturalness, Table 3 = overall on prompt completion 3, §5.1). Runs are grouped by (task,
model, setting): runs that differ only in their seed form one row, shown as mean ± std over the seeds; runs of
two settings of one model are two rows, labelled by the overrides that tell them apart — settings are never
averaged together. The best value of each column is in bold and the second in italics (the paper's red and
blue). Tasks whose metrics are plain numbers (grounding, completion) get a table with one column per metric.
Failed jobs (``failed.json``) are listed with their traceback file.
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
from epaiqa.eval.results import COLUMNS, COMPLETION3, TYPE_LABELS, RunRecord, find_records, read_record
from epaiqa.io import atomic_write_text

TABLE_TITLES = {
    "harmony": "Table 1: global harmony",
    "naturalness": "Table 2: local naturalness",
    "overall": "Table 3: overall editing quality (prompt completion 3)",
    "overall_all": "Overall editing quality, all test samples",
}
METRICS = ("srcc", "plcc")

Cell = tuple[str, str]


@dataclass
class Row:
    """One row of a table: the runs of one model in one setting (seeds), per cell their values."""

    label: str
    values: dict[Any, list[float]] = field(default_factory=lambda: defaultdict(list))
    seeds: list[int | None] = field(default_factory=list)

    def mean(self, key: Any) -> float | None:
        """Mean over the runs of a cell (None if no run has it)."""
        values = self.values.get(key) or []
        return float(np.mean(values)) if values else None

    def std(self, key: Any) -> float | None:
        """Sample standard deviation over the runs of a cell (None with fewer than two)."""
        values = self.values.get(key) or []
        return float(np.std(values, ddof=1)) if len(values) > 1 else None


@dataclass
class Report:
    """Per task, its rows (correlation tables or plain numbers), and the failed or unreadable jobs found."""

    tables: dict[str, list[Row]] = field(default_factory=dict)
    scalars: dict[str, list[Row]] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _labels(records: list[RunRecord]) -> dict[tuple[str, str, str], str]:
    """Row labels per (task, model, setting key): the model, plus the overrides that tell its settings apart."""
    settings: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(dict)
    for r in records:
        settings[(r.task, r.model)][r.setting.key] = set(r.setting.overrides)
    labels = {}
    for (task, model), by_key in settings.items():
        shared = set.intersection(*by_key.values())
        for key, overrides in by_key.items():
            extra = sorted(overrides - shared)
            label = f"{model} [{', '.join(extra) if extra else 'setting ' + key[:6]}]" if len(by_key) > 1 else model
            labels[(task, model, key)] = label
    return labels


def _table_cells(metrics: dict[str, Any]) -> dict[Cell, float]:
    return {(c, m): float(v) for c in COLUMNS for m in METRICS if (v := (metrics.get(c) or {}).get(m)) is not None}


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
            row.seeds.append(r.seed)
            for key, value in cells.items():
                row.values[key].append(value)
            if kind == "scalar":  # a metric that is None in every run still gets its column
                for name in r.test:
                    row.values.setdefault(name, [])
    for (kind, task), by_label in sorted(rows.items()):
        target = report.tables if kind == "table" else report.scalars
        target[task] = [by_label[label] for label in sorted(by_label)]
    for path in failed:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            report.failed.append({"dir": str(path.parent), **data})
        except (OSError, ValueError):
            report.unreadable.append(str(path))
    return report


def ranks(rows: list[Row]) -> dict[Cell, list[list[str]]]:
    """Per column, the labels of the best and second-best mean (ties share a place)."""
    out = {}
    for key in ((c, m) for c in COLUMNS for m in METRICS):
        scored = sorted({v for row in rows if (v := row.mean(key)) is not None}, reverse=True)
        out[key] = [[row.label for row in rows if row.mean(key) == v] for v in scored[:2]]
    return out


def _cell(row: Row, key: Any, digits: int = 4) -> str:
    mean, std = row.mean(key), row.std(key)
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _row_label(row: Row) -> str:
    seeds = sorted({s for s in row.seeds if s is not None})
    if len(row.seeds) == 1:
        return row.label
    return f"{row.label} (mean ± std of {len(row.seeds)} runs, seeds {', '.join(map(str, seeds))})"


def to_markdown(task: str, rows: list[Row]) -> str:
    """The paper-style table: best in bold, second best in italics."""
    places = ranks(rows)
    head = "| Models | " + " | ".join(f"{TYPE_LABELS[c]} SRCC | {TYPE_LABELS[c]} PLCC" for c in COLUMNS) + " |"
    lines = [f"**{TABLE_TITLES.get(task, task)}** (best in bold, second in italics)", "", head]
    lines.append("|---|" + "---:|" * (2 * len(COLUMNS)))
    for row in rows:
        cells = []
        for key in ((c, m) for c in COLUMNS for m in METRICS):
            text = _cell(row, key)
            if row.mean(key) is not None and places[key] and row.label in places[key][0]:
                text = f"**{text}**"
            elif row.mean(key) is not None and len(places[key]) > 1 and row.label in places[key][1]:
                text = f"_{text}_"
            cells.append(text)
        lines.append(f"| {_row_label(row)} | " + " | ".join(cells) + " |")
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
    """One row per model and setting, columns ``<type>_<metric>`` and ``<type>_<metric>_std``, and the runs."""
    keys = [(c, m) for c in COLUMNS for m in METRICS]
    header = ["model", "runs", *(f"{c}_{m}{s}" for c, m in keys for s in ("", "_std"))]
    lines = [[r.label, len(r.seeds), *(_num(f(k)) for k in keys for f in (r.mean, r.std))] for r in rows]
    return _csv(header, lines)


def write_report(report: Report, out: str | Path) -> list[Path]:
    """Write ``<task>.csv`` and ``<task>.md`` per table into ``out``."""
    out = Path(out)
    written = []
    for task, rows in report.tables.items():
        written.append(atomic_write_text(out / f"{task}.csv", to_csv(rows)))
        written.append(atomic_write_text(out / f"{task}.md", to_markdown(task, rows)))
    for task, rows in report.scalars.items():
        written.append(atomic_write_text(out / f"{task}.csv", scalars_to_csv(rows)))
        written.append(atomic_write_text(out / f"{task}.md", scalars_to_markdown(task, rows)))
    return written


def log_to_wandb(report: Report) -> bool:
    """Log each table to the active W&B run, if there is one; True if logged."""
    try:
        import wandb
    except ImportError:
        return False
    if wandb.run is None:
        return False
    keys = [(c, m) for c in COLUMNS for m in METRICS]
    for task, rows in report.tables.items():
        data = [[row.label, len(row.seeds), *(row.mean(k) for k in keys)] for row in rows]
        columns = ["model", "runs", *(f"{c}_{m}" for c, m in keys)]
        wandb.log({f"report/{task}": wandb.Table(columns=columns, data=data)})
    return True
