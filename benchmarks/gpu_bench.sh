#!/usr/bin/env bash
# dlkit against plain Keras on one GPU, in one call (the speed targets of docs/benchmarks.md): the MNIST CNN
# (recipes/cnn_mnist.yaml) at batch 128 and 512, the time-to-99% recipe (recipes/cnn_mnist_fast.yaml) over
# three seeds, and dlkit's DCGAN step (recipes/gan_mnist.yaml) at batch 256. Each measurement is a fresh
# process; plain and dlkit alternate. Everything lands in $OUT (one JSON line per run in results.jsonl, and a
# summary table with the ratios in summary.txt).
#
# Prepare here:  ../shared/gpu/fetch-wheels.sh; mkdir -p .gpudata/mnist; cp ../shared/data/mnist/*.gz .gpudata/mnist/
# On the host:   run with carry [".whl", ".gpudata"]:  OUT=$OUT bash benchmarks/gpu_bench.sh
# Dry run here (CPU, tiny):  SITE=none DATA=tests/data/mnist EPOCHS=2 BATCHES="50" FAST_BATCH=50 SEEDS=0 \
#                            GAN_STEPS=5 PY=.venv/bin/python OUT=/tmp/bench bash benchmarks/gpu_bench.sh
set -u
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
DATA=${DATA:-$PWD/.gpudata/mnist}
EPOCHS=${EPOCHS:-4}
BATCHES=${BATCHES:-"128 512"}
FAST_BATCH=${FAST_BATCH:-250}
SEEDS=${SEEDS:-"0 1 2"}
GAN_STEPS=${GAN_STEPS:-200}  # fewer than an epoch at batch 256 (235 steps): without TensorFlow the feed is one epoch
mkdir -p "$OUT"
T0=$(date +%s)
log() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/log.txt"; }

if [ "${SITE:-}" != none ]; then
  SITE=${SITE:-/tmp/site}
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    >"$OUT/pip.txt" 2>&1 || { log "pip install failed"; cat "$OUT/pip.txt"; exit 1; }
  export PYTHONPATH=$SITE:$PWD
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())" >"$OUT/jax.txt" 2>&1
log "host: $(cat "$OUT/jax.txt"); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

measure() {  # side workload batch [--set ...]
  local line
  line=$(cd benchmarks && $PY throughput.py "$1" "$2" "$DATA" "$3" "$EPOCHS" "${@:4}" 2>>"$OUT/stderr.txt" | tail -1)
  if [ -n "$line" ]; then echo "$line" >>"$OUT/results.jsonl"; log "$1 $2 batch $3 ${*:4}: $line"
  else log "$1 $2 batch $3 failed (stderr.txt)"; fi
}

for b in $BATCHES; do
  for round in 1 2; do
    if [ $round = 1 ]; then measure plain cnn "$b"; measure dlkit cnn "$b"
    else measure dlkit cnn "$b"; measure plain cnn "$b"; fi
  done
done
for s in $SEEDS; do
  measure dlkit fast "$FAST_BATCH" --set "seed=$s"
done
measure plain fast "$FAST_BATCH"
# dlkit's GAN step alone (the plain side of benchmarks/dcgan_step.py is TensorFlow code); the README of
# ../shared/gpu has raw Keras's figure for the TF-tutorial DCGAN, a different model
line=$($PY benchmarks/dcgan_step.py dlkit "$(dirname "$DATA")" "$GAN_STEPS" --set data.batch_size=256 2>>"$OUT/stderr.txt" | tail -1)
echo "{\"side\": \"dlkit\", \"workload\": \"dcgan_step\", \"batch\": 256, \"result\": ${line:-null}}" >>"$OUT/results.jsonl"
log "dlkit dcgan step batch 256: ${line:-failed}"

$PY - "$OUT/results.jsonl" >"$OUT/summary.txt" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def best(side, workload, batch):
    v = [r["images_per_s"] for r in rows if r.get("side") == side and r.get("workload") == workload
         and r.get("batch") == batch and "images_per_s" in r]
    return max(v) if v else None
print("workload  batch  plain img/s  dlkit img/s  dlkit/plain")
for w, b in sorted({(r["workload"], r["batch"]) for r in rows if "images_per_s" in r}):
    p, d = best("plain", w, b), best("dlkit", w, b)
    print(f"{w:8s} {b:6d} {p or 0:12.0f} {d or 0:12.0f} {d / p if p and d else float('nan'):12.3f}")
fast = [r for r in rows if r.get("workload") == "fast"]
for r in fast:
    print(f"fast {r['side']}: test accuracy {r['test_accuracy']}, training {r['training_s_after_compile']} s "
          f"(epochs {r['epoch_seconds']}; the first, with compilation, counted at the later ones' median)")
PY
cat "$OUT/summary.txt" | tee -a "$OUT/log.txt"
