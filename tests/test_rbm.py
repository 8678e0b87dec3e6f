"""The RBM (task `boltzmann`) on truth: RBMs small enough to enumerate give the exact log Z and the exact
log-likelihood gradient, against which the AIS estimate and the CD-k estimate are checked. Then a tiny RBM
on the MNIST slice through the CLI, and a PCD run resumed bit for bit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA, straight_run
from dlkit.cli import app
from dlkit.models.rbm_model import RBM, ais_log_partition, exact_log_partition, free_energy_np


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def random_rbm(visible, hidden, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (visible, hidden)), rng.normal(0, 0.5, visible), rng.normal(0, 0.5, hidden)


def all_states(n):
    return ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def test_exact_log_partition_against_the_sum_over_every_state():
    kernel, b, c = random_rbm(5, 3)
    v, h = all_states(5), all_states(3)
    energy = -(v @ b)[:, None] - (h @ c)[None, :] - v @ kernel @ h.T  # every (v, h) pair
    assert exact_log_partition(kernel, b, c) == pytest.approx(float(np.logaddexp.reduce(-energy.ravel())), abs=1e-9)
    # and the free energy sums out h: log Z = logsumexp_v -F(v)
    assert exact_log_partition(kernel, b, c) == pytest.approx(float(np.logaddexp.reduce(-free_energy_np(v, kernel, b, c))))


def test_ais_matches_the_exact_log_partition_of_an_enumerable_rbm():
    kernel, b, c = random_rbm(12, 6, seed=1)
    exact = exact_log_partition(kernel, b, c)
    base = np.log(0.3 / 0.7) * np.ones(12)  # any base rates will do; the data's are closer to the model
    ais = ais_log_partition(kernel, b, c, base, runs=100, steps=14500, seed=0)
    assert ais["log_z"] == pytest.approx(exact, abs=0.1)
    assert ais["log_z_low"] <= exact + 0.05 and ais["log_z_high"] >= exact - 0.05  # within its +/- 3 errors
    rough = ais_log_partition(kernel, b, c, base, runs=100, steps=100, seed=0)
    heard = []  # how far it is, for `dlkit evaluate`'s progress: the temperatures passed, a hundred at a time
    ais_log_partition(kernel, b, c, base, runs=2, steps=250, seed=0, advance=heard.append)
    assert heard == [100, 100, 50]
    assert abs(rough["log_z"] - exact) > abs(ais["log_z"] - exact)  # fewer temperatures, a worse estimate
    # the test log-likelihood from it, against the exact one, on a few states
    v = all_states(12)[::409]
    exact_ll = -free_energy_np(v, kernel, b, c) - exact
    np.testing.assert_allclose(-free_energy_np(v, kernel, b, c) - ais["log_z"], exact_ll, atol=0.1)


def test_cd_k_approaches_the_exact_gradient_as_k_grows():
    """The exact gradient of the mean negative log-likelihood of a data set is E_model[v h] - E_data[v h];
    CD-k's estimate from chains started at the data is biased, less so with more Gibbs steps."""
    kernel, b, c = random_rbm(8, 4, seed=0)
    rbm = RBM(visible=8, hidden=4, seed=3)
    for variable, value in zip((rbm.kernel, rbm.visible_bias, rbm.hidden_bias), (kernel, b, c)):
        variable.assign(value.astype("float32"))
    data = (np.random.default_rng(0).random((20, 8)) < 0.5).astype(np.float32)
    states = all_states(8)
    log_p = -free_energy_np(states, kernel, b, c)
    p = np.exp(log_p - np.logaddexp.reduce(log_p))
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    exact = (states * p[:, None]).T @ sigmoid(states @ kernel + c) - data.T @ sigmoid(data @ kernel + c) / len(data)

    def error(k):
        v0 = np.repeat(data, 100, axis=0)
        estimate = np.mean([keras.ops.convert_to_numpy(rbm.cd_gradients(v0, v0, k)[0][0]) for _ in range(10)], axis=0)
        return np.linalg.norm(estimate - exact) / np.linalg.norm(exact)

    errors = {k: error(k) for k in (1, 3, 30)}
    assert errors[1] > 3 * errors[30] and errors[30] < 0.05, errors
    assert errors[3] < errors[1]


TINY_RBM = f"""
name: tiny_rbm
seed: 2
data: {{dataset: mnist, dir: {DATA}, limit: 300, test_limit: 100, batch_size: 50, scale: unit}}
model: {{arch: rbm, hidden: 16, persistent: true, chains: 20}}
train: {{epochs: 2, optimizer: {{name: sgd, learning_rate: 0.05, momentum: 0.5, weight_decay: 0.0001}}}}
"""


straight = straight_run(TINY_RBM)


def test_rbm_trains_draws_and_is_measured_by_ais(straight, monkeypatch, tmp_path):
    run = Path(straight["run_dir"])
    rows = list(csv.DictReader(open(run / "history.csv")))
    for key in ("reconstruction_error", "pseudo_log_likelihood", "free_energy_gap", "val_reconstruction_error",
                "test_pseudo_log_likelihood", "learning_rate"):
        assert key in rows[0], key
    assert float(rows[-1]["reconstruction_error"]) < float(rows[0]["reconstruction_error"]) * 1.05
    for name in ("filters.png", "chains.png", "samples/epoch_002.png", "progress.gif"):
        assert (run / name).is_file(), name
    model = keras.saving.load_model(run / "model.keras")
    # the visible biases started at the data's log-odds: the borders of MNIST are always off
    assert float(keras.ops.convert_to_numpy(model.visible_bias)[0]) < -4
    ev = cli("evaluate", run, "-k", "20", "--json")
    assert ev.exit_code == 0, ev.output
    measured = json.loads(ev.stdout)
    assert measured["ais_runs"] == 20 and measured["ais_steps"] == 14500 and measured["max_log_p"] < 0
    assert -600 < measured["log_likelihood"] < -50  # 784 pixels; a coin per pixel would give -543
    assert measured["log_likelihood_low"] <= measured["log_likelihood"] <= measured["log_likelihood_high"]
    assert "log Z (AIS)" in cli("evaluate", run, "-k", "10").stdout
    # evaluate --data: the test digits as an array of one's own, binarized with the test split's draw, measure
    # as the split does (the same AIS: its base is the training split's pixel rates)
    from dlkit.data import sources

    np.save(tmp_path / "digits.npy", sources.load_builtin("mnist", str(DATA), False).x_test[:100])
    mine = cli("evaluate", run, "--data", tmp_path / "digits.npy", "-k", "10", "--json")
    assert mine.exit_code == 0, mine.output
    split = json.loads((run / "eval.json").read_text())["test_ais10"]
    assert json.loads(mine.stdout)["log_likelihood"] == pytest.approx(split["log_likelihood"], rel=1e-9)
    assert np.load(json.loads(cli("encode", run, "--json").stdout)["out"]).shape == (100, 16)
    from dlkit.errors import DataError
    from dlkit.training.session import Session

    def absent(self):
        raise DataError("the data is not on this machine")

    # drawing needs the run alone (the picture's shape is in its manifest), not the data it trained on
    monkeypatch.setattr(Session, "data", property(absent))
    assert cli("generate", run, "-n", "4").exit_code == 0 and (run / "samples-seed0.png").is_file()
    each = cli("generate", run, "-n", "4", "--out-dir", tmp_path / "chains")  # a PNG per chain
    assert each.exit_code == 0 and sorted(p.name for p in (tmp_path / "chains").glob("*.png")) == [
        f"{i:05d}.png" for i in range(4)], each.output
    # nor does evaluate --data: AIS's base model is the training pixel rates the run kept
    gone = cli("evaluate", run, "--data", tmp_path / "digits.npy", "-k", "10", "--json")
    assert gone.exit_code == 0, gone.output
    assert json.loads(gone.stdout)["log_likelihood"] == pytest.approx(split["log_likelihood"], rel=1e-9)
    assert cli("encode", run).exit_code == 3  # which does read the data
    from PIL import Image  # images of one's own need the run alone

    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(tmp_path / "white.png")
    mine = cli("encode", run, tmp_path / "white.png", "--json")
    assert mine.exit_code == 0 and np.load(json.loads(mine.stdout)["out"]).shape == (1, 16), mine.output
    # a run trained before the base model was kept reads it from its training data, the same
    monkeypatch.undo()
    (run / "artifacts" / "ais_base.json").unlink()
    older = cli("evaluate", run, "--data", tmp_path / "digits.npy", "-k", "10", "--json")
    assert json.loads(older.stdout)["log_likelihood"] == pytest.approx(split["log_likelihood"], rel=1e-9)


def test_pcd_resume_is_exact(straight, write_recipe, tmp_path):
    """The persistent chains are a model variable and the Gibbs noise comes from the model's SeedGenerator:
    1 epoch + resume ends where 2 straight epochs do, bit for bit."""
    from dlkit.training.train import resume, train

    first = train(write_recipe(TINY_RBM), ["train.epochs=1"], runs_root=tmp_path)
    resume(first["run_dir"], epochs=2)
    a = keras.saving.load_model(Path(straight["run_dir"]) / "model.keras").get_weights()
    b = keras.saving.load_model(Path(first["run_dir"]) / "model.keras").get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_gibbs_chains_run_in_float32_without_overflow_warnings():
    """The chains behind chains.png and `dlkit generate` are drawn in float32 (2.2 times faster than float64,
    benchmarks/gibbs_speed.py); float32's exp overflows below -88, so the logistic is tanh's, silent and
    exact at the ends."""
    import warnings

    from dlkit.models.rbm_model import sigmoid_np
    from dlkit.tasks.boltzmann import chain_snapshots

    a = np.array([-1000, -88.8, -3, 0, 3, 1000], np.float32)
    with np.errstate(over="ignore"):  # the reference: exp(1000) is inf even in float64, 1 / inf is 0
        expected = 1 / (1 + np.exp(-a.astype(np.float64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning on stderr, under -q too
        got = sigmoid_np(a)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30)

        class Strong:  # weights large enough to drive every unit far past float32's exp range
            def numpy_parameters(self, dtype=np.float64):
                rng = np.random.default_rng(0)
                return tuple(np.asarray(p, dtype) for p in (rng.normal(0, 50, (6, 4)), np.full(6, -200.0),
                                                            np.full(4, 200.0)))

        chains = chain_snapshots(Strong(), np.ones((3, 6), np.float32), steps=(0, 1, 5))
    assert chains.dtype == np.float32 and chains.shape == (9, 6) and np.all((chains >= 0) & (chains <= 1))
