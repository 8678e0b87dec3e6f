"""WGAN-GP (Gulrajani et al., 2017): Wasserstein critic with a gradient penalty instead of clipping.

Defaults follow the paper: penalty weight 10, five critic steps, Adam(1e-4, beta_1=0, beta_2=0.9) (set in
train.optimizers), and no batch norm in the critic (the penalty is per example).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.gan import MAX_CRITIC_STEPS, DiscriminatorConfig, GanConfig, build_gan

TASK = "adversarial"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(GanConfig):
    arch: Literal["wgan_gp"] = "wgan_gp"
    objective: Literal["minimax", "wasserstein"] = "wasserstein"
    n_critic: int = Field(5, ge=1, le=MAX_CRITIC_STEPS)
    gp_weight: float = Field(10.0, ge=0)
    discriminator: DiscriminatorConfig = DiscriminatorConfig(dropout=0.0, batch_norm="none")


def build(config: Config, spec):
    return build_gan(config, spec, name="wgan_gp")
