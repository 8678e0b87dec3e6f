"""Image to sequence (one-to-many): a CNN encodes the image into one vector, which a recurrent decoder reads
at every step and turns into a sequence of tokens, ended by an end token (the digits of a number written
in an image, up to `max_digits` long)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from dlkit.models.cnn import ConvBlock, features
from dlkit.models.knobs import InitializerConfig
from dlkit.models.recurrent import RecurrentConfig, stack

TASK = "image_to_sequence"


class Config(RecurrentConfig):
    INSTEAD_OF_BATCH_NORM: ClassVar[str] = ("use dropout (and recurrent_dropout) there; the convolutions take it "
                                            "block by block (blocks: [{filters: 32, batch_norm: after}, ...])")
    arch: Literal["cnn_rnn_reader"] = "cnn_rnn_reader"
    cell: Literal["rnn", "lstm", "gru"] = "gru"
    initializer: InitializerConfig = InitializerConfig(name="he_normal")  # He suits the ReLU convolutions
    blocks: list[ConvBlock] = Field(default_factory=lambda: [ConvBlock(filters=32), ConvBlock(filters=64)])
    code_size: int = Field(256, ge=1)  # the image's vector, read by the decoder at every step


def build(config: Config, spec):
    import keras

    from dlkit.models import layers

    image = layers.inputs(spec)
    x = keras.layers.Flatten()(features(image, config, keras.layers.Conv2D))
    code = layers.dense(x, config.code_size, config)
    steps = keras.layers.RepeatVector(spec.target_shape[0], name="every_step")(code)
    x = stack(steps, config, return_sequences=True)
    logits = keras.layers.Dense(spec.vocabulary_size, name="logits", dtype="float32")(x)  # float32 when mixed
    return keras.Model(image, logits, name="cnn_rnn_reader")
