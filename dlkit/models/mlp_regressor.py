"""Feed-forward regression net (backpropagation on a table): dense hidden layers, one linear output per target."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.knobs import ModelBase
from dlkit.models.mlp import DenseLayer

TASK = "regression"


class Config(ModelBase):
    arch: Literal["mlp_regressor"] = "mlp_regressor"
    hidden: list[DenseLayer] = Field(default_factory=lambda: [DenseLayer(units=64), DenseLayer(units=64)])


def build(config: Config, spec):
    """The net's outputs are the targets in standard deviations from their training mean; the regression task
    adds the layer that puts them back in the targets' units (dlkit.tasks.regression)."""
    import keras

    from dlkit.models import layers

    x = layers.inputs(spec)
    h = keras.layers.Flatten()(x)
    for layer in config.hidden:
        h = layers.dense(h, layer.units, layer.resolve(config))
    out = keras.layers.Dense(spec.target_shape[-1], kernel_initializer=layers.initializer(config.initializer),
                             kernel_regularizer=layers.regularizer(config.regularizer), dtype="float32",
                             name="standardized")(h)
    return keras.Model(x, out, name="mlp_regressor")
