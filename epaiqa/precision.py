"""``trainer.precision=auto``: bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere.

On CPUs with AMX-BF16 or AVX512-BF16, oneDNN runs ``torch.autocast("cpu", dtype=torch.bfloat16)`` matmuls in
bf16: the ``mini`` LMM's training steps ran 2.5–2.8× faster than in fp32 (BENCHMARKS.md). Weights stay fp32
(AdamW's master copy); only the compute is bf16. Where the CPU lacks both instructions bf16 is emulated and slower
than fp32, so ``auto`` takes ``32-true`` and says so in one line. On a CUDA GPU ``auto`` is ``bf16-mixed`` where
the GPU supports bf16, else ``32-true``. An explicit precision (``32-true``, ``bf16-mixed``, …) is kept as given.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"
#: CPU flags (``/proc/cpuinfo``) under which oneDNN computes bf16 natively
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")

log = logging.getLogger(__name__)


def cpu_bf16_flag(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The first of :data:`CPU_BF16_FLAGS` this CPU has, or None (also where ``cpuinfo`` cannot be read)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = {word for line in text.splitlines() if line.startswith("flags") for word in line.split()}
    return next((flag for flag in CPU_BF16_FLAGS if flag in flags), None)


def uses_cuda(accelerator: str | None) -> bool:
    """Whether a Trainer with this ``accelerator`` would run on a CUDA GPU."""
    name = str(accelerator or AUTO).lower()
    return name in ("gpu", "cuda") or (name == AUTO and torch.cuda.is_available())


def choose_precision(requested: str | int | None, accelerator: str | None = AUTO) -> str | int | None:
    """The Trainer precision for ``requested``: ``auto`` is decided here (and logged), anything else passes."""
    if str(requested) != AUTO:
        return requested
    if uses_cuda(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            log.info("trainer.precision=auto: bf16-mixed (the GPU supports bf16)")
            return BF16
        log.warning("trainer.precision=auto: 32-true (this GPU has no bf16 support)")
        return FP32
    flag = cpu_bf16_flag()
    if flag is not None:
        log.info("trainer.precision=auto: bf16-mixed (bf16 autocast on the CPU, which has %s)", flag)
        return BF16
    log.warning(
        "trainer.precision=auto: 32-true, because this CPU has neither %s (bf16 would be emulated, slower than "
        "fp32); set trainer.precision=bf16-mixed to force it",
        " nor ".join(CPU_BF16_FLAGS),
    )
    return FP32
