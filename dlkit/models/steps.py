"""Models with a training step of their own (level 3 of the keras-io guides: GANs, the VAE, the RBM),
written once, statefully, in `keras.ops`, for TensorFlow and JAX.

`StepModel.grad` is the one backend-specific piece: a GradientTape on TensorFlow, `jax.value_and_grad`
over a `StatelessScope` on JAX. `StepModel.descend` takes one optimizer step with it, scaling the loss under
`train.precision: mixed_float16` as Keras's own step does. On JAX the whole step runs inside a
`StatelessScope` over the state Keras's jitted trainer threads through, so the stateful code works there
too. The model's own `SeedGenerator` and
every other random stream in it (dropout, noise layers) are saved with the model, so a checkpoint carries
them and a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import keras
from keras import ops

from dlkit import keras_private
from dlkit.models import rng


def check_backend(arch: str) -> None:
    """The models with their own step take gradients on TensorFlow or JAX."""
    from dlkit.errors import Problem, RecipeError

    if keras.backend.backend() not in ("tensorflow", "jax"):
        raise RecipeError([Problem("model.arch", f"{arch} trains on the tensorflow or jax backend; KERAS_BACKEND "
                                   f"is {keras.backend.backend()!r}", hint="set KERAS_BACKEND=jax or unset it")])


class StepModel(keras.Model):
    """Subclasses write `step(data) -> logs` (one training step: each optimizer's update through `descend`,
    or gradients of their own through `optimizer.apply`, trackers updated) and may write `measure(data) ->
    logs` (one evaluation step)."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {}

    def track(self, *names):
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.built = True  # the sub-models are built functional models

    @property
    def metrics(self):
        return list(self.trackers.values())

    def step(self, data) -> dict:
        raise NotImplementedError

    def measure(self, data) -> dict:
        """One evaluation step; by default the trackers as they stand."""
        return {m.name: m.result() for m in self.metrics}

    # Keras saves variables but not SeedGenerator states (the model's own, the dropout layers'); keep them
    # all, so that a checkpoint resumes the same random stream.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, value in enumerate(rng.snapshot(self)):
            store[f"rng_{i}"] = value

    def load_own_variables(self, store):
        keys = sorted((k for k in store.keys() if k.startswith("rng_") and k[4:].isdecimal()), key=lambda k: int(k[4:]))
        rng.restore(self, [store[k] for k in keys])
        super().load_own_variables({k: store[k] for k in store.keys() if not k.startswith("rng_")})

    # ------------------------------------------------------------ backend-specific

    def train_step(self, *args):
        """Keras calls train_step(data) on TensorFlow and train_step(state, data) on JAX."""
        return self._run(self.step, args, lambda: (self.trainable_variables, self.non_trainable_variables,
                                                   self.optimizer.variables, self.metrics_variables))

    def test_step(self, *args):
        return self._run(self.measure, args, lambda: (self.trainable_variables, self.non_trainable_variables,
                                                      self.metrics_variables))

    def _run(self, fn, args, state_groups):
        """fn(data) as it is on TensorFlow; on JAX inside a StatelessScope over the state Keras passes in
        (grouped as `state_groups()` lists the variables), returning the state fn leaves."""
        if keras.backend.backend() != "jax":
            return fn(args[0])
        state, data = args
        groups = state_groups()
        mapping = [(v, value) for variables, values in zip(groups, state) for v, value in zip(variables, values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = fn(data)
        return logs, tuple([scope.get_current_value(v) for v in variables] for variables in groups)

    def descend(self, optimizer, fn, variables):
        """One step of `optimizer` down the loss of fn() -> (loss, aux) with respect to `variables`; returns aux.

        Under `train.precision: mixed_float16` the optimizer is Keras's LossScaleOptimizer, as Keras's own step
        has it: the loss is multiplied by its scale before the gradients are taken (a float16 gradient smaller
        than 6e-8 would be zero), and the optimizer divides them back, skipping a step whose gradients
        overflowed and halving the scale, or doubling it after a run of finite steps."""
        scale = _loss_scale(optimizer)
        aux, grads = self.grad(fn if scale is None else _scaled(fn, scale), variables)
        if keras.backend.backend() == "jax" and isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            # its stateful apply assigns inside lax.cond's branches: a leaked tracer in the traced step
            _jax_apply(optimizer, grads, variables)
        else:
            optimizer.apply(grads, variables)
        return aux

    def grad(self, fn, variables):
        """(aux, gradients of loss wrt variables) for fn() -> (loss, aux); fn may update other state."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss, aux = fn()
                # under a MirroredStrategy the replicas' gradients are summed: each takes its share of the mean
                scaled = loss / replicas() if replicas() > 1 else loss
            return aux, tape.gradient(scaled, variables)
        if backend == "jax":
            return _jax_grad(self, lambda values: fn(), variables, [v.value for v in variables])
        raise NotImplementedError(f"dlkit's own training steps need the tensorflow or jax backend, not {backend}")

    def input_grad(self, fn, x):
        """Gradient of sum(fn(x)) with respect to the tensor x (WGAN-GP's penalty)."""
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tape.watch(x)
                out = fn(x)
            return tape.gradient(out, x)
        _, grads = _jax_grad(self, lambda values: (ops.sum(fn(values[0])), None), [], [x])
        return grads[0]


def _loss_scale(optimizer):
    """A LossScaleOptimizer's current scale, read here, outside the gradient: on JAX the trainer's state is
    visible in the step's StatelessScope, not in the one the gradient is traced in. None for any other."""
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    return optimizer.scale_loss(ops.convert_to_tensor(1.0, "float32"))


def _scaled(fn, scale):
    """fn() -> (loss, aux) with its loss multiplied by `scale`."""
    def scaled():
        loss, aux = fn()
        return ops.multiply(loss, ops.cast(scale, loss.dtype)), aux
    return scaled


def _jax_apply(optimizer, grads, variables):
    """optimizer.apply for a LossScaleOptimizer on JAX, through its stateless_apply (its finite and overflow
    branches are pure there) on the values the step's StatelessScope holds, assigned back to that scope."""
    outer = keras_private.current_stateless_scope()
    new_values, new_state = optimizer.stateless_apply([_current(outer, v) for v in optimizer.variables], grads,
                                                      [_current(outer, v) for v in variables])
    for v, value in zip([*variables, *optimizer.variables], [*new_values, *new_state]):
        v.assign(value)


def _current(scope, v):
    """v's value in a StatelessScope (on JAX, the state Keras's trainer threads through the step), else its own."""
    value = scope.get_current_value(v) if scope is not None else None
    return v.value if value is None else value


def replicas() -> int:
    """How many replicas a TensorFlow MirroredStrategy runs the step in (1 elsewhere; on JAX a data-parallel
    step is one global computation). Their gradients are summed, so a step's own gradients of a mean are
    divided by this, as Keras's own train step does."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync if tf.distribute.has_strategy() else 1


def _jax_grad(model, fn, variables, values):
    """jax.value_and_grad of fn(values) -> (loss, aux), where `values` stand in for `variables` (or are plain
    inputs when `variables` is empty). Every other model variable is read at its current value in the
    enclosing StatelessScope, and what fn assigns (batch-norm statistics, RNG states) is assigned back there
    after the trace, so no tracer escapes."""
    import jax

    outer = keras_private.current_stateless_scope()
    replaced = {id(v) for v in variables}
    others = [v for v in model.variables if id(v) not in replaced]

    def pure(vals):
        mapping = [(v, _current(outer, v)) for v in others] + list(zip(variables, vals))
        with keras.StatelessScope(state_mapping=mapping) as inner:
            loss, aux = fn(vals)
        return loss, (aux, [inner.get_current_value(v) for v in others])

    (_, (aux, updates)), grads = jax.value_and_grad(pure, has_aux=True)(list(values))
    for v, value in zip(others, updates):
        v.assign(value)
    return aux, grads
