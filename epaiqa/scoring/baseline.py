"""A trained IQA baseline of a run folder as a scorer: its view, input size, margin and reference image.

A baseline's :meth:`Scorer.predict` scores samples of a dataset root the way the run saw its own test split, on
the run's task scale; the best-competitor regressors (Table 3) score the overall subset with their picked runs
this way. Memory stays bounded on large images: each image is decoded (up to ``EPAIQA_MAX_PIXELS``), cut to the
run's view and resized to its input size at once, so a batch holds ``batch_size`` model-sized inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.progress import track
from torch.utils.data import DataLoader

from epaiqa.data.crops import difference_bbox
from epaiqa.data.datasets import PAIDataset
from epaiqa.data.images import load_rgb
from epaiqa.data.levels import bin_level
from epaiqa.data.manifest import check_bbox
from epaiqa.data.schema import SCORE_RANGES, PAISample
from epaiqa.errors import DataError
from epaiqa.records.calibration import Calibration, run_calibration, scale_fields
from epaiqa.records.results import RunRecord
from epaiqa.runs import build
from epaiqa.scoring.base import ManifestScoring

#: the model class whose runs :func:`load_baseline_scorer` rebuilds (the IQA baselines)
SCORING_MODEL = "epaiqa.models.iqa_module.IQARegressor"


@dataclass
class Scorer(ManifestScoring):
    """A trained baseline of a run folder, ready to score samples."""

    folder: Path
    record: RunRecord
    cfg: DictConfig
    model: torch.nn.Module
    calibration: Calibration | None = None

    @property
    def scale(self) -> Calibration:
        """The map of this run's raw score onto the 1–5 rating scale and a [0, 1] reward (``calibration.json``)."""
        if self.calibration is None:
            self.calibration = run_calibration(self.folder, self.task, "clip", "unbounded regression")
        return self.calibration

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
        return self.score_pairs([{"source": source, "edited": edited, "prompt": prompt, "bbox": bbox}])[0]

    def score_pairs(self, pairs: Sequence[dict[str, Any]], batch_size: int = 32) -> list[dict[str, Any]]:
        """Score many pairs through the model in batches; each answer as :meth:`__call__` gives it, in order."""
        samples, sources = [], []
        for index, pair in enumerate(pairs):
            source, edited = Path(pair["source"]).resolve(), Path(pair["edited"]).resolve()
            bbox, where = self._region(source, edited, pair.get("bbox"))
            prompt = pair.get("prompt") or ""
            samples.append(PAISample(str(index), str(source), str(edited), prompt, bbox, "unknown"))
            sources.append(where)
        scores = self.predict("/", samples, batch_size=batch_size)  # absolute paths: "/" / path is the path
        return [
            {
                "model": self.record.model,
                "task": self.task,
                "score": scores[s.id],
                "level": self._level(scores[s.id]),
                **scale_fields(scores[s.id], self.scale),
                "bbox": [round(float(v), 6) for v in s.bbox],
                "bbox_source": where,
                "run": str(self.folder),
            }
            for s, where in zip(samples, sources, strict=True)
        ]

    def _region(
        self, source: Path, edited: Path, bbox: Sequence[float] | None
    ) -> tuple[tuple[float, float, float, float], str]:
        """The bbox a pair is scored with, and where it came from (given, the difference, or not used)."""
        if bbox is not None:
            if (problem := check_bbox(list(bbox))) is not None:
                raise DataError(f"bbox: {problem}")
            return tuple(float(v) for v in bbox), "given"  # type: ignore[return-value]
        if self.view == "whole":
            return (0.5, 0.5, 1.0, 1.0), "not used (whole image)"
        found = difference_bbox(load_rgb(source), load_rgb(edited))
        return (found or (0.5, 0.5, 1.0, 1.0)), "difference" if found else "whole image (no difference)"

    def _level(self, raw: float) -> str:
        """The level word of a raw score: its value on the rating scale, binned."""
        return bin_level(self.scale.rating(raw), SCORE_RANGES[self.task])

    def manifest_rows(self, root: str | Path, samples: Sequence[PAISample]) -> list[dict[str, Any]]:
        """Scores-file lines of a batch: ``id``, ``score``, ``level``, ``task``."""
        pred = self.predict(root, samples, batch_size=len(samples))
        scale = self.scale
        return [
            {"id": s.id, "score": pred[s.id], "level": self._level(pred[s.id]), "task": self.task}
            | {"score_1_5": scale.rating(pred[s.id]), "reward": scale.reward(pred[s.id])}
            for s in samples
        ]


def load_baseline_scorer(folder: Path, record: RunRecord, cfg: DictConfig, path: Path) -> Scorer:
    """The baseline of a run folder, rebuilt from its config with the checkpoint ``path``'s weights."""
    with warnings.catch_warnings():  # torchmetrics' note on its validation buffers: no validation here
        warnings.filterwarnings("ignore", message="Metric `SpearmanCorrcoef` will save")
        model = build(cfg.model)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: not a loadable checkpoint of this run's model ({exc})") from None
    return Scorer(folder, record, cfg, model)
