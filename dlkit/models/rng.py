"""The random-number state inside a Keras model: every `SeedGenerator` (the model's own, dropout layers',
noise layers'). Keras saves variables but not these states, so a resumed run would redraw the same dropout
masks and noise as epoch 1; dlkit saves them with checkpoints so that resuming continues the stream."""

from __future__ import annotations

import numpy as np


def seed_states(model) -> list:
    """The state variables of every SeedGenerator in the model and its layers, in a fixed order."""
    states, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator.state) not in seen:
                seen.add(id(generator.state))
                states.append(generator.state)
    return states


def snapshot(model) -> list[np.ndarray]:
    import keras

    return [keras.ops.convert_to_numpy(s.value) for s in seed_states(model)]


def restore(model, values) -> bool:
    """Assign saved states; False (nothing changed) if they do not fit this model's generators."""
    states = seed_states(model)
    if len(states) != len(values) or any(tuple(s.shape) != tuple(np.shape(v)) for s, v in zip(states, values)):
        return False
    for state, value in zip(states, values):
        state.assign(value)
    return True
