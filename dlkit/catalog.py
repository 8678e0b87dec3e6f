"""The recipe vocabulary: every name a recipe may use for a Keras object, and what it means.

(Dataset names live with their readers, in dlkit.data.sources.DATASETS; architecture names in
dlkit.models.ARCHITECTURES; task names in dlkit.tasks.TASKS.)

These are names, not objects. Validation checks recipes against them without importing TensorFlow, and
`dlkit list` prints them. The objects themselves always come from Keras' own `get()` functions
(`keras.optimizers.get`, `keras.initializers.get`, ...); `tests/test_catalog.py` checks that each name here
resolves there, so the two cannot drift apart.
"""

from __future__ import annotations

# recipe name -> Keras identifier (the name `keras.optimizers.get` understands)
OPTIMIZERS = {
    "sgd": "sgd",  # add `momentum: 0.9` (and `nesterov: true`) for momentum SGD
    "momentum": "sgd",  # SGD whose momentum defaults to 0.9
    "adagrad": "adagrad",
    "adadelta": "adadelta",
    "rmsprop": "rmsprop",
    "adam": "adam",
    "adamw": "adamw",
    "adamax": "adamax",
    "nadam": "nadam",
    "ftrl": "ftrl",
    "lion": "lion",
    "adafactor": "adafactor",
}

# recipe name -> Keras initializer identifier. `xavier_*` is the other name of Glorot's initializers.
INITIALIZERS = {
    "zeros": "zeros",
    "ones": "ones",
    "constant": "constant",
    "random_normal": "random_normal",
    "random_uniform": "random_uniform",
    "truncated_normal": "truncated_normal",
    "glorot_normal": "glorot_normal",
    "glorot_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "xavier_uniform": "glorot_uniform",
    "he_normal": "he_normal",
    "he_uniform": "he_uniform",
    "lecun_normal": "lecun_normal",
    "lecun_uniform": "lecun_uniform",
    "orthogonal": "orthogonal",
    "variance_scaling": "variance_scaling",
}

ACTIVATIONS = (
    "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "silu", "mish", "sigmoid", "tanh",
    "softmax", "softplus", "linear",
)

# A regularizer is written as {l1: x}, {l2: y} or both; these are the Keras classes that result.
REGULARIZERS = {"l1": "L1", "l2": "L2", "l1l2": "L1L2"}

# recipe name -> keras.layers class used in the training-only augmentation stage
AUGMENTATIONS = {
    "flip": "RandomFlip",
    "translation": "RandomTranslation",
    "rotation": "RandomRotation",
    "zoom": "RandomZoom",
    "contrast": "RandomContrast",
}

SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")

# The names train.loss and train.metrics take: every name keras.losses.get and keras.metrics.get resolve (snake_case
# and class names), less the abstract bases, and, for metrics, "acc" (compile's) and "rmse" (dlkit's). Checked at
# validate time, with the key's line; the task still checks at build time that the loss and metrics take its
# targets (a loss for one-hot labels against class indices).
LOSSES = frozenset({
    "bce", "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
    "categorical_focal_crossentropy", "categorical_hinge", "circle", "cosine_similarity", "ctc", "dice", "hinge",
    "huber", "kl_divergence", "kld", "log_cosh", "mae", "mape", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_error", "mean_squared_logarithmic_error", "mse", "msle",
    "poisson", "sparse_categorical_crossentropy", "squared_hinge", "tversky", "BCE", "BinaryCrossentropy",
    "BinaryFocalCrossentropy", "CategoricalCrossentropy", "CategoricalFocalCrossentropy", "CategoricalHinge",
    "Circle", "CosineSimilarity", "CTC", "Dice", "Hinge", "Huber", "KLD", "KLDivergence", "LogCosh", "MAE", "MAPE",
    "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredError", "MeanSquaredLogarithmicError", "MSE",
    "MSLE", "Poisson", "SparseCategoricalCrossentropy", "SquaredHinge", "Tversky"})

METRICS = frozenset({
    "acc", "rmse", "accuracy", "auc", "bce", "binary_accuracy", "binary_crossentropy", "binary_io_u",
    "categorical_accuracy", "categorical_crossentropy", "categorical_hinge", "concordance_correlation",
    "cosine_similarity", "f1_score", "f_beta_score", "false_negatives", "false_positives", "hinge", "io_u",
    "kl_divergence", "log_cosh_error", "mae", "mape", "mean", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_io_u", "mean_squared_error", "mean_squared_logarithmic_error", "mse",
    "msle", "one_hot_io_u", "one_hot_mean_io_u", "pearson_correlation", "poisson", "precision",
    "precision_at_recall", "r2_score", "recall", "recall_at_precision", "root_mean_squared_error",
    "sensitivity_at_specificity", "sparse_categorical_accuracy", "sparse_categorical_crossentropy",
    "sparse_top_k_categorical_accuracy", "specificity_at_sensitivity", "squared_hinge", "sum",
    "top_k_categorical_accuracy", "true_negatives", "true_positives", "Accuracy", "AUC", "BCE", "BinaryAccuracy",
    "BinaryCrossentropy", "BinaryIoU", "CategoricalAccuracy", "CategoricalCrossentropy", "CategoricalHinge",
    "ConcordanceCorrelation", "CosineSimilarity", "F1Score", "FalseNegatives", "FalsePositives", "FBetaScore",
    "Hinge", "IoU", "KLDivergence", "LogCoshError", "MAE", "MAPE", "Mean", "MeanAbsoluteError",
    "MeanAbsolutePercentageError", "MeanIoU", "MeanSquaredError", "MeanSquaredLogarithmicError", "MSE", "MSLE",
    "OneHotIoU", "OneHotMeanIoU", "PearsonCorrelation", "Poisson", "Precision", "PrecisionAtRecall", "R2Score",
    "Recall", "RecallAtPrecision", "RootMeanSquaredError", "SensitivityAtSpecificity", "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy", "SparseTopKCategoricalAccuracy", "SpecificityAtSensitivity", "SquaredHinge",
    "Sum", "TopKCategoricalAccuracy", "TrueNegatives", "TruePositives"})


def unknown(value: str, names, what: str, example: str) -> str | None:
    """Why `value` is no name of `names` (LOSSES or METRICS; a did-you-mean among their snake_case ones), or
    None. A name holding '>' is a registered custom object's (package>Name): Keras's own lookup says whether it
    resolves."""
    import difflib

    if value in names or ">" in value:
        return None
    close = difflib.get_close_matches(value, [n for n in names if n.islower()], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    module = {"loss": "keras.losses", "metric": "keras.metrics"}[what]
    return f"unknown {what} {value!r}; {hint}use a {module} name, e.g. {example} (`dlkit list` shows them)"
