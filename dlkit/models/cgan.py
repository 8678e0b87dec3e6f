"""Conditional GAN (Mirza & Osindero, 2014): the class label goes into both networks.

The generator gets the one-hot label next to the noise; the discriminator sees it as one-hot planes
stacked on the image channels. Sample grids have one row per class.
"""

from __future__ import annotations

from typing import Literal

from dlkit.models.gan import GanConfig, build_gan

TASK = "adversarial"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(GanConfig):
    arch: Literal["cgan"] = "cgan"
    conditional: bool = True


def build(config: Config, spec):
    return build_gan(config, spec, name="cgan")
