"""The deep belief net (task `dbn`): RBMs pretrained phase by phase, each on the layer below's activities,
then fine-tuned as a classifier started from their weights; a run stopped inside a pretraining phase
resumes there and ends where an uninterrupted one does, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA, ROOT, straight_run
from dlkit.cli import app


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


TINY_DBN = f"""
name: tiny_dbn
seed: 3
data: {{dataset: mnist, dir: {DATA}, limit: 300, test_limit: 100, batch_size: 50, scale: unit}}
model: {{arch: dbn, layers: [24, 16], top_labels: true}}
train:
  pretrain_epochs: 2
  pretrain_optimizer: {{name: sgd, learning_rate: 0.05, momentum: 0.5}}
  epochs: 4
  optimizer: {{name: adam, learning_rate: 0.02}}
"""


straight = straight_run(TINY_DBN)


def test_dbn_pretrains_each_layer_then_fine_tunes(straight):
    run = Path(straight["run_dir"])
    assert list(straight["phases"]) == ["rbm1", "rbm2", "finetune"]
    phases = straight["phases"]
    assert phases["rbm1"]["epochs_completed"] == 2 and "reconstruction_error" in phases["rbm2"]["final"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["phases"] == ["rbm1", "rbm2", "finetune"] and manifest["phases_completed"] == ["rbm1", "rbm2"]
    rbm1 = keras.saving.load_model(run / "phases" / "rbm1" / "model.keras")
    rbm2 = keras.saving.load_model(run / "phases" / "rbm2" / "model.keras")
    assert (rbm1.visible, rbm1.hidden) == (784, 24)
    assert (rbm2.visible, rbm2.hidden) == (24 + 10, 16)  # the top RBM sees the labels too
    assert (run / "phases" / "rbm1" / "filters.png").is_file()
    assert 0.3 < straight["test"]["accuracy"] <= 1 and (run / "confusion_matrix.png").is_file()  # chance is 0.1
    ev = cli("evaluate", run, "--json")
    assert ev.exit_code == 0 and json.loads(ev.stdout)["metrics"]["accuracy"] == straight["test"]["accuracy"]
    gen = cli("generate", run, "-n", "4", "--label", "3", "--json")
    assert gen.exit_code == 0, gen.output
    assert Path(json.loads(gen.stdout)["out"]).name == "samples-seed0-label3.png"
    each = cli("generate", run, "-n", "20", "--out-dir", run / "each", "--json")  # a folder per class learnt
    assert each.exit_code == 0, each.output
    assert sorted(p.relative_to(run / "each").as_posix() for p in (run / "each").rglob("*.png")) == \
        sorted(f"{i % 10}/{i:05d}.png" for i in range(20))


def test_a_dbn_is_measured_on_a_labelled_folder_as_any_image_classifier(straight, tmp_path):
    """evaluate --data: the fine-tuned net reads class folders of images, in the unit scale it trained in; its
    own test digits written as PNGs measure as its test split."""
    import shutil

    from PIL import Image

    from dlkit.data import sources

    run = shutil.copytree(straight["run_dir"], tmp_path / "run")  # the shared run stays as it was
    a = sources.load_builtin("mnist", str(DATA), allow_download=False)
    for i in range(100):  # TINY_DBN's test split: the first 100 test digits
        (tmp_path / "digits" / str(a.y_test[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.x_test[i]).save(tmp_path / "digits" / str(a.y_test[i]) / f"{i}.png")
    ev = cli("evaluate", run, "--data", tmp_path / "digits", "--json")
    assert ev.exit_code == 0, ev.output
    ev = json.loads(ev.stdout)
    assert ev["task"] == "dbn" and ev["examples"] == 100
    for k, v in straight["test"].items():
        assert ev["metrics"][k] == pytest.approx(v, abs=1e-5), k


def test_the_unrolled_net_starts_from_the_rbms(write_recipe, tmp_path):
    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    recipe = load_recipe(write_recipe(TINY_DBN))
    session = Session.open(recipe)
    phases = session.task.phases(recipe)
    earlier = {}
    for phase in phases[:-1]:
        earlier[phase.name] = session.model(phase, earlier)
    net = session.model(phases[-1], earlier)
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense[0].kernel),
                                  keras.ops.convert_to_numpy(earlier["rbm1"].kernel))
    # the top RBM's label rows do not feed forward
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense[1].kernel),
                                  keras.ops.convert_to_numpy(earlier["rbm2"].kernel)[:24])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense[1].bias),
                                  keras.ops.convert_to_numpy(earlier["rbm2"].hidden_bias))
    random = load_recipe(write_recipe(TINY_DBN, "random.yaml"), ["model.pretrain=false"])
    assert [p.name for p in Session.open(random).task.phases(random)] == ["finetune"]


def test_a_fine_tuning_recipe_error_is_said_before_pretraining(write_recipe, tmp_path):
    """Was said after every RBM had trained, and left their half-made run behind: the fine-tuning net is
    built and compiled (and thrown away) with the first RBM, before the run directory exists."""
    recipe = write_recipe(TINY_DBN + "  metrics: [categorical_accuracy]\n")
    out = cli("train", recipe, "--runs-root", tmp_path / "runs")
    assert out.exit_code == 2, out.output
    assert f"{recipe}:11: train.metrics.0: 'categorical_accuracy' reads one-hot targets" in out.stderr
    assert "epoch 1/" not in out.output and not (tmp_path / "runs").exists()


def test_a_misspelt_fine_tuning_monitor_is_said_before_pretraining(write_recipe, tmp_path):
    """The fine-tuning's monitor names a value of its net's logs, not of an RBM's: said with the names it will
    log, before any RBM trains (it was said after the first fine-tuning epoch)."""
    recipe = write_recipe(TINY_DBN + "  early_stopping: {monitor: acuracy, mode: max}\n")
    out = cli("train", recipe, "--runs-root", tmp_path / "runs")
    assert out.exit_code == 2, out.output
    assert (f"{recipe}:11: train.early_stopping.monitor: 'acuracy' is not a value the epochs will log (loss, "
            "accuracy" in out.stderr), out.stderr
    assert "epoch 1/" not in out.output and not (tmp_path / "runs").exists()


def test_checking_the_later_phases_leaves_their_starting_weights_alone(write_recipe, monkeypatch):
    """The check builds models, which draws from the random streams and uses up layer names: both are put back,
    so each later phase starts from the weights, and has the names, it had without the check."""
    import contextlib

    from dlkit import keras_private
    from dlkit.tasks import load_recipe
    from dlkit.training import train
    from dlkit.training.session import Session

    recipe = load_recipe(write_recipe(TINY_DBN), ["model.dropout=0.2"])

    def later(first):
        keras.backend.clear_session()  # the layer names' count starts again
        session = Session.open(recipe)
        phases = session.task.phases(recipe)
        earlier = {phases[0].name: first(session, phases)}
        for phase in phases[1:]:
            earlier[phase.name] = session.model(phase, earlier)
        models = [earlier[p.name] for p in phases[1:]]
        return ([w.path for m in models for w in m.weights],
                [keras.ops.convert_to_numpy(w) for m in models for w in m.weights])

    names, weights = later(lambda session, phases: session.model(phases[0]))
    checked_names, checked = later(train._first_model)
    assert checked_names == names
    for a, b in zip(weights, checked, strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(keras_private, "global_state_kept", contextlib.nullcontext)
    moved_names, moved = later(train._first_model)  # the same check, leaving what it used up
    assert moved_names != names and any(not np.array_equal(a, b) for a, b in zip(weights, moved, strict=True))


def test_a_dbn_stopped_in_a_pretraining_phase_resumes_there(straight, write_recipe, tmp_path, monkeypatch):
    from dlkit.training import callbacks

    recipe = write_recipe(TINY_DBN)
    original = callbacks.CheckpointAndHistory.on_epoch_end
    seen = []

    def stop_in_rbm2(self, epoch, logs=None):
        original(self, epoch, logs)
        seen.append(self.where.root.name)
        if self.where.root.name == "rbm2":
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.CheckpointAndHistory, "on_epoch_end", stop_in_rbm2)
    stopped = cli("train", recipe, "--runs-root", tmp_path / "b", "--json", "-q")
    assert stopped.exit_code == 130 and seen == ["rbm1", "rbm1", "rbm2"]
    run = Path(json.loads(stopped.stdout)["run_dir"])
    monkeypatch.setattr(callbacks.CheckpointAndHistory, "on_epoch_end", original)
    out = cli("resume", run, "--json", "-q")
    assert out.exit_code == 0, out.output
    resumed = json.loads(out.stdout)
    assert resumed["resumed_from_epoch"] == 1 and list(resumed["phases"]) == ["rbm2", "finetune"]
    assert json.loads((run / "manifest.json").read_text())["resumed"][0]["phase"] == "rbm2"
    for name in ("phases/rbm2/model.keras", "model.keras"):
        a = keras.saving.load_model(Path(straight["run_dir"]) / name).get_weights()
        b = keras.saving.load_model(run / name).get_weights()
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)



def test_a_dbn_says_what_reading_its_data_did_once(tmp_path):
    """Each phase trains on the same data: its notes (here, the rows data.missing left out) are printed once
    a run, not once a phase."""
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{int(a > b)}" for a, b in rng.uniform(size=(60, 2))] + [",0.5,1"]
    (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "r.yaml").write_text(
        f"name: t\ndata: {{dataset: csv, path: {tmp_path / 't.csv'}, missing: drop, scale: unit}}\n"
        "model: {arch: dbn, layers: [4]}\ntrain: {pretrain_epochs: 1, epochs: 1}\n")
    out = cli("train", tmp_path / "r.yaml", "--runs-root", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    assert "phase 2/2: finetune" in out.output and out.output.count("data.missing: drop left out 1 of 61") == 1



def test_a_dbn_of_feature_vectors_says_it_draws_images_only():
    from types import SimpleNamespace

    from dlkit.errors import UsageError
    from dlkit.tasks import TASKS, load_recipe
    from dlkit.tasks.base import GenerateRequest

    # a DBN trained on an npz of (N, 7) rows: its samples' picture was a traceback
    recipe = load_recipe(ROOT / "recipes" / "dbn_mnist.yaml")
    with pytest.raises(UsageError, match=r"this DBN learnt feature vectors \(7,\)"):
        TASKS["dbn"].generate(None, recipe, SimpleNamespace(input_shape=(None, 7)), None, GenerateRequest(n=4))
