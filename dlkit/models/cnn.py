"""Convolutional net: a stack of conv blocks (convs, then pooling) and a dense head.

Every block takes filters, kernel size, stride, padding, dilation, how many convs and which pooling, and
may override any layer knob of the model section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dlkit.models.knobs import MAX_REPEATS, InitializerConfig, KnobOverrides, ModelBase

TASK = "classification"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class ConvBlock(KnobOverrides):
    filters: int = Field(ge=1)
    kernel_size: int = Field(3, ge=1)
    strides: int = Field(1, ge=1)
    padding: Literal["same", "valid"] = "same"
    dilation: int = Field(1, ge=1)
    convs: int = Field(1, ge=1, le=MAX_REPEATS)  # convolutions in the block, all with these settings
    pool: Literal["max", "avg", "none"] = "max"
    pool_size: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _stride_or_dilation(self):
        # Keras's own error came at build time, as a traceback
        if self.strides > 1 and self.dilation > 1:
            raise ValueError(f"a block strides ({self.strides}) or dilates ({self.dilation}), not both: Keras's "
                             "convolutions take one or the other; set strides: 1 or dilation: 1")
        return self


class Config(ModelBase):
    arch: Literal["cnn"] = "cnn"
    initializer: InitializerConfig = InitializerConfig(name="he_normal")  # He suits ReLU nets
    blocks: list[ConvBlock] = Field(
        default_factory=lambda: [ConvBlock(filters=32), ConvBlock(filters=64)]
    )
    head: Literal["flatten", "global_avg"] = "flatten"  # how the feature maps reach the dense layers
    dense: list[int] = Field(default_factory=lambda: [128])  # hidden dense units before the output
    head_dropout: float = Field(0.0, ge=0, lt=1)  # dropout right before the output layer


def features(x, config, conv_layer):
    """Run the conv blocks; `conv_layer` builds one convolution (so 1-D/2-D nets could share this)."""
    import keras

    from dlkit.models import layers

    for b, block in enumerate(config.blocks):
        knobs = block.resolve(config)
        for i in range(block.convs):
            _check_fits(x, b, block, i)
            x = conv_layer(
                block.filters, block.kernel_size,
                # only the first conv of a block strides; the rest keep the size
                strides=block.strides if i == 0 else 1,
                padding=block.padding, dilation_rate=block.dilation, **layers.weights(knobs),
            )(x)
            x = layers.finish(x, knobs, dropout=False)
        _check_fits(x, b, block)
        if block.pool == "max":
            x = keras.layers.MaxPooling2D(block.pool_size)(x)
        elif block.pool == "avg":
            x = keras.layers.AveragePooling2D(block.pool_size)(x)
        if knobs.dropout > 0:
            x = keras.layers.Dropout(knobs.dropout)(x)
    return x


def _check_fits(x, b: int, block: ConvBlock, conv: int | None = None) -> None:
    """Refuse, at its key, a block's convolution (`conv`, its index) or pooling (None) that the feature maps
    `x` are too small for: Keras's own error was a traceback ("Computed output size would be zero or
    negative"). Only a valid convolution and a pooling shrink a map to nothing; a same one keeps at least 1."""
    from dlkit.errors import Problem, RecipeError

    h, w = x.shape[1], x.shape[2]
    if conv is not None:
        span, what = block.dilation * (block.kernel_size - 1) + 1, f"convolution {conv + 1}"
        if block.padding == "same" or min(h, w) >= span:
            return
        key, took = "kernel_size", (f"a {block.kernel_size}x{block.kernel_size} kernel"
                                    + (f" dilated by {block.dilation}" if block.dilation > 1 else "")
                                    + f" spans {span} pixels, with padding: valid")
        fixes = "padding: same, or a smaller kernel_size or dilation"
    else:
        span = block.pool_size
        if block.pool == "none" or min(h, w) >= span:
            return
        key, what, took = "pool_size", f"{block.pool} pooling", f"pools {span}x{span}"
        fixes = "a smaller pool_size, or pool: none"
    raise RecipeError([Problem(
        f"model.blocks.{b}.{key}", f"block {b}'s {what} {took}, but its feature maps are {h}x{w} by then",
        hint=f"{fixes}; or less shrinking before it: smaller strides or pool_size, or fewer blocks")])


def head(x, config, spec):
    import keras

    from dlkit.models import layers

    x = keras.layers.Flatten()(x) if config.head == "flatten" else keras.layers.GlobalAveragePooling2D()(x)
    for units in config.dense:
        x = layers.dense(x, units, config)
    if config.head_dropout > 0:
        x = keras.layers.Dropout(config.head_dropout)(x)
    return layers.classifier_head(x, spec, config)


def build(config: Config, spec, name: str = "cnn"):
    import keras

    from dlkit.models import layers

    x = layers.inputs(spec)
    h = features(x, config, keras.layers.Conv2D)
    return keras.Model(x, head(h, config, spec), name=name)
