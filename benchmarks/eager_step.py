"""One training step of the suite's tiny CycleGAN (4 filters, one residual block, 16x16 images), taken
eagerly (train.run_eagerly: true) and traced (the default), each on a freshly built model in this process:
what a run of one or two steps pays for tracing. Appends a JSON line to benchmarks/results/eager_step.jsonl.

    .venv/bin/python benchmarks/eager_step.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from record import commit, machine  # noqa: E402

RECIPE = """
name: tiny_cyclegan
data: {{dataset: npz, path: {path}, scale: symmetric, validation_split: 0, batch_size: 8,
       domain_b: {{dataset: npz, path: {path}}}}}
model: {{arch: cyclegan, filters: 4, residual_blocks: 1, discriminator_filters: 4}}
train: {{epochs: 1, run_eagerly: {eager}}}
"""


def main():
    from dlkit import backend

    backend.setup()
    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 16, 16, 1)).astype("float32")
    out = {"commit": commit(ROOT), "command": "python benchmarks/eager_step.py", "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/d.npz", x_train=rng.integers(0, 255, (8, 16, 16), dtype=np.uint8), y_train=np.zeros(8, int))
        for eager in ("true", "false"):
            Path(f"{tmp}/r.yaml").write_text(RECIPE.format(path=f"{tmp}/d.npz", eager=eager))
            recipe = load_recipe(Path(f"{tmp}/r.yaml"))
            model = Session.open(recipe).model()  # built and compiled as `dlkit train` builds them
            start, cpu = time.perf_counter(), time.process_time()
            model.fit((images, images[::-1]), (np.zeros(8), np.zeros(8)), batch_size=8, epochs=1, verbose=0)
            out[f"run_eagerly_{eager}"] = {"wall_s": round(time.perf_counter() - start, 2),
                                           "cpu_s": round(time.process_time() - cpu, 2)}
    with open(ROOT / "benchmarks" / "results" / "eager_step.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
