"""The reference classifier: a finished dlkit classifier run that measures a generative model's samples
(`dlkit evaluate --reference`)."""

from __future__ import annotations

import keras
import numpy as np

from dlkit.errors import UsageError
from dlkit.rundir import RunDir
from dlkit.tasks.generative import run_scale


class Reference:
    """A dlkit classifier run that measures samples: its features (the input of its output layer) and its
    class probabilities, for uint8 images."""

    def __init__(self, run: RunDir, unsafe: bool = False):
        from dlkit import models

        if not run.model.is_file():
            raise UsageError(f"reference run {run.root} has no model.keras")
        self.run = run
        self.classifier = models.load(run.model, unsafe, compile=False)  # it predicts, nothing more
        if not _image_classifier(self.classifier):
            task = run.read_json(run.manifest).get("task", "unknown")
            raise UsageError(f"--reference {run.root} is a run of task {task!r}, not an image classifier; the "
                             "reference is a finished classifier run (a model from images to class probabilities) "
                             "trained on images like the ones measured, e.g. of recipes/cnn_mnist.yaml")
        self.scale = run_scale(run)
        head = next((layer for layer in self.classifier.layers if layer.name == "predictions"),
                    self.classifier.layers[-1])
        self.features = keras.Model(self.classifier.inputs, [head.input, self.classifier.outputs[0]])
        self._answered = []  # (images, (features, probabilities)) of the arrays predicted

    @property
    def image_shape(self):
        return tuple(self.classifier.input_shape[1:])

    def as_input(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 images made to fit the classifier: colour averaged to grey if it takes one channel."""
        x = images_uint8.astype(np.float32)
        if self.classifier.input_shape[-1] == 1 and x.shape[-1] == 3:
            x = x.mean(axis=-1, keepdims=True)
        return x * self.scale[0] + self.scale[1]

    def predict(self, images_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, probabilities) of uint8 images; an array given again (the same object: a CycleGAN's
        translations give both a distance and an accuracy) is answered from the first time, not run again."""
        for seen, answer in self._answered:
            if seen is images_uint8:
                return answer
        answer = self.features.predict(self.as_input(images_uint8), verbose=0, batch_size=500)
        self._answered.append((images_uint8, answer))
        return answer

    def sample_quality(self, fake: np.ndarray, real: np.ndarray, other_real: np.ndarray,
                       training: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
        """Generated against real uint8 images: Fréchet distance of the features, classifier score of both,
        class coverage and histogram; and the class predicted for each generated image.

        The Fréchet distance of finite samples is biased upward, more the fewer there are, so a bare figure
        cannot be read: `other_real`, real images independent of `real` (none of them the same example),
        gives the real-vs-real distance at the same sample count (`real_frechet_distance`, the floor a
        perfect generator would sit at), and a small count gets a warning. `training`: the run's training images,
        where `real` are not of its data (evaluate --data): their distance to `real` at the same count
        (`training_frechet_distance`) is where a generator that made its training images would sit."""
        from dlkit import metrics

        if self.image_shape[:2] != tuple(fake.shape[1:3]):
            raise UsageError(f"the reference classifier takes {self.image_shape} images; this model makes "
                             f"{fake.shape[1:]}")
        f_feat, f_prob = self.predict(fake)
        r_feat, r_prob = self.predict(real)
        predicted = f_prob.argmax(1)
        num_classes = f_prob.shape[1]
        out = {
            "reference_run": str(self.run.root),
            "frechet_distance": metrics.feature_distance(f_feat, r_feat),
            "classifier_score": metrics.classifier_score(f_prob),
            "real_classifier_score": metrics.classifier_score(r_prob),
            "class_coverage": metrics.coverage(predicted, num_classes),
            "class_histogram": np.bincount(predicted, minlength=num_classes).tolist(),
        }
        out.update(self.floor(len(f_feat), r_feat, self.predict(other_real[: len(f_feat)])[0]))
        if training is not None:
            out["training_frechet_distance"] = metrics.feature_distance(
                self.predict(training[: len(f_feat)])[0], r_feat)
        return out, predicted

    @staticmethod
    def floor(n: int, r_feat: np.ndarray, other_feat: np.ndarray) -> dict:
        """The real-vs-real Fréchet distance at the generated sample count n (the features of up to n real
        images independent of the real set's, against its features), and warnings on small counts."""
        from dlkit import metrics

        warnings, other_feat = [], other_feat[:n]
        out = {"real_frechet_distance": metrics.feature_distance(other_feat, r_feat),
               "real_frechet_samples": int(len(other_feat))}
        if len(other_feat) < n:
            warnings.append(f"only {len(other_feat)} independent real images for the real-vs-real distance, against "
                            f"{n} generated: the two distances are not at the same count")
        if n < SMALL_N:
            warnings.append(f"{n} samples: the Fréchet distance is biased upward at small counts (here the "
                            f"real-vs-real floor is {out['real_frechet_distance']:.4g}); compare runs at the same "
                            f"-n, {SMALL_N} or more")
        if len(r_feat) < n:
            warnings.append(f"the real set has {len(r_feat)} images, fewer than the {n} samples")
        out["warnings"] = warnings
        return out


SMALL_N = 2000  # below this, Fréchet distances of ~100-dimensional features are dominated by their bias


def _image_classifier(model) -> bool:
    """A functional model with one image input (batch, height, width, channels) and one output per class."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    return (isinstance(inputs, list) and len(inputs) == 1 and len(inputs[0].shape) == 4
            and isinstance(outputs, list) and len(outputs) == 1 and len(outputs[0].shape) == 2)
