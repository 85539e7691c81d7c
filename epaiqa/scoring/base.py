"""What every scorer shares: the run folder's record and checkpoint, and scoring a whole root into a JSONL file.

A scorer is a finished run's model that scores source/edited pairs (``scorer(source, edited, prompt, bbox)``) and
whole dataset roots (:meth:`ManifestScoring.score_manifest`, resumable). Its implementations: a baseline
(:mod:`epaiqa.scoring.baseline`), an EPAIQA stage (:mod:`epaiqa.scoring.lmm`), a best competitor
(:mod:`epaiqa.scoring.competitor`); :func:`epaiqa.scoring.load.load_scorer` picks one for a run folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.progress import track

from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import PAISample
from epaiqa.errors import DataError
from epaiqa.records.results import RESULTS, RunRecord, read_record

CONFIG = "config.yaml"


def checkpoint_of(folder: Path, record: RunRecord) -> Path:
    """The run's best checkpoint inside ``folder``, never outside it (a copied or moved run scores its own weights).

    The record names it relative to the run (older records: an absolute path, of which the file name is looked up
    in ``FOLDER/checkpoints``); a record that names none falls back to ``checkpoints/last.ckpt``.
    """
    if record.checkpoint:
        named = Path(record.checkpoint)
        path = folder / named if not named.is_absolute() else folder / "checkpoints" / named.name
        if not path.is_file():
            raise DataError(f"{folder}: the run's best checkpoint {path.relative_to(folder)} is missing")
        return path
    path = folder / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise DataError(f"{folder}: no checkpoint found (the record names none, and {path} does not exist)")
    return path


class ManifestScoring:
    """What every scorer shares: scoring a whole dataset root into a resumable JSONL file."""

    def manifest_rows(self, root: str | Path, samples: Sequence[PAISample]) -> list[dict[str, Any]]:
        """The scores-file lines of one batch of samples (each with its ``id``)."""
        raise NotImplementedError

    def __call__(
        self, source: str | Path, edited: str | Path, prompt: str = "", bbox: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """Score one source/edited pair (every dimension the run knows)."""
        raise NotImplementedError

    def score_pairs(self, pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score many pairs at once: each a dict of ``source``, ``edited`` and optional ``prompt`` and ``bbox``.

        Answers come back in the order asked, each what ``scorer(**pair)`` answers; scorers that can run several
        pairs through their model in one batch override this.
        """
        return [self(p["source"], p["edited"], p.get("prompt", ""), p.get("bbox")) for p in pairs]

    def score_manifest(self, root: str | Path, out: str | Path, batch_size: int = 32) -> tuple[int, int]:
        """Score every sample of a dataset root into ``out`` (JSONL, one object per sample, ``id`` and ``score``).

        Ids already in ``out`` are skipped (a rerun resumes); lines are appended batch by batch, and a last line
        a killed run left unfinished is dropped first. Returns (scored now, kept from before).
        """
        out = Path(out)
        done = _finished_ids(out)
        samples = [s for s in load_manifest(root, check_splits=False) if s.id not in done]
        out.parent.mkdir(parents=True, exist_ok=True)
        starts = range(0, len(samples), batch_size)
        with out.open("a", encoding="utf-8") as handle:
            for start in track(starts, description=f"scoring {len(samples)} samples ({len(done)} done before)"):
                for row in self.manifest_rows(root, samples[start : start + batch_size]):
                    handle.write(json.dumps(row) + "\n")
                handle.flush()
        return len(samples), len(done)


def _finished_ids(path: Path) -> set[str]:
    """Ids of the complete lines of a scores file (an unfinished last line is cut off the file)."""
    if not path.is_file():
        return set()
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
    ids = set()
    for number, line in enumerate(text.splitlines(), 1):
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}:{number}: not a line this scorer wrote (JSON with an id)") from None
    return ids


def run_record(folder: Path) -> RunRecord:
    """The run's record; for a run that tested several tasks (``<run>/<task>/results.json``), the first task's."""
    if not (folder / RESULTS).is_file():
        tasks = sorted(d for d in folder.iterdir() if (d / RESULTS).is_file())
        if tasks:
            return read_record(tasks[0])
    return read_record(folder)
