"""The core Keras callbacks of every dlkit run: progress, divergence guard, interrupt check, atomic
checkpoints and the epoch history. A task adds its own beside these (sample grids, ...).

Keras turns a step's logs into Python floats before any callback's `on_train_batch_end`, which waits for
the step to finish: unless every callback with a batch hook says `async_safe`, when Keras makes that call
in a thread of its own and the training loop dispatches the next steps meanwhile. The per-step callbacks
here are async-safe (they read, count and set flags, and touch no model state); the mid-epoch checkpoint
(train.checkpoint_every) saves at the *start* of a step, which Keras calls in its own loop without waiting.
A GAN's grid every N steps (train.sample_every) runs the model at a step's end, so a run with it waits for
each step (or each execution of train.steps_per_execution steps)."""

from __future__ import annotations

import csv
import math
import shutil
import time
import zipfile

import keras
import numpy as np

from dlkit import backend, keras_private, optim, ui
from dlkit.files import replace_atomic
from dlkit.rundir import PhaseDir, in_checkpoint_thread
from dlkit.tasks.resumable import not_logged


def to_floats(logs: dict | None) -> dict:
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in (logs or {}).items()}


def learning_rates(optimizers: dict) -> dict:
    """The current rate of each optimizer role: `learning_rate` for a model with one optimizer, else
    `<role>_learning_rate` (generator_learning_rate, discriminator_learning_rate, ...)."""
    rate = optim.current_learning_rate
    if len(optimizers) == 1:
        return {"learning_rate": rate(next(iter(optimizers.values())))}
    return {f"{role}_learning_rate": rate(opt) for role, opt in optimizers.items()}


def steps_taken(optimizers: dict) -> int:
    """Training steps so far: the first role's optimizer steps once a batch (a GAN's generator; its critic may
    step n_critic times)."""
    return int(keras.ops.convert_to_numpy(next(iter(optimizers.values())).iterations))


class ProgressCallback(keras.callbacks.Callback):
    """Feeds a Reporter, at most ~5 times a second."""

    async_safe = True  # see the module's docstring

    def __init__(self, reporter, epochs: int, steps: int, optimizers: dict, initial_epoch: int = 0,
                 interval: float = 0.2):
        super().__init__()
        self.reporter, self.epochs, self.steps, self.interval = reporter, epochs, steps, interval
        self.optimizers, self.initial_epoch = optimizers, initial_epoch
        self.seconds: list[float] = []  # each epoch's wall time, validation and callbacks before this one included

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
        logs.update(learning_rates(self.optimizers))
        self.seconds.append(round(time.perf_counter() - self.epoch_start, 4))
        self.reporter.epoch_end(epoch, logs, self.seconds[-1])

    def on_train_end(self, logs=None):
        self.reporter.train_end()


class ProcessLocal:
    """In a run over several processes, a task's end-of-epoch work (sample grids, reconstructions, attention
    maps: `predict` on arrays in memory) has to run on each process by itself; Keras predicts across
    processes only from tf.data, and gathers no output. `enter` is the first callback of an epoch's end and
    `leave` the last: between them the model's variables hold local copies and no distribution is set
    (tasks.base.by_itself), after them the shared values are back for the next epoch's steps."""

    def __init__(self, model):
        self.model, self.local = model, None
        self.enter, self.leave = _Hook(self._enter), _Hook(self._leave)

    def _enter(self, epoch, logs=None):
        from dlkit.tasks.base import by_itself

        self.local = by_itself(self.model)
        self.local.__enter__()

    def _leave(self, epoch, logs=None):
        if self.local is not None:
            self.local.__exit__(None, None, None)
            self.local = None


class _Hook(keras.callbacks.Callback):
    def __init__(self, fn):
        super().__init__()
        self.on_epoch_end = fn


class InterruptCheck(keras.callbacks.Callback):
    """Raises KeyboardInterrupt between steps once a SIGTERM or Ctrl-C has asked for it (see dlkit.cli). Called
    in Keras's callback thread, the exception reaches the training loop at its next step's callbacks."""

    async_safe = True

    def on_train_batch_end(self, batch, logs=None):
        ui.stop_if_asked()

    on_epoch_end = on_train_batch_end


class Pruning(keras.callbacks.Callback):
    """`dlkit tune`'s stopping rule, for a trial it runs (tune.prune_rule). `median`: stop after an epoch past
    the warm-up whose best monitored value so far is worse than the median of the earlier finished trials'
    at that epoch (Golovin et al., Google Vizier, 2017; Optuna's MedianPruner). `halving`: at each rung epoch
    the earlier trials reached, go on only if the best so far is among the best 1/reduction_factor of theirs
    and its own (asynchronous successive halving: Li et al., ASHA, 2020; Optuna's SuccessiveHalvingPruner);
    Hyperband hands it as halving among the trials of the trial's bracket, from that bracket's first rung.
    The tune hands the rule to the trial process in the environment (backend.TUNE_PRUNE_VARIABLE), so a
    trial's recipe is the recipe at its point and nothing else; the run then ends as a finished run whose
    metrics.json says where it was pruned (`pruned`)."""

    def __init__(self, monitor: str, mode: str, rule: dict, rows: list[dict]):
        super().__init__()
        self.monitor, self.mode, self.rule = monitor, mode, rule.get("rule", "median")
        self.warmup = int(rule.get("warmup_epochs", 0))
        self.medians = {int(k): float(v) for k, v in rule.get("medians", {}).items()}
        self.rungs = {int(k): [float(x) for x in v] for k, v in rule.get("rungs", {}).items()}
        self.factor = int(rule.get("reduction_factor", 3))
        self.bracket = {"bracket": rule["bracket"], "brackets": rule.get("brackets")} if "bracket" in rule else {}
        self.best, self.pruned = None, None
        for row in rows:  # a resumed trial: the epochs before count
            self._see(row.get(monitor))

    @classmethod
    def from_environment(cls, monitor: tuple[str, str] | None, rows: list[dict]) -> Pruning | None:
        import json
        import os

        said = os.environ.get(backend.TUNE_PRUNE_VARIABLE)
        if not said or monitor is None:
            return None
        rule = json.loads(said)
        if rule.get("monitor") != monitor[0]:  # a phase that monitors another value (a DBN's pretraining)
            return None
        return cls(monitor[0], monitor[1], rule, rows)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _see(self, value) -> None:
        if value is not None and math.isfinite(float(value)) and (self.best is None or self._better(float(value),
                                                                                                     self.best)):
            self.best = float(value)

    def on_epoch_end(self, epoch, logs=None):
        self._see((logs or {}).get(self.monitor))
        if self.best is None:
            return
        done = epoch + 1
        if self.rule == "halving":
            if done not in self.rungs:
                return
            ranked = sorted(self.rungs[done] + [self.best], reverse=self.mode == "max")
            cutoff = ranked[max(len(ranked) // self.factor, 1) - 1]  # the last that goes on
            if self._better(cutoff, self.best):
                self.pruned = {"epoch": done, self.monitor: self.best, "rule": "hyperband" if self.bracket else
                               "halving", "cutoff": cutoff, "of": len(ranked), **self.bracket}
        else:
            median = self.medians.get(done)
            if done > self.warmup and median is not None and self._better(median, self.best):
                self.pruned = {"epoch": done, self.monitor: self.best, "median": median}
        if self.pruned:
            self.model.stop_training = True

    def said(self) -> str:
        """The run's message where the rule stopped it: after which epoch, and what it lost to."""
        p = self.pruned
        if "median" in p:
            rule, lost_to = "median rule", f"the earlier trials' median {p['median']:.4g}"
        else:
            rule = (f"Hyperband (successive halving in bracket {p['bracket']} of 0 to {p['brackets'] - 1})"
                    if "bracket" in p else "successive halving")
            lost_to = f"the worst of the best 1/{self.factor} of the {p['of']} trials at this rung {p['cutoff']:.4g}"
        return (f"pruned by dlkit tune's {rule} after epoch {p['epoch']}: best {self.monitor} {self.best:.4g}, "
                f"{lost_to}")


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the loss turns NaN or inf. Checks every `every` steps and at each epoch end."""

    async_safe = True

    def __init__(self, every: int = 25):
        super().__init__()
        self.every = every
        self.diverged_at: tuple[int, int] | None = None  # (epoch, step)
        self.epoch, self.checked = 0, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.checked = epoch, -1

    def _check(self, logs, step):
        for key, value in (logs or {}).items():  # `loss`, or `d_loss` and `g_loss` for GANs
            if key.endswith("loss") and not math.isfinite(float(keras.ops.convert_to_numpy(value))):
                self.diverged_at = (self.epoch, step)
                keras_private.stop_training(self)  # not self.model: no JAX state sync from Keras's thread
                return

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step of an execution (train.steps_per_execution): check once every `every` steps
        if batch // self.every > self.checked and self.diverged_at is None:
            self.checked = batch // self.every
            self._check(logs, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None:
            self._check(logs, -1)

    def fit_to_keep(self, logs, step: int, weights: list | None = None) -> bool:
        """Whether the model may be checkpointed now: the loss so far is finite and so is every weight (a
        step can turn the weights NaN while the loss it reported was still finite). `weights`: the model's
        weights already on the host (a HostCopy's), else read here."""
        if self.diverged_at is None:
            self._check(logs, step)
        if self.diverged_at is not None:
            return False
        if not all(np.isfinite(w).all() for w in (self.model.get_weights() if weights is None else weights)):
            self.diverged_at = (self.epoch, step)
            self.model.stop_training = True
        return self.diverged_at is None

    def reset(self) -> None:
        """Watch again, after a rollback to a good checkpoint."""
        self.diverged_at = None


def rng_sidecar_writer(model, optimizers: dict, position: int):
    """What a checkpoint's sidecar keeps, taken now and written by the function returned (path -> None) later:
    what Keras's .keras file leaves out, the model's SeedGenerator states (dropout masks, noise; the models with
    their own step keep theirs inside too) and the training position `position`, the batches taken so far,
    which an optimizer's step count is not where float16 loss scaling skips the steps whose gradients
    overflowed. Stamped with that step count, to tell it belongs to the checkpoint."""
    from dlkit.models import rng

    states, taken = rng.snapshot(model), steps_taken(optimizers)

    def write(path):
        with open(path, "wb") as f:
            np.savez(f, *states, iterations=taken, position=position)

    return write


class LaterSave:
    """A checkpoint's `model.save` of the state at an epoch's end, written in the checkpoint thread while the
    next epoch trains (PhaseDir.save_checkpoint's background). At the epoch's end every variable of the model
    and its optimizers is copied to the host (milliseconds); the file is written later under a
    keras.StatelessScope that maps each variable to its copy, so it holds that state whatever the training
    loop has done to the variables since (on JAX it empties them during an epoch).

    Checked once, in the checkpoint thread while the loop waits (`first`): what Keras's saving computes once
    per kind of object is kept for the thread (keras_private.keep_saving_skipsets: computing it makes variables,
    which a stateless scope refuses), and that epoch's checkpoint is written from a copy, under a scope that
    records every variable read outside the copy. A read outside it (a variable the copy misses) or any error
    there, and the checkpoint is written again from the live variables (the loop waiting, they are the copy's
    state), and this model's checkpoints are written in the loop's thread, as before."""

    def __init__(self, model, optimizers: dict):
        self.model, self.optimizers = model, optimizers
        self.ready: bool | None = None  # None: not checked yet

    def variables(self) -> list:
        """Every variable of the model and its optimizers, each once (asked each time: a rollback may give an
        optimizer new ones)."""
        every = [*self.model.variables, *(v for o in self.optimizers.values() for v in o.variables)]
        return list({id(v): v for v in every}.values())

    def copy(self) -> HostCopy:
        """The state now, copied to the host: a function that saves it (path -> None), in any thread, later."""
        variables = self.variables()
        return HostCopy(self.model, variables, backend.to_host(variables))

    def first(self, save) -> None:
        """In the checkpoint thread, the loop waiting: the check, which writes the epoch's checkpoint
        (`save(save_model)` writes one with save_model(path)) from a copy, else from the live variables: once
        where the check passes."""
        def copied(path):
            keras_private.keep_saving_skipsets()  # what the thread's later saves need ready (see above)
            self.copy()(path)

        try:
            save(copied)
            self.ready = True
        except Exception:  # noqa: BLE001 - any failure: written live, and checkpoints in the loop's thread
            self.ready = False
            save(self.model.save)


class HostCopy:
    """LaterSave's copy: the values of `variables` taken to the host, saved as `model`'s checkpoint when called
    (path -> None), in any thread. `weights` are the model's own among them (model.get_weights()'s, in any
    order), for the finiteness check a checkpoint needs first (DivergenceGuard.fit_to_keep), so the state
    crosses from the device once."""

    def __init__(self, model, variables: list, values: list):
        self.model, self.variables, self.values = model, variables, values
        own = {id(w) for w in model.weights}
        self.weights = [value for v, value in zip(variables, values) if id(v) in own]

    def __call__(self, path) -> None:
        with keras.device("cpu"):  # the copy stays in host memory
            scope = keras_private.recording_scope(list(zip(self.variables, self.values)))
        with scope:
            self.model.save(path)
        if scope.missed:
            raise RuntimeError(f"the checkpoint read variables its copy does not hold: {scope.missed[:3]}")


def load_rng_sidecar(model, optimizers: dict, sidecar) -> int:
    """Restore what rng_sidecar_writer kept, if it belongs to this checkpoint (same optimizer step), and return
    the checkpoint's training position (the optimizer's step count where the sidecar says nothing)."""
    from dlkit.models import rng

    taken = steps_taken(optimizers)
    if not sidecar.is_file():
        return taken
    try:
        with np.load(sidecar) as saved:
            if int(saved["iterations"]) != taken:
                return taken
            states = [saved[f"arr_{i}"] for i in range(sum(k.startswith("arr_") for k in saved.files))]
            position = int(saved["position"]) if "position" in saved.files else taken
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:  # dlkit writes it whole
        from dlkit.errors import DataError, first_line

        raise DataError(f"{sidecar} is damaged ({type(e).__name__}: {first_line(e)}); restore it from a copy of "
                        "the run, or delete it to resume without it: the resumed run then draws other dropout "
                        "masks and noise than an uninterrupted one would") from None
    if states:
        rng.restore(model, states)
    return position


class MidEpochCheckpoint(keras.callbacks.Callback):
    """A checkpoint inside an epoch (train.checkpoint_every): every `steps` training steps, or after `minutes`
    since the last checkpoint, unless the step ends an epoch (the epoch's own checkpoint follows, with its
    history row). `dlkit resume` continues from it to the batch. `offset` is the batches of the epoch done
    before this fit began (a fit of the rest of an epoch, after a resume inside it)."""

    def __init__(self, keeper: CheckpointAndHistory, steps_per_epoch: int, steps: int | None, minutes: float | None):
        super().__init__()
        self.keeper, self.steps_per_epoch = keeper, steps_per_epoch
        self.steps, self.seconds = steps, None if minutes is None else minutes * 60
        self.last, self.epoch, self.offset, self.previous = time.monotonic(), 0, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.previous = epoch, epoch * self.steps_per_epoch + self.offset

    def on_epoch_end(self, epoch, logs=None):
        self.last = time.monotonic()  # the epoch's checkpoint has just been written
        self.offset = 0

    def on_train_batch_begin(self, batch, logs=None):
        # before step `batch` (the first of an execution, train.steps_per_execution), in the training loop's
        # own thread: the steps before it are done and the model holds their result. Not at a batch's end,
        # which would make Keras wait for every step (the module's docstring); `steps` counts steps, so a
        # checkpoint is due when the steps since the last call crossed a multiple of it
        if batch == 0:
            return  # the epoch's start: its checkpoint (or the one resumed from) was just written
        position = self.epoch * self.steps_per_epoch + self.offset + batch
        before, self.previous = self.previous, position
        if self.seconds is not None and time.monotonic() - self.last < self.seconds:
            return
        if self.steps is not None and position // self.steps == before // self.steps:
            return
        fit, state = self.keeper.fit_state(None, batch - 1)
        if not fit:
            return  # never a checkpoint of a diverged model
        self.keeper.checkpoint(position, state=state)  # as an epoch's: in the checkpoint thread where it can be
        self.last = time.monotonic()


class CheckpointAndHistory(keras.callbacks.Callback):
    """After each finite epoch: append history.csv, replace checkpoints/last.keras, and best.keras when the
    monitored value improves (if the task monitors one). A diverged epoch writes nothing, so the last good
    checkpoint survives."""

    def __init__(self, where: PhaseDir, guard: DivergenceGuard, optimizers: dict, monitor: tuple[str, str] | None,
                 rows=(), steps_per_epoch: int = 1, background: bool = False):
        super().__init__()
        self.where, self.guard, self.optimizers = where, guard, optimizers
        self.steps_per_epoch = steps_per_epoch
        self.background = background  # checkpoints written in the checkpoint thread (LaterSave), if they can be
        self.later: LaterSave | None = None
        self.monitor, self.mode = monitor if monitor is not None else (None, "min")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.rows: list[dict] = []
        self.marks: dict = {}  # columns every later row carries (`rollbacks`, after a rollback)
        for row in rows:  # a resumed run's earlier epochs
            self.rows.append(row)
            self._consider(row)
        if self.rows and "rollbacks" in self.rows[-1]:
            self.marks["rollbacks"] = int(self.rows[-1]["rollbacks"])

    def rolled_back(self, epochs_kept: int, count: int) -> None:
        """Training went back to a checkpoint after `epochs_kept` epochs: later rows go, and the rows from
        here on say how many rollbacks the run has had."""
        if len(self.rows) > epochs_kept:  # the newest checkpoint was damaged: back to an earlier one
            del self.rows[epochs_kept:]
            self.best, self.best_epoch = (math.inf if self.mode == "min" else -math.inf), None
            for row in self.rows:
                self._consider(row)
            self._write_history()
        self.marks["rollbacks"] = count

    def on_epoch_end(self, epoch, logs=None):
        fit, state = self.fit_state(logs, -1)
        if not fit:
            return  # a diverged epoch leaves the last good checkpoint alone
        row = {"epoch": epoch + 1, **to_floats(logs), **learning_rates(self.optimizers), **self.marks}
        self.rows.append(row)
        self._write_history()
        if self.monitor and self.monitor not in row:  # no best.keras would ever be kept, in silence
            self._save(epoch, False, state)
            raise not_logged("train.monitor", self.monitor, row)
        self._save(epoch, self._consider(row), state)

    def _save(self, epoch: int, improved: bool, state: HostCopy | None) -> None:
        """The epoch's checkpoint, and best.keras (a copy of its file, not a second model.save) if the
        monitored value improved."""
        where = self.where
        best = (lambda: replace_atomic(where.best_checkpoint,
                                       lambda tmp: shutil.copyfile(where.last_checkpoint, tmp))) if improved else None
        self.checkpoint((epoch + 1) * self.steps_per_epoch, best, state)

    def fit_state(self, logs, step: int) -> tuple[bool, HostCopy | None]:
        """Whether the model may be checkpointed now (the guard's fit_to_keep), and its state on the host where
        the checkpoint thread will write it (LaterSave checked), else None: copied first, and the check reads
        the copy's weights, so the state leaves the device once."""
        later, state = self.later, None
        if later is not None and later.ready:
            self.model  # noqa: B018 - on JAX, the loop's state put back into the variables (Callback.model)
            state = later.copy()
        return self.guard.fit_to_keep(logs, step, None if state is None else state.weights), state

    def checkpoint(self, position: int, then=None, state: HostCopy | None = None) -> None:
        """A checkpoint of the model as it is now, `position` batches into training, and `then()` once it is in
        place: in the checkpoint thread where it can be (LaterSave), else here. An epoch's end and a checkpoint
        inside an epoch (MidEpochCheckpoint) both come here; `state`: fit_state()'s, taken just before."""
        model, where = self.model, self.where  # self.model: on JAX the loop's state put back into the variables
        save_rng = rng_sidecar_writer(model, self.optimizers, position)
        if self.background and self.later is None:
            self.later = LaterSave(model, self.optimizers)
        later = self.later
        if later is None or later.ready is False:
            where.save_checkpoint(model.save, save_rng, then)
        elif later.ready is None:
            in_checkpoint_thread(later.first, lambda save_model: where.save_checkpoint(save_model, save_rng, then))
        else:
            where.save_checkpoint(state or later.copy(), save_rng, then, background=True)

    def _consider(self, row) -> bool:
        """Whether the row's monitored value is the best so far (and keep it as that)."""
        value = row.get(self.monitor) if self.monitor else None
        if value is not None and (value < self.best if self.mode == "min" else value > self.best):
            self.best, self.best_epoch = value, row["epoch"]
            return True
        return False

    def _write_history(self):
        keys = list(dict.fromkeys(k for r in self.rows for k in r))

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(self.rows)

        replace_atomic(self.where.history, write)


class TensorBoardWriter(keras.callbacks.Callback):
    """`train.tensorboard`: each epoch's logs (every loss and metric the epoch logged, a GAN's two losses
    and its statistics included) and each optimizer's learning rate as TensorBoard scalars, and the epoch's
    sample grid as an image where the task draws one, under `logdir`. Steps are epochs, so a resumed run
    continues its curves. The writer is TensorFlow's (`tf.summary`); `available()` says whether it is here."""

    def __init__(self, logdir, where, optimizers: dict):
        super().__init__()
        self.logdir, self.where, self.optimizers = logdir, where, optimizers
        self.writer = None

    @staticmethod
    def available() -> bool:
        return backend.tensorflow() is not None

    def on_train_begin(self, logs=None):
        tf = backend.tensorflow()
        self.writer = tf.summary.create_file_writer(str(self.logdir))

    def on_epoch_end(self, epoch, logs=None):
        tf = backend.tensorflow()
        values = {**to_floats(logs), **learning_rates(self.optimizers)}
        grid = self.where.root / "samples" / f"epoch_{epoch + 1:03d}.png"  # as PhaseDir.sample_grid names it
        with self.writer.as_default(step=epoch + 1):
            for key, value in values.items():
                tf.summary.scalar(key, value)
            if grid.is_file():
                from PIL import Image

                with Image.open(grid) as im:
                    image = np.asarray(im.convert("RGB"))
                tf.summary.image("samples", image[None])
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
