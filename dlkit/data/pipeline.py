"""The tf.data input pipeline, as a short chain of small named stages:

    slices -> cache -> seeded shuffle -> batch -> float -> augment (training only) -> scale -> prefetch

Splits are carved once, deterministically, from the seed: a validation fraction from the end of a seeded
permutation of the training set. Scaling statistics come from the training split only.

Where TensorFlow is not installed (a JAX-only GPU host), the same stages run on numpy in `ArrayBatches`,
a keras.utils.PyDataset: a full seeded reshuffle each epoch, then the same batches, cast, augmentation
and scaling.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from dlkit.data.sources import Arrays
from dlkit.errors import Problem, RecipeError
from dlkit.models.spec import DataSpec


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None


def split(arrays: Arrays, cfg, seed: int) -> Splits:
    x, y = arrays.x_train, arrays.y_train
    if cfg.limit:
        x, y = x[: cfg.limit], y[: cfg.limit]
    x_val = y_val = None
    if cfg.validation_split > 0:
        order = np.random.default_rng(seed).permutation(len(x))
        n_val = max(1, int(round(len(x) * cfg.validation_split)))
        if n_val >= len(x):
            raise RecipeError([Problem("data.validation_split", f"leaves no training examples out of {len(x)}")])
        x, y, x_val, y_val = x[order[:-n_val]], y[order[:-n_val]], x[order[-n_val:]], y[order[-n_val:]]
    x_test, y_test = arrays.x_test, arrays.y_test
    if x_test is not None and cfg.test_limit:
        x_test, y_test = x_test[: cfg.test_limit], y_test[: cfg.test_limit]
    return Splits(with_channel_axis(x), y, with_channel_axis(x_val), y_val, with_channel_axis(x_test), y_test)


def with_channel_axis(x):
    """Grayscale images (N, H, W) get a channel axis, as conv layers expect (N, H, W, 1)."""
    if x is not None and x.ndim == 3:
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
        """One split as numpy (float32 inputs, labels) batches: tf.data's stages without TensorFlow.

        Training splits are reshuffled at the start of each epoch from (seed, epoch), so a run is
        reproducible and a resumed run sees each epoch's own order (`start_epoch`). `max_steps` caps the
        batches in an epoch (train.steps_per_epoch), each epoch starting a fresh pass.
        """

        def __init__(self, x, y, batch_size, seed, scale, shuffle, augment=None):
            super().__init__()
            self.x, self.y, self.batch_size = x, y, batch_size
            self.a, self.b = (np.asarray(v, np.float32) for v in scale)
            self.seed, self.shuffle, self.augment = seed, shuffle, augment
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
            xb, yb = self.x[index].astype(np.float32), self.y[index]
            if self.augment is not None:
                xb = keras.ops.convert_to_numpy(self.augment(xb, training=True))
            return xb * self.a + self.b, yb

        def on_epoch_begin(self):
            self._order = self._ordering()
            self.epoch += 1

        def start_epoch(self, epoch: int):
            """Resume: the next epoch to begin is `epoch` (0-based), in the order it has in a whole run."""
            self.epoch = epoch

    class PairedBatches(keras.utils.PyDataset):
        """Two domains' ArrayBatches side by side: ((x_a, x_b), (y_a, y_b)), as long as the shorter."""

        def __init__(self, a, b):
            super().__init__()
            self.a, self.b = a, b

        def __len__(self):
            return min(len(self.a), len(self.b))

        def __getitem__(self, i):
            (xa, ya), (xb, yb) = self.a[i], self.b[i]
            return (xa, xb), (ya, yb)

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


def _training_augmenter(x, cfg, seed: int):
    """The augmentation stage for a training split (or None), once its inputs are known to be images."""
    aug = augmenter(cfg, seed)
    if aug is not None and x.ndim != 4:
        raise RecipeError([Problem("data.augment", "augmentation needs images (N, H, W, C); "
                                   f"this dataset has inputs of shape {x.shape[1:]}", hint="remove data.augment")])
    return aug


def array_batches(x, y, cfg, seed: int, scale: tuple, training: bool):
    """One split as numpy batches in an `ArrayBatches` PyDataset (the pipeline without TensorFlow)."""
    augment = _training_augmenter(x, cfg, seed) if training else None
    array_batches_type, _ = _array_batches_class()
    return array_batches_type(x, y, cfg.batch_size, seed, scale, training and cfg.shuffle_buffer > 0, augment)


def dataset(x, y, cfg, seed: int, scale: tuple, training: bool):
    """One split as a tf.data.Dataset of (float32 inputs, labels) batches (numpy batches without TensorFlow)."""
    from dlkit import backend

    tf = backend.tensorflow()
    if tf is None:
        return array_batches(x, y, cfg, seed, scale, training)
    a, b = (tf.constant(v) for v in scale)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cfg.cache:
        ds = ds.cache()
    if training and cfg.shuffle_buffer > 0:
        ds = ds.shuffle(min(cfg.shuffle_buffer, len(x)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size)
    ds = ds.map(lambda xb, yb: (tf.cast(xb, tf.float32), yb), num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        aug = _training_augmenter(x, cfg, seed)
        if aug is not None:
            ds = ds.map(lambda xb, yb: (aug(xb, training=True), yb), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda xb, yb: (xb * a + b, yb), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass
class Data:
    train: object
    val: object | None
    test: object | None
    spec: DataSpec
    splits: Splits
    scale: tuple
    origin: str
    splits_b: Splits | None = None  # two-domain data (cyclegan): the second domain
    scale_b: tuple | None = None


def build(arrays: Arrays, cfg, seed: int) -> Data:
    s = split(arrays, cfg, seed)
    scale = scale_params(s.x_train, cfg.scale)
    spec = DataSpec(
        input_shape=tuple(int(d) for d in s.x_train.shape[1:]),
        num_classes=len(arrays.class_names),
        class_names=list(arrays.class_names),
        num_train=len(s.x_train),
        num_val=0 if s.x_val is None else len(s.x_val),
        num_test=0 if s.x_test is None else len(s.x_test),
    )
    return Data(
        train=dataset(s.x_train, s.y_train, cfg, seed, scale, training=True),
        val=None if s.x_val is None else dataset(s.x_val, s.y_val, cfg, seed, scale, training=False),
        test=None if s.x_test is None else dataset(s.x_test, s.y_test, cfg, seed, scale, training=False),
        spec=spec, splits=s, scale=scale, origin=arrays.origin,
    )


def load(cfg, seed: int) -> Data:
    """Read the dataset a `data:` section names and build its pipelines."""
    from dlkit.data import sources

    if cfg.domain_b is not None:
        return build_two_domains(sources.load(cfg), sources.load(cfg.domain_b), cfg, seed)
    return build(sources.load(cfg), cfg, seed)


def _same_channels(a: np.ndarray | None, channels: int):
    """Grayscale images repeated to colour, so that both domains of a translation model match."""
    if a is None or a.shape[-1] == channels:
        return a
    return np.repeat(a, channels, axis=-1)


def build_two_domains(arrays_a: Arrays, arrays_b: Arrays, cfg, seed: int) -> Data:
    """Unpaired two-domain data: each domain shuffled on its own, zipped into ((x_a, x_b), (y_a, y_b))."""
    from dlkit import backend

    tf = backend.tensorflow()

    b_cfg = cfg.model_copy(update={"limit": cfg.domain_b.limit, "test_limit": cfg.domain_b.test_limit})
    sa, sb = split(arrays_a, cfg, seed), split(arrays_b, b_cfg, seed + 1)
    if sa.x_train.ndim != 4 or sb.x_train.ndim != 4 or sa.x_train.shape[1:3] != sb.x_train.shape[1:3]:
        raise RecipeError([Problem("data.domain_b", f"the two domains must be images of one size; they are "
                                   f"{sa.x_train.shape[1:]} and {sb.x_train.shape[1:]}",
                                   hint="set data.domain_b.image_size (image folders) or pick matching datasets")])
    channels = max(sa.x_train.shape[-1], sb.x_train.shape[-1])
    for s in (sa, sb):
        s.x_train, s.x_val, s.x_test = (_same_channels(x, channels) for x in (s.x_train, s.x_val, s.x_test))
    scale_a, scale_b = scale_params(sa.x_train, cfg.scale), scale_params(sb.x_train, cfg.scale)

    def pair(xa, ya, xb, yb, training):
        if xa is None or xb is None:
            return None
        da = dataset(xa, ya, cfg, seed, scale_a, training)
        db = dataset(xb, yb, cfg, seed + 1, scale_b, training)
        if tf is None:
            _, paired_batches_type = _array_batches_class()
            return paired_batches_type(da, db)
        return tf.data.Dataset.zip((da, db)).map(lambda a, b: ((a[0], b[0]), (a[1], b[1])))

    spec = DataSpec(
        input_shape=tuple(int(d) for d in sa.x_train.shape[1:]), num_classes=len(arrays_a.class_names),
        class_names=list(arrays_a.class_names), num_train=min(len(sa.x_train), len(sb.x_train)), num_val=0,
        num_test=0 if sa.x_test is None or sb.x_test is None else min(len(sa.x_test), len(sb.x_test)),
    )
    return Data(
        train=pair(sa.x_train, sa.y_train, sb.x_train, sb.y_train, True),
        val=pair(sa.x_val, sa.y_val, sb.x_val, sb.y_val, False),
        test=pair(sa.x_test, sa.y_test, sb.x_test, sb.y_test, False),
        spec=spec, splits=sa, scale=scale_a, origin=f"{arrays_a.origin} + {arrays_b.origin}",
        splits_b=sb, scale_b=scale_b,
    )
