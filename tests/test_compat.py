"""Files written before the task seam (dlkit 0.1.0, run format 1): their models still load with Keras, the
GAN's settings and both optimizers' states included, and dlkit commands say clearly what to do with them."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ROOT
from dlkit.cli import app
from dlkit.models import register_keras_classes

OLD = ROOT / "tests" / "fixtures" / "dlkit-0.1.0"


def test_old_models_still_load():
    register_keras_classes()
    gan = keras.saving.load_model(OLD / "old_dcgan" / "model.keras")
    assert type(gan).__name__ == "GAN" and gan.latent_dim == 4 and gan.ema_decay == 0.9 and gan.sampler is gan.generator_ema
    assert int(gan.g_optimizer.iterations.numpy()) == 2 and int(gan.d_optimizer.iterations.numpy()) == 2
    assert gan.sampler.predict(np.zeros((2, 4), "float32"), verbose=0).shape == (2, 16, 16, 1)
    cnn = keras.saving.load_model(OLD / "old_cnn" / "model.keras")
    assert cnn.output_shape == (None, 10) and int(cnn.optimizer.iterations.numpy()) == 3


@pytest.mark.parametrize("command", [["evaluate"], ["generate"], ["resume", "--epochs", "2"]])
def test_dlkit_commands_explain_the_old_layout(command, tmp_path):
    run = tmp_path / "old_dcgan"
    shutil.copytree(OLD / "old_dcgan", run)
    out = CliRunner().invoke(app, [command[0], str(run), *command[1:]])
    assert out.exit_code == 2 and "Traceback" not in out.output
    text = " ".join(out.stderr.split())
    assert "run format 1" in text and "keras.saving.load_model" in text and "train the recipe again" in text


def test_a_run_trained_before_a_key_existed_reads_as_it_was_trained(tmp_path):
    """A run's recipe.yaml lists every key; one written before data.test_split existed lacks it, and is read
    with 0 (no test split carved, as it trained), not today's default 0.2: a resume keeps its training data.
    Likewise data.category_values: all, so a category only in its test rows is still the input it trained with."""
    import yaml

    from dlkit.tasks import load_recipe, load_run_recipe

    saved = load_recipe(ROOT / "recipes" / "mlp_mnist.yaml").to_dict()
    assert saved["data"].pop("test_split") == 0.2
    assert saved["data"].pop("category_values") == "training"  # one input per value the training rows have
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.test_split == 0
    assert load_run_recipe(tmp_path / "recipe.yaml").data.category_values == "training"  # no categories: moot
    table = {**saved, "data": {**saved["data"], "dataset": "csv", "path": str(tmp_path / "t.csv"),
                               "categorical_columns": ["city"]}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(table))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.category_values == "all"  # per value in the file
    saved["data"]["category_values"] = "training"
    assert load_run_recipe(tmp_path / "recipe.yaml", ["train.epochs=3"]).train.epochs == 3
    saved["data"]["test_split"] = 0.3
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.test_split == 0.3


def test_an_image_folder_run_from_before_its_order_was_shuffled_reads_it_class_by_class(tmp_path):
    """data.folder_order: a run's recipe.yaml written before the key existed (an image folder, or a CycleGAN's
    domain_b one) reads its folders class by class, as it trained: the same carved validation and test images,
    the same data.limit, the same epochs on resume. A new recipe, and any other dataset, are unchanged."""
    import yaml
    from PIL import Image

    from dlkit.data import pipeline
    from dlkit.tasks import load_recipe, load_run_recipe

    for c in range(3):
        (tmp_path / "photos" / f"c{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((4, 4), 10 * c + i, np.uint8)).save(tmp_path / "photos" / f"c{c}" / f"{i}.png")
    (tmp_path / "mine.yaml").write_text(f"extends: {ROOT / 'recipes' / 'mlp_mnist.yaml'}\n"
                                        f"data: {{dataset: image_folder, path: {tmp_path / 'photos'}}}\n")
    saved = load_recipe(tmp_path / "mine.yaml").to_dict()
    assert saved["data"].pop("folder_order") == "shuffled"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    old = load_run_recipe(tmp_path / "recipe.yaml")
    assert old.data.folder_order == "listed" and load_recipe(tmp_path / "mine.yaml").data.folder_order == "shuffled"
    listed = pipeline.load(old.data.model_copy(update={"limit": 6, "test_split": 0, "validation_split": 0}), 0)
    assert listed.splits.y_train.tolist() == [0, 0, 0, 0, 1, 1]  # as a run from before read it
    mnist = load_recipe(ROOT / "recipes" / "mlp_mnist.yaml").to_dict()
    del mnist["data"]["folder_order"]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(mnist))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.folder_order == "shuffled"  # not an image folder: moot
    cyc = load_recipe(ROOT / "recipes" / "cyclegan_mnist_m.yaml").to_dict()
    cyc["data"]["domain_b"].update(dataset="image_folder", path=str(tmp_path / "photos"))
    del cyc["data"]["domain_b"]["folder_order"]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(cyc))
    run = load_run_recipe(tmp_path / "recipe.yaml")
    assert run.data.domain_b.folder_order == "listed" and run.data.folder_order == "shuffled"  # A is mnist


def test_a_language_model_run_from_before_its_limit_cut_the_text_reads_as_it_trained(tmp_path):
    """data.limit_cuts: a language model's run trained with a limit before the key existed cut its training
    part alone (its validation part carved from the whole text), and reads so; one without a limit, and a new
    recipe, read today's default."""
    import yaml

    from dlkit.tasks import load_recipe, load_run_recipe

    saved = load_recipe(ROOT / "recipes" / "char_lstm_shakespeare.yaml", ["data.limit=20000"]).to_dict()
    assert saved["data"].pop("limit_cuts") == "text"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.limit_cuts == "training_text"
    saved["data"]["limit"] = None
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.limit_cuts == "text"  # no limit: moot


def test_a_language_model_run_from_before_its_vocabulary_came_from_its_training_part_reads_so(tmp_path):
    """data.vocabulary_from: a language model's run trained before the key existed learnt its vocabulary from
    the whole training text, and reads so (evaluate rebuilds that vocabulary); a new recipe learns it from the
    tokens it trains on."""
    import yaml

    from dlkit.tasks import load_recipe, load_run_recipe

    saved = load_recipe(ROOT / "recipes" / "char_lstm_shakespeare.yaml").to_dict()
    assert saved["data"].pop("vocabulary_from") == "training"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.vocabulary_from == "text"


def test_a_run_from_before_optimizer_roles_merged_reads_as_it_trained(tmp_path):
    """A GAN run trained when a generator optimizer given only its learning rate was a plain Adam (Keras's
    beta_1 0.9) wrote {name: adam, learning_rate: ...} in its recipe.yaml: read as the run's recipe it stays
    that Adam (resume and evaluate rebuild what trained), where the same file as a user's recipe now merges
    over the role's default. A new run's recipe.yaml lists the merged keys, so it reads the same either way."""
    import yaml

    from dlkit.tasks import load_recipe, load_run_recipe

    saved = load_recipe(ROOT / "recipes" / "gan_mnist.yaml").to_dict()
    assert saved["train"]["optimizers"]["generator"]["beta_1"] == 0.5
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").to_dict() == saved
    saved["train"]["optimizers"]["generator"] = {"name": "adam", "learning_rate": 0.001}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").train.optimizers.generator.beta_1 is None
    assert load_recipe(tmp_path / "recipe.yaml").train.optimizers.generator.beta_1 == 0.5


def test_a_run_that_set_a_key_its_dataset_ignored_still_loads(tmp_path):
    """`image_size` on MNIST, `label_column` on a non-CSV dataset, `attention_maps` on a model without attention,
    `label_smoothing` on a WGAN: a recipe now refuses them (they did nothing), but a run trained before that
    loads as it trained, the key back at its default, so evaluate and resume still open it."""
    import yaml

    from dlkit.errors import RecipeError
    from dlkit.tasks import load_recipe, load_run_recipe

    saved = load_recipe(ROOT / "recipes" / "cyclegan_mnist_m.yaml").to_dict()
    saved["data"].update(image_size=[32, 32], label_column="y")
    saved["data"]["domain_b"]["image_size"] = [32, 32]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(RecipeError, match="image_size: read by datasets image_folder and tfds:NAME only"):
        load_recipe(tmp_path / "recipe.yaml")
    run = load_run_recipe(tmp_path / "recipe.yaml")
    assert run.data.image_size is None and run.data.label_column is None and run.data.domain_b.image_size is None
    saved["data"].update(dataset="image_folder", path=str(tmp_path))  # read there: kept
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_recipe(tmp_path / "recipe.yaml").data.image_size == [32, 32]
    seq2seq = load_recipe(ROOT / "recipes" / "seq2seq_fra_eng.yaml").to_dict()  # attention: none
    seq2seq["train"]["attention_maps"] = 8
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(seq2seq))
    with pytest.raises(RecipeError, match="a model without attention"):
        load_recipe(tmp_path / "recipe.yaml")
    assert load_run_recipe(tmp_path / "recipe.yaml").train.attention_maps == 4
    wgan = load_recipe(ROOT / "recipes" / "wgan_mnist.yaml").to_dict()
    wgan["model"].update(label_smoothing=0.1, info_weight=2.0, top_k=1.0, top_k_epochs=3.0)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(wgan))
    with pytest.raises(RecipeError, match="the wasserstein critic has no targets"):
        load_recipe(tmp_path / "recipe.yaml")
    model = load_run_recipe(tmp_path / "recipe.yaml").model
    assert (model.label_smoothing, model.info_weight, model.top_k_epochs) == (0.0, 1.0, 0.0)
    rbm = load_recipe(ROOT / "recipes" / "rbm_mnist.yaml").to_dict()
    rbm["model"].update(persistent=False, chains=20)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(rbm))
    assert load_run_recipe(tmp_path / "recipe.yaml").model.chains == 100
    sparse = load_recipe(ROOT / "recipes" / "sparse_ae_mnist.yaml").to_dict()
    sparse["model"]["sparsity"].update(kind="l1", target=0.2)  # an L1 penalty reads no target
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(sparse))
    with pytest.raises(RecipeError, match="model.sparsity.target: 0.2 is the mean code activation the KL penalty"):
        load_recipe(tmp_path / "recipe.yaml")
    assert load_run_recipe(tmp_path / "recipe.yaml").model.sparsity.target == 0.05
    (tmp_path / "recipe.yaml").write_text("model: {arch: [wgan]}\n")  # was a TypeError (unhashable list)
    with pytest.raises(RecipeError, match="model.arch: unknown architecture"):
        load_run_recipe(tmp_path / "recipe.yaml")


def test_a_damaged_run_recipe_is_said_as_the_runs_own_file(tmp_path):
    """A cut recipe.yaml in a run said "model: required key is missing (add a model section ...)", as if the user
    had written it; it is the resolved recipe the run wrote, and the error says so, and where it came from."""
    import json

    from dlkit.errors import RecipeError
    from dlkit.tasks import load_run_recipe

    (tmp_path / "manifest.json").write_text(json.dumps({"recipe_file": "recipes/cnn_mnist.yaml"}))
    (tmp_path / "recipe.yaml").write_text((ROOT / "recipes" / "cnn_mnist.yaml").read_text()[:60])
    with pytest.raises(RecipeError, match=r"in recipe .*recipe.yaml, the resolved recipe this run wrote as it began "
                                          r"\(from recipes/cnn_mnist.yaml\):\n  - .*model: required key is missing"):
        load_run_recipe(tmp_path / "recipe.yaml")
