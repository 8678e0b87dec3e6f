"""Time series from CSV files (pandas): a time column (or several: year, month, day, hour), target and
feature columns, categorical columns one-hot encoded, duplicated times and gaps handled by a declared
policy, so no NaN ever reaches training.

`read(cfg)` gives a `Frame`: the rows in time order with numeric columns only, the target columns first.
The forecasting task (dlkit.tasks.forecasting) cuts it into chronological spans and windows.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlkit.data import sources
from dlkit.data.sources import DECIMAL_COMMA, local_dirs, separator_in
from dlkit.errors import DataError, first_line
from dlkit.files import not_utf8

SERIES_SOURCES = {
    "pjm_hourly_energy": ("AEP_hourly.csv", "PJM hourly energy use of American Electric Power (MW), 2004-2018",
                          "https://raw.githubusercontent.com/Dsblima/previsao_com_arima/54692a170db7d221e6c33b3e2e2443ed5c039c7b/AEP_hourly.csv"),
    "airline_passengers": ("airline-passengers.csv", "monthly international airline passengers (thousands), 1949-1960",
                           "https://raw.githubusercontent.com/jbrownlee/Datasets/master/airline-passengers.csv"),
}
CALENDAR = ("hour", "day_of_week", "day_of_year", "month")  # features from the time, each as (sin, cos)
TIME_PARTS = ("year", "month", "day", "hour", "minute", "second")


@dataclass
class Frame:
    times: np.ndarray  # datetime64[ns], increasing
    values: np.ndarray  # (rows, columns) float64: the targets first, then the features
    columns: list[str]
    targets: int  # how many of the first columns are targets
    origin: str
    notes: list[str] = field(default_factory=list)  # how it was read, to say as a run starts
    day_first: bool = False  # its dates were read day first (13/01/2020)


def find(cfg, local_only: bool = False) -> Path | str:
    """The CSV a `data:` section names: data.path, or a built-in dataset's file looked for locally and
    downloaded into the Keras cache when allowed (`local_only`: say it would be, as `dlkit validate` does); a
    plugin's dataset: where it reads from (sources.locate)."""
    if sources.plugin(cfg.dataset):
        return sources.locate(cfg)
    if cfg.dataset == "csv":
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"CSV file not found: {path} (data.path)")
        return path
    fname, _, url = SERIES_SOURCES[cfg.dataset]
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / cfg.dataset
    dirs = local_dirs(cfg.dir, cfg.dataset) + [cache]
    for d in dirs:
        if (d / fname).is_file():
            return d / fname
    failure = "downloading is off (data.download: false)"
    if local_only and cfg.download:
        return f"{cfg.dataset}: not found locally; will try to download"
    if cfg.download and os.environ.get("DLKIT_OFFLINE") != "1":
        try:
            from dlkit.data.sources import fetch

            return fetch(fname, url, cache.parent.parent, f"datasets/{cfg.dataset}")
        except Exception as e:  # noqa: BLE001 - any network failure means the same to the user
            failure = f"the download failed ({type(e).__name__}: {first_line(e)})"
    looked = "\n".join(f"    {d}" for d in dirs)
    raise DataError(f"dataset {cfg.dataset!r} not found, and {failure}.\n  Looked in:\n{looked}\n  Put {fname} in one "
                    "of those folders, or point data.dir (or $DLKIT_DATA_DIR) at the folder that holds it.")


def read(cfg, path: Path | None = None, day_first: bool | None = None) -> Frame:
    """The rows of the CSV in time order, as the recipe's policies say; `path` reads another file with the
    same columns (`dlkit predict --csv`), `day_first` as the run's training file was read (a few rows of dates
    may not tell day first from month first)."""
    import pandas as pd

    if path is None and (entry := sources.plugin(cfg.dataset)):
        df, where = plugin_table(entry, cfg)
    else:
        path = path or find(cfg)
        try:
            df = pd.read_csv(path, sep=cfg.separator, decimal=cfg.decimal, skipinitialspace=True,
                             na_values=cfg.missing_markers or None,
                             skiprows=sources.excel_separator_line(Path(path), cfg.separator))
        except UnicodeDecodeError:
            raise DataError(not_utf8(path)) from None
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"cannot read CSV file {path}: {first_line(e, 200)}") from None
        where = f"{path}"
    columns = list(df.columns)
    time_cols = cfg.time_column if isinstance(cfg.time_column, list) else [cfg.time_column or columns[0]]
    missing = [c for c in time_cols + (cfg.target_columns or []) + cfg.feature_columns + cfg.categorical_columns
               if c not in columns]
    if missing:
        hint = ""
        if len(columns) == 1:  # the header read as one cell: the file is likely separated by something else
            other = separator_in(columns[0], cfg.separator)
            hint = f"; the header reads as one column: if the file separates cells with {other!r}, set " \
                   f"data.separator: {other!r}" if other else ""
        raise DataError(f"{where}: no column {', '.join(map(repr, missing))}; its columns are "
                        f"{', '.join(map(repr, columns))}{hint}")

    shifting = []  # times whose UTC offsets change (daylight saving): read in UTC

    def as_times(values, **kwargs):
        with warnings.catch_warnings():  # pandas's "could not infer format": times that read each on its own
            warnings.simplefilter("ignore", UserWarning)  # read all the same, and a user has no key to set
            warnings.simplefilter("ignore", FutureWarning)  # pandas 2's notice of mixed offsets, said below
            try:
                out = pd.to_datetime(values, **kwargs)
            except ValueError as e:  # pandas 3: "Mixed timezones detected" (it was a traceback)
                if "timezone" not in str(e).lower():
                    raise
                out = None
            if out is None or getattr(out, "dtype", None) == object:  # pandas 2: datetimes as Python objects
                shifting.append(True)
                out = pd.to_datetime(values, utc=True, **kwargs)
            return out

    numeric = _numeric_times(df[time_cols[0]]) if len(time_cols) == 1 else None
    fmt = getattr(cfg, "time_format", None)
    if day_first is None:  # as this file's dates say (a trained run's file read as its training file was)
        day_first = len(time_cols) == 1 and not fmt and not numeric and _day_first(df[time_cols[0]], where,
                                                                                  time_cols[0])
    how = {"format": fmt} if fmt else {"dayfirst": True} if day_first else {}
    try:
        if numeric:
            times = as_times(numeric[0])
        elif len(time_cols) == 1:
            times = as_times(df[time_cols[0]], **how)
        else:  # year, month, day, hour, ... given as columns, in that order
            times = as_times(df[time_cols].set_axis(list(TIME_PARTS[:len(time_cols)]), axis=1))
    except (ValueError, TypeError) as e:
        if len(time_cols) == 1:  # a cell or two among times that read: name the first, not pandas's guess at a fix
            column = df[time_cols[0]]
            unread = np.flatnonzero(column.notna().to_numpy() & as_times(column, errors="coerce", **how).isna())
            if 0 < len(unread) < len(column):
                first, n = f"{column.iloc[unread[0]]!r} (data row {unread[0] + 1})", len(unread)
                what = f"a cell that is not a time like the others: {first}" if n == 1 else \
                    f"{n} cells that are not times like the others, the first {first}"
                raise DataError(f"{where}: time column {time_cols[0]!r} has {what}; correct "
                                f"{'it' if n == 1 else 'them'}" + (f" (data.time_format: {fmt!r})" if fmt else "")
                                ) from None
        if fmt:  # none of its cells reads so
            raise DataError(f"{where}: time column {time_cols[0]!r} does not read as data.time_format {fmt!r} (its "
                            f"first cell: {df[time_cols[0]].iloc[0]!r}); write the format its cells have") from None
        raise DataError(f"{where}: the time column{'s' if len(time_cols) > 1 else ''} {', '.join(time_cols)} "
                        f"could not be read as times ({first_line(e, 160)}); set data.time_column") from None
    notes = []
    times = pd.DatetimeIndex(times)
    if isinstance(day_first, str):  # found in this file
        shown = pd.to_datetime(day_first, dayfirst=True)
        notes.append(f"{where}: time column {time_cols[0]!r} is read day first ({day_first.strip()} is "
                     f"{shown.day} {shown:%B %Y}); set data.time_format to read it otherwise")
    if numeric:
        notes.append(f"{where}: time column {time_cols[0]!r} holds numbers, read as {numeric[1]} "
                     f"({df[time_cols[0]].iloc[0]} is {times[0]})")
    if shifting:  # in UTC the hours follow evenly; in the file's own clock an hour repeats, or is missing
        times = times.tz_convert("UTC").tz_localize(None)
        notes.append(f"{where}: its times carry UTC offsets that change (daylight saving time): they are read in "
                     "UTC, so that the hours follow evenly, and forecasts are given in UTC")
    elif times.tz is not None:  # one offset throughout: the file's own clock, as it reads
        times = times.tz_localize(None)
    targets = cfg.target_columns or [c for c in columns if c not in time_cols][-1:]
    frame = pd.DataFrame({c: pd.to_numeric(df[c], errors="coerce") for c in targets + cfg.feature_columns})
    for c in targets + cfg.feature_columns:
        unread = df[c][df[c].notna() & frame[c].isna()].astype(str).str.strip()
        if cfg.decimal == "." and len(unread) and unread.str.fullmatch(DECIMAL_COMMA).all():
            raise DataError(f"{where}: column {c!r} holds numbers written with a comma ({unread.iloc[0]!r}); if the "
                            "comma is the decimal mark, set data.decimal: ','")
    bad = [c for c in targets + cfg.feature_columns if df[c].notna().any() and frame[c].isna().all()]
    if bad:
        raise DataError(f"{where}: column {', '.join(map(repr, bad))} is not numeric; list it in "
                        "data.categorical_columns to one-hot encode it")
    for c in targets + cfg.feature_columns:  # a typo or a "1,234" is not a gap to fill in silence
        unread = np.flatnonzero(df[c].notna().to_numpy() & frame[c].isna().to_numpy())
        if len(unread):
            i, n = unread[0], len(unread)
            first = (f"{df[c].iloc[i]!r} at {', '.join(str(df[t].iloc[i]) for t in time_cols)} "
                     f"(data row {i + 1})")
            what = f"a cell that is not a number: {first}" if n == 1 else \
                f"{n} cells that are not numbers, the first {first}"
            raise DataError(f"{where}: column {c!r} has {what}; correct {'it' if n == 1 else 'them'}, or name such "
                            "markers of a missing value in data.missing_markers (empty cells, NA and nan already are)")
    for c in cfg.categorical_columns:
        dummies = pd.get_dummies(df[c].astype(str), prefix=c, dtype=float)
        frame = pd.concat([frame, dummies], axis=1)
    frame.index = times
    frame = frame.sort_index()
    if frame.index.has_duplicates:
        if cfg.duplicates == "error":
            dup = frame.index[frame.index.duplicated()][0]
            raise DataError(f"{where}: time {dup} appears more than once; set data.duplicates: mean, first or last")
        frame = frame.groupby(level=0).mean() if cfg.duplicates == "mean" else frame[
            ~frame.index.duplicated(keep=cfg.duplicates)]
    if cfg.frequency:
        try:
            grid = pd.date_range(frame.index[0], frame.index[-1], freq=cfg.frequency)
        except ValueError as e:
            raise DataError(f"data.frequency {cfg.frequency!r}: {e}") from None
        frame = frame.reindex(grid)  # a time missing from the file is a row of NaN, for data.missing to fill
    holes = int(frame.isna().any(axis=1).sum())
    if holes:
        if cfg.missing == "error":
            first = frame.index[frame.isna().any(axis=1)][0]
            raise DataError(f"{where}: {holes} rows have missing values (the first at {first}); set data.missing: "
                            "interpolate or ffill")
        frame = frame.interpolate(method="time", limit_direction="both") if cfg.missing == "interpolate" else \
            frame.ffill().bfill()
    values = frame.to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{where}: non-finite values remain after data.missing: {cfg.missing}")
    for name in cfg.calendar:
        t = frame.index
        angle, period = {"hour": (t.hour, 24), "day_of_week": (t.day_of_week, 7),
                         "day_of_year": (t.day_of_year - 1, 366), "month": (t.month - 1, 12)}[name]
        angle = 2 * np.pi * np.asarray(angle, np.float64) / period
        values = np.concatenate([values, np.sin(angle)[:, None], np.cos(angle)[:, None]], axis=1)
    names = list(frame.columns) + [f"{n}_{f}" for n in cfg.calendar for f in ("sin", "cos")]
    return Frame(frame.index.to_numpy(), values, names, len(targets), where, notes, bool(day_first))


SLASHED = r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})\b"  # a date as 13/01/2020, 1.2.20 or 01-02-2020


def _day_first(column, where: str, name: str) -> str | None:
    """A cell showing that a time column of dates written with slashes (dots, dashes) and the year last is day
    first, or None where it is not (or is not such dates). Such dates pandas reads month first:
    13/01/2020 was "a cell that is not a time like the others", and 01/02/2020, ...,
    10/02/2020 (ten days) read as ten months, in silence. Day first where a first number passes 12 and no second
    one does; else month first where a second one passes 12; where none does, the one reading whose times are
    evenly spaced (a monthly US file, 01/01/2020, 02/01/2020: month first), and a DataError asking for
    data.time_format where both are (or neither)."""
    import re

    import pandas as pd

    if not (pd.api.types.is_string_dtype(column) or column.dtype == object) or not len(column.dropna()):
        return None
    cells = column.dropna().astype(str)
    parts = cells.str.extract(SLASHED)
    if parts.isna().to_numpy().any():
        return None
    first, second = parts[0].astype(int), parts[1].astype(int)
    if first.max() > 12 or second.max() > 12:
        return cells.iloc[int(np.argmax(first.to_numpy() > 12))] if first.max() > 12 >= second.max() else None
    read = {}
    for day in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read[day] = pd.to_datetime(column, dayfirst=day, errors="coerce")
    if read[True].equals(read[False]):
        return None
    even = {day: frequency_of(np.unique(times.dropna().to_numpy())) is not None for day, times in read.items()}
    if even[True] != even[False]:
        return cells.iloc[int(np.argmax(first.to_numpy() != second.to_numpy()))] if even[True] else None
    cell = str(column.dropna().iloc[0])
    sep, year = re.match(SLASHED, cell)[0][-5 if len(parts[2].iloc[0]) == 4 else -3], parts[2].iloc[0]
    y = "%Y" if len(year) == 4 else "%y"
    raise DataError(f"{where}: time column {name!r} holds dates such as {cell!r} that read as day{sep}month or as "
                    f"month{sep}day alike (no number past 12 tells which): set data.time_format: "
                    f"'%d{sep}%m{sep}{y}' (day first) or '%m{sep}%d{sep}{y}' (month first), with the time's "
                    "directives after it where the cells have one (' %H:%M')")


DIGIT_TIMES = {8: ("%Y%m%d", "YYYYMMDD"), 10: ("%Y%m%d%H", "YYYYMMDDHH"), 12: ("%Y%m%d%H%M", "YYYYMMDDHHMM"),
               14: ("%Y%m%d%H%M%S", "YYYYMMDDHHMMSS")}


def _numeric_times(column):
    """How a time column of numbers is read, which pandas read as nanoseconds since 1970 (1577836800 was
    1970-01-01 00:00:01, and the forecasts were dated so): (the times, what they were read as), or None for a
    column that is not numbers, or numbers of neither kind. Whole numbers that all read as dates written in
    digits (20200101, 2020010112: YYYYMMDD[HH[MM[SS]]]) are such dates; else numbers from 1e8 to 1e10 are Unix
    times in seconds (1973 to 2286), from 1e11 to 1e13 in milliseconds. A Unix time in seconds is rarely a valid
    YYYYMMDDHH (1577836800: month 83), and never all of a series' are."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column) or column.isna().any() \
            or not len(column):
        return None
    values = column.to_numpy(np.float64)
    if (values >= 1e7).all() and (values < 1e14).all() and (values == np.round(values)).all():
        digits = column.astype(np.int64).astype(str)
        form, said = DIGIT_TIMES.get(int(digits.str.len().max()), (None, None)) \
            if digits.str.len().nunique() == 1 else (None, None)
        if form:
            read = pd.to_datetime(digits, format=form, errors="coerce")
            if read.notna().all():
                return read, f"dates written in digits, {said}"
    low, high = values.min(), values.max()
    for unit, name, (a, b) in (("s", "seconds", (1e8, 1e10)), ("ms", "milliseconds", (1e11, 1e13))):
        if a <= low and high < b:
            return pd.to_datetime(column, unit=unit), f"Unix times in {name}"
    return None


def frequency_of(times) -> str | None:
    """pandas' frequency of evenly spaced `times` ("MS", "h"), or None: fewer than three, or not evenly spaced."""
    import pandas as pd

    if len(times) < 3:
        return None
    with warnings.catch_warnings():  # pandas 3's notice that pandas 4 gives an offset, not its string
        warnings.simplefilter("ignore")
        found = pd.infer_freq(pd.DatetimeIndex(times))
    return getattr(found, "freqstr", found)


def spacing_note(frame: Frame) -> str | None:
    """A note where a series read without data.frequency is not evenly spaced in time (a month missing from a
    monthly file): the model reads its rows as steps of one size, so the gap is joined over in silence. The
    usual step is the one most short runs of rows have, and the note counts the times missing from a grid of
    it and the times off that grid."""
    import collections

    import pandas as pd

    times = pd.DatetimeIndex(frame.times)
    if len(times) < 3 or frequency_of(times):
        return None
    runs = collections.Counter(frequency_of(times[i:i + 5]) for i in np.linspace(0, len(times) - 5, 60, dtype=int))
    runs.pop(None, None)
    usual = runs.most_common(1)[0][0] if runs else None
    said = f"{frame.origin}: its times are not evenly spaced, and data.frequency is not set: the model reads the " \
           "rows as steps of one size, joining over any gap"
    if usual is None:
        return said + "; set data.frequency to the series' step (1h, 1D, MS) to put them on a grid"
    grid = pd.date_range(times[0], times[-1], freq=usual)
    missing, off = grid.difference(times), times.difference(grid)
    where = [f"{len(missing)} time{'s' * (len(missing) > 1)} missing from a grid of {usual}, the first {missing[0]}"
             ] if len(missing) else []
    where += [f"{len(off)} off {'it' if where else f'a grid of {usual}'}, the first {off[0]}"] if len(off) else []
    return f"{said} ({'; '.join(where)}); set data.frequency: {usual} to put them on that grid, a gap filled by " \
           "data.missing"


def plugin_table(entry, cfg):
    """A plugin's dataset read as a series: x_train the table (a pandas DataFrame, or a dict of columns), its
    columns named as the recipe's time_column, target_columns and the rest name them, read as a CSV's are
    (cells in data.missing_markers are missing); and where it came from."""
    import pandas as pd

    found, origin, where = entry.gathered(cfg, ("y_train", "x_test", "y_test", "class_names", "target_names"),
                                          "a forecaster (its spans are cut by time: validation_split, test_split)")
    table = found["x_train"]
    if isinstance(table, dict):
        try:
            table = pd.DataFrame(table)
        except ValueError as e:  # columns of different lengths
            raise DataError(f"{where}: its x_train's columns do not make a table "
                            f"({first_line(e)})") from None
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"{where}: its x_train is {type(table).__name__}; a "
                        "forecaster reads a table: a pandas DataFrame (or a dict of columns), its columns named as "
                        "data.time_column, data.target_columns and the rest name them")
    if cfg.missing_markers:
        table = table.replace(list(cfg.missing_markers), np.nan)
    return table.reset_index(drop=True), origin


def _one_hot(frame: Frame, cfg, columns: list[str] | None = None) -> tuple[int, int]:
    """Where a frame's (or a list of its columns') one-hot columns are: after the targets and features, before
    the calendar's sin and cos."""
    names = frame.columns if columns is None else columns
    return frame.targets + len(cfg.feature_columns), len(names) - 2 * len(cfg.calendar)


def trained_categories(frame: Frame, cfg, span: slice, rows: int) -> tuple[Frame, str | None]:
    """The frame without the one-hot columns of categories no row of the training `span` has (a value that
    first appears later): their weights would never train, and would keep their random start for every later
    row that has them. Those rows read as none of the column's values. Also returns a note saying so (counting
    the rows among the first `rows`, those used), or None."""
    first, end = _one_hot(frame, cfg)
    unseen = [j for j in range(first, end) if not frame.values[span, j].any()]
    if not unseen:
        return frame, None
    keep = [j for j in range(len(frame.columns)) if j not in unseen]
    rows = int(frame.values[:rows][:, unseen].any(axis=1).sum())
    note = (f"categories the training span never has ({', '.join(frame.columns[j] for j in unseen)}) are no "
            f"inputs: {rows} later row{'s' if rows != 1 else ''} with them read as none of the column's values")
    return Frame(frame.times, frame.values[:, keep], [frame.columns[j] for j in keep], frame.targets,
                 frame.origin, frame.notes, frame.day_first), note


def aligned(frame: Frame, cfg, columns: list[str], where) -> Frame:
    """A series to forecast from (`dlkit predict --csv`) in training's columns: a category training saw and
    this file lacks is a column of 0s; a value training never saw, or other columns, are errors."""
    if frame.columns == columns:
        return frame
    first, end = _one_hot(frame, cfg)
    theirs_end = _one_hot(frame, cfg, columns)[1]
    if frame.columns[:first] != columns[:first] or frame.columns[end:] != columns[theirs_end:]:
        raise DataError(f"{where}: its columns give {frame.columns}; the run trained on {columns}")
    new = [c for c in frame.columns[first:end] if c not in columns[first:theirs_end]]
    if new:
        raise DataError(f"{where}: {', '.join(map(repr, new))}: a category value training never saw (it saw "
                        f"{', '.join(map(repr, columns[first:theirs_end]))})")
    index = {c: j for j, c in enumerate(frame.columns)}
    values = np.stack([frame.values[:, index[c]] if c in index else np.zeros(len(frame.values)) for c in columns],
                      axis=1)
    return Frame(frame.times, values, list(columns), frame.targets, frame.origin, frame.notes, frame.day_first)
