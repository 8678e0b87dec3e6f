"""The recurrent-cells lesson as one figure: the runs of recipes/lessons/char_rnn, char_lstm and char_gru
side by side (training and validation loss against training steps; the gradient of the last step's loss
at each step back), and their parameter counts and final losses as a table.

    python benchmarks/lesson_cells.py RUN_DIR... [--out docs/images/lesson_cells.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/images/lesson_cells.png"))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, grad_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    print("| cell | parameters | epochs | steps | train loss | val loss (nats/char) | val bits/char | fit CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        manifest = json.loads((run / "manifest.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        rows = list(csv.DictReader(open(run / "history.csv")))
        recipe = (run / "recipe.yaml").read_text()
        cell = next(line.split(":")[1].strip() for line in recipe.splitlines() if line.strip().startswith("cell:"))
        steps_per_epoch = math.ceil(manifest["data_spec"]["num_train"] / 64)
        steps = [int(r["epoch"]) * steps_per_epoch for r in rows]
        (line,) = loss_ax.plot(steps, [float(r["loss"]) for r in rows], "o-", label=f"{cell} train")
        loss_ax.plot(steps, [float(r["val_loss"]) for r in rows], "s--", color=line.get_color(), label=f"{cell} validation")
        norms = np.asarray(metrics["gradient_by_step"])
        grad_ax.semilogy(np.arange(len(norms))[::-1], norms, label=cell, color=line.get_color())
        val = metrics["val"]
        print(f"| {cell} | {manifest['params']:,} | {len(rows)} | {steps[-1]:,} | {float(rows[-1]['loss']):.3f} | "
              f"{val['nats_per_char']:.3f} | {val['bits_per_char']:.3f} | {metrics.get('fit_cpu_time_s', float('nan')):.0f} |")
    loss_ax.set_xlabel("training steps")
    loss_ax.set_ylabel("loss (nats per character)")
    loss_ax.set_title("the same character model, three cells")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend()
    grad_ax.set_xlabel("steps back from the predicted character")
    grad_ax.set_ylabel("gradient norm of the last step's loss")
    grad_ax.set_title("how far back the gradient reaches (trained models)")
    grad_ax.grid(alpha=0.3, which="both")
    grad_ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
