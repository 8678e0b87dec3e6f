"""Classification: inputs to one of K classes (perceptron, mlp, cnn, lenet5, vgg, resnet).

Trains on (x, y) with sparse categorical cross-entropy unless the recipe or the architecture says otherwise;
a finished run measures the test split and draws its confusion matrix; `dlkit evaluate` reports loss and
metrics, per-class precision and recall and the confusion matrix of any split.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dlkit import keras_private, metrics, plots
from dlkit.errors import DataError, MissingSplit, Problem, RecipeError, UsageError
from dlkit.recipe.schema import ClassifierTrain
from dlkit.tasks.base import EvalRequest, FitContext, Headline, PredictRequest, data_path, data_slug, own_data
from dlkit.tasks.fit import FitTask, on_raw_inputs


def class_weights(recipe, spec) -> list[float] | None:
    """Each class's weight in the loss by train.class_weight (None when unset): `balanced` gives class c
    n / (k * n_c) over the training split (Keras's and scikit-learn's rule: every class weighs the same in
    all; a class the split lacks weighs 1); a mapping names classes by name or index, the rest weighing 1."""
    asked = getattr(recipe.train, "class_weight", None)  # a DBN's fine-tuning does not take it
    if asked is None:
        return None
    names = spec.class_names or [str(i) for i in range(spec.num_classes)]
    if asked == "balanced":
        counts = np.asarray(spec.class_counts, np.float64)
        return [float(counts.sum() / (len(counts) * c)) if c else 1.0 for c in counts]
    index = {name: i for i, name in enumerate(names)}
    index.update({str(i): i for i in range(len(names)) if str(i) not in index})  # an index, where no name is one
    unknown = [k for k in asked if k not in index]
    if unknown:
        raise RecipeError([Problem(f"train.class_weight.{k}", f"no class {k!r} in the data", hint="its classes are "
                                   f"{', '.join(names[:20])}{', ...' if len(names) > 20 else ''}") for k in unknown])
    weights = [1.0] * len(names)
    for k, w in asked.items():
        weights[index[k]] = float(w)
    return weights


def weighed(recipe, data):
    """The data, with a note of the class weights the loss will use (and a recipe error for a class the data
    lacks, before anything is built)."""
    weights = class_weights(recipe, data.spec)
    if weights is not None:
        names = data.spec.class_names or [str(i) for i in range(len(weights))]
        shown = ", ".join(f"{n}: {w:.3g}" for n, w in list(zip(names, weights))[:12])
        how = " (balanced)" if recipe.train.class_weight == "balanced" else ""
        data.notes.append(f"train.class_weight{how}: the loss weighs the classes {shown}"
                          f"{', ...' if len(weights) > 12 else ''}")
    return data


def classified(measured: dict, y, y_pred, num_classes: int, class_names: list[str], image, title: str) -> dict:
    """What an evaluation of a classifier reports beside its place (a split, or evaluate --data's path): the
    examples, Keras's `measured` metrics, the accuracy of the predictions `y_pred` against `y`, per-class
    precision and recall, and the confusion matrix, drawn at `image`."""
    matrix = metrics.confusion(y, y_pred, num_classes)
    plots.confusion_matrix(matrix, class_names, image, title)
    return {"examples": int(len(y)), "metrics": measured, "accuracy_from_predictions": float(np.mean(y_pred == y)),
            "per_class": metrics.per_class(matrix, class_names), "confusion_matrix": matrix.tolist(),
            "confusion_matrix_image": str(image)}


class Classification(FitTask):
    name = "classification"
    headlines = (Headline("metrics.accuracy", "accuracy"), Headline("accuracy", "accuracy"))
    summary = "inputs to one of K classes; test accuracy, per-class precision and recall, confusion matrix"
    default_loss = "sparse_categorical_crossentropy"
    Train = ClassifierTrain
    classifies = True
    options = frozenset({"data"})  # evaluate's --data

    def needs_labels(self, recipe):
        return "a classifier learns from them"

    def load_data(self, recipe):
        return weighed(recipe, super().load_data(recipe))

    def build(self, recipe, spec, phase, earlier):
        model = super().build(recipe, spec, phase, earlier)
        weights = class_weights(recipe, spec)
        if weights is not None:  # for `loss`, when the fresh model is compiled (a loaded one keeps its loss)
            model.dlkit_class_weights = tuple(weights)
        return model

    def loss(self, model, recipe):
        from dlkit.models.losses import ClassWeighted

        loss = super().loss(model, recipe)
        weights = getattr(model, "dlkit_class_weights", None)
        return loss if weights is None else ClassWeighted(loss, weights)

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
        if request.data is not None:
            return self._evaluate_on(run, recipe, model, request.data)
        data = data()
        ds = data.pipeline(request.split, recipe.data, recipe.seed, self.examples(recipe))
        if ds is None:
            raise MissingSplit.of(request.split, data.splits)
        y = {"test": data.splits.y_test, "val": data.splits.y_val, "train": data.splits.y_train}[request.split]
        start = time.perf_counter()
        keras_private.build_for(model, ds)  # a loaded model's metrics: built here, its test step traced once
        measured = {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}
        y_pred = np.argmax(model.predict(ds, verbose=0), axis=-1)
        return {"status": "completed", "task": self.name, "key": request.split, "run_dir": str(run.root),
                "split": request.split, **classified(measured, y, y_pred, data.spec.num_classes, data.spec.class_names,
                                                      run.confusion_matrix(request.split),
                                                      f"{recipe.name}: {request.split} split"),
                "wall_time_s": round(time.perf_counter() - start, 3)}

    def labelled(self, run, recipe, model, path: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """evaluate --data's model inputs (scaled as training scaled its own), their class indices among the
        run's `classes`, and notes: a labelled folder of images (FOLDER/<class>/<image>) or, for a
        feature-vector model, a CSV with its feature columns and label column, read as `dlkit predict` reads
        inputs; or, for a run that read a plugin's dataset from a file, a file of that format
        (`plugin_labelled`)."""
        from dlkit.data import sources
        from dlkit.data.sources import read_labelled_images, read_labelled_rows
        from dlkit.tasks.generative import in_scale, run_scale

        shape = tuple(int(d) for d in model.input_shape[1:])
        entry = sources.plugin(recipe.data.dataset)
        if entry is not None and entry.reads_path:  # a file in the format of the plugin's dataset the run read
            x, y, notes = plugin_labelled(entry, recipe, path, shape, classes)
        elif len(shape) == 3:
            x, y, notes = read_labelled_images(path, shape, classes)
        elif len(shape) == 1:
            columns = run.read_artifact("columns") if run.artifact("columns").is_file() else None  # npz: none
            x, y = read_labelled_rows(path, columns, shape[0], classes, getattr(recipe.data, "separator", ","),
                                      getattr(recipe.data, "decimal", "."))
            notes = []
        else:
            raise UsageError(f"--data reads images or feature vectors; this model reads inputs of shape {shape}")
        return in_scale(x, run_scale(run)), y, notes

    def _evaluate_on(self, run, recipe, model, path) -> dict:
        """evaluate --data: the run measured on labelled data of one's own (`labelled`)."""
        path = data_path(path)
        classes = run.read_json(run.manifest)["data_spec"]["class_names"] or [
            str(i) for i in range(int(model.output_shape[-1]))]
        x, y, notes = self.labelled(run, recipe, model, path, classes)
        absent = [c for i, c in enumerate(classes) if not np.any(y == i)]
        if absent:
            notes.append(f"{len(absent)} of the run's {len(classes)} classes have no examples here "
                         f"({', '.join(absent[:10])}{', ...' if len(absent) > 10 else ''}): their recall is not measured")
        start = time.perf_counter()
        batch = recipe.data.batch_size
        measured = {k: float(v) for k, v in model.evaluate(x, y, batch_size=batch, verbose=0, return_dict=True).items()}
        y_pred = np.argmax(model.predict(x, batch_size=batch, verbose=0), axis=-1)
        out = {"status": "completed", "task": self.name, "run_dir": str(run.root), **own_data(path),
               **classified(measured, y, y_pred, len(classes), classes, run.confusion_matrix(data_slug(path)),
                            f"{recipe.name}: {path}"),
               "wall_time_s": round(time.perf_counter() - start, 3)}
        if notes:
            out["note"] = "; ".join(notes)
        return out

    def report(self, result: dict) -> list:
        from rich.table import Table

        from dlkit.tasks.generative import split_heading
        from dlkit.ui import fmt

        run = Path(result["run_dir"])
        table = Table(title=f"{run.parent.name}/{run.name}: {split_heading(result)}")
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

    def exported(self, run, recipe, model):
        """The classifier on raw inputs (on_raw_inputs); a model whose inputs are not scaled (token ids) as it is."""
        return on_raw_inputs(run, recipe, model) or super().exported(run, recipe, model)

    def predict(self, run, recipe, model, request: PredictRequest) -> dict:
        """Labels and probabilities for image files (PNG, JPEG) or .npy arrays of uint8 images, read in the
        run's input scale (a file of another size is resized, its colour converted to the model's channels),
        or for a feature-vector model, the rows of a CSV file (--csv), its columns picked by name."""
        from dlkit.data.sources import read_feature_rows, read_images

        shape = tuple(int(d) for d in model.input_shape[1:])
        if len(shape) == 1:  # feature vectors: rows of a CSV file
            if request.texts or request.inputs or request.csv is None:
                raise UsageError(f"this model reads feature vectors of {shape[0]} values: give them as rows of a "
                                 "CSV file with a header, dlkit predict RUN --csv FILE")
            columns = run.read_artifact("columns") if run.artifact("columns").is_file() else None  # npz: none
            x, names = read_feature_rows(request.csv, columns, shape[0], getattr(recipe.data, "separator", ","),
                                         getattr(recipe.data, "decimal", "."))
            return self._answer(run, model, x, names)
        if request.texts or request.csv is not None:
            raise UsageError("an image classifier reads image files (PNG, JPEG) or .npy arrays: dlkit predict RUN "
                             "FILE...; --text is for text classifiers, --csv for forecasters and feature vectors")
        if not request.inputs:
            raise UsageError("give the images to classify: dlkit predict RUN FILE... (PNG, JPEG or .npy)")
        x, names = read_images(request.inputs, shape)
        return self._answer(run, model, x, names)

    def _answer(self, run, model, x, names) -> dict:
        """The label and probabilities of each input (in the run's scale: x * a + b)."""
        from dlkit.tasks.generative import in_scale, run_scale

        probs = np.asarray(model.predict(in_scale(x, run_scale(run)), verbose=0, batch_size=256), np.float64)
        if not (np.all(probs >= 0) and np.allclose(probs.sum(-1), 1.0, atol=1e-3)):  # scores, not probabilities
            from scipy.special import softmax

            probs = softmax(probs, axis=-1)
        classes = run.read_json(run.manifest)["data_spec"]["class_names"] or [str(i) for i in range(probs.shape[1])]
        out = [{"input": name, "label": classes[int(np.argmax(p))],
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}} for name, p in zip(names, probs)]
        return {"status": "completed", "task": self.name, "run_dir": str(run.root), "predictions": out}

    def report_prediction(self, result: dict) -> list:
        from rich.table import Table

        key = "text" if result["predictions"] and "text" in result["predictions"][0] else "input"
        table = Table()
        for col in (key, "label", "probability"):
            table.add_column(col, overflow="fold", justify="right" if col == "probability" else "left")
        for p in result["predictions"]:
            table.add_row(p[key], p["label"], f"{p['probabilities'][p['label']]:.4f}")
        return [table]


def plugin_labelled(entry, recipe, path: Path, shape: tuple, classes: list[str]) -> tuple[np.ndarray, np.ndarray, list]:
    """evaluate --data for a run trained on a plugin's dataset that reads a file: `path` read by the plugin (the
    run's copy) as the run's file was, its own keys as the run had them; its test split where it gives one, else
    all its examples; its labels matched to the run's classes by name where it names them. Raw inputs, with a
    channel axis where the model's images have one."""
    from dlkit.data import pipeline

    arrays = entry.load(recipe.data.model_copy(update={"path": str(path), "limit": None, "test_limit": None}))
    labelled = arrays.x_test is not None
    x, y = (arrays.x_test, arrays.y_test) if labelled else (arrays.x_train, arrays.y_train)
    if arrays.y_test is None and labelled or not arrays.class_names:
        raise DataError(f"{path}: dataset {recipe.data.dataset!r} read it as inputs without labels; --data measures "
                        "a classifier against labelled examples")
    if arrays.class_names != classes and all(name in classes for name in arrays.class_names):
        y = np.array([classes.index(arrays.class_names[i]) for i in y], np.int64)  # the run's numbering
    elif arrays.class_names != classes and any(not name.isdigit() for name in arrays.class_names):
        unknown = [n for n in arrays.class_names if n not in classes]
        raise DataError(f"{path}: classes {', '.join(map(repr, unknown[:5]))} are not the run's "
                        f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})")
    if len(y) and int(y.max()) >= len(classes):
        raise DataError(f"{path}: a label is {int(y.max())}; the run has {len(classes)} classes")
    x = pipeline.with_channel_axis(x)
    if tuple(x.shape[1:]) != shape:
        raise DataError(f"{path}: its examples have shape {tuple(x.shape[1:])}; the model reads {shape}")
    return x, y, [f"{len(y)} examples: the file's {'test split' if labelled else 'examples, all of them'}, read by "
                  f"dataset {recipe.data.dataset!r}"]
