import math

import pytest

from epaiqa.data.levels import (
    LEVELS,
    bin_level,
    expected_score,
    level_to_score,
    observed_span,
    scale_to_five,
    score_to_level,
)


@pytest.mark.parametrize(
    ("score", "level"),
    [(1.0, "bad"), (1.79, "bad"), (1.8, "poor"), (2.6, "fair"), (3.4, "good"), (4.2, "excellent"), (5.0, "excellent")],
)
def test_score_to_level_bins_of_the_1_to_5_scale(score: float, level: str) -> None:
    # 5·(s−1)/4: 1.8 → 1.0 (poor), 2.6 → 2.0 (fair), 3.4 → 3.0 (good), 4.2 → 4.0 (excellent)
    assert score_to_level(score) == level


def test_top_end_stays_inside_last_bin() -> None:
    assert scale_to_five(5.0, 1, 5) < 5.0
    assert math.isclose(scale_to_five(5.0, 1, 5), 5.0)
    assert scale_to_five(1.0, 1, 5) == 0.0


def test_other_ranges_scale_to_five() -> None:
    assert scale_to_five(50, 0, 100) == 2.5
    assert score_to_level(50, 0, 100) == "fair"
    assert score_to_level(3, 1, 3) == "excellent"


@pytest.mark.parametrize("score", [0.99, 5.01])
def test_out_of_range_score_is_refused(score: float) -> None:
    with pytest.raises(ValueError, match="outside its range"):
        score_to_level(score)


def test_level_words_map_back_to_weights() -> None:
    assert [level_to_score(w) for w in LEVELS] == [1, 2, 3, 4, 5]
    assert level_to_score(" Good ") == 4
    with pytest.raises(ValueError, match="unknown level"):
        level_to_score("great")


def test_expected_score_is_weighted_sum() -> None:
    assert expected_score([0, 0, 0, 0, 1]) == 5
    assert math.isclose(expected_score([0.1, 0.2, 0.3, 0.2, 0.2]), 0.1 + 0.4 + 0.9 + 0.8 + 1.0)
    with pytest.raises(ValueError):
        expected_score([0.5, 0.5])


def test_observed_range_bins_what_the_training_split_spans() -> None:
    assert observed_span([2.0, 3.0, None, 2.5]) == (2.0, 3.0)
    assert observed_span([3.0, 3.0]) == (1.0, 5.0) and observed_span([]) == (1.0, 5.0)
    assert [bin_level(s, (2.0, 3.0)) for s in (2.0, 2.3, 2.5, 2.9, 3.0)] == [
        "bad",
        "poor",
        "fair",
        "excellent",
        "excellent",
    ]
    assert bin_level(1.0, (2.0, 3.0)) == "bad" and bin_level(4.9, (2.0, 3.0)) == "excellent"  # test MOS clipped
    assert bin_level(2.5) == "poor"  # nominal 1-5: [1.8, 2.6)


def test_lmm_data_with_observed_levels_uses_the_training_span(demo_root) -> None:  # type: ignore[no-untyped-def]
    from epaiqa.data.manifest import load_manifest
    from epaiqa.errors import ConfigError
    from epaiqa.lmm.data import LMMDataModule
    from epaiqa.lmm.instructions import answer_text

    data = LMMDataModule(root=str(demo_root), tasks=["harmony"], levels={"range": "observed"})
    data.setup()
    train_ids = {s.id for s, _ in data.datasets["train"].pairs}
    mos = [s.score("harmony") for s in load_manifest(demo_root) if s.id in train_ids]
    assert data.level_spans == {"harmony": (min(mos), max(mos))}
    lowest = min(range(len(data.datasets["train"])), key=lambda i: data.datasets["train"].pairs[i][0].score("harmony"))
    assert answer_text(data.datasets["train"][lowest]["conversation"]) == "Harmony level is: bad."
    nominal = LMMDataModule(root=str(demo_root), tasks=["harmony"])
    nominal.setup()
    assert nominal.level_spans == {}
    with pytest.raises(ConfigError, match=r"data\.levels\.range"):
        LMMDataModule(root=str(demo_root), levels={"range": "both"})
