"""The EPAIQA LMM stages as LightningModules: grounding (§4.1), scoring (§4.2), explanation (§4.3).

Every stage is supervised fine-tuning on appendix-E question/answer pairs (loss on the answer only), its
own run, chained by ``init_from`` (weights of the previous stage's checkpoint; checkpoints record the stages
their weights went through). Stage 1 tests by generating the box and parsing it (IoU, centre error, parse
failures); stage 2 scores every test sample in one forward pass — softmax over the five level tokens' logits
at the answer position, weighted 1..5 — and reports SRCC/PLCC per task and edit type (``train=false`` gives
the zero-shot rows, zeroshot_<backbone>); stage 3 generates explanations, reads the overall level after them the same
way (from the generation's own KV cache: the images are encoded once), and reports completion accuracy.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from transformers import get_cosine_schedule_with_warmup

from epaiqa.data.levels import soft_levels
from epaiqa.errors import ConfigError
from epaiqa.lmm.adapters import apply_lora, enable_gradient_checkpointing, lora_settings, merge_lora_weights
from epaiqa.lmm.backbones import backbone_settings, build_backbone
from epaiqa.lmm.explain import explain_and_score
from epaiqa.lmm.generation import generate_answers
from epaiqa.lmm.grounding import centre_error, iou, parse_bbox
from epaiqa.lmm.instructions import ANSWER_TEMPLATES, answer_text, completion_level, encode_supervised
from epaiqa.lmm.loss import answer_loss
from epaiqa.lmm.mini import standardise_statistics
from epaiqa.lmm.scoring import level_token_ids, score
from epaiqa.models.task import BaseTask
from epaiqa.records.metrics import TaskResult, correlation_result

#: constant: every step at its group's rate; cosine: linear warm-up, then cosine decay to 0 (LLaVA's SFT recipe)
LR_SCHEDULES = ("constant", "cosine")
log = logging.getLogger(__name__)

#: the edited region's box ⟨x, y, z1, z2⟩ (centre, size) in stage 1's rows: ``bbox_x`` … ``bbox_z2``
BOX_KEYS = ("x", "y", "z1", "z2")
#: Checkpoint key of the stages the weights went through, oldest first.
LINEAGE_KEY = "epaiqa_stages"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


#: the longest answer a stage generates (a stage-3 explanation is ~150 tokens; memory grows with the length)
MAX_NEW_TOKENS = 1024


def is_llm_parameter(name: str) -> bool:
    """Whether a parameter belongs to the LLM or its LM head (what ``freeze_llm`` keeps as loaded)."""
    return "language_model" in name or "lm_head" in name


class EPAIQAStage(BaseTask):
    """What every stage shares: the backbone, LoRA / gradient checkpointing, ``init_from`` and its lineage.

    Batches come from :class:`~epaiqa.lmm.data.LMMDataModule`: instructions already built (conversations and
    PIL images); the stage tokenises them with its backbone's processor.

    ``backbone`` is the ``model.backbone`` config (``id``: ``tiny`` / ``random-0.5b`` / a hub id; ``path``;
    ``dtype``; see :func:`~epaiqa.lmm.backbones.build_backbone`). ``exclude_stages`` lists stages that
    ``init_from`` must not have gone through (the wo-stage-1 and reference ablations exclude ``grounding``).
    ``freeze`` lists parameter-name parts never trained — those outside the forward path (LLaVA-OneVision reads
    SigLIP features before its post-layernorm), so that DDP needs no search for unused parameters, and the parts a
    backbone's recipe keeps frozen (``mini``: the Lite0 tower up to its last stage; frozen batch norms then keep
    their pretrained statistics in training too). ``lr_groups`` maps parameter-name parts to their own learning
    rate (the first part a name contains wins; the rest train at ``lr``): ``mini`` trains its new projector
    faster and its pretrained tower stage slower than the LoRA adapters. ``level_sigma`` (stages 2 and 3): null
    trains the answer's closing level word — stage 2's level, stage 3's overall level — as one word (the paper); a
    width in levels trains it as a Gaussian over the five words around where the MOS lies
    (:func:`~epaiqa.data.levels.soft_levels`, DeQA-Score's soft labels). ``standardise_statistics`` (``mini``):
    before training, the statistics tokens' inputs are standardised per feature with their mean and standard
    deviation over that many training views (0: not), once — a stage that starts from fitted weights keeps them.
    ``freeze_llm``: the LLM (and its LM head) trains nothing and gets no LoRA adapters; only the projector and the
    vision tower learn (stage 1's rule in the paper; ``mini``'s stage 2 too: ``stage2_freeze_llm`` in its recipe).
    ``norm_eval``: every batch norm keeps its running statistics in training, the trained ones too (their scale and
    shift still learn) — with batches of 4 a batch's own statistics are noisy and tie its samples together.
    """

    STAGE = "stage"

    def __init__(
        self,
        backbone: str | Mapping[str, Any] = "tiny",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        init_from: str | None = None,
        exclude_stages: list[str] | None = None,
        max_new_tokens: int = 40,
        lora: Mapping[str, Any] | None = None,
        gradient_checkpointing: bool = False,
        freeze: list[str] | None = None,
        lr_groups: Mapping[str, float] | None = None,
        lr_schedule: str = "constant",
        warmup_ratio: float = 0.0,
        level_sigma: float | None = None,
        standardise_statistics: int = 0,
        freeze_llm: bool = False,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if level_sigma is not None and not (isinstance(level_sigma, int | float) and level_sigma > 0):
            raise ConfigError(f"model.level_sigma must be null (one-hot level words) or > 0, got {level_sigma!r}")
        if not (isinstance(standardise_statistics, int) and standardise_statistics >= 0):
            raise ConfigError(
                f"model.standardise_statistics must be a number of training views >= 0, got {standardise_statistics!r}"
            )
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        if not 0 <= warmup_ratio < 1:
            raise ConfigError(f"model.warmup_ratio must lie in [0, 1), got {warmup_ratio}")
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise ConfigError(f"model.max_new_tokens must lie in [1, {MAX_NEW_TOKENS}], got {max_new_tokens}")
        backbone_settings(backbone)  # unknown keys fail before anything is built
        lora_settings(lora)
        self.model, self.processor = build_backbone(backbone)
        self.model.train()  # from_pretrained leaves eval mode; Lightning switches modes per loop from here
        if init_from is not None:
            self.load_stage(init_from)
        if gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        if freeze_llm and lora_settings(lora)["enabled"]:
            log.info("model.freeze_llm: the LLM trains nothing in this stage, so model.lora adds no adapters to it")
            lora = {**lora_settings(lora), "enabled": False}
        self.model = apply_lora(self.model, lora)
        #: the last validation epoch's metrics per task (``val/<task>/<metric>``; in the results record)
        self.val_results: dict[str, dict[str, Any]] = {}
        for name, param in self.model.named_parameters():
            if any(part in name for part in freeze or []) or (freeze_llm and is_llm_parameter(name)):
                param.requires_grad = False

    def train(self, mode: bool = True) -> EPAIQAStage:
        """Train/eval mode; frozen batch norms keep their statistics (with ``norm_eval``, every batch norm does)."""
        super().train(mode)
        if mode:
            every = bool(self.hparams["norm_eval"])
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and (
                    every or not any(p.requires_grad for p in module.parameters(recurse=False))
                ):
                    module.eval()
        return self

    def load_stage(self, checkpoint: str) -> None:
        """Take the weights (only) of a previous stage's checkpoint; LoRA-trained weights are merged in."""
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            raise ConfigError(
                f"model.init_from: {path} is a sharded (DeepSpeed) checkpoint folder; convert it to one file first: "
                "python -c 'from lightning.pytorch.utilities.deepspeed import "
                f'convert_zero_checkpoint_to_fp32_state_dict as c; c("{path}", "{path}.fp32.ckpt")\''
            )
        if not path.is_file():
            raise ConfigError(f"model.init_from: {path} does not exist")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            state = saved["state_dict"]
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as exc:
            raise ConfigError(
                f"model.init_from: {path} is not a readable Lightning checkpoint ({exc!r:.200})"
            ) from None
        lineage = list(saved.get(LINEAGE_KEY, []))
        if self.hparams["exclude_stages"] and LINEAGE_KEY not in saved:
            raise ConfigError(
                f"model.init_from: {path} records no stage lineage, so model.exclude_stages (the wo_stage1/reference "
                "ablations) cannot be checked; start from a checkpoint written by this version"
            )
        excluded = [s for s in lineage if s in (self.hparams["exclude_stages"] or [])]
        if excluded:
            raise ConfigError(
                f"model.init_from: {path} went through stage {excluded[0]!r}, which this run excludes "
                f"(model.exclude_stages={list(self.hparams['exclude_stages'])}, the wo_stage1/reference ablations)"
            )
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        lora = (saved.get("hyper_parameters") or {}).get("lora") or {}
        try:  # adapters where the weights hold them (a freeze_llm stage added none, whatever its lora block says)
            if any("lora_" in k for k in weights):
                self.model = merge_lora_weights(self.model, weights, lora)
            else:
                self.model.load_state_dict(weights)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"model.init_from: {path} does not fit model.backbone ({first})") from None
        self.lineage = lineage

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[LINEAGE_KEY] = self.trained_lineage()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # resuming this stage
        super().on_load_checkpoint(checkpoint)
        self.lineage = list(checkpoint.get(LINEAGE_KEY, [self.STAGE]))[:-1]

    def on_fit_start(self) -> None:
        # Lightning keeps each submodule's mode as it finds it (it never calls train()): the batch-norm rule of
        # :meth:`train` holds in training only if it is applied here
        self.train()
        norms = [m for m in self.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not m.training]
        kept = {id(sub) for norm in norms for sub in norm.modules()}  # a timm BatchNormAct2d's activation too
        if norms and all(id(m) in kept for m in self.modules() if not m.training):
            # Lightning warns of any module in eval mode at the start of training; these are the rule's, on purpose
            warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode", PossibleUserWarning)
            log.info("%d batch norms keep their running statistics in training (eval mode, by the rule)", len(norms))
        half = {
            p.dtype for p in self.model.parameters() if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)
        }
        if half:
            rank_zero_warn(
                f"training {', '.join(map(str, sorted(half, key=str)))} parameters: AdamW without fp32 master weights "
                "loses small updates. For full fine-tuning load the backbone in float32 "
                "(model.backbone.dtype=float32) and compute in trainer.precision=bf16-mixed."
            )

    def on_train_start(self) -> None:
        """``standardise_statistics``: fit the statistics tokens' standardisation on training views (once)."""
        views = self.hparams["standardise_statistics"]
        if views:
            dataset = self.trainer.datamodule.datasets["train"]
            log.info(standardise_statistics(self.model, self.processor, dataset, views))

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches hold samples, not tensors: the processor's tensors are moved when they are made."""
        return batch

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """The validation split is scored as the test split is (settings are chosen on it, never on test)."""
        self.test_step(batch, batch_idx)

    def on_validation_epoch_start(self) -> None:
        self._rows = []

    def on_validation_epoch_end(self) -> None:
        with self.evaluating("val"):
            self.val_results = {task: r.metrics for task, r in self.gathered_results().items()}

    def param_groups(self) -> list[dict[str, Any]]:
        """The trained parameters in optimiser groups: one per ``lr_groups`` entry that matches, then the rest."""
        rates = dict(self.hparams["lr_groups"] or {})
        groups: dict[str, list[torch.nn.Parameter]] = {part: [] for part in rates}
        rest: list[torch.nn.Parameter] = []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                groups.get(next((part for part in rates if part in name), ""), rest).append(param)
        empty = [part for part, params in groups.items() if not params]
        if empty:
            raise ConfigError(f"model.lr_groups: no trained parameter name contains {empty}")
        out = [{"params": params, "lr": rates[part], "name": part} for part, params in groups.items()]
        return out + ([{"params": rest, "lr": self.hparams["lr"], "name": "rest"}] if rest else [])

    def configure_optimizers(self) -> Any:
        """AdamW over :meth:`param_groups`; ``cosine``: linear warm-up (``warmup_ratio`` of the steps), then cosine."""
        optimizer = torch.optim.AdamW(
            self.param_groups(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
        if self.hparams["lr_schedule"] == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = round(self.hparams["warmup_ratio"] * total)
        schedule = get_cosine_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        convs, images = batch["conversations"], batch["images"]
        inputs = encode_supervised(self.processor, convs, images).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        loss = self.supervised_loss(inputs, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(convs), sync_dist=True)
        return loss

    def supervised_loss(self, inputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The loss of a training batch's answers (:func:`~epaiqa.lmm.loss.answer_loss`).

        With ``level_sigma`` and a batch whose answers close with a scored level word (stage 2's level, stage 3's
        overall level), that word's target is the soft distribution around where its MOS lies; stage 1 has none.
        """
        sigma = self.hparams["level_sigma"]
        if sigma is None or any(t is None for t in batch["templates"]):
            return answer_loss(self.model, inputs)
        ids = torch.tensor([self._level_ids(t) for t in batch["templates"]], device=self.device)
        targets = torch.tensor([soft_levels(p, sigma) for p in batch["levels"]], device=self.device)
        return answer_loss(self.model, inputs, ids, targets)

    def _level_ids(self, template: str) -> list[int]:
        cache = self.__dict__.setdefault("_level_id_cache", {})
        if template not in cache:
            cache[template] = level_token_ids(self.processor, template)
        return cache[template]


class EPAIQAScoring(EPAIQAStage):
    """Stage 2: level training on harmony / naturalness pairs, Q-Align scoring at test time."""

    STAGE = "scoring"

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        convs, images = batch["conversations"], batch["images"]
        templates = batch.get("templates") or [None] * len(convs)
        by_task: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, (task, template) in enumerate(zip(batch["tasks"], templates, strict=True)):
            by_task[(task, template or ANSWER_TEMPLATES[task])].append(i)
        for (task, template), rows in by_task.items():
            scores = score(self.model, self.processor, [convs[i] for i in rows], [images[i] for i in rows], template)
            samples = [batch["samples"][i] for i in rows]
            self.add_rows(
                [
                    {"id": s.id, "task": task, "edit_type": s.edit_type, "mos": s.score(task), "pred": value}
                    for s, value in zip(samples, scores.tolist(), strict=True)
                ]
            )


class EPAIQAGrounding(EPAIQAStage):
    """Stage 1: source + edited image → "(x, y, z1, z2)"; the LLM frozen, projector (and vision) trained.

    ``stage1_lora`` (a backbone recipe's documented exception: ``mini``, whose depth-cut SmolLM2 cannot write the
    answer untrained) trains LoRA adapters on the LLM too; the LLM's own weights stay frozen. ``pair_difference``
    (``mini``'s tower only) hands the LLM the edited image's map tokens as their difference from the source's.
    """

    STAGE = "grounding"

    def __init__(
        self,
        *args: Any,
        freeze_llm: bool = True,
        train_vision: bool = True,
        stage1_lora: bool = False,
        pair_difference: bool = False,
        **kwargs: Any,
    ) -> None:
        if stage1_lora:  # a backbone recipe's exception: adapters on the LLM train, its own weights stay frozen
            freeze_llm = False
            kwargs["lora"] = {**lora_settings(kwargs.get("lora")), "enabled": True}
        if freeze_llm and lora_settings(kwargs.get("lora"))["enabled"]:
            raise ConfigError(
                "model.lora: stage 1 freezes the LLM (the paper's rule); LoRA adapters on it in stage 1 need "
                "model.freeze_llm=false"
            )
        super().__init__(*args, freeze_llm=freeze_llm, **kwargs)
        self.hparams.update(train_vision=train_vision, stage1_lora=stage1_lora, pair_difference=pair_difference)
        if pair_difference:
            towers = [m for m in self.model.modules() if hasattr(m, "pair_difference")]
            if not towers:
                raise ConfigError(
                    f"model.pair_difference: the vision tower of {type(self.model).__name__} cannot show the pair's "
                    "difference; only mini's Lite0 tower can (set false)"
                )
            for tower in towers:
                tower.pair_difference = True
        for name, param in self.model.named_parameters():
            if not train_vision and "vision_tower" in name:
                param.requires_grad = False
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigError("stage 1 trains nothing: unfreeze the LLM or the vision tower")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        convs, images = batch["conversations"], batch["images"]
        texts = generate_answers(self.model, self.processor, convs, images, self.hparams["max_new_tokens"])
        for sample, text in zip(batch["samples"], texts, strict=True):
            box = parse_bbox(text)
            self.add_rows(
                [
                    {
                        "id": sample.id,
                        "task": "grounding",
                        "edit_type": sample.edit_type,
                        "answer": text,
                        **{f"bbox_{k}": float(v) for k, v in zip(BOX_KEYS, sample.bbox, strict=True)},
                        "iou": None if box is None else iou(box, sample.bbox),
                        "centre_error": None if box is None else centre_error(box, sample.bbox),
                    }
                ]
            )

    def summarise(self, task: str, rows: list[dict[str, Any]]) -> TaskResult:
        """IoU and centre error of the parsed boxes, the parse-failure rate, and the *mean-box* reference.

        ``mean_box_iou`` / ``mean_box_centre_error``: what always answering these samples' mean box scores (a model
        that knows where edits usually lie, but looks at no image; the mean of the scored boxes themselves, so the
        reference is, if anything, flattered). A model that grounds must beat it.
        """
        parsed = [o for o in rows if o["iou"] is not None]
        n = len(rows)
        metrics: dict[str, Any] = {
            "n": n,
            "iou": _mean([o["iou"] for o in parsed]),
            "centre_error": _mean([o["centre_error"] for o in parsed]),
            "parse_failure_rate": (n - len(parsed)) / n if n else None,
        }
        boxes = [[float(o[f"bbox_{k}"]) for k in BOX_KEYS] for o in rows if "bbox_x" in o]
        if boxes:
            mean = [sum(b[k] for b in boxes) / len(boxes) for k in range(4)]
            metrics["mean_box_iou"] = _mean([iou(mean, b) for b in boxes])
            metrics["mean_box_centre_error"] = _mean([centre_error(mean, b) for b in boxes])
        return TaskResult(metrics, rows)


class EPAIQAExplain(EPAIQAStage):
    """Stage 3: source, edited image and prompt → explanation ending in the overall level (appendix E.3).

    Trained on the CoT answers when ``data.with_cot`` (true in ``conf/experiment/stage3_explain.yaml``; false: the
    levels only, the w/o-CoT ablation). The test generates each explanation, parses its prompt-completion verdict
    (completion accuracy over the overall subset's test split) and reads the overall level's probabilities after
    the explanation (Q-Align), scored against the overall MOS on every test sample and, apart, on those whose
    prompt completion is 3 (§5.1, Table 3). Explanations go to ``explanations.jsonl``.

    ``cot_samples`` > 0 (self-consistency; the paper: 0, greedy only) also samples that many explanations at
    ``cot_temperature`` per question: the score is the mean readout over all of them, the verdict their vote, the
    recorded explanation the greedy one (:func:`~epaiqa.lmm.explain.explain_and_score`; rows add ``pred_greedy``
    and ``completion_votes``, e.g. ``3,3,-``: each explanation's verdict, the greedy one's first, - where none).
    Sampling is seeded by ``cot_seed`` and the batch's index.
    """

    STAGE = "explain"

    def __init__(
        self, *args: Any, cot_samples: int = 0, cot_temperature: float = 1.0, cot_seed: int = 0, **kwargs: Any
    ) -> None:
        if not (isinstance(cot_samples, int) and cot_samples >= 0):
            raise ConfigError(f"model.cot_samples must be an integer >= 0, got {cot_samples!r}")
        if not (isinstance(cot_temperature, int | float) and cot_temperature > 0):
            raise ConfigError(f"model.cot_temperature must be > 0, got {cot_temperature!r}")
        super().__init__(*args, **kwargs)
        self.hparams.update(cot_samples=cot_samples, cot_temperature=cot_temperature, cot_seed=cot_seed)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        convs, images = batch["conversations"], batch["images"]
        hp = self.hparams
        readouts = explain_and_score(
            self.model,
            self.processor,
            convs,
            images,
            hp["max_new_tokens"],
            hp["cot_samples"],
            hp["cot_temperature"],
            seed=hp["cot_seed"] + batch_idx,
        )
        for sample, conv, out in zip(batch["samples"], convs, readouts, strict=True):
            row = {
                "id": sample.id,
                "task": "overall",
                "edit_type": sample.edit_type,
                "completion": completion_level(sample),
                "completion_pred": out.completion,
                "mos": sample.score("overall"),
                "pred": out.score,
                "wrote_level_sentence": out.wrote_level_sentence,
                "prompt": sample.prompt,
                "explanation": out.explanation,
                "reference_answer": answer_text(conv),
            }
            if hp["cot_samples"]:
                votes = ",".join("-" if v is None else str(v) for v in out.votes)  # "3,3,-": one CSV cell
                row |= {"pred_greedy": out.greedy_score, "completion_votes": votes}
            self.add_rows([row])

    def summarise_rows(self, rows: list[dict[str, Any]]) -> dict[str, TaskResult]:
        """The overall task (all samples; the completion-3 subset apart, §5.1) and prompt-completion accuracy."""
        n = len(rows)
        completion = {
            "n": n,
            "accuracy": _mean([float(r["completion_pred"] == r["completion"]) for r in rows]),
            "parse_failure_rate": _mean([float(r["completion_pred"] is None) for r in rows]),
            "level_sentence_rate": _mean([float(r["wrote_level_sentence"]) for r in rows]),
        }
        return {"overall": correlation_result(rows), "completion": TaskResult(completion)}
