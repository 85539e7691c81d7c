"""Can the demo's prompt-completion verdict be read from the images at all? Probes on the views stage 3 shows.

``python -m benchmarks.probe_completion`` takes the overall subset's training ids, split by source image into
train and validation as stage 3 splits them (``data.val_fraction`` 0.1, seed 0; the test split is not read), and
shows each sample's source and edited image as stage 3 does on the demo profile (the region's box with 30% context).
It fits classifiers of the completion level (1–3) on the training part and prints their validation accuracy
beside the majority rate, from:

- the frozen ImageNet Lite0 (the ``mini`` tower before training): the head map's channel means of the edited view
  (what ``map_grid=1``'s one token holds), of both views, their difference, and the channel statistics of every
  block of both views (what the statistics tokens hold) — logistic regression, its C chosen by cross-validation on
  the training part;
- the pixels: the mean, median and share of large absolute differences between the source's and the edited
  image's region, and the change of its mean colour and contrast — logistic regression and gradient boosting.

Beside them, the ROC AUC with which the region's mean pixel change separates "fully" (3) from the rest, overall
and per edit type. The demo generator (:mod:`epaiqa.data.demo.generate`) blends the edit in at strength 1.0 /
0.35 / 0.0 for completion 3 / 2 / 1 and then degrades and pastes every region alike, so an unedited region still
differs from its source. Not part of the suite: the measurement behind stage 3's completion verdict (issue 22).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: stage 3's context margin on the demo profile (``data.margin``) and its validation split (``data.val_fraction``)
MARGIN, VAL_FRACTION = 0.3, 0.1


def region_change(root: Any, sample: Any) -> list[float]:
    """The edit inside the region: mean, median, share > 24 of |edited − source|; mean colour and contrast change."""
    import numpy as np
    from PIL import Image

    from epaiqa.data.crops import DIFFERENCE_THRESHOLD, crop_region

    source, edited = (
        np.asarray(crop_region(Image.open(root / path).convert("RGB"), sample.bbox), np.float32)
        for path in (sample.source, sample.edited)
    )
    d = np.abs(edited - source)
    colour = np.abs(edited.mean((0, 1)) - source.mean((0, 1))).mean()
    return [
        float(d.mean()),
        float(np.median(d)),
        float((d.mean(2) > DIFFERENCE_THRESHOLD).mean()),
        float(colour),
        float(edited.std() - source.std()),
    ]


def view_features(net: Any, root: Any, samples: list[Any], image: str) -> list[Any]:
    """:func:`benchmarks.probe_lite0.block_statistics` of one image of each sample (``source`` or ``edited``)."""
    import numpy as np
    from PIL import Image

    from benchmarks.probe_lite0 import block_statistics
    from epaiqa.data.crops import crop_region

    chunks: list[list[Any]] = [[] for _ in range(8)]
    for k in range(0, len(samples), 32):
        views = [
            crop_region(Image.open(root / getattr(s, image)).convert("RGB"), s.bbox, MARGIN)
            for s in samples[k : k + 32]
        ]
        for j, f in enumerate(block_statistics(net, views)):
            chunks[j].append(f)
    return [np.concatenate(c) for c in chunks]


def accuracy(model: Any, x: Any, y: Any, n_train: int, standardise: bool = True) -> float:
    """Validation accuracy of ``model`` fitted on the first ``n_train`` rows (standardised on them)."""
    if standardise:
        mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
        x = (x - mu) / sd
    model.fit(x[:n_train], y[:n_train])
    return float((model.predict(x[n_train:]) == y[n_train:]).mean())


def main() -> None:
    import warnings

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score

    from benchmarks.common import demo_root
    from benchmarks.probe_lite0 import frozen_lite0
    from epaiqa.data.base import carve_val
    from epaiqa.data.manifest import load_manifest
    from epaiqa.data.splits import load_splits
    from epaiqa.lmm.instructions import completion_level

    argparse.ArgumentParser(prog="python -m benchmarks.probe_completion", description=__doc__).parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    root = demo_root()
    by_id = {s.id: s for s in load_manifest(root)}
    train, val = carve_val(load_splits(root, list(by_id.values()))["overall"]["train"], by_id, VAL_FRACTION, 0)
    samples = [by_id[i] for i in train + val]
    n_train = len(train)
    y = np.array([completion_level(s) for s in samples])
    counts = np.bincount(y[n_train:], minlength=4)[1:]
    print(f"overall subset: train {n_train}, validation {len(val)} (completion 1/2/3: {counts.tolist()})")
    print(f"majority rate (always 'fully', 3) on validation: {(y[n_train:] == 3).mean():.3f}")

    pixels = np.array([region_change(root, s) for s in samples])
    print(f"ROC AUC of the region's mean pixel change, 3 vs 1-2: {roc_auc_score(y == 3, pixels[:, 0]):.3f}", end="")
    types = np.array([s.edit_type for s in samples])
    per_type = [f"{t} {roc_auc_score(y[types == t] == 3, pixels[types == t, 0]):.3f}" for t in sorted(set(types))]
    print(" (" + ", ".join(per_type) + ")")

    net = frozen_lite0()
    source, edited = view_features(net, root, samples, "source"), view_features(net, root, samples, "edited")
    head = 7  # the head map's (mean, std) per channel; its means are the first 1280 columns
    width = source[head].shape[1] // 2
    features = {
        "head means, edited view (map_grid=1's token)": edited[head][:, :width],
        "head means, both views": np.concatenate([source[head][:, :width], edited[head][:, :width]], 1),
        "head means, edited − source": edited[head][:, :width] - source[head][:, :width],
        "every block's statistics, both views": np.concatenate(source + edited, 1),
        "region pixel change": pixels,
    }
    for name, x in features.items():
        model = LogisticRegressionCV(Cs=np.logspace(-4, 1, 6).tolist(), max_iter=3000)
        print(f"logistic regression, {name}: {accuracy(model, x, y, n_train):.3f}", flush=True)
    boosted = HistGradientBoostingClassifier(random_state=0)
    print(f"gradient boosting, region pixel change: {accuracy(boosted, pixels, y, n_train, standardise=False):.3f}")


if __name__ == "__main__":
    main()
