"""The layer knobs every architecture takes (initializer, regularizer, activation, dropout, batch norm) and
`ModelBase`, the base of every architecture's `Config` (its `model:` recipe section)."""

from __future__ import annotations

from typing import Annotated, Any, Callable, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from dlkit import catalog
from dlkit.config import Section, UnsetIsNone, check_name

# the most layers a count of repeated layers may ask (convs in a block, residual blocks): the deepest classic
# stacks take 4 (VGG's stages) to 9 (CycleGAN's generator); `convs: 3000`, a slip for 3, built for minutes, then
# traced for longer, before a first step
MAX_REPEATS = 64


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

    # the arguments each Keras initializer takes of these (the others take none but a seed)
    TAKES: ClassVar[dict[str, tuple[str, ...]]] = {
        "constant": ("value",), "random_normal": ("mean", "stddev"), "truncated_normal": ("mean", "stddev"),
        "random_uniform": ("minval", "maxval"), "orthogonal": ("gain",), "variance_scaling": ("scale",)}

    shorthand: ClassVar[str] = "a name (he_normal is {name: he_normal})"  # said by a recipe error

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v):
        return {"name": v} if isinstance(v, str) else v  # `he_normal` is short for {name: he_normal}

    @model_validator(mode="after")
    def _arguments_taken(self):
        # Keras's own error came at build time, as a traceback: HeNormal takes no 'stddev'
        takes = self.TAKES.get(catalog.INITIALIZERS[self.name], ())
        bad = [k for k in type(self).model_fields if k != "name" and getattr(self, k) is not None and k not in takes]
        if bad:
            raise ValueError(f"initializer {self.name!r} takes no {', '.join(bad)} (it takes "
                             f"{', '.join(takes) or 'no arguments'}); remove {'it' if len(bad) == 1 else 'them'}")
        # Keras draws from [minval, maxval) without a check: the other way round, or equal, drew nonsense
        low = -0.05 if self.minval is None else self.minval  # Keras's RandomUniform defaults
        high = 0.05 if self.maxval is None else self.maxval
        if self.name == "random_uniform" and not low < high:
            raise ValueError(f"random_uniform draws from [minval, maxval): minval {low} is not below maxval {high} "
                             "(a bound left out is Keras's: -0.05, 0.05)")
        return self


class RegularizerConfig(Section):
    """Weight penalties added to the loss: {l2: 1e-4}, {l1: 1e-5} or both (L1L2)."""

    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)


# A name from dlkit's catalog, checked when the recipe loads: a misspelt one was Keras's error at build time,
# under a hint about the inputs' size.
Activation = Annotated[str, AfterValidator(lambda v: check_name(v, catalog.ACTIVATIONS, "activation"))]
InitializerName = Annotated[str, AfterValidator(lambda v: check_name(v, catalog.INITIALIZERS, "initializer"))]
BatchNorm = Literal["none", "before", "after"]  # before or after the activation


class LayerKnobs(Section):
    """Knobs every weight layer of a model takes; blocks may override them one by one."""

    activation: Activation = "relu"
    initializer: InitializerConfig = InitializerConfig(name="glorot_uniform")
    regularizer: RegularizerConfig | None = None
    dropout: float = Field(0.0, ge=0, lt=1)  # after each block; 0 turns it off
    batch_norm: BatchNorm = "none"


class KnobOverrides(UnsetIsNone):
    """The same knobs, unset by default: a block inherits what it leaves out from the model."""

    activation: Activation | None = None
    initializer: InitializerConfig | None = None
    regularizer: RegularizerConfig | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    batch_norm: BatchNorm | None = None

    def resolve(self, model: LayerKnobs) -> LayerKnobs:
        own = {k: v for k, v in self if k in LayerKnobs.model_fields and v is not None}
        return model.model_copy(update=own)


class ModelBase(LayerKnobs):
    """The `model:` section. Each architecture subclasses it with `arch: Literal["its name"]`."""

    arch: str

    # Keys the section's other keys can leave with nothing to do: (key, idle(config) -> bool, why). Set off its
    # default where it is idle, a key is a recipe error, since it would train as if absent. (A run trained
    # before a check here loads with the key back at its default: dlkit.tasks.load_run_recipe.)
    IDLE: ClassVar[tuple[tuple[str, Callable[[Any], bool], str], ...]] = ()

    def loss(self):
        """The loss this architecture trains on when the recipe names none (None: the task's default)."""
        return None

    def idle_keys(self) -> dict[str, str]:
        """The keys of IDLE set off their defaults where they are idle, each with why."""
        fields = type(self).model_fields
        return {key: why for key, idle, why in self.IDLE if getattr(self, key) != fields[key].default and idle(self)}

    @model_validator(mode="after")
    def _none_idle(self):
        idle = self.idle_keys()
        if idle:
            raise ValueError("\n".join(idle.values()))
        return self
