"""One bf16 training step and batched Q-Align scoring of a random LLaVA-OneVision, on a GPU (or the CPU).

Builds a random backbone of a given shape (``0.5b``: llava-onevision-qwen2-0.5b-ov's layer sizes; ``tiny``: the
test backbone) offline, takes stage-2 harmony instructions of demo PAIs (the real processor path: anyres tiles,
chat template, answer-only labels) and measures, in one run:

- seconds per training step (forward + backward + AdamW step) and peak memory, with and without gradient
  checkpointing;
- seconds per batched scoring pass (one forward, logits at the answer position only), samples per second, and
  the speed-up over scoring the same samples one at a time.

Writes a JSON record (``--out``) and prints it. The GPU run of the issue:

    python benchmarks/lmm_step.py --shape 0.5b --device cuda --dtype bfloat16 --batch 4 --out $OUT/lmm_step.json

A CPU smoke run: ``python benchmarks/lmm_step.py --shape tiny --device cpu --dtype float32 --repeats 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from epaiqa.data.demo import ensure_demo_set
from epaiqa.data.manifest import load_manifest
from epaiqa.lmm.adapters import enable_gradient_checkpointing
from epaiqa.lmm.backbones import build_random_llava_onevision
from epaiqa.lmm.instructions import encode_supervised, harmony_instruction
from epaiqa.lmm.scoring import score


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_training(model: Any, batch: Any, device: torch.device, repeats: int) -> dict[str, float | None]:
    """Best seconds per training step over ``repeats`` (after one warm-up step) and peak memory."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    return {"step_s": min(times[1:]), "peak_gib": _peak_gib(device), "loss": float(loss.detach())}


def time_scoring(model: Any, processor: Any, pairs: list[Any], device: torch.device, repeats: int) -> dict[str, float]:
    """Best seconds per batched scoring pass over ``repeats`` (after one warm-up pass)."""
    model.eval()
    convs, images = [p.conversation for p in pairs], [p.images for p in pairs]
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        score(model, processor, convs, images, "Harmony level is: {}.")
        _sync(device)
        times.append(time.perf_counter() - start)
    best = min(times[1:])
    single = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for conv, imgs in zip(convs, images, strict=True):
            score(model, processor, [conv], [imgs], "Harmony level is: {}.")
        _sync(device)
        single.append(time.perf_counter() - start)
    return {
        "score_s": best,
        "samples_per_s": len(pairs) / best,
        "one_by_one_s": min(single),
        "batching_speedup": min(single) / best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="0.5b", choices=["tiny", "0.5b", "7b"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=4, help="training batch")
    parser.add_argument("--score-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-size", type=int, default=384, help="demo image side (px)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    root = ensure_demo_set(Path(tempfile.gettempdir()) / "epaiqa-bench", n=64, seed=0, size=args.demo_size)
    samples = [s for s in load_manifest(root) if s.score("harmony") is not None]
    pairs = [harmony_instruction(s, root) for s in samples[: max(args.batch, args.score_batch)]]

    start = time.perf_counter()
    model, processor = build_random_llava_onevision(args.shape, seed=0, dtype=args.dtype)
    model.to(device)
    built_s = time.perf_counter() - start
    train_pairs = pairs[: args.batch]
    batch = encode_supervised(processor, [p.conversation for p in train_pairs], [p.images for p in train_pairs])
    batch = batch.to(device)
    batch["pixel_values"] = batch["pixel_values"].to(model.dtype)

    record: dict[str, Any] = {
        "shape": args.shape,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": args.dtype,
        "train_batch": args.batch,
        "sequence_length": int(batch["input_ids"].shape[1]),
        "build_s": built_s,
        "train": time_training(model, batch, device, args.repeats),
    }
    enable_gradient_checkpointing(model)
    record["train_gradient_checkpointing"] = time_training(model, batch, device, args.repeats)
    record["score_batch"] = args.score_batch
    record["scoring"] = time_scoring(model, processor, pairs[: args.score_batch], device, args.repeats)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
