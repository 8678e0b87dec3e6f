"""What tasks trained by plain compile/fit share (level 1 of the keras-io guides): one optimizer (role
`model`), one loss, metrics, a monitored value picking the best checkpoint, early stopping and the plateau
schedule, both resumable."""

from __future__ import annotations

from typing import ClassVar

from dlkit import optim
from dlkit.recipe.schema import FitTrain, improves
from dlkit.tasks.base import Callbacks, FitContext, Task


class FitTask(Task):
    Train = FitTrain
    roles = ("model",)
    default_loss: ClassVar[str]  # the loss when neither train.loss nor the architecture names one
    # token sequences padded with id 0: the default loss is cross-entropy on logits that skips the padding
    token_loss: ClassVar[bool] = False
    measures_test_each_epoch: ClassVar[bool] = False  # its callbacks log the test split's measures (SplitMeasures)

    def compile(self, model, recipe, steps_per_epoch, phase):
        cfg = recipe.train
        model.compile(optimizer=optim.optimizer(cfg, steps_per_epoch), loss=self.loss(model, recipe),
                      metrics=optim.metrics(cfg), **optim.compile_options(cfg, steps_per_epoch))
        return model

    def loss(self, model, recipe):
        """The loss a freshly built model is compiled with: train.loss, else the architecture's, else the task's."""
        cfg = recipe.train
        default = recipe.model.loss()
        if self.token_loss and cfg.loss is None and default is None:
            import keras

            return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
        return optim.loss(cfg, self.default_loss if default is None else default)

    def check_targets(self, model, recipe, data):
        """The train.loss and train.metrics entries the recipe names itself (the task's defaults are known to
        fit), each computed on a few training examples and the fresh model's outputs for them. One that cannot
        take them (a classifier's class indices scored with mse or top_k_categorical_accuracy) is a problem at
        its key; it was a traceback from inside the first training step."""
        cfg = recipe.train
        if not hasattr(cfg, "metrics"):
            return
        defaults = type(cfg).model_fields["metrics"].get_default(call_default_factory=True)
        named = [(i, m) for i, m in enumerate(optim.metrics(cfg)) if cfg.metrics[i] not in defaults]
        if cfg.loss is None and not named:
            return
        from dlkit import keras_private
        from dlkit.errors import Problem, RecipeError, keras_reason

        examples = _examples(model, data)
        if examples is None:
            return
        y, y_pred = examples
        seen = f"the targets ({_described(y)}) and the model's outputs ({_described(y_pred)})"
        hint = ("the targets are class indices, which the sparse_ losses and metrics take: "
                "sparse_categorical_crossentropy, sparse_top_k_categorical_accuracy"
                if _class_indices(y, y_pred) else None)
        problems = []
        try:
            keras_private.scored(model.loss if cfg.loss is not None else None, [], y, y_pred)
        except Exception as e:  # noqa: BLE001 - whatever the loss raises on them, the first step would raise
            problems.append(Problem("train.loss", f"{cfg.loss!r} cannot take {seen}: {keras_reason(e)}",
                                    hint=hint or "leave train.loss unset for the task's own loss"))
        for i, metric in named:
            if hint and _one_hot_accuracy(metric):  # it runs on class indices, and counts nearly every hit a miss
                problems.append(Problem(f"train.metrics.{i}", f"{cfg.metrics[i]!r} reads one-hot targets, and the "
                                        f"targets are class indices ({_described(y)}): it would log a wrong accuracy",
                                        hint="use accuracy or sparse_categorical_accuracy"))
                continue
            try:
                keras_private.scored(None, [metric], y, y_pred)
            except Exception as e:  # noqa: BLE001
                problems.append(Problem(f"train.metrics.{i}", f"{cfg.metrics[i]!r} cannot take {seen}: {keras_reason(e)}",
                                        hint=hint or "name a metric made for these targets, or remove it"))
        if problems:
            raise RecipeError(problems)

    def optimizers(self, model):
        return {"model": model.optimizer}

    def monitor(self, recipe, has_val, phase):
        monitor = _without_val(recipe.train.monitor, has_val)
        return monitor, improves(monitor, recipe.train.monitor_mode)

    def monitored(self, recipe, has_val, phase) -> dict[str, str]:
        """The logged names the phase's callbacks watch, by the recipe key naming each."""
        found = {}
        monitor = self.monitor(recipe, has_val, phase)
        if monitor is not None:
            found["train.monitor"] = monitor[0]
        if recipe.train.early_stopping:
            found["train.early_stopping.monitor"] = _without_val(recipe.train.early_stopping.monitor, has_val)
        return found

    def logged(self, model, data) -> list[str] | None:
        """The names of what each epoch's training logs (without the val_ copies): a model with a step of
        its own logs its trackers, any other what Keras names its compiled loss and metrics. None: not known."""
        from dlkit import keras_private
        from dlkit.models.steps import StepModel

        if isinstance(model, StepModel):
            return [m.name for m in model.metrics]
        examples = _examples(model, data)
        return None if examples is None else keras_private.logged_names(model, *examples)

    def also_logged(self, data, names: list[str]) -> list[str]:
        """What the task's callbacks add to each epoch's logs beside the model's own: the model's measures on
        the test split, `test_<name>`, for the tasks whose SplitMeasures takes them each epoch."""
        return [f"test_{n}" for n in names] if self.measures_test_each_epoch and data.test is not None else []

    def check_monitored(self, model, recipe, data, phase):
        """A misspelt monitor (val_acuracy) was said only once the first epoch had logged, and left that
        epoch's run directory behind; it is said now, before the run directory exists."""
        monitored = self.monitored(recipe, data.val is not None, phase)
        names = self.logged(model, data) if monitored else None
        if names is None:
            return
        logged = [*names, *(f"val_{n}" for n in names if data.val is not None), *self.also_logged(data, names)]
        from dlkit.errors import Problem, RecipeError

        problems = [Problem(key, f"{name!r} is not a value the epochs will log ({', '.join(logged)})",
                            hint=f"set {key} to one of those")
                    for key, name in monitored.items()
                    if name not in logged and not (key == "train.monitor" and name == "learning_rate")]
        if problems:
            raise RecipeError(problems)

    def callbacks(self, ctx: FitContext) -> Callbacks:
        from dlkit.tasks.resumable import ResumableEarlyStopping, ResumableReduceLROnPlateau

        train, has_val = ctx.recipe.train, ctx.data.val is not None
        after = []
        if train.early_stopping:
            es = train.early_stopping
            after.append(ResumableEarlyStopping(monitor=_without_val(es.monitor, has_val), patience=es.patience,
                                                mode=improves(es.monitor, es.mode),
                                                min_delta=es.min_delta, restore_best_weights=es.restore_best_weights,
                                                rows=ctx.rows))
        if train.schedule.name == "plateau":
            sc = train.schedule
            after.append(ResumableReduceLROnPlateau(monitor=ctx.monitor[0], mode=ctx.monitor[1], factor=sc.factor,
                                                    patience=sc.patience,
                                                    min_lr=sc.min_learning_rate, verbose=0, rows=ctx.rows))
        return Callbacks(after=after)


def on_raw_inputs(run, recipe, model):
    """(the model on raw inputs, what it is in words) for `dlkit export`: the run's input scale (x * a + b,
    artifacts/scale.json) as its first layer, so a deployment feeds pixel values (0-255) or a CSV's numbers as
    they are, not as dlkit's pipeline scaled them. None for a run whose inputs are not scaled (token ids)."""
    if not run.artifact("scale").is_file():
        return None
    import keras

    from dlkit.tasks.generative import run_scale

    a, b = run_scale(run)
    inputs = keras.Input(shape=model.input_shape[1:], name="inputs")
    outputs = model(keras.layers.Rescaling(scale=a, offset=b, name="input_scale")(inputs))
    return (keras.Model(inputs, outputs, name=f"{model.name}_on_raw_inputs"),
            f"the {recipe.model.arch} model on raw inputs (its input scale, x * a + b, as its first layer)")


def _without_val(name: str, has_val: bool) -> str:
    """val_loss becomes loss when the run has no validation split."""
    return name[4:] if not has_val and name.startswith("val_") else name


def _examples(model, data):
    """A few of the training split's targets, as the first step sees them, and outputs of the model's shapes
    and dtypes for them (zeros: whether a loss takes them depends on shapes, not values); None for a model
    that does not declare its outputs. As many examples as no target or output dimension has, so that a
    mismatch cannot broadcast by chance; a model with a fixed batch (a stateful RNN) gets its batch."""
    import keras
    import numpy as np

    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None
    y = keras.tree.map_structure(np.asarray, next(iter(data.train))[1])
    targets = keras.tree.flatten(y)
    dims = {d for t in targets + outputs for d in t.shape[1:]}
    free = next(k for k in (3, 5, 7, 11, 13) if k not in dims)
    n = min(outputs[0].shape[0] or free, len(targets[0]))

    def zeros(output, target):  # a dimension of no fixed size (a language model's steps) is the target's
        shape = [d if d is not None else target.shape[i] if i < target.ndim else free
                 for i, d in enumerate(output.shape) if i > 0]
        return np.zeros((n, *shape), keras.backend.standardize_dtype(output.dtype))

    paired = targets if len(targets) == len(outputs) else targets[:1] * len(outputs)
    y_pred = [zeros(o, t) for o, t in zip(outputs, paired)]
    return keras.tree.map_structure(lambda t: t[:n], y), y_pred[0] if len(y_pred) == 1 else y_pred


def _described(t) -> str:
    import keras

    parts = [f"{keras.backend.standardize_dtype(a.dtype)} {tuple(a.shape)}" for a in keras.tree.flatten(t)]
    return ", ".join(parts)


def _one_hot_accuracy(metric) -> bool:
    """Whether a metric is Keras's categorical accuracy, which takes the argmax of one-hot targets: on class
    indices (one per example) it computes without an error, and is wrong."""
    import keras

    if not isinstance(metric, str):
        return False
    try:
        found = keras.metrics.get(metric)  # an instance for a class's name or a function's
    except ValueError:  # a name only compile resolves ("acc"): not this one
        return False
    return isinstance(found, keras.metrics.CategoricalAccuracy) or found is keras.metrics.categorical_accuracy


def _class_indices(y, y_pred) -> bool:
    """Whether `y` reads as class indices for `y_pred` (integers, one rank fewer)."""
    import keras

    if keras.tree.is_nested(y) or keras.tree.is_nested(y_pred):
        return False
    return "int" in keras.backend.standardize_dtype(y.dtype) and len(y.shape) == len(y_pred.shape) - 1
