"""What `dlkit sweep --parallel K` costs in wall time with K members at a time, for one or more checkouts of
dlkit timed in one sitting, rounds interleaved (checkout by checkout, K by K, each round in turn), so that a
busy machine weighs on each alike. Each sweep trains 2 learning rates x 2 seeds of a recipe on a slice of
its data, into a fresh runs root.

    python benchmarks/sweep_threads.py [--checkout PATH ...] [--parallel 1 2] [--repeat 3] [--recipe R]

A checkout is a tree of dlkit (this one, or a `git worktree` of an older commit): its dlkit goes first on
PYTHONPATH for the sweep and its members. The thread counts dlkit's sweep sets (backend.THREAD_VARIABLES)
are taken out of the environment first, so each library starts as it would for a user who set none.
Prints the medians and appends one line (commit, command, machine) to benchmarks/results/sweep_threads.jsonl.
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

from record import ROOT, commit, machine  # benchmarks/, the script's own folder, is on sys.path

# backend.THREAD_VARIABLES, written out: an older checkout timed here may not have it
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
           "TF_NUM_INTEROP_THREADS")


def one_sweep(checkout: Path, parallel: int, recipe: str, sets: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in THREADS}
    env["PYTHONPATH"] = str(checkout)
    env.setdefault("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "dlkit.cli", "sweep", str(ROOT / recipe), "--grid",
                   "train.optimizer.learning_rate=0.05,0.1", "--seeds", "2", "--parallel", str(parallel),
                   "--runs-root", runs, "--json", *[a for s in sets for a in ("--set", s)]]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=checkout, capture_output=True, text=True)
        took = time.perf_counter() - start
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    if done.returncode != 0 or result.get("status") != "completed":
        sys.exit(f"the sweep failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", nargs="+", default=[str(ROOT)])
    ap.add_argument("--parallel", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--recipe", default="recipes/rbm_mnist.yaml")
    ap.add_argument("--set", action="append", dest="sets",
                    default=["data.limit=1000", "data.test_limit=200", "train.epochs=1"])
    args = ap.parse_args()
    checkouts = [Path(c).resolve() for c in args.checkout]
    times = {(c, k): [] for c in checkouts for k in args.parallel}
    for _ in range(args.repeat):
        for c in checkouts:
            for k in args.parallel:
                times[c, k].append(round(one_sweep(c, k, args.recipe, args.sets), 1))
    rows = [{"commit": commit(c), "parallel": k, "wall_s": statistics.median(t), "samples": t}
            for (c, k), t in times.items()]
    for r in rows:
        print(json.dumps(r))
    line = {"commit": commit(ROOT), "command": "python " + " ".join(sys.argv), "machine": machine(),
            "cpu_cores": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d %H:%M"), "recipe": args.recipe,
            "sets": args.sets, "result": rows}
    with open(ROOT / "benchmarks" / "results" / "sweep_threads.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
