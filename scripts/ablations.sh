#!/usr/bin/env bash
# Tables 5–7 (§5.3): the EPAIQA chain and its ablations on one backbone, each run in OUT/<name>/, then the report.
#   scripts/ablations.sh OUT [OVERRIDE ...]               e.g. scripts/ablations.sh multirun/ablations model/backbone=mini
#   SEEDS="0 1 2" scripts/ablations.sh OUT [OVERRIDE ...]  the eight runs once per seed, in OUT/seed<N>/<name>/; the
#                                                          report shows each row as mean ± std over the seeds
# The overrides go to every run (backbone, profile, trainer caps); one written s1:KEY=VALUE (s2:, s3:) to that stage's
# runs only (s2: to all three stage-2 runs, s3: to all four stage-3 runs). Runs:
#   s1 grounding → s2 (stage2_mixed from s1) → s3 (stage3_explain from s2): the full model (w stage-1, w CoT)
#   s2_wo_stage1 / s2_reference (ablation presets, no stage 1) → s3_wo_stage1 / s3_reference from them
#   s3_wo_cot (stage 3 without CoT, from s2)
# A finished run is kept and a killed one resumes from its last.ckpt (scripts/stages.sh): run it again to go on.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: [SEEDS='0 1 2'] $0 OUT [OVERRIDE ...]" >&2; exit 2; }
ROOT=$1
shift
for seed in ${SEEDS:-}; do
  [[ "$seed" =~ ^[0-9]+$ ]] || { echo "error: SEEDS must be whole numbers, got '$seed'" >&2; exit 2; }
done
# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"

ablations() {  # the eight runs into $OUT, with the overrides given
  mkdir -p "$OUT"
  for_stage s1 "$@"
  local s1=("${STAGE_ARGS[@]}")
  for_stage s2 "$@"
  local s2=("${STAGE_ARGS[@]}")
  for_stage s3 "$@"
  local s3=("${STAGE_ARGS[@]}")
  run s1 experiment=stage1_grounding "${s1[@]}"
  run s2 experiment=stage2_mixed "$(weights s1)" "${s2[@]}"
  run s2_wo_stage1 experiment=stage2_mixed ablation=wo_stage1 "${s2[@]}"
  run s2_reference experiment=stage2_mixed ablation=reference "${s2[@]}"
  run s3 experiment=stage3_explain "$(weights s2)" "${s3[@]}"
  run s3_wo_cot experiment=stage3_explain ablation=wo_cot "$(weights s2)" "${s3[@]}"
  run s3_wo_stage1 experiment=stage3_explain ablation=wo_stage1 "$(weights s2_wo_stage1)" "${s3[@]}"
  run s3_reference experiment=stage3_explain ablation=reference "$(weights s2_reference)" "${s3[@]}"
}

if [ -z "${SEEDS:-}" ]; then
  OUT=$ROOT ablations "$@"
else
  for seed in $SEEDS; do
    echo "== seed $seed"
    OUT=$ROOT/seed$seed ablations "seed=$seed" "$@"
  done
fi
"$PYTHON" -m epaiqa.cli report "$ROOT" --out "$ROOT/report"
