"""Recurrent language model (many-to-many): token ids -> embedding -> RNN/LSTM/GRU layers -> the next
token's logits at every step. Characters or words, by the data's vocabulary.

`stateful: true` carries each layer's state from one batch to the next (truncated backpropagation through
time over a text laid out as `batch_size` parallel streams, Zaremba et al. 2014); the state is reset at
each epoch's start and around every evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.recurrent import RecurrentConfig, head, stack

TASK = "language_model"


class Config(RecurrentConfig):
    arch: Literal["rnn_lm"] = "rnn_lm"
    embedding_dim: int = Field(128, ge=1)
    stateful: bool = False


def build(config: Config, spec, stateful: bool | None = None, batch_size: int | None = None):
    """`stateful` and `batch_size` rebuild the same weights for step-by-step sampling (one stream, one token
    at a time); by default the model is the recipe's."""
    import keras

    from dlkit.models import layers

    stateful = config.stateful if stateful is None else stateful
    if stateful:
        batch = batch_size or spec.batch_size
        tokens = keras.Input(batch_shape=(batch, None if batch_size else spec.input_shape[0]), dtype="int32",
                             name="tokens")
    else:
        tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(spec.vocabulary_size, config.embedding_dim, name="embedding")(tokens)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="embedding_dropout")(x)
    x = stack(x, config, return_sequences=True, stateful=stateful)
    x = head(x, config)
    logits = keras.layers.Dense(spec.vocabulary_size, kernel_initializer=layers.initializer(config.initializer),
                                name="logits", dtype="float32")(x)  # float32 under a mixed precision too
    return keras.Model(tokens, logits, name="rnn_lm")
