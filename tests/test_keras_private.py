"""dlkit's uses of Keras internals (dlkit/keras_private.py), each exercised against the installed Keras: a
release that moves one fails here, by name."""

from __future__ import annotations

import keras
import numpy as np

from dlkit import keras_private


def test_current_stateless_scope():
    assert keras_private.current_stateless_scope() is None
    v = keras.Variable(1.0)
    with keras.StatelessScope(state_mapping=[(v, keras.ops.convert_to_tensor(2.0))]) as scope:
        assert keras_private.current_stateless_scope() is scope
        assert float(keras_private.current_stateless_scope().get_current_value(v)) == 2.0


def test_seed_generators_finds_every_stream_once():
    inputs = keras.Input((4,))
    x = keras.layers.Dropout(0.5, seed=1)(inputs)
    x = keras.layers.GaussianNoise(0.1, seed=2)(keras.layers.Dense(3)(x))
    inner = keras.Model(inputs, x)
    outer_in = keras.Input((4,))
    model = keras.Model(outer_in, keras.layers.Dropout(0.2, seed=3)(inner(outer_in)))
    found = keras_private.seed_generators(model)
    assert len(found) == 3 and all(isinstance(g, keras.random.SeedGenerator) for g in found)
    assert len({id(g.state) for g in found}) == 3
    assert keras_private.seed_generators(model) == found  # a fixed order
    states = [np.asarray(keras.ops.convert_to_numpy(g.state.value)) for g in found]
    model(np.ones((2, 4), "float32"), training=True)  # drawing masks advances the streams
    assert any(not np.array_equal(s, keras.ops.convert_to_numpy(g.state.value)) for s, g in zip(states, found))
