"""Recipe loading: strict schema, every error at once with key path and line, extends, --set."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlkit.errors import RecipeError
from dlkit.recipe import parse_override
from dlkit.tasks import load_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").rglob("*.yaml"))


def problems_of(path, overrides=()):
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value.problems


# (recipe text, dotted path, line, text that must appear in message or hint)
MALFORMED = [
    ("model: {arch: cnn}\ntrain:\n  epocs: 3\n", "train.epocs", 3, "did you mean 'epochs'"),
    ("model: {arch: cnn}\ntrain:\n  batch_size: 64\n", "train.batch_size", 3, "move it to data.batch_size."),
    ("model:\n  arch: mlp\n  learning_rate: 0.1\n", "model.learning_rate", 3,
     "move it to train.optimizer.learning_rate."),
    ("model:\n  arch: mlp\n  seed: 1\n", "model.seed", 3, "move it to the top level (seed)."),
    ("model: {arch: cnn}\ntrain:\n  monitor: val_foo\n", "train.monitor", 3, "set train.monitor_mode: min or max"),
    ("model:\n  arch: mlp\n  initializer: {name: he_normal, stddev: 0.1}\n", "model.initializer", 3,
     "initializer 'he_normal' takes no stddev (it takes no arguments); remove it"),  # was Keras's traceback
    ("model:\n  arch: mlp\n  initializer: {name: random_uniform, minval: 0.1}\n", "model.initializer", 3,
     "minval 0.1 is not below maxval 0.05"),
    # found only at train time, after `dlkit validate` had said ok
    ("model: {arch: mlp}\ntrain:\n  optimizer: {name: sgd, beta_1: 0.9}\n", "train.optimizer.beta_1", 3,
     "optimizer 'sgd' takes no beta_1; remove it (sgd takes: learning_rate, momentum, nesterov, weight_decay"),
    # a key the schedule does not read did nothing
    ("model: {arch: cnn}\ntrain:\n  schedule: {name: step, warmup_epochs: 2}\n", "train.schedule", 3,
     "schedule 'step' does not read warmup_epochs (warmup_epochs is read by cosine); it reads step_epochs"),
    ("model: {arch: cnn}\ntrain:\n  early_stopping: {monitor: foo}\n", "train.early_stopping.monitor", 3,
     "set train.early_stopping.mode: min or max"),
    # a path the dataset would not read (the default one): it trained on MNIST and ignored the user's file
    ("model: {arch: mlp}\ndata:\n  path: mine.csv\n", "data", 2,
     "mine.csv' would be ignored: set the dataset to one of 'npz', 'image_folder', 'csv' to read it"),
    ("model: {arch: rnn_lm}\ndata:\n  path: book.txt\n", "data", 2, "set the dataset to 'text' to read it"),
    ("model: {arch: rnn_classifier}\ndata:\n  header: true\n", "data", 2, "header: true is read from a tsv file only"),
    ("model: {arch: mlp}\ndata:\n  separator: ';'\n", "data", 2, "separator: read from a csv file only"),
    ("model: {arch: mlp}\ndata:\n  categorical_columns: [plan]\n  missing: drop\n", "data", 2,
     "categorical_columns and missing: read from a csv file only"),
    ("model: {arch: mlp}\ndata:\n  dataset: csv\n  path: t.csv\n  categorical_columns: [plan, city, plan]\n",
     "data.categorical_columns", 5, "'plan' listed twice"),
    ("model: {arch: mlp}\ndata:\n  dataset: csv\n  path: t.csv\n  label_column: y\n  categorical_columns: [y]\n",
     "data.categorical_columns", 6, "'y' is data.label_column, not a feature"),
    ("model: {arch: mlp}\ndata: {dataset: csv, path: t.csv, decimal: ','}\n", "data", 2,
     "separator and decimal are both ','"),
    ("model: {arch: cnn_rnn_reader}\ndata:\n  path: x.npz\n", "data", 2, "this task reads only its own dataset"),
    ("model: {arch: cyclegan}\ndata:\n  domain_b: {path: b.npz}\n", "data.domain_b", 3,
     "does not read data.domain_b.path"),
    ("model: {arch: rnn_forecaster}\ndata:\n  path: load.csv\n", "data.dataset", 2,
     "choose one of: csv (your file, in data.path)"),
    ("model: {arch: cnn}\ndata:\n  batch_size: many\n", "data.batch_size", 3, "valid integer"),
    ("model: {arch: cnn}\ndata:\n  batch_size: 0\n", "data.batch_size", 3, "greater than or equal to 1"),
    ("model: {arch: cnn}\ndata:\n  validation_split: 1.5\n", "data.validation_split", 3, "less than 1"),
    ("model:\n  arch: cnn\n  dropout: 1.2\n", "model.dropout", 3, "less than 1"),
    ("model:\n  arch: cnn\n  activation: rleu\n", "model.activation", 3, "did you mean 'relu'"),
    # names Keras met first at build time, under a hint about the inputs' size
    ("model:\n  arch: autoencoder\n  code_activation: tahn\n", "model.code_activation", 3, "did you mean 'tanh'"),
    ("model:\n  arch: rnn_forecaster\n  recurrent_initializer: orthogonl\n", "model.recurrent_initializer", 3,
     "did you mean 'orthogonal'"),
    ("model:\n  arch: dcgan\n  generator: {activation: rleu}\n", "model.generator.activation", 3,
     "did you mean 'relu'"),
    # the data's error in pandas's words, once the file had been read; an empty list read no time at all
    ("model: {arch: rnn_forecaster}\ndata:\n  dataset: airline_passengers\n  frequency: H\n", "data.frequency", 4,
     "'H' is not a pandas frequency; did you mean 'h'?"),
    ("model: {arch: rnn_forecaster}\ndata:\n  dataset: airline_passengers\n  frequency: 0h\n", "data.frequency", 4,
     "'0h' steps back or stands still"),
    ("model: {arch: rnn_forecaster}\ndata:\n  dataset: airline_passengers\n  time_column: []\n",
     "data.time_column", 4, "an empty name: name the time column"),
    ("model: {arch: seq2seq}\ntrain:\n  attention_maps: 8\n", "train.attention_maps", 3,
     "a model without attention (model.attention: none) draws no attention maps"),
    # a GAN's keys its other keys leave nothing to do
    ("model: {arch: wgan, label_smoothing: 0.1}\n", "model", 1, "the wasserstein critic has no targets"),
    ("model: {arch: dcgan, top_k_epochs: 5}\n", "model", 1, "and top_k is 1 (off): set top_k below 1"),
    ("model: {arch: cgan, info_weight: 2}\n", "model", 1, "info_weight weighs InfoGAN's code loss, and this GAN"),
    ("model: {arch: infogan, continuous_codes: 0, continuous_weight: 0.5}\n", "model", 1,
     "continuous_weight weighs the continuous codes' share"),
    ("model: {arch: rbm, chains: 50}\n", "model", 1, "chains is the number of PCD's persistent chains, and "
     "persistent is false"),
    ("model: {arch: dbn, persistent: false, chains: 50}\n", "model", 1, "and persistent is false"),
    ("model: {arch: rbm, sparsity_target: 0.1}\n", "model", 1, "and sparsity_weight is 0 (no sparsity term)"),
    # keys one dataset alone reads, set for another: they were ignored (MNIST trained at 28 x 28)
    ("model: {arch: lenet5}\ndata:\n  image_size: [32, 32]\n", "data", 2,
     "image_size: read by datasets image_folder and tfds:NAME only (they resize their images to it); "
     "dataset 'mnist' reads none"),
    ("model: {arch: mlp}\ndata:\n  label_column: y\n", "data", 2,
     "label_column: read from a csv file only; dataset 'mnist' reads none"),
    ("model: {arch: mlp}\ndata:\n  folder_order: listed\n", "data", 2,
     "folder_order: read by dataset image_folder only (the order of its images); dataset 'mnist' reads none"),
    ("model: {arch: cyclegan}\ndata:\n  domain_b: {image_size: [28, 28]}\n", "data.domain_b", 3,
     "image_size: read by datasets image_folder and tfds:NAME only (they resize their images to it); "
     "dataset 'mnist_m' reads none"),
    ("model:\n  arch: cnn\n  initializer: he_normall\n", "model.initializer.name", 3, "did you mean 'he_normal'"),
    ("model:\n  arch: cnn\n  blocks:\n    - {filters: 8, kernal_size: 3}\n", "model.blocks.0.kernal_size", 4,
     "did you mean 'kernel_size'"),
    ("model:\n  arch: cnnn\n", "model.arch", 2, "did you mean 'cnn'"),
    ("model: {arch: cnn}\ntrain:\n  optimizer: {name: adamm}\n", "train.optimizer.name", 3, "did you mean 'adam'"),
    ("model: {arch: cnn}\ndata:\n  dataset: mnits\n", "data.dataset", 3, "did you mean 'mnist'"),
    ("model: {arch: resnet, depth: 21}\n", "model.depth", 1, "6n+2"),
    # both were tracebacks at build time: Keras's ValueError, and an IndexError
    ("model:\n  arch: cnn\n  blocks:\n    - {filters: 8, strides: 2, dilation: 2}\n", "model.blocks.0", 4,
     "a block strides (2) or dilates (2), not both"),
    ("model:\n  arch: resnet\n  widths: []\n", "model.widths", 3, "at least 1 item"),
    # a traceback at the first RBM's start (found by the slow build fuzz, tests/test_models.py)
    ("model:\n  arch: dbn\n  layers: [64]\n  top_labels: true\n", "model", 1,
     "top_labels needs two layers or more"),
    # YAML's flow mapping read {patience:2} as a key "patience:2" with no value
    ("model: {arch: cnn}\ntrain:\n  early_stopping: {patience:2}\n", "train.early_stopping.patience:2", 3,
     "YAML reads 'patience:2' as one key, with no value: write 'patience: 2', with a space after the colon."),
    ("data: {dataset: mnist}\n", "model", None, "required"),
    ("model: {arch: cnn}\ndata:\n  augment: {rotaton: 0.1}\n", "data.augment.rotaton", 3, "did you mean 'rotation'"),
    ("model: {arch: cnn}\ndata:\n  dataset: npz\n", "data", 2, "data.path"),
    ("name: x\nmodex:\n  arch: cnn\n", "modex", 2, "did you mean 'model'? It is required: add a model section"),
    ("model:\n  arhc: cnn\n", "model.arhc", 2, "did you mean 'arch'? It is required: choose one of: perceptron"),
    ("extendx: cnn_mnist\n", "extendx", 1, "did you mean 'extends'?"),  # the loader's key, not 'seed'
]


# Several problems in one section, and a section's cross-key problem beside a key that fails: all at once
# (pydantic stopped at a section's first failing check, and ran none while a key below failed).
@pytest.mark.parametrize("text,expected", [
    ("model: {arch: mlp}\ntrain:\n  run_eagerly: true\n  jit_compile: true\n  monitor: bar\n",
     {("train.jit_compile", 4), ("train.monitor", 5)}),
    ("model: {arch: mlp}\ntrain:\n  early_stopping: {monitor: foo}\n  monitor: bar\n",
     {("train.early_stopping.monitor", 3), ("train.monitor", 4)}),
    ("model: {arch: mlp}\ndata:\n  batch_size: 0\n  path: x.csv\n", {("data.batch_size", 3), ("data", 2)}),
    ("model: {arch: dcgan}\ntrain:\n  epochs: 0\n  schedule: {name: plateau}\n",
     {("train.epochs", 3), ("train.schedule", 4)}),
    # the default standing in for a failing key is not blamed: no "dataset 'mnist' does not read data.path",
    # no "optimizer 'adam' takes no momentum"
    ("model: {arch: mlp}\ndata:\n  dataset: npzz\n  path: x.npz\n", {("data.dataset", 3)}),
    ("model: {arch: mlp}\ntrain:\n  optimizer: {name: sgdd, momentum: 0.9}\n", {("train.optimizer.name", 3)}),
    # a default of "," is not a word to drop problems by: the second problem's message has commas in it
    ("model: {arch: mlp}\ndata:\n  separator: ';;'\n  path: x.csv\n", {("data.separator", 3), ("data", 2)}),
    # a required key misspelt is one problem, at the misspelt key, not a second "required key is missing"
    ("name: x\nmodex:\n  arch: cnn\n", {("modex", 2)}),
    ("model:\n  arhc: cnn\n  hidden: 3\n", {("model.arhc", 2)}),
    ("model: {arch: cyclegan}\ndata:\n  domain_c: {dataset: mnist_m}\n", {("data.domain_c", 3)}),
    # nor the default standing in for the key it looks like: a stateful model's shuffle_buffer (0 in the recipe)
    ("model: {arch: rnn_lm, stateful: true}\ndata:\n  dataset: ptb\n  shuffle_bufer: 0\n",
     {("data.shuffle_bufer", 4)}),
    # with no architecture, the data and train keys are checked against every task's sections: only what is
    # wrong for all of them (a text dataset, a series' missing: interpolate are a task's)
    ("model: {arch: foo}\ndata: {dataset: sentiment, missing: interpolate, batch_size: 0}\n",
     {("model.arch", 1), ("data.batch_size", 2)}),
])
def test_every_problem_of_a_section_at_once(write_recipe, text, expected):
    assert {(p.path, int(p.location.rsplit(":", 1)[1])) for p in problems_of(write_recipe(text))} == expected


@pytest.mark.parametrize("text,path,line,needle", MALFORMED)
def test_malformed_recipe_names_path_line_and_fix(write_recipe, text, path, line, needle):
    recipe = write_recipe(text)
    problems = problems_of(recipe)
    match = [p for p in problems if p.path == path]
    assert match, [p.render() for p in problems]
    p = match[0]
    if line is not None:
        assert p.location == f"{recipe}:{line}"
    assert needle in p.render()


def test_the_image_datasets_that_read_a_path_are_the_sources_that_do():
    from dlkit.data import sources
    from dlkit.recipe.schema import IMAGE_PATHS

    assert set(IMAGE_PATHS) == {name for name, ds in sources.DATASETS.items() if ds.reads_path}


def test_the_initializer_arguments_are_the_keras_initializers_own():
    import inspect

    from dlkit import catalog
    from dlkit.models.knobs import InitializerConfig
    from dlkit.models.layers import initializer

    arguments = set(InitializerConfig.model_fields) - {"name"}
    for name, keras_name in catalog.INITIALIZERS.items():
        takes = set(inspect.signature(type(initializer(InitializerConfig(name=name))).__init__).parameters)
        assert set(InitializerConfig.TAKES.get(keras_name, ())) == takes & arguments, name


def test_the_optimizer_arguments_are_the_keras_optimizers_own():
    import inspect

    import keras

    from dlkit import catalog
    from dlkit.recipe.schema import OptimizerConfig

    arguments = {"momentum", "nesterov", "beta_1", "beta_2", "epsilon", "rho"}
    assert arguments == set(OptimizerConfig.model_fields) - {"name", "learning_rate", "schedule", "weight_decay",
                                                              "clipnorm", "clipvalue", "global_clipnorm"}
    for name, keras_name in catalog.OPTIMIZERS.items():
        takes = set(inspect.signature(type(keras.optimizers.get(keras_name)).__init__).parameters)
        assert set(OptimizerConfig.TAKES[name]) == takes & arguments, name
        assert {"weight_decay", "clipnorm", "clipvalue", "global_clipnorm"} <= takes, name


def test_the_way_a_monitored_value_improves():
    from dlkit.recipe.schema import improves

    names = ("val_loss", "val_mae", "val_rmse", "val_perplexity", "accuracy", "val_bleu", "psnr_db", "foo")
    # val_mae was taken for a value to maximize: a forecaster's best.keras was its worst epoch
    assert [improves(n) for n in names] == ["min"] * 4 + ["max"] * 3 + [None]
    # what the other families log: a VAE's reconstruction term (-log p(x|z)) and NLL go down, its ELBO and an
    # RBM's pseudo-log-likelihood up; the word that ends last decides a compound; a GAN's critic estimate says no way
    names = {"val_reconstruction": "min", "test_nll": "min", "bits_per_dim": "min", "gradient_penalty": "min",
             "elbo": "max", "pseudo_log_likelihood": "max", "negative_log_likelihood": "min",
             "reconstruction_error": "min", "reconstruction_accuracy": "max", "wasserstein": None}
    assert {n: improves(n) for n in names} == names
    assert improves("foo", "max") == "max" and improves("val_loss", "max") == "max"


def test_the_best_epoch_of_each_metric_goes_its_own_way():
    """The summary's `best` column: the lowest MAE and perplexity (they were the highest: a regression's
    `best` mae was its first epoch's), the highest accuracy."""
    from dlkit.metrics import best_of

    rows = [{"epoch": 0, "mae": 9.0, "val_perplexity": 80.0, "accuracy": 0.5, "learning_rate": 0.1},
            {"epoch": 1, "mae": 3.0, "val_perplexity": 60.0, "accuracy": 0.9, "learning_rate": 0.01}]
    assert best_of(rows) == {"mae": 3.0, "val_perplexity": 60.0, "accuracy": 0.9}
    # a VAE's best reconstruction term was its highest (its worst epoch's); a value whose name says no way has
    # no best (it was taken at its highest)
    rows = [{"epoch": 0, "reconstruction": 615.2, "elbo": -622.7, "wasserstein": 1.5},
            {"epoch": 1, "reconstruction": 389.9, "elbo": -407.8, "wasserstein": 0.5}]
    assert best_of(rows) == {"reconstruction": 389.9, "elbo": -407.8}


def test_class_weights_by_name_index_or_balanced(write_recipe):
    """train.class_weight: `balanced` is n / (k * n_c) over the training split; a mapping names classes by
    name (or index), the rest weighing 1; a class the data lacks, a weight of 0 and the key on a model that is
    not a classifier are errors at their lines."""
    from dlkit.data.spec import DataSpec
    from dlkit.errors import RecipeError
    from dlkit.tasks.classification import class_weights

    spec = DataSpec(input_shape=(4,), num_classes=3, class_names=["cat", "dog", "emu"], class_counts=[60, 30, 0])
    r = load_recipe(write_recipe("model: {arch: mlp}\ntrain: {class_weight: balanced}\n"))
    assert class_weights(r, spec) == [0.5, 1.0, 1.0]  # 90 / (3 * 60), 90 / (3 * 30); emu has no examples
    r = load_recipe(write_recipe("model: {arch: mlp}\ntrain:\n  class_weight: {dog: 2.5, 2: 4}\n"))
    assert class_weights(r, spec) == [1.0, 2.5, 4.0]
    r = load_recipe(write_recipe("model: {arch: mlp}\ntrain:\n  class_weight: {dgo: 2.5}\n"))
    with pytest.raises(RecipeError, match=r"train.class_weight.dgo: no class 'dgo' in the data.*cat, dog, emu"):
        class_weights(r, spec)
    with pytest.raises(RecipeError, match=r"recipe.yaml:3: train.class_weight.*above 0; dog: 0"):
        load_recipe(write_recipe("model: {arch: mlp}\ntrain:\n  class_weight: {dog: 0}\n"))
    with pytest.raises(RecipeError, match=r"recipe.yaml:3: train.class_weight: .*a class read as true: YAML reads "
                                          r"yes, no, on, off, true and false as booleans; quote the class's name"):
        load_recipe(write_recipe("model: {arch: mlp}\ntrain:\n  class_weight: {yes: 3}\n"))
    with pytest.raises(RecipeError, match=r"recipe.yaml:2: train.class_weight: not used here \(class weights are a "
                                          r"classifier's"):
        load_recipe(write_recipe("model: {arch: autoencoder}\ntrain: {class_weight: balanced}\n"))


@pytest.mark.parametrize("text,path,message", [
    ("train:\n  class_weight: heavy\n", "train.class_weight",
     "Input should be 'balanced' or a valid dictionary; received 'heavy'"),
    ("train:\n  class_weight: {dog: .inf}\n", "train.class_weight.dog",
     "Input should be a finite number; received inf"),
    ("train:\n  distribution: {devices: many}\n", "train.distribution.devices",
     "Input should be 'auto' or a valid integer; received 'many'"),
])
def test_a_value_no_branch_of_a_union_takes_is_one_problem(write_recipe, text, path, message):
    """Not one problem a branch under pydantic's names for them (train.class_weight.literal['balanced'] and
    train.class_weight.dict[str,float]): one at the key, saying what each branch takes, or, where a branch took
    the value's type, that branch's problem at its own key."""
    recipe = write_recipe("model: {arch: mlp}\n" + text)
    problems = problems_of(recipe)
    assert [(p.path, p.location, p.message) for p in problems] == [(path, f"{recipe}:3", message)]


def test_all_errors_reported_together(write_recipe):
    recipe = write_recipe(
        "seed: x\nmodel:\n  arch: cnn\n  dropout: 2\ndata:\n  batchsize: 3\ntrain:\n  epochs: 0\n"
    )
    problems = problems_of(recipe)
    assert {p.path for p in problems} == {"seed", "model.dropout", "data.batchsize", "train.epochs"}
    assert [int(p.location.rsplit(":", 1)[1]) for p in problems] == [1, 4, 6, 8]  # sorted by line


def test_bad_yaml_gives_line(write_recipe):
    recipe = write_recipe("model:\n  arch: cnn\n  blocks: [\n")
    (p,) = problems_of(recipe)
    assert "invalid YAML" in p.message and p.location.startswith(str(recipe) + ":")
    assert p.hint.startswith("fix the syntax")
    recipe = write_recipe("name: x\nmodel: {arch: cnn\n\n")
    (p,) = problems_of(recipe)
    assert p.location == f"{recipe}:2"  # where the '{' left open is, not the file's end
    recipe = write_recipe("name: x\n---\nname: y\n")
    (p,) = problems_of(recipe)
    assert p.location == f"{recipe}:2" and p.hint.startswith("a recipe is one YAML document: remove the '---' line")
    recipe = write_recipe("model:\n\tarch: cnn\n")
    (p,) = problems_of(recipe)
    assert p.location == f"{recipe}:2" and p.hint == "YAML indents with spaces, not tabs: replace the tab"


def test_a_recipe_not_in_utf8_says_how_to_save_it(write_recipe):
    recipe = write_recipe("")
    recipe.write_text("name: x\nmodel: {arch: mlp}\n", encoding="utf-16")  # Windows PowerShell's `>`
    (p,) = problems_of(recipe)
    assert p.hint == "it is UTF-16 text, as Windows PowerShell's > writes it; a recipe is UTF-8: save it as UTF-8"
    recipe.write_bytes("name: été\n".encode("latin-1"))
    (p,) = problems_of(recipe)
    assert p.message.startswith(f"cannot read recipe {recipe}: 'utf-8' codec can't decode byte 0xe9")
    assert p.hint == "a recipe is UTF-8 text: save it as UTF-8"


def test_duplicate_keys_are_errors(write_recipe):
    recipe = write_recipe("model: {arch: cnn}\ntrain:\n  epochs: 2\n  epochs: 3\n")
    (p,) = problems_of(recipe)
    assert p.path == "train.epochs" and "duplicate" in p.message and p.location.endswith(":4")


def test_yaml_is_loaded_safely(write_recipe):
    recipe = write_recipe("name: !!python/object/apply:os.system ['true']\nmodel: {arch: cnn}\n")
    (p,) = problems_of(recipe)
    assert "invalid YAML" in p.message and "tags" in p.hint and "tabs" not in p.hint


def test_extends_merges_and_points_at_the_right_file(write_recipe):
    base = write_recipe("model:\n  arch: mlp\n  hidden: [32]\ntrain:\n  epochs: 4\n", "base.yaml")
    child = write_recipe("extends: base.yaml\nname: child\ntrain:\n  epochs: 2\n  optimizer: {name: sgd}\n")
    r = load_recipe(child)
    assert r.name == "child" and r.train.epochs == 2 and r.train.optimizer.name == "sgd"
    assert r.model.hidden[0].units == 32
    bad = write_recipe("extends: base.yaml\nmodel:\n  hiden: [3]\n", "bad.yaml")
    (p,) = problems_of(bad)
    assert p.path == "model.hiden" and p.location.endswith("bad.yaml:3")
    base.write_text("model:\n  arch: mlp\n  hidden: [0]\n")
    (p,) = problems_of(child)
    assert p.path == "model.hidden.0.units" and p.location.endswith("base.yaml:3")


def test_a_recipe_is_read_from_standard_input_or_a_pipe(write_recipe, tmp_path, monkeypatch):
    """`dlkit train -` reads the recipe from standard input, and a pipe given as RECIPE (`/dev/stdin` piped to, a
    shell's `<(...)`) is read as it is: a pipe was "recipe file not found: /proc/N/fd/pipe:[M]" (its name
    resolved), and a command reads its recipe more than once, which a pipe allows once. Its extends is beside
    the working folder; it needs a `name:`; a sweep or a tune, whose members read RECIPE again, refuse it."""
    import json
    import os
    import sys

    from typer.testing import CliRunner

    from conftest import TINY_MNIST
    from dlkit.cli import app
    from dlkit.recipe.source import forget_streams

    cli = CliRunner()
    write_recipe("model: {arch: mlp, hidden: [8]}\ntrain: {epochs: 3}\n", "base.yaml")
    monkeypatch.chdir(tmp_path)
    out = cli.invoke(app, ["validate", "-"], input="name: piped\nextends: base.yaml\ndata: {dataset: mnist}\n")
    assert out.exit_code == 0 and "ok <stdin>" in out.output, out.output
    out = cli.invoke(app, ["validate", "-", "--set", "train.epochs=0"], input="name: piped\nextends: base.yaml\n")
    assert out.exit_code == 2 and "--set train.epochs=0: train.epochs: Input should be greater" in out.output
    out = cli.invoke(app, ["validate", "-"], input="model: {arch: mlp, hiden: 3}\n")  # no name, a typo: both
    assert out.exit_code == 2 and "<stdin>:1: name: a recipe read from <stdin> has no file name to name its runs " \
                                  "by (give it one: name: NAME at its top)" in out.output, out.output
    assert "<stdin>:1: model.hiden: unknown key" in out.output
    for command in ("sweep", "tune"):
        out = cli.invoke(app, [command, "-", "--dry-run"], input=TINY_MNIST)
        assert out.exit_code == 2 and "can be read once only: write the recipe to a file" in out.output, out.output
    out = cli.invoke(app, ["train", "-", "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1", "--runs-root",
                           tmp_path / "runs", "--json", "-q"], input=TINY_MNIST)
    assert out.exit_code == 0, out.output
    manifest = json.loads((Path(json.loads(out.stdout)["run_dir"]) / "manifest.json").read_text())
    assert manifest["recipe_file"] == "<stdin>" and Path(json.loads(out.stdout)["run_dir"]).parent.name == "tiny"
    out = cli.invoke(app, ["evaluate", "-", "--runs-root", tmp_path / "runs", "--json"], input=TINY_MNIST)
    (trained,) = (tmp_path / "runs" / "tiny").iterdir()  # a recipe piped in names its newest run, as a file does
    assert out.exit_code == 0 and json.loads(out.stdout)["run_dir"] == str(trained), out.output

    read, write = os.pipe()  # what a shell's <(...) gives: a pipe's name
    os.write(write, b"name: piped\nextends: base.yaml\n")
    os.close(write)
    try:
        pipe = f"/proc/self/fd/{read}"
        first, again = load_recipe(pipe), load_recipe(pipe)  # the second read is the first's text
        assert first.name == again.name == "piped" and again.train.epochs == 3
    finally:
        os.close(read)

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())  # `dlkit train -` typed alone would wait on the terminal
    forget_streams()  # as each command does first: the train's standard input above is not this one's
    with pytest.raises(RecipeError, match="- reads the recipe from standard input, which is a terminal here"):
        load_recipe("-")


def test_extends_replaces_a_section_that_changes_its_name(write_recipe):
    write_recipe("model: {arch: mlp}\ntrain:\n  optimizer: {name: adam, beta_1: 0.5, learning_rate: 0.1}\n", "base.yaml")
    child = write_recipe("extends: base.yaml\ntrain:\n  optimizer: {name: rmsprop}\n")
    assert load_recipe(child).train.optimizer.model_dump() == {"name": "rmsprop", "learning_rate": 0.001}
    same = write_recipe("extends: base.yaml\ntrain:\n  optimizer: {name: adam, learning_rate: 0.2}\n", "same.yaml")
    assert load_recipe(same).train.optimizer.beta_1 == 0.5  # same name: merged key by key


def test_extends_missing_target_and_cycle(write_recipe):
    missing = write_recipe("extends: nowhere.yaml\nmodel: {arch: cnn}\n")
    (p,) = problems_of(missing)
    assert p.path == "extends" and "not found" in p.message and p.location.endswith(":1")
    write_recipe("extends: b.yaml\nmodel: {arch: cnn}\n", "a.yaml")
    b = write_recipe("extends: a.yaml\n", "b.yaml")
    (p,) = problems_of(b)
    assert "cycle" in p.message and "a.yaml" in p.message


def test_a_shipped_recipe_is_found_by_its_name_in_any_folder(tmp_path, monkeypatch):
    """`dlkit train cnn_mnist` (or the README's `recipes/gan_mnist.yaml`) in a folder without the repository's
    recipes/ trains the recipe dlkit ships; a file of the user's own that the name means comes first."""
    from dlkit.recipe import recipe_file, shipped

    monkeypatch.chdir(tmp_path)
    recipes = Path(__file__).parents[1] / "recipes"
    assert recipe_file("cnn_mnist") == recipes / "cnn_mnist.yaml"
    assert load_recipe("recipes/gan_mnist.yaml").name == "gan_mnist"
    momentum = load_recipe("lessons/opt_momentum")  # extends opt_sgd.yaml, which extends ../mlp_mnist.yaml
    assert (momentum.name, momentum.model.arch, momentum.data.limit) == ("opt_momentum", "mlp", 12000)
    (tmp_path / "cnn_mnist.yaml").write_text("name: mine\nmodel: {arch: mlp}\n")
    assert load_recipe("cnn_mnist").name == load_recipe("cnn_mnist.yaml").name == "mine"
    assert load_recipe("recipes/cnn_mnist.yaml").name == "cnn_mnist"
    (tmp_path / "gan_mnist").mkdir()  # a folder of one's own named as a shipped recipe is not a recipe
    assert load_recipe("gan_mnist").name == "gan_mnist"
    (tmp_path / "mine").mkdir()
    (p,) = problems_of("mine")
    assert "mine is a folder, not a recipe file" in p.message
    for path in ("../recipes/cnn_mnist.yaml", str(tmp_path / "recipes" / "cnn_mnist.yaml"), "gan_mnist/x"):
        assert shipped.find(path) is None, path
    (p,) = problems_of("cnn_mnst.yaml")
    assert "recipe file not found: cnn_mnst.yaml" in p.message
    assert p.hint == "did you mean cnn_mnist, a recipe dlkit ships?"
    (p,) = problems_of("my_own.yaml")
    assert "`dlkit list` shows them" in p.hint
    assert list(shipped.names()) == sorted(str(p.relative_to(recipes).with_suffix("")) for p in RECIPES)


def test_a_recipe_extends_a_shipped_one_by_name(write_recipe):
    """`extends: cnn_mnist` in a recipe of one's own: a path relative to it first, then the recipe dlkit ships;
    the keys it inherits point at the shipped file's lines."""
    from dlkit.recipe import load_raw

    mine = write_recipe("extends: cnn_mnist\nname: mine\ntrain: {epochs: 1}\nmodel:\n  dropot: 0.3\n", "mine.yaml")
    (p,) = problems_of(mine)
    assert p.path == "model.dropot" and p.location.endswith("mine.yaml:5")
    mine.write_text("extends: cnn_mnist.yaml\nname: mine\ntrain: {epochs: 1}\n")
    r = load_recipe(mine)
    assert (r.name, r.model.arch, r.model.blocks[1].filters, r.train.epochs) == ("mine", "cnn", 64, 1)
    locations = load_raw(mine)[1]
    assert locations[("model", "blocks")].endswith("recipes/cnn_mnist.yaml:12")
    assert locations[("train", "epochs")].endswith("mine.yaml:3")
    local = write_recipe("name: local\nmodel: {arch: mlp}\n", "cnn_mnist.yaml")
    assert load_recipe(mine).model.arch == "mlp"  # the folder's own cnn_mnist.yaml comes first
    mine.write_text("extends: cnn_mnist\nname: mine\n")  # NAME is NAME.yaml beside it too
    assert load_recipe(mine).model.arch == "mlp"
    local.write_text("extends: cnn_mnist\nname: local\n")  # never itself: dlkit's cnn_mnist
    assert load_recipe(local).model.arch == load_recipe(mine).model.arch == "cnn"
    typo = write_recipe("extends: cnn_mnst\n", "typo.yaml")
    (p,) = problems_of(typo)
    assert p.path == "extends" and p.location.endswith("typo.yaml:1") and p.hint.endswith("did you mean cnn_mnist?")


def test_set_overrides_with_yaml_types(write_recipe):
    recipe = write_recipe("model: {arch: mlp}\n")
    r = load_recipe(recipe, ["train.epochs=3", "model.hidden=[8, 4]", "data.cache=false",
                             "train.optimizer.learning_rate=0.5"])
    assert r.train.epochs == 3 and [h.units for h in r.model.hidden] == [8, 4]
    assert r.data.cache is False and r.train.optimizer.learning_rate == 0.5
    (p,) = problems_of(recipe, ["train.epochs=lots"])
    assert p.path == "train.epochs" and p.location == "--set train.epochs=lots"
    # a misspelt section the --set made is the --set's, not the line of the section above it in the file
    recipe = write_recipe("model: {arch: mlp}\ntrain:\n  epochs: 2\n")
    (p,) = problems_of(recipe, ["train.optimizr.learning_rate=1"])
    assert p.path == "train.optimizr" and p.location == "--set train.optimizr.learning_rate=1", p
    with pytest.raises(RecipeError):
        parse_override("no-equals-sign")
    # said "extends: unknown key (did you mean 'extends'?)": the file's extends is read before the --sets
    (p,) = problems_of(recipe, ["extends=cnn_mnist"])
    assert p.path == "extends" and "read from its file, before any --set" in p.message, p


def test_set_names_a_lists_entry_by_its_index(write_recipe):
    """--set model.blocks.1.filters=8: a list's entry by its index from 0, its key or the whole entry; an index
    the list does not have is a problem at the list's line, saying what it holds."""
    recipe = write_recipe("model:\n  arch: cnn\n  blocks:\n    - {filters: 4}\n    - {filters: 6, pool: avg}\n")
    r = load_recipe(recipe, ["model.blocks.1.filters=8", "model.blocks.0={filters: 5, kernel_size: 5}"])
    assert [(b.filters, b.kernel_size, b.pool) for b in r.model.blocks] == [(5, 5, "max"), (8, 3, "avg")]
    for index in ("2", "x", "-1"):
        (p,) = problems_of(recipe, [f"model.blocks.{index}.filters=8"])
        assert p.path == "model.blocks" and p.location.endswith("recipe.yaml:3"), p
        assert f"model.blocks is a list of 2 entries; '{index}' is not one of their indexes (0 to 1)" in p.message
    (p,) = problems_of(recipe, ["model.blocks.0.filters.1=8"])  # a value, not a section
    assert p.path == "model.blocks.0.filters" and "holds a value (4 in the recipe), not a section" in p.message
    # an MLP's `hidden: [8, 4]` as its file writes it (show resolves it as [{units: 8}, ...]): set whole
    mlp = write_recipe("model: {arch: mlp, hidden: [8, 4]}\n", "mlp.yaml")
    (p,) = problems_of(mlp, ["model.hidden.0.units=3"])
    assert p.path == "model.hidden.0" and "holds a value (8 in the recipe)" in p.message
    assert p.hint == "set it whole: --set model.hidden.0=VALUE"
    assert [h.units for h in load_recipe(mlp, ["model.hidden.0=3"]).model.hidden] == [3, 4]
    (p,) = problems_of(recipe, ["model.blocks.1.filters=-3"])  # the schema's problem, at the --set
    assert p.path == "model.blocks.1.filters" and p.location == "--set model.blocks.1.filters=-3"


def test_a_set_into_a_section_the_recipe_leaves_to_its_default_says_to_set_it_whole(write_recipe):
    """A GAN's initializer is its default (random_normal, stddev 0.02) where the recipe does not set it; a --set
    of one of its keys makes the section with that key alone, and the missing name says so."""
    recipe = write_recipe("model: {arch: dcgan}\n")
    (p,) = problems_of(recipe, ["model.initializer.stddev=0.1"])
    assert p.path == "model.initializer.name" and p.message == "required key is missing"
    assert p.hint.startswith("the recipe does not set model.initializer (its default is not merged into a --set): "
                             "the --set made it with only the key it gives; set it whole, --set "
                             "'model.initializer={name: ..., ...}'"), p.hint
    (p,) = problems_of(recipe, ["model.initializer={stddev: 0.1}"])  # given whole: the plain problem
    assert p.path == "model.initializer.name" and "the --set made it" not in (p.hint or "")
    assert load_recipe(recipe, ["model.initializer={name: random_normal, stddev: 0.1}"]).model.initializer.stddev == 0.1


def test_devices_without_data_parallel_is_a_problem_not_dropped(write_recipe):
    """train.distribution.devices is read by strategy data_parallel only; with strategy none (the default) it
    was dropped in silence and the run trained on one device."""
    recipe = write_recipe("model: {arch: mlp}\n")
    (p,) = problems_of(recipe, ["train.distribution.devices=2"])
    assert p.path == "train.distribution" and "devices 2 is read by strategy data_parallel only" in p.message
    assert p.location == "--set train.distribution.devices=2"
    r = load_recipe(recipe, ["train.distribution={strategy: data_parallel, devices: 2}"])
    assert (r.train.distribution.strategy, r.train.distribution.devices) == ("data_parallel", 2)


def test_an_exponent_without_a_dot_is_a_number(write_recipe):
    # PyYAML's YAML 1.1 reads 1e-3 as the string '1e-3', which the schema refused as "not a valid number"
    recipe = write_recipe("model: {arch: mlp}\ntrain:\n  optimizer: {name: adam, learning_rate: 1e-3, epsilon: 1E-7}\n")
    r = load_recipe(recipe)
    assert r.train.optimizer.learning_rate == 0.001 and r.train.optimizer.epsilon == 1e-7
    assert load_recipe(recipe, ["train.optimizer.weight_decay=5e+2"]).train.optimizer.weight_decay == 500.0
    (p,) = problems_of(recipe, ["train.optimizer.learning_rate=-2e-1"])
    assert "greater than 0" in p.message and "-0.2" in p.message
    # quoted, it is the string the user asked for; a version-like word stays a word
    quoted = write_recipe("model: {arch: mlp}\ntrain:\n  optimizer: {learning_rate: '1e-3'}\n", "quoted.yaml")
    (p,) = problems_of(quoted)
    assert p.path == "train.optimizer.learning_rate"
    assert load_recipe(recipe, ["name=v1e3"]).name == "v1e3"


def test_defaults_make_a_minimal_recipe(write_recipe):
    r = load_recipe(write_recipe("model: {arch: cnn}\n", "minimal.yaml"))
    assert r.name == "minimal" and r.data.dataset == "mnist" and r.train.optimizer.name == "adam"
    assert r.train.epochs == 10 and r.data.batch_size == 128


def test_resolved_recipe_round_trips(write_recipe, tmp_path):
    import yaml

    r = load_recipe(write_recipe("model:\n  arch: resnet\n  regularizer: null\n  initializer: {name: random_normal, stddev: 0.02}\n"))
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(r.to_dict()))
    r2 = load_recipe(again)
    assert r2.to_dict() == r.to_dict() and r2.model.regularizer is None


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_recipes_validate(path):
    r = load_recipe(path)
    assert r.name == path.stem


# ---------------------------------------------------------------- each task's own sections

GAN = "name: g\nmodel: {arch: dcgan}\ndata: {scale: symmetric}\ntrain:\n  epochs: 2\n"


@pytest.mark.parametrize("line,path,needle", [
    ("  optimizer: {name: adam, clipnorm: 1.0}", "train.optimizer", "train.optimizers.generator"),
    ("  metrics: [accuracy]", "train.metrics", "logged each epoch"),
    ("  monitor: d_loss", "train.monitor", "dlkit evaluate --reference"),
    ("  loss: mse", "train.loss", "model.objective"),
    ("  early_stopping: {patience: 2}", "train.early_stopping", "no value tells when a GAN is done"),
])
def test_a_gan_recipe_with_a_train_key_it_does_not_use_exits_2_with_its_line(write_recipe, tmp_path, line, path,
                                                                            needle):
    from typer.testing import CliRunner

    from dlkit.cli import app

    recipe = write_recipe(GAN + line + "\n")
    (p,) = problems_of(recipe)
    assert p.path == path and p.location == f"{recipe}:6" and "not used here" in p.message and needle in p.hint
    for command in (["validate", str(recipe)], ["train", str(recipe), "--runs-root", str(tmp_path / "runs")]):
        out = CliRunner().invoke(app, command)
        assert out.exit_code == 2 and f"{recipe.name}:6: {path}: not used here" in out.stderr.replace("\n", " ")
    assert not (tmp_path / "runs").exists()


def test_optimizer_roles_are_the_tasks(write_recipe):
    # one role, `model`: train.optimizer is its short form, train.optimizers.model the long one
    long = load_recipe(write_recipe("model: {arch: mlp}\ntrain:\n  optimizers:\n    model: {name: sgd, learning_rate: 0.5}\n"))
    assert long.train.optimizer.name == "sgd" and long.train.optimizer.learning_rate == 0.5
    assert "optimizers" not in long.to_dict()["train"] and long.to_dict()["train"]["optimizer"]["name"] == "sgd"
    (p,) = problems_of(write_recipe("model: {arch: mlp}\ntrain:\n  optimizers:\n    generator: {name: sgd}\n"))
    assert p.path == "train.optimizers.generator" and p.location.endswith(":4") and "did you mean 'model'" not in p.hint
    assert "Keys here: model" in p.hint
    (p,) = problems_of(write_recipe("model: {arch: mlp}\ntrain:\n  optimizer: {name: sgd}\n  optimizers: {model: {}}\n"))
    assert "not both" in p.message
    # a GAN's roles: generator and discriminator; a misspelt one is named with the right one
    (p,) = problems_of(write_recipe(GAN + "  optimizers:\n    generater: {name: adam}\n"))
    assert p.path == "train.optimizers.generater" and "did you mean 'generator'" in p.hint
    (p,) = problems_of(write_recipe(GAN + "  schedule: {name: plateau}\n"))
    assert "plateau schedule needs a monitored value" in p.message


def test_an_optimizer_role_given_in_part_keeps_its_default(write_recipe):
    """A role whose default is another optimizer's settings (a GAN's Adam(2e-4, beta_1=0.5), a DBN's
    pretraining SGD with momentum and weight decay), given only some keys, in the file or by --set, keeps the
    default's others; naming another optimizer replaces it whole. Before, the given keys alone were a new Adam:
    beta_1 0.9, and the DBN's pretraining was an Adam."""
    gan = write_recipe(GAN + "  optimizers:\n    generator: {learning_rate: 0.001}\n")
    roles = load_recipe(gan).train.optimizers
    assert (roles.generator.name, roles.generator.learning_rate, roles.generator.beta_1) == ("adam", 0.001, 0.5)
    assert (roles.discriminator.learning_rate, roles.discriminator.beta_1) == (0.0002, 0.5)
    assert load_recipe(gan).to_dict()["train"]["optimizers"]["generator"] == \
        {"name": "adam", "learning_rate": 0.001, "beta_1": 0.5}  # what a run's recipe.yaml keeps
    g = load_recipe(write_recipe(GAN, "plain.yaml"), ["train.optimizers.discriminator.clipnorm=1.0"])
    g = g.train.optimizers.discriminator
    assert (g.beta_1, g.learning_rate, g.clipnorm) == (0.5, 0.0002, 1.0)
    g = load_recipe(gan, ["train.optimizers.generator.beta_1=0.9"]).train.optimizers.generator
    assert (g.beta_1, g.learning_rate) == (0.9, 0.001)
    rms = write_recipe(GAN + "  optimizers:\n    generator: {name: rmsprop}\n", "rms.yaml")
    g = load_recipe(rms).train.optimizers.generator
    assert (g.name, g.learning_rate, g.beta_1) == ("rmsprop", 0.001, None)  # another optimizer: Keras's defaults
    (p,) = problems_of(write_recipe(GAN + "  optimizers:\n    generator: {momentum: 0.9}\n", "bad.yaml"))
    assert p.path == "train.optimizers.generator.momentum" and p.location.endswith("bad.yaml:7")
    assert "'adam' takes no" in p.message
    dbn = load_recipe(write_recipe("model: {arch: dbn}\ntrain:\n  pretrain_optimizer: {learning_rate: 0.1}\n",
                                   "dbn.yaml"))
    sgd = dbn.train.pretrain_optimizer
    assert (sgd.name, sgd.learning_rate, sgd.momentum, sgd.weight_decay) == ("sgd", 0.1, 0.9, 0.0002)
    assert dbn.train.optimizer.name == "adam" and dbn.train.optimizer.beta_1 is None  # a plain default: as ever


def test_the_second_domain_belongs_to_translation(write_recipe):
    (p,) = problems_of(write_recipe("model: {arch: cnn}\ndata:\n  domain_b: {dataset: mnist_m}\n"))
    assert p.path == "data.domain_b" and p.message == "not used here" and "cyclegan" in p.hint
    (p,) = problems_of(write_recipe("model: {arch: cyclegan}\ndata: {scale: symmetric}\n"))
    assert p.path == "data.domain_b" and "required" in p.message


def test_an_unknown_architecture_still_reports_the_other_sections(write_recipe):
    problems = problems_of(write_recipe("model: {arch: dcgam}\ndata: {batch_size: 0}\ntrain: {metrics: [x]}\n"))
    assert {p.path for p in problems} == {"model.arch", "data.batch_size"}  # metrics may belong to its task


# ---------------------------------------------------------------- bad input: limits, bombs, escapes, fuzzing


@pytest.mark.parametrize("text,path,needle", [
    ("name: ../../x\nmodel: {arch: mlp}\n", "name", "one folder name"),
    ("name: /etc/x\nmodel: {arch: mlp}\n", "name", "one folder name"),
    ("model: {arch: mlp}\ndata: {batch_size: 99999999999999999999999}\n", "data.batch_size", "less than or equal"),
    ("model: {arch: mlp}\ntrain: {epochs: 100000000}\n", "train.epochs", "less than or equal"),
    ("model: {arch: mlp}\ntrain: {optimizer: {learning_rate: .nan}}\n", "train.optimizer.learning_rate", "finite"),
    ("model: {arch: mlp}\ntrain: {optimizer: {learning_rate: .inf}}\n", "train.optimizer.learning_rate", "finite"),
    ("model: {arch: mlp, dropout: -.inf}\n", "model.dropout", "finite"),
    ("model: {arch: mlp}\ntrain: {run_eagerly: true, jit_compile: true}\n", "train.jit_compile", "set one"),
])
def test_values_no_run_should_take_are_refused(write_recipe, text, path, needle):
    problems = problems_of(write_recipe(text))
    assert any(p.path == path and needle in p.render() for p in problems), [p.render() for p in problems]


def test_a_name_from_set_cannot_leave_the_runs_root(write_recipe, tmp_path):
    from typer.testing import CliRunner

    from dlkit.cli import app

    recipe = write_recipe("model: {arch: mlp}\n")
    for name in ("/etc/x", "../x", "a/b", ".."):
        out = CliRunner().invoke(app, ["train", str(recipe), "--set", f"name={name}", "--runs-root", str(tmp_path / "r")])
        assert out.exit_code == 2 and "one folder name" in out.stderr, name
    assert not (tmp_path / "r").exists()


def test_yaml_bombs_deep_nesting_and_huge_values_are_refused(write_recipe, tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcdefgh", "bcdefghi")) + "model: {arch: mlp}\n"
    (p,) = problems_of(write_recipe(laughs, "bomb.yaml"))  # 10^9 values if expanded
    assert "expands to more than 100,000 values" in p.message
    (p,) = problems_of(write_recipe("model: " + "[" * 60 + "]" * 60 + "\n", "deep.yaml"))
    assert "nests more than 50 levels" in p.message
    (p,) = problems_of(write_recipe("name: " + "x" * 20_000 + "\nmodel: {arch: mlp}\n", "long.yaml"))
    assert "20,000 characters" in p.message
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 2_000_000 + "\nmodel: {arch: mlp}\n")
    (p,) = problems_of(big)
    assert "a recipe is at most 1,000,000" in p.message
    (p,) = problems_of(write_recipe("model: {arch: mlp}\n"), ["train.metrics=" + "[" * 70 + "]" * 70])
    assert p.path == "train.metrics" and "nests more than 50" in p.message


def test_random_recipes_and_overrides_give_recipe_errors_never_tracebacks(tmp_path_factory):
    """Property-based: any YAML tree built from recipe keys and odd values, with any --set overrides, either
    validates or raises RecipeError (what the CLI prints as exit 2); nothing else escapes."""
    import yaml
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from dlkit.recipe.schema import Recipe

    keys = st.sampled_from(["name", "seed", "data", "model", "train", "arch", "epochs", "batch_size", "optimizer",
                            "optimizers", "learning_rate", "hidden", "blocks", "filters", "schedule", "dataset",
                            "extends", "generator", "discriminator", "noise", "1", "", "x.y", "🙂"])
    scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True)
               | st.text(max_size=20) | st.sampled_from(["mlp", "cnn", "dcgan", "vae", "rbm", "dbn", "cyclegan",
                                                          "adam", "mnist", "npz", "cosine", "plateau"]))
    trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                         max_leaves=25)
    overrides = st.lists(st.builds(lambda k, v: f"{k}={v}", st.text(max_size=15), st.text(max_size=15)), max_size=3)
    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tree=trees, sets=overrides)
    @example(tree=None, sets=["¹="])  # a digit to isdigit, not to int: was a ValueError from the key's location
    def check(tree, sets):
        path = folder / "r.yaml"
        path.write_text(yaml.safe_dump(tree, allow_unicode=True) if not isinstance(tree, str) else tree)
        try:
            assert isinstance(load_recipe(path, sets), Recipe)
        except RecipeError as e:
            assert e.problems and all(p.message for p in e.problems)

    check()


def test_attention_maps_0_on_a_model_without_attention_says_what_it_does(write_recipe):
    assert load_recipe(write_recipe("model: {arch: seq2seq}\ntrain: {attention_maps: 0}\n")).train.attention_maps == 0


@pytest.mark.parametrize("model, said", [
    ("{arch: seq2seq, attention: none, score: dot}", "attention: none does not take it (it has no attention to "
                                                     "score)"),
    ("{arch: seq2seq, attention: bahdanau, score: dot}", "does not take it (bahdanau's score is additive)"),
    ("{arch: rnn_classifier, batch_norm: after}", "between time steps of a recurrent model; use dropout (and "
                                                  "recurrent_dropout) instead"),
    # the digit reader's convolutions take it, block by block (they were told to use dropout)
    ("{arch: cnn_rnn_reader, batch_norm: after}", "the convolutions take it block by block (blocks: [{filters: "
                                                  "32, batch_norm: after}, ...])")])
def test_a_key_a_model_does_not_take_says_why_for_that_model(write_recipe, model, said):
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(f"model: {model}\n"))
    assert said in str(e.value)
    reader = load_recipe(write_recipe("model: {arch: cnn_rnn_reader, blocks: [{filters: 8, batch_norm: after}]}\n"))
    assert reader.model.blocks[0].batch_norm == "after"


def _string_leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _string_leaves(v, (*path, k))
    elif isinstance(node, list) and path[-1] == "metrics":  # names one each (a model's layer lists hold numbers)
        for i, v in enumerate(node):
            yield from _string_leaves(v, (*path, str(i)))
    elif isinstance(node, str):
        yield ".".join(path)


def test_every_name_in_a_shipped_recipes_model_and_train_is_checked_when_it_loads():
    """Each string of a shipped recipe's model and train sections names something (an activation, an
    initializer, a cell, an optimizer, a monitored measure): set to a name nothing has, the recipe is refused
    as it loads, at that key. `model.code_activation` and `model.recurrent_initializer` were Keras's error at
    build time, after `dlkit validate` had said ok; so were train.loss and train.metrics, now held to
    catalog.LOSSES and METRICS (Keras's own names, tests/test_models.py)."""
    accepted, checked = [], 0
    for path in RECIPES:
        base = load_recipe(path).to_dict()
        for key in [k for section in ("model", "train") for k in _string_leaves(base[section], (section,))]:
            checked += 1
            try:
                load_recipe(path, [f"{key}=no_such_name"])
                accepted.append(f"{path.stem}: {key}")
            except RecipeError as e:
                # at the key, inside it (on_nan's short form is its `action`), or at the section holding it
                assert any(p.path in (key, key.rsplit(".", 1)[0]) or p.path.startswith(key + ".")
                           for p in e.problems), (key, str(e))
    assert checked > 300 and not accepted, accepted


def test_run_eagerly_reaches_compile_and_turns_xla_off(write_recipe):
    from dlkit import optim

    eager = load_recipe(write_recipe("model: {arch: mlp}\ntrain: {run_eagerly: true}\n")).train
    assert optim.compile_options(eager, 10) == {"jit_compile": False, "run_eagerly": True, "steps_per_execution": 1}
    plain = load_recipe(write_recipe("model: {arch: mlp}\n")).train
    assert optim.compile_options(plain, 10)["run_eagerly"] is False


def test_an_environment_variable_in_a_data_path_is_read_and_the_path_it_makes_kept(tmp_path, monkeypatch, write_recipe):
    """`$NAME` and `${NAME}` in data.path and data.dir are environment variables, as a shell reads them, and the
    resolved recipe (a run's recipe.yaml) keeps the path they make. One that is not set is a recipe error at
    its line (it was a path of its own, `./$DATA/mine.npz`, not found); a path that is there as written (a
    folder with a `$` in its name) is read as written."""
    monkeypatch.setenv("DLKIT_T_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("DLKIT_T_NONE", raising=False)
    r = load_recipe(write_recipe("model: {arch: mlp}\ndata: {dataset: npz, path: $DLKIT_T_DATA/mine.npz, "
                                 "dir: '${DLKIT_T_DATA}'}\n"))
    assert r.data.path == str(tmp_path / "data" / "mine.npz") and r.data.dir == str(tmp_path / "data")
    problems = problems_of(write_recipe("model: {arch: mlp}\ndata:\n  dataset: npz\n  path: ${DLKIT_T_NONE}/a.npz\n"))
    assert [(p.path, p.location.rsplit(":", 1)[1]) for p in problems] == [("data.path", "4")]
    assert problems[0].message.startswith("$DLKIT_T_NONE is not set in the environment ('${DLKIT_T_NONE}/a.npz')")
    literal = tmp_path / "a$DLKIT_T_NONE"
    literal.mkdir()
    assert load_recipe(write_recipe(f"model: {{arch: cnn}}\ndata: {{dataset: mnist, dir: '{literal}'}}\n")).data.dir \
        == str(literal)


def test_a_section_given_as_a_scalar_names_its_keys_and_short_form(write_recipe):
    # pydantic said "Input should be a valid dictionary or instance of DenseLayer": a class name of dlkit's code
    recipe = write_recipe("model: {arch: mlp, hidden: [2.5], initializer: 3}\ntrain: {optimizer: 3}\n")
    found = {p.path: p.message for p in problems_of(recipe)}
    assert found["model.hidden.0"].startswith("expected a mapping of its keys (")
    assert "units" in found["model.hidden.0"] and "a number of units (256 is {units: 256})" in found["model.hidden.0"]
    assert found["model.hidden.0"].endswith("received 2.5")
    assert "a name (he_normal is {name: he_normal})" in found["model.initializer"]
    assert "learning_rate" in found["train.optimizer"] and " or " not in found["train.optimizer"]
    assert not any("instance of" in m for m in found.values())
