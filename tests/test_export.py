"""`dlkit export`: a run's model as a SavedModel, ONNX or LiteRT file through Keras's model.export, each
loaded back by its own runtime and checked against the Keras model; nothing a user has is overwritten
unless asked, and a failed check leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlkit.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "data"


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def trained(tiny_run):
    return tiny_run


def _digits(n=5):
    from dlkit.data import sources

    x = sources.load_builtin("mnist", str(DATA), allow_download=False).x_test[:n]
    return x[..., None].astype("float32")  # pixel values, 0 to 255


def test_each_format_is_written_and_gives_the_models_predictions(trained):
    """Each format's file, run by its own runtime outside dlkit, classifies real test digits given as raw
    pixel values (0-255) as the Keras model does the digits scaled as training scaled them (the run's input
    scale is the export's first layer); exports.json keeps each check's figures."""
    import keras

    from dlkit.data.pipeline import scale_from_artifact

    x = _digits()
    a, b = scale_from_artifact(json.loads((trained / "artifacts" / "scale.json").read_text()))
    assert a.tolist() == pytest.approx([1 / 255]) and b.tolist() == [0]  # data.scale: unit
    expected = keras.saving.load_model(trained / "model.keras").predict(x * a + b, verbose=0)
    for fmt in ("saved_model", "onnx", "litert"):
        out = run("export", trained, "--format", fmt, "--json")
        assert out.exit_code == 0, out.stdout + out.stderr
        result = json.loads(out.stdout)
        assert result["format"] == fmt and result["max_abs_diff"] < 1e-4 and result["batch"] is None
    export = trained / "export"
    assert sorted(p.name for p in export.iterdir()) == ["model.onnx", "model.tflite", "saved_model"]  # no scratch

    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    session = onnxruntime.InferenceSession(str(export / "model.onnx"))
    got = {"onnx": session.run(None, {session.get_inputs()[0].name: x})[0]}
    loaded = tf.saved_model.load(str(export / "saved_model"))
    got["saved_model"] = loaded.serve(x).numpy()
    lite = Interpreter(model_path=str(export / "model.tflite"))
    name = lite.get_signature_list()["serving_default"]["inputs"][0]
    got["litert"] = next(iter(lite.get_signature_runner()(**{name: x}).values()))
    for fmt, probabilities in got.items():
        np.testing.assert_allclose(probabilities, expected, atol=1e-5, err_msg=fmt)
        assert (probabilities.argmax(1) == expected.argmax(1)).all()
    records = json.loads((trained / "exports.json").read_text())
    assert set(records) == {"saved_model", "onnx", "litert"}
    assert records["onnx"]["inputs"][0]["shape"] == [None, 28, 28, 1] and records["onnx"]["checked_with"] == "onnxruntime"

    plain = run("export", trained, "--format", "onnx", "--force")
    assert plain.exit_code == 0 and "reloaded with onnxruntime" in plain.stdout


def test_an_existing_export_is_kept_unless_forced_and_a_failed_check_leaves_nothing(trained, tmp_path, monkeypatch):
    from dlkit import export

    target = tmp_path / "mine.onnx"
    target.write_bytes(b"the user's own file")
    refused = run("export", trained, "--format", "onnx", "--out", target)
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert target.read_bytes() == b"the user's own file"

    real = export.reload_outputs
    monkeypatch.setattr(export, "reload_outputs", lambda *a: [o + 0.5 for o in real(*a)])  # a bad converter
    failed = run("export", trained, "--format", "onnx", "--out", target, "--force")
    assert failed.exit_code == 7 and "differs from the Keras model" in failed.stderr
    assert target.read_bytes() == b"the user's own file"  # replaced only by an export that passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.onnx"]  # no scratch left
    monkeypatch.setattr(export, "reload_outputs", real)
    assert run("export", trained, "--format", "onnx", "--out", target, "--force").exit_code == 0
    assert target.read_bytes()[:20] != b"the user's own file"


def test_an_interrupt_as_an_export_replaces_another_keeps_one_of_them(tmp_path):
    """The old export was removed and then the new one moved in: Ctrl-C between the two left neither."""
    from pathlib import Path

    from dlkit import export

    target, written = tmp_path / "model.onnx", tmp_path / "new.onnx"
    target.write_bytes(b"old")
    written.write_bytes(b"new")
    rename = Path.rename

    def cut(self, to):
        if self == written:
            raise KeyboardInterrupt
        return rename(self, to)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "rename", cut)
        with pytest.raises(KeyboardInterrupt):
            export._replace(target, written)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "new.onnx"]
    export._replace(target, written)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_usage_errors(trained, tmp_path, monkeypatch):
    import importlib.util
    import os

    import keras

    assert run("export", trained, "--format", "pickle").exit_code == 2
    wrong = run("export", trained, "--format", "litert", "--out", tmp_path / "model.bin")
    assert wrong.exit_code == 2 and ".tflite" in wrong.stderr
    assert run("export", tmp_path, "--format", "onnx").exit_code == 2  # not a run
    named = run("export", trained, "--out", tmp_path / "model.onnx")  # a SavedModel folder named model.onnx
    assert named.exit_code == 2 and "give --format onnx" in named.stderr and not (tmp_path / "model.onnx").exists()
    latin = run("export", trained, "--out", tmp_path / os.fsdecode(b"r\xfc") / "sm")  # TensorFlow's was exit 7
    assert latin.exit_code == 2 and "not UTF-8" in latin.stderr and "give --out a path elsewhere" in latin.stderr
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else find(name, *a))
    no_tf = run("export", trained, "--format", "onnx", "--out", tmp_path / "x.onnx")
    assert no_tf.exit_code == 2 and "TensorFlow" in no_tf.stderr and not (tmp_path / "x.onnx").exists()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax2onnx" else find(name, *a))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")  # ONNX from JAX is jax2onnx's, not tf2onnx's
    no_jax2onnx = run("export", trained, "--format", "onnx", "--out", tmp_path / "x.onnx")
    assert no_jax2onnx.exit_code == 2 and "KERAS_BACKEND=tensorflow" in no_jax2onnx.stderr


def test_a_recurrent_model_goes_to_litert_at_a_fixed_batch(tmp_path):
    """An LSTM's loop over a batch of any size needs TensorFlow's select ops, which the LiteRT runtime
    lacks: the export falls back to a batch of 1, which lowers to builtin ops, and says so. Token ids and a
    float input side by side reach ONNX by name."""
    import keras

    from dlkit.export import write_checked

    ids = keras.Input((7,), dtype="int32", name="ids")
    extra = keras.Input((3,), name="extra")
    h = keras.layers.LSTM(8)(keras.layers.Embedding(20, 4)(ids))
    model = keras.Model([ids, extra], keras.layers.Dense(2)(keras.layers.Concatenate()([h, extra])))
    lite = write_checked(model, "a toy", "litert", tmp_path / "toy.tflite")
    assert lite["batch"] == 1 and "batch of exactly 1" in lite["notes"][0] and lite["max_abs_diff"] < 1e-4
    onnx = write_checked(model, "a toy", "onnx", tmp_path / "toy.onnx")
    assert onnx["batch"] is None and [i["name"] for i in onnx["inputs"]] == ["ids", "extra"]


def test_a_stateful_language_model_exports_its_stateless_twin(tmp_path):
    """Was exit 7 in every format: the stateful model's export carried its state from call to call (and ONNX's
    converter logged a traceback dropping the state's assignments), so it never gave the model's outputs. The
    export is the model's stateless twin: the trained weights, each call's windows read from a zero state."""
    import keras
    import tensorflow as tf

    from dlkit.training.train import train

    (tmp_path / "lm.yaml").write_text(f"""
name: lm
data: {{dataset: ptb, dir: {DATA}, sequence_length: 5, batch_size: 4, shuffle_buffer: 0, level: word}}
model: {{arch: rnn_lm, cell: lstm, units: [8], embedding_dim: 4, stateful: true}}
train: {{epochs: 1, steps_per_epoch: 3}}
""")
    run_dir = Path(train(tmp_path / "lm.yaml", runs_root=tmp_path / "runs")["run_dir"])
    out = run("export", run_dir, "--json")
    assert out.exit_code == 0, out.output
    written = json.loads(out.stdout)
    assert "stateless" in written["model"] and written["inputs"][0]["shape"] == [None, None]
    stateful = keras.saving.load_model(run_dir / "model.keras")
    ids = np.random.default_rng(0).integers(2, 50, (4, 5)).astype("int32")  # the model's own batch of 4
    from_zero = keras.ops.convert_to_numpy(stateful(ids))
    carried = keras.ops.convert_to_numpy(stateful(ids))  # the same windows after the first call's state
    assert np.abs(carried - from_zero).max() > 1e-4
    served = tf.saved_model.load(written["path"])
    for _ in range(2):  # the same answer each time: no state carried from call to call
        np.testing.assert_allclose(served.serve(ids).numpy(), from_zero, atol=1e-5)
    assert served.serve(ids[:1]).shape == (1, 5, from_zero.shape[-1])  # any batch size


def test_what_each_task_exports():
    """GANs export the generator, VAEs the decoder; an RBM says why it has none (a translation model's greedy
    search: tests/test_translation.py)."""
    from types import SimpleNamespace

    from dlkit.errors import UsageError
    from dlkit.tasks import TASKS

    model = SimpleNamespace(sampler="G", decoder="D", generator_ab="AB", generator_ba="BA")
    run_ = SimpleNamespace(root=Path("runs/x"), artifact=lambda name: Path("runs/x/artifacts/none.json"))
    recipe = SimpleNamespace(model=SimpleNamespace(arch="cnn"))
    assert TASKS["adversarial"].exported(run_, recipe, model)[0] == "G"
    assert TASKS["variational"].exported(run_, recipe, model)[0] == "D"
    assert TASKS["translation"].exported(run_, recipe, model)[0] == "AB"
    assert TASKS["translation"].exported(run_, recipe, model, domain="B") == ("BA", "the B-to-A generator")
    assert TASKS["classification"].exported(run_, recipe, model)[0] is model
    with pytest.raises(UsageError):
        TASKS["boltzmann"].exported(run_, recipe, model)


def test_a_mixed_precision_model_goes_to_litert_in_float32(tmp_path):
    """LiteRT's builtin runtime refuses a model that computes in 16 bits (exit 7 was all a mixed-precision run
    got); the export is a float32 copy with the same weights, and says how far its outputs are from the run's."""
    import keras

    from dlkit import export
    from dlkit.data.spec import DataSpec
    from dlkit.models import cnn

    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        mixed = cnn.build(cnn.Config(blocks=[cnn.ConvBlock(filters=2)], dense=[4]),
                          DataSpec(input_shape=(8, 8, 1), num_classes=3, num_train=10))
        copy = export._in_float32(mixed)
    finally:
        keras.config.set_dtype_policy("float32")
    assert export._mixed(mixed) and not export._mixed(copy)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    for a, b in zip(mixed.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert 0 < export._difference(mixed, copy) < 1e-2  # 16-bit rounding, and no more
    record = export.write_checked(copy, "its copy", "litert", tmp_path / "model.tflite", ["in float32"])
    assert record["max_abs_diff"] < 1e-5 and record["notes"] == ["in float32"]
    assert (tmp_path / "model.tflite").is_file()
