"""Tasks: what differs by kind of learning, between the models below and training and the CLI above.

An architecture names its task (`TASK` in its module); `TASKS` maps that name to the task object, whose
hooks (dlkit.tasks.base.Task) the training loop, `dlkit evaluate` and `dlkit generate` call.
`load_recipe` is how every layer above loads a recipe: it hands the recipe schema each task's own `data`
and `train` sections.

Tasks now: classification, reconstruction (autoencoders), variational (the VAE), boltzmann (the RBM), dbn
(RBMs pretrained, then a classifier), adversarial (image generation), translation (unpaired image-to-image),
text_classification, language_model, forecasting and image_to_sequence (the recurrent models),
text_translation (encoder-decoder models, with attention), and regression (a table's columns to numbers).
Adding one takes a module here and a line in TASKS (or `register` from outside).
"""

from __future__ import annotations

from pathlib import Path

from dlkit import models
from dlkit import recipe as recipe_layer
from dlkit.errors import RecipeError, UsageError
from dlkit.models import ARCHITECTURES, Architecture
from dlkit.recipe import plugins
from dlkit.tasks.adversarial import Adversarial
from dlkit.tasks.base import Task
from dlkit.tasks.boltzmann import Boltzmann
from dlkit.tasks.classification import Classification
from dlkit.tasks.dbn import Dbn
from dlkit.tasks.forecasting import Forecasting
from dlkit.tasks.image_to_sequence import ImageToSequence
from dlkit.tasks.language_model import LanguageModel
from dlkit.tasks.reconstruction import Reconstruction
from dlkit.tasks.regression import Regression
from dlkit.tasks.text_classification import TextClassification
from dlkit.tasks.text_translation import TextTranslation
from dlkit.tasks.translation import Translation
from dlkit.tasks.variational import Variational

TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Reconstruction(), Variational(), Boltzmann(), Dbn(),
                                              Adversarial(), Translation(), TextClassification(), LanguageModel(),
                                              Forecasting(), ImageToSequence(), TextTranslation(), Regression())}


def register(task: Task) -> None:
    """Add a task from outside dlkit (a plugin, a test)."""
    TASKS[task.name] = task


def of_architecture(architecture: Architecture) -> Task:
    if architecture.task not in TASKS:
        raise ValueError(f"architecture {architecture.name!r} declares task {architecture.task!r}, which is not "
                         f"registered (tasks: {', '.join(TASKS)})")
    return TASKS[architecture.task]


def of(recipe) -> Task:
    """The task a validated recipe trains as."""
    return of_architecture(ARCHITECTURES[recipe.model.arch])


def refuse_unread(task: Task, **given) -> None:
    """A usage error for an option given (not None) that `task` does not read, naming the tasks that do: an
    option silently dropped would leave the user thinking it took effect."""
    from dlkit.tasks.base import OPTIONS

    for name, value in given.items():
        if value is not None and name not in task.options:
            readers = ", ".join(t.name for t in TASKS.values() if name in t.options)
            raise UsageError(f"{OPTIONS[name]} is read by {readers} runs only; this run's task is {task.name}")


def sections(architecture: Architecture) -> dict:
    task = of_architecture(architecture)
    return {"data_cls": task.Data, "train_cls": task.Train}


def load_recipe(path: str | Path, overrides=(), plugin_files: dict[str, Path] | None = None,
                as_written: bool = False):
    """Load, merge, override and validate a recipe, its data and train sections those of its task
    (`plugin_files`: a run's copies of its plugins, recipe.plugins; `as_written`: a run's own recipe.yaml)."""
    return recipe_layer.load_recipe(path, overrides, sections=sections, plugin_files=plugin_files,
                                    as_written=as_written,
                                    checks=lambda recipe: of(recipe).check(recipe) + _distribution(recipe)
                                    + _tuned(recipe))


# Keys added since a run could have been trained, each with the value that trains as the run did before it
# existed, and the runs that need it (by their section's keys). A run's recipe.yaml lists every key of its
# sections, so one without the key predates it.
ADDED_KEYS = {("data", "test_split"): (0, lambda section: True),
              ("data", "category_values"): ("all", lambda section: bool(section.get("categorical_columns"))),
              ("data", "limit_cuts"): ("training_text", lambda section: section.get("limit") is not None),
              ("data", "vocabulary_from"): ("text", lambda section: True),  # a language model's
              ("data", "folder_order"): ("listed", lambda section: section.get("dataset") == "image_folder"),
              ("data", "domain_b.folder_order"): ("listed", lambda section: isinstance(section.get("domain_b"), dict)
                                                  and section["domain_b"].get("dataset") == "image_folder")}


def _lacks(section: dict, key: str) -> bool:
    """Whether a written section lacks `key` (dotted: within a sub-section it has, as data.domain_b)."""
    *parents, last = key.split(".")
    for parent in parents:
        section = section.get(parent) if isinstance(section, dict) else None
    return isinstance(section, dict) and last not in section


def load_run_recipe(path: str | Path, overrides=()):
    """A run's own recipe.yaml, read as the run was trained: a key added since (ADDED_KEYS) that the file
    lacks takes its old behaviour's value, not today's default (a resumed run keeps its data). A problem in it
    is said as the run's file, not the user's (a cut file said "add a model section"), with the recipe the run
    was trained from."""
    try:
        return _load_run_recipe(Path(path), overrides)
    except RecipeError as e:
        if e.source is None or not str(e.source).endswith("recipe.yaml"):
            raise
        import json

        try:
            origin = json.loads((Path(path).parent / "manifest.json").read_text()).get("recipe_file")
        except (OSError, ValueError, AttributeError):
            origin = None
        raise RecipeError(e.problems, f"{e.source}, the resolved recipe this run wrote as it began"
                          + (f" (from {origin})" if origin else "")) from None


def plugin_copies(run: Path) -> dict[str, Path]:
    """The copies a run keeps of its recipe's plugin files (its plugins/ folder), by the path the recipe
    lists: the code the run trained with, loaded in place of the file as it is now (or is no longer)."""
    return {k["file"]: run / k["copy"] for k in plugins.kept(run) if (run / k["copy"]).exists()}


def _load_run_recipe(path: Path, overrides):
    raw, locations = recipe_layer.load_raw(path)
    copies = plugin_copies(path.parent)
    plugins.load(raw.get("plugins"), locations, copies)  # its problems are said by load_recipe
    model = raw.get("model")
    try:
        arch = models.find(model["arch"]) if isinstance(model, dict) and isinstance(model.get("arch"), str) else None
    except ValueError:  # said by load_recipe
        arch = None
    if arch is None:
        return load_recipe(path, overrides, copies, as_written=True)
    classes = {"data": of_architecture(arch).Data, "train": of_architecture(arch).Train}
    written = {section: raw.get(section) if isinstance(raw.get(section), dict) else {} for section in classes}
    old = [f"{section}.{key}={value}" for (section, key), (value, needs) in ADDED_KEYS.items()
           if key.split(".")[0] in classes[section].model_fields and _lacks(written[section], key)
           and needs(written[section])]
    return load_recipe(path, [*old, *_once_ignored(raw, arch), *overrides], copies, as_written=True)


def _once_ignored(raw: dict, arch: Architecture) -> list[str]:
    """Overrides that put back to their defaults the keys a run's recipe.yaml sets where nothing read them:
    `image_size` on MNIST, `attention_maps` on a model without attention, a model's IDLE keys. Runs trained
    before the recipe check refused them ignored them, so such a run loads as it trained."""
    from dlkit.recipe.schema import IMAGE_SOURCE_KEYS, DataConfig
    from dlkit.tasks.text_translation import TranslationTrain

    data, model, train = (raw.get(k) if isinstance(raw.get(k), dict) else {} for k in ("data", "model", "train"))
    sources = {"data": data, "data.domain_b": data.get("domain_b")}
    default = {key: DataConfig.model_fields[key].default for key in IMAGE_SOURCE_KEYS}
    out = [f"{prefix}.{key}={'null' if default[key] is None else default[key]}" for prefix, source in sources.items()
           if isinstance(source, dict) for key, (reads, _) in IMAGE_SOURCE_KEYS.items()
           if source.get(key) not in (None, default[key]) and not reads(str(source.get("dataset", "")))]
    if model.get("attention") == "none" and train.get("attention_maps"):
        out.append(f"train.attention_maps={TranslationTrain.model_fields['attention_maps'].default}")
    sparsity = model.get("sparsity")
    if isinstance(sparsity, dict) and sparsity.get("kind", "l1") == "l1" and "target" in sparsity:
        from dlkit.models.autoencoder import SparsityConfig  # an L1 penalty's target, read by none

        out.append(f"model.sparsity.target={SparsityConfig.model_fields['target'].default}")
    fields = arch.config.model_fields  # knobs.ModelBase.IDLE: label_smoothing under the wasserstein objective, ...
    try:
        idle = arch.config.model_construct(**{k: v for k, v in model.items() if k in fields}).idle_keys()
    except (TypeError, ValueError):  # a value of the wrong kind: the recipe check names it
        idle = {}
    return out + [f"model.{key}={fields[key].default}" for key in idle]


def _tuned(recipe) -> list:
    """A tune section on a task with nothing to judge a trial by (no train.monitor: the GANs, CycleGAN) would
    do nothing but fail `dlkit tune`: said at its line by every command."""
    from dlkit.errors import Problem

    if recipe.tune is None or hasattr(recipe.train, "monitor"):
        return []
    return [Problem("tune", f"a {recipe.model.arch} run has no train.monitor to judge a trial by (its epochs log "
                            "no measure of its quality to pick the best by)",
                    hint="remove the tune section; compare such runs with `dlkit sweep` and `dlkit evaluate`")]


def _distribution(recipe) -> list:
    """A global batch that a stated device count does not divide (`devices: auto` is checked when the
    devices are known, by dlkit.backend.place)."""
    from dlkit import backend

    dist = recipe.train.distribution
    if dist.strategy != "data_parallel" or not isinstance(dist.devices, int):
        return []
    problem = backend.uneven_batch(getattr(recipe.data, "batch_size", None), dist.devices)
    return [problem] if problem else []
