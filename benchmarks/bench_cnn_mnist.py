"""`make bench`: dlkit's overhead on recipes/cnn_mnist.yaml against a plain hand-written Keras script.

Both train one epoch of the same model on the same MNIST data, in fresh processes, alternating
(plain, dlkit, plain, dlkit, ...) so machine noise hits both alike. dlkit's fit() time includes everything
it does per epoch (progress, divergence guard, history, two atomic checkpoints). Noise on a shared machine
only ever adds time, so the headline is the ratio of the fastest runs (min/min); the median of the
per-pair ratios is printed beside it, and so is the ratio of fit() CPU time (all threads), which other
tenants of the machine disturb far less than wall time. Target: <= 1.05.

    python benchmarks/bench_cnn_mnist.py [--reps N] [--epochs E] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, env):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"benchmark command failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", 5)))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    mnist = Path(args.data_dir) / "mnist"
    env = {**os.environ, "DLKIT_DATA_DIR": args.data_dir, "TF_CPP_MIN_LOG_LEVEL": "2"}
    plain, dlkit, plain_cpu, dlkit_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as runs:
        for rep in range(args.reps):
            p, p_wall = run([sys.executable, "benchmarks/plain_keras_cnn_mnist.py", str(mnist), str(args.epochs)], env)
            d, d_wall = run([sys.executable, "-m", "dlkit.cli", "train", "recipes/cnn_mnist.yaml", "--json",
                             "--runs-root", runs, "--set", f"train.epochs={args.epochs}"], env)
            plain.append((p["fit_time_s"], p_wall))
            dlkit.append((d["fit_time_s"], d_wall))
            plain_cpu.append(p["fit_cpu_time_s"])
            dlkit_cpu.append(d["fit_cpu_time_s"])
            print(f"rep {rep + 1}: plain fit {p['fit_time_s']:.2f}s ({p['fit_cpu_time_s']:.1f} CPU-s, process "
                  f"{p_wall:.1f}s); dlkit fit {d['fit_time_s']:.2f}s ({d['fit_cpu_time_s']:.1f} CPU-s, process "
                  f"{d_wall:.1f}s)", flush=True)
            assert p["params"] == d["params"], "the two models differ"
    fit_ratio = min(d for d, _ in dlkit) / min(p for p, _ in plain)
    paired = statistics.median(d / p for (d, _), (p, _) in zip(dlkit, plain))
    wall_ratio = min(w for _, w in dlkit) / min(w for _, w in plain)
    cpu_ratio = statistics.median(dlkit_cpu) / statistics.median(plain_cpu)
    print(f"cnn_mnist, {args.epochs} epoch(s), {args.reps} reps each: fit-time ratio dlkit/plain = {fit_ratio:.3f} "
          f"(fastest runs; target <= 1.05), median per-pair ratio = {paired:.3f}, fit CPU-time ratio = "
          f"{cpu_ratio:.3f}, whole-process ratio = {wall_ratio:.3f}")
    print(json.dumps({"fit_ratio": round(fit_ratio, 4), "paired_median_ratio": round(paired, 4),
                      "cpu_ratio": round(cpu_ratio, 4), "plain_fit_cpu_s": [round(c, 1) for c in plain_cpu],
                      "dlkit_fit_cpu_s": [round(c, 1) for c in dlkit_cpu],
                      "process_ratio": round(wall_ratio, 4),
                      "plain_fit_s": [round(p, 2) for p, _ in plain], "dlkit_fit_s": [round(d, 2) for d, _ in dlkit],
                      "plain_process_s": [round(w, 1) for _, w in plain],
                      "dlkit_process_s": [round(w, 1) for _, w in dlkit]}))
    return 0 if fit_ratio <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
