"""The preference tables of ``epaiqa report``, from the records ``epaiqa evaluate --pairs`` writes.

Pairwise accuracy under both tie protocols, group and ranking accuracy per group size, and best-of-N.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from epaiqa.io import atomic_write_text
from epaiqa.records.preference_metrics import KIND, PREFERENCE_RECORD
from epaiqa.report.found import find_summaries


def find_preference_records(dirs: list[str | Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The preference records under ``dirs`` (each with its ``path``), and the unreadable ones."""
    return find_summaries(dirs, PREFERENCE_RECORD, lambda data: data.get("kind") == KIND)


def _pct(value: Any) -> str:
    return "—" if not isinstance(value, (int, float)) or value != value else f"{100 * value:.1f}"


def _sizes(records: list[dict[str, Any]], dimension: str) -> list[int]:
    keys = {k for r in records for k in (r["accuracy"]["dimensions"].get(dimension) or {})}
    return sorted(int(k.rsplit("_", 1)[1]) for k in keys if k.startswith("group_acc_"))


def preference_markdown(records: list[dict[str, Any]]) -> str:
    """One table per dimension: a row per model, accuracies in percent."""
    parts = []
    for dimension in sorted({d for r in records for d in r["accuracy"]["dimensions"]}):
        rows = [r for r in records if dimension in r["accuracy"]["dimensions"]]
        sizes = _sizes(rows, dimension)
        head = ["model", "pairs", "human ties", "tie-calibrated (ε, chosen on)", "strict", "without ties"]
        head += [f"group acc ({n})" for n in sizes] + [f"ranking acc ({n})" for n in sizes if n > 2]
        lines = [f"Preference accuracy, {dimension} (%)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in sorted(rows, key=lambda r: str(r["model"])):
            a = r["accuracy"]["dimensions"][dimension]
            eps = f"{_pct(a['acc_tie_calibrated'])} ({a['epsilon']:.4g}, {r['accuracy']['epsilon_from']})"
            cells = [str(r["model"]), str(a["pairs"]), str(a["human_ties"]), eps, _pct(a["acc_strict"])]
            cells += [_pct(a["acc_without_ties"])]
            cells += [_pct(a.get(f"group_acc_{n}")) for n in sizes]
            cells += [_pct(a.get(f"ranking_acc_{n}")) for n in sizes if n > 2]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def best_of_n_markdown(records: list[dict[str, Any]]) -> str:
    """Best-of-N: the human rank (1 = best) and score of the model's pick, a random pick and the oracle's."""
    head = ["model", "dimension", "groups", "mean N", "rank: model", "random", "oracle", "top pick: model", "random"]
    head += ["score: model", "random", "oracle"]
    lines = ["Best-of-N (human rank 1 = best; human score where the candidates are rated)", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(records, key=lambda r: str(r["model"])):
        for dimension, b in sorted(r["best_of_n"].items()):
            cells = [str(r["model"]), dimension, str(b["groups"]), f"{b['mean_n']:.2f}"]
            cells += [f"{b[k]:.3f}" for k in ("model_rank", "random_rank", "oracle_rank")]
            cells += [_pct(b["model_top"]), _pct(b["random_top"])]
            cells += [f"{b[k]:.3f}" if k in b else "—" for k in ("model_score", "random_score", "oracle_score")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_preference_tables(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """``preferences.md`` and ``best_of_n.md`` in ``out`` (nothing when there are no records)."""
    if not records:
        return []
    return [
        atomic_write_text(out / "preferences.md", preference_markdown(records)),
        atomic_write_text(out / "best_of_n.md", best_of_n_markdown(records)),
    ]
