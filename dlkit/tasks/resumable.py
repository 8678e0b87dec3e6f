"""Keras's EarlyStopping and ReduceLROnPlateau, made to survive `dlkit resume`."""

from __future__ import annotations

import keras


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


