"""`dlkit runs` and `dlkit runs compare`: the runs side by side, a dead run told from a live one, each
task's headline figure, exit codes, --json and plain output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlkit.cli import app
from dlkit.rundir import RunDir

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _fake(root: Path, name: str, stamp: str, task: str, status: str, recipe: str, metrics: dict | None = None,
          evals: dict | None = None) -> Path:
    d = root / name / stamp
    (d / "checkpoints").mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"format": 2, "task": task, "status": status,
                                                 "started": f"2026-11-30T{stamp[-6:-4]}:00:00+0000"}))
    (d / "recipe.yaml").write_text(recipe)
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps({"status": status, **metrics}))
    if evals is not None:
        (d / "eval.json").write_text(json.dumps(evals))
    return d


def test_runs_table_reads_status_epochs_and_each_tasks_headline(tmp_path):
    a = _fake(tmp_path, "cnn", "20261130-100000", "classification", "completed",
              "name: cnn\nseed: 1\nmodel: {arch: cnn}\n",
              {"epochs_completed": 3, "wall_time_s": 60.0, "test": {"accuracy": 0.91, "loss": 0.3}})
    # a GAN's evaluation as `evaluate --reference` writes it; one written before it named its split has none
    _fake(tmp_path, "gan", "20261130-110000", "adversarial", "completed", "name: gan\n",
          {"epochs_completed": 2, "wall_time_s": 30.0},
          {"reference": {"classifier_score": 7.5}, "data:/mine": {"data": "/mine", "classifier_score": 2.0}})
    _fake(tmp_path, "cyc", "20261130-150000", "translation", "completed", "name: cyc\n",  # no test split
          {"epochs_completed": 1}, {"reference": {"split": "train", "translated_accuracy": 0.8}})
    _fake(tmp_path, "lm", "20261130-120000", "language_model", "completed", "name: lm\n",
          {"epochs_completed": 1, "val": {"nats_per_char": 1.6, "perplexity": 5.0}})
    pruned = _fake(tmp_path, "tuned", "20261130-160000", "classification", "completed", "name: tuned\n",
                   {"epochs_completed": 2, "pruned": {"epoch": 2, "val_loss": 0.9, "median": 0.5}})
    dead = _fake(tmp_path, "cnn", "20261130-130000", "classification", "running", "name: cnn\nseed: 2\n")
    (dead / "history.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n")
    live = _fake(tmp_path, "cnn", "20261130-140000", "classification", "running", "name: cnn\n")
    holder = RunDir(live)
    holder.lock()
    try:
        out = run("runs", "--runs-root", tmp_path, "--json")
    finally:
        holder.unlock()
    assert out.exit_code == 0
    rows = {r["run_dir"]: r for r in json.loads(out.stdout)["runs"]}
    assert [Path(r).name for r in rows] == ["20261130-100000", "20261130-110000", "20261130-120000",
                                            "20261130-130000", "20261130-140000", "20261130-150000",
                                            "20261130-160000"]  # by start time
    first = rows[str(a)]
    assert first["status"] == "completed" and first["epochs"] == 3 and first["wall_time_s"] == 60.0
    assert first["headline"]["label"] == "test accuracy" and first["headline"]["value"] == 0.91
    assert rows[str(tmp_path / "gan" / "20261130-110000")]["headline"]["value"] == 7.5  # from eval.json
    assert rows[str(tmp_path / "cyc" / "20261130-150000")]["headline"] is None  # of training images: not a test figure
    lm = rows[str(tmp_path / "lm" / "20261130-120000")]["headline"]
    assert lm["label"] == "val nats/char" and lm["better"] == "min"
    assert rows[str(dead)]["status"] == "stopped" and rows[str(dead)]["epochs"] == 2  # nobody holds its lock
    assert rows[str(live)]["status"] == "running"
    assert rows[str(pruned)]["status"] == "completed" and rows[str(pruned)]["pruned"]["epoch"] == 2
    assert rows[str(a)]["pruned"] is None

    only = json.loads(run("runs", "cnn", "--runs-root", tmp_path, "--json").stdout)["runs"]
    assert {r["name"] for r in only} == {"cnn"} and len(only) == 3
    plain = run("runs", "--runs-root", tmp_path)
    assert plain.exit_code == 0 and "test accuracy" in plain.stdout and "stopped" in plain.stdout
    assert [line.split()[2:4] for line in plain.stdout.splitlines() if line.startswith("tuned")] == [
        ["completed", "(pruned)"]]  # a tune stopped it early, and says so


def test_runs_compare_shows_only_the_keys_that_differ(tmp_path):
    a = _fake(tmp_path, "cnn", "20261130-100000", "classification", "completed",
              "name: cnn\nseed: 1\ntrain: {epochs: 3, optimizer: {name: adam}}\n",
              {"final": {"loss": 0.2}, "test": {"accuracy": 0.9}})
    b = _fake(tmp_path, "cnn", "20261130-110000", "classification", "completed",
              "name: cnn\nseed: 2\ntrain: {epochs: 3, optimizer: {name: sgd}}\n",
              {"final": {"loss": 0.3}, "test": {"accuracy": 0.8}})
    for d, where in ((a, {"backend": "jax", "device": "jax:gpu:H200 x1", "keras": "3.15.1",
                          "resumed": [{"from_epoch": 2, "backend": "tensorflow", "device": "tensorflow:CPU"}]}),
                     (b, {"backend": "tensorflow", "device": "tensorflow:CPU", "keras": "3.15.1"})):
        manifest = json.loads((d / "manifest.json").read_text())
        (d / "manifest.json").write_text(json.dumps({**manifest, **where}))
    out = run("runs", "compare", a, b, "--json")
    assert out.exit_code == 0
    result = json.loads(out.stdout)
    assert result["recipe_differences"] == {"seed": [1, 2], "train.optimizer.name": ["adam", "sgd"]}
    assert result["measures"]["test.accuracy"] == [0.9, 0.8] and result["measures"]["final.loss"] == [0.2, 0.3]
    assert result["machine_differences"] == {  # the same Keras is not a difference
        "backend": ["jax", "tensorflow"], "device": ["jax:gpu:H200 x1", "tensorflow:CPU"],
        "resumed": ["from epoch 2 on tensorflow (tensorflow:CPU)", None]}
    plain = run("runs", "compare", a, b)
    assert "train.optimizer.name" in plain.stdout and "train.epochs" not in plain.stdout
    assert "jax:gpu:H200 x1" in plain.stdout and "keras" not in plain.stdout


def test_runs_errors_are_exit_2(tmp_path):
    assert run("runs", "--runs-root", tmp_path / "none").exit_code == 2
    tmp_path.joinpath("x").mkdir()
    bad = run("runs", "nothing", "--runs-root", tmp_path, "--json")
    assert bad.exit_code == 2 and json.loads(bad.stdout)["status"] == "error"
    assert run("runs", "compare", tmp_path).exit_code == 2  # one run is no comparison
    assert run("runs", "compare", tmp_path, tmp_path).exit_code == 2  # not run directories
    assert run("runs", "a", "b").exit_code == 2
    assert "no runs under" in run("runs", "--runs-root", tmp_path).stdout


def test_a_run_file_changed_outside_dlkit_is_a_data_error_naming_it(tmp_path):
    """A run file that does not parse (cut by a copy, edited by hand) is exit 3 naming the file and what to
    do, from every command that reads it; `dlkit runs` lists the run as unreadable, not skipped or guessed at."""
    cut = _fake(tmp_path, "cnn", "20261130-100000", "classification", "completed", "name: cnn\n",
                {"test": {"accuracy": 0.9}})
    (cut / "manifest.json").write_text('{"format": 2, "status": "comp')
    edited = _fake(tmp_path, "cnn", "20261130-110000", "classification", "completed", "name: cnn\n",
                   {"test": {"accuracy": 0.8}}, evals=None)
    (edited / "model.keras").write_bytes(b"not read: eval.json is read first")
    (edited / "eval.json").write_text("[1, 2]\n")
    (edited / "exports.json").write_bytes(b"\xff\xfe")

    listed = json.loads(run("runs", "--runs-root", tmp_path, "--json").stdout)["runs"]
    rows = {Path(r["run_dir"]).name: r for r in listed}
    assert rows["20261130-100000"]["status"] == "unreadable manifest.json"
    assert rows["20261130-110000"]["status"] == "completed"  # an evaluation's record lost, not the run
    for args, file, advice in ((["runs", "compare", cut, edited], cut / "manifest.json", "restore it from a copy"),
                               (["report", cut], cut / "manifest.json", "restore it from a copy"),
                               (["resume", cut, "--epochs", "2"], cut / "manifest.json", "restore it from a copy"),
                               (["evaluate", edited], edited / "eval.json", "delete it"),
                               (["export", edited, "--format", "saved_model"], edited / "exports.json", "delete it")):
        out = runner.invoke(app, [str(a) for a in args] + ["--json"])
        assert out.exit_code == 3, (args, out.output)
        error = json.loads(out.stdout)["error"]
        assert error.startswith(str(file)) and advice in error, error


def test_the_other_run_files_damaged_are_errors_naming_them(one_epoch_run, tmp_path):
    """Each was a traceback: an artifact and checksums.json that do not read are exit 3 naming the file (a
    checkpoint's random-stream sidecar and history.csv: test_a_damaged_sidecar_or_history_is_a_data_error); a
    folder where a command writes a file (a picture, run.lock) is exit 5 naming it."""
    import numpy as np

    images = tmp_path / "digits.npy"
    np.save(images, np.zeros((2, 28, 28), np.uint8))
    cases = [("artifacts/scale.json", lambda p: p.write_text("{cut"), ["predict", images], 3, "is not valid JSON"),
             ("checkpoints/checksums.json", lambda p: p.write_text("[1]"), ["resume", "--epochs", "2"], 3,
              "holds a JSON list"),
             ("confusion_matrix.png", lambda p: (p.unlink(), p.mkdir()), ["evaluate"], 5, "cannot use"),
             ("run.lock", lambda p: (p.unlink(missing_ok=True), p.mkdir()), ["resume", "--epochs", "2"], 5,
              "cannot use")]
    for i, (name, damage, command, code, said) in enumerate(cases):
        where = Path(one_epoch_run(tmp_path / str(i))["run_dir"])
        damage(where / name)
        out = runner.invoke(app, [command[0], str(where), *map(str, command[1:]), "--json"])
        assert out.exit_code == code and json.loads(out.stdout)["error"].startswith(
            str(where / name) if code == 3 else f"cannot use {where / name}"), (name, out.output)
        assert said in out.stdout, (name, out.stdout)


def test_a_damaged_sidecar_or_history_is_a_data_error(tmp_path):
    """What `dlkit resume` reads besides the checkpoint: each was a traceback (BadZipFile, "Aborted!" from an
    EOFError, float(None)); each is a data error naming the file."""
    import keras
    import pytest

    from dlkit.errors import DataError
    from dlkit.training.callbacks import load_rng_sidecar
    from dlkit.training.train import _history_rows

    sidecar = tmp_path / "last.rng.npz"
    for damaged, error in ((b"", "EOFError"), (b"PK\x03\x04cut", "BadZipFile")):
        sidecar.write_bytes(damaged)
        with pytest.raises(DataError, match=f"{sidecar} is damaged \\({error}.*delete it to resume without it"):
            load_rng_sidecar(None, {"model": keras.optimizers.SGD()}, sidecar)
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,accuracy\n1,0.5,0.8\n2,0.4\n")
    with pytest.raises(DataError, match=f"{history}, line 3: a row that does not read"):
        _history_rows(history)
    history.write_text("epoch,loss,accuracy\n1,0.5,0.8\n2,0.4,\n")  # an empty cell: a value not logged
    assert _history_rows(history) == [{"epoch": 1, "loss": 0.5, "accuracy": 0.8}, {"epoch": 2, "loss": 0.4}]


def test_a_file_or_folder_of_a_run_names_the_run_and_a_folder_of_runs_says_what_it_holds(one_epoch_run, tmp_path,
                                                                                         monkeypatch):
    """`dlkit evaluate RUN/recipe.yaml` took the run's own recipe for a recipe file and looked for that recipe's
    newest run under ./runs ("no finished run ... train it first"); RUN/model.keras was "neither a run
    directory nor a recipe file". A file or folder of a run names the run. A recipe's folder of runs and a runs
    root given for a run are refused with what they hold."""
    from dlkit.errors import UsageError
    from dlkit.evaluate import resolve_run
    from dlkit.rundir import RunDir

    where = Path(one_epoch_run(tmp_path / "runs")["run_dir"])
    for inside in ("recipe.yaml", "model.keras", "checkpoints", "checkpoints/last.keras"):
        assert RunDir.open(where / inside).root == where and resolve_run(where / inside).root == where, inside
    out = runner.invoke(app, ["evaluate", str(where / "recipe.yaml"), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["run_dir"] == str(where), out.output
    for given, said in ((where.parent, f"; it holds 1 run(s) of recipe {where.parent.name}: give one of them, e.g. "
                                       f"{where} (the newest finished)"),
                        (tmp_path / "runs", f"; it is a runs root, with runs of {where.parent.name}: give a run "
                                            f"directory under it (dlkit runs --runs-root {tmp_path / 'runs'} lists "
                                            "them)"),
                        (tmp_path, ""), (where / "nothing.txt", "")):
        out = runner.invoke(app, ["report", str(given), "--json"])
        assert out.exit_code == 2 and json.loads(out.stdout)["error"] == (
            f"{given} is not a dlkit run directory (no manifest.json and recipe.yaml){said}"), out.stdout
    monkeypatch.chdir(where)  # a name that is no file, typed inside a run directory, is not that run
    with pytest.raises(UsageError, match="cnn_mnsit is neither a run directory nor a recipe file"):
        resolve_run("cnn_mnsit")


def test_results_added_at_once_to_a_runs_record_are_all_kept(tmp_path):
    """Two `dlkit evaluate`s of one run at once (a batch of splits) each read eval.json, added its result and
    wrote it whole: the later write lost the other's result (two processes adding 200 results each kept 226 of
    400). RunDir.record holds the run's lock on its folder from the reading to the writing."""
    import threading
    import time

    run = RunDir(tmp_path)
    reading = threading.Event()

    def first():
        with run.record(run.eval) as evals:
            evals["test"] = {"accuracy": 0.9}
            reading.set()
            time.sleep(0.3)  # the second reads here, unless it waits for this write

    def second():
        reading.wait()
        with run.record(run.eval) as evals:
            evals["val"] = {"accuracy": 0.8}

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(run.eval.read_text()) == {"test": {"accuracy": 0.9}, "val": {"accuracy": 0.8}}


def test_a_trained_run_is_listed_with_its_test_accuracy(one_epoch_run, tmp_path):
    result = one_epoch_run(tmp_path)
    rows = json.loads(run("runs", "--runs-root", tmp_path, "--json").stdout)["runs"]
    assert len(rows) == 1 and rows[0]["run_dir"] == result["run_dir"] and rows[0]["status"] == "completed"
    assert rows[0]["headline"]["value"] == result["test"]["accuracy"] and rows[0]["epochs"] == 1


def test_piped_training_prints_progress_inside_an_epoch(tiny_recipe, tmp_path, monkeypatch):
    """Piped (not a terminal), `train` prints a line with the step, the rate and the time left at least
    every $DLKIT_PROGRESS_SECONDS inside an epoch, besides the line per epoch."""
    import re

    monkeypatch.setenv("DLKIT_PROGRESS_SECONDS", "0")
    out = run("train", tiny_recipe, "--runs-root", tmp_path, "--set", "train.epochs=1")
    assert out.exit_code == 0
    lines = [line for line in out.stdout.splitlines() if re.match(r"epoch 1/1  step \d+/\d+  [\d.]+ steps/s  \d+:\d\d left", line)]
    assert lines, out.stdout
    assert re.search(r"^epoch 1/1  [\d.]+s  \w+=", out.stdout, re.M)


def test_plain_reporter_waits_its_interval():
    import io

    from rich.console import Console

    from dlkit.ui import PlainReporter

    buf = io.StringIO()
    reporter = PlainReporter(Console(file=buf, width=200), every=3600)
    reporter.train_begin(2, 10)
    reporter.epoch_begin(0)
    for step in range(10):
        reporter.batch(step, {"loss": 1.0})
    assert "step" not in buf.getvalue()  # an hour has not passed
    reporter.every = 0
    reporter.batch(4, {"loss": 0.5})
    assert "epoch 1/2  step 5/10" in buf.getvalue() and "loss=0.5000" in buf.getvalue()


@pytest.mark.parametrize("value", ["abc", "-3", "inf"])
def test_a_bad_progress_interval_is_a_usage_error_not_a_traceback(value, monkeypatch, tiny_recipe, tmp_path):
    monkeypatch.setenv("DLKIT_PROGRESS_SECONDS", value)
    out = run("train", tiny_recipe, "--runs-root", tmp_path)  # was float()'s ValueError
    assert out.exit_code == 2 and f"DLKIT_PROGRESS_SECONDS={value!r}: expected seconds" in out.stderr
    assert not (tmp_path / "tiny").exists()


def test_long_work_is_shown_only_where_a_command_shows_it():
    """`ui.work`, a long loop's progress (AIS, importance sampling, beam search): nothing for a library caller;
    under a command, a line at least every so many seconds off a terminal, a live bar on one, gone at the end."""
    import io

    from rich.console import Console

    from dlkit import ui

    with ui.work("annealing", 3, " temperatures") as advance:  # no command: nowhere to show it
        advance(2)
    buf = io.StringIO()
    with ui.showing(Console(file=buf, width=200), every=3600):
        with ui.work("annealing", 3, " temperatures") as advance:
            advance(2)
    assert buf.getvalue() == ""  # an hour has not passed
    with ui.showing(Console(file=buf, width=200), every=0):
        with ui.work("annealing", 3, " temperatures") as advance:
            advance()  # the first step holds start-up costs: no time left is reckoned from it
            advance()
            advance()
    assert buf.getvalue() == "annealing: 2/3 temperatures  0:00 left\n"  # not at the end: the answer follows
    tty = io.StringIO()
    with ui.showing(Console(file=tty, width=100, force_terminal=True)):
        with ui.work("annealing", 4) as advance:
            advance(3)
            bars = ui._shown[-1].progress
            assert [(t.description, t.completed, t.total) for t in bars.tasks] == [("annealing", 3, 4)]
        assert bars.tasks == [] and not bars.live.is_started  # gone when its work ends, before the answer
    assert "annealing" in tty.getvalue()
    # Ctrl-C whose KeyboardInterrupt was swallowed where it landed (an import's bare except): the flag the
    # signal handler also sets stops the loop at its next step
    from dlkit.errors import interrupt_requested

    interrupt_requested.set()
    try:
        for where in (None, Console(file=io.StringIO()), Console(file=io.StringIO(), force_terminal=True)):
            with ui.showing(where), ui.work("annealing", 4) as advance, pytest.raises(KeyboardInterrupt):
                advance()
    finally:
        interrupt_requested.clear()


def test_an_image_classifier_predicts_files_and_arrays(one_epoch_run, tmp_path):
    """`dlkit predict RUN FILE...`: PNG files (a colour one converted to gray, a larger one resized) and an
    .npy array, labels and probabilities as the model gives them for the same pixels."""
    import numpy as np
    from PIL import Image

    from dlkit.data import sources

    result = one_epoch_run(tmp_path / "runs")
    digits = sources.load_builtin("mnist", str(Path(__file__).parent / "data"), allow_download=False).x_test[:3]
    Image.fromarray(digits[0]).save(tmp_path / "gray.png")
    Image.fromarray(np.repeat(digits[1][..., None], 3, -1)).save(tmp_path / "colour.png")
    np.save(tmp_path / "two.npy", digits[:2])
    out = run("predict", result["run_dir"], tmp_path / "gray.png", tmp_path / "colour.png", tmp_path / "two.npy", "--json")
    assert out.exit_code == 0, out.stdout
    preds = json.loads(out.stdout)["predictions"]
    assert [p["input"] for p in preds] == ["gray.png", "colour.png", "two.npy[0]", "two.npy[1]"]
    assert preds[0]["probabilities"] == preds[2]["probabilities"]  # the same pixels, as a file or an array
    assert preds[1]["probabilities"] == preds[3]["probabilities"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-3 for p in preds)
    import keras

    model = keras.saving.load_model(Path(result["run_dir"]) / "model.keras")
    direct = model.predict(digits[:2, ..., None].astype("float32") / 255.0, verbose=0)
    assert preds[2]["label"] == str(int(direct[0].argmax())) and preds[3]["label"] == str(int(direct[1].argmax()))
    plain = run("predict", result["run_dir"], tmp_path / "gray.png")
    assert plain.exit_code == 0 and "gray.png" in plain.stdout
    assert run("predict", result["run_dir"]).exit_code == 2  # nothing to classify
    assert run("predict", result["run_dir"], "--text", "hello").exit_code == 2
    assert run("predict", result["run_dir"], tmp_path / "missing.png").exit_code == 2
    np.save(tmp_path / "small.npy", np.zeros((3, 5, 5), np.uint8))
    small = run("predict", result["run_dir"], tmp_path / "small.npy", "--json")
    assert small.exit_code == 2 and "an array of shape (3, 5, 5);" in json.loads(small.stdout)["error"]  # as given
    assert "channels first" not in json.loads(small.stdout)["error"]
    np.save(tmp_path / "nchw.npy", digits[:2][:, None])  # PyTorch's layout: said, with the transpose
    nchw = json.loads(run("predict", result["run_dir"], tmp_path / "nchw.npy", "--json").stdout)["error"]
    assert nchw.endswith("; these are channels first, as PyTorch keeps them: save np.transpose(x, (0, 2, 3, 1))")
    # 28 digits of 28 x 28 were read as one image of 28 channels, and refused
    np.save(tmp_path / "many.npy", np.concatenate([digits[:1]] * 28))
    many = json.loads(run("predict", result["run_dir"], tmp_path / "many.npy", "--json").stdout)["predictions"]
    assert len(many) == 28 and many[0]["probabilities"] == preds[0]["probabilities"]
    # a folder: its images and arrays, in name order
    (tmp_path / "inbox").mkdir()
    for name in ("gray.png", "two.npy"):
        (tmp_path / "inbox" / name).write_bytes((tmp_path / name).read_bytes())
    (tmp_path / "inbox" / "notes.txt").write_text("not an image")
    folder = json.loads(run("predict", result["run_dir"], tmp_path / "inbox", "--json").stdout)["predictions"]
    assert [p["input"] for p in folder] == ["gray.png", "two.npy[0]", "two.npy[1]"]
    assert [p["probabilities"] for p in folder] == [p["probabilities"] for p in preds[:1] + preds[2:]]
    # an array in [0, 1] was cut to zeros as uint8: the model answered for black images
    np.save(tmp_path / "unit.npy", digits[:1] / 255.0)
    unit = run("predict", result["run_dir"], tmp_path / "unit.npy", "--json")
    assert unit.exit_code == 2 and "whole numbers 0-255 (an image in [0, 1]: multiply it by 255)" in unit.stdout
    np.save(tmp_path / "none.npy", digits[:0])  # was Keras's UnboundLocalError from a predict of no batches
    empty = run("predict", result["run_dir"], tmp_path / "none.npy", "--json")
    assert empty.exit_code == 2 and "an array of shape (0, 28, 28), empty" in json.loads(empty.stdout)["error"]
    # options only other tasks read are refused, not dropped in silence
    for args, said in ((["predict", result["run_dir"], tmp_path / "gray.png", "--beam", "3"], "--beam is read by"),
                       (["predict", result["run_dir"], tmp_path / "gray.png", "--plot", tmp_path / "a.png"], "--plot"),
                       (["evaluate", result["run_dir"], "-k", "50"], "-k is read by variational, boltzmann runs"),
                       # a classifier measured its test split as if -n had been taken
                       (["evaluate", result["run_dir"], "-n", "500"], "-n/--samples is read by")):
        out = run(*args, "--json")
        assert out.exit_code == 2 and said in json.loads(out.stdout)["error"], out.stdout
    assert not (tmp_path / "a.png").exists()


def test_tensorboard_logs_every_value_the_epochs_logged(tiny_recipe, tmp_path):
    """`--tensorboard` writes each epoch's logs and the learning rate as scalars, read back with
    TensorBoard's own event reader, one point per epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run("train", tiny_recipe, "--runs-root", tmp_path, "--set", "train.epochs=2", "--tensorboard", "--json")
    assert out.exit_code == 0
    result = json.loads(out.stdout)
    events = EventAccumulator(str(Path(result["run_dir"]) / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= tags
    import tensorflow as tf

    loss = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors("loss")]
    history = (Path(result["run_dir"]) / "history.csv").read_text().splitlines()
    assert [s for s, _ in loss] == [1, 2]
    assert abs(loss[1][1] - float(history[2].split(",")[history[0].split(",").index("loss")])) < 1e-5


def test_a_data_file_changed_since_the_run_trained_is_said_not_met_as_a_traceback(write_recipe, tmp_path):
    """A user regenerated the npz a run trained on: images of another size or more classes met the model at
    evaluate, generate, encode or resume as a Keras or TensorFlow traceback."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.normal(size=(32, 6)), y_train=np.arange(32) % 2)
    recipe = write_recipe(f"data: {{dataset: npz, path: {data}, batch_size: 8}}\nmodel: {{arch: mlp, hidden: [4]}}\n"
                          "train: {epochs: 1}\n")
    out = CliRunner().invoke(app, ["train", str(recipe), "--runs-root", str(tmp_path / "runs"), "--json", "-q"])
    assert out.exit_code == 0, out.output
    run = json.loads(out.stdout)["run_dir"]
    np.savez(data, x_train=rng.normal(size=(32, 7)), y_train=np.arange(32) % 2)
    for command in (["evaluate", run], ["resume", run, "--epochs", "2"]):
        out = CliRunner().invoke(app, command)
        assert out.exit_code == 3, out.output
        assert "now holds inputs of shape (7,), and the run trained on inputs of shape (6,)" in out.stderr
    np.savez(data, x_train=rng.normal(size=(32, 6)), y_train=np.arange(32) % 3)
    out = CliRunner().invoke(app, ["evaluate", run])
    assert out.exit_code == 3 and "now holds 3 classes, and the run trained on 2 classes" in out.stderr
    np.savez(data, x_train=rng.normal(size=(32, 6)), y_train=np.arange(32) % 2)
    assert CliRunner().invoke(app, ["evaluate", run]).exit_code == 0  # the data put back
