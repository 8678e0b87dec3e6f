"""`dlkit tune`: a recipe's tune section searched by Optuna, each trial a normal run judged by its
train.monitor at its best epoch; a failed trial is a failed trial and the search goes on; run again, the
runs are the search's memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlkit.cli import app
from tests.conftest import TINY_MNIST
from tests.test_sweep import interrupted_once_two_started, killed_after_its_last_checkpoint

runner = CliRunner()

# an optimizer that trains and one that diverges (exit 4), and two widths
ADAM, SGD = {"name": "adam", "learning_rate": 0.005}, {"name": "sgd", "learning_rate": 1.0e+30}
TUNED = TINY_MNIST + f"""\
tune:
  trials: 2
  space:
    train.optimizer: {{choices: [{json.dumps(ADAM)}, {json.dumps(SGD)}]}}
    model.dense: {{choices: [[16], [8]]}}
"""


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "200"}, **kw)


def test_tune_judges_each_trial_goes_on_past_a_failed_one_and_resumes_from_the_runs(write_recipe, tmp_path,
                                                                                   monkeypatch):
    recipe = write_recipe(TUNED)
    args = ["tune", recipe, "--runs-root", tmp_path, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=3",
            "--json"]
    first = run(*args, "--parallel", "2")
    assert first.exit_code == 0, first.stdout
    result = json.loads(first.stdout)
    assert result["status"] == "completed" and result["monitor"] == "val_loss" and result["direction"] == "min"
    trials = result["trials"]
    assert [t["number"] for t in trials] == [0, 1] and all(t["action"] == "train" for t in trials)
    chosen = [t["params"]["train.optimizer"] for t in trials]
    assert sorted(chosen, key=json.dumps) == [ADAM, SGD]  # the seed's two draws differ: one trains, one diverges
    good = next(t for t in trials if t["params"]["train.optimizer"] == ADAM)
    bad = next(t for t in trials if t is not good)
    metrics = json.loads((Path(good["run_dir"]) / "metrics.json").read_text())
    assert good["status"] == "completed" and good["value"] == metrics["best"]["val_loss"]
    assert bad["status"] == "diverged" and bad["value"] is None and bad["run_dir"]
    assert result["best"] == good
    for t in trials:  # each trial is a run of the recipe at its point, tune section and all
        kept = yaml.safe_load((Path(t["run_dir"]) / "recipe.yaml").read_text())
        assert {k: kept["train"]["optimizer"][k] for k in ADAM} == t["params"]["train.optimizer"]
        assert kept["model"]["dense"] == t["params"]["model.dense"]
        assert kept["tune"]["trials"] == 2

    # run again with more trials: the two runs are the two first trials, told to the sampler, not run again
    planned = json.loads(run(*args, "--trials", "3", "--dry-run").stdout)
    assert planned["status"] == "planned" and planned["new_trials"] == 1
    assert [(t["action"], t["run_dir"], t.get("value")) for t in planned["trials"]] == [
        ("done" if t is good else "failed", t["run_dir"], t["value"]) for t in trials]

    # the trials drawn: the monitor by trial, and against each key's values; an existing picture is kept
    from PIL import Image

    picture = tmp_path / "search.png"
    drawn = json.loads(run(*args, "--dry-run", "--plot", picture).stdout)
    assert drawn["plot"] == str(picture) and Image.open(picture).size == (3 * 450, 340)  # three panels
    kept = picture.read_bytes()
    out = run(*args, "--plot", picture)
    assert out.exit_code == 2 and "search.png exists; choose another --plot or pass --force" in out.stdout
    assert picture.read_bytes() == kept

    # run again as it was: nothing to run, the table of the trials, the best first, and the best's run
    again = run(*args[:-1])
    assert again.exit_code == 0, again.stdout
    lines = again.stdout.splitlines()
    assert "tune of tiny: val_loss, lower is better" in again.stdout and "0 new" in again.stderr
    rows = [line for line in lines if "completed" in line or "diverged" in line]
    assert len(rows) == 2 and "completed" in rows[0] and Path(good["run_dir"]).name in rows[0]
    assert f"best: trial {good['number']}, val_loss " in again.stdout and good["run_dir"] in again.stdout
    dense = json.dumps(good["params"]["model.dense"])
    assert f"its values: --set 'train.optimizer={json.dumps(ADAM)}' --set 'model.dense={dense}'" in again.stdout

    # a trial Optuna puts at a point that has a run is that run, not trained again
    from dlkit import tasks, tune

    base = tasks.load_recipe(recipe, args[5:8:2])
    search = tune.Search(recipe, list(args[5:8:2]), base, {k: v.model_dump() for k, v in base.tune.space.items()})
    read, load = [], tasks.load_run_recipe
    monkeypatch.setattr(tasks, "load_run_recipe", lambda *a, **k: read.append(a) or load(*a, **k))
    again_at = search.member(good["params"], tmp_path)
    assert again_at["action"] == "done" and str(again_at["run"]) == good["run_dir"]
    search.member(bad["params"], tmp_path)
    assert len(read) == 2  # each run's recipe read once, not once a trial asked
    assert tune.summarize({"direction": "min"}, [{**good, "run": Path(good["run_dir"])}] * 2)["trials"] == [
        {**good, "number": 0}]

    # the good trial killed after its last checkpoint: the plan resumes that run, no new trial for it
    killed_after_its_last_checkpoint(Path(good["run_dir"]))
    plan = json.loads(run(*args, "--dry-run").stdout)
    assert plan["new_trials"] == 0
    resumed = next(t for t in plan["trials"] if t["run_dir"] == good["run_dir"])
    assert resumed["action"] == "resume" and resumed["command"][-4:] == ["resume", good["run_dir"], "--json", "-q"]
    shown = run(*args[:-1], "--dry-run")  # the table: the trials, what each would do
    assert shown.exit_code == 0 and "resume" in shown.stdout and "0 new trial(s)" in shown.stdout

    # a change to a key outside the space makes them another search's runs
    other = json.loads(run(*args, "--set", "data.batch_size=25", "--dry-run").stdout)
    assert other["trials"] == [] and other["new_trials"] == 2


def test_a_search_is_checked_whole_before_anything_runs(write_recipe, tmp_path):
    """The section's own mistakes and every end of every range the recipe would not take, all at once, each at
    its line; nothing runs and no run directory is made."""
    bad = write_recipe(TINY_MNIST + """\
tune:
  trials: 0
  space:
    train.optimizer.learning_rate: {low: 1.0e-2, high: 1.0e-4, log: true}
    model.dense: {choices: [[16]]}
    train.epochs: {low: 1, high: 3, step: 0.5}
  prune: {rule: halving, warmup_epochs: 2}
""")
    out = run("validate", bad)
    assert out.exit_code == 2
    said = out.stdout + out.stderr
    at = TINY_MNIST.count("\n")  # the line before `tune:`
    for line, text in ((at + 2, "tune.trials"),
                       (at + 4, "tune.space.train.optimizer.learning_rate: low must be below high"),
                       (at + 5, "tune.space.model.dense: choices: list at least two values"),
                       (at + 6, "tune.space.train.epochs: low and high are whole numbers, so step is one too"),
                       (at + 7, "tune.prune: warmup_epochs is read by rule median only, not by rule halving")):
        assert f"recipe.yaml:{line}: {text}" in said, said
    out = run("tune", bad, "--trials", "100000000", "--dry-run", "--runs-root", tmp_path / "runs")  # as tune.trials
    assert out.exit_code == 2 and "--trials 100,000,000 is more trials than a search runs: at most 10,000" in out.stderr

    keys = write_recipe(TINY_MNIST + """\
tune:
  space:
    model.dropuot: {low: 0.0, high: 0.5}
    train.optimizer.learning_rate: {low: -1.0, high: 0.1}
    seed: {low: 1, high: 3}
""", name="keys.yaml")
    out = run("tune", keys, "--runs-root", tmp_path / "runs")
    said = out.stdout + out.stderr
    assert out.exit_code == 2 and f"keys.yaml:{at + 5}: tune.space.seed: 'seed' is not a key a search varies" in said, said
    keys.write_text(keys.read_text().replace("    seed: {low: 1, high: 3}\n", ""))
    out = run("tune", keys, "--runs-root", tmp_path / "runs")
    said = out.stdout + out.stderr
    assert out.exit_code == 2 and said.count("model.dropuot") == 1, said  # a misspelt key: once, not per value
    assert f"keys.yaml:{at + 3}: tune.space.model.dropuot: unknown key (did you mean 'dropout'?" in said
    assert f"keys.yaml:{at + 4}: tune.space.train.optimizer.learning_rate: -1.0: " in said
    assert not (tmp_path / "runs").exists()
    validated = run("validate", keys)  # `dlkit validate` checks the space as `dlkit tune` does
    assert validated.exit_code == 2 and f"keys.yaml:{at + 3}: tune.space.model.dropuot: unknown key" in validated.stderr
    assert f"keys.yaml:{at + 4}: tune.space.train.optimizer.learning_rate: -1.0: " in validated.stderr


def test_a_recipe_without_a_search_or_a_measure_to_judge_by_is_refused(tiny_recipe, write_recipe, tmp_path):
    out = run("tune", tiny_recipe, "--runs-root", tmp_path / "runs")
    assert out.exit_code == 2 and "has no tune section" in out.stdout + out.stderr
    gan = write_recipe("""\
model: {arch: dcgan}
tune: {space: {train.generator_optimizer.learning_rate: {low: 1.0e-4, high: 1.0e-3}}}
""", name="gan.yaml")
    out = run("tune", gan, "--runs-root", tmp_path / "runs", "--json")
    error = json.loads(out.stdout)["error"]
    assert out.exit_code == 2 and "gan.yaml:2: tune: a dcgan run has no train.monitor to judge a trial by" in error
    assert not (tmp_path / "runs").exists()
    out = run("validate", gan)  # said by every command that reads the recipe
    assert out.exit_code == 2 and "gan.yaml:2: tune: a dcgan run has no train.monitor" in out.stderr


def test_the_best_is_the_highest_where_the_monitor_gets_better_up(write_recipe):
    from dlkit import tasks, tune

    recipe = write_recipe(TUNED.replace("train:\n", "train:\n  monitor: val_accuracy\n"))
    assert tune.objective(tasks.load_recipe(recipe)) == ("val_accuracy", "max")
    trials = [{"params": {}, "action": "done", "run": Path(f"/r/2026120{i}"), "status": "completed", "value": v}
              for i, v in enumerate([0.7, 0.9, 0.8])]
    result = tune.summarize({"direction": "max"}, trials + [{"params": {}, "action": "train", "run": None,
                                                             "status": "error", "value": None}])
    assert result["best"]["value"] == 0.9 and result["best"]["number"] == 1 and result["trials"][-1]["number"] == 3
    assert tune.summarize({"direction": "min"}, trials)["best"]["value"] == 0.7


def test_a_key_searched_and_set_is_refused_and_a_training_value_judging_is_warned_of(write_recipe, tmp_path):
    recipe = write_recipe(TUNED)
    out = run("tune", recipe, "--runs-root", tmp_path / "runs", "--dry-run", "--set", "model.dense=[4]")
    assert out.exit_code == 2 and "model.dense is both --set and a key of tune.space" in out.stderr
    plan = json.loads(run("tune", recipe, "--runs-root", tmp_path / "runs", "--dry-run", "--json").stdout)
    assert plan["warnings"] == []
    plan = json.loads(run("tune", recipe, "--runs-root", tmp_path / "runs", "--dry-run", "--json",
                          "--set", "train.monitor=loss").stdout)
    assert plan["monitor"] == "loss" and "judged by loss, a value of the training data" in plan["warnings"][0]


def test_a_run_is_a_trial_of_the_search_at_a_point_of_its_space(write_recipe):
    """A run's point: its value at each key of the space (a choice known by its resolved form), its other keys
    as the recipe's are now; outside the space, or another recipe, none."""
    from dlkit import tasks, tune

    recipe = write_recipe(TUNED + "    train.epochs: {low: 1, high: 4}\n")
    base = tasks.load_recipe(recipe)
    search = tune.Search(recipe, [], base, {k: v.model_dump() for k, v in base.tune.space.items()})

    def run_at(*sets):
        return tasks.load_recipe(recipe, list(sets)).to_dict()

    at = run_at(f"train.optimizer={json.dumps(SGD)}", "model.dense=[8]", "train.epochs=3")
    assert search.point(at) == {"train.optimizer": SGD, "model.dense": [8], "train.epochs": 3}
    assert search.point(run_at("train.epochs=5")) is None  # outside the range
    assert search.point(run_at("model.dense=[32]")) is None  # not a choice
    assert search.point(run_at("data.batch_size=25")) is None  # another recipe
    assert search.point(run_at("tune.trials=7")) is not None  # the search's own section is not the recipe's

    # a key inside a list's entry (the first conv block's filters): a run's value read there
    blocks = write_recipe(TINY_MNIST + "tune:\n  space:\n    model.blocks.0.filters: {low: 2, high: 8}\n",
                          name="blocks.yaml")
    base = tasks.load_recipe(blocks)
    search = tune.Search(blocks, [], base, {k: v.model_dump() for k, v in base.tune.space.items()})
    assert search.point(tasks.load_recipe(blocks, ["model.blocks.0.filters=6"]).to_dict()) == \
        {"model.blocks.0.filters": 6}
    assert search.point(tasks.load_recipe(blocks, ["model.blocks.0.filters=9"]).to_dict()) is None  # outside
    assert search.point(tasks.load_recipe(blocks, ["model.blocks.0.filters=6", "model.blocks.0.kernel_size=5"])
                        .to_dict()) is None  # the block's other keys are the recipe's

    # an MLP's `hidden: [64, 32]` is resolved as [{units: 64}, {units: 32}]: the run is still at that choice
    mlp = write_recipe(TINY_MNIST.replace("  arch: cnn\n  blocks: [{filters: 4}]\n  dense: [16]\n", "  arch: mlp\n")
                       + "tune:\n  space:\n    model.hidden: {choices: [[32], [64, 32]]}\n", name="mlp.yaml")
    base = tasks.load_recipe(mlp)
    search = tune.Search(mlp, [], base, {k: v.model_dump() for k, v in base.tune.space.items()})
    resolved = tasks.load_recipe(mlp, ["model.hidden=[64, 32]"]).to_dict()
    assert resolved["model"]["hidden"] != [64, 32] and search.point(resolved) == {"model.hidden": [64, 32]}


STAND_IN = """
import json, os, signal, sys, time
from pathlib import Path
where, mark = Path(sys.argv[1]), os.getpid()
def stop(*_):
    (where / f"{mark}.stopped").write_text("")
    print(json.dumps({"status": "interrupted"}))
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
(where / f"{mark}.started").write_text("")
time.sleep(60)
"""


def test_an_interrupted_tune_stops_its_running_trials_and_asks_no_other(write_recipe, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM to a tune: each running trial is sent SIGTERM (it closes its run as interrupted, which
    the next tune resumes), no other trial starts, and the tune ends interrupted. (Trials here: a stand-in
    that waits to be stopped.)"""
    import sys

    from dlkit import sweep, tune

    monkeypatch.setattr(sweep, "member_command", lambda m, recipe, root: [sys.executable, "-c", STAND_IN, str(tmp_path)])
    said = []
    seconds = interrupted_once_two_started(tmp_path, lambda: tune.tune(
        write_recipe(TUNED), trials=4, parallel=2, runs_root=tmp_path / "runs", say=said.append), settle=0.5)
    assert seconds < 40  # not the trials' 60 s
    assert len(list(tmp_path.glob("*.started"))) == 2 and len(list(tmp_path.glob("*.stopped"))) == 2
    assert "interrupted: 2 running member(s) asked to stop; run the tune again to resume them" in said


def test_trials_refused_alike_stop_the_search_as_the_recipes_error(write_recipe, tmp_path, monkeypatch):
    """A mistake only the built model shows (a monitor the epochs do not log) refuses every trial alike: after
    two such trials at two points the search stops with that error (exit 2), rather than run them all. One
    refused at its own values (a choice the model cannot be built with) is a failed trial, and it goes on."""
    import sys

    from dlkit import sweep

    said = ("1 problem(s) in recipe r.yaml:\\n  - r.yaml:3: train.monitor: 'val_acc' is not a value the epochs will "
            "log (loss, accuracy, val_loss, val_accuracy)")
    refuse = f"import json, sys; print(json.dumps({{'status': 'error', 'error': {said!r}}})); sys.exit(2)"
    started = []

    def command(m, recipe, root):
        started.append(m["params"])
        return [sys.executable, "-c", refuse]

    monkeypatch.setattr(sweep, "member_command", command)
    out = run("tune", write_recipe(TUNED), "--trials", "4", "--runs-root", tmp_path / "runs", "--json")
    assert out.exit_code == 2 and len(started) == 2 and started[0] != started[1]
    error = json.loads(out.stdout)["error"]
    assert error.startswith("the search stopped: its first trials, at different values, were refused alike")
    assert error.endswith(said)
    quiet = run("tune", write_recipe(TUNED), "--trials", "4", "--runs-root", tmp_path / "runs", "-q")
    assert quiet.exit_code == 2 and quiet.stdout == "" and "trained:" not in quiet.stderr  # errors only
    assert quiet.stderr.startswith("error: the search stopped")

    refuse_one = refuse.replace(repr(said), "sys.argv[1]")  # each trial refused with its own values
    monkeypatch.setattr(sweep, "member_command",
                        lambda m, recipe, root: started.append(m) or [sys.executable, "-c", refuse_one, json.dumps(m["params"])])
    started.clear()
    out = run("tune", write_recipe(TUNED), "--trials", "3", "--runs-root", tmp_path / "runs", "--json")
    result = json.loads(out.stdout)
    assert out.exit_code == 1 and len(started) == 3 and result["status"] == "failed" and result["best"] is None
    assert all(t["status"] == "error" and t["error"] == json.dumps(t["params"]) for t in result["trials"])


def test_a_trial_is_pruned_by_the_rule_it_is_handed(tiny_recipe, tmp_path, monkeypatch):
    """A trial handed the median rule (as `dlkit tune` hands it, in the environment) stops after the first
    epoch past the warm-up whose best monitored value so far is worse than the median there, and ends as a
    finished run that says so; without the variable nothing changes."""
    from dlkit import backend
    from dlkit.training.train import train

    rule = {"monitor": "val_loss", "warmup_epochs": 1, "medians": {"1": 0.0, "2": 0.0}}  # no loss is below 0
    monkeypatch.setenv(backend.TUNE_PRUNE_VARIABLE, json.dumps(rule))
    result = train(tiny_recipe, ["train.epochs=3", "train.steps_per_epoch=2"], runs_root=tmp_path)
    assert result["status"] == "completed" and result["epochs_completed"] == 2  # epoch 1 was the warm-up
    assert result["pruned"] == {"epoch": 2, "val_loss": result["best"]["val_loss"], "median": 0.0}
    assert json.loads((Path(result["run_dir"]) / "metrics.json").read_text())["pruned"]["epoch"] == 2

    monkeypatch.setenv(backend.TUNE_PRUNE_VARIABLE, json.dumps({**rule, "medians": {"1": 99.0, "2": 99.0}}))
    kept_on = train(tiny_recipe, ["train.epochs=3", "train.steps_per_epoch=2"], runs_root=tmp_path)
    assert kept_on["epochs_completed"] == 3 and "pruned" not in kept_on

    # successive halving: at its rung, the best half of four (three before it, none worse than 0) go on
    halving = {"monitor": "val_loss", "rule": "halving", "reduction_factor": 2, "rungs": {"1": [0.0, 0.0, 0.0]}}
    monkeypatch.setenv(backend.TUNE_PRUNE_VARIABLE, json.dumps(halving))
    cut = train(tiny_recipe, ["train.epochs=3", "train.steps_per_epoch=2"], runs_root=tmp_path)
    assert cut["epochs_completed"] == 1 and cut["pruned"] == {
        "epoch": 1, "val_loss": cut["best"]["val_loss"], "rule": "halving", "cutoff": 0.0, "of": 4}


def test_successive_halving_keeps_the_best_share_at_each_rung():
    from types import SimpleNamespace

    from dlkit.training.callbacks import Pruning

    def after(value, rungs, mode="min", epoch=1, factor=2):
        rule = {"monitor": "val_loss", "rule": "halving", "reduction_factor": factor, "rungs": rungs}
        pruning = Pruning("val_loss", mode, rule, [])
        pruning.set_model(SimpleNamespace(stop_training=False))
        pruning.on_epoch_end(epoch - 1, {"val_loss": value})
        return pruning.pruned, pruning.model.stop_training

    assert after(0.5, {"1": [0.1, 0.9, 0.8]}) == (None, False)  # 2nd of 4: the best half goes on
    assert after(0.85, {"1": [0.1, 0.9, 0.8]}) == ({"epoch": 1, "val_loss": 0.85, "rule": "halving", "cutoff": 0.8,
                                                    "of": 4}, True)
    assert after(0.5, {"1": [0.9, 0.1]}, mode="max")[0]["cutoff"] == 0.9  # higher is better: one of three goes on
    assert after(0.2, {"1": [0.1, 0.3]}, factor=3)[1] is True  # the best third of three is one: 0.1
    assert after(0.99, {"1": [0.1]}, epoch=2) == (None, False)  # not a rung
    assert after(0.99, {}) == (None, False)  # the first to reach the rung
    hyperband = Pruning("val_loss", "min", {"rule": "halving", "reduction_factor": 2, "rungs": {"3": [0.1]},
                                            "bracket": 1, "brackets": 3}, [])
    hyperband.set_model(SimpleNamespace(stop_training=False))
    hyperband.on_epoch_end(2, {"val_loss": 0.5})
    assert hyperband.pruned == {"epoch": 3, "val_loss": 0.5, "rule": "hyperband", "cutoff": 0.1, "of": 2,
                                "bracket": 1, "brackets": 3}
    assert "Hyperband (successive halving in bracket 1 of 0 to 2)" in hyperband.said()


def test_the_rules_are_of_the_earlier_trials_best_so_far(tmp_path):
    from types import SimpleNamespace

    from dlkit import tune

    def trial(name, status, losses):
        run = tmp_path / name
        run.mkdir()
        (run / "history.csv").write_text("epoch,loss,val_loss\n" + "".join(
            f"{i + 1},0.5,{v}\n" for i, v in enumerate(losses)))
        return {"run": run, "status": status}

    done = [trial("a", "completed", [3.0, 1.0, 2.0]), trial("b", "completed", [2.0, 2.5]),
            trial("c", "completed", [1.0, 0.5, 0.4]), trial("d", "pruned", [0.1]), trial("e", "diverged", [0.1])]
    median = SimpleNamespace(rule="median", startup_trials=2, warmup_epochs=1)
    rule = tune.prune_rule(done, "val_loss", "min", median)
    # epoch 1: 3, 2, 1; epoch 2 (best so far): 1, 2, 0.5; epoch 3: 1 and 0.4 (two trials reached it)
    assert rule == {"monitor": "val_loss", "rule": "median", "warmup_epochs": 1, "medians": {1: 2.0, 2: 1.0, 3: 0.7}}
    assert tune.prune_rule(done, "val_loss", "min", SimpleNamespace(rule="median", startup_trials=3,
                                                                     warmup_epochs=0))["medians"] == {1: 2.0, 2: 1.0}
    # halving ranks a trial among every one that reached the rung, the pruned one too, not the diverged one;
    # rungs 1, 2, 4: none reached 4
    halving = SimpleNamespace(rule="halving", startup_trials=2, min_epochs=1, reduction_factor=2)
    assert tune.prune_rule(done, "val_loss", "min", halving) == {
        "monitor": "val_loss", "rule": "halving", "reduction_factor": 2, "min_epochs": 1,
        "rungs": {1: [3.0, 2.0, 1.0, 0.1], 2: [1.0, 2.0, 0.5]}}
    halving.startup_trials = 5  # four have finished (completed or pruned)
    assert tune.prune_rule(done, "val_loss", "min", halving)["rungs"] == {}

    # a trial is not pruned at its last epoch: it trained them all (here of 2 epochs, and of 3)
    assert tune.prune_rule(done, "val_loss", "min", median, epochs=2)["medians"] == {1: 2.0}
    halving.startup_trials = 2
    assert list(tune.prune_rule(done, "val_loss", "min", halving, epochs=2)["rungs"]) == [1]
    assert list(tune.prune_rule(done, "val_loss", "min", halving, epochs=3)["rungs"]) == [1, 2]

    pruned = {"params": {}, "action": "done", "run": Path("/r/2"), "status": "pruned", "value": 0.05}
    fine = {"params": {}, "action": "done", "run": Path("/r/1"), "status": "completed", "value": 0.2}
    assert tune.summarize({"direction": "min"}, [fine, pruned])["best"]["value"] == 0.2  # stopped early: not best


def test_hyperband_is_halving_in_brackets_each_trial_in_one(tmp_path):
    """`rule: hyperband`: brackets whose first rungs are min_epochs times 1, factor, factor^2, ... up to the
    search's most epochs (as Optuna's HyperbandPruner counts them); a trial's bracket is drawn from its values
    (a later tune finds it in the same one), in Hyperband's shares, most to the earliest rung; its rule is
    halving among the trials of its bracket only, from the bracket's first rung."""
    from collections import Counter
    from types import SimpleNamespace

    from dlkit import tune

    assert [tune.brackets(1, 3, e) for e in (1, 2, 3, 8, 9, 27)] == [1, 1, 2, 2, 3, 4]
    assert tune.brackets(2, 2, 7) == 2  # first rungs 2 and 4
    drawn = Counter(tune.bracket({"lr": i / 1000}, 3, 3) for i in range(3000))
    assert drawn[0] > drawn[1] > drawn[2] > 0  # shares 9/3 : 3/2 : 1 (0.55, 0.27, 0.18)
    assert abs(drawn[0] / 3000 - 6 / 11) < 0.04 and abs(drawn[2] / 3000 - 2 / 11) < 0.04
    assert tune.bracket({"lr": 0.5, "units": [8]}, 3, 3) == tune.bracket({"units": [8], "lr": 0.5}, 3, 3)

    def trial(lr, losses):
        run = tmp_path / str(lr)
        run.mkdir()
        (run / "history.csv").write_text("epoch,val_loss\n" + "".join(f"{i + 1},{v}\n" for i, v in enumerate(losses)))
        return {"params": {"lr": lr}, "run": run, "status": "completed"}

    by_bracket = {}
    for i in range(40):
        by_bracket.setdefault(tune.bracket({"lr": i / 100}, 2, 3), []).append(i / 100)
    done = [trial(lr, [lr + 1, lr + 0.5, lr + 0.25, lr]) for lr in by_bracket[0][:2] + by_bracket[1][:3]]
    prune = SimpleNamespace(rule="hyperband", startup_trials=2, min_epochs=1, reduction_factor=2)
    one = tune.prune_rule(done, "val_loss", "min", prune, {"lr": by_bracket[1][5]}, 9, 4)
    assert one["bracket"] == 1 and one["brackets"] == 3 and one["min_epochs"] == 2  # rungs 2, 4 of its three
    assert one["rungs"] == {2: [lr + 0.5 for lr in by_bracket[1][:3]], 4: list(by_bracket[1][:3])}
    zero = tune.prune_rule(done, "val_loss", "min", prune, {"lr": by_bracket[0][5]}, 9, 4)
    assert zero["min_epochs"] == 1 and zero["rungs"][1] == [lr + 1 for lr in by_bracket[0][:2]]
    two = tune.prune_rule(done, "val_loss", "min", prune, {"lr": by_bracket[2][0]}, 9, 4)
    assert two["min_epochs"] == 4 and two["rungs"] == {}  # none of its bracket has finished
    # the search's most epochs: the recipe's, or the most the space gives train.epochs
    recipe = SimpleNamespace(train=SimpleNamespace(epochs=5))
    assert tune.horizon(recipe, {}) == 5 and tune.horizon(recipe, {"train.epochs": {"low": 2, "high": 8}}) == 8
    assert tune.horizon(recipe, {"train.epochs": {"choices": [3, 12, 6]}}) == 12


def test_a_rules_keys_are_its_own(write_recipe):
    from dlkit.errors import RecipeError
    from dlkit.tasks import load_recipe

    rule = load_recipe(write_recipe(TUNED + "  prune: {rule: hyperband, min_epochs: 2, reduction_factor: 2}\n"))
    assert rule.tune.prune.rule == "hyperband" and rule.tune.prune.min_epochs == 2
    for text, said in (("{rule: hyperband, warmup_epochs: 2}", "warmup_epochs is read by rule median only, not by "
                                                                "rule hyperband"),
                       ("{min_epochs: 2}",
                        "min_epochs is read by rule halving and hyperband only, not by rule median")):
        with pytest.raises(RecipeError, match=said):
            load_recipe(write_recipe(TUNED + f"  prune: {text}\n"))


def test_tune_hands_each_trial_the_rule_of_the_trials_before(write_recipe, tmp_path, monkeypatch):
    import sys

    from dlkit import backend, sweep

    seen = tmp_path / "seen"
    seen.mkdir()
    stand_in = (f"import json, os, sys; from pathlib import Path; Path({str(seen)!r}, str(os.getpid())).write_text("
                f"os.environ.get({backend.TUNE_PRUNE_VARIABLE!r}, 'none')); print(json.dumps({{'status': 'error'}}))")
    monkeypatch.setattr(sweep, "member_command", lambda m, recipe, root: [sys.executable, "-c", stand_in])
    recipe = write_recipe(TUNED.replace("  trials: 2\n", "  trials: 2\n  prune: {startup_trials: 3}\n"))
    run("tune", recipe, "--runs-root", tmp_path / "runs", "--json")
    handed = [json.loads(p.read_text()) for p in seen.iterdir()]
    assert handed == [{"monitor": "val_loss", "rule": "median", "warmup_epochs": 1, "medians": {}}] * 2  # none done
    for p in seen.iterdir():
        p.unlink()
    run("tune", write_recipe(TUNED), "--runs-root", tmp_path / "runs", "--json")
    assert [p.read_text() for p in seen.iterdir()] == ["none", "none"]  # no prune section: no rule
    for p in seen.iterdir():
        p.unlink()
    hyperband = "  prune: {rule: hyperband, min_epochs: 1, reduction_factor: 2}\n"
    run("tune", write_recipe(TUNED.replace("  trials: 2\n", "  trials: 2\n" + hyperband)), "--runs-root",
        tmp_path / "runs", "--set", "train.epochs=4", "--json")
    handed = [json.loads(p.read_text()) for p in seen.iterdir()]  # brackets of first rungs 1, 2 and 4
    assert len(handed) == 2 and all(h["rule"] == "halving" and h["brackets"] == 3 and h["rungs"] == {}
                                    and h["min_epochs"] == 2 ** h["bracket"] for h in handed)
