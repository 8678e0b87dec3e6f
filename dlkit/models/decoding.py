"""Decoding a sequence-to-sequence model: greedy and beam search, batched, over a step of fixed shapes.

The search is written once in numpy over a `step(tokens (R,), states) -> (logits (R, V), states, weights)`
function, so it is tested on toy distributions as well as on models. `Stepper` adapts a model's encoder
and one-step decoder (dlkit.models.seq2seq.inference): every call has the same shapes (R rows, the source's
padded length), the last chunk of sources padded with empty rows, so the step compiles once on JAX and
TensorFlow, however many sentences are decoded.

Beam search keeps `width` hypotheses per source, ranked by summed log-probability; a hypothesis that wrote
the end token is kept as it is (later steps add nothing to it). The survivors are ranked at the end by
score / lp(length), GNMT's length penalty lp = ((5 + length) / 6) ** alpha (alpha = `length_penalty`, 0
for raw scores). Width 1 is greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

START, END = 2, 3


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of the tokens a translation may write: never padding (0) or [START] (2)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    out = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    out[..., [0, START]] = -np.inf
    return out


def top(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, largest first (ties: the lower index first). A partial
    partition then a sort of the k: a full sort of rows x (width x vocabulary) scores every step would cost
    more than the model's step itself."""
    if k >= values.shape[1]:
        return np.argsort(-values, axis=1, kind="stable")
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    keys = np.take_along_axis(values, part, 1)
    order = np.lexsort((part, -keys), axis=1)  # by value, largest first; equal values by index
    return np.take_along_axis(part, order, 1)


@dataclass
class Decoded:
    tokens: np.ndarray  # (N, L) ids, END and then 0 after a finished sentence
    scores: np.ndarray  # (N,) summed log-probabilities of the chosen tokens (END included)
    weights: np.ndarray | None = None  # (N, L, S) attention weights per written token (greedy, with attention)


def greedy(step: Callable, states: list, rows: int, max_length: int) -> Decoded:
    """The likeliest token at every step, for `rows` sentences at once."""
    tokens = np.zeros((rows, max_length), np.int32)
    scores = np.zeros(rows)
    done = np.zeros(rows, bool)
    prev = np.full(rows, START, np.int32)
    maps = []
    for t in range(max_length):
        logits, states, weights = step(prev, states)
        logp = log_softmax(np.array(logits, np.float64))
        pick = logp.argmax(-1).astype(np.int32)
        pick[done] = 0
        scores += np.where(done, 0.0, logp[np.arange(rows), pick])
        tokens[:, t] = pick
        if weights is not None:
            maps.append(np.where(done[:, None], 0.0, weights))
        done |= pick == END
        prev = pick
        if done.all():
            break
    return Decoded(tokens, scores, np.stack(maps, 1) if maps else None)


def beam(step: Callable, states: list, rows: int, width: int, max_length: int,
         length_penalty: float = 0.0) -> Decoded:
    """Beam search for `rows` sentences, `width` hypotheses each; `step` is called on rows * width rows
    (hypothesis k of sentence i on row i * width + k) and `states` are given for `rows` rows."""
    k = width
    states = [np.repeat(np.asarray(s), k, axis=0) for s in states]
    score = np.full((rows, k), -np.inf)
    score[:, 0] = 0.0  # one live hypothesis to start: the others would repeat it
    tokens = np.zeros((rows, k, max_length), np.int32)
    done = np.zeros((rows, k), bool)
    length = np.zeros((rows, k), np.int32)
    prev = np.full(rows * k, START, np.int32)
    for t in range(max_length):
        logits, states, _ = step(prev, states)
        logp = log_softmax(np.array(logits, np.float64)).reshape(rows, k, -1)
        v = logp.shape[-1]
        # a finished hypothesis continues with padding at no cost, so it keeps its place and score
        logp = np.where(done[..., None], -np.inf, logp)
        logp[..., 0] = np.where(done, 0.0, -np.inf)
        total = (score[..., None] + logp).reshape(rows, k * v)
        best = top(total, k)
        origin, token = best // v, (best % v).astype(np.int32)
        score = np.take_along_axis(total, best, 1)
        tokens = np.take_along_axis(tokens, origin[..., None], 1)
        tokens[:, :, t] = token
        was_done = np.take_along_axis(done, origin, 1)
        length = np.take_along_axis(length, origin, 1) + ~was_done
        done = was_done | (token == END)
        rows_idx = (np.arange(rows)[:, None] * k + origin).reshape(-1)
        states = [np.asarray(s)[rows_idx] for s in states]
        prev = token.reshape(-1)
        if done[np.isfinite(score)].all():
            break
    penalty = ((5.0 + length) / 6.0) ** length_penalty
    ranked = np.where(np.isfinite(score), score / penalty, -np.inf)
    pick = ranked.argmax(1)
    return Decoded(tokens[np.arange(rows), pick], score[np.arange(rows), pick])


def greedy_model(encoder, step_model, max_length: int, name: str = "greedy_translator"):
    """Greedy decoding as one Keras model: source ids (B, S) -> target ids (B, max_length), the tokens
    `greedy` writes (END, then padding after it). The loop is a `keras.ops.fori_loop` over the step model, so
    `model.export` writes the whole search into the graph (a SavedModel's while loop), not only the step."""
    import keras
    from keras import ops

    vocabulary = int(step_model.outputs[0].shape[-1])
    n_states = len(encoder.outputs) - 1
    banned = np.zeros(vocabulary, bool)
    banned[[0, START]] = True  # never padding or [START], as log_softmax

    class GreedySearch(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(name="greedy_search", **kwargs)
            self.encoder, self.step_model = encoder, step_model

        def call(self, source):
            # copies, without the padding mask Keras attaches to the encoder's outputs: the step reads the source
            # ids for its masking, as it does in the search (which calls it on arrays)
            out = [ops.copy(o) for o in self.encoder(source)]
            encoded, states = out[0], out[1:]
            rows = ops.shape(source)[0]
            never = ops.convert_to_tensor(banned)[None]
            positions = ops.arange(vocabulary)[None]

            def body(t, carry):
                tokens, prev, done, states = carry
                outs = self.step_model([prev, encoded, source, *states])
                logits = ops.where(never, float("-inf"), ops.cast(outs[0][:, 0], "float32"))
                # the first index of the largest logit (argmax's choice), and the step's column, in ops that
                # every converter takes (TensorFlow's argmax goes through a bitcast ONNX lacks; one_hot of a
                # scalar, rank 0, is not converted)
                best = ops.max(logits, axis=-1, keepdims=True)
                first = ops.min(ops.where(ops.equal(logits, best), positions, vocabulary), axis=-1)
                pick = ops.where(done, 0, ops.cast(first, "int32"))
                column = ops.cast(ops.equal(ops.arange(max_length), t), "int32")
                tokens = tokens + column[None] * pick[:, None]
                return tokens, pick[:, None], ops.logical_or(done, ops.equal(pick, END)), list(outs[1:1 + n_states])

            start = (ops.zeros((rows, max_length), "int32"), ops.full((rows, 1), START, "int32"),
                     ops.zeros((rows,), "bool"), states)
            return ops.fori_loop(0, max_length, body, start)[0]

    source = keras.Input(shape=tuple(encoder.inputs[0].shape[1:]), dtype="int32", name="source_ids")
    return keras.Model(source, GreedySearch()(source), name=name)


class Stepper:
    """A model's encoder and one-step decoder as the search's `step`, in fixed-shape chunks of `rows`
    sentences (beam search: rows * width decoder rows)."""

    def __init__(self, encoder, step_model, attention: bool, rows: int = 64):
        self.encoder, self.step_model, self.attention, self.rows = encoder, step_model, attention, rows

    def decode(self, sources: np.ndarray, max_length: int, width: int = 1, length_penalty: float = 0.0,
               advance=None) -> Decoded:
        """Every source (N, S) decoded; `width` 1 is greedy (and keeps the attention weights). `advance(n)`, if
        given, hears of the sources decoded."""
        parts = []
        for i in range(0, len(sources), self.rows):
            chunk = sources[i:i + self.rows]
            n = len(chunk)
            padded = np.zeros((self.rows, sources.shape[1]), np.int32)
            padded[:n] = chunk
            padded[n:, 0] = END  # an empty sentence's row, never read back (its source must not be all padding)
            out = self.encoder.predict_on_batch(padded)
            encoded, states = np.asarray(out[0]), [np.asarray(s) for s in out[1:]]
            enc_rep, src_rep = np.repeat(encoded, width, 0), np.repeat(padded, width, 0)

            def step(prev, states, enc_rep=enc_rep, src_rep=src_rep):
                outs = self.step_model.predict_on_batch([prev[:, None], enc_rep, src_rep, *states])
                outs = [np.asarray(o) for o in outs]
                weights = outs.pop()[:, 0] if self.attention else None
                return outs[0][:, 0], outs[1:], weights

            if width == 1:
                d = greedy(step, states, self.rows, max_length)
            else:
                d = beam(step, states, self.rows, width, max_length, length_penalty)
            parts.append(Decoded(d.tokens[:n], d.scores[:n], None if d.weights is None else d.weights[:n]))
            if advance is not None:
                advance(n)
        weights = None if parts[0].weights is None else _stack_maps([p.weights for p in parts])
        return Decoded(np.concatenate([p.tokens for p in parts]), np.concatenate([p.scores for p in parts]), weights)


def _stack_maps(maps: list) -> np.ndarray:
    """Chunks' (n, L_i, S) weights (a chunk stops when its sentences end) padded to one length."""
    longest = max(m.shape[1] for m in maps)
    return np.concatenate([np.pad(m, ((0, 0), (0, longest - m.shape[1]), (0, 0))) for m in maps])
