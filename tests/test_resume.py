"""`dlkit resume`: a run continued from its last checkpoint ends where an uninterrupted run would."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import keras
from conftest import DATA, DROPOUT
from dlkit import backend
from dlkit.cli import app
from dlkit.errors import UsageError
from dlkit.training.train import resume, train


def weights_of(run_dir, attr=None):
    model = keras.saving.load_model(Path(run_dir) / "model.keras")
    return (getattr(model, attr) if attr else model).get_weights()


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _rates(result) -> list[float]:
    """The learning rate each epoch of a run logged."""
    return [float(r["learning_rate"]) for r in csv.DictReader(open(Path(result["run_dir"]) / "history.csv"))]


def test_resumed_classifier_matches_an_uninterrupted_run(tiny_recipe, straight_with_dropout, tmp_path):
    first = train(tiny_recipe, ["train.epochs=1", *DROPOUT], runs_root=tmp_path)
    result = resume(first["run_dir"], epochs=3)
    run = Path(result["run_dir"])
    assert run == Path(first["run_dir"]) and result["resumed_from_epoch"] == 1
    # same data order, optimizer moments and step count: the same weights, bit for bit
    assert_same_weights(weights_of(straight_with_dropout), weights_of(run))
    rows = list(csv.DictReader(open(run / "history.csv")))
    straight = json.loads((straight_with_dropout / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert result["epochs_completed"] == 3 and result["final"] == pytest.approx(straight["final"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumed"][0]["from_epoch"] == 1
    assert "epochs: 3" in (run / "recipe.yaml").read_text()


def gan_recipe(tmp_path):
    from dlkit.data import sources

    a = sources.load_builtin("mnist", str(DATA), allow_download=False)
    data = tmp_path / "digits16.npz"
    np.savez(data, x_train=a.x_train[:128, 6:22, 6:22], y_train=a.y_train[:128])
    path = tmp_path / "gan.yaml"
    path.write_text(f"""
name: tiny_gan
data: {{dataset: npz, path: {data}, scale: symmetric, validation_split: 0, batch_size: 32}}
model: {{arch: dcgan, latent_dim: 8, generator: {{filters: [16, 8]}}, discriminator: {{filters: [8, 16]}}, ema: 0.9}}
train:
  epochs: 2
  optimizers: {{generator: {{name: adam, learning_rate: 0.01}}, discriminator: {{name: adam, learning_rate: 0.01}}}}
""")
    return path


def test_resumed_gan_matches_an_uninterrupted_run(tmp_path):
    """Both optimizers, the RNG stream and the weight average carry on from the checkpoint."""
    recipe = gan_recipe(tmp_path)
    straight = train(recipe, runs_root=tmp_path / "a")
    first = train(recipe, ["train.epochs=1"], runs_root=tmp_path / "b")
    resume(first["run_dir"], epochs=2)
    for part in ("generator", "discriminator", "generator_ema"):
        assert_same_weights(weights_of(straight["run_dir"], part), weights_of(first["run_dir"], part))
    run = Path(first["run_dir"])
    assert (run / "samples" / "epoch_002.png").is_file() and (run / "progress.gif").is_file()
    from PIL import Image

    assert Image.open(run / "progress.gif").n_frames == 2  # the montage keeps the first session's grid


def test_resume_refuses_what_it_cannot_do(one_epoch_run, tmp_path):
    done = one_epoch_run(tmp_path)
    with pytest.raises(UsageError, match="finished 1 of its 1 epochs.*--epochs"):
        resume(done["run_dir"])
    with pytest.raises(UsageError, match="not a dlkit run directory"):
        resume(tmp_path)
    bare = Path(done["run_dir"])
    (bare / "checkpoints" / "last.keras").unlink()
    with pytest.raises(UsageError, match="nothing to resume"):
        resume(bare)
    import shutil

    shutil.rmtree(bare / "checkpoints")  # a finished run's checkpoints cleared away: not "no epoch finished"
    with pytest.raises(UsageError, match="checkpoints were removed after it finished.*nothing to resume"):
        resume(bare, epochs=2)


def test_a_run_stopped_while_it_finished_is_finished_by_resume(one_epoch_run, tmp_path):
    """Ctrl-C after the last epoch, while the run measured its test split (a translation's beam search takes
    seconds to minutes): it was marked interrupted with model.keras written, and resume refused it ("finished 1
    of its 1 epochs; raise --epochs"), so it never got its test measures or its `completed`. Now resume
    finishes it from that model.keras, whose weights it keeps."""
    done = one_epoch_run(tmp_path)
    run_dir = Path(done["run_dir"])
    saved = [w.copy() for w in keras.saving.load_model(run_dir / "model.keras").get_weights()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    (run_dir / "metrics.json").write_text(json.dumps({"status": "interrupted", "run_dir": str(run_dir)}))
    result = resume(run_dir)
    assert result["status"] == "completed" and result["test"]["accuracy"] == pytest.approx(done["test"]["accuracy"])
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    for a, b in zip(saved, keras.saving.load_model(run_dir / "model.keras").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_command(one_epoch_run, tmp_path):
    runner = CliRunner()
    done = one_epoch_run(tmp_path)
    out = runner.invoke(app, ["resume", done["run_dir"], "--json"])
    assert out.exit_code == 2 and json.loads(out.stdout)["status"] == "error"
    out = runner.invoke(app, ["resume", done["run_dir"], "--epochs", "99999999999", "--json"])  # said as typed
    assert out.exit_code == 2 and json.loads(out.stdout)["error"] == (
        "--epochs 99,999,999,999: a run's total of epochs is 1 to 1,000,000, as train.epochs in a recipe")
    out = runner.invoke(app, ["resume", done["run_dir"], "--epochs", "2", "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["status"] == "completed" and result["epochs_completed"] == 2


def test_an_edit_of_recipe_yaml_the_checkpoint_overrides_is_refused_any_other_said(one_epoch_run, tmp_path):
    """An edited learning rate (or model) in a run's recipe.yaml was ignored in silence by `dlkit resume`, which
    goes on with the checkpoint's optimizer and model, and the file kept the new value: its record misstated
    what trained. Such an edit is refused, naming each key with both values; another (checkpoint_every, the
    data's folder) is used, said and recorded in the manifest; layout and comments are no change; a run of an
    earlier dlkit, whose manifest keeps no recipe text, is resumed as before."""
    from dlkit.rundir import RunDir, check_recipe_unchanged

    runner = CliRunner()
    run = Path(one_epoch_run(tmp_path)["run_dir"])
    recipe = run / "recipe.yaml"
    original = recipe.read_text()
    assert "learning_rate: 0.005" in original and "minutes: 10.0" in original
    recipe.write_text(original.replace("learning_rate: 0.005", "learning_rate: 0.05"))
    out = runner.invoke(app, ["resume", str(run), "--epochs", "2", "--json"])
    assert out.exit_code == 2 and json.loads(out.stdout)["error"].startswith(
        f"{recipe} was changed since the run trained (train.optimizer.learning_rate: 0.005 -> 0.05): a resume goes "
        "on from the checkpoint with the model, optimizers, schedule, seed, precision and data the run began "
        "with"), out.output
    assert "learning_rate: 0.05" in recipe.read_text()  # the user's file as they left it

    recipe.write_text(original.replace("minutes: 10.0", "minutes: 5.0") + "# checkpoints more often\n")
    out = runner.invoke(app, ["resume", str(run), "--epochs", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert (f"note: {recipe} was changed since the run last trained, and it resumes with the change: "
            "train.checkpoint_every.minutes: 10.0 -> 5.0") in " ".join(out.stderr.split())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumed"][-1]["recipe_changes"] == {"train.checkpoint_every.minutes": [10.0, 5.0]}
    assert manifest["recipe_yaml"] == recipe.read_text()  # what the next resume is held to: no note then
    kept = dict(manifest)
    # where the data lies may change (a move); what it is, and the steps its place is counted in, may not (a run of
    # 3 steps an epoch resumed at 4 redid its first epoch from its fourth step and lost that epoch's history row)
    assert "limit: 600" in original and "steps_per_epoch: null" in original
    recipe.write_text(manifest["recipe_yaml"].replace(f"dir: {DATA}", f"dir: {tmp_path}"))
    assert check_recipe_unchanged(RunDir(run), kept) == {"data.dir": (str(DATA), str(tmp_path))}
    for edit in (("limit: 600", "limit: 500"), ("steps_per_epoch: null", "steps_per_epoch: 4")):
        recipe.write_text(manifest["recipe_yaml"].replace(*edit))
        with pytest.raises(UsageError, match="was changed since the run trained"):
            check_recipe_unchanged(RunDir(run), kept)
    del manifest["recipe_yaml"]  # a run of an earlier dlkit
    recipe.write_text(original.replace("learning_rate: 0.005", "learning_rate: 0.05"))
    assert check_recipe_unchanged(RunDir(run), manifest) == {}


def test_resume_keeps_early_stopping_and_plateau_counters(tiny_recipe, tmp_path):
    """train.early_stopping stops a run once its patience runs out, and a plateau schedule lowers the rate
    after `patience` epochs without a gain (the straight runs); patience counts across a resume: the epochs
    already run are replayed into EarlyStopping and ReduceLROnPlateau, so a resumed run stops and lowers its
    rate at the epochs an uninterrupted one does."""
    # min_delta larger than any gain: after the first epoch nothing counts as better, so it stops at epoch 3
    stop = ["train.early_stopping={patience: 2, min_delta: 100}", "data.limit=200"]
    straight = train(tiny_recipe, ["train.epochs=8", *stop], runs_root=tmp_path / "a")
    assert straight["epochs_completed"] == 3
    first = train(tiny_recipe, ["train.epochs=2", *stop], runs_root=tmp_path / "b")
    resumed = resume(first["run_dir"], epochs=8)
    assert resumed["epochs_completed"] == 3  # without the replay: 2 + 3 = 5

    # a rate too small to move val_loss by Keras' min_delta: halved after each `patience` epochs
    plateau = ["train.schedule={name: plateau, patience: 2, factor: 0.5}", "train.optimizer.learning_rate=1.0e-9",
               "data.limit=100"]
    straight = train(tiny_recipe, ["train.epochs=5", *plateau], runs_root=tmp_path / "c")
    first = train(tiny_recipe, ["train.epochs=2", *plateau], runs_root=tmp_path / "d")
    resumed = resume(first["run_dir"], epochs=5)

    assert min(_rates(straight)) == pytest.approx(0.5e-9)  # lowered once, after epoch 3
    assert _rates(resumed) == pytest.approx(_rates(straight))  # without the replay: only after epoch 5


def test_raising_the_epochs_stretches_a_schedule_that_spans_the_run(tiny_recipe, tmp_path):
    """--epochs on a finished cosine run: the checkpoint's schedule had ended at its floor (0 here), so the
    added epochs trained at rate 0; now the schedule is the new total's, at the step the run is at. A step
    schedule with hold_epochs gets the cuts past the old end, as a run planned that long has them."""
    lr, short = 0.01, ["data.limit=200", "train.steps_per_epoch=4", "train.optimizer.learning_rate=0.01"]
    first = train(tiny_recipe, ["train.epochs=1", "train.schedule={name: cosine}", *short], runs_root=tmp_path / "a")
    assert _rates(first) == pytest.approx([0.0], abs=1e-12)
    resumed = resume(first["run_dir"], epochs=3)
    # a 3-epoch cosine at steps 8 and 12 of 12: lr (1 + cos(2 pi / 3)) / 2 and 0 (it was 0 and 0)
    assert _rates(resumed) == pytest.approx([0.0, lr * 0.25, 0.0], abs=1e-9)

    step = ["train.schedule={name: step, hold_epochs: 1, step_epochs: 1, factor: 0.5}", *short]
    straight = train(tiny_recipe, ["train.epochs=3", *step], runs_root=tmp_path / "b")
    first = train(tiny_recipe, ["train.epochs=1", *step], runs_root=tmp_path / "c")
    resumed = resume(first["run_dir"], epochs=3)
    # each epoch logs the rate of its last step: held through the first, then halved per epoch (it stayed lr)
    assert _rates(resumed) == pytest.approx(_rates(straight))
    assert _rates(straight) == pytest.approx([lr, lr / 2, lr / 4])


def test_a_float16_run_resumes_at_its_batch_though_loss_scaling_skipped_steps(tiny_recipe, tmp_path):
    # train.precision: mixed_float16 wraps the optimizer in Keras's LossScaleOptimizer, which does not count a
    # step whose scaled gradients overflowed: the optimizer's step count falls behind the batches taken, and
    # a resume placed by it would repeat batches. The checkpoint's own position puts it right.
    half = ["train.precision=mixed_float16", "train.optimizer.learning_rate=0.01"]
    straight = train(tiny_recipe, ["train.epochs=2", *half], runs_root=tmp_path / "a")
    first = train(tiny_recipe, ["train.epochs=1", *half], runs_root=tmp_path / "b")
    result = resume(first["run_dir"], epochs=2)
    keras.config.set_dtype_policy("mixed_float16")  # as the runs' sessions had it: the loss-scale wrapper loads
    try:
        model, other = (keras.saving.load_model(Path(r["run_dir"]) / "model.keras") for r in (result, straight))
    finally:
        keras.config.set_dtype_policy("float32")
    # the saved layers keep their policies: mixed, but for the float32 softmax (layers.classifier_head)
    assert model.layers[1].dtype_policy.name == "mixed_float16" and model.layers[-1].dtype_policy.name == "float32"
    steps = 2 * -(-540 // 50)  # two epochs of the 540 training examples (600, a tenth for validation), by 50
    assert type(model.optimizer).__name__ == "LossScaleOptimizer" and int(model.optimizer.iterations) < steps
    assert_same_weights(other.get_weights(), model.get_weights())
    assert result["final"] == pytest.approx(straight["final"])
    # float16 on TensorFlow's CPU, many times slower: a resume says so once, as the run's start did (it may be
    # on another machine), with --epochs (which builds the model afresh too) or without (a run stopped while
    # it finished, its model loaded alone)
    said = [n for n in first.get("data_notes", []) if n.startswith("train.precision")]
    assert len(said) == int(backend.slow_float16())
    assert [n for n in result.get("data_notes", []) if n.startswith("train.precision")] == said
    manifest = Path(result["run_dir"]) / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "status": "interrupted"}))
    try:
        again = resume(result["run_dir"])
    finally:
        keras.config.set_dtype_policy("float32")
    assert again["status"] == "completed"
    assert [n for n in again.get("data_notes", []) if n.startswith("train.precision")] == said


def test_steps_per_execution_trains_the_same_steps(tiny_recipe, tmp_path):
    # 540 training examples in batches of 45: 12 steps an epoch. Asked for 5 a call, a run takes 4 (Keras runs
    # whole executions; 5 would run 15 steps an epoch, 3 of them the next epoch's): the same steps as one a call
    batches = ["data.batch_size=45", "train.epochs=2"]
    one = train(tiny_recipe, batches, runs_root=tmp_path / "a")
    five = train(tiny_recipe, [*batches, "train.steps_per_execution=5"], runs_root=tmp_path / "b")
    model = keras.saving.load_model(Path(five["run_dir"]) / "model.keras")
    assert model.steps_per_execution == 4 and int(model.optimizer.iterations) == 24
    for a, b in zip(weights_of(one["run_dir"]), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert five["final"] == pytest.approx(one["final"], rel=1e-4)


def test_per_step_callbacks_leave_the_training_loop_alone(tiny_recipe, tmp_path, monkeypatch):
    """Keras waits for each step to finish before a batch-end hook unless every such hook is async-safe: a
    default run (mid-epoch checkpoints on) has its progress fed from Keras's callback thread, and its
    mid-epoch checkpoints, taken at a step's start in the loop's own thread, still land where they are due.
    (Keras dispatches so on JAX; it marks TensorFlow, which these tests train on, not thread-safe: pretended.)
    They go the epochs' way: written in the checkpoint thread while training goes on; the last one written, an
    epoch's, is the finished model, and a mid-epoch one resumed from continues as the run did (test_kill.py)."""
    import threading

    from keras.src import backend as keras_backend

    from dlkit import rundir
    from dlkit.training import callbacks

    monkeypatch.setattr(keras_backend, "IS_THREAD_SAFE", True)
    threads, write = [], rundir.PhaseDir._save_checkpoint

    def writer(self, *args):
        threads.append(threading.current_thread().name)
        return write(self, *args)

    monkeypatch.setattr(rundir.PhaseDir, "_save_checkpoint", writer)

    in_main, original = [], callbacks.ProgressCallback.on_train_batch_end

    def spy(self, batch, logs=None):
        in_main.append(threading.current_thread() is threading.main_thread())
        return original(self, batch, logs)

    monkeypatch.setattr(callbacks.ProgressCallback, "on_train_batch_end", spy)
    saved, save = [], callbacks.rng_sidecar_writer
    monkeypatch.setattr(callbacks, "rng_sidecar_writer", lambda *a: saved.append(a[-1]) or save(*a))
    overrides = ["data.batch_size=8", "data.limit=96", "train.epochs=2", "train.checkpoint_every={steps: 4}"]
    run = train(tiny_recipe, overrides, runs_root=tmp_path)
    assert in_main and not any(in_main)
    steps = -(-json.loads((Path(run["run_dir"]) / "manifest.json").read_text())["data_spec"]["num_train"] // 8)
    due = [p for p in range(1, 2 * steps + 1) if p % 4 == 0 and p % steps]  # the epochs' ends have their own
    assert [p for p in saved if p % steps] == due, (steps, saved)
    assert len(threads) == 2 + len(due) and all(name.startswith("dlkit-checkpoint") for name in threads), threads
    final = keras.saving.load_model(Path(run["run_dir"]) / "model.keras").get_weights()
    last = keras.saving.load_model(Path(run["run_dir"]) / "checkpoints" / "last.keras").get_weights()
    for a, b in zip(final, last, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_stretched_schedule_keeps_a_rollbacks_factor():
    """take_schedule gives an optimizer a freshly built one's schedule; a rollback's lower rate (a
    ScaledSchedule) stays on it, and a plain rate, which spans nothing, is left alone."""
    from dlkit import optim

    def cosine(steps):
        return keras.optimizers.schedules.CosineDecay(0.01, decay_steps=steps)

    scaled = optim.scaled_schedule_class()
    rolled_back = keras.optimizers.SGD(learning_rate=scaled(cosine(4), 0.5))
    assert optim.take_schedule(rolled_back, keras.optimizers.SGD(learning_rate=cosine(12)))
    schedule = keras.optimizers.schedules.deserialize(rolled_back.get_config()["learning_rate"])
    assert isinstance(schedule, scaled) and schedule.factor == 0.5 and schedule.schedule.decay_steps == 12
    assert float(schedule(8)) == pytest.approx(0.5 * 0.01 * 0.25, rel=1e-5)
    assert not optim.take_schedule(rolled_back, keras.optimizers.SGD(learning_rate=cosine(12)))  # already so
    plain = keras.optimizers.SGD(learning_rate=0.1)
    assert not optim.take_schedule(plain, keras.optimizers.SGD(learning_rate=0.2))
    assert float(keras.ops.convert_to_numpy(plain.learning_rate)) == pytest.approx(0.1)


def test_epoch_checkpoints_are_written_in_the_checkpoint_thread(tiny_recipe, tmp_path, monkeypatch):
    """Each epoch's checkpoint is written in the checkpoint thread (the first while the loop waits, the later
    ones while the next epoch trains), and holds that epoch's state: the last is the finished model, the
    one before it the epoch before's (resumed from bit for bit: the resume tests above and tests/test_kill.py)."""
    import threading

    from dlkit import rundir

    threads, original = [], rundir.PhaseDir._save_checkpoint

    def spy(self, *args):
        threads.append(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(rundir.PhaseDir, "_save_checkpoint", spy)
    run = Path(train(tiny_recipe, ["train.epochs=3"], runs_root=tmp_path)["run_dir"])
    assert len(threads) == 3 and all(name.startswith("dlkit-checkpoint") for name in threads), threads
    final = keras.saving.load_model(run / "model.keras").get_weights()
    last = keras.saving.load_model(run / "checkpoints" / "last.keras").get_weights()
    before = keras.saving.load_model(run / "checkpoints" / "previous.keras").get_weights()
    for a, b in zip(final, last, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(final, before, strict=True))


def _tiny_compiled_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 5, 0.5)),
                  loss="mse")
    model.fit(np.random.default_rng(0).random((16, 4), "float32"), np.zeros((16, 2), "float32"), verbose=0)
    return model


def test_a_later_save_writes_the_copy_not_the_live_variables(tmp_path):
    """LaterSave: what its copy saves, in the checkpoint thread, is the state when the copy was taken, every
    variable of the model and its optimizer, though the loop has changed them all since."""
    from dlkit import rundir
    from dlkit.training.callbacks import LaterSave

    model = _tiny_compiled_model()
    later, written = LaterSave(model, {"model": model.optimizer}), []
    live = model.save
    model.save = lambda path: written.append(path) or live(path)  # the copy's save is the model's too
    rundir.in_checkpoint_thread(later.first, lambda save: save(tmp_path / "then.keras"))
    del model.save
    assert later.ready is True and written == [tmp_path / "then.keras"]  # the first checkpoint, written once
    save = later.copy()
    for v in later.variables():  # the loop steps on
        v.assign(np.full(v.shape, 7, v.dtype))
    rundir.in_checkpoint_thread(save, tmp_path / "copy.keras")
    then, copy = (keras.saving.load_model(tmp_path / f) for f in ("then.keras", "copy.keras"))
    for a, b in zip([*then.variables, *then.optimizer.variables], [*copy.variables, *copy.optimizer.variables],
                    strict=True):
        if "seed_generator" not in a.path:  # drawn anew on loading (the run's sidecar keeps the streams)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(np.asarray(copy.optimizer.iterations)) == 1


def test_a_model_whose_copy_misses_a_variable_keeps_its_checkpoints_in_the_loop(tmp_path):
    """Where the check finds the save reading a variable the copy does not hold, LaterSave is not used
    (ready False): the checkpoints are written in the loop's thread, from the live model."""
    from dlkit import rundir
    from dlkit.files import replace_atomic
    from dlkit.training.callbacks import LaterSave

    model = _tiny_compiled_model()

    class Missing(LaterSave):
        def variables(self):
            return super().variables()[1:]

    later = Missing(model, {"model": model.optimizer})
    rundir.in_checkpoint_thread(later.first, lambda save: replace_atomic(tmp_path / "then.keras", save))
    assert later.ready is False
    then = keras.saving.load_model(tmp_path / "then.keras")  # written again from the live model, in full
    for a, b in zip(model.variables, then.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_in_the_thread_is_waited_for_even_after_an_interrupted_wait(tmp_path):
    """A Ctrl-C that lands while the loop waits for the checkpoint being written leaves it still to be waited
    for (the interrupted run's handler waits again, so the run is closed with it in place); a write that
    failed raises its error at the next wait, once."""
    import os
    import signal
    import threading

    from dlkit import rundir

    go = threading.Event()

    def write():
        go.wait(10)
        (tmp_path / "written").write_text("done")

    rundir.wait_for_checkpoint()
    rundir._pending = rundir._writer().submit(write)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as Python's own
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            rundir.wait_for_checkpoint()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert rundir._pending is not None and not (tmp_path / "written").exists()
    go.set()
    rundir.wait_for_checkpoint()
    assert (tmp_path / "written").read_text() == "done" and rundir._pending is None

    def full():
        raise OSError(28, "No space left on device")

    rundir._pending = rundir._writer().submit(full)
    with pytest.raises(OSError, match="No space"):
        rundir.wait_for_checkpoint()
    rundir.wait_for_checkpoint()  # said once
