"""The base of every recipe section: strict pydantic models, and the one way a name is checked; and the one
way an installed package's entry point (an architecture's, a dataset's) is loaded.

Every layer that declares a recipe section (data, models, tasks, the recipe itself) builds on `Section`, so
the rules are the same everywhere: no silent "3" -> 3 coercion, a typo'd key is an error, never ignored,
and no whole number is past 2**31 - 1 unless its field says so. Nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

import difflib
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_serializer, model_validator

# The largest whole number a recipe key takes unless its field sets its own bound: a count past it overflows the
# int32 and int64 shapes it sizes (a batch_size of 10**23 was TensorFlow's "out-of-range integer" traceback).
MAX_INT = 2**31 - 1


class Section(BaseModel):
    # strict: no silent "3" -> 3 coercion; forbid: a typo'd key is an error, never ignored; no .nan or .inf
    # for a rate or a factor
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)

    # keys other sections of this kind take but this one does not use, with what to do instead: a recipe
    # that sets one gets that hint in place of a bare "unknown key" (e.g. `train.metrics` for a GAN)
    not_used: ClassVar[dict[str, str]] = {}
    # a section of this class that a recipe gives in part, in a field whose default is one of them, keeps the
    # default's other keys (a GAN's generator optimizer given only its learning rate stays Adam with beta_1
    # 0.5): see _over_defaults
    merges_over_default: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data, info: ValidationInfo):
        """Each field whose default merges (`merges_over_default`) and that the recipe gives as a mapping naming
        no other `name`: the default's keys, then the given ones (a key given null keeps the default's; another
        name replaces the default whole, as `extends` does). Not for a run's own recipe.yaml, read as written
        (context `as_written`): it lists every key it trained with, and one written before this rule (a
        generator's Adam without beta_1) trained with Keras's value."""
        if not isinstance(data, dict) or (info.context or {}).get("as_written"):
            return data
        out = data
        for key, field in cls.model_fields.items():
            default, given = field.default, data.get(key)
            if not (isinstance(given, dict) and getattr(default, "merges_over_default", False)):
                continue
            base = default.model_dump()
            if given.get("name", base.get("name")) == base.get("name"):
                out = {**out, key: {**base, **{k: v for k, v in given.items() if v is not None}}}
        return out

    @field_validator("*", mode="after")
    @classmethod
    def _whole_numbers_fit(cls, value, info: ValidationInfo):
        """Each whole number (or list of them) of a field with no upper bound of its own is at most MAX_INT."""
        field = cls.model_fields.get(info.field_name)
        if field is not None and any(hasattr(m, "le") or hasattr(m, "lt") for m in field.metadata):
            return value
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
                raise ValueError(f"at most {MAX_INT:,} (2**31 - 1): a count past it overflows the tensors it sizes")
        return value


class UnsetIsNone(Section):
    """A section whose None fields mean "not set" (inherit, or keep Keras' default): saved without them."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


def check_name(value: str, choices, what: str) -> str:
    """`value` if it is one of `choices`, else a ValueError with a did-you-mean and the choices."""
    if value in choices:
        return value
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown {what} {value!r}; {hint}expected one of: {', '.join(choices)}")


def entry_point(ep, group: str) -> tuple[object, str, dict]:
    """An installed package's entry point (of `group`) loaded: what it names, how a message calls it, and what
    a run's manifest records of it (the entry point, the package and its version). An error of the package's
    code as it imports is a ValueError saying so, in those words."""
    from dlkit.errors import first_line

    origin = f"the package entry point {ep.name} = {ep.value!r} ({group})"
    try:
        loaded = ep.load()
    except Exception as e:  # noqa: BLE001 - any error of the package's code is its own, said as such
        raise ValueError(f"{origin} does not import: {type(e).__name__}: {first_line(e)}") from None
    return loaded, origin, {"entry_point": f"{ep.name} = {ep.value}", "module": ep.module,
                            "package": f"{ep.dist.name} {ep.dist.version}" if ep.dist else None}
