"""`epaiqa report --html` and `epaiqa stats`: the figures' numbers by hand, the page in a real headless Chromium."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epaiqa.cli import main
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import EDIT_TYPES, PAISample
from epaiqa.records.results import RunRecord, Setting, write_record
from epaiqa.report import figures
from epaiqa.report.html import PAGE, pick_explanations, prediction_folder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


#: the page-space box (left, top, width, height) of each element
BOXES = (
    "els => els.map(e => { const r = e.getBoundingClientRect(); "
    "return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })"
)


def sample(id: str, edit_type: str, overall, harmony, naturalness, completion=3.0) -> PAISample:
    mos = {"overall": overall, "harmony": harmony, "naturalness": naturalness, "completion": completion}
    return PAISample(id, "source/a.jpg", "edited/a.jpg", "p", (0.5, 0.5, 0.2, 0.2), edit_type, mos=mos)


# levels of the 1–5 scale: bad < 1.8 ≤ poor < 2.6 ≤ fair < 3.4 ≤ good < 4.2 ≤ excellent
TINY = [
    sample("a", "style_change", 1.0, 1.0, 1.5),  # harmony bad, naturalness bad
    sample("b", "style_change", 2.0, 1.7, 1.0),  # bad, bad
    sample("c", "object_enhancement", 3.0, 5.0, 2.0),  # excellent, poor
    sample("d", "semantic_change", 4.5, 4.2, 4.3),  # excellent, excellent
    sample("e", "semantic_change", 5.0, 3.0, 3.0, completion=2.0),  # not full completion: out of Figs. 6–7
    sample("f", "object_operation", 4.0, None, 3.0),  # harmony filtered out: out of Figs. 6–7
    sample("g", "object_operation", 2.5, 2.5, 2.5, completion=None),  # no completion: out of Figs. 6–7
]


def colours(pixels: np.ndarray) -> int:
    """How many distinct RGB colours an H×W×3 array holds."""
    packed = pixels.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    return len(np.unique(packed))


def is_blank(png: bytes) -> bool:
    return colours(np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))) < 3


def test_divergence_grid_matches_a_hand_computation() -> None:
    grid = figures.divergence_grid(TINY)
    expected_counts = np.zeros((5, 5), dtype=int)
    expected_counts[0, 0], expected_counts[1, 4], expected_counts[4, 4] = 2, 1, 1  # rows naturalness, cols harmony
    np.testing.assert_array_equal(grid.counts, expected_counts)
    assert grid.mean[0, 0] == pytest.approx(1.5)  # (1.0 + 2.0) / 2
    assert grid.mean[1, 4] == pytest.approx(3.0)
    assert grid.mean[4, 4] == pytest.approx(4.5)
    assert np.isnan(grid.mean[expected_counts == 0]).all()
    every = figures.divergence_grid(TINY, completion=None)  # e and g join; f still lacks harmony
    assert every.counts.sum() == 6 and every.mean[2, 2] == pytest.approx(5.0)  # e: fair, fair
    assert "1.50 (  2)" in grid.to_text().splitlines()[-1]  # bottom line: naturalness bad


def test_rating_histograms_count_each_edit_type() -> None:
    overall = figures.rating_histograms(TINY, "overall")
    assert list(figures.rating_edges("overall")) == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    assert overall["style_change"].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]  # 1.0 and 2.0
    assert overall["semantic_change"].tolist() == [0, 0, 0, 0, 0, 0, 0, 2]  # 4.5 and 5.0 (the top edge counts)
    harmony = figures.rating_histograms(TINY, "harmony")
    assert harmony["object_operation"].sum() == 1  # f's harmony was filtered out
    completion = figures.rating_histograms(TINY, "completion")
    assert completion["semantic_change"].tolist() == [0, 1, 1]
    assert set(overall) == set(EDIT_TYPES)


def test_dataset_figures_draw_only_what_they_say() -> None:
    assert [s.id for s in figures.full_completion(TINY)] == ["a", "b", "c", "d"]
    scatter = figures.quality_scatter_3d(TINY)
    assert "(4 samples)" in scatter.axes[0].get_title()
    pngs = figures.dataset_pngs(TINY)
    assert list(pngs) == list(figures.DATASET_FIGURES)
    assert not any(is_blank(png) for png in pngs.values())
    none_complete = [sample("x", "style_change", 2.0, 2.0, 2.0, completion=1.0)]
    assert not is_blank(figures.to_png(figures.divergence_heatmap(none_complete)))  # empty grid: drawn, no crash


def test_pick_explanations_spans_the_mos_order() -> None:
    entries = [{"id": str(i), "mos": float(i)} for i in range(10)]
    assert [e["id"] for e in pick_explanations(entries)] == ["0", "4", "9"]  # lowest, middle, highest
    assert pick_explanations(entries[:2]) == entries[:2]


def test_prediction_folder_looks_one_up_only_from_a_task_folder(tmp_path: Path) -> None:
    (tmp_path / "run" / "overall").mkdir(parents=True)
    (tmp_path / "run" / "predictions.csv").write_text("id,task,mos,pred\n")
    assert prediction_folder(tmp_path / "run" / "overall" / "results.json", "overall") == tmp_path / "run"
    assert prediction_folder(tmp_path / "run" / "overall" / "results.json", "harmony") is None


def test_fig5_numbers_by_hand(demo_root: Path) -> None:
    samples = load_manifest(demo_root, check_images=False)
    shares = figures.bbox_area_shares(samples)
    assert sum(int(c.sum()) for c in shares.values()) == len(samples)
    first = samples[0]
    bin_of_first = int(100 * first.bbox[2] * first.bbox[3] // 5)
    assert shares[first.edit_type][bin_of_first] >= 1
    sizes = figures.subset_sizes(samples)
    assert sizes["naturalness"] == sum(s.score("naturalness") is not None for s in samples)
    assert sizes["overall"] == sum(all(s.score(d) is not None for d in ("overall", "harmony", "naturalness",
                                                                       "completion")) for s in samples)  # fmt: skip


def test_stats_writes_the_four_figures(demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stats", str(demo_root), "--out", str(tmp_path / "stats")]) == 0
    written = sorted(p.name for p in (tmp_path / "stats").iterdir())
    assert written == sorted(f"{stem}.png" for stem in figures.DATASET_FIGURES)
    assert not any(is_blank((tmp_path / "stats" / name).read_bytes()) for name in written)
    grid = figures.divergence_grid(load_manifest(demo_root, check_images=False))
    assert grid.to_text() in capsys.readouterr().out
    assert main(["stats", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'missing'}: dataset root not found"


def table(base: float) -> dict:
    metrics = {c: {"srcc": base + i / 50, "plcc": base + i / 40, "n": 5} for i, c in enumerate(EDIT_TYPES)}
    return metrics | {"all": {"srcc": base, "plcc": base + 0.02, "n": 20}}


def stage3_run(folder: Path, root: Path) -> Path:
    """A stage-3 run folder as the explain stage writes it: overall/results.json, predictions, explanations."""
    samples = [s for s in load_manifest(root, check_images=False) if s.score("overall") is not None][:20]
    record = RunRecord(
        task="overall", model="epaiqa_fake", kind="trained", test=table(0.4), n=20, seed=0,
        setting=Setting("k3", ["experiment=stage3_explain"]), lineage=["grounding", "scoring", "explain"],
        subsets={"completion3": {"test": table(0.5)}}, data={"root": str(root), "with_cot": True},
    )  # fmt: skip
    write_record(folder / "overall", record)
    rows = ["id,task,edit_type,completion,completion_pred,mos,pred,wrote_level_sentence"]
    explanations = []
    for i, s in enumerate(samples):
        pred = s.score("overall") + 0.3 * np.sin(i)
        rows.append(f"{s.id},overall,{s.edit_type},3,,{s.score('overall')},{pred},True")
        entry = {"id": s.id, "edit_type": s.edit_type, "mos": s.score("overall"), "pred": pred, "prompt": s.prompt}
        explanations.append(entry | {"explanation": f"EXPLANATION-{s.id} <b>not bold</b>"})
    (folder / "predictions.csv").write_text("\n".join(rows) + "\n")
    (folder / "explanations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in explanations))
    judged = {"PA": 0.8, "LNA": 0.6, "GHA": 0.7, "Overall": 0.65, "n": {"PA": 3}, "parse_failures": 1, "replies": 8}
    (folder / "judge.json").write_text(json.dumps(judged | {"model": "epaiqa_fake", "judge": "fake-judge"}))
    return folder


@pytest.fixture(scope="module")
def html_report(baseline_sweep: Path, demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``report --html`` over the trained baseline sweep and a stage-3 run: the page's path."""
    stage3 = stage3_run(tmp_path_factory.mktemp("stage3") / "s3", demo_root)
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(baseline_sweep), str(stage3), "--html", "--out", str(out)]) == 0
    return out / PAGE


def test_page_is_self_contained_with_tables_figures_and_explanations(html_report: Path) -> None:
    text = html_report.read_text()
    assert (html_report.parent / "harmony.md").is_file() and (html_report.parent / "harmony.csv").is_file()
    for table in ("harmony", "naturalness", "overall", "overall_all", "table4", "table5", "table7"):
        assert f'id="table-{table}"' in text
    assert "http://" not in text and "https://" not in text and "<script" not in text
    srcs = [part.split('"', 1)[0] for part in text.split(' src="')[1:]]
    assert srcs and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in srcs)
    for stem in figures.DATASET_FIGURES:
        assert f'alt="{stem}"' in text
    assert "<td>fake-judge</td><td class=best>0.800</td>" in text and "<td>12.5%</td>" in text  # Table 4
    assert text.count('class="figure"') == len(figures.DATASET_FIGURES) + 3 + 4  # dataset; scatter per task; bars
    assert text.count('<div class="case">') == 3 and "EXPLANATION-" in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text  # model output is escaped, never markup
    assert 'class="notes"' not in text  # every run has predictions, the root is readable


def test_bad_inputs_are_one_line_each_and_the_page_still_writes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "runs" / "lost"
    record = RunRecord("harmony", "dbcnn", "trained", table(0.6), 20, seed=0, data={"root": str(tmp_path / "gone")})
    write_record(run, record)
    assert main(["report", str(tmp_path / "runs"), "--html", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert notes == [
        f"note: {run}: no predictions.csv (left out of the scatter plots)",
        f"note: dataset root {tmp_path / 'gone'} not found (no dataset figures or images from it)",
    ]
    assert "Traceback" not in err
    page = (tmp_path / "out" / PAGE).read_text()
    assert "not found (no dataset figures" in page and 'id="table-harmony"' in page
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--html"]) == 1
    assert capsys.readouterr().err.strip() == f"error: no results.json under {tmp_path / 'empty'}"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it where apt-get can)")
def test_page_renders_in_headless_chromium(html_report: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html_report.as_uri(), wait_until="load")
            assert page.locator("table.results").count() == 7  # Tables 1–3, overall on all samples, 4, 5, 7
            assert page.locator("table.results tbody tr").count() == 7  # one model row in each
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            figure_count = len(figures.DATASET_FIGURES) + 3 + 4
            assert len(widths) == figure_count + 2 * 3 and min(widths) > 0  # figures, source + edited per explanation
            boxes = page.eval_on_selector_all("img.figure", BOXES)
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert errors == []
    screen = Image.open(io.BytesIO(shot)).convert("RGB")
    assert screen.height > 3000 and not is_blank(shot)
    for left, top, width, height in boxes:  # each figure as the browser painted it
        assert width > 100 and height > 100
        crop = np.asarray(screen.crop((round(left), round(top), round(left + width), round(top + height))))
        assert colours(crop) > 20 and (crop.mean(axis=2) < 128).mean() > 0.005
