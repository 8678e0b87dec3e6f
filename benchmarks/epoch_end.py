"""Where an epoch of `dlkit train` goes, besides the training steps: one run, in this process, with timers
around the work between two epochs' steps (validation, and each part of the end-of-epoch callbacks: the
learning-rate read, the finiteness check, the checkpoint's model.save, fsync, hash and sidecar, history.csv,
best.keras, the progress line). Each epoch's seconds are printed as one JSON line, then a line of what the
finished run wrote after its last epoch, then one line of medians over the epochs after the first (which
holds the compilation and the first checkpoint's check), with the first epoch's own seconds beside them.

    python benchmarks/epoch_end.py RECIPE [EPOCHS] [--set key=value ...]

The training steps are timed up to the state they leave (read before validation starts), so a part's time is
its own, not the steps' it happened to wait for. On a GPU host this is the breakdown of docs/benchmarks.md's
"dlkit against plain Keras"; on CPU it runs as it is (slower steps, the same host work).
"""

import collections
import functools
import json
import statistics
import sys
import tempfile
import time

import keras

from dlkit import rundir
from dlkit.training import callbacks

SECONDS = collections.defaultdict(lambda: collections.defaultdict(float))  # epoch -> part -> seconds
EPOCH = [0]
AFTER = 10**9  # the bucket of what comes after the last epoch


def timed(owner, name, part=None):
    """Wrap owner.name so that its time is added to the current epoch's `part`."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SECONDS[EPOCH[0]][part or name] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def steps_done(model):
    """Wait for the steps dispatched so far: one read of the optimizer's step count."""
    keras.ops.convert_to_numpy(model.optimizer.iterations)


class Marks(keras.callbacks.Callback):
    """First in the callback list: the epoch's start, and (on_test_begin) the end of its training steps."""

    def on_epoch_begin(self, epoch, logs=None):
        EPOCH[0] = epoch
        self.start = time.perf_counter()
        self.tested = None

    def on_test_begin(self, logs=None):
        steps_done(self.model)
        now = time.perf_counter()
        SECONDS[EPOCH[0]]["steps"] = now - self.start
        self.tested = now

    def on_test_end(self, logs=None):
        keras.ops.convert_to_numpy(next(iter(self.model.metrics_variables), self.model.optimizer.iterations))
        SECONDS[EPOCH[0]]["validation"] = time.perf_counter() - self.tested

    def on_epoch_end(self, epoch, logs=None):
        if self.tested is None:  # no validation: the steps end where the epoch's callbacks begin
            steps_done(self.model)
            SECONDS[epoch]["steps"] = time.perf_counter() - self.start
        self.ended = time.perf_counter()

    def on_train_end(self, logs=None):
        EPOCH[0] = AFTER  # what a finished run writes is not the last epoch's


def main():
    args = [a for a in sys.argv[1:] if a != "--set"]
    recipe = args[0]
    epochs = int(args[1]) if len(args) > 1 and "=" not in args[1] else 4
    sets = [a for a in args[1:] if "=" in a]

    timed(callbacks, "learning_rates")
    timed(callbacks, "to_floats")
    timed(callbacks, "rng_sidecar_writer", "rng_snapshot")
    timed(callbacks.LaterSave, "copy", "host_copy")
    timed(callbacks.DivergenceGuard, "fit_to_keep")
    timed(callbacks.CheckpointAndHistory, "_write_history", "history")
    timed(callbacks.CheckpointAndHistory, "_consider", "best_copy")
    timed(callbacks.CheckpointAndHistory, "on_epoch_end", "checkpoint_and_history")
    timed(callbacks.ProgressCallback, "on_epoch_end", "progress")
    timed(rundir, "fsync_file", "fsync")
    timed(rundir, "sha256")
    timed(rundir, "write_atomic", "checksums")
    timed(keras.Model, "save", "model_save")
    marks = Marks()
    fit = keras.Model.fit

    def fit_with_marks(self, *a, callbacks=None, **kw):  # the marks first, the progress line's clock after
        return fit(self, *a, callbacks=[marks, *(callbacks or [])], **kw)

    keras.Model.fit = fit_with_marks

    from dlkit import cli

    with tempfile.TemporaryDirectory() as runs:
        argv = ["train", recipe, "-q", "--runs-root", runs, "--set", f"train.epochs={epochs}"]
        for s in sets:
            argv += ["--set", s]
        try:
            cli.app(argv, standalone_mode=False)
        except SystemExit as e:
            if e.code:
                raise
    rows = []
    for epoch in sorted(SECONDS):
        row = {"epoch": epoch + 1 if epoch != AFTER else "after", **{k: round(v, 4) for k, v in SECONDS[epoch].items()}}
        if epoch != AFTER:
            rows.append(row)
        print(json.dumps(row))
    if not rows:
        sys.exit("the run trained no epoch: its error is above")
    later = rows[1:] or rows
    keys = dict.fromkeys(k for r in later for k in r if k != "epoch")
    print(json.dumps({"recipe": recipe, "sets": sets, "median_of_epochs": f"2-{len(rows)}",
                      **{k: round(statistics.median(r.get(k, 0.0) for r in later), 4) for k in keys},
                      "epoch_1": {k: v for k, v in rows[0].items() if k != "epoch"},  # the compilation, the first checkpoint
                      "commit": commit(), "command": " ".join(["python", *sys.argv]), "machine": machine()}))


def commit() -> str:
    """The commit of the dlkit this process imported (+uncommitted where its files differ from it)."""
    import subprocess
    from pathlib import Path

    import dlkit

    root = Path(dlkit.__file__).resolve().parents[1]
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+uncommitted" if git("status", "--porcelain", "--", "dlkit") else "")


def machine() -> str:
    import os
    import platform

    return (f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, Keras "
            f"{keras.__version__} on {keras.backend.backend()}")


if __name__ == "__main__":
    main()
