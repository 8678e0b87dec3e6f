"""Importing TensorFlow and Keras once, quietly, and seeding them.

TensorFlow is optional at run time: on a host without it (a JAX-only GPU machine), Keras runs on its
own backend and the data pipeline feeds numpy batches instead of tf.data (see dlkit.data.pipeline).

TensorFlow's C++ runtime writes start-up chatter (oneDNN, CUDA stubs, CPU features) straight to file
descriptor 2 before Python's logging can stop it, so the first import runs with fd 2 pointed at
/dev/null. Set DLKIT_DEBUG=1 to see it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading

_ready = False
# Set by dlkit.cli's SIGTERM/SIGINT handler; training checks it between steps (callbacks.InterruptCheck).
interrupt_requested = threading.Event()


@contextlib.contextmanager
def _silenced_fd2():
    if os.environ.get("DLKIT_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@functools.cache  # a failed import is not retried on every call
def tensorflow():
    """The tensorflow module, or None on a host without it."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def setup():
    """Import Keras (and TensorFlow, the data pipeline's engine where installed) with the noise turned off."""
    global _ready
    if _ready:
        return
    # 3: also TF's C++ "errors" from graph rewriting (e.g. grappler's remapper), which are not failures;
    # real failures arrive as Python exceptions
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _silenced_fd2():
        tf = tensorflow()
        import keras  # noqa: F401

        if tf is not None:
            tf.config.list_physical_devices()  # device discovery logs too (cuInit on GPU-less hosts)
    if tf is not None:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel("ERROR")
    _ready = True


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Python, numpy, TensorFlow and the Keras backend RNGs, and (optionally) deterministic TF kernels."""
    import keras

    keras.utils.set_random_seed(seed)
    tf = tensorflow()
    if deterministic and tf is not None:
        # Also orders stateful random ops in parallel tf.data maps (augmentation), so reruns match.
        tf.config.experimental.enable_op_determinism()


class Placement:
    """Where a run's model lives: one device, or (train.distribution: data_parallel) several on Keras's own
    engines. On JAX a keras.distribution.DataParallel over the device mesh, set for the process (Keras's
    jitted step then splits every batch across the devices and its gradients are the global batch's); on
    TensorFlow a tf.distribute.MirroredStrategy, whose scope the model is built, compiled or loaded in (fit
    then runs each replica on its share and sums the gradients)."""

    def __init__(self, devices: list[str], strategy=None):
        self.devices, self.strategy = devices, strategy

    @property
    def replicas(self) -> int:
        return max(1, len(self.devices))

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def uneven_batch(batch: int | None, count: int):
    """The Problem of a global batch that `count` devices do not split evenly, or None."""
    from dlkit.errors import Problem

    if batch is None or batch % count == 0:
        return None
    return Problem("data.batch_size", f"{batch} is the global batch, split evenly over train.distribution's "
                   f"{count} devices; {batch} is not a multiple of {count}",
                   hint=f"use a multiple of {count}, such as {max(count, batch // count * count)}")


def _devices(backend: str) -> list:
    """The devices a run may spread over. JAX: every process's (once keras.distribution.initialize has joined
    them); TensorFlow: this process's accelerators (its CPU devices where there is none)."""
    if backend == "jax":
        import jax

        return jax.devices()
    tf = tensorflow()
    logical = [d for kind in ("GPU", "TPU") for d in tf.config.list_logical_devices(kind)]
    return logical or tf.config.list_logical_devices("CPU")


def place(recipe) -> Placement:
    """The recipe's placement, set up (raises RecipeError when the devices are not there or the global
    batch does not split evenly over them)."""
    import keras

    from dlkit.errors import Problem, RecipeError

    dist = recipe.train.distribution
    backend = keras.backend.backend()
    if dist.strategy == "none":
        if backend == "jax" and keras.distribution.distribution() is not None:
            keras.distribution.set_distribution(None)  # an earlier run's in this process is process-wide
        return Placement([])
    if backend not in ("jax", "tensorflow"):
        raise RecipeError([Problem("train.distribution", f"data_parallel runs on the jax or tensorflow backend, not "
                                   f"{backend}")])
    devices = _devices(backend)
    count = len(devices) if dist.devices == "auto" else dist.devices
    if count > len(devices):
        seen = ", ".join(sorted({getattr(d, "platform", None) or d.name for d in devices}))
        raise RecipeError([Problem("train.distribution.devices", f"asks for {count} devices; {backend} sees "
                                   f"{len(devices)} ({seen})", hint="use devices: auto, or fewer")])
    chosen = devices[:count]
    problem = uneven_batch(getattr(recipe.data, "batch_size", None), count)
    if problem:
        raise RecipeError([problem])
    if backend == "jax":
        names = [f"{d.platform}:{d.id}" for d in chosen]
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
        return Placement(names)
    names = [d.name for d in chosen]
    return Placement(names, _mirrored(tuple(names)))


@functools.cache
def _mirrored(devices: tuple[str, ...]):
    """One MirroredStrategy per set of devices for the process: strategies made afresh for each run in one
    process (tests, notebooks) share TensorFlow's collective keys and mix up their all-reduces."""
    return tensorflow().distribute.MirroredStrategy(list(devices))


def describe_device() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        return f"jax:{devices[0].platform}:{devices[0].device_kind} x{len(devices)}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow:GPU x{len(gpus)}" if gpus else "tensorflow:CPU"
    return backend


def gradient(fn, x):
    """d fn(x) / d x for a scalar function of one tensor (numpy in, numpy out), on the backend Keras runs on:
    the one place dlkit differentiates by hand (a language model's gradient per time step)."""
    import keras
    import numpy as np

    name = keras.backend.backend()
    if name == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v))(keras.ops.convert_to_tensor(x)))
    if name == "tensorflow":
        import tensorflow as tf

        v = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = fn(v)
        return tape.gradient(out, v).numpy()
    if name == "torch":
        import torch

        v = torch.tensor(np.asarray(x), requires_grad=True)
        fn(v).backward()
        return v.grad.detach().cpu().numpy()
    raise NotImplementedError(f"gradients on the {name} backend")
