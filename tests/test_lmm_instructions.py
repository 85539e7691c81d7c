from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from epaiqa.data.crops import bbox_to_pixels
from epaiqa.data.levels import soft_levels
from epaiqa.data.schema import PAISample
from epaiqa.errors import ConfigError, DataError
from epaiqa.lmm.backbones import build_tiny_llava_onevision
from epaiqa.lmm.instructions import (
    ANSWER_TEMPLATES,
    Conversation,
    answer_span,
    answer_text,
    encode_supervised,
    explain_instruction,
    explain_level_position,
    grounding_instruction,
    harmony_instruction,
    naturalness_instruction,
    prompt_only,
    qalign_instruction,
)
from epaiqa.lmm.loss import answer_columns, answer_loss
from epaiqa.lmm.scoring import level_readout, level_token_ids

# Appendix E, written out by hand ([image] where an image goes; typos fixed as the module's docstring says).
E1_QUESTION = (
    "The original image is: [image], the image after partial editing is: [image]. Please output the "
    "representation of the local editing area. It is expressed as four decimals in the range [0,1] (as a "
    "percentage of the image), where the first two digits are the horizontal/vertical coordinates of the "
    "center point of the editing area, and the last two digits are the width/height coordinates of the size of "
    "the editing area."
)
E2_HARMONY = (
    "The image after partial editing is: [image].{cot} Please rate the harmony between the edited area and the "
    "overall edited image (There are 5 levels in total: bad, poor, fair, good, excellent). Then output the "
    "harmony level."
)
E2_NATURALNESS = (
    "The editing area of image after partial editing is: [image].{cot} Please rate the naturalness of the "
    "edited area (There are 5 levels in total: bad, poor, fair, good, excellent). Then output the naturalness "
    "level."
)
E3_QUESTION = (
    "The original image is: [image], the image after partial editing is: [image]. The partial editing prompt "
    "is: {prompt}.{ref} First, determine whether the prompt is followed. If not, analyze it and directly give "
    "the overall quality level as bad. If partially followed, analyze it and directly give the overall quality "
    "level as poor. If followed, first analyze the prompt completion, the local naturalness of the edited area "
    "and the overall harmony, then please give the final overall editing quality level based on the analysis "
    "and the overall presentation quality of the edited image."
)

COT = {
    "completion": "The cup on the table is now red, as asked",
    "harmony": "The red cup keeps the lighting of the scene.",
    "naturalness": "The cup's surface is slightly blurred.",
    "overall": "Therefore, the overall editing quality level of the image is good.",
}


def _sample(**changes: object) -> PAISample:
    base = PAISample(
        id="s1",
        source="src.png",
        edited="edit.png",
        prompt="Make the cup red",
        bbox=(0.5, 0.5, 0.5, 0.25),
        edit_type="semantic_change",
        mos={"overall": 3.5, "harmony": 4.4, "naturalness": 2.2, "completion": 3.0},
        cot=dict(COT),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pai")
    rng = np.random.default_rng(0)
    for name, shape in (("src.png", (40, 64, 3)), ("edit.png", (40, 64, 3)), ("other.png", (56, 24, 3))):
        Image.fromarray((rng.random(shape) * 200).astype(np.uint8)).save(path / name)
    return path


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return build_tiny_llava_onevision()


@pytest.fixture(scope="module")
def processor(tiny):  # type: ignore[no-untyped-def]
    return tiny[1]


def _question(conversation: Conversation) -> str:
    """The user turn with [image] where an image part stands."""
    parts = conversation[0]["content"]
    return "".join("[image]" if p["type"] == "image" else p["text"] for p in parts)


def test_grounding_pair_is_appendix_e1(root: Path) -> None:
    conversation, images = grounding_instruction(_sample(bbox=(0.25, 0.6, 0.125, 0.3333333)), root)
    assert [m["role"] for m in conversation] == ["user", "assistant"]
    assert _question(conversation) == E1_QUESTION
    assert (
        answer_text(conversation)
        == "The four coefficients representing the editing area are: (0.2500, 0.6000, 0.1250, 0.3333)."
    )
    assert len(images) == 2
    assert np.array_equal(np.asarray(images[0]), np.asarray(Image.open(root / "src.png").convert("RGB")))
    assert np.array_equal(np.asarray(images[1]), np.asarray(Image.open(root / "edit.png").convert("RGB")))


def test_harmony_pair_is_appendix_e2(root: Path) -> None:
    conversation, images = harmony_instruction(_sample(), root)
    assert _question(conversation) == E2_HARMONY.format(cot="")
    assert answer_text(conversation) == "Harmony level is: excellent."  # 4.4 → [4, 5)
    assert [im.size for im in images] == [(64, 40)]
    with_cot = harmony_instruction(_sample(), root, with_cot=True).conversation
    assert _question(with_cot) == E2_HARMONY.format(cot=" The red cup keeps the lighting of the scene.")


def test_harmony_context_view_shows_the_region_with_its_margin(root: Path) -> None:
    conversation, images = harmony_instruction(_sample(), root, view="context", margin=0.25)
    assert _question(conversation) == E2_HARMONY.format(cot="")  # the question stays appendix E.2's
    edited = Image.open(root / "edit.png").convert("RGB")
    box = bbox_to_pixels(_sample().bbox, 64, 40, margin=0.25)
    assert images[0].size == (box[2] - box[0], box[3] - box[1]) == (48, 16)  # region 32×10 grown 25% each side
    assert np.array_equal(np.asarray(images[0]), np.asarray(edited.crop(box)))
    with pytest.raises(ConfigError, match=r"data\.harmony_view must be one of whole, context"):
        harmony_instruction(_sample(), root, view="region")


def test_naturalness_pair_is_appendix_e2_on_the_region_crop(root: Path) -> None:
    conversation, images = naturalness_instruction(_sample(), root)
    assert _question(conversation) == E2_NATURALNESS.format(cot="")
    assert answer_text(conversation) == "Naturalness level is: poor."  # 2.2 → [1, 2)
    assert [im.size for im in images] == [(32, 10)]  # 0.5×64 by 0.25×40
    edited = np.asarray(Image.open(root / "edit.png").convert("RGB"))
    assert np.array_equal(np.asarray(images[0]), edited[15:25, 16:48])
    with_cot = naturalness_instruction(_sample(), root, with_cot=True).conversation
    assert _question(with_cot) == E2_NATURALNESS.format(cot=" The cup's surface is slightly blurred.")


def test_qalign_pair_is_q_aligns_question_and_answer_on_the_tables_inputs(processor, root: Path) -> None:  # type: ignore[no-untyped-def]
    conversation, images = qalign_instruction(_sample(), root, "harmony")
    assert _question(conversation) == "How would you rate the quality of this image?\n[image]"
    assert answer_text(conversation) == "The quality of the image is excellent."  # harmony 4.4
    assert [im.size for im in images] == [(64, 40)]  # Table 1: the whole edited image
    conversation, images = qalign_instruction(_sample(), root, "naturalness")
    assert answer_text(conversation) == "The quality of the image is poor." and [im.size for im in images] == [(32, 10)]
    readout = level_readout(processor, "The quality of the image is {}.")
    assert readout.prefix == "The quality of the image is" and len(set(readout.ids)) == 5


def test_explain_pair_is_appendix_e3(root: Path) -> None:
    conversation, images = explain_instruction(_sample(), root)
    assert _question(conversation) == E3_QUESTION.format(prompt="Make the cup red", ref="")
    assert answer_text(conversation) == (
        "The prompt completion is fully compliant. The cup on the table is now red, as asked. "
        "The harmony: The red cup keeps the lighting of the scene. "
        "The local naturalness: The cup's surface is slightly blurred. "
        "Therefore, the overall editing quality level of the image is good."
    )
    assert len(images) == 2
    ended = explain_instruction(_sample(prompt="Make the cup red."), root).conversation
    assert _question(ended) == E3_QUESTION.format(prompt="Make the cup red", ref="")


@pytest.mark.parametrize(
    ("completion", "word", "overall"), [(1, "non-compliant", "bad"), (2, "partly-compliant", "poor")]
)
def test_explain_answer_when_the_prompt_is_not_followed(root: Path, completion: int, word: str, overall: str) -> None:
    sample = _sample(mos={"overall": 4.8, "harmony": 4.0, "naturalness": 4.0, "completion": float(completion)})
    assert answer_text(explain_instruction(sample, root).conversation) == (
        f"The prompt completion is {word}. The cup on the table is now red, as asked. "
        f"Therefore, the overall editing quality level of the image is {overall}."
    )


def test_explain_without_cot_answers_the_overall_level_only(root: Path) -> None:
    assert answer_text(explain_instruction(_sample(), root, with_cot=False).conversation) == (
        "Therefore, the overall editing quality level of the image is good."
    )
    low = _sample(mos={"overall": 1.2, "harmony": 4.0, "naturalness": 4.0, "completion": 2.0}, cot=None)
    assert answer_text(explain_instruction(low, root, with_cot=False).conversation) == (
        "Therefore, the overall editing quality level of the image is poor."
    )


def test_grounding_question_adds_the_edit_prompt_only_when_asked(root: Path) -> None:
    plain = _question(grounding_instruction(_sample(), root).conversation)
    asked = _question(grounding_instruction(_sample(), root, with_prompt=True).conversation)
    assert "editing prompt" not in plain  # appendix E.1 as printed
    assert f"The partial editing prompt is: {_sample().prompt.strip()}" in asked
    request = plain.split(". Please", 1)[1]
    assert asked.endswith(request) and asked.count("Please output") == 1  # the same request, after the prompt


def test_reference_mode_boxes_the_region_and_names_it(root: Path) -> None:
    plain = explain_instruction(_sample(), root).images[1]
    conversation, images = explain_instruction(_sample(), root, reference=True)
    assert _question(conversation) == E3_QUESTION.format(
        prompt="Make the cup red", ref=" The edited area is marked with a red box."
    )
    boxed, before = np.asarray(images[1]).astype(int), np.asarray(plain).astype(int)
    changed = np.argwhere((boxed != before).any(axis=2))
    assert (boxed[changed[:, 0], changed[:, 1]] == [255, 0, 0]).all()
    # the outline runs along the region's pixel box (left 16, top 15, right 48, bottom 25), inside stays as it was
    assert changed[:, 1].min() == 16 and changed[:, 1].max() == 47
    assert changed[:, 0].min() == 15 and changed[:, 0].max() == 24
    assert np.array_equal(boxed[18:22, 20:44], before[18:22, 20:44])
    harmony = harmony_instruction(_sample(), root, reference=True)
    assert "The edited area is marked with a red box. Please rate the harmony" in _question(harmony.conversation)
    assert np.array_equal(np.asarray(harmony.images[0]), boxed.astype(np.uint8))


def test_missing_scores_and_explanations_are_data_errors(root: Path) -> None:
    with pytest.raises(DataError, match="no harmony score"):
        harmony_instruction(_sample(mos={"overall": 3.0}), root)
    with pytest.raises(DataError, match=r"cot\.naturalness"):
        naturalness_instruction(_sample(cot={"harmony": "x"}), root, with_cot=True)
    with pytest.raises(DataError, match=r"completion must be 1\.\.3"):
        explain_instruction(_sample(mos={"overall": 3.0, "completion": 5.0}), root)


def test_prompt_only_drops_the_answer(root: Path) -> None:
    conversation = harmony_instruction(_sample(), root).conversation
    assert prompt_only(conversation) == conversation[:1]
    assert prompt_only(conversation[:1]) == conversation[:1]


# --- label mask on the tiny backbone's real chat template and Qwen2 tokenisation ---------------------------


def test_chat_template_is_the_qwen2_format(processor, root: Path) -> None:  # type: ignore[no-untyped-def]
    conversation = harmony_instruction(_sample(), root).conversation
    full = processor.apply_chat_template(conversation, tokenize=False)
    question = E2_HARMONY.format(cot="").replace("[image]", "<image>")
    assert full == (
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\nHarmony level is: excellent.<|im_end|>\n"
    )
    prompt = processor.apply_chat_template(conversation[:1], add_generation_prompt=True, tokenize=False)
    assert prompt == f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("side", ["right", "left"])
def test_labels_cover_exactly_the_answer_and_end_of_turn(tiny, processor, root: Path, side: str) -> None:  # type: ignore[no-untyped-def]
    pairs = [
        harmony_instruction(_sample(), root),
        explain_instruction(_sample(), root),
        naturalness_instruction(_sample(), root),
        grounding_instruction(_sample(), root),
    ]
    processor.tokenizer.padding_side = side
    try:
        batch = encode_supervised(processor, [p.conversation for p in pairs], [p.images for p in pairs])
    finally:
        processor.tokenizer.padding_side = "right"
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert labels.shape == ids.shape and "pixel_values" in batch
    assert int(mask.sum(1).min()) < ids.shape[1]  # rows of different lengths: padding is exercised
    end_of_turn = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for row, pair in enumerate(pairs):
        kept = labels[row] != -100
        assert torch.equal(labels[row][kept], ids[row][kept])
        assert processor.tokenizer.decode(labels[row][kept]) == answer_text(pair.conversation) + "<|im_end|>"
        positions = kept.nonzero().flatten()
        assert torch.equal(positions, torch.arange(int(positions[0]), int(positions[-1]) + 1))  # one span
        assert int(ids[row, positions[-1]]) == end_of_turn
        real = mask[row].nonzero().flatten()
        assert int(positions[-1]) == int(real[-1]) - 1  # only the trailing newline after <|im_end|> is unlearned
        assert not bool((mask[row] == 0)[kept].any())
    assert int((ids == processor.image_token_id).sum()) > 0
    with torch.no_grad():  # one- and two-image samples in one batch: the model agrees with the processor
        loss = tiny[0](**batch).loss
    assert torch.isfinite(loss)


def test_answer_span_counts_the_tokens_from_the_end(processor, root: Path) -> None:  # type: ignore[no-untyped-def]
    conversation = harmony_instruction(_sample(), root).conversation
    span = answer_span(processor, conversation)
    tokens = processor.tokenizer.convert_ids_to_tokens(span.tail_ids)
    assert tokens == ["Har", "mony", "Ġlevel", "Ġis", ":", "Ġexcellent", ".", "<|im_end|>", "Ċ"]
    assert span.supervised == 8


def test_a_template_that_moves_the_answer_is_refused(processor, root: Path) -> None:  # type: ignore[no-untyped-def]
    conversation = harmony_instruction(_sample(), root).conversation
    original = processor.chat_template
    processor.chat_template = original.replace(
        "{% generation %}{{ part['text'] }}", "{% generation %}{{ 'Sure! ' + part['text'] }}"
    )
    try:
        with pytest.raises(ConfigError, match="label mask cannot be derived"):
            answer_span(processor, conversation)
    finally:
        processor.chat_template = original


def test_answer_loss_from_the_answer_columns_equals_the_full_loss(tiny, processor, root: Path) -> None:  # type: ignore[no-untyped-def]
    pairs = [harmony_instruction(_sample(), root), explain_instruction(_sample(), root)]
    batch = encode_supervised(processor, [p.conversation for p in pairs], [p.images for p in pairs])
    model = tiny[0]
    assert bool(batch["attention_mask"][:, 0].eq(0).any())  # left-padded: the answers end in the last column
    assert bool((batch["labels"][:, -2] != -100).all())  # every row's end-of-turn sits second to last
    with torch.no_grad():
        full = model(**batch, use_cache=False).loss
        fast = answer_loss(model, batch)
    assert answer_columns(batch["labels"]) < batch["labels"].shape[1] // 2  # far fewer logits than the sequence
    assert fast.item() == pytest.approx(full.item(), rel=1e-5)


def test_soft_level_targets_one_hot_equal_the_hard_loss_and_a_spread_target_moves_the_expected_level(
    tiny, processor, root: Path
) -> None:  # type: ignore[no-untyped-def]
    pairs = [harmony_instruction(_sample(), root), naturalness_instruction(_sample(), root)]
    batch = encode_supervised(processor, [p.conversation for p in pairs], [p.images for p in pairs])
    ids = torch.tensor([level_token_ids(processor, ANSWER_TEMPLATES[t]) for t in ("harmony", "naturalness")])
    labels = batch["labels"]
    hot = (labels.unsqueeze(-1) == ids.unsqueeze(1)).any(-1)
    words = [int(ids[r].tolist().index(int(labels[r][hot[r]][0]))) for r in range(2)]
    one_hot = torch.nn.functional.one_hot(torch.tensor(words), 5).float()
    model = tiny[0]
    with torch.no_grad():
        assert answer_loss(model, batch, ids, one_hot).item() == pytest.approx(
            answer_loss(model, batch).item(), rel=1e-5
        )
    with pytest.raises(ValueError, match="needs a level word"):
        answer_loss(model, batch, ids[:, [0, 0, 0, 0, 0]] * 0, one_hot)
    # soft targets centred on 'excellent': a few steps of their loss raise the Q-Align expected level of both rows
    targets = torch.tensor([soft_levels(5.0, 0.5)] * 2)
    assert targets.sum(1).allclose(torch.ones(2)) and targets[0].argmax() == 4 and 0 < targets[0, 3] < targets[0, 4]
    weights = torch.arange(1.0, 6.0)

    def expected() -> torch.Tensor:
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        rows = torch.arange(2)
        position = hot.int().argmax(1) - 1  # the column whose logits predict the level word
        return (logits[rows, position].gather(1, ids).softmax(-1) * weights).sum(1)

    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        before = expected()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(3):
            optimizer.zero_grad()
            answer_loss(model, batch, ids, targets).backward()
            optimizer.step()
        assert bool((expected() > before + 0.05).all())
    finally:
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)


def test_stage3_soft_target_is_the_closing_overall_word_and_centres_on_its_position(
    tiny, processor, root: Path
) -> None:  # type: ignore[no-untyped-def]
    cot = {**COT, "harmony": "A faint seam. So the harmony is poor.", "naturalness": "So the naturalness is fair."}
    pair = explain_instruction(_sample(cot=cot), root)  # completion 3: harmony, naturalness, then overall 'good'
    batch = encode_supervised(processor, [pair.conversation], [pair.images])
    ids = torch.tensor([level_token_ids(processor, ANSWER_TEMPLATES["overall"])])
    assert int((batch["labels"].unsqueeze(-1) == ids.unsqueeze(1)).any(-1).sum()) == 3
    model = tiny[0]
    with torch.no_grad():
        hard = answer_loss(model, batch).item()
        good = answer_loss(model, batch, ids, torch.nn.functional.one_hot(torch.tensor([3]), 5).float()).item()
        poor = answer_loss(model, batch, ids, torch.nn.functional.one_hot(torch.tensor([1]), 5).float()).item()
    assert good == pytest.approx(hard, rel=1e-5)  # the target replaced the last word ('good'), not 'poor' or 'fair'
    assert poor != pytest.approx(hard, rel=1e-5)
    assert explain_level_position(_sample()) == pytest.approx(3.625)  # overall MOS 3.5 on the 1-5 scale
    assert explain_level_position(_sample(mos={**_sample().mos, "completion": 2.0})) == 2.0  # 'poor', prescribed
    assert explain_level_position(_sample(mos={**_sample().mos, "completion": 1.0})) == 1.0  # 'bad'
