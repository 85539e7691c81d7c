"""(k) ``mini``'s stage-2 training step with and without each CPU speed lever, one at a time.

The project's own stage-2 module (``experiment=stage2_mixed model/backbone=mini``: the recipe's 8 layers, LoRA, the
tower frozen up to its last stage, soft level targets), one optimiser step of a real mixed batch of 4 (the
processor, the loss, backward, AdamW), in bf16 autocast where the CPU computes bf16 (``trainer.precision=auto``)
else fp32. Each row: the step with one lever changed / the step as ``before`` builds it (SDPA attention, LoRA
dropout 0.05, no tower cache). The tower cache's row is the step from the second epoch on (every view a hit).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from benchmarks.common import Result, alternate, demo_root, ratio_result

NAME = "recipe"
BEFORE = [
    "model.backbone.attn_implementation=sdpa",
    "model.lora.dropout=0.05",
    "model.backbone.tower_cache=0",
]
#: each lever: the overrides that differ from ``before``
LEVERS = {
    "eager attention": ["model.backbone.attn_implementation=eager"],
    "no LoRA dropout": ["model.lora.dropout=0.0"],
    "tower cache (hits)": ["model.backbone.tower_cache=10000"],
}
LEVERS["all three"] = [o for extra in LEVERS.values() for o in extra]
#: the two levers that compute the same numbers up to rounding, together
LEVERS["eager + tower cache"] = [*LEVERS["eager attention"], *LEVERS["tower cache (hits)"]]


def _module(root: Path, overrides: list[str]) -> tuple[Any, Any, Any]:
    """The stage-2 module, its optimiser and a training batch of 4 from the demo set."""
    import torch
    from hydra import compose, initialize_config_dir

    from benchmarks.lmm_common import CONF, backbone_spec
    from epaiqa.runs import build, register_resolvers

    register_resolvers()
    cache = backbone_spec("mini")["cache_dir"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=stage2_mixed",
                "model/backbone=mini",
                f"data.root={root}",
                "data.batch_size=4",
                f"model.backbone.cache_dir={cache}",
                *overrides,
            ],
        )
    data = build(cfg.data)
    data.prepare_data()
    data.setup("fit")
    module = build(cfg.model)
    module.train()
    optimizer = torch.optim.AdamW(module.param_groups(), lr=1e-6)
    return module, optimizer, next(iter(data.train_dataloader()))


def run(quick: bool = False, repeats: int | None = None, root: Path | None = None, **_: Any) -> list[Result]:
    """One row per lever: its step time / the step without it."""
    import torch

    from epaiqa.lmm.instructions import encode_supervised
    from epaiqa.precision import cpu_bf16_flag

    root = root or demo_root()
    flag = cpu_bf16_flag()
    sides = {"before": BEFORE, **{name: [*BEFORE, *extra] for name, extra in LEVERS.items()}}
    built = {name: _module(root, overrides) for name, overrides in sides.items()}

    def step(name: str) -> None:
        module, optimizer, batch = built[name]
        context = torch.autocast("cpu", dtype=torch.bfloat16) if flag else contextlib.nullcontext()
        with context:
            inputs = encode_supervised(module.processor, batch["conversations"], batch["images"])
            loss = module.supervised_loss(inputs, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = alternate({name: lambda n=name: step(n) for name in sides}, repeats=repeats or (2 if quick else 6))
    precision = f"bf16 autocast ({flag})" if flag else "fp32"
    return [
        ratio_result(
            NAME,
            f"mini: stage-2 training step, {lever} / before",
            times,
            lever,
            "before",
            per=f"one step of 4, {precision}",
        )
        for lever in LEVERS
    ]
