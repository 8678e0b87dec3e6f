"""Classification measures computed from predictions (numpy only)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return m


def per_class(matrix: np.ndarray, class_names: list[str]) -> dict:
    """Precision, recall and support per class; a class never predicted has precision 0."""
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    return {
        name: {"precision": float(p), "recall": float(r), "support": int(s)}
        for name, p, r, s in zip(class_names, precision, recall, actual)
    }


def best_of(rows: list[dict]) -> dict:
    """The best value of each metric over epochs: lowest for losses and errors, highest otherwise."""
    out = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        if key == "epoch" or key.endswith("learning_rate"):
            continue
        values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        if values:
            lower = "loss" in key or "error" in key
            out[key] = min(values) if lower else max(values)
    return out
