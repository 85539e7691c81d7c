"""Do the frozen tower's maps locate the edit? Box probes on ImageNet Lite0 features of the source and edited image.

``python -m benchmarks.probe_grounding [--train N]`` shows stage 1's two images as the ``mini`` LMM sees them (the
whole image resized to 224 px), takes a map of the frozen ImageNet Lite0 (``head``: the 7×7 map the image tokens
carry; ``block 3``: 14×14) for each, and reads the edit's box (centre, width, height as image fractions) from the
per-cell distance between the two maps, two ways: the box around the cells whose distance is at least ``t`` × the
largest (``t`` chosen on the training samples), and a ridge regression from the distance map to the four numbers.
It prints the test IoU (600 harmony test samples, photos unseen in training) of each and of the constant mean box.
Not part of the suite: a measurement behind stage 1's results (what the tokens hold that the LLM has to read).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: where each map is read: the head (7×7) and block 3's output (14×14)
MAPS = ("head", "block 3")


def distance_maps(net: Any, root: Any, samples: list[Any]) -> dict[str, Any]:
    """Per map: (N, cells) distance between the source's and the edited image's features, each row over its max."""
    import numpy as np
    import torch
    from PIL import Image

    def prep(path: Any) -> torch.Tensor:
        image = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
        return (torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1) - 0.5) / 0.5

    def features(x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = net.bn1(net.conv_stem(x))
        out = {}
        for j, block in enumerate(net.blocks):
            h = block(h)
            if j == 3:
                out["block 3"] = h
        out["head"] = net.bn2(net.conv_head(h))
        return out

    rows: dict[str, list[Any]] = {name: [] for name in MAPS}
    with torch.no_grad():
        for k in range(0, len(samples), 32):
            chunk = samples[k : k + 32]
            source = features(torch.stack([prep(root / s.source) for s in chunk]))
            edited = features(torch.stack([prep(root / s.edited) for s in chunk]))
            for name in MAPS:
                d = (edited[name] - source[name]).norm(dim=1).flatten(1)
                rows[name].append((d / d.amax(1, keepdim=True).clamp_min(1e-6)).numpy())
    return {name: np.concatenate(r) for name, r in rows.items()}


def cells_box(distance: Any, t: float) -> tuple[float, float, float, float]:
    """The centre/size box around the cells whose distance is at least ``t`` (a square map's row, max 1)."""
    import numpy as np

    side = round(len(distance) ** 0.5)
    ys, xs = np.nonzero(distance.reshape(side, side) >= t)
    x0, x1, y0, y1 = xs.min() / side, (xs.max() + 1) / side, ys.min() / side, (ys.max() + 1) / side
    return ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)


def main() -> None:
    import numpy as np
    from sklearn.linear_model import RidgeCV

    from benchmarks.common import demo_root
    from benchmarks.probe_lite0 import frozen_lite0
    from epaiqa.data.manifest import load_manifest
    from epaiqa.data.splits import load_splits
    from epaiqa.lmm.grounding import iou

    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_grounding", description=__doc__)
    parser.add_argument("--train", type=int, default=1200, help="training samples")
    args = parser.parse_args()
    root = demo_root()
    samples = {s.id: s for s in load_manifest(root)}
    subsets = load_splits(root, list(samples.values()))["harmony"]
    train = [samples[i] for i in subsets["train"][: args.train]]
    test = [samples[i] for i in subsets["test"][:600]]
    net = frozen_lite0()
    maps = {"train": distance_maps(net, root, train), "test": distance_maps(net, root, test)}
    boxes = {"train": np.array([s.bbox for s in train]), "test": np.array([s.bbox for s in test])}

    def mean_iou(predicted: Any, part: str) -> float:
        return float(np.mean([iou(p, b) for p, b in zip(predicted, boxes[part], strict=True)]))

    mean_box = boxes["train"].mean(0)
    print(f"mean box: test IoU {mean_iou([mean_box] * len(test), 'test'):.3f}")
    for name in MAPS:
        thresholds = np.linspace(0.1, 0.9, 17)
        fits = [mean_iou([cells_box(d, t) for d in maps["train"][name]], "train") for t in thresholds]
        t = float(thresholds[int(np.argmax(fits))])
        cells = mean_iou([cells_box(d, t) for d in maps["test"][name]], "test")
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(maps["train"][name], boxes["train"])
        regressed = mean_iou(np.clip(ridge.predict(maps["test"][name]), 0.0, 1.0), "test")
        print(f"{name}: cells over t={t:.2f} test IoU {cells:.3f}; ridge test IoU {regressed:.3f}", flush=True)


if __name__ == "__main__":
    main()
