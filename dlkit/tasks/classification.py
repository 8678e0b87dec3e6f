"""Classification: inputs to one of K classes (perceptron, mlp, cnn, lenet5, vgg, resnet).

Trains on (x, y) with sparse categorical cross-entropy unless the recipe or the architecture says otherwise;
a finished run measures the test split and draws its confusion matrix; `dlkit evaluate` reports loss and
metrics, per-class precision and recall and the confusion matrix of any split.
"""

from __future__ import annotations

import time

import numpy as np

from dlkit import metrics, plots
from dlkit.errors import UsageError
from dlkit.tasks.base import EvalRequest, FitContext, Headline
from dlkit.tasks.fit import FitTask


class Classification(FitTask):
    name = "classification"
    headlines = (Headline("accuracy", "accuracy"),)
    summary = "inputs to one of K classes; test accuracy, per-class precision and recall, confusion matrix"
    default_loss = "sparse_categorical_crossentropy"

    def finish(self, ctx: FitContext, callbacks) -> dict:
        data, model = ctx.data, ctx.model
        if data.test is None:
            return {}
        test = {k: float(v) for k, v in model.evaluate(data.test, verbose=0, return_dict=True).items()}
        y_pred = np.argmax(model.predict(data.test, verbose=0), axis=-1)
        matrix = metrics.confusion(data.splits.y_test, y_pred, data.spec.num_classes)
        plots.confusion_matrix(matrix, data.spec.class_names, ctx.run.confusion_matrix("test"),
                               f"{ctx.recipe.name}: test split")
        return {"test": test}

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.reference is not None:
            raise UsageError("--reference is for generative runs: it names the classifier that measures their samples")
        data = data()
        ds = data.pipeline(request.split, recipe.data, recipe.seed, self.examples(recipe))
        if ds is None:
            raise UsageError(f"run {run.root.name} has no {request.split!r} split (data.validation_split or the "
                             "dataset's test set)")
        y = {"test": data.splits.y_test, "val": data.splits.y_val, "train": data.splits.y_train}[request.split]
        start = time.perf_counter()
        measured = {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}
        y_pred = np.argmax(model.predict(ds, verbose=0), axis=-1)
        matrix = metrics.confusion(y, y_pred, data.spec.num_classes)
        image = run.confusion_matrix(request.split)
        plots.confusion_matrix(matrix, data.spec.class_names, image, f"{recipe.name}: {request.split} split")
        return {
            "status": "completed", "task": self.name, "key": request.split, "run_dir": str(run.root),
            "split": request.split, "examples": int(len(y)), "metrics": measured,
            "accuracy_from_predictions": float(np.mean(y_pred == y)),
            "per_class": metrics.per_class(matrix, data.spec.class_names), "confusion_matrix": matrix.tolist(),
            "confusion_matrix_image": str(image), "wall_time_s": round(time.perf_counter() - start, 3),
        }

    def report(self, result: dict) -> list:
        from pathlib import Path

        from rich.table import Table

        from dlkit.ui import fmt

        run = Path(result["run_dir"])
        table = Table(title=f"{run.parent.name}/{run.name}: {result['split']} split, {result['examples']} examples")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in result["metrics"].items():
            table.add_row(k, fmt(v))
        per = Table(title="per class")
        for col in ("class", "precision", "recall", "support"):
            per.add_column(col, justify="right" if col != "class" else "left")
        for name, row in result["per_class"].items():
            per.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
        return [table, per, f"confusion matrix: {result['confusion_matrix_image']}"]
