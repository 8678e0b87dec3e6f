"""The grid a model draws each epoch (samples, reconstructions), and a generative model's diversity
statistic and warnings beside it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from dlkit import images
from dlkit.files import replace_atomic
from dlkit.rundir import PhaseDir, RunDir
from dlkit.tasks.base import by_itself


class EpochGrid(keras.callbacks.Callback):
    """Each epoch, `draw()` (images in the model's scale, `rows` rows) as samples/epoch_NNN.png in the phase's
    folder `where`; at the end the last grid as `final` and the epochs animated in progress.gif. A resumed
    run's montage starts with the grids its earlier epochs wrote."""

    def __init__(self, where: PhaseDir, draw: Callable, rows: int, scale, final: Path, initial_epoch: int = 0):
        super().__init__()
        self.where, self.draw, self.rows, self.scale, self.final = where, draw, rows, scale, final
        self.frames = [p for p in (where.sample_grid(e) for e in range(1, initial_epoch + 1)) if p.is_file()]

    def on_epoch_end(self, epoch, logs=None):
        path = self.where.sample_grid(epoch + 1)
        images.save_png(images.grid(images.to_uint8(self.draw(), self.scale), self.rows), path)
        self.frames.append(path)

    def on_train_end(self, logs=None):
        if self.frames:
            replace_atomic(self.final, lambda tmp: shutil.copyfile(self.frames[-1], tmp))
            images.save_gif(self.frames, self.where.progress_gif)


class SampleGrid(EpochGrid):
    """Watching a generative model train: the grid, a diversity statistic against real data (mode collapse
    shows as a ratio falling toward 0) and a warning when the discriminator overpowers the generator.

    `fakes()` gives the samples whose diversity is measured, in the model's scale; `real` holds real images
    in that scale."""

    def __init__(self, run: RunDir, reporter, draw: Callable, rows: int, fakes: Callable, real: np.ndarray,
                 scale, overpower_epochs: int, initial_epoch: int = 0, every: int | None = None):
        super().__init__(run, draw, rows, scale, run.samples, initial_epoch)
        self.reporter, self.fakes, self.every, self.epoch = reporter, fakes, every, initial_epoch
        # without a grid every N steps the batch hook does nothing, and may run in Keras's callback thread
        self.async_safe = not every
        self.real_diversity = images.mean_pairwise_distance(real)
        self.overpower_epochs, self.pinned = overpower_epochs, 0
        self.warnings = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        """`train.sample_every`: the grid every N steps, named by the run's step count (samples/step_NNNNNNN.png)."""
        steps = (self.params or {}).get("steps") or 0
        step = self.epoch * steps + batch + 1
        if self.every and step % self.every == 0:
            # Keras on JAX keeps the weights off the model inside an epoch: put them back for the generator's draw
            sync = getattr(self.model, "jax_state_sync", None)
            if sync is not None:
                sync()
            path = self.where.root / "samples" / f"step_{step:07d}.png"
            path.parent.mkdir(exist_ok=True)
            with by_itself(self.model):  # (at an epoch's end the fit's ProcessLocal does this)
                drawn = self.draw()
            images.save_png(images.grid(images.to_uint8(drawn, self.scale), self.rows), path)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        logs = logs if logs is not None else {}
        # fake/real mean pairwise distance: ~1 is as varied as the data, near 0 is mode collapse
        logs["diversity"] = images.mean_pairwise_distance(self.fakes()) / max(self.real_diversity, 1e-12)
        # early grids are near-constant by construction (small initial weights): judge after a warm-up
        if epoch + 1 > self.overpower_epochs and logs["diversity"] < 0.3:
            self._warn(epoch, f"samples are much less varied than the data (diversity {logs['diversity']:.2f}); "
                              "possible mode collapse")
        accuracy = float(logs.get("d_accuracy", 0.0))  # minimax models log it; Wasserstein critics do not
        self.pinned = self.pinned + 1 if accuracy >= 0.99 else 0
        if self.pinned >= self.overpower_epochs:
            self._warn(epoch, f"the discriminator has been right on >= 99% of samples for {self.pinned} epochs; "
                              "it is overpowering the generator (try label_smoothing, instance_noise, dropout, or "
                              "a lower discriminator learning rate)")

    def _warn(self, epoch, text):
        self.warnings.append(f"epoch {epoch + 1}: {text}")
        self.reporter.message(f"warning: epoch {epoch + 1}: {text}")


class SplitMeasures(keras.callbacks.Callback):
    """Each epoch, the model's measures on another split (the test split: a VAE's ELBO terms in nats), added
    to the epoch's logs as `<prefix>_<name>`, so they land in history.csv beside the training ones."""

    def __init__(self, dataset, prefix: str = "test"):
        super().__init__()
        self.dataset, self.prefix = dataset, prefix

    def on_epoch_end(self, epoch, logs=None):
        measured = self.model.evaluate(self.dataset, verbose=0, return_dict=True)
        if logs is not None:
            logs.update({f"{self.prefix}_{k}": float(v) for k, v in measured.items()})
