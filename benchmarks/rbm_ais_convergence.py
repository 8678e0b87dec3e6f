"""Does the RBM's AIS estimate of log Z settle as the annealing lengthens? AIS gives a stochastic lower
bound on log Z (so an optimistic log-likelihood) that tightens with more inverse temperatures; if log Z still
climbs by several nats between the shipped schedule (14,500) and a longer one, the shipped figure flatters.

    python benchmarks/rbm_ais_convergence.py RUN_DIR [--steps 1450 14500 50000] [--runs 100]

Prints log Z and the test log-likelihood at each schedule length and appends a line (commit, command,
machine) to benchmarks/results/unsupervised.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data"))


def main():
    import numpy as np

    from dlkit import tasks
    from dlkit.models.rbm_model import ais_log_partition, free_energy_np
    from dlkit.rundir import RunDir
    from dlkit.tasks.boltzmann import log_odds
    from dlkit.tasks.generative import in_scale
    from dlkit.training.session import Session
    from record import machine

    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--steps", type=int, nargs="+", default=[1450, 14500, 50000])
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    run = RunDir.open(args.run_dir)
    recipe = tasks.load_recipe(run.recipe)
    session = Session.open(recipe)
    model = session.model(checkpoint=run.model)
    data = session.data
    x = data.splits.x_test
    v = in_scale(x, data.scale).reshape(len(x), -1).astype(np.float64)
    params = model.numpy_parameters()
    base = log_odds(data.splits.x_train)
    free = free_energy_np(v, *params)
    rows = []
    for steps in args.steps:
        start = time.process_time()
        ais = ais_log_partition(*params, base, runs=args.runs, steps=steps, seed=0)
        rows.append({"steps": steps, "log_z": ais["log_z"], "log_z_high": ais["log_z_high"],
                     "log_likelihood": float((-free - ais["log_z"]).mean()), "cpu_s": round(time.process_time() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    line = {"commit": commit, "command": " ".join(["python", *sys.argv]), "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "result": {"run_dir": str(run.root), "ais_runs": args.runs,
                                                                "schedules": rows}}
    with open(ROOT / "benchmarks" / "results" / "unsupervised.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
