"""(a) A baseline as the zoo trains it vs the raw pyiqa arch it wraps: forward pass and training step.

The zoo's side is :class:`~epaiqa.models.iqa_module.IQARegressor` (the registry's model inside its LightningModule);
the raw side is the pyiqa class built with the same arguments and the same weights (copied in).

- forward: ``IQARegressor(img)`` (eval, no grad: the registry's ``ScoreModel`` and the MOS scaling) vs
  ``arch(img)``;
- training step: one step of a Lightning ``Trainer.fit`` (``training_step`` with ``self.log``, the model's own
  AdamW + cosine schedule, Lightning's loop), timed from one ``on_train_batch_start`` to the next by a callback
  (the fit's start-up not counted) vs a plain loop ``mse(arch(img), target).backward(); opt.step()`` over the same
  in-memory batches. Each repetition is a fresh fit / loop of ``steps`` steps whose first step is not counted.

Batch 4 (the demo profile trains at 32): the wrapper's cost per step is fixed, so a small batch shows it
larger, not smaller. TOPIQ: pyiqa's ``CFANet`` freezes its backbone's batch norms after the first pass
(``fix_bn``, meant for ImageNet backbones); the zoo's from-scratch TOPIQ trains them (epaiqa/baselines/topiq.py),
so the zoo's side also does that extra work.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Result, Side, alternate, ratio_result

NAME = "baselines"
GOAL = "≤ 1.05"


def _raw_arch(name: str, wrapped: torch.nn.Module) -> torch.nn.Module:
    """The pyiqa class the registry's ``name`` wraps, built with the same arguments, the wrapper's weights copied."""
    if name == "topiq_nr":
        from pyiqa.archs.topiq_arch import CFANet

        raw = CFANet(semantic_model_name="resnet18", use_ref=False, backbone_pretrain=False, pretrained=False)
    elif name == "wadiqam_nr":
        from pyiqa.archs.wadiqam_arch import WaDIQaM

        raw = WaDIQaM(metric_type="NR", pretrained=False, train_patch_num=16)
    else:
        raise ValueError(name)
    raw.load_state_dict(wrapped.state_dict())
    return raw


#: the baselines compared, with their demo-profile kwargs (conf/baseline/<name>.yaml)
MODELS = {"topiq_nr": {"backbone": "resnet18"}, "wadiqam_nr": {"train_patch_num": 16}}


class _StepClock:
    """A Lightning callback: the time at each ``on_train_batch_start``."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def make(self) -> Any:
        from lightning.pytorch import Callback

        clock = self

        class Clock(Callback):
            def on_train_batch_start(self, *args: Any) -> None:
                clock.starts.append(time.perf_counter())

            def on_train_end(self, *args: Any) -> None:
                clock.starts.append(time.perf_counter())

        return Clock()


def _lightning_steps(module: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean seconds per step of one ``Trainer.fit`` over ``batches`` (first step not counted)."""
    import lightning as L
    from torch.utils.data import DataLoader

    clock = _StepClock()
    module.train()  # Lightning keeps the mode it finds
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[clock.make()],
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    starts = clock.starts
    return (starts[-1] - starts[1]) / (len(starts) - 2)


def _plain_steps(net: torch.nn.Module, batches: list[dict[str, torch.Tensor]], lr: float) -> float:
    """Mean seconds per step of a plain loop (first step not counted): mse, backward, AdamW step."""
    net.train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    starts = []
    for batch in batches:
        starts.append(time.perf_counter())
        pred = net(batch["img"]).reshape(len(batch["mos"]), -1).mean(dim=1)
        loss = F.mse_loss(pred, batch["mos"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    starts.append(time.perf_counter())
    return (starts[-1] - starts[1]) / (len(starts) - 2)


def run(quick: bool = False, repeats: int | None = None, **_: Any) -> list[Result]:
    import logging

    from epaiqa.models.iqa_module import IQARegressor

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    size, batch, steps = 128, 4, 6
    repeats = repeats or (5 if quick else 8)
    forward_repeats = 2 * repeats
    results = []
    for name, kwargs in MODELS.items():
        torch.manual_seed(0)
        module = IQARegressor(name, task="harmony", baseline_kwargs=kwargs, lr=3e-4)
        raw = _raw_arch(name, module.net.net)
        gen = torch.Generator().manual_seed(0)
        batches = [
            {"img": torch.rand(batch, 3, size, size, generator=gen), "mos": 1 + 4 * torch.rand(batch, generator=gen)}
            for _ in range(steps)
        ]
        img = batches[0]["img"]

        def forward_wrapper(module: Any = module, img: torch.Tensor = img) -> None:
            module.eval()
            with torch.no_grad():
                module(img)

        def forward_raw(raw: torch.nn.Module = raw, img: torch.Tensor = img) -> None:
            raw.eval()
            with torch.no_grad():
                raw(img)

        times = alternate({"wrapper": forward_wrapper, "raw": forward_raw}, repeats=forward_repeats, warmup=1)
        results.append(
            ratio_result(
                NAME,
                f"{name} forward: IQARegressor / raw pyiqa arch",
                times,
                "wrapper",
                "raw",
                per=f"batch {batch}, {size}²",
                goal=GOAL,
                check=lambda r: r <= 1.05,
            )
        )
        # the wrapper's targets are normalised MOS, the raw loop's the same numbers: same work either way
        sides = {
            "lightning": Side(lambda _, m=module, b=batches: _lightning_steps(m, b), reports=True),
            "raw": Side(lambda _, n=raw, b=batches: _plain_steps(n, b, 3e-4), reports=True),
        }
        times = alternate(sides, repeats=repeats, warmup=1)
        per = f"one step, batch {batch}, {size}², mean of {steps - 1} steps a repetition"
        results.append(
            ratio_result(
                NAME,
                f"{name} train step: Lightning IQARegressor / raw pyiqa arch in a plain loop",
                times,
                "lightning",
                "raw",
                per=per,
                goal=GOAL,
                check=lambda r: r <= 1.05,
                note="pyiqa's CFANet freezes its backbone's batch norms after the first pass; the zoo trains them"
                if name == "topiq_nr"
                else "",
            )
        )
    return results
