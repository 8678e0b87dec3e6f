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

from conftest import ROOT
from dlkit.cli import app
from dlkit.errors import UsageError
from dlkit.rundir import RunDir
from dlkit.training.train import resume, train


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def weights(path):
    return keras.saving.load_model(path).get_weights()


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tiny_recipe, tmp_path):
    dropout = ["model.head_dropout=0.3"]  # the random streams must come back from the fallback's sidecar too
    straight = train(tiny_recipe, ["train.epochs=3", *dropout], runs_root=tmp_path / "a")
    run = RunDir(train(tiny_recipe, ["train.epochs=2", *dropout], runs_root=tmp_path / "b")["run_dir"])
    assert run.previous_checkpoint.is_file() and run.rng_sidecar(run.previous_checkpoint).is_file()
    data = bytearray(run.last_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: bit rot, or a write cut short
    run.last_checkpoint.write_bytes(bytes(data))
    out = cli("resume", run.root, "--epochs", "3", "--json")
    assert out.exit_code == 0, out.output
    assert f"{run.last_checkpoint} is damaged" in " ".join(out.stderr.split())
    assert f"resuming from {run.previous_checkpoint}" in " ".join(out.stderr.split())
    assert json.loads(out.stdout)["resumed_from_epoch"] == 1
    for a, b in zip(weights(Path(straight["run_dir"]) / "model.keras"), weights(run.model), strict=True):
        np.testing.assert_array_equal(a, b)
    # both damaged: nothing to resume, said plainly
    for path in (run.last_checkpoint, run.previous_checkpoint):
        path.write_bytes(b"broken")
    with pytest.raises(UsageError, match="no intact checkpoint.*damaged"):
        resume(run.root, epochs=5)


def test_a_live_run_is_locked_and_a_dead_trainers_lock_is_taken_over(tiny_recipe, tmp_path):
    run = RunDir(train(tiny_recipe, ["train.epochs=1"], runs_root=tmp_path)["run_dir"])
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
