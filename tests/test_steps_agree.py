"""The models with a step of their own (the GANs, the VAE, the RBM) train on TensorFlow and on JAX through
one step body: gradients by a GradientTape on TensorFlow and by jax.value_and_grad over a StatelessScope on
JAX (dlkit.models.steps). From the same weights, random draws and batch, one step on each backend lands on
the same weights. JAX's step runs as on the JAX-only GPU host: in a process where `import tensorflow` fails,
its batch from the numpy pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import step_probe
from conftest import DATA, no_tensorflow_env

NETS = "latent_dim: 8, generator: {filters: [8, 8]}, discriminator: {filters: [8, 8], dropout: 0}"
MODELS = {
    "dcgan": f"model: {{arch: dcgan, {NETS}, ema: 0.9, label_smoothing: 0.1, top_k: 0.5}}",
    "wgan_gp": f"model: {{arch: wgan_gp, {NETS}, n_critic: 2}}",
    "infogan": f"model: {{arch: infogan, {NETS}, categorical_codes: 3, continuous_codes: 1}}",
    "stackgan": f"model: {{arch: stackgan, {NETS}, low_discriminator: {{filters: [8], dropout: 0}}}}",
    "cyclegan": "model: {arch: cyclegan, filters: 4, residual_blocks: 1, discriminator_filters: 4}",
    # the reparameterised ELBO of dynamically binarized digits; contrastive divergence from persistent chains
    "vae": "model: {arch: vae, hidden: [16], latent_dim: 2}",
    "rbm": "model: {arch: rbm, hidden: 16, persistent: true, chains: 16}",
}
# Plain SGD: a weight moves by its gradient, so a gradient that differs shows as a step that differs. (Adam's
# first step, lr * g / |g|, would show only each gradient's sign.)
SGD = "{name: sgd, learning_rate: 0.05}"
TRAIN = {"vae": f"{{epochs: 1, optimizer: {SGD}}}", "rbm": f"{{epochs: 1, optimizer: {SGD}}}"}


@pytest.mark.parametrize("archs", [
    # weight average and top-k; the critic's input gradient; the VAE's noise and binarization; Gibbs chains
    ("dcgan", "wgan_gp", "vae", "rbm"),
    # two generators; the Q head; two stages, two critics
    pytest.param(("cyclegan", "infogan", "stackgan"), marks=pytest.mark.slow),
], ids=lambda a: "+".join(a))
def test_jax_and_tensorflow_train_steps_agree(archs, digits16, tmp_path, monkeypatch):
    """One step on each backend from the same weights, random draws and batch lands on the same weights:
    generator, discriminator(s), Q head, weight average, batch-norm statistics, encoder and decoder, the RBM's
    weights and its persistent chains alike. A step moves a weight by as much as 0.02 (the GANs) to 2 (the
    VAE); the two backends' steps differ by float rounding: every weight by at most 5e-5 (measured: the
    CycleGAN's instance norms 2.1e-5, the others under 3e-7), 99% of each model's by at most 1e-5."""
    from dlkit.data import sources

    a = np.load(digits16)
    cifar = sources.load_builtin("cifar10", str(DATA), allow_download=False)
    b_path = tmp_path / "digits16_m.npz"
    np.savez(b_path, x_train=sources.blend_over_patches(a["x_train"], cifar.x_train, 1), y_train=a["y_train"])
    paths = []
    for arch in archs:
        scale = "unit" if arch in ("vae", "rbm") else "symmetric"
        data = f"{{dataset: npz, path: {digits16}, scale: {scale}, validation_split: 0, batch_size: 32, " \
               "shuffle_buffer: 0"
        extra = f", domain_b: {{dataset: npz, path: {b_path}}}}}" if arch == "cyclegan" else "}"
        train = TRAIN.get(arch, f"{{epochs: 1, optimizers: {{generator: {SGD}, discriminator: {SGD}}}}}")
        path = tmp_path / f"{arch}.yaml"
        path.write_text(f"name: probe_{arch}\ndata: {data}{extra}\n{MODELS[arch]}\ntrain: {train}\n")
        paths.append(str(path))
    # TensorFlow first, here (the suite's backend): it writes the initial weights; then JAX in a process of its own
    for path in map(Path, paths):
        step_probe.probe(path, tmp_path / f"{path.stem}.weights.h5", tmp_path / f"{path.stem}-tensorflow.npz",
                         patch=monkeypatch.setattr)
    out = subprocess.run([sys.executable, str(Path(step_probe.__file__)), str(tmp_path), *paths],
                         env=no_tensorflow_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for arch in archs:
        tf_w, jax_w = np.load(tmp_path / f"{arch}-tensorflow.npz"), np.load(tmp_path / f"{arch}-jax.npz")
        init = np.load(tmp_path / f"{arch}-jax-init.npz")
        assert tf_w.files == jax_w.files == init.files
        assert max(float(np.abs(jax_w[k] - init[k]).max()) for k in init.files) > 1e-4, f"{arch} did not train"
        gap = np.concatenate([np.abs(jax_w[k] - tf_w[k]).ravel() for k in tf_w.files])
        assert gap.max() <= 5e-5 and np.quantile(gap, 0.99) <= 1e-5, \
            f"{arch}: the steps differ by up to {gap.max():.3g} ({np.quantile(gap, 0.99):.3g} at the 99th percentile)"


def test_float16_steps_scale_their_losses_on_both_backends(digits16, tmp_path, monkeypatch):
    """Under train.precision: mixed_float16 a step of dlkit's own scales its loss as Keras's own step does
    (each optimizer a LossScaleOptimizer; dlkit.models.steps.StepModel.descend): from the same weights, the
    float16 step moves the weights as the float32 step does, to float16's rounding (within 2% of the largest
    step; measured: 0.6%, the DCGAN's on JAX; a step not scaled back is 256 times off), on TensorFlow and on JAX
    (where the optimizer's overflow branches go through its stateless_apply). A step whose scaled gradients
    overflow moves nothing and halves each scale. A VAE (Keras's compile wraps its optimizer) and a DCGAN (two
    optimizers, wrapped by dlkit); and an RBM, whose contrastive divergence has no loss to scale: its optimizer
    is not wrapped, and its float16 step is its float32 step."""
    import keras

    paths = []
    for arch in ("vae", "dcgan", "rbm"):
        scale = "symmetric" if arch == "dcgan" else "unit"
        data = f"{{dataset: npz, path: {digits16}, scale: {scale}, validation_split: 0, batch_size: 32, " \
               "shuffle_buffer: 0}"
        train = TRAIN.get(arch, f"{{epochs: 1, optimizers: {{generator: {SGD}, discriminator: {SGD}}}}}")
        variants = (("", "float32"), (".f16", "mixed_float16"), (".overflow", "mixed_float16"))
        for variant, precision in variants[:2] if arch == "rbm" else variants:
            path = tmp_path / f"{arch}{variant}.yaml"
            path.write_text(f"name: probe_{arch}\ndata: {data}\n{MODELS[arch]}\ntrain: {train[:-1]}, "
                            f"precision: {precision}}}\n")
            paths.append(path)
    try:
        for path in paths:  # TensorFlow here; the float32 step writes the initial weights
            arch, _, variant = path.stem.partition(".")
            step_probe.probe(path, tmp_path / f"{arch}.weights.h5", tmp_path / f"{path.stem}-tensorflow.npz",
                             patch=monkeypatch.setattr, loss_scale=step_probe.LOSS_SCALES.get(variant))
    finally:
        keras.config.set_dtype_policy("float32")  # the sessions set it for the process
    half = [str(p) for p in paths if "." in p.stem]
    out = subprocess.run([sys.executable, str(Path(step_probe.__file__)), str(tmp_path), *half],
                         env=no_tensorflow_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]

    def weights(name):
        w = np.load(tmp_path / f"{name}.npz")
        return np.concatenate([w[k].ravel() for k in w.files])

    for arch, optimizers in (("vae", 1), ("dcgan", 2), ("rbm", 0)):
        init = weights(f"{arch}-tensorflow-init")
        moved = weights(f"{arch}-tensorflow") - init  # the float32 step
        for backend in ("tensorflow", "jax"):
            step = weights(f"{arch}.f16-{backend}") - init
            assert np.abs(step - moved).max() <= 0.02 * np.abs(moved).max(), \
                f"{arch} on {backend}: the float16 step differs from the float32 one by " \
                f"{np.abs(step - moved).max():.3g} of {np.abs(moved).max():.3g}"
            scaling = np.load(tmp_path / f"{arch}.f16-{backend}-scaling.npz")
            assert list(scaling["scales"]) == [step_probe.LOSS_SCALES["f16"]] * optimizers  # kept
            if not optimizers:
                continue
            overflow = np.load(tmp_path / f"{arch}.overflow-{backend}-scaling.npz")
            assert float(overflow["moved"]) == 0.0, f"{arch} on {backend}: an overflowed step moved the weights"
            assert list(overflow["scales"]) == [step_probe.LOSS_SCALES["overflow"] / 2] * len(scaling["scales"])
