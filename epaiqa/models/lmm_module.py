"""The EPAIQA LMM stages as LightningModules: stage 1 grounding (§4.1) and stage 2 scoring (§4.2).

Every stage is supervised fine-tuning on appendix-E question/answer pairs (loss on the answer only), its
own run, chained by ``init_from`` (weights of the previous stage's checkpoint). Stage 1 tests by
generating the box and parsing it (IoU, centre error, parse failures); stage 2 scores every test sample
in one forward pass — softmax over the five level tokens' logits at the answer position, weighted 1..5 —
and reports SRCC/PLCC per task and edit type; ``train=false`` gives the zero-shot (q-align) rows.
Stage 3 (explanations) is not wired yet.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch

from epaiqa.errors import ConfigError
from epaiqa.eval.metrics import correlations_by_edit_type
from epaiqa.lmm.backbones import build_tiny_llava_onevision, load_backbone
from epaiqa.lmm.grounding import centre_error, iou, parse_bbox
from epaiqa.lmm.instructions import (
    ANSWER_TEMPLATES,
    encode_supervised,
    grounding_instruction,
    harmony_instruction,
    naturalness_instruction,
    prompt_only,
    tokenizer_of,
)
from epaiqa.lmm.scoring import score


class EPAIQAStage(L.LightningModule):
    """What every stage shares: the backbone (``tiny`` offline, or a hub id / local path), ``init_from``."""

    def __init__(
        self,
        backbone: str = "tiny",
        path: str | None = None,
        dtype: str = "float32",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        with_cot: bool = False,
        reference: bool = False,
        init_from: str | None = None,
        max_new_tokens: int = 40,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if backbone == "tiny":
            self.model, self.processor = build_tiny_llava_onevision(seed=0)
        else:
            self.model, self.processor = load_backbone(path or backbone, dtype=dtype)
        self.model.train()  # from_pretrained leaves eval mode; Lightning switches modes per loop from here
        if init_from is not None:
            self.load_stage(init_from)
        self.test_results_by_task: dict[str, dict[str, Any]] = {}
        self.test_predictions: list[dict[str, Any]] = []
        self._outputs: list[dict[str, Any]] = []
        self.metric_prefix = "test"

    def load_stage(self, checkpoint: str) -> None:
        """Take the weights (only) of a previous stage's checkpoint."""
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.init_from: {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        self.model.load_state_dict(weights)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches hold samples, not tensors: the processor's tensors are moved when they are made."""
        return batch

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        convs, images = self._instructions(batch)
        inputs = encode_supervised(self.processor, convs, images).to(self.device)
        loss = self.model(**inputs, use_cache=False).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(convs))
        return loss

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def _instructions(self, batch: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        raise NotImplementedError


class EPAIQAScoring(EPAIQAStage):
    """Stage 2: level training on harmony / naturalness pairs, Q-Align scoring at test time."""

    def _instructions(self, batch: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        convs, images = [], []
        for sample, task in zip(batch["samples"], batch["tasks"], strict=True):
            if task == "harmony":
                ins = harmony_instruction(sample, batch["root"], self.hparams["with_cot"], self.hparams["reference"])
            else:
                ins = naturalness_instruction(sample, batch["root"], self.hparams["with_cot"])
            convs.append(ins.conversation)
            images.append(ins.images)
        return convs, images

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        convs, images = self._instructions(batch)
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, task in enumerate(batch["tasks"]):
            by_task[task].append(i)
        for task, rows in by_task.items():
            scores = score(
                self.model, self.processor, [convs[i] for i in rows], [images[i] for i in rows], ANSWER_TEMPLATES[task]
            )
            for i, value in zip(rows, scores.tolist(), strict=True):
                sample = batch["samples"][i]
                self._outputs.append(
                    {
                        "id": sample.id,
                        "task": task,
                        "edit_type": sample.edit_type,
                        "mos": sample.score(task),
                        "pred": value,
                    }
                )

    def on_test_epoch_end(self) -> None:
        self.test_predictions = list(self._outputs)
        self.test_results_by_task = {}
        for task in sorted({o["task"] for o in self._outputs}):
            rows = [o for o in self._outputs if o["task"] == task]
            preds = torch.tensor([o["pred"] for o in rows])
            mos = torch.tensor([o["mos"] for o in rows])
            self.test_results_by_task[task] = correlations_by_edit_type(preds, mos, [o["edit_type"] for o in rows])
            for key in ("srcc", "plcc"):
                value = self.test_results_by_task[task]["all"][key]
                self.log(f"{self.metric_prefix}/{task}_{key}", float("nan") if value is None else value)


class EPAIQAGrounding(EPAIQAStage):
    """Stage 1: source + edited image → "(x, y, z1, z2)"; the LLM frozen, projector (and vision) trained."""

    def __init__(self, *args: Any, freeze_llm: bool = True, train_vision: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hparams.update(freeze_llm=freeze_llm, train_vision=train_vision)
        for name, param in self.model.named_parameters():
            if freeze_llm and ("language_model" in name or "lm_head" in name):
                param.requires_grad = False
            if not train_vision and "vision_tower" in name:
                param.requires_grad = False
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigError("stage 1 trains nothing: unfreeze the LLM or the vision tower")

    def _instructions(self, batch: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        pairs = [grounding_instruction(sample, batch["root"]) for sample in batch["samples"]]
        return [p.conversation for p in pairs], [p.images for p in pairs]

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        convs, images = self._instructions(batch)
        tokenizer = tokenizer_of(self.processor)
        side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues every row
        try:
            prompts = [
                self.processor.apply_chat_template(prompt_only(c), add_generation_prompt=True, tokenize=False)
                for c in convs
            ]
            inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt").to(self.device)
        finally:
            tokenizer.padding_side = side
        out = self.model.generate(**inputs, max_new_tokens=self.hparams["max_new_tokens"], do_sample=False)
        texts = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for sample, text in zip(batch["samples"], texts, strict=True):
            box = parse_bbox(text)
            self._outputs.append(
                {
                    "id": sample.id,
                    "task": "grounding",
                    "edit_type": sample.edit_type,
                    "answer": text.strip(),
                    "iou": None if box is None else iou(box, sample.bbox),
                    "centre_error": None if box is None else centre_error(box, sample.bbox),
                }
            )

    def on_test_epoch_end(self) -> None:
        self.test_predictions = list(self._outputs)
        parsed = [o for o in self._outputs if o["iou"] is not None]
        n = len(self._outputs)
        metrics: dict[str, Any] = {
            "n": n,
            "iou": sum(o["iou"] for o in parsed) / len(parsed) if parsed else None,
            "centre_error": sum(o["centre_error"] for o in parsed) / len(parsed) if parsed else None,
            "parse_failure_rate": (n - len(parsed)) / n if n else None,
        }
        self.test_results_by_task = {"grounding": metrics}
        for key in ("iou", "centre_error", "parse_failure_rate"):
            self.log(f"{self.metric_prefix}/grounding_{key}", float("nan") if metrics[key] is None else metrics[key])
