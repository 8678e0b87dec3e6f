"""Measuring a GAN's samples against a reference dlkit classifier run.

- Fréchet distance between the classifier's penultimate-layer features of generated and real test images
  (FID with the reference classifier's features in place of Inception's).
- Classifier score, the Inception-score analogue: exp(E_x KL(p(y|x) || p(y))). 1 when every sample gets
  the same prediction; K for confident predictions spread evenly over K classes.
- Class coverage: the share of classes that receive at least 10% of their even share of samples.
- Conditional models: how often samples are classified as the label asked for. InfoGAN: the same for the
  categorical code, after the best one-to-one matching of codes to classes (Hungarian algorithm).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg, optimize


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
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
    """Accuracy after matching each code to a distinct class so that agreements are maximal."""
    table = np.zeros((num_codes, num_classes), np.int64)
    np.add.at(table, (codes, predicted), 1)
    rows, cols = optimize.linear_sum_assignment(-table)
    mapping = [-1] * num_codes
    for r, c in zip(rows, cols):
        mapping[r] = int(c)
    return float(table[rows, cols].sum() / len(codes)), mapping


def penultimate(classifier):
    """A model giving the reference classifier's features (the input of its output layer) and probabilities."""
    import keras

    head = classifier.get_layer("predictions") if any(l.name == "predictions" for l in classifier.layers) \
        else classifier.layers[-1]
    return keras.Model(classifier.inputs, [head.input, classifier.outputs[0]])


def evaluate_gan(run, samples: int = 10000, reference=None, seed: int = 0) -> dict:
    """What `dlkit evaluate GAN_RUN [--reference CLASSIFIER_RUN]` reports."""
    import keras

    from dlkit import images as I
    from dlkit.data import sources
    from dlkit.data.pipeline import _channels
    from dlkit.errors import UsageError
    from dlkit.generate import load_gan, run_scale
    from dlkit.recipe import load_recipe
    from dlkit.training.samples import latent_inputs

    gan, scale = load_gan(run)
    recipe = load_recipe(run.recipe)
    rng = np.random.default_rng(seed)
    k = gan.num_classes or gan.categorical_codes
    asked = rng.integers(0, k, samples) if k else None
    extra = {("labels" if gan.num_classes else "categorical"): asked} if k else {}
    fake = I.to_uint8(gan.generator.predict(latent_inputs(gan, samples, rng, **extra), verbose=0, batch_size=500), scale)
    arrays = sources.load(recipe.data)
    real = _channels(arrays.x_test if arrays.x_test is not None else arrays.x_train)[:samples]
    out = {"status": "completed", "run_dir": str(run.root), "kind": "gan", "samples": int(samples),
           "real_examples": int(len(real))}
    a, b = scale
    f_div, r_div = I.mean_pairwise_distance(fake * a + b), I.mean_pairwise_distance(real * a + b)
    out["diversity"] = {"generated": f_div, "real": r_div, "ratio": f_div / max(r_div, 1e-12)}
    grid_path = run.root / "eval_samples.png"
    I.save_png(I.grid(fake[:64], 8), grid_path)
    out["grid"] = str(grid_path)
    if reference is None:
        return out

    ref_model_path = reference.model
    if not ref_model_path.is_file():
        raise UsageError(f"reference run {reference.root} has no model.keras")
    ra, rb = run_scale(reference)
    classifier = keras.saving.load_model(ref_model_path)
    if tuple(classifier.input_shape[1:]) != tuple(fake.shape[1:]):
        raise UsageError(f"the reference classifier takes {classifier.input_shape[1:]} images; this GAN makes "
                         f"{fake.shape[1:]}")
    features = penultimate(classifier)
    f_feat, f_prob = features.predict(fake.astype(np.float32) * ra + rb, verbose=0, batch_size=500)
    r_feat, r_prob = features.predict(real.astype(np.float32) * ra + rb, verbose=0, batch_size=500)
    predicted = f_prob.argmax(1)
    num_classes = f_prob.shape[1]
    out.update({
        "reference_run": str(reference.root),
        "frechet_distance": feature_distance(f_feat, r_feat),
        "classifier_score": classifier_score(f_prob),
        "real_classifier_score": classifier_score(r_prob),
        "class_coverage": coverage(predicted, num_classes),
        "class_histogram": np.bincount(predicted, minlength=num_classes).tolist(),
    })
    if gan.num_classes:
        out["label_accuracy"] = float((predicted == asked).mean())
    elif gan.categorical_codes:
        acc, mapping = matched_accuracy(asked, predicted, gan.categorical_codes, num_classes)
        out["code_accuracy"], out["code_to_class"] = acc, mapping
    return out
