"""The random-number state inside a Keras model: every `SeedGenerator` (the model's own, dropout layers',
noise layers'). Keras saves variables but not these states, so a resumed run would redraw the same dropout
masks and noise as epoch 1; dlkit saves them with checkpoints so that resuming continues the stream."""

from __future__ import annotations

import numpy as np

from dlkit import keras_private


def seed_states(model) -> list:
    """The state variables of every SeedGenerator in the model and its layers, in a fixed order."""
    return [generator.state for generator in keras_private.seed_generators(model)]


def snapshot(model) -> list[np.ndarray]:
    """The model's seed states now, copies on the host (a checkpoint's sidecar may be written after the next
    steps have used the device's)."""
    from dlkit import backend

    return backend.to_host(seed_states(model))


def restore(model, values) -> bool:
    """Assign saved states; False (nothing changed) if they do not fit this model's generators."""
    states = seed_states(model)
    if len(states) != len(values) or any(tuple(s.shape) != tuple(np.shape(v)) for s, v in zip(states, values)):
        return False
    for state, value in zip(states, values):
        state.assign(value)
    return True
