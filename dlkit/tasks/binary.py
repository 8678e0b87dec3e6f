"""Binary images for the likelihood models (VAE, RBM): training images are binarized afresh at every step
inside the model; the evaluation splits are binarized here, once, with the recipe's seed, so that every
epoch and every evaluation sees the same binary test set."""

from __future__ import annotations

import numpy as np


TEST_DRAW = 102  # the test split's binarization is drawn with the recipe's seed + this


def binarized(x: np.ndarray, seed: int) -> np.ndarray:
    """uint8 images drawn once to 0 or 255, each pixel on with probability intensity / 255."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(x.shape) < x / 255.0, 255, 0).astype(np.uint8)


def own_images(run, recipe, path, as_read: bool = False) -> tuple[np.ndarray, list[str]]:
    """evaluate --data's images for an autoencoder, a VAE or an RBM, uint8, and their names, read as `encode`
    and `predict` read them, in the run's own input shape; a model of binary images reads them binarized once
    with the test split's draw (binarize_evaluation_splits'), so the run's test images given as a file
    measure as the split. `as_read`: as read, not binarized (what a VAE's samples, its decoder's means, are
    measured against)."""
    from dlkit.data.sources import read_images
    from dlkit.errors import UsageError
    from dlkit.tasks.base import data_path

    shape = tuple(run.read_json(run.manifest)["data_spec"]["input_shape"])
    if len(shape) != 3:
        raise UsageError(f"this run's model reads feature vectors of {shape[0]} values, and --data takes images: "
                         "measure a split of its data instead (--split test|val|train)")
    x, names = read_images([data_path(path)], shape)
    return (x if as_read else as_tested(recipe, x)), names


def as_tested(recipe, x: np.ndarray) -> np.ndarray:
    """Images as the model's test split holds them: binarized with the test split's draw for a model of
    binary images, else as they are."""
    binary = getattr(recipe.model, "binarize", None) == "dynamic"  # an autoencoder's model has no such key
    return binarized(x, recipe.seed + TEST_DRAW) if binary else x


def binarize_evaluation_splits(data, seed: int):
    """The data with its validation and test images binarized once (new pipelines over them)."""
    s = data.splits
    s.x_val = None if s.x_val is None else binarized(s.x_val, seed + 101)
    s.x_test = None if s.x_test is None else binarized(s.x_test, seed + TEST_DRAW)
    return data.fresh()
