"""The restricted Boltzmann machine as a Keras model with its own training step (dlkit.models.steps).

Binary hidden units h, visible units v that are binary (Bernoulli) or real with unit variance (Gaussian),
energy E(v, h) = -v.b - h.c - v W h (Gaussian: + |v - b|^2 / 2 in place of -v.b). Training is contrastive
divergence: the CD-k estimate of the log-likelihood gradient, data statistics against those after k steps
of block Gibbs sampling (from the data, or with `persistent` from chains kept across updates, PCD), is
handed as the gradient to `optimizer.apply`, so the learning rate, momentum and weight decay are the Keras
optimizer's. `sparsity_weight` pulls each hidden unit's mean activation toward `sparsity_target` (through
its bias). The Gibbs chains draw from the model's SeedGenerator; persistent chains are a model variable, so
both are saved in checkpoints.

After training (numpy, float64): free energy, exact log Z by enumeration for small models, and annealed
importance sampling for large ones (Salakhutdinov & Murray, 2008).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from dlkit.models.steps import StepModel, replicas


def _bernoulli(p, seed):
    return ops.cast(keras.random.uniform(ops.shape(p), seed=seed, dtype=p.dtype) < p, p.dtype)


@keras.saving.register_keras_serializable(package="dlkit")
class RBM(StepModel):
    """>>> rbm = RBM(visible=784, hidden=500, cd_k=1); rbm.compile(optimizer=keras.optimizers.SGD(0.05, 0.5))"""

    def __init__(self, visible: int, hidden: int, visible_kind: str = "bernoulli", cd_k: int = 1,
                 persistent: bool = False, chains: int = 100, sparsity_target: float = 0.0,
                 sparsity_weight: float = 0.0, binarize: bool = False, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.visible, self.hidden, self.visible_kind = visible, hidden, visible_kind
        self.cd_k, self.persistent, self.chains = cd_k, persistent, chains
        self.sparsity_target, self.sparsity_weight, self.binarize = sparsity_target, sparsity_weight, binarize
        self.kernel = self.add_weight(shape=(visible, hidden), name="kernel",
                                      initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seed))
        self.visible_bias = self.add_weight(shape=(visible,), initializer="zeros", name="visible_bias")
        self.hidden_bias = self.add_weight(shape=(hidden,), initializer="zeros", name="hidden_bias")
        # the persistent chains' visible states (PCD); started from noise, saved with the model
        self.particles = self.add_weight(shape=(chains if persistent else 1, visible), name="particles",
                                         initializer=keras.initializers.RandomUniform(0, 1, seed=seed),
                                         trainable=False)
        self.track("reconstruction_error", "free_energy_gap",
                   *(["pseudo_log_likelihood"] if visible_kind == "bernoulli" else []))

    # contrastive divergence's gradients are statistics of the chains, not a loss's: under mixed_float16 there
    # is no loss to scale, so the optimizer is not wrapped in a LossScaleOptimizer, when compiled or loaded
    def compile(self, *args, **kwargs):
        super().compile(*args, **{**kwargs, "auto_scale_loss": False})

    def compile_from_config(self, config):
        # Keras's own skips a model whose compile is its own; this is Keras's, with that compile
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {**super().get_config(), "visible": self.visible, "hidden": self.hidden,
                "visible_kind": self.visible_kind, "cd_k": self.cd_k, "persistent": self.persistent,
                "chains": self.chains, "sparsity_target": self.sparsity_target,
                "sparsity_weight": self.sparsity_weight, "binarize": self.binarize, "seed": self.seed}

    # ------------------------------------------------------------ the conditionals and the free energy

    def hidden_probabilities(self, v):
        return ops.sigmoid(ops.matmul(v, self.kernel) + self.hidden_bias)

    def visible_mean(self, h):
        activation = ops.matmul(h, ops.transpose(self.kernel)) + self.visible_bias
        return ops.sigmoid(activation) if self.visible_kind == "bernoulli" else activation

    def sample_visible(self, h):
        mean = self.visible_mean(h)
        if self.visible_kind == "bernoulli":
            return _bernoulli(mean, self.seed_generator)
        return mean + keras.random.normal(ops.shape(mean), seed=self.seed_generator, dtype=mean.dtype)

    def free_energy(self, v):
        """F(v) = -log sum_h exp(-E(v, h)), per example."""
        hidden_term = ops.sum(ops.softplus(ops.matmul(v, self.kernel) + self.hidden_bias), axis=-1)
        if self.visible_kind == "bernoulli":
            return -ops.matmul(v, self.visible_bias) - hidden_term
        return 0.5 * ops.sum(ops.square(v - self.visible_bias), axis=-1) - hidden_term

    def gibbs(self, v, steps: int):
        """`steps` rounds of v -> h ~ p(h|v) -> v ~ p(v|h)."""
        for _ in range(steps):
            v = self.sample_visible(_bernoulli(self.hidden_probabilities(v), self.seed_generator))
        return v

    def call(self, x, training=False):
        """The hidden units' probabilities given the (flattened) input: the features an RBM passes up."""
        return self.hidden_probabilities(self.flat(x))

    def flat(self, x):
        return ops.reshape(x, (ops.shape(x)[0], self.visible))

    # ------------------------------------------------------------ training

    def _data(self, data, binarize: bool = False):
        x = self.flat(data[0] if isinstance(data, (tuple, list)) else data)
        return _bernoulli(x, self.seed_generator) if binarize else x

    def cd_gradients(self, v0, start, k: int):
        """The CD-k estimate of the negative log-likelihood's gradient for (kernel, visible bias, hidden bias):
        model statistics, after k Gibbs steps from `start`, minus data statistics. Also the chains' ends."""
        h0 = self.hidden_probabilities(v0)
        vk = self.gibbs(start, k)
        hk = self.hidden_probabilities(vk)
        batch, chains = (ops.cast(ops.shape(v)[0], v0.dtype) for v in (v0, vk))
        grad_kernel = ops.matmul(ops.transpose(vk), hk) / chains - ops.matmul(ops.transpose(v0), h0) / batch
        grad_visible = ops.mean(vk, axis=0) - ops.mean(v0, axis=0)
        grad_hidden = ops.mean(hk, axis=0) - ops.mean(h0, axis=0)
        if self.sparsity_weight:  # pull each unit's mean activation toward the target
            grad_hidden = grad_hidden + self.sparsity_weight * (ops.mean(h0, axis=0) - self.sparsity_target)
        return [grad_kernel, grad_visible, grad_hidden], vk

    def step(self, data):
        v0 = self._data(data, self.binarize)  # a fresh binarization each step
        grads, vk = self.cd_gradients(v0, self.particles if self.persistent else v0, self.cd_k)
        if replicas() > 1:  # a MirroredStrategy sums the replicas' gradients: each gives its share of the mean
            grads = [g / replicas() for g in grads]
        self.optimizer.apply(grads, [self.kernel, self.visible_bias, self.hidden_bias])
        if self.persistent:
            self.particles.assign(vk)
        return self._record(v0, vk)

    def measure(self, data):
        v0 = self._data(data)  # evaluation splits come binarized once (the task's data)
        return self._record(v0, self.gibbs(v0, 1))

    def _record(self, v0, vk):
        t = self.trackers
        reconstruction = self.visible_mean(self.hidden_probabilities(v0))
        t["reconstruction_error"].update_state(ops.mean(ops.sum(ops.square(v0 - reconstruction), axis=-1)))
        if "pseudo_log_likelihood" in t:
            t["pseudo_log_likelihood"].update_state(self.pseudo_log_likelihood(v0))
        # mean free energy of model samples minus data's: grows as the model puts its mass on the data
        t["free_energy_gap"].update_state(ops.mean(self.free_energy(vk)) - ops.mean(self.free_energy(v0)))
        return {m.name: m.result() for m in self.metrics}

    def pseudo_log_likelihood(self, v):
        """The stochastic pseudo-log-likelihood per example (as scikit-learn's BernoulliRBM): D times
        log sigma(F(v with one random bit flipped) - F(v)), one bit per example."""
        d = self.visible
        index = keras.random.randint((ops.shape(v)[0],), 0, d, seed=self.seed_generator)
        flip = ops.one_hot(index, d, dtype=v.dtype)
        flipped = v + flip * (1 - 2 * v)
        return ops.mean(d * ops.log_sigmoid(self.free_energy(flipped) - self.free_energy(v)))

    # ------------------------------------------------------------ after training (numpy, float64)

    def numpy_parameters(self, dtype=np.float64):
        """kernel, visible bias and hidden bias as numpy arrays: float64 for AIS's sums, float32 for Gibbs chains."""
        return tuple(np.asarray(ops.convert_to_numpy(w), dtype)
                     for w in (self.kernel, self.visible_bias, self.hidden_bias))


def sigmoid_np(a: np.ndarray) -> np.ndarray:
    """The logistic function in numpy, in the input's dtype and without overflow (1 / (1 + exp(-a))
    overflows float32's exp below a = -88): 0.5 (1 + tanh(a / 2))."""
    return 0.5 * (1 + np.tanh(0.5 * a))


def free_energy_np(v, kernel, visible_bias, hidden_bias):
    return -v @ visible_bias - np.logaddexp(0, v @ kernel + hidden_bias).sum(-1)


def exact_log_partition(kernel, visible_bias, hidden_bias) -> float:
    """log Z of a Bernoulli RBM by summing over every hidden state (for at most ~20 hidden units):
    Z = sum_h exp(c.h) prod_i (1 + exp(b_i + W_i.h))."""
    hidden = kernel.shape[1]
    states = ((np.arange(2 ** hidden)[:, None] >> np.arange(hidden)) & 1).astype(np.float64)
    terms = states @ hidden_bias + np.logaddexp(0, states @ kernel.T + visible_bias).sum(-1)
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()))


def ais_schedule(steps: int = 14500) -> np.ndarray:
    """Inverse temperatures from 0 to 1, denser near 1: Salakhutdinov & Murray's 500 in [0, 0.5], 4,000 in
    [0.5, 0.9] and 10,000 in [0.9, 1], scaled to `steps`."""
    a, b = max(1, round(steps * 500 / 14500)), max(1, round(steps * 4000 / 14500))
    c = max(1, steps - a - b)
    return np.concatenate([np.linspace(0, 0.5, a, endpoint=False), np.linspace(0.5, 0.9, b, endpoint=False),
                           np.linspace(0.9, 1.0, c + 1)])


def ais_log_partition(kernel, visible_bias, hidden_bias, base_visible_bias, runs: int = 100, steps: int = 14500,
                      seed: int = 0, advance=None) -> dict:
    """Annealed importance sampling of log Z for a Bernoulli RBM (Salakhutdinov & Murray, 2008).

    The base model has no weights and visible biases `base_visible_bias` (the data's marginals), so
    log Z_A = sum log(1 + exp(b_A)) + H log 2 and it is sampled exactly. The chains then move through
    p_beta(v) proportional to exp((1 - beta) v.b_A + beta v.b) prod_j (1 + exp(beta (c_j + v.W_j))), with the
    hidden units summed out of the weights, by Gibbs steps at each beta. Returns log Z (the log of the
    mean importance weight) and its spread: log(mean -/+ 3 standard errors), as the paper reports it.
    `advance(n)`, if given, hears of the temperatures passed, a hundred at a time."""
    rng = np.random.default_rng(seed)
    betas = ais_schedule(steps)
    hidden = kernel.shape[1]
    log_za = float(np.logaddexp(0, base_visible_bias).sum() + hidden * math.log(2))
    # One product of the visible states per step gives every term that needs them (the hidden inputs, v.b_A
    # and v.b), in float64 as the weights accumulate. The Gibbs draws need only probabilities: float32,
    # whose exp is vectorized (a step takes about half the time)
    weights = np.concatenate([kernel, base_visible_bias[:, None], visible_bias[:, None]], axis=1).astype(np.float64)
    kernel_t = np.ascontiguousarray(kernel.T, dtype=np.float32)
    base32, visible32 = base_visible_bias.astype(np.float32), visible_bias.astype(np.float32)

    def draw(logits):
        """Bernoulli states with probabilities sigmoid(logits): u < 1 / (1 + exp(-x)), as u (1 + exp(-x)) < 1."""
        return rng.random(logits.shape, dtype=np.float32) * (1 + np.exp(-logits)) < 1

    v = draw(np.broadcast_to(base32, (runs, len(visible_bias))))
    log_w = np.zeros(runs)
    for i, (previous, beta) in enumerate(zip(betas[:-1], betas[1:]), 1):
        products = v @ weights
        inputs = products[:, :hidden] + hidden_bias
        # log p*_beta(v) - log p*_previous(v): the unnormalized log probabilities, hidden units summed out
        log_w += ((beta - previous) * (products[:, hidden + 1] - products[:, hidden])
                  + np.logaddexp(0, beta * inputs).sum(-1) - np.logaddexp(0, previous * inputs).sum(-1))
        h = draw((beta * inputs).astype(np.float32))
        b32 = np.float32(beta)
        v = draw((1 - b32) * base32 + b32 * (h @ kernel_t + visible32))
        if advance is not None and (i % 100 == 0 or i == len(betas) - 1):
            advance(i - (i - 1) // 100 * 100)  # the temperatures since the last call
    top = log_w.max()
    w = np.exp(log_w - top)
    mean, error = w.mean(), w.std(ddof=1) / math.sqrt(runs) if runs > 1 else 0.0
    log_z = log_za + top + math.log(mean)
    return {"log_z": log_z, "log_z_high": log_za + top + math.log(mean + 3 * error),
            "log_z_low": log_za + top + math.log(mean - 3 * error) if mean > 3 * error else -math.inf,
            "log_z_base": log_za, "runs": runs, "steps": len(betas) - 1,
            "log_weight_std": float(log_w.std())}
