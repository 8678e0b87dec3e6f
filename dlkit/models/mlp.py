"""Multi-layer perceptron (feed-forward net trained by backpropagation): dense hidden layers, softmax out."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from dlkit.models.knobs import KnobOverrides, ModelBase

TASK = "classification"
INPUTS = ("images", "features")  # images are flattened; feature vectors (N, F) are read as they are


class DenseLayer(KnobOverrides):
    """One hidden layer; any knob left out comes from the model section."""

    units: int = Field(ge=1)
    shorthand: ClassVar[str] = "a number of units (256 is {units: 256})"  # said by a recipe error

    @model_validator(mode="before")
    @classmethod
    def _from_int(cls, v):
        return {"units": v} if isinstance(v, int) and not isinstance(v, bool) else v  # `256` = {units: 256}


class Config(ModelBase):
    arch: Literal["mlp"] = "mlp"
    hidden: list[DenseLayer] = Field(default_factory=lambda: [DenseLayer(units=256), DenseLayer(units=128)])


def build(config: Config, spec):
    import keras

    from dlkit.models import layers

    x = layers.inputs(spec)
    h = keras.layers.Flatten()(x)
    for layer in config.hidden:
        h = layers.dense(h, layer.units, layer.resolve(config))
    return keras.Model(x, layers.classifier_head(h, spec, config), name="mlp")
