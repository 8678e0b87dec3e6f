"""Text classification (many-to-one): a sentence to one of K classes (rnn_classifier).

The data is labelled sentences: the words (or characters) of each become token ids through the run's
vocabulary, learnt from the training sentences alone, cut or padded at the end to `max_length`. Datasets
without a test set (the UCI sentiment sentences) keep a fixed share aside as one: the same sentences for
every run, whatever its seed. Measures are the classifier's (accuracy, per-class precision and recall,
the confusion matrix); `dlkit predict RUN --text ...` classifies raw text.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dlkit.data import pipeline, sources
from dlkit.data.spec import MODALITIES, DataSpec
from dlkit.errors import DataError, UsageError
from dlkit.recipe.schema import MAX_BATCH, DataCommon
from dlkit.tasks.base import PredictRequest
from dlkit.tasks.classification import Classification, weighed

SENTENCE_DATASETS = {"sentiment": "UCI Sentiment Labelled Sentences (Amazon, IMDB, Yelp): 3,000, positive/negative",
                     "tsv": "a file of `sentence<TAB>label` lines (data.path)",
                     "tfds:NAME": "a tensorflow-datasets dataset of (text, label) pairs, e.g. tfds:imdb_reviews"}


def _sentence_dataset(v: str) -> str:
    return v if v.startswith("tfds:") and len(v) > 5 else sources.named(v, ["sentiment", "tsv"])


class VocabularyKeys(DataCommon):
    """How text becomes token ids (text tasks' data sections)."""

    level: Literal["word", "char"] = "word"
    lowercase: bool = True
    max_tokens: int | None = Field(20000, ge=3)  # vocabulary size cap, [PAD] and [UNK] included
    min_frequency: int = Field(1, ge=1)  # rarer tokens read as [UNK]

    not_used = {
        "augment": "augmentation is for images; text is read as it is",
        "scale": "token ids index an embedding and are never scaled",
        "image_size": "text has no image size (data.max_length cuts sentences, data.sequence_length windows)",
        "label_column": "labels come from the dataset's own format (`sentence<TAB>label` for tsv)",
    }


class SentenceData(VocabularyKeys):
    path_datasets = {"tsv": "the file of sentence<TAB>label lines"}
    plugged = True  # a plugin's dataset: its x_train sentences and y_train classes

    dataset: str = "sentiment"
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    max_length: int = Field(64, ge=1)  # tokens per sentence: longer ones are cut, shorter padded at the end
    # datasets without a test set keep this share aside (a fixed draw: the same sentences for every seed)
    test_split: float = Field(0.2, ge=0, lt=1)
    header: bool = False  # tsv: the file's first line names its columns, and is skipped

    _dataset = field_validator("dataset")(_sentence_dataset)

    def cross_problems(self):
        return super().cross_problems() + (
            [f"header: true is read from a tsv file only; dataset {self.dataset!r} has none (remove it)"]
            if self.header and self.dataset != "tsv" else [])


def vocabulary(run):
    from dlkit.data.text import Vocabulary

    return Vocabulary.from_artifact(run.read_artifact("vocabulary"))


def unknown_note(unknown: int, tokens: int) -> str | None:
    """The note on a text's tokens the run's vocabulary lacks (id 1, [UNK]), if any: evaluate --data's, and a
    language model's split's."""
    if not unknown:
        return None
    return (f"{unknown:,} of the {tokens:,} tokens ({unknown / tokens:.1%}) are not in the run's vocabulary, and were "
            "read as [UNK]")


def same_vocabulary(run, data) -> None:
    """`dlkit evaluate` reads the data again, its vocabulary learnt again from the same training text: it
    must be the run's own (a different tokenizers release could split text otherwise)."""
    if data.artifacts["vocabulary"] != run.read_artifact("vocabulary"):
        raise DataError(f"{run.root}: the vocabulary learnt again from the training text differs from the run's "
                        "artifacts/vocabulary.json (the data files or the tokenizers release changed); the run's "
                        "model reads token ids of its own vocabulary only")


class TextClassification(Classification):
    name = "text_classification"
    summary = "sentences to one of K classes; accuracy, per-class precision and recall; `predict --text`"
    Data = SentenceData

    def locate(self, recipe) -> str:
        from dlkit.data import text

        return text.where(recipe.data)

    def load_data(self, recipe):
        from dlkit.data import text

        cfg = recipe.data
        found = text.sentences(cfg)
        pool = len(found.texts)  # the training sentences (a test share is drawn from them where there is no test set)
        if found.test_texts is not None:  # the dataset's own test set: appended, then indexed like the rest
            found.texts = found.texts + found.test_texts
            found.labels = np.concatenate([found.labels, found.test_labels])
            test, rest = np.arange(pool, len(found.texts)), np.arange(pool)
        else:
            # a fixed draw for the test set (seed 0), the recipe's seed for validation: runs of several seeds
            # are measured on the same sentences
            order = np.random.default_rng(0).permutation(len(found.texts))
            n_test = int(round(len(found.texts) * cfg.test_split))
            test, rest = order[:n_test], np.sort(order[n_test:])
        if cfg.limit:
            rest = rest[: cfg.limit]
        if cfg.test_limit:
            test = test[: cfg.test_limit]
        rest = rest[np.random.default_rng(recipe.seed).permutation(len(rest))]
        n_val = int(round(len(rest) * cfg.validation_split))
        train, val = rest[: len(rest) - n_val], rest[len(rest) - n_val:]
        if len(train) == 0:
            raise DataError(f"{found.origin}: no training sentences are left after the test and validation splits")
        texts, y = found.texts, found.labels
        vocab = text.Vocabulary.learn([texts[i] for i in train], cfg.level, cfg.lowercase, cfg.max_tokens,
                                      cfg.min_frequency)

        def ids(index):
            return (vocab.padded([texts[i] for i in index], cfg.max_length), y[index]) if len(index) else (None, None)

        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = ids(train), ids(val), ids(test)
        splits = pipeline.Splits(x_tr, y_tr, x_va, y_va, x_te, y_te)
        spec = DataSpec(input_shape=(), modality="tokens", num_classes=len(found.class_names),
                        class_names=found.class_names, vocabulary_size=vocab.size)
        data = pipeline.from_splits(splits, spec, cfg, recipe.seed, None, MODALITIES["tokens"], self.examples(recipe),
                                    found.origin, {"vocabulary": vocab.to_artifact()})
        own_test = found.test_texts is not None
        data.notes = pipeline.unread_splits(cfg, test=own_test) + pipeline.none_carved(
            cfg, {**({} if own_test else {"test_split": (pool, len(test))}),
                  "validation_split": (len(rest), len(val))}, "sentences")
        return weighed(recipe, data)

    def evaluate(self, run, recipe, model, data, request):
        if request.data is None:  # --data is read through the run's own vocabulary, the training text not read
            same_vocabulary(run, data())
        return super().evaluate(run, recipe, model, data, request)

    def labelled(self, run, recipe, model, path, classes):
        """evaluate --data: a file of `sentence<TAB>label` lines (the `tsv` dataset's, UCI's), each label a
        class's name or its index (sentiment's 0 and 1), read through the run's vocabulary. A first line whose
        label is no class and on no other line is a header, skipped with a note."""
        from dlkit.data import sources, text

        sources.a_file(path, "a text classifier is measured on a file of `sentence<TAB>label` lines")
        lines, notes = text.labelled_lines(path), []
        index = {c: i for i, c in enumerate(classes)}
        index.update({str(i): i for i in range(len(classes)) if str(i) not in index})  # an index, where no name is one
        first = lines[0][2]
        if first not in index and len(lines) > 1 and sum(label == first for *_, label in lines) == 1:
            notes.append(f"line {lines[0][0]} of {path.name} ({lines[0][1][:40]!r}, label {first!r}) read as a header "
                         "and left out: its label is no class of the run's")
            lines = lines[1:]
        for n, _, label in lines:
            if label not in index:
                shown = f"{', '.join(classes[:20])}{', ...' if len(classes) > 20 else ''}"
                raise DataError(f"{path}:{n}: the label {label!r} is not one of the run's classes ({shown}), by name "
                                f"or index (0 to {len(classes) - 1})")
        vocab = vocabulary(run)
        texts = [t for _, t, _ in lines]
        ids = vocab.ids_batch(texts)
        unknown = unknown_note(sum(i == 1 for row in ids for i in row), sum(map(len, ids)))
        notes += [unknown] if unknown else []
        return text.rows_of(ids, recipe.data.max_length), np.array([index[label] for *_, label in lines]), notes

    def predict(self, run, recipe, model, request: PredictRequest) -> dict:
        if request.inputs:
            raise UsageError("image files are for image classifiers; a text classifier reads --text or --file")
        if request.csv is not None:
            raise UsageError("--csv is for forecasters; a text classifier reads --text or --file")
        if not request.texts:
            raise UsageError("give the text to classify: --text \"...\" (repeatable) or --file FILE (one per line)")
        vocab = vocabulary(run)
        classes = run.read_json(run.manifest)["data_spec"]["class_names"]
        x = vocab.padded(request.texts, recipe.data.max_length)
        probs = np.asarray(model.predict(x, verbose=0, batch_size=256))
        out = []
        for text, p in zip(request.texts, probs):
            out.append({"text": text, "label": classes[int(np.argmax(p))],
                        "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)},
                        "unknown_tokens": int(sum(1 for i in vocab.ids(text) if i == 1))})
        return {"status": "completed", "task": self.name, "run_dir": str(run.root), "predictions": out}
