"""`dlkit sweep`: the grid's product times the seeds, each a normal run; mean and standard deviation over
seeds; a second call skips finished members and resumes an interrupted one."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlkit.cli import app
from dlkit.errors import UsageError
from dlkit.sweep import parse_grid

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_grid_values_are_typed_as_yaml():
    grid = parse_grid(["train.optimizer.learning_rate=0.1,1e-2", "train.optimizer.name=adam,sgd",
                       "model.dense=[16],[32, 16]", "data.augment.flip=true,false"])
    assert grid == {"train.optimizer.learning_rate": [0.1, 0.01], "train.optimizer.name": ["adam", "sgd"],
                    "model.dense": [[16], [32, 16]], "data.augment.flip": [True, False]}
    for bad in (["lr"], ["=1,2"], ["a=1", "a=2"]):
        with pytest.raises(UsageError):
            parse_grid(bad)


def test_sweep_runs_seeds_summarizes_and_picks_up_where_it_stopped(tiny_recipe, tmp_path):
    args = ["sweep", tiny_recipe, "--grid", "model.dense=[16]", "--seeds", "2", "--parallel", "2",
            "--runs-root", tmp_path, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=3", "--json"]
    first = run(*args)
    assert first.exit_code == 0, first.stdout
    result = json.loads(first.stdout)
    runs = result["runs"]
    assert [r["seed"] for r in runs] == [7, 8] and all(r["action"] == "train" for r in runs)
    accuracies = [json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["test"]["accuracy"] for r in runs]
    row = result["summary"][0]
    assert row["point"] == {"model.dense": [16]} and row["completed"] == 2
    assert row["accuracy"]["mean"] == pytest.approx(statistics.mean(accuracies))
    assert row["accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
    assert row["headline"]["label"] == "test accuracy"

    again = json.loads(run(*args).stdout)  # nothing new: both finished
    assert [r["action"] for r in again["runs"]] == ["done", "done"]
    assert len(list((tmp_path / "tiny").iterdir())) == 2

    # the second member was killed after its last epoch's checkpoint, before it was finished (no model.keras,
    # no metrics.json, its manifest still says running and nobody holds its lock): resumed, it is finished
    stopped = Path(runs[1]["run_dir"])
    (stopped / "model.keras").unlink()
    (stopped / "metrics.json").unlink()
    manifest = json.loads((stopped / "manifest.json").read_text())
    (stopped / "manifest.json").write_text(json.dumps({**manifest, "status": "running", "ended": None}))
    third = json.loads(run(*args).stdout)
    assert [r["action"] for r in third["runs"]] == ["done", "resume"]
    assert third["runs"][1]["run_dir"] == str(stopped) and third["runs"][1]["status"] == "completed"
    assert (stopped / "model.keras").is_file() and len(list((tmp_path / "tiny").iterdir())) == 2


def test_a_bad_grid_value_runs_nothing(tiny_recipe, tmp_path):
    out = run("sweep", tiny_recipe, "--grid", "train.optimizer.learning_rate=0.1,-1", "--runs-root", tmp_path)
    assert out.exit_code == 2 and "learning_rate" in out.stderr
    assert not (tmp_path / "tiny").exists()
