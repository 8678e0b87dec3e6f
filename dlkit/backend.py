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


def distribution_scope(recipe):
    """Where models are built and loaded. One device today: nothing to open. Spreading a run over several
    devices (keras.distribution on JAX, a tf.distribute strategy on TensorFlow) opens its scope here."""
    return contextlib.nullcontext()


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
