"""``epaiqa report DIR...``: the paper's Tables 1–2 layout from a set of run folders.

Rows are models, columns Type-1..Type-4 and Overall, SRCC and PLCC each; one table per task
(Table 1 = harmony, Table 2 = naturalness). Runs of the same model and task (seeds) are averaged.
The best value of each column is marked in bold and the second best in italics in the markdown
(the paper's red and blue). Tasks whose metrics are plain numbers (stage-1 grounding, stage-3 completion
accuracy) get a table of their own, one column per metric. Jobs that failed (``failed.json``) are listed, not
dropped silently.
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

from epaiqa.eval.results import COLUMNS, RESULTS, TYPE_LABELS
from epaiqa.io import atomic_write_text

FAILED = "failed.json"
TABLE_TITLES = {
    "harmony": "Table 1: global harmony",
    "naturalness": "Table 2: local naturalness",
    "overall": "Table 3: overall editing quality (prompt completion 3)",
}
METRICS = ("srcc", "plcc")


@dataclass
class Report:
    """Per task, per model: mean metrics over runs; plus the failed jobs found."""

    tables: dict[str, dict[str, dict[tuple[str, str], float | None]]] = field(default_factory=dict)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    #: tasks with plain-number metrics (grounding, completion): per task, per model, metric → mean
    scalars: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)


def find_runs(dirs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """All results.json and failed.json files under the given folders."""
    results, failed = [], []
    for d in map(Path, dirs):
        results += sorted(d.rglob(RESULTS)) if d.is_dir() else [d] if d.name == RESULTS else []
        failed += sorted(d.rglob(FAILED)) if d.is_dir() else []
    return results, failed


def collect(dirs: list[str | Path]) -> Report:
    """Read every run under ``dirs`` into a report (means over runs of one model and task)."""
    results, failed = find_runs(dirs)
    values: dict[str, dict[str, dict[tuple[str, str], list[float]]]] = defaultdict(lambda: defaultdict(dict))
    scalars: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    report = Report()
    for path in results:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            task, model, metrics = data["task"], data["model"], data["metrics"]
            if "all" not in metrics and all(isinstance(v, int | float | None) for v in metrics.values()):
                for name, value in metrics.items():
                    scalars[task][model][name] += [] if value is None else [float(value)]
                continue
            cells = {(col, m): metrics[col][m] for col in COLUMNS for m in METRICS}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            report.unreadable.append(str(path))
            continue
        for key, value in cells.items():
            values[task][model].setdefault(key, [])
            if value is not None:
                values[task][model][key].append(float(value))
        report.runs.setdefault(task, {}).setdefault(model, 0)
        report.runs[task][model] += 1
    for task, models in values.items():
        report.tables[task] = {
            model: {key: (float(np.mean(v)) if v else None) for key, v in cells.items()}
            for model, cells in sorted(models.items())
        }
    for task, models in scalars.items():
        report.scalars[task] = {
            model: {name: (float(np.mean(v)) if v else None) for name, v in cells.items()}
            for model, cells in sorted(models.items())
        }
    for path in failed:
        try:
            report.failed.append({"dir": str(path.parent), **json.loads(path.read_text(encoding="utf-8"))})
        except (OSError, ValueError):
            report.unreadable.append(str(path))
    return report


def ranks(table: dict[str, dict[tuple[str, str], float | None]]) -> dict[tuple[str, str], list[str]]:
    """Per column, the models of the best and second-best value (ties share a place)."""
    out = {}
    for key in ((c, m) for c in COLUMNS for m in METRICS):
        scored = sorted({v for row in table.values() if (v := row[key]) is not None}, reverse=True)
        out[key] = [[model for model, row in table.items() if row[key] == v] for v in scored[:2]]
    return out  # type: ignore[return-value]


def to_markdown(task: str, table: dict[str, dict[tuple[str, str], float | None]], runs: dict[str, int]) -> str:
    """The paper-style table: best in bold, second best in italics."""
    places = ranks(table)
    head = "| Models | " + " | ".join(f"{TYPE_LABELS[c]} SRCC | {TYPE_LABELS[c]} PLCC" for c in COLUMNS) + " |"
    lines = [f"**{TABLE_TITLES.get(task, task)}** (best in bold, second in italics)", "", head]
    lines.append("|---|" + "---:|" * (2 * len(COLUMNS)))
    for model, row in table.items():
        cells = []
        for key in ((c, m) for c in COLUMNS for m in METRICS):
            value = row[key]
            text = "—" if value is None else f"{value:.4f}"
            if value is not None and places[key] and model in places[key][0]:
                text = f"**{text}**"
            elif value is not None and len(places[key]) > 1 and model in places[key][1]:
                text = f"_{text}_"
            cells.append(text)
        label = model if runs.get(model, 1) == 1 else f"{model} (mean of {runs[model]})"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scalars_to_markdown(task: str, rows: dict[str, dict[str, float | None]]) -> str:
    """A plain table of a task's numeric metrics, one row per model (means over runs)."""
    names = sorted({name for row in rows.values() for name in row})
    lines = [f"**{task}**", "", "| Models | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for model, row in rows.items():
        cells = ["—" if row.get(n) is None else f"{row[n]:g}" if n == "n" else f"{row[n]:.4f}" for n in names]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scalars_to_csv(rows: dict[str, dict[str, float | None]]) -> str:
    """One row per model, one column per metric."""
    names = sorted({name for row in rows.values() for name in row})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", *names])
    for model, row in rows.items():
        writer.writerow([model, *("" if row.get(n) is None else f"{row[n]:.6f}" for n in names)])
    return buffer.getvalue()


def to_csv(table: dict[str, dict[tuple[str, str], float | None]]) -> str:
    """One row per model, columns ``<type>_<metric>``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    keys = [(c, m) for c in COLUMNS for m in METRICS]
    writer.writerow(["model", *(f"{c}_{m}" for c, m in keys)])
    for model, row in table.items():
        writer.writerow([model, *("" if row[k] is None else f"{row[k]:.6f}" for k in keys)])
    return buffer.getvalue()


def write_report(report: Report, out: str | Path) -> list[Path]:
    """Write ``<task>.csv`` and ``<task>.md`` per task into ``out``."""
    out = Path(out)
    written = []
    for task, table in report.tables.items():
        written.append(atomic_write_text(out / f"{task}.csv", to_csv(table)))
        written.append(atomic_write_text(out / f"{task}.md", to_markdown(task, table, report.runs[task])))
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
    for task, table in report.tables.items():
        keys = [(c, m) for c in COLUMNS for m in METRICS]
        data = [[model, *(row[k] for k in keys)] for model, row in table.items()]
        wandb.log({f"report/{task}": wandb.Table(columns=["model", *(f"{c}_{m}" for c, m in keys)], data=data)})
    return True
