"""``local/<backbone or path>``: a Hugging Face vision-language model answering in this process, offline.

The model is built by the project's own :func:`~epaiqa.lmm.backbones.build_backbone` (``local/tiny``,
``local/mini``, ``local/random-0.5b``, a saved model folder or a hub id already in the local cache) and prompted
through its processor's chat template, images where the prompt puts them. It samples at ``temperature`` (1.0 when
unset, as OpenAI's API does) with the seed the batch derives from the cache key, so reruns reproduce; temperature
0 decodes greedily. Token counts are the prompt's (image tokens included) and the reply's.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

from epaiqa.llm.base import Reply
from epaiqa.llm.prompt import Prompt
from epaiqa.llm.settings import ClientSettings

#: the local client's temperature when the settings leave it to the provider
DEFAULT_TEMPERATURE = 1.0


@lru_cache(maxsize=4)
def load_model(ident: str) -> tuple[Any, Any, threading.Lock]:
    """Model, processor and the lock that serialises its use, built once per process (``ident``: backbone or path)."""
    from epaiqa.lmm.backbones import build_backbone

    cache_dir = os.environ.get("EPAIQA_CACHE") or "~/.cache/epaiqa"
    model, processor = build_backbone({"id": ident, "name": ident, "cache_dir": cache_dir})
    model.eval()
    return model, processor, threading.Lock()


class LocalClient:
    """A local model with its settings; requests run one at a time (a lock guards the shared model)."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.model, self.processor, self._lock = load_model(settings.model)

    def ask(self, prompt: Prompt, seed: int = 0) -> Reply:
        """The model's reply, sampled with ``seed`` (greedy at temperature 0)."""
        import torch

        from epaiqa.lmm.generation import generate

        temperature = DEFAULT_TEMPERATURE if self.settings.temperature is None else float(self.settings.temperature)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0}
        images = [[image.pil() for image in prompt.images]]
        with self._lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = generate(
                self.model, self.processor, [prompt.conversation()], images, self.settings.max_tokens, sampling
            )
        prompt_tokens = int(out.attention_mask[0].sum())
        return Reply(out.texts[0], prompt_tokens=prompt_tokens, completion_tokens=out.lengths[0])
