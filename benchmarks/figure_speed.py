"""How long a run's figures take to draw and write: the learning curves of the histories a classifier, a GAN, a
VAE and an RBM log (five epochs, their real column names), a 10-class confusion matrix and a scatter of 1,000
codes, in CPU seconds per figure (the median of --repeat). Each `dlkit train` draws its learning curves at
the end of each phase; `dlkit evaluate` draws the task's figures.

    python benchmarks/figure_speed.py [--checkout DIR] [--repeat 7]

--checkout times the dlkit of another checkout (e.g. a `git worktree` of an older commit), so that two commits
are compared on the same machine in one sitting. Prints a JSON line per figure and appends one line (commit
timed, command, machine) to benchmarks/results/figure_speed.jsonl.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

# benchmarks/, the script's own folder, is on sys.path
from record import append_line, checkout_options, timed_checkout

# history.csv's columns, as each family's run writes them
HISTORIES = {
    "classifier": ["epoch", "accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"],
    "gan": ["epoch", "d_accuracy", "d_loss", "g_loss", "diversity", "generator_learning_rate",
            "discriminator_learning_rate"],
    "vae": ["epoch", "elbo", "kl", "loss", "reconstruction", "val_elbo", "val_kl", "val_loss", "val_reconstruction",
            "test_elbo", "test_kl", "test_loss", "test_reconstruction", "learning_rate"],
    "rbm": ["epoch", "free_energy_gap", "pseudo_log_likelihood", "reconstruction_error", "val_free_energy_gap",
            "val_pseudo_log_likelihood", "val_reconstruction_error", "test_free_energy_gap",
            "test_pseudo_log_likelihood", "test_reconstruction_error", "learning_rate"],
}


def main() -> None:
    args = checkout_options(repeat=7).parse_args()
    checkout = timed_checkout(args.checkout)
    import numpy as np

    from dlkit import plots

    rng = np.random.default_rng(0)
    names = [f"class {i}" for i in range(10)]
    figures = {f"learning curves, {family}": (lambda path, columns=columns: plots.learning_curves(
        [{c: e if c == "epoch" else float(rng.normal()) for c in columns} for e in range(1, 6)], path))
        for family, columns in HISTORIES.items()}
    figures["confusion matrix, 10 classes"] = lambda path: plots.confusion_matrix(
        rng.integers(0, 100, (10, 10)), names, path, "test split")
    figures["scatter, 1000 codes"] = lambda path: plots.scatter(
        rng.normal(size=(1000, 2)), rng.integers(0, 10, 1000), names, path, "codes")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        figures["learning curves, classifier"](Path(tmp) / "warm.png")  # matplotlib's import and font cache
        for name, draw in figures.items():
            times = []
            for i in range(args.repeat):
                start = time.process_time()
                draw(Path(tmp) / f"{i}.png")
                times.append(time.process_time() - start)
            rows.append({"figure": name, "cpu_s": round(statistics.median(times), 3),
                         "spread_s": round(max(times) - min(times), 3), "repeat": args.repeat})
            print(json.dumps(rows[-1]), flush=True)
    append_line("figure_speed.jsonl", checkout, rows)


if __name__ == "__main__":
    main()
