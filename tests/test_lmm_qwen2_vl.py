"""A second backbone family: a tiny Qwen2-VL (and Qwen2.5-VL) saved to disk and loaded as a real one
(``model.backbone.path``).

Its processor has Qwen2-VL's own chat format (default system turn, ``<|vision_start|><|image_pad|><|vision_end|>``
for each image, merged-patch image tokens), so these tests show that label masks, Q-Align readout and the stage-2
run take everything from the processor rather than from strings written for LLaVA-OneVision.
"""

from pathlib import Path

import pytest
import torch
from helpers import make_cfg
from transformers import (
    AddedToken,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from epaiqa.data.levels import LEVELS
from epaiqa.data.manifest import load_manifest
from epaiqa.lmm.backbones import load_backbone, qwen2_tokenizer
from epaiqa.lmm.instructions import encode_supervised, harmony_instruction, prompt_only
from epaiqa.lmm.scoring import level_readout, score
from epaiqa.train import train

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


#: per family: its config, model and processor classes, its vision settings, and its conf/model/backbone name
FAMILIES = {
    "qwen2_vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, "qwen2_vl_7b"),
    "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, "qwen2_5_vl_7b"),
}
VISION = {
    "qwen2_vl": {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2},
    "qwen2_5_vl": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": 64,
        "num_heads": 2,
        "window_size": 32,
        "fullatt_block_indexes": [1],
    },
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def qwen2_vl_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    family = request.param
    config_class, model_class, processor_class, _ = FAMILIES[family]
    tokenizer = qwen2_tokenizer()
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in VISION_TOKENS], special_tokens=True)
    pixels = {"min_pixels": 16 * 16, "max_pixels": 64 * 64, "patch_size": 8, "merge_size": 2}
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_TEMPLATE,
    )
    ids = dict(zip(VISION_TOKENS, tokenizer.convert_tokens_to_ids(list(VISION_TOKENS)), strict=True))
    config = config_class(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tokenizer),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        },
        vision_config={**VISION[family], "patch_size": 8, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = model_class(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    folder = tmp_path_factory.mktemp(family) / f"tiny-{family}"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, family


def test_labels_and_level_readout_follow_the_qwen2_vl_processor(
    qwen2_vl_dir: tuple[Path, str], demo_root: Path
) -> None:
    folder, family = qwen2_vl_dir
    model, processor = load_backbone(str(folder), dtype="float32")
    assert type(model) is FAMILIES[family][1]
    pairs = [harmony_instruction(s, demo_root) for s in load_manifest(demo_root)[:3]]
    convs, images = [p.conversation for p in pairs], [p.images for p in pairs]
    batch = encode_supervised(processor, convs, images)
    tokenizer = processor.tokenizer
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (batch["input_ids"] == image_pad).sum(dim=1).min() > 1  # merged patches, expanded by the processor
    for row, pair in enumerate(pairs):
        learned = batch["labels"][row][batch["labels"][row] != -100]
        answer = pair.conversation[-1]["content"][0]["text"]
        assert tokenizer.decode(learned) == answer + "<|im_end|>"
    rendered = processor.apply_chat_template(prompt_only(convs[0]), add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.")

    model.eval()
    got = score(model, processor, convs, images, "Harmony level is: {}.")
    readout = level_readout(processor, "Harmony level is: {}.", context=rendered)
    with torch.no_grad():  # by hand: one sample at a time, logits at the last token of the answer prefix
        for i, (conv, imgs) in enumerate(zip(convs, images, strict=True)):
            text = processor.apply_chat_template(prompt_only(conv), add_generation_prompt=True, tokenize=False)
            inputs = processor(text=[text + readout.prefix], images=[imgs], return_tensors="pt")
            logits = model(**inputs).logits[0, -1, list(readout.ids)]
            expected = (logits.softmax(-1) * torch.arange(1, len(LEVELS) + 1)).sum()
            assert got[i].item() == pytest.approx(expected.item(), abs=1e-4)


def test_stage2_runs_on_a_local_qwen2_vl(qwen2_vl_dir: tuple[Path, str], demo_root: Path, tmp_path: Path) -> None:
    folder, family = qwen2_vl_dir
    backbone = FAMILIES[family][3]
    overrides = [
        "experiment=stage2_harmony",
        f"model/backbone={backbone}",
        f"model.backbone.path={folder}",
        "model.backbone.dtype=float32",
        "model.backbone.attn_implementation=null",
        "trainer.limit_train_batches=2",
        "data.limit_test=4",
        "eval_untrained=false",
    ]
    (record,) = train(make_cfg(demo_root, tmp_path, overrides)).values()
    assert record.model == f"epaiqa_{backbone}_wo_stage1" and record.n == 4 and record.lineage == ["scoring"]
    assert all(
        1.0 <= float(line.split(",")[4]) <= 5.0 for line in (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    )
