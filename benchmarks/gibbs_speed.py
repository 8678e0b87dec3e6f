"""How long the block Gibbs chains behind an RBM's chains.png and `dlkit generate` take
(`tasks.boltzmann.chain_snapshots`), on random parameters of the shipped `rbm_mnist` size (784 visible,
500 hidden), on one CPU thread. Their cost depends on the shapes, the chains and the steps, not on what the
weights have learned.

    python benchmarks/gibbs_speed.py [--checkout DIR] [--chains 1000] [--steps 200]

--checkout times the dlkit of another checkout (e.g. a `git worktree` of an older commit), so that two commits
are compared on the same machine in one sitting. Prints a JSON line and appends one line (commit timed,
command, machine) to benchmarks/results/gibbs_speed.jsonl.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from record import append_line, one_thread, timed_checkout  # benchmarks/, the script's folder, is on sys.path

one_thread()

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", default=str(ROOT), help="the checkout whose dlkit is timed")
    ap.add_argument("--chains", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    checkout = timed_checkout(args.checkout)
    import numpy as np

    importlib.import_module("dlkit.models.rbm_model")  # loaded wherever chains are drawn (an RBM's): not timed
    from dlkit.tasks.boltzmann import chain_snapshots

    rng = np.random.default_rng(0)

    class Parameters:  # what chain_snapshots reads of an RBM
        kernel = rng.normal(0, 0.05, (784, 500)).astype(np.float32)
        visible_bias = rng.normal(-1, 1, 784).astype(np.float32)
        hidden_bias = rng.normal(0, 0.1, 500).astype(np.float32)

        def numpy_parameters(self, dtype=np.float64):
            return tuple(np.asarray(p, dtype) for p in (self.kernel, self.visible_bias, self.hidden_bias))

    start = rng.random((args.chains, 784)).astype(np.float32)
    began = time.process_time()
    means = chain_snapshots(Parameters(), start, steps=(args.steps,), seed=0)
    row = {"visible": 784, "hidden": 500, "chains": args.chains, "steps": args.steps,
           "cpu_s": round(time.process_time() - began, 2), "dtype": str(means.dtype),
           "mean_pixel": round(float(means.mean()), 4)}
    print(json.dumps(row), flush=True)
    append_line("gibbs_speed.jsonl", checkout, [row])


if __name__ == "__main__":
    main()
