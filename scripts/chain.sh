#!/usr/bin/env bash
# The EPAIQA chain from one command: stage 1 → stage 2 → stage 3 → the demo judge → the HTML report, in OUT/.
#   scripts/chain.sh OUT [OVERRIDE ...]            e.g. scripts/chain.sh outputs/chain model/backbone=mini
#   UPTO=2 scripts/chain.sh OUT [OVERRIDE ...]     stages 1 → 2 only (then the report)
# Runs: OUT/s1 (stage1_grounding), OUT/s2 (stage2_mixed from s1), OUT/s3 (stage3_explain from s2); the overrides go
# to every run. The demo judge (`epaiqa judge --judge-model demo`) reads s3's explanations on the demo set only; on
# other data set JUDGE=none (or JUDGE=openai/o3-mini with an API key). A finished run is kept and a killed one
# resumes from its last.ckpt (scripts/stages.sh): run the same command again to go on.
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

run s1 experiment=stage1_grounding "$@"
run s2 experiment=stage2_mixed "$(weights s1)" "$@"
if [ "$UPTO" = 3 ]; then
  run s3 experiment=stage3_explain "$(weights s2)" "$@"
  if [ "$JUDGE" != none ] && [ ! -f "$OUT/s3/judge.json" ]; then
    "$PYTHON" -m epaiqa.cli judge "$OUT/s3" --judge-model "$JUDGE"
  fi
fi
"$PYTHON" -m epaiqa.cli report "$OUT" --out "$OUT/report" --html
