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


def test_stop_training_reaches_the_callbacks_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = keras.callbacks.Callback()
    callback.set_model(model)
    model.stop_training = False
    keras_private.stop_training(callback)
    assert model.stop_training is True


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


def test_track_rnn_state_makes_the_state_a_variable_of_the_model(tmp_path):
    """A stateful layer's state is a non-trainable variable of the model (what the JAX trainer carries from
    batch to batch), saved with it, carried between calls and reset to zero by reset_state()."""
    from dlkit.models.recurrent_layers import StatefulLSTM

    tokens = keras.Input(batch_shape=(2, 3))
    model = keras.Model(tokens, StatefulLSTM(4, stateful=True, name="lstm")(keras.layers.Reshape((3, 1))(tokens)))
    layer = model.get_layer("lstm")
    assert [v.name for v in model.non_trainable_variables if v.name == "rnn_state"] == ["rnn_state", "rnn_state"]
    x = np.ones((2, 3), "float32")
    a, b = np.asarray(model(x)), np.asarray(model(x))
    assert not np.allclose(a, b)
    layer.reset_state()
    np.testing.assert_allclose(np.asarray(model(x)), a, atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    states = [(v, w) for v, w in zip(model.non_trainable_variables, loaded.non_trainable_variables)
              if v.name == "rnn_state"]
    assert len(states) == 2 and np.abs(np.asarray(states[0][0])).sum() > 0
    for v, w in states:
        np.testing.assert_allclose(np.asarray(v), np.asarray(w))


def test_local_values_swaps_a_jax_variables_array_and_puts_it_back():
    # Keras's JAX variables keep their array in `_value` (runs over several processes copy it to the local
    # device for epoch-end pictures, tests/test_distribution.py); checked here on the JAX variable class itself
    import jax
    from keras.src.backend.jax.core import Variable

    from dlkit.keras_private import local_values, put_back

    v = Variable(initializer=np.arange(3, dtype="float32"))

    class Holder:  # what local_values reads of a model
        variables = [v, v]  # a shared variable is copied once

        def _flatten_layers(self, include_self=True, recursive=True):
            return []

    original = v._value
    saved = local_values(Holder())
    assert len(saved) == 1 and v._value is not original and isinstance(v._value, jax.Array)
    np.testing.assert_array_equal(np.asarray(v._value), [0, 1, 2])
    put_back(saved)
    assert v._value is original


def test_attention_from_projections_is_the_layers_own():
    """Projecting with the layer's own projections and attending with `attend` gives the layer's output."""
    layer = keras.layers.MultiHeadAttention(2, 3, dropout=0.1)
    rng = np.random.default_rng(0)
    q_in, kv_in = rng.normal(size=(2, 4, 5)).astype("float32"), rng.normal(size=(2, 6, 5)).astype("float32")
    mask = rng.random((2, 4, 6)) < 0.7
    mask[:, :, 0] = True
    expected = np.asarray(layer(q_in, kv_in, attention_mask=mask))
    query, key, value = keras_private.attention_projections(layer)
    got = keras_private.attend(layer, query(q_in), key(kv_in), value(kv_in), mask)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)
    assert not np.allclose(np.asarray(keras_private.attend(layer, query(q_in), key(kv_in), value(kv_in), None)),
                           expected, atol=1e-3)  # the mask counts


def test_build_for_has_fit_trace_the_training_step_once():
    """On TensorFlow on one device Keras builds the optimizer and the compiled metrics inside the first trace
    of the training step, and TensorFlow then traces the step again; built beforehand from the batches' spec,
    the step is traced once. (A Keras that traces once by itself makes the first count 1: the helper is then
    no longer needed.)"""
    import tensorflow as tf

    traces = []

    class Counted(keras.Sequential):
        def train_step(self, data):
            traces.append(data)
            return super().train_step(data)

    batches = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.arange(8) % 2)).batch(4)
    counts, weights = [], []
    for prebuilt in (False, True):
        traces.clear()
        keras.utils.set_random_seed(0)
        model = Counted([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if prebuilt:
            keras_private.build_for(model, batches)
            assert model.optimizer.built and {"total", "count"} <= {v.name for v in model.metrics_variables}
        history = model.fit(batches, epochs=2, verbose=0, shuffle=False)
        counts.append(len(traces))
        weights.append((model.get_weights(), history.history))
    assert counts == [2, 1]
    assert weights[0][1] == weights[1][1]  # the same training
    for a, b in zip(weights[0][0], weights[1][0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_build_for_has_evaluate_of_a_loaded_model_trace_its_step_once(tmp_path):
    """A model loaded from its file builds its compiled metrics inside the first trace of the test step:
    `dlkit evaluate` builds them beforehand, and the step is traced once, to the same figures."""
    import tensorflow as tf

    traces = []

    @keras.saving.register_keras_serializable(package="dlkit_test")
    class Tested(keras.Sequential):
        def test_step(self, data):
            traces.append(data)
            return super().test_step(data)

    batches = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.arange(8) % 2)).batch(4)
    model = Tested([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    counts, figures = [], []
    for prebuilt in (False, True):
        traces.clear()
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        if prebuilt:
            keras_private.build_for(loaded, batches)
        figures.append(loaded.evaluate(batches, verbose=0, return_dict=True))
        counts.append(len(traces))
    assert counts == [2, 1] and figures[0] == figures[1]


def test_scored_computes_a_loss_and_metrics_as_fit_does():
    """Keras's CompileLoss and CompileMetrics resolve names for the targets: `accuracy` on class indices is
    the sparse one, and the sparse losses take them; the dense forms raise."""
    import pytest

    y, y_pred = np.array([3, 1, 0]), np.full((3, 10), 0.1, "float32")
    keras_private.scored("sparse_categorical_crossentropy", ["accuracy", "sparse_top_k_categorical_accuracy"],
                         y, y_pred)
    with pytest.raises(Exception, match="Incompatible shapes|broadcasting"):
        keras_private.scored("mse", [], y, y_pred)
    with pytest.raises(Exception):
        keras_private.scored(None, ["top_k_categorical_accuracy"], y, y_pred)


def test_global_state_kept_puts_back_the_streams_and_names():
    import random

    def draws():
        return (random.random(), float(np.random.random()), keras.ops.convert_to_numpy(keras.random.normal((3,))),
                keras.layers.Dense(1).name)

    keras.backend.clear_session()  # the layer names' count starts again
    keras.utils.set_random_seed(5)
    keras.random.normal((1,))  # the global SeedGenerator exists and has moved
    with keras_private.global_state_kept():
        draws()
        keras.layers.Dropout(0.5)  # a new SeedGenerator, seeded from Python's stream
    kept = draws()
    keras.backend.clear_session()
    keras.utils.set_random_seed(5)
    keras.random.normal((1,))
    free = draws()
    assert kept[:2] == free[:2] and kept[3] == free[3]
    np.testing.assert_array_equal(kept[2], free[2])


def test_global_state_holds_what_set_random_seed_sets():
    keras.utils.set_random_seed(11)
    keras.random.normal((1,))
    saved = keras_private.global_state()
    assert saved["seed"] == 11 and isinstance(saved["generator"], keras.random.SeedGenerator)
    keras.utils.set_random_seed(12)  # sets the seed, and drops the generator to make it again from the seed
    assert (keras_private.global_state()["seed"], keras_private.global_state()["generator"]) == (12, None)
    keras_private.put_back_global_state(saved)
    assert (keras_private.global_state()["seed"], keras_private.global_state()["generator"]) == (11, saved["generator"])
    again = keras.ops.convert_to_numpy(keras.random.normal((3,)))  # drawn from the generator given back
    keras.utils.set_random_seed(11)
    keras.random.normal((1,))
    np.testing.assert_array_equal(again, keras.ops.convert_to_numpy(keras.random.normal((3,))))


def test_logged_names_are_the_names_fit_logs():
    """One output and two (each output's loss, and its metrics prefixed with its name), with a metric added
    by a layer: the names predicted before training are the keys of fit's history, and the model's own
    compiled loss and metrics are still unbuilt (fit builds them)."""
    keras.utils.set_random_seed(0)

    class Counted(keras.layers.Layer):  # a layer with a metric of its own
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seen = keras.metrics.Sum(name="seen")

        def call(self, x):
            self.seen.update_state(keras.ops.cast(keras.ops.shape(x)[0], "float32"))
            return x

    x = np.random.default_rng(0).random((8, 3)).astype("float32")
    inputs = keras.Input((3,))
    one = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    one.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    y_one = np.array([0, 1] * 4)
    hidden = Counted()(keras.layers.Dense(4)(inputs))
    two = keras.Model(inputs, {"kind": keras.layers.Dense(2, activation="softmax", name="kind")(hidden),
                               "size": keras.layers.Dense(1, name="size")(hidden)})
    two.compile("sgd", {"kind": "sparse_categorical_crossentropy", "size": "mse"},
                metrics={"kind": ["accuracy"], "size": ["mae"]})
    y_two = {"kind": y_one, "size": x[:, :1]}
    for model, y in ((one, y_one), (two, y_two)):
        y_pred = keras.tree.map_structure(lambda o: np.zeros((8, *o.shape[1:]), "float32"), model.output)
        names = keras_private.logged_names(model, y, y_pred)
        assert not model._compile_metrics.built and not model._compile_loss.built
        history = model.fit(x, y, epochs=1, batch_size=4, verbose=0).history
        assert sorted(names) == sorted(history), (names, list(history))
    assert {"kind_loss", "size_loss", "kind_accuracy", "size_mae", "seen"} <= set(history)


def test_learning_rate_schedule_is_the_one_the_optimizer_follows():
    import keras

    from dlkit.keras_private import learning_rate_schedule

    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert learning_rate_schedule(keras.optimizers.Adam(schedule)) is schedule
    assert learning_rate_schedule(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(schedule))) is schedule
    assert learning_rate_schedule(keras.optimizers.Adam(0.01)) is None


def test_keep_saving_skipsets_lets_a_thread_save_inside_a_stateless_scope(tmp_path):
    """Keras's saving builds reference objects (with variables) unless the thread keeps its skip sets; after
    keep_saving_skipsets a save inside a StatelessScope, which refuses new variables, works in that thread
    and writes the scope's values."""
    import threading

    import keras

    from dlkit.keras_private import keep_saving_skipsets

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    errors = []

    def save():
        try:
            keep_saving_skipsets()
            with keras.StatelessScope(state_mapping=[(v, np.full(v.shape, 3.0, v.dtype)) for v in model.variables]):
                model.save(tmp_path / "m.keras")
        except Exception as e:  # noqa: BLE001 - reported by the assertion
            errors.append(e)

    thread = threading.Thread(target=save)
    thread.start()
    thread.join()
    assert not errors, errors
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert all(np.all(np.asarray(v) == 3.0) for v in loaded.variables)
    assert not all(np.all(np.asarray(v) == 3.0) for v in model.variables)  # the live ones untouched


def test_recording_scope_records_a_variable_read_outside_its_mapping():
    import keras

    from dlkit.keras_private import recording_scope

    a, b = keras.Variable(np.ones(2, "float32"), name="a"), keras.Variable(np.zeros(2, "float32"), name="b")
    with recording_scope([(a, np.full(2, 5.0, "float32"))]) as scope:
        assert float(np.asarray(a.value)[0]) == 5.0 and float(np.asarray(b.value)[0]) == 0.0
    assert scope.missed == [b.path]
