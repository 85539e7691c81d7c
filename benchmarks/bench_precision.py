"""(i) A training step of each LMM stage in bf16 autocast vs fp32 (weights fp32 both ways), on this CPU.

What ``trainer.precision=auto`` decides on (:mod:`epaiqa.precision`): bf16 autocast pays where the CPU computes
bf16 natively (AMX-BF16 / AVX512-BF16: NOTES.md measured 2.5–2.8× faster mini steps) and costs where it emulates
it. Each repetition is one optimiser step of the stage's batch (the processor, the answer-only loss, backward,
AdamW on the trained parameters as the ``mini`` recipe trains them), the two precisions alternating. The row says
which bf16 instructions the CPU has (``cpu_bf16_flag``), so the ratio can be read against the choice ``auto`` made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import Result, alternate, demo_root, demo_samples, ratio_result
from benchmarks.lmm_common import load_backbone, questions

NAME = "precision"
STAGES = ("grounding", "harmony", "explain")


def _batch(stage: str, root: Path, batch: int) -> tuple[list[Any], list[Any]]:
    from epaiqa.lmm.instructions import grounding_instruction

    if stage == "grounding":
        built = [grounding_instruction(s, root) for s in demo_samples(root, batch)]
        return [b.conversation for b in built], [b.images for b in built]
    return questions(stage, demo_samples(root, batch, "overall" if stage == "explain" else stage), root)


def _one_backbone(backbone: str, quick: bool, repeats: int | None, root: Path | None) -> list[Result]:
    import contextlib

    import torch

    from epaiqa.lmm.instructions import encode_supervised
    from epaiqa.lmm.loss import answer_loss
    from epaiqa.precision import cpu_bf16_flag

    root = root or demo_root()
    batch, repeats = (2, repeats or 2) if quick else (4, repeats or 3)
    model, processor = load_backbone(backbone)
    model.train()
    trained = [p for n, p in model.named_parameters() if "multi_modal_projector" in n or "statistics" in n]
    optimizer = torch.optim.AdamW(trained, lr=1e-6)
    rows = []
    for stage in STAGES if not quick else STAGES[1:2]:
        convs, images = _batch(stage, root, batch)
        inputs = encode_supervised(processor, convs, images)

        def step(bf16: bool, inputs: Any = inputs) -> None:
            context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with context:
                loss = answer_loss(model, inputs)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        times = alternate({"bf16": lambda: step(True), "fp32": lambda: step(False)}, repeats=repeats, warmup=1)
        rows.append(
            ratio_result(
                NAME,
                f"{backbone}: {stage} training step, bf16 autocast / fp32 (time)",
                times,
                "bf16",
                "fp32",
                per=f"one step of {batch}, {int(inputs['input_ids'].shape[1])} tokens",
                note=f"CPU bf16 instructions: {cpu_bf16_flag() or 'none'}",
            )
        )
    return rows


def run(
    quick: bool = False,
    backbones: list[str] | None = None,
    repeats: int | None = None,
    root: Path | None = None,
    **_: Any,
) -> list[Result]:
    """The rows of this benchmark (``mini`` by default: the tiny model's steps are too short to say much)."""
    chosen = [b for b in backbones or ["mini"] if b != "tiny"] or ["mini"]
    return [row for b in chosen for row in _one_backbone(b, quick, repeats, root)]
