"""Transformer encoder-decoder translation (Vaswani et al. 2017), small, from Keras layers.

The modern reference point beside the recurrent seq2seq models, on the same data and task: token and
learnt position embeddings, `layers` encoder blocks (self-attention over the source, its padding masked,
then a feed-forward block) and as many decoder blocks (causal self-attention, cross-attention to the
encoder's outputs, feed-forward), each sub-block residual with layer normalization after it (the paper's
post-norm), then the logits. Trained with teacher forcing like seq2seq.

`inference(model)` gives the same (encoder, step) pair as seq2seq's, so greedy and beam search run
unchanged: the step's state is the target written so far, a (B, T) buffer, and the position to write; it
writes the new token there and reruns the decoder over the whole buffer under the causal mask (no key/value
cache: T is at most a few dozen tokens, and every call has the same shapes, so it compiles once). The
attention maps are the last decoder block's cross-attention, averaged over heads.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, model_validator

from dlkit.models.knobs import ModelBase

TASK = "text_translation"


class Config(ModelBase):
    arch: Literal["transformer_translator"] = "transformer_translator"
    layers: int = Field(2, ge=1, le=24)  # encoder blocks, and as many decoder blocks
    d_model: int = Field(256, ge=8)  # embedding and residual width
    heads: int = Field(4, ge=1)
    ff_units: int = Field(512, ge=1)  # the feed-forward block's hidden width
    dropout: float = Field(0.1, ge=0, lt=1)
    attention: Literal["multihead"] = "multihead"  # for the task's attention maps: it has attention

    @model_validator(mode="after")
    def _heads(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.batch_norm != "none":
            raise ValueError("batch_norm does not apply here: the blocks use layer normalization")
        return self


@functools.lru_cache(maxsize=None)
def register():
    import keras

    @keras.saving.register_keras_serializable(package="dlkit")
    class PadMask(keras.layers.Layer):
        """(B, Tq) query ids, (B, S) key ids -> (B, Tq, S) bool: True where the key is not padding."""

        def call(self, query_ids, key_ids):
            from keras import ops

            valid = ops.expand_dims(ops.not_equal(key_ids, 0), 1)
            return ops.logical_and(valid, ops.ones_like(ops.expand_dims(query_ids, -1), dtype="bool"))

        def compute_output_spec(self, query_ids, key_ids):
            return keras.KerasTensor((query_ids.shape[0], query_ids.shape[1], key_ids.shape[1]), dtype="bool")

    @keras.saving.register_keras_serializable(package="dlkit")
    class Positions(keras.layers.Layer):
        """Token embedding plus a learnt embedding of each position."""

        def __init__(self, vocabulary: int, length: int, width: int, **kwargs):
            super().__init__(**kwargs)
            self.vocabulary, self.length, self.width = vocabulary, length, width
            self.tokens = keras.layers.Embedding(vocabulary, width, name="tokens")
            self.positions = keras.layers.Embedding(length, width, name="positions")

        def build(self, input_shape):
            self.tokens.build(input_shape)
            self.positions.build((None,))

        def call(self, ids):
            from keras import ops

            steps = ops.arange(ops.shape(ids)[1])
            return self.tokens(ids) * (self.width ** 0.5) + self.positions(steps)[None]

        def compute_output_shape(self, input_shape):
            return (*input_shape, self.width)

        def get_config(self):
            return {**super().get_config(), "vocabulary": self.vocabulary, "length": self.length, "width": self.width}

    @keras.saving.register_keras_serializable(package="dlkit")
    class Write(keras.layers.Layer):
        """The step's state update: token (B, 1) written into buffer (B, T) at position (B, 1); returns the
        buffer and the next position."""

        def call(self, token, buffer, position):
            from keras import ops

            at = ops.one_hot(ops.reshape(position, (-1,)), ops.shape(buffer)[1], dtype="int32")
            return buffer * (1 - at) + at * ops.cast(token, "int32"), position + 1

        def compute_output_spec(self, token, buffer, position):
            return (keras.KerasTensor(buffer.shape, dtype="int32"), keras.KerasTensor(position.shape, dtype="int32"))

    @keras.saving.register_keras_serializable(package="dlkit")
    class Blank(keras.layers.Layer):
        """source (B, S) -> a (B, length) buffer and a (B, 1) position, both zeros: the search's start."""

        def __init__(self, length: int, **kwargs):
            super().__init__(**kwargs)
            self.length = length

        def call(self, source):
            from keras import ops

            rows = ops.shape(source)[0]
            return ops.zeros((rows, self.length), "int32"), ops.zeros((rows, 1), "int32")

        def compute_output_spec(self, source):
            return (keras.KerasTensor((source.shape[0], self.length), dtype="int32"),
                    keras.KerasTensor((source.shape[0], 1), dtype="int32"))

        def get_config(self):
            return {**super().get_config(), "length": self.length}

    @keras.saving.register_keras_serializable(package="dlkit")
    class Read(keras.layers.Layer):
        """(B, T, D) at position (B, 1) -> (B, 1, D)."""

        def call(self, x, position):
            from keras import ops

            at = ops.one_hot(ops.reshape(position, (-1,)), ops.shape(x)[1], dtype=x.dtype)
            return ops.expand_dims(ops.einsum("bt,btd->bd", at, x), 1)

        def compute_output_shape(self, x_shape, position_shape):
            return (x_shape[0], 1, x_shape[2])

    return {"PadMask": PadMask, "Positions": Positions, "Write": Write, "Read": Read, "Blank": Blank}


def _block(config: Config, name: str, decoder: bool):
    """The layers of one block, made once and called by the training model and the step alike."""
    import keras

    from dlkit.models import layers as dl_layers

    key = config.d_model // config.heads
    init = dl_layers.initializer(config.initializer)
    block = {
        "self": keras.layers.MultiHeadAttention(config.heads, key, dropout=config.dropout, name=f"{name}_self",
                                                kernel_initializer=init),
        "ff1": keras.layers.Dense(config.ff_units, activation="relu", name=f"{name}_ff1", kernel_initializer=init),
        "ff2": keras.layers.Dense(config.d_model, name=f"{name}_ff2", kernel_initializer=init),
        "norm1": keras.layers.LayerNormalization(name=f"{name}_norm1"),
        "norm2": keras.layers.LayerNormalization(name=f"{name}_norm2"),
        "drop": keras.layers.Dropout(config.dropout, name=f"{name}_dropout"),
    }
    if decoder:
        block["cross"] = keras.layers.MultiHeadAttention(config.heads, key, dropout=config.dropout,
                                                         name=f"{name}_cross", kernel_initializer=init)
        block["norm3"] = keras.layers.LayerNormalization(name=f"{name}_norm3")
    return block


def _encoder_block(b, x, mask):
    x = b["norm1"](x + b["drop"](b["self"](x, x, attention_mask=mask)))
    return b["norm2"](x + b["drop"](b["ff2"](b["ff1"](x))))


def _decoder_block(b, y, encoded, cross_mask, want_scores=False):
    y = b["norm1"](y + b["drop"](b["self"](y, y, use_causal_mask=True)))
    if want_scores:
        attended, scores = b["cross"](y, encoded, attention_mask=cross_mask, return_attention_scores=True)
    else:
        attended, scores = b["cross"](y, encoded, attention_mask=cross_mask), None
    y = b["norm2"](y + b["drop"](attended))
    return b["norm3"](y + b["drop"](b["ff2"](b["ff1"](y)))), scores


def build(config: Config, spec):
    """The teacher-forced model: (source ids (B, S), target ids read (B, T)) -> logits (B, T, V)."""
    import keras

    custom = register()
    s_len, t_len = spec.target_shape
    source = keras.Input(shape=(s_len,), dtype="int32", name="source")
    target = keras.Input(shape=(t_len,), dtype="int32", name="target_in")
    src_mask = custom["PadMask"](name="source_mask")(source, source)
    cross_mask = custom["PadMask"](name="cross_mask")(target, source)

    x = custom["Positions"](spec.source_vocabulary_size, s_len, config.d_model, name="source_embedding")(source)
    x = keras.layers.Dropout(config.dropout, name="source_dropout")(x)
    for i in range(1, config.layers + 1):
        x = _encoder_block(_block(config, f"encoder_{i}", False), x, src_mask)
    encoded = keras.layers.Identity(name="encoded")(x)

    y = custom["Positions"](spec.vocabulary_size, t_len, config.d_model, name="target_embedding")(target)
    y = keras.layers.Dropout(config.dropout, name="target_dropout")(y)
    for i in range(1, config.layers + 1):
        y, _ = _decoder_block(_block(config, f"decoder_{i}", True), y, encoded, cross_mask, want_scores=i == config.layers)
    logits = keras.layers.Dense(spec.vocabulary_size, name="logits")(y)
    return keras.Model([source, target], logits, name="transformer_translator")


def step_weights(config: Config) -> bool:
    return False  # the step gives no attention weights; attention_model reads them, teacher-forced


def attention_model(model, config: Config):
    """inputs -> the last decoder block's cross-attention scores (B, heads, T, S)."""
    import keras

    return keras.Model(model.inputs, model.get_layer(f"decoder_{config.layers}_cross").output[1])


def inference(model, config: Config):
    """(encoder, step) as seq2seq.inference gives them. encoder: source -> [encoded, buffer (B, T) of zeros,
    position (B, 1) zeros]. step: [token (B, 1), encoded, source, buffer, position] -> [logits (B, 1, V), the
    buffer with the token written at the position, the next position]."""
    import keras

    custom = register()
    source = model.inputs[0]
    t_len = int(model.inputs[1].shape[1])
    encoded = model.get_layer("encoded").output
    buffer0, position0 = custom["Blank"](t_len, name="blank")(source)
    encoder = keras.Model(source, [encoded, buffer0, position0], name="encoder")

    s_len, width = int(source.shape[1]), int(encoded.shape[-1])
    token = keras.Input(shape=(1,), dtype="int32", name="token")
    enc_in = keras.Input(shape=(s_len, width), name="encoded")
    src_in = keras.Input(shape=(s_len,), dtype="int32", name="source_ids")
    buffer = keras.Input(shape=(t_len,), dtype="int32", name="buffer")
    position = keras.Input(shape=(1,), dtype="int32", name="position")
    written, following = custom["Write"](name="write")(token, buffer, position)
    cross_mask = custom["PadMask"](name="step_cross_mask")(written, src_in)
    y = model.get_layer("target_embedding")(written)
    for b in _blocks(model, config):
        y, _ = _decoder_block(b, y, enc_in, cross_mask)
    logits = model.get_layer("logits")(custom["Read"](name="read")(y, position))
    step = keras.Model([token, enc_in, src_in, buffer, position], [logits, written, following], name="decoder_step")
    return encoder, step


def _blocks(model, config: Config) -> list[dict]:
    """The decoder blocks' layers, taken from a built model."""
    names = ("self", "cross", "ff1", "ff2", "norm1", "norm2", "norm3", "dropout")
    out = []
    for i in range(1, config.layers + 1):
        b = {n: model.get_layer(f"decoder_{i}_{n}") for n in names}
        b["drop"] = b.pop("dropout")
        out.append(b)
    return out
