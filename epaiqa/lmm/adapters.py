"""Parameter-efficient and memory-saving training of the LMM: LoRA (peft) and gradient checkpointing.

The paper fine-tunes all parameters in stages 2 and 3; LoRA is the option for smaller GPUs. Adapters go on
the language model's linear layers (``scope``), the projector is trained fully (``modules_to_save``), the
vision tower stays frozen. A LoRA-trained checkpoint is merged into plain weights when the next stage starts
from it (:func:`merge_lora_weights`), so stages chain whatever each one used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from epaiqa.errors import ConfigError

#: Defaults of ``model.lora`` (the linear layers of Qwen2 blocks, the LLaVA projector).
LORA_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "scope": "language_model",
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "modules_to_save": ["multi_modal_projector"],
}


def lora_settings(lora: Mapping[str, Any] | None) -> dict[str, Any]:
    """``model.lora`` completed with :data:`LORA_DEFAULTS`; unknown keys are a :class:`ConfigError`."""
    settings = dict(LORA_DEFAULTS)
    unknown = sorted(set(lora or {}) - set(settings))
    if unknown:
        raise ConfigError(f"model.lora: unknown keys {unknown}; known: {sorted(settings)}")
    settings.update(lora or {})
    if settings["enabled"] and (int(settings["r"]) < 1 or not settings["target_modules"]):
        raise ConfigError("model.lora: r must be >= 1 and target_modules non-empty")
    return settings


def lora_config(settings: Mapping[str, Any]) -> Any:
    """The peft ``LoraConfig`` of :func:`lora_settings` (targets matched inside ``scope`` only)."""
    from peft import LoraConfig

    names = "|".join(str(m) for m in settings["target_modules"])
    return LoraConfig(
        r=int(settings["r"]),
        lora_alpha=int(settings["alpha"]),
        lora_dropout=float(settings["dropout"]),
        target_modules=rf".*{settings['scope']}.*\.({names})",
        modules_to_save=list(settings["modules_to_save"]) or None,
    )


def apply_lora(model: torch.nn.Module, lora: Mapping[str, Any] | None) -> torch.nn.Module:
    """``model`` wrapped by peft with LoRA adapters when ``lora.enabled``; otherwise ``model`` itself."""
    settings = lora_settings(lora)
    if not settings["enabled"]:
        return model
    from peft import get_peft_model

    names = [n for n, _ in model.named_modules()]
    missing = [m for m in settings["modules_to_save"] if not any(n == m or n.endswith(f".{m}") for n in names)]
    if missing:
        raise ConfigError(
            f"model.lora.modules_to_save: no module named {missing} in {type(model).__name__} "
            "(LLaVA-OneVision: multi_modal_projector; Qwen2-VL: merger)"
        )
    try:
        return get_peft_model(model, lora_config(settings))
    except ValueError as exc:  # no module matched
        raise ConfigError(f"model.lora: {exc}") from None


def merge_lora_weights(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], lora: Mapping[str, Any]
) -> torch.nn.Module:
    """``model`` with a LoRA-trained state dict loaded and merged in (plain modules, no adapters)."""
    wrapped = apply_lora(model, {**lora_settings(lora), "enabled": True})
    wrapped.load_state_dict(dict(weights))
    return wrapped.merge_and_unload()


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (transformers' own, non-reentrant)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"{type(model).__name__} does not support gradient checkpointing")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
