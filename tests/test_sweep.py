"""`dlkit sweep`: the grid's product times the seeds, each a normal run; mean and standard deviation over
seeds; a second call skips finished members and resumes an interrupted one."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlkit import backend
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


def test_a_sweep_of_more_than_ten_thousand_runs_is_refused_before_its_members_are_listed(write_recipe, tmp_path):
    # --seeds 100000000 (a typo for 10) listed its members for minutes, until the machine ran out of memory
    recipe = write_recipe("model: {arch: mlp}\n")
    out = run("sweep", recipe, "--seeds", "100000000", "--dry-run", "--json", "--runs-root", tmp_path)
    assert out.exit_code == 2 and json.loads(out.stdout)["error"] == (
        "this sweep is 100,000,000 runs (1 grid points x 100,000,000 seeds); a sweep runs at most 10,000: give "
        "fewer values or seeds")
    grid = ["-g", "data.batch_size=8,16,32", "-g", "train.epochs=1,2"]
    assert "is 12,000 runs (6 grid points x 2,000 seeds)" in run("sweep", recipe, *grid, "--seeds", "2000",
                                                                 "--dry-run", "--runs-root", tmp_path).stderr
    assert run("sweep", recipe, *grid, "--seeds", "2", "--dry-run", "--runs-root", tmp_path).exit_code == 0


def test_a_runs_root_no_run_could_be_made_under_is_said_by_the_plan(write_recipe, tmp_path, monkeypatch):
    """A sweep's and a tune's plan (--dry-run) said every member would train under a file given as
    --runs-root, where each member is refused; the plan says so now, as `dlkit train` does."""
    recipe = write_recipe("model: {arch: mlp}\ntune: {space: {model.dropout: {low: 0.0, high: 0.5}}}\n")
    (tmp_path / "notes.txt").write_text("mine")
    for command in ("sweep", "tune"):
        out = run(command, recipe, "--dry-run", "--json", "--runs-root", tmp_path / "notes.txt")
        assert out.exit_code == 2 and json.loads(out.stdout)["error"] == (
            f"{tmp_path / 'notes.txt'} is a file, and the runs root holds a folder of run directories per recipe: "
            "choose another --runs-root"), (command, out.stdout)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    name = Path(recipe).stem
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / name).write_text("")  # the recipe's own folder a file
    assert "is a file" in run("sweep", recipe, "--dry-run", "--runs-root", tmp_path / "runs").stderr
    # a folder this process may not write in (os.access: root may write anywhere, so it is made to say no)
    monkeypatch.setattr("dlkit.rundir.os.access", lambda path, mode: Path(path) != tmp_path / "locked")
    (tmp_path / "locked").mkdir()
    for command in ("sweep", "tune"):
        out = run(command, recipe, "--dry-run", "--runs-root", tmp_path / "locked" / "runs")
        assert out.exit_code == 5 and (f"cannot create a run directory under {tmp_path / 'locked' / 'runs' / name}: "
                                       f"{tmp_path / 'locked'} is not a folder you can write to") in out.stderr
    assert run("sweep", recipe, "--dry-run", "--runs-root", tmp_path / "new" / "runs").exit_code == 0
    assert not (tmp_path / "new").exists()  # a plan makes nothing


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


def test_sweep_runs_seeds_summarizes_and_picks_up_where_it_stopped(tiny_recipe, tmp_path, monkeypatch):
    args = ["sweep", tiny_recipe, "--grid", "model.dense=[16]", "--seeds", "2", "--parallel", "2",
            "--runs-root", tmp_path, "--set", "train.epochs=1", "--set", "train.steps_per_epoch=3", "--json"]
    for name in backend.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own count is kept; the others are the members' share
    share = max(1, backend.cpu_cores() // 2)
    planned = json.loads(run(*args, "--dry-run").stdout)  # nothing there yet: two trainings, nothing run
    assert planned["status"] == "planned" and [r["action"] for r in planned["runs"]] == ["train", "train"]
    assert planned["threads_per_member"] == share
    assert planned["runs"][1]["command"][-2:] == ["--set", "seed=8"] and not (tmp_path / "tiny").exists()
    first = run(*args)
    assert first.exit_code == 0, first.stdout
    result = json.loads(first.stdout)
    runs = result["runs"]
    assert [r["seed"] for r in runs] == [7, 8] and all(r["action"] == "train" for r in runs)
    for r in runs:  # each member ran with its share of the cores, as its manifest records
        threads = json.loads((Path(r["run_dir"]) / "manifest.json").read_text())["cpu_threads"]
        assert threads == {**{k: str(share) for k in backend.THREAD_VARIABLES}, "OMP_NUM_THREADS": "1"}
    accuracies = [json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["test"]["accuracy"] for r in runs]
    row = result["summary"][0]
    assert row["point"] == {"model.dense": [16]} and row["completed"] == 2
    assert row["accuracy"]["mean"] == pytest.approx(statistics.mean(accuracies))
    assert row["accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
    assert row["headline"]["label"] == "test accuracy"

    quiet = run(*args, "-q")  # nothing new: both finished, and with --quiet not a line said of them
    again = json.loads(quiet.stdout)
    assert [r["action"] for r in again["runs"]] == ["done", "done"] and quiet.stderr == ""
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
    assert f"-m dlkit resume {stopped} --json -q" in shown.stdout and "done: " in shown.stdout


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


MEMBER = """
import json, signal, sys, time
from pathlib import Path
where, name = Path(sys.argv[1]), sys.argv[2].replace("=", "_")
def stop(*_):
    (where / f"{name}.stopped").write_text("")
    print(json.dumps({"status": "interrupted"}))
    sys.exit(130)
if not name.endswith("2"):  # the second member is stopped as it starts, before it would set a handler
    signal.signal(signal.SIGTERM, stop)
(where / f"{name}.started").write_text("")
time.sleep(60)
"""


def interrupted_once_two_started(folder: Path, call, settle: float = 0.0) -> float:
    """Run `call()`, which must end in KeyboardInterrupt, with a SIGINT sent to this process once two stand-in
    members have marked `folder` (`*.started`) and `settle` seconds more have passed; its seconds."""
    import os
    import signal
    import threading
    import time

    def interrupt_once_two_run():
        deadline = time.monotonic() + 60
        while len(list(folder.glob("*.started"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_two_run, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
    finally:
        signal.signal(signal.SIGINT, previous)
    return time.monotonic() - start


def test_an_interrupted_sweep_stops_its_running_members_and_starts_no_other(tiny_recipe, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM to a sweep: each running member is sent SIGTERM (it closes its run as interrupted),
    no other member starts, and the sweep ends interrupted. Before, the running members trained on to their
    end, and one left behind by a kill went on alone. (Members here: a stand-in that waits to be stopped.)"""
    import sys

    from dlkit import sweep

    monkeypatch.setattr(sweep, "member_command", lambda m, recipe, root: [sys.executable, "-c", MEMBER, str(tmp_path),
                                                                    *m["sets"]])
    said = []
    seconds = interrupted_once_two_started(tmp_path, lambda: sweep.sweep(
        tiny_recipe, ["train.epochs=1,2,3"], parallel=2, runs_root=tmp_path / "runs", say=said.append))
    assert seconds < 40  # not the members' 60 s
    assert len(list(tmp_path.glob("*.started"))) == 2 and len(list(tmp_path.glob("*.stopped"))) == 1
    assert said[0].startswith("2 members at a time on ")  # and each one's threads
    assert said[1] == "interrupted: 2 running member(s) asked to stop; run the sweep again to resume them"
    assert sum("interrupted (exit 130)" in line for line in said) == 1
    assert sum("error (stopped by SIGTERM as it started)" in line for line in said) == 1


def test_a_member_stopped_before_its_first_checkpoint_is_trained_anew(tiny_recipe, tmp_path):
    """`resume` refuses a run with no checkpoint (nothing to resume), so such a member was an error in every
    later sweep; it is trained anew, its stopped run left as it was."""
    from dlkit import sweep

    early = tmp_path / "tiny" / "20261201-000000"
    (early / "checkpoints").mkdir(parents=True)
    (early / "manifest.json").write_text(json.dumps({"status": "interrupted"}))
    assert sweep.run_state(early) == "train"
    (early / "checkpoints" / "last.keras").write_bytes(b"")
    assert sweep.run_state(early) == "resume"


def test_members_run_at_a_time_share_the_cores():
    """K members at a time get cores // K threads each (at least one) for every count the user left unset."""
    env, share = backend.share_of_cores(3, {"PATH": "/bin"}, cores=8)
    assert share == 2 and env["PATH"] == "/bin" and all(env[k] == "2" for k in backend.THREAD_VARIABLES)
    env, share = backend.share_of_cores(4, {"OPENBLAS_NUM_THREADS": "3"}, cores=2)
    assert share == 1 and env["OPENBLAS_NUM_THREADS"] == "3" and env["TF_NUM_INTRAOP_THREADS"] == "1"
