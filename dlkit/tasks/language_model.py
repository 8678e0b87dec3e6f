"""Language modelling (many-to-many): each token of a text predicts the next (rnn_lm).

The text is one stream of token ids (characters or words, by the run's vocabulary, learnt from the tokens
the model trains on: not from the validation and test parts, nor from what `limit` leaves out; a token seen
only there reads as [UNK]; `data.vocabulary_from: text` learns it from the dataset's whole training text, as
runs before the key did), cut into windows of `sequence_length` + 1 tokens that overlap by one: the model
reads a window's first `sequence_length` tokens and is scored on its last `sequence_length`. Validation and
test text is the dataset's own files where it has them (the Penn Treebank's), else the end of the text (the
last `validation_split`, then `test_split`, of it; of its first `limit` tokens where a limit cuts the text),
never a random draw.

A stateful model reads the text as `batch_size` parallel streams, each window continuing the one before
it in the same row, so its state carries across batches (truncated backpropagation through time); the
state is reset at each epoch's start and around every evaluation.

Measures come from summed token losses (padding, id 0, never counts): nats per token, bits per token
(per character for a character model) and perplexity, exp(nats per token). `dlkit generate RUN --prompt
... --length N --temperature T --seed S` samples text, the same text for the same seed.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dlkit import plots, ui
from dlkit.data import pipeline, sources
from dlkit.data.spec import MODALITIES, DataSpec
from dlkit.errors import DataError, MissingSplit, Problem, UsageError
from dlkit.files import write_atomic
from dlkit.recipe.schema import MAX_BATCH, FitTrain
from dlkit.tasks.base import Callbacks, EvalRequest, FitContext, GenerateRequest, Headline, data_path, evaluation
from dlkit.tasks.fit import FitTask
from dlkit.tasks.text_classification import VocabularyKeys, same_vocabulary, unknown_note, vocabulary

STREAM_DATASETS = {"tinyshakespeare": "Tiny Shakespeare, 1.1M characters", "ptb": "Penn Treebank (Mikolov's LM files)",
                   "text": "a plain UTF-8 text file (data.path)"}


class StreamData(VocabularyKeys):
    path_datasets = {"text": "a UTF-8 text file"}
    plugged = True  # a plugin's dataset: its x_train text

    dataset: str = "tinyshakespeare"
    level: Literal["word", "char"] = "char"
    lowercase: bool = False
    max_tokens: int | None = Field(None, ge=3)  # None: every token of the training text
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    sequence_length: int = Field(100, ge=1)  # tokens per window: the steps backpropagation goes back through
    # without the dataset's own files: the end of the text, validation then test
    test_split: float = Field(0.0, ge=0, lt=1)
    limit: int | None = Field(None, ge=1)  # keep only the first N tokens of the text (quick runs)
    # what `limit` cuts: the text, before its validation and test parts are carved from its end (they shrink
    # with it), or the training part alone, after they are (validated on as much as a run without a limit)
    limit_cuts: Literal["text", "training_text"] = "text"
    test_limit: int | None = Field(None, ge=1)  # and of the test text
    validation_limit: int | None = Field(None, ge=1)  # and of the validation text (the Penn Treebank's own file)
    # the text the vocabulary is learnt from: the tokens the model trains on, or the dataset's whole training
    # text (the validation and test parts carved from it and what `limit` leaves out included)
    vocabulary_from: Literal["training", "text"] = "training"

    _dataset = field_validator("dataset")(lambda v: sources.named(v, list(STREAM_DATASETS)))


class LanguageModelTrain(FitTrain):
    metrics: list[str] = Field(default_factory=list)  # the loss is the measure: nats per token


def shifted(x, y):
    """A window of T + 1 tokens: the first T are read, the last T predicted."""
    return x[:, :-1], x[:, 1:]


def windows(ids: np.ndarray, length: int, rows: int | None) -> np.ndarray:
    """(N, length + 1) windows of a stream, overlapping by one token. With `rows`, the stream is laid out as
    that many parallel streams and window k = w * rows + r is the w-th window of row r, so that consecutive
    batches of `rows` continue each other (a stateful model's order)."""
    if rows is None:
        n = (len(ids) - 1) // length
        index = np.arange(n)[:, None] * length + np.arange(length + 1)[None, :]
        return ids[index]
    row_len = (len(ids) - 1) // rows
    per_row = row_len // length
    if per_row == 0:
        return ids[:0].reshape(0, length + 1)
    starts = (np.arange(per_row)[:, None] * length + (np.arange(rows) * row_len)[None, :]).reshape(-1)
    return ids[starts[:, None] + np.arange(length + 1)[None, :]]


def token_measures(logits: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, tokens counted) of targets under logits; padding (id 0) is
    not counted."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
    picked = np.take_along_axis(logits, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    keep = targets != 0
    return float(((log_z - picked) * keep).sum()), int(keep.sum())


def summary(nats: float, tokens: int, level: str) -> dict:
    per = nats / max(tokens, 1)
    unit = "char" if level == "char" else "token"
    return {"tokens": tokens, f"nats_per_{unit}": per, f"bits_per_{unit}": per / math.log(2),
            "perplexity": math.exp(min(per, 700))}


def short_note(cfg, name: str, tokens: int, own: bool, need: int) -> str:
    """The note for a validation or test text too short for one batch of windows (a stateful model's needs
    batch_size streams of a window each): the run has no such split, and what would give it one."""
    share, limit = ("test_split", "test_limit") if name == "test" else ("validation_split", "validation_limit")
    raise_ = [] if own else [f"data.{share}"] + (["data.limit"] if cfg.limit and cfg.limit_cuts == "text" else [])
    raise_ += [f"data.{limit}"] if getattr(cfg, limit) else []
    lower = "data.sequence_length" + (" or data.batch_size" if need > cfg.sequence_length + 1 else "")
    return (f"the {name} text{' file' if own else ''}, {tokens:,} tokens, is shorter than one batch of windows "
            f"({need:,} tokens), so this run has no {name} split ("
            + (f"raise {' or '.join(raise_)}, or " if raise_ else "") + f"lower {lower})")


def unknown_share_note(name: str, stream: np.ndarray | None, whole: bool, cut_by_limit: bool) -> str | None:
    """The note for a validation or test text 1% or more of whose tokens the vocabulary lacks (read as [UNK]):
    learnt from the tokens the model trains on (or the whole training text, `whole`), it lacks the words seen
    only in that part, and more of them where `limit` cut tokens off."""
    share = float(np.mean(stream == 1)) if stream is not None and len(stream) else 0.0
    if share < 0.01:
        return None
    return (f"{share:.1%} of the {name} text's tokens are not in the vocabulary, learnt from "
            + ("the whole training text" if whole else "the tokens the model trains on") + ", and read as [UNK]"
            + ("; a larger data.limit trains on more of them" if cut_by_limit and not whole else ""))


class ResetStates:
    """A stateful model's state goes back to zero at each epoch's start and around every evaluation; not at
    the start of an epoch a run resumes inside (`resumed_inside`): the checkpoint's state carries on."""

    @staticmethod
    def make(resumed_inside: bool = False):
        import keras

        class Reset(keras.callbacks.Callback):
            keep_next = resumed_inside

            def _reset(self):
                for layer in self.model.layers:
                    if isinstance(layer, keras.layers.RNN) and layer.stateful:
                        layer.reset_state()

            def on_epoch_begin(self, epoch, logs=None):
                if self.keep_next:
                    self.keep_next = False
                    return
                self._reset()

            def on_test_begin(self, logs=None):
                self._reset()

            def on_test_end(self, logs=None):
                self._reset()

        return Reset()


class LanguageModel(FitTask):
    name = "language_model"
    options = frozenset({"prompt", "length", "temperature", "data"})  # generate's, and evaluate's --data
    headlines = (Headline("nats_per_char", "nats/char", "min"), Headline("perplexity", "perplexity", "min"))
    summary = "each token predicts the next (characters or words); bits per character, perplexity; sampled text"
    Data = StreamData
    Train = LanguageModelTrain
    default_loss = "sparse_categorical_crossentropy"
    token_loss = True

    def examples(self, recipe):
        return shifted

    def check(self, recipe) -> list[Problem]:
        if recipe.model.stateful and recipe.data.shuffle_buffer > 0:
            return [Problem("data.shuffle_buffer", "a stateful model reads each stream in order, window after "
                            "window; shuffling would hand it windows that do not continue each other",
                            hint="set data.shuffle_buffer: 0")]
        return []

    def locate(self, recipe) -> str:
        from dlkit.data import text

        return text.where(recipe.data)

    def load_data(self, recipe):
        from dlkit.data import text

        cfg = recipe.data
        found = text.stream(cfg)
        whole = cfg.vocabulary_from == "text"
        vocab = text.Vocabulary.learn([found.train], cfg.level, cfg.lowercase, cfg.max_tokens if whole else None,
                                      cfg.min_frequency if whole else 1, found.word_split)
        ids = np.asarray(vocab.ids(found.train), np.int32)
        val = None if found.val is None else np.asarray(vocab.ids(found.val), np.int32)
        test = None if found.test is None else np.asarray(vocab.ids(found.test), np.int32)
        cut_by_limit = False  # whether data.limit cut tokens off: then the advice is to raise it
        if cfg.limit and cfg.limit_cuts == "text":
            cut_by_limit, ids = cfg.limit < len(ids), ids[: cfg.limit]
        if test is None and cfg.test_split > 0:
            cut = len(ids) - int(round(len(ids) * cfg.test_split))
            ids, test = ids[:cut], ids[cut:]
        if val is None and cfg.validation_split > 0:
            cut = len(ids) - int(round(len(ids) * cfg.validation_split))
            ids, val = ids[:cut], ids[cut:]
        if cfg.limit and cfg.limit_cuts == "training_text":
            cut_by_limit, ids = cfg.limit < len(ids), ids[: cfg.limit]
        if cfg.test_limit and test is not None:
            test = test[: cfg.test_limit]
        if cfg.validation_limit and val is not None:
            val = val[: cfg.validation_limit]
        if not whole:  # the first vocabulary held every token of the text: the one kept counts the training part
            vocab, new_id = vocab.kept(ids, cfg.max_tokens, cfg.min_frequency)
            ids, val, test = (None if stream is None else new_id[stream] for stream in (ids, val, test))
        rows = cfg.batch_size if recipe.model.stateful else None
        T = cfg.sequence_length
        need = T + 1 if rows is None else rows * T + 1  # tokens one batch of windows takes

        def cut(stream):
            if stream is None:
                return None, None
            w = windows(stream, T, rows)
            return (w, np.zeros(len(w), np.int32)) if len(w) else (None, None)

        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = cut(ids), cut(val), cut(test)
        if x_tr is None:
            raise DataError(f"{found.origin}: the training text has {len(ids)} tokens, fewer than one batch of "
                            f"windows needs ({need}); "
                            + (f"raise data.limit ({cfg.limit}), or " if cut_by_limit else "")
                            + "lower data.sequence_length or data.batch_size")
        splits = pipeline.Splits(x_tr, y_tr, x_va, y_va, x_te, y_te)
        spec = DataSpec(input_shape=(), modality="token_windows", vocabulary_size=vocab.size,
                        batch_size=rows or 0)
        data = pipeline.from_splits(splits, spec, cfg, recipe.seed, None, MODALITIES["token_windows"],
                                    self.examples(recipe), found.origin, {"vocabulary": vocab.to_artifact()})
        data.spec.input_shape = (T,)
        data.context = {"train": ids, "val": val, "test": test}  # the streams, for a stateful model's measures
        data.notes = pipeline.unread_splits(cfg, test=found.test is not None, val=found.val is not None) + [
            short_note(cfg, name, len(stream), own, need)
            for name, stream, windowed, own in (("validation", val, x_va, found.val is not None),
                                                ("test", test, x_te, found.test is not None))
            if stream is not None and windowed is None]
        data.notes += [note for note in (unknown_share_note(name, stream, whole, cut_by_limit)
                                         for name, stream in (("validation", val), ("test", test))) if note]
        return data

    def callbacks(self, ctx: FitContext) -> Callbacks:
        base = super().callbacks(ctx)
        reset = [ResetStates.make(resumed_inside=ctx.skip > 0)] if ctx.recipe.model.stateful else []
        return Callbacks(before=reset, after=base.after)

    def finish(self, ctx: FitContext, callbacks) -> dict:
        out = {}
        for split in ("val", "test"):
            if getattr(ctx.data, split) is not None:
                out[split] = measure(ctx.model, ctx.data, split, ctx.recipe)
        s = ctx.data.splits
        windows_ = next(x for x in (s.x_val, s.x_test, s.x_train) if x is not None)[:64]
        norms = gradient_by_step(ctx.model, ctx.recipe, ctx.data.spec, windows_)
        plots.gradient_by_step({ctx.recipe.model.cell: norms}, ctx.run.image("gradient_by_step.png"),
                               f"{ctx.recipe.name}: gradient of the last step's loss")
        out["gradient_by_step"] = [float(v) for v in norms]
        return out

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.data is not None:  # read through the run's own vocabulary, the training text not read
            return evaluation(self, run, request, lambda: self._measure_on(run, recipe, model, request.data))
        same_vocabulary(run, data())
        return evaluation(self, run, request, lambda: measure(model, data(), request.split, recipe))

    def _measure_on(self, run, recipe, model, path) -> dict:
        """evaluate --data: a text file of one's own (UTF-8, as dataset `text` reads it; a Penn Treebank
        model's with each line end read as `<eos>`, as its corpus is) measured as a split is, through the
        run's vocabulary. The note says what share of its tokens the vocabulary lacks."""
        from dlkit.data import sources, text

        path = data_path(path)
        sources.a_file(path, "a language model is measured on a text file")
        raw = text.read_text(path)
        if recipe.data.dataset == "ptb":
            raw = text.ptb_stream(raw)
        vocab = vocabulary(run)
        ids = np.asarray(vocab.ids(raw), np.int32)
        T = recipe.data.sequence_length
        if len(ids) < T + 1:
            raise DataError(f"{path}: {len(ids)} tokens, fewer than one window of the model's reading "
                            f"(data.sequence_length {T} + 1)")
        spec = _spec_of(model, vocab)
        out = measured(model, recipe, spec, windows(ids, T, None), ids, path.name)
        unknown = unknown_note(int(np.sum(ids == 1)), len(ids))
        return {**out, "note": unknown} if unknown else out

    def report(self, result: dict) -> list:
        from dlkit.tasks.generative import measures, present, split_heading

        keys = [k for k in result if k.startswith(("nats_per", "bits_per"))] + ["perplexity"]
        return measures(result, split_heading(result, "tokens"), present(result, keys))

    def exported(self, run, recipe, model):
        """A stateful model as its stateless twin (the same weights, any batch size): each call reads its
        windows from a zero state. The stateful model itself would carry its state from call to call, so an
        answer would hang on the calls before it, and only at the batch size it trained with."""
        if not recipe.model.stateful:
            return super().exported(run, recipe, model)
        from dlkit.models import ARCHITECTURES

        twin = ARCHITECTURES[recipe.model.arch].build(recipe.model, _spec_of(model, vocabulary(run)), stateful=False)
        copy_weights(model, twin)
        return twin, f"the {recipe.model.arch} model, stateless (each call reads its windows from a zero state)"

    def generate(self, run, recipe, model, data, request: GenerateRequest) -> dict:
        if request.label is not None or request.code is not None or request.interpolate or request.inputs:
            raise UsageError("a language model samples text: --prompt, --length, --temperature, --seed")
        if not (math.isfinite(request.temperature) and request.temperature >= 0):  # nan and inf were a traceback
            raise UsageError(f"--temperature must be 0 (the likeliest token) or a finite number above it, received "
                             f"{request.temperature}")
        vocab = vocabulary(run)
        unknown_prompt(vocab, request.prompt or "", recipe.data)
        out = None
        if request.out is not None:  # checked writable before the sampling, not after
            from dlkit.tasks.generative import output_path

            out = output_path(request.out, request.force)
        text = sample(model, recipe, vocab, request.prompt or "", request.length, request.temperature, request.seed)
        if out is not None:
            write_atomic(out, text)  # an interrupt leaves the old file or none, never part of the text
        return {"status": "completed", "run_dir": str(run.root), "text": text, "out": out and str(out),
                "prompt": request.prompt or "", "length": request.length, "temperature": request.temperature,
                "seed": request.seed}


def measure(model, data, split: str, recipe) -> dict:
    """Summed token losses over a split. A stateful model reads the split's whole text as one stream, its
    state carried from window to window, so every token but the first is counted with all the text before
    it (the Penn Treebank's standard measure); a stateless one reads each window from a zero state."""
    s = data.splits
    x = {"test": s.x_test, "val": s.x_val, "train": s.x_train}[split]
    if x is None:
        raise MissingSplit.of(split, s)
    stream = data.context[split]
    out = measured(model, recipe, data.spec, x, stream, f"the {split}")
    unknown = unknown_note(int(np.sum(stream == 1)), len(stream))  # words the training part lacks: one class
    return {**out, "note": unknown} if unknown else out


def measured(model, recipe, spec, x: np.ndarray, stream: np.ndarray, what: str) -> dict:
    """measure's figures for a text: its windows `x` (a stateless model's) or its token ids `stream` (a
    stateful model's), `what` naming it in the progress line ("the test": "reading the test text ...")."""
    nats, tokens = 0.0, 0
    if recipe.model.stateful:
        from dlkit.models import ARCHITECTURES

        twin = ARCHITECTURES[recipe.model.arch].build(recipe.model, spec, stateful=True, batch_size=1)
        copy_weights(model, twin)
        T = recipe.data.sequence_length
        with ui.work(f"reading {what} text as one stream", len(stream) - 1, " tokens") as advance:
            for i in range(0, len(stream) - 1, T):
                chunk = stream[i:i + T + 1][None]
                n, t = token_measures(np.asarray(twin.predict_on_batch(chunk[:, :-1])), chunk[:, 1:])
                nats, tokens = nats + n, tokens + t
                advance(chunk.shape[1] - 1)
        return summary(nats, tokens, recipe.data.level)
    with ui.work(f"reading {what} windows", len(x), " windows") as advance:
        for i in range(0, len(x), 256):
            xb = x[i:i + 256]
            n, t = token_measures(np.asarray(model.predict_on_batch(xb[:, :-1])), xb[:, 1:])
            nats, tokens = nats + n, tokens + t
            advance(len(xb))
    return summary(nats, tokens, recipe.data.level)


def gradient_by_step(model, recipe, spec, windows_: np.ndarray) -> np.ndarray:
    """|| d loss(last step) / d input embedding at step t || for t = 1..T, averaged over windows: how much
    the last prediction's gradient still reaches each earlier step (a SimpleRNN's fades fast; an LSTM's
    carries further back). Computed on a stateless twin of the model, from a zero state."""
    import keras

    from dlkit import backend
    from dlkit.models import ARCHITECTURES

    twin = ARCHITECTURES[recipe.model.arch].build(recipe.model, spec, stateful=False)
    copy_weights(model, twin)
    embedding = twin.get_layer("embedding")
    after = keras.Model(embedding.output, twin.output)
    x, targets = windows_[:, :-1], windows_[:, -1]
    e = np.asarray(embedding(x))

    def last_loss(v):
        logits = after(v, training=False)[:, -1]
        return keras.ops.sum(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))

    g = backend.gradient(last_loss, e)
    return np.sqrt((g**2).sum(axis=-1)).mean(axis=0)


def unknown_prompt(vocab, prompt: str, cfg) -> None:
    """A prompt the model cannot read is exit 2 naming the pieces: with every token of the training text in
    the vocabulary, the model never saw `[UNK]`. A capped vocabulary (`max_tokens`, `min_frequency`) read
    the training text's rare tokens as `[UNK]`, so the prompt's are read so too."""
    unknown = vocab.unknown(prompt)
    if not unknown or cfg.max_tokens is not None or cfg.min_frequency > 1:
        return
    kind = "character" if vocab.level == "char" else "word"
    shown = ", ".join(repr(u) for u in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
    hint = ("; its training text writes rare words as '<unk>'" if vocab.tokenizer.token_to_id("<unk>") is not None
            else "")
    raise UsageError(f"--prompt has {kind}s this model's vocabulary does not hold: {shown}. It knows the "
                     f"{vocab.size - 2} {kind}s of its training text{hint}; write the prompt in those")


def sample(model, recipe, vocab, prompt: str, length: int, temperature: float, seed: int) -> str:
    """`length` tokens after the prompt, one at a time from a one-stream twin of the model (the same
    weights, stateful, batch 1); numpy draws them, so a seed gives the same text on any backend."""
    from dlkit.models import ARCHITECTURES

    twin = ARCHITECTURES[recipe.model.arch].build(recipe.model, _spec_of(model, vocab), stateful=True, batch_size=1)
    copy_weights(model, twin)
    rng = np.random.default_rng(seed)
    ids = [i for i in vocab.ids(prompt)] or [int(rng.integers(2, vocab.size))]
    out = list(ids)
    logits = np.asarray(twin.predict_on_batch(np.asarray([ids], np.int32)))[0, -1]
    with ui.work("sampling", length, " tokens") as advance:
        for _ in range(length):
            logits = logits.astype(np.float64)
            logits[:2] = -np.inf  # never [PAD] or [UNK]
            if temperature == 0:
                nxt = int(np.argmax(logits))
            else:
                p = np.exp((logits - logits.max()) / temperature)  # shifted first: 1e-320 made inf - inf
                nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(nxt)
            logits = np.asarray(twin.predict_on_batch(np.asarray([[nxt]], np.int32)))[0, -1]
            advance()
    return vocab.text(out)


def copy_weights(source, twin) -> None:
    """A twin (another batch size, stateful or not) takes the source's weights; recurrent state, whose shape
    is the batch's, stays the twin's own."""
    weights = [v for v in source.weights if v.name != "rnn_state"]
    mine = [v for v in twin.weights if v.name != "rnn_state"]
    assert [v.shape for v in weights] == [v.shape for v in mine], "the twin has other weights than the model"
    for a, b in zip(mine, weights):
        a.assign(np.array(b))  # a copy: on JAX the twin's predict donates its buffers, which must not be ours


def _spec_of(model, vocab):
    return DataSpec(input_shape=(None,), modality="token_windows", vocabulary_size=vocab.size)
