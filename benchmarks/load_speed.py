"""What loading a finished run's model.keras costs with its optimizer's state (as `dlkit evaluate` and `resume`
load it) and without (as `dlkit generate`, `encode`, `predict` and `export` load it since this script was
added): CPU seconds and the resident memory the loaded model holds, for the models of shipped recipes after one
training step on random images (so that the optimizer's moments are in the file). Each sample is a fresh
process that imports Keras and dlkit first (not counted), then loads the file once.

    python benchmarks/load_speed.py [--repeat 5] [RECIPE ...]

Prints a JSON line per recipe (medians) and appends one line (commit, command, machine) to
benchmarks/results/load_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from record import ROOT, append_line  # benchmarks/, the script's own folder, is on sys.path

SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def resident_mb() -> float:
    """The process's resident memory now (Linux)."""
    import os

    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sample(path: str, compile: bool) -> dict:
    """In this process: the load's CPU seconds and how much resident memory the loaded model holds (MB)."""
    import time

    from dlkit import backend, models

    backend.setup()
    models.register_keras_classes()
    before = resident_mb()
    start = time.process_time()
    model = models.load(path, compile=compile)
    cpu = time.process_time() - start
    return {"cpu_s": cpu, "held_mb": resident_mb() - before, "variables": len(model.variables)}


def trained_file(recipe_path: str, out: Path) -> dict:
    """The recipe's model, built and compiled by its task without data, after one step on random images."""
    import numpy as np

    from dlkit import tasks
    from dlkit.data.spec import DataSpec

    recipe = tasks.load_recipe(recipe_path)
    shape, task = SHAPES[recipe.data.dataset], tasks.of(recipe)
    phase = task.phases(recipe)[0]
    model = task.compile(task.build(recipe, DataSpec(input_shape=shape, num_classes=10), phase, {}), recipe, 1,
                         phase)
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(-1, 1, (32, *shape)).astype("float32"), rng.integers(0, 10, 32), batch_size=32, verbose=0)
    model.save(out)
    return {"recipe": recipe.name, "params": int(model.count_params()), "file_mb": round(out.stat().st_size / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recipes", nargs="*", default=["recipes/cnn_mnist.yaml", "recipes/cnn_cifar10.yaml",
                                                   "recipes/gan_mnist.yaml"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sample", nargs=2, metavar=("FILE", "COMPILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sample:
        print(json.dumps(sample(args.sample[0], args.sample[1] == "1")))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(args.recipes):
            file = Path(tmp) / f"{i}.keras"
            row = trained_file(path, file)
            for name, flag in (("with_optimizer", "1"), ("model_alone", "0")):
                runs = [json.loads(subprocess.run([sys.executable, __file__, "--sample", str(file), flag],
                                                  capture_output=True, text=True, check=True).stdout.splitlines()[-1])
                        for _ in range(args.repeat)]
                row[name] = {k: round(statistics.median(r[k] for r in runs), 3) for k in ("cpu_s", "held_mb")}
            row["repeat"] = args.repeat
            rows.append(row)
            print(json.dumps(row), flush=True)
    append_line("load_speed.jsonl", ROOT, rows)


if __name__ == "__main__":
    main()
