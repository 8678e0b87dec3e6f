"""ConvMixer (Trockman and Kolter, 2022, "Patches Are All You Need?"): a patch embedding, then depthwise
convolutions mixing space and pointwise ones mixing channels, each in a residual block.

An architecture of your own, in one file: a recipe names it with `plugins: [convmixer.py]` and trains it
with `model: {arch: convmixer, ...}` (docs/examples/convmixer_cifar10.yaml). It has the face of the
architectures dlkit ships (dlkit/models/mlp.py is the smallest): `Config`, its `model:` section, a pydantic
model on `ModelBase` (which brings the knobs every architecture takes: initializer, regularizer, activation,
dropout, batch_norm); `build(config, spec)`, the Keras model for the data's `spec`; and `TASK`, what it trains
as. The run keeps a copy of this file, so `dlkit evaluate`, `resume`, `predict` and `export` of the run use
the code it trained with, whatever becomes of this one.
"""

from __future__ import annotations

from typing import Literal

import keras
from pydantic import Field

from dlkit.models.knobs import Activation, BatchNorm, InitializerConfig, ModelBase

TASK = "classification"  # softmax over the dataset's classes, measured by accuracy
INPUTS = ("images",)  # of an image dataset, the images (N, H, W, C), not flattened feature vectors


class Config(ModelBase):
    arch: Literal["convmixer"] = "convmixer"
    dim: int = Field(128, ge=1)  # channels throughout
    depth: int = Field(4, ge=1)  # mixer blocks
    patch_size: int = Field(2, ge=1)  # the embedding's kernel and stride
    kernel_size: int = Field(5, ge=1)  # the depthwise convolutions' kernel
    layer_scale: float = Field(0.1, gt=0)  # the residual branch's starting scale (CaiT's LayerScale)
    activation: Activation = "gelu"
    batch_norm: BatchNorm = "after"  # after the activation, as the paper has it
    initializer: InitializerConfig = InitializerConfig(name="he_normal")


@keras.saving.register_keras_serializable(package="convmixer")
class LayerScale(keras.layers.Layer):
    """A learned per-channel scale, started at `init`: a custom layer, saved in model.keras by its registered
    name, so loading the model needs this module imported, which dlkit does from the run's copy."""

    def __init__(self, init: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.init),
                                     name="scale")

    def call(self, x):
        return x * keras.ops.cast(self.scale, x.dtype)

    def get_config(self):
        return {**super().get_config(), "init": self.init}


def build(config: Config, spec):
    from dlkit.models import layers

    def conv(x, filters, kernel, **kw):
        return keras.layers.Conv2D(filters, kernel, padding="same", kernel_initializer=layers.initializer(
            config.initializer), kernel_regularizer=layers.regularizer(config.regularizer), **kw)(x)

    def mix(x):  # the activation and batch norm (config.batch_norm says where, or none), no dropout
        return layers.finish(x, config, dropout=False)

    inputs = layers.inputs(spec)
    x = mix(conv(inputs, config.dim, config.patch_size, strides=config.patch_size))
    for _ in range(config.depth):
        branch = mix(keras.layers.DepthwiseConv2D(config.kernel_size, padding="same")(x))
        x = keras.layers.Add()([x, LayerScale(config.layer_scale)(branch)])
        x = mix(conv(x, config.dim, 1))
    x = keras.layers.GlobalAveragePooling2D()(x)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout)(x)
    return keras.Model(inputs, layers.classifier_head(x, spec, config), name="convmixer")
