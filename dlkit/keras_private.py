"""Every use dlkit makes of Keras internals, in one place.

Keras does not make these public; a release may move them. tests/test_keras_private.py exercises each one
against the installed Keras, so an upgrade that breaks one fails there, by name, rather than deep inside a
GAN's training step or a resume.
"""

from __future__ import annotations

import contextlib


def current_stateless_scope():
    """The innermost `keras.StatelessScope` being entered, or None (JAX: the adversarial steps read the
    values Keras's jitted trainer maps onto the variables)."""
    from keras.src.backend.common.stateless_scope import get_stateless_scope

    return get_stateless_scope()


def stop_training(callback) -> None:
    """Ask the fit a callback belongs to to stop, through the callback's `_model`: on JAX the public `model`
    property first copies the training state into the model's variables, which a callback running in Keras's
    callback thread (async_safe) must not do while the loop steps on."""
    callback._model.stop_training = True


def keep_saving_skipsets() -> None:
    """Keras's saving finds, for each kind of object it walks (Layer, Optimizer, Metric, ...), the attributes
    to skip by building a reference object (an `Optimizer(1.0)`, which makes variables), and means to keep the
    result per thread (global_state), but stores it under another key than it reads (`saving_attr_skipset_`,
    read as `saving_attr_skiplist_`; Keras 3.15), so every save builds them again. Kept here, in the calling
    thread, under the key it reads: a `model.save` inside a keras.StatelessScope, which refuses new
    variables, then works in this thread."""
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    for kind in ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss"):
        global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", saving_lib.get_attr_skipset(kind))


def recording_scope(mapping):
    """A keras.StatelessScope over `mapping` [(variable, value)] that also records, in `missed`, the path of
    every variable read while inside that the mapping does not hold (a variable's value is read through the
    scope's get_current_value; outside the mapping it is the live one)."""
    import keras

    class Recording(keras.StatelessScope):
        def __init__(self):
            super().__init__(state_mapping=mapping)
            self.missed = []

        def get_current_value(self, variable):
            value = super().get_current_value(variable)
            if value is None:
                self.missed.append(variable.path)
            return value

    return Recording()


def learning_rate_schedule(optimizer):
    """The LearningRateSchedule an optimizer's rate follows (float16's LossScaleOptimizer: its inner
    optimizer's), or None for a plain rate. The public `learning_rate` evaluates it, eagerly."""
    import keras

    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = optimizer._learning_rate
    return schedule if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) else None


def seed_generators(model) -> list:
    """Every `keras.random.SeedGenerator` held by the model and the layers inside it (dropout, noise, the
    model's own), each once, in a fixed order. Keras saves variables but not these generators' states."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in layer._seed_generators:
            if id(generator.state) not in seen:
                seen.add(id(generator.state))
                found.append(generator)
    return found


def global_state() -> dict:
    """The process's random streams and names as they stand: Python's and NumPy's global generators (Keras
    seeds new SeedGenerators from Python's), Keras's global seed and global SeedGenerator (unseeded
    initializers draw from it; its state's value too) and its count of each layer name used. To give back to
    put_back_global_state."""
    import random

    import numpy as np
    from keras.src.backend.common import global_state as keras_state

    generator = keras_state.get_global_attribute("global_seed_generator")
    names = keras_state.get_global_attribute("object_name_uids")
    return {"python": random.getstate(), "numpy": np.random.get_state(), "generator": generator,
            "state": None if generator is None else generator.state.value * 1,  # a copy: assigned in place
            "seed": keras_state.get_global_attribute("global_random_seed"),
            "names": None if names is None else names.copy()}


def put_back_global_state(saved: dict) -> None:
    import random

    import numpy as np
    from keras.src.backend.common import global_state as keras_state

    random.setstate(saved["python"])
    np.random.set_state(saved["numpy"])
    keras_state.set_global_attribute("global_seed_generator", saved["generator"])
    if saved["generator"] is not None:
        saved["generator"].state.assign(saved["state"])
    keras_state.set_global_attribute("global_random_seed", saved["seed"])
    keras_state.set_global_attribute("object_name_uids", saved["names"])


@contextlib.contextmanager
def global_state_kept():
    """Inside, build models that are then thrown away without moving the process's random streams or Keras's
    automatic names (global_state): each is put back as it was on leaving, so the models built after are the
    ones built without the block."""
    saved = global_state()
    try:
        yield
    finally:
        put_back_global_state(saved)


def track_rnn_state(layer) -> None:
    """Make a stateful Keras RNN layer's state variables part of its state: created in `build` by
    `RNN._create_state_variables`, which Keras keeps out of tracking, so on JAX the trainer never carries
    them from batch to batch (a stateful layer acts stateless) and no checkpoint holds them. Called from
    the layer's `build`, while its tracker is open."""
    from keras import tree

    for variable in tree.flatten(layer.states):
        layer._track_variable(variable)


def local_values(model) -> list:
    """JAX, in a run over several processes: give each of the model's variables (and its random streams) a
    copy of its value on this process's own device, so that the model can run by itself (an epoch's
    pictures), and return what `put_back` restores. Keras's variables hold their array in `_value`; assigning
    would spread it over every process's devices again."""
    import jax
    import numpy as np

    saved, seen = [], set()
    variables = list(model.variables) + [g.state for g in seed_generators(model)]
    for v in variables:
        if id(v) in seen:
            continue
        seen.add(id(v))
        saved.append((v, v._value))
        v._value = jax.device_put(np.asarray(v._value))
    return saved


def put_back(saved: list) -> None:
    """The values `local_values` set aside, back in their variables."""
    for v, value in saved:
        v._value = value


def attention_projections(layer) -> tuple:
    """A `keras.layers.MultiHeadAttention`'s query, key and value projections (EinsumDense layers: (B, T, D)
    -> (B, T, heads, key_dim)), for a decoder that caches projected keys and values between steps."""
    if layer._use_gate:
        raise ValueError(f"{layer.name}: a gated attention layer is not supported here")
    return layer._query_dense, layer._key_dense, layer._value_dense


def attend(layer, query, key, value, mask):
    """The attention of a `keras.layers.MultiHeadAttention` from projected query (B, T, heads, key_dim), keys
    and values (B, S, heads, key_dim) under `mask` (B, T, S), through its output projection: what the layer's
    call computes after projecting its inputs (`_compute_attention`, which Keras documents as the method to
    override for custom attention)."""
    out, _ = layer._compute_attention(query, key, value, mask)
    return layer._output_dense(out)


def build_for(model, batches) -> None:
    """Build what a compiled model still lacks for `fit` or `evaluate` on `batches` (its compiled loss,
    metrics and optimizer) from the shapes and dtypes of their tf.data element spec, with no data and no
    trace. TensorFlow only, where Keras gets it wrong:
    - on one device it leaves this to the first trace of the step, and TensorFlow traces a function whose
      first trace made variables a second time;
    - under a MirroredStrategy it builds at the start of every fit and evaluate from their first batch,
      averaged over the replicas, and a batch the replicas split unevenly (a validation split smaller than
      one batch, of odd size) fails there with an AddN shape error. Here the build is made inside the
      strategy's scope, and that per-call build from a batch is turned off for this model.
    Nothing for other batches or backends."""
    import keras

    spec = getattr(batches, "element_spec", None)  # tf.data's
    if spec is None or keras.backend.backend() != "tensorflow":
        return
    strategy = model._distribute_strategy
    if strategy is None:
        model._symbolic_build(data_batch=spec)
        return
    with strategy.scope():
        model._symbolic_build(data_batch=spec)
    model._maybe_symbolic_build = _already_built


def _already_built(iterator=None, data_batch=None) -> None:
    """Keras's TensorFlow trainer's `_maybe_symbolic_build`, for a model build_for has built."""


def replicate_uneven_batches() -> None:
    """On JAX, under a keras.distribution.DataParallel in one process: a batch the devices cannot split evenly
    (the last of a split whose size they do not divide) goes whole to every device, which all compute it, as
    one device would. Keras splits every batch over the devices and does not pad (keras-team/keras#21167),
    so such a batch was an IndivisibleError in the first validation. Process-wide, once; other batches,
    several processes and runs without a distribution are distributed as Keras does."""
    import keras
    from keras.src.backend.jax import trainer

    if getattr(trainer._distribute_data, "dlkit", False):
        return
    keras_distribute = trainer._distribute_data

    def distribute(data, layouts=None):
        import jax

        mesh = getattr(keras.distribution.distribution(), "device_mesh", None)
        if (mesh is not None and jax.process_count() == 1 and mesh.devices.size > 1
                and _uneven(data, mesh.devices.size)):  # `layouts`, Keras's from the first batch, would split it
            whole = jax.sharding.NamedSharding(mesh.backend_mesh, jax.sharding.PartitionSpec())
            return keras.tree.map_structure(lambda d: None if d is None else jax.device_put(d, whole), data)
        return keras_distribute(data, layouts)

    distribute.dlkit = True
    trainer._distribute_data = distribute


def _uneven(data, devices: int) -> bool:
    import keras

    return any(len(d.shape) and d.shape[0] % devices for d in keras.tree.flatten(data) if d is not None)


def logged_names(model, y, y_pred) -> list[str]:
    """The names of the values a compiled model's training steps log, in Keras's order: `loss`, each output's
    loss when there are several, each compiled metric (prefixed with its output's name when there are several
    outputs), then any metric of the model's own or its layers'. Keras knows them only once the first step
    has built its CompileLoss and CompileMetrics on a batch; here they come from instances of their own,
    built on (y, y_pred) as that step would build them: the model's are left untouched."""
    from keras.src.trainers.compile_utils import CompileLoss, CompileMetrics

    names = [] if model._loss_tracker is None else [model._loss_tracker.name]
    compiled = model._compile_loss
    if compiled is not None:
        own_loss = CompileLoss(compiled._user_loss, compiled._user_loss_weights, output_names=compiled.output_names)
        own_loss.build(y, y_pred)
        names += [m.name for m in own_loss.metrics]
    compiled = model._compile_metrics
    if compiled is not None:
        own_metrics = CompileMetrics(compiled._user_metrics, compiled._user_weighted_metrics,
                                     output_names=compiled.output_names)
        own_metrics.build(y, y_pred)
        names += list(own_metrics.result())
    known = {id(m) for m in (model._loss_tracker, model._compile_metrics)}
    known |= {id(m) for m in (model._compile_loss.metrics if model._compile_loss is not None else ())}
    return names + [m.name for m in model.metrics if id(m) not in known]


def scored(loss, metrics: list, y, y_pred) -> None:
    """Compute `loss` (compile's argument; None for none) or `metrics` (compile's list) on (y, y_pred) the
    way `fit` does, through Keras's CompileLoss and CompileMetrics (which resolve a name for the targets'
    shape and squeeze or expand ranks), on instances of their own: the model's are left untouched. Raises
    what the first training step would raise."""
    from keras.src.trainers.compile_utils import CompileLoss, CompileMetrics

    if loss is not None:
        CompileLoss(loss)(y, y_pred)
    if metrics:
        compiled = CompileMetrics(metrics, None)
        compiled.build(y, y_pred)
        compiled.update_state(y, y_pred)
