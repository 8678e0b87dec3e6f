#!/usr/bin/env bash
# dlkit against plain Keras on one GPU, in one call (the speed targets of docs/benchmarks.md): the MNIST CNN
# (recipes/cnn_mnist.yaml) at batch 128 and 512, the time-to-99% recipe (recipes/cnn_mnist_fast.yaml) over
# three seeds, and dlkit's DCGAN step (recipes/gan_mnist.yaml) at batch 256. Each measurement is a fresh
# process; plain and dlkit alternate. Everything lands in $OUT (one JSON line per run in results.jsonl, and a
# summary table with the ratios in summary.txt). Knobs: BATCHES, EPOCHS (the cnn's), FAST_EPOCHS ("3 4": the
# recipe's 3 first, over the seeds; the later lengths race over the seeds once the rest is measured, if time is
# left), SEEDS, GAN=0 (no DCGAN step), BREAKDOWN=BATCH (first, benchmarks/epoch_end.py: where dlkit's cnn epoch
# goes besides its steps, into epoch_end.jsonl), DEADLINE (seconds).
#
# Prepare here:  ../shared/gpu/fetch-wheels.sh grain array-record etils cloudpickle portpicker protobuf fsspec importlib-resources zipp psutil  (Grain and what it needs);
#                mkdir -p .gpudata/mnist; cp ../shared/data/mnist/*.gz .gpudata/mnist/
# On the host:   run with carry [".whl", ".gpudata"]:  OUT=$OUT bash benchmarks/gpu_bench.sh
# Dry run here (CPU, tiny), best in a venv without TensorFlow as the host has it (jax[cpu], keras, and
# dlkit's other requirements):  SITE=none DATA=tests/data/mnist EPOCHS=2 BATCHES="50" FAST_BATCH=50 SEEDS=0 \
#     GAN_STEPS=3 GAN_BATCH=8 DEADLINE=3000 PY=/tmp/gpusim/bin/python OUT=/tmp/bench bash benchmarks/gpu_bench.sh
set -u
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
DATA=$(cd "${DATA:-.gpudata/mnist}" && pwd) || exit 1  # absolute: the runs start in benchmarks/
EPOCHS=${EPOCHS:-4}
FAST_EPOCHS=${FAST_EPOCHS:-"3 4"}  # the race is the recipe's own: its schedule spans 3 epochs (its length, at others)
GAN=${GAN:-1}                  # 0: no DCGAN step
BREAKDOWN=${BREAKDOWN:-}       # a batch size: first, where dlkit's epoch goes besides its steps (epoch_end.py)
BATCHES=${BATCHES:-"128 512"}
FAST_BATCH=${FAST_BATCH:-250}
SEEDS=${SEEDS:-"0 1 2"}
GAN_STEPS=${GAN_STEPS:-200}  # fewer than an epoch at batch 256 (235 steps): without TensorFlow the feed is one epoch
GAN_BATCH=${GAN_BATCH:-256}
DEADLINE=${DEADLINE:-480}    # seconds: nothing new starts with under 40 s left, each run is cut at what is left
mkdir -p "$OUT"
: >>"$OUT/results.jsonl"  # the summary reads it even when every run was skipped
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/log.txt"; }

if [ "${SITE:-}" != none ]; then
  SITE=${SITE:-/tmp/site}
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    >"$OUT/pip.txt" 2>&1 || { log "pip install failed"; cat "$OUT/pip.txt"; exit 1; }
  export PYTHONPATH=$SITE:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
# dlkit's JAX compilation cache off (unless asked for): each run compiles, as the plain Keras script does, so
# a later run of the same workload does not start with compiled programs the plain side never has
export DLKIT_COMPILATION_CACHE=${DLKIT_COMPILATION_CACHE:-off}
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())" >"$OUT/jax.txt" 2>&1
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
gpu=$(nvidia-smi -L 2>/dev/null | head -1 | cut -d'(' -f1 | xargs)
MACHINE="${gpu:-no GPU}, $(nproc) cores, jax+keras $(tr -d '[]' <"$OUT/jax.txt" | cut -c1-60)"
log "host: $(cat "$OUT/jax.txt"); commit $COMMIT"
stamp() {  # a result line with the commit, the command and the machine it came from
  local json=$1
  echo "${json%\}}, \"commit\": \"$COMMIT\", \"command\": \"benchmarks/gpu_bench.sh (BATCHES=$BATCHES EPOCHS=$EPOCHS FAST_EPOCHS=$FAST_EPOCHS)\", \"machine\": \"${MACHINE//\"/}\"}"
}

budget() {  # seconds a run may take: what is left before the deadline, at most 240; fails under 40
  local left=$((DEADLINE - ($(date +%s) - T0)))
  [ "$left" -ge 40 ] || return 1
  echo $((left > 240 ? 240 : left))
}
measure() {  # side workload batch [--set ...]; skipped once the deadline is near, cut at what is left
  local line budget
  budget=$(budget) || { log "skipped (deadline): $*"; return; }
  local epochs=$EPOCHS
  [ "$2" = fast ] && epochs=${RACE_EPOCHS:-${FAST_EPOCHS%% *}}
  line=$(cd benchmarks && timeout "$budget" $PY throughput.py "$1" "$2" "$DATA" "$3" "$epochs" "${@:4}" \
         2>>"$OUT/stderr.txt" | tail -1)
  if [ -n "$line" ]; then stamp "$line" >>"$OUT/results.jsonl"; log "$1 $2 batch $3 ${*:4}: $line"
  else log "$1 $2 batch $3 failed or cut (stderr.txt)"; fi
}
gan() {  # side: dlkit's DCGAN step, or the same step hand-written for JAX
  local line budget
  budget=$(budget) || { log "skipped (deadline): gan $1"; return; }
  if [ "$1" = dlkit ]; then
    line=$(timeout "$budget" $PY benchmarks/dcgan_step.py dlkit "$(dirname "$DATA")" "$GAN_STEPS" \
           --set data.batch_size="$GAN_BATCH" 2>>"$OUT/stderr.txt" | tail -1)
  else
    line=$(timeout "$budget" $PY benchmarks/dcgan_step.py plain-jax "$(dirname "$DATA")" "$GAN_STEPS" \
           --batch "$GAN_BATCH" 2>>"$OUT/stderr.txt" | tail -1)
  fi
  stamp "{\"side\": \"$1\", \"workload\": \"dcgan_step\", \"batch\": $GAN_BATCH, \"result\": ${line:-null}}" \
    >>"$OUT/results.jsonl"
  log "$1 dcgan step batch $GAN_BATCH: ${line:-failed or cut}"
}

if [ -n "$BREAKDOWN" ] && budget=$(budget); then  # each epoch's parts, as JSON lines; the last, their medians
  timeout "$budget" $PY benchmarks/epoch_end.py recipes/cnn_mnist.yaml "$EPOCHS" --set "data.batch_size=$BREAKDOWN" \
    --set "data.dir=$(dirname "$DATA")" >"$OUT/epoch_end.jsonl" 2>>"$OUT/stderr.txt"
  log "where dlkit's cnn epoch goes, batch $BREAKDOWN: $(tail -1 "$OUT/epoch_end.jsonl")"
fi

# most wanted first, so that a run cut by the deadline still answers the targets: one round of every
# comparison, then the other seeds and the second rounds (plain and dlkit in the other order)
for b in $BATCHES; do measure plain cnn "$b"; measure dlkit cnn "$b"; done
first=${SEEDS%% *}
measure dlkit fast "$FAST_BATCH" --set "seed=$first"
measure plain fast "$FAST_BATCH"
if [ "$GAN" = 1 ]; then gan plain-jax; gan dlkit; fi
for s in ${SEEDS#"$first"}; do measure dlkit fast "$FAST_BATCH" --set "seed=$s"; done
for b in $BATCHES; do measure dlkit cnn "$b"; measure plain cnn "$b"; done
measure dlkit fast "$FAST_BATCH" --set "seed=$first" --set train.precision=mixed_bfloat16  # if time is left
for e in ${FAST_EPOCHS#"${FAST_EPOCHS%% *}"}; do  # the race at other lengths, over the seeds
  for s in $SEEDS; do RACE_EPOCHS=$e measure dlkit fast "$FAST_BATCH" --set "seed=$s"; done
done
# augmented on the device, in the compiled gather (dlkit alone: "cnn+augment" in the summary)
measure dlkit cnn "${BATCHES%% *}" --set "data.augment={translation: 0.1}"

$PY - "$OUT/results.jsonl" >"$OUT/summary.txt" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:  # an augmented run is a workload of its own
    if any(s.startswith("data.augment=") for s in r.get("sets", [])):
        r["workload"] += "+augment"
def best(side, workload, batch):
    v = [r["images_per_s"] for r in rows if r.get("side") == side and r.get("workload") == workload
         and r.get("batch") == batch and "images_per_s" in r]
    return max(v) if v else None
def cell(v, f):  # a side not measured (cut, or dlkit alone) is a dash
    return format(v, f) if v else "-"
print("workload      batch  plain img/s  dlkit img/s  dlkit/plain")
for w, b in sorted({(r["workload"], r["batch"]) for r in rows if "images_per_s" in r}):
    p, d = best("plain", w, b), best("dlkit", w, b)
    print(f"{w:12s} {b:6d} {cell(p, '12.0f'):>12s} {cell(d, '12.0f'):>12s} {cell(p and d and d / p, '12.3f'):>12s}")
gans = {r["side"]: r["result"]["steps_per_s"] for r in rows if r.get("workload") == "dcgan_step" and r.get("result")}
if gans:
    p, d = gans.get("plain-jax"), gans.get("dlkit")
    print(f"dcgan step: plain (jitted JAX loop, data on the device) {cell(p, '.1f')} steps/s, dlkit {cell(d, '.1f')}, "
          f"dlkit/plain {cell(p and d and d / p, '.3f')}")
fast = [r for r in rows if r.get("workload") == "fast"]
for r in fast:
    sets = "".join(" " + s for s in r.get("sets", []))
    print(f"fast {r['side']} {r['epochs']} epochs{sets}: test accuracy {r['test_accuracy']}, training {r['training_s_after_compile']} s "
          f"(epochs {r['epoch_seconds']}; the first, with compilation, counted at the later ones' median)")
PY
cat "$OUT/summary.txt" | tee -a "$OUT/log.txt"
