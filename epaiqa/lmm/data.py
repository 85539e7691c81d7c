"""Data of the EPAIQA LMM stages: PAI samples turned into appendix-E instructions in the data pipeline.

Each item is one instruction — the conversation (question and reference answer) and its PIL images, built by
:mod:`epaiqa.lmm.instructions` in the dataset (so in loader workers) — with the sample and its task. Batches
are plain lists; the LightningModule tokenises them with its own processor, so one datamodule serves every
backbone.

Instruction options live here, with the data: ``with_cot`` (stage 2: the sample's CoT as E.2's [CoT] prior in
the *training* questions — never in a test question, which would hand the model its reference; stage 3: CoT
answers) and ``reference`` (the ablation that boxes the region on the image and names it).
"""

from __future__ import annotations

import logging
from typing import Any

from torch.utils.data import Dataset

from epaiqa.data.base import BaseDataModule, SampleKey, carve_val, check_val_fraction, head, unpack_key
from epaiqa.data.levels import LEVEL_RANGES, NOMINAL_SPAN, level_position, observed_span
from epaiqa.data.schema import PAISample, has_cot, has_explain_cot
from epaiqa.errors import ConfigError
from epaiqa.lmm.instructions import (
    ANSWER_TEMPLATES,
    EXPLAIN_VIEWS,
    HARMONY_VIEWS,
    PROMPT_STYLES,
    Instruction,
    answer_template,
    explain_instruction,
    explain_level_position,
    grounding_instruction,
    harmony_instruction,
    naturalness_instruction,
    qalign_instruction,
)

SCORING_TASKS = ("harmony", "naturalness")
STAGES = ("grounding", "scoring", "explain")

log = logging.getLogger(__name__)


class InstructionDataset(Dataset):
    """(sample, task) pairs as instruction items: ``sample``, ``task``, ``conversation``, ``images``."""

    def __init__(
        self,
        root: Any,
        pairs: list[tuple[PAISample, str]],
        train: bool,
        with_cot: bool,
        reference: bool,
        harmony_view: str = "whole",
        margin: float = 0.3,
        prompts: str = "epaiqa",
        spans: dict[str, tuple[float, float]] | None = None,
        grounding_prompt: bool = False,
        explain_view: str = "whole",
    ) -> None:
        self.root, self.pairs, self.train = root, pairs, train
        self.explain_view = explain_view
        self.grounding_prompt = grounding_prompt
        self.with_cot, self.reference = with_cot, reference
        self.harmony_view, self.margin, self.prompts = harmony_view, margin, prompts
        self.spans = spans or {}

    def __len__(self) -> int:
        return len(self.pairs)

    def instruction(self, sample: PAISample, task: str) -> Instruction:
        """The appendix-E instruction of a sample for a task."""
        if task == "grounding":
            return grounding_instruction(sample, self.root, with_prompt=self.grounding_prompt)
        span = self.spans.get(task, NOMINAL_SPAN)
        if self.prompts == "qalign":
            return qalign_instruction(sample, self.root, task, self.harmony_view, self.margin, span)
        if task == "harmony":
            cot = self.with_cot and self.train and has_cot(sample, "harmony")
            view = self.harmony_view
            return harmony_instruction(sample, self.root, cot, self.reference, view, self.margin, span)
        if task == "naturalness":
            cot = self.with_cot and self.train and has_cot(sample, "naturalness")
            return naturalness_instruction(sample, self.root, cot, span=span)
        # stage 3: a test sample without CoT keeps a levels-only reference answer (training samples all have it)
        cot = self.with_cot and (self.train or has_explain_cot(sample))
        return explain_instruction(sample, self.root, cot, self.reference, span, self.explain_view, self.margin)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, _ = unpack_key(key)  # instructions draw no random numbers
        sample, task = self.pairs[index]
        conversation, images = self.instruction(sample, task)
        item = {"sample": sample, "task": task, "conversation": conversation, "images": images}
        if task == "overall":  # stage 3: the answer closes with the overall level word, where scores are read
            span = self.spans.get(task, NOMINAL_SPAN)
            return item | {"template": ANSWER_TEMPLATES[task], "level": explain_level_position(sample, span)}
        if task not in SCORING_TASKS:
            return item | {"template": None, "level": None}
        position = level_position(float(sample.score(task)), self.spans.get(task, NOMINAL_SPAN))  # type: ignore[arg-type]
        return item | {"template": answer_template(task, self.prompts), "level": position}


def collate_instructions(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A batch of instruction items as lists of ``samples``, ``tasks``, ``conversations``, ``images``, ``templates``.

    ``templates`` holds the answer sentence each scored item's level is read off, ``levels`` where its MOS lies on
    the level scale (:func:`~epaiqa.data.levels.level_position`; the soft targets' centre); None for other stages.
    """
    return {
        "samples": [i["sample"] for i in items],
        "tasks": [i["task"] for i in items],
        "conversations": [i["conversation"] for i in items],
        "images": [i["images"] for i in items],
        "templates": [i.get("template") for i in items],
        "levels": [i.get("level") for i in items],
    }


class LMMDataModule(BaseDataModule):
    """Data of the LMM stages, paired with the task each sample becomes an instruction for.

    Scoring (stage 2): each task's subset, train ids for training, test ids for testing.
    Grounding (stage 1): every sample except the test ids of all subsets for training, those for testing.
    Explain (stage 3): the overall subset; samples without a prompt completion or overall score (and, for
    training with ``with_cot``, without the CoT an answer needs) are left out, with a warning that counts
    them. Test samples without CoT are kept: their reference answer in ``explanations.jsonl`` has the levels only.
    Every stage's training ids are split again, by source image, into train and validation (``val_fraction``,
    seeded, as the baselines' datamodule does; ``limit_val`` caps it): settings are chosen on ``val``.

    ``tasks=["harmony", "naturalness"]`` mixes both subsets (the paper's unified stage-2 model). ``root``
    None uses the demo set, as :class:`~epaiqa.data.datamodule.PAIDataModule` does. ``harmony_view``: what the
    harmony question shows, ``whole`` (appendix E.2) or ``context`` (the region with ``margin`` around it);
    ``explain_view`` the same for stage 3's source and edited image.
    ``prompts="qalign"`` asks Q-Align's question instead of E.2's (stage 2 only: the q-align rows).
    ``grounding_prompt`` adds the edit prompt to stage 1's question (§4.1's inputs; appendix E.1's question, the
    default, has none). ``rehearse`` (stage 3 only; default none) mixes stage 2's questions of those tasks into stage
    3's *training* set — each task's training ids, up to ``rehearse_limit`` of them — so that the levels stage 2
    learnt from the image keep being trained while stage 3 learns to explain (rehearsal of the previous stage's
    data); validation and test stay stage 3's. ``levels={"range": "observed"}`` bins the level words over each
    task's training MOS range instead of the nominal 1–5 (:data:`~epaiqa.data.levels.LEVEL_RANGES`); the spans used
    are in :attr:`level_spans`.
    """

    def __init__(
        self,
        root: str | None = None,
        tasks: list[str] | None = None,
        stage: str = "scoring",
        with_cot: bool = False,
        reference: bool = False,
        harmony_view: str = "whole",
        margin: float = 0.3,
        prompts: str = "epaiqa",
        levels: dict[str, Any] | None = None,
        val_fraction: float = 0.1,
        limit_val: int | None = None,
        grounding_prompt: bool = False,
        explain_view: str = "whole",
        rehearse: list[str] | None = None,
        rehearse_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("batch_size", 4)
        super().__init__(root=root, **kwargs)
        check_val_fraction(val_fraction)
        if limit_val is not None and limit_val < 0:
            raise ConfigError(f"data.limit_val must be null or ≥ 0, got {limit_val}")
        self.val_fraction, self.limit_val = val_fraction, limit_val
        if stage not in STAGES:
            raise ConfigError(f"data.stage must be one of {', '.join(STAGES)}, got {stage!r}")
        if harmony_view not in HARMONY_VIEWS:
            raise ConfigError(f"data.harmony_view must be one of {', '.join(HARMONY_VIEWS)}, got {harmony_view!r}")
        if explain_view not in EXPLAIN_VIEWS:
            raise ConfigError(f"data.explain_view must be one of {', '.join(EXPLAIN_VIEWS)}, got {explain_view!r}")
        if prompts not in PROMPT_STYLES:
            raise ConfigError(f"data.prompts must be one of {', '.join(PROMPT_STYLES)}, got {prompts!r}")
        if prompts == "qalign" and stage != "scoring":
            raise ConfigError(f"data.prompts=qalign asks Q-Align's scoring question: stage scoring only, got {stage}")
        self.level_range = str((levels or {}).get("range", "nominal"))
        if self.level_range not in LEVEL_RANGES:
            raise ConfigError(f"data.levels.range must be one of {', '.join(LEVEL_RANGES)}, got {self.level_range!r}")
        self.level_spans: dict[str, tuple[float, float]] = {}
        self.harmony_view, self.margin, self.prompts = harmony_view, margin, prompts
        self.stage, self.with_cot, self.reference = stage, with_cot, reference
        self.grounding_prompt = bool(grounding_prompt)
        self.explain_view = explain_view
        fixed = {"grounding": ["grounding"], "explain": ["overall"]}
        self.tasks = fixed.get(stage) or list(tasks or ["harmony"])
        unknown = [t for t in self.tasks if t not in SCORING_TASKS]
        if stage == "scoring" and (unknown or not self.tasks):
            raise ConfigError(f"data.tasks must be a non-empty subset of {', '.join(SCORING_TASKS)}, got {self.tasks}")
        if reference and "naturalness" in self.tasks:
            log.warning("reference mode leaves naturalness instructions as they are (the crop is the region)")
        self.task = "+".join(self.tasks)
        self.rehearse, self.rehearse_limit = list(rehearse or []), rehearse_limit
        if self.rehearse and (stage != "explain" or any(t not in SCORING_TASKS for t in self.rehearse)):
            raise ConfigError(
                f"data.rehearse mixes stage 2's {'/'.join(SCORING_TASKS)} questions into stage 3's training: "
                f"stage explain and those tasks only, got stage {stage} and {self.rehearse}"
            )
        if rehearse_limit is not None and rehearse_limit < 1:
            raise ConfigError(f"data.rehearse_limit must be null or ≥ 1, got {rehearse_limit}")

    def task_view(self, task: str) -> str:
        """The view of the edited image a task's question shows (the results record's ``data.view``).

        Harmony: ``data.harmony_view``; naturalness: the region's crop; stage 3 (overall, completion):
        ``data.explain_view``; grounding: the whole image.
        """
        views = {"harmony": self.harmony_view, "naturalness": "region"}
        return views.get(task, self.explain_view if self.stage == "explain" else "whole")

    @property
    def stage_name(self) -> str:
        """The model stage this data feeds."""
        return self.stage

    def collate(self) -> Any:
        """Lists of samples, tasks, conversations and images."""
        return collate_instructions

    def build(self, samples: list[PAISample], subsets: dict[str, dict[str, list[str]]]) -> None:
        """Pair every subset's train and test ids with their task."""
        pairs = self.pairs(samples, subsets)
        scored = [pair for pair in pairs["train"] if pair[1] not in self.rehearse]  # rehearsal is not scored
        pairs["train_eval"] = head(scored, self.limit_train_eval)
        if self.level_range == "observed":  # Q-Align: the bins divide what the training split spans, per task
            tasks = sorted({t for _, t in pairs["train"]} & {"harmony", "naturalness", "overall"})
            self.level_spans = {t: observed_span(s.score(t) for s, task in pairs["train"] if task == t) for t in tasks}
        for part, items in pairs.items():
            if part == "val" and not items:
                continue
            train = part == "train"
            self.datasets[part] = InstructionDataset(
                self.dataset_root,
                items,
                train,
                self.with_cot,
                self.reference,
                self.harmony_view,
                self.margin,
                self.prompts,
                self.level_spans,
                self.grounding_prompt,
                self.explain_view,
            )

    def pairs(
        self, samples: list[PAISample], subsets: dict[str, dict[str, list[str]]]
    ) -> dict[str, list[tuple[PAISample, str]]]:
        """(sample, task) pairs of the training and test parts."""
        by_id = {s.id: s for s in samples}
        if self.stage == "grounding":
            # §4.1: every sample except the test ids of all three subsets
            test_ids = sorted(set().union(*(set(parts["test"]) for parts in subsets.values())))
            held_out = set(test_ids)
            train, val = self._carve([s.id for s in samples if s.id not in held_out], by_id)
            return {
                "train": [(by_id[i], "grounding") for i in train],
                "val": [(by_id[i], "grounding") for i in val],
                "test": [(by_id[i], "grounding") for i in head(test_ids, self.limit_test)],
            }
        if self.stage == "explain":
            train, val = self._carve(subsets["overall"]["train"], by_id)
            out = {}
            for part, ids in (("train", train), ("val", val), ("test", subsets["overall"]["test"])):
                usable = [(by_id[i], "overall") for i in ids if self._explainable(by_id[i], part)]
                if len(ids) > len(usable):
                    need = "completion / overall score" + (" or CoT" if part == "train" and self.with_cot else "")
                    log.warning(
                        "stage 3 %s: %d of %d overall samples lack a %s", part, len(ids) - len(usable), len(ids), need
                    )
                limit = {"test": self.limit_test, "val": self.limit_val}.get(part)
                out[part] = head(usable, limit)
            for task in self.rehearse:  # stage 2's questions, training only
                ids = head(self._carve(subsets[task]["train"], by_id)[0], self.rehearse_limit)
                out["train"] += [(by_id[i], task) for i in ids]
            return out
        carved = {t: self._carve(subsets[t]["train"], by_id) for t in self.tasks}
        if self.with_cot:  # E.2's [CoT] prior where the sample has one; the question without it otherwise
            for t in self.tasks:
                ids = carved[t][0]
                missing = sum(1 for i in ids if not has_cot(by_id[i], t))
                if missing:
                    log.warning(
                        "stage 2 with_cot: %d of %d %s training samples have no cot.%s: asked without the [CoT] prior",
                        missing,
                        len(ids),
                        t,
                        t,
                    )
        parts = {
            "train": {t: carved[t][0] for t in self.tasks},
            "val": {t: carved[t][1] for t in self.tasks},
            "test": {t: subsets[t]["test"] for t in self.tasks},
        }
        out = {}
        for part, ids in parts.items():
            per_task = [[(by_id[i], t) for i in ids[t]] for t in self.tasks]
            limit = {"test": self.limit_test, "val": self.limit_val}.get(part)
            if limit is not None:  # keep every task represented
                per_task = [p[: max(1, limit // len(self.tasks))] for p in per_task]
            # interleave the tasks, so every batch (and a one-batch debug run) sees all of them
            longest = max((len(p) for p in per_task), default=0)
            out[part] = [p[k] for k in range(longest) for p in per_task if k < len(p)]
        return out

    def _carve(self, train_ids: list[str], by_id: dict[str, PAISample]) -> tuple[list[str], list[str]]:
        """(train, val) of a part's training ids, whole source images to validation (``val_fraction``)."""
        return carve_val(train_ids, by_id, self.val_fraction, self.seed)

    def _explainable(self, sample: PAISample, part: str) -> bool:
        if sample.score("completion") is None or sample.score("overall") is None:
            return False
        return part != "train" or not self.with_cot or has_explain_cot(sample)
