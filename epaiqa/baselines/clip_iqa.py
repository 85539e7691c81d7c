"""CLIP-based IQA: QualiCLIP and CLIP-IQA, quality as CLIP similarity to antonym prompt pairs.

Papers:
- L. Agnolucci, L. Galteri, M. Bertini, "Quality-Aware Image-Text Alignment for Opinion-Unaware
  Image Quality Assessment" (QualiCLIP), arXiv:2403.11176, 2024.
  Original code: https://github.com/miccunifi/QualiCLIP (CC BY-NC 4.0).
- J. Wang, K. C. K. Chan, C. C. Loy, "Exploring CLIP for Assessing the Look and Feel of Images"
  (CLIP-IQA), AAAI 2023. Original code: https://github.com/IceClear/CLIP-IQA (NTU S-Lab License 1.0,
  as we recall its README; not re-checked offline).
- CLIP: A. Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
  ICML 2021, https://github.com/openai/CLIP (MIT).
The archs are pyiqa's (``pyiqa/archs/qualiclip_arch.py``, ``clipiqa_arch.py``, ``clip_model.py``,
https://github.com/chaofengc/IQA-PyTorch, PolyForm Noncommercial 1.0.0), used from the installed
package, not copied. The BPE vocabulary is the one shipped with the ``clip`` package.

Building offline: both pyiqa constructors call ``load("RN50")``, which downloads OpenAI's RN50, and
QualiCLIP's always ``torch.load``s its own ``QualiCLIP.pth`` (fetched by ``load_file_from_url``).
A random CLIP is built from the RN50 hyper-parameters with pyiqa's own ``clip_model.CLIP`` class,
and, for the constructor call only, these names inside the arch module are replaced: ``load``
returns that CLIP; for QualiCLIP ``load_file_from_url`` returns a placeholder and ``torch`` is a
``torch`` whose ``load`` returns the random CLIP's own state (plus placeholder prompt features);
``load_pretrained_network`` refuses to run.

Choices for training from random init and for this zoo:

- pyiqa keeps the CLIP in a list, so that it is neither saved nor trained, and freezes it. Here the
  CLIP is registered as the submodule ``clip`` (trained, saved, moved with the model). With
  ``pretrained=False`` it is unfrozen (a random CLIP must learn); with ``pretrained=True`` it stays
  frozen only for the prompt-learning variants (``qualiclip+``/``clipiqa+``, upstream's setting),
  since the fixed-prompt variants would then have nothing to train. ``freeze_clip`` overrides this.
  A frozen CLIP also stays in eval mode when the model is put in training mode (its ResNet's batch
  norms keep their running statistics, as upstream's CLIP, kept out of the module tree, stays in the eval
  mode ``load`` returns it in); a CLIP that trains follows the model's mode, batch norms included.
- QualiCLIP (``model_type="qualiclip"``) scores with prompt features pre-computed from its
  fine-tuned CLIP and stored in its checkpoint. With random init there are none: the 14 antonym
  prompts are encoded by the (random, trainable) text encoder at every forward pass instead. With a
  QualiCLIP checkpoint that holds ``prompts_features`` they are used fixed, as upstream.
- CLIP-IQA (``model_type="clipiqa"``) already encodes its prompts every pass; no change.
- scores are pyiqa's: softmax over each antonym pair (QualiCLIP with temperature 2) and the mean
  probability of the positive prompts, in [0, 1].
- defaults are OpenAI RN50 (embed 1024, layers 3-4-6-3, width 64; text 12×512, 8 heads, context 77).
  ``vision_layers``, ``vision_width``, ``embed_dim``, ``transformer_*`` shrink it for CPU runs.

``pretrained=True`` reads one of: a state dict of this wrapper (keys ``clip.*``, saved from a
trained model); or a CLIP state dict (keys ``visual.*``…, optionally prefixed ``clip_model.`` as in
``QualiCLIP.pth``, or OpenAI's RN50 converted to a plain state dict), whose shapes decide the
architecture. Learned prompts (``QualiCLIP+_koniq.pth`` or CLIP-IQA+'s context tensor) can be added
with ``prompts_path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from unittest import mock

import torch
from pyiqa.archs import clip_model as clip_arch
from pyiqa.archs import clipiqa_arch, qualiclip_arch
from pyiqa.archs.clip_imports import clip
from pyiqa.archs.clipiqa_arch import CLIPIQA
from pyiqa.archs.qualiclip_arch import QualiCLIP
from torch import nn

from epaiqa.baselines.common import ScoreModel, load_state_dict_file
from epaiqa.baselines.offline import TorchWithLoad, existing_file, refuse_download, strip_prefix
from epaiqa.baselines.registry import register_baseline
from epaiqa.errors import ConfigError

QUALICLIP_CITATION = "Agnolucci et al., Quality-Aware Image-Text Alignment for Opinion-Unaware IQA, arXiv 2024"
CLIPIQA_CITATION = "Wang et al., Exploring CLIP for Assessing the Look and Feel of Images, AAAI 2023"

#: OpenAI CLIP RN50's architecture (as ``clip_model.build_model`` reads it from the checkpoint).
RN50: dict[str, Any] = {
    "embed_dim": 1024,
    "image_resolution": 224,
    "vision_layers": (3, 4, 6, 3),
    "vision_width": 64,
    "vision_patch_size": None,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 512,
    "transformer_heads": 8,
    "transformer_layers": 12,
}


def random_clip(**arch: Any) -> clip_arch.CLIP:
    """A randomly initialised CLIP (ResNet image tower) with RN50's sizes unless overridden."""
    config = {**RN50, **{k: v for k, v in arch.items() if v is not None}}
    config["vision_layers"] = tuple(config["vision_layers"])
    return clip_arch.CLIP(**config).float()


class _FrozenCLIPStaysEval(nn.Module):
    """Mixin: when ``clip_frozen`` is set, ``train()`` leaves the CLIP (``self.clip``) in eval mode."""

    clip_frozen = False

    def train(self, mode: bool = True) -> _FrozenCLIPStaysEval:
        super().train(mode)
        if self.clip_frozen:
            self.clip.eval()
        return self


class CLIPIQANet(_FrozenCLIPStaysEval, CLIPIQA):
    """pyiqa's CLIPIQA around a given CLIP, which is registered (saved, trained) as ``clip``."""

    def __init__(self, clip_net: nn.Module, model_type: str = "clipiqa", pos_embedding: bool = False) -> None:
        with (
            mock.patch.object(clipiqa_arch, "load", lambda *args, **kwargs: clip_net),
            mock.patch.object(clipiqa_arch, "load_file_from_url", refuse_download),
            mock.patch.object(clipiqa_arch, "load_pretrained_network", refuse_download),
        ):
            super().__init__(model_type=model_type, backbone="RN50", pretrained=False, pos_embedding=pos_embedding)
        self.clip = clip_net


class QualiCLIPNet(_FrozenCLIPStaysEval, QualiCLIP):
    """pyiqa's QualiCLIP around a given CLIP; without fixed prompt features it encodes the prompts itself."""

    def __init__(
        self,
        clip_net: nn.Module,
        model_type: str = "qualiclip",
        prompts_features: torch.Tensor | None = None,
        temperature: float = 2.0,
        n_ctx: int = 16,
        pos_embedding: bool = False,
    ) -> None:
        def clip_own_state(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            return {"prompts_features": torch.empty(0), **clip_net.state_dict()}

        with (
            mock.patch.object(qualiclip_arch, "load", lambda *args, **kwargs: clip_net),
            mock.patch.object(qualiclip_arch, "load_file_from_url", lambda *args, **kwargs: "<no file>"),
            mock.patch.object(qualiclip_arch, "torch", TorchWithLoad(load=clip_own_state)),
            mock.patch.object(qualiclip_arch, "load_pretrained_network", refuse_download),
        ):
            super().__init__(
                model_type=model_type,
                backbone="RN50",
                temperature=temperature,
                n_ctx=n_ctx,
                pretrained=False,
                pos_embedding=pos_embedding,
            )
        self.clip = clip_net
        del self.prompts_features
        self.register_buffer("prompts_features", prompts_features)
        self.register_buffer("prompt_tokens", clip.tokenize(self.prompt_pairs), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.model_type != "qualiclip" or self.prompts_features is not None:
            return super().forward(x)
        # no pre-computed prompt features: encode the antonym prompts with the (trainable) text encoder
        x = (x - self.default_mean.to(x)) / self.default_std.to(x)
        text_features = self.clip.encode_text(self.prompt_tokens)
        logits, _ = self.clip(x, None, text_features=text_features, pos_embedding=self.pos_embedding)
        probs = torch.softmax(logits.reshape(logits.shape[0], -1, 2) / self.temperature, dim=-1)
        return probs[..., 0].mean(dim=1, keepdim=True)


def _read_weights(weights_path: str) -> dict[str, torch.Tensor]:
    try:
        state = load_state_dict_file(weights_path)
    except RuntimeError as err:
        if "TorchScript" not in str(err):
            raise
        raise ConfigError(
            f"{weights_path} is a TorchScript archive (OpenAI's CLIP release), which is not read here. Convert it "
            "once to a plain state dict: python -c \"import torch; torch.save(torch.jit.load('RN50.pt', "
            "map_location='cpu').state_dict(), 'RN50_state.pth')\" and pass RN50_state.pth."
        ) from err
    if not isinstance(state, dict):
        raise ConfigError(f"{weights_path} holds a {type(state).__name__}, not a state dict")
    return strip_prefix(state, "module.")


def _load_prompts(net: nn.Module, prompts_path: str) -> None:
    state = load_state_dict_file(prompts_path)
    if not hasattr(net, "prompt_learner"):
        raise ConfigError("prompts_path needs a prompt-learning model_type (qualiclip+ or clipiqa+)")
    if isinstance(state, torch.Tensor):  # CLIP-IQA+ ships the learned context as a bare tensor
        if state.shape != net.prompt_learner.ctx.shape:
            raise ConfigError(
                f"{prompts_path} holds a context of shape {tuple(state.shape)}, "
                f"the model needs {tuple(net.prompt_learner.ctx.shape)}"
            )
        net.prompt_learner.ctx.data.copy_(state)
    else:
        net.prompt_learner.load_state_dict(strip_prefix(state, "prompt_learner."), strict=True)


def _build(
    family: str,
    pretrained: bool,
    weights_path: str | None,
    model_type: str,
    freeze_clip: bool | None,
    prompts_path: str | None,
    arch: dict[str, Any],
    **kwargs: Any,
) -> nn.Module:
    if prompts_path is not None:
        if not pretrained:
            raise ConfigError("prompts_path is only read with pretrained=true")
        prompts_path = existing_file(prompts_path, "prompts_path")
    prompts_features = None
    state: dict[str, torch.Tensor] | None = None
    if pretrained and weights_path is not None:
        state = _read_weights(weights_path)
        if any(k.startswith("clip.") for k in state):  # a state dict of this wrapper
            clip_net = random_clip(**arch)
            prompts_features = state.get("prompts_features")
        else:  # a CLIP checkpoint, e.g. QualiCLIP.pth or OpenAI RN50 as a state dict
            clip_state = strip_prefix(state, "clip_model.")
            prompts_features = clip_state.pop("prompts_features", None)
            # build_model reads the architecture from the shapes but loads the weights into an fp16
            # copy; reload them in full precision
            clip_net = clip_arch.build_model(dict(clip_state)).float().train()
            for key in ("input_resolution", "context_length", "vocab_size"):
                clip_state.pop(key, None)
            clip_net.load_state_dict(clip_state, strict=True)
            state = None
    else:
        clip_net = random_clip(**arch)

    if family == "qualiclip":
        net: nn.Module = QualiCLIPNet(clip_net, model_type=model_type, prompts_features=prompts_features, **kwargs)
    else:
        net = CLIPIQANet(clip_net, model_type=model_type, **kwargs)
    if state is not None:
        net.load_state_dict(state, strict=True)
    if prompts_path is not None:
        _load_prompts(net, prompts_path)

    if freeze_clip is None:
        freeze_clip = pretrained and hasattr(net, "prompt_learner")
    for p in net.clip.parameters():
        p.requires_grad = not freeze_clip
    net.clip_frozen = freeze_clip
    net.train()
    return ScoreModel(net, reference=False)


#: CLIP architecture overrides a factory passes on (None keeps RN50's value).
ARCH_KEYS = (
    "embed_dim",
    "vision_layers",
    "vision_width",
    "transformer_width",
    "transformer_heads",
    "transformer_layers",
)


@register_baseline(
    "qualiclip",
    mode="NR",
    input_size=384,
    citation=QUALICLIP_CITATION,
    weights=qualiclip_arch.default_model_urls["qualiclip"],
)
def qualiclip(
    pretrained: bool = False,
    weights_path: str | None = None,
    model_type: str = "qualiclip",
    freeze_clip: bool | None = None,
    prompts_path: str | None = None,
    temperature: float = 2.0,
    n_ctx: int = 16,
    embed_dim: int | None = None,
    vision_layers: Sequence[int] | None = None,
    vision_width: int | None = None,
    transformer_width: int | None = None,
    transformer_heads: int | None = None,
    transformer_layers: int | None = None,
) -> nn.Module:
    """QualiCLIP (``model_type``: qualiclip, or qualiclip+ with learned prompts) on a CLIP ResNet."""
    if not model_type.startswith("qualiclip"):
        raise ValueError(f"QualiCLIP model_type must be qualiclip or qualiclip+..., got {model_type!r}")
    arch = {k: v for k, v in locals().items() if k in ARCH_KEYS}
    return _build(
        "qualiclip",
        pretrained,
        weights_path,
        model_type,
        freeze_clip,
        prompts_path,
        arch,
        temperature=temperature,
        n_ctx=n_ctx,
    )


@register_baseline(
    "clipiqa",
    mode="NR",
    input_size=384,
    citation=CLIPIQA_CITATION,
    weights=f"OpenAI CLIP RN50 ({clip_arch._MODELS['RN50']}) converted to a state dict",
)
def clipiqa(
    pretrained: bool = False,
    weights_path: str | None = None,
    model_type: str = "clipiqa",
    freeze_clip: bool | None = None,
    prompts_path: str | None = None,
    embed_dim: int | None = None,
    vision_layers: Sequence[int] | None = None,
    vision_width: int | None = None,
    transformer_width: int | None = None,
    transformer_heads: int | None = None,
    transformer_layers: int | None = None,
) -> nn.Module:
    """CLIP-IQA (``model_type``: clipiqa with fixed antonym prompts, or clipiqa+ with learned ones)."""
    if not model_type.startswith("clipiqa"):
        raise ValueError(f"CLIP-IQA model_type must be clipiqa or clipiqa+..., got {model_type!r}")
    arch = {k: v for k, v in locals().items() if k in ARCH_KEYS}
    return _build("clipiqa", pretrained, weights_path, model_type, freeze_clip, prompts_path, arch)
