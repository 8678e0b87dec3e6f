"""The command line through Typer's CliRunner: every command, every exit code, --json, plain output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DATA, ROOT, TINY_MNIST, copy_run
from dlkit.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_commands_and_exit_codes():
    result = run("--help")
    assert result.exit_code == 0
    for word in ("train", "evaluate", "validate", "show", "list", "130 interrupted", "3 data not found"):
        assert word in result.stdout


def test_every_command_and_option_is_in_the_cli_docs():
    """docs/cli.md names each command and each option of it (its long form): `--unsafe`, on six commands, was
    in their --help and docs/reliability.md alone."""
    import typer

    doc = (ROOT / "docs" / "cli.md").read_text()
    commands = typer.main.get_command(app).commands
    assert len(commands) >= 14
    missing = [f"dlkit {name}" for name in commands if f"## dlkit {name}" not in doc]
    missing += [f"dlkit {name} {max(p.opts, key=len)}" for name, command in commands.items() for p in command.params
                if p.param_type_name == "option" and max(p.opts, key=len) != "--help"
                and max(p.opts, key=len) not in doc]
    assert not missing, missing


def test_help_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys; from dlkit.cli import app; from dlkit.tasks import load_recipe; " \
           "[load_recipe(f'recipes/{r}.yaml') for r in ('gan_mnist', 'cnn_mnist', 'cyclegan_mnist_m')]; " \
           "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False False"


def test_list():
    result = run("list")
    assert result.exit_code == 0
    for word in ("resnet", "lenet5", "fashion_mnist", "adagrad", "xavier_normal", "l1l2", "rotation"):
        assert word in result.stdout
    data = json.loads(run("list", "--json").stdout)
    assert "he_normal" in data["initializers"] and "cnn" in data["architectures"]
    assert "huber" in data["losses"] and "f1_score" in data["metrics"] and "rmse" in data["metrics"]
    assert "lessons/opt_sgd" in data["recipes"]
    assert len(data["recipes"]) == len(list((ROOT / "recipes").rglob("*.yaml")))
    wide = runner.invoke(app, ["list"], env={"COLUMNS": "250"}).stdout
    assert f"recipes (in {ROOT / 'recipes'}: `dlkit train NAME`" in wide
    assert "cnn_mnist          A small CNN on MNIST: two conv stages with batch norm, dropout, Adam with a cosine " \
           "schedule. [cnn]" in wide
    assert "A small Transformer encoder-decoder (Vaswani et al. 2017) on the same data" in wide  # not cut at "al."
    from dlkit.cli import LIST_GROUPS

    assert tuple(data) == LIST_GROUPS
    assert json.loads(run("list", "schedules", "--json").stdout) == {"schedules": data["schedules"]}
    one = run("list", "optimizers")
    assert one.exit_code == 0 and one.stdout.startswith("optimizers\n  sgd ") and "he_normal" not in one.stdout
    wrong = run("list", "optimizer", "--json")
    assert wrong.exit_code == 2 and "did you mean 'optimizers'?" in json.loads(wrong.stdout)["error"]


def test_tab_completes_the_shipped_recipes_names():
    """`dlkit train cnn_m<TAB>`: the shipped recipes of that prefix; a prefix no name has gets nothing, and
    Typer's completion scripts then complete file names."""
    def complete(words):
        env = {"_DLKIT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        return runner.invoke(app, [], env=env, prog_name="dlkit").stdout.split()

    assert complete("dlkit train cnn_m") == ["cnn_mnist", "cnn_mnist_fast"]
    assert complete("dlkit validate lessons/opt_r") == ["lessons/opt_rmsprop"]
    assert complete("dlkit show ./my") == complete("dlkit train recipes/") == []


def test_a_shipped_recipe_by_name(tmp_path, monkeypatch):
    """In a folder without recipes/, `train` and `evaluate` take a shipped recipe's name; `train` says which
    file that is (here its data is missing: exit 3, and no run directory)."""
    monkeypatch.chdir(tmp_path)
    result = run("train", "mlp_mnist", "--set", f"data.dir={tmp_path / 'none'}", "--set", "data.download=false")
    assert result.exit_code == 3 and "data.dir" in result.stderr
    assert f"recipe {ROOT / 'recipes' / 'mlp_mnist.yaml'} (shipped with dlkit)" in result.stdout
    assert not (tmp_path / "runs").exists()
    result = run("evaluate", "mlp_mnist")
    assert result.exit_code == 2 and "no finished run of 'mlp_mnist' under runs/mlp_mnist" in result.stderr
    result = run("evaluate", "mlp_mnst")
    assert result.exit_code == 2 and "did you mean mlp_mnist, a recipe dlkit ships?" in result.stderr
    checked = json.loads(run("validate", "lessons/", "--json").stdout)["recipes"]  # a shipped folder: its recipes
    assert [r["recipe"] for r in checked] == [str(p) for p in sorted((ROOT / "recipes" / "lessons").glob("*.yaml"))]
    assert {r["status"] for r in checked} == {"ok"}


def test_show_prints_resolved_recipe(write_recipe):
    import yaml

    recipe = write_recipe("model: {arch: mlp}\n", "r.yaml")
    result = run("show", recipe, "--set", "train.epochs=7")
    assert result.exit_code == 0
    shown = yaml.safe_load(result.stdout)
    assert shown["train"]["epochs"] == 7 and shown["data"]["batch_size"] == 128 and shown["name"] == "r"
    data = json.loads(run("show", recipe, "--set", "train.epochs=7", "--json").stdout)
    assert data == {"status": "ok", "recipe_file": str(recipe), "recipe": shown}
    data = json.loads(run("show", "lessons/opt_adam", "--json").stdout)  # for scripts: the file a name stands for
    assert data["recipe_file"] == str(ROOT / "recipes" / "lessons" / "opt_adam.yaml")
    bad = run("show", "lessons/opt_adm", "--json")
    assert bad.exit_code == 2 and "did you mean lessons/opt_adam" in json.loads(bad.stdout)["error"]


def test_validate_ok_and_bad(write_recipe, tiny_recipe):
    bad = write_recipe("model:\n  arch: cnn\n  dropot: 0.1\n", "bad.yaml")
    assert run("validate", tiny_recipe).exit_code == 0
    result = run("validate", tiny_recipe, bad)
    assert result.exit_code == 2
    assert "bad.yaml:3" in result.stderr and "model.dropot" in result.stderr and "dropout" in result.stderr
    data = json.loads(run("validate", bad, "--json").stdout)
    assert data["status"] == "error" and data["recipes"][0]["exit_code"] == 2
    quiet = run("validate", "-q", tiny_recipe, bad)  # for scripts: the errors alone
    assert quiet.exit_code == 2 and quiet.stdout == "" and "bad.yaml:3" in quiet.stderr
    assert "\nok " not in "\n" + quiet.stderr


def test_validate_takes_a_folder_and_train_says_a_folder_is_not_a_recipe(tmp_path):
    (tmp_path / "set" / "lessons").mkdir(parents=True)
    (tmp_path / "set" / "b.yaml").write_text("model:\n  arch: cnn\n  dropot: 0.1\n")
    (tmp_path / "set" / "lessons" / "a.yml").write_text("model: {arch: nope}\n")
    (tmp_path / "set" / "notes.txt").write_text("not a recipe")
    data = json.loads(run("validate", tmp_path / "set", "--json").stdout)
    assert [Path(r["recipe"]).name for r in data["recipes"]] == ["b.yaml", "a.yml"]
    assert [r["exit_code"] for r in data["recipes"]] == [2, 2]
    result = run("train", tmp_path / "set")  # was "[Errno 21] Is a directory"
    assert result.exit_code == 2 and "is a folder, not a recipe file (give one of its recipes (b.yaml)" in result.stderr


def test_validate_build_shows_parameters(tiny_recipe):
    result = run("validate", "--build", tiny_recipe)
    assert result.exit_code == 0 and "12,770 parameters" in result.stdout
    # and what reading the data did, as train says it: here a key MNIST's own test set leaves unread
    result = run("validate", "--build", "--json", tiny_recipe, "--set", "data.test_split=0.5")
    assert json.loads(result.stdout)["recipes"][0]["data_notes"][0].startswith("data.test_split: 0.5 was not read")


def test_problems_found_after_loading_are_at_their_lines_and_leave_no_run(write_recipe, tmp_path):
    """A model the data's inputs are too small for (was Keras's traceback), and a class weight's class the data
    lacks (was a problem with no line): exit 2 at the key's line, from train and validate --build, before any
    run directory is made."""
    too_small = write_recipe(TINY_MNIST.replace("[{filters: 4}]", "[{filters: 4}, {filters: 4, pool_size: 20}]"))
    for args in (("train", too_small, "--runs-root", tmp_path / "runs"), ("validate", "--build", too_small)):
        result = run(*args)
        assert result.exit_code == 2
        assert ("recipe.yaml:11: model.blocks.1.pool_size: block 1's max pooling pools 20x20, but its feature maps "
                "are 14x14 by then") in " ".join(result.stderr.split())
    weighted = write_recipe(TINY_MNIST + "  class_weight: {seven: 2}\n", "weighted.yaml")
    result = run("train", weighted, "--runs-root", tmp_path / "runs")
    assert result.exit_code == 2 and "weighted.yaml:16: train.class_weight.seven: no class 'seven'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_model_keras_cannot_build_for_its_inputs_is_a_recipe_error(write_recipe, monkeypatch):
    """The net under the architectures' own checks: Keras's shape error, with its layer and reason, at
    `model`; here the conv stack's check is taken away to reach it."""
    from dlkit.models import cnn

    monkeypatch.setattr(cnn, "_check_fits", lambda *a, **k: None)
    result = run("validate", "--build", write_recipe(TINY_MNIST.replace("{filters: 4}", "{filters: 4, pool_size: 29}")))
    assert result.exit_code == 2
    assert ("recipe.yaml:9: model: Keras could not build the model for inputs of shape (28, 28, 1): MaxPooling2D: "
            "Computed output size would be zero or negative") in " ".join(result.stderr.split())
    assert "\x1b" not in result.stderr and "Traceback" not in result.stderr


def test_a_loss_or_metric_that_cannot_take_the_targets_is_a_recipe_error(write_recipe):
    """Each was a traceback from inside the first training step: a classifier's class indices scored by mse
    or top_k_categorical_accuracy. Each named loss and metric is tried on a few training examples, and every
    one that fails is a problem at its line; the sparse_ forms, which take class indices, pass. And
    categorical_accuracy, which ran on class indices and logged 0.33 for three right answers of three, is
    refused too."""
    recipe = write_recipe(TINY_MNIST + "  loss: mse\n  metrics: [accuracy, top_k_categorical_accuracy, auc, "
                          "CategoricalAccuracy]\n")
    result = run("validate", "--build", recipe)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "4 problem(s)" in said
    assert ("recipe.yaml:16: train.loss: 'mse' cannot take the targets (uint8 (3,)) and the model's outputs "
            "(float32 (3, 10)): Incompatible shapes") in said
    assert "recipe.yaml:17: train.metrics.1: 'top_k_categorical_accuracy' cannot take" in said
    assert "recipe.yaml:17: train.metrics.2: 'auc' cannot take" in said
    assert ("recipe.yaml:17: train.metrics.3: 'CategoricalAccuracy' reads one-hot targets, and the targets are "
            "class indices (uint8 (3,)): it would log a wrong accuracy") in said
    assert "use accuracy or sparse_categorical_accuracy" in said
    assert "the targets are class indices, which the sparse_ losses and metrics take" in said
    fine = write_recipe(TINY_MNIST + "  loss: sparse_categorical_crossentropy\n"
                        "  metrics: [acc, sparse_top_k_categorical_accuracy]\n", "fine.yaml")
    assert run("validate", "--build", fine).exit_code == 0
    # the error's [brackets] printed as they are, not read as rich's markup and dropped
    result = run("train", fine, "--set", "train.metrics=[categorical_accuracy]")
    assert result.exit_code == 2 and "train.metrics.0: 'categorical_accuracy' reads one-hot targets" in result.stderr
    result = run("train", fine, "--set", "train.metrics=[top_k_categorical_accuracy]")
    assert result.exit_code == 2
    assert "--set train.metrics=[top_k_categorical_accuracy]: train.metrics.0:" in result.stderr
    # a name the installed Keras has no loss or metric for (the recipe's load leaves these to Keras's own tables)
    result = run("validate", "--build", fine, "--set", "train.loss=no_such_loss", "--set", "train.metrics=[nope]")
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "train.loss: unknown loss 'no_such_loss'" in said, said
    assert "train.metrics.0: unknown metric 'nope'" in said and "2 problem(s)" in said


CYCLEGAN = f"""
name: cyc
data: {{dataset: mnist, dir: {DATA}, limit: 100, test_limit: 50, domain_b: {{dataset: mnist, dir: {DATA}, limit: 100}}}}
model: {{arch: cyclegan, filters: 4, residual_blocks: 1}}
"""


@pytest.mark.parametrize("text", [TINY_MNIST, CYCLEGAN], ids=["classifier", "cyclegan"])
def test_jit_compile_true_that_keras_drops_is_a_note_with_the_reason(write_recipe, recwarn, text):
    """On TensorFlow with deterministic ops, Keras compiles without XLA whatever it is asked: it said so in a
    bare UserWarning. The run's notes say it, and how to have XLA; a CycleGAN's too, whose data is two
    domains' (their notes were a list made anew on each read, so one appended to it was lost)."""
    import keras

    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    recipe = load_recipe(write_recipe(text), ["train.jit_compile=true"])
    session = Session.open(recipe)
    model = session.model(session.task.phases(recipe)[0])
    if keras.backend.backend() == "jax":  # XLA is how JAX runs: no note
        assert model.jit_compile is True and session.data.notes == []
        return
    assert session.data.notes == ["train.jit_compile: true, but Keras compiles this model without XLA: TensorFlow's "
                                  "deterministic ops (train.deterministic: true) rule XLA out; set "
                                  "train.deterministic: false to compile with it"]
    assert not [w for w in recwarn if "jit_compile" in str(w.message)]


def test_mixed_float16_where_it_is_slow_is_a_note(write_recipe):
    """TensorFlow on a CPU computes float16 many times slower than float32 (cnn_mnist: about 90 times): a run that
    asks for it there is told so, and what to use; one in float32 or bfloat16, or on JAX, is not."""
    import keras

    from dlkit import backend
    from dlkit.tasks import load_recipe
    from dlkit.training.session import Session

    try:
        for precision in ("mixed_float16", "mixed_bfloat16", "float32"):
            recipe = load_recipe(write_recipe(TINY_MNIST), [f"train.precision={precision}"])
            session = Session.open(recipe)
            session.model(session.task.phases(recipe)[0])
            said = [n for n in session.data.notes if n.startswith("train.precision")]
            slow = precision == "mixed_float16" and backend.slow_float16()
            assert said == (["train.precision: mixed_float16 on TensorFlow without a GPU computes float16 on the "
                             "CPU, many times slower than float32 (cnn_mnist: about 90 times, docs/benchmarks.md); "
                             "on a CPU use float32 or mixed_bfloat16, and mixed_float16 on a GPU"] if slow else [])
    finally:
        keras.config.set_dtype_policy("float32")
    tf = backend.tensorflow()
    assert backend.slow_float16() == (keras.backend.backend() == "tensorflow"
                                      and not tf.config.list_physical_devices("GPU"))


def test_validate_build_builds_each_phase_of_a_dbn(write_recipe):
    """Was a traceback: a DBN's models are built phase by phase, each RBM then the net they start."""
    recipe = write_recipe(TINY_MNIST.replace("arch: cnn\n  blocks: [{filters: 4}]\n  dense: [16]",
                                             "arch: dbn\n  layers: [8, 4]"))
    result = run("validate", "--build", "--json", recipe)
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["recipes"]
    # 784x8 + 8 + 784 (+ 784 in its chain), 8x4 + 4 + 8 (+ 8), then 784x8 + 8 + 8x4 + 4 + 4x10 + 10
    assert entry["phases"] == {"rbm1": 7848, "rbm2": 52, "finetune": 6366} and entry["params"] == 6366


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    from dlkit.data import sources

    monkeypatch.setenv("DLKIT_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setattr(sources, "KERAS_CACHE", tmp_path / "cache")


def test_validate_missing_data_is_exit_3(write_recipe, tmp_path, no_data):
    (tmp_path / "empty").mkdir()
    recipe = write_recipe(f"model: {{arch: mlp}}\ndata:\n  dir: {tmp_path}/empty\n  download: false\n")
    result = run("validate", recipe)
    assert result.exit_code == 3 and "not found" in result.stderr


def test_validate_reads_a_feature_csvs_header(write_recipe, tmp_path):
    """The columns a recipe names in a feature CSV are checked against its header by `dlkit validate` (before,
    it said ok, and training failed on reading the data)."""
    (tmp_path / "t.csv").write_text("age,plan,churned\n30,pro,no\n")
    text = f"model: {{arch: mlp}}\ndata: {{dataset: csv, path: {tmp_path / 't.csv'}, categorical_columns: [plan]"
    assert run("validate", write_recipe(text + "}\n")).exit_code == 0
    bad = run("validate", write_recipe(text + ", label_column: churn}\n"))
    assert bad.exit_code == 3 and "no column 'churn' (data.label_column); columns are age, plan, churned" in bad.stderr
    bad = run("validate", write_recipe(text.replace("[plan]", "[plna]") + "}\n"))
    assert bad.exit_code == 3 and "no column 'plna' (data.categorical_columns)" in bad.stderr


def test_train_bad_recipe_is_exit_2_and_makes_no_run(write_recipe, tmp_path):
    recipe = write_recipe("model: {arch: cnn}\ntrain: {epoch: 2}\n")
    result = run("train", recipe, "--runs-root", tmp_path / "runs", "--json")
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out["status"] == "error" and "did you mean 'epochs'" in out["error"]
    assert not (tmp_path / "runs").exists()


def test_train_missing_data_is_exit_3_and_makes_no_run(write_recipe, tmp_path, no_data):
    recipe = write_recipe("model: {arch: mlp}\n")
    result = run("train", recipe, "--runs-root", tmp_path / "runs")
    assert result.exit_code == 3
    assert "train-images-idx3-ubyte.gz" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "runs").glob("*/*"))


def test_train_json_and_plain_output(tiny_recipe, tmp_path):
    result = run("train", tiny_recipe, "--runs-root", tmp_path, "--json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert out["status"] == "completed" and out["epochs_completed"] == 2
    assert set(out["final"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"} and "accuracy" in out["test"]
    assert out["wall_time_s"] > 0 and Path(out["run_dir"]).is_dir()
    # not a terminal: one plain line per epoch on the human stream, no progress bars
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr
    assert "━" not in result.stderr.replace("┃", "") .split("┏")[0]

    plain = run("train", tiny_recipe, "--runs-root", tmp_path, "--set", "train.epochs=1")
    assert plain.exit_code == 0 and "epoch 1/1" in plain.stdout and "\x1b[" not in plain.stdout

    quiet = run("train", tiny_recipe, "--runs-root", tmp_path, "--quiet", "--set", "train.epochs=1")
    assert quiet.exit_code == 0 and quiet.stdout == ""


def test_diverged_is_exit_4_and_keeps_last_good_checkpoint(write_recipe, tmp_path, monkeypatch):
    from dlkit.training import callbacks

    original = callbacks.DivergenceGuard.on_epoch_end

    def poison_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            logs = {**logs, "loss": float("nan")}
        return original(self, epoch, logs)

    monkeypatch.setattr(callbacks.DivergenceGuard, "on_epoch_end", poison_second_epoch)
    recipe = write_recipe(TINY_MNIST.replace("epochs: 2", "epochs: 4"))
    result = run("train", recipe, "--runs-root", tmp_path, "--json")
    assert result.exit_code == 4
    out = json.loads(result.stdout)
    assert out["status"] == "diverged" and "NaN" in out["error"]
    (run_dir,) = (tmp_path / "tiny").iterdir()
    assert out["run_dir"] == str(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "diverged"
    assert (run_dir / "checkpoints" / "last.keras").is_file()
    assert (run_dir / "history.csv").read_text().count("\n") == 2  # header + the one good epoch


def test_real_divergence_is_caught(write_recipe, tmp_path):
    recipe = write_recipe(TINY_MNIST.replace("arch: cnn", "arch: cnn\n  activation: linear"))
    result = run("train", recipe, "--runs-root", tmp_path, "--set", "train.optimizer={name: sgd, learning_rate: 1.0e+12}")
    assert result.exit_code == 4 and "diverged" in result.stderr


@pytest.mark.parametrize("landed", ["raised", "made an error"])
def test_interrupt_is_exit_130_and_marks_run(tiny_recipe, tmp_path, monkeypatch, landed):
    """Ctrl-C closes the run as interrupted; so does an error the interrupt caused where it landed (in TensorFlow's
    C code a KeyboardInterrupt came out as SystemError, "bad argument to internal function": a traceback)."""
    from dlkit.errors import interrupt_requested
    from dlkit.training import callbacks

    original = callbacks.CheckpointAndHistory.on_epoch_end

    def interrupt_after_first(self, epoch, logs=None):
        original(self, epoch, logs)
        if landed == "raised":
            raise KeyboardInterrupt
        interrupt_requested.note(2)
        raise SystemError("Objects/listobject.c:338: bad argument to internal function")

    monkeypatch.setattr(callbacks.CheckpointAndHistory, "on_epoch_end", interrupt_after_first)
    result = run("train", tiny_recipe, "--runs-root", tmp_path, "--json")
    assert result.exit_code == 130
    assert json.loads(result.stdout)["status"] == "interrupted"
    (run_dir,) = (tmp_path / "tiny").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.keras").is_file() and (run_dir / "recipe.yaml").is_file()


def test_an_interrupt_made_an_error_before_training_is_exit_130_and_no_run(tiny_recipe, tmp_path, monkeypatch):
    """An interrupt a library made an error of its own as the data was read (exit 3, "cannot read") stops the
    training there: exit 130, its JSON object, no run directory. With no signal, the error is the answer."""
    from dlkit.errors import DataError, interrupt_requested
    from dlkit.training import session

    def unreadable(recipe, interrupted=True):
        if interrupted:
            interrupt_requested.note(15)
        raise DataError("cannot read the data: the reader's own error")

    monkeypatch.setattr(session.Session, "open", staticmethod(unreadable))
    out = run("train", tiny_recipe, "--runs-root", tmp_path, "--json")
    assert out.exit_code == 130 and json.loads(out.stdout) == {"status": "interrupted", "exit_code": 130}
    assert not (tmp_path / "tiny").exists()
    monkeypatch.setattr(session.Session, "open", staticmethod(lambda recipe: unreadable(recipe, False)))
    assert run("train", tiny_recipe, "--runs-root", tmp_path, "--json").exit_code == 3


def test_a_monitored_name_the_epochs_do_not_log_is_exit_2_before_training(tiny_recipe, tmp_path):
    # train.monitor kept no best.keras in silence; early stopping's was a Keras traceback (exit 1); then both
    # were said once the first epoch had logged, leaving that epoch's run directory behind
    for key, value in (("train.monitor", "val_acc"), ("train.early_stopping", "{monitor: val_acc}")):
        out = run("train", tiny_recipe, "--runs-root", tmp_path, "--set", f"{key}={value}", "--set", "train.epochs=1")
        assert out.exit_code == 2, out.stderr
        assert "'val_acc' is not a value the epochs will log (loss, accuracy, val_loss, val_accuracy)" in out.stderr
        assert f"set {key.replace('early_stopping', 'early_stopping.monitor')} to one of those" in out.stderr
        assert f"--set {key}={value}: " in out.stderr  # where it was set
        assert not (tmp_path / "tiny").exists()  # said before the run directory was made
    # set in the recipe file: its line
    lines = tiny_recipe.read_text().splitlines() + ["  monitor: val_acc"]
    tiny_recipe.write_text("\n".join(lines) + "\n")
    out = run("train", tiny_recipe, "--runs-root", tmp_path, "--set", "train.epochs=1")
    assert out.exit_code == 2 and f"{tiny_recipe}:{len(lines)}: train.monitor: 'val_acc'" in out.stderr, out.stderr
    assert not (tmp_path / "tiny").exists()


def test_a_monitored_name_found_unlogged_after_an_epoch_is_still_exit_2(tiny_recipe, tmp_path, monkeypatch):
    # the names a model logs are not always known before it trains (a model that declares no outputs): the
    # epoch's own logs are the last check
    from dlkit.tasks.fit import FitTask

    monkeypatch.setattr(FitTask, "logged", lambda self, model, data: None)
    for key, value in (("train.monitor", "val_acc"), ("train.early_stopping", "{monitor: val_acc}")):
        out = run("train", tiny_recipe, "--runs-root", tmp_path, "--set", f"{key}={value}", "--set", "train.epochs=1")
        assert out.exit_code == 2, out.stderr
        assert "'val_acc' is not a value the epochs log (" in out.stderr and "val_accuracy" in out.stderr
        assert "the run stopped after an epoch" in out.stderr


def test_evaluate_run_and_recipe(tiny_recipe, tiny_run, tmp_path):
    out = copy_run(tiny_run, tmp_path)  # a copy: the evaluations write into the run
    result = run("evaluate", out["run_dir"], "--json")
    assert result.exit_code == 0
    ev = json.loads(result.stdout)
    assert ev["metrics"]["accuracy"] == pytest.approx(out["test"]["accuracy"], abs=1e-6)
    assert ev["accuracy_from_predictions"] == pytest.approx(ev["metrics"]["accuracy"], abs=1e-6)
    assert len(ev["per_class"]) == 10 and sum(map(sum, ev["confusion_matrix"])) == 200
    by_recipe = run("evaluate", tiny_recipe, "--runs-root", tmp_path, "--split", "val")
    assert by_recipe.exit_code == 0 and "precision" in by_recipe.stdout
    evals = json.loads((Path(out["run_dir"]) / "eval.json").read_text())
    assert set(evals) == {"test", "val"}  # a later evaluation keeps the earlier one
    assert (Path(out["run_dir"]) / "confusion_matrix_val.png").is_file()


def test_evaluate_on_a_labelled_folder_of_ones_own(tiny_run, tmp_path):
    """`evaluate --data FOLDER` measures an image classifier on class folders of image files, read as predict
    reads them: the run's own test split written out as PNGs measures as `evaluate` measures that split. A
    folder of some classes, in colour and at twice the size, is read too, and the result says which classes
    had no examples. The result is keyed by the folder in eval.json, beside the splits', and is no headline."""
    import numpy as np
    from PIL import Image

    from dlkit.data import sources
    from dlkit.runs import row

    out = copy_run(tiny_run, tmp_path / "runs")
    a = sources.load_builtin("mnist", str(ROOT / "tests" / "data"), allow_download=False)
    split, some = tmp_path / "split", tmp_path / "some"
    for i in range(200):  # TINY_MNIST's test split: the first 200 test digits
        (split / str(a.y_test[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.x_test[i]).save(split / str(a.y_test[i]) / f"{i}.png")
        if a.y_test[i] in (0, 1):
            (some / str(a.y_test[i])).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a.x_test[i]).convert("RGB").resize((56, 56)).save(some / str(a.y_test[i]) / f"{i}.jpg")
    (split / "README.txt").write_text("digits by class")
    result = run("evaluate", out["run_dir"], "--data", split, "--json")
    assert result.exit_code == 0, result.output
    ev = json.loads(result.stdout)
    assert ev["examples"] == 200 and ev["data"] == str(split)
    for k, v in out["test"].items():
        assert ev["metrics"][k] == pytest.approx(v, abs=1e-5), k
    assert ev["note"].startswith("1 file(s) beside the class folders of") and "README.txt" in ev["note"]
    assert Path(ev["confusion_matrix_image"]).is_file()
    some_ev = json.loads(run("evaluate", out["run_dir"], "--data", some, "--json").stdout)
    zeros_ones = int(np.isin(a.y_test[:200], (0, 1)).sum())
    assert some_ev["examples"] == zeros_ones and np.sum(some_ev["confusion_matrix"], axis=1)[2:].sum() == 0
    assert some_ev["note"] == ("8 of the run's 10 classes have no examples here (2, 3, 4, 5, 6, 7, 8, 9): their "
                               "recall is not measured")
    assert some_ev["accuracy_from_predictions"] > 0.5  # a 0 or a 1, at twice the size and in colour, is still read
    evals = json.loads((Path(out["run_dir"]) / "eval.json").read_text())
    assert {f"data:{split}", f"data:{some}"} <= set(evals) and evals[f"data:{split}"]["examples"] == 200
    headline = row(Path(out["run_dir"]))["headline"]
    assert not headline["source"].startswith("eval.json:data:")  # one's own folder's figure is not the test split's


def test_a_prediction_table_flattens_each_answer_into_rows():
    """predict --out's CSV of any task's answer: nested values one column a key, lists as JSON, a forecast's
    steps as its rows, a column a row lacks left empty."""
    from dlkit.generate import prediction_table

    forecast = {"forecast": [{"time": "2020-01-01T00", "load": 1.5}, {"time": "2020-01-01T01", "load": 2.0}]}
    assert prediction_table(forecast) == "time,load\n2020-01-01T00,1.5\n2020-01-01T01,2.0\n"
    mixed = {"predictions": [{"text": "a, b", "tokens": [1, 2]}, {"text": "c", "extra": {"x": 1}}]}
    assert prediction_table(mixed) == 'text,tokens,extra.x\n"a, b","[1, 2]",\nc,,1\n'


def test_evaluate_data_errors(tiny_run, tmp_path):
    """What --data cannot measure is said, each before anything is written: a class the run does not know, a
    file in place of a folder, a path that is not there (before the model loads), --split beside it; and every
    task reads it."""
    from dlkit import tasks

    (tmp_path / "cats" / "cat").mkdir(parents=True)
    (tmp_path / "cats" / "3").mkdir()
    before = (tiny_run / "eval.json").read_text() if (tiny_run / "eval.json").exists() else None
    out = run("evaluate", tiny_run, "--data", tmp_path / "cats")
    assert out.exit_code == 3 and "has class folder(s) cat that the run does not know; its classes are 0, 1, 2" in out.stderr
    out = run("evaluate", tiny_run, "--data", tmp_path / "cats" / "3")
    assert out.exit_code == 3 and "has no class folders; expected" in out.stderr
    (tmp_path / "rows.csv").write_text("a,label\n1,0\n")
    out = run("evaluate", tiny_run, "--data", tmp_path / "rows.csv")
    assert out.exit_code == 2 and "an image classifier is measured on a folder of class folders" in out.stderr
    out = run("evaluate", tiny_run, "--data", tmp_path / "nowhere")
    assert out.exit_code == 2 and "nowhere: no such file or folder (--data)" in out.stderr
    out = run("evaluate", tiny_run, "--data", tmp_path / "cats", "--split", "val")
    assert out.exit_code == 2 and "--data and --split each say what to measure" in out.stderr
    assert ((tiny_run / "eval.json").read_text() if (tiny_run / "eval.json").exists() else None) == before
    # every task measures data of one's own (a CycleGAN's was refused until it read a folder of A/ and B/)
    assert [t.name for t in tasks.TASKS.values() if "data" not in t.options] == []


def test_evaluate_quiet_and_interrupted(one_epoch_run, tmp_path, monkeypatch):
    """The commands that answer once take -q (no progress and no table: the result is in eval.json) and end
    on Ctrl-C or SIGTERM as `train` does: exit 130, and with --json one object saying so."""
    import os
    import signal
    import time

    from dlkit import evaluate
    from dlkit.errors import interrupt_requested

    result = one_epoch_run(tmp_path / "runs")
    out = run("evaluate", result["run_dir"], "-q")
    assert out.exit_code == 0 and out.stdout == "" and out.stderr == ""
    assert "test" in json.loads((Path(result["run_dir"]) / "eval.json").read_text())

    def killed(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal lands here
        pytest.fail("SIGTERM did not end the command")

    monkeypatch.setattr(evaluate, "evaluate", killed)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        out = run("evaluate", result["run_dir"], "--json")
        # run in-process, the command puts back the handlers it found and clears the flag the loops check: a
        # later command (a notebook's, this process's next tests) is not stopped at its first step
        assert not interrupt_requested.is_set()
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    finally:
        interrupt_requested.clear()
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert out.exit_code == 130 and json.loads(out.stdout) == {"status": "interrupted", "exit_code": 130}
    assert "interrupted" in out.stderr


# The console script (dlkit.__main__) in a child process, a signal sent as the command starts: the command's own
# answer, then the end a shell expects. Written to tmp so the child runs the code under test, not a subprocess shim.
SIGNALLED = """
import gc, os, signal, sys
from dlkit import cli
command, signum = cli._command, getattr(signal, sys.argv[1])
class Torn:
    def __del__(self):
        raise KeyError("what a finalizer fails at once an interrupt cut its bookkeeping (TensorFlow's)")
def signalled(argv):
    os.kill(os.getpid(), signum)  # lands while the console script's own handler notes it
    torn = Torn()
    torn.cycle = torn
    del torn
    gc.collect()
    command(argv)
cli._command = signalled
sys.argv = ["dlkit", *sys.argv[2:]]
from dlkit.__main__ import main
main()
"""


@pytest.mark.parametrize("signame, command", [("SIGINT", "validate"), ("SIGTERM", "train"), ("SIGHUP", "validate")])
def test_a_signal_as_the_console_script_starts_is_the_commands_interrupted_answer(tiny_recipe, tmp_path, signame,
                                                                                  command):
    """Ctrl-C or SIGTERM before the command runs (the imports, Click's parsing: a KeyboardInterrupt there was a
    traceback, or Typer's exit 130 with no word and no JSON object) is noted and answered by the command as it starts:
    "interrupted", the JSON object (which `train` stopped before its run directory did not print), nothing done, and no
    "Exception ignored" of a finalizer the interrupt cut (TensorFlow's, after `predict`). After SIGTERM the exit is 130;
    after Ctrl-C the process ends by SIGINT itself, as a shell expects (a loop running dlkit stops there; `$?` is 130
    either way)."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED)
    runs = ["--runs-root", str(tmp_path / "runs")] if command == "train" else []
    def as_a_shell_starts_it():  # (a suite run under `nohup`, or with `&`, would hand these on ignored)
        for signum in (signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)

    out = subprocess.run([sys.executable, str(script), signame, command, str(tiny_recipe), *runs, "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, preexec_fn=as_a_shell_starts_it)
    assert out.returncode == (-signal.SIGINT if signame == "SIGINT" else 130), out.stderr[-2000:]  # SIGHUP: as SIGTERM
    assert json.loads(out.stdout) == {"status": "interrupted", "exit_code": 130}
    assert "interrupted" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_a_reader_of_the_output_that_goes_stops_the_command_and_its_run_is_closed(tiny_recipe, tmp_path):
    """`dlkit train ... 2>&1 | head -2`: the first progress line written after `head` exited raised BrokenPipeError
    inside the training, the process exited 1 and its run said `running` for good; `dlkit list | head -1` exited
    1. The command stops as after SIGTERM (the run closed as interrupted) and the process ends by SIGPIPE, as
    `seq 1 1000000 | head -1` does: 141 in a shell, nothing said."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    dlkit = f"{sys.executable} -m dlkit"
    said = subprocess.run(["bash", "-c", f"{dlkit} train {tiny_recipe} --runs-root {runs} 2>&1 | head -1; "
                           f"echo rc=${{PIPESTATUS[0]}}; {dlkit} list 2>{tmp_path / 'err'} | head -1; "
                           "echo rc=${PIPESTATUS[0]}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    first, trained, listed, rc = said.stdout.splitlines()
    assert first.startswith("run ") and trained == "rc=141" and listed.startswith("recipes") and rc == "rc=141", said
    (manifest,) = runs.glob("tiny/*/manifest.json")
    assert json.loads(manifest.read_text())["status"] == "interrupted"
    assert (tmp_path / "err").read_text() == ""


def test_closed_or_full_output_is_neither_a_failed_training_nor_a_traceback(tiny_recipe, tmp_path):
    """Standard output and error closed (`>&- 2>&-`, as some job launchers leave them): a training failed with
    exit 1 before its run directory, and a finished command's end was an AttributeError traceback. They are
    /dev/null now (a checkpoint opened would have taken the free descriptor, and a library's writes with it).
    Standard output on a full disk (`> /dev/full`) was an OSError traceback: the command goes on, and ends with
    exit 5 naming it."""
    import os
    import subprocess
    import sys

    runs, dlkit = tmp_path / "runs", f"{sys.executable} -m dlkit"
    brief = "-s train.epochs=1 -s train.steps_per_epoch=1"
    said = subprocess.run(["bash", "-c", f"{dlkit} train {tiny_recipe} --runs-root {runs} {brief} --json >&- 2>&-; "
                           f"echo rc=$?; {dlkit} validate {tiny_recipe} --json > /dev/full; echo rc=$?"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert said.stdout.splitlines() == ["rc=0", "rc=5"], said
    (manifest,) = runs.glob("tiny/*/manifest.json")
    assert json.loads(manifest.read_text())["status"] == "completed"
    assert "error: could not write standard output: No space left on device" in said.stderr
    assert "Traceback" not in said.stderr
    # a stream whose encoding lacks a character printed (an ASCII or Latin-1 locale, a path's "ü"): written escaped;
    # it was a UnicodeEncodeError's traceback (a training's left its run `running`)
    named = tmp_path / "r\u00fcns" / "tiny.yaml"
    named.parent.mkdir()
    named.write_text(tiny_recipe.read_text())
    said = subprocess.run([sys.executable, "-m", "dlkit", "validate", str(named)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert said.returncode == 0 and "r\\xfcns" in said.stdout and "Traceback" not in said.stderr, said


def test_a_keras_backend_that_does_not_load_is_a_usage_error(tiny_recipe):
    """KERAS_BACKEND naming no backend of Keras's (or one the host lacks: torch's ModuleNotFoundError) was Keras's
    traceback as the model was built; it is exit 2 saying what to set."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "dlkit", "validate", str(tiny_recipe), "--build", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "KERAS_BACKEND": "nonsense"})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert json.loads(out.stdout)["recipes"][0]["error"] == (
        "Keras could not load its backend (KERAS_BACKEND=nonsense): Unable to import backend : nonsense; dlkit "
        "trains on tensorflow or jax: set KERAS_BACKEND to one this host has installed, or unset it")


def test_a_swallowed_interrupt_stops_the_command_as_it_ends(tiny_recipe, monkeypatch):
    """A Ctrl-C whose KeyboardInterrupt was swallowed where it landed (JAX's garbage-collector callback, during
    validate --build's imports) left the flag alone: the command ran on to exit 0. It is exit 130 as it ends.
    One a library made an error of its own (TensorFlow's LiteRT converter: `export` said exit 7, the export did
    not reproduce its model) is exit 130 at that error. One Python could not raise (in a `__del__`) is not
    printed as an ignored exception's traceback."""
    from dlkit import cli
    from dlkit.errors import UsageError, interrupt_requested

    each = cli._validate_each

    def swallowed(*args):
        each(*args)
        interrupt_requested.note(2)  # what the handler does before its KeyboardInterrupt is lost

    def converted(*args):
        interrupt_requested.note(15)
        raise UsageError("the converter's own error, of the KeyboardInterrupt it caught")

    class Torn:
        def __del__(self):
            interrupt_requested.note(2)
            raise KeyboardInterrupt  # Python cannot raise it here: "Exception ignored in ..." and its traceback

    def in_a_del(*args):
        Torn()

    for stand_in in (swallowed, converted, in_a_del):
        monkeypatch.setattr(cli, "_validate_each", stand_in)
        out = runner.invoke(app, ["validate", str(tiny_recipe), "--json"])
        assert out.exit_code == 130 and json.loads(out.stdout) == {"status": "interrupted", "exit_code": 130}
        assert not interrupt_requested.is_set() and "Exception ignored" not in out.stderr, out.stderr
    def refused(*args):
        raise UsageError("a user's error")

    monkeypatch.setattr(cli, "_validate_each", refused)  # no signal: the error is the answer, as it was
    assert runner.invoke(app, ["validate", str(tiny_recipe), "--json"]).exit_code == 2


LEAVING = """
import atexit, sys, threading, time
from pathlib import Path
at = Path(sys.argv[1])
atexit.register(lambda: (at / "atexit").write_text("ran"))
class Torn:
    def __del__(self):
        (at / "teardown").write_text("Python tore the modules down")
torn = Torn()
threading.Thread(target=lambda: (time.sleep(1), (at / "thread").write_text("joined"))).start()
sys.argv = ["dlkit", "show", "cnn_mnist", "--json"]
from dlkit.__main__ import main
main()
print("not reached: main ends the process")
"""


def test_the_console_script_leaves_without_pythons_teardown_but_with_what_its_exit_does(tmp_path):
    """The console script ends by os._exit once its answer is out (Python's teardown of TensorFlow's modules
    took 1.05 s of an evaluate's 6.78 s, and a SIGTERM then killed the process outright), having done what Python's
    exit does first: a thread that is not a daemon is joined, the atexit functions run, stdout is flushed whole."""
    import subprocess
    import sys

    script = tmp_path / "leaving.py"
    script.write_text(LEAVING)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["recipe"]["name"] == "cnn_mnist" and "not reached" not in out.stdout
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "joined"
    assert not (tmp_path / "teardown").exists()


HANGING = """
import sys, threading, time
threading.Thread(target=time.sleep, args=(600,)).start()  # a thread the process's end would wait 10 minutes for
sys.argv = ["dlkit", "show", "cnn_mnist", "--json"]
from dlkit.__main__ import main
main()
"""


def test_a_ctrl_c_ends_a_process_whose_end_hangs_and_the_checkpoint_writer_is_ended_first(tmp_path):
    """Once its answer is out, the console script's end is Ctrl-C's to cut short (it waited on, its handler
    only noting the signal: a probe's `resume` waited 15 minutes for the checkpoint writer's idle thread);
    that thread is ended before the others are joined, and a later checkpoint makes a new one."""
    import signal
    import subprocess
    import sys
    import threading

    from dlkit import rundir

    script = tmp_path / "hanging.py"
    script.write_text(HANGING)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    answer = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == -signal.SIGINT and json.loads(answer)["recipe"]["name"] == "cnn_mnist"
    proc.stdout.close()
    proc.stderr.close()
    assert rundir.in_checkpoint_thread(lambda: 7) == 7
    (thread,) = [t for t in threading.enumerate() if t.name.startswith("dlkit-checkpoint")]
    rundir.close_writer()
    assert not thread.is_alive() and rundir.in_checkpoint_thread(lambda: 8) == 8


def test_an_interrupt_inside_a_write_leaves_no_part_of_the_file(tmp_path, monkeypatch):
    """A command's figures and codes are written whole or not at all: Ctrl-C while one is written leaves the
    file as it was (here: absent), and no temporary file beside it."""
    import matplotlib.figure
    import numpy as np

    from dlkit import plots
    from dlkit.tasks import reconstruction

    def cut(path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: cut(path))
    with pytest.raises(KeyboardInterrupt):
        plots.confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "confusion_matrix.png", "t")
    monkeypatch.setattr(np, "save", cut)
    request = type("Request", (), {"out": None, "force": False, "split": "test"})()
    with pytest.raises(KeyboardInterrupt):
        reconstruction.save_codes(type("Run", (), {"root": tmp_path})(), np.zeros((2, 3)), None, request)
    assert list(tmp_path.iterdir()) == []


def test_commands_that_read_a_model_load_it_without_its_optimizer(tiny_run):
    """generate, encode, predict and export load the model alone: its weights, not its optimizer's state,
    which they never use; evaluate and resume load both."""
    import numpy as np

    from dlkit import evaluate, generate, models
    from dlkit.training.session import Session

    *_, alone = generate._open(tiny_run, unsafe=False, command="predict")  # a classifier predicts
    assert getattr(alone, "optimizer", None) is None and not alone.compiled
    run = evaluate.finished(evaluate.resolve_run(tiny_run))
    full = Session.open(evaluate.tasks.load_recipe(run.recipe)).model(checkpoint=run.model)  # as evaluate loads it
    assert full.compiled and int(full.optimizer.iterations.numpy()) == 2 * 11  # two epochs of 540 by 50
    for a, b in zip(alone.get_weights(), models.load(run.model).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_evaluate_errors(tmp_path, tiny_recipe):
    assert run("evaluate", tmp_path).exit_code == 2  # not a run directory
    assert run("evaluate", tiny_recipe, "--runs-root", tmp_path / "empty").exit_code == 2  # no runs yet
    assert run("evaluate", tmp_path / "missing.txt").exit_code == 2


def test_bad_usage_is_exit_2():
    assert run("train").exit_code == 2
    assert run("frobnicate").exit_code == 2


def test_json_output_is_strict_json(capsys, tmp_path):
    """A diverged loss or an unbounded estimate is NaN or infinite in Python; --json and the run's JSON files
    carry null, which every JSON reader takes (jq, JavaScript), not NaN or Infinity, which none does."""
    from dlkit.cli import _print_json
    from dlkit.rundir import RunDir

    _print_json({"loss": float("nan"), "bounds": [float("-inf"), 1.5], "nested": {"x": float("inf")}})
    assert capsys.readouterr().out.strip() == '{"loss": null, "bounds": [null, 1.5], "nested": {"x": null}}'
    RunDir(tmp_path).write_json(tmp_path / "m.json", {"loss": float("nan")})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == {"loss": None}


def test_shell_completion_and_metavars_read_as_values():
    """Typer's completion is on (`dlkit --install-completion`), it completes command names, and the help
    shows values as a user types them (`--set KEY=VALUE`), not Python types."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "_DLKIT_COMPLETE": "complete_bash", "COMP_WORDS": "dlkit ru", "COMP_CWORD": "1"}
    script = Path(sys.executable).with_name("dlkit")  # the console script `make install` puts beside python
    out = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert "runs" in out.stdout.split()
    assert "--install-completion" in run("--help").stdout
    help_text = run("train", "--help").stdout
    assert "--set KEY=VALUE" in help_text and "--runs-root DIR" in help_text and "list[str]" not in help_text
    assert "--text TEXT" in run("predict", "--help").stdout and "--beam N" in run("evaluate", "--help").stdout


def test_evaluate_names_the_count_that_is_out_of_range(tmp_path):
    # was "-n and -k count samples: at least 1, received 10000 and 0", whichever the user had given
    # and a count past 100,000 (a typed zero too many) was drawn in full: 10^7 samples are 31 GB of MNIST
    for flag, value, said in (("-k", "0", "-k/--importance-samples counts samples: 1 to 100,000, received 0"),
                              ("-n", "0", "-n/--samples counts samples: 2 to 100,000, received 0"),
                              # one sample has no spread: a Fréchet distance's covariance was a scipy traceback
                              ("-n", "1", "-n/--samples counts samples: 2 to 100,000, received 1"),
                              ("-n", "10000000", "-n/--samples counts samples: 2 to 100,000, received 10000000"),
                              ("-k", "100001", "received 100001"),
                              ("--beam", "65", "--beam is the beam's width: 1 (greedy) to 64")):
        out = run("evaluate", tmp_path, flag, value)
        assert out.exit_code == 2 and said in out.stderr, out.output


def test_with_json_a_bad_command_line_is_one_json_object_too(tmp_path):
    """A bad option or argument is Click's to say, before any command runs: it was only its usage text on
    stderr, and a script reading --json's stdout got nothing. Run as the installed command (the console
    script), which is where it is said."""
    import subprocess
    import sys

    script = Path(sys.executable).with_name("dlkit")
    for args, said in ((["generate", str(tmp_path), "-n", "abc"], "Invalid value for '-n'"),
                       (["train"], "Missing argument 'RECIPE'"), (["train", "x.yaml", "--nonsense"], "--nonsense"),
                       # Click kept the last silently: the val split was measured alone
                       (["evaluate", str(tmp_path), "--split", "test", "--split", "val"],
                        "--split is given 2 times ('test', then 'val'); it takes one value: give it once")):
        out = subprocess.run([str(script), *args, "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and said in out.stderr, out
        answer = json.loads(out.stdout)
        assert answer["status"] == "error" and answer["exit_code"] == 2 and said in answer["error"]
        plain = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
        assert plain.returncode == 2 and plain.stdout == "" and said in plain.stderr
    ok = subprocess.run([str(script), "list", "--json"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "architectures" in json.loads(ok.stdout)


def test_an_option_of_one_value_given_twice_is_found_in_each_of_its_spellings():
    from dlkit.cli import _given_twice

    assert "--samples is given 3 times ('5', then '6', then '7')" in _given_twice(
        ["evaluate", "r", "-n", "5", "--samples=6", "-n7"])
    # list options and flags may repeat
    assert _given_twice(["train", "r.yaml", "--set", "a=1", "--set", "b=2", "-q", "-q", "--json"]) is None
    assert _given_twice(["generate", "r", "--prompt", "--seed 3", "--seed", "4"]) is None  # a value, not an option
    assert _given_twice(["nonsense", "--x", "1", "--x", "2"]) is None and _given_twice([]) is None  # Click's to say


def test_a_relative_data_path_is_kept_absolute_so_the_run_is_read_from_any_directory(tmp_path, monkeypatch):
    """data.path (and data.dir) are read from the working directory, and the run's recipe.yaml keeps them
    absolute: evaluate from another directory finds the data (before, it looked for data/mine.npz there)."""
    import numpy as np
    import yaml

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True)
    elsewhere.mkdir()
    rng = np.random.default_rng(0)
    pixels = lambda n: rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)  # noqa: E731
    np.savez(work / "data" / "mine.npz", x_train=pixels(64), y_train=rng.integers(0, 2, 64),
             x_test=pixels(32), y_test=rng.integers(0, 2, 32))
    (work / "mine.yaml").write_text("name: mine\ndata: {dataset: npz, path: data/mine.npz, batch_size: 32, "
                                    "validation_split: 0}\nmodel: {arch: mlp, hidden: [8]}\ntrain: {epochs: 1}\n")
    monkeypatch.chdir(work)
    trained = run("train", "mine.yaml", "--runs-root", "runs", "--json", "-q")
    assert trained.exit_code == 0, trained.output
    run_dir = Path(json.loads(trained.stdout)["run_dir"])
    saved = yaml.safe_load((work / run_dir / "recipe.yaml").read_text())["data"]
    assert saved["path"] == str(work / "data" / "mine.npz")

    monkeypatch.chdir(elsewhere)
    measured = run("evaluate", work / run_dir, "--json")
    assert measured.exit_code == 0, measured.output
    ev = json.loads(measured.stdout)["metrics"]
    assert ev["accuracy"] == pytest.approx(json.loads(trained.stdout)["test"]["accuracy"], abs=1e-6)


def test_predict_reads_feature_rows_from_a_csv_by_column_name(tmp_path):
    """A classifier trained on a feature CSV classifies the rows of another (--csv): its columns are picked by
    name, in training's order (the file's order and a label column do not matter), scaled as in training;
    the probabilities are the model's own; a categorical column is one-hot encoded with training's values, and
    an empty cell (data.missing: mean) is the training rows' mean. Before, only images were read. `evaluate
    --data` reads a labelled CSV's rows alike, its label column by name."""
    import keras
    import numpy as np

    from dlkit.data.pipeline import scale_from_artifact

    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (80, 3))
    plans = ["basic", "pro", "max", "pro"] * 20  # a categorical column, one-hot encoded
    rows = [f"{a:.4f},{b:.4f},{p},{c:.4f},{'yes' if a > 3 else 'no'}" for (a, b, c), p in zip(x, plans)]
    rows[40] = ",".join(v if i != 1 else "" for i, v in enumerate(rows[40].split(",")))  # an empty b: its mean
    (tmp_path / "train.csv").write_text("a,b,plan,c,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "r.yaml").write_text(f"name: tab\ndata: {{dataset: csv, path: {tmp_path / 'train.csv'}, "
                                     "scale: standardize, batch_size: 16, categorical_columns: [plan], missing: mean}\n"
                                     "model: {arch: mlp, hidden: [4]}\ntrain: {epochs: 1, class_weight: {'yes': 3}}\n")
    trained = run("train", tmp_path / "r.yaml", "--runs-root", tmp_path / "runs", "--json", "-q")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["test"]  # test_split: 16 of the 80 rows
    notes = json.loads(trained.stdout)["data_notes"]
    assert notes[0].startswith("data.missing: mean filled 1 empty cells")
    assert notes[1] == "train.class_weight: the loss weighs the classes no: 1, yes: 3"
    run_dir = Path(json.loads(trained.stdout)["run_dir"])
    assert json.loads((run_dir / "manifest.json").read_text())["data_notes"] == json.loads(trained.stdout)["data_notes"]
    # the columns shuffled, the label kept: read by name
    (tmp_path / "new.csv").write_text("label,c,plan,a,b\n" + "\n".join(
        f"?,{c},{p},{a},{b if i != 1 else ''}" for i, ((a, b, c), p) in enumerate(zip(x[:3], plans))) + "\n")
    out = run("predict", run_dir, "--csv", tmp_path / "new.csv", "--json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)["predictions"]
    assert [p["input"] for p in got] == ["new.csv:2", "new.csv:3", "new.csv:4"]
    a, b = scale_from_artifact(json.loads((run_dir / "artifacts" / "scale.json").read_text()))
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.loss.weights == [1.0, 3.0]  # the class-weighted loss, kept in the model file (resume reads it)
    one_hot = [[1, 0, 0], [0, 0, 1], [0, 1, 0]]  # basic, pro, max, over the values in order: basic, max, pro
    features = np.concatenate([np.round(x[:3, :2], 4), one_hot, np.round(x[:3, 2:], 4)], axis=1)
    features[1, 1] = json.loads((run_dir / "artifacts" / "columns.json").read_text())["fill"]["b"]  # empty there
    want = model.predict(features.astype("float32") * a + b, verbose=0)
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in got], want, atol=1e-5)
    # --out: the same answer as a CSV file, one row each, a class's probability in a column of its own
    out = run("predict", run_dir, "--csv", tmp_path / "new.csv", "--out", tmp_path / "preds.csv", "--json")
    assert out.exit_code == 0, out.output
    import csv

    table = list(csv.DictReader(open(tmp_path / "preds.csv")))
    assert json.loads(out.stdout)["out"] == str(tmp_path / "preds.csv") and len(table) == 3
    assert list(table[0]) == ["input", "label", "probabilities.no", "probabilities.yes"]
    assert [(r["input"], r["label"], float(r["probabilities.yes"])) for r in table] == [
        (p["input"], p["label"], p["probabilities"]["yes"]) for p in got]
    again = run("predict", run_dir, "--csv", tmp_path / "new.csv", "--out", tmp_path / "preds.csv")
    assert again.exit_code == 2 and "preds.csv exists; choose another --out or pass --force" in again.stderr
    named = run("predict", run_dir, "--csv", tmp_path / "new.csv", "--out", tmp_path / "preds.json")
    assert named.exit_code == 2 and "end the name in .csv" in named.stderr and not (tmp_path / "preds.json").exists()
    (tmp_path / "few.csv").write_text("a,b\n1,2\n")
    missing = run("predict", run_dir, "--csv", tmp_path / "few.csv")
    assert missing.exit_code == 3 and "no column 'plan', 'c'; the model reads a, b, plan, c" in missing.output
    assert run("predict", run_dir, tmp_path / "new.csv").exit_code == 2  # a file argument is for images
    # evaluate --data: a labelled CSV, its columns in another order, measured on its rows as predict reads them
    labels = ["yes" if v > 3 else "no" for v in x[:40, 0]]
    (tmp_path / "labelled.csv").write_text("label,c,plan,a,b\n" + "\n".join(
        f"{y},{f3},{p},{f1},{f2}" for y, (f1, f2, f3), p in zip(labels, x[:40], plans)) + "\n")
    ev = run("evaluate", run_dir, "--data", tmp_path / "labelled.csv", "--json")
    assert ev.exit_code == 0, ev.output
    ev = json.loads(ev.stdout)
    codes = {"basic": [1, 0, 0], "max": [0, 1, 0], "pro": [0, 0, 1]}
    rows = np.array([[f1, f2, *codes[p], f3] for (f1, f2, f3), p in zip(x[:40], plans)], "float32")
    predicted = np.argmax(model.predict(rows * a + b, verbose=0), axis=-1)
    truth = np.array([y == "yes" for y in labels])
    assert ev["examples"] == 40 and ev["metrics"]["accuracy"] == pytest.approx(np.mean(predicted == truth), abs=1e-6)
    assert ev["per_class"]["yes"]["support"] == int(truth.sum())
    (tmp_path / "unknown.csv").write_text("a,b,plan,c,label\n1,2,pro,3,yes\n1,2,pro,3,maybe\n")
    out = run("evaluate", run_dir, "--data", tmp_path / "unknown.csv")
    assert out.exit_code == 3 and "line 3: the label ('label') is 'maybe', not one of the run's classes (no, yes)" in out.stderr
