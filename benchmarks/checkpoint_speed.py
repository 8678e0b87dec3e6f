"""What an epoch's `best.keras` costs: a `model.save` of the model with its optimizer state (how it was written
before b682d92) against a copy of the checkpoint file just written (how it is written since), for the
models of shipped image classifier recipes after one training step on random images (so that the optimizer's
moments exist), in wall seconds (the median of --repeat).

    python benchmarks/checkpoint_speed.py [--repeat 5] [RECIPE ...]

Prints a JSON line per recipe and appends one line (commit, command, machine) to
benchmarks/results/checkpoint_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from record import ROOT, append_line  # benchmarks/, the script's own folder, is on sys.path

SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("recipes", nargs="*", default=["recipes/cnn_mnist.yaml", "recipes/cnn_cifar10.yaml"])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import numpy as np

    from dlkit import tasks
    from dlkit.data.spec import DataSpec

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        last, best = Path(tmp) / "last.keras", Path(tmp) / "best.keras"
        for path in args.recipes:
            recipe = tasks.load_recipe(path)
            shape, task = SHAPES[recipe.data.dataset], tasks.of(recipe)
            phase = task.phases(recipe)[0]  # the recipe's model, built and compiled by its task, without data
            model = task.compile(task.build(recipe, DataSpec(input_shape=shape, num_classes=10), phase, {}),
                                 recipe, 1, phase)
            rng = np.random.default_rng(0)
            model.fit(rng.random((32, *shape), "float32"), rng.integers(0, 10, 32), batch_size=32, verbose=0)
            model.save(last)
            saves, copies = [], []
            for _ in range(args.repeat):
                start = time.perf_counter()
                model.save(best)
                saves.append(time.perf_counter() - start)
                start = time.perf_counter()
                shutil.copyfile(last, best)
                copies.append(time.perf_counter() - start)
            rows.append({"recipe": recipe.name, "params": int(model.count_params()),
                         "file_mb": round(last.stat().st_size / 1e6, 2), "save_s": round(statistics.median(saves), 4),
                         "copy_s": round(statistics.median(copies), 4), "repeat": args.repeat})
            print(json.dumps(rows[-1]), flush=True)
    append_line("checkpoint_speed.jsonl", ROOT, rows)


if __name__ == "__main__":
    main()
