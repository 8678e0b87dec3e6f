"""The task seam is real: a task and an architecture defined in this file alone (nothing in dlkit/ edited)
validate, train, resume, evaluate and generate through the CLI, with two phases.

The toy task reads a digit's value off its image as a number (regression, mean squared error). Its run
has two phases: `warmup`, then `main`, whose model starts from the warm-up's weights; each phase has its
own history and checkpoints, and `dlkit resume` continues inside whichever phase a run stopped in.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydantic import Field
from typer.testing import CliRunner

from conftest import DATA
from dlkit import models, optim, tasks
from dlkit.cli import app
from dlkit.errors import UsageError
from dlkit.models.knobs import ModelBase
from dlkit.recipe.schema import OptimizerConfig, TrainBase
from dlkit.tasks.base import Callbacks, Phase, Task


class DigitValueConfig(ModelBase):
    arch: Literal["digit_value"] = "digit_value"
    units: int = Field(8, ge=1)


def build_digit_value(config: DigitValueConfig, spec):
    import keras

    inputs = keras.Input(spec.input_shape)
    hidden = keras.layers.Dense(config.units, activation=config.activation)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, name="value")(hidden), name="digit_value")


class DigitValueTrain(TrainBase):
    warmup_epochs: int = Field(1, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig(name="sgd", learning_rate=0.01)


class DigitValue(Task):
    """Regression of a digit's value, in two phases."""

    name = "digit_value"
    summary = "a digit's value, as a number"
    Train = DigitValueTrain
    roles = ("model",)
    options = frozenset({"n"})  # generate -n: how many test digits to value
    calls: list = []  # which hook ran, to show the training loop went through each

    def phases(self, recipe):
        return [Phase("warmup", recipe.train.warmup_epochs), Phase("main", recipe.train.epochs)]

    def build(self, recipe, spec, phase, earlier):
        self.calls.append(("build", phase.name, sorted(earlier)))
        model = build_digit_value(recipe.model, spec)
        if phase.name == "main":  # the main phase starts where the warm-up ended
            model.set_weights(earlier["warmup"].get_weights())
        return model

    def compile(self, model, recipe, steps_per_epoch, phase):
        model.compile(optimizer=optim.optimizer(recipe.train, steps_per_epoch, recipe.train.optimizer), loss="mse",
                      metrics=["mae"])
        return model

    def optimizers(self, model):
        return {"model": model.optimizer}

    def monitor(self, recipe, has_val, phase):
        return ("val_loss", "min") if has_val else ("loss", "min")

    def callbacks(self, ctx):
        self.calls.append(("callbacks", ctx.phase.name, ctx.initial_epoch))
        return Callbacks()

    def finish(self, ctx, callbacks):
        return {"test": {k: float(v) for k, v in ctx.model.evaluate(ctx.data.test, verbose=0, return_dict=True).items()}}

    def evaluate(self, run, recipe, model, data, request):
        ds = data().pipeline(request.split, recipe.data, recipe.seed)
        measured = model.evaluate(ds, verbose=0, return_dict=True)
        return {"task": self.name, "key": request.split, "run_dir": str(run.root), "split": request.split,
                "mae": float(measured["mae"])}

    def report(self, result):
        return [f"{result['split']}: mean absolute error {result['mae']:.3f}"]

    def generate(self, run, recipe, model, data, request):
        if request.label is not None:
            raise UsageError("--label: the digit-value task draws no classes")
        x = data().splits.x_test[: request.n].astype("float32") / 255.0
        out = Path(request.out or run.root / "values.txt")
        out.write_text("\n".join(f"{v:.3f}" for v in model.predict(x[..., None], verbose=0)[:, 0]) + "\n")
        return {"status": "completed", "run_dir": str(run.root), "out": str(out), "n": int(request.n)}


@pytest.fixture
def digit_value(write_recipe):
    """The toy architecture and task, registered for the test and removed after it."""
    import types

    module = types.ModuleType("digit_value", "A dense net reading a digit's value as a number.")
    module.Config, module.build, module.TASK = DigitValueConfig, build_digit_value, "digit_value"
    models.register(models.Architecture.of(module))
    tasks.register(DigitValue())
    DigitValue.calls.clear()
    yield write_recipe(f"""
name: digits_as_numbers
seed: 3
data: {{dataset: mnist, dir: {DATA}, limit: 200, test_limit: 100, batch_size: 50}}
model: {{arch: digit_value, units: 8, dropout: 0.0}}
train: {{epochs: 3, warmup_epochs: 2}}
""")
    del models.ARCHITECTURES["digit_value"], tasks.TASKS["digit_value"]


def cli(*args):
    out = CliRunner().invoke(app, [str(a) for a in args])
    return out


def weights(run_dir):
    import keras

    return keras.saving.load_model(Path(run_dir) / "model.keras").get_weights()


def test_a_task_and_architecture_from_outside_dlkit(digit_value, tmp_path):
    runner_root = tmp_path / "runs"
    assert cli("validate", digit_value).exit_code == 0
    bad = cli("validate", digit_value, "--set", "train.metrics=[mae]")  # its train section has no metrics
    assert bad.exit_code == 2 and "train.metrics: unknown key" in bad.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert "digit_value" in listed["architectures"] and "digit_value" in listed["tasks"]

    # trained straight through: warm-up 2 epochs, then 3 in the main phase
    out = cli("train", digit_value, "--runs-root", runner_root / "a", "--json", "--quiet")
    assert out.exit_code == 0, out.output
    straight = json.loads(out.stdout)
    run = Path(straight["run_dir"])
    assert straight["status"] == "completed" and set(straight["phases"]) == {"warmup", "main"}
    assert straight["phases"]["warmup"]["epochs_completed"] == 2 and straight["epochs_completed"] == 3
    assert straight["test"]["mae"] < 5  # the values run 0..9; a model that learnt nothing but the mean is ~2.5
    for phase in ("warmup", "main"):
        assert (run / "phases" / phase / "checkpoints" / "last.keras").is_file()
        assert (run / "phases" / phase / "history.csv").is_file() and (run / "phases" / phase / "model.keras").is_file() \
            or phase == "main"
    assert (run / "model.keras").is_file() and (run / "artifacts" / "scale.json").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["task"] == "digit_value" and manifest["phases_completed"] == ["warmup"]
    assert ("build", "main", ["warmup"]) in DigitValue.calls

    # stopped after the first main epoch, then resumed inside the main phase: the same weights, bit for bit
    first = json.loads(cli("train", digit_value, "--runs-root", runner_root / "b", "--json", "-q", "--set",
                           "train.epochs=1").stdout)
    DigitValue.calls.clear()
    out = cli("resume", first["run_dir"], "--epochs", "3", "--json", "-q")
    assert out.exit_code == 0, out.output
    resumed = json.loads(out.stdout)
    assert resumed["resumed_from_epoch"] == 1 and list(resumed["phases"]) == ["main"]
    assert ("callbacks", "main", 1) in DigitValue.calls and not any(c[1] == "warmup" for c in DigitValue.calls[1:])
    for a, b in zip(weights(straight["run_dir"]), weights(resumed["run_dir"]), strict=True):
        np.testing.assert_array_equal(a, b)
    rows = list(csv.DictReader(open(Path(resumed["run_dir"]) / "phases" / "main" / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]

    # evaluate and generate are the task's
    ev = cli("evaluate", run, "--split", "val")
    assert ev.exit_code == 0 and "val: mean absolute error" in ev.stdout
    assert json.loads((run / "eval.json").read_text())["val"]["mae"] >= 0
    gen = cli("generate", run, "-n", "5", "--json")
    assert gen.exit_code == 0 and len(Path(json.loads(gen.stdout)["out"]).read_text().split()) == 5
    assert cli("generate", run, "--label", "1").exit_code == 2


def test_a_run_stopped_in_its_first_phase_resumes_there(digit_value, tmp_path, monkeypatch):
    """Interrupted after the first warm-up epoch: resume finishes the warm-up, then runs the main phase, and
    ends where an uninterrupted run does."""
    from dlkit.training import callbacks

    straight = json.loads(cli("train", digit_value, "--runs-root", tmp_path / "a", "--json", "-q",
                              "--set", "train.epochs=1").stdout)
    original = callbacks.CheckpointAndHistory.on_epoch_end

    def stop_after_first(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.CheckpointAndHistory, "on_epoch_end", stop_after_first)
    stopped = cli("train", digit_value, "--runs-root", tmp_path / "b", "--json", "-q", "--set", "train.epochs=1")
    assert stopped.exit_code == 130
    run = Path(json.loads(stopped.stdout)["run_dir"])
    assert json.loads((run / "manifest.json").read_text())["phases_completed"] == []
    monkeypatch.setattr(callbacks.CheckpointAndHistory, "on_epoch_end", original)
    out = cli("resume", run, "--json", "-q")
    assert out.exit_code == 0, out.output
    resumed = json.loads(out.stdout)
    assert resumed["resumed_from_epoch"] == 1 and list(resumed["phases"]) == ["warmup", "main"]
    for a, b in zip(weights(straight["run_dir"]), weights(run), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "finished 1 of its 1 epochs" in cli("resume", run).stderr
