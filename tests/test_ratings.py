from pathlib import Path

import pytest

from epaiqa.data import prepare as prepare_module
from epaiqa.data.manifest import validate
from epaiqa.data.prepare import prepare
from epaiqa.data.ratings import (
    Rating,
    clean_ratings,
    clean_sample,
    conflicting,
    iqr_inliers,
    majority_vote,
    read_ratings,
)
from epaiqa.errors import DataError


def r(overall=None, harmony=None, naturalness=None, completion=None, rater="x") -> Rating:
    return Rating("s1", rater, overall, harmony, naturalness, completion)


def test_conflict_rule_completion_below_3_needs_overall_at_most_2() -> None:
    assert conflicting(r(overall=3, completion=2))
    assert conflicting(r(overall=5, completion=1))
    assert not conflicting(r(overall=2, completion=2))
    assert not conflicting(r(overall=5, completion=3))
    assert not conflicting(r(overall=None, completion=1))


def test_conflicting_rating_is_dropped_whole() -> None:
    ratings = [r(4, 4, 4, 3), r(4, 4, 4, 3), r(4, 4, 4, 3), r(5, 1, 1, 1)]  # the last one conflicts
    mos = clean_sample(ratings)
    assert mos == {"overall": 4.0, "harmony": 4.0, "naturalness": 4.0, "completion": 3.0}


def test_iqr_removes_outliers() -> None:
    values = [3, 3, 3, 4, 4, 3, 1]  # Q1 3, Q3 3.5, IQR 0.5 → fences 2.25..4.25
    assert iqr_inliers(values) == [True] * 6 + [False]
    assert iqr_inliers([]) == []


def test_iqr_applies_per_dimension_and_means_the_rest() -> None:
    ratings = [r(4, 4, 2, 3), r(4, 4, 2, 3), r(4, 4, 2, 3), r(4, 4, 2, 3), r(4, 1, 2, 3), r(4, 4, 5, 3)]
    mos = clean_sample(ratings)
    assert mos["harmony"] == 4.0  # the 1 is an outlier
    assert mos["naturalness"] == 2.0  # the 5 is an outlier
    assert mos["overall"] == 4.0


def test_removed_overall_removes_its_completion() -> None:
    # four valid ratings with overall 2 split their completion votes 2:2; a fifth rating has an
    # outlying overall 5 and completion 3. Kept, its vote would make 3 win; removed with its
    # overall, the vote ties and goes to the lower level, 2.
    ratings = [r(2, 3, 3, 2), r(2, 3, 3, 2), r(2, 3, 3, 3), r(2, 3, 3, 3), r(5, 3, 3, 3)]
    mos = clean_sample(ratings)
    assert mos["overall"] == 2.0
    assert mos["completion"] == 2.0
    assert majority_vote([2, 2, 3, 3, 3]) == 3  # what keeping the outlier's completion would give


def test_majority_vote_and_tie_goes_to_lower_level() -> None:
    assert majority_vote([3, 3, 2]) == 3
    assert majority_vote([1, 3]) == 1
    assert majority_vote([]) is None


def test_dimension_with_no_surviving_ratings_is_null() -> None:
    mos = clean_sample([r(overall=4, completion=3), r(overall=4, completion=3)])
    assert mos["harmony"] is None and mos["naturalness"] is None
    assert mos["overall"] == 4.0 and mos["completion"] == 3.0


def test_clean_ratings_groups_by_sample_and_counts() -> None:
    ratings = [Rating("a", "1", 3, 3, 3, 3), Rating("b", "1", 5, 5, 5, 1), Rating("b", "2", 1, 1, 1, 1)]
    mos, stats = clean_ratings(ratings)
    assert set(mos) == {"a", "b"}
    assert stats.ratings == 3 and stats.conflicting == 1
    assert mos["b"]["overall"] == 1.0


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


HEADER = "sample_id,rater_id,overall,harmony,naturalness,completion\n"


def test_read_ratings_parses_empty_cells_as_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", HEADER + "a,r1,4,,3,3\n")
    (rating,) = read_ratings(path, {"a"})
    assert rating.harmony is None and rating.overall == 4.0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a,r1,x,3,3,3", "ratings.csv:2: overall: not a number"),
        ("a,r1,4,6,3,3", "ratings.csv:2: harmony: 6 is outside the scale [1, 5]"),
        ("a,r1,4,3,3,4", "ratings.csv:2: completion: 4 is outside the scale [1, 3]"),
        ("zz,r1,4,3,3,3", "ratings.csv:2: sample_id: 'zz' is not in the manifest"),
        (",r1,4,3,3,3", "ratings.csv:2: sample_id: empty"),
        ("a,r1,4,3,3,2.5", "ratings.csv:2: completion: must be 1, 2 or 3, got 2.5"),
    ],
)
def test_read_ratings_reports_bad_cells_with_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "ratings.csv", HEADER + row + "\n")
    with pytest.raises(DataError) as err:
        read_ratings(path, {"a"})
    assert message in err.value.problems[0]


def test_read_ratings_missing_column_and_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing columns completion"):
        read_ratings(write(tmp_path / "ratings.csv", "sample_id,rater_id,overall,harmony,naturalness\n"))
    with pytest.raises(DataError, match="not found"):
        read_ratings(tmp_path / "nope.csv")


def test_read_ratings_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(("\ufeff" + HEADER + "a,r1,4,3,3,3.0\n").encode("utf-8"))
    (rating,) = read_ratings(path, {"a"})
    assert rating.sample_id == "a" and rating.completion == 3.0


def test_prepare_with_a_spreadsheet_bom_ratings_file(demo_copy: Path) -> None:
    ratings = demo_copy / "ratings.csv"
    ratings.write_bytes(b"\xef\xbb\xbf" + ratings.read_bytes())
    stats, sizes = prepare(demo_copy, check_images=False)
    assert stats.ratings > 48 * 10 and sizes["harmony"]["test"] > 0
    assert validate(demo_copy)[1] == []


def replace_completion(ratings: Path, value: str) -> None:
    rows = ratings.read_text().splitlines()
    rows[1] = ",".join([*rows[1].split(",")[:5], value])
    ratings.write_text("\n".join(rows) + "\n")


def test_fractional_completion_is_a_line_error_and_nothing_is_written(demo_copy: Path) -> None:
    (demo_copy / "manifest.jsonl.bak").unlink(missing_ok=True)  # the generator's own prepare left one
    manifest, splits = (demo_copy / "manifest.jsonl").read_bytes(), (demo_copy / "splits.json").read_bytes()
    replace_completion(demo_copy / "ratings.csv", "2.5")
    with pytest.raises(DataError) as err:
        prepare(demo_copy, check_images=False)
    assert err.value.problems == ["ratings.csv:2: completion: must be 1, 2 or 3, got 2.5"]
    assert (demo_copy / "manifest.jsonl").read_bytes() == manifest
    assert (demo_copy / "splits.json").read_bytes() == splits
    assert not (demo_copy / "manifest.jsonl.bak").exists()


def test_prepare_checks_what_it_would_write_before_writing(demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the old bug: tied fractional completion votes (2.5 vs 3 -> 2.5) made a manifest validate rejects
    real = prepare_module.clean_ratings

    def fractional(ratings):
        mos, stats = real(ratings)
        first = sorted(mos)[0]
        mos[first] = {**mos[first], "completion": majority_vote([2.5, 3.0])}
        return mos, stats

    monkeypatch.setattr(prepare_module, "clean_ratings", fractional)
    manifest = (demo_copy / "manifest.jsonl").read_bytes()
    with pytest.raises(DataError, match="nothing was written") as err:
        prepare(demo_copy, check_images=False)
    assert len(err.value.problems) == 1
    assert "mos.completion: must be a whole level 1, 2 or 3, got 2.5" in err.value.problems[0]
    assert (demo_copy / "manifest.jsonl").read_bytes() == manifest


def test_prepare_keeps_a_backup_of_what_it_replaces(demo_copy: Path) -> None:
    manifest, splits = (demo_copy / "manifest.jsonl").read_bytes(), (demo_copy / "splits.json").read_bytes()
    prepare(demo_copy, seed=7, check_images=False, resplit=True)
    assert (demo_copy / "manifest.jsonl.bak").read_bytes() == manifest
    assert (demo_copy / "splits.json.bak").read_bytes() == splits
    assert (demo_copy / "splits.json").read_bytes() != splits  # another seed, another split
    assert validate(demo_copy)[1] == []


def test_prepare_rebuilds_a_stale_splits_file(demo_copy: Path) -> None:
    (demo_copy / "splits.json").write_text("{broken")
    prepare(demo_copy, check_images=False)
    assert (demo_copy / "splits.json.bak").read_text() == "{broken"
    assert validate(demo_copy)[1] == []
