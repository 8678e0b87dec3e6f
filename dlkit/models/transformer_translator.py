"""Transformer encoder-decoder translation (Vaswani et al. 2017), small, from Keras layers.

The modern reference point beside the recurrent seq2seq models, on the same data and task: token and
learnt position embeddings, `layers` encoder blocks (self-attention over the source, its padding masked,
then a feed-forward block) and as many decoder blocks (causal self-attention, cross-attention to the
encoder's outputs, feed-forward), each sub-block residual with layer normalization after it (the paper's
post-norm), then the logits. Trained with teacher forcing like seq2seq.

`inference(model)` gives the same (encoder, step) pair as seq2seq's, so greedy and beam search run
unchanged. The encoder also projects its outputs into every decoder block's cross-attention keys and values,
once a sentence. The step decodes one position: its state is, per decoder block, a cache of the
self-attention's projected keys and values at the positions written so far, and the position to write. It
embeds the one new token at its position, adds its keys and values to each block's cache and attends from
that one position over the cache up to it: what the teacher-forced model's causal self-attention sees there,
since a block's input at an earlier position never depends on later tokens. So a step costs one position's
work, not the whole prefix rerun; every call has the same shapes, so it compiles once. The attention maps are
the last decoder block's cross-attention, averaged over heads.
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

        def call(self, ids, at=None):
            """ids (B, T) at positions 0..T-1, or ids (B, 1) at the positions `at` (B, 1)."""
            from keras import ops

            where = self.positions(at) if at is not None else self.positions(ops.arange(ops.shape(ids)[1]))[None]
            return self.tokens(ids) * (self.width ** 0.5) + where

        def compute_output_shape(self, ids_shape, at_shape=None):
            return (*ids_shape, self.width)

        def get_config(self):
            return {**super().get_config(), "vocabulary": self.vocabulary, "length": self.length, "width": self.width}

    return {"PadMask": PadMask, "Positions": Positions}


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


def _decoder_block(b, y, self_attention, cross_attention):
    """A decoder block around its two attentions, y -> attention output (and, for the cross-attention, its
    scores or None): teacher-forced the layers' own calls, in the step the cached ones."""
    y = b["norm1"](y + b["drop"](self_attention(y)))
    attended, scores = cross_attention(y)
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
        b = _block(config, f"decoder_{i}", True)

        def cross(y, b=b, scores=i == config.layers):  # the last block's scores are the attention maps
            out = b["cross"](y, encoded, attention_mask=cross_mask, return_attention_scores=scores)
            return out if scores else (out, None)

        y, _ = _decoder_block(b, y, lambda y, b=b: b["self"](y, y, use_causal_mask=True), cross)
    logits = keras.layers.Dense(spec.vocabulary_size, name="logits", dtype="float32")(y)  # float32 when mixed
    return keras.Model([source, target], logits, name="transformer_translator")


def step_weights(config: Config) -> bool:
    return False  # the step gives no attention weights; attention_model reads them, teacher-forced


def attention_model(model, config: Config):
    """inputs -> the last decoder block's cross-attention scores (B, heads, T, S)."""
    import keras

    return keras.Model(model.inputs, model.get_layer(f"decoder_{config.layers}_cross").output[1])


def inference(model, config: Config):
    """(encoder, step) as seq2seq.inference gives them. encoder: source -> [memory (B, S, 2 * layers, heads,
    key_dim): each decoder block's cross-attention keys and values of the encoded source; a (B, T, heads,
    key_dim) cache of zeros for each block's self-attention keys and values; position (B, 1) zeros]. step:
    [token (B, 1), memory, source, caches..., position] -> [logits (B, 1, V), the caches with this position's
    keys and values written, the next position]."""
    import keras

    from dlkit import keras_private

    blocks = _blocks(model, config)
    source = model.inputs[0]
    t_len = int(model.inputs[1].shape[1])
    encoded = model.get_layer("encoded").output

    class CrossMemory(keras.layers.Layer):
        """encoded -> the search's start: the memory, the empty caches and position 0."""

        def __init__(self):
            super().__init__(name="cross_memory")
            self.attentions = [b["cross"] for b in blocks]

        def call(self, encoded):
            from keras import ops

            projected = []
            for layer in self.attentions:
                _, key, value = keras_private.attention_projections(layer)
                projected += [key(encoded), value(encoded)]
            memory = ops.stack(projected, axis=2)
            rows, heads = ops.shape(encoded)[0], config.heads
            caches = ops.zeros((rows, t_len, heads, config.d_model // heads), memory.dtype)
            return [memory] + [caches] * (2 * len(blocks)) + [ops.zeros((rows, 1), "int32")]

    class DecoderStep(keras.layers.Layer):
        """One position through the decoder blocks, each attending over its cache and the memory."""

        def __init__(self):
            super().__init__(name="decoder_step")
            self.embedding, self.blocks = model.get_layer("target_embedding"), blocks
            self.logits = model.get_layer("logits")

        def call(self, token, memory, cross_mask, caches, position):
            from keras import ops

            self_mask = ops.expand_dims(ops.less_equal(ops.arange(t_len)[None], position), 1)  # (B, 1, T)
            at = ops.one_hot(ops.reshape(position, (-1,)), t_len, dtype=memory.dtype)[:, :, None, None]
            y = self.embedding(token, at=position)
            written = []
            for i, b in enumerate(self.blocks):
                query, key, value = keras_private.attention_projections(b["self"])
                keys = caches[2 * i] * (1 - at) + at * key(y)  # y: this block's input at the position
                values = caches[2 * i + 1] * (1 - at) + at * value(y)
                written += [keys, values]
                cross_query = keras_private.attention_projections(b["cross"])[0]

                def cached(y, b=b, q=query, k=keys, v=values):
                    return keras_private.attend(b["self"], q(y), k, v, self_mask)

                def cross(y, b=b, q=cross_query, i=i):
                    k, v = memory[:, :, 2 * i], memory[:, :, 2 * i + 1]
                    return keras_private.attend(b["cross"], q(y), k, v, cross_mask), None

                y, _ = _decoder_block(b, y, cached, cross)
            return [self.logits(y), *written, position + 1]

    encoder = keras.Model(source, CrossMemory()(encoded), name="encoder")
    memory_shape = tuple(int(d) for d in encoder.outputs[0].shape[1:])
    cache_shape = tuple(int(d) for d in encoder.outputs[1].shape[1:])
    token = keras.Input(shape=(1,), dtype="int32", name="token")
    memory = keras.Input(shape=memory_shape, name="memory")
    src_in = keras.Input(shape=(int(source.shape[1]),), dtype="int32", name="source_ids")
    caches = [keras.Input(shape=cache_shape, name=f"cache_{k}") for k in range(2 * len(blocks))]
    position = keras.Input(shape=(1,), dtype="int32", name="position")
    cross_mask = register()["PadMask"](name="step_cross_mask")(token, src_in)
    outputs = DecoderStep()(token, memory, cross_mask, caches, position)
    step = keras.Model([token, memory, src_in, *caches, position], outputs, name="decoder_step")
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
