"""The Keras callbacks of a dlkit run: progress, divergence guard, atomic checkpoints, epoch history."""

from __future__ import annotations

import csv
import math
import time

import keras
import numpy as np

from dlkit import backend
from dlkit.rundir import RunDir, save_model_atomic


def to_floats(logs: dict | None) -> dict:
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in (logs or {}).items()}


def single_optimizer(model) -> bool:
    """A model trained by `model.optimizer` alone; the adversarial models have `g_optimizer` and `d_optimizer`
    (and on JAX a `model.optimizer` that only pairs their variables)."""
    return getattr(model, "g_optimizer", None) is None and getattr(model, "optimizer", None) is not None


def learning_rates(model) -> dict:
    """The current rate of each optimizer: `learning_rate`, or `g_learning_rate` and `d_learning_rate`."""
    if single_optimizer(model):
        return {"learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))}
    return {f"{side}_learning_rate": float(keras.ops.convert_to_numpy(getattr(model, f"{side}_optimizer").learning_rate))
            for side in ("g", "d") if getattr(model, f"{side}_optimizer", None) is not None}


class ProgressCallback(keras.callbacks.Callback):
    """Feeds a Reporter. Reading metric values forces a device sync, so it happens at most ~5 times a second."""

    def __init__(self, reporter, epochs: int, steps: int, initial_epoch: int = 0, interval: float = 0.2):
        super().__init__()
        self.reporter, self.epochs, self.steps, self.interval = reporter, epochs, steps, interval
        self.initial_epoch = initial_epoch

    def on_train_begin(self, logs=None):
        self.reporter.train_begin(self.epochs, self.steps, self.initial_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.last = time.perf_counter()
        self.reporter.epoch_begin(epoch)

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.reporter.batch(batch, to_floats(logs))

    def on_epoch_end(self, epoch, logs=None):
        logs = to_floats(logs)
        logs.update(learning_rates(self.model))
        self.reporter.epoch_end(epoch, logs, time.perf_counter() - self.epoch_start)

    def on_train_end(self, logs=None):
        self.reporter.train_end()


class InterruptCheck(keras.callbacks.Callback):
    """Raises KeyboardInterrupt between steps once a SIGTERM or Ctrl-C has asked for it (see dlkit.cli)."""

    def on_train_batch_end(self, batch, logs=None):
        if backend.interrupt_requested.is_set():
            raise KeyboardInterrupt

    on_epoch_end = on_train_batch_end


class _Replaying:
    """Mixed into EarlyStopping and ReduceLROnPlateau for `dlkit resume`: after Keras resets them at the start
    of fit, the epochs already run (history.csv's rows) are fed through their own on_epoch_end, so patience,
    best value and cooldown pick up where the interrupted run left them instead of starting over."""

    def __init__(self, *args, rows=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = list(rows)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for i, row in enumerate(self.rows):
            self._replay(i, dict(row))
        self.model.stop_training = False

    def _replay(self, epoch, logs):
        self.on_epoch_end(epoch, logs)


class ResumableEarlyStopping(_Replaying, keras.callbacks.EarlyStopping):
    def _replay(self, epoch, logs):
        super()._replay(epoch, logs)
        self.stopped_epoch = 0
        if self.restore_best_weights:  # past epochs' weights are gone: the first resumed epoch's stand in
            self.best_weights = None


class ResumableReduceLROnPlateau(_Replaying, keras.callbacks.ReduceLROnPlateau):
    """Each epoch is replayed at the learning rate it ran at (history.csv's), then the checkpoint's own rate,
    which already holds every reduction made, is put back."""

    def on_train_begin(self, logs=None):
        if not self.rows:
            return super().on_train_begin(logs)
        now = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        super().on_train_begin(logs)
        self.model.optimizer.learning_rate = now

    def _replay(self, epoch, logs):
        if "learning_rate" in logs:
            self.model.optimizer.learning_rate = logs["learning_rate"]
        super()._replay(epoch, logs)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the loss turns NaN or inf. Checks every `every` steps and at each epoch end."""

    def __init__(self, every: int = 25):
        super().__init__()
        self.every = every
        self.diverged_at: tuple[int, int] | None = None  # (epoch, step)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _check(self, logs, step):
        for key, value in (logs or {}).items():  # `loss`, or `d_loss` and `g_loss` for GANs
            if key.endswith("loss") and not math.isfinite(float(keras.ops.convert_to_numpy(value))):
                self.diverged_at = (self.epoch, step)
                self.model.stop_training = True
                return

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.every == 0 and self.diverged_at is None:
            self._check(logs, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None:
            self._check(logs, -1)


def _rng_sidecar(checkpoint):
    return checkpoint.with_name(checkpoint.stem + ".rng.npz")


def save_rng_sidecar(model, checkpoint) -> None:
    """A plain Keras model's .keras file leaves out its SeedGenerator states (dropout masks, noise); keep them
    beside the checkpoint, stamped with the optimizer's step, so a resume can continue the streams. The GAN
    models keep theirs inside the .keras file."""
    from dlkit.models import rng

    if not single_optimizer(model):
        return
    states = rng.snapshot(model)
    if not states:
        return
    tmp = checkpoint.with_name(f".{checkpoint.stem}-rng-tmp.npz")
    np.savez(tmp, iterations=int(keras.ops.convert_to_numpy(model.optimizer.iterations)), *states)
    tmp.replace(_rng_sidecar(checkpoint))


def load_rng_sidecar(model, checkpoint) -> bool:
    """Restore what save_rng_sidecar kept, if it belongs to this checkpoint (same optimizer step)."""
    from dlkit.models import rng

    path = _rng_sidecar(checkpoint)
    if not single_optimizer(model) or not path.is_file():
        return False
    with np.load(path) as saved:
        if int(saved["iterations"]) != int(keras.ops.convert_to_numpy(model.optimizer.iterations)):
            return False
        return rng.restore(model, [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)])


class CheckpointAndHistory(keras.callbacks.Callback):
    """After each finite epoch: append history.csv, replace checkpoints/last.keras, and best.keras when the
    monitored value improves. A diverged epoch writes nothing, so the last good checkpoint survives."""

    def __init__(self, run: RunDir, guard: DivergenceGuard, monitor: str, mode: str, rows=()):
        super().__init__()
        self.run, self.guard, self.monitor, self.mode = run, guard, monitor, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = None
        self.rows: list[dict] = []
        for row in rows:  # a resumed run's earlier epochs
            self.rows.append(row)
            self._consider(row, save=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.diverged_at is not None:
            return
        row = {"epoch": epoch + 1, **to_floats(logs), **learning_rates(self.model)}
        self.rows.append(row)
        self._write_history()
        save_model_atomic(self.model, self.run.last_checkpoint)
        save_rng_sidecar(self.model, self.run.last_checkpoint)
        self._consider(row, save=True)

    def _consider(self, row, save: bool):
        value = row.get(self.monitor)
        if value is not None and (value < self.best if self.mode == "min" else value > self.best):
            self.best, self.best_epoch = value, row["epoch"]
            if save:
                save_model_atomic(self.model, self.run.best_checkpoint)

    def _write_history(self):
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = self.run.history.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.run.history)
