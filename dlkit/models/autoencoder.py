"""Autoencoder: an encoder to a code, a decoder back to the input (dense or convolutional; undercomplete,
denoising or sparse).

The encoder is dense layers (`hidden`) or stride-2 convolutions (`filters`), then a dense code of
`code_size` units (layer `code`); the decoder mirrors it and ends in the input's shape (layer
`reconstruction`), with a sigmoid (trained on binary cross-entropy against inputs in [0, 1]) or a linear
output (mean squared error). `noise` corrupts the input while training only (a denoising autoencoder,
Vincent et al., 2008): Gaussian, masking or salt-and-pepper, at a level. `sparsity` penalises the code:
an L1 penalty on its activations, or the KL divergence of each unit's mean activation from a small
target (which needs a sigmoid code).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dlkit.config import Section
from dlkit.models import coders
from dlkit.models.knobs import Activation

TASK = "reconstruction"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class NoiseConfig(Section):
    """Input corruption while training (a denoising autoencoder)."""

    kind: Literal["gaussian", "masking", "salt_and_pepper"] = "gaussian"
    level: float = Field(0.3, gt=0)  # gaussian: the noise's standard deviation; else the share of values hit

    @model_validator(mode="after")
    def _share(self):
        if self.kind != "gaussian" and self.level >= 1:
            raise ValueError(f"{self.kind} corrupts a share of the values: level must be below 1")
        return self


class SparsityConfig(Section):
    """A penalty on the code's activations (a sparse autoencoder)."""

    kind: Literal["l1", "kl"] = "l1"
    weight: float = Field(1e-4, gt=0)  # l1: per unit activation; kl: on the summed divergence (try 0.1 to 3)
    target: float = Field(0.05, gt=0, lt=1)  # kl: the mean activation each code unit should have

    @model_validator(mode="after")
    def _target_read(self):
        # an L1 penalty has no target: one set beside it trained as if absent
        if self.kind == "l1" and self.target != type(self).model_fields["target"].default:
            raise ValueError(f"model.sparsity.target: {self.target} is the mean code activation the KL penalty "
                             "pulls toward, and kind l1 reads no target: set kind: kl (with code_activation: "
                             "sigmoid), or remove target")
        return self


class Config(coders.CoderConfig):
    arch: Literal["autoencoder"] = "autoencoder"
    code_size: int = Field(32, ge=1)
    code_activation: Activation = "linear"
    output: Literal["sigmoid", "linear"] = "sigmoid"  # sigmoid: inputs in [0, 1] (data.scale: unit), BCE
    noise: NoiseConfig | None = None
    sparsity: SparsityConfig | None = None

    @model_validator(mode="after")
    def _sparse_code(self):
        if self.sparsity is not None and self.sparsity.kind == "kl" and self.code_activation != "sigmoid":
            raise ValueError("the KL sparsity penalty needs a code in (0, 1): set code_activation: sigmoid")
        return self

    def loss(self):
        return "binary_crossentropy" if self.output == "sigmoid" else "mean_squared_error"


def _code_penalty(config: Config):
    from dlkit.models.corruption import KLSparsity, L1Sparsity

    s = config.sparsity
    if s is None:
        return None
    return KLSparsity(s.target, s.weight) if s.kind == "kl" else L1Sparsity(s.weight)


def build(config: Config, spec):
    import keras

    from dlkit.models import layers
    from dlkit.models.corruption import Corruption

    x_in = layers.inputs(spec)
    x = x_in
    if config.noise is not None:
        x = Corruption(config.noise.kind, config.noise.level, name="noise")(x)
    features, inner = coders.encode(config, x, spec)
    code = keras.layers.Dense(config.code_size, activation=config.code_activation, name="code",
                              kernel_initializer=layers.initializer(config.initializer),
                              activity_regularizer=_code_penalty(config))(features)
    out = coders.decode(config, code, spec, inner, config.output, "reconstruction")
    return keras.Model(x_in, out, name="autoencoder")
