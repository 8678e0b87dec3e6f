"""Image to sequence (one-to-many): images of 1 to `max_digits` MNIST digits side by side, read out as the
digit string (cnn_rnn_reader).

The strings are composed from MNIST's own splits, training strings from training digits and test strings
from test digits (a fixed draw each: the same images for every run). Each target is the digits' tokens
(1..10 for 0..9), an end token (11), then padding (0), which the loss skips. The measure is whole-sequence
accuracy: the string read up to the end token equals the true one, digit for digit and length too.
`dlkit evaluate --data` measures images of one's own, each named by the digits it shows (4071.png).
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath

import numpy as np
from pydantic import Field, field_validator

from dlkit.data import pipeline
from dlkit.errors import DataError, MissingSplit, UsageError
from dlkit.recipe.schema import DataConfig, FitTrain
from dlkit.tasks.base import EvalRequest, FitContext, Headline, PredictRequest, data_path, evaluation
from dlkit.tasks.fit import FitTask

END = 11  # tokens: 0 padding, 1..10 the digits 0..9, 11 the end


class DigitStringsData(DataConfig):
    path_datasets = {}

    dataset: str = "mnist_strings"
    max_digits: int = Field(5, ge=1, le=20)
    strings: int = Field(60000, ge=1)  # training strings composed (from the 60,000 training digits)
    test_strings: int = Field(10000, ge=1)  # test strings (from the 10,000 test digits)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v):  # replaces DataConfig's: only this composed dataset
        if v != "mnist_strings":
            raise ValueError(f"an image-to-sequence model reads mnist_strings (MNIST digits side by side); received {v!r}")
        return v


class ReaderTrain(FitTrain):
    metrics: list[str] = Field(default_factory=list)  # whole-sequence accuracy is measured after training


def compose(digits: np.ndarray, labels: np.ndarray, n: int, max_digits: int, seed: int):
    """n images of 1..max_digits digits side by side (28 x 28 * max_digits, black after the last digit)
    and their token sequences."""
    rng = np.random.default_rng(seed)
    h, w = digits.shape[1:3]
    lengths = rng.integers(1, max_digits + 1, n)
    picks = rng.integers(0, len(digits), (n, max_digits))
    images = np.zeros((n, h, w * max_digits), np.uint8)
    targets = np.zeros((n, max_digits + 1), np.int32)
    for k in range(max_digits):
        on = lengths > k
        images[on, :, k * w:(k + 1) * w] = digits[picks[on, k]]
        targets[on, k] = labels[picks[on, k]] + 1
    targets[np.arange(n), lengths] = END
    return images, targets


def text(tokens) -> str:
    """A token sequence read up to its end token."""
    out = []
    for t in tokens:
        if t == END or t == 0:
            break
        out.append(str(int(t) - 1))
    return "".join(out)


class ImageToSequence(FitTask):
    name = "image_to_sequence"
    headlines = (Headline("sequence_accuracy", "sequence accuracy"),)
    summary = "an image in, a token sequence out (MNIST digit strings); whole-sequence accuracy"
    Data = DigitStringsData
    Train = ReaderTrain
    default_loss = "sparse_categorical_crossentropy"
    token_loss = True
    options = frozenset({"data"})  # evaluate's --data

    def locate(self, recipe) -> str:
        from dlkit.data import sources

        return sources.locate(recipe.data.model_copy(update={"dataset": "mnist"}))

    def load_data(self, recipe):
        from dlkit.data import sources

        cfg = recipe.data
        mnist = sources.load_builtin("mnist", cfg.dir, cfg.download)
        n = cfg.strings + (cfg.test_strings if mnist.x_test is not None else 0)
        strip = math.prod(mnist.x_train.shape[1:3]) * cfg.max_digits
        # each string's strip, its target and the picks and length that compose it
        sources.fits_in_memory(n * (strip + 4 * (cfg.max_digits + 1) + 8 * (cfg.max_digits + 1)),
                               f"composing {n:,} digit strings (data.strings and data.test_strings)",
                               "set fewer (the defaults are MNIST's 60,000 and 10,000)")
        x, y = compose(mnist.x_train, mnist.y_train, cfg.strings, cfg.max_digits, seed=1)
        x_te = y_te = None
        if mnist.x_test is not None:
            x_te, y_te = compose(mnist.x_test, mnist.y_test, cfg.test_strings, cfg.max_digits, seed=2)
        arrays = sources.Arrays(x, y, x_te, y_te, [], f"mnist_strings from {mnist.origin}")
        data = pipeline.build(arrays, cfg, recipe.seed, self.examples(recipe))
        data.spec.target_shape = (cfg.max_digits + 1,)
        data.spec.vocabulary_size = END + 1
        return data

    def finish(self, ctx: FitContext, callbacks) -> dict:
        return {} if ctx.data.test is None else {"test": measure(ctx.model, ctx.data, "test", ctx.recipe)}

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.data is not None:
            return evaluation(self, run, request, lambda: self._measure_on(run, recipe, model, request.data))
        return evaluation(self, run, request, lambda: measure(model, data(), request.split, recipe))

    def _measure_on(self, run, recipe, model, path) -> dict:
        """evaluate --data: images named by the digit string they show, an image file or a folder of them (its
        sub-folders too), read as `predict` reads them and measured as the test split is. The string is the
        file name's leading digits (`4071.png`, `4071_b.png`: the convention of keras-io's captcha reader);
        the misread images are named."""
        from dlkit.data.sources import read_images
        from dlkit.tasks.generative import in_scale, run_scale

        path = data_path(path)
        x, names = read_images([path], tuple(int(d) for d in model.input_shape[1:]), strip=True)
        y = np.zeros((len(names), recipe.data.max_digits + 1), np.int64)
        for i, name in enumerate(names):
            where = path / name if path.is_dir() else path.parent / name  # a folder's images: their path in it
            if name.endswith("]"):  # a row of an .npy array: no name of its own
                raise DataError(f"{where}: an array's images have no names; --data reads image files each named by "
                                "its digits (4071.png)")
            digits = re.match(r"\d*", PurePosixPath(name).name).group()
            if not digits:
                raise DataError(f"{where}: its name does not start with the digits it shows; --data reads image "
                                "files each named by its digits (4071.png, or 4071_b.png)")
            if len(digits) > recipe.data.max_digits:
                raise DataError(f"{where}: {len(digits)} digits, and this model reads strings of at most "
                                f"{recipe.data.max_digits} (data.max_digits)")
            y[i, :len(digits) + 1] = [int(c) + 1 for c in digits] + [END]
        logits = model.predict(in_scale(x, run_scale(run)), verbose=0, batch_size=256)
        return scored(np.argmax(np.asarray(logits), axis=-1), y, names)

    def predict(self, run, recipe, model, request: PredictRequest) -> dict:
        """Each image's digit string as the model reads it: image files (PNG, JPEG, TIFF, ...), folders of them
        or .npy arrays of uint8 images, white digits on black as MNIST draws them; each is scaled to the model's
        height, its aspect kept, and set at the left of its black strip, as the training strings were. The
        string is read up to the end token; its probability is the product of each position's, the end's too."""
        from scipy.special import softmax

        from dlkit.data.sources import read_images
        from dlkit.tasks.generative import in_scale, run_scale

        if request.texts or request.csv is not None:
            raise UsageError("a digit-string reader reads images: dlkit predict RUN FILE...; --text is for text "
                             "models, --csv for forecasters and feature rows")
        if not request.inputs:
            raise UsageError("give the images to read: dlkit predict RUN FILE... (PNG, JPEG, TIFF or .npy; white "
                             "digits on black, as MNIST's)")
        x, names = read_images(request.inputs, tuple(int(d) for d in model.input_shape[1:]), strip=True)
        logits = model.predict(in_scale(x, run_scale(run)), verbose=0, batch_size=256)
        probs = softmax(np.asarray(logits, np.float64), axis=-1)
        out = []
        for name, p in zip(names, probs):
            tokens = p.argmax(-1)
            read = text(tokens)
            upto = min(len(read) + 1, len(tokens))  # the digits and the token that ended them
            out.append({"input": name, "digits": read,
                        "probability": round(float(np.prod(p[np.arange(upto), tokens[:upto]])), 6)})
        return {"status": "completed", "task": self.name, "run_dir": str(run.root), "predictions": out}

    def report_prediction(self, result: dict) -> list:
        from rich.table import Table

        table = Table()
        for col in ("input", "digits", "probability"):
            table.add_column(col, overflow="fold", justify="right" if col == "probability" else "left")
        for p in result["predictions"]:
            table.add_row(p["input"], p["digits"] or "(none)", f"{p['probability']:.4f}")
        return [table]

    def report(self, result: dict) -> list:
        from dlkit.tasks.generative import measures, present, split_heading

        lines = [f"  {n} digits: {v:.4f}" for n, v in result["sequence_accuracy_by_length"].items()]
        return measures(result, split_heading(result), present(result, ("sequence_accuracy", "digit_accuracy",
                                                                        "examples")),
                        after=["by length:"] + lines + [f"misread: {m['input']} read as {m['read'] or '(none)'}"
                                                        for m in result.get("misread", [])])


def measure(model, data, split: str, recipe) -> dict:
    ds = data.pipeline(split, recipe.data, recipe.seed)
    s = data.splits
    y = {"test": s.y_test, "val": s.y_val, "train": s.y_train}[split]
    if ds is None or y is None:
        raise MissingSplit.of(split, s)
    return scored(np.argmax(np.asarray(model.predict(ds, verbose=0)), axis=-1), y)


def scored(predicted: np.ndarray, y: np.ndarray, names: list[str] | None = None) -> dict:
    """Whole-sequence and digit accuracy of the read tokens against the true ones, by string length, and ten
    examples: the first ten read, or with `names` the first ten misread, by name."""
    truth = [text(t) for t in y]
    read = [text(p) for p in predicted]
    right = np.array([a == b for a, b in zip(truth, read)])
    lengths = np.array([len(t) for t in truth])
    digits = y > 0
    digits &= y != END
    digit_right = (predicted == y) & digits
    examples = ([{"true": a, "read": b} for a, b in list(zip(truth, read))[:10]] if names is None else
                [{"input": n, "true": a, "read": b} for n, a, b, ok in zip(names, truth, read, right) if not ok][:10])
    return {"examples": int(len(y)), "sequence_accuracy": float(right.mean()),
            "digit_accuracy": float(digit_right.sum() / max(digits.sum(), 1)),
            "sequence_accuracy_by_length": {str(n): float(right[lengths == n].mean()) for n in sorted(set(lengths))},
            "examples_read" if names is None else "misread": examples}
