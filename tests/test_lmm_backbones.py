import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from epaiqa.errors import ConfigError
from epaiqa.lmm.backbones import (
    SMALL_BACKBONE,
    build_backbone,
    build_tiny_llava_onevision,
    load_backbone,
    qwen2_tokenizer,
)

#: A hub id in the paper's family that no cache holds (a cached real one would load gigabytes).
ABSENT = SMALL_BACKBONE.replace("0.5b", "0.1b-absent")


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return build_tiny_llava_onevision(seed=0)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8))


def _inputs(processor, image: Image.Image, answer: str | None = None):  # type: ignore[no-untyped-def]
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Rate the harmony."}]}]
    if answer is not None:
        conversation.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    text = processor.apply_chat_template(conversation, add_generation_prompt=answer is None, tokenize=False)
    return processor(text=[text], images=[[image]], return_tensors="pt")


def test_tiny_backbone_is_llava_onevision_with_the_qwen2_vocabulary(tiny) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny
    tokenizer = processor.tokenizer
    assert type(model).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert type(processor).__name__ == "LlavaOnevisionProcessor"
    assert len(tokenizer) == 151_648 == model.config.text_config.vocab_size
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    assert tokenizer.convert_tokens_to_ids(specials) == [151643, 151644, 151645, 151646, 151647]
    assert model.config.image_token_index == processor.image_token_id == 151646
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer("Hello world")["input_ids"] == [9707, 1879]  # Qwen2's ids
    assert 9_000_000 < sum(p.numel() for p in model.parameters()) < 11_000_000
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight


def test_tiny_backbone_depends_only_on_the_seed() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, _ = build_tiny_llava_onevision(seed=5)
    b, _ = build_tiny_llava_onevision(seed=5)
    c, _ = build_tiny_llava_onevision(seed=6)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    pa, pb, pc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_tiny_backbone_trains_and_generates(tiny, image) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny
    inputs = _inputs(processor, image, "Harmony level is: good.")
    assert int((inputs["input_ids"] == 151646).sum()) > 16  # anyres: base tile, high-res tiles, newlines
    labels = inputs["input_ids"].clone()
    model.train()
    try:
        model.zero_grad()
        out = model(**inputs, labels=labels)
        assert torch.isfinite(out.loss) and out.loss.item() > 5.0  # random weights: ~log(151648) ≈ 11.9
        out.loss.backward()
        vision = next(p for n, p in model.named_parameters() if "vision_tower" in n and p.ndim == 2)
        projector = next(p for n, p in model.named_parameters() if "multi_modal_projector" in n)
        for p in (vision, projector, model.get_input_embeddings().weight):
            assert p.grad is not None and float(p.grad.abs().sum()) > 0
    finally:
        model.zero_grad()
        model.eval()
    prompt = _inputs(processor, image)
    generated = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert (
        generated.shape[0] == 1
        and prompt["input_ids"].shape[1] < generated.shape[1] <= prompt["input_ids"].shape[1] + 3
    )
    assert torch.equal(generated[0, : prompt["input_ids"].shape[1]], prompt["input_ids"][0])


def test_text_layers_keeps_the_first_pretrained_layers_and_the_model_still_runs(tiny, image) -> None:  # type: ignore[no-untyped-def]
    full, _ = tiny
    cut, processor = build_backbone({"id": "tiny", "name": "tiny", "text_layers": 1})
    layers = cut.model.language_model.layers
    assert len(layers) == 1 == cut.config.text_config.num_hidden_layers
    assert all(  # the layer kept is the full model's first, unchanged
        torch.equal(a, b)
        for a, b in zip(layers[0].parameters(), full.model.language_model.layers[0].parameters(), strict=True)
    )
    prompt = _inputs(processor, image)
    with torch.no_grad():
        cut_logits = cut(**prompt).logits
        full_logits = full(**prompt).logits
    assert cut_logits.shape == full_logits.shape and not torch.allclose(cut_logits, full_logits)
    generated = cut.generate(**prompt, max_new_tokens=2, do_sample=False)  # the KV cache follows the depth
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 2
    for bad in (0, 3, 1.5, True):
        with pytest.raises(ConfigError, match="text_layers must be an integer in \\[1, 2\\]"):
            build_backbone({"id": "tiny", "name": "tiny", "text_layers": bad})


def test_tokenizer_cache_dir_is_the_only_place_written(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = qwen2_tokenizer(cache)
    assert (cache / "qwen2-llava-onevision-tokenizer" / "tokenizer.json").is_file()
    again = qwen2_tokenizer(cache)
    assert len(again) == len(first) and again("<|im_start|>assistant\n")["input_ids"] == [151644, 77091, 198]
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_load_backbone_reads_a_saved_model(tiny, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_backbone(str(tmp_path), dtype="float32")
    assert type(loaded) is type(model) and loaded.dtype == torch.float32
    assert loaded_processor.chat_template == processor.chat_template
    inputs = _inputs(loaded_processor, image)
    with torch.no_grad():
        assert torch.allclose(loaded(**inputs).logits, model(**inputs).logits, atol=1e-5)


def test_load_backbone_offline_fails_fast_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_backbone(ABSENT)
    assert time.monotonic() - start < 5.0
    message = str(info.value)
    assert f"hf download {ABSENT}" in message
    assert "model.backbone.path=/local/dir" in message


def test_load_backbone_local_files_only_fails_fast_without_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(ConfigError, match="hf download"):
        load_backbone(ABSENT, local_files_only=True)
    assert time.monotonic() - start < 5.0


def test_load_backbone_bad_paths_and_dtypes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load_backbone(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="could not be loaded"):
        load_backbone(str(tmp_path))  # a directory without a model
    with pytest.raises(ConfigError, match="dtype"):
        load_backbone(str(tmp_path), dtype="int3")
