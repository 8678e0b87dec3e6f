"""train.distribution: data parallel on Keras's own engines, checked on two virtual CPU devices (no GPU
needed): keras.distribution.DataParallel on JAX, tf.distribute.MirroredStrategy on TensorFlow. The same
global batch gives the same losses as one device; a distributed run resumes exactly; GANs (two optimizers,
their own step) train; a global batch the devices do not divide is a recipe error with its line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlkit.cli import app

HERE = Path(__file__).parent


def probe(backend: str, tmp_path: Path, parts: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "DLKIT_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run([sys.executable, str(HERE / "distributed_probe.py"), str(tmp_path), parts], env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(lines[0][6:])


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_devices_train_as_one(backend, tmp_path):
    # the resume goes through the same placement on both backends: checked on JAX, the multi-host engine
    out = probe(backend, tmp_path, "mlp,resume,gan" if backend == "jax" else "mlp,gan")
    mlp = out["mlp"]
    manifest = mlp["manifest_two"]
    assert manifest["replicas"] == 2 and len(manifest["devices"]) == 2 and manifest["backend"] == backend
    # a run without train.distribution after one with it, in the same process, is on one device again
    assert [mlp["one"]["replicas"], out["gan"]["one"]["replicas"], out["gan"]["two"]["replicas"]] == [1, 1, 2]
    assert out["gan"]["one_distribution"] is None
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(mlp["two"][key], mlp["one"][key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert abs(mlp["test_two"]["loss"] - mlp["test_one"]["loss"]) < 1e-5
    if "resumed" in out:  # stopped after one epoch, resumed: the epochs of the uninterrupted distributed run
        np.testing.assert_allclose(out["resumed"]["loss"], mlp["two"]["loss"], rtol=1e-6)
    gan = out["gan"]
    assert all(np.isfinite(gan["two"][k]).all() for k in ("d_loss", "g_loss"))
    if backend == "jax":
        # one global computation: batch norm sees the global batch, the random streams are the same
        for key in ("d_loss", "g_loss"):
            np.testing.assert_allclose(gan["two"][key], gan["one"][key], rtol=1e-4, err_msg=key)
    else:
        # each replica normalizes its own half of the batch (and draws its own noise): close, not equal
        np.testing.assert_allclose(gan["two"]["d_loss"], gan["one"]["d_loss"], rtol=0.05)


def test_an_indivisible_global_batch_is_a_recipe_error(tiny_recipe):
    out = CliRunner().invoke(app, ["validate", str(tiny_recipe), "--set",
                                   "train.distribution={strategy: data_parallel, devices: 3}"])
    assert out.exit_code == 2 and "data.batch_size" in out.stderr and "multiple of 3" in out.stderr
    assert f"{tiny_recipe}:" in out.stderr  # with the file and line
    too_many = CliRunner().invoke(app, ["train", str(tiny_recipe), "--devices", "64", "--set", "data.batch_size=64"])
    assert too_many.exit_code == 2 and "asks for 64 devices" in too_many.stderr
    bad = CliRunner().invoke(app, ["validate", str(tiny_recipe), "--set", "train.distribution={devices: 0}"])
    assert bad.exit_code == 2 and "train.distribution.devices" in bad.stderr
