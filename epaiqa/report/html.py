"""``epaiqa report --html``: the benchmark on one self-contained page.

Beside the markdown and CSV that :func:`~epaiqa.report.tables.write_report` writes, ``report.html`` shows the
tables the runs give (Tables 1–3, Table 4 from judged runs, Tables 5–7 and the plain-number tasks), the dataset
figures of the runs' dataset root (Figs. 4–7 of §3.3, from ``data.root`` of the results records), the
predicted score against the MOS per model and task (each run's ``predictions.csv``), SRCC per edit type as bars,
and for stage-3 runs a few explanations beside their source and edited images. Figures and images are embedded as
base64 data URLs: the page runs no script and names no external URL. What cannot be drawn (an unreadable dataset
root, a run without predictions) is said on the page and returned as notes, one line each.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageDraw

from epaiqa.data.images import load_rgb
from epaiqa.data.manifest import load_manifest, resolve_inside
from epaiqa.data.schema import PAISample
from epaiqa.errors import DataError, EPAIQAError
from epaiqa.io import atomic_write_text
from epaiqa.records.results import COLUMNS, TYPE_LABELS, RunRecord, find_records, read_record
from epaiqa.report import figures
from epaiqa.report.tables import PLCC_CHOICES, TABLE_TITLES, Report, Row, _cell, _labels, _n, _names, _row_label, ranks

PAGE = "report.html"
PREDICTIONS = "predictions.csv"
EXPLANATIONS = "explanations.jsonl"
#: the scored tasks, in the paper's table order
SCORED_TASKS = ("harmony", "naturalness", "overall")
#: at most this many models per predicted-vs-MOS figure
MAX_PANELS = 12
#: explanations shown per stage-3 run (lowest, median and highest MOS) and stage-3 runs shown
EXPLAINED_PER_RUN = 3
MAX_EXPLAINED_RUNS = 4
THUMBNAIL_PX = 176

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1320px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table.results { border-collapse: collapse; margin: 0.4em 0 1.4em; font-size: 12.5px; }
table.results th, table.results td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
table.results th:first-child, table.results td:first-child { text-align: left; }
table.results thead { background: #f0f3f7; } caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
td.best { font-weight: 700; color: #b00; } td.second { font-style: italic; color: #14c; }
figure { margin: 0.6em 0 1.4em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12.5px; }
.notes { background: #fff6e0; border: 1px solid #eed7a0; padding: 0.5em 1em; }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.case { border: 1px solid #ddd; padding: 0.6em; margin: 0.6em 0; display: flex; gap: 1em; }
.case > .row { flex: 0 0 auto; flex-wrap: nowrap; } .case > div:last-child { flex: 1; overflow-wrap: anywhere; }
.case img { width: 176px; height: auto; border: 1px solid #ccc; } .case p { margin: 0.2em 0; }
nav a { margin-right: 1em; }
"""


@dataclass
class Run:
    """A scored run as the page sees it: its record, its row label in the tables, where its predictions are."""

    record: RunRecord
    label: str
    path: Path
    folder: Path | None


@dataclass
class Page:
    """What the page shows, gathered from the run folders: runs, the dataset's samples, and notes."""

    report: Report
    dirs: list[str]
    runs: list[Run] = field(default_factory=list)
    root: Path | None = None
    samples: dict[str, PAISample] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prediction_folder(results: Path, task: str) -> Path | None:
    """The folder of a record's ``predictions.csv``: beside it, or one up for a stage's per-task record."""
    for folder in (results.parent, results.parent.parent):
        if (folder / PREDICTIONS).is_file():
            return folder
        if results.parent.name != task:  # only a per-task subfolder (run/<task>/results.json) looks one up
            break
    return None


def find_runs(dirs: Sequence[str | Path]) -> list[Run]:
    """The readable records under ``dirs`` with their table labels (unreadable ones are the report's to list)."""
    found = []
    for path in find_records(list(dirs))[0]:
        try:
            found.append((path, read_record(path)))
        except EPAIQAError:
            continue
    labels = _labels([record for _, record in found])
    return [
        Run(r, labels[(r.task, r.model, r.setting.key)], p, prediction_folder(p, r.task) if r.is_table else None)
        for p, r in found
    ]


def read_predictions(folder: Path, task: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """MOS, predictions and edit types of one task's rows of ``FOLDER/predictions.csv`` (rows without both left out)."""
    mos, pred, types = [], [], []
    with (folder / PREDICTIONS).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("task", task) != task:
                continue
            try:
                m, p = float(row["mos"]), float(row["pred"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(m) and math.isfinite(p):
                mos.append(m)
                pred.append(p)
                types.append(row.get("edit_type") or "")
    return np.array(mos), np.array(pred), types


def read_samples(root: str) -> tuple[list[PAISample], str | None]:
    """The samples of a dataset root (images not opened), or none and why, in one line."""
    if not Path(root).is_dir():
        return [], f"dataset root {root} not found"
    try:
        return load_manifest(root, check_images=False, check_splits=False), None
    except DataError as exc:
        first = f"; first: {exc.problems[0]}" if exc.problems else ""
        return [], f"dataset root {root}: {exc.summary.rstrip(':')}{first}"
    except (OSError, EPAIQAError) as exc:
        return [], f"dataset root {root}: not readable ({exc})"


def load_dataset(page: Page) -> None:
    """The samples of the runs' dataset root (the first readable one), or notes saying why there are none."""
    roots = list(dict.fromkeys(str(r.record.data["root"]) for r in page.runs if r.record.data.get("root")))
    if not roots:
        page.notes.append("the results records name no dataset root: no dataset figures, no images")
    for root in roots:
        samples, problem = read_samples(root)
        if problem is not None:
            page.notes.append(f"{problem} (no dataset figures or images from it)")
            continue
        page.root, page.samples = Path(root), {s.id: s for s in samples}
        if len(roots) > 1:
            page.notes.append(f"the runs use {len(roots)} dataset roots; the dataset figures show {root}")
        return


def gather(report: Report, dirs: Sequence[str | Path]) -> Page:
    """The page's content: the report, the scored runs and their dataset."""
    page = Page(report, [str(d) for d in dirs], runs=find_runs(dirs))
    for run in page.runs:
        if run.record.is_table and run.folder is None:
            page.notes.append(f"{run.path.parent}: no {PREDICTIONS} (left out of the scatter plots)")
    load_dataset(page)
    return page


def data_url(data: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URL of some bytes."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure_html(png: bytes, caption: str, alt: str) -> str:
    """A figure with its caption, the PNG embedded."""
    img = f'<img class="figure" src="{data_url(png)}" alt="{escape(alt)}">'
    return f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"


def _place(row: Row, key: Any, places: dict[Any, list[list[str]]]) -> str:
    if row.mean(key) is None or not places.get(key):
        return ""
    if row.label in places[key][0]:
        return ' class="best"'
    return ' class="second"' if len(places[key]) > 1 and row.label in places[key][1] else ""


def correlation_table(task: str, rows: list[Row], plcc: str) -> str:
    """A paper-style table (SRCC and PLCC per edit type): best in bold red, second in italic blue."""
    metrics = ("srcc", plcc)
    places = ranks(rows, metrics)
    caption = f"{TABLE_TITLES.get(task, task)} — best in bold, second in italics; {PLCC_CHOICES[plcc]}"
    head = '<tr><th rowspan="2">Models</th><th rowspan="2">n</th>'
    head += "".join(f'<th colspan="2">{TYPE_LABELS[c]}</th>' for c in COLUMNS) + "</tr>"
    head += "<tr>" + "<th>SRCC</th><th>PLCC</th>" * len(COLUMNS) + "</tr>"
    body = ""
    for row in rows:
        cells = "".join(
            f"<td{_place(row, (c, m), places)}>{escape(_cell(row, (c, m)))}</td>" for c in COLUMNS for m in metrics
        )
        body += f"<tr><td>{escape(_row_label(row))}</td><td>{_n(row)}</td>{cells}</tr>"
    return _table(task, caption, head, body)


def scalars_table(task: str, rows: list[Row]) -> str:
    """A plain table of a task's numeric metrics (grounding, completion)."""
    names = _names(rows)
    head = "<tr><th>Models</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"
    body = ""
    for row in rows:
        cells = [f"{row.mean(n):g}" if n == "n" and row.mean(n) is not None else _cell(row, n) for n in names]
        body += f"<tr><td>{escape(_row_label(row))}</td>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
    return _table(task, task, head, body)


def table4(judged: list[dict[str, Any]]) -> str:
    """Table 4 (quality explanation) from the judged runs' ``judge.json``: PA, LNA, GHA, Overall, best in bold."""
    from epaiqa.judge.rules import CRITERIA
    from epaiqa.report.table4 import TITLE, table4_rows

    rows = table4_rows(judged)
    if not rows:
        return ""
    best = {c: max((r[c] for r in rows if r[c] is not None), default=None) for c in CRITERIA}
    head = "<tr><th>LMMs</th><th>judge</th>" + "".join(f"<th>{c}</th>" for c in CRITERIA) + "<th>samples (PA)</th>"
    head += "<th>parse failures</th></tr>"
    body = ""
    for r in rows:
        label = r["model"] + (f" ({r['runs']} runs)" if r["runs"] > 1 else "")
        cells = "".join(
            "<td>—</td>" if r[c] is None else f"<td{' class=best' if r[c] == best[c] else ''}>{r[c]:.3f}</td>"
            for c in CRITERIA
        )
        rate = r["parse_failure_rate"]
        failures = "—" if rate is None else f"{100 * rate:.1f}%"
        body += f"<tr><td>{escape(label)}</td><td>{escape(str(r['judge']))}</td>{cells}"
        body += f"<td>{r['n_PA']}</td><td>{failures}</td></tr>"
    return _table("table4", f"{TITLE} — judge scores on [0, 1], best in bold", head, body)


def demo_table4(judged: list[dict[str, Any]]) -> str:
    """The demo's Table 4 from the demo judge's ``judge.json``: per run, each facet's agreement / majority rate."""
    from epaiqa.judge.demo import DEMO_KIND, FACETS
    from epaiqa.report.table4 import facet_cell

    demo = [j for j in judged if j.get("kind") == DEMO_KIND]
    if not demo:
        return ""
    head = "<tr><th>LMMs</th><th>run</th><th>unreadable</th>" + "".join(f"<th>{f}</th>" for f in FACETS) + "</tr>"
    body = ""
    for j in sorted(demo, key=lambda j: (str(j["model"]), j["path"])):
        cells = "".join(f"<td>{escape(facet_cell(j, facet))}</td>" for facet in FACETS)
        rate = j.get("unreadable_rate")
        unreadable = "—" if rate is None else f"{rate:.3f}"
        body += f"<tr><td>{escape(str(j['model']))}</td><td>{escape(Path(j['path']).parent.name)}</td>"
        body += f"<td>{unreadable}</td>{cells}</tr>"
    caption = "Table 4 on the demo set — the offline demo judge: agreement / majority rate per facet (demo set only)"
    return _table("table4-demo", caption, head, body)


def _table(task: str, caption: str, head: str, body: str) -> str:
    return (
        f'<table class="results" id="table-{escape(task)}"><caption>{escape(caption)}</caption>'
        f"<thead>{head}</thead><tbody>{body}</tbody></table>"
    )


def tables_section(page: Page, plcc: str) -> str:
    """Every table of the report, then the failed and unreadable jobs."""
    report = page.report
    parts = [correlation_table(t, rows, plcc) for t, rows in report.tables.items()]
    judged = getattr(report, "judged", None) or []
    parts += [t for t in (table4(judged), demo_table4(judged)) if t]
    parts += [correlation_table(t, rows, plcc) for t, rows in report.ablations.items()]
    parts += [scalars_table(t, rows) for t, rows in report.scalars.items()]
    if not parts:
        parts.append("<p>No finished run gives a table.</p>")
    for failure in report.failed:
        trace = f" (traceback: {Path(failure['dir']) / failure['traceback']})" if failure.get("traceback") else ""
        parts.append(f"<p>FAILED {escape(failure['dir'])}: {escape(str(failure.get('error', '?')))}{escape(trace)}</p>")
    parts += [f"<p>unreadable: {escape(path)}</p>" for path in report.unreadable]
    return _section("tables", "Tables", "".join(parts))


def dataset_section(page: Page) -> str:
    """Figs. 4–7 of the runs' dataset root, or why they are missing."""
    if page.root is None:
        return _section("dataset", "The dataset (Figs. 4–7)", "<p>No readable dataset root: see the notes.</p>")
    samples = list(page.samples.values())
    parts = [f"<p>Dataset root <code>{escape(str(page.root))}</code>, {len(samples)} samples.</p>"]
    for stem, png in figures.dataset_pngs(samples).items():
        parts.append(figure_html(png, figures.DATASET_FIGURES[stem][1], stem))
    return _section("dataset", "The dataset (Figs. 4–7)", "".join(parts))


def scatter_panels(page: Page, task: str) -> list[figures.ScatterPanel]:
    """One panel per table row of ``task`` (its lowest-seed run with predictions), at most :data:`MAX_PANELS`."""
    chosen: dict[str, Run] = {}
    for run in sorted(page.runs, key=lambda r: (r.label, r.record.seed if r.record.seed is not None else -1)):
        if run.record.task == task and run.folder is not None:
            chosen.setdefault(run.label, run)
    panels = []
    for label, run in list(chosen.items())[:MAX_PANELS]:
        try:
            mos, pred, types = read_predictions(run.folder, task)  # type: ignore[arg-type]
        except (OSError, ValueError, csv.Error) as exc:
            page.notes.append(f"{run.folder / PREDICTIONS}: not readable ({exc})")
            continue
        if len(mos):
            twins = sum(r.label == label and r.record.task == task for r in page.runs)
            seed = f" (seed {run.record.seed}, 1 of {twins} runs)" if twins > 1 else ""
            srcc = (run.record.test.get("all") or {}).get("srcc")
            panels.append(figures.ScatterPanel(label + seed, mos, pred, types, srcc))
    return panels


def predictions_section(page: Page) -> str:
    """Predicted against MOS per task and model, and SRCC bars per table."""
    parts = []
    for task in SCORED_TASKS:
        panels = scatter_panels(page, task)
        if panels:
            png = figures.to_png(figures.predicted_vs_mos(panels, task))
            parts.append(figure_html(png, f"{task}: predicted score against MOS, one panel per model.", task))
    for task, rows in page.report.tables.items():
        srcc = {row.label: {c: row.mean((c, "srcc")) for c in COLUMNS} for row in rows}
        title = TABLE_TITLES.get(task, task)
        png = figures.to_png(figures.srcc_bars(srcc, f"SRCC per edit type — {title}"))
        parts.append(figure_html(png, f"SRCC per edit type (mean over seeds): {title}.", f"srcc-{task}"))
    body = "".join(parts) or "<p>No run with predictions.</p>"
    return _section("predictions", "Predictions", body)


def _thumbnail(root: Path, sample: PAISample, edited: bool) -> str | None:
    """A JPEG data URL of the source or edited image (the edited region boxed in red), or None if unreadable."""
    try:
        image = load_rgb(resolve_inside(root, sample.edited if edited else sample.source))
    except (OSError, ValueError, EPAIQAError):
        return None
    if edited:
        x, y, w, h = sample.bbox
        box = [
            (x - w / 2) * image.width,
            (y - h / 2) * image.height,
            (x + w / 2) * image.width,
            (y + h / 2) * image.height,
        ]
        ImageDraw.Draw(image).rectangle(box, outline=(230, 20, 20), width=max(2, image.width // 80))
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    return data_url(buffer.getvalue(), "image/jpeg")


def read_explanations(folder: Path) -> list[dict[str, Any]]:
    """The lines of ``FOLDER/explanations.jsonl`` with a MOS, ordered by it (unparsable lines left out)."""
    entries = []
    for line in (folder / EXPLANATIONS).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("mos"), int | float):
            entries.append(entry)
    return sorted(entries, key=lambda e: e["mos"])


def pick_explanations(entries: list[dict[str, Any]], k: int = EXPLAINED_PER_RUN) -> list[dict[str, Any]]:
    """``k`` entries spread over the MOS order: the lowest, the highest and evenly between (all when fewer)."""
    if len(entries) <= k:
        return entries
    return [entries[i] for i in sorted(set(np.linspace(0, len(entries) - 1, k).round().astype(int).tolist()))]


def case_html(page: Page, entry: dict[str, Any]) -> str:
    """One explanation beside its source and edited images."""
    sample = page.samples.get(str(entry.get("id")))
    images = ""
    if sample is not None and page.root is not None:
        for edited in (False, True):
            url = _thumbnail(page.root, sample, edited)
            what = "edited (region boxed)" if edited else "source"
            images += f'<img src="{url}" alt="{what}">' if url else f"<p>{what}: image not readable</p>"
    else:
        images = "<p>(images not available)</p>"
    pred = entry.get("pred")
    score = (
        f"MOS {entry['mos']:.2f}, predicted {pred:.2f}" if isinstance(pred, int | float) else f"MOS {entry['mos']:.2f}"
    )
    text = [
        f"<p><b>{escape(str(entry.get('id')))}</b> · {escape(str(entry.get('edit_type', '')))} · {score}</p>",
        f"<p><i>Prompt:</i> {escape(str(entry.get('prompt', '')))}</p>",
        f"<p><i>Explanation:</i> {escape(str(entry.get('explanation', '')))}</p>",
    ]
    if entry.get("reference_answer"):
        text.append(f"<p><i>Reference:</i> {escape(str(entry['reference_answer']))}</p>")
    return f'<div class="case"><div class="row">{images}</div><div>{"".join(text)}</div></div>'


def explanations_section(page: Page) -> str:
    """For the first stage-3 runs, a few explanations (lowest, median, highest MOS) beside their images."""
    folders: dict[Path, str] = {}
    for run in page.runs:
        if run.folder is not None and (run.folder / EXPLANATIONS).is_file():
            folders.setdefault(run.folder, run.label)
    if not folders:
        return ""
    parts = []
    for folder, label in list(folders.items())[:MAX_EXPLAINED_RUNS]:
        try:
            entries = read_explanations(folder)
        except (OSError, ValueError) as exc:
            page.notes.append(f"{folder / EXPLANATIONS}: not readable ({exc})")
            continue
        cases = "".join(case_html(page, e) for e in pick_explanations(entries))
        parts.append(f"<h3>{escape(label)} <small>({escape(str(folder))})</small></h3>{cases}")
    if len(folders) > MAX_EXPLAINED_RUNS:
        parts.append(f"<p>{len(folders) - MAX_EXPLAINED_RUNS} more stage-3 runs not shown.</p>")
    return _section("explanations", "Stage-3 explanations", "".join(parts))


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def render(page: Page, plcc: str = "plcc") -> str:
    """The whole page as HTML."""
    sections = [tables_section(page, plcc), dataset_section(page), predictions_section(page)]
    sections.append(explanations_section(page))
    notes = "".join(f"<li>{escape(n)}</li>" for n in page.notes)
    anchors = [("tables", "Tables"), ("dataset", "Dataset"), ("predictions", "Predictions")]
    anchors += [("explanations", "Explanations")] if sections[-1] else []
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in anchors)
    runs = f"{len(page.runs)} results records under {', '.join(page.dirs)}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>EPAIQA report</title>'
        f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body>'
        f"<h1>EPAIQA report</h1><p>{escape(runs)}</p><nav>{nav}</nav>"
        + (f'<div class="notes"><b>Notes</b><ul>{notes}</ul></div>' if notes else "")
        + "".join(sections)
        + "</body></html>\n"
    )


def write_html(
    report: Report, dirs: Sequence[str | Path], out: str | Path, plcc: str = "plcc"
) -> tuple[Path, list[str]]:
    """Write ``OUT/report.html``; returns its path and the notes on what it could not show."""
    page = gather(report, dirs)
    path = atomic_write_text(Path(out) / PAGE, render(page, plcc))
    return path, page.notes
