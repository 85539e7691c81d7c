"""Greedy generation of answers (stage-1 boxes, stage-3 explanations) for a batch of conversations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from PIL import Image

from epaiqa.lmm.instructions import Conversation, prompt_only, tokenizer_of


class Generation(NamedTuple):
    """A batch's answers and what generating them left behind, for reading more off the same encoding.

    ``cache`` holds the keys/values of the left-padded prompts (``prompts``, their ``attention_mask``) and of the
    generated tokens; :func:`~epaiqa.lmm.scoring.score_continuations` crops it back to the prompts and reads a
    level after each answer without encoding the images again.
    """

    texts: list[str]
    prompts: list[str]
    attention_mask: torch.Tensor
    cache: Any
    #: tokens generated per row, up to and including its first end-of-sequence token
    lengths: list[int]


@torch.no_grad()
def generate(
    model: Any,
    processor: Any,
    conversations: Sequence[Conversation],
    images: Sequence[Sequence[Image.Image]],
    max_new_tokens: int,
    sampling: dict[str, Any] | None = None,
) -> Generation:
    """The model's answer to each conversation's question (a trailing answer is dropped), with its cache.

    Greedy unless ``sampling`` gives ``generate``'s sampling arguments (``do_sample``, ``temperature``, …; the
    caller seeds torch). Prompts are left-padded so that generation continues every row; the processor's padding
    side is restored. A batch without images is text only.
    """
    tokenizer = tokenizer_of(processor)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        prompts = [
            processor.apply_chat_template(prompt_only(c), add_generation_prompt=True, tokenize=False)
            for c in conversations
        ]
        pictures = [list(i) for i in images] if any(images) else None
        inputs = processor(text=prompts, images=pictures, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    inputs = inputs.to(model.device, dtype=model.dtype)
    # sharded models (FSDP, ZeRO-3) need every process in every step until all have finished
    synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        **(sampling or {"do_sample": False}),
        synced_gpus=synced,
        return_dict_in_generate=True,
    )
    new = out.sequences[:, inputs["input_ids"].shape[1] :]
    texts = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    cache = out.cache if "cache" in type(out).__dataclass_fields__ else out.past_key_values  # transformers 5.2x: cache
    return Generation(texts, prompts, inputs["attention_mask"], cache, _lengths(new, model.generation_config))


def _lengths(new: torch.Tensor, config: Any) -> list[int]:
    """Per row, the generated tokens up to and including the first end-of-sequence token (all if none)."""
    eos = config.eos_token_id
    ends = torch.isin(new, torch.tensor(eos if isinstance(eos, list) else [eos] if eos is not None else []))
    return [int(row.nonzero()[0, 0]) + 1 if row.any() else int(new.shape[1]) for row in ends]


def generate_answers(
    model: Any,
    processor: Any,
    conversations: Sequence[Conversation],
    images: Sequence[Sequence[Image.Image]],
    max_new_tokens: int,
) -> list[str]:
    """The model's greedy answer to each conversation's question (see :func:`generate`)."""
    return generate(model, processor, conversations, images, max_new_tokens).texts
