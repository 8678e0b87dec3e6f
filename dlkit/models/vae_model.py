"""The variational autoencoder as a Keras model with its own training step (dlkit.models.steps).

The encoder gives q(z|x) = N(mean, exp(log_var)); the decoder gives p(x|z), Bernoulli (logits) for binary
data or Gaussian (a mean, with one learned log-variance per value). The step minimises the negative ELBO,
reconstruction + beta * KL, per example in nats, with z drawn by the reparameterisation trick from the
model's SeedGenerator (saved with it, so runs are reproducible and resumable). With `binarize`, each
training step draws a fresh binarization x ~ Bernoulli(pixel) (dynamic binarization, as in the IWAE paper).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from dlkit.models.steps import StepModel

LOG_2PI = math.log(2 * math.pi)


def kl_to_standard_normal(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)), summed over the latent dimensions: the closed form."""
    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mean) - 1.0 - log_var, axis=-1)


def _flat_sum(values):
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


@keras.saving.register_keras_serializable(package="dlkit")
class VAE(StepModel):
    """x -> q(z|x) -> z -> p(x|z), trained on the negative ELBO.

    >>> vae = VAE(encoder, decoder, latent_dim=50)   # encoder: x -> [mean, log_var]; decoder: z -> logits
    >>> vae.compile(optimizer=keras.optimizers.Adam(1e-3)); vae.fit(batches_of_x, epochs=10)
    """

    SUBMODELS = ("encoder", "decoder")

    def __init__(self, encoder, decoder, latent_dim, likelihood="bernoulli", binarize=False, beta=1.0,
                 warmup_steps=0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.likelihood, self.binarize = latent_dim, likelihood, binarize
        self.beta, self.warmup_steps = beta, warmup_steps
        self.log_variance = None
        if likelihood == "gaussian":  # one learned log-variance per value of x
            self.log_variance = self.add_weight(shape=tuple(decoder.output_shape[1:]), initializer="zeros",
                                                name="log_variance")
        self.track("loss", "elbo", "reconstruction", "kl")

    def get_config(self):
        sub = {k: keras.saving.serialize_keras_object(getattr(self, k)) for k in self.SUBMODELS}
        return {**super().get_config(), **sub, "latent_dim": self.latent_dim, "likelihood": self.likelihood,
                "binarize": self.binarize, "beta": self.beta, "warmup_steps": self.warmup_steps, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for k in cls.SUBMODELS:
            config[k] = keras.saving.deserialize_keras_object(config[k])
        return cls(**config)

    # ------------------------------------------------------------ the distributions

    def posterior(self, x, training=False):
        h = self.encoder(x, training=training)
        return h[:, : self.latent_dim], h[:, self.latent_dim:]

    def log_likelihood(self, x, out):
        """log p(x|z) per example, in nats, from the decoder's output."""
        if self.likelihood == "bernoulli":  # x * logit - softplus(logit)
            return _flat_sum(x * out - ops.softplus(out))
        log_var = self.log_variance
        return -0.5 * _flat_sum(ops.square(x - out) * ops.exp(-log_var) + log_var + LOG_2PI)

    def mean_of(self, out):
        """E[x|z]: the picture of a decoder output."""
        return ops.sigmoid(out) if self.likelihood == "bernoulli" else out

    def call(self, x, training=False):
        """The reconstruction at the posterior mean."""
        mean, _ = self.posterior(x, training=training)
        return self.mean_of(self.decoder(mean, training=training))

    def terms(self, x, training=False):
        """(reconstruction, kl) per example in nats: -log p(x|z) at one z ~ q(z|x), and KL(q(z|x) || p(z))."""
        mean, log_var = self.posterior(x, training=training)
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator, dtype=mean.dtype)
        z = mean + ops.exp(0.5 * log_var) * eps
        return -self.log_likelihood(x, self.decoder(z, training=training)), kl_to_standard_normal(mean, log_var)

    # ------------------------------------------------------------ training and measuring

    def _inputs(self, data):
        return data[0] if isinstance(data, (tuple, list)) else data

    def kl_weight(self):
        """beta, warmed up linearly from 0 over `warmup_steps` optimizer steps."""
        if not self.warmup_steps:
            return self.beta
        progress = ops.minimum(1.0, ops.cast(self.optimizer.iterations, "float32") / float(self.warmup_steps))
        return self.beta * progress

    def step(self, data):
        x = self._inputs(data)
        if self.binarize:  # a fresh binarization each step: x ~ Bernoulli(pixel intensity)
            x = ops.cast(keras.random.uniform(ops.shape(x), seed=self.seed_generator, dtype=x.dtype) < x, x.dtype)
        weight = self.kl_weight()  # read here: the step counter is not visible inside a JAX gradient
        variables = self.trainable_variables

        def objective():
            rec, kl = self.terms(x, training=True)
            loss = ops.mean(rec + weight * kl)
            return loss + sum(self.losses), (loss, rec, kl)

        loss, rec, kl = self.descend(self.optimizer, objective, variables)
        return self._record(loss, rec, kl)

    def measure(self, data):
        rec, kl = self.terms(self._inputs(data))
        return self._record(ops.mean(rec + self.beta * kl), rec, kl)

    def _record(self, loss, rec, kl):
        t = self.trackers
        t["loss"].update_state(loss)
        t["elbo"].update_state(-ops.mean(rec + kl))
        t["reconstruction"].update_state(ops.mean(rec))
        t["kl"].update_state(ops.mean(kl))
        return {m.name: m.result() for m in self.metrics}

    # ------------------------------------------------------------ after training (numpy in, numpy out)

    def importance_bound(self, x: np.ndarray, k: int, seed: int = 0, rows: int = 8192, advance=None) -> np.ndarray:
        """The importance-weighted bound on log p(x) (Burda et al., 2016) per example, in nats:
        log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x). k = 1 is the ELBO's one-sample estimate; it rises
        toward log p(x) as k grows. Computed with logsumexp, about `rows` decoder inputs at a time. `advance(n)`,
        if given, hears of the examples done."""
        rng = np.random.default_rng(seed)
        per_batch = max(1, rows // k)  # images at a time
        chunk = min(k, rows)  # samples of each image at a time
        out = []
        for start in range(0, len(x), per_batch):
            xb = x[start:start + per_batch]
            b = len(xb)
            mean, log_var = (ops.convert_to_numpy(t).astype(np.float64) for t in self.posterior(xb))
            log_w = []
            for done in range(0, k, chunk):
                m = min(chunk, k - done)
                eps = rng.standard_normal((b, m, self.latent_dim))
                z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps
                decoded = self.decoder(z.reshape(b * m, -1).astype(np.float32))
                log_px_z = ops.convert_to_numpy(self.log_likelihood(np.repeat(xb, m, axis=0), decoded)).reshape(b, m)
                log_pz = -0.5 * (z ** 2 + LOG_2PI).sum(-1)
                log_qz = -0.5 * (eps ** 2 + log_var[:, None] + LOG_2PI).sum(-1)
                log_w.append(log_px_z + log_pz - log_qz)
            w = np.concatenate(log_w, axis=1)
            top = w.max(axis=1, keepdims=True)
            out.append(top[:, 0] + np.log(np.mean(np.exp(w - top), axis=1)))
            if advance is not None:
                advance(b)
        return np.concatenate(out)

    def sample(self, z: np.ndarray) -> np.ndarray:
        """E[x|z] for latent vectors z (draw them from N(0, I) for samples)."""
        return ops.convert_to_numpy(self.mean_of(self.decoder(z)))

    def codes(self, x: np.ndarray) -> np.ndarray:
        """The posterior means of x."""
        return ops.convert_to_numpy(self.posterior(x)[0])
