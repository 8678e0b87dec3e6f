"""`make bench`: dlkit's overhead on recipes/cnn_mnist.yaml against a plain hand-written Keras script.

Both train the same model on the same MNIST data, in fresh processes, in a random order each round, so
machine noise hits both alike. This times `dlkit train` itself: its fit() includes everything dlkit does per
epoch (progress, divergence guard, history, atomic checksummed checkpoints), and the whole process's time is
printed too. The verdict needs both clocks (benchmarks/pairs.py): the fit wall-time ratio of the fastest runs
and the ratio of median fit CPU time. Target: toolkit overhead <= 1.05.

    python benchmarks/bench_cnn_mnist.py [--reps N] [--epochs E] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


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
    from pairs import rounds, spread, verdict

    fit = {"plain": [], "dlkit": []}
    cpu = {"plain": [], "dlkit": []}
    process = {"plain": [], "dlkit": []}
    params = set()
    with tempfile.TemporaryDirectory() as runs:
        for rep, side in rounds(args.reps):
            if side == "plain":
                r, wall = run([sys.executable, "benchmarks/plain_keras_cnn_mnist.py", str(mnist), str(args.epochs)],
                              env)
            else:
                r, wall = run([sys.executable, "-m", "dlkit.cli", "train", "recipes/cnn_mnist.yaml", "--json",
                               "--runs-root", runs, "--set", f"train.epochs={args.epochs}"], env)
            fit[side].append(r["fit_time_s"])
            cpu[side].append(r["fit_cpu_time_s"])
            process[side].append(wall)
            params.add(r["params"])
            print(f"round {rep + 1} {side}: fit {r['fit_time_s']:.2f}s ({r['fit_cpu_time_s']:.1f} CPU-s), process "
                  f"{wall:.1f}s", flush=True)
    assert len(params) == 1, "the two models differ"
    for side in ("plain", "dlkit"):
        print(f"  {side:5s} whole process: {spread(process[side])}")
    return verdict("cnn_mnist", f"toolkit overhead ({args.epochs} epoch(s) of dlkit train)", fit, cpu, 1.05,
                   {"process_wall_ratio": round(min(process["dlkit"]) / min(process["plain"]), 4)})

if __name__ == "__main__":
    sys.exit(main())
