"""`dlkit sweep`: the grid's product times the seeds, each a normal run; mean and standard deviation over
seeds; a second call skips finished members and resumes an interrupted one."""

from __future__ import annotations

import json
import re
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
    # the same point twice trained two runs of one thing and summarized them as two; seeds are --seeds's
    for bad, said in ((["train.epochs=1,2,1"], "--grid train.epochs: 1 is listed twice"),
                      (["model.dense=[16],[16]"], "--grid model.dense: [16] is listed twice"),
                      (["seed=1,2"], "--seeds N")):
        with pytest.raises(UsageError, match=re.escape(said)):
            parse_grid(bad)


def test_a_bad_grid_value_is_said_once_whatever_the_seeds(write_recipe):
    # each of --seeds 3 said the same problem of the same point again
    from dlkit.sweep import members

    recipe = write_recipe("model: {arch: mlp}\n")
    with pytest.raises(UsageError) as info:
        members(recipe, parse_grid(["train.epochs=1,lots"]), 3, [])
    assert str(info.value).count("received 'lots'") == 1
    assert "  - --grid train.epochs=lots: train.epochs: Input should be a valid integer" in str(info.value)


def test_a_grid_problem_is_said_once_of_its_key_or_value_whatever_the_other_keys(write_recipe):
    # a misspelt key was said again at every point of the grid (6 here), each time naming one value
    from dlkit.sweep import members

    recipe = write_recipe("model: {arch: mlp}\n")
    grid = parse_grid(["train.optimzer.learning_rate=0.1,0.01", "model.dropout=0.1,2,3", "train.epochs=1,2"])
    with pytest.raises(UsageError) as info:
        members(recipe, grid, 2, [])
    said = str(info.value).splitlines()
    assert said[1:] == [
        "  - --grid train.optimzer.learning_rate: train.optimzer: unknown key (did you mean 'optimizer'? "
        + said[1].partition("(did you mean 'optimizer'? ")[2],
        "  - --grid model.dropout=2: model.dropout: Input should be less than 1; received 2",
        "  - --grid model.dropout=3: model.dropout: Input should be less than 1; received 3"]


def test_a_key_in_both_set_and_grid_is_a_usage_error(write_recipe):
    # the grid's value won over the --set's, in silence
    from dlkit.sweep import members

    recipe = write_recipe("model: {arch: mlp}\n")
    with pytest.raises(UsageError, match="data.batch_size is both --set and --grid"):
        members(recipe, parse_grid(["data.batch_size=32,64"]), 1, ["data.batch_size=16"])


def test_learning_rates_below_1e_4_reach_the_members(write_recipe):
    # a member's --set carries Python's repr, 1e-05, which PyYAML's YAML 1.1 read as a string: every member
    # of a sweep over small learning rates was refused as "not a valid number"
    from dlkit.sweep import members

    recipe = write_recipe("model: {arch: mlp}\n")
    found = members(recipe, parse_grid(["train.optimizer.learning_rate=1e-5,2.5e-6"]), 1, [])
    assert [m["recipe"]["train"]["optimizer"]["learning_rate"] for m in found] == [1e-5, 2.5e-6]


def killed_after_its_last_checkpoint(run: Path) -> None:
    """What a member killed after its last epoch's checkpoint and before it finished leaves: no model.keras,
    no metrics.json, a manifest that still says running, and nobody holding its lock."""
    (run / "model.keras").unlink()
    (run / "metrics.json").unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running", "ended": None}))


def test_sweep_runs_seeds_summarizes_and_picks_up_where_it_stopped(tiny_recipe, tmp_path):
    args = ["sweep", tiny_recipe, "--grid", "model.dense=[16]", "--seeds", "2", "--parallel", "2",
            "--runs-root", tmp_path, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=3", "--json"]
    planned = json.loads(run(*args, "--dry-run").stdout)  # nothing there yet: two trainings, nothing run
    assert planned["status"] == "planned" and [r["action"] for r in planned["runs"]] == ["train", "train"]
    assert planned["runs"][1]["command"][-2:] == ["--set", "seed=8"] and not (tmp_path / "tiny").exists()
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

    # the second member was killed: the sweep resumes that run (the resume itself:
    # test_a_sweep_finishes_its_killed_member, `make test-slow`), and a dry run says so and touches nothing
    stopped = Path(runs[1]["run_dir"])
    killed_after_its_last_checkpoint(stopped)
    out = run(*args, "--dry-run")
    assert out.exit_code == 0, out.stdout
    plan = json.loads(out.stdout)["runs"]
    assert [r["action"] for r in plan] == ["done", "resume"] and plan[0]["command"] is None
    assert plan[1]["run_dir"] == str(stopped) and plan[1]["command"][-4:] == ["resume", str(stopped), "--json", "-q"]
    assert not (stopped / "model.keras").exists() and len(list((tmp_path / "tiny").iterdir())) == 2
    assert json.loads((stopped / "manifest.json").read_text())["status"] == "running"  # as the kill left it
    shown = run(*args[:-1], "--dry-run")  # the plan, a line a member and its command
    assert shown.exit_code == 0 and f"resume: {{'model.dense': [16]}} seed 8: {stopped}" in shown.stdout
    assert f"dlkit.cli resume {stopped} --json -q" in shown.stdout and "done: " in shown.stdout


@pytest.mark.slow  # one more process; `make test` checks the sweep plans this resume
def test_a_sweep_finishes_its_killed_member(tiny_recipe, tmp_path):
    args = ["sweep", tiny_recipe, "--runs-root", tmp_path, "--set", "train.epochs=1", "--set",
            "train.steps_per_epoch=3", "--json"]
    (member,) = json.loads(run(*args).stdout)["runs"]
    stopped = Path(member["run_dir"])
    killed_after_its_last_checkpoint(stopped)
    (again,) = json.loads(run(*args).stdout)["runs"]
    assert again["action"] == "resume" and again["run_dir"] == str(stopped) and again["status"] == "completed"
    assert (stopped / "model.keras").is_file() and len(list((tmp_path / "tiny").iterdir())) == 1


def test_a_sweep_averages_measures_not_counts():
    from dlkit.sweep import measures

    test = {"examples": 88, "targets": ["y"], "mae": 45.1, "r2": 0.47, "per_target": {"y": {"mae": 45.1}}, "ok": True}
    assert measures(test) == {"mae": 45.1, "r2": 0.47}


def test_a_bad_grid_value_runs_nothing(tiny_recipe, tmp_path):
    out = run("sweep", tiny_recipe, "--grid", "train.optimizer.learning_rate=0.1,-1", "--runs-root", tmp_path)
    assert out.exit_code == 2 and "learning_rate" in out.stderr
    assert not (tmp_path / "tiny").exists()
