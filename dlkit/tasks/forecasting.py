"""Forecasting (many-to-many): `input_steps` rows of a series in, the next `horizon` steps of the target
columns out (rnn_forecaster).

The rows (dlkit.data.series: time order, duplicates and gaps by the recipe's policy) are cut by time into
a training span, then validation, then test at the end. The scaler (per column, from the training span's
rows alone) is a run artifact. A window's inputs may reach back across a span's start, but its targets lie
inside its span, so every validation and test target is later than every training row.

Measures are on the original scale, per horizon step and overall: MAE, RMSE, MAPE and sMAPE (100 *
mean(2|F - A| / (|A| + |F|))), each beside two naive forecasts of the same windows: persistence (the last
value seen) and seasonal naive (the value one season earlier, `data.season` steps). The model is judged
against the better of the two (`vs_best_baseline`). `dlkit predict RUN --csv FILE` forecasts past the end
of a file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dlkit import plots
from dlkit.data import pipeline, sources
from dlkit.data.spec import MODALITIES, DataSpec
from dlkit.errors import DataError, MissingSplit, UsageError
from dlkit.recipe.schema import MAX_BATCH, DataCommon, FitTrain, changed, csv_format_problems, unread_keys
from dlkit.tasks.base import EvalRequest, FitContext, Headline, PredictRequest, data_path, data_slug, evaluation
from dlkit.tasks.fit import FitTask

SERIES_DATASETS = ("csv", "pjm_hourly_energy", "airline_passengers")
MEASURES = ("mae", "rmse", "mape", "smape")


class SeriesData(DataCommon):
    path_datasets = {"csv": "the CSV file"}
    plugged = True  # a plugin's dataset: its x_train table

    dataset: str = Field(
        description="choose one of: csv (your file, in data.path), pjm_hourly_energy, airline_passengers")
    time_column: str | list[str] | None = None  # default the first column; a list: year, month, day, hour, ...
    # how the time column is written, a strptime format ("%d/%m/%Y %H:%M"); default: as pandas reads it, a date
    # of slashes read day first where its days past 12 (or its even spacing) say so
    time_format: str | None = None
    target_columns: list[str] | None = None  # what is forecast; default the last column
    feature_columns: list[str] = Field(default_factory=list)  # other numeric inputs
    categorical_columns: list[str] = Field(default_factory=list)  # inputs one-hot encoded
    # training: one input per category value the training span has (a value only in later rows is no input,
    # its weights would never train); all: one per value anywhere in the file, as runs before this key trained
    category_values: Literal["training", "all"] = "training"
    calendar: list[Literal["hour", "day_of_week", "day_of_year", "month"]] = Field(default_factory=list)  # (sin, cos)
    frequency: str | None = None  # a pandas frequency ("1h", "MS"): times missing from the file become gaps
    duplicates: Literal["mean", "first", "last", "error"] = "mean"  # rows sharing a time
    missing: Literal["interpolate", "ffill", "error"] = "interpolate"  # gaps and empty cells; never NaN in training
    missing_markers: list[str] = Field(default_factory=list)  # cells that mean "missing" besides empty, NA, nan
    separator: str = Field(",", min_length=1, max_length=1)  # between a row's cells: ",", ";", "\t", "|"
    decimal: Literal[".", ","] = "."  # the decimal mark: "," in many European files (beside separator ";")
    input_steps: int = Field(24, ge=1)  # rows a window reads
    horizon: int = Field(24, ge=1)  # steps it forecasts
    stride: int = Field(1, ge=1)  # steps between training windows' starts
    season: int | None = Field(None, ge=1)  # steps in a season (24 hourly, 12 monthly): the seasonal naive forecast
    validation_split: float = Field(0.1, ge=0, lt=1)  # of the rows, before the test span
    test_split: float = Field(0.2, ge=0, lt=1)  # of the rows, at the end
    scale: Literal["standardize", "minmax", "none"] = "standardize"  # per column, training span only
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)

    not_used = {
        "augment": "augmentation is for images",
        "image_size": "a series has no image size (data.input_steps is a window's length)",
        "label_column": "a forecaster's targets are data.target_columns",
    }

    _dataset = field_validator("dataset")(lambda v: sources.named(v, list(SERIES_DATASETS)))

    @field_validator("time_column")
    @classmethod
    def _time_column(cls, v):
        # an empty name or list read as "the first column", or as no column at all, once the file was read
        names = v if isinstance(v, list) else [v]
        if v is not None and (not names or not all(names)):
            raise ValueError("an empty name: name the time column (Datetime), or the columns a time is assembled "
                             "from ([year, month, day, hour]); leave it out for the first column")
        return v

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, v):
        if v is not None and "%" not in v:
            raise ValueError(f"{v!r} has no % directive; a time format is strptime's: %d/%m/%Y, %Y-%m-%d %H:%M")
        return v

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v):
        """A pandas frequency that steps forward, checked when the recipe loads: an unknown one was the data's
        error, in pandas's words, once the file had been read."""
        if v is None:
            return v
        from pandas.tseries.frequencies import to_offset  # only here: `import dlkit.cli` loads no pandas

        try:
            with warnings.catch_warnings():  # a deprecated alias ('d') still parses; the run says so once
                warnings.simplefilter("ignore")
                step = to_offset(v)
        except ValueError as e:
            guess = re.search(r"Did you mean (\S+?)\?", str(e))
            raise ValueError(f"{v!r} is not a pandas frequency; {f'did you mean {guess[1]!r}? ' if guess else ''}"
                             "write a count and a unit: 1h, 15min, 1D, W-MON, MS") from None
        if step.n <= 0:
            raise ValueError(f"{v!r} steps back or stands still; a frequency is a step forward in time (1h)")
        return v

    def cross_problems(self):
        unread = changed(self, ("separator", "decimal")) if self.dataset not in SERIES_DATASETS else []
        return super().cross_problems() + (
            ["validation_split + test_split leave under 10% of the rows for training"]
            if self.validation_split + self.test_split >= 0.9 else []) + (
            ["data.time_format: it reads one time column; data.time_column names several, read as year, month, "
             "day, ... (remove time_format)"] if self.time_format and isinstance(self.time_column, list) and
            len(self.time_column) > 1 else []) + csv_format_problems(self) + unread_keys(
            unread, f"how a CSV file's cells are written; dataset {self.dataset!r} gives its table as x_train")


class ForecastTrain(FitTrain):
    loss: str | None = None  # default mean squared error on the scaled targets
    metrics: list[str] = Field(default_factory=lambda: ["mae"])


def _time(t) -> str:
    """A datetime64 as `2018-08-03 00:00:00`."""
    return str(np.datetime64(t, "s")).replace("T", " ")


def fit_scaler(rows: np.ndarray, kind: str) -> dict:
    if kind == "none":
        return {"kind": kind, "shift": [0.0] * rows.shape[1], "scale": [1.0] * rows.shape[1]}
    if kind == "minmax":
        lo, hi = rows.min(axis=0), rows.max(axis=0)
        shift, scale = lo, np.where(hi > lo, hi - lo, 1.0)
    else:
        shift, scale = rows.mean(axis=0), rows.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
    return {"kind": kind, "shift": shift.tolist(), "scale": scale.tolist()}


def scaled(values: np.ndarray, scaler: dict) -> np.ndarray:
    """The rows as the model reads them, float32; a value float32 cannot hold comes out inf (callers check)."""
    with np.errstate(over="ignore"):
        return ((values - np.asarray(scaler["shift"])) / np.asarray(scaler["scale"])).astype(np.float32)


def unscaled(values: np.ndarray, scaler: dict, columns: int) -> np.ndarray:
    return values * np.asarray(scaler["scale"][:columns]) + np.asarray(scaler["shift"][:columns])


def window_starts(first_target: int, last_target: int, input_steps: int, horizon: int, stride: int) -> np.ndarray:
    """Row indices t where a window's targets are rows t .. t + horizon - 1, all in [first_target, last_target),
    and its inputs rows t - input_steps .. t - 1 exist."""
    lo = max(first_target, input_steps)
    hi = last_target - horizon
    return np.arange(lo, hi + 1, stride)


def windows(values: np.ndarray, starts: np.ndarray, input_steps: int, horizon: int, targets: int):
    x = values[starts[:, None] + np.arange(-input_steps, 0)[None, :]]
    y = values[starts[:, None] + np.arange(horizon)[None, :], :targets]
    return x, y


def spans(rows: int, cfg) -> dict:
    """[first, last) row of each span: train, then val, then test at the end."""
    n_test = int(round(rows * cfg.test_split))
    n_val = int(round(rows * cfg.validation_split))
    train_end = rows - n_test - n_val
    return {"train": (0, train_end), "val": (train_end, rows - n_test), "test": (rows - n_test, rows)}


def baselines(raw: np.ndarray, starts: np.ndarray, horizon: int, targets: int, season: int | None) -> dict:
    """Naive forecasts of the same windows on the original scale: persistence and (with a season) seasonal
    naive, y[t + h - season * ceil((h + 1) / season)], always a row before the window's first target."""
    h = np.arange(horizon)
    out = {"persistence": np.repeat(raw[starts - 1][:, None, :targets], horizon, axis=1)}
    if season:
        back = season * np.ceil((h + 1) / season).astype(int)
        out["seasonal_naive"] = raw[starts[:, None] + h[None, :] - back[None, :], :targets]
    return out


def errors(forecast: np.ndarray, actual: np.ndarray) -> dict:
    """MAE, RMSE, MAPE and sMAPE (percent) overall and per horizon step; MAPE skips zero actuals."""
    diff = forecast - actual
    out = {}
    axes = (0, 2)  # over windows and target columns; per horizon step
    nonzero = np.abs(actual) > 0
    ape = np.where(nonzero, np.abs(diff) / np.where(nonzero, np.abs(actual), 1), np.nan)
    denom = np.abs(actual) + np.abs(forecast)
    sape = np.where(denom > 0, 2 * np.abs(diff) / np.where(denom > 0, denom, 1), 0.0)
    per = {"mae": np.mean(np.abs(diff), axis=axes), "rmse": np.sqrt(np.mean(diff**2, axis=axes)),
           "mape": 100 * np.nanmean(ape, axis=axes), "smape": 100 * np.mean(sape, axis=axes)}
    overall = {"mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff**2))),
               "mape": float(100 * np.nanmean(ape)), "smape": float(100 * np.mean(sape))}
    for k in MEASURES:
        out[k] = overall[k]
        out[f"{k}_per_step"] = [float(v) for v in per[k]]
    return out


class Forecasting(FitTask):
    name = "forecasting"
    headlines = (Headline("model.mae", "MAE", "min"),)
    summary = "windows of a series to its next steps; MAE, RMSE, MAPE, sMAPE against naive forecasts; `predict --csv`"
    Data = SeriesData
    Train = ForecastTrain
    default_loss = "mean_squared_error"
    options = frozenset({"data"})  # evaluate's --data

    def locate(self, recipe) -> str:
        from dlkit.data import series

        return str(series.find(recipe.data, local_only=True))

    def load_data(self, recipe):
        from dlkit.data import series

        cfg = recipe.data
        frame = series.read(cfg)
        rows = len(frame.values)
        if cfg.limit:
            rows = min(rows, cfg.limit)
        bounds = spans(rows, cfg)
        t0, t1 = bounds["train"]
        frame, note = series.trained_categories(frame, cfg, slice(t0, t1), rows) \
            if cfg.category_values == "training" else (frame, None)
        scaler = fit_scaler(frame.values[t0:t1], cfg.scale)  # the training span's rows alone
        values = scaled(frame.values[:rows], scaler)
        made = {}
        for name, (a, b) in bounds.items():
            starts = window_starts(a, b, cfg.input_steps, cfg.horizon, cfg.stride if name == "train" else 1)
            made[name] = (windows(values, starts, cfg.input_steps, cfg.horizon, frame.targets), starts) \
                if len(starts) else ((None, None), starts)
        if made["train"][0][0] is None:
            raise DataError(f"{frame.origin}: the training span ({t1 - t0} rows) is shorter than one window "
                            f"(input_steps {cfg.input_steps} + horizon {cfg.horizon}); lower them or the splits")
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (made[k][0] for k in ("train", "val", "test"))
        if x_te is not None and cfg.test_limit:
            x_te, y_te = x_te[: cfg.test_limit], y_te[: cfg.test_limit]
        splits = pipeline.Splits(x_tr, y_tr, x_va, y_va, x_te, y_te)
        spec = DataSpec(input_shape=(), modality="series", target_shape=(cfg.horizon, frame.targets))
        columns = {"columns": frame.columns, "targets": frame.targets, "frequency": cfg.frequency,
                   "day_first": frame.day_first,
                   "last_time": _time(frame.times[rows - 1]), "spans": {
                       k: [_time(frame.times[a]), _time(frame.times[b - 1])] if b > a else None
                       for k, (a, b) in bounds.items()}}
        data = pipeline.from_splits(splits, spec, cfg, recipe.seed, None, MODALITIES["series"], self.examples(recipe),
                                    frame.origin, {"scaler": {**scaler, **columns}})
        data.context = Series(frame.values[:rows], frame.times[:rows], {k: made[k][1] for k in made}, scaler,
                             frame.targets)
        data.notes += [n for n in (*frame.notes, note, None if cfg.frequency else series.spacing_note(frame)) if n]
        return data

    def finish(self, ctx: FitContext, callbacks) -> dict:
        if ctx.data.test is None:
            return {}
        return {"test": measure(ctx.model, ctx.data, "test", ctx.recipe, ctx.run.image("forecast.png"))}

    def evaluate(self, run, recipe, model, data, request: EvalRequest) -> dict:
        if request.data is not None:
            return evaluation(self, run, request, lambda: self._measure_on(run, recipe, model, request.data))
        image = run.image("forecast.png" if request.split == "test" else f"forecast_{request.split}.png")
        return evaluation(self, run, request, lambda: measure(model, data(), request.split, recipe, image))

    def _measure_on(self, run, recipe, model, path) -> dict:
        """evaluate --data: a series of one's own (a CSV of the columns the run trained on, as `predict --csv`
        reads it; later months, another meter) measured as a split is: every window of the file, stride 1,
        scaled by the run's training scaler, against persistence and seasonal-naive forecasts of the same
        windows."""
        from dlkit.data import series, sources

        path = data_path(path)
        sources.a_file(path, "a forecaster is measured on a CSV file of its series")
        saved, cfg = run.read_artifact("scaler"), recipe.data
        frame = series.aligned(series.read(cfg, path, saved.get("day_first")), cfg, saved["columns"], path)
        starts = window_starts(0, len(frame.values), cfg.input_steps, cfg.horizon, 1)
        if not len(starts):
            raise DataError(f"{path}: {len(frame.values)} rows, fewer than one window (input_steps {cfg.input_steps} "
                            f"+ horizon {cfg.horizon})")
        x, y = windows(scaled(frame.values, saved), starts, cfg.input_steps, cfg.horizon, saved["targets"])
        if not np.isfinite(x).all():  # as predict: a value far beyond training's overflows float32 once scaled
            raise DataError(f"{path}: values so far beyond the training rows' (up to {np.abs(frame.values).max():g}) "
                            "that the model's float32 inputs cannot hold them")
        ser = Series(frame.values, frame.times, {"data": starts}, saved, saved["targets"])
        return scored(model, x, y, ser, starts, recipe, run.image(f"forecast_{data_slug(path)}.png"),
                      f"{recipe.name}: {path.name}")

    def report(self, result: dict) -> list:
        from rich.table import Table

        from dlkit.tasks.generative import split_heading

        table = Table(title=split_heading(result, "windows") + f", horizon {result['horizon']}, {' to '.join(result['span'])}")
        names = ["model"] + list(result["baselines"])
        table.add_column("measure")
        for n in names:
            table.add_column(n, justify="right")
        for k in MEASURES:
            table.add_row(k, *(f"{(result['model'] if n == 'model' else result['baselines'][n])[k]:.4g}"
                               for n in names))
        gain = result["vs_best_baseline"]
        return [table, f"MAE against the better baseline ({gain['baseline']}): {gain['mae_ratio']:.3f} "
                       f"({100 * (1 - gain['mae_ratio']):+.1f}% better)" if gain['mae_ratio'] < 1 else
                f"MAE against the better baseline ({gain['baseline']}): {gain['mae_ratio']:.3f} (worse)",
                f"forecast plot: {result['plot']}"]

    def predict(self, run, recipe, model, request: PredictRequest) -> dict:
        import pandas as pd

        from dlkit.data import series

        if request.inputs:
            raise UsageError("image files are for image classifiers; a forecaster reads --csv")

        if request.texts:
            raise UsageError("--text is for text classifiers; a forecaster reads --csv FILE")
        if request.csv is None:
            raise UsageError("give the series to forecast from: --csv FILE (the columns the run trained on)")
        if not request.csv.is_file():
            what = "a folder, not a file" if request.csv.is_dir() else "no such file"
            raise UsageError(f"--csv {request.csv}: {what}")
        saved = run.read_artifact("scaler")
        frame = series.aligned(series.read(recipe.data, request.csv, saved.get("day_first")), recipe.data,
                               saved["columns"], request.csv)
        steps = recipe.data.input_steps
        if len(frame.values) < steps:
            raise DataError(f"{request.csv}: {len(frame.values)} rows; a forecast reads the last {steps}")
        x = scaled(frame.values[-steps:], saved)[None]
        if not np.isfinite(x).all():  # 1e300 passes the file's own checks, then overflows float32 once scaled
            column = frame.columns[int(np.argwhere(~np.isfinite(x[0]))[0][1])]
            raise DataError(f"{request.csv}: column {column!r} holds values so far beyond the training rows' (up to "
                            f"{np.abs(frame.values[-steps:]).max():g}) that the model's float32 inputs cannot hold them")
        y = unscaled(np.asarray(model.predict(x, verbose=0))[0], saved, saved["targets"])
        freq = saved["frequency"] or series.frequency_of(frame.times[-min(len(frame.times), 50):])
        if freq is None:  # the run's recipe sets no data.frequency: the file's last times tell it
            raise DataError(f"{request.csv}: cannot tell the series' step from its last times, which are not evenly "
                            "spaced (the run's recipe sets no data.frequency); give rows at even times, as trained")
        times = pd.date_range(pd.Timestamp(frame.times[-1]), periods=len(y) + 1, freq=freq)[1:]
        names = saved["columns"][: saved["targets"]]
        return {"status": "completed", "task": self.name, "run_dir": str(run.root), "from": str(request.csv),
                "last_time": _time(frame.times[-1]),
                "forecast": [{"time": _time(t.to_datetime64()), **{n: float(v) for n, v in zip(names, row)}} for t, row in zip(times, y)]}


    def report_prediction(self, result: dict) -> list:
        from rich.table import Table

        table = Table(title=f"forecast after {result['last_time']}")
        names = [k for k in result["forecast"][0] if k != "time"]
        for col in ["time"] + names:
            table.add_column(col, justify="right")
        for row in result["forecast"]:
            table.add_row(row["time"], *(f"{row[n]:.6g}" for n in names))
        return [table]


@dataclass
class Series:
    """The rows behind a forecaster's windows, on their original scale, for its measures."""

    raw: np.ndarray
    times: np.ndarray
    starts: dict  # split -> the row index of each window's first target
    scaler: dict
    targets: int


def measure(model, data, split: str, recipe, image) -> dict:
    s = data.splits
    x, y = {"test": (s.x_test, s.y_test), "val": (s.x_val, s.y_val), "train": (s.x_train, s.y_train)}[split]
    if x is None:
        raise MissingSplit.of(split, s, "span")
    return scored(model, x, y, data.context, data.context.starts[split][: len(x)], recipe, image,
                  f"{recipe.name}: {split} span")


def scored(model, x, y, ser, starts, recipe, image, title: str) -> dict:
    """measure's figures for windows (x, y) of the series `ser` whose targets start at rows `starts`. With a
    season, a window that starts less than a season into the series has no season-ago rows for the
    seasonal-naive forecast (numpy read them from the series' end, in silence): the windows it leaves out are
    counted in a note, and every forecast is scored on the rest."""
    cfg, note = recipe.data, None
    if cfg.season and starts.min() < cfg.season:
        keep = starts >= cfg.season
        if not keep.any():
            raise DataError(f"{len(starts)} windows, each starting less than a season (data.season {cfg.season} "
                            "rows) into the series: the seasonal-naive forecast has no rows to read")
        note = (f"{int((~keep).sum())} of the {len(starts)} windows start less than a season (data.season "
                f"{cfg.season} rows) into the series, before any season-ago row the seasonal-naive forecast reads: "
                "they are left out, and every forecast is scored on the other windows")
        x, y, starts = x[keep], y[keep], starts[keep]
    actual = unscaled(y.astype(np.float64), ser.scaler, ser.targets)
    forecast = unscaled(np.asarray(model.predict(x, verbose=0, batch_size=1024), np.float64), ser.scaler, ser.targets)
    naive = baselines(ser.raw, starts, cfg.horizon, ser.targets, cfg.season)
    scores = {k: errors(v, actual) for k, v in naive.items()}
    best = min(scores, key=lambda k: scores[k]["mae"])
    model_scores = errors(forecast, actual)
    plots.forecast(ser.times, starts, actual, forecast, naive[best], best, image, title)
    return {"windows": int(len(x)), "horizon": cfg.horizon, "model": model_scores, "baselines": scores,
            "vs_best_baseline": {"baseline": best, "mae_ratio": model_scores["mae"] / max(scores[best]["mae"], 1e-12)},
            "span": [_time(ser.times[starts[0]]), _time(ser.times[starts[-1] + cfg.horizon - 1])], "plot": str(image),
            **({"note": note} if note else {})}
