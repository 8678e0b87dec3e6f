"""Run one training step of a model with a step of its own (a GAN, the VAE, the RBM) under the current
KERAS_BACKEND from fixed initial weights, with its randomness pinned, and save the weights after it.
tests/test_steps_agree.py runs this under TensorFlow and JAX and compares: the two paths (GradientTape,
jax.value_and_grad over a StatelessScope) must agree.

    python tests/step_probe.py FOLDER RECIPE...
        for each RECIPE: FOLDER/<stem>.weights.h5 (the initial weights, written if missing) and
        FOLDER/<stem>-<backend>.npz (the weights after the step, one batch)

The test calls `probe` in its own process for TensorFlow (the suite's backend), pinning the randomness
with pytest's monkeypatch so that nothing outlives the test, and runs this script for JAX.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def probe(recipe_path, init, out, patch=setattr):
    """`patch(owner, name, value)` pins the randomness (setattr: for good, in a process of its own)."""
    import keras
    from keras import ops

    from dlkit.models import gan_model
    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    session = Session.open(load_recipe(recipe_path))
    data, model = session.data, session.model()
    fixed = np.random.default_rng(0).standard_normal((64, 128)).astype("float32")

    def latent(self, batch, labels=None):  # the same noise and codes on both backends
        z = ops.convert_to_tensor(fixed[:batch, : self.latent_dim])
        parts, codes = [z], None
        if self.num_classes:
            parts.append(ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.num_classes))
        if self.codes:
            k = self.categorical_codes
            cat = ops.one_hot(np.arange(batch) % k, k) if k else None
            cont = ops.convert_to_tensor(fixed[:batch, 64:64 + self.continuous_codes])
            codes = ops.concatenate([c for c in (cat, cont) if c is not None], axis=-1)
            parts.append(codes)
        return (ops.concatenate(parts, axis=-1) if len(parts) > 1 else z), codes

    patch(gan_model.GAN, "latent", latent)
    # WGAN-GP's mixing weights, the VAE's binarization and the RBM's Gibbs draws; the VAE's reparameterisation
    patch(keras.random, "uniform", lambda shape, *a, **k: ops.full(shape, 0.3))
    patch(keras.random, "normal", lambda shape, *a, dtype=None, **k: ops.full(shape, 0.5, dtype=dtype))
    if Path(init).is_file():
        model.load_weights(init)
    else:
        model.save_weights(init)
    np.savez(str(out).replace(".npz", "-init.npz"), *model.get_weights())
    x, y = next(iter(data.train))
    x, y = keras.tree.map_structure(ops.convert_to_numpy, (x, y))
    model.fit(x, y, batch_size=len(y if not isinstance(y, tuple) else y[0]), epochs=1, verbose=0, shuffle=False)
    np.savez(out, *model.get_weights())


if __name__ == "__main__":
    import keras

    folder = Path(sys.argv[1])
    for recipe in map(Path, sys.argv[2:]):
        probe(recipe, folder / f"{recipe.stem}.weights.h5", folder / f"{recipe.stem}-{keras.backend.backend()}.npz")
