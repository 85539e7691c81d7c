"""(g) channels_last (NHWC) vs the default NCHW layout: one training step of every baseline, as the matrix trains it.

Each baseline is built as ``profile=demo_matrix`` builds it (its ``conf/baseline/<name>.yaml`` demo arguments,
``pretrained_backbone=auto``: the ImageNet Lite0 where the architecture takes one) twice with the same weights:
one ``IQARegressor(channels_last=True)``, one with ``False``. A repetition is one training step on the same random
batch (96 px, batch 32: the matrix's; FR models also get a reference image): the model's own loss, backward, AdamW.
The row is channels_last time / NCHW time; below 1 means NHWC is faster (``conf/model/iqa.yaml`` turns it on).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import ROOT, Result, alternate, ratio_result

NAME = "channels_last"
SIZE, BATCH = 96, 32


def _demo_kwargs(name: str) -> dict[str, Any]:
    """The baseline's demo-profile arguments, with ``${data.image_size}`` resolved to the matrix's size."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "baseline" / f"{name}.yaml")
    cfg.data = {"image_size": SIZE}
    kwargs = OmegaConf.select(cfg, "baseline.demo_kwargs")
    return {} if kwargs is None else OmegaConf.to_container(kwargs, resolve=True)


def _step(module: Any, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> None:
    """One training step: the module's own loss, backward, optimizer step."""
    loss = module.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def run(quick: bool = False, repeats: int | None = None, **_: Any) -> list[Result]:
    from epaiqa.baselines import baseline_info, list_baselines
    from epaiqa.models.iqa_module import IQARegressor

    repeats = repeats or (3 if quick else 6)
    results = []
    for name in list_baselines():
        gen = torch.Generator().manual_seed(0)
        batch = {"img": torch.rand(BATCH, 3, SIZE, SIZE, generator=gen)}
        batch["mos"] = 1 + 4 * torch.rand(BATCH, generator=gen)
        if baseline_info(name).reference:
            batch["ref"] = torch.rand(BATCH, 3, SIZE, SIZE, generator=gen)
        sides = {}
        for layout, nhwc in (("nchw", False), ("channels_last", True)):
            torch.manual_seed(0)
            module = IQARegressor(
                name, "harmony", pretrained_backbone="auto", baseline_kwargs=_demo_kwargs(name), channels_last=nhwc
            )
            module.log = lambda *a, **k: None  # outside a Trainer: nothing to log to
            module.train()
            optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-4)
            sides[layout] = lambda m=module, o=optimizer, b=batch: _step(m, o, b)
        times = alternate(sides, repeats=repeats, warmup=1)
        backbone = "Lite0" if baseline_info(name).pretrained_backbone is not None else "own"
        results.append(
            ratio_result(
                NAME,
                f"{name} ({backbone} backbone) train step: channels_last / NCHW",
                times,
                "channels_last",
                "nchw",
                per=f"one step, batch {BATCH}, {SIZE}²",
            )
        )
    return results
