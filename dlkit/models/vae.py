"""Variational autoencoder (Kingma & Welling, 2014): a dense or conv encoder to q(z|x), a Gaussian latent,
a decoder to p(x|z) (Bernoulli for binary data, Gaussian for real values), trained on the ELBO.

`binarize: dynamic` draws a fresh binarization of each training image every step (as in the IWAE paper;
the test set is binarized once, with the seed). `beta` weighs the KL term (beta-VAE), and
`kl_warmup_epochs` raises its weight linearly from 0 over the first epochs. The encoder and decoder are the
autoencoder's (`hidden` or `filters`), the decoder mirroring the encoder.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dlkit.models import coders

TASK = "variational"
INPUTS = ("images",)  # what it reads of an image dataset: images (N, H, W[, C]), not feature vectors


class Config(coders.CoderConfig):
    arch: Literal["vae"] = "vae"
    latent_dim: int = Field(50, ge=1)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"  # p(x|z): binary pixels, or real values
    binarize: Literal["dynamic", "none"] = "dynamic"  # bernoulli: a fresh Bernoulli draw of x each step
    beta: float = Field(1.0, gt=0)  # weight of KL(q(z|x) || p(z)); 1 is the ELBO
    kl_warmup_epochs: float = Field(0.0, ge=0)  # the KL weight rises linearly from 0 to beta over these

    @model_validator(mode="after")
    def _binary(self):
        if self.likelihood == "gaussian" and self.binarize == "dynamic":
            raise ValueError("binarize: dynamic draws binary images for a bernoulli likelihood; a gaussian one "
                             "models the values as they are: set binarize: none")
        return self


def build(config: Config, spec):
    import keras

    from dlkit.models import layers
    from dlkit.models.steps import check_backend
    from dlkit.models.vae_model import VAE

    check_backend(config.arch)
    x_in = layers.inputs(spec)
    features, inner = coders.encode(config, x_in, spec)
    # mean and log-variance, started near the prior: small weights, zero biases
    # in float32 under a mixed precision too, as the decoder's output (coders.decode): the terms mix them
    stats = keras.layers.Dense(2 * config.latent_dim, name="posterior", dtype="float32",
                               kernel_initializer=keras.initializers.GlorotUniform())(features)
    encoder = keras.Model(x_in, stats, name="encoder")
    z = keras.Input((config.latent_dim,), name="z")
    out = coders.decode(config, z, spec, inner, None, "decoded")  # logits (bernoulli) or means (gaussian)
    decoder = keras.Model(z, out, name="decoder")
    return VAE(encoder, decoder, latent_dim=config.latent_dim, likelihood=config.likelihood,
               binarize=config.binarize == "dynamic", beta=config.beta, name="vae")
