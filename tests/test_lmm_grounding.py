import math

import pytest

from epaiqa.lmm.grounding import centre_error, iou, parse_bbox
from epaiqa.lmm.instructions import grounding_answer


@pytest.mark.parametrize(
    ("text", "box"),
    [
        (
            "The four coefficients representing the editing area are: (0.5000, 0.4000, 0.3000, 0.2000).",
            (0.5, 0.4, 0.3, 0.2),
        ),
        ("the four coefficients representing the editing area are:(0.1,0.2,0.3,0.4)", (0.1, 0.2, 0.3, 0.4)),
        ("  (0, 1, .25, 1.0)  ", (0.0, 1.0, 0.25, 1.0)),
        ("[0.12, 0.34, 0.56, 0.78]", (0.12, 0.34, 0.56, 0.78)),
        ("⟨0.5, 0.5, 0.1, 0.1⟩.", (0.5, 0.5, 0.1, 0.1)),
        ("0.5, 0.5, 0.1, 0.1", (0.5, 0.5, 0.1, 0.1)),
    ],
)
def test_parse_bbox_reads_well_formed_answers(text: str, box: tuple[float, ...]) -> None:
    assert parse_bbox(text) == pytest.approx(box)


def test_parse_bbox_reads_what_the_training_answer_writes() -> None:
    assert parse_bbox(grounding_answer((0.123456, 0.5, 0.02, 1.0))) == pytest.approx((0.1235, 0.5, 0.02, 1.0))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The four coefficients representing the editing area are: (0.5, 0.4, 0.3).",  # three numbers
        "(0.5, 0.4, 0.3, 0.2, 0.1)",  # five numbers
        "(0.5, 0.4, 1.3, 0.2)",  # out of [0, 1]
        "(-0.1, 0.4, 0.3, 0.2)",  # negative
        "(0.5, 0.4, 0.3, 2e-1)",  # exponent
        "(0.5, 0.4, 0.3, nan)",  # not a number
        "(0.5, 0.4, 0.3, inf)",
        "(x, y, z1, z2)",
        "(0.5, 0.4, 0.3, 0.2",  # unbalanced
        "[0.5, 0.4, 0.3, 0.2)",  # mismatched brackets
        "(0.5 0.4 0.3 0.2)",  # no commas
        "(0.5, 0.4, 0.3, 0.2). The edit is a red cup.",  # extra text
        "I think the area is (0.5, 0.4, 0.3, 0.2).",  # other lead-in
        "(0.5, 0.4, 0.3, 0.2)..",
        "(0.5,, 0.4, 0.3, 0.2)",
        "Harmony level is: good.",
    ],
)
def test_parse_bbox_gives_none_for_malformed_answers(text: str) -> None:
    assert parse_bbox(text) is None


@pytest.mark.parametrize("value", [None, 3, b"(0.5, 0.4, 0.3, 0.2)", ["0.5"]])
def test_parse_bbox_never_raises_on_non_text(value: object) -> None:
    assert parse_bbox(value) is None  # type: ignore[arg-type]


def test_iou_of_hand_made_boxes() -> None:
    a = (0.5, 0.5, 0.4, 0.4)  # [0.3, 0.7]²
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, (0.6, 0.5, 0.4, 0.4)) == pytest.approx(0.12 / 0.2)  # overlap 0.3×0.4 of union 0.16+0.16−0.12
    assert iou(a, (0.5, 0.5, 0.2, 0.2)) == pytest.approx(0.04 / 0.16)  # nested
    assert iou(a, (0.9, 0.9, 0.1, 0.1)) == 0.0  # disjoint
    assert iou(a, (0.8, 0.5, 0.2, 0.4)) == 0.0  # touching edges
    assert iou((0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0)) == 0.0  # empty
    assert iou(a, (0.6, 0.5, 0.4, 0.4)) == pytest.approx(iou((0.6, 0.5, 0.4, 0.4), a))


def test_centre_error_is_the_distance_of_centres() -> None:
    assert centre_error((0.5, 0.5, 0.4, 0.4), (0.8, 0.9, 0.1, 0.1)) == pytest.approx(0.5)
    assert centre_error((0.2, 0.3, 0.1, 0.1), (0.2, 0.3, 0.9, 0.9)) == 0.0
    assert math.isclose(centre_error((0, 0, 1, 1), (1, 1, 1, 1)), math.sqrt(2))
