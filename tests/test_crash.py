"""What a run survives: a damaged newest checkpoint (resume falls back to the one before, and still ends
where an uninterrupted run does), a second trainer (the run's lock), a full disk and a read-only runs root
(exit 5, the path named, the checkpoints before intact), running out of memory (exit 6, a smaller batch
suggested). docs/reliability.md says what dlkit guarantees after a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DROPOUT, ROOT
from dlkit.cli import app
from dlkit.errors import UsageError
from dlkit.rundir import RunDir
from dlkit.training.train import resume, train


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def weights(path):
    return keras.saving.load_model(path).get_weights()


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tiny_recipe, straight_with_dropout, tmp_path):
    # with dropout: the random streams must come back from the fallback's sidecar too
    run = RunDir(train(tiny_recipe, ["train.epochs=2", *DROPOUT], runs_root=tmp_path)["run_dir"])
    assert run.previous_checkpoint.is_file() and run.rng_sidecar(run.previous_checkpoint).is_file()
    data = bytearray(run.last_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: bit rot, or a write cut short
    run.last_checkpoint.write_bytes(bytes(data))
    out = cli("resume", run.root, "--epochs", "3", "--json")
    assert out.exit_code == 0, out.output
    assert f"{run.last_checkpoint} is damaged" in " ".join(out.stderr.split())
    assert f"resuming from {run.previous_checkpoint}" in " ".join(out.stderr.split())
    assert json.loads(out.stdout)["resumed_from_epoch"] == 1
    for a, b in zip(weights(straight_with_dropout / "model.keras"), weights(run.model), strict=True):
        np.testing.assert_array_equal(a, b)
    # both damaged: nothing to resume, said plainly
    for path in (run.last_checkpoint, run.previous_checkpoint):
        path.write_bytes(b"broken")
    with pytest.raises(UsageError, match="no intact checkpoint.*damaged"):
        resume(run.root, epochs=5)


def test_a_live_run_is_locked_and_a_dead_trainers_lock_is_taken_over(one_epoch_run, tmp_path):
    run = RunDir(one_epoch_run(tmp_path)["run_dir"])
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(run.root / 'run.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.write(fd, b'process 4242 on elsewhere')\n"
        "print('locked', flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = cli("resume", run.root, "--epochs", "2")
        assert out.exit_code == 2 and "being trained by process 4242 on elsewhere" in " ".join(out.stderr.split())
    finally:
        holder.kill()  # as kill -9 would: the lock file stays, the lock goes
        holder.wait()
    assert (run.root / "run.lock").exists()
    assert resume(run.root, epochs=2)["epochs_completed"] == 2


def test_a_filesystem_without_file_locks_trains_unguarded_and_says_so(one_epoch_run, tiny_recipe, tmp_path,
                                                                     monkeypatch):
    """Some network filesystems lock nothing (flock: ENOLCK): a run there was exit 5, "a file could not be used:
    No locks available", and a new run left its directory behind. It trains, warned that a second resume would
    not be refused; a lock that fails otherwise is exit 5 with no run directory left."""
    import errno
    import fcntl

    def failing(code, text):
        def flock(fd, operation):
            raise OSError(code, text)
        return flock

    run = RunDir(one_epoch_run(tmp_path)["run_dir"])
    monkeypatch.setattr(fcntl, "flock", failing(errno.ENOLCK, "No locks available"))
    out = cli("resume", run.root, "--epochs", "2", "--json")
    assert out.exit_code == 0 and json.loads(out.stdout)["epochs_completed"] == 2, out.output
    assert (f"warning: {run.root} is on a filesystem that does not lock files (No locks available): a second "
            "`dlkit resume` of this run while this process trains it would not be refused") in " ".join(
                out.stderr.split())
    monkeypatch.setattr(fcntl, "flock", failing(errno.EIO, "Input/output error"))
    out = cli("train", tiny_recipe, "--runs-root", tmp_path / "new", "--json")
    assert out.exit_code == 5 and "Input/output error" in json.loads(out.stdout)["error"]
    assert list((tmp_path / "new").rglob("*")) == [tmp_path / "new" / "tiny"]  # no run directory under it


def _mount(args, where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", *args, str(where)], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 700 KB tmpfs: room for a run's first files and three of its 191 KB checkpoints, not for more."""
    disk = tmp_path / "disk"
    if not _mount(["-t", "tmpfs", "-o", "size=700k", "tmpfs"], disk):
        pytest.skip("mounting a tmpfs needs root (CI and the development VM have it)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_exit_5_and_the_checkpoints_before_stay_intact(tiny_recipe, small_disk, tmp_path):
    out = cli("train", tiny_recipe, "--runs-root", small_disk, "--set", "train.epochs=50", "--json", "-q")
    assert out.exit_code == 5, out.output
    result = json.loads(out.stdout)
    assert result["status"] == "error" and "No space left on device" in result["error"]
    assert str(small_disk) in result["error"] and "Traceback" not in out.output
    (run_dir,) = (small_disk / "tiny").iterdir()
    run = RunDir(run_dir)
    checkpoint, damaged = run.verified_checkpoint()
    assert checkpoint is not None and not damaged  # what checksums.json vouches for is whole
    assert not [p for p in run.checkpoints.iterdir() if p.name.startswith(".")]  # no temporary file left
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)  # on a disk with room, the run goes on from there
    rows = len((moved / "history.csv").read_text().splitlines()) - 1  # at least the checkpoint's epochs
    resumed = resume(moved, epochs=rows + 1)
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == rows + 1


def test_a_file_as_the_runs_root_is_a_usage_error(tiny_recipe, tmp_path):
    # it was exit 5, "Not a directory. Free space or choose another --runs-root; the checkpoints written before
    # stay as they were", of a run that had written nothing
    (tmp_path / "notes.txt").write_text("mine")
    out = cli("train", tiny_recipe, "--runs-root", tmp_path / "notes.txt", "--json", "-q")
    assert out.exit_code == 2, out.output
    assert json.loads(out.stdout)["error"] == (f"{tmp_path / 'notes.txt'} is a file, and the runs root holds a "
                                               "folder of run directories per recipe: choose another --runs-root")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    # a link that leads to no folder was exit 5, "File exists" (or "Too many levels of symbolic links")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    out = cli("train", tiny_recipe, "--runs-root", tmp_path / "gone", "--json", "-q")
    assert out.exit_code == 2 and json.loads(out.stdout)["error"] == (
        f"{tmp_path / 'gone'} is a link to {tmp_path / 'nowhere'} that leads to no folder (it is missing, or the "
        "links loop): make the folder it points to, or choose another --runs-root"), out.output


def test_a_read_only_runs_root_is_exit_5_naming_it(tiny_recipe, tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    if not _mount(["--bind", "-o", "ro", str(root)], root):
        pytest.skip("a read-only bind mount needs root")
    try:
        out = cli("train", tiny_recipe, "--runs-root", root, "--json", "-q")
        assert out.exit_code == 5, out.output
        error = json.loads(out.stdout)["error"]
        assert "Read-only file system" in error and str(root) in error
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
    assert not list(root.iterdir())


def test_out_of_memory_is_exit_6_with_a_smaller_batch_suggested(tiny_recipe, tmp_path, monkeypatch):
    import tensorflow as tf

    def exhausted(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[50,4,28,28]")

    monkeypatch.setattr(keras.Model, "fit", exhausted)
    out = cli("train", tiny_recipe, "--runs-root", tmp_path, "--json", "-q")
    assert out.exit_code == 6, out.output
    error = json.loads(out.stdout)["error"]
    assert "out of memory" in error and "--set data.batch_size=25" in error
    (run_dir,) = (tmp_path / "tiny").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"


def test_out_of_memory_building_the_model_is_exit_6_before_any_run_directory(tiny_recipe, tmp_path, monkeypatch):
    # a dense layer over 4 images of 2000 x 2000 (16 million inputs) was TensorFlow's traceback, exit 1
    import tensorflow as tf

    from dlkit.tasks.base import Task

    def exhausted(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[16000000,128]")

    monkeypatch.setattr(Task, "build", exhausted)
    out = cli("train", tiny_recipe, "--runs-root", tmp_path, "--json", "-q")
    assert out.exit_code == 6, out.output
    error = json.loads(out.stdout)["error"]
    assert "out of memory building" in error and "its weights do not fit" in error
    assert not (tmp_path / "tiny").exists()


def test_out_of_memory_reading_the_data_is_exit_6_before_any_run_directory(tiny_recipe, tmp_path, monkeypatch):
    # sentiment_lstm's data.max_length of 2**31 - 1 padded its sentences to numpy's traceback, exit 1
    from dlkit.tasks import TASKS

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 464. GiB for an array with shape (58, 2147483647) and data type int32")

    monkeypatch.setattr(type(TASKS["classification"]), "load_data", exhausted)
    out = cli("train", tiny_recipe, "--runs-root", tmp_path, "--json", "-q")
    assert out.exit_code == 6, out.output
    error = json.loads(out.stdout)["error"]
    assert error.startswith("out of memory reading the data (Unable to allocate 464. GiB") and "data.limit" in error
    assert not (tmp_path / "tiny").exists()


@pytest.mark.slow
def test_eight_runs_started_in_the_same_second_get_eight_complete_directories(tiny_recipe, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time() + 20  # all eight wait for the same moment, once their imports are done
    script = ("import sys, time; from dlkit.cli import app; from dlkit import backend; backend.setup(); "
              f"time.sleep(max(0, {start} - time.time())); sys.argv = ['dlkit'] + sys.argv[1:]; app()")
    procs = [subprocess.Popen([sys.executable, "-c", script, "train", str(tiny_recipe), "--runs-root", str(tmp_path),
                               "-q", "--json", "--set", "train.epochs=1"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [json.loads(p.communicate(timeout=900)[0]) for p in procs]
    dirs = {r["run_dir"] for r in results}
    assert len(dirs) == 8 and all(r["status"] == "completed" for r in results)
    for d in dirs:
        assert (Path(d) / "model.keras").is_file() and json.loads((Path(d) / "manifest.json").read_text())["status"] == "completed"


def _poison_epoch(monkeypatch, epoch_index: int, times: int = 1):
    """The loss of epoch `epoch_index` (0-based) reads NaN the first `times` times it ends."""
    from dlkit.training import callbacks

    original, left = callbacks.DivergenceGuard.on_epoch_end, {"n": times}

    def poisoned(self, epoch, logs=None):
        if epoch == epoch_index and left["n"] > 0:
            left["n"] -= 1
            logs = {**logs, "loss": float("nan")}
        return original(self, epoch, logs)

    monkeypatch.setattr(callbacks.DivergenceGuard, "on_epoch_end", poisoned)


def test_on_nan_rollback_goes_back_lowers_the_rate_and_says_so(tiny_recipe, tmp_path, monkeypatch):
    from dlkit import models

    overrides = ["train.epochs=3", "train.schedule={name: cosine}", "train.checkpoint_every=null"]
    clean = train(tiny_recipe, overrides, runs_root=tmp_path / "clean")
    _poison_epoch(monkeypatch, 1)
    out = train(tiny_recipe, overrides + ["train.on_nan={action: rollback, lr_factor: 0.25}"],
                runs_root=tmp_path / "rolled")
    assert out["status"] == "completed" and out["epochs_completed"] == 3 and out["rollbacks"] == 1
    run_dir = Path(out["run_dir"])
    (entry,) = json.loads((run_dir / "manifest.json").read_text())["rollbacks"]
    assert entry["diverged_at"] == "epoch 2" and entry["back_to_step"] == 11 and entry["lr_factor"] == 0.25
    rows = (run_dir / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 4 and "rollbacks" in header
    column = [r.split(",")[header.index("rollbacks")] for r in rows[1:]]
    assert column == ["", "1", "1"]  # epoch 1 trained before the rollback, epochs 2 and 3 after it
    lr = [float(r.split(",")[header.index("learning_rate")]) for r in rows[1:]]
    clean_lr = [r["learning_rate"] for r in _history(Path(clean["run_dir"]))]
    assert lr[0] == pytest.approx(clean_lr[0]) and lr[1:] == pytest.approx([0.25 * v for v in clean_lr[1:]])
    # the lower rate is in the checkpoint (a resumed run keeps it), which still loads in safe mode
    optimizer = models.load(run_dir / "checkpoints" / "last.keras").optimizer
    assert type(optimizer.get_config()["learning_rate"]) is dict
    assert optimizer.get_config()["learning_rate"]["config"]["factor"] == 0.25


def _history(run_dir):
    import csv

    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(f)]


def test_on_nan_rollback_gives_up_after_its_times(tiny_recipe, tmp_path, monkeypatch):
    _poison_epoch(monkeypatch, 1, times=5)
    result = cli("train", tiny_recipe, "--runs-root", tmp_path, "--json", "--set", "train.epochs=3",
                 "--set", "train.on_nan={action: rollback, times: 2}")
    assert result.exit_code == 4
    (run_dir,) = (tmp_path / "tiny").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "diverged" and len(manifest["rollbacks"]) == 2
    assert "after 2 rollbacks" in result.stderr


def test_a_weight_turned_nan_under_a_finite_loss_keeps_the_last_good_checkpoint(tiny_recipe, tmp_path, monkeypatch):
    """The check before a checkpoint reads the weights themselves: a step can make one NaN while the loss it
    reported is still finite. At epoch 3's end, its checkpoints by then written in the checkpoint thread from a
    host copy (whose weights are what is checked), a weight is made NaN under a finite loss: the run stops as
    diverged (exit 4) and the last checkpoint stays epoch 2's."""
    from dlkit.training import callbacks

    original, seen = callbacks.CheckpointAndHistory.on_epoch_end, {}

    def poisoned(self, epoch, logs=None):
        if epoch == 2:
            seen["in the thread"] = self.later is not None and self.later.ready
            weight = self.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, weight.dtype))
        return original(self, epoch, logs)

    monkeypatch.setattr(callbacks.CheckpointAndHistory, "on_epoch_end", poisoned)
    result = cli("train", tiny_recipe, "--runs-root", tmp_path, "--json", "--set", "train.epochs=3",
                 "--set", "train.steps_per_epoch=2", "--set", "train.checkpoint_every=null")
    assert result.exit_code == 4, result.output
    assert seen["in the thread"] is True
    (run_dir,) = (tmp_path / "tiny").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "diverged"
    assert len(_history(run_dir)) == 2
    last = keras.saving.load_model(run_dir / "checkpoints" / "last.keras")
    assert all(np.isfinite(w).all() for w in last.get_weights())
    first = keras.saving.load_model(run_dir / "checkpoints" / "previous.keras")  # epoch 1's
    assert int(last.optimizer.iterations.numpy()) == 2 * int(first.optimizer.iterations.numpy()) > 0


def test_a_lowered_rate_is_what_the_next_step_uses():
    """The compiled train function has the rate traced in: a scaled rate must reach the very next step. Two
    twin models take a step; one has its rate halved first; its step is half the other's."""
    from dlkit import optim

    x, y = np.linspace(0, 1, 12, dtype="float32").reshape(4, 3), np.ones((4, 1), "float32")
    for rate in (0.1, keras.optimizers.schedules.CosineDecay(0.1, 100)):
        twins = []
        for _ in range(2):
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="zeros")])
            model.compile(optimizer=keras.optimizers.SGD(rate), loss="mse")
            model.fit(x, y, epochs=1, verbose=0)  # the train function is built and traced
            twins.append(model)
        optim.scale_learning_rate(twins[0].optimizer, 0.5)
        twins[0].make_train_function(force=True)
        steps = []
        for model in twins:
            before = model.get_weights()
            model.fit(x, y, epochs=1, verbose=0)
            steps.append(np.concatenate([(a - b).ravel() for a, b in zip(model.get_weights(), before)]))
        assert np.abs(steps[1]).min() > 1e-3
        np.testing.assert_allclose(steps[0], 0.5 * steps[1], rtol=1e-4), rate
