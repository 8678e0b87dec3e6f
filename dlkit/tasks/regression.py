"""Regression: a table's feature columns to one or more numbers (mlp_regressor).

The targets are columns of a CSV file (data.target_columns, default the last column), an npz's y_train or
the built-in diabetes table. The net learns them in standard deviations from their mean over the training rows, and its
last layer (`target_scale`, added here) multiplies them back, so the model predicts in the targets' own
units: the metrics Keras prints (MAE, RMSE), `dlkit predict` and an exported model all read in those units.
The loss (train.loss: mse, mae or huber) is on errors in standard deviations, so neither it nor its
gradients grow with the targets' units (a price in cents), and each target weighs the same.

`data.target_transform: log` (for positive, skewed targets: prices, incomes, counts of a disease) has the net
learn the targets' logarithms, standardized alike, and an `exp` after `target_scale` gives the targets back:
the loss is then on relative errors, and every prediction is above 0.

A finished run, and `dlkit evaluate`, measure MAE, RMSE and R² (1 - squared error / the split's own
variance) on the original scale, per target and overall, beside two baselines fitted on the training rows:
their mean, and ordinary least squares on the same inputs (a linear model: what a net must beat to be
worth its training), both fitted to the logarithms under a log transform. `predicted_vs_actual.png` draws
each prediction against its true value (on log axes under a log transform).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dlkit import plots
from dlkit.data import pipeline, sources
from dlkit.errors import DataError, MissingSplit, UsageError
from dlkit.recipe.schema import MAX_BATCH, DataCommon, FitTrain, changed, csv_format_problems
from dlkit.tasks.base import EvalRequest, FitContext, Headline, PredictRequest, data_path, data_slug, evaluation
from dlkit.tasks.fit import FitTask, on_raw_inputs

REGRESSION_DATASETS = {
    "diabetes": "Efron et al.'s diabetes table: 442 patients, ten measures, the disease's progression a year on "
                "(scikit-learn's copy)",
    "csv": "a CSV file of feature columns and the columns to predict (data.path; data.target_columns)",
    "npz": "arrays x_train (N, features), y_train (N,) or (N, targets)[, x_test, y_test] in a .npz file (data.path)",
}
MEASURES = ("mae", "rmse", "r2")
CSV_KEYS = ("target_columns", "separator", "decimal", "categorical_columns", "category_values", "missing",
            "ignore_columns")


class RegressionData(DataCommon):
    path_datasets = {"csv": "the CSV file", "npz": "the .npz file"}
    plugged = True  # a plugin's dataset: its x_train feature vectors and y_train numbers

    dataset: str = Field(description="choose one of: csv (your file, in data.path), npz (your arrays, in data.path), "
                                     "diabetes (built in)")
    target_columns: list[str] | None = None  # csv: the columns to predict; default the last one
    categorical_columns: list[str] = Field(default_factory=list)  # csv: feature columns one-hot encoded
    ignore_columns: list[str] = Field(default_factory=list)  # csv: columns not read (an id, a name, a note)
    # csv: training: one input per category value the training rows have (a value only in later rows is no input,
    # its weights would never train); all: one per value anywhere in the file, as runs before this key trained
    category_values: Literal["training", "all"] = "training"
    # csv: an empty cell is an error, or its row is left out (drop), or (a feature's) the column's mean over
    # the training rows (mean; an empty category: none of its values). An empty target is never filled.
    missing: Literal["error", "drop", "mean"] = "error"
    separator: str = Field(",", min_length=1, max_length=1)  # csv: between a row's cells: ",", ";", "\t", "|"
    decimal: Literal[".", ","] = "."  # csv: the decimal mark: "," in many European files (beside separator ";")
    # log: the net learns log(target) and the model predicts exp of it (positive, skewed targets: prices)
    target_transform: Literal["none", "log"] = "none"
    scale: Literal["standardize", "unit", "symmetric", "none"] = "standardize"  # the inputs, per column
    test_split: float = Field(0.2, ge=0, lt=1)  # a fixed draw (seed 0), the same for every run
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)

    not_used = {
        "augment": "augmentation is for images",
        "image_size": "a table has no image size",
        "label_column": "a regression's targets are data.target_columns, a list (default: the last column)",
    }

    _dataset = field_validator("dataset")(lambda v: sources.named(v, list(REGRESSION_DATASETS)))

    @field_validator("target_columns", mode="before")
    @classmethod
    def _one_target(cls, v):
        return [v] if isinstance(v, str) else v  # `target_columns: price` = [price]

    def cross_problems(self):
        unread = changed(self, CSV_KEYS) if self.dataset != "csv" else []
        targets = self.target_columns or []
        twice = sorted({c for c in [*targets, *self.categorical_columns]
                        if targets.count(c) > 1 or self.categorical_columns.count(c) > 1})
        both = [c for c in targets if c in self.categorical_columns]
        return super().cross_problems() + csv_format_problems(self) + (
            [f"data.{k}: read from a csv file only, not from dataset {self.dataset!r} (remove it)"
             for k in unread]) + (
            ["data.target_columns: an empty list; name the columns to predict, or leave the key out for the last "
             "column"] if self.target_columns == [] else []) + (
            [f"data.target_columns: {', '.join(map(repr, twice))} listed twice"] if twice and not both else []) + (
            [f"data.categorical_columns: {both[0]!r} is a target (data.target_columns), not a feature: remove it from "
             "categorical_columns"] if both else [])


class RegressionTrain(FitTrain):
    # on errors in standard deviations of each target (dlkit.models.losses.StandardizedError)
    loss: Literal["mse", "mae", "huber"] = "mse"
    metrics: list[str] = Field(default_factory=lambda: ["mae", "rmse"])  # in the targets' units


def standardizer(y: np.ndarray, transform: str = "none") -> dict:
    """Each target's mean and standard deviation over the training rows (1 where a target is constant), of
    its logarithm under `transform` log."""
    y = np.log(np.asarray(y, np.float64)) if transform == "log" else np.asarray(y, np.float64)
    std = y.std(axis=0)
    return {"mean": y.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist(), "transform": transform}


class Regression(FitTask):
    name = "regression"
    headlines = (Headline("r2", "R2"), Headline("mae", "MAE", "min"))
    summary = "a table's columns to numbers; MAE, RMSE, R² against the mean and least squares; `predict --csv`"
    Data = RegressionData
    Train = RegressionTrain

    def locate(self, recipe) -> str:
        cfg = recipe.data
        if cfg.dataset == "diabetes":
            return "scikit-learn's copy of the diabetes data (installed with it)"
        if sources.plugin(cfg.dataset):
            return sources.locate(cfg)
        if not Path(cfg.path).expanduser().exists():
            raise DataError(f"data.path {cfg.path} does not exist")
        if cfg.dataset == "npz":
            return str(Path(cfg.path).expanduser())
        return sources.table_header(cfg, cfg.target_columns, "data.target_columns")

    def load_data(self, recipe):
        cfg = recipe.data
        log = cfg.target_transform == "log"
        if cfg.dataset == "npz":
            arrays = sources.load_targets_npz(cfg.path, log)
        elif entry := sources.plugin(cfg.dataset):  # its arrays read as numbers to predict
            arrays = entry.targets(cfg, log)
        else:
            arrays = sources.load_diabetes() if cfg.dataset == "diabetes" else sources.load_targets_csv(
                cfg.path, cfg.target_columns, cfg.separator, cfg.decimal, cfg.categorical_columns, cfg.missing, log,
                cfg.ignore_columns)
        # a log's targets above 0: the csv and npz readers check each, naming its line or index; the diabetes
        # table's are 25 to 346
        data = pipeline.build(arrays, cfg, recipe.seed, self.examples(recipe))
        data.spec = dataclasses.replace(data.spec, target_shape=(arrays.y_train.shape[1],),
                                        target_scale=standardizer(data.splits.y_train, cfg.target_transform))
        # kept in the run (artifacts/baselines.json): evaluate --data measures against them without the
        # training rows
        data.artifacts["baselines"] = fit_baselines(data.splits.x_train, data.splits.y_train, log)
        return data

    def build(self, recipe, spec, phase, earlier):
        """The architecture's net, which predicts standard deviations from the mean, and after it the layer
        that multiplies them back into the targets' units (y * std + mean), then under a log transform the
        `exp` that turns logarithms back into the targets."""
        import keras

        net = super().build(recipe, spec, phase, earlier)
        s = spec.target_scale
        units = keras.layers.Rescaling(scale=s["std"], offset=s["mean"], dtype="float32", name="target_scale")
        y = units(net.outputs[0])
        if s.get("transform") == "log":
            y = keras.layers.Activation("exponential", dtype="float32", name="target_exp")(y)
        return keras.Model(net.inputs, y, name=net.name)

    def loss(self, model, recipe):
        """train.loss on errors in standard deviations: the spread is the model's `target_scale` layer's; of
        the logarithms where the model ends in `exp` (data.target_transform: log)."""
        from dlkit.models.losses import StandardizedError

        log = any(layer.name == "target_exp" for layer in model.layers)
        return StandardizedError(np.ravel(model.get_layer("target_scale").scale).tolist(), recipe.train.loss, log)

    def finish(self, ctx: FitContext, callbacks) -> dict:
        if ctx.data.test is None:
            return {}
        return {"test": measure(ctx.model, ctx.data, "test", ctx.recipe, ctx.run.image("predicted_vs_actual.png"))}

    options = frozenset({"data"})  # evaluate's --data

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.data is not None:
            return evaluation(self, run, request, lambda: self._measure_on(run, recipe, model, data, request.data))
        image = run.image("predicted_vs_actual.png" if request.split == "test"
                          else f"predicted_vs_actual_{request.split}.png")
        return evaluation(self, run, request, lambda: measure(model, data(), request.split, recipe, image))

    def _measure_on(self, run, recipe, model, data, path) -> dict:
        """evaluate --data: the run measured on a CSV of one's own with its feature and target columns, by name,
        beside the baselines the run fitted on its training rows (artifacts/baselines.json; a run trained
        before it kept them has them fitted again from its training data)."""
        from dlkit.data.sources import read_target_rows
        from dlkit.tasks.generative import in_scale, run_scale

        path = data_path(path)
        columns = run.read_artifact("columns")
        x, y = read_target_rows(path, columns, int(model.input_shape[-1]), recipe.data.separator,
                                recipe.data.decimal)
        fit = run.read_artifact("baselines") if run.artifact("baselines").is_file() else data().artifacts["baselines"]
        return scored(model, in_scale(x, run_scale(run)), x, y, fit, columns["targets"], recipe,
                      run.image(f"predicted_vs_actual_{data_slug(path)}.png"), f"{recipe.name}: {path}")

    def report(self, result: dict) -> list:
        from rich.table import Table

        from dlkit.tasks.generative import split_heading

        names = ["model", *result["baselines"]]
        logs = result.get("target_transform") == "log"  # the baselines were fitted to the logarithms
        heads = {"mean": "geometric mean", "linear": "linear on logs"} if logs else {}
        table = Table(title=f"{split_heading(result)}, {', '.join(result['targets'])}")
        table.add_column("measure")
        for n in names:
            table.add_column(heads.get(n, n), justify="right")
        for k in MEASURES:
            table.add_row(k, *(_figure(k, (result if n == 'model' else result['baselines'][n])[k]) for n in names))
        out = [table]
        if len(result["targets"]) > 1:
            per = Table(title="per target (model)")
            for col in ("target", *MEASURES):
                per.add_column(col, justify="left" if col == "target" else "right")
            for name, row in result["per_target"].items():
                per.add_row(name, *(_figure(k, row[k]) for k in MEASURES))
            out.append(per)
        gain = result["vs_best_baseline"]
        verdict = f"({100 * (1 - gain['mae_ratio']):+.1f}% better)" if gain["mae_ratio"] < 1 else "(worse)"
        return out + [f"MAE against the better baseline ({gain['baseline']}): {gain['mae_ratio']:.3f} {verdict}",
                      f"predictions against actual values: {result['plot']}"]

    def exported(self, run, recipe, model):
        """The regressor on raw inputs (on_raw_inputs); its outputs are in the targets' units already."""
        return on_raw_inputs(run, recipe, model) or super().exported(run, recipe, model)

    def predict(self, run, recipe, model, request: PredictRequest) -> dict:
        """The targets of each row of a CSV file (--csv), its feature columns picked by name (the targets'
        own columns, if the file has them, are not read); after training on an npz, every column, in order."""
        from dlkit.data.sources import read_feature_rows
        from dlkit.tasks.generative import in_scale, run_scale

        if request.texts or request.inputs or request.csv is None:
            raise UsageError("a regression reads rows of a CSV file with a header, its training columns by name: "
                             "dlkit predict RUN --csv FILE")
        columns = run.read_artifact("columns")
        x, names = read_feature_rows(request.csv, columns if "features" in columns else None,
                                     int(model.input_shape[-1]), recipe.data.separator, recipe.data.decimal)
        y = np.asarray(model.predict(in_scale(x, run_scale(run)), verbose=0, batch_size=256), np.float64)
        out = [{"input": name, **{t: float(v) for t, v in zip(columns["targets"], row)}} for name, row in zip(names, y)]
        return {"status": "completed", "task": self.name, "run_dir": str(run.root), "targets": columns["targets"],
                "predictions": out}

    def report_prediction(self, result: dict) -> list:
        from rich.table import Table

        table = Table()
        for col in ("input", *result["targets"]):
            table.add_column(col, justify="left" if col == "input" else "right")
        for p in result["predictions"]:
            table.add_row(p["input"], *(f"{p[t]:.6g}" for t in result["targets"]))
        return [table]


def _figure(measure: str, value: float) -> str:
    """R² to 4 decimals; an error in the targets' units to 6 significant digits (a price's MAE as 59199, not
    5.92e+04)."""
    return f"{value:.4f}" if measure == "r2" else f"{value:.6g}"


def scores(predicted: np.ndarray, actual: np.ndarray) -> dict:
    """MAE, RMSE and R² (1 - the squared error / the squared deviation from the split's own mean) of (N, K)
    predictions, over all targets (R²: their mean), and per target."""
    diff = predicted - actual
    spread = np.sum((actual - actual.mean(axis=0)) ** 2, axis=0)
    r2 = np.where(spread > 0, 1 - np.sum(diff**2, axis=0) / np.where(spread > 0, spread, 1), np.nan)
    per = {"mae": np.mean(np.abs(diff), axis=0), "rmse": np.sqrt(np.mean(diff**2, axis=0)), "r2": r2}
    return {"mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff**2))),
            "r2": float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan"),
            "per_target": [{k: float(per[k][j]) for k in MEASURES} for j in range(actual.shape[1])]}


def fit_baselines(x_train: np.ndarray, y_train: np.ndarray, log: bool = False) -> dict:
    """Two models fitted on the training rows, as a run keeps them (artifacts/baselines.json): their mean, and
    ordinary least squares (the weights of the features, then the intercept; numpy's lstsq, the minimum-norm
    solution where the columns are collinear). With `log` both are fitted to the targets' logarithms, as the
    net is."""
    y_train = np.log(np.asarray(y_train, np.float64)) if log else np.asarray(y_train, np.float64)
    design = np.hstack([np.asarray(x_train, np.float64), np.ones((len(x_train), 1))])
    return {"log": log, "mean": y_train.mean(axis=0).tolist(),
            "weights": np.linalg.lstsq(design, y_train, rcond=None)[0].tolist()}


def baselines(fit: dict, x: np.ndarray) -> dict:
    """The fitted baselines' predictions for `x`; under a log transform exp of theirs (the mean's is then the
    geometric mean)."""
    mean, weights = np.asarray(fit["mean"], np.float64), np.asarray(fit["weights"], np.float64)
    fitted = {"mean": np.repeat(mean[None], len(x), axis=0),
              "linear": np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))]) @ weights}
    return {k: np.exp(v) for k, v in fitted.items()} if fit["log"] else fitted


def measure(model, data, split: str, recipe, image) -> dict:
    from dlkit.tasks.generative import in_scale

    s = data.splits
    x, y = {"test": (s.x_test, s.y_test), "val": (s.x_val, s.y_val), "train": (s.x_train, s.y_train)}[split]
    if x is None:
        raise MissingSplit.of(split, s)
    fit, names = data.artifacts["baselines"], data.artifacts["columns"]["targets"]
    return scored(model, in_scale(x, data.scale), x, y, fit, names, recipe, image, f"{recipe.name}: {split} split")


def scored(model, inputs, x, y, fit: dict, names: list[str], recipe, image, title: str) -> dict:
    """The model's scores on `inputs` (in its scale; `x` as read, for the baselines) against targets `y` (named
    `names`), beside those of the baselines `fit` (fit_baselines'), and its picture of predictions against
    actual values."""
    actual = np.asarray(y, np.float64)
    predicted = np.asarray(model.predict(inputs, verbose=0, batch_size=1024), np.float64)
    model_scores = scores(predicted, actual)
    log = recipe.data.target_transform == "log"
    base = {k: scores(v, actual) for k, v in baselines(fit, x).items()}
    best = min(base, key=lambda k: base[k]["mae"])
    plots.predicted_vs_actual(actual, predicted, names, image, title, log=log)
    per_target = model_scores.pop("per_target")
    for b in base.values():
        b.pop("per_target")
    return {"examples": int(len(x)), "targets": names, "target_transform": recipe.data.target_transform,
            **model_scores, "per_target": dict(zip(names, per_target)),
            "baselines": base, "plot": str(image),
            "vs_best_baseline": {"baseline": best, "mae_ratio": model_scores["mae"] / max(base[best]["mae"], 1e-12)}}
