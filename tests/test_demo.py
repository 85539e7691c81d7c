import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from epaiqa.data.demo import generate_demo_set
from epaiqa.data.demo.photos import load_photos
from epaiqa.data.demo.raters import true_scores
from epaiqa.data.manifest import load_manifest
from epaiqa.data.schema import EDIT_TYPES


def generation(root: Path) -> dict[str, dict]:
    return {p["id"]: p for p in map(json.loads, (root / "generation.jsonl").read_text().splitlines())}


def test_at_least_twenty_shipped_photos_load() -> None:
    photos = load_photos()
    assert len({p.name for p in photos}) >= 20
    assert all(p.pixels.ndim == 3 and p.pixels.shape[2] == 3 and p.pixels.dtype == np.uint8 for p in photos)


def test_demo_set_has_every_part(demo_root: Path) -> None:
    samples = load_manifest(demo_root)
    assert len(samples) == 48
    assert Counter(s.edit_type for s in samples) == dict.fromkeys(EDIT_TYPES, 12)
    assert all(s.prompt.endswith(".") and s.editor.startswith("demo-") for s in samples)
    assert "SYNTHETIC" in (demo_root / "README.txt").read_text()
    assert (demo_root / "splits.json").is_file()
    params = generation(demo_root)
    assert len({p["photo"] for p in params.values()}) >= 16  # 16 sources of 3 edits each, one photo each


def test_every_sample_has_ten_or_more_raters(demo_root: Path) -> None:
    with (demo_root / "ratings.csv").open() as fh:
        counts = Counter(row["sample_id"] for row in csv.DictReader(fh))
    assert set(counts) == {s.id for s in load_manifest(demo_root)}
    assert min(counts.values()) >= 10


def test_cleaned_scores_follow_the_documented_rule(demo_root: Path) -> None:
    params = generation(demo_root)
    samples = load_manifest(demo_root)
    for dim in ("harmony", "naturalness", "overall"):
        pairs = [(params[s.id]["truth"][dim], s.score(dim)) for s in samples if s.score(dim) is not None]
        rho = spearmanr(*zip(*pairs, strict=True)).statistic
        assert rho > 0.85, (dim, rho)
    agree = np.mean([params[s.id]["completion"] == s.score("completion") for s in samples])
    assert agree > 0.85


def test_rule_limits_incomplete_edits_to_two_points() -> None:
    assert true_scores(0.0, 0.0, 3).overall == 5.0
    assert true_scores(0.0, 0.0, 2).overall <= 2.0
    assert true_scores(0.0, 0.0, 1).overall <= 2.0
    assert true_scores(1.0, 0.0, 3).harmony == 1.0
    assert true_scores(0.2, 0.0, 3).overall < true_scores(0.0, 0.2, 3).overall  # a harmony flaw costs more


def test_cot_names_the_real_artefacts(demo_root: Path) -> None:
    params = generation(demo_root)
    phrases = {"blur": "blur", "noise": "noise", "blockiness": "blocky", "distortion": "distortion"}
    checked = 0
    for s in load_manifest(demo_root):
        if s.cot is None:
            continue
        p = params[s.id]
        assert s.cot["overall"].startswith("Therefore, the overall editing quality level of the image is ")
        if p["naturalness_severity"] >= 0.1:
            assert phrases[p["artefact"]] in s.cot["naturalness"]
            checked += 1
        if p["harmony_severity"] >= 0.15:
            assert "seam" in s.cot["harmony"]
    assert checked > 10


def test_generation_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = generate_demo_set(tmp_path / "a", n=8, seed=5, size=64)
    b = generate_demo_set(tmp_path / "b", n=8, seed=5, size=64)
    c = generate_demo_set(tmp_path / "c", n=8, seed=6, size=64)
    for name in ("manifest.jsonl", "ratings.csv", "splits.json", "edited/000003.jpg", "source/00001.jpg"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "edited/000003.jpg").read_bytes() != (c / "edited/000003.jpg").read_bytes()
