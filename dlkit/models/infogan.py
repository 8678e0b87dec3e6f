"""InfoGAN (Chen et al., 2016): latent codes the generator must keep recoverable from its images.

A categorical code (10 values for MNIST) and continuous codes go into the generator next to the noise;
a Q head on the discriminator's trunk predicts them, and the mutual-information loss (cross-entropy for
the categorical code plus `continuous_weight` times the continuous ones' squared error), weighted by
`info_weight`, trains G and Q.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.gan import GanConfig, build_gan

TASK = "adversarial"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(GanConfig):
    arch: Literal["infogan"] = "infogan"
    categorical_codes: int = Field(10, ge=1)
    continuous_codes: int = Field(2, ge=0)


def build(config: Config, spec):
    return build_gan(config, spec, name="infogan")
