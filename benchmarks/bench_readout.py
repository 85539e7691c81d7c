"""(d) Stage 3's overall-level readout after a generated explanation: reusing the generation's KV cache vs re-encoding.

Each repetition generates the explanations of a batch of stage-3 questions (source + edited image + prompt,
appendix E.3) once, with :func:`epaiqa.lmm.generation.generate` (untimed; its seconds are kept), then reads the
overall level after each explanation's answer prefix (:func:`epaiqa.lmm.explain.overall_prefix`) both ways:

- reuse: :func:`epaiqa.lmm.scoring.score_continuations` — the cache cropped back to the prompts, one forward over
  the prefixes' tokens;
- re-encode: :func:`epaiqa.lmm.scoring.score` with ``answer_prefixes`` — the processor and a full forward over
  images, question and prefix again (the previous way).

Rows: the readout alone, and the whole stage-3 scoring (generation + readout; the generation's seconds are the
same on both sides, so they are added to each side's readout). The largest difference between the two ways'
scores is kept as a check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import Result, Side, alternate, demo_root, demo_samples, ratio_result
from benchmarks.lmm_common import load_backbone, questions

NAME = "readout"


def _one_backbone(backbone: str, quick: bool, repeats: int | None, root: Path | None) -> list[Result]:
    import time

    from epaiqa.lmm.explain import overall_prefix
    from epaiqa.lmm.generation import generate
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES
    from epaiqa.lmm.scoring import score, score_continuations

    root = root or demo_root()
    batch, new_tokens = 4, 64 if quick else 160
    repeats = repeats or (3 if quick else 5)
    template = ANSWER_TEMPLATES["overall"]
    convs, images = questions("explain", demo_samples(root, batch, "overall"), root)
    model, processor = load_backbone(backbone)
    state: dict[str, Any] = {"generation_s": [], "diff": 0.0}

    def fresh_generation() -> Any:
        start = time.perf_counter()
        generation = generate(model, processor, convs, images, new_tokens)
        state["generation_s"].append(time.perf_counter() - start)
        state["prefixes"] = [overall_prefix(t)[0] for t in generation.texts]
        return generation

    def reuse(generation: Any) -> None:
        state["reuse"] = score_continuations(model, processor, generation, state["prefixes"], template)

    def reencode(_: Any) -> None:
        state["reencode"] = score(model, processor, convs, images, template, answer_prefixes=state["prefixes"])
        state["diff"] = max(state["diff"], float((state["reencode"] - state["reuse"]).abs().max()))

    times = alternate(
        {"reuse": Side(reuse, setup=fresh_generation), "reencode": Side(reencode)}, repeats=repeats, warmup=1
    )
    generation_s = state["generation_s"][1:]  # the warm-up round's generation is not counted
    per = f"{batch} samples, {new_tokens} new tokens"
    total = {
        "reuse": [g + t for g, t in zip(generation_s, times["reuse"], strict=True)],
        "reencode": [g + t for g, t in zip(generation_s, times["reencode"], strict=True)],
        "generation": generation_s,
    }
    return [
        ratio_result(
            NAME,
            f"{backbone}: overall readout, re-encode / reuse the KV cache (speed-up)",
            times,
            "reencode",
            "reuse",
            per=per,
            max_score_difference=state["diff"],
            mean_prefix_chars=sum(map(len, state["prefixes"])) / len(state["prefixes"]),
        ),
        ratio_result(
            NAME, f"{backbone}: generation + readout, re-encode / reuse (speed-up)", total, "reencode", "reuse", per=per
        ),
    ]


def run(
    quick: bool = False,
    backbones: list[str] | None = None,
    repeats: int | None = None,
    root: Path | None = None,
    **_: Any,
) -> list[Result]:
    return [row for b in backbones or ["tiny", "mini"] for row in _one_backbone(b, quick, repeats, root)]
