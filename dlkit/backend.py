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
import importlib.util
import os
import sys
import warnings
from pathlib import Path

_ready = False
_cluster = None  # the Cluster this process joined (several processes, JAX), or None: one process
_alone = False  # inside alone(): this process works by itself though it joined a cluster


@contextlib.contextmanager
def native_log_silenced():
    """File descriptor 2 pointed at /dev/null inside: what C++ libraries log there (TensorFlow's start-up,
    LiteRT's delegate) stays out of a command's output. Python's own errors are raised, not lost."""
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
    with native_log_silenced():
        try:  # (TensorFlow's import imports Keras too)
            tf = tensorflow()
            import keras  # noqa: F401
        except (ImportError, ValueError) as e:  # KERAS_BACKEND naming no backend, or one not installed
            raise _backend_error(e) from None

        if tf is not None:
            tf.config.list_physical_devices()  # device discovery logs too (cuInit on GPU-less hosts)
    import absl.logging  # Keras's own messages go there when its interactive logging is off (--quiet)

    absl.logging.set_verbosity(absl.logging.ERROR)
    # Keras warns that a one-input model's inputs "doesn't match the expected structure" when a loaded
    # regression is given its array (seen on JAX without TensorFlow, under `evaluate --data -q`); it reads the
    # array as it should (the figures equal TensorFlow's), so the warning is only noise on a quiet command
    warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match the expected structure",
                            category=UserWarning)
    if tf is not None:
        tf.get_logger().setLevel("ERROR")
    if keras.backend.backend() == "jax":
        compilation_cache()
    _ready = True


def _backend_error(e: Exception):
    """Keras could not be imported: the backend chosen (KERAS_BACKEND, else keras.json's) named none of Keras's
    or one this host lacks ("Unable to import backend : nonsense", torch's ModuleNotFoundError: tracebacks)."""
    from dlkit.errors import UsageError, first_line

    chosen = os.environ.get("KERAS_BACKEND")
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    where = f"KERAS_BACKEND={chosen}" if chosen else f"the backend {home / 'keras.json'} names, if any"
    return UsageError(f"Keras could not load its backend ({where}): {first_line(e)}; dlkit trains on tensorflow or "
                      "jax: set KERAS_BACKEND to one this host has installed, or unset it")


@contextlib.contextmanager
def keras_console(shown: bool):
    """Keras's own console output (a dataset download's progress, which dlkit sends to stderr) off inside
    when not `shown` (--quiet), and as it was after: Keras's interactive logging, off, sends its messages to
    absl logging, which setup() keeps to errors. tensorflow-datasets' progress bars follow the same switch."""
    import keras

    was = keras.config.is_interactive_logging_enabled()
    if not shown:
        keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if was:
            keras.config.enable_interactive_logging()


CACHE_MAX_BYTES = 2 * 2**30  # the compilation cache's bound: the least recently used programs go first


def compilation_cache_folder() -> Path | None:
    """Where dlkit keeps JAX's compiled programs between processes: DLKIT_COMPILATION_CACHE (a folder, or
    `off`), by default `dlkit/jax` in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache); None if off."""
    text = os.environ.get("DLKIT_COMPILATION_CACHE")
    if text is not None and text.strip().lower() in ("off", "0", "false", "no", "none", ""):
        return None
    if text:
        return Path(text).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlkit" / "jax"


@functools.cache
def compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache, so that a process compiling a program some earlier run
    already compiled (the same recipe's rerun or resume, a sweep's next seed, `evaluate`) reads it instead.
    A cache the user set up through JAX itself (JAX_COMPILATION_CACHE_DIR) stays theirs, with their settings;
    dlkit's own is bounded (CACHE_MAX_BYTES, least recently used first out, a file lock for processes sharing
    it) and keeps JAX's threshold of what is worth keeping (programs that took a second or more to compile:
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS). A folder that cannot be made or written leaves the cache off:
    runs only compile as they would without it; so does a host without the filelock package (JAX locks a
    bounded cache with it). The folder in use, or None."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    folder = compilation_cache_folder()
    if folder is None:
        return None
    # filelock (JAX's lock on a bounded cache, which processes may share) is a dependency of dlkit's, missing
    # only where packages were put together by hand (a bare GPU host)
    if importlib.util.find_spec("filelock") is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    return str(folder)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Python, numpy, TensorFlow and the Keras backend RNGs, and (optionally) deterministic TF kernels."""
    import keras

    keras.utils.set_random_seed(seed)
    tf = tensorflow()
    if deterministic and tf is not None:
        # Also orders stateful random ops in parallel tf.data maps (augmentation), so reruns match.
        tf.config.experimental.enable_op_determinism()


def tf_globals() -> tuple:
    """TensorFlow's global seed and whether its op determinism is on, as seed_everything sets them ((None,
    False) without TensorFlow), to give back to set_tf_globals."""
    tf = tensorflow()
    if tf is None:
        return None, False
    from tensorflow.python.framework import config  # tf.config exports enable_op_determinism alone

    return tf.compat.v1.get_seed(None)[0], config.is_op_determinism_enabled()


def set_tf_globals(settings: tuple) -> None:
    tf = tensorflow()
    if tf is None:
        return
    from tensorflow.python.framework import config

    tf.random.set_seed(settings[0])
    (config.enable_op_determinism if settings[1] else config.disable_op_determinism)()


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


class Cluster:
    """Several processes (on one machine or several) joined into one run by keras.distribution.initialize on
    JAX: the coordinator's host:port (process 0's), how many processes there are, and which one this is."""

    def __init__(self, coordinator: str | None, processes: int, process_id: int):
        self.coordinator, self.processes, self.process_id = coordinator, processes, process_id

    def __repr__(self):
        return f"process {self.process_id} of {self.processes} (coordinator {self.coordinator})"


def cluster(coordinator: str | None = None, processes: int | None = None, process_id: int | None = None):
    """The Cluster the flags describe, or where they are not given Keras's own KERAS_DISTRIBUTION_JOB_ADDRESSES,
    KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID; None for a run of one process.
    Raises UsageError for an incomplete or impossible description."""
    from dlkit.errors import UsageError

    def from_env(name):
        text = os.environ.get(name)
        if text is None or text == "":
            return None
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{name}={text!r} is not a whole number") from None

    coordinator = coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES") or None
    processes = processes if processes is not None else from_env("KERAS_DISTRIBUTION_NUM_PROCESSES")
    process_id = process_id if process_id is not None else from_env("KERAS_DISTRIBUTION_PROCESS_ID")
    if coordinator is None and process_id is None and processes in (None, 1):
        return None
    missing = [flag for flag, value in (("--coordinator HOST:PORT", coordinator), ("--processes N", processes),
                                        ("--process-id I", process_id)) if value is None]
    if missing:
        raise UsageError(f"a run over several processes needs the coordinator's address, the number of processes "
                         f"and this process's id; missing {', '.join(missing)} (or Keras's KERAS_DISTRIBUTION_"
                         "JOB_ADDRESSES, _NUM_PROCESSES and _PROCESS_ID)")
    if processes < 1 or not 0 <= process_id < processes:
        raise UsageError(f"--process-id {process_id} is not one of the {processes} processes' ids (0 to "
                         f"{processes - 1})")
    first = coordinator.split(",")[0]
    host, _, port = first.rpartition(":")
    if not host or not (port.isascii() and port.isdecimal()):
        raise UsageError(f"--coordinator {coordinator!r} is not HOST:PORT (process 0's address, e.g. 10.0.0.1:1234)")
    return Cluster(coordinator, processes, process_id)


def join(c: Cluster) -> None:
    """Join this process to the others of the run (keras.distribution.initialize): afterwards the JAX devices
    are every process's, and a data_parallel placement spans them. Only on JAX, and only with tf.data, which
    Keras shards over the processes (each reads its part of every global batch)."""
    global _cluster
    import keras

    from dlkit.errors import UsageError, first_line

    if _cluster is not None:
        return
    if keras.backend.backend() != "jax":
        raise UsageError(f"a run over several processes needs the JAX backend (KERAS_BACKEND=jax), not "
                         f"{keras.backend.backend()}: Keras 3's fit does not run TensorFlow's MultiWorkerMirroredStrategy "
                         "(keras-team/keras#20585); on TensorFlow, data_parallel spreads a run over one machine's devices")
    if tensorflow() is None:
        raise UsageError("a run over several processes feeds its batches through tf.data, which Keras splits between "
                         "the processes; install TensorFlow (tensorflow-cpu is enough) on every machine")
    import jax

    try:  # processes on CPUs reach each other through gloo; GPUs use NCCL whatever this says
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):
        pass
    try:
        # gloo says on stdout that it connected; stdout is for --json's one object, so it says so on stderr.
        # The barrier makes the connection now, and waits for every process before the data is read
        with _fd1_to_fd2():
            keras.distribution.initialize(c.coordinator, c.processes, c.process_id)
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("dlkit: every process joined")
    except Exception as e:  # noqa: BLE001 - jax raises RuntimeError/XlaRuntimeError; none is a dlkit bug
        raise UsageError(f"could not join the run's {c.processes} processes as {c!r}: {type(e).__name__}: "
                         f"{first_line(e)}; check that every process "
                         "was started with the same --coordinator and --processes, each with its own --process-id, "
                         "and that process 0's port is reachable") from None
    # each process's share of a split comes in batches whose number tf.data cannot tell ahead, so Keras's
    # validation warns that its input "ran out of data" at the end of every pass; training's stream is endless
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
    _cluster = c


@contextlib.contextmanager
def _fd1_to_fd2():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def process_index() -> int:
    """This process's place in the run: 0 alone, or the process writing the run directory."""
    return _cluster.process_id if _cluster is not None else 0


def process_count() -> int:
    return _cluster.processes if _cluster is not None else 1


def whole_batches() -> bool:
    """Whether every batch must be a whole one: in a run over several processes Keras gives each process an
    equal share of every global batch, which a shorter last batch would not split into (its few examples are
    left out of that epoch, or of that split's measure)."""
    return process_count() > 1 and not _alone


def accelerator_memory() -> int | None:
    """Bytes of memory on the accelerator that JAX trains on, when the data may be kept there: the JAX
    backend on a GPU or TPU, one device, no distribution set. None otherwise (TensorFlow, which feeds from
    tf.data; JAX on the CPU, where device memory is host memory; several devices, which Keras feeds by
    splitting host batches over them). A device that does not report its memory is taken to have 16 GiB."""
    import keras

    if keras.backend.backend() != "jax" or keras.distribution.distribution() is not None:
        return None
    import jax

    if jax.default_backend() == "cpu":
        return None
    stats = jax.local_devices()[0].memory_stats() or {}
    return int(stats.get("bytes_limit", 0)) or 16 * 2**30


@contextlib.contextmanager
def alone():
    """This process by itself, inside a run over several: no distribution, and splits with their last short
    batch. What a finished run does after training (its test measures, pictures) runs this way on every
    process, on a model loaded from the run's saved file, so that no process waits on another."""
    global _alone
    import keras

    saved = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    _alone = True
    try:
        yield
    finally:
        keras.distribution.set_distribution(saved)
        _alone = False


def broadcast_text(text: str) -> str:
    """Process 0's `text`, on every process of the run (a collective: all of them must call it)."""
    if _cluster is None:
        return text
    import numpy as np
    from jax.experimental import multihost_utils

    raw = np.zeros(1024, np.uint8)
    data = text.encode()[:1024]
    raw[:len(data)] = np.frombuffer(data, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(raw))
    return bytes(out[out != 0].tolist()).decode()


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
    if dist.strategy == "none" and _cluster is not None:
        dist = type(dist)(strategy="data_parallel", devices="auto")  # joined processes share every run
    if dist.strategy == "none":
        if backend == "jax" and keras.distribution.distribution() is not None:
            keras.distribution.set_distribution(None)  # an earlier run's in this process is process-wide
        return Placement([])
    if backend not in ("jax", "tensorflow"):
        raise RecipeError([Problem("train.distribution", f"data_parallel runs on the jax or tensorflow backend, not "
                                   f"{backend}")])
    if backend == "tensorflow" and getattr(recipe.model, "stateful", False):
        raise RecipeError([Problem("train.distribution", "a stateful model (model.stateful: true) carries a state for "
                                   "each row of the global batch, and TensorFlow's MirroredStrategy gives each device "
                                   "only its share of the rows", hint="train it with KERAS_BACKEND=jax, whose data "
                                   "parallelism keeps the global batch whole, or on one device, or set model.stateful: "
                                   "false")])
    devices = _devices(backend)
    count = len(devices) if dist.devices == "auto" else dist.devices
    if count > len(devices):
        seen = ", ".join(sorted({getattr(d, "platform", None) or d.name for d in devices}))
        raise RecipeError([Problem("train.distribution.devices", f"asks for {count} devices; {backend} sees "
                                   f"{len(devices)} ({seen})", hint="use devices: auto, or fewer")])
    if _cluster is not None and count != len(devices):
        raise RecipeError([Problem("train.distribution.devices", f"asks for {count} devices; a run over "
                                   f"{_cluster.processes} processes spans all of their {len(devices)}",
                                   hint="use devices: auto")])
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


def mirrored() -> bool:
    """Whether this runs inside a TensorFlow MirroredStrategy's scope (a data-parallel run's build and compile)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1


@functools.cache
def _mirrored(devices: tuple[str, ...]):
    """One MirroredStrategy per set of devices for the process: strategies made afresh for each run in one
    process (tests, notebooks) share TensorFlow's collective keys and mix up their all-reduces."""
    return tensorflow().distribute.MirroredStrategy(list(devices))


# `dlkit tune` hands a trial its stopping rule (median or halving) in this variable (callbacks.Pruning reads it)
TUNE_PRUNE_VARIABLE = "DLKIT_TUNE_PRUNE"

# The CPU thread counts a process's libraries read from the environment as they start: numpy's BLAS
# (OpenBLAS, MKL) and OpenMP, and TensorFlow's two thread pools
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS")


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container or `taskset` narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_settings() -> dict[str, str] | None:
    """The thread counts set in this process's environment (THREAD_VARIABLES), or None: each library's own."""
    return {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ} or None


def share_of_cores(processes: int, environ: dict[str, str], cores: int | None = None) -> tuple[dict[str, str], int]:
    """The environment for one of `processes` run at a time on this machine, and its thread count: each gets
    cores // processes (at least 1) for every THREAD_VARIABLES count the user has not set. Every library
    otherwise starts a thread per core in every process, and they contend: a sweep of two RBM members at a time
    on 2 cores took 19.6 to 49.9 s over five rounds with a thread per core each, 17.5 to 19.5 s with one each
    (docs/benchmarks.md)."""
    share = max(1, (cores or cpu_cores()) // processes)
    return {**{k: str(share) for k in THREAD_VARIABLES}, **environ}, share


def slow_float16() -> bool:
    """Whether float16 computes far slower than float32 here: TensorFlow without a GPU (its CPU kernels'
    float16: cnn_mnist trained about 90 times slower in mixed_float16, docs/benchmarks.md). JAX's CPU
    computes it at about float32's speed."""
    import keras

    tf = tensorflow() if keras.backend.backend() == "tensorflow" else None
    return tf is not None and not tf.config.list_physical_devices("GPU")


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


def compiled(fn):
    """`fn` compiled once, for a small function of tensors that is called eagerly again and again (an
    optimizer's learning-rate schedule, read at each epoch's end). On JAX an eager call of a Keras function
    with an `ops.cond` in it (a schedule's warm-up) traces and compiles the cond anew every time, since its
    branches are new Python functions at each call: on a GPU that costs about what a whole MNIST epoch does.
    Elsewhere `fn` itself (TensorFlow's and PyTorch's eager ops compile nothing)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def to_host(variables) -> list:
    """Each variable's value as a numpy array of its own (a copy, whatever the variables do next). On JAX the
    transfers start together and are then waited for, not one after another: an epoch's checkpoint copies
    every variable of a model and its optimizers (about a hundred for a small CNN under Adam), and each
    transfer on its own waits for the device's round trip."""
    import keras
    import numpy as np

    if keras.backend.backend() == "jax":
        import jax

        return [np.array(a) for a in jax.device_get([v.value for v in variables])]
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


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
