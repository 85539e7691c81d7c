"""(e) ``epaiqa score``'s four dimensions of a stage-3 model from one encoding vs four passes.

The model: an untrained :class:`~epaiqa.models.lmm_module.EPAIQAExplain` whose record's lineage is
``["scoring", "explain"]`` (so it answers harmony and naturalness too), in an
:class:`~epaiqa.scoring.lmm.LMMScorer` built directly (timing needs no training). Per batch of demo samples:

- one encoding: :meth:`LMMScorer.score_samples` — harmony one forward, naturalness one forward (their questions
  show other images), then explanation, completion verdict and overall level from one generation, the overall
  level read off the generation's KV cache;
- four passes: the same harmony and naturalness forwards, the same generation, then the overall level read by
  encoding images, question and explanation again (:func:`epaiqa.lmm.scoring.score` with ``answer_prefixes``,
  the previous way).

Both sides build the questions from the image files as ``epaiqa score`` does (inside the timing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import Result, alternate, demo_root, demo_samples, ratio_result
from benchmarks.lmm_common import backbone_spec

NAME = "four_dims"


def make_scorer(backbone: str, max_new_tokens: int) -> Any:
    """An untrained stage-3 scorer whose lineage has stage 2 (harmony, naturalness, overall, completion)."""
    from omegaconf import OmegaConf

    from epaiqa.models.lmm_module import EPAIQAExplain
    from epaiqa.records.results import RunRecord
    from epaiqa.scoring.lmm import LMMScorer

    stage = EPAIQAExplain(backbone=backbone_spec(backbone), max_new_tokens=max_new_tokens)
    cfg = OmegaConf.create(
        {
            "model": {"_target_": "epaiqa.models.lmm_module.EPAIQAExplain"},
            "data": {"tasks": ["harmony", "naturalness"], "harmony_view": "context", "margin": 0.3},
        }
    )
    record = RunRecord("overall", f"epaiqa_{backbone}", "trained", {}, 0, lineage=["scoring", "explain"])
    scorer = LMMScorer(Path("/tmp/epaiqa-bench-stage3"), record, cfg, stage)
    assert scorer.dimensions == ("harmony", "naturalness", "overall", "completion"), scorer.dimensions
    return scorer


def four_passes(scorer: Any, samples: list[Any], root: Path) -> list[dict[str, Any]]:
    """:meth:`LMMScorer.score_samples` with the overall level read by re-encoding (the previous way)."""
    import torch

    from epaiqa.lmm.explain import overall_prefix, parse_completion
    from epaiqa.lmm.generation import generate
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES, answer_template
    from epaiqa.lmm.scoring import score
    from epaiqa.scoring.lmm import SCORED, level_word, placeholder_rated

    with torch.inference_mode():
        scorer.stage.eval()
        model, processor = scorer.stage.model, scorer.stage.processor
        samples = [placeholder_rated(s) for s in samples]
        out: list[dict[str, Any]] = [{"id": s.id} for s in samples]
        for task in (d for d in scorer.dimensions if d in SCORED):
            convs, images = scorer._ask(samples, root, task)
            values = score(model, processor, convs, images, answer_template(task)).tolist()
            for row, value in zip(out, values, strict=True):
                row[task] = {"score": value, "level": level_word(value)}
        convs, images = scorer._ask(samples, root, "overall")
        texts = generate(model, processor, convs, images, int(scorer.stage.hparams["max_new_tokens"])).texts
        prefixes = [overall_prefix(t)[0] for t in texts]
        values = score(model, processor, convs, images, ANSWER_TEMPLATES["overall"], answer_prefixes=prefixes)
        for row, text, value in zip(out, texts, values.tolist(), strict=True):
            row["overall"] = {"score": value, "level": level_word(value)}
            row["completion"] = parse_completion(text)
            row["explanation"] = text
    return out


def _one_backbone(backbone: str, quick: bool, repeats: int | None, root: Path | None) -> Result:
    root = root or demo_root()
    batch, new_tokens = 4, 64 if quick else 160
    repeats = repeats or (3 if quick else 5)
    samples = demo_samples(root, batch, "overall")
    scorer = make_scorer(backbone, new_tokens)
    state: dict[str, Any] = {}

    def one_encoding() -> None:
        state["one"] = scorer.score_samples(samples, root)

    def four() -> None:
        state["four"] = four_passes(scorer, samples, root)

    times = alternate({"one_encoding": one_encoding, "four_passes": four}, repeats=repeats, warmup=1)
    pairs = zip(state["one"], state["four"], strict=True)
    return ratio_result(
        NAME,
        f"{backbone}: four passes / one encoding (speed-up)",
        times,
        "four_passes",
        "one_encoding",
        per=f"{batch} samples × 4 dimensions, {new_tokens} new tokens",
        max_overall_difference=max(abs(a["overall"]["score"] - b["overall"]["score"]) for a, b in pairs),
    )


def run(
    quick: bool = False,
    backbones: list[str] | None = None,
    repeats: int | None = None,
    root: Path | None = None,
    **_: Any,
) -> list[Result]:
    return [_one_backbone(b, quick, repeats, root) for b in backbones or ["tiny", "mini"]]
