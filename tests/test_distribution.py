"""train.distribution: data parallel on Keras's own engines, checked on two virtual CPU devices (no GPU
needed): keras.distribution.DataParallel on JAX, tf.distribute.MirroredStrategy on TensorFlow. The same
global batch gives the same losses as one device; a distributed run resumes exactly; GANs (two optimizers,
their own step), the VAE and the RBM (steps of their own that draw noise) train; a global batch the devices do
not divide is a recipe error with its line. `make test` trains the classifier and a GAN on two devices in one
process; the VAE and the RBM on two devices, and the runs over two processes, are `make test-slow`'s (the VAE's
and the RBM's steps on JAX are checked in `make test` by tests/test_steps_agree.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import XLA_TEST_FLAGS, no_tensorflow_env
from dlkit.cli import app

HERE = Path(__file__).parent


def probe(backend: str, tmp_path: Path, parts: str, tensorflow: bool = True) -> dict:
    """The probe's answer; `tensorflow=False`: on a host where `import tensorflow` fails (JAX only)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "DLKIT_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"{XLA_TEST_FLAGS} --xla_force_host_platform_device_count=2", "PYTHONPATH": str(HERE.parent)}
    if not tensorflow:
        env["PYTHONPATH"] = no_tensorflow_env(tmp_path)["PYTHONPATH"]
    done = subprocess.run([sys.executable, str(HERE / "distributed_probe.py"), str(tmp_path), parts], env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(lines[0][6:])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(root: Path, count: int = 2) -> list:
    """`count` probe processes joined into one run on localhost (one CPU device each), started now."""
    port = free_port()
    procs = []
    for i in range(count):
        env = {**os.environ, "KERAS_BACKEND": "jax", "DLKIT_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": str(HERE.parent), "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": str(count), "KERAS_DISTRIBUTION_PROCESS_ID": str(i)}
        env["XLA_FLAGS"] = XLA_TEST_FLAGS  # one CPU device each
        procs.append(subprocess.Popen([sys.executable, str(HERE / "distributed_probe.py"), str(root), "processes"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish_processes(procs: list) -> list[dict]:
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            lines = [line for line in stdout.splitlines() if line.startswith("PROBE ")]
            assert p.returncode == 0 and lines, stdout[-2000:] + stderr[-4000:]
            outs.append(json.loads(lines[0][6:]))
    finally:
        for p in procs:
            p.kill()
    return outs


# what the VAE and the RBM log and are measured by, compared between one device and two
FAMILIES = {"vae": ("loss", "reconstruction", "kl"), "rbm": ("reconstruction_error", "free_energy_gap")}


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_devices_train_as_one(backend, tmp_path):
    # on JAX as on the JAX-only GPU host, without TensorFlow (the batches from the numpy pipeline); the VAE and
    # the RBM (test_the_families_on_two_devices) and a distributed run's resume (test_two_processes_train_as_one)
    # are `make test-slow`'s
    out = probe(backend, tmp_path, "mlp,gan,uneven", tensorflow=backend != "jax")
    mlp = out["mlp"]
    manifest = mlp["manifest_two"]
    assert manifest["replicas"] == 2 and len(manifest["devices"]) == 2 and manifest["backend"] == backend
    # a run without train.distribution after one with it, in the same process, is on one device again
    assert [mlp["one"]["replicas"], out["gan"]["one"]["replicas"], out["gan"]["two"]["replicas"]] == [1, 1, 2]
    assert out["gan"]["one_distribution"] is None
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(mlp["two"][key], mlp["one"][key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert abs(mlp["test_two"]["loss"] - mlp["test_one"]["loss"]) < 1e-5
    # a last batch the devices cannot split evenly was an IndivisibleError on JAX (Keras does not pad:
    # keras-team/keras#21167) and, in the validation split, an AddN shape error from Keras's per-evaluate build
    # on TensorFlow; more than one step a call failed under MirroredStrategy (keras-team/keras#19246)
    uneven = out["uneven"]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(uneven["two"][key], uneven["one"][key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert abs(uneven["test_two"]["loss"] - uneven["test_one"]["loss"]) < 1e-5
    gan = out["gan"]
    assert all(np.isfinite(gan["two"][k]).all() for k in ("d_loss", "g_loss"))
    if backend == "jax":
        # one global computation: batch norm sees the global batch, the random streams are the same
        for key in ("d_loss", "g_loss"):
            np.testing.assert_allclose(gan["two"][key], gan["one"][key], rtol=1e-4, err_msg=key)
    else:
        # each replica normalizes its own half of the batch (and draws its own noise): close, not equal
        np.testing.assert_allclose(gan["two"]["d_loss"], gan["one"]["d_loss"], rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_the_families_on_two_devices(backend, tmp_path):
    """The VAE and the RBM, whose steps are dlkit's own and draw noise each step. On JAX (without TensorFlow)
    one global computation: the same losses and test measures on two devices as on one. Under MirroredStrategy
    each replica draws its own noise, so one device and two are close, not equal (one seed, one epoch: the
    VAE's losses were within 2% and its importance-sampled NLL within 0.02%, the RBM's reconstruction error
    within 0.05%)."""
    out = probe(backend, tmp_path, "families", tensorflow=backend != "jax")
    for name in FAMILIES:
        assert [out[name]["one"]["replicas"], out[name]["two"]["replicas"]] == [1, 2], name
    if backend == "jax":
        for name, keys in FAMILIES.items():
            family = out[name]
            for key in keys:
                np.testing.assert_allclose(family["two"][key], family["one"][key], rtol=1e-4, err_msg=f"{name} {key}")
                np.testing.assert_allclose(family["test_two"][key], family["test_one"][key], rtol=1e-4,
                                           err_msg=f"{name} test {key}")
        return
    np.testing.assert_allclose(out["vae"]["two"]["loss"], out["vae"]["one"]["loss"], rtol=0.05)
    np.testing.assert_allclose(out["vae"]["test_two"]["nll"], out["vae"]["test_one"]["nll"], rtol=0.02)
    np.testing.assert_allclose(out["rbm"]["two"]["reconstruction_error"], out["rbm"]["one"]["reconstruction_error"],
                               rtol=0.01)


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
    """JAX is also the several-processes engine: two processes joined on localhost train alongside the
    single-process probe, which gives the reference."""
    procs = start_processes(tmp_path / "processes")
    out = probe("jax", tmp_path, "mlp,gan")
    check_processes(finish_processes(procs), out, tmp_path / "processes")


@pytest.mark.slow
def test_a_two_device_run_resumes_exactly(tmp_path):
    out = probe("jax", tmp_path, "mlp,resume")
    np.testing.assert_allclose(out["resumed"]["loss"], out["mlp"]["two"]["loss"], rtol=1e-6)


def check_processes(outs: list[dict], alone: dict, root: Path) -> None:
    """Two processes joined into one run (keras.distribution.initialize, one CPU device each) train the
    classifier (stopped after one epoch and resumed) and the DCGAN (its grids, mid-epoch and at each epoch's
    end, drawn by each process by itself) as one process trains them straight; process 0 alone writes the run
    directories, process 1 a log beside each."""
    first, second = sorted(outs, key=lambda o: o["process"])
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(first["resumed"][key], alone["mlp"]["one"][key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert abs(first["test"]["loss"] - alone["mlp"]["test_one"]["loss"]) < 1e-5
    for key in ("d_loss", "g_loss"):
        np.testing.assert_allclose(first["gan"][key], alone["gan"]["one"][key], rtol=1e-4, err_msg=key)
    assert first["resumed"]["replicas"] == 2
    # both processes report the same runs, process 0's directories
    assert [r["run_dir"] for r in first["results"]] == [r["run_dir"] for r in second["results"]]
    assert all(r["process"] == 1 and Path(r["log"]).is_file() for r in second["results"])
    assert first["results"][0]["test"] == second["results"][0]["test"]
    runs = root / "runs"
    made = sorted(p.relative_to(runs).as_posix() for p in runs.glob("*/*"))
    leaders = sorted(Path(r["run_dir"]).relative_to(runs).as_posix() for r in first["results"])
    # two runs (the mlp resumed, the gan), each with process 1's log beside it, nothing else
    assert made == sorted(set(leaders) | {f"{d}.process-1.log" for d in leaders}), made
    log = Path(second["results"][0]["log"]).read_text()
    assert "process 1 of 2" in log and log.count("epoch 2/2") == 1  # the resume appended to the same log
    manifest = json.loads((Path(first["results"][0]["run_dir"]) / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["replicas"] == 2
    assert (Path(first["results"][1]["run_dir"]) / "samples.png").is_file()


def test_a_grid_drawn_inside_an_epoch_over_several_processes_is_drawn_by_each_process_alone(monkeypatch, tmp_path):
    """train.sample_every's grid inside an epoch, in a run over several processes: Keras's predict there takes
    only tf.data (split between the processes), so the draw runs as the epoch-end pictures do, each process by
    itself (no distribution, the variables' local copies), the shared values back afterwards. It stopped the
    two-process DCGAN run, a slow case, with Keras's ValueError at the first mid-epoch grid."""
    from types import SimpleNamespace

    from dlkit import backend, keras_private
    from dlkit.tasks.sample_grid import SampleGrid

    seen = []
    monkeypatch.setattr(backend, "process_count", lambda: 2)
    monkeypatch.setattr(keras_private, "local_values", lambda model: seen.append(("copied", model)) or ["saved"])
    monkeypatch.setattr(keras_private, "put_back", lambda saved: seen.append(("put back", saved)))

    def draw():
        seen.append(("drawn", backend._alone))
        return np.zeros((4, 2, 2, 1), "float32")

    run = SimpleNamespace(root=tmp_path, samples=tmp_path / "samples.png")
    grid = SampleGrid(run, None, draw, rows=2, fakes=None, real=np.zeros((2, 2, 2, 1), "float32"), scale=(1 / 255, 0),
                      overpower_epochs=3, every=2)
    model = SimpleNamespace()
    grid.set_model(model)
    grid.set_params({"steps": 10})
    grid.on_epoch_begin(0)
    grid.on_train_batch_end(1)  # step 2
    assert seen == [("copied", model), ("drawn", True), ("put back", ["saved"])] and not backend._alone
    assert (tmp_path / "samples" / "step_0000002.png").is_file()


def test_a_run_over_several_processes_says_what_is_missing_or_wrong(tiny_recipe, monkeypatch):
    for key in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(key, raising=False)
    cases = [(["--processes", "2", "--process-id", "1"], "missing --coordinator HOST:PORT"),
             (["--coordinator", "127.0.0.1:1", "--processes", "2", "--process-id", "2"], "0 to 1"),
             (["--coordinator", "localhost", "--processes", "2", "--process-id", "0"], "is not HOST:PORT"),
             (["--coordinator", "localhost:²", "--processes", "2", "--process-id", "0"], "is not HOST:PORT"),
             # this suite runs on TensorFlow: several processes are JAX's, and said so before anything waits
             (["--coordinator", "127.0.0.1:1", "--processes", "2", "--process-id", "0"], "needs the JAX backend")]
    for flags, expected in cases:
        out = CliRunner().invoke(app, ["train", str(tiny_recipe), *flags])
        assert out.exit_code == 2 and expected in out.output, (flags, out.output)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "two")
    out = CliRunner().invoke(app, ["train", str(tiny_recipe)])
    assert out.exit_code == 2 and "KERAS_DISTRIBUTION_NUM_PROCESSES='two' is not a whole number" in out.output


def test_an_indivisible_global_batch_is_a_recipe_error(tiny_recipe):
    out = CliRunner().invoke(app, ["validate", str(tiny_recipe), "--set",
                                   "train.distribution={strategy: data_parallel, devices: 3}"])
    assert out.exit_code == 2 and "data.batch_size" in out.stderr and "multiple of 3" in out.stderr
    assert f"{tiny_recipe}:" in out.stderr  # with the file and line
    too_many = CliRunner().invoke(app, ["train", str(tiny_recipe), "--devices", "64", "--set", "data.batch_size=64"])
    assert too_many.exit_code == 2 and "asks for 64 devices" in too_many.stderr
    bad = CliRunner().invoke(app, ["validate", str(tiny_recipe), "--set", "train.distribution={devices: 0}"])
    assert bad.exit_code == 2 and "train.distribution.devices" in bad.stderr


def test_every_task_takes_float16_and_no_other_precision(tmp_path):
    # Keras's own step scales a float16 run's loss (its LossScaleOptimizer); dlkit's own steps, a GAN's here,
    # do too (StepModel.descend, checked step by step in tests/test_steps_agree.py)
    recipe = tmp_path / "gan.yaml"
    recipe.write_text("name: g\ndata: {dataset: mnist}\nmodel: {arch: dcgan}\ntrain:\n  epochs: 1\n"
                      "  precision: mixed_float16\n")
    for fine in ("mixed_float16", "mixed_bfloat16", "float32"):
        assert CliRunner().invoke(app, ["validate", str(recipe), "--set", f"train.precision={fine}"]).exit_code == 0
    recipe.write_text(recipe.read_text().replace("mixed_float16", "float64"))
    out = CliRunner().invoke(app, ["validate", str(recipe)])
    assert out.exit_code == 2 and f"{recipe}:6: train.precision" in out.stderr and "mixed_float16" in out.stderr


def test_a_stateful_model_on_tensorflows_mirrored_strategy_is_a_recipe_error(write_recipe):
    # it was a Keras traceback from the first step: each replica's share of the batch against the state's rows
    recipe = write_recipe("name: lm\ndata: {dataset: text, path: x.txt, batch_size: 4, shuffle_buffer: 0}\n"
                          "model: {arch: rnn_lm, stateful: true}\n")
    out = CliRunner().invoke(app, ["train", str(recipe), "--devices", "2"])
    assert out.exit_code == 2, out.output
    assert "train.distribution: a stateful model (model.stateful: true)" in out.stderr
    assert "KERAS_BACKEND=jax" in out.stderr
