"""The offline demo judge: facets read from explanations and references, agreement beside the majority rate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from epaiqa.cli import main
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import has_explain_cot
from epaiqa.errors import DataError
from epaiqa.judge.demo import FACETS, judge_demo, read_facets
from epaiqa.lmm.instructions import explain_answer


def _answers(root: Path) -> list[tuple[str, str]]:
    samples = [s for s in load_manifest(root, check_images=False, check_splits=False) if s.score("overall") is not None]
    return [(s.id, explain_answer(s)) for s in samples if s.score("completion") is not None and has_explain_cot(s)]


def _run(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True)
    lines = [json.dumps({"id": i, "explanation": gen, "reference_answer": ref}) for i, ref, gen in rows]
    (folder / "explanations.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_facets_are_read_as_the_demo_writes_them() -> None:
    text = (
        "The prompt completion is fully compliant. The prompt is fully followed: the sky turns pink. The harmony: "
        "The boundary of the edited region shows a hard, clearly visible seam, and the region looks darker than its "
        "surroundings with a green cast (strong mismatch). A bright or dark outline runs along the edit boundary. "
        "So the harmony is poor. The local naturalness: Inside the edited region there is moderate grainy noise. "
        "So the local naturalness is fair. Therefore, the overall editing quality level of the image is poor."
    )
    assert read_facets(text) == {
        "completion": "3",
        "seam": "hard",
        "brightness": "darker",
        "tint": "green",
        "halo": "yes",
        "artefact": "noise",
        "artefact_degree": "moderate",
        "harmony_level": "poor",
        "naturalness_level": "fair",
        "overall_level": "poor",
    }
    assert set(read_facets("The image looks fine.").values()) == {None}
    assert tuple(read_facets(text)) == FACETS


def test_references_agree_with_themselves_and_a_constant_answer_scores_the_majority_rate(
    demo_root: Path, tmp_path: Path
) -> None:
    answers = _answers(demo_root)
    assert len(answers) >= 10
    same = judge_demo(_run(tmp_path / "same", [(i, a, a) for i, a in answers]), root=str(demo_root))
    assert same["unreadable_rate"] == 0 and set(same["facets"]) == set(FACETS)
    assert all(f["agreement"] == 1.0 and f["unstated"] == 0 for f in same["facets"].values())
    assert same["facets"]["harmony_level"]["within_one"] == 1.0

    constant = (
        "The prompt completion is fully compliant. Therefore, the overall editing quality level of the image is good."
    )
    flat = judge_demo(_run(tmp_path / "flat", [(i, a, constant) for i, a in answers]), root=str(demo_root))
    completion = flat["facets"]["completion"]
    assert completion["majority_value"] == "3" and completion["agreement"] == completion["majority_rate"] < 1
    assert flat["facets"]["seam"]["agreement"] == 0 and flat["facets"]["seam"]["unstated"] == 1.0  # says nothing
    overall = flat["facets"]["overall_level"]
    assert overall["within_one"] <= overall["majority_within_one"]  # a constant cannot beat the best constant
    written = json.loads((tmp_path / "flat" / "judge.json").read_text())
    assert written["judge"] == "demo" and written["facets"]["completion"]["n"] == len(answers)


def test_the_demo_judge_refuses_a_root_that_is_not_a_demo_root(demo_root: Path, tmp_path: Path) -> None:
    real = Path(shutil.copytree(demo_root, tmp_path / "real"))
    (real / "generation.jsonl").unlink()
    answers = _answers(demo_root)[:3]
    run = _run(tmp_path / "run", [(i, a, a) for i, a in answers])
    with pytest.raises(DataError, match="not a demo root"):
        judge_demo(run, root=str(real))


def test_judge_command_with_the_demo_judge_and_the_report_table(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    answers = _answers(demo_root)
    shuffled = answers[1:] + answers[:1]  # each sample explained with another sample's reference
    run = _run(tmp_path / "run", [(i, a, b) for (i, a), (_, b) in zip(answers, shuffled, strict=True)])
    assert main(["judge", str(run), "--judge-model", "demo", "--root", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert "demo judge" in out and "majority" in out
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table4_demo.md").read_text()
    assert "completion" in table and "majority" in table and "run" in table
