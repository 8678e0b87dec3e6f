"""The VAE (task `variational`): its KL term and importance-sampled bound against truth, then a tiny VAE on
the MNIST slice through the CLI: the ELBO's terms logged each epoch on train, validation and test, the
pictures, evaluate, encode, generate, and a resume that ends where an uninterrupted run does."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA, ROOT, straight_run
from dlkit.cli import app
from dlkit.errors import RecipeError
from dlkit.models.vae_model import VAE, kl_to_standard_normal


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_kl_term_matches_a_monte_carlo_estimate():
    """KL(q || N(0, I)) in closed form against E_q[log q(z) - log p(z)] from a million draws."""
    mean = np.array([[0.5, -1.0, 0.0]], "float32")
    log_var = np.array([[0.0, -1.5, 0.7]], "float32")
    closed = float(kl_to_standard_normal(mean, log_var)[0])
    rng = np.random.default_rng(0)
    sd = np.exp(0.5 * log_var[0])
    z = mean[0] + sd * rng.standard_normal((1_000_000, 3))
    log_q = -0.5 * (((z - mean[0]) / sd) ** 2 + log_var[0] + math.log(2 * math.pi)).sum(1)
    log_p = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(1)
    assert closed == pytest.approx((log_q - log_p).mean(), abs=0.01)
    assert float(kl_to_standard_normal(np.zeros((1, 4), "float32"), np.zeros((1, 4), "float32"))[0]) == 0.0


def linear_gaussian_vae(seed=0):
    """A VAE whose log p(x) is known exactly: z ~ N(0, I) in 2-D, x = z K + b + noise of variance s2, in 4-D, so
    x ~ N(b, K^T K + diag(s2)). Its encoder gives the exact posterior's mean and the diagonal of its
    covariance."""
    rng = np.random.default_rng(seed)
    latent, dims = 2, 4
    k, b, s2 = rng.normal(size=(latent, dims)), rng.normal(size=dims), np.array([0.3, 0.5, 0.2, 0.4])
    post_cov = np.linalg.inv(np.eye(latent) + k @ np.diag(1 / s2) @ k.T)
    a = (post_cov @ k @ np.diag(1 / s2)).T  # mean = (x - b) a
    encoder = keras.Sequential([keras.Input((dims,)), keras.layers.Dense(2 * latent)])
    encoder.layers[-1].set_weights([np.concatenate([a, np.zeros((dims, latent))], 1),
                                    np.concatenate([-b @ a, np.log(np.diag(post_cov))])])
    decoder = keras.Sequential([keras.Input((latent,)), keras.layers.Dense(dims)])
    decoder.layers[-1].set_weights([k, b])
    vae = VAE(encoder, decoder, latent_dim=latent, likelihood="gaussian", seed=seed)
    vae.log_variance.assign(np.log(s2).astype("float32"))
    cov = k.T @ k + np.diag(s2)

    def exact(x):
        d = x - b
        return -0.5 * (np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) + np.linalg.slogdet(cov)[1]
                       + dims * math.log(2 * math.pi))

    x = (rng.standard_normal((6, latent)) @ k + b + np.sqrt(s2) * rng.standard_normal((6, dims))).astype("float32")
    return vae, x, exact(x)


def test_importance_bound_approaches_the_exact_log_likelihood_from_below():
    vae, x, exact = linear_gaussian_vae()
    seeds = {1: 200, 10: 20, 100: 4, 1000: 4}  # more repeats where one estimate is noisier
    bounds = {k: np.mean([vae.importance_bound(x, k, seed=s).mean() for s in range(n)]) for k, n in seeds.items()}
    assert bounds[1] < bounds[10] < bounds[100] < bounds[1000] <= exact.mean() + 0.01  # rises with k, stays below
    assert bounds[1000] == pytest.approx(exact.mean(), abs=0.02)
    heard = []  # how far it is, for `dlkit evaluate`'s progress: the examples done, a batch at a time
    vae.importance_bound(x, 10, rows=20, advance=heard.append)
    assert heard == [2, 2, 2]
    # k = 1 is the ELBO: its average over draws is reconstruction + KL from the model's own step
    elbo = np.mean([-(keras.ops.convert_to_numpy(r) + keras.ops.convert_to_numpy(k_)).mean()
                    for r, k_ in (vae.terms(x) for _ in range(400))])
    assert bounds[1] == pytest.approx(elbo, abs=0.05) and elbo < exact.mean()


TINY_VAE = f"""
name: tiny_vae
seed: 4
data: {{dataset: mnist, dir: {DATA}, limit: 300, test_limit: 100, batch_size: 50, scale: unit}}
model: {{arch: vae, hidden: [32], latent_dim: 2, kl_warmup_epochs: 1}}
train: {{epochs: 2, optimizer: {{name: adam, learning_rate: 0.003}}}}
"""


straight = straight_run(TINY_VAE)


def test_the_names_a_vae_will_log_are_known_before_it_trains(straight, write_recipe):
    """What a monitor may name is said before training (a misspelt one is a recipe error then): for the VAE,
    a model with a step of its own, its trackers, their val_ copies and the test split's measures, which a
    callback adds each epoch. The prediction is the trained run's history.csv columns."""
    from dlkit import tasks
    from dlkit.training.session import Session

    recipe = tasks.load_recipe(write_recipe(TINY_VAE))
    session = Session.open(recipe)
    phase = session.task.phases(recipe)[0]
    model = session.model(phase)
    names = session.task.logged(model, session.data)
    predicted = names + [f"val_{n}" for n in names] + session.task.also_logged(session.data, names)
    columns = next(csv.reader(open(Path(straight["run_dir"]) / "history.csv")))
    assert sorted(predicted) == sorted(c for c in columns if c not in ("epoch", "learning_rate"))
    assert "test_elbo" in predicted
    bad = tasks.load_recipe(write_recipe(TINY_VAE.replace("epochs: 2,", "epochs: 2, monitor: test_elb, "
                                                                        "monitor_mode: max,")))
    with pytest.raises(RecipeError, match="'test_elb' is not a value the epochs will log .*test_elbo"):
        Session.open(bad).model(phase)


def test_vae_trains_logs_nats_and_is_measured(straight, tiny_run):
    run = Path(straight["run_dir"])
    rows = list(csv.DictReader(open(run / "history.csv")))
    for key in ("elbo", "reconstruction", "kl", "val_elbo", "test_elbo", "test_reconstruction", "test_kl"):
        assert key in rows[0], key
    # nats per image: the ELBO is minus the two terms (training batches: reconstruction and KL of the same z)
    assert float(rows[1]["test_elbo"]) == pytest.approx(
        -(float(rows[1]["test_reconstruction"]) + float(rows[1]["test_kl"])), rel=1e-4)
    assert 50 < float(rows[-1]["test_reconstruction"]) < 600  # 784 binary pixels: 543 nats at p = 0.5 each
    test = straight["test"]
    assert test["importance_samples"] == 100 and test["nll"] <= -test["elbo"] + 1.0  # the bound beats the ELBO
    assert test["bits_per_dim"] == pytest.approx(test["nll"] / (784 * math.log(2)))
    for name in ("samples.png", "reconstructions.png", "interpolation.png", "traversals.png", "manifold.png",
                 "codes.png", "progress.gif"):
        assert (run / name).is_file(), name
    # the test images were binarized once, with the seed: the same in every evaluation
    ev = json.loads(cli("evaluate", run, "-k", "20", "--json").stdout)
    again = json.loads(cli("evaluate", run, "-k", "20", "--json").stdout)
    assert ev["nll"] == again["nll"] and ev["importance_samples"] == 20 and 0 <= ev["probe_accuracy"] <= 1
    assert set(json.loads((run / "eval.json").read_text())) == {"test_k20"}
    # evaluate --data: the test split's digits as an array of one's own, binarized with the test split's draw,
    # measure as the split does
    from dlkit.data import sources

    np.save(run / "digits.npy", sources.load_builtin("mnist", str(DATA), False).x_test[:100])
    mine = cli("evaluate", run, "--data", run / "digits.npy", "-k", "20", "--json")
    assert mine.exit_code == 0, mine.output
    mine = json.loads(mine.stdout)
    assert mine["examples"] == 100 and "probe_accuracy" not in mine
    for k in ("nll", "elbo", "reconstruction", "kl"):
        assert mine[k] == pytest.approx(ev[k], rel=1e-5), k
    # with --reference, samples are measured against those digits too: half of them, the other half the floor
    both = cli("evaluate", run, "--data", run / "digits.npy", "--reference", tiny_run, "-n", "50", "-k", "20", "--json")
    assert both.exit_code == 0, both.output
    both = json.loads(both.stdout)
    assert both["nll"] == mine["nll"] and both["real_examples"] == both["real_frechet_samples"] == 50
    assert both["frechet_distance"] > both["real_frechet_distance"] > 0 and both["samples"] == 50
    # against the digits as read, gray as the decoder's means are, not binarized as the likelihood reads them
    from dlkit import images
    from dlkit.tasks.generative import own_halves

    half = own_halves(np.load(run / "digits.npy")[..., None], 50)[0]
    assert both["diversity"]["real"] == pytest.approx(images.mean_pairwise_distance(half / np.float32(255)), rel=1e-5)
    # a split's samples measured with --reference keep each split's result (eval.json: reference, reference:val)
    for split in ("test", "val"):
        res = cli("evaluate", run, "--split", split, "--reference", tiny_run, "-n", "20", "-k", "2", "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["split"] == split
    kept = json.loads((run / "eval.json").read_text())
    assert kept["reference"]["split"] == "test" and kept["reference:val"]["split"] == "val"
    alone = cli("evaluate", run, "-n", "500")  # -n counts what --reference measures: without it, unread
    assert alone.exit_code == 2 and "without --reference a VAE measures the split's likelihood" in alone.stderr
    codes = json.loads(cli("encode", run, "--json").stdout)
    assert np.load(codes["out"]).shape == (100, 2)
    # an image of one's own: the posterior mean of its gray levels (the split's are its fixed binarization)
    from PIL import Image

    from dlkit.data import sources

    first = sources.load_builtin("mnist", str(DATA), False).x_test[0]
    Image.fromarray(first).save(run / "first.png")
    mine = json.loads(cli("encode", run, run / "first.png", "--out", run / "mine.npy", "--json").stdout)
    model = keras.saving.load_model(run / "model.keras")
    np.testing.assert_allclose(np.load(mine["out"]), model.codes(first[None, ..., None] / np.float32(255)),
                               rtol=1e-5, atol=1e-6)
    assert cli("generate", run, "-n", "9", "--json").exit_code == 0
    # --out-dir: the picture's nine samples, each a PNG of its own (the grid: 3 x 3 cells of 56 px, 2x enlarged)
    each = cli("generate", run, "-n", "9", "--out-dir", run / "each", "--json")
    assert each.exit_code == 0 and json.loads(each.stdout)["files"] == 9, each.output
    with Image.open(run / "samples-seed0.png") as grid:
        grid = np.asarray(grid)
    for i in (0, 4, 8):
        with Image.open(run / "each" / f"{i:05d}.png") as im:
            r, q = divmod(i, 3)
            np.testing.assert_array_equal(np.asarray(im), grid[2 + 58 * r: 58 + 58 * r:2, 2 + 58 * q: 58 + 58 * q:2])
    assert cli("generate", run, "--interpolate", "-n", "7").exit_code == 0 and (run / "interpolation-seed0.png").is_file()
    # a long strip wraps at 16 steps a row, read left to right (it was one row, as wide as -n)
    assert cli("generate", run, "--interpolate", "-n", "40", "--out", run / "long.png").exit_code == 0
    from PIL import Image

    with Image.open(run / "long.png") as im:  # 3 rows of 14 (the grid evens the rows), 58 px cells
        assert im.size == (14 * 58 + 2, 3 * 58 + 2)


def test_vae_resume_is_exact(straight, write_recipe, tmp_path):
    """The reparameterisation noise and the dynamic binarization come from the model's SeedGenerator, saved
    with its checkpoints: 1 epoch + resume ends with the weights of 2 straight epochs, bit for bit."""
    from dlkit.training.train import resume, train

    first = train(write_recipe(TINY_VAE), ["train.epochs=1"], runs_root=tmp_path)
    resume(first["run_dir"], epochs=2)
    a = keras.saving.load_model(Path(straight["run_dir"]) / "model.keras").get_weights()
    b = keras.saving.load_model(Path(first["run_dir"]) / "model.keras").get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="an eager step: train_step(data) is "
                    "TensorFlow's signature (JAX's takes the state too)")
def test_the_vae_steps_under_mixed_bfloat16(write_recipe):
    """Was a TypeError in its first step: the posterior's statistics in bfloat16 met the float32 KL weight.
    They are float32 now, as the decoder's output is (an eager step, here)."""
    from conftest import build
    from dlkit.data.spec import DataSpec
    from dlkit.tasks import load_recipe

    recipe = load_recipe(write_recipe("model: {arch: vae, hidden: [8], latent_dim: 2}\n"
                                      "train: {precision: mixed_bfloat16}\n"))
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        vae = build(recipe, DataSpec(input_shape=(16, 16, 1), num_classes=10, num_train=64))
        logs = vae.train_step((np.random.default_rng(0).random((8, 16, 16, 1), "float32"), np.arange(8)))
    finally:
        keras.config.set_dtype_policy("float32")
    assert vae.encoder.layers[-2].compute_dtype == "bfloat16" and np.isfinite(float(logs["loss"]))


@pytest.mark.slow  # `make test` checks the VAE's step on JAX against TensorFlow's in test_steps_agree.py
def test_vae_trains_on_jax(write_recipe, tmp_path):
    recipe = write_recipe(TINY_VAE)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "dlkit.cli", "train", str(recipe), "--runs-root", str(tmp_path), "-q",
                          "--json", "--set", "train.epochs=1"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["status"] == "completed" and math.isfinite(result["final"]["elbo"])
    assert result["test"]["nll"] > 0
