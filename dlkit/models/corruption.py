"""Keras pieces of the autoencoders: the input corruption of a denoising autoencoder, and the KL and L1
sparsity penalties of a sparse one. All are registered, so a model holding them saves and loads."""

from __future__ import annotations

import keras
from keras import ops

KINDS = ("gaussian", "masking", "salt_and_pepper")


@keras.saving.register_keras_serializable(package="dlkit")
class Corruption(keras.layers.Layer):
    """Corrupts its input while training, and passes it through otherwise (Vincent et al., 2008).

    - gaussian: adds noise of standard deviation `level`;
    - masking: sets each value to `low` with probability `level`;
    - salt_and_pepper: sets each value to `low` or `high` (even odds) with probability `level`.

    `low` and `high` are the input's range (0 and 1 for data.scale: unit).

    >>> Corruption("masking", 0.3)(images, training=True)  # about 30% of the pixels zeroed
    """

    def __init__(self, kind: str = "gaussian", level: float = 0.3, low: float = 0.0, high: float = 1.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"unknown corruption {kind!r}; expected one of {KINDS}")
        self.kind, self.level, self.low, self.high, self.seed = kind, level, low, high, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.level == 0:
            return x
        if self.kind == "gaussian":
            return x + self.level * keras.random.normal(ops.shape(x), seed=self.seed_generator, dtype=x.dtype)
        hit = keras.random.uniform(ops.shape(x), seed=self.seed_generator, dtype=x.dtype) < self.level
        if self.kind == "masking":
            return ops.where(hit, ops.cast(self.low, x.dtype), x)
        salt = keras.random.uniform(ops.shape(x), seed=self.seed_generator, dtype=x.dtype) < 0.5
        value = ops.where(salt, ops.cast(self.high, x.dtype), ops.cast(self.low, x.dtype))
        return ops.where(hit, value, x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "level": self.level, "low": self.low, "high": self.high,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="dlkit")
class KLSparsity(keras.regularizers.Regularizer):
    """The sparse autoencoder's penalty (Ng, "Sparse autoencoder" notes): `weight` times the sum over code
    units of KL(target || mean activation), the mean taken over the batch. The code must lie in (0, 1): a
    sigmoid code."""

    def __init__(self, target: float = 0.05, weight: float = 1.0):
        self.target, self.weight = float(target), float(weight)

    def __call__(self, activations):
        rho = self.target
        # in float32 whatever the precision: in float16, 1 - 1e-6 rounds to 1 (log 0), and Keras adds the
        # penalty to a float32 loss
        rho_hat = ops.clip(ops.mean(ops.cast(activations, "float32"), axis=0), 1e-6, 1 - 1e-6)
        kl = rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat))
        return self.weight * ops.sum(kl)

    def get_config(self):
        return {"target": self.target, "weight": self.weight}


@keras.saving.register_keras_serializable(package="dlkit")
class L1Sparsity(keras.regularizers.Regularizer):
    """The L1 code penalty: `weight` times the sum of the code's absolute values, as keras.regularizers.L1,
    but in float32 whatever the precision (Keras adds a float16 activity penalty to the float32 loss with a
    TypeError)."""

    def __init__(self, weight: float = 0.01):
        self.weight = float(weight)

    def __call__(self, activations):
        return self.weight * ops.sum(ops.abs(ops.cast(activations, "float32")))

    def get_config(self):
        return {"weight": self.weight}
