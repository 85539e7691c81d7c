"""Training-step and scoring throughput of every registered baseline on this machine's CPU.

Prints one row per baseline: parameters, seconds per training step (forward + backward + AdamW step)
and per scoring batch, and both as ratios to the fastest model measured in the same run (this
machine is noisy; compare ratios, not seconds across runs).

    python benchmarks/baseline_speed.py --size 128 --batch 8 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from omegaconf import OmegaConf

from epaiqa.baselines import baseline_info, create_baseline, list_baselines

CONF = Path(__file__).resolve().parents[1] / "conf" / "baseline"


def demo_kwargs(name: str) -> dict:
    """The kwargs of the baseline's demo profile in conf/baseline/<name>.yaml."""
    path = CONF / f"{name}.yaml"
    return dict(OmegaConf.to_container(OmegaConf.load(path).get("kwargs") or {})) if path.is_file() else {}


def time_model(name: str, size: int, batch: int, repeats: int, kwargs: dict) -> tuple[int, float, float]:
    torch.manual_seed(0)
    model = create_baseline(name, **kwargs)
    params = sum(p.numel() for p in model.parameters())
    img, ref = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)
    ref_arg = ref if baseline_info(name).reference else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    steps = []
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        loss = model(img, ref_arg).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        steps.append(time.perf_counter() - start)
    model.eval()
    scores = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(img, ref_arg)
            scores.append(time.perf_counter() - start)
    return params, min(steps[1:]), min(scores[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--paper-size", action="store_true", help="paper architectures (not the demo kwargs of conf/baseline)"
    )
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in list_baselines():
        kwargs = {} if args.paper_size else demo_kwargs(name)
        rows.append((name, kwargs, *time_model(name, args.size, args.batch, args.repeats, kwargs)))
    fastest_step = min(r[3] for r in rows)
    fastest_score = min(r[4] for r in rows)
    print(f"CPU threads {torch.get_num_threads()}, batch {args.batch}, {args.size}x{args.size}")
    print("| baseline | kwargs | params (M) | train step (s) | × fastest | scoring (s) | × fastest |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, kwargs, params, step, score in rows:
        print(
            f"| {name} | {kwargs or ''} | {params / 1e6:.1f} | {step:.3f} | {step / fastest_step:.1f} "
            f"| {score:.3f} | {score / fastest_score:.1f} |"
        )


if __name__ == "__main__":
    main()
