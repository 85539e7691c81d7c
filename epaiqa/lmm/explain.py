"""Reading a stage-3 explanation (appendix E.3): the prompt-completion verdict and the overall-level readout.

:func:`explain_and_score` is what stage 3's test pass and ``epaiqa score`` run: the greedy explanation (the paper's),
its verdict and the overall level read after it; with ``samples`` > 0 also that many explanations *sampled* from
the model (self-consistency, Wang et al. 2023), whose readouts are averaged with the greedy one's and whose
verdicts vote. Greedy decoding keeps only each decision's most likely word, so a model whose image evidence shifts
a decision's probabilities without flipping it scores every image alike; averaging over sampled explanations keeps
that evidence in the score.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image

from epaiqa.lmm.generation import generate
from epaiqa.lmm.instructions import ANSWER_TEMPLATES, COMPLETION_LEVELS, Conversation
from epaiqa.lmm.scoring import score_continuations

#: The answer text before the overall level word: "Therefore, the overall editing quality level of the image is".
OVERALL_HEAD = ANSWER_TEMPLATES["overall"].split("{}")[0].rstrip()

_COMPLETION = re.compile(
    r"prompt completion is\s+(" + "|".join(re.escape(level) for level in COMPLETION_LEVELS) + r")", re.IGNORECASE
)
_HEAD = re.compile(re.escape(OVERALL_HEAD), re.IGNORECASE)


def parse_completion(text: str) -> int | None:
    """Completion level 1..3 of "The prompt completion is <level>." in an explanation; ``None`` if absent."""
    match = _COMPLETION.search(text)
    if match is None:
        return None
    return [level.lower() for level in COMPLETION_LEVELS].index(match.group(1).lower()) + 1


def overall_prefix(explanation: str) -> tuple[str, bool]:
    """The answer up to the overall level word, for Q-Align scoring after a generated explanation.

    When the explanation contains "…the overall editing quality level of the image is", the text up to its last
    occurrence is the prefix (``True``: the model wrote the sentence itself). Otherwise the sentence is appended
    to the explanation (``False``), so every sample gets a score read at the same position of the same sentence.
    """
    matches = list(_HEAD.finditer(explanation))
    if matches:
        end = matches[-1].end()
        return explanation[:end], True
    text = explanation.strip()
    return (f"{text} {OVERALL_HEAD}" if text else OVERALL_HEAD), False


class Explained(NamedTuple):
    """One sample's stage-3 readout: the greedy explanation, the (voted) verdict and the (mean) overall score."""

    explanation: str
    #: whether the greedy explanation wrote the overall level sentence itself
    wrote_level_sentence: bool
    #: the mean overall readout (1..5) over the greedy and the sampled explanations
    score: float
    #: the verdict most explanations give (ties: the greedy one's, else the lowest level); None if none gives one
    completion: int | None
    greedy_score: float
    #: every explanation's verdict, the greedy one's first
    votes: list[int | None]


def vote(verdicts: Sequence[int | None]) -> int | None:
    """The most common verdict; a tie goes to the first one's (the greedy explanation's), else the lowest level."""
    counts = Counter(v for v in verdicts if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = sorted(v for v, c in counts.items() if c == top)
    return verdicts[0] if verdicts[0] in tied else tied[0]


def _readout(model: Any, processor: Any, convs: Any, images: Any, max_new_tokens: int, sampling: Any) -> tuple:
    """Explanations, whether each wrote the level sentence, and the overall levels read after them.

    The levels are read off the generation's own cache: the images are encoded once.
    """
    generation = generate(model, processor, convs, images, max_new_tokens, sampling)
    prefixes, wrote = zip(*(overall_prefix(t) for t in generation.texts), strict=True)
    scores = score_continuations(model, processor, generation, prefixes, ANSWER_TEMPLATES["overall"]).tolist()
    return generation.texts, list(wrote), scores


def explain_and_score(
    model: Any,
    processor: Any,
    conversations: Sequence[Conversation],
    images: Sequence[Sequence[Image.Image]],
    max_new_tokens: int,
    samples: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[Explained]:
    """Each question's greedy explanation, and its verdict and overall score over it and ``samples`` sampled ones.

    Sampling is seeded with ``seed`` in a forked generator state (the caller's random state is left as it was), so
    the same batch gives the same scores; a different batching of the same samples draws other explanations.
    """
    texts, wrote, greedy = _readout(model, processor, conversations, images, max_new_tokens, None)
    verdicts = [[parse_completion(t)] for t in texts]
    totals = list(greedy)
    if samples > 0:  # each question repeated ``samples`` times in one batch: the draws decode together
        devices = [model.device.index or 0] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            drawn, _, values = _readout(
                model,
                processor,
                [c for c in conversations for _ in range(samples)],
                [i for i in images for _ in range(samples)],
                max_new_tokens,
                {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0},
            )
        for k, (text, value) in enumerate(zip(drawn, values, strict=True)):
            verdicts[k // samples].append(parse_completion(text))
            totals[k // samples] += value
    return [
        Explained(text, own, total / (samples + 1), vote(votes), value, votes)
        for text, own, total, value, votes in zip(texts, wrote, totals, greedy, verdicts, strict=True)
    ]
