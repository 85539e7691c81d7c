"""A finished EPAIQA LMM run (stage 1, 2 or 3) as a scorer of every dimension its model knows.

What a checkpoint knows follows its stage and lineage (the stages its weights went through, in its record):

- stage 2 (scoring): the dimensions of its ``data.tasks`` (harmony, naturalness), by Q-Align readout;
- stage 3 (explain): the explanation, the prompt-completion verdict parsed from it and the overall level read
  after it — all three from one encoding of the images (the generation's KV cache is reused for the readout) —
  and harmony and naturalness when stage 2 is in its lineage (their questions show other images: the edited
  image, the region's crop; one forward each, batched over samples);
- stage 1 (grounding), alone or in the lineage: the edited region, when none is given.

Scores are the Q-Align expectation on 1..5 (bad = 1 … excellent = 5); the level is the nearest level word. The
questions are appendix E's (or Q-Align's for ``data.prompts=qalign`` runs), built as the run's test built them;
their reference answers are never shown to the model (unrated samples get a mid-scale placeholder only so that the
builders can write an answer that is dropped).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from epaiqa.data.crops import difference_bbox
from epaiqa.data.images import load_rgb
from epaiqa.data.levels import LEVELS
from epaiqa.data.manifest import check_bbox
from epaiqa.data.schema import DIMENSIONS, PAISample
from epaiqa.errors import DataError
from epaiqa.lmm.explain import explain_and_score
from epaiqa.lmm.generation import generate
from epaiqa.lmm.grounding import parse_bbox
from epaiqa.lmm.instructions import (
    COMPLETION_LEVELS,
    Instruction,
    answer_template,
    explain_instruction,
    grounding_instruction,
    harmony_instruction,
    naturalness_instruction,
    qalign_instruction,
)
from epaiqa.lmm.scoring import score
from epaiqa.records.calibration import Calibration, run_calibration, scale_fields
from epaiqa.records.results import RunRecord
from epaiqa.runs import build
from epaiqa.scoring.base import ManifestScoring

#: model classes of the three stages, by the stage name their checkpoints record
STAGE_MODELS = {
    "epaiqa.models.lmm_module.EPAIQAGrounding": "grounding",
    "epaiqa.models.lmm_module.EPAIQAScoring": "scoring",
    "epaiqa.models.lmm_module.EPAIQAExplain": "explain",
}
SCORED = ("harmony", "naturalness")
#: ratings the question builders need to write a (discarded) answer for an unrated sample
PLACEHOLDER_MOS = {"harmony": 3.0, "naturalness": 3.0, "overall": 3.0, "completion": 3.0}
GROUNDING_TOKENS = 48


def level_word(value: float) -> str:
    """The level word nearest a Q-Align score on 1..5."""
    return LEVELS[min(max(round(value), 1), 5) - 1]


def placeholder_rated(sample: PAISample) -> PAISample:
    """``sample`` with a mid-scale rating where it has none (question builders write answers that are dropped)."""
    mos = {d: v for d, v in sample.mos.items() if v is not None and d in DIMENSIONS}
    return replace(sample, mos={**PLACEHOLDER_MOS, **mos})


@dataclass
class LMMScorer(ManifestScoring):
    """A trained EPAIQA stage of a run folder, ready to score samples on every dimension it knows."""

    folder: Path
    record: RunRecord
    cfg: DictConfig
    stage: Any  # the EPAIQAStage LightningModule

    @property
    def stage_name(self) -> str:
        """grounding, scoring or explain."""
        return STAGE_MODELS[str(OmegaConf.select(self.cfg, "model._target_"))]

    @property
    def grounds(self) -> bool:
        """Whether the weights went through stage 1 (so the model can be asked for the edited region)."""
        return "grounding" in (self.record.lineage or [])

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The rated dimensions this model answers, in scoring order."""
        if self.stage_name == "scoring":
            return tuple(t for t in SCORED if t in list(self.cfg.data.tasks))
        if self.stage_name == "explain":
            return (*(SCORED if "scoring" in (self.record.lineage or []) else ()), "overall", "completion")
        return ()

    @property
    def task(self) -> str:
        """The main dimension: what ``score`` holds in a scores file (overall for stage 3)."""
        dims = [d for d in self.dimensions if d != "completion"]
        return "overall" if "overall" in dims else (dims[0] if dims else "grounding")

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.stage.parameters()).device

    def to(self, device: str | torch.device) -> LMMScorer:
        """Move the model to a device (``cpu``, ``cuda``, ``cuda:1``); returns the scorer."""
        self.stage.to(device)
        return self

    def _instruction(self, sample: PAISample, root: str | Path, task: str) -> Instruction:
        data = self.cfg.data
        margin = float(data.get("margin", 0.3))
        if str(data.get("prompts", "epaiqa")) == "qalign":
            return qalign_instruction(sample, root, task, str(data.harmony_view), margin)
        reference = bool(data.get("reference", False))
        if task == "harmony":
            return harmony_instruction(sample, root, False, reference, str(data.harmony_view), margin)
        if task == "naturalness":
            return naturalness_instruction(sample, root)
        view = str(data.get("explain_view", "whole"))
        return explain_instruction(sample, root, with_cot=False, reference=reference, view=view, margin=margin)

    def _ask(self, samples: list[PAISample], root: str | Path, task: str) -> tuple[list, list]:
        built = [self._instruction(s, root, task) for s in samples]
        return [b.conversation for b in built], [b.images for b in built]

    @torch.inference_mode()
    def ground(self, samples: list[PAISample], root: str | Path) -> list[tuple[float, ...] | None]:
        """Stage 1's answer for each sample's edited region (``None`` where it does not parse or is invalid)."""
        model, processor = self.stage.model, self.stage.processor
        built = [grounding_instruction(s, root) for s in samples]
        convs, images = [b.conversation for b in built], [b.images for b in built]
        boxes = []
        for text in generate(model, processor, convs, images, GROUNDING_TOKENS).texts:
            box = parse_bbox(text)
            boxes.append(None if box is None or check_bbox(list(box)) is not None else tuple(box))
        return boxes

    @torch.inference_mode()
    def score_samples(self, samples: Sequence[PAISample], root: str | Path) -> list[dict[str, Any]]:
        """Every dimension the model knows, per sample (one batch): scores, levels, verdict, explanation."""
        self.stage.eval()
        model, processor = self.stage.model, self.stage.processor
        samples = [placeholder_rated(s) for s in samples]
        out: list[dict[str, Any]] = [{"id": s.id} for s in samples]
        prompts = str(self.cfg.data.get("prompts", "epaiqa"))
        for task in (d for d in self.dimensions if d in SCORED):
            convs, images = self._ask(samples, root, task)
            values = score(model, processor, convs, images, answer_template(task, prompts)).tolist()
            for row, value in zip(out, values, strict=True):
                row[task] = self._scored(task, value)
        if self.stage_name == "explain":
            convs, images = self._ask(samples, root, "overall")
            hp = self.stage.hparams
            readouts = explain_and_score(
                model,
                processor,
                convs,
                images,
                int(hp["max_new_tokens"]),
                int(hp.get("cot_samples", 0)),
                float(hp.get("cot_temperature", 1.0)),
                seed=int(hp.get("cot_seed", 0)),
            )
            for row, readout in zip(out, readouts, strict=True):
                completion = readout.completion
                row["overall"] = self._scored("overall", readout.score)
                row["completion"] = {
                    "level": completion,
                    "verdict": None if completion is None else COMPLETION_LEVELS[completion - 1],
                }
                row["explanation"] = readout.explanation
        return out

    @functools.cached_property
    def scales(self) -> dict[str, Calibration]:
        """Each rated dimension's scale (identity onto 1–5 for a Q-Align expectation), read once."""
        return {
            t: run_calibration(self.folder, t, "identity", "Q-Align expectation on 1-5") for t in (*SCORED, "overall")
        }

    def _scored(self, task: str, value: float) -> dict[str, Any]:
        """One dimension's answer: the Q-Align score, its level word, and its scale."""
        return {"score": value, "level": level_word(value), **scale_fields(value, self.scales[task])}

    def _region(self, source: Path, edited: Path, bbox: Sequence[float] | None) -> tuple[tuple[float, ...], str]:
        if bbox is not None:
            if (problem := check_bbox(list(bbox))) is not None:
                raise DataError(f"bbox: {problem}")
            return tuple(float(v) for v in bbox), "given"
        note = ""
        if self.grounds:
            probe = PAISample("input", str(source), str(edited), "", (0.5, 0.5, 1.0, 1.0), "unknown")
            box = self.ground([placeholder_rated(probe)], "/")[0]
            if box is not None:
                return box, "grounding (stage 1)"
            note = " (the stage-1 answer did not parse)"
        found = difference_bbox(load_rgb(source), load_rgb(edited))
        if found is None:
            return (0.5, 0.5, 1.0, 1.0), "whole image (no difference)" + note
        return tuple(found), "difference" + note

    def __call__(
        self, source: str | Path, edited: str | Path, prompt: str = "", bbox: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """Score one source/edited pair: every dimension the model knows, and the bbox it used (and where from).

        Without ``bbox`` the region comes from stage-1 grounding when the lineage has it, else (or when its
        answer does not parse) from where the edited image differs from the source.
        """
        return self.score_pairs([{"source": source, "edited": edited, "prompt": prompt, "bbox": bbox}])[0]

    def score_pairs(self, pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score many pairs in one batch per question; each answer as :meth:`__call__` gives it, in order."""
        samples, regions = [], []
        for index, pair in enumerate(pairs):
            source, edited = Path(pair["source"]).resolve(), Path(pair["edited"]).resolve()
            region, where = self._region(source, edited, pair.get("bbox"))
            prompt = pair.get("prompt") or ""
            samples.append(PAISample(str(index), str(source), str(edited), prompt, region, "unknown"))  # type: ignore[arg-type]
            regions.append((region, where))
        rows = self.score_samples(samples, "/") if self.dimensions else [{} for _ in samples]  # "/" / path is path
        answers = []
        for row, (region, where) in zip(rows, regions, strict=True):
            row.pop("id", None)
            answers.append(
                {
                    "model": self.record.model,
                    "stage": self.stage_name,
                    "lineage": list(self.record.lineage or []),
                    **row,
                    "bbox": [round(float(v), 6) for v in region],
                    "bbox_source": where,
                    "run": str(self.folder),
                }
            )
        return answers

    def manifest_rows(self, root: str | Path, samples: Sequence[PAISample]) -> list[dict[str, Any]]:
        """Scores-file lines of a batch: the main dimension's ``score``/``level``/``task``, then every dimension.

        After ``id`` and the main dimension: each rated dimension's score and level (``harmony``,
        ``harmony_level``, …), and for stage 3 ``completion`` (1..3 or null) and ``explanation``.
        """
        rows = []
        for found in self.score_samples(samples, root):
            main = found.get(self.task) or {}
            row: dict[str, Any] = {"id": found["id"], "task": self.task, "score": main.get("score")}
            row |= {"level": main.get("level"), "score_1_5": main.get("score_1_5"), "reward": main.get("reward")}
            for dim in (d for d in self.dimensions if d != "completion"):
                row[dim], row[f"{dim}_level"] = found[dim]["score"], found[dim]["level"]
            if "completion" in found:
                row["completion"], row["explanation"] = found["completion"]["level"], found["explanation"]
            rows.append(row)
        return rows


def build_lmm_scorer(folder: Path, record: RunRecord, cfg: DictConfig, checkpoint: Path) -> LMMScorer:
    """Rebuild a stage's model from its run config (without ``init_from``: the checkpoint holds every weight)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.update(cfg, "model.init_from", None)
    stage = build(cfg.model)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        stage.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{checkpoint}: not a loadable checkpoint of this run's model ({first})") from None
    return LMMScorer(folder, record, cfg, stage)
