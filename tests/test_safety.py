"""Model files are loaded in Keras's safe mode: one that holds Python code (a Lambda layer) is refused with
a clear error, and loads only with an explicit --unsafe. A damaged one is a data error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from typer.testing import CliRunner

from dlkit.cli import app
from dlkit.training.train import train


def test_a_model_file_holding_code_needs_unsafe(tiny_recipe, tmp_path):
    run = Path(train(tiny_recipe, ["train.epochs=1"], runs_root=tmp_path)["run_dir"])
    whole = (run / "model.keras").read_bytes()  # dlkit's own, damaged below
    inputs = keras.Input((28, 28, 1))
    marked = keras.layers.Lambda(lambda x: x * 1.0)(inputs)  # noqa: PLW0108 - Python code inside the file
    outputs = keras.layers.Dense(10, activation="softmax", name="predictions")(keras.layers.Flatten()(marked))
    model = keras.Model(inputs, outputs)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(run / "model.keras")
    refused = CliRunner().invoke(app, ["evaluate", str(run), "--json"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    error = json.loads(refused.stdout)["error"]
    assert "holds Python code" in error and "--unsafe" in error
    allowed = CliRunner().invoke(app, ["evaluate", str(run), "--json", "--unsafe"])
    assert allowed.exit_code == 0, allowed.output


    middle = len(whole) // 2
    for damage, reason in ((whole[: len(whole) - 100], "cut: no central directory, Keras says 'File not found'"),
                           (whole[:middle] + bytes(b ^ 0xFF for b in whole[middle:middle + 500]) + whole[middle + 500:],
                            "changed: a bad CRC inside")):
        (run / "model.keras").write_bytes(damage)
        for args in (["evaluate", str(run)], ["predict", str(run), str(tmp_path / "none.png")]):
            out = CliRunner().invoke(app, args + ["--json"])
            assert out.exit_code == 3, (reason, out.output)
            assert json.loads(out.stdout)["error"].startswith(f"{run / 'model.keras'} is not a whole .keras file")
    assert 0 <= json.loads(allowed.stdout)["metrics"]["accuracy"] <= 1
    assert np.isfinite(json.loads(allowed.stdout)["metrics"]["loss"])
