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

    def optimizers(self, model):
        return {"model": model.optimizer}

    def monitor(self, recipe, has_val, phase):
        monitor = _without_val(recipe.train.monitor, has_val)
        return monitor, improves(monitor, recipe.train.monitor_mode)

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
