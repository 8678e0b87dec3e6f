"""The recipe schema: strict, typed, one section per concern, defaults that fit the common case.

`model` is validated in a second step against the config class of the architecture it names, so each
architecture module owns its own section (see dlkit/models). Every problem found, in any section, is
reported together with its dotted key path and the `file:line` it came from.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

from dlkit import catalog
from dlkit.errors import Problem, RecipeError
from dlkit.recipe.source import Locations, locate


class Section(BaseModel):
    # strict: no silent "3" -> 3 coercion; forbid: a typo'd key is an error, never ignored.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class UnsetIsNone(Section):
    """A section whose None fields mean "not set" (inherit, or keep Keras' default): saved without them."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


def check_name(value: str, choices, what: str) -> str:
    if value in choices:
        return value
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown {what} {value!r}; {hint}expected one of: {', '.join(choices)}")


# ---------------------------------------------------------------- layer knobs, shared by every architecture


class InitializerConfig(UnsetIsNone):
    """An initializer with arguments, e.g. {name: random_normal, stddev: 0.01}."""

    name: str
    mean: float | None = None
    stddev: float | None = Field(None, gt=0)
    minval: float | None = None
    maxval: float | None = None
    value: float | None = None  # for `constant`
    gain: float | None = Field(None, gt=0)  # for `orthogonal`
    scale: float | None = Field(None, gt=0)  # for `variance_scaling`

    _name = field_validator("name")(lambda v: check_name(v, catalog.INITIALIZERS, "initializer"))

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v):
        return {"name": v} if isinstance(v, str) else v  # `he_normal` is short for {name: he_normal}


Initializer = InitializerConfig


class RegularizerConfig(Section):
    """Weight penalties added to the loss: {l2: 1e-4}, {l1: 1e-5} or both (L1L2)."""

    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)


Activation = str
BatchNorm = Literal["none", "before", "after"]  # before or after the activation


class LayerKnobs(Section):
    """Knobs every weight layer of a model takes; blocks may override them one by one."""

    activation: Activation = "relu"
    initializer: Initializer = InitializerConfig(name="glorot_uniform")
    regularizer: RegularizerConfig | None = None
    dropout: float = Field(0.0, ge=0, lt=1)  # after each block; 0 turns it off
    batch_norm: BatchNorm = "none"

    _act = field_validator("activation")(lambda v: check_name(v, catalog.ACTIVATIONS, "activation"))


class KnobOverrides(UnsetIsNone):
    """The same knobs, unset by default: a block inherits what it leaves out from the model."""

    activation: Activation | None = None
    initializer: Initializer | None = None
    regularizer: RegularizerConfig | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    batch_norm: BatchNorm | None = None

    _act = field_validator("activation")(
        lambda v: v if v is None else check_name(v, catalog.ACTIVATIONS, "activation")
    )

    def resolve(self, model: LayerKnobs) -> LayerKnobs:
        own = {k: v for k, v in self if k in LayerKnobs.model_fields and v is not None}
        return model.model_copy(update=own)


class ModelBase(LayerKnobs):
    arch: str


# ---------------------------------------------------------------- data


class Augment(UnsetIsNone):
    """Training-only augmentation, applied in this order. Factors are fractions (rotation: of a full turn)."""

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = None
    translation: float | None = Field(None, gt=0, le=1)
    rotation: float | None = Field(None, gt=0, le=1)
    zoom: float | None = Field(None, gt=0, lt=1)
    contrast: float | None = Field(None, gt=0, le=1)


class DomainConfig(Section):
    """The second image domain of an unpaired translation model (cyclegan)."""

    dataset: str = "mnist_m"
    dir: str | None = None
    path: str | None = None
    download: bool = True
    limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    image_size: list[int] | None = Field(None, min_length=2, max_length=2)
    label_column: str | None = None

    _dataset = field_validator("dataset")(lambda v: DataConfig._dataset(v))

    @model_validator(mode="after")
    def _needs_path(self):
        return DataConfig._needs_path(self)


class DataConfig(Section):
    dataset: str = "mnist"
    dir: str | None = None  # where local files live; else $DLKIT_DATA_DIR, then the download cache
    path: str | None = None  # the file or folder for npz, image_folder and csv
    download: bool = True  # fall back to downloading when no local files are found
    validation_split: float = Field(0.1, ge=0, lt=1)  # carved from the end of train, after a seeded shuffle
    scale: Literal["unit", "symmetric", "standardize", "none"] = "unit"  # [0,1], [-1,1], zero mean/unit var
    batch_size: int = Field(128, ge=1)
    shuffle_buffer: int = Field(60000, ge=0)  # >= train size gives a full shuffle; 0 turns shuffling off
    cache: bool = True
    limit: int | None = Field(None, ge=1)  # keep only the first N training examples (quick runs)
    test_limit: int | None = Field(None, ge=1)
    augment: Augment = Augment()
    image_size: list[int] | None = Field(None, min_length=2, max_length=2)  # image_folder: resize to [h, w]
    label_column: str | None = None  # csv: the label column; default the last one
    domain_b: DomainConfig | None = None  # cyclegan: the second domain (this section's dataset is the first)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if v.startswith("tfds:") and len(v) > 5:
            return v
        return check_name(v, [d for d in catalog.DATASETS if d != "tfds:NAME"] + ["tfds:NAME"], "dataset")

    @model_validator(mode="after")
    def _needs_path(self):
        if self.dataset in ("npz", "image_folder", "csv") and not self.path:
            raise ValueError(f"dataset {self.dataset!r} reads data.path; set data.path to the file or folder")
        return self


# ---------------------------------------------------------------- training


class OptimizerConfig(UnsetIsNone):
    """Any keras.optimizers optimizer. Arguments left unset keep Keras' defaults."""

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

    @model_validator(mode="after")
    def _one_clip(self):
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError("set clipnorm or global_clipnorm, not both")
        return self


class ScheduleConfig(Section):
    """Learning-rate schedule. Durations are in epochs, converted to steps from the data size."""

    name: str = "constant"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from 0 (cosine)
    step_epochs: float = Field(10.0, gt=0)  # step: multiply by `factor` every this many epochs
    factor: float = Field(0.1, gt=0, lt=1)  # step and plateau
    decay_rate: float = Field(0.9, gt=0, lt=1)  # exponential: multiplier per epoch
    final_fraction: float = Field(0.0, ge=0, le=1)  # cosine: end at this fraction of the peak rate
    patience: int = Field(3, ge=1)  # plateau: epochs without improvement before cutting
    min_learning_rate: float = Field(0.0, ge=0)  # plateau floor

    _name = field_validator("name")(lambda v: check_name(v, catalog.SCHEDULES, "schedule"))


class GanOptimizers(Section):
    """Two optimizers for adversarial models; the DCGAN paper's Adam(2e-4, beta_1=0.5) by default.
    Different learning rates give the two time-scale update rule (TTUR)."""

    generator: OptimizerConfig = OptimizerConfig(name="adam", learning_rate=2e-4, beta_1=0.5)
    discriminator: OptimizerConfig = OptimizerConfig(name="adam", learning_rate=2e-4, beta_1=0.5)


class EarlyStopping(Section):
    monitor: str = "val_loss"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    loss: str | None = None  # default: the architecture's own (cross-entropy for classifiers)
    metrics: list[str] = ["accuracy"]
    optimizer: OptimizerConfig = OptimizerConfig()
    optimizers: GanOptimizers | None = None  # generator and discriminator optimizers (GAN architectures)
    schedule: ScheduleConfig = ScheduleConfig()
    early_stopping: EarlyStopping | None = None
    monitor: str = "val_loss"  # what picks the best checkpoint (falls back to loss without validation)
    steps_per_epoch: int | None = Field(None, ge=1)  # cap steps per epoch (quick runs)
    jit_compile: Literal["auto", True, False] = "auto"  # XLA; "auto" lets Keras decide
    # TensorFlow's deterministic kernels and tf.data ordering: same seed, same numbers. Off can be faster on GPU.
    deterministic: bool = True


class Recipe(Section):
    name: str
    seed: int = 42
    data: DataConfig = DataConfig()
    model: dict[str, Any]  # validated against ARCHITECTURES[model.arch].Config, see validate()
    train: TrainConfig = TrainConfig()

    @property
    def model_config_obj(self):
        return self.__dict__["_model"]

    def to_dict(self) -> dict:
        out = self.model_dump(mode="json")
        out["model"] = self.model_config_obj.model_dump(mode="json")
        return out


# ---------------------------------------------------------------- validation


def _problems(err: ValidationError, prefix: tuple, root_cls, locations: Locations) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        path = ".".join(str(p) for p in loc)
        msg = e["msg"].removeprefix("Value error, ")
        hint = None
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(root_cls, loc[len(prefix) : -1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.5)
            msg = "unknown key"
            hint = (f"did you mean {close[0]!r}?" if close else "remove it") + (
                f" Keys here: {', '.join(allowed)}" if allowed else ""
            )
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}; received {e['input']!r}"
        problems.append(Problem(path, msg, locate(locations, loc), hint))
    return problems


def _fields_at(cls, loc: tuple) -> list[str]:
    """The keys allowed at `loc` below the pydantic model `cls` (used for "did you mean")."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = _model_in(field.annotation)
        if cls is None:
            return []
    return list(getattr(cls, "model_fields", {}))


def _model_in(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def validate(data: dict, locations: Locations, source: str | None = None) -> Recipe:
    from dlkit.models import ARCHITECTURES

    data = dict(data)
    if source and "name" not in data:
        from pathlib import Path

        data["name"] = Path(source).stem
    problems: list[Problem] = []
    recipe = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        problems += _problems(e, (), Recipe, locations)

    model_data = data.get("model")
    model = None
    if not isinstance(model_data, dict):
        if "model" in data:
            problems.append(Problem("model", "model must be a section with at least `arch`", locate(locations, ("model",))))
    else:
        arch = model_data.get("arch")
        if arch is None:
            problems.append(Problem("model.arch", "required key is missing", locate(locations, ("model",)),
                                    f"choose one of: {', '.join(ARCHITECTURES)}"))
        elif not isinstance(arch, str) or arch not in ARCHITECTURES:
            close = difflib.get_close_matches(str(arch), list(ARCHITECTURES), n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"choose one of: {', '.join(ARCHITECTURES)}"
            problems.append(Problem("model.arch", f"unknown architecture {arch!r}", locate(locations, ("model", "arch")), hint))
        else:
            config_cls = ARCHITECTURES[arch].Config
            try:
                model = config_cls.model_validate(model_data)
            except ValidationError as e:
                problems += _problems(e, ("model",), config_cls, locations)

    if problems:
        problems.sort(key=lambda p: _line_order(p.location))
        raise RecipeError(problems, source)
    recipe.__dict__["_model"] = model
    return recipe


def _line_order(location: str | None):
    if not location or ":" not in location:
        return ("~", 0)
    file, _, line = location.rpartition(":")
    return (file, int(line)) if line.isdigit() else (file, 0)
