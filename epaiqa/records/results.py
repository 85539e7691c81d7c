"""The results record of a run (``results.json``): one typed module writes it and reads it back.

Every scored task of every run — a trained baseline, an EPAIQA stage, a zero-shot backbone, a regressor,
imported predictions — is one :class:`RunRecord`. ``epaiqa report``, sweeps and W&B read records only through
:func:`read_record` / :func:`find_records`, so what a table shows is what a run wrote.

Metrics come in two shapes: a *correlation table* ``{"all": {...}, "style_change": {...}, ...}`` (SRCC, PLCC,
KRCC, RMSE and n per edit type) for the scored tasks (harmony, naturalness, overall), and *plain numbers*
``{"n": ..., "accuracy": ...}`` for the others (grounding, completion). The overall task also carries the
prompt-completion = 3 subset that Table 3 scores (§5.1) under ``subsets["completion3"]``, apart from the
all-sample score.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from epaiqa.data.schema import EDIT_TYPES, UNKNOWN_EDIT_TYPE
from epaiqa.errors import DataError
from epaiqa.io import atomic_write_json

RESULTS = "results.json"
FAILED = "failed.json"
TRACEBACK = "traceback.txt"
SCHEMA_VERSION = 2
#: trained: fitted in this run; zero-shot: scored as loaded; regressor: fitted on other runs' predictions;
#: imported: predictions of an external model (``epaiqa evaluate``).
KINDS = ("trained", "zero-shot", "regressor", "imported")
COLUMNS = (*EDIT_TYPES, "all")
#: a converted benchmark's samples without an edit type: a column of their own, shown only where there are some
ALL_COLUMNS = (*EDIT_TYPES, UNKNOWN_EDIT_TYPE, "all")
TYPE_LABELS = {"style_change": "Type-1", "object_enhancement": "Type-2", "object_operation": "Type-3"}
TYPE_LABELS |= {"semantic_change": "Type-4", UNKNOWN_EDIT_TYPE: "Unknown type", "all": "Overall"}
#: the subset of the overall task that Table 3 scores: prompt completion 3 (§5.1)
COMPLETION3 = "completion3"

Metrics = dict[str, Any]


@dataclass
class Setting:
    """What defines a run's setting apart from its seed: the overrides it was started with, and a key.

    ``key`` is a hash of the composed config without the seed, paths, loggers and resume path, so that runs
    differing only in their seed share it and runs of two settings never do.
    """

    key: str = ""
    overrides: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    """One task's results of one run."""

    task: str
    model: str
    kind: str
    test: Metrics
    n: int
    seed: int | None = None
    split_seed: int | None = None
    setting: Setting = field(default_factory=Setting)
    git_commit: str | None = None
    data_fingerprint: str | None = None
    lineage: list[str] = field(default_factory=list)
    train: Metrics | None = None
    untrained: Metrics | None = None
    #: metrics on the validation split (LMM stages: the last validation epoch), where settings are chosen
    val: Metrics | None = None
    subsets: dict[str, dict[str, Metrics | None]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    epochs: int | None = None
    #: the Trainer precision the run computed in (``trainer.precision=auto`` resolved), e.g. ``bf16-mixed``
    precision: str | None = None
    #: wall seconds per phase of the job (:mod:`epaiqa.timing`); None in records written before it existed
    timing: dict[str, float] | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if isinstance(self.setting, dict):
            self.setting = Setting(**self.setting)

    @property
    def is_table(self) -> bool:
        """Whether the test metrics are a correlation table (per edit type) rather than plain numbers."""
        return is_table(self.test)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """A record from JSON data; records of schema 1 (``metrics`` for the test metrics) are read too."""
        if not isinstance(data, dict):
            raise ValueError("a results record must be a JSON object")
        data = dict(data)
        if "test" not in data and "metrics" in data:  # schema 1
            data["test"] = data.pop("metrics")
            data.setdefault("kind", "trained")
            if data.get("n") is None:
                data["n"] = n_of(data["test"])
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("task", "model", "kind", "test") if k not in data]
        if missing:
            raise ValueError(f"missing fields {', '.join(missing)}")
        data.setdefault("n", n_of(data["test"]))
        return cls(**{k: v for k, v in data.items() if k in known})


def is_table(metrics: Metrics | None) -> bool:
    """Whether metrics are a per-edit-type correlation table."""
    return isinstance(metrics, dict) and "all" in metrics and isinstance(metrics["all"], dict)


def n_of(metrics: Metrics | None) -> int:
    """The number of samples behind a set of metrics."""
    if not metrics:
        return 0
    value = metrics["all"].get("n") if is_table(metrics) else metrics.get("n")
    return int(value or 0)


def write_record(folder: str | Path, record: RunRecord) -> Path:
    """Write ``FOLDER/results.json`` atomically."""
    return atomic_write_json(Path(folder) / RESULTS, record.to_json())


def read_record(path: str | Path) -> RunRecord:
    """The record in a ``results.json`` (or in a run folder); :class:`DataError` naming the file if unreadable."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    try:
        return RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a readable results record ({exc})") from None


def find_records(dirs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Every ``results.json`` and ``failed.json`` under the given folders (or the files themselves)."""
    results: list[Path] = []
    failed: list[Path] = []
    for d in map(Path, dirs):
        if d.is_dir():
            results += sorted(d.rglob(RESULTS))
            failed += sorted(d.rglob(FAILED))
        elif d.name == RESULTS:
            results.append(d)
    return results, failed


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def results_table(record: RunRecord) -> Table:
    """SRCC/PLCC per edit type (rows) of the trained model, and of the untrained one when it was scored."""
    table = Table(
        title=f"{record.model} · {record.task} · test n={record.n} · seed {record.seed}",
        caption="Type-1 style change · Type-2 object enhancement · Type-3 object operation · Type-4 semantic change",
    )
    table.add_column("edit type")
    table.add_column("n", justify="right")
    runs = [("untrained", record.untrained)] if record.untrained else []
    runs.append(("trained" if record.kind == "trained" else record.kind, record.test))
    for label, _ in runs:
        table.add_column(f"{label} SRCC", justify="right")
        table.add_column(f"{label} PLCC", justify="right")
    for col in (c for c in ALL_COLUMNS if c in record.test):
        cells = [TYPE_LABELS[col], str(record.test[col]["n"])]
        for _, metrics in runs:
            cells += [_fmt(metrics[col]["srcc"]), _fmt(metrics[col]["plcc"])]  # type: ignore[index]
        table.add_row(*cells)
    return table


def print_record(record: RunRecord, console: Console | None = None) -> None:
    """Print a record: the per-edit-type table, or its plain numbers on one line."""
    console = console or Console()
    if record.is_table:
        console.print(results_table(record))
        sub = record.subsets.get(COMPLETION3, {}).get("test")
        if sub:
            console.print(
                f"{record.task}, prompt completion 3 only (Table 3): n={n_of(sub)}, "
                f"SRCC {_fmt(sub['all']['srcc'])}, PLCC {_fmt(sub['all']['plcc'])}"
            )
    else:
        console.print(f"{record.model} · {record.task}: " + ", ".join(f"{k} {v}" for k, v in record.test.items()))
