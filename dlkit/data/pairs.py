"""Sentence pairs for translation: read in their own published format, filtered by length, split by source
sentence, and the tokenizers that turn each side into token ids and back.

- `tatoeba_fra_eng`: the Anki/Tatoeba English-French file of manythings.org (`fra-eng.zip`, or its
  `fra.txt`: `English<TAB>French` per line, later releases add a third column of attribution), the
  Keras seq2seq example's data. Downloaded into the Keras cache when it is nowhere local.
- `tsv`: any file of `source<TAB>target[<TAB>...]` lines (data.path); the columns are recipe keys.

The corpus repeats a source sentence with several translations. The test and validation splits are drawn
by distinct source sentence (a fixed draw for test: the same sentences for every seed), so no source is on
both sides of a split, and a test source's translations are its references.

A side's tokenizer is a Hugging Face `tokenizers` model, learnt from the training pairs alone and kept
with the run (`artifacts/source_tokenizer.json`, `artifacts/target_tokenizer.json`): `word` (words and
punctuation marks) or `bpe` (byte-pair subwords). Both keep the spaces as a mark on the token after them,
so decoding gives back the text as written (NFKC-normalized), which is what BLEU is computed on.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkit.data import sources as tables
from dlkit.data.sources import local_dirs
from dlkit.data.text import Vocabulary, lines_of, rows_of
from dlkit.errors import DataError, first_line
from dlkit.files import not_utf8

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"  # ids 0, 1, 2, 3
SPECIAL = [PAD, UNK, START, END]
# words (with the space before them) and punctuation marks, each its own token
WORDS = r"▁?[^▁\p{P}]+|▁?\p{P}|▁"

TATOEBA_URL = "http://www.manythings.org/anki/fra-eng.zip"
FOLDER = "tatoeba_fra_eng"
CACHE = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


class Codec(Vocabulary):
    """A side's text to token ids and back, exactly: `text(ids(s)) == s` for NFKC-normalized `s` whose
    tokens are all known. `level` is `word` or `bpe`."""

    @classmethod
    def learn(cls, texts, level: str, lowercase: bool, max_tokens: int | None, min_frequency: int,
              split: str = "") -> Codec:
        from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if level == "bpe":
            tok = Tokenizer(models.BPE(unk_token=UNK))
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            trainer = trainers.BpeTrainer(special_tokens=SPECIAL, vocab_size=max_tokens or 8000,
                                          min_frequency=min_frequency, show_progress=False)
        else:
            tok = Tokenizer(models.WordLevel(unk_token=UNK))
            tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                         pre_tokenizers.Split(Regex(WORDS), "isolated")])
            trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL, vocab_size=max_tokens or 10**9,
                                                min_frequency=min_frequency, show_progress=False)
        steps = [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
        tok.normalizer = normalizers.Sequence(steps + ([normalizers.Lowercase()] if lowercase else []))
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(texts, trainer)
        return cls(tok, level)

    def normalize(self, text: str) -> str:
        """The text as the tokenizer reads it (and as decoding writes it back)."""
        return self.tokenizer.normalizer.normalize_str(text)

    def text(self, ids) -> str:
        """Token ids back to text, up to the end token; padding and the start token are skipped."""
        keep = []
        for i in ids:
            i = int(i)
            if i == 3:
                break
            if i not in (0, 2):
                keep.append(i)
        return self.tokenizer.decode(keep, skip_special_tokens=False) if keep else ""

    def framed(self, texts: list[str], length: int, start: bool = True) -> np.ndarray:
        """(N, length) ids: [START] (when `start`), the tokens, [END], then padding (0)."""
        return framed_rows(self.ids_batch(texts), length, start)


def framed_rows(id_lists: list[list[int]], length: int, start: bool = True) -> np.ndarray:
    """(N, length) int32: [START] (when `start`), each list of ids, [END], then padding (0)."""
    return rows_of([([2] if start else []) + ids + [3] for ids in id_lists], length)


@dataclass
class Pairs:
    sources: list[str]
    targets: list[str]
    origin: str


def read_pairs(raw: str, origin: str, source_column: int, target_column: int) -> Pairs:
    """`a<TAB>b[<TAB>...]` lines; a line short of the columns is an error naming it."""
    sources, targets = [], []
    need = max(source_column, target_column) + 1
    for n, line in enumerate(lines_of(raw), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < need:
            raise DataError(f"{origin}:{n}: expected at least {need} tab-separated columns (source column "
                            f"{source_column}, target column {target_column}, counted from 0), found {len(cols)}: "
                            f"{line[:80]!r}")
        s, t = cols[source_column].strip(), cols[target_column].strip()
        if s and t:
            sources.append(s)
            targets.append(t)
    if not sources:
        raise DataError(f"{origin} has no sentence pairs")
    return Pairs(sources, targets, origin)


def _decode(data: bytes, origin: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(not_utf8(origin, data)) from None


def read_file(path: Path, source_column: int, target_column: int) -> Pairs:
    """A pairs file, or a zip holding one (`fra.txt` in manythings.org's zips: the first .txt not `_about`)."""
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith(".txt") and not Path(n).name.startswith("_")]
                if not names:
                    raise DataError(f"{path} holds no pairs file (a .txt other than _about.txt)")
                return read_pairs(_decode(z.read(names[0]), f"{path}:{names[0]}"), f"{path}:{names[0]}",
                                  source_column, target_column)
        return read_pairs(_decode(path.read_bytes(), str(path)), str(path), source_column, target_column)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _candidates(data_dir: str | None) -> list[Path]:
    return local_dirs(data_dir, FOLDER) + [CACHE / FOLDER]


def find(cfg) -> Path | None:
    """The pairs file a data section names, checked by name only (validate reads nothing)."""
    if cfg.dataset == "tsv":
        path = Path(cfg.path).expanduser()
        return path if path.is_file() else None
    for folder in _candidates(cfg.dir):
        for name in ("fra.txt", "fra-eng.zip"):
            if (folder / name).is_file():
                return folder / name
    return None


def locate(cfg) -> Path:
    """The pairs file, downloading manythings.org's zip into the Keras cache when it is nowhere local."""
    found = find(cfg)
    if found:
        return found
    if cfg.dataset == "tsv":
        raise DataError(f"data.path: no file at {cfg.path}; it should hold `source<TAB>target` lines")
    failure = "downloading is off (data.download: false)"
    if cfg.download and os.environ.get("DLKIT_OFFLINE") != "1":
        try:
            from dlkit.data.sources import fetch

            return fetch("fra-eng.zip", TATOEBA_URL, CACHE.parent, f"datasets/{FOLDER}")
        except Exception as e:  # noqa: BLE001 - any network failure means the same to the user
            failure = f"the download failed ({type(e).__name__}: {first_line(e)})"
    looked = "\n".join(f"    {d}" for d in _candidates(cfg.dir))
    raise DataError(f"dataset 'tatoeba_fra_eng' not found, and {failure}.\n  Looked in:\n{looked}\n"
                    "  Put fra-eng.zip (or its fra.txt) in one of those folders, or point data.dir (or "
                    "$DLKIT_DATA_DIR) at the folder that holds it.")


def where(cfg) -> str:
    if tables.plugin(cfg.dataset):
        return tables.locate(cfg)
    found = find(cfg)
    if found:
        return str(found)
    if cfg.dataset == "tsv" or not cfg.download or os.environ.get("DLKIT_OFFLINE") == "1":
        return str(locate(cfg))  # raises, saying where it looked
    return f"download from {TATOEBA_URL}"


def load(cfg) -> Pairs:
    if entry := tables.plugin(cfg.dataset):
        return plugin_pairs(entry, cfg)
    return read_file(locate(cfg), cfg.source_column, cfg.target_column)


def plugin_pairs(entry, cfg) -> Pairs:
    """A plugin's dataset read as sentence pairs: x_train the source sentences, y_train their translations
    (the test and validation splits are drawn by distinct source, from these); pairs with an empty side are
    left out, as a file's are."""
    found, origin, where = entry.gathered(cfg, ("x_test", "y_test", "class_names", "target_names"),
                                          "a translation model (its test split is drawn by distinct source "
                                          "sentence, data.test_split)")
    if found.get("y_train") is None:
        raise DataError(f"{where}: its load gave back no y_train; a translation model learns from pairs: x_train "
                        "the source sentences, y_train their translations")
    src, tgt = (tables.strings(found[k], k, where) for k in ("x_train", "y_train"))
    if len(src) != len(tgt):
        raise DataError(f"{where}: {len(src)} source sentences in x_train but {len(tgt)} translations in y_train")
    kept = [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]
    if not kept:
        raise DataError(f"{where} has no sentence pairs")
    return Pairs([s for s, _ in kept], [t for _, t in kept], origin)


def words(text: str) -> int:
    return len(text.split())


def grouped_split(sources: list[str], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (held, rest) with `share` of the distinct source sentences held out, every pair of a held
    source with them: no source sentence is on both sides."""
    distinct = sorted(set(sources))
    order = np.random.default_rng(seed).permutation(len(distinct))
    held = {distinct[i] for i in order[: int(round(len(distinct) * share))]}
    mask = np.array([s in held for s in sources], bool)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def references(sources: list[str], targets: list[str]) -> tuple[list[str], list[list[str]]]:
    """The distinct sources (in first-seen order) and each one's translations."""
    refs: dict[str, list[str]] = {}
    for s, t in zip(sources, targets):
        refs.setdefault(s, []).append(t)
    return list(refs), list(refs.values())
