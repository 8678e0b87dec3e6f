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
