"""The input pipeline, as a short chain of small named stages:

    slices -> cache -> seeded shuffle -> batch -> cast -> augment (training only) -> scale -> examples -> prefetch

What each stage does depends on the data's modality (dlkit.data.spec.MODALITIES): images get a channel
axis and may be augmented; images, feature vectors and series are scaled and cast to float32; token ids
are never scaled and stay integers. Splits are carved once, deterministically: a validation fraction from
the end of a seeded permutation of the training set (for a series, from the end of the span itself, so
that validation lies after training in time). Scaling statistics come from the training split only.

`examples` is the task's say in what the model learns from: a function that arranges each batch's
(inputs, labels) into (inputs, targets), such as (x, y) for a classifier or (x, x) for an autoencoder.
It only rearranges, so the same function serves tf.data and numpy.

Where TensorFlow is not installed (a JAX-only GPU host), the same stages run on numpy in `ArrayBatches`,
a keras.utils.PyDataset: a full seeded reshuffle each epoch, then the same batches, cast, augmentation
and scaling.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlkit.data.sources import Arrays
from dlkit.data.spec import MODALITIES, DataSpec, Modality
from dlkit.errors import Problem, RecipeError


def as_given(x, y):
    """The default examples: inputs and labels as the source gives them."""
    return x, y


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None


def split(arrays: Arrays, cfg, seed: int) -> Splits:
    modality = MODALITIES[arrays.modality]
    x, y = arrays.x_train, arrays.y_train
    if cfg.limit:
        x, y = x[: cfg.limit], y[: cfg.limit]
    x_val = y_val = None
    if cfg.validation_split > 0:
        n_val = max(1, int(round(len(x) * cfg.validation_split)))
        if n_val >= len(x):
            raise RecipeError([Problem("data.validation_split", f"leaves no training examples out of {len(x)}")])
        # a series keeps its order: validation is the end of the span, after everything trained on
        order = np.arange(len(x)) if modality.split == "chronological" else np.random.default_rng(seed).permutation(len(x))
        x, y, x_val, y_val = x[order[:-n_val]], y[order[:-n_val]], x[order[-n_val:]], y[order[-n_val:]]
    x_test, y_test = arrays.x_test, arrays.y_test
    if x_test is not None and cfg.test_limit:
        x_test, y_test = x_test[: cfg.test_limit], y_test[: cfg.test_limit]
    fix = functools.partial(with_channel_axis, modality=modality)
    return Splits(fix(x), y, fix(x_val), y_val, fix(x_test), y_test)


def with_channel_axis(x, modality: Modality = MODALITIES["images"]):
    """Grayscale images (N, H, W) get a channel axis, as conv layers expect (N, H, W, 1). Other modalities
    keep their shape: a 3-D series (N, T, F) is not an image."""
    if x is not None and modality.channel_axis and x.ndim == 3:
        return x[..., None]
    return x


def scale_params(x_train: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) such that the model sees x * a + b; per channel for images, per feature otherwise."""
    axes = tuple(range(x_train.ndim - 1))
    shape = x_train.shape[-1:]
    if mode == "none":
        return np.ones(shape, np.float32), np.zeros(shape, np.float32)
    if mode == "standardize":
        x = x_train.astype(np.float64)
        mean, std = x.mean(axis=axes), x.std(axis=axes)
        std = np.where(std > 0, std, 1.0)
        return (1 / std).astype(np.float32), (-mean / std).astype(np.float32)
    if x_train.dtype == np.uint8:
        lo, hi = np.zeros(shape), np.full(shape, 255.0)
    else:
        lo, hi = x_train.min(axis=axes).astype(np.float64), x_train.max(axis=axes).astype(np.float64)
    span = np.where(hi > lo, hi - lo, 1.0)
    if mode == "unit":  # [0, 1]
        return (1 / span).astype(np.float32), (-lo / span).astype(np.float32)
    return (2 / span).astype(np.float32), (-2 * lo / span - 1).astype(np.float32)  # symmetric: [-1, 1]


def input_scale(x_train: np.ndarray, cfg, modality: Modality) -> tuple[np.ndarray, np.ndarray] | None:
    """The (a, b) of data.scale for a modality that is scaled; None for one that is not (token ids)."""
    if modality.scaled:
        return scale_params(x_train, cfg.scale)
    if "scale" in cfg.model_fields_set and cfg.scale != "none":
        raise RecipeError([Problem("data.scale", f"{modality.name} are not scaled (token ids index an embedding)",
                                   hint="remove data.scale")])
    return None


def augmenter(cfg, seed: int, value_range=(0.0, 255.0)):
    """The training-only augmentation stage, as a keras Sequential of random layers (or None)."""
    import keras

    aug = cfg.augment
    stages = []
    if aug.flip:
        stages.append(keras.layers.RandomFlip(aug.flip, seed=seed))
    if aug.translation:
        stages.append(keras.layers.RandomTranslation(aug.translation, aug.translation, fill_mode="constant", seed=seed + 1))
    if aug.rotation:
        stages.append(keras.layers.RandomRotation(aug.rotation, fill_mode="constant", seed=seed + 2))
    if aug.zoom:
        stages.append(keras.layers.RandomZoom(aug.zoom, fill_mode="constant", seed=seed + 3))
    if aug.contrast:
        stages.append(keras.layers.RandomContrast(aug.contrast, value_range=value_range, seed=seed + 4))
    return keras.Sequential(stages, name="augment") if stages else None


@functools.cache
def _array_batches_class():
    import keras  # not at module level: dlkit.backend.setup imports it first, quietly

    class ArrayBatches(keras.utils.PyDataset):
        """One split as numpy batches: tf.data's stages without TensorFlow.

        Training splits are reshuffled at the start of each epoch from (seed, epoch), so a run is
        reproducible and a resumed run sees each epoch's own order (`start_epoch`). `max_steps` caps the
        batches in an epoch (train.steps_per_epoch), each epoch starting a fresh pass.
        """

        def __init__(self, x, y, batch_size, seed, scale, dtype, shuffle, augment=None, examples=as_given):
            super().__init__()
            self.x, self.y, self.batch_size, self.dtype = x, y, batch_size, dtype
            self.scale = None if scale is None else tuple(np.asarray(v, np.float32) for v in scale)
            self.seed, self.shuffle, self.augment, self.examples = seed, shuffle, augment, examples
            self.epoch, self.max_steps = 0, None
            self._order = self._ordering()

        def _ordering(self):
            if not self.shuffle:
                return np.arange(len(self.x))
            return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

        def __len__(self):
            full = -(-len(self.x) // self.batch_size)
            return full if self.max_steps is None else min(full, self.max_steps)

        def __getitem__(self, i):
            index = self._order[i * self.batch_size:(i + 1) * self.batch_size]
            xb, yb = self.x[index].astype(self.dtype), self.y[index]
            if self.augment is not None:
                xb = keras.ops.convert_to_numpy(self.augment(xb, training=True))
            if self.scale is not None:
                xb = xb * self.scale[0] + self.scale[1]
            return self.examples(xb, yb)

        def on_epoch_begin(self):
            self._order = self._ordering()
            self.epoch += 1

        def start_epoch(self, epoch: int):
            """Resume: the next epoch to begin is `epoch` (0-based), in the order it has in a whole run."""
            self.epoch = epoch

    class PairedBatches(keras.utils.PyDataset):
        """Two splits' ArrayBatches side by side, as long as the shorter, arranged by `examples`
        (e.g. ((x_a, x_b), (y_a, y_b)) for two unpaired domains)."""

        def __init__(self, a, b, examples):
            super().__init__()
            self.a, self.b, self.examples = a, b, examples

        def __len__(self):
            return min(len(self.a), len(self.b))

        def __getitem__(self, i):
            return self.examples(self.a[i], self.b[i])

        def on_epoch_begin(self):
            self.a.on_epoch_begin()
            self.b.on_epoch_begin()

        def start_epoch(self, epoch: int):
            self.a.start_epoch(epoch)
            self.b.start_epoch(epoch)

        @property
        def max_steps(self):
            return self.a.max_steps

        @max_steps.setter
        def max_steps(self, steps):
            self.a.max_steps = self.b.max_steps = steps

    return ArrayBatches, PairedBatches


def _training_augmenter(x, cfg, seed: int, modality: Modality):
    """The augmentation stage for a training split (or None), once its inputs are known to be images."""
    aug = augmenter(cfg, seed)
    if aug is not None and (not modality.augment or x.ndim != 4):
        raise RecipeError([Problem("data.augment", "augmentation needs images (N, H, W, C); "
                                   f"this dataset has {modality.name} of shape {x.shape[1:]}", hint="remove data.augment")])
    return aug


def dataset(x, y, cfg, seed: int, scale, training: bool, modality: Modality = MODALITIES["images"],
            examples: Callable = as_given):
    """One split as a tf.data.Dataset of `examples(inputs, labels)` batches (numpy batches without
    TensorFlow). `scale` is the (a, b) of x * a + b, or None to leave the inputs as they are."""
    from dlkit import backend

    tf = backend.tensorflow()
    augment = _training_augmenter(x, cfg, seed, modality) if training else None
    if tf is None:
        array_batches_type, _ = _array_batches_class()
        return array_batches_type(x, y, cfg.batch_size, seed, scale, modality.dtype,
                                  training and cfg.shuffle_buffer > 0, augment, examples)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cfg.cache:
        ds = ds.cache()
    if training and cfg.shuffle_buffer > 0:
        ds = ds.shuffle(min(cfg.shuffle_buffer, len(x)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size)
    ds = ds.map(lambda xb, yb: (tf.cast(xb, modality.dtype), yb), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda xb, yb: (augment(xb, training=True), yb), num_parallel_calls=tf.data.AUTOTUNE)
    if scale is not None:
        a, b = (tf.constant(v) for v in scale)
        ds = ds.map(lambda xb, yb: (xb * a + b, yb), num_parallel_calls=tf.data.AUTOTUNE)
    if examples is not as_given:
        ds = ds.map(examples, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass
class Data:
    """One source's splits and their pipelines, with what a model and a finished run need to know of it."""

    train: object
    val: object | None
    test: object | None
    spec: DataSpec
    splits: Splits
    scale: tuple | None  # (a, b): the model sees x * a + b; None for inputs that are not scaled
    origin: str
    modality: Modality = MODALITIES["images"]
    # what a run keeps beside its model to use it later (evaluate, generate): JSON-able, by name
    artifacts: dict = field(default_factory=dict)
    pipelines: Callable | None = field(default=None, repr=False)  # () -> {"train", "val", "test"}, made anew

    def fresh(self) -> Data:
        """The same splits in new pipelines, whose shuffles start over: each phase of a run of several gets
        its own, so a phase's data order depends on its own epochs alone (and a resume can replay it)."""
        return dataclasses.replace(self, **self.pipelines())

    def pipeline(self, split: str, cfg, seed: int, examples: Callable = as_given):
        """A split's pipeline as an evaluation split (unshuffled, unaugmented), or None if it has none."""
        s = self.splits
        x, y = {"train": (s.x_train, s.y_train), "val": (s.x_val, s.y_val), "test": (s.x_test, s.y_test)}[split]
        return None if x is None else dataset(x, y, cfg, seed, self.scale, False, self.modality, examples)


def scale_artifact(scale) -> dict | None:
    return None if scale is None else {"a": np.asarray(scale[0]).tolist(), "b": np.asarray(scale[1]).tolist()}


def scale_from_artifact(artifact: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(artifact["a"], np.float32), np.asarray(artifact["b"], np.float32)


def build(arrays: Arrays, cfg, seed: int, examples: Callable = as_given, channels: int | None = None) -> Data:
    """Splits, scaling and the three pipelines of one source. `channels` repeats grayscale images to that many
    channels (so that two domains of a translation model match)."""
    modality = MODALITIES[arrays.modality]
    s = split(arrays, cfg, seed)
    if channels is not None:
        s.x_train, s.x_val, s.x_test = (_with_channels(x, channels) for x in (s.x_train, s.x_val, s.x_test))
    scale = input_scale(s.x_train, cfg, modality)
    spec = DataSpec(
        input_shape=tuple(int(d) for d in s.x_train.shape[1:]),
        modality=modality.name,
        num_classes=len(arrays.class_names),
        class_names=list(arrays.class_names),
        num_train=len(s.x_train),
        num_val=0 if s.x_val is None else len(s.x_val),
        num_test=0 if s.x_test is None else len(s.x_test),
    )

    def pipe(x, y, training):
        return None if x is None else dataset(x, y, cfg, seed, scale, training, modality, examples)

    def pipelines():
        return {"train": pipe(s.x_train, s.y_train, True), "val": pipe(s.x_val, s.y_val, False),
                "test": pipe(s.x_test, s.y_test, False)}

    artifacts = {"scale": scale_artifact(scale)} if scale is not None else {}
    return Data(**pipelines(), spec=spec, splits=s, scale=scale, origin=arrays.origin, modality=modality,
                artifacts=artifacts, pipelines=pipelines)


def load(cfg, seed: int, examples: Callable = as_given) -> Data:
    """Read the dataset a `data:` section names and build its pipelines."""
    from dlkit.data import sources

    return build(sources.load(cfg), cfg, seed, examples)


def _with_channels(x: np.ndarray | None, channels: int):
    """Grayscale images repeated to colour."""
    if x is None or x.shape[-1] == channels:
        return x
    return np.repeat(x, channels, axis=-1)


def zipped(a, b, examples: Callable):
    """Two pipelines side by side, as long as the shorter, each batch pair arranged by `examples(a, b)`."""
    from dlkit import backend

    tf = backend.tensorflow()
    if a is None or b is None:
        return None
    if tf is None:
        _, paired_batches_type = _array_batches_class()
        return paired_batches_type(a, b, examples)
    return tf.data.Dataset.zip((a, b)).map(examples)


def for_fit(train, steps_per_epoch: int | None, start_epoch: int = 0):
    """The training pipeline as `fit` should get it, and the steps_per_epoch to pass with it.

    Capped epochs (train.steps_per_epoch) run on through the passes, or Keras cuts an epoch short at each
    pass's end. `start_epoch` (a resume) puts the data order where an uninterrupted run has it at that epoch:
    the numpy pipeline's orders are per epoch; tf.data reshuffles on each new iterator, and Keras's epoch
    iterator makes two per epoch over a finite dataset (one for the epoch, one made ready at its end), so
    making the same number here replays the order (tests/test_resume.py checks the weights match). With a
    cap on tf.data, passes and epochs differ: a resume starts a fresh pass instead."""
    array_batches_type, paired_batches_type = _array_batches_class()
    if isinstance(train, (array_batches_type, paired_batches_type)):
        train.start_epoch(start_epoch)
        train.max_steps = steps_per_epoch  # each capped epoch is a fresh pass
        return train, None
    if steps_per_epoch is not None:
        return train.repeat(), steps_per_epoch
    for _ in range(2 * start_epoch):
        iter(train)
    return train, None
