"""Optimizers, learning-rate schedules, losses and metrics from a `train:` section, through Keras' own get().

Tasks call these to compile their models: one optimizer per optimizer role, each with its own clipping and
(optionally) its own schedule.
"""

from __future__ import annotations

import math
import weakref

from dlkit import catalog
from dlkit.errors import Problem, RecipeError


def schedule(cfg, learning_rate: float, steps_per_epoch: int, epochs: int):
    """A learning rate or a keras LearningRateSchedule. Durations in the recipe are epochs."""
    import keras

    s = keras.optimizers.schedules
    if cfg.name in ("constant", "plateau"):  # plateau is a callback, see callbacks()
        return learning_rate
    if cfg.name == "step" and cfg.hold_epochs > 0:  # the rate held, then cut by `factor` every step_epochs
        boundaries = []
        while len(boundaries) < 200 and cfg.hold_epochs + len(boundaries) * cfg.step_epochs < epochs:
            boundaries.append(max(1, round((cfg.hold_epochs + len(boundaries) * cfg.step_epochs) * steps_per_epoch)))
        if boundaries:
            return s.PiecewiseConstantDecay(boundaries, [learning_rate * cfg.factor**k for k in range(len(boundaries) + 1)])
        return learning_rate
    if cfg.name == "step":
        return s.ExponentialDecay(learning_rate, decay_steps=max(1, round(cfg.step_epochs * steps_per_epoch)),
                                  decay_rate=cfg.factor, staircase=True)
    if cfg.name == "exponential":
        return s.ExponentialDecay(learning_rate, decay_steps=steps_per_epoch, decay_rate=cfg.decay_rate)
    total = steps_per_epoch * epochs
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total - 1)
    if warmup > 0:
        return s.CosineDecay(0.0, decay_steps=max(1, total - warmup), alpha=cfg.final_fraction,
                             warmup_target=learning_rate, warmup_steps=warmup)
    return s.CosineDecay(learning_rate, decay_steps=max(1, total), alpha=cfg.final_fraction)


def optimizer(train_cfg, steps_per_epoch: int, cfg=None):
    """A keras optimizer from an OptimizerConfig (train.optimizer unless `cfg` is given), with its schedule."""
    import keras

    cfg = cfg or train_cfg.optimizer
    kwargs = cfg.model_dump(exclude={"name", "learning_rate", "schedule"})  # unset (None) fields are dropped
    if cfg.name == "momentum":
        kwargs.setdefault("momentum", 0.9)
    kwargs["learning_rate"] = schedule(cfg.schedule or train_cfg.schedule, cfg.learning_rate, steps_per_epoch,
                                       train_cfg.epochs)
    return keras.optimizers.get({"class_name": catalog.OPTIMIZERS[cfg.name], "config": kwargs})


def _unknown_names(train_cfg) -> list[Problem]:
    """train.loss and train.metrics entries the installed Keras has no loss or metric for, all together: the
    one of them compiled first would otherwise hide the other."""
    import keras

    problems = []
    try:
        if train_cfg.loss is not None:
            keras.losses.get(train_cfg.loss)
    except ValueError:
        problems.append(Problem("train.loss", f"unknown loss {train_cfg.loss!r}",
                                hint="use a keras.losses name, e.g. sparse_categorical_crossentropy"))
    for i, name in enumerate(getattr(train_cfg, "metrics", ())):
        if name in ("accuracy", "acc", "rmse"):
            continue
        try:
            keras.metrics.get(name)
        except ValueError:
            problems.append(Problem(f"train.metrics.{i}", f"unknown metric {name!r}",
                                    hint="use a keras.metrics name, e.g. accuracy, sparse_top_k_categorical_accuracy"))
    return problems


def loss(train_cfg, default):
    """train.loss if the recipe names one (checked against keras.losses), else `default`."""
    problems = _unknown_names(train_cfg)
    if problems:
        raise RecipeError(problems)
    return default if train_cfg.loss is None else train_cfg.loss


def metrics(train_cfg):
    import keras

    problems = _unknown_names(train_cfg)
    if problems:
        raise RecipeError(problems)
    # "rmse", which Keras does not know by that name, logged as `rmse` (not root_mean_squared_error)
    return [keras.metrics.RootMeanSquaredError(name="rmse") if name == "rmse" else name for name in train_cfg.metrics]


def steps_per_epoch(num_train: int, batch_size: int, cap: int | None) -> int:
    from dlkit import backend

    steps = max(1, num_train // batch_size) if backend.whole_batches() else math.ceil(num_train / batch_size)
    return min(steps, cap) if cap else steps


def steps_per_execution(requested: int, steps_per_epoch: int) -> int:
    """train.steps_per_execution as a run takes it: the largest count not above the recipe's that divides an
    epoch's steps. Keras runs whole executions, and on dlkit's stream of epochs one running past an epoch's
    end would take the next epoch's first batches into this one."""
    return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def compile_options(train, steps_per_epoch: int) -> dict:
    """What every task's `model.compile` takes from the recipe's train section besides its optimizers. Under
    TensorFlow's MirroredStrategy one step a call: Keras's TensorFlow trainer fails there with more
    (keras-team/keras#19246, "You must feed a value for placeholder tensor")."""
    from dlkit import backend

    steps = 1 if backend.mirrored() else steps_per_execution(train.steps_per_execution, steps_per_epoch)
    return {"jit_compile": False if train.run_eagerly else train.jit_compile, "run_eagerly": train.run_eagerly,
            "steps_per_execution": steps}


def _scaled_schedule_class():
    import keras

    @keras.saving.register_keras_serializable(package="dlkit", name="ScaledSchedule")
    class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """A learning-rate schedule times a constant factor: what a rollback after a NaN loss leaves in the
        optimizer (train.on_nan: rollback). Saved with the checkpoint, so a resumed run keeps the lower rate."""

        def __init__(self, schedule, factor: float):
            self.schedule = schedule
            self.factor = float(factor)

        def __call__(self, step):
            return self.schedule(step) * self.factor

        def get_config(self):
            return {"schedule": keras.optimizers.schedules.serialize(self.schedule), "factor": self.factor}

        @classmethod
        def from_config(cls, config):
            return cls(keras.optimizers.schedules.deserialize(config["schedule"]), config["factor"])

    return ScaledSchedule


_SCALED = []


def scaled_schedule_class():
    """The Keras class of a scaled schedule, registered once (importing keras lazily, as the rest of dlkit)."""
    if not _SCALED:
        _SCALED.append(_scaled_schedule_class())
    return _SCALED[0]


def take_schedule(optimizer, source) -> bool:
    """Give `optimizer` the learning-rate schedule of `source` (a freshly built optimizer of the same role),
    keeping a rollback's factor (ScaledSchedule) on it; a plain rate, which spans nothing, is left as it is.
    Whether the schedule changed. A compiled train function has the old one traced in."""
    import keras

    optimizer, source = (getattr(o, "inner_optimizer", o) for o in (optimizer, source))  # float16's loss scaling
    new, old = source.get_config()["learning_rate"], optimizer.get_config()["learning_rate"]
    if not isinstance(new, dict):
        return False
    deserialize, scaled = keras.optimizers.schedules.deserialize, scaled_schedule_class()
    fresh, was = deserialize(new), deserialize(old) if isinstance(old, dict) else None
    factor = was.factor if isinstance(was, scaled) else None  # as scale_learning_rate left it
    if factor is not None:
        was = was.schedule
    if was is not None and was.get_config() == fresh.get_config():
        return False
    optimizer.learning_rate = fresh if factor is None else scaled(fresh, factor)
    return True


_COMPILED = weakref.WeakKeyDictionary()  # schedule -> its compiled evaluation (backend.compiled)


def current_learning_rate(optimizer) -> float:
    """The optimizer's learning rate now, as `optimizer.learning_rate` gives it, but with a schedule
    compiled once (backend.compiled) and given the step count, not evaluated eagerly: on JAX that compiled
    a warm-up schedule's cond anew at every read, twice an epoch (docs/benchmarks.md, "On one GPU")."""
    import keras

    from dlkit import backend, keras_private

    schedule = keras_private.learning_rate_schedule(optimizer)
    if schedule is None:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    if schedule not in _COMPILED:  # through a weak reference: the entry goes with its schedule
        _COMPILED[schedule] = backend.compiled(lambda step, ref=weakref.ref(schedule): ref()(step))
    steps = getattr(optimizer, "inner_optimizer", optimizer).iterations  # the schedule's own count
    return float(keras.ops.convert_to_numpy(_COMPILED[schedule](steps.value)))


def scale_learning_rate(optimizer, factor: float) -> None:
    """Multiply an optimizer's learning rate by `factor` from now on: its variable when the rate is a number,
    else its schedule wrapped in a ScaledSchedule (a scaled one's factor multiplied). A model's compiled train
    function has the old schedule traced in; make_train_function(force=True) after this."""
    import keras

    scaled = scaled_schedule_class()
    config = optimizer.get_config()["learning_rate"]
    if not isinstance(config, dict):  # a plain rate, held in a variable (the plateau schedule lowers it too)
        optimizer.learning_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) * factor
        return
    schedule = keras.optimizers.schedules.deserialize(config)
    if isinstance(schedule, scaled):
        optimizer.learning_rate = scaled(schedule.schedule, schedule.factor * factor)
    else:
        optimizer.learning_rate = scaled(schedule, factor)
