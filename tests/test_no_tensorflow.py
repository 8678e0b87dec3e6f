"""dlkit on a host without TensorFlow (a JAX-only GPU machine): the numpy pipeline, Pillow image decoding,
and the whole train / interrupt / resume / evaluate cycle under JAX with `import tensorflow` failing."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

import keras
from conftest import ROOT, no_tensorflow_env
from dlkit import backend
from dlkit.cli import app
from dlkit.data import pipeline, sources
from dlkit.errors import RecipeError
from dlkit.tasks import load_recipe


def _batches(ds):
    """Every (x, y) batch of one pass, as numpy, from a tf.data.Dataset, a Grain dataset or an ArrayBatches."""
    if hasattr(ds, "as_numpy_iterator"):
        return list(ds.as_numpy_iterator())
    if not hasattr(ds, "on_epoch_begin"):  # Grain's
        return list(ds)
    ds.on_epoch_begin()
    return [ds[i] for i in range(len(ds))]


def _arrays(n=70):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
    return sources.Arrays(x, np.arange(n) % 3, x[:20], np.arange(20) % 3, ["a", "b", "c"], "test")


def test_numpy_pipeline_matches_tf_data(tiny_recipe, monkeypatch):
    """The same splits, batches, scaling and labels as tf.data, and the same training order: epoch e visits
    the examples in one permutation drawn from (seed, e), on either pipeline; from any (epoch, batch) the
    feed gives what an uninterrupted run sees from there; evaluation splits keep their order."""
    cfg = load_recipe(tiny_recipe, ["data.batch_size=16", "data.scale=symmetric"]).data
    tf_data = pipeline.build(_arrays(), cfg, seed=3)
    monkeypatch.setattr(backend, "tensorflow", lambda: None)
    np_data = pipeline.build(_arrays(), cfg, seed=3)
    assert isinstance(tf_data.feed, pipeline.TFFeed) and isinstance(np_data.feed, pipeline.ArrayFeed)

    for split in ("val", "test"):
        a, b = _batches(getattr(tf_data, split)), _batches(getattr(np_data, split))
        assert [len(x) for x, _ in a] == [len(x) for x, _ in b]
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_allclose(xa, xb, rtol=1e-6)
            np.testing.assert_array_equal(ya, yb)

    def epochs(feed, first, count, cap=None):
        """`count` epochs' batches from epoch `first`, as numpy."""
        ds, steps = feed.epochs(first, cap), feed.batches(cap)
        if not hasattr(ds, "on_epoch_begin"):  # tf.data or Grain: one endless stream
            it = ds.as_numpy_iterator() if hasattr(ds, "as_numpy_iterator") else iter(ds)
            return [next(it) for _ in range(count * steps)]
        return [ds[i] for i in range(count * steps)]  # a PyDataset: an endless one, by position

    tf_batches, np_batches = epochs(tf_data.feed, 0, 2), epochs(np_data.feed, 0, 2)
    assert len(tf_batches) == len(np_batches) == 2 * 4  # 50 examples in batches of 16: 4 a epoch
    for (xa, ya), (xb, yb) in zip(tf_batches, np_batches):
        np.testing.assert_allclose(xa, xb, rtol=1e-6)
        np.testing.assert_array_equal(ya, yb)
    first, second = (np.concatenate([x for x, _ in tf_batches[k:k + 4]]) for k in (0, 4))
    assert first.dtype == np.float32 and first.min() >= -1 and first.max() <= 1
    key = lambda x: np.sort(x.reshape(len(x), -1).sum(1))  # noqa: E731
    np.testing.assert_allclose(key(first), key(second), rtol=1e-5)  # the same examples
    assert not np.array_equal(first, second)  # in a new order
    # a rerun sees the same; a resume at epoch 1, or inside it at its third batch, sees what follows
    np.testing.assert_array_equal(epochs(pipeline.build(_arrays(), cfg, seed=3).feed, 1, 1)[0][0], np_batches[4][0])
    for feed, batches in ((tf_data.feed, tf_batches), (np_data.feed, np_batches)):
        rest = _batches(feed.rest(1, 2, None))
        assert len(rest) == 2 and np.array_equal(rest[0][0], batches[6][0]) and np.array_equal(rest[1][1], batches[7][1])
    # fit hands the model these batches, from Grain's threads, or where Grain is not installed from the
    # loop's own thread through Keras's PyDataset machinery, without its worker threads (they fetched most of
    # an epoch after its on_epoch_end had set the next epoch's order). Before the first epoch fit peeks at a
    # batch to build the model and resets its iterator, which calls on_epoch_end: that once moved the
    # PyDataset's epoch on, and a run's first epoch was drawn in epoch 1's order
    from keras.src.trainers.epoch_iterator import EpochIterator

    def through_fit(ds, steps, count):
        it = EpochIterator(x=ds, steps_per_epoch=steps, shuffle=False)
        for _, _, _ in it:  # Trainer._symbolic_build
            break
        it.reset()
        return [batch for _ in range(count) for _, _, batches in it for batch in batches]

    with monkeypatch.context() as m:
        m.setattr(pipeline, "_grain", lambda: None)
        in_loop = pipeline.build(_arrays(), cfg, seed=3).feed.epochs(0, None)
    assert in_loop.workers == 1 and not in_loop.use_multiprocessing  # Keras then makes them in the loop's thread
    for ds in (np_data.feed.epochs(0, None), in_loop):
        for (xa, ya), (xb, yb) in zip(through_fit(ds, 4, 2), np_batches, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # train.steps_per_epoch caps each epoch, which then starts on its own order
    capped = epochs(np_data.feed, 0, 2, cap=2)
    assert len(capped) == 4 and np.array_equal(capped[2][0], np_batches[4][0])
    # augmented: each batch's random transforms are drawn from the seed and the batch's position, so Grain's
    # threads, the loop's own thread (no Grain) and a run resumed inside an epoch see the same batches
    aug = load_recipe(tiny_recipe, ["data.batch_size=16", "data.scale=symmetric",
                                    "data.augment={flip: horizontal, translation: 0.3}"]).data
    ahead = epochs(pipeline.build(_arrays(), aug, seed=3).feed, 0, 2)
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_grain", lambda: None)
        in_loop = epochs(pipeline.build(_arrays(), aug, seed=3).feed, 0, 2)
    for (xa, ya), (xb, yb), (_, y) in zip(ahead, in_loop, np_batches, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, y)
        np.testing.assert_array_equal(yb, y)
    rest = _batches(pipeline.build(_arrays(), aug, seed=3).feed.rest(1, 2, None))
    np.testing.assert_array_equal(rest[0][0], ahead[6][0])
    assert all(not np.allclose(a, b) for (a, _), (b, _) in zip(ahead, np_batches))  # augmented, every batch
    # on a JAX accelerator (here one pretended: JAX's CPU device) the split stays on the device and each
    # batch is gathered, cast and scaled there: the same batches, from any position, and no worker threads
    monkeypatch.setattr(backend, "accelerator_memory", lambda: 2**30)
    on_device = pipeline.build(_arrays(), cfg, seed=3).feed
    assert on_device.fits_device() and on_device.epochs(0, None).device is not None
    for (xa, ya), (xb, yb) in zip(epochs(on_device, 0, 2), np_batches, strict=True):
        assert type(xa).__module__.startswith("jax")
        np.testing.assert_allclose(np.asarray(xa), xb, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(ya), yb)
    rest = _batches(on_device.rest(1, 2, None))
    np.testing.assert_allclose(np.asarray(rest[0][0]), np_batches[6][0], rtol=1e-6)
    # a split over a quarter of the device's memory, or an augmented one, is batched on the host
    need = np_data.splits.x_train.nbytes + np_data.splits.y_train.nbytes
    monkeypatch.setattr(backend, "accelerator_memory", lambda: 4 * need - 4)
    assert not pipeline.build(_arrays(), cfg, seed=3).feed.fits_device()
    monkeypatch.setattr(backend, "accelerator_memory", lambda: 4 * need)
    assert pipeline.build(_arrays(), cfg, seed=3).feed.fits_device()
    # (an augmented split on the device: test_augmented_split_on_a_jax_device_matches_the_host)


DEVICE_AUGMENT = """
import json, sys
import numpy as np
sys.path.insert(0, "tests")
from dlkit import backend
from dlkit.data import pipeline
from dlkit.tasks import load_recipe
from test_no_tensorflow import _arrays

out = {}
cfg = load_recipe(__import__("pathlib").Path(sys.argv[1]), ["data.batch_size=16", "data.scale=symmetric",
                  "data.augment={flip: horizontal, translation: 0.3, rotation: 0.1}"]).data
def take(feed, epoch, skip, count):
    it = iter(feed.rest(epoch, skip, None))
    return [tuple(np.asarray(v) for v in next(it)) for _ in range(count)]
built = pipeline.build(_arrays(), cfg, seed=3)
host = built.feed
backend.accelerator_memory = lambda: 2**30  # JAX's CPU device stands in for an accelerator
on_device = pipeline.build(_arrays(), cfg, seed=3)
device = on_device.feed
# the test split (20 examples: a short last batch) kept on the device too, its batches the host's
evals = [(built.test[i], on_device.test[i]) for i in range(len(built.test))]
out["eval_types"] = sorted({type(v).__module__.split(".")[0].removesuffix("lib") for _, d in evals for v in d})
out["eval"] = len(evals) == 2 and all(np.array_equal(h[1], np.asarray(d[1])) and
                                      float(np.abs(h[0] - np.asarray(d[0])).max()) < 1e-6 for h, d in evals)
assert device.fits_device() and device.epochs(0, None).device is not None
out.update(types=sorted({type(v).__module__.split(".")[0].removesuffix("lib") for v in device.epochs(0, None)[0]}))
pairs = [(take(host, e, s, 4 - s), take(device, e, s, 4 - s)) for e, s in ((0, 0), (1, 0), (1, 2))]
out["x"] = max(float(np.abs(a[0] - b[0]).max()) for h, d in pairs for a, b in zip(h, d, strict=True))
out["y"] = all(np.array_equal(a[1], b[1]) for h, d in pairs for a, b in zip(h, d, strict=True))
out["moved"] = min(float(np.abs(a[0] - p[0]).mean()) for a, p in zip(pairs[0][1], take(
    pipeline.build(_arrays(), load_recipe(__import__("pathlib").Path(sys.argv[1]),
                   ["data.batch_size=16", "data.scale=symmetric"]).data, seed=3).feed, 0, 0, 4)))
if sys.argv[3:] == ["runs"]:  # and a whole run, augmented, on the device and on the host (Grain's threads)
    from dlkit.training.train import train
    sets = ["train.epochs=1", "data.limit=300", "data.augment={flip: horizontal, translation: 0.2}"]
    on_device = train(sys.argv[1], sets, runs_root=sys.argv[2] + "/device")["test"]["loss"]
    backend.accelerator_memory = lambda: None
    out["losses"] = [on_device, train(sys.argv[1], sets, runs_root=sys.argv[2] + "/host")["test"]["loss"]]
print(json.dumps(out))
"""


def _device_augment(tiny_recipe, tmp_path, *extra) -> dict:
    out = subprocess.run([sys.executable, "-c", DEVICE_AUGMENT, str(tiny_recipe), str(tmp_path), *extra],
                         env=no_tensorflow_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["types"] == ["jax"]  # the batch is made on the device
    assert got["eval_types"] == ["jax"] and got["eval"]  # and an evaluation split's, as the host makes it
    assert got["x"] < 1e-5 and got["y"]  # the same augmented batches (on the host made by Grain's threads)
    assert got["moved"] > 0.01  # and they are augmented: every batch differs from the plain one
    return got


def test_augmented_split_on_a_jax_device_matches_the_host(tiny_recipe, tmp_path):
    """Under JAX an augmented split is kept on the device too: one compiled function gathers, augments
    (with the batch's own seed) and scales each batch, and gives what the host path gives, from any position.
    A test split is kept there as well, and read in the host's batches."""
    _device_augment(tiny_recipe, tmp_path)


@pytest.mark.slow  # two more trainings in the JAX process; `make test` compares the batches they are fed
def test_an_augmented_run_on_a_jax_device_trains_as_on_the_host(tiny_recipe, tmp_path):
    """A whole run, augmented, on the device and on the host (Grain's threads) ends with the same test loss."""
    on_device, on_host = _device_augment(tiny_recipe, tmp_path, "runs")["losses"]
    assert on_device == on_host


def test_numpy_pipeline_augments_and_pairs_two_domains(tiny_recipe, monkeypatch):
    monkeypatch.setattr(backend, "tensorflow", lambda: None)
    cfg = load_recipe(tiny_recipe, ["data.batch_size=8", "data.augment={flip: horizontal}"]).data
    data = pipeline.build(_arrays(), cfg, seed=0)
    x, _ = _batches(data.train)[0]
    assert x.shape == (8, 6, 6, 1) and x.dtype == np.float32
    flat = sources.Arrays(np.zeros((10, 4), np.float32), np.zeros(10, int), None, None, ["a"], "flat")
    with pytest.raises(RecipeError, match="augmentation needs images"):
        pipeline.build(flat, cfg, seed=0)

    two = load_recipe(tiny_recipe, ["data.batch_size=8", "data.validation_split=0"]).data
    a, b = pipeline.build(_arrays(40), two, seed=0), pipeline.build(_arrays(24), two, seed=1)
    pair = lambda a, b: ((a[0], b[0]), (a[1], b[1]))  # noqa: E731
    paired = pipeline.zipped(a.train, b.train, pair)
    assert len(paired) == 3  # as long as the shorter domain
    (xa, xb), (ya, yb) = _batches(paired)[0]
    assert xa.shape == xb.shape == (8, 6, 6, 1) and ya.shape == yb.shape == (8,)
    # training takes both domains from Grain's threads, zipped: what each domain's own feed gives
    ahead = pipeline.PairedFeed(a.feed, b.feed, pair).epochs(0, None)
    it, steps = iter(ahead), 3
    one, other = _batches(a.feed.rest(0, 0, steps)) + _batches(a.feed.rest(1, 0, steps)), \
        _batches(b.feed.rest(0, 0, steps)) + _batches(b.feed.rest(1, 0, steps))
    for (xa1, ya1), (xb1, yb1) in zip(one, other, strict=True):
        (xa, xb), (ya, yb) = next(it)
        for got, want in ((xa, xa1), (xb, xb1), (ya, ya1), (yb, yb1)):
            np.testing.assert_array_equal(got, want)


def test_image_folders_decode_with_pillow_as_with_tensorflow(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(1)
    for cls, mode, shape in (("gray", "L", (9, 7)), ("colour", "RGB", (9, 7, 3))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / cls / f"{i}.png")
    with_tf = {c: sources.read_image(tmp_path / c / "0.png", None) for c in ("gray", "colour")}
    (tmp_path / "not-an-image.png").write_bytes(b"not a png")  # TensorFlow's reason, without its op's graph node
    reason = r"not-an-image.png: Unknown image file format\. One of JPEG.* required\.$"
    with pytest.raises(sources.DataError, match=reason):
        sources.read_image(tmp_path / "not-an-image.png", None)
    monkeypatch.setattr(backend, "tensorflow", lambda: None)
    for c in ("gray", "colour"):
        np.testing.assert_array_equal(sources.read_image(tmp_path / c / "0.png", None), with_tf[c])
    assert sources.read_image(tmp_path / "colour" / "0.png", [4, 5]).shape == (4, 5, 3)
    (tmp_path / "gray" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(sources.DataError, match="cannot decode image .*bad.png"):
        sources.read_image(tmp_path / "gray" / "bad.png", None)


def _dlkit(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "dlkit.cli", *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert not check or out.returncode == 0, out.stderr[-3000:]
    return out


def test_train_interrupt_resume_and_evaluate_without_tensorflow(tiny_recipe, tmp_path):
    """Under JAX with no TensorFlow: a resumed run ends with the same weights as an uninterrupted one (its
    batches augmented, from Grain's threads), SIGTERM
    stops a run between steps (exit 130, marked interrupted), and evaluate reads the test split. The first
    process compiles the steps into dlkit's compilation cache, and the later ones read them from there."""
    env = no_tensorflow_env(tmp_path)
    cache = tmp_path / "compiled"  # this test's own, not the session's: what each process adds is its own
    env["DLKIT_COMPILATION_CACHE"] = str(cache)

    def steps():
        return sorted(p.name for p in cache.glob("jit_*_step-*-cache"))
    # augmented: Grain's threads make the batches ahead, each with its own seeds (no TensorFlow, JAX on CPU)
    common = [str(tiny_recipe), "-q", "--json", "-s", "model.head_dropout=0.3", "-s", "data.augment={flip: horizontal}"]
    straight = json.loads(_dlkit(env, "train", *common, "--runs-root", str(tmp_path / "a"),
                                 "-s", "train.epochs=2").stdout)
    first = json.loads(_dlkit(env, "train", *common, "--runs-root", str(tmp_path / "b"),
                              "-s", "train.epochs=1").stdout)
    compiled = steps()
    assert any("train_step" in name for name in compiled) and any("test_step" in name for name in compiled)
    manifest = json.loads((Path(first["run_dir"]) / "manifest.json").read_text())
    assert manifest["backend"] == "jax" and manifest["tensorflow"] is None
    assert manifest["compilation_cache"] == str(cache)
    assert manifest["jax"] == jax.__version__
    elsewhere = tmp_path / "copied" / "tiny" / Path(first["run_dir"]).name  # the run, brought to a TensorFlow host
    shutil.copytree(first["run_dir"], elsewhere)
    same = _dlkit(env, "resume", first["run_dir"], "--epochs", "2", "--json")
    resumed = json.loads(same.stdout)
    assert resumed["epochs_completed"] == 2 and "resumes on" not in same.stderr
    entry = json.loads((Path(first["run_dir"]) / "manifest.json").read_text())["resumed"][0]
    assert entry["backend"] == "jax" and entry["device"] == manifest["device"]

    # resumed on the other backend: it trains on, says its numbers are not those of one backend, and the
    # manifest and the report say where each session ran
    there = CliRunner().invoke(app, ["resume", str(elsewhere), "--epochs", "2", "--json"])
    assert there.exit_code == 0, there.stderr
    assert "was trained on jax" in there.stderr and "resumes on tensorflow" in there.stderr
    entry = json.loads((elsewhere / "manifest.json").read_text())["resumed"][0]
    assert entry["backend"] == "tensorflow" and entry["tensorflow"] and entry["jax"] is None
    assert CliRunner().invoke(app, ["report", str(elsewhere), "-q"]).exit_code == 0
    page = (elsewhere / "report.html").read_text()
    assert "<h2>Resumed</h2>" in page and "<td>tensorflow</td>" in page and "<td>ended</td>" in page
    a = keras.saving.load_model(Path(straight["run_dir"]) / "model.keras", compile=False).get_weights()
    b = keras.saving.load_model(Path(resumed["run_dir"]) / "model.keras", compile=False).get_weights()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # epoch 2's checkpoint, written in the checkpoint thread from the state copied off JAX's arrays, is the model
    last = keras.saving.load_model(Path(straight["run_dir"]) / "checkpoints" / "last.keras", compile=False)
    for x, y in zip(a, last.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)

    report = json.loads(_dlkit(env, "evaluate", straight["run_dir"], "--json").stdout)
    assert report["examples"] == 200
    assert steps() == compiled  # the same programs in three more processes: read, not compiled and kept again
    assert report["metrics"]["accuracy"] == pytest.approx(straight["test"]["accuracy"], abs=1e-6)

    proc = subprocess.Popen([sys.executable, "-m", "dlkit.cli", "train", *common, "--runs-root", str(tmp_path / "c"),
                             "-s", "train.epochs=100000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("c/tiny/*/checkpoints/last.keras")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    run = next(tmp_path.glob("c/tiny/*"))
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert json.loads(out)["status"] == "interrupted"


def test_compilation_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    """DLKIT_COMPILATION_CACHE names the folder or turns the cache off; by default it is the user's cache
    folder's dlkit/jax. A folder that cannot be made leaves the cache off, and a cache the user set up through
    JAX itself stays theirs."""
    import jax

    monkeypatch.delenv("DLKIT_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert backend.compilation_cache_folder() == tmp_path / "xdg" / "dlkit" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert backend.compilation_cache_folder() == tmp_path / "home" / ".cache" / "dlkit" / "jax"
    monkeypatch.setenv("DLKIT_COMPILATION_CACHE", "~/compiled")
    assert backend.compilation_cache_folder() == tmp_path / "home" / "compiled"
    for off in ("off", "OFF", "0", "false", ""):
        monkeypatch.setenv("DLKIT_COMPILATION_CACHE", off)
        assert backend.compilation_cache_folder() is None and backend.compilation_cache.__wrapped__() is None

    before = (jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)
    try:
        (tmp_path / "a-file").write_text("")
        monkeypatch.setenv("DLKIT_COMPILATION_CACHE", str(tmp_path / "a-file" / "jax"))
        assert backend.compilation_cache.__wrapped__() is None  # cannot be made: off, and JAX left alone
        assert (jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size) == before
        monkeypatch.setenv("DLKIT_COMPILATION_CACHE", str(tmp_path / "ours"))
        with monkeypatch.context() as m:
            m.setitem(sys.modules, "filelock", None)  # a host without filelock: off (JAX locks the cache with it)
            assert backend.compilation_cache.__wrapped__() is None and not (tmp_path / "ours").exists()
        assert backend.compilation_cache.__wrapped__() == str(tmp_path / "ours") and (tmp_path / "ours").is_dir()
        assert jax.config.jax_compilation_cache_max_size == backend.CACHE_MAX_BYTES  # bounded, locked
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))  # as JAX_COMPILATION_CACHE_DIR does
        monkeypatch.setenv("DLKIT_COMPILATION_CACHE", str(tmp_path / "ours-again"))
        assert backend.compilation_cache.__wrapped__() == str(tmp_path / "theirs")
        assert not (tmp_path / "ours-again").exists()
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_compilation_cache_max_size", before[1])
