"""The one set-up path of train, resume and evaluate: backend, seeds, the task, its data, and the model,
built and compiled or loaded from a checkpoint, inside the placement's scope (one device, or
train.distribution's several: dlkit.backend.place)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from dlkit import backend, models, optim, tasks
from dlkit.errors import DataError
from dlkit.tasks.base import Phase, Task


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

        backend.seed_everything(recipe.seed, recipe.train.deterministic)
        # process-wide, as Keras keeps it: every run sets its own (a float32 run after a mixed one is float32)
        keras.config.set_dtype_policy(recipe.train.precision)
        return cls(recipe, tasks.of(recipe), backend.place(recipe))

    @functools.cached_property
    def data(self):
        """The task's data, read on first use (generating from a GAN needs none)."""
        data = self.task.load_data(self.recipe)
        reason = self.task.needs_labels(self.recipe)
        if reason and data.spec.num_classes == 0:
            raise DataError(f"{data.origin} has no class labels, and {reason}: give labelled data (an npz with "
                            "y_train, or an image folder with a sub-folder per class), or pick a model that "
                            "learns from the inputs alone (an autoencoder, a VAE, an RBM, an unconditional GAN)")
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
            model = self.task.build(self.recipe, self.data.spec, phase, earlier or {})
            self.task.initialize(model, self.recipe, self.data, phase)
            return self.task.compile(model, self.recipe, self.steps_per_epoch, phase)
