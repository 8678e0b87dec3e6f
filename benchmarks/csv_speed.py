"""How long dlkit reads a feature CSV (`data.dataset: csv`, sources.load_csv): a table of --rows rows of 8
number columns, 2 categorical columns (one-hot encoded) and a label, in CPU seconds, the median of --repeat,
beside pandas.read_csv and get_dummies on the same file as the reference of a C parser.

    python benchmarks/csv_speed.py [--checkout DIR] [--repeat 3] [--rows 200000]

Prints a JSON line and appends one line (commit, command, machine) to benchmarks/results/csv_speed.jsonl.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# benchmarks/, the script's own folder, is on sys.path
from record import append_line, checkout_options, timed_checkout


def write_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 8))
    plans = np.array(["basic", "pro", "max"])[rng.integers(0, 3, rows)]
    cities = np.array(["Paris", "Lyon", "Nice", "Lille"])[rng.integers(0, 4, rows)]
    labels = np.where(x[:, 0] > 0, "yes", "no")
    with open(path, "w") as f:
        f.write(",".join([f"f{i}" for i in range(8)] + ["plan", "city", "label"]) + "\n")
        for i in range(rows):
            f.write(",".join([f"{v:.5f}" for v in x[i]] + [plans[i], cities[i], labels[i]]) + "\n")


def cpu_seconds(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def main() -> None:
    ap = checkout_options(repeat=3)
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    checkout = timed_checkout(args.checkout)
    import pandas as pd

    from dlkit.data import sources

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "table.csv"
        write_table(path, args.rows)
        ours = cpu_seconds(lambda: sources.load_csv(str(path), "label", categorical=["plan", "city"]), args.repeat)
        pandas = cpu_seconds(lambda: pd.get_dummies(pd.read_csv(path), columns=["plan", "city"]), args.repeat)
    row = {"rows": args.rows, "columns": 11, "load_csv_cpu_s": round(ours, 3), "pandas_cpu_s": round(pandas, 3),
           "ratio": round(ours / pandas, 1)}
    print(json.dumps(row))
    append_line("csv_speed.jsonl", checkout, [row])


if __name__ == "__main__":
    main()
