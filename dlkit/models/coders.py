"""What the autoencoders and the VAE share: a dense or convolutional encoder from the input to flat
features, and its mirror, a decoder from a vector back to the input's shape."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_serializer, model_validator

from dlkit.models.knobs import InitializerConfig, ModelBase
from dlkit.models.mlp import DenseLayer


class CoderConfig(ModelBase):
    initializer: InitializerConfig = InitializerConfig(name="he_normal")  # He suits the ReLU layers
    encoder: Literal["dense", "conv"] = "dense"
    # the dense encoder's hidden layers (default [256]), or the conv encoder's filters, one stride-2 conv each
    # (default [32, 64]); the decoder mirrors them. Only the chosen encoder's key is set.
    hidden: list[DenseLayer] | None = None
    filters: list[int] | None = Field(None, min_length=1)
    kernel_size: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _one_encoder(self):
        used, unused = ("hidden", "filters") if self.encoder == "dense" else ("filters", "hidden")
        if getattr(self, unused) is not None:
            raise ValueError(f"{unused} belongs to the {'conv' if unused == 'filters' else 'dense'} encoder; this "
                             f"one is encoder: {self.encoder}")
        if getattr(self, used) is None:
            setattr(self, used, [DenseLayer(units=256)] if used == "hidden" else [32, 64])
        return self

    @model_serializer(mode="wrap")
    def _only_the_encoder_used(self, handler):
        return {k: v for k, v in handler(self).items() if not (k in ("hidden", "filters") and v is None)}


def encode(config: CoderConfig, x, spec):
    """Input -> flat features; and what `decode` needs to mirror it (the conv stack's inner shape)."""
    import keras

    from dlkit.errors import Problem, RecipeError
    from dlkit.models import layers

    if config.encoder == "dense":
        h = keras.layers.Flatten()(x)
        for layer in config.hidden:
            h = layers.dense(h, layer.units, layer.resolve(config))
        return h, None
    shape, n = tuple(spec.input_shape), len(config.filters)
    if len(shape) != 3 or shape[0] % 2**n or shape[1] % 2**n:
        raise RecipeError([Problem("model.filters", f"a conv encoder of {n} stride-2 layers needs images whose sides "
                                   f"are divisible by {2 ** n}; the data has inputs of shape {shape}",
                                   hint="use fewer filters entries, or encoder: dense")])
    for filters in config.filters:
        x = keras.layers.Conv2D(filters, config.kernel_size, strides=2, padding="same", **layers.weights(config))(x)
        x = layers.finish(x, config)
    return keras.layers.Flatten()(x), tuple(x.shape[1:])


def decode(config: CoderConfig, z, spec, inner, activation, name: str):
    """A vector -> the input's shape (the conv decoder mirrors the encoder with transposed convs), through
    `activation`; the last layer is named `name`."""
    import keras

    from dlkit.models import layers

    shape = tuple(spec.input_shape)
    if config.encoder == "dense":
        d = z
        for layer in reversed(config.hidden):
            d = layers.dense(d, layer.units, layer.resolve(config))
        # the output in float32 under a mixed precision too (layers.classifier_head)
        out = keras.layers.Dense(math.prod(shape), activation=activation, dtype="float32",
                                 kernel_initializer=layers.initializer(config.initializer))(d)
        return keras.layers.Reshape(shape, name=name, dtype="float32")(out)
    d = layers.dense(z, math.prod(inner), config, dropout=False)
    d = keras.layers.Reshape(inner)(d)
    for filters in reversed(config.filters):
        d = keras.layers.Conv2DTranspose(filters, config.kernel_size, strides=2, padding="same",
                                         **layers.weights(config))(d)
        d = layers.finish(d, config)
    return keras.layers.Conv2D(shape[-1], config.kernel_size, padding="same", activation=activation, name=name,
                               kernel_initializer=layers.initializer(config.initializer), dtype="float32")(d)
