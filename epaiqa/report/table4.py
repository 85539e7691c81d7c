"""Table 4 (quality explanation): every ``judge.json`` under the report's folders, one row per (model, judge).

Scores are the judge's PA / LNA / GHA / Overall on [0, 1] (mean voted score / 2, see :mod:`epaiqa.judge.rules`);
runs of one model judged by one judge (seeds) are averaged, and the row says how many. The paper's header reads
"LND / GHD"; its text and appendix F say LNA / GHA, the names used here.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from epaiqa.io import atomic_write_text
from epaiqa.judge.demo import DEMO_KIND, FACETS, LEVEL_FACETS
from epaiqa.judge.rules import CRITERIA
from epaiqa.report.found import find_summaries

JUDGE = "judge.json"
TITLE = "Table 4: performance on quality explanation tasks"


def find_judgements(dirs: list[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``judge.json`` contents under ``dirs`` (each with its ``path``), and the unreadable ones."""
    return find_summaries(dirs, JUDGE, lambda data: "model" in data and "judge" in data)


def table4_rows(judgements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, judge): the mean of each criterion over its runs, samples, parse failures, runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for j in judgements:
        if j.get("kind") == DEMO_KIND:
            continue  # the demo judge's facets: demo_table4_markdown
        groups[(str(j["model"]), str(j["judge"]))].append(j)
    rows = []
    for (model, judge), runs in sorted(groups.items()):
        row: dict[str, Any] = {"model": model, "judge": judge, "runs": len(runs)}
        for criterion in CRITERIA:
            values = [r[criterion] for r in runs if isinstance(r.get(criterion), (int, float))]
            row[criterion] = sum(values) / len(values) if values else None
            row[f"n_{criterion}"] = sum(int((r.get("n") or {}).get(criterion) or 0) for r in runs)
        replies = sum(int(r.get("replies") or 0) for r in runs)
        row["parse_failure_rate"] = sum(int(r.get("parse_failures") or 0) for r in runs) / replies if replies else None
        rows.append(row)
    return rows


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def table4_markdown(rows: list[dict[str, Any]]) -> str:
    """The table: models × PA, LNA, GHA, Overall on [0, 1], best in bold, with the judge and its parse failures."""
    best = {c: max((r[c] for r in rows if r[c] is not None), default=None) for c in CRITERIA}
    lines = [
        f"**{TITLE}** (judge scores on [0, 1]: mean voted score / 2; best in bold)",
        "",
        "| LMMs | judge | " + " | ".join(CRITERIA) + " | samples (PA) | parse failures |",
        "|---|---|" + "---:|" * (len(CRITERIA) + 2),
    ]
    for r in rows:
        cells = [f"**{_fmt(r[c])}**" if r[c] is not None and r[c] == best[c] else _fmt(r[c]) for c in CRITERIA]
        label = r["model"] + (f" ({r['runs']} runs)" if r["runs"] > 1 else "")
        failures = "—" if r["parse_failure_rate"] is None else f"{100 * r['parse_failure_rate']:.1f}%"
        lines.append(f"| {label} | {r['judge']} | " + " | ".join(cells) + f" | {r['n_PA']} | {failures} |")
    return "\n".join(lines) + "\n"


def table4_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV (every column of :func:`table4_rows`)."""
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["model", "judge", "runs", *CRITERIA]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def facet_cell(judgement: dict[str, Any], facet: str) -> str:
    """One demo-judge cell: ``agreement / majority`` (level words: within one level in brackets), ``—`` if unscored."""
    f = (judgement.get("facets") or {}).get(facet)
    if f is None:
        return "—"
    cell = f"{_fmt(f['agreement'])} / {_fmt(f['majority_rate'])}"
    if facet in LEVEL_FACETS:
        cell += f" ({_fmt(f['within_one'])} / {_fmt(f['majority_within_one'])})"
    return cell


def demo_table4_markdown(judgements: list[dict[str, Any]]) -> str:
    """The demo's Table 4: per judged run, each facet's agreement with the majority rate beside it."""
    lines = [
        "**Table 4 on the demo set** (the offline demo judge: facets of the synthetic demo's explanations, "
        "agreement / majority rate; level words exact, and within one level in brackets)",
        "",
        "| LMMs | run | unreadable | " + " | ".join(FACETS) + " |",
        "|---|---|---:|" + "---:|" * len(FACETS),
    ]
    for j in sorted(judgements, key=lambda j: (str(j["model"]), j["path"])):
        cells = [facet_cell(j, facet) for facet in FACETS]
        run = Path(j["path"]).parent.name
        lines.append(f"| {j['model']} | {run} | {_fmt(j.get('unreadable_rate'))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table4(judgements: list[dict[str, Any]], out: str | Path) -> list[Path]:
    """``table4.md`` / ``table4.csv`` (LLM judges) and ``table4_demo.md`` (the demo judge) in ``out``."""
    out = Path(out)
    written = []
    demo = [j for j in judgements if j.get("kind") == DEMO_KIND]
    if demo:
        written.append(atomic_write_text(out / "table4_demo.md", demo_table4_markdown(demo)))
    rows = table4_rows(judgements)
    if rows:
        written.append(atomic_write_text(out / "table4.md", table4_markdown(rows)))
        written.append(atomic_write_text(out / "table4.csv", table4_csv(rows)))
    return written
