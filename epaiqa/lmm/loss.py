"""The supervised loss of the LMM stages, computed only where there are answers to learn.

The label mask (:func:`~epaiqa.lmm.instructions.encode_supervised`) keeps the answer and its end-of-turn token;
batches are left-padded, so every answer sits in the last columns. The language-model head runs on those
columns only (``logits_to_keep``) instead of the whole sequence: with Qwen2's 152k-token vocabulary the full
logits of a batch are most of a training step's memory and time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def answer_columns(labels: torch.Tensor) -> int:
    """How many last columns hold every supervised label, plus the column that predicts the first of them."""
    supervised = (labels != -100).any(dim=0).nonzero()
    if supervised.numel() == 0:
        raise ValueError("the batch has no supervised label")
    return labels.shape[1] - int(supervised[0]) + 1


def answer_loss(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """Mean next-token cross-entropy over the supervised labels, from the logits of the answer columns only.

    Equals the model's own loss on ``labels`` (every position's logits, shifted by one), to float precision.
    """
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    keep = answer_columns(labels)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits  # (B, keep, V)
    targets = labels[:, -keep + 1 :]
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
