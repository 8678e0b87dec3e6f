"""Autoencoders (task `reconstruction`): the corruption and sparsity pieces against their definitions, the
measures against hand computations, and a dense and a denoising conv autoencoder trained end to end on the
MNIST slice through the CLI (train, evaluate, encode, generate)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import DATA, build
from dlkit.cli import app
from dlkit.data.spec import DataSpec
from dlkit.errors import RecipeError
from dlkit.tasks import load_recipe

MNIST = DataSpec(input_shape=(28, 28, 1), num_classes=10)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- pieces, against their definitions


@pytest.mark.parametrize("kind", ["gaussian", "masking", "salt_and_pepper"])
def test_corruption_only_while_training(kind):
    from dlkit.models.corruption import Corruption

    layer = Corruption(kind, 0.3, seed=1)
    x = np.full((200, 50), 0.5, "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)  # inference: untouched
    noisy = keras.ops.convert_to_numpy(layer(x, training=True))
    changed = noisy != x
    if kind == "gaussian":
        assert changed.all() and abs((noisy - x).std() - 0.3) < 0.01 and abs((noisy - x).mean()) < 0.01
    else:
        assert abs(changed.mean() - 0.3) < 0.01  # the share of values hit
        values = set(np.unique(noisy[changed]).tolist())
        assert values == ({0.0} if kind == "masking" else {0.0, 1.0})
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert (again.kind, again.level) == (kind, 0.3)


def test_kl_sparsity_is_the_summed_divergence():
    from dlkit.models.corruption import KLSparsity

    a = np.random.default_rng(0).uniform(0.01, 0.99, (64, 5)).astype("float32")
    rho, rho_hat = 0.05, a.mean(0)
    expected = 2.0 * np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    assert float(KLSparsity(0.05, 2.0)(a)) == pytest.approx(expected, rel=1e-5)
    assert float(KLSparsity(0.05, 1.0)(np.full((8, 3), 0.05, "float32"))) == pytest.approx(0.0, abs=1e-6)


def test_measures_against_hand_computations():
    from dlkit.tasks.reconstruction import codes_2d, linear_probe, psnr

    x = np.zeros((2, 4), np.float32)
    rec = np.array([[0.1, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.2]], np.float32)
    # per image: 10 log10(1 / mse); mse 0.01 -> 20 dB, mse 0.01 -> 20 dB
    assert psnr(x, rec, 1.0) == pytest.approx(20.0, abs=1e-4)
    rng = np.random.default_rng(0)
    y = np.arange(400) % 4
    informative = np.eye(4)[y] + 0.05 * rng.normal(size=(400, 4))
    assert linear_probe(informative[:300], y[:300], informative[300:], y[300:]) == 1.0
    noise = rng.normal(size=(400, 4))
    assert linear_probe(noise[:300], y[:300], noise[300:], y[300:]) < 0.45  # chance is 0.25
    line = np.outer(np.linspace(-1, 1, 50), [1.0, 2.0, 0.0]) + 5
    flat = codes_2d(line)
    assert flat.shape == (50, 2) and np.abs(flat[:, 1]).max() < 1e-9  # one direction carries it all


# ---------------------------------------------------------------- the architecture


def test_dense_and_conv_autoencoders_build(write_recipe):
    dense = build(load_recipe(write_recipe("model: {arch: autoencoder, hidden: [256], code_size: 32}\n")), MNIST)
    # 784*256+256 + 256*32+32 + 32*256+256 + 256*784+784
    assert dense.count_params() == 419_120 and dense.get_layer("code").units == 32
    assert dense.output_shape == (None, 28, 28, 1) and dense.get_layer("reconstruction").output.shape[1:] == (28, 28, 1)
    conv = build(load_recipe(write_recipe(
        "model: {arch: autoencoder, encoder: conv, filters: [8, 16], code_size: 10, noise: {kind: masking, level: 0.2}}\n",
        "conv.yaml")), MNIST)
    assert conv.output_shape == (None, 28, 28, 1) and conv.get_layer("noise").kind == "masking"
    assert [layer.strides for layer in conv.layers if isinstance(layer, keras.layers.Conv2D)
            and not isinstance(layer, keras.layers.Conv2DTranspose)][:2] == [(2, 2), (2, 2)]
    sparse = build(load_recipe(write_recipe("model: {arch: autoencoder, code_activation: sigmoid, "
                                            "sparsity: {kind: kl, weight: 0.5}}\n", "s.yaml")), MNIST)
    sparse(np.zeros((4, 28, 28, 1), "float32"))
    assert len(sparse.losses) == 1  # the penalty reaches the loss


def test_codes_are_float32_under_a_mixed_precision(write_recipe):
    """Was a TypeError at the end of a mixed_float16 run: the code layer computes in float16, which numpy's SVD
    (the codes' picture) refuses."""
    from dlkit.tasks.reconstruction import codes_2d, encoder

    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build(load_recipe(write_recipe("model: {arch: autoencoder, hidden: [16], code_size: 4}\n")), MNIST)
        assert model.get_layer("code").compute_dtype == "float16"
        codes = encoder(model).predict(np.random.default_rng(0).random((8, 28, 28, 1), "float32"), verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert codes.dtype == np.float32 and codes_2d(codes).shape == (8, 2)


def test_the_encoder_of_a_model_from_another_process_builds(write_recipe):
    """`dlkit encode` of a run stopped with "The name "activation" is used 2 times": the loaded model has a layer
    named "activation", and the fresh process's automatic name for the encoder's cast was "activation" too.
    Keras's name counters are swapped for fresh ones here, as another process has them."""
    from keras.src.backend.common import global_state

    from dlkit.tasks.reconstruction import encoder

    recipe = load_recipe(write_recipe("model: {arch: autoencoder, hidden: [16], code_size: 4, batch_norm: before}\n"))
    counters = global_state.get_global_attribute("object_name_uids")
    try:
        global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))  # the training process
        model = build(recipe, MNIST)
        assert "activation" in [layer.name for layer in model.layers]
        global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))  # the encoding one
        codes = encoder(model)
    finally:
        global_state.set_global_attribute("object_name_uids", counters)
    assert codes.output.shape == (None, 4)


@pytest.mark.parametrize("sparsity", ["{kind: kl, target: 0.05, weight: 0.5}", "{kind: l1, weight: 0.01}"])
def test_the_code_penalties_are_float32_under_a_mixed_precision(write_recipe, sparsity):
    """Both were a TypeError in the first step of a mixed_float16 run (Keras adds a float16 activity penalty
    to the float32 loss), and the KL one was inf there (1 - 1e-6 is 1 in float16)."""
    from dlkit.models.corruption import L1Sparsity

    recipe = load_recipe(write_recipe("model: {arch: autoencoder, hidden: [16], code_size: 4, code_activation: "
                                      f"sigmoid, sparsity: {sparsity}}}\n"))
    x = np.random.default_rng(0).random((8, 28, 28, 1), "float32")
    penalties = {}
    for policy in ("mixed_float16", "float32"):
        keras.config.set_dtype_policy(policy)
        try:
            keras.utils.set_random_seed(1)
            model = build(recipe, MNIST)
            model(x)
            (penalty,) = model.losses
        finally:
            keras.config.set_dtype_policy("float32")
        assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
        penalties[policy] = float(penalty)
    assert np.isfinite(penalties["mixed_float16"])
    assert penalties["mixed_float16"] == pytest.approx(penalties["float32"], rel=0.02)
    l1 = keras.regularizers.deserialize(keras.regularizers.serialize(L1Sparsity(0.25)))
    assert isinstance(l1, L1Sparsity) and float(l1(np.array([[1.0, -2.0]], "float32"))) == 0.75


@pytest.mark.parametrize("text,path,needle", [
    ("model: {arch: autoencoder, sparsity: {kind: kl}}\n", "model", "code_activation: sigmoid"),
    ("model: {arch: autoencoder, filters: [8]}\n", "model", "belongs to the conv encoder"),
    ("model: {arch: autoencoder, noise: {kind: masking, level: 1.5}}\n", "model.noise", "below 1"),
    ("model: {arch: autoencoder}\ndata: {scale: symmetric}\n", "data.scale", "model.output: linear"),
    ("model: {arch: autoencoder}\ntrain: {metrics: [accuracy], optimizers: {generator: {}}}\n",
     "train.optimizers.generator", "Keys here: model"),
])
def test_autoencoder_recipe_errors(write_recipe, text, path, needle):
    recipe = write_recipe(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    match = [p for p in info.value.problems if p.path == path]
    assert match and needle in match[0].render() and match[0].location.startswith(str(recipe)), \
        [p.render() for p in info.value.problems]


# ---------------------------------------------------------------- end to end


def test_autoencoder_trains_measures_encodes_and_reconstructs(write_recipe, tmp_path):
    recipe = write_recipe(f"""
name: tiny_ae
seed: 5
data: {{dataset: mnist, dir: {DATA}, limit: 500, test_limit: 200, batch_size: 50, scale: unit}}
model: {{arch: autoencoder, hidden: [64], code_size: 8}}
train: {{epochs: 3, optimizer: {{name: adam, learning_rate: 0.003}}}}
""")
    out = cli("train", recipe, "--runs-root", tmp_path, "--json", "-q")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    run = Path(result["run_dir"])
    rows = [line.split(",") for line in (run / "history.csv").read_text().splitlines()]
    assert {"loss", "mse", "val_loss", "val_mse"} <= set(rows[0]) and len(rows) == 4
    assert float(rows[-1][rows[0].index("loss")]) < float(rows[1][rows[0].index("loss")])  # it learns
    test = result["test"]
    assert test["examples"] == 200 and test["psnr_db"] > 10  # the mean image alone scores about 9 dB
    assert 0 < test["mse"] < 0.1 and 0.3 < test["probe_accuracy"] <= 1  # chance is 0.1
    for name in ("samples/epoch_003.png", "reconstructions.png", "progress.gif", "codes.png", "artifacts/scale.json"):
        assert (run / name).is_file(), name

    ev = cli("evaluate", run, "--split", "val", "--json")
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["examples"] == 50 and (run / "codes_val.png").is_file()
    assert "psnr db" in cli("evaluate", run).stdout
    assert cli("evaluate", run, "--reference", run).exit_code == 2

    enc = cli("encode", run, "--split", "test", "--json")
    assert enc.exit_code == 0, enc.output
    written = json.loads(enc.stdout)
    codes, labels = np.load(written["out"]), np.load(written["labels"])
    assert codes.shape == (200, 8) and labels.shape == (200,) and labels[:3].tolist() == [7, 2, 1]
    assert cli("encode", run, "--split", "test").exit_code == 2  # would overwrite
    # the codes of images of one's own (there was only a split's): the same pixels as a file or an array, the
    # same codes as in the split, the names beside them
    from PIL import Image

    from dlkit.data import sources

    firsts = sources.load_builtin("mnist", str(DATA), False).x_test[:3]
    Image.fromarray(firsts[0]).save(tmp_path / "seven.png")
    np.save(tmp_path / "three.npy", firsts)
    said = cli("predict", run, tmp_path / "seven.png")  # the commands that answer for images of one's own
    assert said.exit_code == 2 and f"`dlkit generate {run} --input FILES`; `dlkit encode {run} FILES`" in said.stderr
    each = cli("generate", run, "-i", tmp_path / "seven.png", "-i", tmp_path / "three.npy", "--out-dir",
               tmp_path / "rec", "--json")  # each reconstruction under its input's name
    assert each.exit_code == 0, each.output
    assert sorted(p.relative_to(tmp_path / "rec").as_posix() for p in (tmp_path / "rec").rglob("*.png")) == \
        ["seven.png", "three/00000.png", "three/00001.png", "three/00002.png"]
    with Image.open(tmp_path / "rec" / "seven.png") as a, Image.open(tmp_path / "rec" / "three" / "00000.png") as b:
        seven, three = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(seven, three)  # the same digit, as a file or an array
    import keras

    from dlkit import images
    from dlkit.rundir import RunDir
    from dlkit.tasks.generative import in_scale, run_scale

    scale = run_scale(RunDir(run))  # the model's reconstruction of it
    model = keras.saving.load_model(run / "model.keras")
    made = images.to_uint8(model.predict(in_scale(firsts[:1, ..., None], scale), verbose=0), scale)
    np.testing.assert_array_equal(seven, made[0, ..., 0])
    mine = cli("encode", run, tmp_path / "seven.png", tmp_path / "three.npy", "--json")
    assert mine.exit_code == 0, mine.output
    written = json.loads(mine.stdout)
    assert Path(written["out"]).name == "codes_inputs.npy" and written["split"] is None
    np.testing.assert_allclose(np.load(written["out"]), codes[[0, 0, 1, 2]], rtol=1e-5, atol=1e-6)
    assert Path(written["names"]).read_text() == "seven.png\nthree.npy[0]\nthree.npy[1]\nthree.npy[2]\n"
    both = cli("encode", run, tmp_path / "seven.png", "--split", "val")
    assert both.exit_code == 2 and "--split and FILE... do not go together" in both.stderr
    npz = cli("encode", run, "--out", tmp_path / "codes.npz")  # np.save would have written codes.npz.npy
    assert npz.exit_code == 2 and "end the name in .npy" in npz.stderr
    (tmp_path / "a-file").write_text("")
    unwritable = cli("encode", run, "--out", tmp_path / "a-file" / "codes.npy")  # a folder that cannot be made
    assert unwritable.exit_code == 5 and f"cannot write {tmp_path / 'a-file' / 'codes.npy'}" in unwritable.stderr
    assert not list(tmp_path.glob("codes*")) and (tmp_path / "a-file").is_file()  # nothing written

    # evaluate --data: images of one's own measured as a split is (the split's 200 test digits as an array give
    # its figures), without labels, the worst reconstructed named: noise among digits first
    np.save(tmp_path / "test200.npy", sources.load_builtin("mnist", str(DATA), False).x_test[:200])
    ev = cli("evaluate", run, "--data", tmp_path / "test200.npy", "--json")
    assert ev.exit_code == 0, ev.output
    ev = json.loads(ev.stdout)
    for k in ("loss", "mse", "psnr_db"):
        assert ev[k] == pytest.approx(test[k], rel=1e-4), k
    assert ev["examples"] == 200 and ev["probe_accuracy"] is None and len(ev["worst"]) == 10
    assert [w["mse"] for w in ev["worst"]] == sorted((w["mse"] for w in ev["worst"]), reverse=True)
    (tmp_path / "mixed").mkdir()
    for i, pixels in enumerate(firsts):
        Image.fromarray(pixels).save(tmp_path / "mixed" / f"digit{i}.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "mixed" / "noise.png")
    ev = json.loads(cli("evaluate", run, "--data", tmp_path / "mixed", "--json").stdout)
    assert ev["examples"] == 4 and ev["worst"][0]["input"] == "noise.png" and Path(ev["codes_image"]).is_file()

    gen = cli("generate", run, "-n", "6", "--json")
    assert gen.exit_code == 0 and Path(json.loads(gen.stdout)["out"]).name == "reconstructions-seed0.png"
    from PIL import Image

    # 20 test images wrap into bands of 16 columns, each band the inputs above their reconstructions (58 px
    # cells); it was one row of inputs and one of reconstructions, as wide as -n, 560,000 px at 10,000
    wide = cli("generate", run, "-n", "20", "--out", tmp_path / "twenty.png", "--json")
    assert wide.exit_code == 0 and json.loads(wide.stdout)["n"] == 20, wide.output
    with Image.open(tmp_path / "twenty.png") as im:
        assert im.size == (16 * 58 + 2, 4 * 58 + 2)
    for args, said in ((["-n", "10001"], "1 to 10,000, received 10001"), (["-n", "0"], "received 0"),
                       (["-n", "3", "--input", tmp_path / "twenty.png"], "-n and --input do not go together")):
        refused = cli("generate", run, *args, "--out", tmp_path / "refused.png")
        assert refused.exit_code == 2 and said in refused.stderr, refused.output
    assert not (tmp_path / "refused.png").exists()

    digit = tmp_path / "digit.png"
    Image.fromarray((np.arange(784).reshape(28, 28) % 256).astype("uint8")).save(digit)
    given = cli("generate", run, "--input", digit, "--out", tmp_path / "mine.png", "--json")
    assert given.exit_code == 0, given.output
    assert json.loads(given.stdout)["n"] == 1 and (tmp_path / "mine.png").is_file()
    (tmp_path / "inbox").mkdir()  # a folder of images, as predict takes (this pre-check refused it)
    (tmp_path / "inbox" / "digit.png").write_bytes(digit.read_bytes())
    folder = cli("generate", run, "--input", tmp_path / "inbox", "--out", tmp_path / "folder.png", "--json")
    assert folder.exit_code == 0 and json.loads(folder.stdout)["n"] == 1, folder.output
    # read as `dlkit predict` reads images: a colour one with alpha, 30 x 30, made gray and resized
    Image.fromarray(np.full((30, 30, 4), 200, np.uint8)).save(tmp_path / "rgba.png")
    colour = cli("generate", run, "--input", tmp_path / "rgba.png", "--out", tmp_path / "rgba_out.png", "--json")
    assert colour.exit_code == 0, colour.output
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    pickled = cli("generate", run, "--input", tmp_path / "objects.npy", "--json")  # was numpy's traceback
    assert pickled.exit_code == 2 and "not a numpy array file" in json.loads(pickled.stdout)["error"]
    assert cli("generate", run, "--label", "3").exit_code == 2
    # a picture is PNG whatever its name: x.jpg held PNG bytes, which whatever opened it by its name misread
    named = cli("generate", run, "--out", tmp_path / "grid.jpg")
    assert named.exit_code == 2 and "pictures are written as PNG files; end the name in .png" in named.stderr
    assert not (tmp_path / "grid.jpg").exists()


def test_unlabelled_images_train_an_autoencoder_and_a_classifier_says_it_needs_labels(write_recipe, tmp_path):
    """A folder of images without class folders (a user's own photos): the tasks that learn from the inputs
    alone train on it; one that learns from labels is exit 3 before a run directory exists."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        (tmp_path / "photos" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "photos" / split / f"{i}.png")
    text = f"""
data: {{dataset: image_folder, path: {tmp_path / 'photos'}, batch_size: 8}}
model: {{arch: autoencoder, hidden: [8], code_size: 2}}
train: {{epochs: 1}}
"""
    out = cli("train", write_recipe(text), "--runs-root", tmp_path / "runs", "--json", "-q")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["test"]["examples"] == 8 and result["test"]["probe_accuracy"] is None  # no labels to probe
    enc = json.loads(cli("encode", result["run_dir"], "--json").stdout)
    assert np.load(enc["out"]).shape == (8, 2) and "labels" not in enc  # no labels to write beside the codes
    refused = cli("train", write_recipe(text.replace("arch: autoencoder, hidden: [8], code_size: 2", "arch: mlp"),
                                        "mlp.yaml"), "--runs-root", tmp_path / "runs")
    assert refused.exit_code == 3 and "has no class labels, and a classifier learns from them" in refused.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["recipe"]



def test_feature_vectors_are_refused_by_the_models_that_read_images(write_recipe, tmp_path):
    """An npz of (N, F) rows met a conv layer, or the reconstructions' picture, as a traceback (exit 1)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rows.npz", x_train=rng.normal(size=(16, 6)), y_train=np.arange(16) % 2)
    for arch in ("autoencoder, hidden: [8], code_size: 2", "cnn"):
        out = cli("train", write_recipe(f"""
data: {{dataset: npz, path: {tmp_path / 'rows.npz'}, batch_size: 8}}
model: {{arch: {arch}}}
"""), "--runs-root", tmp_path / "runs")
        name = arch.split(",")[0]
        assert out.exit_code == 3, out.output
        assert (f"rows.npz holds features (N, F), and {name} reads images (N, H, W, C): give it images, or pick a "
                "model that reads features (perceptron, mlp, rbm, dbn)") in out.stderr
    assert not (tmp_path / "runs").exists()


def test_codes_of_a_one_example_split_are_drawn_in_two_dimensions():
    from dlkit.tasks.reconstruction import codes_2d

    # an npz whose x_test held one image: its codes' first principal component alone, then a scatter traceback
    assert codes_2d(np.ones((1, 5))).shape == (1, 2)
    assert codes_2d(np.arange(15.0).reshape(3, 5) ** 2).shape == (3, 2)

def test_denoising_conv_autoencoder_shows_its_noise(write_recipe, tmp_path):
    recipe = write_recipe(f"""
name: tiny_dae
data: {{dataset: mnist, dir: {DATA}, limit: 200, test_limit: 50, batch_size: 50, scale: unit}}
model: {{arch: autoencoder, encoder: conv, filters: [4, 8], code_size: 8, noise: {{kind: salt_and_pepper, level: 0.2}}}}
train: {{epochs: 1}}
""")
    out = cli("train", recipe, "--runs-root", tmp_path, "--json", "-q")
    assert out.exit_code == 0, out.output
    run = Path(json.loads(out.stdout)["run_dir"])
    from PIL import Image

    grid = np.asarray(Image.open(run / "reconstructions.png"))
    # three rows of 28x28 digits, each enlarged to 56 pixels, with 2-pixel padding: inputs, noisy, reconstructions
    assert grid.shape[0] == 3 * (56 + 2) + 2
    model = keras.saving.load_model(run / "model.keras")
    assert model.get_layer("noise").kind == "salt_and_pepper"
