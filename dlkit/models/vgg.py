"""A small VGG-style net: stages of two 3x3 convs with batch norm, then max-pooling; widths double.

A preset of `cnn` (Simonyan & Zisserman, 2015, scaled down for 28x28 and 32x32 images).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models import cnn
from dlkit.models.knobs import MAX_REPEATS, BatchNorm

TASK = "classification"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(cnn.Config):
    arch: Literal["vgg"] = "vgg"
    batch_norm: BatchNorm = "before"
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128])  # filters per stage
    convs_per_stage: int = Field(2, ge=1, le=MAX_REPEATS)
    blocks: list[cnn.ConvBlock] = Field(default_factory=list)  # derived from widths; leave empty
    dense: list[int] = Field(default_factory=lambda: [256])
    head_dropout: float = Field(0.5, ge=0, lt=1)


def build(config: Config, spec):
    from dlkit.errors import Problem, RecipeError

    if config.blocks:
        return cnn.build(config, spec, name="vgg")
    blocks = [cnn.ConvBlock(filters=w, convs=config.convs_per_stage) for w in config.widths]
    try:
        return cnn.build(config.model_copy(update={"blocks": blocks}), spec, name="vgg")
    except RecipeError:  # a stage's pooling got maps of 1 pixel: the blocks are the widths' (the recipe has none)
        n, side = len(blocks), 2 ** len(blocks)
        raise RecipeError([Problem("model.widths", f"{n} stages of 2x2 max pooling need images of at least "
                                   f"{side}x{side}; the data's are {spec.input_shape[0]}x{spec.input_shape[1]}",
                                   hint="fewer widths")]) from None
