import json
from pathlib import Path

import pytest
import torch
from helpers import make_cfg

from epaiqa.data.manifest import load_manifest
from epaiqa.data.splits import load_splits
from epaiqa.errors import ConfigError
from epaiqa.lmm.explain import OVERALL_HEAD, overall_prefix, parse_completion
from epaiqa.lmm.instructions import explain_answer
from epaiqa.models.lmm_module import LINEAGE_KEY
from epaiqa.train import train

FAST = ["trainer.limit_train_batches=1", "model.max_new_tokens=8", "data.limit_train_eval=2"]


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("The prompt completion is fully compliant. The cat is red.", 3),
        ("the PROMPT COMPLETION IS partly-compliant.", 2),
        ("The prompt completion is non-compliant. Therefore, …", 1),
        ("The prompt completion is compliant.", None),
        ("The prompt completion is", None),
        ("", None),
        ("fully compliant", None),
    ],
)
def test_parse_completion(text: str, level: int | None) -> None:
    assert parse_completion(text) == level


def test_overall_prefix_stops_before_the_level_word() -> None:
    written = (
        "The prompt completion is fully compliant. Therefore, the overall editing quality level of the image is good."
    )
    prefix, own = overall_prefix(written)
    assert own and prefix == written.removesuffix(" good.") and prefix.endswith("image is")
    assert overall_prefix("Some analysis.") == (f"Some analysis. {OVERALL_HEAD}", False)
    assert overall_prefix("   ") == (OVERALL_HEAD, False)
    twice = f"{OVERALL_HEAD} bad. {OVERALL_HEAD} fair."
    assert overall_prefix(twice)[0] == f"{OVERALL_HEAD} bad. {OVERALL_HEAD}"  # the last verdict counts


def _overall_test(root: Path, limit: int) -> list:
    samples = load_manifest(root)
    by_id = {s.id: s for s in samples}
    return [by_id[i] for i in load_splits(root, samples)["overall"]["test"]][:limit]


def test_stage3_reports_completion_accuracy_scores_completion_3_and_writes_explanations(
    demo_root: Path, tmp_path: Path
) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage3_explain", "data.limit_test=6", *FAST])
    results = train(cfg)
    expected = _overall_test(demo_root, 6)
    followed = [s for s in expected if s.score("completion") == 3]
    assert results["overall"].n == 6  # every test sample, and apart from it the §5.1 subset of completion = 3
    assert results["overall"].subsets["completion3"]["test"]["all"]["n"] == len(followed) > 0
    completion = results["completion"].test
    assert completion["n"] == 6 and 0.0 <= completion["accuracy"] <= 1.0
    assert completion["parse_failure_rate"] + completion["accuracy"] <= 1.0
    assert json.loads((tmp_path / "overall" / "results.json").read_text())["task"] == "overall"

    rows = [json.loads(line) for line in (tmp_path / "explanations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == sorted(s.id for s in expected)
    by_id = {s.id: s for s in expected}
    for row in rows:
        sample = by_id[row["id"]]
        assert row["reference_answer"] == explain_answer(sample, with_cot=True)
        assert row["completion"] == sample.score("completion") and 1.0 <= row["pred"] <= 5.0
        assert row["completion_pred"] == parse_completion(row["explanation"])
    predictions = (tmp_path / "predictions.csv").read_text()
    assert "explanation" not in predictions.splitlines()[0] and len(predictions.splitlines()) == 7


def test_wo_cot_ablation_trains_on_levels_only(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage3_explain", "ablation=wo_cot", "data.limit_test=3", *FAST])
    assert cfg.model_name == "epaiqa_tiny_wo_cot" and cfg.data.with_cot is False
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "explanations.jsonl").read_text().splitlines()]
    by_id = {s.id: s for s in _overall_test(demo_root, 3)}
    assert all(r["reference_answer"] == explain_answer(by_id[r["id"]], with_cot=False) for r in rows)


def test_stage3_leaves_out_samples_without_cot_and_says_how_many(
    demo_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = demo_copy / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    subsets = load_splits(demo_copy, load_manifest(demo_copy))["overall"]
    train_ids = set(subsets["train"])
    stripped = [line["id"] for line in lines if line["id"] in train_ids][:3]
    first_test = subsets["test"][0]
    for line in lines:
        if line["id"] in [*stripped, first_test]:
            line.pop("cot", None)
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    overrides = ["experiment=stage3_explain", "data.limit_test=2", "data.val_fraction=0", *FAST]
    cfg = make_cfg(demo_copy, tmp_path, overrides)
    from epaiqa.runs import build

    datamodule = build(cfg.data)
    with caplog.at_level("WARNING"):
        datamodule.setup("fit")
    assert f"3 of {len(train_ids)} overall samples lack" in caplog.text
    assert not {s.id for s, _ in datamodule.datasets["train"].pairs} & set(stripped)
    assert len(datamodule.datasets["train"].pairs) == len(train_ids) - 3

    # a test sample without CoT is still tested; its reference answer has the levels only
    train(cfg)
    rows = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "explanations.jsonl").open()}
    sample = next(s for s in load_manifest(demo_copy) if s.id == first_test)
    assert rows[first_test]["reference_answer"] == explain_answer(sample, with_cot=False)


def test_stages_1_2_3_chain_and_record_their_lineage(
    demo_root: Path, tmp_path: Path, lmm_chain: dict[str, Path]
) -> None:
    s1, s2, s3 = (lmm_chain[k] / "checkpoints" / "last.ckpt" for k in ("s1", "s2", "s3"))
    stage2 = ["experiment=stage2_mixed", "data.limit_test=4", "eval_untrained=false", f"model.init_from={s1}"]
    lineage = [torch.load(c, map_location="cpu", weights_only=True)[LINEAGE_KEY] for c in (s1, s2, s3)]
    assert lineage == [["grounding"], ["grounding", "scoring"], ["grounding", "scoring", "explain"]]

    # resuming stage 2 (ckpt_path) continues the same lineage instead of adding a stage
    resumed = [*stage2, *FAST, f"ckpt_path={s2}", "trainer.max_epochs=2"]
    train(make_cfg(demo_root, tmp_path / "s2b", resumed))
    again = torch.load(tmp_path / "s2b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert again[LINEAGE_KEY] == ["grounding", "scoring"] and again["epoch"] == 1

    # the wo-stage-1 ablation refuses weights that went through stage 1, and says so
    refused = make_cfg(
        demo_root, tmp_path / "ab", ["experiment=stage3_explain", "ablation=wo_stage1", f"model.init_from={s2}"]
    )
    with pytest.raises(ConfigError, match=r"went through stage 'grounding'.*wo_stage1"):
        train(refused)


def test_ablation_presets_compose(demo_root: Path, tmp_path: Path) -> None:
    ref = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", "ablation=reference"])
    assert ref.data.reference is True and list(ref.model.exclude_stages) == ["grounding"]
    assert ref.model.init_from is None and ref.model_name == "epaiqa_tiny_reference"
    wo = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", "ablation=wo_stage1", "model.init_from=/x.ckpt"])
    assert wo.model.init_from == "/x.ckpt" and wo.model_name == "epaiqa_tiny_wo_stage1"  # the user's chain wins


def test_stage3_logs_the_explanations_as_a_wandb_table(demo_root: Path, tmp_path: Path) -> None:
    from omegaconf import open_dict

    from epaiqa.train import EXPLANATION_COLUMNS

    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage3_explain", "data.limit_test=3", *FAST])
    with open_dict(cfg):
        cfg.logger = make_cfg(demo_root, tmp_path, ["experiment=stage3_explain", "logger=default"]).logger
    train(cfg)
    tables = list((tmp_path / "wandb").glob("offline-run-*/files/media/table/test/explanations_*.table.json"))
    assert len(tables) == 1, "W&B wrote no explanations table"
    table = json.loads(tables[0].read_text())
    assert table["columns"] == list(EXPLANATION_COLUMNS) and len(table["data"]) == 3
    explanations = [json.loads(line)["explanation"] for line in (tmp_path / "explanations.jsonl").open()]
    assert [row[EXPLANATION_COLUMNS.index("explanation")] for row in table["data"]] == explanations


def test_stage3_encodes_its_images_once_and_reads_the_same_overall_level(demo_root: Path) -> None:
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES, explain_instruction
    from epaiqa.lmm.scoring import score
    from epaiqa.models.lmm_module import EPAIQAExplain

    stage = EPAIQAExplain(backbone="tiny", max_new_tokens=6).eval()
    samples = _overall_test(demo_root, 3)
    built = [explain_instruction(s, demo_root, with_cot=False) for s in samples]
    batch = {"conversations": [b.conversation for b in built], "images": [b.images for b in built], "samples": samples}
    tower = next(m for name, m in stage.model.named_modules() if name.endswith("vision_tower"))
    calls = []
    hook = tower.register_forward_hook(lambda *_: calls.append(1))
    try:
        stage.test_step(batch, 0)
    finally:
        hook.remove()
    assert len(calls) == 1  # the generation's prefill; the overall readout reuses its cache
    rows = stage._rows
    prefixes = [overall_prefix(r["explanation"])[0] for r in rows]
    again = score(
        stage.model, stage.processor, batch["conversations"], batch["images"], ANSWER_TEMPLATES["overall"], prefixes
    )
    assert torch.allclose(torch.tensor([r["pred"] for r in rows]), again, atol=1e-4)


def test_level_sigma_trains_stage3_overall_word_on_soft_targets(demo_root: Path) -> None:
    from epaiqa.lmm.data import InstructionDataset, collate_instructions
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES, encode_supervised
    from epaiqa.models.lmm_module import EPAIQAExplain

    samples = load_manifest(demo_root)
    full = next(s for s in samples if s.cot and round(s.score("completion")) == 3)
    low = next(s for s in samples if s.cot and round(s.score("completion")) == 1)
    data = InstructionDataset(demo_root, [(full, "overall"), (low, "overall")], True, True, False)
    batch = collate_instructions([data[0], data[1]])
    assert batch["templates"] == [ANSWER_TEMPLATES["overall"]] * 2
    assert 0.5 <= batch["levels"][0] <= 5.5 and batch["levels"][1] == 1.0  # the MOS's place; 'bad' as prescribed
    hard, soft = EPAIQAExplain(backbone="tiny"), EPAIQAExplain(backbone="tiny", level_sigma=0.5)
    inputs = encode_supervised(hard.processor, batch["conversations"], batch["images"])
    with torch.no_grad():
        one_hot, spread = hard.supervised_loss(inputs, batch), soft.supervised_loss(inputs, batch)
    # one word of a ~100-token answer changes target: a small difference, far above float32 rounding (~1e-6)
    assert torch.isfinite(spread) and abs(float(spread) - float(one_hot)) > 2e-5


def test_explain_view_context_cuts_source_and_edited_to_the_region(demo_root: Path) -> None:
    import numpy as np
    from PIL import Image

    from epaiqa.data.crops import crop_region
    from epaiqa.lmm.data import LMMDataModule
    from epaiqa.lmm.instructions import explain_instruction

    sample = next(s for s in load_manifest(demo_root) if s.cot)
    whole = explain_instruction(sample, demo_root)
    context = explain_instruction(sample, demo_root, view="context", margin=0.3)
    assert context.conversation == whole.conversation  # the question and answer do not change
    for shown, path in zip(context.images, (sample.source, sample.edited), strict=True):
        expected = crop_region(Image.open(demo_root / path).convert("RGB"), sample.bbox, margin=0.3)
        assert shown.size == expected.size and np.array_equal(np.asarray(shown), np.asarray(expected))
    assert context.images[1].size[0] < whole.images[1].size[0]
    with pytest.raises(ConfigError, match=r"data\.explain_view must be one of whole, context, got 'region'"):
        explain_instruction(sample, demo_root, view="region")
    with pytest.raises(ConfigError, match=r"data\.explain_view must be one of whole, context"):
        LMMDataModule(root=str(demo_root), stage="explain", explain_view="crop")
    data = LMMDataModule(root=str(demo_root), stage="explain", explain_view="context")
    assert data.task_view("overall") == data.task_view("completion") == "context"
    assert LMMDataModule(root=str(demo_root), stage="grounding").task_view("grounding") == "whole"


@pytest.mark.parametrize(
    ("verdicts", "voted"),
    [([3, 1, 1], 1), ([3, 1, None], 3), ([None, 2, 1], 1), ([None, None], None), ([2, 2, 3, 3], 2), ([], None)],
)
def test_vote_takes_the_most_common_verdict_and_breaks_ties_by_the_greedy_one(
    verdicts: list[int | None], voted: int | None
) -> None:
    from epaiqa.lmm.explain import vote

    assert vote(verdicts) == voted


def test_self_consistency_averages_the_sampled_explanations_readouts(demo_root: Path) -> None:
    from epaiqa.lmm.explain import explain_and_score
    from epaiqa.lmm.generation import generate
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES, explain_instruction
    from epaiqa.lmm.scoring import score
    from epaiqa.models.lmm_module import EPAIQAExplain

    stage = EPAIQAExplain(backbone="tiny", max_new_tokens=6).eval()
    built = [explain_instruction(s, demo_root, with_cot=False) for s in _overall_test(demo_root, 3)]
    convs, images = [b.conversation for b in built], [b.images for b in built]
    model, processor = stage.model, stage.processor
    state = torch.get_rng_state()
    greedy = explain_and_score(model, processor, convs, images, 6)
    drawn = explain_and_score(model, processor, convs, images, 6, samples=2, temperature=1.5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # sampling ran in a forked generator
    assert drawn == explain_and_score(model, processor, convs, images, 6, samples=2, temperature=1.5, seed=7)
    assert [d.explanation for d in drawn] == [g.explanation for g in greedy]
    assert [d.greedy_score for d in drawn] == pytest.approx([g.score for g in greedy], abs=1e-5)
    # the same two draws by hand (each question twice in one batch): their readouts, averaged with the greedy one
    sampling = {"do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 1.0}
    torch.manual_seed(7)
    twice_convs, twice_images = [c for c in convs for _ in "ab"], [i for i in images for _ in "ab"]
    texts = generate(model, processor, twice_convs, twice_images, 6, sampling).texts
    prefixes = [overall_prefix(t)[0] for t in texts]
    values = score(model, processor, twice_convs, twice_images, ANSWER_TEMPLATES["overall"], prefixes)
    expected = (torch.tensor([g.score for g in greedy]) + values[0::2] + values[1::2]) / 3
    assert torch.allclose(torch.tensor([d.score for d in drawn]), expected, atol=1e-4)
    verdicts = [[parse_completion(a), parse_completion(b)] for a, b in zip(texts[0::2], texts[1::2], strict=True)]
    assert [d.votes[1:] for d in drawn] == verdicts


def test_stage3_with_cot_samples_records_the_greedy_score_and_the_votes(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(
        demo_root, tmp_path, ["experiment=stage3_explain", "data.limit_test=3", "model.cot_samples=2", *FAST]
    )
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "explanations.jsonl").open()]
    assert len(rows) == 3 and all(len(r["completion_votes"].split(",")) == 3 for r in rows)
    assert all(1 <= r["pred"] <= 5 and 1 <= r["pred_greedy"] <= 5 for r in rows)
    with pytest.raises(ConfigError, match=r"model\.cot_samples must be an integer >= 0, got -1"):
        train(make_cfg(demo_root, tmp_path / "bad", ["experiment=stage3_explain", "model.cot_samples=-1", *FAST]))


def test_rehearsal_mixes_stage2_questions_into_stage3_training_only(demo_root: Path) -> None:
    from epaiqa.lmm.data import LMMDataModule, collate_instructions
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES, encode_supervised
    from epaiqa.models.lmm_module import EPAIQAExplain

    data = LMMDataModule(root=str(demo_root), stage="explain", rehearse=["harmony", "naturalness"], rehearse_limit=3)
    data.setup("fit")
    plain = LMMDataModule(root=str(demo_root), stage="explain")
    plain.setup("fit")
    tasks = [task for _, task in data.datasets["train"].pairs]
    assert tasks.count("harmony") == tasks.count("naturalness") == 3
    assert data.datasets["train"].pairs[: len(plain.datasets["train"].pairs)] == plain.datasets["train"].pairs
    for part in ("val", "test", "train_eval"):
        assert {task for _, task in data.datasets[part].pairs} == {"overall"}, part
    training = data.datasets["train"]
    batch = collate_instructions([training[0], training[len(training) - 1]])  # a stage-3 and a stage-2 question
    assert batch["tasks"] == ["overall", "naturalness"]
    assert batch["templates"] == [ANSWER_TEMPLATES["overall"], ANSWER_TEMPLATES["naturalness"]]
    stage = EPAIQAExplain(backbone="tiny", level_sigma=0.5)
    with torch.no_grad():
        loss = stage.supervised_loss(encode_supervised(stage.processor, batch["conversations"], batch["images"]), batch)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match=r"data\.rehearse mixes stage 2's .* stage explain and those tasks only"):
        LMMDataModule(root=str(demo_root), stage="scoring", rehearse=["harmony"])
    with pytest.raises(ConfigError, match=r"data\.rehearse mixes .* got stage explain and \['overall'\]"):
        LMMDataModule(root=str(demo_root), stage="explain", rehearse=["overall"])
