"""Losses dlkit adds to Keras'."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dlkit")
class PerceptronCriterion(keras.losses.Loss):
    """The multi-class perceptron criterion, max(0, max_j s_j - s_y), on raw class scores.

    Its gradient on a misclassified example is +x for the predicted class and -x for the true class, so
    SGD on it is exactly the perceptron learning rule. Labels are class indices.

    >>> PerceptronCriterion()([0], [[2.0, 1.0]])  # correct: no loss
    """

    def __init__(self, name="perceptron_criterion", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        true_score = ops.take_along_axis(y_pred, ops.expand_dims(y_true, -1), axis=-1)[:, 0]
        return ops.relu(ops.max(y_pred, axis=-1) - true_score)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}
