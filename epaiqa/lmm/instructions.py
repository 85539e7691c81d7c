"""Instruction question–answer pairs of the three training stages (paper §4, appendix E), and their encoding.

Builders turn a :class:`~epaiqa.data.schema.PAISample` into an :class:`Instruction`: a chat conversation in
the Hugging Face format (``{"role": ..., "content": [{"type": "image"} | {"type": "text", "text": ...}]}``,
images where the paper writes ``[image]``) and the PIL images in order. Texts are appendix E's, word for
word, except for obvious typos, fixed here:

- E.1: "The original image i:" → "The original image is:"; a full stop ends the question.
- E.3 answer: "The local naturalness:[CoT]" → "The local naturalness: [CoT]"; a full stop ends the answer.
- "[CoT]." / "[prompt]." get no second full stop when the inserted text already ends a sentence.

Not in appendix E, chosen here: the completion level words (§3.1's "non-compliant", "partly-compliant",
"fully compliant"), the bbox answer's number format (4 decimal places), and the sentence that names the
red box in the 'reference' ablation (§5.3), :data:`REFERENCE_SENTENCE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image, ImageDraw
from transformers import BatchFeature

from epaiqa.data.crops import bbox_to_pixels, crop_region
from epaiqa.data.images import load_rgb
from epaiqa.data.levels import LEVELS, NOMINAL_SPAN, bin_level, level_position
from epaiqa.data.schema import PAISample
from epaiqa.errors import ConfigError, DataError

Message = dict[str, Any]
Conversation = list[Message]

#: Appendix E.1 (stage 1, grounding pre-training).
GROUNDING_QUESTION = (
    "The original image is: ",
    None,
    ", the image after partial editing is: ",
    None,
    ". Please output the representation of the local editing area. It is expressed as four decimals in the "
    "range [0,1] (as a percentage of the image), where the first two digits are the horizontal/vertical "
    "coordinates of the center point of the editing area, and the last two digits are the width/height "
    "coordinates of the size of the editing area.",
)
GROUNDING_ANSWER = "The four coefficients representing the editing area are: ({}, {}, {}, {})."

#: Appendix E.2 (stage 2, quantitative prediction): the text after the image sentence (and the CoT).
LEVEL_CHOICES = "(There are 5 levels in total: bad, poor, fair, good, excellent)"
HARMONY_IMAGE_SENTENCE = "The image after partial editing is: "
HARMONY_REQUEST = (
    f"Please rate the harmony between the edited area and the overall edited image {LEVEL_CHOICES}. "
    "Then output the harmony level."
)
NATURALNESS_IMAGE_SENTENCE = "The editing area of image after partial editing is: "
NATURALNESS_REQUEST = (
    f"Please rate the naturalness of the edited area {LEVEL_CHOICES}. Then output the naturalness level."
)

#: Appendix E.3 (stage 3, overall editing quality with explanation).
EXPLAIN_REQUEST = (
    "First, determine whether the prompt is followed. If not, analyze it and directly give the overall "
    "quality level as bad. If partially followed, analyze it and directly give the overall quality level as "
    "poor. If followed, first analyze the prompt completion, the local naturalness of the edited area and the "
    "overall harmony, then please give the final overall editing quality level based on the analysis and the "
    "overall presentation quality of the edited image."
)

#: Answer sentences ending in a level word; ``{}`` is the level. Scoring reads the level token's logits.
ANSWER_TEMPLATES: dict[str, str] = {
    "harmony": "Harmony level is: {}.",
    "naturalness": "Naturalness level is: {}.",
    "overall": "Therefore, the overall editing quality level of the image is {}.",
}

#: Q-Align's own protocol (Wu et al., 2023): its question and answer for any scored dimension, the image after
#: the question ("USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the
#: image is"); its level words and 1..5 weights are the project's (:data:`~epaiqa.data.levels.LEVELS`).
QALIGN_QUESTION = "How would you rate the quality of this image?"
QALIGN_ANSWER = "The quality of the image is {}."
#: epaiqa: appendix E.2's questions and answers; qalign: Q-Align's, for the q-align rows of Tables 1–2
PROMPT_STYLES: tuple[str, ...] = ("epaiqa", "qalign")

#: Prompt completion 1..3 in words (paper §3.1), for "The prompt completion is [Completion Level]."
COMPLETION_LEVELS: tuple[str, ...] = ("non-compliant", "partly-compliant", "fully compliant")
#: The overall level the E.3 question prescribes when the prompt is not / partly followed.
LOW_COMPLETION_OVERALL: dict[int, str] = {1: "bad", 2: "poor"}

#: 'reference' ablation (§5.3): the edited region is boxed on the edited image and named in the question.
REFERENCE_SENTENCE = "The edited area is marked with a red box."
REFERENCE_COLOUR = (255, 0, 0)

_SENTENCE_ENDS = (".", "!", "?")


class Instruction(NamedTuple):
    """One question–answer pair: the conversation (user turn, assistant answer) and its images in order."""

    conversation: Conversation
    images: list[Image.Image]


def sentence(text: str) -> str:
    """``text`` stripped, with a full stop added unless it already ends a sentence."""
    text = text.strip()
    return text if text.endswith(_SENTENCE_ENDS) else text + "."


def _user(*parts: str | None) -> Message:
    """A user turn; ``None`` stands for an image, text parts are kept as written."""
    content = [{"type": "image"} if p is None else {"type": "text", "text": p} for p in parts if p != ""]
    return {"role": "user", "content": content}


def _assistant(text: str) -> Message:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _open(root: str | Path, relpath: str) -> Image.Image:
    return load_rgb(Path(root) / relpath)


def _mos(sample: PAISample, dimension: str) -> float:
    value = sample.score(dimension)
    if value is None:
        raise DataError(f"sample {sample.id!r} has no {dimension} score: it cannot be a {dimension} instruction")
    return float(value)


def _cot(sample: PAISample, section: str) -> str:
    text = (sample.cot or {}).get(section)
    if not text or not text.strip():
        raise DataError(f"sample {sample.id!r} has no '{section}' chain-of-thought (cot.{section})")
    return text


def draw_reference_box(image: Image.Image, bbox: Sequence[float]) -> Image.Image:
    """A copy of ``image`` with the edited region outlined in red (the 'reference' ablation's input)."""
    boxed = image.copy()
    left, top, right, bottom = bbox_to_pixels(bbox, image.width, image.height)
    width = max(1, round(0.01 * max(image.size)))
    ImageDraw.Draw(boxed).rectangle((left, top, right - 1, bottom - 1), outline=REFERENCE_COLOUR, width=width)
    return boxed


def grounding_answer(bbox: Sequence[float], places: int = 4) -> str:
    """E.1's answer for ⟨x, y, z1, z2⟩: "The four coefficients representing the editing area are: (…)."."""
    if len(bbox) != 4:
        raise ValueError(f"bbox needs four numbers, got {len(bbox)}")
    return GROUNDING_ANSWER.format(*(f"{float(v):.{places}f}" for v in bbox))


def grounding_instruction(
    sample: PAISample, root: str | Path, places: int = 4, with_prompt: bool = False
) -> Instruction:
    """Stage 1: source and edited image → the edited region's centre and size (appendix E.1).

    Appendix E.1's question has no edit prompt; §4.1 lists the prompt among stage 1's inputs. ``with_prompt``
    (``data.grounding_prompt``) follows §4.1: "The partial editing prompt is: …" before the request.
    """
    images = [_open(root, sample.source), _open(root, sample.edited)]
    question = list(GROUNDING_QUESTION)
    if with_prompt:
        question[-1] = f". {sentence(f'The partial editing prompt is: {sample.prompt.strip()}')} " + question[-1][2:]
    return Instruction([_user(*question), _assistant(grounding_answer(sample.bbox, places))], images)


Span = tuple[float, float]


def level_answer(dimension: str, score: float, span: Span = NOMINAL_SPAN) -> str:
    """E.2/E.3 answer sentence for a score binned over ``span``, e.g. "Harmony level is: good."."""
    return ANSWER_TEMPLATES[dimension].format(bin_level(score, span))


#: What the harmony question shows: the paper's whole edited image, or the region with ``margin`` of context.
HARMONY_VIEWS: tuple[str, ...] = ("whole", "context")
#: What stage 3 shows of the source and the edited image: the same two views.
EXPLAIN_VIEWS: tuple[str, ...] = HARMONY_VIEWS


def harmony_instruction(
    sample: PAISample,
    root: str | Path,
    with_cot: bool = False,
    reference: bool = False,
    view: str = "whole",
    margin: float = 0.3,
    span: Span = NOMINAL_SPAN,
) -> Instruction:
    """Stage 2 harmony: the whole edited image → "Harmony level is: [level]." (appendix E.2).

    ``with_cot`` puts the sample's harmony CoT where E.2 writes [CoT] (in the question: the paper gives it as
    prior knowledge, and its CoTs were written for low-harmony images, so it hints at the answer).
    ``reference`` boxes the edited region and names the box (§5.3). ``view="context"`` shows the region's box
    grown by ``margin`` of its size on each side instead of the whole image (the demo's small-image setting: at a
    small vision tower's resolution the whole image leaves the seam a few pixels wide); the question is unchanged.
    """
    if view not in HARMONY_VIEWS:
        raise ConfigError(f"data.harmony_view must be one of {', '.join(HARMONY_VIEWS)}, got {view!r}")
    edited = _open(root, sample.edited)
    if reference:
        edited = draw_reference_box(edited, sample.bbox)
    if view == "context":
        edited = crop_region(edited, sample.bbox, margin=margin)
    after = [REFERENCE_SENTENCE] if reference else []
    if with_cot:
        after.append(sentence(_cot(sample, "harmony")))
    text = ". " + " ".join([*after, HARMONY_REQUEST])
    question = _user(HARMONY_IMAGE_SENTENCE, None, text)
    return Instruction([question, _assistant(level_answer("harmony", _mos(sample, "harmony"), span))], [edited])


def naturalness_instruction(
    sample: PAISample, root: str | Path, with_cot: bool = False, margin: float = 0.0, span: Span = NOMINAL_SPAN
) -> Instruction:
    """Stage 2 naturalness: the edited region's crop → "Naturalness level is: [level]." (appendix E.2).

    The crop is :func:`~epaiqa.data.crops.crop_region` of the edited image (``margin`` adds context).
    """
    crop = crop_region(_open(root, sample.edited), sample.bbox, margin=margin)
    cot = [sentence(_cot(sample, "naturalness"))] if with_cot else []
    text = ". " + " ".join([*cot, NATURALNESS_REQUEST])
    question = _user(NATURALNESS_IMAGE_SENTENCE, None, text)
    answer = level_answer("naturalness", _mos(sample, "naturalness"), span)
    return Instruction([question, _assistant(answer)], [crop])


def answer_template(task: str, prompts: str = "epaiqa") -> str:
    """The answer sentence a scored task is trained on and read off (``{}`` = the level word)."""
    return QALIGN_ANSWER if prompts == "qalign" else ANSWER_TEMPLATES[task]


def qalign_instruction(
    sample: PAISample, root: str | Path, task: str, view: str = "whole", margin: float = 0.3, span: Span = NOMINAL_SPAN
) -> Instruction:
    """Q-Align's question about the task's input → "The quality of the image is [level]." (the task's MOS).

    The input is Tables 1–2's: the edited image for harmony (or its ``context`` view), the region's crop for
    naturalness.
    """
    if view not in HARMONY_VIEWS:
        raise ConfigError(f"data.harmony_view must be one of {', '.join(HARMONY_VIEWS)}, got {view!r}")
    edited = _open(root, sample.edited)
    if task == "naturalness":
        image = crop_region(edited, sample.bbox)
    else:
        image = crop_region(edited, sample.bbox, margin=margin) if view == "context" else edited
    question = _user(QALIGN_QUESTION + "\n", None)
    answer = QALIGN_ANSWER.format(bin_level(_mos(sample, task), span))
    return Instruction([question, _assistant(answer)], [image])


def completion_level(sample: PAISample) -> int:
    """Prompt completion 1..3 (voted, so an integer; a mean is rounded)."""
    value = round(_mos(sample, "completion"))
    if value not in (1, 2, 3):
        raise DataError(f"sample {sample.id!r}: prompt completion must be 1..3, got {sample.score('completion')}")
    return value


def explain_level_position(sample: PAISample, span: Span = NOMINAL_SPAN) -> float:
    """Where the overall level word of :func:`explain_answer` lies on the level scale (the soft target's centre).

    The overall MOS's position when the prompt is fully followed; otherwise the middle of the prescribed word's bin
    (bad / poor), the word the answer gives whatever the MOS.
    """
    completion = completion_level(sample)
    if completion < 3:
        return float(LEVELS.index(LOW_COMPLETION_OVERALL[completion]) + 1)
    return level_position(_mos(sample, "overall"), span)


def explain_answer(sample: PAISample, with_cot: bool = True, span: Span = NOMINAL_SPAN) -> str:
    """E.3's answer: completion level, its analysis, harmony and naturalness analyses, overall level.

    When the prompt is not (1) or partly (2) followed only the completion analysis follows, and the overall
    level is the question's bad / poor. ``with_cot=False`` (the w/o-CoT ablation, Table 5) is the paper's target
    without CoT: the overall level sentence only.
    """
    completion = completion_level(sample)
    if not with_cot:
        overall = LOW_COMPLETION_OVERALL[completion] if completion < 3 else bin_level(_mos(sample, "overall"), span)
        return ANSWER_TEMPLATES["overall"].format(overall)
    parts = [f"The prompt completion is {COMPLETION_LEVELS[completion - 1]}."]
    if with_cot:
        parts.append(sentence(_cot(sample, "completion")))
    if completion < 3:
        overall = LOW_COMPLETION_OVERALL[completion]
    else:
        overall = bin_level(_mos(sample, "overall"), span)
        if with_cot:
            parts.append("The harmony: " + sentence(_cot(sample, "harmony")))
            parts.append("The local naturalness: " + sentence(_cot(sample, "naturalness")))
    parts.append(ANSWER_TEMPLATES["overall"].format(overall))
    return " ".join(parts)


def explain_instruction(
    sample: PAISample,
    root: str | Path,
    with_cot: bool = True,
    reference: bool = False,
    span: Span = NOMINAL_SPAN,
    view: str = "whole",
    margin: float = 0.3,
) -> Instruction:
    """Stage 3: source, edited image and prompt → explained overall editing quality (appendix E.3).

    ``view="context"`` shows both images cut to the region's box grown by ``margin`` of its size on each side (the
    views stage 2's harmony question shows on the demo) instead of the whole images; the question is unchanged.
    """
    if view not in EXPLAIN_VIEWS:
        raise ConfigError(f"data.explain_view must be one of {', '.join(EXPLAIN_VIEWS)}, got {view!r}")
    source, edited = _open(root, sample.source), _open(root, sample.edited)
    if reference:
        edited = draw_reference_box(edited, sample.bbox)
    if view == "context":
        source, edited = (crop_region(image, sample.bbox, margin=margin) for image in (source, edited))
    tail = [sentence(f"The partial editing prompt is: {sample.prompt.strip()}")]
    if reference:
        tail.append(REFERENCE_SENTENCE)
    question = _user(
        "The original image is: ",
        None,
        ", the image after partial editing is: ",
        None,
        ". " + " ".join([*tail, EXPLAIN_REQUEST]),
    )
    return Instruction([question, _assistant(explain_answer(sample, with_cot, span))], [source, edited])


def answer_text(conversation: Conversation) -> str:
    """The text of the conversation's final assistant turn."""
    if not conversation or conversation[-1].get("role") != "assistant":
        raise ConfigError("the conversation does not end with an assistant answer")
    content = conversation[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part.get("type") == "text")


def prompt_only(conversation: Conversation) -> Conversation:
    """The conversation without a final assistant answer (what the model sees at test time)."""
    if conversation and conversation[-1].get("role") == "assistant":
        return conversation[:-1]
    return list(conversation)


def tokenizer_of(processor: Any) -> Any:
    """The processor's tokenizer (or the argument itself when it is a tokenizer)."""
    return getattr(processor, "tokenizer", processor)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special tokens: named ones and added tokens marked special."""
    ids = set(getattr(tokenizer, "all_special_ids", []))
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids.update(i for i, token in added.items() if getattr(token, "special", False))
    return ids


class AnswerSpan(NamedTuple):
    """Where the answer sits at the end of a tokenised conversation, counted from the last token."""

    tail_ids: list[int]  # tokens from the first answer token to the end of the conversation
    supervised: int  # how many of them are learned: the answer and its end-of-turn token


def answer_span(processor: Any, conversation: Conversation) -> AnswerSpan:
    """The answer's tokens as the processor's chat template and tokenizer produce them.

    The prompt-with-generation-prompt and the full conversation are rendered with the chat template and
    tokenised; the prompt must be a token prefix of the full text, and so must the prompt plus the answer.
    What follows the answer is the end-of-turn: the suffix up to and including its first special token
    (``<|im_end|>`` in the Qwen2 format) is learned, the rest (the newline) is not. Images only ever stand
    in the prompt, so this tail is the same after the processor has expanded the image tokens.
    """
    tokenizer = tokenizer_of(processor)
    answer = answer_text(conversation)
    if not answer:
        raise ConfigError("the assistant answer is empty: there is nothing to learn")
    prompt = processor.apply_chat_template(prompt_only(conversation), add_generation_prompt=True, tokenize=False)
    full = processor.apply_chat_template(conversation, tokenize=False)
    if not full.startswith(prompt) or not full[len(prompt) :].startswith(answer):
        raise ConfigError(
            "the chat template does not render the answer right after the generation prompt; "
            "the label mask cannot be derived for this processor"
        )
    prompt_ids, head_ids, full_ids = _ids(tokenizer, prompt), _ids(tokenizer, prompt + answer), _ids(tokenizer, full)
    if full_ids[: len(prompt_ids)] != prompt_ids or full_ids[: len(head_ids)] != head_ids:
        raise ConfigError("the answer's first or last token merges with its neighbours in tokenisation")
    suffix = full_ids[len(head_ids) :]
    special = special_token_ids(tokenizer)
    end_of_turn = next((i + 1 for i, t in enumerate(suffix) if t in special), min(1, len(suffix)))
    return AnswerSpan(full_ids[len(prompt_ids) :], len(head_ids) - len(prompt_ids) + end_of_turn)


def encode_supervised(
    processor: Any,
    conversations: Sequence[Conversation],
    images: Sequence[Sequence[Image.Image]],
    **processor_kwargs: Any,
) -> BatchFeature:
    """A padded training batch: the processor's inputs (ids, mask, pixel values, …) and ``labels``.

    Labels are -100 except on each answer and its end-of-turn token (:func:`answer_span`). Rows are left-padded,
    so every answer ends in the last column. Each sample's images are passed as one list, so multi-image
    samples are recognised as such.
    """
    if len(conversations) != len(images):
        raise ValueError(f"{len(conversations)} conversations but {len(images)} image lists")
    texts = [processor.apply_chat_template(c, tokenize=False) for c in conversations]
    tokenizer = tokenizer_of(processor)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # answers in the last columns (epaiqa.lmm.loss)
    try:
        batch = processor(
            text=texts, images=[list(i) for i in images], padding=True, return_tensors="pt", **processor_kwargs
        )
    finally:
        tokenizer.padding_side = side
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = torch.full_like(input_ids, -100)
    for row, conversation in enumerate(conversations):
        span = answer_span(processor, conversation)
        positions = mask[row].nonzero().flatten()[-len(span.tail_ids) :]
        tail = torch.tensor(span.tail_ids, dtype=input_ids.dtype)
        if len(positions) != len(tail) or not torch.equal(input_ids[row, positions], tail):
            raise ConfigError(f"sample {row}: the processor's tokens do not end with the answer (truncated?)")
        keep = positions[: span.supervised]
        labels[row, keep] = input_ids[row, keep]
    batch["labels"] = labels
    return batch
