"""The input pipeline, as a short chain of small named stages:

    training:    epoch order -> batch -> gather -> cast -> augment -> scale -> examples -> prefetch
    evaluation:  slices -> cache -> batch -> cast -> scale -> examples -> prefetch

The training order is explicit: epoch e visits the examples in the permutation
np.random.default_rng([seed, e]).permutation(n) (or in order, with data.shuffle_buffer: 0), on tf.data
and on the numpy pipeline alike. So a run can start from any (epoch, batch) and see what an uninterrupted
run sees from there: `Feed` gives the training split from a position, which is what exact resume, even
from a checkpoint taken inside an epoch, rests on.

What each stage does depends on the data's modality (dlkit.data.spec.MODALITIES): images get a channel
axis and may be augmented; images and feature vectors are scaled (data.scale) and cast to float32; token
ids are never scaled and stay integers; a series arrives scaled by its task's scaler. Splits are carved once, deterministically: a validation fraction from
the end of a seeded permutation of the training set (for a series, from the end of the span itself, so
that validation lies after training in time). Scaling statistics come from the training split only.

`examples` is the task's say in what the model learns from: a function that arranges each batch's
(inputs, labels) into (inputs, targets), such as (x, y) for a classifier or (x, x) for an autoencoder.
It only rearranges, so the same function serves tf.data and numpy.

Where TensorFlow is not installed (a JAX-only GPU host), the same stages run in numpy, in `Batcher`: batch j
of epoch e is a pure function of (e, j), augmentation included (its random transforms are drawn from the
seed and the batch's position, as tf.data's are: `Augment`). On a JAX accelerator a training split that fits
(a quarter of the device's memory at most) is kept on the device (`DeviceSplit`): the host sends each
batch's indices (and its seed) and one compiled function gathers, casts, augments and scales the batch
there, while the previous step runs; a validation or test split that fits is kept there too, read each
epoch without a batch made on the host. Elsewhere Grain's threads make the batches ahead of the training loop
(`prefetched`; any thread may make any batch, so the order they finish in changes nothing), or the loop's
own thread where Grain is missing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dlkit.data.sources import Arrays
from dlkit.data.spec import MODALITIES, DataSpec, Modality
from dlkit.errors import DataError, Problem, RecipeError


def as_given(x, y):
    """The default examples: inputs and labels as the source gives them."""
    return x, y


def as_is(tf, fn: Callable) -> Callable:
    """`fn` for tf.data to trace as it is written, without AutoGraph's rewrite (which parses and transforms
    each function's source: most of a pipeline's first build in a process). Nothing a pipeline maps needs the
    rewrite: no function has control flow on tensors, and `examples` runs on numpy batches too (ArrayFeed)."""
    return tf.autograph.experimental.do_not_convert(fn)


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
    x_test, y_test = arrays.x_test, arrays.y_test
    test_split = getattr(cfg, "test_split", 0)
    if x_test is None and test_split > 0:  # no test set of its own: a share aside, the same draw every run
        n_test = int(round(len(x) * test_split))
        if not 0 < n_test < len(x):
            raise RecipeError([Problem("data.test_split", f"{test_split} of {len(x)} examples is {n_test}: it leaves "
                                       "no test or no training examples", hint="set data.test_split: 0 to keep no "
                                       "test split, or give more examples")])
        order = np.random.default_rng(0).permutation(len(x))
        x, y, x_test, y_test = x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]
    x_val = y_val = None
    if cfg.validation_split > 0:
        n_val = max(1, int(round(len(x) * cfg.validation_split)))
        if n_val >= len(x):
            raise RecipeError([Problem("data.validation_split", f"leaves no training examples out of {len(x)}")])
        # a series keeps its order: validation is the end of the span, after everything trained on
        order = np.arange(len(x)) if modality.split == "chronological" else np.random.default_rng(seed).permutation(len(x))
        x, y, x_val, y_val = x[order[:-n_val]], y[order[:-n_val]], x[order[-n_val:]], y[order[-n_val:]]
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
    """The training-only augmentation stage, as a keras Sequential of random layers (or None). In float32
    whatever train.precision says: the images go on to be scaled in float32, and the model's first layer
    casts its inputs to its own dtype (under a mixed policy a float16 batch met data.scale's float32
    constants, a TypeError before the first step)."""
    import keras

    aug = cfg.augment
    stages = []
    f32 = {"dtype": "float32"}
    if aug.flip:
        stages.append(keras.layers.RandomFlip(aug.flip, seed=seed, **f32))
    if aug.translation:
        stages.append(keras.layers.RandomTranslation(aug.translation, aug.translation, fill_mode="constant",
                                                     seed=seed + 1, **f32))
    if aug.rotation:
        stages.append(keras.layers.RandomRotation(aug.rotation, fill_mode="constant", seed=seed + 2, **f32))
    if aug.zoom:
        stages.append(keras.layers.RandomZoom(aug.zoom, fill_mode="constant", seed=seed + 3, **f32))
    if aug.contrast:
        stages.append(keras.layers.RandomContrast(aug.contrast, value_range=value_range, seed=seed + 4, **f32))
    return keras.Sequential(stages, name="augment") if stages else None


@functools.cache
def _array_batches_class():
    import keras  # not at module level: dlkit.backend.setup imports it first, quietly

    class ArrayBatches(keras.utils.PyDataset):
        """A Batcher's batches k = start, start + 1, ... up to `stop` (endless if None: fit is then given
        steps_per_epoch), batch k being batch k % steps of epoch k // steps, made in the training loop's
        thread; with a DeviceSplit, on the accelerator in one dispatch. The position is all it keeps: Keras
        calls on_epoch_end also after merely peeking at a batch to build the model (EpochIterator.reset),
        which moved the epoch counter this class once had one epoch on, so that a run's first epoch was
        drawn in epoch 1's order."""

        def __init__(self, batcher: Batcher, steps: int, start: int, stop: int | None, device=None):
            super().__init__()
            self.batcher, self.steps, self.start, self.stop, self.device = batcher, steps, start, stop, device

        @property
        def num_batches(self):
            return None if self.stop is None else self.stop - self.start

        def __len__(self):
            if self.stop is None:
                raise TypeError("an endless stream of batches has no length")
            return self.stop - self.start

        def __getitem__(self, i):
            b = self.batcher
            epoch, j = divmod(self.start + i, self.steps)
            if self.device is not None:
                seed = None if b.augment is None else b.augment.seed(epoch, j)
                return b.examples(*self.device.batch(b.indices(epoch, j), seed))
            return b(epoch, j)

    class PairedBatches(keras.utils.PyDataset):
        """Two splits' ArrayBatches side by side, as long as the shorter, arranged by `examples`
        (e.g. ((x_a, x_b), (y_a, y_b)) for two unpaired domains)."""

        def __init__(self, a, b, examples):
            super().__init__()
            self.a, self.b, self.examples = a, b, examples

        @property
        def num_batches(self):
            counts = [n for n in (self.a.num_batches, self.b.num_batches) if n is not None]
            return min(counts) if counts else None

        def __len__(self):
            return min(len(self.a), len(self.b))

        def __getitem__(self, i):
            return self.examples(self.a[i], self.b[i])

    return ArrayBatches, PairedBatches


def _training_augmenter(x, cfg, seed: int, modality: Modality):
    """The augmentation stage for a training split (or None), once its inputs are known to be images."""
    aug = augmenter(cfg, seed)
    if aug is not None and (not modality.augment or x.ndim != 4):
        raise RecipeError([Problem("data.augment", "augmentation needs images (N, H, W, C); "
                                   f"this dataset has {modality.name} of shape {x.shape[1:]}", hint="remove data.augment")])
    return aug


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order epoch `epoch` visits n training examples in."""
    return np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)


class Batcher:
    """A training split's batches as a pure function of their position: batch j of epoch e holds the
    examples epoch_order(n, seed, e) puts at [j * b, (j + 1) * b), cast, augmented with random transforms
    drawn from (seed, e, j) alone, scaled and arranged by `examples`. Any thread may make any batch, in any
    order, any number of times, and get the same one: what lets a loader prepare batches ahead in threads
    of its own and a resumed run see what an uninterrupted one saw, augmentation included."""

    def __init__(self, x, y, batch_size, seed, scale, dtype, shuffle, augment=None, examples=as_given):
        self.x, self.y, self.batch_size, self.dtype = x, y, batch_size, dtype
        self.scale = None if scale is None else tuple(np.asarray(v, np.float32) for v in scale)
        self.seed, self.shuffle, self.augment, self.examples = seed, shuffle, augment, examples
        self._orders: dict[int, np.ndarray] = {}  # the last two epochs' orders (a loader runs ahead into the next)
        self._lock = threading.Lock()

    def indices(self, epoch: int, j: int) -> np.ndarray:
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                if len(self._orders) >= 2:
                    del self._orders[min(self._orders)]
                order = self._orders[epoch] = epoch_order(len(self.x), self.seed, epoch, self.shuffle)
        return order[j * self.batch_size:(j + 1) * self.batch_size]

    def __call__(self, epoch: int, j: int):
        index = self.indices(epoch, j)
        xb, yb = self.x[index].astype(self.dtype), self.y[index]
        if self.augment is not None:
            import keras

            with keras.device("cpu"):  # as Keras runs its augmentation layers in a Grain pipeline
                xb = keras.ops.convert_to_numpy(self.augment.apply(xb, self.augment.seed(epoch, j)))
        if self.scale is not None:
            xb = xb * self.scale[0] + self.scale[1]
        return self.examples(xb, yb)


class Augment:
    """A training split's augmentation layers, applied with random transforms drawn from a seed the caller
    gives (`seed(epoch, j)`: the batch's position), not from the layers' own stateful generators, whose
    state would depend on which batches were made before, and by whom. The same in eager code (Grain's
    threads) and in a compiled function (DeviceSplit): one SeedGenerator whose state each call replaces
    inside a keras.StatelessScope, so nothing is shared between calls."""

    def __init__(self, layers, seed: int):
        import keras

        self.layers, self.base = layers, seed
        self.generator = keras.random.SeedGenerator(0)

    def seed(self, epoch: int, j: int) -> np.ndarray:
        """The generator's state for batch j of epoch e."""
        s = int(np.random.SeedSequence([self.base, epoch, j]).generate_state(1)[0] >> 1)
        return np.array([s, 0], self.generator.state.dtype)

    def apply(self, xb, seed):
        import keras

        with keras.StatelessScope(state_mapping=[(self.generator.state, seed)]):
            for layer in self.layers.layers:
                xb = layer.transform_images(xb, layer.get_random_transformation(xb, training=True,
                                                                                 seed=self.generator),
                                            training=True)
        return xb

    def in_tf_data(self, xb, seed):
        """`apply` inside a tf.data graph, whatever Keras's backend: each layer on TensorFlow (as Keras runs
        its preprocessing layers in tf.data), its k-th random draw seeded `seed + [0, k]`, which is what the
        generator's state `seed` gives `apply`'s draws. The layers' own stateful generators, which tf.data
        advanced as it made batches (ahead, in parallel), are not used: a run resumed inside an epoch was
        augmented otherwise than an uninterrupted one."""
        draws = _seed_draws()(seed)
        for layer in self.layers.layers:
            layer.backend.set_backend("tensorflow")
            try:
                xb = layer.transform_images(xb, layer.get_random_transformation(xb, training=True, seed=draws),
                                            training=True)
            finally:
                layer.backend.reset()
        return xb


@functools.cache
def _seed_draws():
    import keras

    from dlkit import backend

    tf = backend.tensorflow()

    class SeedDraws(keras.random.SeedGenerator):
        """A SeedGenerator as the random ops see it (they ask it for `next()`), stateless: its k-th seed is
        `seed + [0, k]`, where SeedGenerator.next counts on from the state `seed`. No variable: made per
        batch inside a tf.data graph."""

        def __init__(self, seed):  # SeedGenerator's own would make a state variable
            self.start, self.count = seed, 0

        def next(self, ordered=True):
            out = self.start + tf.constant([0, self.count], self.start.dtype)
            self.count += 1
            return out

    return SeedDraws


def loader_threads() -> int:
    """How many threads prepare training batches ahead on the numpy path: half the cores, at most 8 (the
    training loop's thread and the accelerator's runtime need the rest)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def _grain():
    try:
        import grain
    except ImportError:  # a host assembled by hand without it: the batches are made in the loop's thread
        return None
    return grain


def prefetched(make: Callable[[int], object], start: int, stop: int):
    """Elements make(k) for k in [start, stop), as a Grain dataset that prepares them ahead, in order, in
    loader_threads() threads (None where Grain is not installed). Keras's fit takes it as it is. (Not Keras's
    PyDataset workers: they ran ahead of on_epoch_end, so most of an epoch's batches were drawn in the next
    epoch's order; docs/benchmarks.md, "On one GPU: dlkit against plain Keras".)"""
    grain = _grain()
    if grain is None:
        return None
    threads = loader_threads()
    return grain.MapDataset.range(start, stop).map(make).to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))


def batch_count(n: int, batch_size: int, cap: int | None = None) -> int:
    """How many batches a pass over n examples makes (every batch whole where backend.whole_batches()),
    capped at `cap` (train.steps_per_epoch)."""
    from dlkit import backend

    full = max(1, n // batch_size) if backend.whole_batches() else -(-n // batch_size)
    return min(full, cap) if cap else full


class Feed:
    """The training split as `fit` takes it from a position on. `epochs(first, cap)` gives every batch of
    the epochs from `first` on (each capped at `cap` batches, fit's steps_per_epoch), and `rest(epoch, skip,
    cap)` the batches of one epoch after the first `skip` (a run resumed inside an epoch)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def batches(self, cap: int | None) -> int:
        return batch_count(self.n, self.batch_size, cap)

    def epochs(self, first: int, cap: int | None):
        raise NotImplementedError

    def rest(self, epoch: int, skip: int, cap: int | None):
        raise NotImplementedError

    def first(self):
        """The first epoch's batches, to look at (Data.train), not to train from."""
        return self.rest(0, 0, None)


class TFFeed(Feed):
    """tf.data: an endless stream of the epochs' batches (fit is given steps_per_epoch), gathered from the
    split held in memory."""

    def __init__(self, x, y, cfg, seed, scale, modality, examples, augment):
        super().__init__(len(x), cfg.batch_size)
        from dlkit import backend

        tf = self.tf = backend.tensorflow()
        self.xs, self.ys = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        self.seed, self.shuffle = seed, cfg.shuffle_buffer > 0
        self.whole = backend.whole_batches()
        self.augment = None if augment is None else Augment(augment, seed)  # batch j of epoch e: seed(e, j)
        self.stages = (modality.dtype, scale, examples)

    def _epoch(self, epoch, cap):
        tf, n = self.tf, self.n
        order = tf.numpy_function(lambda e: epoch_order(n, self.seed, int(e), self.shuffle), [epoch], tf.int64,
                                  stateful=False)
        order.set_shape([n])
        batches = tf.data.Dataset.from_tensor_slices(order).batch(self.batch_size, drop_remainder=self.whole)
        batches = batches.take(cap) if cap else batches
        if self.augment is None:
            return batches

        def seeded(j, index):  # the batch's augmentation seed, from its position alone (as the Batcher's)
            seed = tf.numpy_function(lambda e, k: self.augment.seed(int(e), int(k)).astype(np.int64), [epoch, j],
                                     tf.int64, stateful=False)
            seed.set_shape([2])
            return index, seed

        return batches.enumerate().map(as_is(tf, seeded))

    def _finish(self, indices):
        tf = self.tf
        dtype, scale, examples = self.stages

        def gathered(i):
            return tf.cast(tf.gather(self.xs, i), dtype), tf.gather(self.ys, i)

        def augmented(i, seed):  # _epoch gives each batch its seed beside its indices
            xb, yb = gathered(i)
            return self.augment.in_tf_data(xb, seed), yb

        ds = indices.map(as_is(tf, gathered if self.augment is None else augmented),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if scale is not None:
            a, b = (tf.constant(v) for v in scale)
            ds = ds.map(as_is(tf, lambda xb, yb: (xb * a + b, yb)), num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
        if examples is not as_given:
            ds = ds.map(as_is(tf, examples), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(self.tf.data.AUTOTUNE)

    def epochs(self, first, cap):
        epochs = self.tf.data.Dataset.range(first, 2**62)
        return self._finish(epochs.flat_map(as_is(self.tf, lambda e: self._epoch(e, cap))))

    def rest(self, epoch, skip, cap):
        return self._finish(self._epoch(self.tf.constant(epoch, self.tf.int64), cap).skip(skip))


class DeviceSplit:
    """A training split held in a JAX accelerator's memory as the source gives it (uint8 images stay uint8).
    `batch(index, seed)` gathers the examples at `index` there, casts, augments (`Augment`, with the batch's
    seed) and scales them, in one compiled function: the host sends only the indices (and the seed), and the
    batch is ready on the device when the step dispatched after it starts."""

    def __init__(self, x, y, dtype, scale, augment: Augment | None = None):
        import jax
        import jax.numpy as jnp

        self.x, self.y = jax.device_put(x), jax.device_put(y)
        a, b = (None, None) if scale is None else (jnp.asarray(scale[0]), jnp.asarray(scale[1]))

        def gather(x, y, index, seed):
            xb = jnp.take(x, index, axis=0).astype(dtype)
            if augment is not None:
                xb = augment.apply(xb, seed)
            return (xb if a is None else xb * a + b), jnp.take(y, index, axis=0)

        self._gather = jax.jit(gather)

    def batch(self, index: np.ndarray, seed: np.ndarray | None = None):
        return self._gather(self.x, self.y, index.astype(np.int32), seed)

    @staticmethod
    def fits(x, y) -> bool:
        """Whether a split goes on the device: JAX on an accelerator (backend.accelerator_memory), at most a
        quarter of the device's memory (the model, its gradients and activations need the rest)."""
        from dlkit import backend

        memory = backend.accelerator_memory()
        return memory is not None and x.nbytes + y.nbytes <= memory // 4


class ArrayFeed(Feed):
    """numpy (no TensorFlow): a Batcher's batches from a position on. From the split on the accelerator when
    it fits there (DeviceSplit, made once, the first time it is asked for; each batch one dispatch from the
    training loop's thread); otherwise made on the host ahead of the loop by Grain's threads (`prefetched`),
    or in the loop's thread where Grain is not installed, or when asked for `prefetch=False`."""

    def __init__(self, x, y, cfg, seed, scale, modality, examples, augment):
        super().__init__(len(x), cfg.batch_size)
        self.batcher = Batcher(x, y, cfg.batch_size, seed, scale, modality.dtype, cfg.shuffle_buffer > 0,
                               None if augment is None else Augment(augment, seed), examples)
        self.device: DeviceSplit | None = None

    def fits_device(self) -> bool:
        # asked each time: the placement (a distribution over several devices) may be set after the first
        return DeviceSplit.fits(self.batcher.x, self.batcher.y)

    def source(self, epoch: int, skip: int, cap: int | None, endless: bool, device: bool, prefetch: bool = True):
        """The batches from batch `skip` of epoch `epoch`: every later epoch's too if `endless` (fit is then
        given steps_per_epoch), else to that epoch's end. `device`: may it come from a DeviceSplit."""
        steps = self.batches(cap)
        start, stop = epoch * steps + skip, None if endless else (epoch + 1) * steps
        if device:
            if self.device is None:
                b = self.batcher
                self.device = DeviceSplit(b.x, b.y, b.dtype, b.scale, b.augment)
        elif prefetch:
            at = self.batcher
            loader = prefetched(lambda k: at(*divmod(k, steps)), start, 2**62 if stop is None else stop)
            if loader is not None:
                return loader
        array_batches_type, _ = _array_batches_class()
        return array_batches_type(self.batcher, steps, start, stop, self.device if device else None)

    def epochs(self, first, cap):
        return self.source(first, 0, cap, True, self.fits_device())

    def rest(self, epoch, skip, cap):
        return self.source(epoch, skip, cap, False, self.fits_device())

    def first(self):  # made where they are read, and indexable
        return self.source(0, 0, None, False, self.fits_device(), prefetch=False)


class PairedFeed(Feed):
    """Two feeds side by side (unpaired domains), each epoch as long as the shorter, arranged by `examples`."""

    def __init__(self, a: Feed, b: Feed, examples: Callable):
        super().__init__(min(a.n, b.n), a.batch_size)
        self.a, self.b, self.examples = a, b, examples

    def batches(self, cap):
        return min(self.a.batches(cap), self.b.batches(cap))

    def _sources(self, epoch, skip, cap, endless):
        cap = self.batches(cap)
        if isinstance(self.a, ArrayFeed) and isinstance(self.b, ArrayFeed):  # both from the device, or neither
            device = self.a.fits_device() and self.b.fits_device()
            return zipped(self.a.source(epoch, skip, cap, endless, device),
                          self.b.source(epoch, skip, cap, endless, device), self.examples)
        if endless:
            return zipped(self.a.epochs(epoch, cap), self.b.epochs(epoch, cap), self.examples)
        return zipped(self.a.rest(epoch, skip, cap), self.b.rest(epoch, skip, cap), self.examples)

    def epochs(self, first, cap):
        return self._sources(first, 0, cap, True)

    def rest(self, epoch, skip, cap):
        return self._sources(epoch, skip, cap, False)


def feed(x, y, cfg, seed: int, scale, modality: Modality = MODALITIES["images"], examples: Callable = as_given) -> Feed:
    """The training split's Feed: tf.data where TensorFlow is installed, numpy otherwise."""
    from dlkit import backend

    augment = _training_augmenter(x, cfg, seed, modality) if cfg.augments else None
    kind = TFFeed if backend.tensorflow() is not None else ArrayFeed
    return kind(x, y, cfg, seed, scale, modality, examples, augment)


def dataset(x, y, cfg, seed: int, scale, training: bool, modality: Modality = MODALITIES["images"],
            examples: Callable = as_given):
    """One split as a tf.data.Dataset of `examples(inputs, labels)` batches (numpy batches without
    TensorFlow). `scale` is the (a, b) of x * a + b, or None to leave the inputs as they are. A training
    split comes as its first epoch (in the order training visits it); training itself takes a `feed`."""
    from dlkit import backend

    if training:
        return feed(x, y, cfg, seed, scale, modality, examples).first()
    tf = backend.tensorflow()
    if tf is None:  # on a JAX accelerator from the split kept there, when it fits (made once: read every epoch)
        array_batches_type, _ = _array_batches_class()
        batcher, steps = Batcher(x, y, cfg.batch_size, seed, scale, modality.dtype, False, None, examples), \
            batch_count(len(x), cfg.batch_size)
        device = DeviceSplit(x, y, batcher.dtype, batcher.scale) if DeviceSplit.fits(x, y) else None
        return array_batches_type(batcher, steps, 0, steps, device)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cfg.cache:
        ds = ds.cache()
    ds = ds.batch(cfg.batch_size, drop_remainder=backend.whole_batches())
    ds = ds.map(as_is(tf, lambda xb, yb: (tf.cast(xb, modality.dtype), yb)), num_parallel_calls=tf.data.AUTOTUNE)
    if scale is not None:
        a, b = (tf.constant(v) for v in scale)
        ds = ds.map(as_is(tf, lambda xb, yb: (xb * a + b, yb)), num_parallel_calls=tf.data.AUTOTUNE)
    if examples is not as_given:
        ds = ds.map(as_is(tf, examples), num_parallel_calls=tf.data.AUTOTUNE)
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
    pipelines: Callable | None = field(default=None, repr=False)  # () -> {"feed", "train", "val", "test"}, anew
    feed: Feed | None = field(default=None, repr=False)  # the training split as fit takes it, from any position
    context: object = field(default=None, repr=False)  # what the task keeps beside the splits (a series' rows)
    notes: list[str] = field(default_factory=list)  # what reading did that training says (rows left out, filled)

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
    columns, notes = arrays.columns, list(arrays.notes) + unread_splits(cfg, test=arrays.x_test is not None)
    if columns is not None and columns.get("categories") and s.x_train.ndim == 2 and \
            getattr(cfg, "category_values", "all") == "training":  # a table's one-hot columns
        columns = unseen_categories(s, columns, notes)
    if columns is not None and getattr(cfg, "missing", "error") == "mean":
        columns = mean_filled(s, columns, arrays.origin, notes)
    scale = input_scale(s.x_train, cfg, modality)
    spec = DataSpec(input_shape=(), modality=modality.name, num_classes=len(arrays.class_names),
                    class_names=list(arrays.class_names))
    artifacts = {"scale": scale_artifact(scale)} if scale is not None else {}
    if columns is not None:
        artifacts["columns"] = columns
    data = from_splits(s, spec, cfg, seed, scale, modality, examples, arrays.origin, artifacts)
    data.notes = notes
    return data


def unread_splits(cfg, test: bool, val: bool = False) -> list[str]:
    """The notes for data.test_split and data.validation_split set (off their defaults, above 0) where the data
    has that split of its own (`test`, `val`): an MNIST's test set, an npz's x_test, an image folder's test/,
    the Penn Treebank's ptb.valid.txt. Whether it has one is known only once its files are read."""
    fields = type(cfg).model_fields
    return [f"data.{key}: {getattr(cfg, key)} was not read: the data has its own {name} split, which is used "
            f"({key} carves one only where the data has none; remove it)"
            for key, name, own in (("validation_split", "validation", val), ("test_split", "test", test))
            if own and key in fields and 0 < getattr(cfg, key) != fields[key].default]


def none_carved(cfg, carved: dict[str, tuple[int, int]], unit: str) -> list[str]:
    """The notes for a share set above 0 that rounds to no example: `carved` maps test_split and
    validation_split to (what it was a share of, what it held), counted in `unit`."""
    names = {"test_split": "test", "validation_split": "validation"}
    return [f"data.{key}: {getattr(cfg, key)} of {n:,} {unit} rounds to none, so this run has no {names[key]} "
            f"split (raise {key}, or give more {unit})"
            for key, (n, got) in carved.items() if getattr(cfg, key) > 0 and got == 0]


def unseen_categories(s: Splits, columns: dict, notes: list[str]) -> dict:
    """A category no training row has (a city only in the test rows) is no input: its one-hot column would be 0
    in every row the model trains on, so its weights would keep their random start and shift whatever the rows
    that have it predict. Its column is left out of every split, the rows that have it read as none of their
    column's values (as an empty category does), and a note counts them. The vocabulary (the columns
    artifact) is the training rows', so `dlkit predict` refuses such a value as one training never saw."""
    names = columns["features"]
    seen = s.x_train.any(axis=0)
    encoded = {f"{c}={v}": (c, v) for c, values in columns["categories"].items() for v in values}
    unseen = [j for j, n in enumerate(names) if n in encoded and not seen[j]]
    if not unseen:
        return columns
    keep = np.array([j not in unseen for j in range(len(names))])
    counts = []
    for split_name, attr in (("validation", "x_val"), ("test", "x_test")):
        x = getattr(s, attr)
        if x is not None:
            rows = int(x[:, unseen].any(axis=1).sum())
            if rows:
                counts.append(f"{rows} {split_name} row{'s' if rows != 1 else ''}")
            setattr(s, attr, np.ascontiguousarray(x[:, keep]))
    s.x_train = np.ascontiguousarray(s.x_train[:, keep])
    dropped = [encoded[names[j]] for j in unseen]
    by_column = {c: [v for c2, v in dropped if c2 == c] for c in dict.fromkeys(c for c, _ in dropped)}
    said = "; ".join(f"{c}: {', '.join(map(repr, v))}" for c, v in by_column.items())
    notes.append(f"categories no training row has ({said}) are no inputs: {' and '.join(counts) or 'no row'} with "
                 "them read as none of the column's values")
    return {**columns, "features": [n for j, n in enumerate(names) if keep[j]],
            "categories": {c: [v for v in values if (c, v) not in dropped]
                           for c, values in columns["categories"].items()}}


def mean_filled(s: Splits, columns: dict, origin: str, notes: list[str]) -> dict:
    """data.missing: mean: each empty cell of a numeric feature column (NaN), in every split, becomes the
    column's mean over the training rows alone (so no test row shapes what the model trains on). The columns
    artifact keeps the means (`fill`), for `dlkit predict --csv` to fill its own empty cells alike."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": the column named below
        means = np.nanmean(s.x_train, axis=0)
    names = columns["features"]
    none = [n for n, m in zip(names, means) if np.isnan(m)]
    if none:
        raise DataError(f"{origin}: column {', '.join(map(repr, none))} has no value in the training rows: "
                        "data.missing: mean has no mean to fill it with (drop the column, or fill it)")
    filled = 0
    for x in (s.x_train, s.x_val, s.x_test):
        if x is not None:
            rows, cols = np.nonzero(np.isnan(x))
            x[rows, cols] = means[cols]
            filled += len(rows)
    if filled:
        notes.append(f"data.missing: mean filled {filled} empty cells of numeric columns with their mean over the "
                     f"{len(s.x_train)} training rows")
    encoded = {f"{c}={v}" for c, values in columns.get("categories", {}).items() for v in values}
    return {**columns, "fill": {n: float(m) for n, m in zip(names, means) if n not in encoded}}


def from_splits(s: Splits, spec: DataSpec, cfg, seed: int, scale, modality: Modality, examples: Callable,
                origin: str, artifacts: dict) -> Data:
    """The pipelines of splits already carved (and tokenized, or scaled, where the task does that itself);
    the spec's shapes and counts are filled in from the splits."""
    spec = dataclasses.replace(
        spec, input_shape=tuple(int(d) for d in s.x_train.shape[1:]), num_train=len(s.x_train),
        num_val=0 if s.x_val is None else len(s.x_val), num_test=0 if s.x_test is None else len(s.x_test),
        class_counts=np.bincount(s.y_train, minlength=spec.num_classes).tolist()
        if spec.num_classes and s.y_train.ndim == 1 and s.y_train.dtype.kind in "iu" else [])

    def pipe(x, y):
        return None if x is None else dataset(x, y, cfg, seed, scale, False, modality, examples)

    def pipelines():
        train = feed(s.x_train, s.y_train, cfg, seed, scale, modality, examples)
        return {"feed": train, "train": train.first(), "val": pipe(s.x_val, s.y_val),
                "test": pipe(s.x_test, s.y_test)}

    return Data(**pipelines(), spec=spec, splits=s, scale=scale, origin=origin, modality=modality,
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
        grain = _grain()
        if grain is not None and isinstance(a, grain.IterDataset):  # two prefetched training sources
            return grain.experimental.ZipIterDataset([a, b]).map(lambda ab: examples(*ab))
        _, paired_batches_type = _array_batches_class()
        return paired_batches_type(a, b, examples)
    return tf.data.Dataset.zip((a, b)).map(examples)
