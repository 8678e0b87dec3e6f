"""The recurrent family's shared part: the `model:` keys of every recurrent architecture (rnn_classifier,
rnn_lm, rnn_forecaster) and the stack of recurrent layers they build on.

`cell` picks the layer: `rnn` (keras.layers.SimpleRNN), `lstm` or `gru`. `units` lists the stacked layers'
sizes. Settings keep Keras's fast kernels (cuDNN on a TensorFlow GPU, the fused scan on JAX) unless a recipe
asks otherwise: tanh and sigmoid activations, GRU with `reset_after=True`, padding at the end of sequences,
and no `recurrent_dropout` (setting it leaves the cuDNN path; docs/architectures.md says so).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from dlkit.models.knobs import InitializerName, ModelBase

CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


class RecurrentConfig(ModelBase):
    # what a model-wide batch_norm, refused, is told to do instead (a model with convolutions: per block)
    INSTEAD_OF_BATCH_NORM: ClassVar[str] = "use dropout (and recurrent_dropout) instead"
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    units: list[int] = Field(default_factory=lambda: [128], min_length=1)  # one entry per stacked layer
    # dropout (the model's `dropout` knob) acts between layers, on non-recurrent connections (Zaremba et al.)
    recurrent_dropout: float = Field(0.0, ge=0, lt=1)  # on the recurrent state; > 0 leaves the cuDNN kernel
    dense: list[int] = Field(default_factory=list)  # dense layers after the recurrent ones (`activation` is theirs)
    # the recurrent layers' own initializer; the `initializer` knob is the input kernels' and dense layers'
    recurrent_initializer: InitializerName = "orthogonal"

    @model_validator(mode="after")
    def _no_batch_norm(self):
        if self.batch_norm != "none":
            raise ValueError("batch_norm does not apply between time steps of a recurrent model; "
                             + self.INSTEAD_OF_BATCH_NORM)
        if any(u < 1 for u in self.units + self.dense):
            raise ValueError("units and dense list layer sizes: each at least 1")
        return self


def recurrent_layer(config: RecurrentConfig, units: int, index: int, return_sequences: bool,
                    stateful: bool = False):
    import keras

    from dlkit.models import layers

    kwargs = dict(units=units, return_sequences=return_sequences, stateful=stateful,
                  recurrent_dropout=config.recurrent_dropout,
                  kernel_initializer=layers.initializer(config.initializer),
                  recurrent_initializer=layers.initializer(config.recurrent_initializer),
                  kernel_regularizer=layers.regularizer(config.regularizer), name=f"{config.cell}_{index}")
    if config.cell == "gru":
        kwargs["reset_after"] = True  # the cuDNN-compatible GRU
    if stateful:  # Keras's own stateful layers lose their state on JAX: see recurrent_layers
        from dlkit.models.recurrent_layers import LAYERS

        return LAYERS[config.cell](**kwargs)
    return getattr(keras.layers, CELLS[config.cell])(**kwargs)


def stack(x, config: RecurrentConfig, return_sequences: bool, stateful: bool = False,
          bidirectional: bool = False):
    """The recurrent layers; the last returns every step's output (`return_sequences`) or the final one."""
    import keras

    for i, units in enumerate(config.units, start=1):
        last = i == len(config.units)
        layer = recurrent_layer(config, units, i, return_sequences or not last, stateful)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
        if config.dropout > 0:
            x = keras.layers.Dropout(config.dropout, name=f"{config.cell}_{i}_dropout")(x)
    return x


def head(x, config: RecurrentConfig):
    """The dense layers after the recurrent stack."""
    from dlkit.models import layers

    for units in config.dense:
        x = layers.dense(x, units, config)
    return x
