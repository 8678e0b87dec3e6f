"""Text translation (sequence to sequence): a source sentence in, its translation out (seq2seq).

The data is sentence pairs (dlkit.data.pairs): filtered by length in words (`data.max_words`, both sides),
the test split drawn by distinct source sentence (a fixed draw: the same sentences for every seed), the
validation split likewise from the rest (the recipe's seed), so no source sentence is on two sides. Each
side's tokenizer is learnt from the training pairs and kept with the run.

The model learns with teacher forcing. Everything measured is decoded output: corpus BLEU and chrF with
sacreBLEU (its signature kept with the figures) against every translation the corpus gives a test source,
BLEU by source length, for beam search (`train.beam_width`, `train.length_penalty`) and greedy decoding of
the same model. A finished run writes attention maps of a few test sentences and BLEU by source length.
`dlkit predict RUN --text "..." [--beam N] [--plot FILE]` translates new text.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dlkit import ui
from dlkit.data import pipeline, sources
from dlkit.data.spec import MODALITIES, DataSpec
from dlkit.errors import SPLITS, DataError, MissingSplit, Problem, UsageError
from dlkit.recipe.schema import MAX_BATCH, DataCommon, FitTrain, changed, unread_keys
from dlkit.tasks.base import MOST_BEAM, EvalRequest, FitContext, Headline, PredictRequest, data_path, evaluation
from dlkit.tasks.fit import FitTask

PAIR_DATASETS = {"tatoeba_fra_eng": "Tatoeba English-French sentence pairs (manythings.org's fra-eng.zip), 142,787",
                 "tsv": "a file of `source<TAB>target` lines (data.path; data.source_column, data.target_column)"}
BUCKETS = ((1, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 15), (16, 20), (21, 10**6))  # source words


class PairsData(DataCommon):
    path_datasets = {"tsv": "the file of source<TAB>target lines"}
    plugged = True  # a plugin's dataset: its x_train sources and y_train translations

    dataset: str = "tatoeba_fra_eng"
    source_column: int = Field(0, ge=0)  # columns of a line, from 0 (fra.txt: English, then French)
    target_column: int = Field(1, ge=0)
    tokenizer: Literal["word", "bpe"] = "word"  # words and punctuation marks, or byte-pair subwords
    lowercase: bool = False  # BLEU is then measured on lowercased text (sacreBLEU's signature says case:lc)
    source_vocabulary: int | None = Field(10000, ge=5)  # tokens kept per side, the 4 special ones included
    target_vocabulary: int | None = Field(10000, ge=5)
    min_frequency: int = Field(1, ge=1)  # rarer words read as [UNK] (word), merges need this many (bpe)
    max_words: int = Field(15, ge=1)  # the length filter: pairs with more words on either side are left out
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    test_split: float = Field(0.1, gt=0, lt=1)  # share of the distinct source sentences held out as test
    test_limit: int | None = Field(None, ge=1)  # measure only the first N test sources (quick runs)

    not_used = {
        "augment": "augmentation is for images; text is read as it is",
        "scale": "token ids index an embedding and are never scaled",
        "image_size": "text has no image size (data.max_words filters pairs by length)",
        "label_column": "pairs have a source_column and a target_column",
    }

    _dataset = field_validator("dataset")(lambda v: sources.named(v, list(PAIR_DATASETS)))

    def cross_problems(self):
        columns = changed(self, ("source_column", "target_column")) if self.dataset not in PAIR_DATASETS else []
        return super().cross_problems() + (
            [f"source_column and target_column are both {self.source_column}; a pair needs two different columns"]
            if self.source_column == self.target_column else []) + unread_keys(
            columns, f"the columns of a file's lines; dataset {self.dataset!r} gives its pairs as x_train and y_train")


class TranslationTrain(FitTrain):
    metrics: list[str] = Field(default_factory=list)  # the measures are BLEU and chrF on decoded text
    beam_width: int = Field(5, ge=1, le=MOST_BEAM)  # the finished run's decoding (1: greedy)
    length_penalty: float = Field(0.6, ge=0)  # GNMT's alpha; 0 ranks beams by summed log-probability
    attention_maps: int = Field(4, ge=0, le=12)  # test sentences drawn in attention_maps.png


def split_pair(source_length: int):
    def examples(x, y):
        """A row is the source's ids, then [START] target [END] padding: the decoder reads the target
        from [START] and predicts it shifted by one (teacher forcing)."""
        return (x[:, :source_length], x[:, source_length:-1]), x[:, source_length + 1:]

    return examples


def codecs(run):
    from dlkit.data.pairs import Codec

    return Codec.from_artifact(run.read_artifact("source_tokenizer")), Codec.from_artifact(run.read_artifact("target_tokenizer"))


class TextTranslation(FitTask):
    name = "text_translation"
    options = frozenset({"beam", "plot", "data"})
    headlines = (Headline("bleu", "BLEU"),)
    summary = "sentence pairs, source to target (seq2seq, attention); BLEU and chrF, beam search; `predict --text`"
    Data = PairsData
    Train = TranslationTrain
    default_loss = "sparse_categorical_crossentropy"
    token_loss = True

    def check(self, recipe) -> list[Problem]:
        default = TranslationTrain.model_fields["attention_maps"].default
        # 0 (draw none) says what such a model does anyway
        if recipe.model.attention == "none" and recipe.train.attention_maps not in (0, default):
            return [Problem("train.attention_maps", "a model without attention (model.attention: none) draws no "
                            "attention maps", hint="remove train.attention_maps, or set model.attention: bahdanau "
                            "or luong")]
        return []

    def locate(self, recipe) -> str:
        from dlkit.data import pairs

        return pairs.where(recipe.data)

    def load_data(self, recipe):
        from dlkit.data import pairs
        from dlkit.data.pairs import framed_rows
        from dlkit.data.text import rows_of

        cfg = recipe.data
        found = pairs.load(cfg)
        keep = [i for i, (s, t) in enumerate(zip(found.sources, found.targets))
                if pairs.words(s) <= cfg.max_words and pairs.words(t) <= cfg.max_words]
        if not keep:
            raise DataError(f"{found.origin}: no pair has at most {cfg.max_words} words on both sides; raise "
                            "data.max_words")
        src = [found.sources[i] for i in keep]
        tgt = [found.targets[i] for i in keep]
        test, rest = pairs.grouped_split(src, cfg.test_split, seed=0)
        rest = rest[np.random.default_rng(0).permutation(len(rest))]  # a fixed order, so `limit` is a fair draw
        if cfg.limit:
            rest = rest[: cfg.limit]
        rest_src = [src[i] for i in rest]
        val_in_rest, train_in_rest = pairs.grouped_split(rest_src, cfg.validation_split, seed=recipe.seed)
        train, val = rest[np.sort(train_in_rest)], rest[np.sort(val_in_rest)]
        if cfg.test_limit:
            firsts = list(dict.fromkeys(src[i] for i in test))[: cfg.test_limit]
            kept = set(firsts)
            test = np.array([i for i in test if src[i] in kept], int)
        if len(train) == 0:
            raise DataError(f"{found.origin}: no training pairs are left after the test and validation splits")
        source = pairs.Codec.learn([src[i] for i in train], cfg.tokenizer, cfg.lowercase, cfg.source_vocabulary,
                                   cfg.min_frequency)
        target = pairs.Codec.learn([tgt[i] for i in train], cfg.tokenizer, cfg.lowercase, cfg.target_vocabulary,
                                   cfg.min_frequency)
        every = np.concatenate([train, val, test])  # each side tokenized once, the three splits in this order
        s_ids = source.ids_batch([src[i] for i in every])
        t_ids = target.ids_batch([tgt[i] for i in every])
        s_len, t_len = max(map(len, s_ids)), max(map(len, t_ids)) + 1  # [START] or [END] added

        def rows(first, count):
            if count == 0:
                return None, None
            x = np.concatenate([rows_of(s_ids[first:first + count], s_len),
                                framed_rows(t_ids[first:first + count], t_len + 1)], axis=1)
            return x, np.zeros(len(x), np.int32)

        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (rows(0, len(train)), rows(len(train), len(val)),
                                                    rows(len(train) + len(val), len(test)))
        splits = pipeline.Splits(x_tr, y_tr, x_va, y_va, x_te, y_te)
        spec = DataSpec(input_shape=(), modality="tokens", vocabulary_size=target.size,
                        source_vocabulary_size=source.size, target_shape=(s_len, t_len))
        data = pipeline.from_splits(splits, spec, cfg, recipe.seed, None, MODALITIES["tokens"], split_pair(s_len),
                                    f"{found.origin} ({len(keep):,} of {len(found.sources):,} pairs with at most "
                                    f"{cfg.max_words} words a side)",
                                    {"source_tokenizer": source.to_artifact(), "target_tokenizer": target.to_artifact()})
        data.spec.target_shape = (s_len, t_len)
        data.context = {split: pairs.references([src[i] for i in index], [tgt[i] for i in index])
                        for split, index in (("train", train), ("val", val), ("test", test)) if len(index)}
        # a share of too few distinct sources rounds to none: said, not a run found without its split at the end
        data.notes = pipeline.none_carved(cfg, {"test_split": (len(set(src)), len(test)),
                                                "validation_split": (len(set(rest_src)), len(val))},
                                          "distinct source sentences")
        return data

    def finish(self, ctx: FitContext, callbacks) -> dict:
        from dlkit import plots
        from dlkit.data.pairs import Codec

        if "test" not in ctx.data.context:
            return {}
        recipe, arts = ctx.recipe, ctx.data.artifacts
        source, target = Codec.from_artifact(arts["source_tokenizer"]), Codec.from_artifact(arts["target_tokenizer"])
        translator = Translator(ctx.model, recipe, source, target)
        out = {"test": measure(translator, ctx.data.context["test"], recipe.train.beam_width,
                               recipe.train.length_penalty)}
        buckets = {k: v["bleu"] for k, v in out["test"]["bleu_by_length"].items()}
        plots.bleu_by_length({recipe.name: buckets}, ctx.run.image("bleu_by_length.png"),
                             f"{recipe.name}: test BLEU by source length")
        if recipe.model.attention != "none" and recipe.train.attention_maps:
            sentences = _map_sentences(ctx.data.context["test"][0], recipe.train.attention_maps)
            plots.attention_maps(translator.maps(sentences, recipe.train.beam_width, recipe.train.length_penalty),
                                 ctx.run.image("attention_maps.png"), f"{recipe.name}: attention")
        return out

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.data is not None:  # read through the run's own tokenizers, the training pairs not read
            return evaluation(self, run, request, lambda: self._measure_on(run, recipe, model, request))
        loaded = data()
        source, target = codecs(run)
        for side in ("source_tokenizer", "target_tokenizer"):
            if loaded.artifacts[side] != run.read_artifact(side):
                raise DataError(f"{run.root}: the {side.replace('_', ' ')} learnt again from the training pairs "
                                f"differs from the run's artifacts/{side}.json (the data file or the tokenizers "
                                "release changed); the model reads token ids of its own tokenizers only")
        if loaded.context.get(request.split) is None:
            raise MissingSplit(request.split, [k for k in SPLITS if loaded.context.get(k) is not None])
        width = recipe.train.beam_width if request.beam is None else request.beam
        translator = Translator(model, recipe, source, target)
        return evaluation(self, run, request, lambda: measure(translator, loaded.context[request.split], width,
                                                              recipe.train.length_penalty))

    def _measure_on(self, run, recipe, model, request: EvalRequest) -> dict:
        """evaluate --data: a file of sentence pairs of one's own (the recipe's columns; a zip of one, as
        manythings.org's), translated and scored as a split is; a source said several times is translated once
        against all its references. Pairs longer than training's `max_words` are kept, and counted in a note."""
        from dlkit.data import pairs, sources

        path = data_path(request.data)
        sources.a_file(path, "a translation model is measured on a file of `source<TAB>target` lines")
        cfg = recipe.data
        found = pairs.read_file(path, cfg.source_column, cfg.target_column)
        source, target = codecs(run)
        width = recipe.train.beam_width if request.beam is None else request.beam
        out = measure(Translator(model, recipe, source, target), pairs.references(found.sources, found.targets),
                      width, recipe.train.length_penalty)
        longer = sum(max(pairs.words(a), pairs.words(b)) > cfg.max_words for a, b in zip(found.sources, found.targets))
        if longer:
            out["note"] = (f"{longer:,} of the {len(found.sources):,} pairs have a side longer than the {cfg.max_words} "
                           "words of any training pair (data.max_words); they are measured too")
        return out

    def report(self, result: dict) -> list:
        from dlkit.tasks.generative import measures, present, split_heading

        lines = [f"  {k} words: BLEU {v['bleu']:.2f} ({v['sentences']} sentences)"
                 for k, v in result["bleu_by_length"].items()]
        return measures(result, split_heading(result, "sentences"),
                        present(result, (("bleu", f"BLEU ({result['decoding']})"), ("chrf", "chrF"),
                                         ("greedy_bleu", "BLEU (greedy)"))),
                        after=["by source length:"] + lines + [f"BLEU signature: {result['signature']['bleu']}"])

    def exported(self, run, recipe, model):
        """Greedy translation as one model (decoding.greedy_model): source token ids in, target token ids out,
        through the run's tokenizers (artifacts/source_tokenizer.json, target_tokenizer.json). The beam
        search (`dlkit predict --beam`) stays outside the graph."""
        from dlkit.models import decoding

        arch = architecture(recipe.model.arch)
        encoder, step = arch.inference(model, recipe.model)
        served = decoding.greedy_model(encoder, step, int(model.inputs[1].shape[1]))
        return served, (f"the {recipe.model.arch} model's greedy translation (source token ids in, target token ids "
                        "out)")

    def predict(self, run, recipe, model, request: PredictRequest) -> dict:
        from dlkit import plots

        if request.inputs:
            raise UsageError("image files are for image classifiers; a translation model reads --text or --file")
        if request.csv is not None:
            raise UsageError("--csv is for forecasters; a translation model reads --text or --file")
        if not request.texts:
            raise UsageError("give the text to translate: --text \"...\" (repeatable) or --file FILE (one per line)")
        source, target = codecs(run)
        width = recipe.train.beam_width if request.beam is None else request.beam
        translator = Translator(model, recipe, source, target)
        with ui.work(f"translating ({'greedy' if width == 1 else f'beam {width}'})", len(request.texts),
                     " sentences") as advance:
            hyps, _ = translator.translate(request.texts, width, recipe.train.length_penalty, advance)
        plot = None
        if request.plot is not None:
            if recipe.model.attention == "none":
                raise UsageError(f"{run.root}: this model has no attention to plot (model.attention: none)")
            from dlkit.tasks.generative import output_path

            plot = output_path(request.plot, request.force, png=True, option="--plot")
            plots.attention_maps(translator.maps(request.texts, width, recipe.train.length_penalty), plot,
                                 f"{recipe.name}: attention")
        too_long = [t for t in request.texts if len(source.ids(t)) > translator.source_length]
        out = [{"text": t, "translation": h, "unknown_tokens": int(sum(1 for i in source.ids(t) if i == 1))}
               for t, h in zip(request.texts, hyps)]
        warnings = [f"{len(too_long)} text(s) longer than the model's {translator.source_length} source tokens were "
                    "cut"] if too_long else []
        return {"status": "completed", "task": self.name, "run_dir": str(run.root), "beam": width,
                "predictions": out, "plot": plot and str(plot), "warnings": warnings}

    def report_prediction(self, result: dict) -> list:
        from rich.table import Table

        table = Table()
        table.add_column("text", overflow="fold")
        table.add_column(f"translation (beam {result['beam']})", overflow="fold")
        for p in result["predictions"]:
            table.add_row(p["text"], p["translation"])
        after = [f"attention map: {result['plot']}"] if result.get("plot") else []
        return [table, *after, *(f"warning: {w}" for w in result.get("warnings", []))]


def _map_sentences(sources: list[str], n: int) -> list[str]:
    """n test sources spread over the lengths, longest last (fixed: the same for every run)."""
    ordered = sorted(sources, key=lambda s: (len(s.split()), s))
    return [ordered[int(round(q * (len(ordered) - 1)))] for q in np.linspace(0.5, 1.0, n)] if ordered else []


class Translator:
    """A model with its tokenizers: text in, text out, by greedy or beam search (dlkit.models.decoding)."""

    def __init__(self, model, recipe, source, target, rows: int = 64):
        from dlkit.models import decoding

        self.model, self.recipe, self.source, self.target = model, recipe, source, target
        self.source_length, self.target_length = (int(model.inputs[0].shape[1]), int(model.inputs[1].shape[1]))
        self.arch = architecture(recipe.model.arch)
        encoder, step = self.arch.inference(model, recipe.model)
        self.stepper = decoding.Stepper(encoder, step, self.arch.step_weights(recipe.model), rows)

    def ids(self, texts: list[str]) -> np.ndarray:
        return self.source.padded(texts, self.source_length)

    def decode(self, texts: list[str], width: int, length_penalty: float, advance=None):
        return self.stepper.decode(self.ids(texts), self.target_length, width, length_penalty, advance)

    def translate(self, texts: list[str], width: int, length_penalty: float,
                  advance=None) -> tuple[list[str], np.ndarray]:
        d = self.decode(texts, width, length_penalty, advance)
        return [self.target.text(row) for row in d.tokens], d.tokens

    def maps(self, texts: list[str], width: int, length_penalty: float) -> list:
        """(source tokens, written tokens, weights) per text: the attention of the decoded translation,
        read back by teacher-forcing it through the model (the weights the search saw on that path)."""
        _, tokens = self.translate(texts, width, length_penalty)
        weights_model = self.arch.attention_model(self.model, self.recipe.model)
        framed = np.zeros((len(texts), self.target_length), np.int32)
        framed[:, 0] = 2
        framed[:, 1:] = tokens[:, : self.target_length - 1]
        src = self.ids(texts)
        w = np.asarray(weights_model.predict_on_batch([src, framed]))
        w = w.mean(axis=1) if w.ndim == 4 else w  # a transformer's heads, averaged
        out = []
        for r, text in enumerate(texts):
            s_tokens = [self.source.tokenizer.id_to_token(int(i)) for i in src[r] if i != 0]
            written = []
            for i in tokens[r]:
                if i == 0:
                    break
                written.append(self.target.tokenizer.id_to_token(int(i)))
                if i == 3:
                    break
            out.append((s_tokens, written, w[r, : len(written), : len(s_tokens)]))
        return out


def architecture(arch: str):
    """The model module of a translation architecture: its `inference`, `step_weights`, `attention_model`."""
    from dlkit.models import seq2seq, transformer_translator

    return {"seq2seq": seq2seq, "transformer_translator": transformer_translator}[arch]


def bucket_of(words: int) -> str:
    for lo, hi in BUCKETS:
        if lo <= words <= hi:
            return f"{lo}-{hi}" if hi < 10**6 else f"{lo}+"
    return "?"


def corpus_scores(hyps: list[str], refs: list[list[str]]) -> dict:
    """sacreBLEU's corpus BLEU and chrF; a source's references are all its translations (streams padded
    with None where a source has fewer)."""
    from sacrebleu.metrics import BLEU, CHRF

    most = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(most)]
    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hyps, streams), chrf.corpus_score(hyps, streams)
    return {"bleu": round(b.score, 4), "chrf": round(c.score, 4), "bleu_detail": str(b),
            "signature": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}}


def measure(translator: Translator, split: tuple[list[str], list[list[str]]], width: int,
            length_penalty: float) -> dict:
    """Decoded translations of a split's distinct sources scored against their references: beam search of
    `width` (and greedy, when the beam is wider), corpus BLEU and chrF, BLEU by source length."""
    from dlkit.data.pairs import words

    sources, refs = split
    refs = [[translator.target.normalize(r) for r in rs] for rs in refs]
    searches = f"beam {width} and greedy" if width > 1 else "greedy"
    with ui.work(f"translating ({searches})", len(sources) * (2 if width > 1 else 1), " sentences") as advance:
        hyps, _ = translator.translate(sources, width, length_penalty, advance)
        greedy = translator.translate(sources, 1, 0.0, advance)[0] if width > 1 else None
    result = {"sentences": len(sources), "references": sum(len(r) for r in refs),
              "decoding": f"beam {width}, length penalty {length_penalty}" if width > 1 else "greedy",
              **corpus_scores(hyps, refs)}
    if greedy is not None:
        result["greedy_bleu"] = corpus_scores(greedy, refs)["bleu"]
    by = {}
    for i, s in enumerate(sources):
        by.setdefault(bucket_of(words(s)), []).append(i)
    order = [f"{lo}-{hi}" if hi < 10**6 else f"{lo}+" for lo, hi in BUCKETS]
    result["bleu_by_length"] = {k: {"sentences": len(by[k]),
                                    "bleu": corpus_scores([hyps[i] for i in by[k]], [refs[i] for i in by[k]])["bleu"]}
                                for k in order if k in by}
    result["examples"] = [{"source": s, "translation": h, "reference": r[0]}
                          for s, h, r in list(zip(sources, hyps, refs))[:10]]
    return result
