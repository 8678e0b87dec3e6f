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
