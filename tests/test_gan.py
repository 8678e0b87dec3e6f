"""GAN family on tiny 16x16 crops of real MNIST digits: training, saving, sampling, measuring."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA, build
from dlkit import metrics
from dlkit.cli import app
from dlkit.runs import row
from dlkit.training.train import train

METRICS = {
    "dcgan": {"d_loss", "g_loss", "d_accuracy", "diversity"},
    "cgan": {"d_loss", "g_loss", "d_accuracy", "diversity"},
    "wgan": {"d_loss", "g_loss", "wasserstein", "diversity"},
    "wgan_gp": {"d_loss", "g_loss", "wasserstein", "gradient_penalty", "diversity"},
    "infogan": {"d_loss", "g_loss", "d_accuracy", "info_loss", "diversity"},
    "stackgan": {"d_loss", "g_loss", "d_accuracy", "diversity"},
}


def gan_recipe(tmp_path, data_path, arch, extra="", train="{epochs: 2}"):
    path = tmp_path / f"{arch}.yaml"
    path.write_text(f"""
name: tiny_{arch}
data: {{dataset: npz, path: {data_path}, scale: symmetric, validation_split: 0, batch_size: 64}}
model:
  arch: {arch}
  latent_dim: 8
  generator: {{filters: [16, 8]}}
  discriminator: {{filters: [8, 16]}}
{extra}
train: {train}
""")
    return path


# the knobs the shared runs carry, each read by a test below: the dcgan draws grids inside epochs too, the
# dcgan and the stackgan keep a weight average of the generator, the wgan clips its critic
KNOBS = {"dcgan": ("  ema: 0.9", "{epochs: 2, sample_every: 3}"), "stackgan": ("  ema: 0.9", "{epochs: 2}"),
         "wgan": ("  clip_value: 0.005", "{epochs: 2}")}


@pytest.fixture(scope="module")
def gan_run(digits16, tmp_path_factory):
    """Each GAN's run (2 epochs of 4 steps, with its KNOBS), trained the first time a test of this module asks
    for it and then shared: the tests read what training wrote (and may add files of their own beside it)."""
    root, runs = tmp_path_factory.mktemp("gan_runs"), {}

    def run(arch: str) -> Path:
        if arch not in runs:
            extra, schedule = KNOBS.get(arch, ("", "{epochs: 2}"))
            recipe = gan_recipe(root, digits16, arch, extra, train=schedule)
            runs[arch] = Path(train(recipe, runs_root=root / "runs")["run_dir"])
        return runs[arch]

    return run


@pytest.fixture(scope="module")
def clf16(digits16, tmp_path_factory) -> str:
    """A small digit classifier on the same 16x16 crops, the reference `evaluate --reference` measures with."""
    root = tmp_path_factory.mktemp("clf16")
    (root / "clf.yaml").write_text(f"name: clf16\ndata: {{dataset: npz, path: {digits16}, batch_size: 64}}\n"
                                   "model: {arch: cnn, blocks: [{filters: 8}], dense: [16]}\ntrain: {epochs: 1}\n")
    return train(root / "clf.yaml", runs_root=root / "runs")["run_dir"]


@pytest.mark.parametrize("arch", sorted(METRICS))
def test_every_gan_trains_saves_and_reloads(arch, gan_run):
    run = gan_run(arch)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 2 and METRICS[arch] <= set(rows[0])
    steps = sorted(int(p.stem[5:]) for p in (run / "samples").glob("step_*.png"))
    if arch == "dcgan":
        assert steps and steps[0] == 3 and all(s % 3 == 0 for s in steps) and steps[-1] > steps[0]
    else:
        assert steps == []
    assert all(math.isfinite(float(r[k])) for r in rows for k in METRICS[arch])
    assert {"generator_learning_rate", "discriminator_learning_rate"} <= set(rows[0])
    for name in ("samples/epoch_001.png", "samples/epoch_002.png", "samples.png", "progress.gif",
                 "model.keras", "checkpoints/last.keras", "learning_curves.png"):
        assert (run / name).is_file(), name

    from dlkit.models.gan import latent_inputs

    gan = keras.saving.load_model(run / "model.keras")
    again = keras.saving.load_model(run / "model.keras")
    z = latent_inputs(gan, 6, np.random.default_rng(3))
    np.testing.assert_allclose(gan.generator.predict(z, verbose=0), again.generator.predict(z, verbose=0), atol=1e-6)
    # both optimizers' state and the RNG state are saved
    ckpt = keras.saving.load_model(run / "checkpoints" / "last.keras")
    steps = 2 * 4  # 2 epochs x 256/64 batches
    assert int(ckpt.g_optimizer.iterations.numpy()) == steps
    assert int(ckpt.d_optimizer.iterations.numpy()) == steps * gan.n_critic
    assert ckpt.seed_generator.state.numpy().tolist() == gan.seed_generator.state.numpy().tolist()
    from dlkit.models import rng

    assert len(rng.snapshot(ckpt)) > 1  # the dropout layers' streams too
    for saved, live in zip(rng.snapshot(ckpt), rng.snapshot(gan)):
        np.testing.assert_array_equal(saved, live)


@pytest.mark.parametrize("arch", ["dcgan", "stackgan"])
def test_generator_weight_average(arch, gan_run):
    """model.ema keeps a moving average of the generator; it draws the samples and is saved and reloaded."""
    run = gan_run(arch)
    gan = keras.saving.load_model(run / "model.keras")
    assert gan.sampler is gan.generator_ema and gan.ema_decay == 0.9
    from dlkit.models.gan import latent_inputs

    z = latent_inputs(gan, 6, np.random.default_rng(3))
    avg = gan.sampler.predict(z, verbose=0)
    lag = max(float(np.abs(a - w).max()) for a, w in zip(gan.generator_ema.get_weights(), gan.generator.get_weights()))
    assert lag > 1e-5  # the average lags the trained weights
    ckpt = keras.saving.load_model(run / "checkpoints" / "last.keras")
    np.testing.assert_allclose(ckpt.sampler.predict(z, verbose=0), avg, atol=1e-6)
    assert not gan.generator_ema.trainable_weights
    assert {id(v) for v in gan.g_variables()}.isdisjoint(id(v) for v in gan.generator_ema.weights)


@pytest.mark.parametrize("arch", ["infogan", "stackgan"])
def test_noise_scale_shrinks_only_the_noise(arch, digits16, tmp_path):
    """model.noise_scale multiplies the noise part of the latent inside the generator (codes and labels
    untouched), so samplers still draw N(0, 1) noise; it survives save and reload."""
    from dlkit.data.spec import DataSpec
    from dlkit.tasks import load_recipe

    spec = DataSpec(input_shape=(16, 16, 1), num_classes=10)
    recipe = load_recipe(gan_recipe(tmp_path, digits16, arch, "  noise_scale: 0.25"))
    plain = load_recipe(gan_recipe(tmp_path, digits16, arch))
    scaled, unscaled = build(recipe, spec), build(plain, spec)
    unscaled.generator.set_weights(scaled.generator.get_weights())  # the scaling layer holds no weights
    extra = scaled.generator.input_shape[-1] - 8
    rng = np.random.default_rng(0)
    noise, rest = rng.normal(size=(5, 8)).astype("float32"), np.eye(extra, dtype="float32")[rng.integers(0, extra, 5)]
    out = scaled.generator.predict(np.concatenate([noise, rest], 1), verbose=0)
    expected = unscaled.generator.predict(np.concatenate([0.25 * noise, rest], 1), verbose=0)
    size = float(np.abs(out).max())  # freshly initialised (stddev 0.02), the images are near 0
    np.testing.assert_allclose(out, expected, atol=1e-4 * size)
    unscaled_out = unscaled.generator.predict(np.concatenate([noise, rest], 1), verbose=0)
    assert float(np.abs(out - unscaled_out).max()) > 0.1 * size
    path = tmp_path / "g.keras"
    scaled.generator.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(np.concatenate([noise, rest], 1), verbose=0),
                               out, atol=1e-4 * size)


def test_ema_update_rule():
    from dlkit.models.gan_model import GAN

    g = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    avg = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    d = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    gan = GAN(generator=g, discriminator=d, generator_ema=avg, ema_decay=0.99, latent_dim=2)
    gan.compile(g_optimizer=keras.optimizers.SGD(), d_optimizer=keras.optimizers.SGD())
    g.set_weights([np.ones((2, 1))])
    avg.set_weights([np.zeros((2, 1))])
    gan.g_optimizer.iterations.assign(1000)  # past the warm-up: decay is 0.99
    gan.update_ema()
    np.testing.assert_allclose(avg.get_weights()[0], 0.01, rtol=1e-5)
    gan.g_optimizer.iterations.assign(0)  # warm-up: (1 + 0) / (10 + 0) = 0.1
    gan.update_ema()
    np.testing.assert_allclose(avg.get_weights()[0], 0.1 * 0.01 + 0.9, rtol=1e-5)


def test_top_k_training(digits16, tmp_path):
    """model.top_k: the generator's loss is taken over the fakes the discriminator rates highest, a share
    annealed linearly from 1 to top_k over top_k_epochs; the setting is saved with the model."""
    from dlkit.models.gan_model import GAN, top_k_mask

    scores = np.array([[3.0], [1.0], [2.0], [0.0]], "float32")
    mask = lambda share: keras.ops.convert_to_numpy(top_k_mask(scores, share)).tolist()  # noqa: E731
    assert mask(0.5) == mask(0.3) == [1, 0, 1, 0]  # ceil(0.3 * 4) = 2
    assert mask(0.01) == [1, 0, 0, 0] and mask(1.0) == [1, 1, 1, 1]

    g = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    d = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    gan = GAN(generator=g, discriminator=d, latent_dim=2, top_k=0.5, top_k_steps=100)
    gan.compile(g_optimizer=keras.optimizers.SGD(), d_optimizer=keras.optimizers.SGD())
    softplus = np.log1p(np.exp(-scores[:, 0]))  # the non-saturating loss of each fake
    np.testing.assert_allclose(float(gan.g_loss_fn(scores, 0.5)), softplus[[0, 2]].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(gan.g_loss_fn(scores, 1.0)), softplus.mean(), rtol=1e-5)
    shares = []
    for step in (0, 50, 100, 400):
        gan.g_optimizer.iterations.assign(step)
        shares.append(float(gan.top_k_share()))
    assert shares == pytest.approx([1.0, 0.75, 0.5, 0.5])

    result = train(gan_recipe(tmp_path, digits16, "dcgan", "  top_k: 0.25\n  top_k_epochs: 1.5"),
                   ["train.epochs=1"], runs_root=tmp_path / "runs")
    saved = keras.saving.load_model(Path(result["run_dir"]) / "model.keras")
    assert (saved.top_k, saved.top_k_steps) == (0.25, 6)  # 1.5 epochs x 256/64 batches
    assert math.isfinite(float(saved.g_loss_fn(scores, 0.25)))


def test_infogan_continuous_weight(digits16, tmp_path):
    """The info loss is the categorical cross-entropy plus continuous_weight times the continuous codes'
    squared error; the weight is saved with the model."""
    from dlkit.data.spec import DataSpec
    from dlkit.models import infogan
    from dlkit.tasks import load_recipe

    spec = DataSpec(input_shape=(16, 16, 1), num_classes=10)
    gan = build(load_recipe(gan_recipe(tmp_path, digits16, "infogan", "  continuous_weight: 0.25")), spec,
                compile=False)
    assert infogan.Config().continuous_weight == 0.1  # a recipe's default, below the categorical code's 1
    k, rng = gan.categorical_codes, np.random.default_rng(0)  # the recipe's 10 categorical and 2 continuous
    codes = np.concatenate([np.eye(k)[[1, 7]], rng.uniform(-1, 1, (2, gan.continuous_codes))], 1).astype("float32")
    predicted = rng.normal(size=codes.shape).astype("float32")
    logits = predicted[:, :k]
    ce = np.mean(np.log(np.exp(logits).sum(1)) - (codes[:, :k] * logits).sum(1))
    mse = np.mean((codes[:, k:] - predicted[:, k:]) ** 2)
    loss = float(keras.ops.convert_to_numpy(gan.info_loss_fn(predicted, codes)))
    assert loss == pytest.approx(ce + 0.25 * mse, rel=1e-5)
    path = tmp_path / "infogan.keras"
    gan.save(path)
    assert gan.get_config()["continuous_weight"] == 0.25
    assert keras.saving.load_model(path).continuous_weight == 0.25


def test_wgan_clips_critic_weights(gan_run):
    gan = keras.saving.load_model(gan_run("wgan") / "model.keras")
    assert gan.clip_value == 0.005
    for v in gan.discriminator.trainable_variables:
        assert np.abs(v.numpy()).max() <= 0.005 + 1e-7


def test_gan_knobs_land(digits16, tmp_path):
    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    r = load_recipe(gan_recipe(tmp_path, digits16, "dcgan", "  label_smoothing: 0.1\n  instance_noise: 0.05"),
                    ["model.discriminator={filters: [8], dropout: 0.4, regularizer: {l2: 0.001}}",
                     "train.optimizers={generator: {name: adam, learning_rate: 0.001, clipnorm: 1.0}, "
                     "discriminator: {name: rmsprop, learning_rate: 0.0004}}"])
    gan = Session.open(r).model()
    assert gan.label_smoothing == 0.1 and gan.instance_noise == 0.05
    assert type(gan.g_optimizer).__name__ == "Adam" and gan.g_optimizer.clipnorm == 1.0
    assert type(gan.d_optimizer).__name__ == "RMSprop"
    assert float(gan.d_optimizer.learning_rate.numpy()) == pytest.approx(0.0004)
    drops = [layer.rate for layer in gan.discriminator.layers if isinstance(layer, keras.layers.Dropout)]
    assert drops == [0.4] and len(gan.discriminator.losses) == 1  # the L2 penalty
    convs = [layer for layer in gan.generator.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert type(convs[0].kernel_initializer).__name__ == "RandomNormal"
    assert convs[0].kernel_initializer.stddev == 0.02


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="an eager step: train_step(data) is "
                    "TensorFlow's signature (JAX's takes the state too)")
@pytest.mark.parametrize("model", [
    "{arch: infogan, latent_dim: 4, generator: {filters: [4, 4]}, "
    "discriminator: {filters: [4, 4], spectral_norm: true}}",
    "{arch: wgan_gp, latent_dim: 4, generator: {filters: [4, 4]}, discriminator: {filters: [4, 4]}}",
    "{arch: cyclegan, filters: 4, discriminator_filters: 4, residual_blocks: 1}",
], ids=["infogan", "wgan_gp", "cyclegan"])
def test_own_steps_run_under_mixed_bfloat16(write_recipe, model):
    """Each was a TypeError in its first step ("Sub has type bfloat16 that does not match float32"): the nets'
    outputs, in 16 bits, met float32 images, codes and constants. They are float32 now (an eager step, here)."""
    from dlkit.data.spec import DataSpec
    from dlkit.tasks import load_recipe

    data = "{dataset: mnist, domain_b: {dataset: mnist_m}}" if "cyclegan" in model else "{scale: symmetric}"
    recipe = load_recipe(write_recipe(f"model: {model}\ndata: {data}\ntrain: {{precision: mixed_bfloat16}}\n"))
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype("float32")
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        net = build(recipe, DataSpec(input_shape=(16, 16, 1), num_classes=10, num_train=64))
        logs = net.train_step(((x, x), None) if "cyclegan" in model else (x, np.arange(8)))
    finally:
        keras.config.set_dtype_policy("float32")
    assert logs and all(np.isfinite(float(v)) for v in logs.values())


def _spectral_norms(discriminator):
    """The largest singular value of each spectrally normalised kernel, as (out, in) matrices."""
    norms = []
    for layer in discriminator.layers:
        if isinstance(layer, keras.layers.SpectralNormalization):
            kernel = keras.ops.convert_to_numpy(layer.layer.kernel)
            norms.append(float(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]))
    return norms


@pytest.mark.parametrize("backends", ["tensorflow", pytest.param("tensorflow+jax", marks=pytest.mark.slow)])
def test_spectral_norm_on_both_backends(backends, digits16, gan_run, tmp_path):
    """discriminator.spectral_norm wraps every conv and the logit. After training, each kernel's largest
    singular value is 1 (within 5%: one power iteration per call) on TensorFlow and on JAX (trained in a
    subprocess; a slow case: the JAX backend's adversarial steps are checked in `make test` by the step
    agreement test), and the wrapped model reloads with the same outputs. Without the knob, no layer is
    wrapped and the kernels are far from norm 1."""
    import os
    import subprocess
    import sys

    path = gan_recipe(tmp_path, digits16, "dcgan")
    sn = ["model.discriminator={filters: [8, 16], spectral_norm: true, dropout: 0}", "train.epochs=1"]
    plain = keras.saving.load_model(gan_run("dcgan") / "model.keras").discriminator
    assert _spectral_norms(plain) == []
    kernel = next(keras.ops.convert_to_numpy(layer.kernel) for layer in plain.layers
                  if isinstance(layer, keras.layers.Conv2D))
    assert np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0] < 0.9

    runs = [Path(train(path, sn, runs_root=tmp_path / "tf")["run_dir"])]
    if "jax" in backends:
        env = {**os.environ, "KERAS_BACKEND": "jax"}
        out = subprocess.run([sys.executable, "-m", "dlkit.cli", "train", str(path), "-q", "--json", "--runs-root",
                              str(tmp_path / "jax"), *[a for s in sn for a in ("-s", s)]],
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(Path(json.loads(out.stdout)["run_dir"]))
    images = np.random.default_rng(0).uniform(-1, 1, (5, 16, 16, 1)).astype("float32")
    for run in runs:
        gan = keras.saving.load_model(run / "model.keras")
        norms = _spectral_norms(gan.discriminator)
        assert len(norms) == 3 and norms == pytest.approx([1.0] * 3, abs=0.05), (run, norms)
        again = keras.saving.load_model(run / "checkpoints" / "last.keras")
        np.testing.assert_allclose(again.discriminator.predict(images, verbose=0),
                                   gan.discriminator.predict(images, verbose=0), atol=1e-5)


def test_unscaled_logits_and_geometry_errors(digits16, tmp_path):
    from dlkit.errors import RecipeError
    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    r = load_recipe(gan_recipe(tmp_path, digits16, "dcgan"))
    gan = Session.open(r).model()
    assert gan.discriminator.layers[-1].activation.__name__ == "linear"
    bad = load_recipe(gan_recipe(tmp_path, digits16, "dcgan"), ["model.generator.filters=[8, 8, 8, 8, 8]"])
    with pytest.raises(RecipeError, match="divisible"):
        Session.open(bad).model()


def test_steps_written_out_in_the_traced_step_are_bounded():
    """n_critic's critic steps and cd_k's Gibbs steps are a Python loop in the traced training step: a count of
    thousands traced for hours and ran the machine out of memory before its first step (n_critic 200: 262 s and
    5 GB for a two-step run). So are layers repeated by a count (convs: 300 built in 7 s, 3000 for minutes). The
    most a recipe may ask is a recipe error; that most still loads."""
    from dlkit.errors import RecipeError
    from dlkit.tasks import load_recipe

    root = Path(__file__).resolve().parents[1] / "recipes"
    for recipe, key, most in (("wgan_mnist", "n_critic", 100), ("wgan_gp_fashion_mnist", "n_critic", 100),
                              ("gan_mnist", "n_critic", 100), ("rbm_mnist", "cd_k", 1000), ("dbn_mnist", "cd_k", 1000),
                              ("cyclegan_mnist_m", "residual_blocks", 64),
                              ("cnn_fashion_mnist", "convs_per_stage", 64)):
        assert getattr(load_recipe(root / f"{recipe}.yaml", [f"model.{key}={most}"]).model, key) == most
        with pytest.raises(RecipeError, match=rf"model.{key}: Input should be less than or equal to {most}; "
                                              rf"received 100000"):
            load_recipe(root / f"{recipe}.yaml", [f"model.{key}=100000"])
    with pytest.raises(RecipeError, match=r"model.blocks.0.convs: Input should be less than or equal to 64"):
        load_recipe(root / "cnn_mnist.yaml", ["model.blocks=[{filters: 4, convs: 3000}]"])


def test_generate_and_evaluate_with_a_reference(gan_run, clf16):
    runner = CliRunner()
    cgan, info, dcgan = (str(gan_run(arch)) for arch in ("cgan", "infogan", "dcgan"))

    out = runner.invoke(app, ["generate", cgan, "-n", "10", "--label", "3", "--json"])
    assert out.exit_code == 0 and Path(json.loads(out.stdout)["out"]).name == "samples-seed0-label3.png"
    assert runner.invoke(app, ["generate", cgan, "-n", "10", "--label", "3"]).exit_code == 2  # would overwrite
    negative = runner.invoke(app, ["generate", cgan, "--seed", "-1"])  # numpy's seeds are 0 to 2**32 - 1
    assert negative.exit_code == 2 and "--seed" in negative.output
    assert runner.invoke(app, ["generate", cgan, "--interpolate", "-n", "6", "--label", "1"]).exit_code == 0
    assert runner.invoke(app, ["generate", info, "--code", "2", "-n", "4"]).exit_code == 0
    exported = runner.invoke(app, ["export", cgan, "--format", "onnx", "--json"])  # the generator: noise + one-hot label
    assert exported.exit_code == 0, exported.stderr
    exported = json.loads(exported.stdout)
    assert exported["model"].startswith("the generator") and exported["inputs"][0]["shape"] == [None, 8 + 10]
    assert exported["outputs"][0]["shape"] == [None, 16, 16, 1] and exported["max_abs_diff"] < 1e-4
    bad = runner.invoke(app, ["generate", dcgan, "--label", "1"])
    assert bad.exit_code == 2 and "not class-conditional" in bad.stderr
    given = runner.invoke(app, ["generate", dcgan, "--input", __file__])  # was ignored: noise drawn
    assert given.exit_code == 2 and "takes no --input" in given.stderr
    prompt = runner.invoke(app, ["generate", dcgan, "--prompt", "hi", "--json"])  # a language model's option
    assert prompt.exit_code == 2
    assert "--prompt is read by language_model runs only" in json.loads(prompt.stdout)["error"]
    origin = runner.invoke(app, ["generate", dcgan, "--input", __file__, "--from", "B"])  # a CycleGAN's option
    assert origin.exit_code == 2 and "--from is read by translation runs only" in origin.stderr
    origin = runner.invoke(app, ["export", dcgan, "--from", "B"])
    assert origin.exit_code == 2 and "--from is read by translation runs only" in origin.stderr
    for command in (["generate", dcgan, "--input", __file__], ["export", dcgan]):  # the task first, then its value
        origin = runner.invoke(app, [*command, "--from", "C"])
        assert origin.exit_code == 2 and "--from is read by translation runs only" in origin.stderr

    for run, key in ((cgan, "label_accuracy"), (info, "code_accuracy")):
        res = runner.invoke(app, ["evaluate", run, "--reference", clf16, "-n", "200", "--json"])
        assert res.exit_code == 0, res.stderr
        ev = json.loads(res.stdout)
        assert ev["frechet_distance"] >= 0 and 1 <= ev["classifier_score"] <= 10
        assert 0 <= ev["class_coverage"] <= 1 and 0 <= ev[key] <= 1 and sum(ev["class_histogram"]) == 200
        # `dlkit runs` shows it: the samples were measured against the test split (it showed none before)
        assert ev["split"] == "test"
        assert row(Path(run))["headline"] == {"label": "test classifier score", "value": ev["classifier_score"],
                                              "better": "max", "split": "test", "source": "eval.json:reference"}
    plain = json.loads(runner.invoke(app, ["evaluate", dcgan, "-n", "100", "--json"]).stdout)
    assert "frechet_distance" not in plain and plain["diversity"]["real"] > 0 and Path(plain["grid"]).is_file()
    not_a_classifier = runner.invoke(app, ["evaluate", dcgan, "--reference", info])  # a GAN run as the reference
    assert not_a_classifier.exit_code == 2, not_a_classifier.output
    assert "is a run of task 'adversarial', not an image classifier" in not_a_classifier.stderr
    # --split: the same samples measured against another split's images, kept beside the test split's result
    measured = {}
    for split, real in (("test", 64), ("train", 100)):  # digits16: 64 test images, 256 training ones
        res = runner.invoke(app, ["evaluate", dcgan, "--reference", clf16, "-n", "100", "--split", split, "--json"])
        assert res.exit_code == 0, res.stderr
        measured[split] = json.loads(res.stdout)
        assert measured[split]["split"] == split and measured[split]["real_examples"] == real
    assert measured["train"]["frechet_distance"] != measured["test"]["frechet_distance"]
    assert measured["train"]["real_frechet_distance"] != measured["test"]["real_frechet_distance"]
    evals = json.loads((Path(dcgan) / "eval.json").read_text())
    assert evals["reference"]["frechet_distance"] == measured["test"]["frechet_distance"]
    assert evals["reference:train"]["frechet_distance"] == measured["train"]["frechet_distance"]
    assert row(Path(dcgan))["headline"]["value"] == measured["test"]["classifier_score"]  # the test split's
    said = runner.invoke(app, ["evaluate", dcgan, "-n", "50", "--split", "train"], env={"COLUMNS": "200"})
    assert said.exit_code == 0, said.output  # the title says what the samples were measured against (wrapped)
    assert "50 samples against the train split's 50 images" in " ".join(said.output.split()), said.output
    other = runner.invoke(app, ["evaluate", dcgan, "--split", "val"])  # none kept: named, with those there are
    assert other.exit_code == 2 and "this run has no 'val' split" in other.stderr and "--split test" in other.stderr


def test_generate_writes_each_sample_for_other_tools(gan_run, clf16, tmp_path, monkeypatch):
    """--out-dir: each sample a PNG of its own (for clean-fid, torch-fidelity), the samples the picture draws; a
    conditional GAN's in a folder per class named as the run's classes, which `evaluate --data` reads labels
    from. The folder is written whole or not at all, and a folder of one's own is never replaced."""
    from PIL import Image

    from dlkit import images
    from dlkit.generate import generate
    from dlkit.models.gan import latent_inputs
    from dlkit.rundir import RunDir
    from dlkit.tasks.generative import run_scale

    runner, cgan, dcgan = CliRunner(), gan_run("cgan"), gan_run("dcgan")
    out = tmp_path / "samples"
    made = runner.invoke(app, ["generate", str(cgan), "-n", "30", "--seed", "4", "--out-dir", str(out), "--json"])
    assert made.exit_code == 0, made.output
    made = json.loads(made.stdout)
    assert (made["files"], made["out_dir"], made["n"], made["seed"]) == (30, str(out), 30, 4)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == \
        sorted(f"{i % 10}/{i:05d}.png" for i in range(30))
    gan = keras.saving.load_model(cgan / "model.keras")
    z = latent_inputs(gan, 30, np.random.default_rng(4), labels=np.arange(30) % 10)
    drawn = images.to_uint8(gan.sampler.predict(z, verbose=0), run_scale(RunDir(cgan)))
    for i in (0, 13, 29):
        with Image.open(out / str(i % 10) / f"{i:05d}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), drawn[i][..., 0])
    # a classifier measured on them: the class folders give the labels (the marker file is not an image)
    measured = runner.invoke(app, ["evaluate", clf16, "--data", str(out), "--json"])
    assert measured.exit_code == 0, measured.output
    assert json.loads(measured.stdout)["examples"] == 30

    again = runner.invoke(app, ["generate", str(cgan), "-n", "4", "--out-dir", str(out)])
    assert again.exit_code == 2 and "holds an earlier --out-dir's images" in again.stderr
    again = runner.invoke(app, ["generate", str(dcgan), "-n", "4", "--out-dir", str(out), "--force"])
    assert again.exit_code == 0, again.output  # replaced whole: none of the 30 is left
    assert sorted(p.name for p in out.iterdir()) == [".dlkit-generate.json", *(f"{i:05d}.png" for i in range(4))]
    assert json.loads((out / ".dlkit-generate.json").read_text())["run_dir"] == str(dcgan)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    kept = runner.invoke(app, ["generate", str(dcgan), "--out-dir", str(mine), "--force"])
    assert kept.exit_code == 2 and "holds files dlkit did not write" in kept.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    for args, said in ((["-n", "100001", "--out-dir", str(tmp_path / "x")],
                        "-n counts the images to write: 1 to 100,000"),
                       (["-n", "10001"], "-n counts the samples in one picture: 1 to 10,000"),
                       (["--out-dir", str(tmp_path / "x"), "--out", str(tmp_path / "x.png")], "give one")):
        res = runner.invoke(app, ["generate", str(dcgan), *args])
        assert res.exit_code == 2 and said in res.stderr, res.output
    assert not (tmp_path / "x").exists()

    save_png, calls = images.save_png, []

    def fail(picture, path):  # a disk that fills up at every fifth image
        calls.append(path)
        if len(calls) % 5 == 0:
            raise OSError(28, "No space left on device")
        save_png(picture, path)

    monkeypatch.setattr(images, "save_png", fail)
    with pytest.raises(OSError):
        generate(dcgan, n=8, out_dir=tmp_path / "full")
    with pytest.raises(OSError):  # replacing an earlier folder: it is left as it was
        generate(dcgan, n=8, out_dir=out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "samples"]  # no half folder, no temporary one
    assert len(list(out.glob("*.png"))) == 4


def test_an_out_dir_write_killed_midway_is_put_right_by_the_next(tmp_path):
    """A `generate --out-dir` killed (SIGKILL) as it wrote leaves its temporary folders beside the target; the
    next one puts them right before it looks: the earlier images it had set aside back in place, or removed
    where the new ones had arrived, its unfinished new images removed, and a live process's left alone."""
    import subprocess
    import sys

    from dlkit.errors import UsageError
    from dlkit.tasks.generative import MARK, output_dir

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True, check=True).stdout)  # a process that has ended
    out = tmp_path / "samples"
    earlier = tmp_path / f".samples.dlkit-old-{pid}-abc123"  # killed between setting aside and renaming in
    earlier.mkdir()
    (earlier / MARK).write_text("{}")
    (earlier / "00000.png").write_bytes(b"earlier")
    partial = tmp_path / f".samples.dlkit-{pid}-def456"
    partial.mkdir()
    (partial / "00000.png").write_bytes(b"half")
    live = tmp_path / f".samples.dlkit-{os.getpid()}-ghi789"  # a write still going on
    live.mkdir()
    with pytest.raises(UsageError, match="holds an earlier --out-dir's images"):  # as before the killed write
        output_dir(out, force=False)
    assert (out / "00000.png").read_bytes() == b"earlier" and (out / MARK).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "samples"]

    replaced = tmp_path / f".samples.dlkit-old-{pid}-jkl000"  # killed after the new images were renamed in
    replaced.mkdir()
    (replaced / "00000.png").write_bytes(b"older")
    assert output_dir(out, force=True) == out
    assert not replaced.exists() and (out / "00000.png").read_bytes() == b"earlier"


def test_evaluate_samples_against_images_of_ones_own(gan_run, clf16, digits16, tmp_path):
    """--data: the samples are measured against one's own images, read as predict reads them; a folder of class
    folders is read class by class, so its halves (the images measured against, the real-vs-real floor's) are
    drawn in a shuffled order, or the floor would be the distance of digits 0-4 to digits 5-9."""
    from dlkit import images
    from dlkit.rundir import RunDir
    from dlkit.tasks.reference import Reference

    dcgan, runner = str(gan_run("dcgan")), CliRunner()
    a = np.load(digits16)
    x, y = np.concatenate([a["x_train"], a["x_test"]]), np.concatenate([a["y_train"], a["y_test"]])
    order = np.argsort(y, kind="stable")
    folder = tmp_path / "mine"
    for i in order:
        (folder / str(y[i])).mkdir(parents=True, exist_ok=True)
        images.save_png(x[i][..., None], folder / str(y[i]) / f"{i:04d}.png")
    res = runner.invoke(app, ["evaluate", dcgan, "--data", str(folder), "--reference", clf16, "-n", "150", "--json"])
    assert res.exit_code == 0, res.stderr
    ev = json.loads(res.stdout)
    assert ev["data"] == str(folder) and ev["real_examples"] == 150 and ev["real_frechet_samples"] == 150
    assert ev["training_frechet_distance"] > 0  # where a generator that made its training digits would sit
    assert json.loads((Path(dcgan) / "eval.json").read_text())[f"data:{folder}"]["frechet_distance"] == ev["frechet_distance"]
    ref = Reference(RunDir.open(Path(clf16)))
    half = len(x) // 2
    sorted_floor = ref.floor(150, ref.predict(x[order][:150])[0], ref.predict(x[order][half: half + 150])[0])
    assert ev["real_frechet_distance"] < sorted_floor["real_frechet_distance"] / 3, (ev, sorted_floor)
    table = runner.invoke(app, ["evaluate", dcgan, "--data", str(folder)])  # -n: half the 320 images given
    assert table.exit_code == 0 and "160 samples against mine, 160 images" in " ".join(table.stdout.split())
    black = tmp_path / "black.npy"  # the images measured against are the ones given: their spread is none
    np.save(black, np.zeros((10, 16, 16), np.uint8))
    plain = json.loads(runner.invoke(app, ["evaluate", dcgan, "--data", str(black), "-n", "20", "--json"]).stdout)
    assert plain["diversity"]["real"] == 0 and plain["real_examples"] == 5 and "frechet_distance" not in plain
    moved = digits16.rename(tmp_path / "away.npz")  # the training data gone: measured all the same, and said
    try:
        away = json.loads(runner.invoke(app, ["evaluate", dcgan, "--data", str(folder), "--reference", clf16, "-n",
                                              "50", "--json"]).stdout)
    finally:
        moved.rename(digits16)
    assert "training_frechet_distance" not in away and away["frechet_distance"] > 0
    assert any(w.startswith("the run's training data could not be read") for w in away["warnings"]), away
    np.save(black, np.zeros((3, 16, 16), np.uint8))  # halves of one image have no spread: was a scipy traceback
    three = runner.invoke(app, ["evaluate", dcgan, "--data", str(black), "--reference", clf16, "--json"])
    assert three.exit_code == 2 and "3 real image(s): measuring samples against real images takes four or more" \
        in json.loads(three.stdout)["error"]


def test_the_real_images_measured_against_hold_every_class():
    """A dataset stored class by class (an npz sorted by label): the real images a GAN's samples are measured
    against, and the floor's, are fixed draws of their splits, of every class and none in both sets; x[:n]
    was the first classes alone."""
    from types import SimpleNamespace

    from dlkit.tasks.generative import reals_beside

    # class: value // 100; the test split measured (the floor of training images), or the training split alone
    sorted_by_class = SimpleNamespace(x_train=np.arange(1000), x_test=np.arange(1000, 1500), x_val=None)
    alone = SimpleNamespace(x_train=np.arange(1000), x_test=None, x_val=None)
    for splits, x in ((sorted_by_class, sorted_by_class.x_test), (alone, alone.x_train)):
        real, other = reals_beside(splits, x, 200)
        assert len(real) == len(other) == 200 and not set(real.tolist()) & set(other.tolist())
        for x in (real, other):
            assert len(set((x // 100 % 10).tolist())) >= (5 if x.min() >= 1000 else 9), x
    real, other = reals_beside(sorted_by_class, sorted_by_class.x_test, 200)
    assert real.min() >= 1000 and other.max() < 1000  # the split's images, the floor's from training
    np.testing.assert_array_equal(reals_beside(sorted_by_class, sorted_by_class.x_test, 200)[0], real)  # fixed
    # each epoch's diversity figure: its real images of every class too (x_train[:256] were classes 0 to 2)
    from dlkit.tasks.generative import diversity_reals

    epoch = diversity_reals(sorted_by_class.x_train)
    assert len(epoch) == 256 and len(set((epoch // 100).tolist())) == 10
    np.testing.assert_array_equal(diversity_reals(sorted_by_class.x_train), epoch)


# ---------------------------------------------------------------- the measures themselves


def test_frechet_distance_matches_closed_form_and_samples():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.diag([1.0, 2.0, 0.5]), np.diag([0.5, 2.0, 2.0])
    # diagonal covariances: the trace term is sum(s1 + s2 - 2 sqrt(s1 s2))
    exact = np.sum((mu1 - mu2) ** 2) + np.sum(np.diag(s1) + np.diag(s2) - 2 * np.sqrt(np.diag(s1) * np.diag(s2)))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-9)
    # a full-covariance pair against scipy's sqrtm computed directly
    from scipy import linalg

    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    c1, c2 = a @ a.T + np.eye(3), b @ b.T + np.eye(3)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert metrics.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)
    # from samples of the two Gaussians
    x = rng.multivariate_normal(mu1, s1, 200_000)
    y = rng.multivariate_normal(mu2, s2, 200_000)
    assert metrics.feature_distance(x, y) == pytest.approx(exact, rel=0.02)
    assert metrics.feature_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_classifier_score_bounds():
    k = 10
    constant = np.tile(np.eye(k)[3], (500, 1))
    assert metrics.classifier_score(constant) == pytest.approx(1.0)
    perfect_uniform = np.eye(k)[np.arange(500) % k]
    assert metrics.classifier_score(perfect_uniform) == pytest.approx(k, rel=1e-6)
    unsure = np.full((500, k), 1 / k)
    assert metrics.classifier_score(unsure) == pytest.approx(1.0)


def test_coverage_and_matched_accuracy():
    assert metrics.coverage(np.arange(100) % 10, 10) == 1.0
    assert metrics.coverage(np.zeros(100, int), 10) == 0.1
    codes = np.arange(1000) % 10
    permuted = (codes * 3 + 1) % 10  # a relabelling of the codes
    acc, mapping = metrics.matched_accuracy(codes, permuted, 10, 10)
    assert acc == 1.0 and mapping[0] == 1 and mapping[1] == 4


def test_mnist_m_is_built_from_real_digits_and_cifar_patches():
    from dlkit.data import sources

    digits = np.zeros((3, 4, 4), np.uint8)
    digits[:, 1:3, 1:3] = 255
    backgrounds = np.full((2, 8, 8, 3), 100, np.uint8)
    out = sources.blend_over_patches(digits, backgrounds, seed=0)
    assert out.shape == (3, 4, 4, 3) and out[0, 0, 0].tolist() == [100] * 3 and out[0, 1, 1].tolist() == [155] * 3
    np.testing.assert_array_equal(out, sources.blend_over_patches(digits, backgrounds, seed=0))


def test_cyclegan_trains_translates_and_is_measured(digits16, clf16, tmp_path):
    from dlkit.data import sources

    a = np.load(digits16)
    cifar = sources.load_builtin("cifar10", str(DATA), allow_download=False)
    b_path = tmp_path / "digits16_m.npz"
    np.savez(b_path, x_train=sources.blend_over_patches(a["x_train"][::-1], cifar.x_train, 1), y_train=a["y_train"][::-1],
             x_test=sources.blend_over_patches(a["x_test"][7:], cifar.x_test, 2), y_test=a["y_test"][7:])
    recipe = tmp_path / "cyc.yaml"
    recipe.write_text(f"""
name: tiny_cyclegan
data: {{dataset: npz, path: {digits16}, scale: symmetric, validation_split: 0, batch_size: 32,
       domain_b: {{dataset: npz, path: {b_path}}}}}
model: {{arch: cyclegan, filters: 4, residual_blocks: 1, discriminator_filters: 4}}
train: {{epochs: 2}}
""")
    result = train(recipe, runs_root=tmp_path / "runs")
    run = Path(result["run_dir"])
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert {"d_loss", "g_loss", "cycle_loss", "identity_loss", "diversity"} <= set(rows[0])
    assert all(math.isfinite(float(r["cycle_loss"])) for r in rows)
    assert (run / "samples" / "epoch_002.png").is_file() and (run / "progress.gif").is_file()

    again = keras.saving.load_model(run / "model.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype("float32")
    ckpt = keras.saving.load_model(run / "checkpoints" / "last.keras")
    np.testing.assert_allclose(again.generator_ab.predict(x, verbose=0), ckpt.generator_ab.predict(x, verbose=0),
                               atol=1e-6)
    assert int(ckpt.g_optimizer.iterations.numpy()) == 2 * 8 and int(ckpt.d_optimizer.iterations.numpy()) == 16

    runner = CliRunner()
    assert runner.invoke(app, ["generate", str(run), "-n", "4"]).exit_code == 0
    assert (run / "translations-seed0.png").is_file()
    np.save(tmp_path / "ten.npy", a["x_test"][:10])  # gray 16 x 16: made colour as the A->B generator takes
    mine = runner.invoke(app, ["generate", str(run), "--input", str(tmp_path / "ten.npy"), "--json"])
    assert mine.exit_code == 0, mine.output
    made = json.loads(mine.stdout)
    assert made["n"] == 10 and made["translation"] == "a_to_b"
    from PIL import Image

    with Image.open(made["out"]) as im:  # one band of 10: inputs above their translations, 64 px each
        assert im.size == (10 * 66 + 2, 2 * 66 + 2)
    # --from B: B's images translated by the B->A generator (the same images read as A go through A->B)
    np.save(tmp_path / "six_b.npy", np.load(b_path)["x_test"][:6])
    pictures = {}
    for domain in ("A", "b"):
        made = runner.invoke(app, ["generate", str(run), "--input", str(tmp_path / "six_b.npy"), "--from", domain,
                                   "--force", "--json"])  # A's picture replaces ten.npy's
        assert made.exit_code == 0, made.output
        made = json.loads(made.stdout)
        assert made["n"] == 6 and made["translation"] == {"A": "a_to_b", "b": "b_to_a"}[domain]
        with Image.open(made["out"]) as im:
            pictures[domain] = np.asarray(im)
    assert made["out"] == str(run / "translations-input-b_to_a.png")
    assert pictures["A"].shape == pictures["b"].shape == (2 * 66 + 2, 6 * 66 + 2, 3)
    # --out-dir: each translation a PNG of its own, under its input's name; the ones the picture shows
    each = runner.invoke(app, ["generate", str(run), "--input", str(tmp_path / "six_b.npy"), "--from", "B",
                               "--out-dir", str(tmp_path / "to_a"), "--json"])
    assert each.exit_code == 0, each.output
    assert json.loads(each.stdout)["translation"] == "b_to_a"
    assert sorted(p.relative_to(tmp_path / "to_a").as_posix() for p in (tmp_path / "to_a").rglob("*.png")) == \
        [f"six_b/{i:05d}.png" for i in range(6)]
    for i in range(6):  # the picture's translation row, its cells enlarged 4 times
        with Image.open(tmp_path / "to_a" / "six_b" / f"{i:05d}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), pictures["b"][68:132, 2 + 66 * i: 66 + 66 * i:4][::4])
    split = runner.invoke(app, ["generate", str(run), "-n", "3", "--out-dir", str(tmp_path / "split"), "--json"])
    assert split.exit_code == 0 and json.loads(split.stdout)["files"] == 12
    assert sorted(p.parent.name for p in (tmp_path / "split").rglob("*.png")) == \
        ["a"] * 3 + ["a_to_b"] * 3 + ["b"] * 3 + ["b_to_a"] * 3
    said = runner.invoke(app, ["predict", str(run), str(tmp_path / "six_b.npy")])  # the command that translates
    assert said.exit_code == 2 and f"with `dlkit generate {run} --input FILES` (add --from B" in said.stderr
    np.testing.assert_array_equal(pictures["A"][:66], pictures["b"][:66])  # the inputs, as given
    assert np.abs(pictures["A"][66:].astype(int) - pictures["b"][66:]).mean() > 5  # translated by another generator
    # export --from B: the B->A generator, beside the A->B one's names
    exported = runner.invoke(app, ["export", str(run), "--format", "onnx", "--from", "B", "--json"])
    assert exported.exit_code == 0, exported.output
    exported = json.loads(exported.stdout)
    assert exported["path"] == str(run / "export" / "model_b_to_a.onnx") and exported["model"] == "the B-to-A generator"
    import onnxruntime

    probe = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 3)).astype("float32")
    session = onnxruntime.InferenceSession(exported["path"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: probe})[0]
    np.testing.assert_allclose(onnx_out, again.generator_ba.predict(probe, verbose=0), atol=1e-4)
    assert list(json.loads((run / "exports.json").read_text())) == ["onnx_b_to_a"]
    for args, said in ((["--input", str(tmp_path / "six_b.npy"), "--from", "C"], "--from C: a translation model's "
                        "domains are A and B"), (["--from", "B"], "--from names the domain of the --input images")):
        res = runner.invoke(app, ["generate", str(run), *args])
        assert res.exit_code == 2 and said in res.output, res.output
    every = runner.invoke(app, ["generate", str(run), "-n", "10000", "--out", str(tmp_path / "all.png"), "--json"])
    assert every.exit_code == 0, every.output
    shown = json.loads(every.stdout)["n"]  # as many of each domain as the smaller test split (B's) holds
    assert shown == len(a["x_test"]) - 7
    with Image.open(tmp_path / "all.png") as im:  # bands of 16 of the rows A, A->B, B, B->A
        assert im.size == (16 * 66 + 2, 4 * -(-shown // 16) * 66 + 2)
    res = runner.invoke(app, ["evaluate", str(run), "--reference", clf16, "--json"])
    assert res.exit_code == 0, res.stderr
    ev = json.loads(res.stdout)
    for key in ("translated_accuracy", "cycled_accuracy", "untranslated_accuracy", "source_accuracy"):
        assert 0 <= ev[key] <= 1
    assert ev["frechet_distance"] >= 0 and ev["samples"] == 64
    assert 0 < ev["cycle_error_a"] < 1 and 0 < ev["cycle_error_b"] < 1
    assert ev["split"] == "test" and row(run)["headline"]["label"] == "test B->A accuracy"
    # another split: the training images of both domains, measured against A's test images (independent of B's
    # training images, which are made from A's); kept beside the test split's, which stays the headline
    trained = runner.invoke(app, ["evaluate", str(run), "--split", "train", "--reference", clf16, "-n", "48", "--json"])
    assert trained.exit_code == 0, trained.output
    trained = json.loads(trained.stdout)
    assert trained["split"] == "train" and trained["samples"] == 48 and trained["real_frechet_samples"] == 48
    assert trained["cycle_error_a"] != ev["cycle_error_a"]
    assert {"reference", "reference:train"} <= set(json.loads((run / "eval.json").read_text()))
    other = runner.invoke(app, ["evaluate", str(run), "--split", "val"])  # validation_split: 0
    assert other.exit_code == 2 and "no 'val' split" in other.output and "it has test and train" in other.output
    assert row(run)["headline"]["value"] == ev["translated_accuracy"]

    # --data: the run's own test images of both domains, as files in A/ and B/ (A's gray, made colour as the
    # generator takes them), measure the round trips the split measured
    b = np.load(b_path)
    mine = tmp_path / "mine"
    for name, x in (("A", a["x_test"]), ("B", b["x_test"])):
        (mine / name).mkdir(parents=True)
        np.save(mine / name / "x.npy", x)
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine), "--json"])
    assert res.exit_code == 0, res.output
    own = json.loads(res.stdout)
    assert (own["a_examples"], own["b_examples"]) == (64, 57) and own["data"] == str(mine)
    assert own["cycle_error_a"] == pytest.approx(ev["cycle_error_a"], rel=1e-5)
    assert own["cycle_error_b"] == pytest.approx(ev["cycle_error_b"], rel=1e-5)
    for d in "AB":  # each domain's five worst, worst first
        worst = [w["cycle_error"] for w in own["worst"] if w["input"].startswith(f"{d}/x.npy[")]
        assert len(worst) == 5 and worst == sorted(worst, reverse=True) and worst[0] > own[f"cycle_error_{d.lower()}"]
    assert Path(own["grid"]).is_file() and f"data:{mine}" in json.loads((run / "eval.json").read_text())
    shown = runner.invoke(app, ["evaluate", str(run), "--data", str(mine)], env={"COLUMNS": "200"})
    assert "mine, 64 A, 57 B images" in shown.output and "cycle error B->A->B" in shown.output, shown.output
    # the same images as PNGs in class folders (A/7/000.png): their labels give the split's accuracies
    labelled = tmp_path / "labelled"
    for name, x, y in (("A", a["x_test"], a["y_test"]), ("B", b["x_test"], a["y_test"][7:])):
        for i, (image, label) in enumerate(zip(x, y)):
            (labelled / name / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(labelled / name / str(label) / f"{i:03d}.png")
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(labelled), "--reference", clf16, "--json"])
    assert res.exit_code == 0, res.output
    by_class = json.loads(res.stdout)
    for key in ("translated_accuracy", "cycled_accuracy", "untranslated_accuracy", "source_accuracy"):
        assert by_class[key] == pytest.approx(ev[key]), key
    Image.fromarray(b["x_test"][0]).save(labelled / "B" / "loose.png")  # B not all in class folders: unlabelled
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(labelled), "--reference", clf16, "--json"])
    assert res.exit_code == 0, res.output
    by_class = json.loads(res.stdout)
    assert by_class["b_examples"] == 58 and "translated_accuracy" not in by_class and "untranslated_accuracy" not in by_class
    assert by_class["cycled_accuracy"] == pytest.approx(ev["cycled_accuracy"])
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine), "--reference", clf16, "-n", "20", "--json"])
    assert res.exit_code == 0, res.output
    own = json.loads(res.stdout)  # 20 B->A against 20 of the first half of 20 A images, the floor the second
    assert own["samples"] == own["real_frechet_samples"] == 10 and own["a_examples"] == 20
    assert own["frechet_distance"] > 0 and own["real_frechet_distance"] > 0 and own["training_frechet_distance"] > 0
    b_path.rename(tmp_path / "gone.npz")  # the training data gone: the training figure alone is left out
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine), "--reference", clf16, "-n", "20", "--json"])
    assert res.exit_code == 0, res.output
    gone = json.loads(res.stdout)
    assert "training_frechet_distance" not in gone and gone["frechet_distance"] == pytest.approx(own["frechet_distance"])
    assert any("the run's training data could not be read" in w for w in gone["warnings"])
    for few, (n_a, n_b), args, said in (
            ("few_a", (3, 5), [], "3 image(s); --reference cuts the A images in two halves"),
            ("few_n", (8, 5), ["-n", "3"], "3 image(s) (-n 3 of the 8 there); --reference cuts the A images in two "
                                           "halves, the translations measured against one and the floor from the "
                                           "other, two or more each: four or more; give -n 4 or more"),
            ("few_b", (8, 1), [], "1 image; --reference measures B->A translations")):
        for name, x in (("A", a["x_test"][:n_a]), ("B", b["x_test"][:n_b])):
            (tmp_path / few / name).mkdir(parents=True)
            np.save(tmp_path / few / name / "x.npy", x)
        res = runner.invoke(app, ["evaluate", str(run), "--data", str(tmp_path / few), "--reference", clf16, *args])
        assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output
    assert not list(run.glob("eval_translations_data_few*"))  # refused before anything was drawn
    (mine / "B" / "x.npy").rename(mine / "x.npy")  # A alone: its round trip; --reference needs B
    (mine / "B").rmdir()
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine), "--json"])
    assert res.exit_code == 0, res.output
    assert "cycle_error_b" not in json.loads(res.stdout) and json.loads(res.stdout)["a_examples"] == 64
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine), "--reference", clf16])
    assert res.exit_code == 2 and "has no B/ folder: --reference measures B->A translations" in res.output, res.output
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine / "x.npy")])
    assert res.exit_code == 2 and "a file; a translation model is measured on a folder holding A/ and B/" in res.output
    res = runner.invoke(app, ["evaluate", str(run), "--data", str(mine / "A")])
    assert res.exit_code == 2 and "no A/ or B/ folder in it" in res.output, res.output


def test_round_trips_go_each_way_through_their_own_generators():
    """A->B inverts an image, B->A darkens it by a quarter of the range: A->B->A of a mid-gray 100 is 155 darkened
    to 91 (an error of 9/255), B->A->B of 100 is 100 darkened to 36 then inverted to 219 (119/255); an image
    given back as it was is 0, black against white 1."""
    from types import SimpleNamespace

    from dlkit.tasks.translation import cycle_errors, translations

    gen = lambda f: SimpleNamespace(predict=lambda x, **_: f(x))  # noqa: E731
    model = SimpleNamespace(generator_ab=gen(lambda x: -x), generator_ba=gen(lambda x: x - 0.5))
    scale = (np.float32(1 / 127.5), np.float32(-1.0))  # symmetric: 0..255 to -1..1
    x = np.full((2, 4, 4, 3), 100, np.uint8)
    ab, aba, ba, bab = translations(model, x, x, scale, scale)
    assert (ab == 155).all() and (aba == 91).all() and (ba == 36).all() and (bab == 219).all()
    np.testing.assert_allclose(cycle_errors(x, aba), [9 / 255] * 2, rtol=1e-6)
    np.testing.assert_allclose(cycle_errors(x, bab), [119 / 255] * 2, rtol=1e-6)
    assert cycle_errors(x, x).tolist() == [0, 0]
    assert cycle_errors(np.zeros_like(x), np.full_like(x, 255)).tolist() == [1, 1]
    assert translations(model, x, None, scale, scale)[2:] == (None, None)


def _splits(train, test=None, val=None, offset=0):
    """Splits of 1x1 images whose value is their label, each image told apart by it."""
    from dlkit.data.pipeline import Splits

    def images(n, start):
        y = np.arange(start, start + n) + offset
        return y.reshape(-1, 1, 1, 1), y

    parts, start = {}, 0
    for name, n in (("train", train), ("val", val), ("test", test)):
        parts[name] = images(n, start) if n else (None, None)
        start += n or 0
    return Splits(*parts["train"], *parts["val"], *parts["test"])


def test_a_cyclegans_translations_are_measured_against_images_apart_from_them():
    """The real A images B->A translations are measured against (and the measured A images' floor) share no
    image with the measured ones: A's training split beside its test split, its test split beside another, the
    measured split's other half where A has no other; the labels stay with their images."""
    from dlkit.errors import MissingSplit
    from dlkit.tasks.translation import measured

    def apart(m, n):
        assert len(m.xa) == len(m.ya) == len(m.xb) <= n and len(m.independent) == len(m.xb)
        assert (m.xa.ravel() == m.ya).all() and (m.xb.ravel() == m.yb).all()
        assert not set(m.xa.ravel()) & set(m.independent.ravel())
        return m

    with_test, b = _splits(100, test=40, val=20), _splits(100, test=40, val=20, offset=1000)
    m = apart(measured(with_test, b, "test", 30, independent=True), 30)
    assert m.split == "test" and set(m.xa.ravel()) <= set(with_test.y_test) and \
        set(m.independent.ravel()) <= set(with_test.y_train)
    assert (m.xb.ravel() - 1000 == m.xa.ravel()).all()  # the same indices where the two hold as many
    for split in ("train", "val"):  # against A's test images
        m = apart(measured(with_test, b, split, 30, independent=True), 30)
        assert m.split == split and set(m.independent.ravel()) <= set(with_test.y_test)
    # no test files in A (B's too): A's training images in two halves, the measured ones the first
    no_test = _splits(100)
    m = apart(measured(no_test, _splits(100, offset=1000), "test", 30, independent=True), 30)
    assert m.split == "train" and len(m.xa) == 30
    m = apart(measured(no_test, _splits(100, offset=1000), "test", 500, independent=True), 500)
    assert len(m.xa) == len(m.independent) == 50
    assert len(measured(no_test, _splits(100), "test", 500, independent=False).xa) == 100  # no reference: all
    m = apart(measured(no_test, _splits(300, offset=1000), "test", 500, independent=True), 500)
    assert len(m.xa) == len(m.xb) == len(m.independent) == 50  # B's as many as A's half: one count throughout
    with pytest.raises(MissingSplit, match="it has test and train"):
        measured(with_test, _splits(100, test=40), "val", 30, independent=True)


def test_cyclegan_whole_image_discriminator(digits16, tmp_path):
    """model.discriminator: image gives one score per image (patch: a map of patch scores), and takes a
    training step; cycle_weight_b weighs the B -> A -> B cycle on its own and is saved with the model."""
    from dlkit.data.spec import DataSpec
    from dlkit.tasks import load_recipe

    recipe = tmp_path / "cyc.yaml"
    text = f"""
name: tiny_cyclegan
data: {{dataset: npz, path: {digits16}, scale: symmetric, validation_split: 0, batch_size: 32, limit: 64,
       domain_b: {{dataset: npz, path: {digits16}, limit: 64}}}}
model: {{arch: cyclegan, filters: 4, residual_blocks: 1, discriminator_filters: 4, discriminator: DISC,
        cycle_weight_b: 1.5}}
train: {{epochs: 1}}
"""
    x = np.zeros((3, 16, 16, 1), "float32")
    shapes = {}
    for kind in ("patch", "image"):
        recipe.write_text(text.replace("DISC", kind))
        model = build(load_recipe(recipe), DataSpec(input_shape=(16, 16, 1), num_classes=10))
        shapes[kind] = tuple(model.discriminator_a(x).shape)
    assert shapes == {"patch": (3, 4, 4, 1), "image": (3, 1)}
    images = np.load(digits16)["x_train"][:8, ..., None].astype("float32") / 127.5 - 1
    model.run_eagerly = True  # one step: tracing it would cost several times the step (the traced step is
    # test_cyclegan_trains_translates_and_is_measured's)
    history = model.fit((images, images[::-1]), (np.zeros(8), np.zeros(8)), batch_size=8, epochs=1, verbose=0)
    assert all(math.isfinite(history.history[k][0]) for k in ("d_loss", "g_loss", "cycle_loss"))
    model.save(tmp_path / "cyc.keras")
    again = keras.saving.load_model(tmp_path / "cyc.keras")
    assert again.discriminator_b(x).shape == (3, 1)
    assert (again.cycle_weight, again.cycle_weight_b) == (10.0, 1.5)
    recipe.write_text(text.replace("DISC", "patch").replace("cycle_weight_b: 1.5", "cycle_weight: 7"))
    model = build(load_recipe(recipe), DataSpec(input_shape=(16, 16, 1), num_classes=10))
    assert model.cycle_weight_b == 7  # unset: both cycles weigh cycle_weight


@pytest.mark.parametrize("domain_b, key", [("{dataset: npz, path: missing.npz}", "data.domain_b.path"),
                                            ("{dataset: mnist_m, dir: no_such_folder}", "data.domain_b.dir")])
def test_domain_b_data_errors_name_domain_b_keys(digits16, tmp_path, monkeypatch, domain_b, key):
    """Domain B's data errors name its keys: a missing file or folder was reported as data.path or data.dir,
    domain A's keys, which were right."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cyc.yaml").write_text(f"name: cyc\ndata: {{dataset: npz, path: {digits16}, scale: symmetric, "
                                       f"domain_b: {domain_b}}}\nmodel: {{arch: cyclegan}}\n")
    out = CliRunner().invoke(app, ["train", "cyc.yaml", "--runs-root", "runs"])
    assert out.exit_code == 3 and key in out.output, out.output
    assert "data.path" not in out.output and "data.dir" not in out.output and not (tmp_path / "runs").exists()



def test_domains_of_channels_that_do_not_repeat_into_each_other_are_a_recipe_error(tmp_path):
    # five-band images against RGB ones: domain B's 3 channels were repeated 5 times, a traceback at the first step
    np.savez(tmp_path / "a.npz", x_train=np.zeros((8, 8, 8, 5), np.uint8))
    np.savez(tmp_path / "b.npz", x_train=np.zeros((8, 8, 8, 3), np.uint8))
    (tmp_path / "cyc.yaml").write_text(f"name: cyc\ndata: {{dataset: npz, path: {tmp_path / 'a.npz'}, domain_b: "
                                       f"{{dataset: npz, path: {tmp_path / 'b.npz'}}}}}\nmodel: {{arch: cyclegan}}\n")
    out = CliRunner().invoke(app, ["train", str(tmp_path / "cyc.yaml"), "--runs-root", str(tmp_path / "runs")])
    assert out.exit_code == 2, out.output
    assert "data.domain_b: the two domains' images have 5 and 3 channels" in out.output
    assert not (tmp_path / "runs").exists()

def test_gan_divergence_is_exit_4(digits16, tmp_path, monkeypatch):
    from dlkit.training import callbacks

    original = callbacks.DivergenceGuard.on_epoch_end

    def poison(self, epoch, logs=None):
        return original(self, epoch, {**logs, "g_loss": float("inf")} if epoch == 1 else logs)

    monkeypatch.setattr(callbacks.DivergenceGuard, "on_epoch_end", poison)
    res = CliRunner().invoke(app, ["train", str(gan_recipe(tmp_path, digits16, "dcgan")), "--runs-root",
                                   str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 4 and json.loads(res.stdout)["status"] == "diverged"
    (run,) = (tmp_path / "runs" / "tiny_dcgan").iterdir()
    assert (run / "checkpoints" / "last.keras").is_file() and not (run / "model.keras").exists()


def test_overpowering_discriminator_and_collapse_warnings(tmp_path):
    from dlkit.rundir import RunDir
    from dlkit.tasks.sample_grid import SampleGrid

    class Messages:
        lines = []

        def message(self, text):
            self.lines.append(text)

    varied = np.random.default_rng(0).uniform(0, 255, (8, 4, 4, 1)).astype("float32")
    grid = SampleGrid(RunDir(tmp_path), Messages(), draw=lambda: varied, rows=1,
                      fakes=lambda: varied / 1e6,  # nearly identical samples
                      real=varied, scale=(np.float32(1), np.float32(0)), overpower_epochs=2)
    for epoch in range(3):
        grid.on_epoch_end(epoch, {"d_accuracy": 1.0})
    text = " ".join(grid.warnings)
    assert "overpowering" in text and "mode collapse" in text
    assert grid.warnings[0].startswith("epoch 2")  # the second epoch pinned at 100% (overpower_epochs: 2)
    assert Messages.lines == [f"warning: {w}" for w in grid.warnings]
