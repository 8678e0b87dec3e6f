"""Measures computed from predictions and features (numpy; scipy where noted).

Classification: confusion matrix, per-class precision and recall. Any logged value: which way it improves, its best epoch.
Sample quality (generative models, against a reference classifier):
- Fréchet distance between the classifier's penultimate-layer features of generated and real test images
  (FID with the reference classifier's features in place of Inception's);
- classifier score, the Inception-score analogue: exp(E_x KL(p(y|x) || p(y))): 1 when every sample gets the
  same prediction, K for confident predictions spread evenly over K classes;
- class coverage: the share of classes that receive at least 10% of their even share of samples;
- matched accuracy: InfoGAN's categorical code against the predicted class, after the best one-to-one
  matching of codes to classes (Hungarian algorithm).
"""

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


# Words in a logged value's name that say which way it gets better. Keras's mode "auto" knows only its own
# metric objects: it refused `val_acc` (an error after the first epoch), and dlkit's own guess took a
# forecaster's val_mae for a value to maximize. The word that ends last in the name says it (the head of the
# compound: `reconstruction_error`, `reconstruction_accuracy`), the longer where two end together
# (`negative_log_likelihood` against `likelihood`).
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "mape", "perplexity", "crossentropy", "kl", "hinge", "distance",
                   "reconstruction", "nll", "negative_log_likelihood", "bits", "bits_per_dim", "penalty")
HIGHER_IS_BETTER = ("acc", "accuracy", "auc", "precision", "recall", "bleu", "chrf", "psnr", "f1", "score", "iou",
                    "elbo", "likelihood", "diversity")


def improves(name: str, mode: str = "auto") -> str | None:
    """"min" or "max": which way the logged value `name` gets better (`mode` when it is not "auto"), or None
    when its name does not say."""
    if mode != "auto":
        return mode
    low = name.lower()
    found = [(low.rfind(w) + len(w), len(w), way)
             for words, way in ((LOWER_IS_BETTER, "min"), (HIGHER_IS_BETTER, "max")) for w in words if w in low]
    return max(found)[2] if found else None


def best_of(rows: list[dict]) -> dict:
    """The best value of each metric over its epochs, each on its own (they may come from different epochs):
    lowest for losses and errors, highest for accuracies and likelihoods (`improves`). A value whose name does
    not say which way is better (a GAN's `wasserstein`, an RBM's `free_energy_gap`) has no best and is left out;
    before, it was taken at its highest, and a VAE's best `reconstruction` (-log p(x|z)) was its worst."""
    out = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        if key == "epoch" or key.endswith("learning_rate") or improves(key) is None:
            continue
        values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        if values:
            out[key] = min(values) if improves(key) == "min" else max(values)
    return out


# ---------------------------------------------------------------- sample quality


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # a singular product (e.g. collapsed samples) is handled just below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():  # nudge both diagonals, as the FID reference code does
            eps = np.eye(len(sigma1)) * 1e-6
            covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def feature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (rows)."""
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def classifier_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    p_y = probs.mean(axis=0, keepdims=True)
    kl = np.maximum((probs * (np.log(probs + eps) - np.log(p_y + eps))).sum(axis=1), 0.0)  # >= 0 but for rounding
    return float(np.exp(kl.mean()))


def coverage(predicted: np.ndarray, num_classes: int, share: float = 0.1) -> float:
    counts = np.bincount(predicted, minlength=num_classes)
    return float((counts >= share * len(predicted) / num_classes).mean())


def matched_accuracy(codes: np.ndarray, predicted: np.ndarray, num_codes: int, num_classes: int) -> tuple[float, list]:
    """Accuracy after matching each code to a distinct class so that agreements are maximal (Hungarian)."""
    from scipy import optimize

    table = np.zeros((num_codes, num_classes), np.int64)
    np.add.at(table, (codes, predicted), 1)
    rows, cols = optimize.linear_sum_assignment(-table)
    mapping = [-1] * num_codes
    for r, c in zip(rows, cols):
        mapping[r] = int(c)
    return float(table[rows, cols].sum() / len(codes)), mapping
