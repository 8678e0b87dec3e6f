"""Recurrent forecaster (many-to-many): a window of `input_steps` rows of a series -> RNN/LSTM/GRU
layers -> the next `horizon` steps of the target columns, all at once."""

from __future__ import annotations

from typing import Literal

from dlkit.models.recurrent import RecurrentConfig, head, stack

TASK = "forecasting"


class Config(RecurrentConfig):
    arch: Literal["rnn_forecaster"] = "rnn_forecaster"


def build(config: Config, spec):
    import keras

    from dlkit.models import layers

    window = keras.Input(shape=spec.input_shape, name="window")
    x = head(stack(window, config, return_sequences=False), config)
    steps, targets = spec.target_shape
    # the output in float32 under a mixed precision too (layers.classifier_head)
    x = keras.layers.Dense(steps * targets, kernel_initializer=layers.initializer(config.initializer),
                           name="forecast", dtype="float32")(x)
    return keras.Model(window, keras.layers.Reshape((steps, targets), dtype="float32")(x), name="rnn_forecaster")
