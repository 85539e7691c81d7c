"""One LightningModule that trains and tests any registered baseline on a scoring task."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef

from epaiqa.baselines import baseline_info, create_baseline
from epaiqa.data.schema import SCORE_RANGES
from epaiqa.distributed import gather_rows
from epaiqa.errors import ConfigError
from epaiqa.eval.metrics import correlations_by_edit_type

LOSSES = ("mse", "l1", "plcc", "mse+plcc")


def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − Pearson correlation of a batch (scale- and shift-free)."""
    p, t = pred - pred.mean(), target - target.mean()
    return 1.0 - (p * t).sum() / (p.norm() * t.norm() + 1e-8)


class IQARegressor(L.LightningModule):
    """Train a baseline to predict the task's MOS, normalised to [0, 1] by the task's scale.

    Tests write per-sample predictions and SRCC/PLCC overall and per edit type to
    :attr:`test_results` (see :func:`epaiqa.train.train`).
    """

    def __init__(
        self,
        baseline: str,
        task: str = "harmony",
        pretrained: bool = False,
        weights_path: str | None = None,
        baseline_kwargs: dict[str, Any] | None = None,
        loss: str = "mse",
        lr: float = 3e-4,
        weight_decay: float = 1e-4,
        scheduler: str = "cosine",
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
        self.net = create_baseline(
            baseline, pretrained=pretrained, weights_path=weights_path, **(baseline_kwargs or {})
        )
        self.lo, self.hi = SCORE_RANGES[task]
        self.val_srcc, self.val_plcc, self.val_mse = SpearmanCorrCoef(), PearsonCorrCoef(), MeanSquaredError()
        self.metric_prefix = "test"
        self._test_outputs: list[dict[str, Any]] = []
        self.test_results: dict[str, Any] | None = None
        self.test_predictions: list[dict[str, Any]] = []

    def forward(self, img: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted MOS on the task's scale."""
        return self.lo + (self.hi - self.lo) * self.net(img, ref)

    def _normalised(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        pred = self.net(batch["img"], batch.get("ref"))
        return pred, (batch["mos"] - self.lo) / (self.hi - self.lo)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        name = self.hparams["loss"]
        if name == "mse":
            return F.mse_loss(pred, target)
        if name == "l1":
            return F.l1_loss(pred, target)
        if name == "plcc":
            return plcc_loss(pred, target)
        return F.mse_loss(pred, target) + plcc_loss(pred, target)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        branches = getattr(self.net.net, "branch_scores", None)
        if branches is not None and not self.info.reference:
            # multi-branch models (JOINT) train every branch on the label; the fixed combination predicts
            target = (batch["mos"] - self.lo) / (self.hi - self.lo)
            scores = branches(batch["img"])
            loss = sum(self._loss(scores[:, i], target) for i in range(scores.shape[1]))
        else:
            pred, target = self._normalised(batch)
            loss = self._loss(pred, target)
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
            self.log(f"val/{name}", torch.nan_to_num(value, nan=0.0), prog_bar=name == "srcc")
            metric.reset()

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = self(batch["img"], batch.get("ref")).detach().float().cpu()
        self._test_outputs.append(
            {"pred": pred, "mos": batch["mos"].cpu(), "id": list(batch["id"]), "edit_type": list(batch["edit_type"])}
        )

    def on_test_epoch_end(self) -> None:
        rows = [
            {"id": i, "edit_type": t, "mos": float(m), "pred": float(p)}
            for o in self._test_outputs
            for i, t, m, p in zip(o["id"], o["edit_type"], o["mos"].tolist(), o["pred"].tolist(), strict=True)
        ]
        self.test_predictions = gather_rows(rows, key=("id",))  # every process's shard, when distributed
        preds = torch.tensor([r["pred"] for r in self.test_predictions])
        mos = torch.tensor([r["mos"] for r in self.test_predictions])
        self.test_results = correlations_by_edit_type(preds, mos, [r["edit_type"] for r in self.test_predictions])
        for key in ("srcc", "plcc"):
            value = self.test_results["all"][key]
            self.log(f"{self.metric_prefix}/{key}", float("nan") if value is None else value)

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
