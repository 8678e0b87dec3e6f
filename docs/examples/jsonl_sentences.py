"""Labelled sentences from a JSON Lines file: one JSON object per line, its text and its label by field name.

Text datasets are often shared this way (Hugging Face's `Dataset.to_json`, annotation tools' exports):
`{"text": "The battery died after a week.", "label": "negative"}`. A recipe names this file with
`plugins: [jsonl_sentences.py]` and reads it with `data: {dataset: jsonl, path: reviews.jsonl}`
(docs/examples/sentiment_jsonl.yaml); its own `data:` keys say which fields hold the text and the label, and
where a test file of its own is. Labels are class indices (0, 1, ...) or names; names are numbered in sorted
order, over the training and test files together.

A sentence classifier (`rnn_classifier`) reads what `load` gives back as sentences: `x_train` the texts,
`y_train` their classes, `x_test` and `y_test` a test split of the data's own, `class_names` the names.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

DATASET = "jsonl"
READS_PATH = "the .jsonl file (one JSON object per line)"
DESCRIPTION = "labelled sentences in a JSON Lines file, a field for the text and one for the label (data.path)"


class Data(BaseModel):
    """This dataset's own `data:` keys."""

    model_config = ConfigDict(extra="forbid")

    text_field: str = "text"
    label_field: str = "label"
    test_path: str | None = None  # a test file of the same fields; null: dlkit draws a test split (test_split)


def read(path: Path, data, limit: int | None) -> tuple[list[str], list]:
    texts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if limit is not None and len(texts) == limit:
                break
            try:
                row = json.loads(line)
                texts.append(str(row[data.text_field]))
                labels.append(row[data.label_field])
            except (ValueError, KeyError, TypeError) as e:  # the file's line, not this one, is what to fix
                raise ValueError(f"{path}:{n}: {type(e).__name__}: {e} (fields: text_field "
                                 f"{data.text_field!r}, label_field {data.label_field!r})") from None
    return texts, labels


def load(data) -> dict:
    train = read(Path(data.path), data, data.limit)
    test = read(Path(data.test_path).expanduser(), data, data.test_limit) if data.test_path else None
    every = train[1] + (test[1] if test else [])
    numbered = all(isinstance(y, int) and not isinstance(y, bool) for y in every)
    names = [str(i) for i in range(max(every, default=0) + 1)] if numbered else sorted({str(y) for y in every})
    index = {name: i for i, name in enumerate(names)}

    def ids(labels):
        return labels if numbered else [index[str(y)] for y in labels]

    out = {"x_train": train[0], "y_train": ids(train[1]), "class_names": names}
    if test:
        out["x_test"], out["y_test"] = test[0], ids(test[1])
    return out
