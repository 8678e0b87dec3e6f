"""Binary images for the likelihood models (VAE, RBM): training images are binarized afresh at every step
inside the model; the evaluation splits are binarized here, once, with the recipe's seed, so that every
epoch and every evaluation sees the same binary test set."""

from __future__ import annotations

import numpy as np


def binarized(x: np.ndarray, seed: int) -> np.ndarray:
    """uint8 images drawn once to 0 or 255, each pixel on with probability intensity / 255."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(x.shape) < x / 255.0, 255, 0).astype(np.uint8)


def binarize_evaluation_splits(data, seed: int):
    """The data with its validation and test images binarized once (new pipelines over them)."""
    s = data.splits
    s.x_val = None if s.x_val is None else binarized(s.x_val, seed + 101)
    s.x_test = None if s.x_test is None else binarized(s.x_test, seed + 102)
    return data.fresh()
