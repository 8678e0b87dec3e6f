"""CIFAR ResNet (He et al., 2016, section 4.2): depth 6n+2, three stages of n basic blocks.

ResNet-20 (n=3) has 16, 32 and 64 filters and about 0.27M parameters. Blocks that change shape use a 1x1
projection shortcut. Batch norm sits before the activation unless the recipe says otherwise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dlkit.models.knobs import BatchNorm, InitializerConfig, ModelBase, RegularizerConfig

TASK = "classification"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(ModelBase):
    arch: Literal["resnet"] = "resnet"
    depth: int = 20  # 6n+2: 20, 32, 44, 56, 110
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)  # filters per stage
    initializer: InitializerConfig = InitializerConfig(name="he_normal")
    regularizer: RegularizerConfig | None = RegularizerConfig(l2=1e-4)  # the paper's weight decay
    batch_norm: BatchNorm = "before"

    @field_validator("depth")
    @classmethod
    def _depth(cls, v):
        if v < 8 or (v - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110), received {v}")
        return v


def build(config: Config, spec):
    import keras

    from dlkit.models import layers

    n = (config.depth - 2) // 6
    plain = config.model_copy(update={"dropout": 0.0})

    def conv(x, filters, strides=1, kernel=3):
        return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", **layers.weights(plain))(x)

    def norm(x):
        return keras.layers.BatchNormalization()(x) if config.batch_norm != "none" else x

    x_in = layers.inputs(spec)
    x = layers.finish(conv(x_in, config.widths[0]), plain)
    for stage, filters in enumerate(config.widths):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.finish(conv(x, filters, strides), plain)
            y = conv(y, filters)
            if config.batch_norm == "before":
                y = norm(y)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = conv(shortcut, filters, strides, kernel=1)
                if config.batch_norm == "before":
                    shortcut = norm(shortcut)
            x = keras.layers.Activation(config.activation)(keras.layers.Add()([y, shortcut]))
            if config.batch_norm == "after":
                x = norm(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout)(x)
    return keras.Model(x_in, layers.classifier_head(x, spec, config), name=f"resnet{config.depth}")
