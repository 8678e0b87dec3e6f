"""Single-layer perceptron: one weight layer from inputs to class scores.

`rule: perceptron` trains it with the classic perceptron rule: the loss is the perceptron criterion
max(0, max_j s_j - s_y), whose gradient is -x for the true class and +x for the predicted class on a
misclassified example and zero otherwise, so plain SGD on it *is* the perceptron update
w_y += lr * x, w_pred -= lr * x. `rule: gradient` makes it a softmax layer trained on cross-entropy.
"""

from __future__ import annotations

from typing import Literal

from dlkit.models.knobs import Activation, InitializerConfig, ModelBase

TASK = "classification"
INPUTS = ("images", "features")  # images are flattened; feature vectors (N, F) are read as they are


class Config(ModelBase):
    arch: Literal["perceptron"] = "perceptron"
    rule: Literal["perceptron", "gradient"] = "perceptron"
    initializer: InitializerConfig = InitializerConfig(name="zeros")  # the classic rule starts from zero
    activation: Activation = "linear"

    def loss(self):
        if self.rule == "gradient":
            return None  # the task's cross-entropy
        from dlkit.models.losses import PerceptronCriterion

        return PerceptronCriterion()


def build(config: Config, spec):
    import keras

    from dlkit.models import layers

    x = layers.inputs(spec)
    h = keras.layers.Flatten()(x)
    out = keras.layers.Dense(
        spec.num_classes,
        activation="softmax" if config.rule == "gradient" else None,
        kernel_initializer=layers.initializer(config.initializer),
        kernel_regularizer=layers.regularizer(config.regularizer),
        name="scores" if config.rule == "perceptron" else "predictions",
        dtype="float32",  # as every classifier's output (layers.classifier_head)
    )(h)
    return keras.Model(x, out, name="perceptron")

