"""Wasserstein GAN (Arjovsky et al., 2017): a critic with clipped weights, n_critic steps per G step.

Defaults follow the paper: clip 0.01, five critic steps, RMSProp at 5e-5 (set in train.optimizers), no
batch norm in the critic's first layer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.gan import MAX_CRITIC_STEPS, DiscriminatorConfig, GanConfig, build_gan

TASK = "adversarial"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(GanConfig):
    arch: Literal["wgan"] = "wgan"
    objective: Literal["minimax", "wasserstein"] = "wasserstein"
    n_critic: int = Field(5, ge=1, le=MAX_CRITIC_STEPS)
    clip_value: float = Field(0.01, ge=0)
    discriminator: DiscriminatorConfig = DiscriminatorConfig(dropout=0.0)


def build(config: Config, spec):
    return build_gan(config, spec, name="wgan")
