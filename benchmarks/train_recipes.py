"""Train shipped recipes one after another through the CLI and tabulate what they reached.

This is how the recipe figures in docs/benchmarks.md are made:

    python benchmarks/train_recipes.py recipes/cnn_mnist.yaml recipes/lessons/opt_*.yaml [--out FILE]

Each recipe runs as `dlkit train RECIPE --json --quiet` in a fresh process; the JSON results are appended
to FILE (JSON lines) and a markdown table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recipes.jsonl"))
    ap.add_argument("--runs-root", default=str(ROOT / "runs"))
    args = ap.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DLKIT_DATA_DIR": os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data"))}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from record import machine

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = []
    for recipe in args.recipes:
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "dlkit.cli", "train", recipe, "--json", "--quiet",
                              "--runs-root", args.runs_root], env=env, capture_output=True, text=True, cwd=ROOT)
        result = json.loads(out.stdout) if out.stdout.strip() else {"status": "error", "error": out.stderr[-500:]}
        result.update(recipe=recipe, exit_code=out.returncode, process_s=round(time.perf_counter() - start, 1),
                      host=f"{platform.node()} ({os.cpu_count()} CPUs)", date=time.strftime("%Y-%m-%d %H:%M"),
                      commit=commit, command=f"dlkit train {recipe} --json --quiet --runs-root {args.runs_root}",
                      machine=machine())
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
        rows.append(result)
        print(f"{recipe}: {result.get('status')} test={result.get('test', {})} in {result['process_s']}s", flush=True)
    print("\n| recipe | status | epochs | train acc | val acc | test acc | wall time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        final, test = r.get("final", {}), r.get("test", {})
        acc = lambda d, k: f"{100 * d[k]:.2f}%" if k in d else "-"  # noqa: E731
        print(f"| `{r['recipe']}` | {r.get('status')} | {r.get('epochs_completed', '-')} | {acc(final, 'accuracy')} "
              f"| {acc(final, 'val_accuracy')} | {acc(test, 'accuracy')} | {r.get('wall_time_s', 0):.0f} s |")


if __name__ == "__main__":
    main()
