"""A finished run as a scorer: its model, rebuilt from its ``config.yaml``, with its checkpoint's weights.

:func:`load_scorer` reads a run folder (``results.json``, ``config.yaml``, ``checkpoints/``) or one of its
checkpoints: a baseline run here (:class:`Scorer`), an EPAIQA stage in :mod:`epaiqa.eval.lmm_scorer`, a best
competitor in :mod:`epaiqa.eval.competitor_scorer`. Calling a scorer scores one source/edited pair;
``score_manifest`` scores a whole root into a JSONL file that ``epaiqa evaluate`` reads, resuming where a previous
call stopped. A baseline's :meth:`Scorer.predict` scores samples of a dataset root the way the run saw its own
test split (its view, input size, margin and reference image), on the run's task scale; the best-competitor
regressors (Table 3) score the overall subset with their picked runs this way.

Memory stays bounded on large images: each image is decoded (up to ``EPAIQA_MAX_PIXELS``), cut to the run's view
and resized to its input size at once, so a batch holds ``batch_size`` model-sized inputs.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import track
from torch.utils.data import DataLoader

from epaiqa.checkpoint import check_checkpoint_file
from epaiqa.data.crops import difference_bbox
from epaiqa.data.datasets import PAIDataset
from epaiqa.data.images import load_rgb
from epaiqa.data.levels import bin_level
from epaiqa.data.manifest import check_bbox, load_manifest
from epaiqa.data.schema import SCORE_RANGES, PAISample
from epaiqa.errors import ConfigError, DataError
from epaiqa.eval.results import RESULTS, RunRecord, read_record
from epaiqa.runs import register_resolvers

CONFIG = "config.yaml"
#: the model class whose runs :func:`load_scorer` rebuilds (the IQA baselines)
SCORING_MODEL = "epaiqa.models.iqa_module.IQARegressor"


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


@dataclass
class Scorer(ManifestScoring):
    """A trained baseline of a run folder, ready to score samples."""

    folder: Path
    record: RunRecord
    cfg: DictConfig
    model: torch.nn.Module

    @property
    def task(self) -> str:
        """The dimension the run's model scores (harmony, naturalness or overall)."""
        return str(self.cfg.data.task)

    @property
    def view(self) -> str:
        """What the model sees: whole, region, context or native (the run's ``data.view``)."""
        return str(self.cfg.data.view)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Scorer:
        """Move the model to a device (``cpu``, ``cuda``, ``cuda:1``); returns the scorer."""
        self.model.to(device)
        return self

    def dataset(self, root: str | Path, samples: Sequence[PAISample], task: str) -> PAIDataset:
        """``samples`` as the run's test split showed its samples (``task`` picks the MOS carried along, if any)."""
        data = self.cfg.data
        return PAIDataset(
            root,
            samples,
            task,
            str(data.view),
            int(data.image_size),
            reference=bool(data.reference),
            margin=float(data.get("margin", 0.3)),
            require_mos=False,
        )

    @torch.inference_mode()
    def predict(
        self, root: str | Path, samples: Sequence[PAISample], task: str | None = None, batch_size: int = 32
    ) -> dict[str, float]:
        """The run's prediction (on its own task's scale) for each sample, by id."""
        self.model.eval()
        loader = DataLoader(self.dataset(root, samples, task or self.task), batch_size=batch_size)
        out: dict[str, float] = {}
        label = f"{self.record.model} scoring {len(loader.dataset)}"  # a bar only over several batches
        for batch in track(loader, description=label, transient=True) if len(loader) > 1 else loader:
            ref = batch.get("ref")
            pred = self.model(batch["img"].to(self.device), None if ref is None else ref.to(self.device))
            out.update(zip(batch["id"], pred.float().tolist(), strict=True))
        return out

    def __call__(
        self,
        source: str | Path,
        edited: str | Path,
        prompt: str = "",
        bbox: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Score one source/edited pair: the run's dimension as a score and a level word, and the bbox used.

        Without ``bbox`` a model that looks at the region takes the box of the pixels where the edited image
        differs from the source (``bbox_source: difference``); a whole-image model needs none.
        """
        source, edited = Path(source).resolve(), Path(edited).resolve()
        if bbox is not None and (problem := check_bbox(list(bbox))) is not None:
            raise DataError(f"bbox: {problem}")
        bbox_source = "given"
        if bbox is None and self.view == "whole":
            bbox, bbox_source = (0.5, 0.5, 1.0, 1.0), "not used (whole image)"
        elif bbox is None:
            found = difference_bbox(load_rgb(source), load_rgb(edited))
            bbox, bbox_source = found or (0.5, 0.5, 1.0, 1.0), "difference" if found else "whole image (no difference)"
        sample = PAISample("input", str(source), str(edited), prompt, tuple(bbox), "unknown")  # type: ignore[arg-type]
        score = self.predict("/", [sample], batch_size=1)["input"]  # absolute paths: "/" / path is the path
        lo, hi = SCORE_RANGES[self.task]
        return {
            "model": self.record.model,
            "task": self.task,
            "score": score,
            "level": bin_level(score, (lo, hi)),
            "bbox": [round(float(v), 6) for v in bbox],
            "bbox_source": bbox_source,
            "run": str(self.folder),
        }

    def manifest_rows(self, root: str | Path, samples: Sequence[PAISample]) -> list[dict[str, Any]]:
        """Scores-file lines of a batch: ``id``, ``score``, ``level``, ``task``."""
        pred = self.predict(root, samples, batch_size=len(samples))
        lo, hi = SCORE_RANGES[self.task]
        return [
            {"id": s.id, "score": pred[s.id], "level": bin_level(pred[s.id], (lo, hi)), "task": self.task}
            for s in samples
        ]


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


def load_scorer(path: str | Path) -> ManifestScoring:
    """The trained model of a run: its folder (best checkpoint) or one of its ``checkpoints/*.ckpt``.

    A baseline run gives a :class:`Scorer` of its dimension; an EPAIQA stage-1/2/3 run an
    :class:`~epaiqa.eval.lmm_scorer.LMMScorer` of every dimension its model knows; a best-competitor run (Table 3)
    a :class:`~epaiqa.eval.competitor_scorer.RegressorScorer` of the overall score from its picked runs.
    :class:`DataError` / :class:`ConfigError` name what is missing or of another kind.
    """
    from epaiqa.eval.lmm_scorer import STAGE_MODELS, build_lmm_scorer

    path = Path(path)
    chosen = path if path.is_file() and path.suffix == ".ckpt" else None
    folder = path.parent.parent if chosen is not None else path
    if not folder.is_dir():
        raise DataError(f"{path}: not a run folder or a checkpoint inside one")
    if (folder / RESULTS).is_file() and not (folder / CONFIG).is_file() and (folder.parent / CONFIG).is_file():
        folder = folder.parent  # a task's record of a run that tested several (stage 2 mixed: <run>/<task>/)
    record = run_record(folder)
    if record.kind == "regressor":
        from epaiqa.eval.competitor_scorer import load_regressor_scorer

        return load_regressor_scorer(folder, record)
    config = folder / CONFIG
    if not config.is_file():
        raise DataError(f"{folder}: no {CONFIG} (not a run folder written by run.py)")
    register_resolvers()
    cfg = OmegaConf.load(config)
    assert isinstance(cfg, DictConfig)
    target = OmegaConf.select(cfg, "model._target_")
    if target not in STAGE_MODELS and target != SCORING_MODEL:
        raise ConfigError(
            f"{folder}: a run of {target or 'an unknown model'}, which cannot score here (baselines, EPAIQA stages and "
            "best competitors can); bring other models' predictions in with `epaiqa evaluate`"
        )
    weights = chosen or checkpoint_of(folder, record)
    check_checkpoint_file(weights, "score")
    if target in STAGE_MODELS:
        return build_lmm_scorer(folder, record, cfg, weights)
    return _baseline_scorer(folder, record, cfg, weights)


def run_record(folder: Path) -> RunRecord:
    """The run's record; for a run that tested several tasks (``<run>/<task>/results.json``), the first task's."""
    if not (folder / RESULTS).is_file():
        tasks = sorted(d for d in folder.iterdir() if (d / RESULTS).is_file())
        if tasks:
            return read_record(tasks[0])
    return read_record(folder)


def _baseline_scorer(folder: Path, record: RunRecord, cfg: DictConfig, path: Path) -> Scorer:
    from epaiqa.train import build  # train imports the results record; imported here to keep eval light

    with warnings.catch_warnings():  # torchmetrics' note on its validation buffers: no validation here
        warnings.filterwarnings("ignore", message="Metric `SpearmanCorrcoef` will save")
        model = build(cfg.model)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: not a loadable checkpoint of this run's model ({exc})") from None
    return Scorer(folder, record, cfg, model)
