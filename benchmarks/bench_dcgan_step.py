"""`make bench`, part two: the step overhead of dlkit's gan_mnist model (its train_step, optimizers and
callbacks-free step) against a plain hand-written Keras GAN train_step of the same architecture, on the same
data, in fresh processes, in a random order each round. This compares training steps, not `dlkit train`:
it says nothing of data loading, checkpoints or progress (bench_cnn_mnist.py times the whole toolkit). The
verdict needs both clocks (benchmarks/pairs.py): step time of the fastest runs and median CPU time per step.
Target: step overhead <= 1.05.

    python benchmarks/bench_dcgan_step.py [--reps N] [--steps S]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", 3)))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--data-dir", default=os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    from pairs import rounds, verdict

    results = {"plain": [], "dlkit": []}
    for rep, side in rounds(args.reps):
        out = subprocess.run([sys.executable, "benchmarks/dcgan_step.py", side, args.data_dir, str(args.steps)],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if out.returncode:
            sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[side].append(r)
        print(f"round {rep + 1} {side}: {r['steps_per_s']:.2f} steps/s ({r['cpu_seconds'] / r['steps'] * 1000:.0f} "
              f"CPU-ms/step, {r['params']:,} params)", flush=True)
    assert len({(r["params"], r["batch"]) for r in results["plain"] + results["dlkit"]}) == 1, "the two sides differ"
    step = {s: [1 / r["steps_per_s"] for r in rs] for s, rs in results.items()}
    cpu = {s: [r["cpu_seconds"] / r["steps"] for r in rs] for s, rs in results.items()}
    return verdict("dcgan_step", f"step overhead ({args.steps} steps a run; not dlkit train)", step, cpu, 1.05)

if __name__ == "__main__":
    sys.exit(main())
