"""Preference benchmarks: the groups file, pairwise accuracy under both tie protocols, group/ranking accuracy,
best-of-N — on hand-made cases whose answers are worked out in the comments."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from epaiqa.cli import main
from epaiqa.data.manifest import validate
from epaiqa.data.preferences import PreferenceGroup, check_preferences, tiers_from_ranking
from epaiqa.records.preference_metrics import (
    Pair,
    accuracy_at,
    accuracy_without_ties,
    best_of_n,
    groups_from_pointwise,
    preference_accuracy,
    strict_accuracy,
    tie_calibrated,
)


def test_rankings_become_tiers_best_first() -> None:
    abc = ["a", "b", "c"]
    assert tiers_from_ranking("C>A>B", abc) == (("c",), ("a",), ("b",))
    assert tiers_from_ranking("A=B", ["a", "b"]) == (("a", "b"),)
    assert tiers_from_ranking("B<A", ["a", "b"]) == (("a",), ("b",))
    assert tiers_from_ranking("A<B=C", abc) == (("c", "b"), ("a",))
    for bad in ("A>A", "A>B", "A>B>C>D", "A>>B", "A>B<C", "ab"):
        with pytest.raises(ValueError, match="ranking"):
            tiers_from_ranking(bad, abc)


# human: +1, -1, 0, +1; model differences: 0.5, -0.2, 0.05, -0.1
PAIRS = [Pair("g", 1, 0.5), Pair("g", -1, -0.2), Pair("g", 0, 0.05), Pair("g", 1, -0.1)]


def test_tie_calibrated_accuracy_picks_the_best_observed_epsilon() -> None:
    # ε = 0.05 ties only the third pair (a human tie: right): pairs 1, 2, 3 right, 4 wrong → 3/4;
    # ε = 0.1 also ties pair 4 (humans prefer it: still wrong) → 3/4; ε = 0.2 ties pair 2 → 2/4; ε = 0.5 → 1/4
    accuracy, epsilon = tie_calibrated(PAIRS)
    assert accuracy == 0.75 and epsilon == 0.05
    brute = max(accuracy_at(PAIRS, e) for e in [0.0, *(abs(p.model) for p in PAIRS)])  # the definition
    assert brute == accuracy
    assert strict_accuracy(PAIRS) == 0.5  # the human tie and pair 4 wrong
    assert accuracy_without_ties(PAIRS) == pytest.approx(2 / 3)  # the human tie left out


def test_tie_calibration_moves_pairs_of_equal_difference_together() -> None:
    # two pairs with |difference| 0.1: a human tie and a human preference the model gets right; tying both
    # gains one and loses one (2/3 at ε = 0 and at ε = 0.1) — never the half-moved state 3/3 that a scan moving
    # one pair at a time passes through
    pairs = [Pair("g", 0, 0.1), Pair("g", 1, 0.1), Pair("g", 1, 0.3)]
    accuracy, epsilon = tie_calibrated(pairs)
    brute = max(accuracy_at(pairs, e) for e in [0.0, *(abs(p.model) for p in pairs)])
    assert accuracy == brute == pytest.approx(2 / 3)
    assert epsilon == 0.0  # the smallest ε of the best accuracy


def _group(gid: str, ranking: str, n: int, dimension: str = "overall", split: str = "") -> PreferenceGroup:
    cands = tuple(f"{gid}_{chr(65 + i)}" for i in range(n))
    return PreferenceGroup(gid, dimension, cands, tiers_from_ranking(ranking, cands), ranking, split)


def test_group_and_ranking_accuracy_per_group_size() -> None:
    groups = [_group("g1", "C>A>B", 3), _group("g2", "A>B>C", 3), _group("g3", "A=B", 2)]
    scores = {"g1_A": 2, "g1_B": 1, "g1_C": 3}  # g1 ranked exactly right
    scores |= {"g2_A": 1, "g2_B": 2, "g2_C": 0}  # g2: A/B swapped → 2 of its 3 pairs right, ranking wrong
    scores |= {"g3_A": 1.0, "g3_B": 1.0}  # g3: a human tie, equal scores → a model tie at any ε ≥ 0
    table = preference_accuracy(groups, scores, {})["dimensions"]["overall"]
    assert table["pairs"] == 7 and table["human_ties"] == 1
    assert table["group_acc_3"] == 0.5 and table["ranking_acc_3"] == 0.5 and table["ranked_groups_3"] == 2
    assert table["group_acc_2"] == 1.0 and table["ranking_acc_2"] is None  # a tie is no strict ranking
    assert table["acc_strict"] == pytest.approx(5 / 7)  # the tie counts as wrong
    assert table["acc_without_ties"] == pytest.approx(5 / 6)
    assert table["acc_tie_calibrated"] == pytest.approx(6 / 7) and table["epsilon"] == 0.0


def test_epsilon_chosen_on_val_groups_is_applied_to_the_others() -> None:
    val = _group("v", "A=B", 2, split="val")  # |diff| 0.3 on a human tie: ε = 0.3 is best on val
    test = _group("t", "A>B", 2, split="test")  # |diff| 0.2 ≤ ε: the model ties a human preference → wrong
    scores = {"v_A": 1.3, "v_B": 1.0, "t_A": 1.2, "t_B": 1.0}
    out = preference_accuracy([val, test], scores, {}, epsilon_from="val")
    table = out["dimensions"]["overall"]
    assert out["epsilon_from"] == "val" and table["epsilon"] == pytest.approx(0.3)
    assert table["groups"] == 1 and table["acc_tie_calibrated"] == 0.0
    evaluated = preference_accuracy([val, test], scores, {})["dimensions"]["overall"]
    # on both groups: ε = 0: t right, v wrong → 1/2; ε = 0.2 ties t (wrong) → 0; ε = 0.3 ties both → 1/2; the
    # smallest ε of the best accuracy wins
    assert evaluated["groups"] == 2 and evaluated["acc_tie_calibrated"] == 0.5 and evaluated["epsilon"] == 0.0


def test_best_of_n_against_random_and_oracle() -> None:
    g = _group("g", "A>C>B", 3)
    human = {"g_A": 4.0, "g_B": 2.0, "g_C": 3.0}
    picked_c = best_of_n([g], {"g_A": 0.1, "g_B": 0.2, "g_C": 0.9}, human)
    assert picked_c["model_rank"] == 2.0 and picked_c["random_rank"] == 2.0 and picked_c["oracle_rank"] == 1.0
    assert picked_c["model_score"] == 3.0 and picked_c["random_score"] == 3.0 and picked_c["oracle_score"] == 4.0
    assert picked_c["model_top"] == 0.0 and picked_c["random_top"] == pytest.approx(1 / 3)
    tied_top = best_of_n([g], {"g_A": 1.0, "g_B": 1.0, "g_C": 0.0}, human)  # A and B tied at the top
    assert tied_top["model_rank"] == 2.0 and tied_top["model_score"] == 3.0 and tied_top["model_top"] == 0.5


def test_pointwise_edits_of_one_source_and_prompt_form_groups() -> None:
    class S:
        def __init__(self, id: str, source: str, prompt: str) -> None:
            self.id, self.source, self.prompt = id, source, prompt

    samples = [S("a", "s1", "p"), S("b", "s1", "p"), S("c", "s1", "p"), S("d", "s2", "p"), S("e", "s1", "q")]
    groups = groups_from_pointwise(samples, "overall", {"a": 3.0, "b": 4.5, "c": 3.0, "d": 2.0, "e": 1.0})
    assert len(groups) == 1  # d and e are alone in their (source, prompt)
    assert groups[0].tiers == (("b",), ("a", "c"))


def test_groups_file_problems_name_line_and_field() -> None:
    lines = [
        json.dumps({"id": "g1", "dimension": "overall", "candidates": ["a", "b"], "tiers": [["a"], ["b"]]}),
        json.dumps({"id": "g2", "dimension": "overall", "candidates": ["a", "zz"], "tiers": [["a", "zz"]]}),
        json.dumps({"id": "g3", "dimension": "overall", "candidates": ["a", "b"], "tiers": [["a"]]}),
        "{not json",
        json.dumps({"id": "g1", "dimension": "overall", "candidates": ["a", "b"], "tiers": [["a", "b"]]}),
    ]
    groups, problems = check_preferences(lines, {"a", "b"})
    assert [g.id for g in groups] == ["g1"]
    assert [(line, field) for line, field, _ in problems] == [(2, "candidates"), (3, "tiers"), (4, "json"), (5, "id")]


def _root(tmp_path: Path, n_groups: int = 3) -> Path:
    """A root of ``n_groups`` 3-candidate groups (tiers A>B>C, the third group A=B>C) with tiny images."""
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    lines, groups = [], []
    for g in range(n_groups):
        Image.new("RGB", (16, 16), (g * 40, 0, 0)).save(root / "img" / f"src{g}.png")
        ranking = "A=B>C" if g == 2 else "A>B>C"
        for c in "ABC":
            Image.new("RGB", (16, 16), (g * 40, ord(c), 0)).save(root / "img" / f"g{g}{c}.png")
            line = {"id": f"g{g}_{c}", "source": f"img/src{g}.png", "edited": f"img/g{g}{c}.png", "prompt": "add a hat"}
            line |= {"bbox": [0.5, 0.5, 1, 1], "edit_type": "unknown", "bbox_source": "difference", "mos": {}}
            lines.append(json.dumps(line))
        groups.append(_group(f"g{g}", ranking, 3, split="val" if g == 0 else "test").to_json())
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "preferences.jsonl").write_text("".join(json.dumps(g) + "\n" for g in groups))
    return root


def test_evaluate_pairs_and_report_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _root(tmp_path)
    assert validate(root) == (validate(root)[0], [])  # unknown edit type, bbox_source and the groups file accepted
    scores = {"g0_A": 3, "g0_B": 2, "g0_C": 1, "g1_A": 1, "g1_B": 2, "g1_C": 3, "g2_A": 2, "g2_B": 2, "g2_C": 1}
    preds = tmp_path / "scores.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "score": s}) + "\n" for i, s in scores.items()))
    out = tmp_path / "run"
    argv = ["evaluate", "--pairs", "--root", str(root), "--predictions", str(preds), "--name", "m", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads((out / "preferences.json").read_text())
    table = record["accuracy"]["dimensions"]["overall"]
    # g0 all 3 pairs right, g1 all 3 reversed, g2: the tie A=B tied by the model (ε = 0), A>C and B>C right
    assert table["pairs"] == 9 and table["acc_tie_calibrated"] == pytest.approx(6 / 9)
    assert table["acc_strict"] == pytest.approx(5 / 9) and table["group_acc_3"] == pytest.approx(2 / 3)
    assert table["ranking_acc_3"] == 0.5 and table["by_edit_type"]["unknown"]["pairs"] == 9
    assert record["best_of_n"]["overall"]["model_rank"] == pytest.approx((1 + 3 + 1) / 3)
    assert "tie-calibrated" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "66.7 (0, evaluated)" in (tmp_path / "rep" / "preferences.md").read_text()
    assert (tmp_path / "rep" / "best_of_n.md").is_file()
    # ε on the val group (g0: every pair right with no model tie → ε = 0), applied to g1 and g2 only:
    # g1 0 of 3, g2 2 of 3 plus its A=B (equal scores, tied at ε = 0) → 3/6
    assert main([*argv[:-2], "--out", str(tmp_path / "val"), "--epsilon-from", "val"]) == 0
    val = json.loads((tmp_path / "val" / "preferences.json").read_text())["accuracy"]["dimensions"]["overall"]
    assert val["groups"] == 2 and val["epsilon"] == 0.0 and val["acc_tie_calibrated"] == 0.5


def test_evaluate_pairs_refuses_unscored_candidates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _root(tmp_path)
    preds = tmp_path / "scores.csv"
    preds.write_text("id,score\ng0_A,1\ng0_B,2\n")
    argv = ["evaluate", "--pairs", "--root", str(root), "--predictions", str(preds), "--name", "m"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "7 candidates" in err and "'g0_C'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_manifest_fields_of_converted_sets_are_checked(tmp_path: Path) -> None:
    root = _root(tmp_path, 1)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    bad = [json.loads(line) for line in lines]
    bad[0]["bbox_source"] = "guess"
    bad[1]["other_mos"] = {"harmony": 3}
    bad[2]["other_mos"] = {"sc": "high"}
    (root / "manifest.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bad))
    _, problems = validate(root, check_images=False)
    assert [(p.line, p.field) for p in problems] == [(1, "bbox_source"), (2, "other_mos.harmony"), (3, "other_mos.sc")]


def test_all_pairs_as_edit_reward_bench_forms_them() -> None:
    four = _group("g", "D>C>B>A", 4)
    scores = {c: float(i) for i, c in enumerate(four.candidates)}  # exactly the human order
    table = preference_accuracy([four], scores, {})["dimensions"]["overall"]
    assert table["pairs"] == math.comb(4, 2) == len(list(itertools.combinations(four.candidates, 2)))
    assert table["acc_strict"] == table["group_acc_4"] == table["ranking_acc_4"] == 1.0


def test_samples_without_an_edit_type_get_a_column_of_their_own() -> None:
    from epaiqa.records.metrics import correlation_result
    from epaiqa.report.tables import Row, _add, _table_cells, to_markdown

    rows = [
        {"id": str(i), "edit_type": "unknown", "mos": float(i % 5), "pred": float(i % 5) + 0.1 * i} for i in range(8)
    ]
    metrics = correlation_result(rows).metrics
    assert metrics["unknown"]["n"] == 8 and metrics["style_change"]["n"] == 0
    paper_only = correlation_result([{**r, "edit_type": "style_change"} for r in rows]).metrics
    assert "unknown" not in paper_only  # the paper's sets keep their five columns

    def table(m: dict) -> str:
        row = Row("m")
        _add(row, type("R", (), {"seed": 0, "split_seed": 0})(), _table_cells(m))
        return to_markdown("overall", [row])

    assert "Unknown type SRCC" in table(metrics) and "Unknown type" not in table(paper_only)
