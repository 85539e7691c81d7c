#!/usr/bin/env bash
# The EPAIQA chain from one command: stage 1 → stage 2 → stage 3 → the demo judge → the HTML report, in OUT/.
#   scripts/chain.sh OUT [OVERRIDE ...]            e.g. scripts/chain.sh outputs/chain model/backbone=mini
#   UPTO=2 scripts/chain.sh OUT [OVERRIDE ...]     stages 1 → 2 only (then the report)
# Runs: OUT/s1 (stage1_grounding), OUT/s2 (stage2_mixed from s1), OUT/s3 (stage3_explain from s2); an override goes
# to every run, one written s1:KEY=VALUE (s2:, s3:) to that stage's run only, e.g. s2:trainer.max_epochs=4. The demo
# judge (`epaiqa judge --judge-model demo`) reads s3's explanations on the demo set only; on other data set JUDGE=none
# (or JUDGE=openai/o3-mini with an API key). A finished run is kept and a killed one resumes from its last.ckpt
# (scripts/stages.sh): run the same command again to go on.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: [UPTO=2|3] [JUDGE=demo|none|MODEL] $0 OUT [OVERRIDE ...]" >&2; exit 2; }
OUT=$1
shift
UPTO=${UPTO:-3}
JUDGE=${JUDGE:-demo}
case "$UPTO" in 2 | 3) ;; *) echo "error: UPTO must be 2 or 3, got '$UPTO'" >&2; exit 2 ;; esac
mkdir -p "$OUT"
# shellcheck source=scripts/stages.sh
source "$(dirname "$0")/stages.sh"

for_stage s3 "$@"  # refuses an unknown stage prefix before anything runs
for_stage s1 "$@"
run s1 experiment=stage1_grounding "${STAGE_ARGS[@]}"
for_stage s2 "$@"
run s2 experiment=stage2_mixed "$(weights s1)" "${STAGE_ARGS[@]}"
if [ "$UPTO" = 3 ]; then
  for_stage s3 "$@"
  run s3 experiment=stage3_explain "$(weights s2)" "${STAGE_ARGS[@]}"
  if [ "$JUDGE" != none ] && [ ! -f "$OUT/s3/judge.json" ]; then
    "$PYTHON" -m epaiqa.cli judge "$OUT/s3" --judge-model "$JUDGE"
  fi
fi
"$PYTHON" -m epaiqa.cli report "$OUT" --out "$OUT/report" --html
