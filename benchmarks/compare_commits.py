"""dlkit at two commits, timed on the same recipe: did a change make training slower?

Each commit is checked out into a temporary git worktree and run as `dlkit train RECIPE --json` in fresh
processes, alternating (old, new, old, new, ...) so machine noise hits both alike. Reports fit() wall and
CPU time of each and the new/old ratios (fastest runs for wall time, medians for CPU time).

    python benchmarks/compare_commits.py OLD NEW [--reps N] [--recipe R] [--set key=value ...]
    e.g. python benchmarks/compare_commits.py dc1b1f5 HEAD --set train.epochs=1
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--recipe", default="recipes/cnn_mnist.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--data-dir", default=os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    env = {**os.environ, "DLKIT_DATA_DIR": args.data_dir, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for side in ("old", "new"):
            commit = subprocess.run(["git", "rev-parse", getattr(args, side)], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.strip()
            trees[side] = (Path(tmp) / side, commit)
            subprocess.run(["git", "worktree", "add", "--detach", str(Path(tmp) / side), commit], cwd=ROOT,
                           capture_output=True, check=True)
        try:
            times = {"old": [], "new": []}
            for rep in range(args.reps):
                for side in ("old", "new"):
                    tree, commit = trees[side]
                    cmd = [sys.executable, "-m", "dlkit.cli", "train", args.recipe, "--json", "--quiet", "--runs-root",
                           str(Path(tmp) / "runs"), *[a for s in args.overrides for a in ("--set", s)]]
                    start = time.perf_counter()
                    out = subprocess.run(cmd, cwd=tree, env={**env, "PYTHONPATH": str(tree)}, capture_output=True,
                                         text=True)
                    if out.returncode:
                        sys.exit(f"{side} ({commit[:7]}) failed:\n{out.stderr[-3000:]}")
                    r = json.loads(out.stdout)
                    times[side].append((r["fit_time_s"], r["fit_cpu_time_s"]))
                    print(f"rep {rep + 1} {side} {commit[:7]}: fit {r['fit_time_s']:.2f}s, {r['fit_cpu_time_s']:.1f} "
                          f"CPU-s, process {time.perf_counter() - start:.1f}s", flush=True)
        finally:
            for tree, _ in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    wall = min(t for t, _ in times["new"]) / min(t for t, _ in times["old"])
    cpu = statistics.median(c for _, c in times["new"]) / statistics.median(c for _, c in times["old"])
    print(f"{args.recipe} {' '.join(args.overrides)}, {args.reps} reps each: new/old fit-time ratio {wall:.3f} "
          f"(fastest runs), fit CPU-time ratio {cpu:.3f} (medians)")
    print(json.dumps({"old": trees["old"][1], "new": trees["new"][1], "fit_ratio": round(wall, 4),
                      "cpu_ratio": round(cpu, 4), "old_fit_s": [t for t, _ in times["old"]],
                      "new_fit_s": [t for t, _ in times["new"]], "old_cpu_s": [c for _, c in times["old"]],
                      "new_cpu_s": [c for _, c in times["new"]]}))


if __name__ == "__main__":
    main()
