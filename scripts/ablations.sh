#!/usr/bin/env bash
# Tables 5–7 (§5.3): the EPAIQA chain and its ablations on one backbone, each run in OUT/<name>/, then the report.
#   scripts/ablations.sh OUT [OVERRIDE ...]     e.g. scripts/ablations.sh multirun/ablations model/backbone=mini
# The overrides go to every run (backbone, profile, trainer caps). Runs:
#   s1 grounding → s2 (stage2_mixed from s1) → s3 (stage3_explain from s2): the full model (w stage-1, w CoT)
#   s2_wo_stage1 / s2_reference (ablation presets, no stage 1) → s3_wo_stage1 / s3_reference from them
#   s3_wo_cot (stage 3 without CoT, from s2)
# A finished run is kept and a killed one resumes from its last.ckpt (scripts/stages.sh): run it again to go on.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT [OVERRIDE ...]" >&2; exit 2; }
OUT=$1
shift
mkdir -p "$OUT"
# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"

run s1 experiment=stage1_grounding "$@"
run s2 experiment=stage2_mixed "$(weights s1)" "$@"
run s2_wo_stage1 experiment=stage2_mixed ablation=wo_stage1 "$@"
run s2_reference experiment=stage2_mixed ablation=reference "$@"
run s3 experiment=stage3_explain "$(weights s2)" "$@"
run s3_wo_cot experiment=stage3_explain ablation=wo_cot "$(weights s2)" "$@"
run s3_wo_stage1 experiment=stage3_explain ablation=wo_stage1 "$(weights s2_wo_stage1)" "$@"
run s3_reference experiment=stage3_explain ablation=reference "$(weights s2_reference)" "$@"
"$PYTHON" -m epaiqa.cli report "$OUT" --out "$OUT/report"
