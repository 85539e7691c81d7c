"""One LightningModule that trains and tests any registered baseline on a scoring task."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef

from epaiqa.baselines import baseline_info, create_baseline
from epaiqa.data.schema import SCORE_RANGES
from epaiqa.errors import ConfigError
from epaiqa.models.task import BaseTask

LOSSES = ("mse", "l1", "plcc", "mse+plcc")


def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − Pearson correlation of a batch (scale- and shift-free)."""
    p, t = pred - pred.mean(), target - target.mean()
    return 1.0 - (p * t).sum() / (p.norm() * t.norm() + 1e-8)


def regression_loss(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One of :data:`LOSSES` between predictions and targets on [0, 1]."""
    if name == "mse":
        return F.mse_loss(pred, target)
    if name == "l1":
        return F.l1_loss(pred, target)
    if name == "plcc":
        return plcc_loss(pred, target)
    return F.mse_loss(pred, target) + plcc_loss(pred, target)


class IQARegressor(BaseTask):
    """Train a baseline to predict the task's MOS, normalised to [0, 1] by the task's scale.

    The baseline computes its own training loss (:meth:`~epaiqa.baselines.common.ScoreModel.training_loss`:
    JOINT trains each branch on the label); tests hand one row per sample to :class:`BaseTask`.
    """

    def __init__(
        self,
        baseline: str,
        task: str = "harmony",
        pretrained: bool = False,
        weights_path: str | None = None,
        pretrained_backbone: bool | str = False,
        baseline_kwargs: dict[str, Any] | None = None,
        loss: str = "mse",
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        scheduler: str = "cosine",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"model.loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if scheduler not in ("cosine", "none"):
            raise ConfigError(f"model.scheduler must be cosine or none, got {scheduler!r}")
        if task not in SCORE_RANGES:
            raise ConfigError(f"unknown task {task!r}")
        self.save_hyperparameters()
        self.info = baseline_info(baseline)
        if pretrained_backbone == "auto":  # ImageNet Lite0 where the architecture takes a CNN backbone
            pretrained_backbone = self.info.pretrained_backbone is not None
        if not isinstance(pretrained_backbone, bool):
            raise ConfigError(f"baseline.pretrained_backbone must be true, false or auto, got {pretrained_backbone!r}")
        self.net = create_baseline(
            baseline,
            pretrained=pretrained,
            weights_path=weights_path,
            pretrained_backbone=pretrained_backbone,
            **(baseline_kwargs or {}),
        )
        if channels_last:  # NHWC convolutions (BENCHMARKS.md (g))
            self.net = self.net.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.lo, self.hi = SCORE_RANGES[task]
        self.val_srcc, self.val_plcc, self.val_mse = SpearmanCorrCoef(), PearsonCorrCoef(), MeanSquaredError()

    def forward(self, img: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted MOS on the task's scale."""
        return self.lo + (self.hi - self.lo) * self.net(*self._inputs(img, ref))

    def _inputs(self, img: torch.Tensor, ref: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.channels_last:
            return img, ref
        nhwc = torch.channels_last
        return img.contiguous(memory_format=nhwc), None if ref is None else ref.contiguous(memory_format=nhwc)

    def _normalised(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        pred = self.net(*self._inputs(batch["img"], batch.get("ref")))
        return pred, (batch["mos"] - self.lo) / (self.hi - self.lo)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return regression_loss(self.hparams["loss"], pred, target)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        target = (batch["mos"] - self.lo) / (self.hi - self.lo)
        loss = self.net.training_loss(*self._inputs(batch["img"], batch.get("ref")), target, self._loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(target))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred, target = self._normalised(batch)
        self.val_srcc.update(pred.float(), target)
        self.val_plcc.update(pred.float(), target)
        self.val_mse.update(pred.float(), target)

    def on_validation_epoch_end(self) -> None:
        for name, metric in (("srcc", self.val_srcc), ("plcc", self.val_plcc), ("mse", self.val_mse)):
            value = metric.compute()
            task = self.hparams["task"]
            self.log(f"val/{task}/{name}", torch.nan_to_num(value, nan=0.0), prog_bar=name == "srcc")
            metric.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self(batch["img"], batch.get("ref")).detach().float().cpu().tolist()
        completion = batch.get("completion")
        self.add_rows(
            [
                {
                    "id": sample_id,
                    "task": self.hparams["task"],
                    "edit_type": edit_type,
                    "mos": float(mos),
                    "pred": float(value),
                    **({} if completion is None else {"completion": int(completion[i])}),
                }
                for i, (sample_id, edit_type, mos, value) in enumerate(
                    zip(batch["id"], batch["edit_type"], batch["mos"].tolist(), pred, strict=True)
                )
            ]
        )

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            [p for p in self.parameters() if p.requires_grad],
            lr=self.hparams["lr"],
            weight_decay=self.hparams["weight_decay"],
        )
        if self.hparams["scheduler"] == "none":
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
