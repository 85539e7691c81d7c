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

from epaiqa.llm.client import Reply
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

    def _inputs(self, prompt: Prompt) -> Any:
        text = self.processor.apply_chat_template(prompt.conversation(), add_generation_prompt=True, tokenize=False)
        images = [image.pil() for image in prompt.images]
        if images:
            return self.processor(text=[text], images=[images], return_tensors="pt")
        return self.processor(text=[text], return_tensors="pt")

    def ask(self, prompt: Prompt, seed: int = 0) -> Reply:
        """The model's reply, sampled with ``seed`` (greedy at temperature 0)."""
        import torch

        temperature = DEFAULT_TEMPERATURE if self.settings.temperature is None else float(self.settings.temperature)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0}
        with self._lock, torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inputs = self._inputs(prompt).to(self.model.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            out = self.model.generate(**inputs, max_new_tokens=self.settings.max_tokens, **sampling)
        length = inputs["input_ids"].shape[1]
        new = out[0, length:]
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        return Reply(text, prompt_tokens=int(length), completion_tokens=int(new.shape[0]))
