"""Encoder-decoder translation: RNN/LSTM/GRU encoder and decoder, attention none, bahdanau or luong.

The encoder reads the source sentence, a decoder of the same cell writes the target one token at a time,
with or without attention over the encoder's outputs. Trained with teacher forcing (the decoder reads the
true previous token).

`attention: none` is Sutskever/Cho's encoder-decoder: the source reaches the decoder only through the
encoder's final state, one vector for the whole sentence. `bahdanau` scores each source position against
the decoder's output with Bahdanau et al.'s additive score, v·tanh(W_q h_t + W_k h_s); `luong` with Luong
et al.'s multiplicative ones, `score: dot` (h_t·h_s) or `general` (h_t·W h_s). Both attend from the
decoder's current output (Luong's placement) and feed [context; h_t] through a tanh layer to the logits
(Luong's attentional vector), so the three recipes differ only in the attention. Padding in the source gets
weight exactly 0.

`bidirectional: true` reads the source both ways; each decoder layer, then twice the width, starts from the
two directions' final states side by side. The decoder has as many layers as the encoder.

`inference(model)` builds, from a trained (or loaded) model's own layers, the encoder and a one-step
decoder of fixed shapes, which greedy and beam search (dlkit.models.decoding) call step after step.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, model_validator

from dlkit.models.recurrent import CELLS, RecurrentConfig

TASK = "text_translation"


class Config(RecurrentConfig):
    arch: Literal["seq2seq"] = "seq2seq"
    cell: Literal["rnn", "lstm", "gru"] = "gru"
    units: list[int] = Field(default_factory=lambda: [256], min_length=1)  # encoder layers (the decoder's match)
    embedding_dim: int = Field(128, ge=1)
    bidirectional: bool = False  # the encoder reads the source both ways
    attention: Literal["none", "bahdanau", "luong"] = "none"
    score: Literal["dot", "general"] | None = None  # luong's score (default general); bahdanau's is additive
    attention_units: int | None = Field(None, ge=1)  # bahdanau: the additive score's width (default: decoder's)

    @model_validator(mode="after")
    def _score(self):
        if self.score is not None and self.attention != "luong":
            why = "bahdanau's score is additive" if self.attention == "bahdanau" else "it has no attention to score"
            raise ValueError(f"score picks Luong's multiplicative score; attention: {self.attention} does not "
                             f"take it ({why})")
        if self.attention_units is not None and self.attention != "bahdanau":
            raise ValueError("attention_units is the width of Bahdanau's additive score; set attention: bahdanau "
                             "or remove it")
        if self.dense:
            raise ValueError("dense layers do not apply to seq2seq: the decoder's output goes through one tanh "
                             "layer (with the attention's context) to the logits")
        return self

    def scoring(self) -> str | None:
        return {"none": None, "bahdanau": "additive", "luong": self.score or "general"}[self.attention]


@functools.lru_cache(maxsize=None)
def register():
    import keras

    @keras.saving.register_keras_serializable(package="dlkit")
    class SourceAttention(keras.layers.Layer):
        """Attention of queries (B, T, H) over a source's encoded positions (B, S, H'): returns the context
        (B, T, H') and the weights (B, T, S), which sum to 1 over the source's tokens and are 0 on its
        padding (source id 0)."""

        def __init__(self, score: str = "general", units: int | None = None, **kwargs):
            super().__init__(**kwargs)
            self.score, self.units = score, units

        def build(self, query_shape, values_shape=None, source_shape=None):
            h, hv = int(query_shape[-1]), int(values_shape[-1])
            if self.score == "dot" and h != hv:
                raise ValueError(f"Luong's dot score needs the decoder's width ({h}) to equal the encoder's "
                                 f"outputs' ({hv}); use score: general")
            if self.score == "general":
                self.w = self.add_weight(shape=(hv, h), initializer="glorot_uniform", name="w")
            elif self.score == "additive":
                a = self.units or h
                self.w_query = self.add_weight(shape=(h, a), initializer="glorot_uniform", name="w_query")
                self.w_key = self.add_weight(shape=(hv, a), initializer="glorot_uniform", name="w_key")
                self.v = self.add_weight(shape=(a,), initializer="glorot_uniform", name="v")

        def call(self, query, values, source, mask=None):
            """`mask` (Keras's, from the embeddings) is not used: the source's padding is read from its ids."""
            from keras import ops

            if self.score == "additive":
                q = ops.expand_dims(ops.matmul(query, self.w_query), 2)  # (B, T, 1, A)
                k = ops.expand_dims(ops.matmul(values, self.w_key), 1)  # (B, 1, S, A)
                scores = ops.sum(ops.tanh(q + k) * self.v, axis=-1)  # (B, T, S)
            else:
                keys = values if self.score == "dot" else ops.matmul(values, self.w)  # (B, S, H)
                scores = ops.matmul(query, ops.transpose(keys, (0, 2, 1)))
            valid = ops.expand_dims(ops.not_equal(source, 0), 1)  # (B, 1, S)
            scores = ops.where(valid, scores, ops.full_like(scores, -1e9))
            weights = ops.softmax(scores, axis=-1) * ops.cast(valid, scores.dtype)
            return ops.matmul(weights, values), weights

        def compute_mask(self, inputs, previous_mask=None):
            return None

        def compute_output_spec(self, query, values, source, mask=None):
            b, t = query.shape[0], query.shape[1]
            return (keras.KerasTensor((b, t, values.shape[-1]), dtype=query.dtype),
                    keras.KerasTensor((b, t, values.shape[1]), dtype=query.dtype))

        def get_config(self):
            return {**super().get_config(), "score": self.score, "units": self.units}

    return SourceAttention


def _rnn(config: Config, units: int, name: str):
    import keras

    from dlkit.models import layers

    kwargs = dict(units=units, return_sequences=True, return_state=True, recurrent_dropout=config.recurrent_dropout,
                  kernel_initializer=layers.initializer(config.initializer),
                  recurrent_initializer=layers.initializer(config.recurrent_initializer),
                  kernel_regularizer=layers.regularizer(config.regularizer), name=name)
    if config.cell == "gru":
        kwargs["reset_after"] = True
    return getattr(keras.layers, CELLS[config.cell])(**kwargs)


def states_per_layer(cell: str) -> int:
    return 2 if cell == "lstm" else 1


def build(config: Config, spec):
    """The teacher-forced model: (source ids (B, S), target ids read (B, T)) -> logits (B, T, V). `spec`'s
    `input_shape` is (S + T + 1,): a pair's source and framed target side by side (the task splits them)."""
    import keras

    source_length, target_length = spec.target_shape
    source = keras.Input(shape=(source_length,), dtype="int32", name="source")
    target = keras.Input(shape=(target_length,), dtype="int32", name="target_in")
    n_state = states_per_layer(config.cell)

    x = keras.layers.Embedding(spec.source_vocabulary_size, config.embedding_dim, mask_zero=True,
                               name="source_embedding")(source)
    if config.dropout > 0:
        x = keras.layers.Dropout(config.dropout, name="source_dropout")(x)
    states = []
    for i, units in enumerate(config.units, start=1):
        rnn = _rnn(config, units, f"encoder_{i}")
        if config.bidirectional:
            out = keras.layers.Bidirectional(rnn, name=f"bidirectional_encoder_{i}")(x)
            x, fwd, bwd = out[0], out[1:1 + n_state], out[1 + n_state:]
            states.append([keras.layers.Concatenate(name=f"encoder_{i}_state_{k}")([f, b])
                           for k, (f, b) in enumerate(zip(fwd, bwd))])
        else:
            out = rnn(x)
            x, layer_states = out[0], out[1:]
            states.append(list(layer_states))
        if config.dropout > 0 and i < len(config.units):
            x = keras.layers.Dropout(config.dropout, name=f"encoder_{i}_dropout")(x)
    encoded = x

    y = keras.layers.Embedding(spec.vocabulary_size, config.embedding_dim, mask_zero=True,
                               name="target_embedding")(target)
    if config.dropout > 0:
        y = keras.layers.Dropout(config.dropout, name="target_dropout")(y)
    width = 2 if config.bidirectional else 1
    for i, units in enumerate(config.units, start=1):
        y = _rnn(config, units * width, f"decoder_{i}")(y, initial_state=states[i - 1])[0]
        if config.dropout > 0:
            y = keras.layers.Dropout(config.dropout, name=f"decoder_{i}_dropout")(y)
    logits = _head(config, y, encoded, source, spec)[0]
    return keras.Model([source, target], logits, name="seq2seq")


def _head(config: Config, y, encoded, source, spec=None, model=None):
    """[context; h_t] (or h_t alone) -> tanh -> logits, the layers made (spec) or taken from `model`."""
    import keras

    from dlkit.models import layers

    def made(name, factory):
        return model.get_layer(name) if model is not None else factory()

    weights = None
    if config.attention != "none":
        attention = made("attention", lambda: register()(config.scoring(), config.attention_units, name="attention"))
        context, weights = attention(y, encoded, source)
        y = made("attend", lambda: keras.layers.Concatenate(name="attend"))([context, y])
    width = config.units[-1] * (2 if config.bidirectional else 1)
    y = made("attentional", lambda: keras.layers.Dense(width, activation="tanh", name="attentional",
                                                       kernel_initializer=layers.initializer(config.initializer)))(y)
    logits = made("logits", lambda: keras.layers.Dense(spec.vocabulary_size, name="logits", dtype="float32",
                                                       kernel_initializer=layers.initializer(config.initializer)))(y)
    return logits, weights


def step_weights(config: Config) -> bool:
    """Whether the step model gives attention weights (greedy decoding keeps them)."""
    return config.attention != "none"


def attention_model(model, config: Config):
    """inputs -> the attention weights (B, T, S) of every written token over the source."""
    import keras

    return keras.Model(model.inputs, model.get_layer("attention").output[1])


def inference(model, config: Config):
    """(encoder, step) from a teacher-forced model's layers. encoder: source (B, S) -> [encoded (B, S, H'),
    each decoder layer's initial states...]. step: [token (B, 1), encoded, source, states...] -> [logits
    (B, 1, V), new states..., attention weights (B, 1, S) (with attention only)]."""
    import keras

    n_state = states_per_layer(config.cell)
    source = model.inputs[0]
    states = []
    for i in range(1, len(config.units) + 1):
        if config.bidirectional:
            encoded = model.get_layer(f"bidirectional_encoder_{i}").output[0]
            states += [model.get_layer(f"encoder_{i}_state_{k}").output for k in range(n_state)]
        else:
            out = model.get_layer(f"encoder_{i}").output
            encoded, states = out[0], states + list(out[1:])
    encoder = keras.Model(source, [encoded, *states], name="encoder")

    s_len = int(source.shape[1])
    token = keras.Input(shape=(1,), dtype="int32", name="token")
    enc_in = keras.Input(shape=(s_len, int(encoded.shape[-1])), name="encoded")
    src_in = keras.Input(shape=(s_len,), dtype="int32", name="source_ids")
    state_in = [keras.Input(shape=(int(s.shape[-1]),), name=f"state_{k}") for k, s in enumerate(states)]
    y = model.get_layer("target_embedding")(token)
    new_states = []
    for i in range(1, len(config.units) + 1):
        out = model.get_layer(f"decoder_{i}")(y, initial_state=state_in[(i - 1) * n_state: i * n_state])
        y, new_states = out[0], new_states + list(out[1:])
    logits, weights = _head(config, y, enc_in, src_in, model=model)
    outputs = [logits, *new_states] + ([weights] if weights is not None else [])
    step = keras.Model([token, enc_in, src_in, *state_in], outputs, name="decoder_step")
    return encoder, step
