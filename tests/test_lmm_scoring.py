import math

import numpy as np
import pytest
import torch
from PIL import Image

from epaiqa.errors import ConfigError
from epaiqa.lmm.backbones import build_tiny_llava_onevision
from epaiqa.lmm.instructions import ANSWER_TEMPLATES, Conversation
from epaiqa.lmm.scoring import (
    answer_position,
    level_probabilities,
    level_readout,
    level_token_ids,
    score,
    score_from_logits,
)

#: " bad", " poor", " fair", " good", " excellent" in the Qwen2 vocabulary (qwen.tiktoken ranks).
QWEN2_LEVEL_IDS = [3873, 7852, 6624, 1661, 9073]


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    model, processor = build_tiny_llava_onevision(seed=1)
    with torch.no_grad():  # spread the random model's logits so that scores differ between inputs
        model.get_input_embeddings().weight.mul_(10.0)
    return model, processor


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 64), (64, 24), (32, 32), (50, 50)]
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for h, w in sizes]


def _harmony(answer: str | None = None) -> Conversation:
    conversation: Conversation = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "The image after partial editing is: "},
                {"type": "image"},
                {"type": "text", "text": ". Please rate the harmony. Then output the harmony level."},
            ],
        }
    ]
    if answer is not None:
        conversation.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return conversation


def test_level_token_ids_are_the_qwen2_words_with_their_space(tiny) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny
    tokenizer = processor.tokenizer
    assert level_token_ids(tokenizer) == QWEN2_LEVEL_IDS
    assert tokenizer.convert_ids_to_tokens(QWEN2_LEVEL_IDS) == ["Ġbad", "Ġpoor", "Ġfair", "Ġgood", "Ġexcellent"]
    context = processor.apply_chat_template(_harmony(), add_generation_prompt=True, tokenize=False)
    for template, prefix in [
        (ANSWER_TEMPLATES["harmony"], "Harmony level is:"),
        (ANSWER_TEMPLATES["naturalness"], "Naturalness level is:"),
        (ANSWER_TEMPLATES["overall"], "Therefore, the overall editing quality level of the image is"),
    ]:
        readout = level_readout(processor, template, context=context)
        assert readout == (prefix, tuple(QWEN2_LEVEL_IDS))


@pytest.mark.parametrize(
    "template", ["Harmony level is:{}", "Harmony level is: {}ly", "Harmony level is x{}", "Level {} or {}", "no slot"]
)
def test_level_words_that_are_not_single_tokens_are_refused(tiny, template: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"single tokens|exactly one"):
        level_token_ids(tiny[1].tokenizer, template)


def test_answer_position_is_the_last_real_token_with_either_padding() -> None:
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert answer_position(right).tolist() == [2, 4, 0]
    assert answer_position(left).tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="no tokens"):
        answer_position(torch.tensor([[1, 1], [0, 0]]))


def test_answer_position_predicts_the_level_token_of_the_training_answer(tiny, images) -> None:  # type: ignore[no-untyped-def]
    _, processor = tiny
    processor.tokenizer.padding_side = "right"
    readout = level_readout(processor, ANSWER_TEMPLATES["harmony"])
    levels = ["good", "bad", "excellent"]
    convs = [_harmony(ANSWER_TEMPLATES["harmony"].format(w)) for w in levels]
    prompts = [
        processor.apply_chat_template(c[:1], add_generation_prompt=True, tokenize=False) + readout.prefix for c in convs
    ]
    fulls = [processor.apply_chat_template(c, tokenize=False) for c in convs]
    imgs = [[images[0]], [images[1]], [images[2]]]
    scored = processor(text=prompts, images=imgs, padding=True, return_tensors="pt")
    trained = processor(text=fulls, images=imgs, padding=True, return_tensors="pt")
    positions = answer_position(scored["attention_mask"])
    assert len(set(positions.tolist())) > 1  # different image sizes → different lengths
    for row, word in enumerate(levels):
        p = int(positions[row])
        assert torch.equal(trained["input_ids"][row, : p + 1], scored["input_ids"][row, : p + 1])
        assert (
            int(trained["input_ids"][row, p + 1])
            == readout.ids[("bad", "poor", "fair", "good", "excellent").index(word)]
        )


def test_score_from_logits_by_hand() -> None:
    logits = torch.zeros(10)
    ids = [2, 5, 7, 1, 9]
    logits[ids] = torch.tensor([0.0, 1.0, 2.0, 0.5, -1.0])
    logits[0], logits[3] = 50.0, -50.0  # other tokens do not count
    e = [math.exp(v) for v in (0.0, 1.0, 2.0, 0.5, -1.0)]
    expected = sum(w * v / sum(e) for w, v in zip((1, 2, 3, 4, 5), e, strict=True))
    assert float(score_from_logits(logits, ids)) == pytest.approx(expected, rel=1e-6)
    assert level_probabilities(logits, ids).sum().item() == pytest.approx(1.0)
    batch = torch.zeros(2, 3, 10)
    batch[1, 2, 9] = 100.0
    scores = score_from_logits(batch, ids)
    assert scores.shape == (2, 3)
    assert scores[0, 0].item() == pytest.approx(3.0)  # uniform over the levels
    assert scores[1, 2].item() == pytest.approx(5.0)  # all on "excellent"
    assert score_from_logits(torch.zeros(10, dtype=torch.bfloat16), ids).dtype == torch.float32


@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_scores_equal_one_by_one_scores(tiny, images, side: str) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny
    convs = [_harmony("Harmony level is: good.") for _ in images]
    imgs = [[im] for im in images]
    processor.tokenizer.padding_side = side
    try:
        batched = score(model, processor, convs, imgs)
        single = torch.cat([score(model, processor, [c], [i]) for c, i in zip(convs, imgs, strict=True)])
    finally:
        processor.tokenizer.padding_side = "right"
    assert batched.shape == (len(images),) and batched.dtype == torch.float32
    assert torch.allclose(batched, single, atol=1e-4)
    assert float(batched.max() - batched.min()) > 1e-3  # the inputs really give different scores

    # the same number from a plain forward pass on the unpadded prompt, read at its last position
    text = processor.apply_chat_template(convs[1][:1], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text + "Harmony level is:"], images=[imgs[1]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    assert float(score_from_logits(logits[-1], QWEN2_LEVEL_IDS)) == pytest.approx(float(batched[1]), abs=1e-4)
    assert float(score_from_logits(logits[-2], QWEN2_LEVEL_IDS)) != pytest.approx(float(batched[1]), abs=1e-4)


def test_scores_with_given_answer_prefixes(tiny, images) -> None:  # type: ignore[no-untyped-def]
    model, processor = tiny
    convs = [_harmony(), _harmony()]
    imgs = [[images[0]], [images[3]]]
    default = score(model, processor, convs, imgs)
    same = score(model, processor, convs, imgs, answer_prefixes=["Harmony level is:"] * 2)
    assert torch.allclose(default, same, atol=1e-5)
    overall = "The prompt completion is fully compliant. Therefore, the overall editing quality level of the image is"
    other = score(
        model, processor, convs, imgs, template_answer=ANSWER_TEMPLATES["overall"], answer_prefixes=[overall] * 2
    )
    assert not torch.allclose(default, other, atol=1e-3)
    with pytest.raises(ValueError, match="answer prefixes"):
        score(model, processor, convs, imgs, answer_prefixes=["x"])
