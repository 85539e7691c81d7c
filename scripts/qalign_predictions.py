"""Q-Align (OneAlign) predictions for `epaiqa evaluate`, made in an environment of their own.

Q-Align's released mPLUG-Owl2 checkpoint (pyiqa's ``qalign`` metric, ``q-future/one-align``) needs
transformers < 4.38, which this project's stack cannot load, so it runs in a separate virtual environment that
does not install epaiqa; this script needs only the standard library, Pillow, torch and pyiqa::

    python -m venv /tmp/qalign && /tmp/qalign/bin/pip install pyiqa "transformers<4.38" torch torchvision
    /tmp/qalign/bin/python scripts/qalign_predictions.py ROOT --task harmony --out qalign_harmony.csv
    epaiqa evaluate --root ROOT --task harmony --predictions qalign_harmony.csv --name q-align-OneAlign

It scores the split's samples the way the paper feeds the baselines: the whole edited image for harmony and
overall, the edited region's crop (bbox ⟨x, y, w, h⟩ as fractions of the image) for naturalness, and writes
``id,score`` (scores 1..5). ``--metric`` picks another pyiqa metric (``qalign_8bit`` for less GPU memory).
The first run downloads the weights (about 16 GB) unless the Hugging Face cache already holds them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

VIEWS = {"harmony": "whole", "overall": "whole", "naturalness": "region"}


def split_samples(root: Path, task: str, split: str) -> list[dict]:
    """The manifest entries of ``task``'s ``split`` in ``ROOT/splits.json``, in the split's order."""
    entries = {}
    for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            entries[entry["id"]] = entry
    ids = json.loads((root / "splits.json").read_text(encoding="utf-8"))["subsets"][task][split]
    return [entries[i] for i in ids]


def view(root: Path, entry: dict, task: str) -> Image.Image:
    """The image a task is scored on: the whole edited image, or the edited region's crop."""
    image = Image.open(root / entry["edited"]).convert("RGB")
    if VIEWS[task] == "whole":
        return image
    x, y, w, h = (float(v) for v in entry["bbox"])
    left, top = max(0, round((x - w / 2) * image.width)), max(0, round((y - h / 2) * image.height))
    right, bottom = (
        min(image.width, round((x + w / 2) * image.width)),
        min(image.height, round((y + h / 2) * image.height)),
    )
    return image.crop((left, top, max(right, left + 1), max(bottom, top + 1)))


def predictions(
    root: Path, task: str, split: str, score: Callable[[Image.Image], float]
) -> Iterator[tuple[str, float]]:
    """(id, score) for every sample of the split."""
    for entry in split_samples(root, task, split):
        yield entry["id"], float(score(view(root, entry, task)))


def pyiqa_scorer(metric: str, device: str) -> Callable[[Image.Image], float]:
    """A pyiqa metric as a function of a PIL image."""
    import pyiqa
    import torch
    from torchvision.transforms.functional import to_tensor

    model = pyiqa.create_metric(metric, device=device)

    def score(image: Image.Image) -> float:
        with torch.no_grad():
            return float(model(to_tensor(image).unsqueeze(0).to(device)).item())

    return score


def main(argv: list[str] | None = None) -> int:
    """Write the predictions CSV."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--task", required=True, choices=sorted(VIEWS))
    p.add_argument("--split", default="test")
    p.add_argument("--metric", default="qalign")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    score = pyiqa_scorer(args.metric, args.device)
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "score"])
        for sample_id, value in predictions(args.root, args.task, args.split, score):
            writer.writerow([sample_id, f"{value:.6f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
