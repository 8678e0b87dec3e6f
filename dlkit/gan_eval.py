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
    from dlkit import images as I
    from dlkit.data import sources
    from dlkit.data.pipeline import with_channel_axis
    from dlkit.errors import UsageError
    from dlkit.generate import load_gan
    from dlkit.recipe import load_recipe
    from dlkit.training.samples import latent_inputs

    gan, scale = load_gan(run)
    recipe = load_recipe(run.recipe)
    if hasattr(gan, "generator_ab"):
        return evaluate_translation(run, gan, recipe, samples, reference)
    rng = np.random.default_rng(seed)
    k = gan.num_classes or gan.categorical_codes
    asked = rng.integers(0, k, samples) if k else None
    extra = {("labels" if gan.num_classes else "categorical"): asked} if k else {}
    fake = I.to_uint8(gan.sampler.predict(latent_inputs(gan, samples, rng, **extra), verbose=0, batch_size=500), scale)
    arrays = sources.load(recipe.data)
    real = with_channel_axis(arrays.x_test if arrays.x_test is not None else arrays.x_train)[:samples]
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

    classifier, ref_scale, features = _classifier(reference)
    if tuple(classifier.input_shape[1:3]) != tuple(fake.shape[1:3]):
        raise UsageError(f"the reference classifier takes {classifier.input_shape[1:]} images; this GAN makes "
                         f"{fake.shape[1:]}")
    f_feat, f_prob = features.predict(_as_input(fake, classifier, ref_scale), verbose=0, batch_size=500)
    r_feat, r_prob = features.predict(_as_input(real, classifier, ref_scale), verbose=0, batch_size=500)
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


def _classifier(reference):
    """The reference run's classifier, its input scaling, and a features+probabilities model."""
    import keras

    from dlkit.errors import UsageError
    from dlkit.generate import run_scale

    if not reference.model.is_file():
        raise UsageError(f"reference run {reference.root} has no model.keras")
    classifier = keras.saving.load_model(reference.model)
    return classifier, run_scale(reference), penultimate(classifier)


def _as_input(images_uint8: np.ndarray, classifier, scale) -> np.ndarray:
    """uint8 images made to fit a classifier: colour averaged to grey if it takes one channel."""
    x = images_uint8.astype(np.float32)
    if classifier.input_shape[-1] == 1 and x.shape[-1] == 3:
        x = x.mean(axis=-1, keepdims=True)
    return x * scale[0] + scale[1]


def evaluate_translation(run, model, recipe, samples: int, reference=None) -> dict:
    """CycleGAN: translated (B->A) and cycled (A->B->A) test images, classified by the reference."""
    from dlkit import images as I
    from dlkit.data import pipeline

    data = pipeline.load(recipe.data, recipe.seed)
    sa, sb = data.splits, data.splits_b
    xa, ya = (sa.x_test, sa.y_test) if sa.x_test is not None else (sa.x_train, sa.y_train)
    xb, yb = (sb.x_test, sb.y_test) if sb.x_test is not None else (sb.x_train, sb.y_train)
    xa, ya, xb, yb = xa[:samples], ya[:samples], xb[:samples], yb[:samples]
    to_model = lambda x, s: x.astype(np.float32) * s[0] + s[1]  # noqa: E731
    ab = model.generator_ab.predict(to_model(xa, data.scale), verbose=0, batch_size=256)
    aba = I.to_uint8(model.generator_ba.predict(ab, verbose=0, batch_size=256), data.scale)
    ba = I.to_uint8(model.generator_ba.predict(to_model(xb, data.scale_b), verbose=0, batch_size=256), data.scale)
    ab = I.to_uint8(ab, data.scale_b)
    grid_path = run.root / "eval_translations.png"
    I.save_png(I.grid(np.concatenate([xa[:8], ab[:8], xb[:8], ba[:8]]), 4), grid_path)
    out = {"status": "completed", "run_dir": str(run.root), "kind": "cyclegan", "samples": int(len(xa)),
           "grid": str(grid_path)}
    f_div, r_div = I.mean_pairwise_distance(to_model(ba, data.scale)), I.mean_pairwise_distance(to_model(xa, data.scale))
    out["diversity"] = {"generated": f_div, "real": r_div, "ratio": f_div / max(r_div, 1e-12)}
    if reference is None:
        return out
    classifier, scale, features = _classifier(reference)
    predict = lambda x: features.predict(_as_input(x, classifier, scale), verbose=0, batch_size=500)  # noqa: E731
    real_feat, real_prob = predict(xa)
    ba_feat, ba_prob = predict(ba)
    out.update({
        "reference_run": str(reference.root),
        "translated_accuracy": float((ba_prob.argmax(1) == yb).mean()),  # B->A keeps the digit's class
        "cycled_accuracy": float((predict(aba)[1].argmax(1) == ya).mean()),  # A->B->A
        "untranslated_accuracy": float((predict(xb)[1].argmax(1) == yb).mean()),  # B as it is: the domain gap
        "source_accuracy": float((real_prob.argmax(1) == ya).mean()),  # real A: the reference's own level
        "frechet_distance": feature_distance(ba_feat, real_feat),  # B->A against real A
    })
    return out
