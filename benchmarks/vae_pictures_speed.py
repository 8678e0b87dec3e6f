"""How long a VAE run's finishing pictures take to draw (reconstructions, an interpolation, latent traversals,
the 2-D manifold and the test codes' scatter): the shipped vae_mnist recipe with a 2-D latent on tests/data's
slice, its model as built (the cost does not depend on the weights), in CPU seconds. Each sample is a fresh
process (Keras imported, the data read and the model built first, not timed): "first" is that process's first
drawing, as a run's finish makes it; "again" a second in the same process. It runs on the Keras backend the
environment names (KERAS_BACKEND), with TensorFlow where it can be imported; the result line keeps
KERAS_BACKEND and PYTHONPATH (a folder there can block `import tensorflow`, as the tests' JAX-only host does).

    python benchmarks/vae_pictures_speed.py [--checkout DIR] [--repeat 3]

--checkout times the dlkit of another checkout (e.g. a `git worktree` of an older commit), so that two commits
are compared on the same machine in one sitting. Prints the medians as a JSON line and appends one line (commit
timed, command, machine) to benchmarks/results/vae_pictures_speed.jsonl.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

# benchmarks/, the script's own folder, is on sys.path
from record import ROOT, append_line, checkout_options, fresh_samples, timed_checkout


def sample() -> dict:
    """In this process (its dlkit already chosen): the first drawing's CPU seconds and a second's."""
    from dlkit import backend, tasks

    backend.setup()
    from dlkit.rundir import RunDir
    from dlkit.tasks import variational

    recipe = tasks.load_recipe(ROOT / "recipes" / "vae_mnist.yaml", [
        f"data.dir={ROOT / 'tests' / 'data'}", "data.limit=300", "data.test_limit=100", "model.latent_dim=2"])
    task = tasks.of(recipe)
    data = task.load_data(recipe)
    model = task.build(recipe, data.spec, task.phases(recipe)[0], {})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("first", "again"):
            (Path(tmp) / name).mkdir()
            start = time.process_time()
            variational.pictures(RunDir(Path(tmp) / name), model, data, recipe.seed)
            out[name] = time.process_time() - start
    return out


def main() -> None:
    args = checkout_options(repeat=3, fresh=True).parse_args()
    checkout = timed_checkout(args.checkout)
    if args.sample:
        print(json.dumps(sample()))
        return
    row = {"env": {k: os.environ[k] for k in ("KERAS_BACKEND", "PYTHONPATH") if k in os.environ},
           **fresh_samples(__file__, ["--checkout", str(checkout)], args.repeat)}
    print(json.dumps(row))
    append_line("vae_pictures_speed.jsonl", checkout, [row])


if __name__ == "__main__":
    main()
