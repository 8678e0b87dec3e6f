#!/usr/bin/env bash
# gan_mnist on a JAX-only GPU host (no TensorFlow there; see ../shared/gpu/README.md): several `dlkit train`
# runs side by side on the one GPU, each then measured with `dlkit evaluate --reference`. Everything lands
# under $OUT (train/eval JSON, history, sample grids, the shipped run's model), and runs still going at
# the deadline are stopped and probed from their last checkpoint.
#
# Prepare on the workstation:   benchmarks/gpu_prepare.sh REFERENCE_CLASSIFIER_RUN   (wheels + data + reference)
# Run on the GPU host:          OUT=... DEADLINE_S=480 bash benchmarks/gpu_gan_mnist.sh
# VARIANTS="name|key=value;key=value other|..." runs each with dlkit's own -s overrides of the recipe.
# A dry run here, without TensorFlow:  SITE=/tmp/notf PY=.venv/bin/python VARIANTS=... bash benchmarks/gpu_gan_mnist.sh
# (SITE: folders put first on PYTHONPATH instead of installing .whl/; /tmp/notf makes `import tensorflow` fail)
set -u
OUT=${OUT:-/tmp/out}
DEADLINE_S=${DEADLINE_S:-480}
RECIPE=${RECIPE:-recipes/gan_mnist.yaml}
VARIANTS=${VARIANTS:-"shipped|"}
T0=$(date +%s)
mkdir -p "$OUT"
log() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/log.txt"; }

PY=${PY:-python3}
if [ -z "${SITE:-}" ]; then
  SITE=/tmp/site
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl \
    >"$OUT/pip.txt" 2>&1 || { log "pip install failed"; cat "$OUT/pip.txt"; exit 1; }
fi
export PYTHONPATH=$SITE:$PWD KERAS_BACKEND=jax DLKIT_DATA_DIR=$PWD/.gpudata
# several runs share the GPU: each takes memory as it needs it instead of 75% up front
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())" >"$OUT/jax.txt" 2>&1
log "host ready: $(cat "$OUT/jax.txt")"

REF=$PWD/.gpudata/ref
RUNS=/tmp/gpuruns/$T0  # this call's runs only, on a machine still warm from an earlier call
run_variant() {  # name, overrides...
  local name=$1; shift
  local args=() o
  for o in "$@"; do args+=(-s "$o"); done
  local root=$RUNS/$name
  log "train $name: ${*:-(as shipped)}"
  $PY -m dlkit.cli train "$RECIPE" --runs-root "$root" -q --json "${args[@]}" \
    >"$OUT/$name.train.json" 2>"$OUT/$name.train.err"
  local rc=$?
  log "train $name exit $rc $(grep -o '"\(epochs_completed\|wall_time_s\)": [0-9.]*' "$OUT/$name.train.json" | tr '\n' ' ')"
  local run; run=$(ls -d "$root"/*/* 2>/dev/null | head -1)
  [ -n "$run" ] || return
  mkdir -p "$OUT/$name"
  cp "$run"/{history.csv,manifest.json,metrics.json,recipe.yaml,samples.png,progress.gif} "$OUT/$name/" 2>/dev/null
  [ "$name" = "${KEEP_MODEL:-shipped}" ] && cp "$run/model.keras" "$OUT/$name/"
  if [ -f "$run/model.keras" ]; then
    $PY -m dlkit.cli evaluate "$run" --reference "$REF" -n 10000 --json \
      >"$OUT/$name.eval.json" 2>"$OUT/$name.eval.err"
    local rc=$?  # the log keeps the scores: only a few files may come back from the host
    log "evaluate $name exit $rc: $(grep -o '"\(classifier_score\|frechet_distance\|class_coverage\)": [0-9.]*' \
      "$OUT/$name.eval.json" | tr '\n' ' ')"
  fi
}

pids=()
for v in $VARIANTS; do
  IFS='|' read -r name overrides <<<"$v"
  # shellcheck disable=SC2086
  run_variant "$name" ${overrides//;/ } &
  pids+=($!)
done

while :; do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 1 ] || break
  if [ $(($(date +%s) - T0)) -ge "$DEADLINE_S" ]; then
    log "deadline: stopping the runs still training"
    pkill -TERM -f "dlkit.cli train"  # marks each run interrupted, its last checkpoint kept
    sleep 15
    pkill -KILL -f "dlkit.cli train"
    for h in $RUNS/*/*/*/history.csv; do
      d=$(dirname "$h"); n=${d#"$RUNS"/}; n=${n%%/*}
      [ -f "$OUT/$n.eval.json" ] && continue
      log "probe $n after $(($(wc -l <"$h") - 1)) epochs"
      $PY benchmarks/probe_gan_checkpoint.py "$d" "$REF" >"$OUT/$n.probe.txt" 2>&1 &
    done
    break
  fi
  sleep 5
done
wait
for h in $RUNS/*/*/*/history.csv; do n=${h#"$RUNS"/}; n=${n%%/*}; cp "$h" "$OUT/$n.history.csv"; done
log "done"
