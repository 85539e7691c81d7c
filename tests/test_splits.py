import json
from pathlib import Path

import pytest

from epaiqa.data.schema import PAISample
from epaiqa.data.splits import check_splits, load_splits, make_splits, subset_members, write_splits
from epaiqa.errors import DataError

FULL = {"overall": 3.0, "harmony": 3.0, "naturalness": 3.0, "completion": 3.0}


def sample(i: int, mos: dict, source: str | None = None) -> PAISample:
    return PAISample(
        f"{i:04d}", source or f"s/{i}.jpg", f"e/{i}.jpg", "p", (0.5, 0.5, 0.2, 0.2), "style_change", mos=mos
    )


def mixed_samples(n: int = 500) -> list[PAISample]:
    out = []
    for i in range(n):
        mos = dict(FULL)
        if i % 5 == 1:
            mos["harmony"] = None  # not in harmony nor overall
        if i % 7 == 2:
            mos["naturalness"] = None
        if i % 11 == 3:
            mos["completion"] = None  # only out of overall
        out.append(sample(i, mos, source=f"s/{i // 2}.jpg"))
    return out


def test_subset_membership_follows_surviving_scores() -> None:
    members = subset_members(mixed_samples())
    assert "0001" not in members["harmony"] and "0001" in members["naturalness"]
    assert "0003" in members["harmony"] and "0003" not in members["overall"]
    assert set(members["overall"]) <= set(members["harmony"]) & set(members["naturalness"])


@pytest.mark.parametrize("group_by", ["source", "id"])
def test_no_subset_train_meets_any_subset_test(group_by: str) -> None:
    splits = make_splits(mixed_samples(), seed=1, group_by=group_by)["subsets"]
    all_test = set().union(*(set(s["test"]) for s in splits.values()))
    for task, parts in splits.items():
        assert not set(parts["train"]) & all_test, task
        total = len(parts["train"]) + len(parts["test"])
        assert 0.17 <= len(parts["test"]) / total <= 0.23, (task, len(parts["test"]), total)


def test_members_are_all_placed_and_split_is_seeded() -> None:
    samples = mixed_samples()
    a, b, c = (make_splits(samples, seed=s)["subsets"] for s in (4, 4, 5))
    members = subset_members(samples)
    for task in members:
        assert sorted(a[task]["train"] + a[task]["test"]) == sorted(members[task])
    assert a == b and a != c


def test_group_by_source_keeps_a_source_on_one_side() -> None:
    samples = mixed_samples()
    test = set(make_splits(samples, seed=0, group_by="source")["subsets"]["naturalness"]["test"])
    by_source: dict[str, set[bool]] = {}
    for s in samples:
        if s.score("naturalness") is not None:
            by_source.setdefault(s.source, set()).add(s.id in test)
    assert all(len(sides) == 1 for sides in by_source.values())


def test_load_splits_rejects_leaks_and_unknown_ids(tmp_path: Path) -> None:
    samples = mixed_samples(50)
    splits = make_splits(samples, seed=0)
    write_splits(tmp_path, splits)
    assert load_splits(tmp_path, samples)["harmony"]["test"] == splits["subsets"]["harmony"]["test"]

    leaked = json.loads(json.dumps(splits))
    leaked["subsets"]["harmony"]["train"].append(splits["subsets"]["naturalness"]["test"][0])
    write_splits(tmp_path, leaked)
    with pytest.raises(DataError, match=r"splits\.json:0: subsets\.harmony\.train: 1 ids are also in a test set"):
        load_splits(tmp_path, samples)

    unknown = json.loads(json.dumps(splits))
    unknown["subsets"]["overall"]["test"].append("nope")
    write_splits(tmp_path, unknown)
    with pytest.raises(DataError, match=r"splits\.json:0: subsets\.overall\.test: 1 ids are not in the manifest"):
        load_splits(tmp_path, samples)

    (tmp_path / "splits.json").write_text("{broken")
    with pytest.raises(DataError, match=r"splits\.json:0: json: not valid JSON"):
        load_splits(tmp_path, samples)


def problems(data, samples=None) -> list[str]:
    samples = mixed_samples(50) if samples is None else samples
    by_id = {s.id: s for s in samples}
    return [f"{field}: {message}" for field, message in check_splits(data, by_id, by_id)]


def test_make_splits_output_passes_its_own_check() -> None:
    assert problems(make_splits(mixed_samples(50), seed=3)) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "subsets: missing or not an object"),
        ({"subsets": {"harmony": {"train": [], "test": []}}}, "subsets.naturalness: missing or not an object"),
        ({"subsets": {"naturalness": [], "harmony": {}, "overall": {}}}, "subsets.naturalness: missing"),
    ],
)
def test_check_splits_reports_wrong_structure(data, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(data)), problems(data)


def edited(change) -> list[str]:
    data = make_splits(mixed_samples(50), seed=0)
    change(data["subsets"])
    return problems(data)


def test_check_splits_reports_bad_entries() -> None:
    def in_both(subsets: dict) -> None:
        subsets["overall"]["train"].append(subsets["overall"]["test"][0])

    assert edited(in_both) == [
        f"subsets.overall.train: 1 ids are also in a test set (naturalness, harmony, overall), "
        f"e.g. {make_splits(mixed_samples(50), seed=0)['subsets']['overall']['test'][0]!r}"
    ]
    assert edited(lambda s: s["harmony"]["train"].append(s["harmony"]["train"][0]))[0].startswith(
        "subsets.harmony.train: 1 ids are listed twice"
    )
    assert edited(lambda s: s["harmony"]["test"].append(1.5)) == [
        "subsets.harmony.test: 1 entries are not ids (strings), e.g. 1.5"
    ]
    assert edited(lambda s: s.__setitem__("beauty", {"train": [], "test": []})) == [
        "subsets.beauty: unknown subset (known: naturalness, harmony, overall)"
    ]
    # 0001 has no harmony score (mixed_samples nulls it for i % 5 == 1)
    assert edited(lambda s: s["harmony"]["train"].append("0001")) == [
        "subsets.harmony.train: 1 ids lack a harmony score, e.g. '0001'"
    ]


def test_unknown_ids_are_skipped_when_known_is_none() -> None:
    data = make_splits(mixed_samples(50), seed=0)
    data["subsets"]["harmony"]["test"].append("nope")
    assert check_splits(data, None) == []
