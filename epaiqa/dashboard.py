"""``epaiqa dashboard``: a W&B workspace and report that compare runs, built from their offline run files.

:func:`read_offline_run` reads a run's ``.wandb`` file — the transaction log ``wandb sync`` uploads: W&B's
LevelDB-style records, each a ``wandb.proto.wandb_internal_pb2.Record`` — into its group, job type, config,
summary and logged tables. From the runs found, :func:`build_workspace` and :func:`build_report` lay out (with
``wandb-workspaces``) Tables 1–3 as run-comparison panels (a run comparer, runs-table columns and one bar panel
per edit type), a parallel-coordinates panel over the parameters that vary across the runs, and the logged
predictions and explanations tables. Building needs no network; saving does (:func:`save_online`).
"""

from __future__ import annotations

import json
import netrc
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from epaiqa.data.schema import EDIT_TYPES
from epaiqa.errors import DataError
from epaiqa.records.results import TYPE_LABELS
from epaiqa.wandb_logging import CONFIG_KEYS, PREDICTIONS_KEY

#: the paper's tables, by the task they score
TABLES = {"harmony": "Table 1", "naturalness": "Table 2", "overall": "Table 3"}
#: the summary names a table reads where they are not the task's: Table 3 scores prompt completion 3 (§5.1)
SCORED_AS = {"overall": "overall_completion3"}
EXPLANATIONS_KEY = "test/explanations"
#: the per-edit-type columns of a table, in the paper's order
COLUMNS = (*EDIT_TYPES, "all")
#: flat config keys never offered as sweep parameters (identifiers, not settings)
NOT_PARAMETERS = ("model", "setting", "sweep", "task", "kind")
#: the parallel-coordinates axes when the runs found vary in nothing
DEFAULT_PARAMETERS = ("family", "lr", "batch_size", "image_size", "seed")

# W&B's run log: a 7-byte file header, then 32 KiB blocks of records, each with a 7-byte header (CRC-32 of type
# byte + data, length, type); a record that does not fit a block is split FIRST / MIDDLE... / LAST.
_FILE_HEADER = struct.Struct("<4sHB")
_RECORD_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one W&B run logged, as its ``.wandb`` file has it."""

    path: Path
    id: str = ""
    project: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    #: logged tables and media: artifact name → {path in the artifact: the local file staged for upload}
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)

    def _contents(self, key: str) -> dict[str, str]:
        """The artifact that holds the table logged under ``key`` (empty if none)."""
        return next((c for c in self.artifacts.values() if f"{key}.table.json" in c), {})

    def table(self, key: str) -> dict[str, Any] | None:
        """A logged table (columns, data), read from the file W&B staged for upload; None if there is none."""
        local = self._contents(key).get(f"{key}.table.json")
        if not local or not Path(local).is_file():
            return None
        return json.loads(Path(local).read_text(encoding="utf-8"))

    def images(self, key: str) -> int:
        """How many images the table logged under ``key`` carries."""
        return sum(p.startswith("media/images/") for p in self._contents(key))


def _chunks(data: bytes, path: Path) -> Iterator[tuple[int, bytes]]:
    pos = _FILE_HEADER.size
    while pos + _RECORD_HEADER.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER.size:  # a block's tail too short for a header is padding
            pos += left
            continue
        crc, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + _RECORD_HEADER.size : pos + _RECORD_HEADER.size + length]
        if len(chunk) < length:  # a run still writing (or killed): its complete records are read
            return
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            raise DataError(f"{path}: corrupt W&B record at byte {pos}")
        yield kind, chunk
        pos += _RECORD_HEADER.size + length


def wandb_records(path: str | Path) -> Iterator[Any]:
    """The records of a ``.wandb`` file, as ``wandb_internal_pb2.Record`` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size or _FILE_HEADER.unpack_from(data)[0] != b":W&B":
        raise DataError(f"{path}: not a W&B run file")
    parts: list[bytes] = []
    for kind, chunk in _chunks(data, path):
        parts = [chunk] if kind in (_FULL, _FIRST) else [*parts, chunk]
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            yield record


def _apply(target: dict[str, Any], items: Any, removals: Any = ()) -> None:
    """Config or summary updates (``key`` or ``nested_key`` with ``value_json``) applied to ``target``."""
    for item in items:
        path = list(item.nested_key) or [item.key]
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    for item in removals:
        path = list(item.nested_key) or [item.key]
        node = target
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)


def read_offline_run(path: str | Path) -> OfflineRun:
    """A run as its ``.wandb`` file logged it: group, job type, config (final values), summary, artifacts."""
    run = OfflineRun(Path(path))
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.project, run.name, run.group, run.job_type = (
                r.run_id,
                r.project,
                r.display_name,
                r.run_group,
                r.job_type,
            )
            _apply(run.config, r.config.update)
            _apply(run.summary, r.summary.update)
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "artifact":
            contents = record.artifact.manifest.contents
            run.artifacts[record.artifact.name] = {c.path: c.local_path for c in contents}
    return run


def find_offline_runs(dirs: list[str | Path], project: str | None = None) -> list[OfflineRun]:
    """The W&B runs (of ``project``, if given) under the folders; :class:`DataError` when a folder is missing."""
    missing = [str(d) for d in dirs if not Path(d).exists()]
    if missing:
        raise DataError(f"no such folder: {', '.join(missing)}")
    files = sorted({f for d in map(Path, dirs) for f in ([d] if d.is_file() else d.rglob("*.wandb"))})
    runs = [read_offline_run(f) for f in files]
    return [r for r in runs if project is None or r.project == project]


def tasks_of(runs: list[OfflineRun]) -> list[str]:
    """The tasks of the paper's tables that the runs have per-edit-type summaries of, in table order."""
    return [t for t in TABLES if any(_metric(t, "all", "n") in r.summary for r in runs)]


def sweep_parameters(runs: list[OfflineRun]) -> list[str]:
    """The flat config keys whose values differ across the runs (the defaults when none do)."""
    keys = [k for k in CONFIG_KEYS if k not in NOT_PARAMETERS]
    varied = [k for k in keys if len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]
    return varied or list(DEFAULT_PARAMETERS)


def _metric(task: str, column: str, name: str = "srcc") -> str:
    """The summary name of a table cell: ``test/<task>/<column>/<metric>``."""
    return f"test/{SCORED_AS.get(task, task)}/{column}/{name}"


def _title(task: str) -> str:
    return f"{TABLES[task]} · {task}" + (" (prompt completion 3)" if task in SCORED_AS else "")


def table_panels(task: str) -> list[Any]:
    """A paper table as panels: a run comparer and one SRCC/PLCC bar panel per edit type (and overall)."""
    import wandb_workspaces.reports.v2 as wr

    bars = [
        wr.BarPlot(
            title=f"{_title(task)} · {TYPE_LABELS[column]}",
            metrics=[wr.SummaryMetric(_metric(task, column, m)) for m in ("srcc", "plcc")],
            orientation="v",
        )
        for column in COLUMNS
    ]
    return [wr.RunComparer(diff_only="split"), *bars]


def table_columns(task: str) -> list[str]:
    """The runs-table columns that make a paper table: family, model, SRCC / PLCC per edit type."""
    metrics = [f"summary:{_metric(task, column, m)}" for column in COLUMNS for m in ("srcc", "plcc")]
    return ["run:displayName", "config:family.value", "config:model.value", *metrics]


def sweep_panels(task: str, parameters: list[str]) -> list[Any]:
    """A parallel-coordinates panel over the sweep's parameters to the task's SRCC, and their importance."""
    import wandb_workspaces.reports.v2 as wr

    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p)) for p in parameters]
    target = wr.SummaryMetric(_metric(task, "all"))
    return [
        wr.ParallelCoordinatesPlot(
            title=f"sweep → {task} SRCC", columns=[*columns, wr.ParallelCoordinatesPlotColumn(target)]
        ),
        wr.ParameterImportancePlot(with_respect_to=_metric(task, "all")),
    ]


def table_panels_of_runs(runs: list[OfflineRun]) -> list[Any]:
    """The logged tables the runs carry: predictions (and explanations, from stage 3)."""
    import wandb_workspaces.reports.v2 as wr

    keys = [PREDICTIONS_KEY] + ([EXPLANATIONS_KEY] if any(EXPLANATIONS_KEY in r.summary for r in runs) else [])
    return [wr.WeavePanelSummaryTable(table_name=key, layout=wr.Layout(w=24, h=12)) for key in keys]


def _groups(runs: list[OfflineRun]) -> list[str]:
    return sorted({r.group for r in runs if r.group})


def build_workspace(project: str, entity: str, runs: list[OfflineRun]) -> Any:
    """A W&B workspace: a section per paper table, the sweep's parameters, the logged tables."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    tasks, parameters = tasks_of(runs) or list(TABLES), sweep_parameters(runs)
    sections = [ws.Section(name=_title(t), panels=table_panels(t), is_open=True) for t in tasks]
    sections.append(ws.Section(name="Sweep", panels=[p for t in tasks for p in sweep_panels(t, parameters)]))
    sections.append(ws.Section(name="Predictions", panels=table_panels_of_runs(runs)))
    sections.append(ws.Section(name="Training", panels=[wr.LinePlot(x="Step", y=[f"val/{t}/srcc" for t in tasks])]))
    runset = ws.RunsetSettings(
        filters=[expr.Metric("Group").isin(_groups(runs))] if _groups(runs) else [],
        pinned_columns=table_columns(tasks[0]),
    )
    name = f"EPAIQA · {', '.join(_groups(runs)) or project}"[:120]
    return ws.Workspace(entity=entity, project=project, name=name, sections=sections, runset_settings=runset)


def build_report(project: str, entity: str, runs: list[OfflineRun], bind: bool = False) -> Any:
    """A W&B report: per paper table a runs table and panels of its task's runs, then the sweep and the tables.

    ``bind``: the run sets name the entity and project, which W&B resolves when the report is turned into its
    spec (online); unbound, they leave the project out and the spec builds offline.
    """
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    tasks, parameters, groups = tasks_of(runs) or list(TABLES), sweep_parameters(runs), _groups(runs)

    def runset(name: str, *filters: Any, columns: list[str] | None = None) -> Any:
        group = [expr.Metric("Group").isin(groups)] if groups else []
        where = {"entity": entity, "project": project} if bind else {}
        return wr.Runset(**where, name=name, filters=[*group, *filters], pinned_columns=columns or [])

    blocks: list[Any] = [wr.P(f"Runs compared: {len(runs)} in {', '.join(groups) or 'no group'} (epaiqa dashboard).")]
    for t in tasks:
        blocks += [
            wr.H2(f"{_title(t)}: SRCC / PLCC per edit type"),
            wr.PanelGrid(
                runsets=[runset(t, expr.Summary(_metric(t, "all", "n")) >= 1, columns=table_columns(t))],
                panels=table_panels(t),
            ),
        ]
    blocks += [
        wr.H2("Sweep"),
        wr.PanelGrid(runsets=[runset("sweep")], panels=[p for t in tasks for p in sweep_panels(t, parameters)]),
    ]
    blocks += [
        wr.H2("Predictions and explanations"),
        wr.PanelGrid(runsets=[runset("tables")], panels=table_panels_of_runs(runs)),
    ]
    title = f"EPAIQA comparison · {', '.join(groups) or project}"[:128]
    return wr.Report(project=project, entity=entity, title=title, blocks=blocks, width="fluid")


def dashboard_spec(workspace: Any, report: Any) -> dict[str, Any]:
    """The workspace's and the report's view specs as JSON data (what ``save()`` uploads)."""
    dump = {"by_alias": True, "exclude_none": True, "mode": "json"}
    return {"workspace": workspace._to_model().model_dump(**dump), "report": report._to_model().model_dump(**dump)}


def can_save() -> str | None:
    """Why the dashboard cannot be saved to W&B now (None if it can): offline mode or no API key."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}"
    if os.environ.get("WANDB_API_KEY"):
        return None
    import wandb

    host = urlparse(wandb.Settings().base_url).hostname or ""
    try:
        login = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        login = None
    return None if login and login[2] else "no W&B API key (WANDB_API_KEY or `wandb login`)"


def save_online(workspace: Any, report: Any) -> list[str]:
    """Save the workspace and the report to W&B; their URLs."""
    workspace.save()
    report.save()
    return [workspace.url, report.url]
