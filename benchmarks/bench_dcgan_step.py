"""`make bench`, part two: dlkit's gan_mnist model against a plain hand-written Keras GAN train_step of the
same architecture, on the same data, in fresh processes, alternating. Reports steps per second and the
ratio of step times (dlkit / plain; target <= 1.05), from the fastest run of each and from CPU time.

    python benchmarks/bench_dcgan_step.py [--reps N] [--steps S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", 3)))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--data-dir", default=os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    results = {"plain": [], "dlkit": []}
    for rep in range(args.reps):
        for side in ("plain", "dlkit"):
            out = subprocess.run([sys.executable, "benchmarks/dcgan_step.py", side, args.data_dir, str(args.steps)],
                                 capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if out.returncode:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[side].append(r)
            print(f"rep {rep + 1} {side}: {r['steps_per_s']:.2f} steps/s ({r['cpu_seconds'] / r['steps'] * 1000:.0f} "
                  f"CPU-ms/step, {r['params']:,} params)", flush=True)
    assert len({(r["params"], r["batch"]) for r in results["plain"] + results["dlkit"]}) == 1, "the two sides differ"
    best = {s: max(r["steps_per_s"] for r in rs) for s, rs in results.items()}
    cpu = {s: statistics.median(r["cpu_seconds"] / r["steps"] for r in rs) for s, rs in results.items()}
    ratio, cpu_ratio = best["plain"] / best["dlkit"], cpu["dlkit"] / cpu["plain"]
    print(f"DCGAN step, {args.steps} steps x {args.reps} reps: dlkit {best['dlkit']:.2f} steps/s, plain "
          f"{best['plain']:.2f} steps/s; step-time ratio dlkit/plain = {ratio:.3f} (target <= 1.05), "
          f"CPU-time ratio = {cpu_ratio:.3f}")
    print(json.dumps({"step_time_ratio": round(ratio, 4), "cpu_ratio": round(cpu_ratio, 4),
                      "steps_per_s": {s: [round(r["steps_per_s"], 3) for r in rs] for s, rs in results.items()}}))
    return 0 if ratio <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
