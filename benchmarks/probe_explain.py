"""What does stage 3's overall word follow: the image, or the explanation before it? Readouts of a trained stage 3.

``python -m benchmarks.probe_explain RUN [--limit 200]`` loads a finished stage-3 run (its resolved
``config.yaml`` and ``checkpoints/last.ckpt``), asks its validation questions (never the test split) and reads the
overall level (Q-Align, as the test pass does) at the same answer position after three different explanations:

- *generated*: the model's own greedy explanation (what the test pass scores);
- *reference*: the sample's reference explanation, teacher-forced (its verdict and facets true to the image);
- *none*: no explanation, the level sentence straight after the question.

It prints each readout's SRCC against the overall MOS on every validation question and on those whose prompt
completion is 3 (§5.1), the generated verdicts' accuracy and the majority rate. A reference readout far above the
generated one says the overall word follows the explanation's facets, so the facets the model writes are what
limits its score; one no better says the word reads the image and the facets matter little. Not part of the
suite: a measurement for the ``mini`` recipe (issue 22).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: the readouts, in the order printed
READOUTS = ("generated", "reference", "none")


def readouts(module: Any, dataset: Any, limit: int, max_new_tokens: int) -> dict[str, Any]:
    """Per validation question (up to ``limit``): the three readouts, the MOS, the completion and its verdict."""
    import numpy as np

    from epaiqa.lmm.explain import OVERALL_HEAD, explain_and_score, overall_prefix
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES, answer_text, completion_level
    from epaiqa.lmm.scoring import score

    model, processor = module.model, module.processor
    template = ANSWER_TEMPLATES["overall"]
    out: dict[str, list[Any]] = {k: [] for k in (*READOUTS, "mos", "completion", "verdict")}
    for start in range(0, min(limit, len(dataset)), 8):
        items = [dataset[i] for i in range(start, min(start + 8, limit, len(dataset)))]
        convs, images = [it["conversation"] for it in items], [it["images"] for it in items]
        explained = explain_and_score(model, processor, convs, images, max_new_tokens)
        out["generated"] += [e.score for e in explained]
        out["verdict"] += [e.completion for e in explained]
        references = [overall_prefix(answer_text(c))[0] for c in convs]
        out["reference"] += score(model, processor, convs, images, template, references).tolist()
        out["none"] += score(model, processor, convs, images, template, [OVERALL_HEAD] * len(items)).tolist()
        out["mos"] += [float(it["sample"].score("overall")) for it in items]
        out["completion"] += [completion_level(it["sample"]) for it in items]
        print(f"  {len(out['mos'])} questions read", flush=True)
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def main() -> None:
    import torch
    from scipy.stats import spearmanr

    from benchmarks.lmm_common import load_run
    from epaiqa.precision import choose_precision

    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_explain", description=__doc__)
    parser.add_argument("run", help="a finished stage-3 run folder")
    parser.add_argument("--limit", type=int, default=200, help="validation questions read")
    args = parser.parse_args()
    cfg, module, data = load_run(args.run)
    bf16 = str(choose_precision(cfg.trainer.precision, "cpu")).startswith("bf16")  # the run's autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        values = readouts(module, data.datasets["val"], args.limit, int(cfg.model.max_new_tokens))
    full = values["completion"] == 3
    print(f"{args.run}: {len(values['mos'])} validation questions, {int(full.sum())} with completion 3")
    verdicts = (values["verdict"] == values["completion"]).mean()
    print(f"  generated verdicts' accuracy {verdicts:.3f} (majority rate {full.mean():.3f})")
    for name in READOUTS:
        every = spearmanr(values[name], values["mos"])[0]
        on_full = spearmanr(values[name][full], values["mos"][full])[0]
        print(f"  overall readout after the {name} explanation: SRCC {every:.3f}, on completion 3 {on_full:.3f}")


if __name__ == "__main__":
    main()
