"""How long a run's tf.data pipelines take to build: the training feed and the three splits of a small MNIST
recipe (tests/data's slice: scaled, and with --augment flipped, translated and rotated), each built and one
batch read, in CPU seconds. Each sample is a fresh process (TensorFlow imported first, not timed): "first"
is that process's first build, as each `dlkit train` makes it; "again" a second build in the same process.

    python benchmarks/pipeline_speed.py [--checkout DIR] [--repeat 5] [--augment]

--checkout times the dlkit of another checkout (e.g. a `git worktree` of an older commit), so that two commits
are compared on the same machine in one sitting. Prints the medians as a JSON line and appends one line (commit
timed, command, machine) to benchmarks/results/pipeline_speed.jsonl.
"""

from __future__ import annotations

import json
import time

# benchmarks/, the script's own folder, is on sys.path
from record import ROOT, append_line, checkout_options, fresh_samples, timed_checkout

AUGMENT = "{flip: horizontal, translation: 0.1, rotation: 0.05}"


def sample(augment: bool) -> dict:
    """In this process (its dlkit already chosen): the first build's CPU seconds and a second's."""
    from dlkit import backend

    backend.setup()  # TensorFlow and Keras imported, not timed
    from dlkit.data import pipeline, sources
    from dlkit.tasks import load_recipe

    recipe_path = ROOT / "recipes" / "cnn_mnist.yaml"
    sets = [f"data.dir={ROOT / 'tests' / 'data'}", "data.limit=600", "data.test_limit=200", "data.batch_size=50"]
    cfg = load_recipe(recipe_path, sets + ([f"data.augment={AUGMENT}"] if augment else [])).data
    arrays = sources.load(cfg)
    out = {}
    for name in ("first", "again"):
        start = time.process_time()
        data = pipeline.build(arrays, cfg, seed=0)
        for ds in (data.feed.epochs(0, None), data.train, data.val, data.test):
            next(iter(ds))
        out[name] = time.process_time() - start
    return out


def main() -> None:
    ap = checkout_options(repeat=5, fresh=True)
    ap.add_argument("--augment", action="store_true")
    args = ap.parse_args()
    checkout = timed_checkout(args.checkout)
    if args.sample:
        print(json.dumps(sample(args.augment)))
        return
    row = {"augment": args.augment,
           **fresh_samples(__file__, ["--checkout", str(checkout)] + ["--augment"] * args.augment, args.repeat)}
    print(json.dumps(row))
    append_line("pipeline_speed.jsonl", checkout, [row])


if __name__ == "__main__":
    main()
