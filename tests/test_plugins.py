"""Architectures and datasets of one's own: a recipe's `plugins` (Python files beside it, or modules) and
installed packages' entry points add architectures a recipe names as model.arch and datasets it names as
data.dataset; a run keeps a copy of each plugin file and is evaluated with the code it trained with; a plugin
that does not load is a recipe problem at its line."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlkit import models
from dlkit.cli import app
from dlkit.data import sources
from tests.conftest import DATA, ROOT

runner = CliRunner()
EXAMPLES = ROOT / "docs" / "examples"


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "200"})


def trained(recipe: Path, text: str, runs_root: Path) -> Path:
    """`text` written as the recipe, trained quietly: its run directory."""
    recipe.write_text(text)
    out = run("train", recipe, "--runs-root", runs_root, "--quiet", "--json")
    assert out.exit_code == 0, out.output
    return Path(json.loads(out.stdout)["run_dir"])


@pytest.fixture(autouse=True)
def registry_kept():
    """The architectures registered by a test's plugins are gone after it, as in a new process."""
    from dlkit import tasks

    from dlkit.data import sources

    kept, origins, kinds = dict(models.ARCHITECTURES), dict(models.FROM_PACKAGES), dict(tasks.TASKS)
    datasets, data_origins = dict(sources.DATASETS), dict(sources.FROM_PACKAGES)
    yield
    sources.DATASETS.clear()
    sources.DATASETS.update(datasets)
    sources.FROM_PACKAGES.clear()
    sources.FROM_PACKAGES.update(data_origins)
    sources.installed.cache_clear()
    tasks.TASKS.clear()
    tasks.TASKS.update(kinds)
    models.ARCHITECTURES.clear()
    models.ARCHITECTURES.update(kept)
    models.FROM_PACKAGES.clear()
    models.FROM_PACKAGES.update(origins)
    models.installed.cache_clear()


def test_the_example_plugin_trains_and_its_run_is_evaluated_with_the_code_it_trained_with(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in ("convmixer.py", "convmixer_cifar10.yaml"):  # the docs' example, as a user has it
        shutil.copy(EXAMPLES / f, folder / f)
    recipe, plugin = folder / "convmixer_cifar10.yaml", folder / "convmixer.py"
    sets = ["data.dir=" + str(DATA / "cifar10"), "data.limit=200", "data.test_limit=50", "data.batch_size=50",
            "train.epochs=1", "model.dim=8", "model.depth=1"]
    trained = run("train", recipe, "--runs-root", tmp_path / "runs", "--quiet", "--json",
                  *[a for s in sets for a in ("--set", s)])
    assert trained.exit_code == 0, trained.stdout
    result = json.loads(trained.stdout)
    run_dir = Path(result["run_dir"])
    kept = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert kept["plugins"] == [str(plugin)] and kept["model"]["arch"] == "convmixer"  # the path, made absolute
    manifest = json.loads((run_dir / "manifest.json").read_text())
    import hashlib

    assert manifest["plugins"] == [{"file": str(plugin), "copy": "plugins/convmixer.py",
                                    "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest()}]
    assert (run_dir / "plugins" / "convmixer.py").read_bytes() == plugin.read_bytes()

    from dlkit.sweep import existing_runs, other_code  # what sweep and tune know their runs by, and say

    assert [r for _, r in existing_runs(tmp_path / "runs", "convmixer_cifar10")] == [run_dir]
    assert other_code(tmp_path / "runs", "convmixer_cifar10") is None
    code = plugin.read_text()
    plugin.write_text(code.replace("layer_scale: float = Field(0.1", "layer_scale: float = Field(0.2"))
    assert existing_runs(tmp_path / "runs", "convmixer_cifar10") == []  # its recipe reads the same; its code not
    assert other_code(tmp_path / "runs", "convmixer_cifar10").startswith(
        "1 run(s) of convmixer_cifar10 trained with other code than its plugins hold now")
    plugin.write_text(code)
    assert len(existing_runs(tmp_path / "runs", "convmixer_cifar10")) == 1

    plugin.unlink()  # the user's file gone: the run's copy is the code it trained with (its LayerScale layer)
    models.ARCHITECTURES.pop("convmixer")
    measured = run("evaluate", run_dir, "--quiet", "--json")
    assert measured.exit_code == 0, measured.stdout
    assert json.loads(measured.stdout)["metrics"]["accuracy"] == pytest.approx(result["test"]["accuracy"])
    assert models.ARCHITECTURES["convmixer"].build.__module__.startswith("_dlkit_plugin_convmixer_")

    again = run("train", recipe, "--runs-root", tmp_path / "runs")  # the recipe itself needs the file
    assert again.exit_code == 2
    assert f"convmixer_cifar10.yaml:6: plugins.0: plugin file not found: {plugin}" in again.output
    assert len(list((tmp_path / "runs" / "convmixer_cifar10").iterdir())) == 1  # no run begun


def test_plugins_that_do_not_load_are_said_at_their_lines_with_the_recipes_other_problems(tmp_path):
    example = (EXAMPLES / "convmixer.py").read_text()
    files = {"syntax.py": "def broken(:\n", "raises.py": "x = 1\nraise RuntimeError('no GPU here')\n",
             "empty.py": '"""no architecture"""\n', "clash.py": example.replace('"convmixer"', '"mlp"'),
             "convmixer.py": example, "twin.py": example}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "recipe.yaml").write_text("""\
name: bad
plugins:
  - syntax.py
  - raises.py
  - empty.py
  - clash.py
  - missing.py
  - no_such_package.models
  - convmixer.py
  - twin.py
  - not a module
data: {dataset: mnist}
model: {arch: convmixer, dim: 0}
train: {epochz: 1}
""")
    out = run("validate", tmp_path / "recipe.yaml")
    assert out.exit_code == 2 and "Traceback" not in out.output
    said = [line.strip() for line in out.output.splitlines() if line.strip().startswith("- ")]
    at = {line.split(": ")[0].rsplit(":", 1)[1]: line for line in said}  # by the recipe's line number
    assert list(at) == ["3", "4", "5", "6", "7", "8", "10", "11", "13", "14"]  # every problem, in line order
    assert f"plugins.0: plugin {tmp_path}/syntax.py does not import: {tmp_path}/syntax.py:1: invalid syntax" in at["3"]
    assert f"RuntimeError: no GPU here ({tmp_path}/raises.py:2)" in at["4"]
    assert "empty.py declares no architecture: it needs `class Config(ModelBase)`" in at["5"]
    assert "'mlp' is the name of an architecture dlkit ships" in at["6"]
    assert f"plugin file not found: {tmp_path}/missing.py" in at["7"]
    assert "no module named 'no_such_package': install the package" in at["8"]
    assert f"twin.py declares architecture 'convmixer', as plugin {tmp_path}/convmixer.py does" in at["10"]
    assert "'not a module' is neither a Python file (NAME.py) nor a module's dotted name" in at["11"]
    assert "model.dim: Input should be greater than or equal to 1" in at["13"]  # the plugin's own section read
    assert "train.epochz: unknown key" in at["14"]
    assert "unknown architecture" not in out.output  # convmixer loaded; and a plugin that failed is said once

    (tmp_path / "ok.yaml").write_text("name: ok\nplugins: [convmixer.py]\nmodel: {arch: convmixer}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("extends: ../ok.yaml\nname: child\nmodel: {dim: 4}\n")
    shown = run("show", tmp_path / "sub" / "child.yaml")  # the file is where the recipe that lists it is
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.stdout)["plugins"] == [str(tmp_path / "convmixer.py")]

    (tmp_path / "gone.yaml").write_text("name: g\nplugins: [missing.py]\nmodel: {arch: mine}\n")
    out = run("validate", tmp_path / "gone.yaml")  # its architecture unknown for it: said once, as the plugin's
    assert out.exit_code == 2 and "1 problem(s)" in out.output and "gone.yaml:2: plugins.0: plugin file not found" \
        in out.output

    (tmp_path / "buggy.yaml").write_text(f"name: b\nplugins: [buggy.py]\ndata: {{dataset: mnist, dir: {DATA}, limit: "
                                         "100}\nmodel: {arch: convmixer}\n")
    (tmp_path / "buggy.py").write_text(example.replace("x = keras.layers.GlobalAveragePooling2D()(x)",
                                                       "x = kears.layers.GlobalAveragePooling2D()(x)"))
    line = next(i for i, text in enumerate(files["convmixer.py"].splitlines(), 1) if "GlobalAveragePooling2D" in text)
    out = run("validate", tmp_path / "buggy.yaml", "--build")  # its build's bug: where, not a traceback
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert ("buggy.yaml:4: model.arch: the build of 'convmixer' (a plugin's) raised NameError: name 'kears' is not "
            f"defined ({tmp_path}/buggy.py:{line}, in build)") in out.output
    (tmp_path / "buggy.py").write_text(example.replace("x = keras.layers.GlobalAveragePooling2D()(x)",
                                                       "x = keras.layers.Reshape((7,))(x)"))
    out = run("validate", tmp_path / "buggy.yaml", "--build")  # Keras's own error, and the plugin's line
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "buggy.yaml:4: model: Keras could not build the model for inputs of shape (28, 28, 1): " in out.output
    assert f"({tmp_path}/buggy.py:{line}, in build)" in out.output

    (tmp_path / "loud.py").write_text(example.replace("TASK = ", "print('hello from the plugin')\nTASK = "))
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    for plugin in ("loud.py", "exits.py"):
        (tmp_path / "loud.yaml").write_text(f"name: l\nplugins: [{plugin}]\nmodel: {{arch: convmixer}}\n")
        out = run("validate", tmp_path / "loud.yaml", "--json")
        answer = json.loads(out.stdout)  # stdout is the answer alone; what the plugin prints goes to stderr
        if plugin == "loud.py":
            assert out.exit_code == 0 and answer["status"] == "ok" and "hello from the plugin" in out.stderr
        else:  # a sys.exit as it imports is its error, not dlkit's exit
            assert out.exit_code == 2 and "exits.py does not import: SystemExit: 3" in out.stdout

    (tmp_path / "task.yaml").write_text("name: t\nplugins: [task.py]\nmodel: {arch: convmixer}\n")
    (tmp_path / "task.py").write_text(example.replace('TASK = "classification"', 'TASK = "telepathy"'))
    out = run("validate", tmp_path / "task.yaml")
    assert out.exit_code == 2
    assert "task.yaml:3: model.arch: architecture 'convmixer' declares task 'telepathy', which is not registered" \
        in out.output


TINY = '''\
from typing import Literal  # no docstring: nothing to list it by but its package

from dlkit.models.knobs import ModelBase

TASK = "classification"


class Config(ModelBase):
    arch: Literal["tinymlp"] = "tinymlp"
    units: int = 8


def build(config, spec):
    import keras

    from dlkit.models import layers

    print("building the tiny MLP")  # not on stdout, which is the command's answer (--json)
    x = layers.inputs(spec)
    h = keras.layers.Dense(config.units, activation="relu")(keras.layers.Flatten()(x))
    return keras.Model(x, layers.classifier_head(h, spec, config))
'''


# a dataset of three classes of 6 x 6 images, each class a blob in its own place, made as it is read
BLOBS = '''\
"""Three blobs, 6 x 6."""
import numpy as np
from pydantic import BaseModel, Field

DATASET = "blobs"


class Data(BaseModel):
    examples: int = Field(120, ge=3)


def load(data):
    rng = np.random.default_rng(0)
    y = np.arange(data.examples) % 3
    x = rng.normal(0, 0.3, (data.examples, 6, 6)).astype("float32")
    x[np.arange(data.examples), 2 * y, 2 * y] += 3.0
    return {"x_train": x, "y_train": y, "class_names": ["top", "middle", "bottom"]}
'''


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """An installed package (its dist-info on sys.path) declaring two architectures by entry point, one that
    loads and one whose module raises as it imports, and a dataset."""
    site = tmp_path / "site"
    (site / "tinypkg").mkdir(parents=True)
    (site / "tinypkg" / "__init__.py").write_text("")
    (site / "tinypkg" / "tiny.py").write_text(TINY)
    (site / "tinypkg" / "broken.py").write_text("raise ImportError('needs libfoo')\n")
    info = site / "tinypkg-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.3\n")
    (site / "tinypkg" / "blobs.py").write_text(BLOBS)
    (info / "entry_points.txt").write_text("[dlkit.architectures]\ntinymlp = tinypkg.tiny\nbroken = tinypkg.broken\n"
                                           "[dlkit.datasets]\nblobs = tinypkg.blobs\n")
    monkeypatch.syspath_prepend(str(site))
    models.installed.cache_clear()
    sources.installed.cache_clear()
    yield site
    for name in [m for m in sys.modules if m.startswith("tinypkg")]:
        del sys.modules[name]


def test_an_installed_packages_architecture_by_its_entry_point_and_a_module_plugin(package, tmp_path):
    assert json.loads(run("list", "architectures", "--json").stdout)["architectures"][-2:] == ["tinymlp", "broken"]
    assert "tinymlp            from the installed package tinypkg (tinypkg.tiny)" in run("list", "architectures").stdout
    assert "blobs              from the installed package tinypkg (tinypkg.blobs)" in run("list", "datasets").stdout
    assert "tinypkg.tiny" not in sys.modules and "tinypkg.blobs" not in sys.modules

    recipe = tmp_path / "tiny.yaml"  # the package's architecture on the package's dataset, its own key set
    run_dir = trained(recipe, "name: tiny\ndata: {dataset: blobs, examples: 150, batch_size: 30}\n"
                      "model: {arch: tinymlp, units: 4}\ntrain: {epochs: 1}\n", tmp_path / "runs")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    from dlkit.recipe.plugins import fingerprint

    # each with the module's file and its digest
    assert manifest["plugins"] == [
        {"architecture": "tinymlp", "entry_point": "tinymlp = tinypkg.tiny", "module": "tinypkg.tiny",
         "package": "tinypkg 0.3", "path": str(package / "tinypkg" / "tiny.py"),
         "sha256": fingerprint(package / "tinypkg" / "tiny.py")},
        {"dataset": "blobs", "entry_point": "blobs = tinypkg.blobs", "module": "tinypkg.blobs", "package": "tinypkg 0.3",
         "path": str(package / "tinypkg" / "blobs.py"), "sha256": fingerprint(package / "tinypkg" / "blobs.py")}]
    from dlkit.sweep import existing_runs, other_code

    # the installed module edited in place, its version unchanged (an editable install): sweep and tune no
    # longer count the run as one of the recipe as it is
    assert [r for _, r in existing_runs(tmp_path / "runs", "tiny")] == [run_dir]
    source = (package / "tinypkg" / "blobs.py").read_text()
    (package / "tinypkg" / "blobs.py").write_text(source + "# edited\n")
    assert existing_runs(tmp_path / "runs", "tiny") == []
    assert other_code(tmp_path / "runs", "tiny").startswith("1 run(s) of tiny trained with other code than")
    (package / "tinypkg" / "blobs.py").write_text(source)
    assert len(existing_runs(tmp_path / "runs", "tiny")) == 1
    # its 150 examples: a test split of 30 carved (test_split 0.2), then 12 for validation; its class names
    assert manifest["data_spec"]["class_names"] == ["top", "middle", "bottom"]
    assert sum(manifest["data_spec"]["class_counts"]) == 108
    measured = run("evaluate", run_dir, "--quiet", "--json")
    assert measured.exit_code == 0 and json.loads(measured.stdout)["examples"] == 30

    recipe.write_text(recipe.read_text().replace("arch: tinymlp", "arch: broken"))
    out = run("validate", recipe)
    assert out.exit_code == 2
    assert ("tiny.yaml:3: model.arch: the package entry point broken = 'tinypkg.broken' (dlkit.architectures) "
            "does not import: ImportError: needs libfoo") in out.output

    # the same module named by a recipe's plugins rather than found by its entry point
    models.ARCHITECTURES.pop("tinymlp")
    (package / "tinypkg-0.3.dist-info" / "entry_points.txt").write_text("")
    models.installed.cache_clear()
    recipe.write_text(recipe.read_text().replace("arch: broken", "arch: tinymlp") + "plugins: [tinypkg.tiny]\n")
    shown = run("show", recipe)
    assert shown.exit_code == 0, shown.stdout
    assert yaml.safe_load(shown.stdout)["plugins"] == ["tinypkg.tiny"]


# the tiny MLP, trained as a task of its own, which the plugin registers as it is imported
OWN_TASK = TINY.replace('"tinymlp"', '"sorter"').replace('TASK = "classification"', '''\
from dlkit import tasks
from dlkit.tasks.base import Headline
from dlkit.tasks.classification import Classification


class Sorting(Classification):
    name = "sorting"
    summary = "classification under another name"
    headlines = (Headline("loss", "sorting loss", "min"),)


tasks.register(Sorting())
TASK = "sorting"''')


def test_a_plugin_registers_a_task_of_its_own(tmp_path):
    from dlkit import tasks

    (tmp_path / "sorter.py").write_text(OWN_TASK)
    run_dir = trained(tmp_path / "own.yaml", f"name: own\nplugins: [sorter.py]\ndata: {{dataset: mnist, dir: {DATA}, "
                      "limit: 100, test_limit: 20}\nmodel: {arch: sorter}\ntrain: {epochs: 1}\n", tmp_path / "runs")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["task"] == "sorting"
    assert manifest["headlines"] == [{"key": "loss", "label": "sorting loss", "better": "min"}]
    tasks.TASKS.pop("sorting")  # as in another process: the run's copy, imported, registers it again
    from dlkit.runs import row

    # `dlkit runs` imports no plugin: the task's headline is the one its run recorded
    shown = row(run_dir)["headline"]
    assert shown["label"] == "test sorting loss" and shown["better"] == "min" and shown["value"] == \
        json.loads((run_dir / "metrics.json").read_text())["test"]["loss"]
    assert "sorting" not in tasks.TASKS
    from dlkit.tasks.base import Headline

    # an edited manifest's entries that are not headlines are passed over, not a traceback
    assert Headline.recorded([{"key": "loss", "label": "l", "better": "min"}, {"key": 1, "label": "x", "better": "max"},
                              {"key": "a", "label": "b", "better": "most"}, "loss"]) == (Headline("loss", "l", "min"),)
    assert Headline.recorded("loss") == Headline.recorded(None) == ()
    for name in [m for m in sys.modules if m.startswith("_dlkit_plugin_sorter_")]:
        del sys.modules[name]
    measured = run("evaluate", run_dir, "--quiet", "--json")
    assert measured.exit_code == 0, measured.output
    assert json.loads(measured.stdout)["task"] == "sorting" and "sorting" in tasks.TASKS


def test_a_folder_plugin_is_a_package_and_the_run_keeps_all_of_it(tmp_path):
    """A plugin of several files: a folder whose __init__.py declares the architecture, its parts imported
    relatively; the run keeps every .py of it, and sweep and tune see an edit to any part."""
    from dlkit.sweep import existing_runs

    blocks = tmp_path / "blocks"
    blocks.mkdir()
    head, body = TINY.split("def build(config, spec):")
    (blocks / "__init__.py").write_text(head.replace("from typing import Literal", "from typing import Literal\n\n"
                                                                                  "from .arch import build"))
    (blocks / "arch.py").write_text("from .layers import hidden\n\n\ndef build(config, spec):" + body.replace(
        'h = keras.layers.Dense(config.units, activation="relu")(keras.layers.Flatten()(x))', "h = hidden(x, config)"))
    (blocks / "layers.py").write_text("import keras\n\n\ndef hidden(x, config):\n"
                                      '    return keras.layers.Dense(config.units, activation="relu")'
                                      "(keras.layers.Flatten()(x))\n")
    runs = tmp_path / "runs"
    run_dir = trained(tmp_path / "pkg.yaml", f"name: pkg\nplugins: [blocks/]\ndata: {{dataset: mnist, dir: {DATA}, "
                      "limit: 100, test_limit: 20}\nmodel: {arch: tinymlp, units: 4}\ntrain: {epochs: 1}\n", runs)
    assert sorted(p.relative_to(run_dir / "plugins").as_posix() for p in (run_dir / "plugins").rglob("*.py")) == [
        "blocks/__init__.py", "blocks/arch.py", "blocks/layers.py"]
    (kept,) = json.loads((run_dir / "manifest.json").read_text())["plugins"]
    assert kept["file"] == str(blocks) and kept["copy"] == "plugins/blocks"

    layers = (blocks / "layers.py").read_text()
    (blocks / "layers.py").write_text(layers.replace('"relu"', '"tanh"'))  # an edit to one part
    assert existing_runs(runs, "pkg") == []
    shutil.rmtree(blocks)  # the run's copy is what it trained with
    models.ARCHITECTURES.pop("tinymlp")
    for name in [m for m in sys.modules if m.startswith("_dlkit_plugin_blocks_")]:
        del sys.modules[name]
    assert run("evaluate", run_dir, "--quiet").exit_code == 0

    (tmp_path / "loose").mkdir()  # a folder of files, no package
    (tmp_path / "loose" / "arch.py").write_text(layers)
    (tmp_path / "loose.yaml").write_text("name: l\nplugins: [loose/]\nmodel: {arch: mlp}\n")
    out = run("validate", tmp_path / "loose.yaml")
    assert out.exit_code == 2 and f"loose.yaml:2: plugins.0: plugin folder {tmp_path}/loose has no __init__.py" \
        in out.output


def test_the_example_dataset_plugin_trains_as_an_npz_of_the_same_arrays_would(tmp_path):
    """docs/examples/hdf5_dataset.py reads MNIST digits from an HDF5 file laid out as USPS's (a group per split,
    images as rows): the run is the one an .npz of the same arrays gives, and it is evaluated with the run's
    copy of the plugin once the file is gone."""
    import h5py
    import numpy as np

    digits = sources.load_builtin("mnist", str(DATA), allow_download=False)
    x, y, x_test, y_test = digits.x_train[:300], digits.y_train[:300], digits.x_test[:60], digits.y_test[:60]
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    with h5py.File(tmp_path / "digits.h5", "w") as f:
        f["train/data"], f["train/target"] = x.reshape(300, -1), y
        f["test/data"], f["test/target"] = x_test.reshape(60, -1), y_test
        f["names"] = np.array(names, dtype="S")
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in ("hdf5_dataset.py", "cnn_usps_hdf5.yaml"):  # the docs' example, as a user has it
        shutil.copy(EXAMPLES / f, folder / f)
    (folder / "npz.yaml").write_text("extends: cnn_usps_hdf5.yaml\nname: npz\nplugins: []\n")
    small = ["data.batch_size=50", "data.scale=unit", "train.epochs=1", "model.blocks=[{filters: 4, convs: 1}]",
             "model.dense=[8]"]

    def train(recipe, *sets):
        out = run("train", recipe, "--runs-root", tmp_path / "runs", "--quiet", "--json",
                  *[a for s in small + list(sets) for a in ("--set", s)])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    from_h5 = train(folder / "cnn_usps_hdf5.yaml", f"data.path={tmp_path / 'digits.h5'}", "data.shape=[28, 28]",
                    "data.class_names=names")
    from_npz = train(folder / "npz.yaml", f"data={{dataset: npz, path: {tmp_path / 'digits.npz'}, batch_size: 50, "
                     "scale: unit}")
    assert from_h5["final"] == pytest.approx(from_npz["final"], rel=1e-5)
    assert from_h5["test"] == pytest.approx(from_npz["test"], rel=1e-5)
    run_dir = Path(from_h5["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data_spec"]["class_names"] == names and manifest["data_spec"]["input_shape"] == [28, 28, 1]
    assert manifest["data_origin"] == f"{tmp_path / 'digits.h5'} (dataset 'hdf5')"
    assert manifest["plugins"][0]["copy"] == "plugins/hdf5_dataset.py"

    (folder / "hdf5_dataset.py").unlink()  # as in another process, with the plugin's file gone
    sources.DATASETS.pop("hdf5")
    for name in [m for m in sys.modules if m.startswith("_dlkit_plugin_hdf5_dataset_")]:
        del sys.modules[name]
    measured = run("evaluate", run_dir, "--quiet", "--json")
    assert measured.exit_code == 0, measured.output
    assert json.loads(measured.stdout)["metrics"]["accuracy"] == pytest.approx(from_h5["test"]["accuracy"])

    # evaluate --data: another file of the format, read by the run's copy of the plugin (its test split, the
    # labels matched to the run's classes by name); here the run's own file, whose test split is the run's
    on_file = run("evaluate", run_dir, "--data", tmp_path / "digits.h5", "--quiet", "--json")
    assert on_file.exit_code == 0, on_file.output
    result = json.loads(on_file.stdout)
    assert result["examples"] == 60 and result["accuracy_from_predictions"] == pytest.approx(
        from_h5["test"]["accuracy"], abs=1e-6) and "the file's test split" in result["note"]
    keep = np.isin(y_test, [1, 4, 7])  # a file of three of the run's classes, numbered and named its own way
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["train/data"], f["train/target"] = x.reshape(300, -1)[:3], np.arange(3)
        f["test/data"] = x_test[keep].reshape(int(keep.sum()), -1)
        f["test/target"] = np.searchsorted([1, 4, 7], y_test[keep])
        f["names"] = np.array(["one", "four", "seven"], dtype="S")
    on_other = run("evaluate", run_dir, "--data", tmp_path / "other.h5", "--quiet", "--json")
    assert on_other.exit_code == 0, on_other.output
    other = json.loads(on_other.stdout)
    assert other["examples"] == int(keep.sum())
    assert [c for c, row in other["per_class"].items() if row["support"]] == ["one", "four", "seven"]
    assert [row["support"] for c, row in other["per_class"].items() if row["support"]] == [
        int((y_test == k).sum()) for k in (1, 4, 7)]


# a dataset plugin whose `mode` key says how it fails
FAILING = '''\
import numpy as np
from pydantic import BaseModel

DATASET = "failing"


class Data(BaseModel):
    mode: str = "ok"


def load(data):
    x, y = np.zeros((20, 4), "float32"), np.arange(20) % 2
    if data.mode == "raises":
        return {"x_train": x[99]}
    if data.mode == "extra":
        return {"x_train": x, "y_train": y, "x_val": x}
    if data.mode == "names":
        return {"x_train": x, "y_train": y, "class_names": ["only"]}
    if data.mode == "text":
        return "x_train"
    if data.mode == "unpaired":
        return {"x_train": x, "y_train": y, "x_test": x}
    return {"x_train": x, "y_train": y}
'''


def test_dataset_plugins_problems_are_said_at_their_lines_and_a_load_that_fails_is_a_data_error(tmp_path):
    failing_line = next(i for i, text in enumerate(FAILING.splitlines(), 1) if "x[99]" in text)
    files = {"failing.py": FAILING, "twin.py": FAILING,
             "shipped.py": FAILING.replace('"failing"', '"mnist"'),
             "badname.py": FAILING.replace('DATASET = "failing"', 'DATASET = "My Data"'),
             "noload.py": 'DATASET = "noload"\n',
             "clash.py": FAILING.replace('"failing"', '"clash"').replace("mode: str", "batch_size: int = 3\n    mode: str"),
             "reads.py": FAILING.replace('"failing"', '"reads"') + 'READS_PATH = "the .bin file"\n'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "recipe.yaml").write_text("""\
name: bad
plugins: [failing.py, twin.py, shipped.py, badname.py, noload.py, clash.py, reads.py]
data:
  dataset: failing
  mode: 3
  modes: raises
model: {arch: mlp}
""")
    out = run("validate", tmp_path / "recipe.yaml")
    assert out.exit_code == 2 and "Traceback" not in out.output
    said = [line.strip() for line in out.output.splitlines() if line.strip().startswith("- ")]
    assert f"recipe.yaml:2: plugins.1: plugin {tmp_path}/twin.py declares dataset 'failing', as plugin " \
           f"{tmp_path}/failing.py does" in said[0]
    assert "plugins.2: plugin" in said[1] and "'mnist' is the name of a dataset dlkit ships" in said[1]
    # no task's own dataset may be a plugin's: a recipe that names one means dlkit's
    listed = {name.split(" (")[0] for name in json.loads(run("list", "datasets", "--json").stdout)["datasets"]}
    assert listed - set(sources.plugin_names()) == set(sources.RESERVED)
    assert "plugins.3: plugin" in said[2] and "DATASET = 'My Data'; a dataset's name is lowercase" in said[2]
    assert "plugins.4: plugin" in said[3] and "dataset 'noload' lacks load(data)" in said[3]
    assert "recipe.yaml:5: data.mode: Input should be a valid string" in said[4]  # its own keys, checked as dlkit's
    assert "recipe.yaml:6: data.modes: unknown key (did you mean 'mode'?" in said[5]
    assert len(said) == 6

    def problems(text):
        (tmp_path / "one.yaml").write_text(f"name: one\nplugins: [clash.py, reads.py, failing.py]\n{text}model: {{arch: mlp}}\n")
        out = run("validate", tmp_path / "one.yaml")
        assert out.exit_code == 2 and "Traceback" not in out.output
        return out.output

    assert (f"one.yaml:3: data.dataset: dataset 'clash' (plugin {tmp_path}/clash.py) declares its own key "
            "batch_size, which dlkit's data section has already") in problems("data: {dataset: clash}\n")
    assert "dataset 'reads' reads data.path; set data.path to the .bin file" in problems("data: {dataset: reads}\n")
    assert "dataset 'failing' does not read data.path" in problems(f"data: {{dataset: failing, path: {tmp_path}}}\n")

    runs = tmp_path / "runs"
    for mode, message in [
        ("raises", f"dataset 'failing' (plugin {tmp_path}/failing.py) could not read its data: IndexError: index 99 "
                   f"is out of bounds for axis 0 with size 20 ({tmp_path}/failing.py:{failing_line})"),
        ("extra", "its load gave back 'x_val', which dlkit does not read; it gives back x_train, y_train, x_test, "
                  "y_test, class_names, target_names"),
        ("names", "a label is 1, but class_names names 1 classes"),
        ("text", "its load gave back str; it gives back a dict of arrays"),
        ("unpaired", "its load gave back x_test, x_train, y_train: x_test is labelled (y_test) exactly when x_train "
                     "is (y_train)"),
    ]:
        (tmp_path / "fails.yaml").write_text(f"name: fails\nplugins: [failing.py]\ndata: {{dataset: failing, mode: "
                                             f"{mode}}}\nmodel: {{arch: mlp}}\ntrain: {{epochs: 1}}\n")
        out = run("train", tmp_path / "fails.yaml", "--runs-root", runs)
        assert out.exit_code == 3 and "Traceback" not in out.output, out.output
        assert message in " ".join(out.output.split()), out.output
    assert not runs.exists() or not any(runs.rglob("manifest.json"))  # nothing half-made


# a table of numbers to predict, which the regression task reads as such; its own key, `rows`
PRICES = '''\
import numpy as np
from pydantic import BaseModel, Field

DATASET = "prices"


class Data(BaseModel):
    rows: int = Field(200, ge=10)


def load(data):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(data.rows, 3)).astype("float32")
    y = np.stack([x @ [1.0, -2.0, 0.5] + 10.0, x[:, 0] * 3.0 + 20.0], axis=1)
    return {"x_train": x[:-40], "y_train": y[:-40], "x_test": x[-40:], "y_test": y[-40:],
            "target_names": ["price", "rent"]}
'''


def test_a_dataset_plugin_gives_a_regression_its_numbers_to_predict(tmp_path):
    import numpy as np

    (tmp_path / "prices.py").write_text(PRICES)
    rng = np.random.default_rng(1)  # the plugin's arrays, written as an .npz
    x = rng.normal(size=(160, 3)).astype("float32")
    y = np.stack([x @ [1.0, -2.0, 0.5] + 10.0, x[:, 0] * 3.0 + 20.0], axis=1)
    np.savez(tmp_path / "prices.npz", x_train=x[:-40], y_train=y[:-40], x_test=x[-40:], y_test=y[-40:])
    model = "model: {arch: mlp_regressor, hidden: [4]}\ntrain: {epochs: 2}\n"

    def train(name, data):
        (tmp_path / f"{name}.yaml").write_text(f"name: {name}\nplugins: [prices.py]\ndata: {data}\n{model}")
        return run("train", tmp_path / f"{name}.yaml", "--runs-root", tmp_path / "runs", "--quiet", "--json")

    plugged = train("plugged", "{dataset: prices, rows: 160, batch_size: 16}")
    assert plugged.exit_code == 0, plugged.output
    from_npz = train("from_npz", f"{{dataset: npz, path: {tmp_path / 'prices.npz'}, batch_size: 16}}")
    assert from_npz.exit_code == 0, from_npz.output
    a, b = json.loads(plugged.stdout), json.loads(from_npz.stdout)
    assert a["test"]["mae"] == pytest.approx(b["test"]["mae"], rel=1e-5) and a["test"]["examples"] == 40
    assert a["test"]["r2"] == pytest.approx(b["test"]["r2"], rel=1e-5)
    assert sorted(a["test"]["per_target"]) == ["price", "rent"]  # the names it gave its targets

    model = "model: {arch: mlp}\n"
    out = train("classified", "{dataset: prices}").output  # the same numbers are no class labels
    assert "its load gave back target_names, the names of numbers to predict, which a regression reads (arch: " \
           "mlp_regressor)" in " ".join(out.split()) and "Traceback" not in out


def test_what_a_dataset_plugins_load_gives_back_is_read_as_an_npz_is():
    """The table's reading of a plugin's load, unit by unit: names as numpy strings (an HDF5 file's bytes), and
    what is refused, each a DataError naming the dataset."""
    import types

    import numpy as np

    from dlkit.errors import DataError

    given = {}
    module = types.ModuleType("given")
    module.DATASET, module.load = "given", lambda data: dict(given)
    name, entry = sources.of_module(module, "plugin given.py")
    cfg = types.SimpleNamespace(path=None)
    x, y = np.zeros((6, 2, 2), "uint8"), np.array([0, 1, 2, 0, 1, 2])

    given.update(x_train=x, y_train=y, class_names=np.array([b"a", b"b", b"c"]))
    arrays = entry.load(cfg)
    assert arrays.class_names == ["a", "b", "c"] and arrays.modality == "images" and arrays.x_test is None
    given.update(class_names=None, x_train=x.reshape(6, 4))  # no names: indices; rows: feature vectors
    arrays = entry.load(cfg)
    assert arrays.class_names == ["0", "1", "2"] and arrays.modality == "features"
    given.update(class_names="abc")
    with pytest.raises(DataError, match=r"dataset 'given' \(plugin given.py\): its class_names is not a list"):
        entry.load(cfg)
    given.update(class_names=None, y_train=np.array([0, 1, 2, 0, 1, 0.5]))
    with pytest.raises(DataError, match="y_train holds 0.5 at index 5"):
        entry.load(cfg)
    given.update(y_train=y.astype(float) * 1.5)  # numbers to predict: a regression reads them
    targets = entry.targets(cfg, False)
    assert targets.y_train.shape == (6, 1) and targets.columns == {"targets": ["y"]}
    given.update(target_names=["price", "rent"])
    with pytest.raises(DataError, match="2 target_names for 1 targets"):
        entry.targets(cfg, False)
    given.update(target_names=None, x_train=x)
    with pytest.raises(DataError, match=r"x_train has shape \(6, 2, 2\); mlp_regressor reads feature vectors"):
        entry.targets(cfg, False)
    assert name == "given" and entry.description == "(plugin given.py)" and not entry.reads_path


# sentences, a text, sentence pairs and a series, as a plugin's `kind` key asks: made up as they are read
CORPUS = '''\
from pydantic import BaseModel

DATASET = "corpus"


class Data(BaseModel):
    kind: str = "sentences"


def load(data):
    good, bad = ["a fine day", "what a joy", "so good"] * 6, ["a grim day", "what a bore", "so bad"] * 6
    if data.kind == "sentences":
        return {"x_train": good + bad, "y_train": [1] * 18 + [0] * 18, "x_test": ["fine", "grim"],
                "y_test": [1, 0], "class_names": ["neg", "pos"]}
    if data.kind == "text":
        return {"x_train": good + bad, "x_test": " ".join(bad)}
    if data.kind == "pairs":
        return {"x_train": good + bad + ["  ", "lost"], "y_train": [s.upper() for s in good + bad] + ["X", " "]}
    if data.kind == "unlabelled":
        return {"x_train": good}
    if data.kind == "series":  # a table of hours: a load with a marker of a missing value
        import numpy as np
        import pandas as pd

        hours = pd.date_range("2024-01-01", periods=60, freq="h")
        load = (100 + 10 * np.sin(np.arange(60) / 4)).round(1).astype(object)
        load[7] = "?"
        return {"x_train": pd.DataFrame({"when": hours.astype(str), "load": load, "site": ["a", "b"] * 30})}
    if data.kind == "columns":
        return {"x_train": {"when": ["2024-01-01"], "load": [1.0, 2.0]}}
    return {"x_train": good + bad, "y_train": [1] * 36, "class_names": ["only"]}
'''


def test_a_dataset_plugin_gives_the_sequence_models_sentences_a_text_pairs_and_a_series(tmp_path):
    """The recurrent and translation tasks read a plugin's dataset as theirs: labelled sentences, one text,
    sentence pairs and a table of times; their data is made as a file's would be (vocabulary, windows, codecs,
    spans), and what does not fit the task is said."""
    from dlkit import tasks
    from dlkit.errors import DataError

    (tmp_path / "corpus.py").write_text(CORPUS)

    def recipe(arch, data, *sets):
        (tmp_path / "r.yaml").write_text(f"name: r\nplugins: [corpus.py]\ndata: {data}\nmodel: {{arch: {arch}}}\n")
        loaded = tasks.load_recipe(tmp_path / "r.yaml", list(sets))
        return loaded, tasks.of(loaded)

    r, task = recipe("rnn_classifier", "{dataset: corpus, validation_split: 0.25, batch_size: 4}")
    data = task.load_data(r)
    assert data.spec.class_names == ["neg", "pos"] and data.spec.num_classes == 2
    assert sum(data.spec.class_counts) == 27 and data.splits.x_test.shape[0] == 2  # its own test split
    assert "corpus.py" in task.locate(r)

    r, task = recipe("rnn_lm", "{dataset: corpus, kind: text, sequence_length: 5, batch_size: 2, shuffle_buffer: 0, "
                     "level: word}")
    data = task.load_data(r)  # the list read as lines of one text; its words the vocabulary
    assert data.test is not None and data.spec.input_shape == (5,)

    r, task = recipe("seq2seq", "{dataset: corpus, kind: pairs, test_split: 0.34, validation_split: 0.5}")
    data = task.load_data(r)  # the two pairs with an empty side left out; split by distinct source
    assert len(data.splits.x_train) + len(data.splits.x_val) + len(data.splits.x_test) == 36

    r, task = recipe("rnn_forecaster", "{dataset: corpus, kind: series, time_column: when, target_columns: [load], "
                     "categorical_columns: [site], missing_markers: ['?'], input_steps: 6, horizon: 2}")
    data = task.load_data(r)  # its table read as a CSV's rows: the marker a gap, filled; the site one-hot
    assert data.splits.x_train.shape[1:] == (6, 3) and data.artifacts["scaler"]["columns"] == ["load", "site_a",
                                                                                                "site_b"]

    # the docs' example of a text dataset: a JSON Lines file of sentences labelled by name, and its test file
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in ("jsonl_sentences.py", "sentiment_jsonl.yaml"):
        shutil.copy(EXAMPLES / f, folder / f)
    rows = [{"text": f"{word} {n}", "label": label} for n in range(12)
            for word, label in (("good", "positive"), ("bad", "negative"), ("meh", "neutral"))]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "good", "label": "positive"}) + "\n")
    r = tasks.load_recipe(folder / "sentiment_jsonl.yaml", [f"data.path={tmp_path / 'r.jsonl'}", "data.limit=30",
                                                           f"data.test_path={tmp_path / 't.jsonl'}"])
    data = tasks.of(r).load_data(r)
    assert data.spec.class_names == ["negative", "neutral", "positive"] and len(data.splits.x_test) == 1
    assert sum(data.spec.class_counts) == 27  # the first 30 lines (data.limit), 3 of them for validation
    (tmp_path / "r.jsonl").write_text('{"text": "good"}\n')
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'r.jsonl'}:1: KeyError: 'label' (fields: text_field "
                                                  "'text', label_field 'label')")):
        tasks.of(r).load_data(r)

    from dlkit.errors import RecipeError

    for arch, kind, said in [
        ("rnn_classifier", "unlabelled", "its load gave back no y_train; a sentence classifier learns each sentence's "
                                         "class"),
        ("rnn_lm", "sentences", "its load gave back y_train; a language model reads this dataset here, and does not "
                                "read it"),
        ("seq2seq", "sentences", "its load gave back x_test; a translation model (its test split is drawn by distinct "
                                 "source sentence, data.test_split) reads this dataset here"),
        ("seq2seq", "text", "its load gave back x_test"),
        ("rnn_forecaster", "sentences", "its load gave back y_train; a forecaster (its spans are cut by time"),
        ("rnn_forecaster", "text", "its load gave back x_test"),
        ("rnn_forecaster", "unlabelled", "its x_train is list; a forecaster reads a table: a pandas DataFrame"),
        ("rnn_forecaster", "columns", "its x_train's columns do not make a table (All arrays must be of the same "
                                      "length)"),
        ("rnn_classifier", "pairs", "y_train holds 'A FINE DAY' at index 0 (<U11 labels); labels are class indices 0, "
                                    "1, 2, ... (class names: a plugin's load gives them as class_names)"),
        ("rnn_classifier", "names", "a label is 1, but class_names names 1 classes"),
    ]:
        extra = ", shuffle_buffer: 0" if arch == "rnn_lm" else ""
        r, task = recipe(arch, f"{{dataset: corpus, kind: {kind}{extra}}}")
        with pytest.raises(DataError, match=re.escape(said)):
            task.load_data(r)
    with pytest.raises(RecipeError, match=re.escape("source_column: the columns of a file's lines; dataset 'corpus' "
                                                    "gives its pairs as x_train and y_train (remove it)")):
        recipe("seq2seq", "{dataset: corpus, kind: pairs, source_column: 2}")
    with pytest.raises(RecipeError, match=re.escape("separator: how a CSV file's cells are written; dataset 'corpus' "
                                                    "gives its table as x_train (remove it)")):
        recipe("rnn_forecaster", "{dataset: corpus, kind: series, separator: ';'}")
