"""Architectures. Each module has the same small face:

- `Config`, a pydantic model (its `model:` recipe section) with `arch: Literal["<name>"]`;
- `build(config, spec) -> keras.Model`, where `spec` is the data's `DataSpec`;
- `TASK`, the name of the task it trains as (see dlkit.tasks): what examples it learns from, its optimizer
  roles, and what finishing, evaluating and generating mean for it.

Adding an architecture takes one module and one line in `ARCHITECTURES`. From outside dlkit, the same module
is a recipe's plugin (dlkit.recipe.plugins: a file or a module the recipe lists) or an installed package's
entry point in the group `dlkit.architectures` (`find` loads it when a recipe names it); `register` is the
call underneath.
These modules import Keras only inside `build`, so validating a recipe never waits for TensorFlow, and
nothing here imports the recipe or task layers above.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dlkit.config import entry_point
from dlkit.models import (autoencoder, cgan, cnn, cnn_rnn_reader, cyclegan, dbn, dcgan, infogan, lenet5, mlp,
                          mlp_regressor, perceptron, rbm, resnet, rnn_classifier, rnn_forecaster, rnn_lm, seq2seq,
                          stackgan, transformer_translator, vae, vgg, wgan, wgan_gp)


@dataclass(frozen=True)
class Architecture:
    name: str
    config: type  # the pydantic Config of its `model:` section
    build: Callable  # (config, spec) -> keras.Model
    task: str  # a key of dlkit.tasks.TASKS
    summary: str  # one line, for `dlkit list`
    # the kinds of an image dataset's inputs it reads (dlkit.data.spec.MODALITIES' "images", "features"); empty:
    # its task's data has one kind only
    inputs: tuple[str, ...] = ()

    @classmethod
    def of(cls, module) -> Architecture:
        """The architecture a module declares (Config, build, TASK, INPUTS where it has them, and its docstring's
        first line)."""
        name = module.Config.model_fields["arch"].default
        summary = next(iter((module.__doc__ or "").strip().splitlines()), "")  # a plugin may have no docstring
        return cls(name, module.Config, module.build, module.TASK, summary, getattr(module, "INPUTS", ()))


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in map(Architecture.of, (perceptron, mlp, cnn, lenet5, vgg, resnet, autoencoder, vae, rbm, dbn, dcgan,
                                   cgan, wgan, wgan_gp, infogan, stackgan, cyclegan, rnn_classifier, rnn_lm,
                                   rnn_forecaster, cnn_rnn_reader, seq2seq, transformer_translator, mlp_regressor))
}


BUILT_IN = frozenset(ARCHITECTURES)
ENTRY_POINTS = "dlkit.architectures"  # an installed package's architectures: `NAME = "package.module"`
FROM_PACKAGES: dict[str, dict] = {}  # the installed packages' architectures loaded, by name: where each came from


def register(architecture: Architecture) -> None:
    """Add an architecture from outside dlkit (a plugin, a test); its `task` must be registered too."""
    if architecture.config.model_fields["arch"].default != architecture.name:
        raise ValueError(f"{architecture.name}: its Config's `arch` default must be {architecture.name!r}")
    ARCHITECTURES[architecture.name] = architecture


def of_module(module, origin: str) -> Architecture:
    """The architecture a plugin module declares, with the face of the modules here (`Config` on ModelBase,
    its `arch` a Literal with the name as default; `build`; `TASK`; `INPUTS` where it has them). A module
    that lacks part of it raises ValueError saying what, in `origin`'s words (a file, a module, a package's
    entry point); so does one that takes the name of an architecture dlkit ships."""
    from dlkit.models.knobs import ModelBase

    config = getattr(module, "Config", None)
    if not (isinstance(config, type) and issubclass(config, ModelBase)):
        raise ValueError(f"{origin} declares no architecture: it needs `class Config(ModelBase)` (from "
                         "dlkit.models.knobs), `build(config, spec)` and `TASK`, as dlkit/models/mlp.py has them "
                         "(or, declaring a dataset, `DATASET` and `load(data)`)")
    name = config.model_fields["arch"].default
    if not isinstance(name, str) or not name:
        raise ValueError(f"{origin}: its Config needs `arch: Literal[\"NAME\"] = \"NAME\"`, the name recipes "
                         "give as model.arch")
    missing = [what for what, ok in (("build(config, spec)", callable(getattr(module, "build", None))),
                                     ("TASK (the task it trains as, e.g. \"classification\")",
                                      isinstance(getattr(module, "TASK", None), str))) if not ok]
    if missing:
        raise ValueError(f"{origin}: architecture {name!r} lacks {' and '.join(missing)}")
    if name in BUILT_IN:
        raise ValueError(f"{origin}: {name!r} is the name of an architecture dlkit ships; give yours another "
                         "(its Config's arch)")
    return Architecture.of(module)


@functools.cache
def installed() -> dict:
    """The architectures installed packages declare (entry points of the group ENTRY_POINTS), by name, not
    loaded: a package's code runs only when a recipe names one of its architectures."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS) if ep.name not in BUILT_IN}


def names() -> list[str]:
    """Every architecture a recipe may name without a `plugins` key: dlkit's, those registered, installed ones."""
    return list(ARCHITECTURES) + [n for n in installed() if n not in ARCHITECTURES]


def find(name: str) -> Architecture | None:
    """The architecture of that name: registered (dlkit's, a recipe's plugins'), else an installed package's,
    loaded and registered now; None where there is none. An installed one that does not load raises
    ValueError saying why."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    ep = installed().get(name)
    if ep is None:
        return None
    loaded, origin, record = entry_point(ep, ENTRY_POINTS)
    architecture = loaded if isinstance(loaded, Architecture) else of_module(loaded, origin)
    if architecture.name != name:
        raise ValueError(f"{origin} declares architecture {architecture.name!r}, not {name!r}")
    register(architecture)
    FROM_PACKAGES[name] = {"architecture": name, **record}
    return architecture


def describe() -> dict[str, str]:
    return {name: a.summary for name, a in ARCHITECTURES.items()}


def register_keras_classes() -> None:
    """Import the modules whose Keras classes (the adversarial models, the perceptron criterion, the
    autoencoders' corruption and sparsity) must be registered before keras.saving.load_model reads a file
    that holds them."""
    from dlkit.models import corruption, gan_model, losses, rbm_model, recurrent_layers, vae_model  # noqa: F401
    from dlkit.models import seq2seq, transformer_translator

    seq2seq.register()  # the attention layer
    transformer_translator.register()  # its masks and embeddings
    from dlkit.optim import scaled_schedule_class

    scaled_schedule_class()  # a rolled-back run's learning rate (train.on_nan: rollback)


def load(path, unsafe: bool = False, compile: bool = True):
    """keras.saving.load_model with dlkit's classes registered, in safe mode: a file holding code (a Lambda
    layer's Python) is refused unless `unsafe`, since loading it would run that code. `compile=False`: the
    model alone, neither compiled nor holding its optimizer's state (an Adam's two moments per weight are
    left in the file): enough to draw, encode, predict and export, not to train or `evaluate`."""
    import warnings
    import zipfile
    import zlib

    import keras

    from dlkit.errors import DataError, UsageError, first_line

    register_keras_classes()
    damaged = (f"{path} is not a whole .keras file; it was cut or changed since it was written (dlkit writes it "
               "whole): restore it from a copy of the run, or train the recipe again")
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise DataError(damaged)
    try:
        with warnings.catch_warnings():  # a model compiled on JAX, loaded on TensorFlow, would say so each time
            warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")
            return keras.saving.load_model(path, compile=compile, safe_mode=not unsafe)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(f"{damaged} ({type(e).__name__}: {first_line(e)})") from None
    except ValueError as e:
        if "safe_mode" not in str(e):
            raise
        raise UsageError(f"{path} holds Python code (a Lambda layer or function); dlkit loads models in Keras's "
                         "safe mode, which does not run it. If you trust the file, pass --unsafe") from None
