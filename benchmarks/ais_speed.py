"""How long `dlkit evaluate` spends on an RBM's AIS estimate of log Z (`ais_log_partition`), on random
parameters of the shipped `rbm_mnist` size (784 visible, 500 hidden) and a small one (16 hidden), on one
CPU thread. AIS's cost does not depend on what the weights have learned, only on their shape, the runs and the
temperatures.

    python benchmarks/ais_speed.py [--checkout DIR] [--steps 1450] [--runs 100]

--checkout times the dlkit of another checkout (e.g. a `git worktree` of an older commit), so that two commits
are compared on the same machine in one sitting. Prints a JSON line per shape and appends one line (commit
timed, command, machine) to benchmarks/results/ais_speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from record import append_line, one_thread, timed_checkout  # benchmarks/, the script's folder, is on sys.path

one_thread()

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", default=str(ROOT), help="the checkout whose dlkit is timed")
    ap.add_argument("--steps", type=int, default=1450)
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    checkout = timed_checkout(args.checkout)
    import numpy as np

    from dlkit.models.rbm_model import ais_log_partition

    rows = []
    for hidden in (16, 500):
        rng = np.random.default_rng(0)
        kernel = rng.normal(0, 0.05, (784, hidden)).astype(np.float32)
        visible_bias = rng.normal(0, 1, 784).astype(np.float32)
        hidden_bias = rng.normal(0, 0.1, hidden).astype(np.float32)
        base = rng.normal(-2, 1, 784)
        start = time.process_time()
        ais = ais_log_partition(kernel, visible_bias, hidden_bias, base, runs=args.runs, steps=args.steps, seed=0)
        rows.append({"visible": 784, "hidden": hidden, "runs": args.runs, "steps": args.steps,
                     "cpu_s": round(time.process_time() - start, 2), "log_z": ais["log_z"],
                     "log_z_low": ais["log_z_low"], "log_z_high": ais["log_z_high"]})
        print(json.dumps(rows[-1]), flush=True)
    append_line("ais_speed.jsonl", checkout, rows)


if __name__ == "__main__":
    main()
