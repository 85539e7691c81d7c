"""Where a trained stage-2 ``mini`` loses a sub-score: ridge probes along the path from the image to the answer.

``python -m benchmarks.probe_path RUN [--task naturalness] [--train 800]`` loads a finished stage-2 run (its
resolved ``config.yaml`` and ``checkpoints/last.ckpt``), asks its training and validation questions of one task as the
test pass does (one forward pass, Q-Align readout), and fits ridge probes on the training questions' activations,
scored on the validation questions (never the test split), at three places: the statistics tokens and the map tokens
as the projector hands them to the LLM, and the LLM's last hidden state at the answer position (where the level
word is read). Beside them: the readout's own SRCC on both parts, the spread of its scores, and its validation SRCC
with the statistics or the map tokens replaced by their batch mean (what it takes from each). A probe that reads the
task well where the readout does not says where it is lost. Not part of the suite: a measurement for the ``mini``
recipe.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def activations(module: Any, dataset: Any, task: str, limit: int, blank: str | None = None) -> dict[str, Any]:
    """Per question of ``task`` (up to ``limit``): statistics / map tokens after the projector, answer state, score.

    ``blank`` ("stats" or "map"): those tokens replaced by their mean over each batch of 8 before the LLM reads
    them, so the score shows what the readout takes from the others.
    """
    import numpy as np
    import torch

    from epaiqa.lmm.instructions import prompt_only
    from epaiqa.lmm.mini import STATISTICS_CHANNELS
    from epaiqa.lmm.scoring import answer_position, level_readout, score_from_logits

    model, processor = module.model, module.processor
    projector = next(m for n, m in model.named_modules() if n.endswith("multi_modal_projector"))
    seen: dict[str, torch.Tensor] = {}

    def keep(module: Any, inputs: Any, tokens: torch.Tensor) -> torch.Tensor:
        maps = tokens.shape[1] - len(STATISTICS_CHANNELS)
        if blank is not None:
            part = slice(maps, None) if blank == "stats" else slice(None, maps)
            tokens = tokens.clone()
            tokens[:, part] = tokens[:, part].mean(0, keepdim=True)
        seen["tokens"] = tokens.detach().float()
        return tokens

    hook = projector.register_forward_hook(keep)
    keys = ("stats", "map", "answer", "score", "mos")
    out: dict[str, list[Any]] = {k: [] for k in keys}
    indices = [k for k in range(len(dataset)) if dataset.pairs[k][1] == task][:limit]
    try:
        for start in range(0, len(indices), 8):
            items = [dataset[i] for i in indices[start : start + 8]]
            questions = [prompt_only(it["conversation"]) for it in items]
            prompts = [processor.apply_chat_template(q, add_generation_prompt=True, tokenize=False) for q in questions]
            readout = level_readout(processor, items[0]["template"], context=prompts[0])
            inputs = processor(
                text=[p + readout.prefix for p in prompts],
                images=[it["images"] for it in items],
                padding=True,
                return_tensors="pt",
            )
            rows, positions = torch.arange(len(items)), answer_position(inputs["attention_mask"])
            with torch.no_grad():
                output = model(**inputs, output_hidden_states=True, use_cache=False)
            tokens, maps = seen["tokens"], seen["tokens"].shape[1] - len(STATISTICS_CHANNELS)
            out["stats"].append(tokens[:, maps:].flatten(1).numpy())
            out["map"].append(tokens[:, :maps].mean(1).numpy())
            out["answer"].append(output.hidden_states[-1][rows, positions].float().numpy())
            out["score"].append(score_from_logits(output.logits[rows, positions], readout.ids).numpy())
            out["mos"].append(np.array([float(it["sample"].score(task)) for it in items]))
    finally:
        hook.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV

    from benchmarks.lmm_common import load_run

    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_path", description=__doc__)
    parser.add_argument("run", help="a finished stage-2 run folder")
    parser.add_argument("--task", default="naturalness", choices=["harmony", "naturalness"])
    parser.add_argument("--train", type=int, default=800, help="training questions the probes are fitted on")
    args = parser.parse_args()
    _, module, data = load_run(args.run)
    train = activations(module, data.datasets["train"], args.task, args.train)
    val = activations(module, data.datasets["val"], args.task, 10**6)
    print(f"{args.run} {args.task}: {len(train['mos'])} training / {len(val['mos'])} validation questions")
    readout = [spearmanr(part["score"], part["mos"])[0] for part in (train, val)]
    print(f"  readout SRCC: training {readout[0]:.3f}, validation {readout[1]:.3f}")
    print(f"  readout scores' spread (validation): {val['score'].std():.3f}; the MOS': {val['mos'].std():.3f}")
    for blank in ("stats", "map"):
        part = activations(module, data.datasets["val"], args.task, 10**6, blank=blank)
        srcc = spearmanr(part["score"], part["mos"])[0]
        print(f"  readout with the {blank} tokens replaced by their batch mean: validation SRCC {srcc:.3f}")
    for name in ("stats", "map", "answer"):
        mean, std = train[name].mean(0), train[name].std(0) + 1e-6
        ridge = RidgeCV(alphas=np.logspace(-2, 5, 15)).fit((train[name] - mean) / std, train["mos"])
        srcc = spearmanr(ridge.predict((val[name] - mean) / std), val["mos"])[0]
        print(f"  ridge on {name} ({train[name].shape[1]} features): validation SRCC {srcc:.3f}")


if __name__ == "__main__":
    main()
