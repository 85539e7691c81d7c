"""``results.json`` of a run and the results table printed at its end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from epaiqa.data.schema import EDIT_TYPES
from epaiqa.io import atomic_write_json

RESULTS = "results.json"
COLUMNS = (*EDIT_TYPES, "all")
TYPE_LABELS = {"style_change": "Type-1", "object_enhancement": "Type-2", "object_operation": "Type-3"}
TYPE_LABELS |= {"semantic_change": "Type-4", "all": "Overall"}


def write_results(run_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/results.json`` atomically."""
    return atomic_write_json(Path(run_dir) / RESULTS, results)


def read_results(path: str | Path) -> dict[str, Any]:
    """A results.json file (or the one inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def results_table(results: dict[str, Any]) -> Table:
    """SRCC/PLCC per edit type (rows) of the trained model, and of the untrained one when it was scored."""
    table = Table(
        title=f"{results['model']} · {results['task']} · test n={results['n']} · seed {results['seed']}",
        caption="Type-1 style change · Type-2 object enhancement · Type-3 object operation · Type-4 semantic change",
    )
    table.add_column("edit type")
    table.add_column("n", justify="right")
    runs = [("trained", results["metrics"])]
    if results.get("untrained"):
        runs.insert(0, ("untrained", results["untrained"]))
    for label, _ in runs:
        table.add_column(f"{label} SRCC", justify="right")
        table.add_column(f"{label} PLCC", justify="right")
    for col in COLUMNS:
        cells = [TYPE_LABELS[col], str(results["metrics"][col]["n"])]
        for _, metrics in runs:
            cells += [_fmt(metrics[col]["srcc"]), _fmt(metrics[col]["plcc"])]
        table.add_row(*cells)
    return table


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    """Print the results table."""
    (console or Console()).print(results_table(results))
