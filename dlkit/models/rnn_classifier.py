"""Recurrent sequence classifier (many-to-one): token ids -> embedding -> RNN/LSTM/GRU layers -> classes.

Padding (id 0, at the end) is masked: the embedding's mask reaches every recurrent layer, so a padded
sentence gives the same output as the sentence alone (tests/test_sequence.py checks it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dlkit.models.recurrent import RecurrentConfig, head, stack

TASK = "text_classification"


class Config(RecurrentConfig):
    arch: Literal["rnn_classifier"] = "rnn_classifier"
    embedding_dim: int = Field(64, ge=1)
    bidirectional: bool = False  # read the sentence both ways (the whole sentence is known)


def build(config: Config, spec):
    import keras

    from dlkit.models import layers

    # any length: the data pads every batch to one (data.max_length), and a sentence alone reads the same
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(spec.vocabulary_size, config.embedding_dim, mask_zero=True, name="embedding")(tokens)
    x = stack(x, config, return_sequences=False, bidirectional=config.bidirectional)
    x = head(x, config)
    return keras.Model(tokens, layers.classifier_head(x, spec, config), name="rnn_classifier")
