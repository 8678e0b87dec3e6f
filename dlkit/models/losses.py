"""Losses dlkit adds to Keras'."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dlkit")
class PerceptronCriterion(keras.losses.Loss):
    """The multi-class perceptron criterion, s_pred - s_y on mistakes and 0 otherwise, on raw class scores.

    pred is the argmax (ties go to the first class, as in the classic rule, so all-zero weights still
    learn). The gradient on a mistake is +x for the predicted class and -x for the true class, so SGD on
    it is exactly the perceptron learning rule. Labels are class indices.

    >>> PerceptronCriterion()([0], [[2.0, 1.0]])  # correct: no loss, no update
    """

    def __init__(self, name="perceptron_criterion", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        true_score = ops.take_along_axis(y_pred, ops.expand_dims(y_true, -1), axis=-1)[:, 0]
        pred_score = ops.take_along_axis(y_pred, ops.expand_dims(pred, -1), axis=-1)[:, 0]
        mistake = ops.cast(ops.not_equal(pred, y_true), y_pred.dtype)
        return (pred_score - true_score) * mistake

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="dlkit")
class StandardizedError(keras.losses.Loss):
    """A regression's loss on its errors in standard deviations, (y_true - y_pred) / std, with `std` each
    target's over the training rows: squared (`mse`), absolute (`mae`) or Huber's (`huber`: squared within one
    standard deviation, absolute beyond). The loss and its gradients are then the same for a price in cents or
    in millions, as for targets standardized before training, while the model itself predicts in the targets'
    units (its metrics, MAE and RMSE, read in those units). Each target weighs the same.

    With `log` (data.target_transform: log) the errors are those of the logarithms, log y_true - log y_pred,
    and `std` is the spread of the training targets' logarithms: a relative error, the same 10% off for a
    price of 100 as for one of 100,000. The model's predictions are then positive (an `exp` is its last layer).

    >>> StandardizedError([10.0], "mse")([[0.0]], [[20.0]])  # two standard deviations off: 4
    """

    def __init__(self, std, kind="mse", log=False, name="standardized_error", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if kind not in ("mse", "mae", "huber"):
            raise ValueError(f"unknown kind {kind!r}: mse, mae or huber")
        self.std, self.kind, self.log = [float(s) for s in std], kind, bool(log)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.log:  # the floor keeps an exp that underflowed to 0 from a log of 0 (no target is below it)
            floor = ops.convert_to_tensor(1e-30, y_pred.dtype)
            y_true, y_pred = ops.log(ops.maximum(y_true, floor)), ops.log(ops.maximum(y_pred, floor))
        error = (y_true - y_pred) / ops.convert_to_tensor(self.std, y_pred.dtype)
        size = ops.abs(error)
        if self.kind == "mse":
            each = ops.square(error)
        elif self.kind == "mae":
            each = size
        else:
            each = ops.where(size <= 1.0, 0.5 * ops.square(error), size - 0.5)
        return ops.mean(each, axis=-1)

    def get_config(self):
        return {"std": self.std, "kind": self.kind, "log": self.log, "name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="dlkit")
class ClassWeighted(keras.losses.Loss):
    """A classifier's loss with each example's term multiplied by its class's weight (train.class_weight):
    Keras's `fit(class_weight=...)` as part of the loss, so that it holds on every input pipeline (fit refuses
    class weights for some, Grain's among them) and in the validation loss too, which early stopping and the
    best checkpoint then read on the same weighted objective. `inner` is the loss as compiled without weights
    (a name, a serialized loss or a Loss); labels are class indices.

    >>> ClassWeighted("sparse_categorical_crossentropy", [1.0, 3.0])([1], [[0.5, 0.5]])  # 3 * log 2
    """

    def __init__(self, inner, weights, name="class_weighted", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.inner = keras.losses.get(inner) if not isinstance(inner, keras.losses.Loss) else inner
        self.weights = [float(w) for w in weights]

    def call(self, y_true, y_pred):
        inner = self.inner.call if isinstance(self.inner, keras.losses.Loss) else self.inner
        each = inner(y_true, y_pred)
        index = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        return each * ops.take(ops.convert_to_tensor(self.weights, each.dtype), index)

    def get_config(self):
        return {"inner": keras.losses.serialize(self.inner), "weights": self.weights, "name": self.name,
                "reduction": self.reduction}
