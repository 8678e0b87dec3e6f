"""Run one training step of a model with a step of its own (a GAN, the VAE, the RBM) under the current
KERAS_BACKEND from fixed initial weights, with its randomness pinned, and save the weights after it.
tests/test_steps_agree.py runs this under TensorFlow and JAX and compares: the two paths (GradientTape,
jax.value_and_grad over a StatelessScope) must agree.

    python tests/step_probe.py FOLDER RECIPE...
        for each RECIPE: FOLDER/<stem>.weights.h5 (the initial weights, written if missing) and
        FOLDER/<stem>-<backend>.npz (the weights after the step, one batch), with the loss scales after it
        and the largest change of a trainable weight in FOLDER/<stem>-<backend>-scaling.npz. A stem
        `<arch>.<variant>` (a train.precision: mixed_float16 variant, say) starts from <arch>.weights.h5;
        its variant's LOSS_SCALES entry, if any, sets its loss scales first.

The test calls `probe` in its own process for TensorFlow (the suite's backend), pinning the randomness
with pytest's monkeypatch so that nothing outlives the test, and runs this script for JAX.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


# the loss scales a variant's step starts from: one that a first step of these models does not overflow
# (Keras's initial 2**15 does, for the VAE: that step is skipped and the scale halved), and one that no
# float16 gradient survives (its largest finite value is 65504)
LOSS_SCALES = {"f16": 2.0 ** 8, "overflow": 2.0 ** 40}


def probe(recipe_path, init, out, patch=setattr, loss_scale=None):
    """`patch(owner, name, value)` pins the randomness (setattr: for good, in a process of its own).
    `loss_scale` is set on each of the model's LossScaleOptimizers before the step, whose scales after it are
    saved beside `out` (<out>-scaling.npz)."""
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
    scaled = [o for o in (getattr(model, k, None) for k in ("optimizer", "g_optimizer", "d_optimizer"))
              if isinstance(o, keras.optimizers.LossScaleOptimizer)]
    for optimizer in scaled:
        if not optimizer.built:  # as fit builds it (a VAE's, which Keras's compile wrapped)
            optimizer.build(model.trainable_variables)
        if loss_scale:
            optimizer.dynamic_scale.assign(loss_scale)
    before = [ops.convert_to_numpy(v) for v in model.trainable_weights]
    x, y = next(iter(data.train))
    x, y = keras.tree.map_structure(ops.convert_to_numpy, (x, y))
    model.fit(x, y, batch_size=len(y if not isinstance(y, tuple) else y[0]), epochs=1, verbose=0, shuffle=False)
    np.savez(out, *model.get_weights())
    # the optimizers' loss scales after the step, and how far it moved a trainable weight (a skipped step
    # still updates batch-norm statistics, in its forward pass)
    moved = max(float(np.abs(ops.convert_to_numpy(v) - b).max()) for v, b in zip(model.trainable_weights, before))
    np.savez(str(out).replace(".npz", "-scaling.npz"), scales=[float(o.dynamic_scale) for o in scaled], moved=moved)


if __name__ == "__main__":
    import keras

    folder = Path(sys.argv[1])
    for recipe in map(Path, sys.argv[2:]):
        arch, _, variant = recipe.stem.partition(".")
        probe(recipe, folder / f"{arch}.weights.h5", folder / f"{recipe.stem}-{keras.backend.backend()}.npz",
              loss_scale=LOSS_SCALES.get(variant))
