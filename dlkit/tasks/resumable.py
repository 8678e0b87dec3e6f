"""Keras's EarlyStopping and ReduceLROnPlateau, made to survive `dlkit resume`, and the check that what they
and the best checkpoint monitor is a value the epochs log."""

from __future__ import annotations

import keras

from dlkit.errors import Problem, RecipeError


def not_logged(key: str, name: str, logs: dict) -> RecipeError:
    """A monitored name the epochs do not log (`key` names it in the recipe). The names are known only once
    an epoch has logged them: a misspelt one picked no best checkpoint and stopped nothing, in silence."""
    logged = ", ".join(k for k in logs if k not in ("epoch", "learning_rate"))
    return RecipeError([Problem(key, f"{name!r} is not a value the epochs log ({logged}); the run stopped after an "
                                "epoch", hint=f"set {key} to one of those and train again")])


class _Replaying:
    """Mixed into EarlyStopping and ReduceLROnPlateau for `dlkit resume`: after Keras resets them at the start
    of fit, the epochs already run (history.csv's rows) are fed through their own on_epoch_end, so patience,
    best value and cooldown pick up where the interrupted run left them instead of starting over."""

    def __init__(self, *args, rows=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = rows  # the history keeper's own list: a run resumed inside an epoch fits twice, and the
        # second fit replays the epoch the first one finished too

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for i, row in enumerate(self.rows):
            self._replay(i, dict(row))
        self.model.stop_training = False

    def _replay(self, epoch, logs):
        self.on_epoch_end(epoch, logs)


class ResumableEarlyStopping(_Replaying, keras.callbacks.EarlyStopping):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.monitor not in logs:  # Keras warns and never stops
            raise not_logged("train.early_stopping.monitor", self.monitor, logs)
        super().on_epoch_end(epoch, logs)

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


