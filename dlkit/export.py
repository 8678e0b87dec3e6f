"""`export(run_dir, format)`: a finished run's model in a deployable format, through Keras's own
`model.export`, the library function behind `dlkit export`.

- `saved_model`: a TensorFlow SavedModel folder (`serve` and `serving_default` endpoints), for TF Serving
  and TensorFlow.
- `onnx`: an ONNX file (Keras converts through tf2onnx), for onnxruntime and the ONNX world.
- `litert`: a LiteRT (TensorFlow Lite) flatbuffer, for phones and microcontrollers.

What is exported is the task's deployable model (`Task.exported`): a classifier whole (on raw inputs: its
input scale as its first layer), a GAN's or a VAE's generator, a CycleGAN's A-to-B generator (or with `domain`
"B" its B-to-A one). Every export is loaded back after writing, by the runtime it is
for (TensorFlow, onnxruntime, the LiteRT interpreter), and must give the Keras model's outputs on probe
inputs drawn to the model's input signature; a file that does not is removed and the command fails (exit
7). The check's figures are kept in the run's `exports.json`. Nothing is overwritten without `--force`, and a
replaced export is only removed once its successor has passed.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from dlkit import tasks
from dlkit.errors import EXIT_EXPORT, DlkitError, StorageError, UsageError, first_line
from dlkit.evaluate import finished
from dlkit.rundir import RunDir
from dlkit.training.session import keeps_callers_settings

# dlkit's name -> (Keras's format name, the default file or folder under RUN/export/, what reads it back)
FORMATS = {
    "saved_model": ("tf_saved_model", "saved_model", "tensorflow"),
    "onnx": ("onnx", "model.onnx", "onnxruntime"),
    "litert": ("litert", "model.tflite", "ai_edge_litert"),
}
PROBE_BATCH = 4
PROBE_LENGTH = 12  # a free axis but the batch (a sequence's time steps): long enough that a recurrence runs
EXTRA = "pip install 'dlkit[export]' (make install does)"


class ExportMismatch(DlkitError):
    """The export, loaded back, does not give the model's outputs."""

    exit_code = EXIT_EXPORT


def _require(fmt: str) -> None:
    from dlkit import backend

    backend.setup()  # before keras: it imports TensorFlow, whose start-up log setup silences
    import keras

    if importlib.util.find_spec("tensorflow") is None:
        raise UsageError("dlkit export writes every format through TensorFlow, which this host does not have (the "
                         "JAX-only GPU host); export the run on a machine with dlkit's full install (make install)")
    if fmt == "litert" and keras.backend.backend() not in ("tensorflow", "torch"):
        raise UsageError(f"Keras exports LiteRT from the TensorFlow or PyTorch backend, not "
                         f"{keras.backend.backend()}; run it as KERAS_BACKEND=tensorflow dlkit export ...")
    if fmt == "onnx" and keras.backend.backend() == "jax" and importlib.util.find_spec("jax2onnx") is None:
        raise UsageError("Keras exports ONNX from the JAX backend through jax2onnx, which is not installed here; "
                         "run it as KERAS_BACKEND=tensorflow dlkit export ... (the run's model file is the same on "
                         "either backend), or pip install jax2onnx")
    needs = {"onnx": ["tf2onnx", "onnxruntime"], "litert": ["ai_edge_litert"]}.get(fmt, [])
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--format {fmt} needs {', '.join(missing)}, not installed here: {EXTRA}")


def probe_inputs(model, batch: int = PROBE_BATCH, seed: int = 0) -> list[np.ndarray]:
    """One batch per model input, drawn to its signature (a free axis other than the batch, a sequence's
    time steps, PROBE_LENGTH long): integer inputs (token ids, labels) as ids every embedding of the model
    accepts, float inputs from a standard normal."""
    import keras

    rng = np.random.default_rng(seed)
    embeddings = [layer.input_dim for layer in _layers(model) if isinstance(layer, keras.layers.Embedding)]
    high = min(embeddings) if embeddings else 2
    out = []
    for tensor in model.inputs:
        shape = tuple(batch if i == 0 and d is None else (d or PROBE_LENGTH) for i, d in enumerate(tensor.shape))
        if "int" in str(tensor.dtype):
            out.append(rng.integers(0, high, shape).astype(str(tensor.dtype)))
        else:
            out.append(rng.standard_normal(shape).astype(str(tensor.dtype)))
    return out


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def _outputs(value) -> list[np.ndarray]:
    if isinstance(value, dict):
        value = [value[k] for k in sorted(value, key=lambda k: (len(k), k))]
    if not isinstance(value, (list, tuple)):
        value = [value]
    return [np.asarray(v) for v in value]


def _model_outputs(model, argument) -> list[np.ndarray]:
    """The Keras model's outputs for its call argument, as numpy arrays in order."""
    import keras

    return _outputs(keras.tree.map_structure(keras.ops.convert_to_numpy, model(argument, training=False)))


def _argument(inputs: list):
    """A model's one call argument: its single input, or the list of them."""
    return inputs[0] if len(inputs) == 1 else list(inputs)


def reload_outputs(fmt: str, path: Path, model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of the written export for `inputs`, computed by the runtime the format is for."""
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # held while `serve` runs: it owns the variables
        return _outputs(loaded.serve(_argument(inputs)))
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {i.name: x for i, x in zip(session.get_inputs(), inputs)}
        return [np.asarray(v) for v in session.run(None, feed)]
    from ai_edge_litert.interpreter import Interpreter

    from dlkit.backend import native_log_silenced

    with native_log_silenced():  # LiteRT's C++ logs its CPU delegate ("INFO: Created TensorFlow Lite XNNPACK ...")
        interpreter = Interpreter(model_path=str(path))
        names = [t.name for t in model.inputs]
        signature = interpreter.get_signature_list()["serving_default"]["inputs"]
        if set(names) == set(signature):
            feed = dict(zip(names, inputs))
        elif len(signature) == len(inputs) == 1:
            feed = {signature[0]: inputs[0]}
        else:
            raise ExportMismatch(f"{path}: the LiteRT signature's inputs {signature} are not the model's {names}")
        return _outputs(interpreter.get_signature_runner()(**feed))


def _check(served, fmt: str, written: Path, what: str, batch: int | None) -> float:
    """Export `served` to `written` (with the batch fixed at `batch`, if given) and compare it, reloaded,
    with the Keras model on probe inputs: the largest difference."""
    import keras

    inputs = probe_inputs(served, batch or PROBE_BATCH)
    # called before exporting too: Keras exports only a model that has been called (a loaded one has not)
    expected = _model_outputs(served, _argument(inputs))
    kwargs = {}
    if batch is not None:
        specs = [keras.InputSpec(shape=(batch, *t.shape[1:]), dtype=t.dtype, name=t.name) for t in served.inputs]
        kwargs["input_signature"] = specs if len(specs) == 1 else [specs]  # the model's one argument
    try:
        with warnings.catch_warnings():  # Keras's tf2onnx shim probes np.object, which numpy warns of
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            served.export(str(written), format=FORMATS[fmt][0], verbose=False, **kwargs)
    except Exception as e:  # noqa: BLE001 - a converter's failure is the user's answer, not a traceback
        raise ExportMismatch(f"Keras could not export {what} as {fmt}: {type(e).__name__}: {first_line(e)}") from None
    try:
        got = reload_outputs(fmt, written, served, inputs)
    except ExportMismatch:
        raise
    except Exception as e:  # noqa: BLE001 - the runtime's refusal is the answer
        raise ExportMismatch(f"the {fmt} export of {what} was written but {FORMATS[fmt][2]} could not run it: "
                             f"{type(e).__name__}: {first_line(e)}; the export was removed") from None
    return _compare(expected, got, fmt, what)


def destination(run: RunDir, fmt: str, out: Path | None, suffix: str = "") -> Path:
    """Where an export goes: `out`, else its format's default under RUN/export/, `suffix` before the extension
    (a CycleGAN's B-to-A generator: model_b_to_a.onnx)."""
    if out is not None:
        return Path(out)
    name = Path(FORMATS[fmt][1])
    return run.root / "export" / f"{name.stem}{suffix}{name.suffix}"


@keeps_callers_settings
def export(run_dir, fmt: str, out=None, force: bool = False, unsafe: bool = False, domain: str | None = None) -> dict:
    """Write the run's deployable model in `fmt`, check it loaded back, and return what was written. `domain`:
    a translation model's, the domain its exported generator translates from ("A" or "B"; None: A)."""
    from dlkit.tasks.base import domain_of
    from dlkit.training.session import Session

    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    # the A-to-B generator keeps the names it always had; --from's value is checked once the run's task is
    # known to read it (a DCGAN's --from C is said to be a translation model's option, not a wrong domain)
    suffix = "_b_to_a" if str(domain).upper() == "B" else ""
    run = finished(RunDir.open(run_dir))
    target = destination(run, fmt, out, suffix)
    if fmt == "litert" and target.suffix != ".tflite":
        raise UsageError(f"--out {target}: a LiteRT model's file name ends in .tflite")
    if fmt == "onnx" and target.suffix != ".onnx":
        raise UsageError(f"--out {target}: an ONNX model's file name ends in .onnx")
    if fmt == "saved_model" and target.suffix in (".onnx", ".tflite"):  # x.onnx was a SavedModel folder
        raise UsageError(f"--out {target}: a SavedModel is a folder, and a name ending in {target.suffix} is "
                         f"{'ONNX' if target.suffix == '.onnx' else 'LiteRT'}'s: name the folder without it, or "
                         f"give --format {'onnx' if target.suffix == '.onnx' else 'litert'}")
    try:
        str(target.resolve()).encode("utf-8")
    except UnicodeEncodeError:  # TensorFlow's writers take UTF-8 paths: it was a UnicodeEncodeError, said as
        # Keras's failure to export the model
        raise UsageError(f"{target}: its path holds a name whose bytes are not UTF-8 (a Latin-1 name); the "
                         "exporters write only under UTF-8 paths: give --out a path elsewhere, or rename the "
                         "folder") from None
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to replace it (after the new export has passed its check)")
    _require(fmt)
    run.read_json(run.root / "exports.json")  # an unreadable record is said before the export, as evaluate does
    recipe = tasks.load_run_recipe(run.recipe)
    tasks.refuse_unread(tasks.of(recipe), domain=domain)
    domain = domain_of(domain)
    session = Session.open(recipe)
    model = session.model(checkpoint=run.model, unsafe=unsafe, compile=False)  # no optimizer state
    served, what = session.task.exported(run, recipe, model, **({"domain": domain} if domain else {}))
    notes = []
    if fmt == "litert" and _mixed(served):
        served, mixed = _in_float32(served), served
        notes.append(f"computes in float32: the run computed in 16 bits ({recipe.train.precision}), which LiteRT's "
                     f"builtin runtime does not take (its weights are float32 either way); on probe inputs its outputs "
                     f"are within {_difference(mixed, served):.2g} of the run's model")

    record = write_checked(served, what, fmt, target, notes)
    with run.record(run.root / "exports.json") as exports:
        exports[fmt + suffix] = record
    return {"status": "completed", "run_dir": str(run.root), **record}


def _mixed(model) -> bool:
    return any(layer.dtype_policy.name.startswith("mixed_") for layer in _layers(model))


def _difference(a, b) -> float:
    """The largest difference between two models' outputs on probe inputs."""
    inputs = _argument(probe_inputs(a))
    ours, theirs = (_model_outputs(m, inputs) for m in (a, b))
    return max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(ours, theirs))


def _in_float32(model):
    """The model with every layer's dtype policy float32 and the same weights (a mixed-precision model keeps its
    variables in float32): its config, each "mixed_..." policy in it made "float32", read back."""
    import keras

    def as_float32(node):
        if isinstance(node, dict):
            policy = "DTypePolicy" in str(node.get("class_name"))
            if policy and str(node.get("config", {}).get("name")).startswith("mixed_"):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: as_float32(v) for k, v in node.items()}
        return [as_float32(v) for v in node] if isinstance(node, list) else node

    process = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # for what the config leaves to the process's policy
    try:
        copy = keras.saving.deserialize_keras_object(as_float32(keras.saving.serialize_keras_object(model)))
    finally:
        keras.config.set_dtype_policy(process)
    copy.set_weights(model.get_weights())
    return copy


def write_checked(served, what: str, fmt: str, target: Path, notes: list | None = None) -> dict:
    """Export the Keras model `served` (`what` in words) to `target` in `fmt` and check it loaded back; an
    existing `target` is replaced only once the new export has passed. Returns the export's record, with
    `notes` first among its notes."""
    import keras

    scratch = target.parent / f".{target.name}.partial"  # written and checked here, then moved into place
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove(scratch)
        scratch.mkdir()
    except OSError as e:
        raise StorageError(f"cannot write the export beside {target}: {e}") from None
    written = scratch / target.name
    start = time.perf_counter()
    notes, batch = list(notes or ()), None
    try:
        try:
            diff = _check(served, fmt, written, what, None)
        except ExportMismatch as e:
            if fmt != "litert" or "Select TensorFlow op" not in str(e):
                raise
            # a recurrent layer's loop over a batch of any size needs TensorFlow's select ops, which LiteRT's
            # builtin runtime lacks; at a fixed batch the converter lowers it to builtin ops
            _remove(written)
            batch = 1
            diff = _check(served, fmt, written, what, batch)
            notes.append("takes a batch of exactly 1 (at any batch size its recurrent loop would need TensorFlow's "
                         "select ops, which LiteRT's builtin runtime lacks)")
        _replace(target, written)
    finally:
        _remove(scratch)
    return {
        "format": fmt, "path": str(target), "model": what, "backend": keras.backend.backend(),
        "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": str(t.dtype)} for t in served.inputs],
        "outputs": [{"shape": list(t.shape), "dtype": str(t.dtype)} for t in served.outputs],
        "checked_with": FORMATS[fmt][2], "probe_batch": batch or PROBE_BATCH, "batch": batch, "max_abs_diff": diff,
        "notes": notes, "size_bytes": _size(target), "wall_time_s": round(time.perf_counter() - start, 3),
    }


def _compare(expected, got, fmt: str, what: str) -> float:
    if len(expected) != len(got):
        raise ExportMismatch(f"the {fmt} export of {what} gives {len(got)} outputs; the model gives {len(expected)}")
    worst = 0.0
    for k, (e, g) in enumerate(zip(expected, got)):
        if e.shape != g.shape:
            raise ExportMismatch(f"the {fmt} export's output {k} has shape {g.shape}; the model's is {e.shape}")
        diff = float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)))) if e.size else 0.0
        scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
        if not np.isfinite(diff) or diff > 1e-3 * scale:
            raise ExportMismatch(f"the {fmt} export of {what}, loaded back, differs from the Keras model on probe "
                                 f"inputs: output {k} off by up to {diff:.3g} (allowed {1e-3 * scale:.3g}); the "
                                 "export was removed")
        worst = max(worst, diff)
    return worst


def size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _replace(target: Path, written: Path) -> None:
    """`written` moved to `target`; an export already there is moved aside first and removed only once the new
    one is in place, so that an interrupt between the two leaves the old one, never neither."""
    aside = target.parent / f".{target.name}.replaced"
    if target.exists():
        _remove(aside)
        target.rename(aside)
    try:
        written.rename(target)
    except BaseException:
        if aside.exists() and not target.exists():
            aside.rename(target)
        raise
    _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
