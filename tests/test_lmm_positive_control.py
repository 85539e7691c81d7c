"""Positive control: the tiny random LMM learns a rule the image shows plainly, through the project's own stage.

Brightness → harmony level on plain grey images. If image tokens, label masks or the Q-Align readout were miswired
(images not reaching the LLM, the loss on the wrong tokens, the readout at the wrong position or on the wrong
token ids), the scores would sit at the training prior and the held-out SRCC near 0.
"""

import json
from pathlib import Path

import numpy as np
from helpers import make_cfg
from PIL import Image

from epaiqa.train import train

N_TRAIN, N_TEST = 160, 40


def brightness_root(root: Path, seed: int = 0) -> Path:
    """Grey images whose brightness sets the harmony MOS (1 + 4·b), as a dataset root with its splits."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    lines, ids = [], []
    for i in range(N_TRAIN + N_TEST):
        b = float(rng.uniform(0.05, 0.95))
        pixels = np.clip(b * 255 + rng.normal(0, 6, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "img" / f"{i:04d}.png")
        sample_id = f"s{i:04d}"
        ids.append(sample_id)
        lines.append(
            {
                "id": sample_id,
                "source": f"img/{i:04d}.png",
                "edited": f"img/{i:04d}.png",
                "prompt": "Make it brighter.",
                "bbox": [0.5, 0.5, 1.0, 1.0],
                "edit_type": "style_change",
                "mos": {"harmony": round(1 + 4 * b, 3)},
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    empty = {"train": [], "test": []}
    subsets = {"harmony": {"train": ids[:N_TRAIN], "test": ids[N_TRAIN:]}, "naturalness": empty, "overall": empty}
    splits = {"seed": seed, "test_fraction": N_TEST / (N_TRAIN + N_TEST), "group_by": "id", "subsets": subsets}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def test_tiny_lmm_learns_brightness_to_level(tmp_path: Path) -> None:
    root = brightness_root(tmp_path / "root")
    overrides = [
        "experiment=stage2_harmony",
        "model.lr=3e-3",
        "data.batch_size=8",
        "trainer.max_epochs=3",
        "eval_untrained=true",
        "data.limit_train_eval=0",
    ]
    (record,) = train(make_cfg(root, tmp_path / "run", overrides)).values()
    assert record.n == N_TEST
    assert abs(record.untrained["all"]["srcc"] or 0.0) < 0.5
    assert record.test["all"]["srcc"] >= 0.9, record.test["all"]
    assert record.test["all"]["plcc"] >= 0.8, record.test["all"]
