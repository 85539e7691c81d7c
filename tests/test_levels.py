import math

import pytest

from epaiqa.data.levels import LEVELS, expected_score, level_to_score, scale_to_five, score_to_level


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
