"""Backbones and questions the LMM benchmarks share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.common import DEMO_CACHE

CONF = Path(__file__).resolve().parents[1] / "conf"


def load_backbone(name: str) -> tuple[Any, Any]:
    """``tiny`` (random) or ``mini`` (pretrained parts, from the cache) in eval mode."""
    from epaiqa.lmm.backbones import build_backbone

    model, processor = build_backbone(backbone_spec(name))
    model.eval()
    return model, processor


def backbone_spec(name: str) -> dict[str, Any]:
    """The ``model.backbone`` config of ``name``: ``mini`` read from the cache the suite uses, with its recipe's
    depth (``conf/model/backbone/mini.yaml``: the LLM cut to its first ``text_layers`` layers)."""
    spec: dict[str, Any] = {"id": name, "name": name}
    if name == "mini":
        from omegaconf import OmegaConf

        recipe = OmegaConf.load(CONF / "model" / "backbone" / "mini.yaml")
        spec["cache_dir"] = os.environ.get("EPAIQA_CACHE") or str(DEMO_CACHE)
        spec["text_layers"] = recipe.model.backbone.text_layers
    return spec


def questions(kind: str, samples: list[Any], root: Path) -> tuple[list[Any], list[Any]]:
    """Conversations and images of ``kind`` (harmony: the demo run's context view; naturalness; explain)."""
    from epaiqa.lmm.instructions import explain_instruction, harmony_instruction, naturalness_instruction

    if kind == "harmony":
        built = [harmony_instruction(s, root, view="context") for s in samples]
    elif kind == "naturalness":
        built = [naturalness_instruction(s, root) for s in samples]
    else:
        built = [explain_instruction(s, root, with_cot=False) for s in samples]
    return [b.conversation for b in built], [b.images for b in built]


def load_run(run: str | Path) -> tuple[Any, Any, Any]:
    """A finished LMM run's resolved config, its module (``checkpoints/last.ckpt``, eval mode) and its data, set up
    for fitting with every validation question (``limit_val`` lifted)."""
    from omegaconf import OmegaConf, open_dict

    from epaiqa.runs import build, register_resolvers

    register_resolvers()
    # the run's resolved config: the composed one in .hydra/ resolves recipe keys (stage2_freeze_llm) only at its root
    cfg = OmegaConf.load(os.path.join(run, "config.yaml"))
    with open_dict(cfg):
        cfg.model.init_from = os.path.join(run, "checkpoints", "last.ckpt")
        cfg.data.limit_val = None
    module = build(cfg.model).eval()
    data = build(cfg.data)
    data.setup("fit")
    return cfg, module, data
