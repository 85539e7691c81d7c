"""Predictions of any external model, scored like a run of the zoo: ``epaiqa evaluate`` (kind ``imported``).

Q-Align's released OneAlign (which needs transformers < 4.38), EditScore, a GPT rater or anything else enters the
tables through a file of per-sample predictions: CSV with a header naming ``id`` and ``score`` (or ``pred``), or
JSONL with one ``{"id": ..., "score": ...}`` object per line. The predictions are matched to a task's split of a
dataset root and scored as a trained model's test rows are (SRCC, PLCC, KRCC, RMSE per edit type; the overall
task's completion-3 subset apart), then written as the same results record ``epaiqa report`` reads.

When the file also predicts every sample of the task's *training* split, the record carries training-split metrics
too, and the run folder keeps every prediction that names a dataset sample (:data:`SCORES_FILE`): such a run can be
picked as a best competitor (Table 3), as the paper picks zero-shot q-align for NR harmony.

Nothing is dropped silently: an id that is not in the dataset, a sample of the split without a prediction, a
duplicate id or a score that is not a finite number stops the import with a message naming them; predictions for
samples of the dataset outside the split are counted in the summary.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from epaiqa.data.base import data_fingerprint, split_seed
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import SPLITS
from epaiqa.data.splits import load_splits
from epaiqa.errors import DataError
from epaiqa.records.metrics import correlation_result
from epaiqa.records.results import RunRecord, n_of

#: the tasks whose predictions are scores against a MOS
TASKS = ("harmony", "naturalness", "overall")
ID_COLUMN = "id"
#: every prediction of the imported file that names a dataset sample, kept in the run folder (id, score)
SCORES_FILE = "scores.csv"
SCORE_COLUMNS = ("score", "pred")
#: how many offending ids a message names before it counts the rest
SHOWN = 5


@dataclass
class Imported:
    """An import's outcome: the record, the scored rows, and how many predictions fell outside the split."""

    record: RunRecord
    rows: list[dict[str, Any]]
    outside_split: int
    #: every prediction that names a dataset sample (what :data:`SCORES_FILE` holds)
    scores: dict[str, float]


def _named(ids: list[str]) -> str:
    """Up to :data:`SHOWN` ids, then how many more."""
    shown = ", ".join(repr(i) for i in ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def _score(path: Path, line: int, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise DataError(f"{path}:{line}: the score must be a finite number, got {value!r}")
    return number


def _wanted(columns: tuple[str, ...]) -> str:
    return f"a {columns[0]!r}" + (f" (or {columns[1]!r})" if len(columns) > 1 else "")


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, Any, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        column = next((c for c in columns if c in header), None)
        if ID_COLUMN not in header or column is None:
            raise DataError(f"{path}:1: the header needs an 'id' and {_wanted(columns)} column, got {header}")
        reader.fieldnames = header
        return [(reader.line_num, row.get(ID_COLUMN), row.get(column)) for row in reader]


def _jsonl_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, Any, Any]]:
    out = []
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}:{line}: not a JSON object ({exc})") from None
        if not isinstance(item, dict) or ID_COLUMN not in item:
            raise DataError(f"{path}:{line}: needs an object with 'id' and {_wanted(columns)} field")
        column = next((c for c in columns if c in item), None)
        if column is None:
            raise DataError(f"{path}:{line}: needs {_wanted(columns)} field")
        out.append((line, item[ID_COLUMN], item[column]))
    return out


def read_predictions(path: str | Path, field: str | None = None) -> dict[str, float]:
    """Per-sample scores of a CSV (``id``, ``score``/``pred``) or JSONL (``.jsonl``/``.json``) file, by id.

    ``field`` names another column or key to read (``epaiqa score`` files of an EPAIQA model hold one per
    dimension: ``harmony``, ``naturalness``, ``overall``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    columns = (field,) if field else SCORE_COLUMNS
    suffix = path.suffix.lower()
    rows = _jsonl_rows(path, columns) if suffix in (".jsonl", ".json") else _csv_rows(path, columns)
    scores: dict[str, float] = {}
    for line, raw_id, value in rows:
        sample_id = str(raw_id if raw_id is not None else "").strip()
        if not sample_id:
            raise DataError(f"{path}:{line}: empty id")
        if sample_id in scores:
            raise DataError(f"{path}:{line}: id {sample_id!r} is predicted twice")
        scores[sample_id] = _score(path, line, value)
    if not scores:
        raise DataError(f"{path}: no predictions")
    return scores


def evaluate_predictions(
    root: str | Path,
    task: str,
    predictions: str | Path,
    name: str,
    split: str = "test",
    field: str | None = None,
    reference: bool = False,
) -> Imported:
    """Score a predictions file on ``task``'s ``split`` of the dataset at ``root``; the record is not written.

    ``field``: the column or key holding the scores (default ``score``, else ``pred``). ``reference``: the model
    saw the source image (a full-reference model: an FR best-competitor candidate).
    """
    if task not in TASKS:
        raise DataError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    root = Path(root)
    samples = load_manifest(root)
    subsets = load_splits(root, samples)
    if split not in subsets[task]:
        raise DataError(f"{root / SPLITS}: the {task} subset has no {split!r} split ({', '.join(subsets[task])})")
    scores = read_predictions(predictions, field)
    by_id = {s.id: s for s in samples}
    unknown = sorted(set(scores) - set(by_id))
    if unknown:
        raise DataError(f"{predictions}: ids not in {root} ({len(unknown)}): {_named(unknown)}")
    ids = subsets[task][split]
    missing = [i for i in ids if i not in scores]
    if missing:
        where = f"{len(missing)} of the {len(ids)} {task} {split} samples"
        raise DataError(f"{predictions}: {where} have no prediction: {_named(missing)}")
    rows = [_row(by_id[i], task, scores[i]) for i in ids]
    result = correlation_result(rows)
    train_ids = subsets[task].get("train") or []
    on_train = None
    if split != "train" and train_ids and all(i in scores for i in train_ids):  # pickable as a best competitor
        on_train = correlation_result([_row(by_id[i], task, scores[i]) for i in train_ids])
    digest = hashlib.sha256(Path(predictions).read_bytes()).hexdigest()[:16]
    record = RunRecord(
        task=task,
        model=name,
        kind="imported",
        test=result.metrics,
        n=n_of(result.metrics),
        split_seed=split_seed(root),
        data_fingerprint=data_fingerprint(root),
        data={
            "root": str(root),
            "split": split,
            "predictions": str(predictions),
            "predictions_sha256": digest,
            "reference": reference,
            "scores": SCORES_FILE,
        },
        train=on_train.metrics if on_train is not None else None,
        subsets={
            k: {"test": m, "train": on_train.subsets.get(k) if on_train else None, "untrained": None}
            for k, m in result.subsets.items()
        },
    )
    return Imported(record, result.predictions, len(set(scores) - set(ids)), scores)


def _row(sample: Any, task: str, pred: float) -> dict[str, Any]:
    row = {"id": sample.id, "task": task, "edit_type": sample.edit_type, "mos": sample.score(task), "pred": pred}
    if task == "overall":
        row["completion"] = sample.score("completion")
    return row
