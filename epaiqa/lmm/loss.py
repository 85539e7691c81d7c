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


def answer_loss(
    model: Any,
    inputs: dict[str, Any],
    level_ids: torch.Tensor | None = None,
    level_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy over the supervised labels, from the logits of the answer columns only.

    Equals the model's own loss on ``labels`` (every position's logits, shifted by one), to float precision.
    With ``level_ids`` (B, 5: each row's level-word token ids, bad..excellent) and ``level_targets`` (B, 5:
    probabilities), the *last* label per row that is a level word — the answer's closing level, where scores are
    read: stage 2's only one, stage 3's overall level after the CoT's harmony and naturalness words — is learnt as
    that distribution over the five words (soft cross-entropy against the full vocabulary's log-probabilities)
    instead of as its one word; any earlier level words stay one-hot.
    """
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    keep = answer_columns(labels)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits  # (B, keep, V)
    targets = labels[:, -keep + 1 :]
    if level_targets is None:
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
    if level_ids is None or level_ids.shape != level_targets.shape:
        raise ValueError("soft level targets need each row's five level token ids, of the same shape")
    any_level = (targets.unsqueeze(-1) == level_ids.unsqueeze(1)).any(-1)  # (B, keep - 1)
    if not bool(any_level.any(1).all()):
        raise ValueError(f"each answer needs a level word, found {any_level.sum(1).tolist()}")
    columns = torch.arange(any_level.shape[1], device=any_level.device)
    last = torch.where(any_level, columns, -1).amax(1)  # (B,) each row's last level word
    log_probs = logits[:, :-1].float().log_softmax(-1)
    rows = torch.arange(len(labels))
    level_log_probs = log_probs[rows, last].gather(1, level_ids)  # (B, 5)
    soft = -(level_targets.to(level_log_probs.dtype) * level_log_probs).sum()
    at_last = columns.unsqueeze(0) == last.unsqueeze(1)
    hard = F.nll_loss(
        log_probs.flatten(0, 1), targets.masked_fill(at_last, -100).flatten(), ignore_index=-100, reduction="sum"
    )
    return (soft + hard) / (targets != -100).sum()
