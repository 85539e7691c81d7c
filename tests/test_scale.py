import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import CONF, make_cfg
from lightning.pytorch.strategies import FSDPStrategy

from epaiqa.distributed import gather_rows
from epaiqa.errors import ConfigError
from epaiqa.runs import build
from epaiqa.scale import fsdp_strategy
from epaiqa.train import train

RUN = Path(__file__).resolve().parents[1] / "run.py"


def test_gather_rows_drops_sampler_repeats_and_sorts() -> None:
    rows = [{"id": "b", "task": "harmony", "pred": 1.0}, {"id": "a", "task": "harmony", "pred": 2.0}]
    repeated = [*rows, {"id": "b", "task": "harmony", "pred": 9.0}, {"id": "b", "task": "naturalness", "pred": 3.0}]
    out = gather_rows(repeated)
    assert [(r["id"], r["task"], r["pred"]) for r in out] == [
        ("a", "harmony", 2.0),
        ("b", "harmony", 1.0),
        ("b", "naturalness", 3.0),
    ]


@pytest.mark.parametrize("preset", ["ddp", "fsdp", "deepspeed", "gpu"])
def test_trainer_presets_compose(demo_root: Path, tmp_path: Path, preset: str) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_mixed", f"trainer={preset}"], small=False)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    # the LMM experiments decide precision at run time (bf16 where the hardware has it: epaiqa/precision.py)
    assert cfg.trainer.precision == "auto"
    assert "accumulate_grad_batches" in cfg.trainer or preset == "ddp"


def test_fsdp_preset_wraps_the_transformer_blocks(demo_root: Path, tmp_path: Path) -> None:
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLDecoderLayer, Qwen2VLVisionBlock
    from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_mixed", "trainer=fsdp"], small=False)
    strategy = build(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy._state_dict_type == "full" and strategy.kwargs["use_orig_params"] is True
    blocks = {Qwen2DecoderLayer, SiglipEncoderLayer, Qwen2VLDecoderLayer, Qwen2VLVisionBlock}
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == blocks
    with pytest.raises(ConfigError, match=r"trainer\.strategy\.layers: cannot import 'transformers\.NoSuchLayer'"):
        fsdp_strategy(["transformers.NoSuchLayer"])


def test_deepspeed_without_the_package_is_a_clear_error(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import epaiqa.scale

    real = epaiqa.scale.importlib.util.find_spec
    monkeypatch.setattr(epaiqa.scale.importlib.util, "find_spec", lambda n: None if n == "deepspeed" else real(n))
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", "trainer=deepspeed"])
    with pytest.raises(ConfigError, match=r"needs the deepspeed package: pip install 'epaiqa\[deepspeed\]'"):
        train(cfg)


def _predictions(path: Path) -> dict[str, float]:
    with path.open() as fh:
        return {r["id"]: float(r["pred"]) for r in csv.DictReader(fh)}


def run_on_two_cpu_processes(demo_root: Path, out: Path, overrides: list[str]) -> str:
    """``run.py`` under ``trainer=ddp`` with two gloo processes; fails the test with stderr unless it succeeds."""
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "+trainer.enable_progress_bar=false"]
    paths = ["logger=csv", f"data.root={demo_root}", f"hydra.run.dir={out}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(RUN), *overrides, *ddp, *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=out.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_stage2_trains_under_ddp_with_two_cpu_processes(demo_root: Path, tmp_path: Path) -> None:
    """Two gloo processes: training runs, and test metrics cover every test sample once, from both shards."""
    out = tmp_path / "ddp"
    overrides = [
        "experiment=stage2_harmony",
        "trainer.limit_train_batches=2",
        "data.limit_test=7",  # odd: the distributed sampler repeats one sample to even the shards
        "data.eval_batch_size=2",
        # fp32 on every machine: bf16 autocast (auto, where the CPU has AMX/AVX512-BF16) rounds differently with the
        # batch a sample shares, and this test compares the shards' gathered scores with one process's to 1e-5
        "trainer.precision=32-true",
    ]
    assert "Starting with 2 processes" in run_on_two_cpu_processes(demo_root, out, overrides)
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 7 and results["untrained"]["all"]["n"] == 7
    assert (out / "checkpoints" / "last.ckpt").is_file()

    # the untrained scores gathered from two processes equal one process's
    single = make_cfg(
        demo_root,
        tmp_path / "single",
        ["experiment=stage2_harmony", "data.limit_test=7", "train=false", "trainer.precision=32-true"],
    )
    (alone,) = train(single).values()
    assert results["untrained"]["all"]["srcc"] == pytest.approx(alone.test["all"]["srcc"], abs=1e-6)
    assert results["untrained"]["all"]["plcc"] == pytest.approx(alone.test["all"]["plcc"], abs=1e-5)
    assert len(_predictions(out / "predictions.csv")) == 7


def test_random_backbone_shapes_match_the_published_sizes() -> None:
    from transformers import LlavaOnevisionForConditionalGeneration

    from epaiqa.lmm.backbones import random_llava_onevision_config

    sizes = {}
    for shape in ("0.5b", "7b"):
        with torch.device("meta"):
            model = LlavaOnevisionForConditionalGeneration(random_llava_onevision_config(shape, 151648, 151646, 151647))
        sizes[shape] = sum(p.numel() for p in model.parameters())
    # llava-onevision-qwen2-0.5b-ov-hf: 0.89B parameters; -7b-ov-hf: 8.03B
    assert 0.85e9 < sizes["0.5b"] < 0.93e9
    assert 7.9e9 < sizes["7b"] < 8.15e9


def test_real_backbone_config_offline_names_what_to_download(demo_root: Path, tmp_path: Path) -> None:
    cfg = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", "model/backbone=llava_onevision_7b"])
    assert cfg.model.backbone.id == "llava-hf/llava-onevision-qwen2-7b-ov-hf" and cfg.model_name.endswith("7b")
    with pytest.raises(
        ConfigError, match=r"hf download llava-hf/llava-onevision-qwen2-7b-ov-hf.*model\.backbone\.path"
    ):
        train(cfg)
    missing = make_cfg(demo_root, tmp_path, ["experiment=stage2_harmony", f"model.backbone.path={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match=r"model\.backbone\.path=.*none.* is not a directory"):
        train(missing)
    assert sorted(p.stem for p in (CONF / "model" / "backbone").glob("*.yaml")) == [
        "llava_onevision_0.5b",
        "llava_onevision_7b",
        "mini",
        "qwen2_5_vl_7b",
        "qwen2_vl_7b",
        "random_0.5b",
        "tiny",
    ]


def test_a_baseline_under_ddp_scores_every_test_sample_once(demo_root: Path, tmp_path: Path) -> None:
    from epaiqa.data.manifest import load_manifest
    from epaiqa.data.splits import load_splits

    out = tmp_path / "ddp"
    overrides = [
        "experiment=baseline_harmony",
        "baseline=wadiqam_nr",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "data.image_size=64",
        "data.batch_size=4",
        "eval_untrained=false",
    ]
    run_on_two_cpu_processes(demo_root, out, overrides)
    test_ids = load_splits(demo_root, load_manifest(demo_root))["harmony"]["test"]
    assert json.loads((out / "results.json").read_text())["n"] == len(test_ids)
    assert sorted(_predictions(out / "predictions.csv")) == sorted(test_ids)
