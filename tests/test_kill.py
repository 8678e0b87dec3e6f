"""The kill harness: a training process is killed with SIGKILL (no handler runs, nothing is flushed) at
chosen points, inside an epoch and inside a checkpoint write, then `dlkit resume` continues it; the final
weights must equal an uninterrupted run's bit for bit. Checkpoints are taken every 3 steps inside epochs
(train.checkpoint_every), so most kills land mid-epoch.

Where a kill lands is chosen by wrapping, in the child process only, a function the checkpoint write calls:
- `written`: the new checkpoint is written and fsynced under its temporary name, nothing renamed yet;
- `rotated`: last.keras has become previous.keras, the new one not yet renamed into place;
- `unvouched`: the new last.keras is in place, checksums.json not yet updated;
- `time`: a plain kill after a delay, wherever training is.
Two kill points run in `make test`, the classifier's `written` and the language model's `rotated`; the slow
suite runs eleven more, a classifier's seven and a GAN's four."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import DATA, ROOT
from dlkit.training.train import resume, train

CHILD = r"""
import os, signal, sys
from pathlib import Path
from dlkit import rundir

stage, nth = sys.argv[1], int(sys.argv[2])
count = {"n": 0}
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

original_save = rundir.PhaseDir._save_checkpoint  # the write itself, in whichever thread writes it
def save_checkpoint(self, *args):
    count["n"] += 1
    return original_save(self, *args)
rundir.PhaseDir._save_checkpoint = save_checkpoint

if stage == "written":
    original_sha = rundir.sha256
    rundir.sha256 = lambda path: die() if count["n"] == nth else original_sha(path)
elif stage == "rotated":
    original_replace = os.replace
    def replace(src, dst):
        if count["n"] == nth and Path(dst).name == "last.keras":
            die()
        return original_replace(src, dst)
    rundir.os.replace = replace
elif stage == "unvouched":
    original_write = rundir.write_atomic
    def write_atomic(path, text):
        if count["n"] == nth and Path(path).name == "checksums.json":
            die()
        return original_write(path, text)
    rundir.write_atomic = write_atomic

from dlkit.cli import app
sys.argv = ["dlkit"] + sys.argv[3:]
app()
"""

CLASSIFIER = f"""
name: killed
seed: 11
data: {{dataset: mnist, dir: {DATA}, limit: 300, test_limit: 50, batch_size: 25}}
model: {{arch: cnn, blocks: [{{filters: 4}}], dense: [16], head_dropout: 0.3}}
train: {{epochs: 3, checkpoint_every: {{steps: 3}}, optimizer: {{name: adam, learning_rate: 0.005}}}}
"""


def gan_recipe(tmp_path):
    from dlkit.data import sources

    a = sources.load_builtin("mnist", str(DATA), allow_download=False)
    data = tmp_path / "digits16.npz"
    np.savez(data, x_train=a.x_train[:128, 6:22, 6:22], y_train=a.y_train[:128])
    return f"""
name: killed_gan
data: {{dataset: npz, path: {data}, scale: symmetric, validation_split: 0, batch_size: 16}}
model: {{arch: dcgan, latent_dim: 8, generator: {{filters: [8, 8]}}, discriminator: {{filters: [8, 8]}}, ema: 0.9}}
train: {{epochs: 2, checkpoint_every: {{steps: 3}}}}
"""


def killed_then_resumed(recipe: Path, runs_root: Path, stage: str, nth: int, epochs: int) -> Path:
    """Train in a child process killed at (stage, nth), then resume (in this process) to the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", CHILD, stage, str(nth), "train", str(recipe), "--runs-root", str(runs_root), "-q"]
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if stage == "time":
        # `nth` tenths of the time between two checkpoints after the first: a moment inside the run on a slow
        # machine or a fast one (a fixed 1.0 s fell after a quiet VM's run had ended)
        def sums():
            found = list(runs_root.glob("*/*/checkpoints/checksums.json"))
            return found[0].stat().st_mtime_ns if found else None

        while sums() is None and child.poll() is None:
            time.sleep(0.005)
        first, start = sums(), time.monotonic()
        while sums() == first and child.poll() is None:
            time.sleep(0.005)
        time.sleep((time.monotonic() - start) * nth / 10)
        child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=600)
    assert child.returncode == -signal.SIGKILL, f"the child was not killed ({child.returncode}): {err[-2000:]}"
    (run,) = runs_root.glob("*/*")
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"  # it never got to say more
    if stage == "written":  # killed with the new checkpoint under its temporary name
        assert [p.name for p in run.rglob(".last-tmp-*.keras")] == [f".last-tmp-{child.pid}.keras"]
    result = resume(run, epochs=epochs)
    assert result["status"] == "completed" and result["epochs_completed"] == epochs
    assert not list(run.rglob(".*"))  # nothing half-written left behind
    return run


def assert_same_weights(a: Path, b: Path):
    for x, y in zip(keras.saving.load_model(a).get_weights(), keras.saving.load_model(b).get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("killed")
    recipe = folder / "killed.yaml"
    recipe.write_text(CLASSIFIER)
    straight = Path(train(recipe, runs_root=folder / "straight")["run_dir"])
    return recipe, straight


@pytest.mark.parametrize("stage,nth", [
    ("written", 6),  # at step 15, inside the second epoch (11 batches an epoch, a checkpoint every 3 steps)
    pytest.param("rotated", 3, marks=pytest.mark.slow),  # at step 9, inside the first epoch
    pytest.param("unvouched", 2, marks=pytest.mark.slow),
    pytest.param("written", 2, marks=pytest.mark.slow),
    pytest.param("rotated", 8, marks=pytest.mark.slow),
    pytest.param("unvouched", 9, marks=pytest.mark.slow),
    pytest.param("time", 3, marks=pytest.mark.slow),
    pytest.param("time", 10, marks=pytest.mark.slow),
], ids=lambda v: str(v))
def test_a_killed_classifier_resumes_bit_for_bit(classifier, tmp_path, stage, nth):
    recipe, straight = classifier
    run = killed_then_resumed(recipe, tmp_path, stage, nth, epochs=3)
    assert_same_weights(straight / "model.keras", run / "model.keras")


@pytest.mark.slow
def test_killed_before_its_first_checkpoint_a_run_says_to_train_again(classifier, tmp_path):
    from dlkit.errors import UsageError

    recipe, _ = classifier
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", CHILD, "written", "1", "train", str(recipe), "--runs-root",
                            str(tmp_path), "-q"], env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL
    (run,) = tmp_path.glob("*/*")
    assert not (run / "checkpoints" / "last.keras").exists()  # the half-made one never took the name
    with pytest.raises(UsageError, match="no intact checkpoint.*no epoch finished.*train the recipe again"):
        resume(run, epochs=3)


@pytest.mark.slow
@pytest.mark.parametrize("stage,nth", [("rotated", 2), ("written", 5), ("time", 4), ("unvouched", 4)])
def test_a_killed_gan_resumes_bit_for_bit(tmp_path, stage, nth):
    recipe = tmp_path / "gan.yaml"
    recipe.write_text(gan_recipe(tmp_path))
    straight = Path(train(recipe, runs_root=tmp_path / "straight")["run_dir"])
    run = killed_then_resumed(recipe, tmp_path / "killed", stage, nth, epochs=2)
    for part in ("generator", "discriminator", "generator_ema"):
        a = getattr(keras.saving.load_model(straight / "model.keras"), part).get_weights()
        b = getattr(keras.saving.load_model(run / "model.keras"), part).get_weights()
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


STATEFUL_LM = f"""
name: killed_lm
seed: 5
data: {{dataset: ptb, dir: {DATA}, level: word, sequence_length: 5, batch_size: 4, shuffle_buffer: 0, limit: 201}}
model: {{arch: rnn_lm, cell: lstm, units: [8], embedding_dim: 8, stateful: true, dropout: 0.2}}
train: {{epochs: 2, checkpoint_every: {{steps: 3}}, optimizer: {{name: sgd, learning_rate: 1.0, global_clipnorm: 1.0}}}}
"""


def test_a_killed_stateful_language_model_resumes_bit_for_bit(tmp_path):
    """Killed at step 6 of 10 in the first epoch: the checkpoint holds the recurrent state the streams had
    reached, and the resumed epoch goes on from it rather than from zero."""
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(STATEFUL_LM)
    straight = Path(train(recipe, runs_root=tmp_path / "straight")["run_dir"])
    run = killed_then_resumed(recipe, tmp_path / "killed", "rotated", 2, epochs=2)
    assert_same_weights(straight / "model.keras", run / "model.keras")
