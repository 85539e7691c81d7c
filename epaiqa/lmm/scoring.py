"""Q-Align level scoring (paper §5.1): softmax over the five level words' logits, weighted 1..5.

The model is fed the question and the answer up to the level word ("… Harmony level is:"); the logits at the
last position, restricted to the level tokens, give the level probabilities. The level token ids and the
answer prefix come from the tokenisation used in training: the answer sentence is tokenised in context with
each level word, and the word must be one token there.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image

from epaiqa.data.levels import LEVEL_WEIGHTS, LEVELS
from epaiqa.errors import ConfigError
from epaiqa.lmm.generation import Generation
from epaiqa.lmm.instructions import Conversation, prompt_only, tokenizer_of


class LevelReadout(NamedTuple):
    """How to read a level off the model: the answer text before the level word, and the level token ids."""

    prefix: str  # e.g. "Harmony level is:" (the space before the word belongs to the word's token)
    ids: tuple[int, ...]  # token of bad, poor, fair, good, excellent


def level_readout(
    tokenizer_or_processor: Any, template_answer: str = "Harmony level is: {}", context: str = ""
) -> LevelReadout:
    """The level tokens of an answer template (``{}`` = the level word), tokenised after ``context``.

    ``context`` is the text before the answer in training (the rendered prompt with its generation prompt);
    the default, none, gives the same ids for byte-level BPE tokenizers such as Qwen2's. Raises
    :class:`ConfigError` when a level word is not a single token in that context, or when the answer text
    before it does not tokenise on its own as it does in the full answer.
    """
    tokenizer = tokenizer_of(tokenizer_or_processor)
    if template_answer.count("{}") != 1:
        raise ConfigError(f"the answer template needs exactly one '{{}}' for the level: {template_answer!r}")
    head = template_answer.split("{}")[0]

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    context_ids = ids(context)
    full = [ids(context + template_answer.format(word)) for word in LEVELS]
    if any(f[: len(context_ids)] != context_ids for f in full):
        raise ConfigError("the answer template merges with the text before it in tokenisation")
    k = len(context_ids)
    while all(k < len(f) for f in full) and len({f[k] for f in full}) == 1:
        k += 1
    level_ids = tuple(f[k] if k < len(f) else -1 for f in full)
    single = all(
        len(f) > k and f[k + 1 :] == full[0][k + 1 :] and tokenizer.decode([f[k]]).strip() == word
        for f, word in zip(full, LEVELS, strict=True)
    )
    if not single or len(set(level_ids)) != len(LEVELS):
        pieces = {word: tokenizer.convert_ids_to_tokens(f[k:]) for word, f in zip(LEVELS, full, strict=True)}
        raise ConfigError(
            f"the level words are not single tokens in the answer {template_answer!r} with this tokenizer "
            f"(tokens from the level on: {pieces}); Q-Align scoring needs one token per level"
        )
    for prefix in (head, head.rstrip()):
        if ids(context + prefix) == full[0][:k]:
            return LevelReadout(prefix, level_ids)
    raise ConfigError(f"the answer text before the level in {template_answer!r} tokenises differently on its own")


def level_token_ids(
    tokenizer_or_processor: Any, template_answer: str = "Harmony level is: {}", context: str = ""
) -> list[int]:
    """Token ids of bad, poor, fair, good, excellent as they start the level word in the answer."""
    return list(level_readout(tokenizer_or_processor, template_answer, context).ids)


def answer_position(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the position of the last real token: its logits predict the level token.

    For inputs that end with the answer prefix ("… Harmony level is:"); works with left or right padding.
    """
    mask = attention_mask.bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a row of the batch has no tokens")
    length = mask.shape[1]
    return length - 1 - mask.flip(1).int().argmax(dim=1)


def level_probabilities(logits_at_pos: torch.Tensor, level_ids: Sequence[int]) -> torch.Tensor:
    """Softmax over the five level tokens' logits (last dimension = vocabulary), in float32."""
    ids = torch.as_tensor(list(level_ids), device=logits_at_pos.device)
    if ids.numel() != len(LEVELS):
        raise ValueError(f"need {len(LEVELS)} level token ids, got {ids.numel()}")
    return logits_at_pos.index_select(-1, ids).float().softmax(dim=-1)


def score_from_logits(logits_at_pos: torch.Tensor, level_ids: Sequence[int]) -> torch.Tensor:
    """Q-Align score: level probabilities · (1, 2, 3, 4, 5); shape = ``logits_at_pos`` without the last dim."""
    probabilities = level_probabilities(logits_at_pos, level_ids)
    weights = torch.tensor(LEVEL_WEIGHTS, device=probabilities.device)
    return (probabilities * weights).sum(dim=-1)  # not ``@``: autocast would run it (and return it) in bf16


@torch.no_grad()
def score(
    model: Any,
    processor: Any,
    conversations: Sequence[Conversation],
    images: Sequence[Sequence[Image.Image]],
    template_answer: str = "Harmony level is: {}.",
    answer_prefixes: Sequence[str] | None = None,
) -> torch.Tensor:
    """Q-Align scores (1..5, float32, CPU) of a batch in one forward pass, no generation.

    Each conversation's question (a trailing answer is dropped) is rendered with the processor's chat template
    and its generation prompt, followed by the answer prefix of ``template_answer`` — or by
    ``answer_prefixes[i]`` (e.g. a generated explanation ending in "… of the image is"). Logits are computed
    only at each row's last real token, so the tokenizer may pad on either side.
    """
    if len(conversations) != len(images):
        raise ValueError(f"{len(conversations)} conversations but {len(images)} image lists")
    prompts = [
        processor.apply_chat_template(prompt_only(c), add_generation_prompt=True, tokenize=False) for c in conversations
    ]
    readout = level_readout(processor, template_answer, context=prompts[0])
    prefixes = list(answer_prefixes) if answer_prefixes is not None else [readout.prefix] * len(prompts)
    if len(prefixes) != len(prompts):
        raise ValueError(f"{len(prompts)} conversations but {len(prefixes)} answer prefixes")
    inputs = processor(
        text=[p + a for p, a in zip(prompts, prefixes, strict=True)],
        images=[list(i) for i in images],
        padding=True,
        return_tensors="pt",
    )
    inputs = inputs.to(model.device, dtype=model.dtype)
    positions = answer_position(inputs["attention_mask"])
    keep, column = torch.unique(positions, return_inverse=True)
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    rows = torch.arange(len(prompts), device=logits.device)
    return score_from_logits(logits[rows, column.to(logits.device)], readout.ids).cpu()


def cache_arguments(model: Any, cache: Any, positions: torch.Tensor) -> dict[str, Any]:
    """A forward's keyword arguments continuing ``cache`` at ``positions``.

    transformers 5.2x takes ``cache``; earlier versions ``past_key_values`` and ``cache_position``.
    """
    params = inspect.signature(model.forward).parameters
    if "cache" in params:
        return {"cache": cache}
    return {"past_key_values": cache, "cache_position": positions}


@torch.no_grad()
def score_continuations(
    model: Any, processor: Any, generation: Generation, answer_prefixes: Sequence[str], template_answer: str
) -> torch.Tensor:
    """Q-Align scores (1..5, float32, CPU) read after each answer prefix, from the generation's own cache.

    The cache is cropped back to the prompts; one forward over the prefixes' tokens (right-padded after the
    left-padded prompts, positions continuing each prompt's) gives the level logits at each row's last prefix
    token — what :func:`score` gives for the same prompts and prefixes, without encoding the images again.
    """
    tokenizer = tokenizer_of(processor)
    rows = len(generation.prompts)
    if len(answer_prefixes) != rows:
        raise ValueError(f"{rows} generated answers but {len(answer_prefixes)} answer prefixes")
    readout = level_readout(processor, template_answer, context=generation.prompts[0])

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    chunks = []
    for prompt, prefix in zip(generation.prompts, answer_prefixes, strict=True):
        head, full = ids(prompt), ids(prompt + prefix)
        if full[: len(head)] != head or len(full) == len(head):
            raise ValueError(f"the answer prefix {prefix[:40]!r} merges with the prompt in tokenisation")
        chunks.append(full[len(head) :])
    mask = generation.attention_mask
    device, width, length = mask.device, max(map(len, chunks)), mask.shape[1]
    chunk_ids = torch.full((rows, width), tokenizer.pad_token_id or 0, dtype=torch.long, device=device)
    chunk_mask = torch.zeros((rows, width), dtype=mask.dtype, device=device)
    for row, chunk in enumerate(chunks):
        chunk_ids[row, : len(chunk)] = torch.tensor(chunk, device=device)
        chunk_mask[row, : len(chunk)] = 1
    positions = mask.sum(dim=1, keepdim=True) + torch.arange(width, device=device)
    excess = generation.cache.get_seq_length() - length
    if excess > 0:
        generation.cache.crop(-excess)  # a negative count removes that many tokens (transformers 4.45 to 5)
    last = torch.tensor([len(c) - 1 for c in chunks], device=device)
    keep, column = torch.unique(last, return_inverse=True)
    logits = model(
        input_ids=chunk_ids,
        attention_mask=torch.cat([mask, chunk_mask], dim=1),
        position_ids=positions,
        logits_to_keep=keep,
        use_cache=True,
        **cache_arguments(model, generation.cache, torch.arange(length, length + width, device=device)),
    ).logits
    picked = logits[torch.arange(rows, device=logits.device), column.to(logits.device)]
    return score_from_logits(picked, readout.ids).cpu()
