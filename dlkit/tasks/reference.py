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
        self.classifier = models.load(run.model, unsafe)
        self.scale = run_scale(run)
        head = next((layer for layer in self.classifier.layers if layer.name == "predictions"),
                    self.classifier.layers[-1])
        self.features = keras.Model(self.classifier.inputs, [head.input, self.classifier.outputs[0]])

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
        """(features, probabilities) of uint8 images."""
        return self.features.predict(self.as_input(images_uint8), verbose=0, batch_size=500)

    def sample_quality(self, fake: np.ndarray, real: np.ndarray) -> tuple[dict, np.ndarray]:
        """Generated against real uint8 images: Fréchet distance of the features, classifier score of both,
        class coverage and histogram; and the class predicted for each generated image."""
        from dlkit import metrics

        if self.image_shape[:2] != tuple(fake.shape[1:3]):
            raise UsageError(f"the reference classifier takes {self.image_shape} images; this model makes "
                             f"{fake.shape[1:]}")
        f_feat, f_prob = self.predict(fake)
        r_feat, r_prob = self.predict(real)
        predicted = f_prob.argmax(1)
        num_classes = f_prob.shape[1]
        return {
            "reference_run": str(self.run.root),
            "frechet_distance": metrics.feature_distance(f_feat, r_feat),
            "classifier_score": metrics.classifier_score(f_prob),
            "real_classifier_score": metrics.classifier_score(r_prob),
            "class_coverage": metrics.coverage(predicted, num_classes),
            "class_histogram": np.bincount(predicted, minlength=num_classes).tolist(),
        }, predicted
