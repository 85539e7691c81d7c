"""Greedy generation of answers (stage-1 boxes, stage-3 explanations) for a batch of conversations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from PIL import Image

from epaiqa.lmm.instructions import Conversation, prompt_only, tokenizer_of


@torch.no_grad()
def generate_answers(
    model: Any,
    processor: Any,
    conversations: Sequence[Conversation],
    images: Sequence[Sequence[Image.Image]],
    max_new_tokens: int,
) -> list[str]:
    """The model's greedy answer to each conversation's question (a trailing answer is dropped).

    Prompts are left-padded so that generation continues every row; the processor's padding side is restored.
    """
    tokenizer = tokenizer_of(processor)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        prompts = [
            processor.apply_chat_template(prompt_only(c), add_generation_prompt=True, tokenize=False)
            for c in conversations
        ]
        inputs = processor(text=prompts, images=[list(i) for i in images], padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    inputs = inputs.to(model.device, dtype=model.dtype)
    # sharded models (FSDP, ZeRO-3) need every process in every step until all have finished
    synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, synced_gpus=synced)
    return [t.strip() for t in tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)]
