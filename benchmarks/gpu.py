"""The GPU benchmark: bf16 training step and one-pass Q-Align scoring of LLaVA-OneVision-shaped backbones.

One command (``benchmarks/gpu.sh``, under 8 minutes on one H100/H200) measures, for the ``mini`` backbone
(EfficientNet-Lite0 → SmolLM2-135M), a random backbone of llava-onevision-qwen2-0.5b-ov's shape and one of
llava-onevision-qwen2-7b-ov's shape (epaiqa/lmm/backbones.py, ``RANDOM_SHAPES``), on stage-2 harmony questions of
demo PAIs (the real processor path: anyres tiles, chat template, answer-only loss):

- one-pass Q-Align scoring (:func:`epaiqa.lmm.scoring.score`: one forward, the level tokens' logits at the answer
  position) at batch 1, 8, 32 and 64: images/s of the model pass alone (inputs encoded beforehand) and of the
  whole call (image preprocessing and tokenisation on the CPU included), its MFU, and the speed-up over the
  per-image rate of pyiqa's ``qalign`` (0.231 s/image published on a V100; ``--pyiqa-qalign-s``);
- a bf16 training step (forward with the project's answer-only loss, backward, AdamW) with every parameter
  trained: seconds, tokens/s, peak memory, MFU. Weights are bf16 (no fp32 master copy: a 7B model's AdamW
  state then fits one 141 GB GPU); on out-of-memory the step is retried with gradient checkpointing, then with
  half the batch.

FLOPs are counted from the architecture on the measured batch (forward hooks during the untimed warm-up pass):

    forward  = Σ_linear/conv 2 · weights · positions   (each layer over the positions it runs on: the vision
               tower over its tiles' patches, the projector over image tokens, the LLM over the padded
               sequence, the LM head over the positions whose logits are kept)
             + Σ_attention 4 · B · S_q · S_kv · d_attn  (QKᵀ and AV, d_attn = heads · head_dim, full S², no causal
               discount: PaLM's convention)
    training = 3 · forward                               (= 6·N·T + 12·L·d_attn·S·T for a plain transformer;
                                                          gradient-checkpointing recomputation not counted)
    MFU      = FLOPs / seconds / peak                    (peak: dense bf16 tensor FLOP/s of the device, PEAK_TFLOPS)

Writes one JSON record (``--out``). ``--smoke`` runs the same code on the CPU in seconds (tiny backbone, batch 1–2,
one repetition) for the test suite.

    python benchmarks/gpu.py --out gpu.json            # the GPU run (or: bash benchmarks/gpu.sh OUT_DIR)
    python benchmarks/gpu.py --smoke --out smoke.json  # CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

#: dense bf16 tensor-core peak in TFLOP/s by device-name part (first match wins; V100 has no bf16: its fp16 peak)
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("V100", 125.0),
)
#: pyiqa's ``qalign``: seconds per image on a V100 (batch 1, ~1080×800, loading included), as the issue cites
PYIQA_QALIGN_S = 0.231
FLOPS_FORMULA = (
    "forward = sum over linear/conv layers of 2*weights*positions + sum over attention layers of "
    "4*B*S_q*S_kv*d_attn (full S^2, PaLM convention); training = 3*forward (= 6*N*T + 12*L*d_attn*S*T for a plain "
    "transformer; checkpointing recomputation not counted); MFU = FLOPs / seconds / peak dense bf16 FLOP/s"
)
SHAPES = ("mini", "0.5b", "7b")
TRAIN_BATCH = {"tiny": 2, "mini": 32, "0.5b": 16, "7b": 8}
SCORE_BATCHES = (1, 8, 32, 64)


def peak_tflops(device_name: str) -> float | None:
    """The device's dense bf16 peak (TFLOP/s) from :data:`PEAK_TFLOPS`, or None when it is not listed."""
    for part, value in PEAK_TFLOPS:
        if part.lower() in device_name.lower():
            return value
    return None


class FlopCounter:
    """Forward FLOPs of a model's matmul layers and attention, by forward hooks (see the module doc)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.flops = 0
        self.active = False
        self.handles = []
        for module in model.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                self.handles.append(module.register_forward_hook(self._matmul))
            elif type(module).__name__.endswith("Attention") and isinstance(
                getattr(module, "q_proj", None), torch.nn.Linear
            ):
                self.handles.append(module.register_forward_hook(self._attention, with_kwargs=True))

    def _matmul(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        if self.active:
            out_features = output.shape[1] if isinstance(module, torch.nn.Conv2d) else output.shape[-1]
            self.flops += 2 * module.weight.numel() * (output.numel() // out_features)

    def _attention(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self.active:
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            if hidden is not None and hidden.dim() == 3:
                batch, length, _ = hidden.shape
                self.flops += 4 * batch * length * length * module.q_proj.out_features

    def count(self, fn: Callable[[], Any]) -> tuple[Any, int]:
        """``fn()`` with counting on: its result and the FLOPs counted."""
        self.flops, self.active = 0, True
        try:
            return fn(), self.flops
        finally:
            self.active = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset, or the process's peak RSS on the CPU (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "n": len(values)}


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build(shape: str, device: torch.device, dtype: torch.dtype, cache_dir: Path) -> tuple[Any, Any, float]:
    """Model (on ``device``, ``dtype``) and processor of a shape; seconds it took."""
    from epaiqa.lmm.backbones import build_backbone, build_random_llava_onevision

    start = time.perf_counter()
    if shape == "mini":
        model, processor = build_backbone({"id": "mini", "name": "mini", "cache_dir": str(cache_dir)})
        model = model.to(device=device, dtype=dtype)
    else:
        try:  # weights initialised on the device itself: a 7B model's fp32 init on the CPU takes minutes
            with torch.device(device):
                model, processor = build_random_llava_onevision(shape, seed=0, dtype=dtype)
        except (RuntimeError, NotImplementedError, TypeError):
            model, processor = build_random_llava_onevision(shape, seed=0, dtype=dtype)
        model = model.to(device)
    model.eval()
    _sync(device)
    return model, processor, time.perf_counter() - start


def _inputs(processor: Any, convs: list[Any], images: list[Any], template: str, device: torch.device, dtype: Any):
    """What :func:`epaiqa.lmm.scoring.score` feeds the model: encoded inputs, answer positions, level ids."""
    from epaiqa.lmm.instructions import prompt_only
    from epaiqa.lmm.scoring import answer_position, level_readout

    prompts = [processor.apply_chat_template(prompt_only(c), add_generation_prompt=True, tokenize=False) for c in convs]
    readout = level_readout(processor, template, context=prompts[0])
    inputs = processor(
        text=[p + readout.prefix for p in prompts], images=[list(i) for i in images], padding=True, return_tensors="pt"
    )
    inputs = inputs.to(device, dtype=dtype)
    keep, column = torch.unique(answer_position(inputs["attention_mask"]), return_inverse=True)
    return inputs, keep, column, readout.ids


def bench_scoring(
    model: Any,
    processor: Any,
    convs: list[Any],
    images: list[Any],
    batches: Sequence[int],
    repeats: int,
    device: torch.device,
    peak: float | None,
    pyiqa_s: float,
    time_left: Callable[[], float],
) -> list[dict[str, Any]]:
    """One-pass scoring at each batch size: model pass alone and the whole ``score`` call."""
    from epaiqa.lmm.instructions import ANSWER_TEMPLATES
    from epaiqa.lmm.scoring import score, score_from_logits

    template = ANSWER_TEMPLATES["harmony"]
    rows = []
    counter = FlopCounter(model)
    try:
        for batch in batches:
            if time_left() < 20:
                rows.append({"batch": batch, "skipped": "time budget"})
                continue
            c, i = convs[:batch], images[:batch]
            try:
                _reset_peak(device)
                inputs, keep, column, ids = _inputs(processor, c, i, template, device, model.dtype)
                rows_idx = torch.arange(batch, device=device)

                def forward(
                    inputs: Any = inputs, keep: Any = keep, column: Any = column, ids: Any = ids, rows: Any = rows_idx
                ) -> Any:
                    with torch.inference_mode():
                        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
                        return score_from_logits(logits[rows, column], ids)

                values, flops = counter.count(forward)  # the warm-up pass, counted
                _sync(device)
                passes = [_timed(forward, device) for _ in range(repeats)]
                called: dict[str, torch.Tensor] = {}

                def call(c: list[Any] = c, i: list[Any] = i, called: dict[str, torch.Tensor] = called) -> None:
                    called["scores"] = score(model, processor, c, i, template)

                whole = [_timed(call, device)]  # once: the CPU side (preprocessing, tokenising) varies little
                best = min(passes)
                row: dict[str, Any] = {
                    "batch": batch,
                    "sequence_length": int(inputs["input_ids"].shape[1]),
                    "pixel_values_shape": list(inputs["pixel_values"].shape),
                    "forward_s": _stats(passes),
                    "score_call_s": _stats(whole),
                    "images_per_s": batch / best,
                    "images_per_s_score_call": batch / min(whole),
                    "flops_per_pass": flops,
                    "achieved_tflops": flops / best / 1e12,
                    "mfu": None if peak is None else flops / best / (peak * 1e12),
                    "speedup_vs_pyiqa_qalign": batch / best * pyiqa_s,
                    "speedup_vs_pyiqa_qalign_score_call": batch / min(whole) * pyiqa_s,
                    "peak_gib": _peak_gib(device),
                    "max_difference_to_score": float((values.float().cpu() - called["scores"]).abs().max()),
                }
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                row = {"batch": batch, "skipped": f"out of memory: {str(exc).splitlines()[0][:200]}"}
            rows.append(row)
            _free(device)
    finally:
        counter.remove()
    return rows


def _train_once(
    model: Any, processor: Any, convs: list[Any], images: list[Any], repeats: int, device: torch.device
) -> dict[str, Any]:
    from epaiqa.lmm.instructions import encode_supervised
    from epaiqa.lmm.loss import answer_loss

    batch = encode_supervised(processor, convs, images).to(device)
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    model.train()
    counter = FlopCounter(model)
    _reset_peak(device)
    state: dict[str, Any] = {}

    def step(count: bool = False) -> None:
        if count:
            loss, state["flops"] = counter.count(lambda: answer_loss(model, batch))
        else:
            loss = answer_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["loss"] = float(loss.detach())

    try:
        step(count=True)  # warm-up, FLOPs counted in its forward
        _sync(device)
        times = [_timed(step, device) for _ in range(repeats)]
    finally:
        counter.remove()
        model.eval()
    tokens = int(batch["attention_mask"].sum())
    return {
        "sequence_length": int(batch["input_ids"].shape[1]),
        "tokens": tokens,
        "step_s": _stats(times),
        "tokens_per_s": tokens / min(times),
        "samples_per_s": len(convs) / min(times),
        "flops_per_step": 3 * state["flops"],
        "peak_gib": _peak_gib(device),
        "loss": state["loss"],
    }


def bench_training(
    model: Any,
    processor: Any,
    convs: list[Any],
    images: list[Any],
    batch: int,
    repeats: int,
    device: torch.device,
    peak: float | None,
) -> dict[str, Any]:
    """A full-parameter training step; on out-of-memory retried with checkpointing, then with half the batch."""
    from epaiqa.lmm.adapters import enable_gradient_checkpointing

    for param in model.parameters():
        param.requires_grad = True
    checkpointing, tries = False, []
    while batch >= 1:
        try:
            out = _train_once(model, processor, convs[:batch], images[:batch], repeats, device)
            best = out["step_s"]["min"]
            out.update(
                batch=batch,
                gradient_checkpointing=checkpointing,
                achieved_tflops=out["flops_per_step"] / best / 1e12,
                mfu=None if peak is None else out["flops_per_step"] / best / (peak * 1e12),
                out_of_memory_tries=tries,
            )
            return out
        except Exception as exc:
            if not _is_oom(exc):
                raise
            tries.append({"batch": batch, "gradient_checkpointing": checkpointing})
        model.zero_grad(set_to_none=True)
        _free(device)  # after the except clause: its traceback no longer holds the failed step's tensors
        if not checkpointing:
            enable_gradient_checkpointing(model)
            checkpointing = True
        else:
            batch //= 2
    return {"skipped": "out of memory at batch 1 with gradient checkpointing", "out_of_memory_tries": tries}


def questions(root: Path, count: int) -> tuple[list[Any], list[Any]]:
    """Stage-2 harmony questions (whole edited image, the paper's input) of the first ``count`` rated samples."""
    from epaiqa.data.manifest import load_manifest
    from epaiqa.lmm.instructions import harmony_instruction

    samples = [s for s in load_manifest(root, check_images=False) if s.score("harmony") is not None]
    samples = (samples * math.ceil(count / len(samples)))[:count]
    built = [harmony_instruction(s, root) for s in samples]
    return [b.conversation for b in built], [b.images for b in built]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU smoke run: tiny backbone, batch 1-2, 1 repetition")
    parser.add_argument("--shapes", default=None, help=f"comma-separated, of tiny,{','.join(SHAPES)}")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (3; smoke 1)")
    parser.add_argument("--score-batches", default=None, help="comma-separated (1,8,32,64; smoke 1,2)")
    parser.add_argument("--train-batch", type=int, default=None, help="training batch (default per shape)")
    parser.add_argument("--root", type=Path, default=None, help="a dataset root (default: a demo set generated)")
    parser.add_argument("--demo-size", type=int, default=384, help="demo image side (px) when --root is not given")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where mini is composed once (EPAIQA_CACHE)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak (PEAK_TFLOPS)")
    parser.add_argument("--pyiqa-qalign-s", type=float, default=PYIQA_QALIGN_S, help="pyiqa qalign s/image")
    parser.add_argument("--budget-s", type=float, default=390.0, help="start nothing new after this many seconds")
    parser.add_argument("--no-train", action="store_true", help="scoring only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    smoke = args.smoke
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not smoke else "cpu"))
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[args.dtype]
    shapes = (args.shapes or ("tiny" if smoke else ",".join(SHAPES))).split(",")
    repeats = args.repeats or (1 if smoke else 3)
    batches = [int(b) for b in (args.score_batches or ("1,2" if smoke else "1,8,32,64")).split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {platform.processor() or 'cpu'}"
    peak = args.peak_tflops if args.peak_tflops is not None else peak_tflops(name) if device.type == "cuda" else None
    cache_dir = args.cache_dir or Path(os.environ.get("EPAIQA_CACHE") or Path(tempfile.gettempdir()) / "epaiqa-gpu")

    def time_left() -> float:
        return args.budget_s - (time.perf_counter() - started)

    if args.root is not None:
        root = args.root
    else:
        from epaiqa.data.demo import ensure_demo_set

        n = 24 if smoke else 80
        root = ensure_demo_set(Path(tempfile.gettempdir()) / "epaiqa-bench-gpu", n=n, seed=0, size=args.demo_size)
    need = max(*batches, *(args.train_batch or TRAIN_BATCH.get(s, 4) for s in shapes))
    convs, images = questions(root, need)

    record: dict[str, Any] = {
        "device": name,
        "device_type": device.type,
        "peak_tflops": peak,
        "dtype": args.dtype,
        "smoke": smoke,
        "repeats": repeats,
        "dataset_root": str(root),
        "image_size": images[0][0].size,
        "flops_formula": FLOPS_FORMULA,
        "pyiqa_qalign_s_per_image": args.pyiqa_qalign_s,
        "pyiqa_qalign_reference": "pyiqa README efficiency table: qalign, V100, batch 1, ~1080x800 incl. loading",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "shapes": {},
    }
    for shape in shapes:
        entry: dict[str, Any] = {}
        record["shapes"][shape] = entry
        if time_left() < 30:
            entry["skipped"] = "time budget"
            continue
        model, processor, built_s = build(shape, device, dtype, cache_dir)
        entry.update(parameters=sum(p.numel() for p in model.parameters()), build_s=built_s)
        entry["scoring"] = bench_scoring(
            model, processor, convs, images, batches, repeats, device, peak, args.pyiqa_qalign_s, time_left
        )
        if args.no_train:
            pass
        elif time_left() < 30:
            entry["train"] = {"skipped": "time budget"}
        else:
            batch = args.train_batch or TRAIN_BATCH.get(shape, 4)
            entry["train"] = bench_training(model, processor, convs, images, batch, repeats, device, peak)
        del model, processor
        _free(device)
        print(f"{shape}: done at {time.perf_counter() - started:.0f} s", file=sys.stderr)

    record["goals"] = goals(record)
    record["wall_s"] = time.perf_counter() - started
    text = json.dumps(record, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return record


def goals(record: dict[str, Any]) -> dict[str, Any]:
    """The issue's GPU goals per shape: scoring MFU ≥ 50% at batch ≥ 32, and ≥ 20× pyiqa qalign's per-image rate."""
    out = {}
    for shape, entry in record["shapes"].items():
        rows = [r for r in entry.get("scoring", []) if "skipped" not in r]
        large = [r for r in rows if r["batch"] >= 32]
        best_mfu = max((r["mfu"] for r in large if r["mfu"] is not None), default=None)
        best_speedup = max((r["speedup_vs_pyiqa_qalign"] for r in rows), default=None)
        out[shape] = {
            "scoring_mfu_at_batch_ge_32": best_mfu,
            "mfu_goal_met": None if best_mfu is None else best_mfu >= 0.5,
            "speedup_vs_pyiqa_qalign": best_speedup,
            "speedup_goal_met": None if best_speedup is None else best_speedup >= 20,
        }
    return out


if __name__ == "__main__":
    main()
