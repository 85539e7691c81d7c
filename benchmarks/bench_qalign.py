"""(c) Q-Align scoring in one forward pass, batched, vs one sample at a time vs generate-and-parse.

The same harmony questions (appendix E.2, the demo run's context view) of a batch of demo samples:

- one pass: :func:`epaiqa.lmm.scoring.score` on the batch — one forward, the five level tokens' logits at the
  answer position, softmax · (1..5);
- one at a time: the same call once per sample;
- generate-and-parse: :func:`epaiqa.lmm.generation.generate` on the batch (greedy, ``max_new_tokens`` = the
  longest answer "Harmony level is: excellent." in tokens, plus its end-of-turn token), then the level word
  parsed from the text — what scoring by asking the model for its answer costs.

Every side includes the processor (image preprocessing, chat template, tokenisation); the questions' images are
loaded once, outside the timing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from benchmarks.common import Result, alternate, demo_root, demo_samples, ratio_result
from benchmarks.lmm_common import load_backbone, questions

NAME = "qalign"


def answer_tokens(processor: Any, template: str) -> int:
    """Tokens of the longest answer of ``template`` (any level word), plus one for the end-of-turn token."""
    from epaiqa.data.levels import LEVELS
    from epaiqa.lmm.instructions import tokenizer_of

    tokenizer = tokenizer_of(processor)
    return 1 + max(len(tokenizer(template.format(w), add_special_tokens=False)["input_ids"]) for w in LEVELS)


def parse_level(text: str) -> float | None:
    """The first level word of a generated answer as 1..5 (None if there is none)."""
    from epaiqa.data.levels import LEVELS

    match = re.search(r"\b(" + "|".join(LEVELS) + r")\b", text, re.IGNORECASE)
    return None if match is None else float(LEVELS.index(match.group(1).lower()) + 1)


def run(
    quick: bool = False,
    backbones: list[str] | None = None,
    repeats: int | None = None,
    root: Path | None = None,
    **_: Any,
) -> list[Result]:
    from epaiqa.lmm.generation import generate
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES
    from epaiqa.lmm.scoring import score

    root = root or demo_root()
    batch = 8
    repeats = repeats or (3 if quick else 5)
    template = ANSWER_TEMPLATES["harmony"]
    samples = demo_samples(root, batch, "harmony")
    convs, images = questions("harmony", samples, root)
    results = []
    for backbone in backbones or ["tiny", "mini"]:
        model, processor = load_backbone(backbone)
        tokens = answer_tokens(processor, template)

        def one_pass(model: Any = model, processor: Any = processor) -> None:
            score(model, processor, convs, images, template)

        def one_at_a_time(model: Any = model, processor: Any = processor) -> None:
            for conv, imgs in zip(convs, images, strict=True):
                score(model, processor, [conv], [imgs], template)

        def generate_parse(model: Any = model, processor: Any = processor, tokens: int = tokens) -> None:
            for text in generate(model, processor, convs, images, tokens).texts:
                parse_level(text)

        times = alternate(
            {"one_pass": one_pass, "one_at_a_time": one_at_a_time, "generate_parse": generate_parse},
            repeats=repeats,
            warmup=1,
        )
        per = f"{batch} samples"
        goal, check = ("≥ 5", lambda r: r >= 5) if backbone == "mini" else ("", None)
        results.append(
            ratio_result(
                NAME,
                f"{backbone}: batched generate-and-parse ({tokens} new tokens) / batched one-pass (speed-up)",
                times,
                "generate_parse",
                "one_pass",
                per=per,
                goal=goal,
                check=check,
                new_tokens=tokens,
            )
        )
        results.append(
            ratio_result(
                NAME,
                f"{backbone}: one at a time / batched one-pass (speed-up)",
                times,
                "one_at_a_time",
                "one_pass",
                per=per,
            )
        )
        del model, processor
    return results
