"""Shared fixtures. Tests read a small slice of the real datasets committed under tests/data (see its
README.md), so the suite passes in a fresh clone anywhere, offline. Slow tests that need a full dataset
find it in $DLKIT_DATA_DIR or ../shared/data (`full_data`), and skip with the reason when it is missing."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # MNIST: the first 1,000 training and 500 test digits; CIFAR-10: 250 images


def _full_data() -> Path | None:
    for base in (os.environ.get("DLKIT_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if base and (Path(base) / "mnist" / "train-images-idx3-ubyte.gz").is_file() and Path(base) != DATA:
            if (Path(base) / "mnist" / "train-images-idx3-ubyte.gz").stat().st_size > 1_000_000:
                return Path(base)
    return None


FULL_DATA = _full_data()
os.environ.setdefault("DLKIT_DATA_DIR", str(DATA))  # a user's own is honoured
os.environ["DLKIT_OFFLINE"] = "1"  # never try a download, even where a network exists
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# XLA (JAX's compiler; TensorFlow's stays off on a CPU) compiles every program anew in each process, down to
# each weight's random initializer, and at the suite's tiny shapes compiling is most of a JAX test's time: the
# suite's processes compile with XLA's cheap optimization level (the two-device JAX test: 76 s of CPU time
# instead of 180 s, on the 2-core VM). Speed only: the same computations, their results within the tests'
# tolerances, which are unchanged; benchmarks and users' runs keep XLA's defaults.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_TEST_FLAGS}".strip()


def pytest_configure(config):
    """The session's JAX processes share one compilation cache (dlkit's, backend.compilation_cache), in a
    folder of the session's own, made here before the workers start and removed at the end: the processes
    that train the same tiny recipes compile each program once. Every program is kept, not only those over
    JAX's one-second threshold (at the suite's shapes none is). The user's own cache is never touched."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its controller made the folder
        return
    import tempfile

    config._dlkit_jax_cache = tempfile.mkdtemp(prefix="dlkit-test-jax-cache-")
    os.environ["DLKIT_COMPILATION_CACHE"] = config._dlkit_jax_cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):
    import shutil

    if getattr(config, "_dlkit_jax_cache", None):
        shutil.rmtree(config._dlkit_jax_cache, ignore_errors=True)


# each module's seconds in a whole `make test` on the 2-core VM (`make test-durations` writes them)
DURATIONS = ROOT / "tests" / "durations.json"


def pytest_addoption(parser):
    parser.addoption("--write-durations", metavar="PATH",
                     help="write each test module's seconds (setup, call and teardown of its tests) to PATH")


def pytest_collection_modifyitems(items):
    """The longest modules go first (longest processing time first). `make test` hands each worker whole
    modules (--dist loadfile, so that the runs a module's tests share are trained once) in the order their
    first tests come, the next to the worker that is nearly done: the long ones run side by side while there
    is time, and the workers end together. A module tests/durations.json does not know yet goes first."""
    known = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    items.sort(key=lambda item: -known.get(item.path.name, math.inf))


_seconds: dict[str, float] = {}  # --write-durations: each module's seconds so far


def pytest_runtest_logreport(report):
    """Under pytest-xdist the controller sees every worker's reports (and a worker its own: it writes none)."""
    module = Path(report.nodeid.split("::")[0]).name
    _seconds[module] = _seconds.get(module, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--write-durations")
    if path and _seconds and exitstatus == 0 and not hasattr(session.config, "workerinput"):
        Path(path).write_text(json.dumps({m: round(s, 1) for m, s in sorted(_seconds.items())}, indent=1) + "\n")


@pytest.fixture
def full_data() -> Path:
    """A full local copy of the datasets (slow tests)."""
    if FULL_DATA is None:
        pytest.skip("needs the full datasets: set DLKIT_DATA_DIR to a folder with mnist/ (the four IDX files), "
                    "or run beside ../shared/data")
    return FULL_DATA


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe (text) into tmp_path and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


TINY_MNIST = f"""\
name: tiny
seed: 7
data:
  dataset: mnist
  dir: {DATA}
  limit: 600
  test_limit: 200
  batch_size: 50
model:
  arch: cnn
  blocks: [{{filters: 4}}]
  dense: [16]
train:
  epochs: 2
  optimizer: {{name: adam, learning_rate: 0.005}}
"""


@pytest.fixture
def tiny_recipe(write_recipe):
    return write_recipe(TINY_MNIST)


@pytest.fixture(scope="module")
def digits16(tmp_path_factory) -> Path:
    """256 training and 64 test MNIST digits, center-cropped to 16x16, as an npz (GANs and own-step models)."""
    import numpy as np

    from dlkit.data import sources

    a = sources.load_builtin("mnist", str(DATA), allow_download=False)
    path = tmp_path_factory.mktemp("data") / "digits16.npz"
    np.savez(path, x_train=a.x_train[:256, 6:22, 6:22], y_train=a.y_train[:256],
             x_test=a.x_test[:64, 6:22, 6:22], y_test=a.y_test[:64])
    return path


def _trained(tmp_path_factory, name: str, overrides: list[str]) -> Path:
    from dlkit.training.train import train

    root = tmp_path_factory.mktemp(name)
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_MNIST)
    return Path(train(recipe, overrides, runs_root=root / "runs")["run_dir"])


def straight_run(recipe_text: str):
    """A module's fixture `straight` (`straight = straight_run(TEXT)`): the recipe trained straight through
    `dlkit train --json -q`, once in each test process that runs the module, its JSON answer: the run the
    module's tests look into (adding their evaluations and pictures), and the one a resumed run must end as."""

    @pytest.fixture(scope="module", name="straight")
    def fixture(tmp_path_factory) -> dict:
        import json

        from typer.testing import CliRunner

        from dlkit.cli import app

        root = tmp_path_factory.mktemp("straight")
        (root / "recipe.yaml").write_text(recipe_text)
        out = CliRunner().invoke(app, ["train", str(root / "recipe.yaml"), "--runs-root", str(root / "runs"),
                                       "--json", "-q"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    return fixture


def copy_run(run: Path, runs_root: Path) -> dict:
    """A copy of a finished run under runs_root, laid out as a runs root holds it (runs_root/NAME/STAMP), and
    its metrics.json (the figures `train` answered), run_dir the copy's: a run moved elsewhere resumes,
    evaluates and is listed where it now lies."""
    import json
    import shutil

    dest = runs_root / run.parent.name / run.name
    shutil.copytree(run, dest)
    return {**json.loads((run / "metrics.json").read_text()), "run_dir": str(dest)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of TINY_MNIST (2 epochs), trained once per test process, for the commands that read
    a run (export, report); they add files to it but change none of its own."""
    return _trained(tmp_path_factory, "tiny_run", [])


# dropout in the head: its masks come from a SeedGenerator, whose state a resume must carry over too
DROPOUT = ["model.head_dropout=0.3"]


@pytest.fixture(scope="session")
def straight_with_dropout(tmp_path_factory) -> Path:
    """TINY_MNIST with DROPOUT trained 3 epochs without a stop, once per test process: what a resumed run of
    the same recipe must end as, bit for bit. Read only."""
    return _trained(tmp_path_factory, "straight_with_dropout", ["train.epochs=3", *DROPOUT])


@pytest.fixture(scope="session")
def one_epoch_run(tmp_path_factory):
    """TINY_MNIST trained for one epoch, once per test process: `one_epoch_run(runs_root)` gives a test its
    own copy (copy_run) to resume, list or read, for the price of a file copy rather than a training."""
    run = _trained(tmp_path_factory, "one_epoch_run", ["train.epochs=1"])
    return lambda runs_root: copy_run(run, runs_root)


def no_tensorflow_env(tmp_path: Path) -> dict:
    """An environment in which `import tensorflow` fails, as on the JAX-only GPU host, with Keras on JAX."""
    shim = tmp_path / "no_tensorflow"
    for name in ("tensorflow", "tensorflow_datasets"):
        (shim / name).mkdir(parents=True, exist_ok=True)
        (shim / name / "__init__.py").write_text(f"raise ImportError('No module named {name} (blocked by the test)')\n")
    return {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{ROOT}", "KERAS_BACKEND": "jax"}


def build(recipe, spec, steps_per_epoch: int = 10, compile: bool = True):
    """The recipe's model for a DataSpec, built (and compiled) by its task, without reading any data."""
    from dlkit import tasks

    task = tasks.of(recipe)
    phase = task.phases(recipe)[0]
    model = task.build(recipe, spec, phase, {})
    return task.compile(model, recipe, steps_per_epoch, phase) if compile else model
