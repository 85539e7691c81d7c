# Shared by scripts/chain.sh and scripts/ablations.sh (sourced, not run): one stage per folder OUT/NAME.
# A stage whose results.json exists is kept; one with a checkpoints/last.ckpt but no results (killed: a SIGTERM or
# Ctrl-C saves last.ckpt at the step it stopped) resumes from it; any other starts afresh. So an interrupted
# script, run again with the same arguments, goes on where it stopped.
PYTHON=${PYTHON:-python}

run() {  # run NAME OVERRIDE...: one stage into OUT/NAME
  local name=$1
  shift
  if [ -n "$(find "$OUT/$name" -name results.json -print -quit 2>/dev/null)" ]; then
    echo "== $name: done before, kept"
    return
  fi
  local resume=()
  if [ -f "$OUT/$name/checkpoints/last.ckpt" ]; then
    echo "== $name: resumed from its last.ckpt"
    resume=("ckpt_path=\"$OUT/$name/checkpoints/last.ckpt\"")
  else
    echo "== $name"
  fi
  "$PYTHON" run.py "hydra.run.dir=$OUT/$name" "$@" "${resume[@]}"
}

for_stage() {  # for_stage NAME OVERRIDE...: sets STAGE_ARGS to the plain overrides and NAME's own, prefix removed
  local name=$1 arg
  shift
  STAGE_ARGS=()
  for arg in "$@"; do
    case "$arg" in
      "$name":*) STAGE_ARGS+=("${arg#"$name":}") ;;
      s1:* | s2:* | s3:*) ;;
      s[0-9]*:*) echo "error: '$arg': a stage's own override starts with s1:, s2: or s3:" >&2; exit 2 ;;
      *) STAGE_ARGS+=("$arg") ;;
    esac
  done
}

weights() {  # the last checkpoint of a finished stage
  local path="$OUT/$1/checkpoints/last.ckpt"
  [ -f "$path" ] || { echo "error: $path not found (did stage $1 finish?)" >&2; exit 1; }
  echo "model.init_from=\"$path\""
}
