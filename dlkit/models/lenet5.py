"""LeNet-5 (LeCun et al., 1998): conv 6@5x5, avg-pool, conv 16@5x5, avg-pool, dense 120, 84, output.

A preset of `cnn`: the blocks are fixed, every layer knob still applies. The first conv pads to `same` so
28x28 MNIST digits get the 32x32 geometry of the paper (61,706 parameters for 10 classes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models import cnn
from dlkit.models.knobs import Activation, InitializerConfig

TASK = "classification"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(cnn.Config):
    arch: Literal["lenet5"] = "lenet5"
    activation: Activation = "tanh"
    initializer: InitializerConfig = InitializerConfig(name="glorot_uniform")
    blocks: list[cnn.ConvBlock] = Field(
        default_factory=lambda: [
            cnn.ConvBlock(filters=6, kernel_size=5, padding="same", pool="avg"),
            cnn.ConvBlock(filters=16, kernel_size=5, padding="valid", pool="avg"),
        ]
    )
    dense: list[int] = Field(default_factory=lambda: [120, 84])


def build(config: Config, spec):
    return cnn.build(config, spec, name="lenet5")
