"""The recipe schema: strict, typed, one section per concern, defaults that fit the common case.

A recipe is `name`, `seed`, `data`, `model` and `train`. The `model` section is a union discriminated on
`model.arch`: the architecture it names (dlkit.models.ARCHITECTURES) supplies its class. The architecture's
task (dlkit.tasks) supplies the classes of `data` and `train`, since what a run trains on and which keys
steer it differ by kind of learning: a classifier has one optimizer, a loss and metrics; a GAN has a
generator's and a discriminator's optimizer and neither. This layer sits below the tasks, so `validate`
is handed the task's sections (`sections`) rather than importing them.

Every problem found, in any section, is reported together with its dotted key path and the `file:line`
it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Callable, ClassVar, Literal, Union

from pydantic import (AfterValidator, BaseModel, Field, ValidationError, ValidationInfo, create_model, field_validator,
                      model_serializer, model_validator)

from dlkit import catalog, models
from dlkit.config import Section, UnsetIsNone, check_name
from dlkit.data import sources
from dlkit.errors import Problem, RecipeError
from dlkit.metrics import improves
from dlkit.models import Architecture
from dlkit.models.knobs import ModelBase
from dlkit.recipe import plugins
from dlkit.recipe.source import Locations, locate, unnamed

# ---------------------------------------------------------------- data

# Bounds that no real run comes near, so that a slip (an extra zero or twenty) is an error at validate time
# rather than an out-of-memory crash or a run that would never end.
MAX_BATCH = 1_000_000
MAX_EPOCHS = 1_000_000


class Augment(UnsetIsNone):
    """Training-only augmentation, applied in this order. Factors are fractions (rotation: of a full turn)."""

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = None
    translation: float | None = Field(None, gt=0, le=1)
    rotation: float | None = Field(None, gt=0, le=1)
    zoom: float | None = Field(None, gt=0, lt=1)
    contrast: float | None = Field(None, gt=0, le=1)


def _dataset_name(v: str) -> str:
    if v.startswith("tfds:") and len(v) > 5:
        return v
    return sources.named(v, sources.SHIPPED)


def path_problems(section, readers: dict[str, str], key: str = "data.path") -> list[str]:
    """`path` is set exactly when the dataset reads one: a dataset that reads a user's file needs it, and one
    that does not would ignore it (a user who wrote only `path:` would have trained on the default dataset).
    `readers`: the datasets of this section that read a path, each with what the path should be."""
    if section.dataset in readers and not section.path:
        return [f"dataset {section.dataset!r} reads {key}; set {key} to {readers[section.dataset]}"]
    if section.path and section.dataset not in readers:
        names = ("one of " if len(readers) > 1 else "") + ", ".join(map(repr, readers))
        fix = (f"set the dataset to {names} to read it, or remove {key}" if readers
               else f"this task reads only its own dataset; remove {key}")
        return [f"dataset {section.dataset!r} does not read {key}, so {section.path!r} would be ignored: {fix} "
                f"(a built-in dataset's own files are looked for in {key[:-4]}dir)"]
    return []


def raise_all(section):
    """A section's `cross_problems`, all in one error (pydantic stops at a model's first failing check), one
    line each: each line is reported as a problem of its own."""
    found = section.cross_problems()
    if found:
        raise ValueError("\n".join(found))
    return section


def changed(section, keys) -> list[str]:
    """The keys of `keys` whose value is not the field's default. A key left at its default is no sign of a
    mistake where it is not read: a resolved recipe (a run's recipe.yaml, `dlkit show`) lists every key."""
    fields = type(section).model_fields
    return [k for k in keys if getattr(section, k) != fields[k].get_default(call_default_factory=True)]


def unread_keys(keys: list[str], why: str) -> list[str]:
    """The one problem of keys a section's dataset does not read: "KEYS: why (remove it|them)"; none for none."""
    if not keys:
        return []
    named = f"{', '.join(keys[:-1])} and {keys[-1]}" if len(keys) > 1 else keys[0]
    return [f"{named}: {why} (remove {'them' if len(keys) > 1 else 'it'})"]


def csv_format_problems(section) -> list[str]:
    """A CSV's `separator` and `decimal` (data sections that read CSV files) must differ."""
    return [f"separator and decimal are both {section.decimal!r}; a file with decimal commas separates its cells "
            "with another character (set separator: ';')"] if section.separator == section.decimal else []


ENV_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")  # $NAME or ${NAME}, as a shell reads them


def absolute(value: str | None) -> str | None:
    """A relative data.dir or data.path is read from the working directory, as any command-line tool's would
    be, and kept absolute in the resolved recipe (a run's recipe.yaml), so that `evaluate`, `resume` and
    `report` find the data again from any directory. `~` is the user's home, and `$NAME` or `${NAME}` an
    environment variable (`$DATA/train.csv`); one that is not set is an error, not a path of its own. A path
    that is there as written (a folder named `a$b`, or a run's resolved recipe naming it) is read as written."""
    if not value:
        return value
    path = os.path.expanduser(value)
    if "$" in path and not os.path.exists(path):
        unset = [a or b for a, b in ENV_VARIABLE.findall(path) if (a or b) not in os.environ]
        if unset:
            raise ValueError(f"${unset[0]} is not set in the environment ({value!r}): set it (export "
                             f"{unset[0]}=...), or write the path out")
        path = os.path.expanduser(os.path.expandvars(path))
    return os.path.abspath(path)


# the image datasets that read a user's file or folder (those with `reads_path` in sources.DATASETS)
IMAGE_PATHS = {"npz": "the .npz file", "image_folder": "the folder of class sub-folders", "csv": "the CSV file"}

# keys of an image source that some datasets alone read: whether a dataset does, and what is said where another is
# set (they were ignored there: an MNIST recipe with `image_size: [32, 32]` trained on 28 x 28 images)
IMAGE_SOURCE_KEYS = {
    "image_size": (lambda dataset: dataset == "image_folder" or dataset.startswith("tfds:"),
                   "read by datasets image_folder and tfds:NAME only (they resize their images to it)"),
    "label_column": (lambda dataset: dataset == "csv", "read from a csv file only"),
    "folder_order": (lambda dataset: dataset == "image_folder", "read by dataset image_folder only (the order of its "
                     "images)"),
}


def unread_source_keys(section) -> list[str]:
    """The keys of IMAGE_SOURCE_KEYS set (not at their default) where the section's dataset does not read them."""
    return [k for k in changed(section, list(IMAGE_SOURCE_KEYS)) if not IMAGE_SOURCE_KEYS[k][0](section.dataset)]


class DomainConfig(Section):
    """Another image source: the second domain of an unpaired translation model (cyclegan)."""

    dataset: str = "mnist_m"
    dir: str | None = None
    path: str | None = None
    download: bool = True
    limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    image_size: list[int] | None = Field(None, min_length=2, max_length=2)
    label_column: str | None = None
    folder_order: Literal["shuffled", "listed"] = "shuffled"  # image_folder: as DataConfig's

    _dataset = field_validator("dataset")(_dataset_name)
    _absolute = field_validator("dir", "path")(absolute)
    _together = model_validator(mode="after")(raise_all)

    def cross_problems(self) -> list[str]:
        unread = [f"{k}: {IMAGE_SOURCE_KEYS[k][1]}; dataset {self.dataset!r} reads none (remove it)"
                  for k in unread_source_keys(self)]
        keys = sources.dataset(self.dataset).keys
        needs = [k for k, f in keys.model_fields.items() if f.is_required()] if keys else []
        own = ([f"data.domain_b.dataset: dataset {self.dataset!r} needs its own key{'s' * (len(needs) > 1)} "
                f"{', '.join(needs)}, which domain_b does not hold (it reads a plugin's dataset with its keys' "
                "defaults); give them defaults, or make domain B a file dlkit reads"] if needs else [])
        return path_problems(self, {**IMAGE_PATHS, **sources.plugin_paths()}, "data.domain_b.path") + unread + own


class DataCommon(Section):
    """What every task's `data:` section has: where the data is, the splits and the batches. A task's own
    section subclasses this (images and feature vectors: DataConfig; text and series: their task's)."""

    augments: ClassVar[bool] = False  # the section has `augment` (images)
    path_datasets: ClassVar[dict[str, str]] = {}  # the datasets that read data.path, and what it should be
    plugged: ClassVar[bool] = False  # takes a dataset from outside dlkit (a plugin's), which its task reads its way

    dataset: str  # the task's section says which names it takes
    dir: str | None = None  # where local files live; else $DLKIT_DATA_DIR, then the download cache
    path: str | None = None  # a user's own file or folder, for the datasets that read one
    download: bool = True  # fall back to downloading when no local files are found
    validation_split: float = Field(0.1, ge=0, lt=1)  # carved from train: seeded draw (a series: its end)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    shuffle_buffer: int = Field(60000, ge=0)  # > 0: a full seeded shuffle each epoch; 0 keeps file order
    cache: bool = True
    limit: int | None = Field(None, ge=1)  # keep only the first N training examples (quick runs)
    test_limit: int | None = Field(None, ge=1)

    _absolute = field_validator("dir", "path")(absolute)
    _together = model_validator(mode="after")(raise_all)

    def cross_problems(self) -> list[str]:
        """What the section's keys say together that no one key says alone; a task's section adds its own."""
        return path_problems(self, {**self.path_datasets, **(sources.plugin_paths() if self.plugged else {})})


class DataConfig(DataCommon):
    """Images and feature vectors."""

    augments: ClassVar[bool] = True
    plugged: ClassVar[bool] = True
    path_datasets: ClassVar[dict[str, str]] = IMAGE_PATHS

    dataset: str = "mnist"
    scale: Literal["unit", "symmetric", "standardize", "none"] = "unit"  # [0,1], [-1,1], zero mean/unit var
    augment: Augment = Augment()
    image_size: list[int] | None = Field(None, min_length=2, max_length=2)  # image_folder, tfds: resize to [h, w]
    # image_folder: each split's images in a fixed shuffled order (shuffled), or as the folders list them, class by
    # class (listed: how runs before this key read them)
    folder_order: Literal["shuffled", "listed"] = "shuffled"
    label_column: str | None = None  # csv: the label column; default the last one
    separator: str = Field(",", min_length=1, max_length=1)  # csv: between a row's cells: ",", ";", "\t", "|"
    decimal: Literal[".", ","] = "."  # csv: the decimal mark: "," in many European files (beside separator ";")
    categorical_columns: list[str] = Field(default_factory=list)  # csv: feature columns one-hot encoded
    ignore_columns: list[str] = Field(default_factory=list)  # csv: columns not read (an id, a name, a note)
    # csv: training: one input per category value the training rows have (a value only in later rows is no input,
    # its weights would never train); all: one per value anywhere in the file, as runs before this key trained
    category_values: Literal["training", "all"] = "training"
    # csv: an empty cell is an error, or its row is left out (drop), or it is the column's mean over the
    # training rows (mean; an empty category: none of its values)
    missing: Literal["error", "drop", "mean"] = "error"
    # a dataset without a test set of its own (a csv, an npz without x_test, an image folder without test/)
    # keeps this share aside as its test split: a fixed draw (seed 0), the same for every run
    test_split: float = Field(0.2, ge=0, lt=1)

    not_used = {"domain_b": "a second domain is read by translation models only (arch: cyclegan)"}

    _dataset = field_validator("dataset")(_dataset_name)

    def cross_problems(self) -> list[str]:
        unread = changed(self, ("separator", "decimal", "categorical_columns", "category_values", "missing",
                                "ignore_columns")) \
            if self.dataset != "csv" \
            else []
        unread += [k for k in unread_source_keys(self) if k == "label_column"]
        twice = sorted({c for c in self.categorical_columns if self.categorical_columns.count(c) > 1})
        return super().cross_problems() + csv_format_problems(self) + unread_keys(
            unread, f"read from a csv file only; dataset {self.dataset!r} reads none") + (
            [f"data.categorical_columns: {', '.join(map(repr, twice))} listed twice"] if twice else []) + (
            [f"{k}: {IMAGE_SOURCE_KEYS[k][1]}; dataset {self.dataset!r} reads none (remove it)"
             for k in unread_source_keys(self) if k != "label_column"]) + (
            [f"data.categorical_columns: {self.label_column!r} is data.label_column, not a feature (remove it from "
             "categorical_columns: class names need no encoding)"] if self.label_column in self.categorical_columns
            else [])


# ---------------------------------------------------------------- training


class ScheduleConfig(Section):
    """Learning-rate schedule. Durations are in epochs, converted to steps from the data size."""

    name: str = "constant"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from 0 (cosine)
    step_epochs: float = Field(10.0, gt=0)  # step: multiply by `factor` every this many epochs
    hold_epochs: float = Field(0.0, ge=0)  # step: the first cut after this many epochs (then every step_epochs)
    factor: float = Field(0.1, gt=0, lt=1)  # step and plateau
    decay_rate: float = Field(0.9, gt=0, lt=1)  # exponential: multiplier per epoch
    final_fraction: float = Field(0.0, ge=0, le=1)  # cosine: end at this fraction of the peak rate
    patience: int = Field(3, ge=1)  # plateau: epochs without improvement before cutting
    min_learning_rate: float = Field(0.0, ge=0)  # plateau floor

    _name = field_validator("name")(lambda v: check_name(v, catalog.SCHEDULES, "schedule"))

    # the keys each schedule reads (dlkit.optim.schedule, and the plateau callback)
    READS: ClassVar[dict[str, tuple[str, ...]]] = {
        "constant": (), "step": ("step_epochs", "hold_epochs", "factor"), "exponential": ("decay_rate",),
        "cosine": ("warmup_epochs", "final_fraction"), "plateau": ("factor", "patience", "min_learning_rate")}

    @model_validator(mode="after")
    def _keys_read(self):
        # a key another schedule reads did nothing (warmup_epochs on a step schedule)
        unread = changed(self, [k for k in type(self).model_fields if k != "name" and k not in self.READS[self.name]])
        if unread:
            readers = {k: [n for n, keys in self.READS.items() if k in keys] for k in unread}
            said = "; ".join(f"{k} is read by {' and '.join(v)}" for k, v in readers.items())
            reads = ", ".join(self.READS[self.name]) or "no other key"
            raise ValueError(f"schedule {self.name!r} does not read {', '.join(unread)} ({said}); it reads {reads}")
        return self


class OptimizerConfig(UnsetIsNone):
    """Any keras.optimizers optimizer. Arguments left unset keep Keras' defaults, or, in a role whose default
    is another optimizer's settings (a GAN's Adam(2e-4, beta_1=0.5), a DBN's pretraining SGD), that default's
    where the recipe names the same optimizer or none."""

    merges_over_default: ClassVar[bool] = True

    name: str = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    nesterov: bool | None = None
    beta_1: float | None = Field(None, ge=0, lt=1)
    beta_2: float | None = Field(None, ge=0, lt=1)
    epsilon: float | None = Field(None, gt=0)
    rho: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0)
    clipnorm: float | None = Field(None, gt=0)  # clip each gradient's norm
    clipvalue: float | None = Field(None, gt=0)  # clip each gradient element
    global_clipnorm: float | None = Field(None, gt=0)  # clip the norm of all gradients together
    schedule: ScheduleConfig | None = None  # this optimizer's own schedule; unset: train.schedule

    _name = field_validator("name")(lambda v: check_name(v, catalog.OPTIMIZERS, "optimizer"))

    # The arguments of these each Keras optimizer takes besides learning_rate, weight_decay and the clips, which
    # all take (tests/test_recipe.py holds this to the Keras classes' signatures). A table, not a look at the
    # classes: that would import Keras, and TensorFlow with it, for `dlkit validate`.
    TAKES: ClassVar[dict[str, tuple[str, ...]]] = {
        "sgd": ("momentum", "nesterov"), "momentum": ("momentum", "nesterov"), "adagrad": ("epsilon",),
        "adadelta": ("epsilon", "rho"), "rmsprop": ("epsilon", "momentum", "rho"),
        **dict.fromkeys(("adam", "adamw", "adamax", "nadam"), ("beta_1", "beta_2", "epsilon")),
        "ftrl": (), "lion": ("beta_1", "beta_2"), "adafactor": ()}

    @field_validator("momentum", "nesterov", "beta_1", "beta_2", "epsilon", "rho")
    @classmethod
    def _taken(cls, v, info: ValidationInfo):
        # found at train time before, after `dlkit validate` had said ok; `name` is checked first
        name = info.data.get("name")
        if v is not None and name in cls.TAKES and info.field_name not in cls.TAKES[name]:
            takes = ("learning_rate",) + cls.TAKES[name] + ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
            raise ValueError(f"optimizer {name!r} takes no {info.field_name}; remove it ({name} takes: "
                             f"{', '.join(takes)})")
        return v

    @model_validator(mode="after")
    def _one_clip(self):
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError("set clipnorm or global_clipnorm, not both")
        return self


def direction_problems(name: str, mode: str, key: str) -> list[str]:
    """The problem with a monitored value whose direction neither its name nor `key` (its mode, beside the
    monitor key) says."""
    at = key.rsplit(".", 1)[0] + ".monitor"
    return [f"{at}: its name {name!r} does not say whether it gets better up or down; set {key}: min or max"] \
        if improves(name, mode) is None else []


class EarlyStopping(Section):
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"  # which way the monitored value improves; auto: by its name
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True

    _together = model_validator(mode="after")(raise_all)

    def cross_problems(self) -> list[str]:
        return direction_problems(self.monitor, self.mode, "train.early_stopping.mode")


class CheckpointEvery(Section):
    """A checkpoint inside an epoch, every so many training steps or minutes (epochs end with one anyway)."""

    steps: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("set one of steps and minutes, e.g. {minutes: 10}")
        return self

    @model_serializer(mode="wrap")
    def _set_one(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class OnNan(Section):
    """What a NaN or infinite loss does: `stop` the run (exit 4, the last good checkpoint kept), or `rollback`:
    reload the last good checkpoint, multiply every learning rate by `lr_factor` and go on, at most `times`
    times in the run, then stop."""

    action: Literal["stop", "rollback"] = "stop"
    times: int = Field(3, ge=1, le=100)
    lr_factor: float = Field(0.5, gt=0, lt=1)
    shorthand: ClassVar[str] = "an action (rollback is {action: rollback})"  # said by a recipe error

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value):
        return {"action": value} if isinstance(value, str) else value  # on_nan: rollback

    @model_serializer(mode="wrap")
    def _short(self, handler):
        out = handler(self)
        return "stop" if self.action == "stop" else out


class Distribution(Section):
    """`train.distribution`: the same run over several devices, on Keras's own engines: data parallel
    (each device a share of every batch; data.batch_size is the global batch), keras.distribution's
    DataParallel on JAX, tf.distribute's MirroredStrategy on TensorFlow."""

    strategy: Literal["none", "data_parallel"] = "none"
    devices: Literal["auto"] | int = "auto"  # auto: every accelerator there is (every CPU device without one)
    shorthand: ClassVar[str] = "a strategy (data_parallel is {strategy: data_parallel})"  # said by a recipe error

    @field_validator("devices")
    @classmethod
    def _count(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"devices counts devices: auto, or 1 or more; received {v}")
        return v

    @model_validator(mode="after")
    def _devices_read(self):
        if self.strategy == "none" and self.devices != "auto":  # it was dropped in silence: one device
            raise ValueError(f"devices {self.devices} is read by strategy data_parallel only; strategy none trains "
                             "on one device: set strategy: data_parallel (as dlkit train --devices N does), or remove "
                             "devices")
        return self

    @model_serializer(mode="wrap")
    def _short(self, handler):
        out = handler(self)
        return "none" if self.strategy == "none" else out


# The order `dlkit show` and recipe.yaml list train keys in, whichever task's section they belong to.
_TRAIN_ORDER = ("epochs", "loss", "metrics", "class_weight", "optimizer", "optimizers", "schedule", "early_stopping",
                "monitor", "monitor_mode",
                "steps_per_epoch", "checkpoint_every", "on_nan", "jit_compile", "run_eagerly", "steps_per_execution", "precision", "deterministic",
                "tensorboard", "distribution")


class TrainBase(Section):
    """What every task's `train:` section has. A task's own section subclasses this (or FitTrain) and adds
    its optimizer roles and keys."""

    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    schedule: ScheduleConfig = ScheduleConfig()  # every optimizer's, unless it has its own
    steps_per_epoch: int | None = Field(None, ge=1)  # cap steps per epoch (quick runs)
    # how much a crash may cost inside an epoch: 10 minutes of training at most (null: epochs only)
    checkpoint_every: CheckpointEvery | None = CheckpointEvery(minutes=10)
    on_nan: OnNan = OnNan()  # stop, or rollback: {action: rollback, times: 3, lr_factor: 0.5}
    jit_compile: Literal["auto", True, False] = "auto"  # XLA; "auto" lets Keras decide
    # each step as plain Python, op by op (Keras's run_eagerly): a debugger stops inside the model and its step;
    # slower than a compiled step past the first few
    run_eagerly: bool = False
    # training steps in one call of the compiled step (fewer host round trips on an accelerator); a run takes
    # the largest count up to this that divides an epoch's steps
    steps_per_execution: int = Field(1, ge=1, le=10_000)
    # Keras's dtype policy: mixed_* compute in 16 bits and keep the weights in float32 (bfloat16: Ampere-class
    # GPUs and TPUs; float16 with Keras's loss scaling, for models trained by Keras's own step)
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    # TensorFlow's deterministic kernels and tf.data ordering: same seed, same numbers. Off can be faster on GPU.
    deterministic: bool = True
    # TensorBoard logs in the run's tensorboard/: every logged value and the learning rate each epoch, and
    # the sample grids of the models that draw them (needs TensorFlow's summary writer)
    tensorboard: bool = False
    distribution: Distribution = Distribution()  # none, or {strategy: data_parallel, devices: auto | N}

    _together = model_validator(mode="after")(raise_all)

    def cross_problems(self) -> list[str]:
        """What the section's keys say together; a task's section adds its own (all reported at once)."""
        both = self.run_eagerly and self.jit_compile is True
        return ["train.jit_compile: run_eagerly: true runs each step uncompiled, and jit_compile: true asks for XLA; "
                "set one (jit_compile: auto leaves it to run_eagerly)"] if both else []

    @field_validator("distribution", mode="before")
    @classmethod
    def _distribution_short_form(cls, v):
        return {"strategy": v} if isinstance(v, str) else v  # distribution: none | data_parallel

    @model_serializer(mode="wrap")
    def _in_order(self, handler):
        out = handler(self)
        rank = {k: i for i, k in enumerate(_TRAIN_ORDER)}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    def schedules(self):
        """(dotted path, schedule) of every schedule in the section: the shared one and each role's own."""
        yield "train.schedule", self.schedule


class ModelOptimizer(Section):
    """`train.optimizers` of a task with one optimizer role, `model` (train.optimizer is the short form)."""

    model: OptimizerConfig = OptimizerConfig()


class OneOptimizerTrain(TrainBase):
    """The train section of a task with one optimizer role, `model`: the optimizer, early stopping, and a
    monitored value picking the best checkpoint (a model that computes its own loss: the VAE, the RBM)."""

    optimizer: OptimizerConfig = OptimizerConfig()
    # the long form, {model: {...}}; resolved into `optimizer`, so recipes and `dlkit show` read one way
    optimizers: ModelOptimizer | None = Field(None, exclude=True)
    early_stopping: EarlyStopping | None = None
    monitor: str = "val_loss"  # what picks the best checkpoint (falls back to loss without validation)
    monitor_mode: Literal["auto", "min", "max"] = "auto"  # which way it improves; auto: by its name

    not_used = {
        "loss": "this model computes its own loss (its metrics are logged each epoch)",
        "metrics": "this model logs its own measures each epoch",
    }

    def cross_problems(self) -> list[str]:
        return super().cross_problems() + direction_problems(self.monitor, self.monitor_mode, "train.monitor_mode")

    @model_validator(mode="after")
    def _one_optimizer(self):
        if self.optimizers is not None:
            if "optimizer" in self.model_fields_set:
                raise ValueError("set train.optimizer or train.optimizers.model, not both")
            self.optimizer, self.optimizers = self.optimizers.model, None
        return self

    def schedules(self):
        yield from super().schedules()
        if self.optimizer.schedule is not None:
            yield "train.optimizer.schedule", self.optimizer.schedule


class FitTrain(OneOptimizerTrain):
    """The train section of a task trained by plain compile/fit: one optimizer, one loss and metrics."""

    loss: str | None = None  # default: the task's (or the architecture's own, e.g. the perceptron rule)
    metrics: list[str] = ["accuracy"]

    # names checked here, with their lines, without importing Keras (catalog.LOSSES and METRICS are its own); a
    # task's section that narrows `loss` (a Literal) or `metrics` keeps these checks
    @field_validator("loss", check_fields=False)
    @classmethod
    def _loss_name(cls, v):
        why = catalog.unknown(v, catalog.LOSSES, "loss", "sparse_categorical_crossentropy") if isinstance(v, str) \
            else None
        if why:
            raise ValueError(why)
        return v

    @field_validator("metrics", check_fields=False)
    @classmethod
    def _metric_names(cls, v):
        found = [f"train.metrics.{i}: {why}" for i, why in
                 enumerate(catalog.unknown(m, catalog.METRICS, "metric", "accuracy") for m in v) if why]
        if found:
            raise ValueError("\n".join(found))  # one problem an entry, each at its own line
        return v

    not_used = {"class_weight": "class weights are a classifier's: arch perceptron, mlp, cnn, lenet5, vgg, resnet, "
                                "rnn_classifier"}


class ClassifierTrain(FitTrain):
    """A classifier's train section: a FitTrain's, and the weight of each class in the loss."""

    # `balanced` (each class's weight n / (k * its count), over the training split) or {class: weight}, a class
    # by its name or index, the classes left out weighing 1
    class_weight: Literal["balanced"] | dict[str, float] | None = None

    not_used = {}

    @field_validator("class_weight", mode="before")
    @classmethod
    def _names(cls, v):
        if not isinstance(v, dict):
            return v
        if any(isinstance(k, bool) for k in v):  # YAML reads yes, no, on, off, true and false unquoted as booleans
            said = ", ".join(str(k).lower() for k in v if isinstance(k, bool))
            raise ValueError(f"a class read as {said}: YAML reads yes, no, on, off, true and false as booleans; quote "
                             "the class's name ('yes': 3.0)")
        return {str(k): w for k, w in v.items()}  # YAML reads `0: 2.0` as an int

    @field_validator("class_weight")
    @classmethod
    def _positive(cls, v):
        bad = {k: w for k, w in v.items() if not w > 0} if isinstance(v, dict) else {}
        if bad:
            raise ValueError(f"class weights must be above 0; {', '.join(f'{k}: {w}' for k, w in bad.items())} "
                             "(leave a class out to weigh it 1)")
        if v == {}:
            raise ValueError("an empty mapping: name the classes to weigh ({cat: 2.0}), or use balanced")
        return v


# ---------------------------------------------------------------- tune

class SearchRange(UnsetIsNone):
    """One recipe key's values in `tune.space`: a range from `low` to `high` (whole numbers when both are;
    log-spaced with `log: true`; in steps of `step`), or a list of `choices`."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool | None = None  # unset: evenly spaced
    step: int | float | None = Field(None, gt=0)
    choices: list | None = None

    _together = model_validator(mode="after")(raise_all)

    def cross_problems(self) -> list[str]:
        if self.choices is not None:
            extra = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (["log"] if self.log else [])
            if extra:
                return [f"choices is a list of values; {', '.join(extra)} belong(s) to a range (low, high): give one "
                        "or the other"]
            return [] if len(self.choices) >= 2 else [
                "choices: list at least two values (one value is no search: set it in the recipe itself)"]
        if self.low is None or self.high is None:
            return ["give a range, low and high ({low: 1.0e-4, high: 1.0e-2, log: true}), or choices: [a, b]"]
        out = []
        if not self.low < self.high:
            out.append(f"low must be below high, received low {self.low} and high {self.high}")
        if self.log and self.low <= 0:
            out.append(f"a log range starts above 0, received low {self.low}")
        whole = self.integers
        if self.log and self.step is not None and not (whole and self.step == 1):
            out.append("a range is log-spaced or in steps, not both: remove step or log")
        if whole and self.step is not None and not isinstance(self.step, int):
            out.append(f"low and high are whole numbers, so step is one too; received {self.step} (write low: 0.0 "
                       "for a range of real numbers)")
        return out

    @property
    def integers(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


# keys a search may not vary: what names the runs and the seeds their trials share, and the search itself
UNTUNABLE = ("name", "seed", "tune", "extends")


def _space_key(key: str) -> str:
    if key.split(".")[0] in UNTUNABLE or not all(key.split(".")):
        raise ValueError(f"{key!r} is not a key a search varies: name a recipe key by its dotted path "
                         "(train.optimizer.learning_rate, model.dense); the trials share the recipe's name and seed")
    return key


class Prune(Section):
    """`tune.prune`, once at least `startup_trials` have finished. `rule: median`: a trial stops after an
    epoch past `warmup_epochs` whose best monitored value so far is worse than the median of the finished
    trials' at that epoch. `rule: halving` (asynchronous successive halving, ASHA): at each rung, epochs
    `min_epochs` times a power of `reduction_factor`, a trial goes on only if its best so far is in the best
    1/`reduction_factor` of the trials' that reached that rung before it, itself among them. `rule:
    hyperband`: halving in brackets, each trial in one, whose first rungs are min_epochs, min_epochs *
    reduction_factor, ... (tune.brackets): no one first rung has to be right."""

    rule: Literal["median", "halving", "hyperband"] = "median"
    startup_trials: int = Field(5, ge=1)  # hyperband: in each bracket
    warmup_epochs: int = Field(1, ge=0)  # median
    min_epochs: int = Field(1, ge=1)  # halving: the first rung; hyperband: the first bracket's
    reduction_factor: int = Field(3, ge=2)  # halving, hyperband: one in this many goes on at each rung

    _together = model_validator(mode="after")(raise_all)

    READS: ClassVar[dict[str, tuple[str, ...]]] = {"median": ("warmup_epochs",),
                                                   "halving": ("min_epochs", "reduction_factor"),
                                                   "hyperband": ("min_epochs", "reduction_factor")}

    def cross_problems(self) -> list[str]:
        unread = [k for k in ("warmup_epochs", "min_epochs", "reduction_factor") if k not in self.READS[self.rule]]
        readers = {k: " and ".join(r for r, keys in self.READS.items() if k in keys) for k in unread}
        return [f"{key} is read by rule {readers[key]} only, not by rule {self.rule}; remove it"
                for key in changed(self, unread)]


class Tune(Section):
    """`dlkit tune`: how many trials, how the next one's values are chosen, and the space searched. A trial is
    a normal run of the recipe at one point of the space, judged by its `train.monitor` at its best epoch."""

    trials: int = Field(20, ge=1, le=10_000)
    sampler: Literal["tpe", "random"] = "tpe"
    prune: Prune | None = None  # unset: every trial trains its epochs
    space: dict[Annotated[str, AfterValidator(_space_key)], SearchRange]

    @field_validator("space")
    @classmethod
    def _some(cls, v: dict) -> dict:
        if not v:
            raise ValueError("name at least one recipe key and its range: {train.optimizer.learning_rate: "
                             "{low: 1.0e-4, high: 1.0e-2, log: true}}")
        return v


PluginEntry = Annotated[str, AfterValidator(plugins.checked)]  # (`plugins` is the Recipe's field, below)


class Recipe(Section):
    name: str
    seed: int = Field(42, ge=0, lt=2**32)

    @field_validator("name")
    @classmethod
    def _one_folder(cls, v: str) -> str:
        # runs go to <runs root>/<name>/: one plain path segment, so no recipe writes outside the runs root
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", v):
            raise ValueError(f"a run name is one folder name: letters, digits, '.', '_' and '-', starting with a "
                             f"letter or digit, at most 100 characters; received {v[:120]!r}")
        return v
    # Python files (absolute once loaded) and modules whose architectures model.arch may name (recipe/plugins.py)
    plugins: list[PluginEntry] = []
    data: DataConfig = DataConfig()
    model: ModelBase
    train: TrainBase = TrainBase()
    tune: Tune | None = None  # what `dlkit tune` searches; `dlkit train` trains the recipe's own values

    @model_serializer(mode="wrap")
    def _as_before(self, handler):  # a recipe without a search or plugins is saved as before: no `tune: null`
        out = handler(self)
        if out.get("tune", 0) is None:
            del out["tune"]
        if out.get("plugins", 0) == []:
            del out["plugins"]
        return out

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- validation

# (architecture) -> {"data_cls": the task's DataConfig class, "train_cls": its TrainBase class}
Sections = Callable[[Architecture], dict]
# (validated recipe) -> problems across its sections, each with its key path (the task's `check`)
Checks = Callable[[Recipe], list]


@functools.cache
def recipe_class(model_cls: type, data_cls: type, train_cls: type) -> type[Recipe]:
    """The Recipe of one architecture: its model class, and its task's data and train classes."""
    required = any(f.is_required() for f in data_cls.model_fields.values())
    arch = model_cls.model_fields["arch"]
    return create_model(
        f"Recipe[{'?' if arch.is_required() else arch.default}, {train_cls.__name__}]", __base__=Recipe,
        data=(data_cls, ... if required else data_cls()), model=(model_cls, ...), train=(train_cls, train_cls()),
    )


def with_dataset_keys(data_cls: type, section) -> type:
    """The task's data class, with the own keys of the dataset the `data:` section names where it is a plugin's
    that has some (its `Data`); ValueError where one of them is a key the class has already."""
    name = section.get("dataset") if isinstance(section, dict) else None
    if not (isinstance(name, str) and getattr(data_cls, "plugged", False)):
        return data_cls
    try:
        found = sources.find(name)
    except ValueError:  # an installed one that does not load: its data.dataset validator says so
        return data_cls
    return data_cls if found is None or found.keys is None else _keyed(data_cls, found.keys, name)


@functools.cache
def _keyed(data_cls: type, keys: type, name: str) -> type:
    taken = sorted(set(keys.model_fields) & set(data_cls.model_fields))
    if taken:
        raise ValueError(f"dataset {name!r} ({sources.dataset(name).origin}) declares its own key"
                         f"{'s' * (len(taken) > 1)} {', '.join(taken)}, which dlkit's data section has already: "
                         "rename them in its Data (dlkit's own keys reach its load as they are)")
    # dlkit's keys first (as `dlkit show` lists them), then the dataset's; the section's config (strict, no
    # unknown key) is dlkit's whatever the dataset's class says
    return type(f"{data_cls.__name__}[{name}]", (keys, data_cls), {"model_config": data_cls.model_config,
                                                                   "__module__": __name__})


def validate(data: dict, locations: Locations, source: str | None, sections: Sections,
             checks: Checks | None = None, as_written: bool = False) -> Recipe:
    """The recipe `data` describes, or a RecipeError listing every problem with it at its line. `as_written`:
    a run's own resolved recipe, whose sections given in part do not merge over their defaults
    (Section._over_defaults)."""
    context = {"as_written": as_written}
    data = dict(data)
    problems: list[Problem] = []
    if source and "name" not in data:
        if unnamed(source):  # `-`'s stem, or a pipe's (/dev/fd/63: "63"), would name its runs' folder
            problems.append(Problem("name", f"a recipe read from {source} has no file name to name its runs by",
                                    locate(locations, ()), "give it one: name: NAME at its top"))
        data["name"] = "recipe" if unnamed(source) else Path(source).stem  # (said once: the stand-in is a name)
    model = data.get("model")
    arch = model.get("arch") if isinstance(model, dict) else None
    try:
        architecture = models.find(arch) if isinstance(arch, str) else None
        classes = sections(architecture) if architecture else None
    except ValueError as e:  # an installed package's that does not load, a plugin's naming no task dlkit has
        architecture, classes = None, None
        problems.append(Problem("model.arch", str(e), locate(locations, ("model", "arch"))))
    cls = None
    if classes is not None:
        try:
            classes = {**classes, "data_cls": with_dataset_keys(classes["data_cls"], data.get("data"))}
        except ValueError as e:  # a plugin dataset's own keys that dlkit's data section has already
            problems.append(Problem("data.dataset", str(e), locate(locations, ("data", "dataset"))))
        else:
            cls = recipe_class(architecture.config, **classes)
    if cls is not None:
        try:
            recipe = cls.model_validate(data, context=context)
        except ValidationError as e:
            problems += _problems(e, cls, locations)
            problems += _hidden(e, cls, data, locations, problems, checks, context)
        else:
            problems += _checked(recipe, checks, locations)
            if not problems:
                return recipe
    else:
        if model is None:
            problems.append(Problem("model", "required key is missing", locate(locations, ()),
                                    f"add a model section with its arch, one of: {', '.join(models.names())}"))
        elif not isinstance(model, dict):
            problems.append(Problem("model", "model must be a section with at least `arch`", locate(locations, ("model",))))
        elif isinstance(model, dict) and arch is None:
            problems.append(Problem("model.arch", "required key is missing", locate(locations, ("model",)),
                                    f"choose one of: {', '.join(models.names())}"))
            # without an architecture the model's keys are not checked; one that reads as arch misspelt is said
            problems += [Problem(f"model.{key}", "unknown key", locate(locations, ("model", key)),
                                 "did you mean 'arch'?") for key in model
                         if isinstance(key, str) and _meant(key, ["arch"])]
        elif not problems:
            close = difflib.get_close_matches(str(arch), models.names(), n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"choose one of: {', '.join(models.names())}" \
                + " (or one of your own: from a file or module the recipe's plugins list, or an installed package)"
            problems.append(Problem("model.arch", f"unknown architecture {arch!r}", locate(locations, ("model", "arch")),
                                    hint))
        problems += _whatever_the_task(data, locations, sections, context)
    problems = _misspelt_required(problems)
    problems.sort(key=lambda p: _line_order(p.location))
    raise RecipeError(problems, source)


def _whatever_the_task(data: dict, locations: Locations, sections: Sections, context: dict) -> list[Problem]:
    """Without an architecture there is no task to say which data and train keys exist: the rest of the recipe
    checked with each task's sections, and only the problems every task has (not "unknown key"): `data.dataset:
    sentiment` is a text task's dataset, `data.batch_size: 0` wrong for all."""
    common = None
    for data_cls, train_cls in dict.fromkeys((c["data_cls"], c["train_cls"]) for c in _task_sections(sections)):
        cls = recipe_class(ModelBase, data_cls, train_cls)  # any architecture's common model keys
        try:
            cls.model_validate({**data, "model": {"arch": "?"}}, context=context)
            return []
        except ValidationError as e:
            said = _problems(e, cls, locations)  # (an unknown key in data or train may be another task's)
            found = {(p.path, p.message): p for p in said if p.path != "model" and not (
                p.message in ("unknown key", "not used here") and p.path.split(".")[0] in ("data", "train"))}
        common = found if common is None else {k: v for k, v in common.items() if k in found}
    return list((common or {}).values())


def _task_sections(sections: Sections) -> list[dict]:
    """Each registered architecture's task sections (an installed package's architectures are not loaded)."""
    out = []
    for architecture in models.ARCHITECTURES.values():
        try:
            out.append(sections(architecture))
        except ValueError:  # a plugin's naming no task dlkit has: said where it is named
            continue
    return out


def _misspelt_required(problems: list[Problem]) -> list[Problem]:
    """One problem, not two, for a required key misspelt (`modex:` for `model:`): the unknown key's, at its
    line, saying the key it looks like is required and what that one takes; not "model: required key is
    missing" at the section's line besides."""
    missing = {p.path: p for p in problems if p.message == "required key is missing"}
    merged, out = set(), []
    for p in problems:
        meant = re.match(r"did you mean '(\w+)'\?", p.hint or "") if p.message == "unknown key" else None
        parent = p.path.rpartition(".")[0]
        q = missing.get(f"{parent}.{meant[1]}" if parent else meant[1]) if meant else None
        if q is not None:
            merged.add(q.path)
            said = f"did you mean {meant[1]!r}? It is required" + (f": {q.hint}" if q.hint else "")
            p = dataclasses.replace(p, hint=said)
        out.append(p)
    return [p for p in out if not (p.message == "required key is missing" and p.path in merged)]


def _checked(recipe: Recipe, checks: Checks | None, locations: Locations) -> list[Problem]:
    """The task's checks across sections, each problem at its key's line."""
    return [Problem(p.path, p.message, p.location or locate(locations, tuple(p.path.split("."))), p.hint)
            for p in (checks(recipe) if checks else [])]


def _hidden(err: ValidationError, cls, data: dict, locations: Locations, found: list[Problem],
            checks: Checks | None, context: dict) -> list[Problem]:
    """What the failing keys hid. Pydantic runs a section's cross-key checks only once every key in it is
    valid, and the task's checks need a whole recipe; so the recipe is validated once more without its failing
    keys (defaults stand in) and the problems this finds besides are added. A problem that names a removed
    key (by its name, or its dotted path: "reads data.path; set data.path" where data.path failed), or the
    default standing in for it, is left out: the default may be its cause (a dataset removed for a typo reads
    as 'mnist', which reads no data.path)."""
    trimmed, removed = copy.deepcopy(data), []
    for e in err.errors():
        loc = tuple(e["loc"])
        parent = functools.reduce(lambda d, k: d[k] if isinstance(d, (dict, list)) and _has(d, k) else None,
                                  loc[:-1], trimmed)
        if e["type"] != "missing" and len(loc) > 1 and isinstance(parent, dict) and loc[-1] in parent:
            del parent[loc[-1]]
            removed.append(loc)
    if not removed:
        return []
    for loc in list(removed):  # an unknown key's: the key it looks like stands in at its default (shuffle_bufer)
        owner = _class_at(cls, loc[:-1])
        meant = _meant(str(loc[-1]), list(owner.model_fields)) if owner is not None else None
        if meant is not None and str(loc[-1]) not in owner.model_fields:
            removed.append((*loc[:-1], meant))
    try:
        again = _checked(cls.model_validate(trimmed, context=context), checks, locations)
    except ValidationError as e:
        again = _problems(e, cls, locations)
    words = set()
    for loc in removed:
        owner = _class_at(cls, loc[:-1])
        field = owner.model_fields.get(str(loc[-1])) if owner is not None else None
        default = str(field.default) if field is not None else ""
        # a default with no letter or digit in it (a separator's ",") would match any message
        words |= {str(loc[-1]), ".".join(map(str, loc))} | (
            {default} if re.search(r"[A-Za-z0-9]", default) and field.default is not None
            and not isinstance(field.default, (bool, BaseModel)) else set())
    gone = [".".join(str(p) for p in loc) for loc in removed]
    seen = {(p.path, p.message) for p in found}
    return [p for p in again if (p.path, p.message) not in seen
            and not any(p.path == g or p.path.startswith(g + ".") for g in gone)
            and not any(re.search(rf"(?<![\w.]){re.escape(w)}(?![\w])", p.message) for w in words)]


def _has(container, key) -> bool:
    """Whether `container[key]` is there: a dict's key, or a list's index."""
    if isinstance(container, dict):
        return key in container
    return isinstance(key, int) and -len(container) <= key < len(container)


def _union_tag(root_cls, loc: tuple) -> int | None:
    """Where in `loc` pydantic put the name of a union's branch (`devices: Literal["auto"] | int` fails as
    devices.literal['auto'] and devices.int): the index after the field's own name, or None."""
    for i in range(len(loc) - 1):
        owner = _class_at(root_cls, loc[:i])
        field = owner.model_fields.get(loc[i]) if owner is not None and isinstance(loc[i], str) else None
        if field is None:
            continue
        args = [a for a in typing.get_args(field.annotation) if a is not type(None)]
        union = typing.get_origin(field.annotation) in (Union, types.UnionType) and len(args) > 1
        if union and isinstance(loc[i + 1], str) and _model_in(field.annotation) is None:
            return i + 1
    return None


def _one_per_union(errors: list[dict], root_cls) -> list[dict]:
    """A value no branch of a union takes, one error rather than one a branch: where a branch took the value's
    type and failed inside it (a mapping with a bad weight), that branch's errors at their own keys; else one
    error that lists what each branch expected ("'auto' or a valid integer")."""
    out, groups = [], {}
    for e in errors:
        at = _union_tag(root_cls, tuple(e["loc"]))
        if at is None:
            out.append(e)
        else:
            groups.setdefault(tuple(e["loc"][:at]), []).append((tuple(e["loc"][at + 1:]), e))
    for key, branch in groups.items():
        inner = [{**e, "loc": key + rest} for rest, e in branch if rest]
        if inner:
            out += inner
            continue
        wanted = list(dict.fromkeys(e["msg"].removeprefix("Input should be ") for _, e in branch))
        out.append({**branch[0][1], "loc": key, "type": "union", "msg": "Input should be " + " or ".join(wanted)})
    return out


def _problems(err: ValidationError, root_cls, locations: Locations) -> list[Problem]:
    problems = []
    for e in _one_per_union(err.errors(), root_cls):
        loc = tuple(p for p in e["loc"] if p != "[key]")  # a mapping's key that failed: said at the key
        msg = e["msg"].removeprefix("Value error, ")
        hint = None
        if e["type"] == "extra_forbidden":
            owner = _class_at(root_cls, loc[:-1])
            allowed = list(owner.model_fields) if owner is not None else []
            if len(loc) == 1:  # the loader reads (and removes) extends before the schema sees the recipe
                allowed = ["extends", *allowed]
            not_used = owner.not_used if owner is not None else {}
            if loc[-1] in not_used:
                msg, hint = "not used here", not_used[loc[-1]]
            else:
                close = _meant(str(loc[-1]), allowed)
                there = _where_else(root_cls, str(loc[-1]))
                msg = "unknown key"
                name, colon, value = str(loc[-1]).partition(":")
                if colon and name.strip() in allowed:  # {steps:1}: YAML's flow mappings need a space after ':'
                    hint = (f"YAML reads {loc[-1]!r} as one key, with no value: write '{name.strip()}: "
                            f"{value.strip()}', with a space after the colon.")
                elif 0 < len(there) <= 2:  # train.batch_size, model.learning_rate: a real key, in another section
                    hint = "move it to " + " or ".join(p if "." in p else f"the top level ({p})" for p in there) + "."
                else:
                    hint = f"did you mean {close!r}?" if close else "remove it."
                hint += f" Keys here: {', '.join(allowed)}" if allowed else ""
        elif e["type"] == "missing":
            msg = "required key is missing"
            owner = _class_at(root_cls, loc[:-1])
            field = owner.model_fields.get(str(loc[-1])) if owner is not None else None
            hint = field.description if field is not None else None
            made, parent = locate(locations, loc[:-1]) or "", ".".join(str(p) for p in loc[:-1])
            if made.startswith("--set ") and made[6:].partition("=")[0].strip() != parent:
                # a section the recipe leaves to its default (a GAN's initializer), made by a --set of one key
                hint = (f"the recipe does not set {parent} (its default is not merged into a --set): the --set made "
                        f"it with only the key it gives; set it whole, --set '{parent}={{{loc[-1]}: ..., ...}}'"
                        + (f" ({hint})" if hint else ""))
        elif e["type"] == "model_type":  # pydantic's "a valid dictionary or instance of DenseLayer": our class's name
            msg = _section_expected(_class_at(root_cls, loc), e["input"])
        elif e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}; received {e['input']!r}"
        for line in msg.split("\n"):  # raise_all's problems, one a line; one that starts with a key is the key's
            key = re.match(r"((?:data|model|train)(?:\.\w+)+): (.*)", line)
            at, text = (tuple(key[1].split(".")), key[2]) if key else (loc, line)
            problems.append(Problem(".".join(str(p) for p in at), text, locate(locations, at), hint))
    return problems


def _section_expected(cls, value) -> str:
    """What a section given as a scalar (`hidden: [2.5]`, `optimizer: 3`) should have been: a mapping of its keys,
    or the short form its class takes (`shorthand`)."""
    keys = f" ({', '.join(cls.model_fields)})" if cls is not None else ""
    short = getattr(cls, "shorthand", None)
    return f"expected a mapping of its keys{keys}" + (f", or {short}" if short else "") + f"; received {value!r}"


def _meant(key: str, allowed: list[str]) -> str | None:
    """The key of `allowed` that an unknown `key` looks like a misspelling of, if any."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    return close[0] if close else None


def _where_else(cls, key: str, prefix: tuple = (), depth: int = 3) -> list[str]:
    """The dotted paths, in the sections below `cls`, of keys named `key` (not inside lists)."""
    found = []
    for name, field in cls.model_fields.items():
        if name == key:
            found.append(".".join(prefix + (name,)))
        inner = _model_in(field.annotation, lists=False)
        if inner is not None and depth > 1:
            found += _where_else(inner, key, prefix + (name,), depth - 1)
    return found


def _class_at(cls, loc: tuple):
    """The pydantic model class that holds the keys at `loc` below `cls`, or None."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = _model_in(field.annotation)
        if cls is None:
            return None
    return cls


def _model_in(annotation, lists: bool = True):
    """The section class an annotation holds (through Optional and unions; through lists unless not `lists`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType) + ((list,) if lists else ()):
        for arg in typing.get_args(annotation):
            found = _model_in(arg, lists)
            if found is not None:
                return found
    return None


def _line_order(location: str | None):
    if not location or ":" not in location:
        return ("~", 0)
    file, _, line = location.rpartition(":")
    return (file, int(line)) if line.isdecimal() else (file, 0)
