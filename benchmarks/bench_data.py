"""(b) The data pipeline vs a raw PIL decode of the same pixels, per view (epaiqa/data/datasets.py).

Pipeline: ``PAIDataset(...)[i]`` — :func:`~epaiqa.data.images.load_rgb` (header checks, pixel limit, frame
count, EXIF orientation, colour conversion), the view's box (:mod:`epaiqa.data.crops`), crop, bicubic resize,
``uint8 → float``, and the item dict (MOS tensor, id, edit type). Raw: ``Image.open(path).convert("RGB")``, the same
box, crop, resize and tensor — the least work that gives the same tensor (checked equal before timing). A third
side, the decode alone (``Image.open(path).convert("RGB")``), shows how much of the time is decoding.

The figure is the pipeline's throughput as a fraction of the raw one's (raw time / pipeline time). Views:
whole (harmony's default input), region (naturalness's), context (the demo run's harmony input), native (a
window at native scale), each at the demo profile's 128 px on the 192-px demo images (two more sides attribute
the difference: the plain decode and :func:`~epaiqa.data.images.load_rgb` alone); and the default training
configuration end to end: the demo run's loader (context view, ``train=True``: random flips, batch 32, the
:class:`~epaiqa.data.base.EpochSampler`, default collation, ``num_workers=0``) vs a raw loop that decodes, cuts,
flips and stacks the same samples — without the view cache, and with it (the default: ``data.view_cache_mb``),
once as the pass that fills it (a sweep's first job) and once reading it (every later epoch and job).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from benchmarks.common import Result, alternate, demo_root, demo_samples, median_ratio, ratio_result

NAME = "data"
GOAL = "≥ 0.95"
VIEW_TASK = {"whole": "harmony", "region": "naturalness", "context": "harmony", "native": "naturalness"}


def _raw_box(view: str, sample: Any, width: int, height: int, size: int, margin: float) -> tuple[int, int, int, int]:
    from epaiqa.data.crops import bbox_to_pixels, window_in_region

    if view == "whole":
        return (0, 0, width, height)
    if view == "region":
        return bbox_to_pixels(sample.bbox, width, height)
    if view == "context":
        return bbox_to_pixels(sample.bbox, width, height, margin=margin)
    return window_in_region(sample.bbox, width, height, size, (0.5, 0.5))


def raw_item(root: Path, sample: Any, view: str, size: int, margin: float = 0.3) -> torch.Tensor:
    """The view's tensor by plain PIL: decode, crop, bicubic resize, ``uint8 → float``."""
    image = Image.open(root / sample.edited).convert("RGB")
    crop = image.crop(_raw_box(view, sample, image.width, image.height, size, margin))
    if crop.size != (size, size):
        crop = crop.resize((size, size), Image.Resampling.BICUBIC)
    return pil_to_tensor(crop).float().div_(255.0)


def run(
    quick: bool = False,
    repeats: int | None = None,
    root: Path | None = None,
    count: int | None = None,
    **_: Any,
) -> list[Result]:
    from epaiqa.data.datasets import PAIDataset
    from epaiqa.data.images import load_rgb
    from epaiqa.data.view_cache import ViewCache

    root = root or demo_root()
    size, count = 128, count or (192 if quick else 384)
    repeats = repeats or (9 if quick else 15)
    results = []
    for view, task in VIEW_TASK.items():
        samples = demo_samples(root, count, task)
        dataset = PAIDataset(root, samples, task, view, size)
        first = dataset[0]["img"]
        if not torch.equal(first, raw_item(root, samples[0], view, size)):
            raise AssertionError(f"{view}: the raw side does not give the pipeline's pixels")

        def pipeline(dataset: PAIDataset = dataset) -> None:
            for i in range(len(dataset)):
                dataset[i]

        def raw(samples: list[Any] = samples, view: str = view) -> None:
            for s in samples:
                raw_item(root, s, view, size)

        def decode(samples: list[Any] = samples) -> None:
            for s in samples:
                Image.open(root / s.edited).convert("RGB")

        def checked_decode(samples: list[Any] = samples) -> None:
            for s in samples:
                load_rgb(root / s.edited)

        sides = {"pipeline": pipeline, "raw": raw, "decode": decode, "load_rgb": checked_decode}
        times = alternate(sides, repeats=repeats, warmup=1)
        results.append(
            ratio_result(
                NAME,
                f"{view} view ({task}): pipeline throughput / raw decode+crop throughput",
                times,
                "pipeline",
                "raw",
                per=f"{len(samples)} images, {size}²",
                goal=GOAL,
                check=lambda r: r >= 0.95,
                invert=True,
                decode_share_of_raw=median_ratio(times, "decode", "raw"),
                load_rgb_over_plain_decode=median_ratio(times, "load_rgb", "decode"),
            )
        )

    # the default training configuration: the demo run's loader (conf/experiment/demo.yaml: context view, 128 px,
    # batch 32, num_workers 0, train=True) vs a raw loop doing the same work
    samples = demo_samples(root, max(64, count), "harmony")  # whole batches of 32
    batch = 32
    with tempfile.TemporaryDirectory() as tmp:
        plain = PAIDataset(root, samples, "harmony", "context", size, train=True)
        ids = [s.id for s in samples]

        def cached_dataset() -> PAIDataset:
            folder = Path(tmp) / str(time.monotonic_ns())  # a fresh, empty cache each time
            cache = ViewCache.open(folder, {"view": "context"}, ids, size, max_mb=1024)
            return PAIDataset(root, samples, "harmony", "context", size, train=True, view_cache={"img": cache})

        warm = cached_dataset()
        loop(warm, batch)  # fills it

        def raw_loop() -> None:
            order = torch.randperm(len(samples)).tolist()
            for start in range(0, len(order) - batch + 1, batch):
                imgs = []
                for i in order[start : start + batch]:
                    img = raw_item(root, samples[i], "context", size)
                    imgs.append(img.flip(-1) if torch.rand(()) < 0.5 else img)
                torch.stack(imgs)
                torch.tensor([samples[i].score("harmony") for i in order[start : start + batch]])

        sides = {
            "loader": lambda: loop(plain, batch),
            "filling": lambda: loop(cached_dataset(), batch),
            "cached": lambda: loop(warm, batch),
            "raw": raw_loop,
        }
        times = alternate(sides, repeats=repeats, warmup=1)
    for side, label in (
        ("loader", "no view cache"),
        ("filling", "view cache, first pass (fills it)"),
        ("cached", "view cache, later passes (the default from the second epoch or job)"),
    ):
        results.append(
            ratio_result(
                NAME,
                f"training loader (context, train, batch 32), {label}: loader throughput / raw loop throughput",
                times,
                side,
                "raw",
                per=f"{len(samples)} images in batches of {batch}, {size}²",
                goal=GOAL,
                check=lambda r: r >= 0.95,
                invert=True,
            )
        )
    return results


def loop(dataset: Any, batch: int) -> None:
    """One epoch of the training loader over ``dataset`` (EpochSampler, default collation, no workers)."""
    from torch.utils.data import DataLoader

    from epaiqa.data.base import EpochSampler

    for _ in DataLoader(dataset, batch_size=batch, sampler=EpochSampler(len(dataset), 0), drop_last=True):
        pass
