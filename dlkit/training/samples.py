"""Watching a GAN train: a fixed-noise sample grid each epoch, a diversity statistic against real data
(mode collapse shows as a ratio falling toward 0), a warning when the discriminator overpowers the
generator, and at the end the final grid and an animated montage of the epochs."""

from __future__ import annotations

import numpy as np
import keras

from dlkit import images as I


def latent_inputs(gan, n: int, rng: np.random.Generator, labels=None, categorical=None, continuous=None) -> np.ndarray:
    """The generator's input, built with numpy so that it is the same whatever the model's RNG state."""
    parts = [rng.standard_normal((n, gan.latent_dim)).astype(np.float32)]
    if gan.num_classes:
        labels = rng.integers(0, gan.num_classes, n) if labels is None else np.asarray(labels)
        parts.append(np.eye(gan.num_classes, dtype=np.float32)[labels])
    if gan.categorical_codes:
        categorical = rng.integers(0, gan.categorical_codes, n) if categorical is None else np.asarray(categorical)
        parts.append(np.eye(gan.categorical_codes, dtype=np.float32)[categorical])
    if gan.continuous_codes:
        cont = rng.uniform(-1, 1, (n, gan.continuous_codes)) if continuous is None else np.asarray(continuous)
        parts.append(np.broadcast_to(cont, (n, gan.continuous_codes)).astype(np.float32))
    return np.concatenate(parts, axis=1)


def grid_layout(gan, columns: int = 8) -> tuple[int, dict]:
    """Rows and latent arguments of the fixed grid: a row per class (or per categorical code) if any."""
    k = gan.num_classes or gan.categorical_codes
    if k:
        per_row = np.repeat(np.arange(k), columns)
        key = "labels" if gan.num_classes else "categorical"
        extra = {key: per_row}
        if gan.continuous_codes:
            extra["continuous"] = np.zeros((k * columns, gan.continuous_codes))
        return k, extra
    return columns, {}


class SampleGrid(keras.callbacks.Callback):
    def __init__(self, run, gan, data, seed: int, reporter, overpower_epochs: int = 3, initial_epoch: int = 0):
        super().__init__()
        self.run, self.gan, self.scale, self.reporter = run, gan, data.scale, reporter
        scaled = lambda x, scale: x[:256].astype("float32") * scale[0] + scale[1]  # noqa: E731
        self.translation = hasattr(gan, "generator_ab")
        if self.translation:
            # rows: A, A->B, A->B->A, B, B->A, B->A->B, eight images each
            self.fixed = (scaled(data.splits.x_train[:8], data.scale), scaled(data.splits_b.x_train[:8], data.scale_b))
            self.rows = 6
            real = scaled(data.splits_b.x_train, data.scale_b)
            self.diversity_input = scaled(data.splits.x_train, data.scale)
        else:
            self.rows, extra = grid_layout(gan)
            self.fixed = latent_inputs(gan, self.rows * 8, np.random.default_rng(seed), **extra)
            real = scaled(data.splits.x_train, data.scale)
            self.diversity_input = latent_inputs(gan, min(256, len(real)), np.random.default_rng(seed + 1))
        self.real_diversity = I.mean_pairwise_distance(real)
        self.overpower_epochs, self.pinned = overpower_epochs, 0
        self.warnings = []
        # a resumed run's montage starts with the grids its earlier epochs wrote
        self.frames = [p for p in (run.sample_grid(e) for e in range(1, initial_epoch + 1)) if p.is_file()]

    def _grid_images(self):
        if not self.translation:
            return self.gan.sampler.predict(self.fixed, verbose=0)
        a, b = self.fixed
        ab = self.gan.generator_ab.predict(a, verbose=0)
        ba = self.gan.generator_ba.predict(b, verbose=0)
        return np.concatenate([a, ab, self.gan.generator_ba.predict(ab, verbose=0),
                               b, ba, self.gan.generator_ab.predict(ba, verbose=0)])

    def _fakes_for_diversity(self):
        g = self.gan.generator_ab if self.translation else self.gan.sampler
        return g.predict(self.diversity_input, verbose=0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        path = self.run.sample_grid(epoch + 1)
        I.save_png(I.grid(I.to_uint8(self._grid_images(), self.scale), self.rows), path)
        self.frames.append(path)
        fake = self._fakes_for_diversity()
        # fake/real mean pairwise distance: ~1 is as varied as the data, near 0 is mode collapse
        logs["diversity"] = I.mean_pairwise_distance(fake) / max(self.real_diversity, 1e-12)
        # early grids are near-constant by construction (small initial weights): judge after a warm-up
        if epoch + 1 > self.overpower_epochs and logs["diversity"] < 0.3:
            self._warn(epoch, f"samples are much less varied than the data (diversity {logs['diversity']:.2f}); "
                              "possible mode collapse")
        accuracy = float(logs.get("d_accuracy", 0.0))
        self.pinned = self.pinned + 1 if accuracy >= 0.99 else 0
        if self.pinned >= self.overpower_epochs:
            self._warn(epoch, f"the discriminator has been right on >= 99% of samples for {self.pinned} epochs; "
                              "it is overpowering the generator (try label_smoothing, instance_noise, dropout, or "
                              "a lower discriminator learning rate)")

    def _warn(self, epoch, text):
        self.warnings.append(f"epoch {epoch + 1}: {text}")
        self.reporter.message(f"warning: epoch {epoch + 1}: {text}")

    def on_train_end(self, logs=None):
        if self.frames:
            self.run.samples.write_bytes(self.frames[-1].read_bytes())
            I.save_gif(self.frames, self.run.progress_gif)
