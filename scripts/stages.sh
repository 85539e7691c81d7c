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

weights() {  # the last checkpoint of a finished stage
  local path="$OUT/$1/checkpoints/last.ckpt"
  [ -f "$path" ] || { echo "error: $path not found (did stage $1 finish?)" >&2; exit 1; }
  echo "model.init_from=\"$path\""
}
