"""Layer builders shared by the architectures: every knob (initializer, regularizer, activation, batch
norm placement, dropout) is applied here, in one place, through Keras' own `get()` functions."""

from __future__ import annotations

import keras

from dlkit import catalog
from dlkit.models.knobs import InitializerConfig, LayerKnobs, RegularizerConfig


def initializer(cfg: InitializerConfig | str):
    """A Keras initializer from the recipe's: a config with arguments, or a catalog name (`xavier_uniform`)."""
    cfg = InitializerConfig(name=cfg) if isinstance(cfg, str) else cfg
    params = {k: v for k, v in cfg.model_dump(exclude={"name"}).items() if v is not None}
    if cfg.name == "constant":
        params.setdefault("value", 0.0)  # keras' Constant cannot be rebuilt from a config without one
    return keras.initializers.get({"class_name": catalog.INITIALIZERS[cfg.name], "config": params})


def regularizer(cfg: RegularizerConfig | None):
    if cfg is None or (cfg.l1 == 0 and cfg.l2 == 0):
        return None
    if cfg.l1 and cfg.l2:
        return keras.regularizers.get({"class_name": "L1L2", "config": {"l1": cfg.l1, "l2": cfg.l2}})
    if cfg.l1:
        return keras.regularizers.get({"class_name": "L1", "config": {"l1": cfg.l1}})
    return keras.regularizers.get({"class_name": "L2", "config": {"l2": cfg.l2}})


def weights(knobs: LayerKnobs) -> dict:
    """Keyword arguments for a Dense or Conv layer from the knobs."""
    return {
        "kernel_initializer": initializer(knobs.initializer),
        "kernel_regularizer": regularizer(knobs.regularizer),
        # A bias right before batch norm is cancelled by its mean subtraction.
        "use_bias": knobs.batch_norm != "before",
    }


def finish(x, knobs: LayerKnobs, dropout: bool = True):
    """Batch norm (before or after), activation and dropout after a weight layer."""
    if knobs.batch_norm == "before":
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation(knobs.activation)(x)
    if knobs.batch_norm == "after":
        x = keras.layers.BatchNormalization()(x)
    if dropout and knobs.dropout > 0:
        x = keras.layers.Dropout(knobs.dropout)(x)
    return x


def dense(x, units: int, knobs: LayerKnobs, dropout: bool = True):
    x = keras.layers.Dense(units, **weights(knobs))(x)
    return finish(x, knobs, dropout)


def classifier_head(x, spec, knobs: LayerKnobs):
    """The output layer: class probabilities (softmax), initialised like the rest of the model; in float32
    under a mixed precision too, as Keras's mixed-precision guide has it (a float16 softmax rounds small
    probabilities to 0 and large ones to 1)."""
    return keras.layers.Dense(
        spec.num_classes,
        activation="softmax",
        kernel_initializer=initializer(knobs.initializer),
        kernel_regularizer=regularizer(knobs.regularizer),
        name="predictions",
        dtype="float32",
    )(x)


def inputs(spec):
    return keras.Input(shape=spec.input_shape, name="inputs")
