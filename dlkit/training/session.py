"""The one set-up path of train, resume and evaluate: backend, seeds, the task, its data, and the model,
built and compiled or loaded from a checkpoint, inside the placement's scope (one device, or
train.distribution's several: dlkit.backend.place)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import warnings
from dataclasses import dataclass

from dlkit import backend, models, optim, tasks
from dlkit.data.spec import MODALITIES
from dlkit.errors import (DataError, OutOfMemoryError, Problem, RecipeError, first_line, frame_in, is_out_of_memory,
                          keras_reason)
from dlkit.tasks.base import Phase, Task

_commands = threading.local()  # .kept, inside keeps_callers_settings: [the settings before its first open]


@dataclass
class Session:
    recipe: object
    task: Task
    placement: backend.Placement

    @classmethod
    def open(cls, recipe) -> Session:
        """Seeded, so that the data's splits and order and the model's initial weights are reproducible."""
        backend.setup()  # first: importing keras imports TensorFlow, whose start-up log setup silences
        import keras

        if getattr(_commands, "kept", None) == []:
            _commands.kept.append(_settings())
        backend.seed_everything(recipe.seed, recipe.train.deterministic)
        # process-wide, as Keras keeps it: every run sets its own (a float32 run after a mixed one is float32)
        keras.config.set_dtype_policy(recipe.train.precision)
        placement = backend.place(recipe)
        if keras.backend.backend() == "jax" and placement.replicas > 1:
            from dlkit import keras_private

            keras_private.replicate_uneven_batches()
        return cls(recipe, tasks.of(recipe), placement)

    @functools.cached_property
    def data(self):
        """The task's data, read on first use (generating from a GAN needs none)."""
        try:
            data = self.task.load_data(self.recipe)
        except MemoryError as e:  # numpy's "Unable to allocate 464 GiB for an array with shape (58, 2147483647)"
            raise OutOfMemoryError(f"out of memory reading the data ({first_line(e)}): set data.limit (its first N "
                                   "examples), or lower the keys that size each example") from None
        arch = models.ARCHITECTURES[self.recipe.model.arch]
        if arch.inputs and data.spec.modality not in arch.inputs:  # a conv layer met (N, F) as a traceback
            shape = MODALITIES[data.spec.modality].shape
            readers = [a.name for a in models.ARCHITECTURES.values() if data.spec.modality in a.inputs]
            reads = arch.inputs[0]
            raise DataError(f"{data.origin} holds {data.spec.modality} {shape}, and {arch.name} reads {reads} "
                            f"{MODALITIES[reads].shape}: give it {reads}, or pick a model that reads "
                            f"{data.spec.modality} ({', '.join(readers)})")
        reason = self.task.needs_labels(self.recipe)
        if reason and data.spec.num_classes == 0:
            raise DataError(f"{data.origin} has no class labels, and {reason}: give labelled data (an npz with "
                            "y_train, or an image folder with a sub-folder per class), or pick a model that "
                            "learns from the inputs alone (an autoencoder, a VAE, an RBM, an unconditional GAN)")
        if self.task.classifies and data.spec.num_classes == 1:  # it trained, to a trivial 100% accuracy
            raise DataError(f"{data.origin} holds one class only ({data.spec.class_names[0]!r}), and a classifier "
                            "tells two or more apart: give it examples of another class too")
        return data

    def data_of(self, run):
        """The data, checked against what the run trained on (its manifest's data_spec): a file changed since
        (images of another size, more classes) is a DataError saying what changed, where evaluating, drawing or
        resuming met it as a traceback inside the model."""
        data = self.data
        trained = run.read_json(run.manifest).get("data_spec") or {}
        for key, say in (("input_shape", "inputs of shape {}"), ("num_classes", "{} classes")):
            then, now = trained.get(key), getattr(data.spec, key)
            if key == "input_shape":  # a list in JSON
                then, now = None if then is None else tuple(then), tuple(now)
            if then is not None and then != now:
                raise DataError(f"{data.origin} now holds {say.format(now)}, and the run trained on "
                                f"{say.format(then)}: the data changed since {run.root} was trained; put back the "
                                "data it trained on (its recipe.yaml names it), or train a new run on this data")
        return data

    @property
    def steps_per_epoch(self) -> int:
        return optim.steps_per_epoch(self.data.spec.num_train, self.recipe.data.batch_size,
                                     self.recipe.train.steps_per_epoch)

    def model(self, phase: Phase | None = None, earlier: dict | None = None, checkpoint=None, unsafe: bool = False,
              compile: bool = True):
        """The phase's model: built and compiled by the task, or loaded (optimizer state and all) from a
        checkpoint or a finished run's model.keras, in Keras's safe mode unless `unsafe`; with
        `compile=False`, loaded as the model alone (models.load): what drawing, encoding, predicting and
        exporting need."""
        with self.placement.scope():
            if checkpoint is not None:
                return models.load(checkpoint, unsafe, compile)
            try:
                with contextlib.redirect_stdout(sys.stderr):  # a plugin's prints are not the answer (--json)
                    model = self.task.build(self.recipe, self.data.spec, phase, earlier or {})
            except Exception as e:
                plugin = _plugin_frame(e, self.recipe.model.arch)  # an architecture of the user's own
                where = f" ({plugin.filename}:{plugin.lineno}, in {plugin.name})" if plugin else ""
                if isinstance(e, ValueError) and _raised_in_keras(e):
                    # Keras's shape inference: a model section its inputs do not fit
                    raise RecipeError([Problem(
                        "model", f"Keras could not build the model for inputs of shape "
                        f"{tuple(self.data.spec.input_shape)}: {keras_reason(e)}{where}",
                        hint="a smaller net for inputs this size, or larger inputs")]) from None
                if not isinstance(e, ValueError) and is_out_of_memory(e):
                    # its weights alone do not fit (a dense layer over 2000 x 2000 images)
                    raise OutOfMemoryError(
                        f"out of memory building {self.recipe.model.arch} for inputs of shape "
                        f"{tuple(self.data.spec.input_shape)} ({type(e).__name__}): its weights do not fit. Try a "
                        "smaller model (fewer units or filters, more pooling before a dense layer), or smaller inputs "
                        "(data.image_size resizes an image folder's)") from None
                if plugin is not None:  # a bug in it: where, not a traceback
                    raise RecipeError([Problem(
                        "model.arch", f"the build of {self.recipe.model.arch!r} (a plugin's) raised "
                        f"{type(e).__name__}: {first_line(e)}{where}", hint="fix the plugin's code there")]) from None
                raise
            self.task.initialize(model, self.recipe, self.data, phase)
            with warnings.catch_warnings():  # said once, with the reason, in the run's notes
                warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")
                model = self.task.compile(model, self.recipe, self.steps_per_epoch, phase)
            self.task.check_targets(model, self.recipe, self.data)
            self.task.check_monitored(model, self.recipe, self.data, phase)
            self.how_it_runs(model)
            return model

    def how_it_runs(self, model) -> None:
        """Notes, each once, on how a compiled model runs here that its recipe does not foretell: without the
        XLA it asks for, or in float16 on a CPU. A build says them; a resume, maybe on another machine than
        the run began on, says them of the model it loaded."""
        notes = []
        if self.recipe.train.jit_compile is True and getattr(model, "jit_compile", None) is False:
            notes.append(_without_xla(self.recipe))
        if self.recipe.train.precision == "mixed_float16" and backend.slow_float16():
            notes.append("train.precision: mixed_float16 on TensorFlow without a GPU computes float16 on the CPU, "
                         "many times slower than float32 (cnn_mnist: about 90 times, docs/benchmarks.md); on a CPU "
                         "use float32 or mixed_bfloat16, and mixed_float16 on a GPU")
        notes += schedule_notes(self.recipe.train)
        self.data.notes += [note for note in notes if note not in self.data.notes]


def _plugin_frame(e: BaseException, arch: str):
    """The last frame of the traceback in the file of a plugin architecture's `build` (None: dlkit's own
    architecture, or an error raised elsewhere)."""
    if arch in models.BUILT_IN or arch not in models.ARCHITECTURES:
        return None
    return frame_in(e, models.ARCHITECTURES[arch].build)


def schedule_notes(train) -> list[str]:
    """Notes where a learning-rate schedule of the train section (train.schedule, an optimizer's own) does not
    reach its second part within train.epochs: a cosine warm-up as long as the run (cut to end at the last
    step: the rate peaks as training ends, and never decays), or a step schedule whose first cut is at or past
    the end (the rate is never cut). dlkit.optim builds them so, in silence; a DBN's pretraining optimizer
    counts its own epochs."""
    from pydantic import BaseModel

    from dlkit.recipe.schema import ScheduleConfig

    epochs, notes = train.epochs, []

    def walk(section, path):
        for name in type(section).model_fields:
            value, at = getattr(section, name), f"{path}.{name}"
            if isinstance(value, ScheduleConfig):
                first_cut = value.hold_epochs or value.step_epochs
                if value.name == "cosine" and value.warmup_epochs >= epochs:
                    notes.append(f"{at}.warmup_epochs: {value.warmup_epochs:g}, not less than train.epochs "
                                 f"({epochs}): the warm-up is cut to end at the last step, so the learning rate "
                                 "peaks only as training ends and never decays")
                elif value.name == "step" and first_cut >= epochs:
                    notes.append(f"{at}: the first cut, after {first_cut:g} epochs ("
                                 f"{'hold_epochs' if value.hold_epochs else 'step_epochs'}), is not before "
                                 f"train.epochs ({epochs}) ends: the learning rate is never cut")
            elif isinstance(value, BaseModel) and name != "pretrain_optimizer":
                walk(value, at)

    walk(train, "train")
    return notes


def _without_xla(recipe) -> str:
    """Why Keras compiled the model without XLA although the recipe asked for it (its own warning gave none)."""
    import keras

    why = ("TensorFlow's deterministic ops (train.deterministic: true) rule XLA out; set train.deterministic: "
           "false to compile with it" if keras.backend.backend() == "tensorflow" and recipe.train.deterministic
           else "a layer of the model does not support XLA")
    return f"train.jit_compile: true, but Keras compiles this model without XLA: {why}"


def _raised_in_keras(e: BaseException) -> bool:
    """Whether Keras raised it (a frame of its package on the way): dlkit's own ValueErrors are bugs, and keep
    their tracebacks."""
    tb = e.__traceback__
    while tb is not None:
        if f"{os.sep}keras{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def keeps_callers_settings(command):
    """A library entry point (train, evaluate, ...) that leaves the process as its caller had it. A run sets
    process-wide settings as it opens (Session.open: the seeds, TensorFlow's op determinism, Keras's dtype
    policy and distribution), and a program that calls dlkit (a notebook) went on under the last run's:
    its own models built in mixed_bfloat16 after a mixed-precision recipe, its unseeded draws the same each
    time. They, and Python's and numpy's generators, are put back as they were when the command returns."""
    @functools.wraps(command)
    def kept(*args, **kwargs):
        outer, _commands.kept = getattr(_commands, "kept", None), []
        try:
            return command(*args, **kwargs)
        finally:
            if _commands.kept:
                _put_back(_commands.kept[0])
            _commands.kept = outer

    return kept


def _settings() -> dict:
    import keras

    from dlkit import keras_private

    return {"policy": keras.config.dtype_policy(), "distribution": keras.distribution.distribution(),
            "streams": keras_private.global_state(), "tf": backend.tf_globals()}


def _put_back(settings: dict) -> None:
    import keras

    from dlkit import keras_private

    keras.config.set_dtype_policy(settings["policy"])
    keras.distribution.set_distribution(settings["distribution"])
    keras_private.put_back_global_state(settings["streams"])
    backend.set_tf_globals(settings["tf"])
