"""One request to a multimodal model: an optional system text and one user turn of texts and images.

Images travel as encoded bytes (PNG), so that a prompt has one stable digest (the cache key's
prompt hash) and goes unchanged to an API (base64 data URL) or to a local model (decoded again).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image

MIME = {"PNG": "image/png"}
#: longest side an image is sent with (larger ones are shrunk: fewer image tokens, smaller requests)
MAX_SIDE = 1024


@dataclass(frozen=True)
class ImagePart:
    """An encoded image and its MIME type."""

    data: bytes
    mime: str

    @classmethod
    def from_image(cls, image: Image.Image, max_side: int = MAX_SIDE) -> ImagePart:
        """A PIL image as PNG, shrunk to ``max_side`` if larger."""
        image = image.convert("RGB")
        if max(image.size) > max_side:
            image = image.copy()
            image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return cls(buffer.getvalue(), MIME["PNG"])

    def pil(self) -> Image.Image:
        """The decoded image (RGB)."""
        with Image.open(io.BytesIO(self.data)) as image:
            return image.convert("RGB")

    def data_url(self) -> str:
        """``data:<mime>;base64,...`` for an OpenAI-style ``image_url`` part."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


Part = str | ImagePart


@dataclass(frozen=True)
class Prompt:
    """A system text (optional) and the user turn's parts in order."""

    parts: tuple[Part, ...]
    system: str | None = None

    @property
    def images(self) -> list[ImagePart]:
        """The images of the user turn, in order."""
        return [p for p in self.parts if isinstance(p, ImagePart)]

    @property
    def text(self) -> str:
        """The user turn's texts joined (images left out): for logs and provenance."""
        return "".join(p for p in self.parts if isinstance(p, str))

    def digest(self, **params: Any) -> str:
        """SHA-256 of the system text, the parts (images by their bytes' hash) and generation ``params``."""
        parts = [p if isinstance(p, str) else {"image": hashlib.sha256(p.data).hexdigest()} for p in self.parts]
        blob = json.dumps({"system": self.system, "parts": parts, "params": params}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def openai_messages(self) -> list[dict[str, Any]]:
        """The chat-completions ``messages``: a user turn of ``text`` and ``image_url`` parts (text only: a string)."""
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        if not self.images:
            messages.append({"role": "user", "content": self.text})
            return messages
        content = [
            {"type": "text", "text": p}
            if isinstance(p, str)
            else {"type": "image_url", "image_url": {"url": p.data_url()}}
            for p in self.parts
            if p != ""
        ]
        messages.append({"role": "user", "content": content})
        return messages

    def conversation(self) -> list[dict[str, Any]]:
        """The Hugging Face chat format of the project's backbones (``{"type": "image"}`` where an image stands)."""
        turns: list[dict[str, Any]] = []
        if self.system:
            turns.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        content = [
            {"type": "text", "text": p} if isinstance(p, str) else {"type": "image"} for p in self.parts if p != ""
        ]
        turns.append({"role": "user", "content": content})
        return turns
