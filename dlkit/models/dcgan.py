"""DCGAN (Radford et al., 2016): transposed-conv generator, strided-conv discriminator, minimax loss.

The discriminator outputs an unscaled logit; the generator uses the non-saturating loss.
"""

from __future__ import annotations

from typing import Literal

from dlkit.models.gan import GanConfig, build_gan

TASK = "adversarial"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(GanConfig):
    arch: Literal["dcgan"] = "dcgan"


def build(config: Config, spec):
    return build_gan(config, spec, name="dcgan")
