"""The recurrent family: masking, the token measures, the forecast split, the vocabulary round trip,
stateful resets, and each shipped recurrent recipe trained on the slices under tests/data."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT, build
from dlkit import tasks
from dlkit.data.spec import DataSpec
from dlkit.errors import DataError, MissingSplit, UsageError
from dlkit.tasks import forecasting, language_model
from dlkit.evaluate import evaluate
from dlkit.training.train import train


def _recipe(write_recipe, text: str):
    return tasks.load_recipe(write_recipe(text))


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory) -> dict:
    """The shipped sentiment recipe trained for an epoch on the slice, shared by the tests that use a finished
    run (and standing for that recipe in the slice test below)."""
    result = train(ROOT / "recipes" / "sentiment_lstm.yaml", [f"data.dir={DATA}", "train.epochs=1"],
                   runs_root=tmp_path_factory.mktemp("sentiment"))
    assert result["status"] == "completed" and 0 <= result["test"]["accuracy"] <= 1
    return result


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padding_is_masked(write_recipe, cell):
    """A sentence padded at the end gives the classifier the same output as the sentence alone, for each
    cell, stacked and bidirectional."""
    recipe = _recipe(write_recipe, f"""
name: masked
data: {{dataset: sentiment}}
model: {{arch: rnn_classifier, cell: {cell}, units: [6, 5], bidirectional: true, embedding_dim: 4}}
""")
    spec = DataSpec(input_shape=(9,), modality="tokens", num_classes=3, vocabulary_size=20)
    model = build(recipe, spec, compile=False)
    rng = np.random.default_rng(0)
    padded = np.zeros((3, 9), np.int32)
    lengths = [2, 5, 9]
    for i, n in enumerate(lengths):
        padded[i, :n] = rng.integers(2, 20, n)
    together = np.asarray(model(padded))
    for i, n in enumerate(lengths):
        alone = np.asarray(model(padded[i:i + 1, :n]))
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)
    # and the mask does something: the same tokens followed by real ones instead of padding differ
    other = padded.copy()
    other[0, 2:] = 3
    assert not np.allclose(np.asarray(model(other))[0], together[0], atol=1e-4)


# ---------------------------------------------------------------- token measures


def test_token_measures_match_a_hand_computation():
    """Summed negative log-likelihood over tokens, padding (id 0) excluded: by hand for uniform logits and
    for a two-token example."""
    V = 8
    logits = np.zeros((2, 3, V))
    targets = np.array([[3, 4, 0], [5, 0, 0]])  # three real tokens, three padding
    nats, tokens = language_model.token_measures(logits, targets)
    assert tokens == 3 and nats == pytest.approx(3 * math.log(V))
    logits = np.full((1, 2, 3), -1e9)
    logits[0, 0, :] = [math.log(0.5), math.log(0.25), math.log(0.25)]  # p(target 1) = 1/4
    logits[0, 1, :] = [0.0, 0.0, math.log(2.0)]  # p(target 2) = 2 / 4
    nats, tokens = language_model.token_measures(logits, np.array([[1, 2]]))
    assert tokens == 2 and nats == pytest.approx(-math.log(0.25) - math.log(0.5))
    out = language_model.summary(nats, tokens, "char")
    assert out["bits_per_char"] == pytest.approx(nats / tokens / math.log(2))
    assert out["perplexity"] == pytest.approx(math.exp(nats / tokens))


def test_stateful_windows_continue_each_other():
    """Window w * rows + r is the w-th window of stream row r: batch b + 1's row r starts where batch b's
    row r ended."""
    ids = np.arange(1, 102)
    w = language_model.windows(ids, 5, rows=4)
    assert w.shape == (20, 6)
    for k in range(4, len(w)):
        assert w[k, 0] == w[k - 4, -1]  # overlapping by one: the last token read becomes the next first
    flat = language_model.windows(ids, 5, rows=None)
    assert flat.shape == (20, 6) and flat[1, 0] == flat[0, -1]


def test_a_texts_limit_cuts_its_validation_and_test_parts_too(write_recipe, tmp_path):
    """data.limit on a text keeps its first N tokens and carves validation and test from their end, as an
    image recipe's limit does (a quick run validated on the whole text's last tenth); `limit_cuts:
    training_text` keeps the parts carved from the whole text and cuts the training part alone."""
    from dlkit.data.text import Vocabulary

    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(1000))
    (tmp_path / "t.txt").write_text(text)

    def load(cuts, stateful=False):
        recipe = _recipe(write_recipe, f"""
name: lm
data: {{dataset: text, path: {tmp_path / "t.txt"}, validation_split: 0.1, test_split: 0.1, limit: 400,
       limit_cuts: {cuts}, sequence_length: 9, shuffle_buffer: 0, batch_size: 8}}
model: {{arch: rnn_lm, units: [4], embedding_dim: 4, stateful: {str(stateful).lower()}}}
""")
        return tasks.of(recipe).load_data(recipe)

    def parts(cuts):
        data = load(cuts)
        vocab = Vocabulary.from_artifact(data.artifacts["vocabulary"])
        return [vocab.text(data.context[k]) for k in ("train", "val", "test")], data.notes

    assert parts("text") == ([text[:324], text[324:360], text[360:400]], [])  # test 40 of 400, validation 36 of 360
    assert parts("training_text") == ([text[:400], text[810:900], text[900:]], [])
    # 8 streams of a window of 9 need 73 tokens: a run without those splits, said, not silently
    data = load("text", stateful=True)
    assert data.val is None and data.test is None and data.notes == [
        f"the {name} text, {n} tokens, is shorter than one batch of windows (73 tokens), so this run has no {name} "
        f"split (raise data.{key} or data.limit, or lower data.sequence_length or data.batch_size)"
        for name, n, key in (("validation", 36, "validation_split"), ("test", 40, "test_split"))]
    assert load("training_text", stateful=True).notes == []  # 90 and 100 tokens


def test_a_training_text_shorter_than_a_batch_of_windows_says_what_would_lengthen_it(write_recipe, tmp_path):
    """The error names data.limit where the limit cut the text short, and not where the text itself is."""
    (tmp_path / "t.txt").write_text("abcdefghij" * 10)
    path = write_recipe(f"""
name: lm
data: {{dataset: text, path: {tmp_path / "t.txt"}, validation_split: 0, sequence_length: 9, batch_size: 4,
       shuffle_buffer: 0}}
model: {{arch: rnn_lm, units: [4], embedding_dim: 4, stateful: true}}
""")

    def error(*sets):
        recipe = tasks.load_recipe(path, sets)
        with pytest.raises(DataError) as e:
            tasks.of(recipe).load_data(recipe)
        return str(e.value)

    assert error("data.limit=30").endswith("the training text has 30 tokens, fewer than one batch of windows needs "
                                           "(37); raise data.limit (30), or lower data.sequence_length or "
                                           "data.batch_size")
    assert error("data.batch_size=12").endswith("the training text has 100 tokens, fewer than one batch of windows "
                                                "needs (109); lower data.sequence_length or data.batch_size")
    # a limit above the training part carved from the whole text (limit_cuts: training_text) cut nothing off
    assert error("data.limit=60", "data.limit_cuts=training_text", "data.validation_split=0.5",
                 "data.batch_size=12").endswith("the training text has 50 tokens, fewer than one batch of windows "
                                                "needs (109); lower data.sequence_length or data.batch_size")


def test_a_language_models_vocabulary_is_learnt_from_the_tokens_it_trains_on(write_recipe, tmp_path):
    """The vocabulary (and its max_tokens cap) counts the training part alone: a word seen only in the
    validation part, or beyond `limit`, reads as [UNK] there. `vocabulary_from: text` learns it from the
    whole text, as runs before the key did."""
    from dlkit.data.text import Vocabulary

    words = ["a b a c b a"] * 5 + ["a z z z q z"] * 2 + ["w w w w w w"] * 3  # 30, then 12, then 18 words
    (tmp_path / "t.txt").write_text(" ".join(words))

    path = write_recipe(f"""
name: lm
data: {{dataset: text, path: {tmp_path / "t.txt"}, level: word, validation_split: 0.2857, limit: 42,
       sequence_length: 3, shuffle_buffer: 0, batch_size: 2}}
model: {{arch: rnn_lm, units: [4], embedding_dim: 4}}
train: {{epochs: 1, checkpoint_every: null}}
""")

    def load(*sets):
        recipe = tasks.load_recipe(path, sets)
        data = tasks.of(recipe).load_data(recipe)
        vocab = Vocabulary.from_artifact(data.artifacts["vocabulary"])
        return [vocab.tokenizer.id_to_token(i) for i in range(vocab.size)], data.context, data.notes

    tokens, streams, notes = load()  # the first 42 words: 30 to train on, the last 12 (a, z, q) to validate on
    assert tokens == ["[PAD]", "[UNK]", "a", "b", "c"] and len(streams["train"]) == 30
    assert streams["val"].tolist() == [2, 1, 1, 1, 1, 1] * 2 and 1 not in streams["train"]
    assert notes == ["83.3% of the validation text's tokens are not in the vocabulary, learnt from the tokens the "
                     "model trains on, and read as [UNK]; a larger data.limit trains on more of them"]
    assert load("data.max_tokens=5")[0] == ["[PAD]", "[UNK]", "a", "b", "c"]  # c: 5 times; z, 8, only in val
    tokens, streams, notes = load("data.vocabulary_from=text")  # every word of the text, w beyond the limit too
    assert tokens == ["[PAD]", "[UNK]", "w", "a", "b", "z", "c", "q"] and 1 not in streams["val"] and notes == []
    assert load("data.vocabulary_from=text", "data.max_tokens=6")[0] == ["[PAD]", "[UNK]", "w", "a", "b", "z"]
    # evaluate says so of the split it measures (the validation part: a language model carves no test part
    # unless asked), as evaluate --data does of a text of one's own
    run = train(path, runs_root=tmp_path / "runs")
    assert run["val"]["note"] == "10 of the 12 tokens (83.3%) are not in the run's vocabulary, and were read as [UNK]"
    result = evaluate(run["run_dir"])
    assert result["split"] == "val" and result["note"] == ("this run has no test split: its validation split was "
                                                           "measured; " + run["val"]["note"])


def test_a_stateless_language_model_trains(write_recipe, tmp_path):
    """A language model that is not stateful reads windows of any length (its input's steps have no fixed
    size, nor its output's): the check of what the epochs log met that size as a TypeError before any epoch."""
    import keras

    (tmp_path / "t.txt").write_text("the cat sat on the mat. " * 20)
    result = train(write_recipe(f"""
name: lm
data: {{dataset: text, path: {tmp_path / "t.txt"}, sequence_length: 8, batch_size: 8}}
model: {{arch: rnn_lm, units: [4], embedding_dim: 4}}
train: {{epochs: 1, checkpoint_every: null}}
"""), runs_root=tmp_path / "runs")
    model = keras.saving.load_model(Path(result["run_dir"]) / "model.keras")
    assert result["status"] == "completed" and model.output.shape[:2] == (None, None)
    assert math.isfinite(result["val"]["perplexity"])


def test_a_datasets_own_validation_and_test_files_are_cut_by_their_limits(write_recipe):
    """The Penn Treebank's own files, which `limit` does not cut: `validation_limit` and `test_limit` do (a
    quick run spent most of its time measuring them whole); one cut below a batch of windows is said."""
    path = write_recipe(f"""
name: ptb
data: {{dataset: ptb, dir: {DATA}, level: word, sequence_length: 5, batch_size: 4, shuffle_buffer: 0, limit: 400}}
model: {{arch: rnn_lm, units: [4], embedding_dim: 4, stateful: true}}
""")

    def load(*sets):
        recipe = tasks.load_recipe(path, sets)
        return tasks.of(recipe).load_data(recipe)

    def short(data):  # the notes of a split too short, not of its words unseen in the 400 tokens trained on
        return [note for note in data.notes if "[UNK]" not in note]

    whole = load()
    assert len(whole.context["val"]) > 1000 and len(whole.context["test"]) > 1000 and short(whole) == []
    cut = load("data.validation_limit=300", "data.test_limit=200")
    assert len(cut.context["val"]) == 300 and len(cut.context["test"]) == 200 and len(cut.context["train"]) == 400
    np.testing.assert_array_equal(cut.context["val"], whole.context["val"][:300])
    assert short(load("data.validation_limit=20")) == [
        "the validation text file, 20 tokens, is shorter than one batch of windows (21 tokens), so this run has no "
        "validation split (raise data.validation_limit, or lower data.sequence_length or data.batch_size)"]

# ---------------------------------------------------------------- stateful resets


def test_stateful_model_resets_at_epochs_and_evaluation(write_recipe, tmp_path):
    """The state is carried between the batches of an epoch, then zero when the next epoch starts and
    around each evaluation."""
    import keras

    recipe = _recipe(write_recipe, f"""
name: stateful
data: {{dataset: ptb, dir: {DATA}, sequence_length: 5, batch_size: 4, shuffle_buffer: 0, level: word}}
model: {{arch: rnn_lm, cell: gru, units: [8], embedding_dim: 4, stateful: true}}
train: {{epochs: 2, steps_per_epoch: 3}}
""")
    data = tasks.of(recipe).load_data(recipe)
    model = build(recipe, data.spec)
    layer = model.get_layer("gru_1")
    seen = []

    def norm():
        return float(np.abs(keras.ops.convert_to_numpy(layer.states[0])).sum())

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("epoch", norm()))

        def on_train_batch_end(self, batch, logs=None):
            seen.append(("batch", norm()))

        def on_test_begin(self, logs=None):
            seen.append(("test", norm()))

    reset = language_model.ResetStates.make()
    model.fit(data.feed.epochs(0, 3), epochs=2, steps_per_epoch=3,
              validation_data=data.val, callbacks=[reset, Spy()], verbose=0)
    assert [v for k, v in seen if k == "epoch"] == [0.0, 0.0]
    assert [v for k, v in seen if k == "test"] == [0.0, 0.0]
    assert all(v > 0 for k, v in seen if k == "batch")  # carried between batches


# ---------------------------------------------------------------- the forecast split


def test_forecast_split_never_leaks(write_recipe, tmp_path):
    """Every validation and test target time is after every training input, and the scaler saw only the
    training span's rows: a test span of huge values leaves it unchanged."""
    n = 300
    times = np.arange(np.datetime64("2020-01-01T00"), np.datetime64("2020-01-01T00") + np.timedelta64(n, "h"))
    values = np.sin(np.arange(n) / 5) * 10 + 100
    values[240:] += 1e6  # the test span (the last 20%)
    csv = tmp_path / "series.csv"
    csv.write_text("time,load\n" + "".join(f"{t},{v}\n" for t, v in zip(times.astype(str), values)))
    recipe = _recipe(write_recipe, f"""
name: leak
data: {{dataset: csv, path: {csv}, input_steps: 12, horizon: 6, season: 24, validation_split: 0.1, test_split: 0.2}}
model: {{arch: rnn_forecaster, units: [4]}}
""")
    data = tasks.of(recipe).load_data(recipe)
    ser = data.context
    train_rows_end = int(max(ser.starts["train"]) + recipe.data.horizon)  # past the last training target
    last_train_input = ser.times[max(ser.starts["train"]) + recipe.data.horizon - 1]
    for split in ("val", "test"):
        first_target = ser.times[min(ser.starts[split])]
        assert first_target > last_train_input
    scaler = data.artifacts["scaler"]
    rows = values[:train_rows_end]
    assert scaler["shift"][0] == pytest.approx(rows.mean()) and scaler["scale"][0] == pytest.approx(rows.std())
    assert max(values[:240]) < 1e3 and scaler["shift"][0] < 1e3  # the huge test values never reached it


def test_a_category_the_training_span_never_has_is_no_input(write_recipe, tmp_path):
    """A value of a categorical column that first appears after the training span (a holiday in December) is
    dropped: its one-hot column would be 0 through training, its weights never trained. A series to forecast
    from is put in training's columns: a category it lacks is a column of 0s, one training never saw an error."""
    from dlkit.data import series
    from dlkit.errors import DataError

    n = 100
    times = np.arange(np.datetime64("2020-01-01T00"), np.datetime64("2020-01-01T00") + np.timedelta64(n, "h"))
    kinds = ["work" if i % 3 else "rest" for i in range(n - 5)] + ["holiday"] * 5  # holiday: the test span's
    csv = tmp_path / "series.csv"
    csv.write_text("time,load,kind\n" + "".join(f"{t},{i % 7},{k}\n" for i, (t, k) in
                                                  enumerate(zip(times.astype(str), kinds))))
    recipe = _recipe(write_recipe, f"""
name: cats
data: {{dataset: csv, path: {csv}, target_columns: [load], categorical_columns: [kind], calendar: [hour],
        input_steps: 4, horizon: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
    data = tasks.of(recipe).load_data(recipe)
    columns = data.artifacts["scaler"]["columns"]
    assert columns == ["load", "kind_rest", "kind_work", "hour_sin", "hour_cos"] and data.spec.input_shape == (4, 5)
    assert data.notes == ["categories the training span never has (kind_holiday) are no inputs: 5 later rows with "
                          "them read as none of the column's values"]
    assert data.context.raw[-1, 1:3].tolist() == [0, 0]  # a holiday: neither rest nor work
    csv.write_text("time,load,kind\n2021-01-01T00,3,work\n2021-01-01T01,4,work\n")  # no rest
    frame = series.aligned(series.read(recipe.data, csv), recipe.data, columns, csv)
    assert frame.columns == columns and frame.values[:, 1:3].tolist() == [[0, 1], [0, 1]]
    csv.write_text("time,load,kind\n2021-01-01T00,3,work\n2021-01-01T01,4,holiday\n")
    with pytest.raises(DataError, match=r"'kind_holiday': a category value training never saw \(it saw 'kind_rest', "
                                        r"'kind_work'\)"):
        series.aligned(series.read(recipe.data, csv), recipe.data, columns, csv)


def test_forecast_measures_and_baselines_by_hand():
    """Persistence repeats the last value seen; seasonal naive takes the value one season before each
    target (a whole number of seasons back, before the window); sMAPE is the standard definition."""
    raw = np.arange(100, dtype=float)[:, None] * 2 + 1  # y_t = 2t + 1
    starts = np.array([50, 60])
    naive = forecasting.baselines(raw, starts, horizon=3, targets=1, season=2)
    np.testing.assert_allclose(naive["persistence"][:, :, 0], [[99, 99, 99], [119, 119, 119]])
    # h = 0, 1 go back one season (2 steps), h = 2 two seasons (4 steps): rows 48, 49, 48 for start 50
    np.testing.assert_allclose(naive["seasonal_naive"][0, :, 0], raw[[48, 49, 48], 0])
    f, a = np.array([[[110.0]], [[90.0]]]), np.array([[[100.0]], [[100.0]]])
    e = forecasting.errors(f, a)
    assert e["mae"] == 10 and e["rmse"] == 10 and e["mape"] == pytest.approx(10)
    assert e["smape"] == pytest.approx(100 * (20 / 210 + 20 / 190) / 2)


def test_a_window_less_than_a_season_in_is_left_out_of_the_scores(tmp_path):
    """A window starting less than a season into the series has no season-ago rows: its seasonal-naive
    forecast read rows from the series' end (numpy's negative index), in silence. Such windows are left out of
    every forecast's scores, and a note counts them."""
    from types import SimpleNamespace

    raw = np.arange(40, dtype=float)[:, None] * 2 + 1
    times = np.datetime64("2020-01-01T00") + np.arange(40) * np.timedelta64(1, "h")
    ser = forecasting.Series(raw, times, {}, {"shift": [0.0], "scale": [1.0]}, 1)
    starts = np.array([1, 3, 5, 10])
    x = raw[starts[:, None] - 1][:, :, :1].astype(np.float32)
    y = raw[starts[:, None] + np.arange(2)[None, :]]
    model = SimpleNamespace(predict=lambda x, **kw: np.zeros((len(x), 2, 1)))
    recipe = SimpleNamespace(name="s", data=SimpleNamespace(horizon=2, season=4))
    out = forecasting.scored(model, x, y, ser, starts, recipe, tmp_path / "f.png", "t")
    assert out["windows"] == 2 and out["note"].startswith("2 of the 4 windows start less than a season (data.season "
                                                          "4 rows)")
    kept = raw[[5, 6, 10, 11], 0].reshape(2, 2)  # the targets of the windows at 5 and 10
    seasonal = raw[[1, 2, 6, 7], 0].reshape(2, 2)  # a season (4 rows) before each
    assert out["baselines"]["seasonal_naive"]["mae"] == pytest.approx(np.mean(np.abs(kept - seasonal)))
    assert out["model"]["mae"] == pytest.approx(np.mean(kept))


def test_a_series_not_evenly_spaced_without_a_frequency_is_noted(write_recipe, tmp_path):
    """A month missing from a monthly file, read without data.frequency, is said (the rows are read as steps of
    one size, and the gap was joined over in silence), with the frequency to set; evenly spaced months, or a
    frequency given, say nothing."""
    months = [f"{1990 + m // 12}-{m % 12 + 1:02d}" for m in range(40)]
    csv = tmp_path / "monthly.csv"

    def notes(rows, frequency="null"):
        csv.write_text("month,n\n" + "".join(f"{t},{i}\n" for i, t in enumerate(rows)))
        recipe = _recipe(write_recipe, f"""
name: spaced
data: {{dataset: csv, path: {csv}, input_steps: 3, horizon: 1, season: 1, frequency: {frequency}}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
        return [n for n in tasks.of(recipe).load_data(recipe).notes if "evenly" in n]

    assert notes(months) == []
    (note,) = notes(months[:9] + months[10:])
    assert f"{csv}: its times are not evenly spaced, and data.frequency is not set" in note
    assert "(1 time missing from a grid of MS, the first 1990-10-01 00:00:00); set data.frequency: MS" in note
    assert notes(months[:9] + months[10:], "MS") == []


def test_times_with_utc_offsets(write_recipe, tmp_path):
    """Times written with UTC offsets, as a local clock's export has them: offsets that change at daylight saving
    were pandas's "Mixed timezones detected" traceback; they are read in UTC (the hours follow evenly), said in a
    note. One offset throughout is the file's own clock; it printed numpy's timezone warnings and gave forecasts
    in UTC unsaid."""
    import warnings

    import pandas as pd

    from dlkit.data import series

    def frame(start, name):
        times = pd.date_range(start, periods=60, freq="h", tz="Europe/Paris")
        csv = tmp_path / f"{name}.csv"
        csv.write_text("time,load\n" + "".join(f"{t.isoformat()},{i}\n" for i, t in enumerate(times)))
        recipe = _recipe(write_recipe, f"""
name: {name}
data: {{dataset: csv, path: {csv}, input_steps: 3, horizon: 1, season: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return series.read(recipe.data), tasks.of(recipe).load_data(recipe).notes, times

    read, notes, times = frame("2020-03-28 12:00", "shifting")  # over the night of 29 March
    assert (read.times == times.tz_convert("UTC").tz_localize(None).to_numpy()).all()
    assert [n for n in notes if "offsets" in n] == [f"{tmp_path / 'shifting.csv'}: its times carry UTC offsets that "
                                                    "change (daylight saving time): they are read in UTC, so that the "
                                                    "hours follow evenly, and forecasts are given in UTC"]
    assert not [n for n in notes if "evenly spaced" in n]
    read, notes, times = frame("2020-01-10 12:00", "winter")
    assert (read.times == times.tz_localize(None).to_numpy()).all() and not [n for n in notes if "offsets" in n]


def test_times_given_as_numbers(write_recipe, tmp_path):
    """A time column of numbers was read as nanoseconds since 1970: Unix times (a logger's export, 1577836800) and
    dates written in digits (20200101, 2020010100) were dated 1970-01-01 00:00:01 or 00:00:02, and the forecasts
    with them. Unix seconds and milliseconds, and YYYYMMDD[HH], are read as such, said in a note."""
    import datetime

    from dlkit.data import series

    hours = [datetime.datetime(2020, 1, 1) + datetime.timedelta(hours=i) for i in range(30)]
    for kind, cells, said in (
            ("seconds", [1577836800 + 3600 * i for i in range(30)], "Unix times in seconds (1577836800"),
            ("milliseconds", [(1577836800 + 3600 * i) * 1000 for i in range(30)],
             "Unix times in milliseconds (1577836800000"),
            ("hours", [t.strftime("%Y%m%d%H") for t in hours], "dates written in digits, YYYYMMDDHH (2020010100"),
            ("days", [(datetime.date(2020, 1, 1) + datetime.timedelta(days=i)).strftime("%Y%m%d") for i in range(30)],
             "dates written in digits, YYYYMMDD (20200101")):
        csv = tmp_path / f"{kind}.csv"
        csv.write_text("ts,load\n" + "".join(f"{c},{i % 7}\n" for i, c in enumerate(cells)))
        recipe = _recipe(write_recipe, f"""
name: numbers
data: {{dataset: csv, path: {csv}, input_steps: 3, horizon: 1, season: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
        read = series.read(recipe.data)
        assert read.times[0] == np.datetime64("2020-01-01T00:00"), kind
        assert series.frequency_of(read.times) == ("D" if kind == "days" else "h"), kind
        assert read.notes == [f"{csv}: time column 'ts' holds numbers, read as {said} is 2020-01-01 00:00:00)"]


def test_dates_written_day_first(write_recipe, tmp_path):
    """European dates (13/01/2020) were "a cell that is not a time like the others", and ten days of them (01/01 to
    10/01) were read as ten months, in silence. Day first is read where a first number passes 12, or where only
    that reading is evenly spaced; a US monthly file (01/01/2020, 02/01/2020) stays month first; where both read
    evenly, data.time_format is asked for, and read as given."""
    import datetime

    from dlkit.data import series
    from dlkit.errors import DataError, RecipeError

    day = datetime.date(2020, 1, 1)

    def read(name, cells, fmt=None):
        csv = tmp_path / f"{name}.csv"
        csv.write_text("date,load\n" + "".join(f"{c},{i % 7}\n" for i, c in enumerate(cells)))
        recipe = _recipe(write_recipe, f"""
name: dates
data: {{dataset: csv, path: {csv}, input_steps: 2, horizon: 1, season: 1, time_format: {fmt or 'null'}}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
        frame = series.read(recipe.data)
        return [str(t)[:10] for t in frame.times[:3]], frame.notes

    days = [(day + datetime.timedelta(days=i)).strftime("%d/%m/%Y") for i in range(20)]
    assert read("days", days) == (["2020-01-01", "2020-01-02", "2020-01-03"], [
        f"{tmp_path / 'days.csv'}: time column 'date' is read day first (13/01/2020 is 13 January 2020); set "
        "data.time_format to read it otherwise"])
    us_months = [f"{m % 12 + 1:02d}/01/{2020 + m // 12}" for m in range(24)]  # as days, 1 to 12 January twice
    assert read("us", us_months) == (["2020-01-01", "2020-02-01", "2020-03-01"], [])
    eu_months = [f"01/{m % 12 + 1:02d}/{2020 + m // 12}" for m in range(24)]
    assert read("eu", eu_months)[0] == ["2020-01-01", "2020-02-01", "2020-03-01"]
    with pytest.raises(DataError, match=r"holds dates such as '01/01/2020' that read as day/month or as month/day "
                                        r"alike .* set data.time_format: '%d/%m/%Y' \(day first\) or '%m/%d/%Y'"):
        read("ten", days[:10])
    assert read("ten", days[:10], "'%d/%m/%Y'")[0] == ["2020-01-01", "2020-01-02", "2020-01-03"]
    with pytest.raises(DataError, match=r"does not read as data.time_format '%Y-%m-%d' \(its first cell: "
                                        r"'01/01/2020'\)"):
        read("ten", days[:10], "'%Y-%m-%d'")
    with pytest.raises(RecipeError, match="'dmy' has no % directive"):
        read("ten", days[:10], "dmy")
    # a trained run reads a few rows (predict --csv) as its training file was read: ten days are no question then
    recipe = _recipe(write_recipe, f"""
name: dates
data: {{dataset: csv, path: {tmp_path / 'ten.csv'}, input_steps: 2, horizon: 1, season: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
    assert str(series.read(recipe.data, day_first=True).times[1])[:10] == "2020-01-02"


def test_series_policies(tmp_path, write_recipe):
    """Several time columns make a time; duplicates are averaged; gaps (with data.frequency) are filled;
    missing values with `missing: error` are an error naming the first; categorical columns are one-hot."""
    from dlkit.data import series
    from dlkit.errors import DataError

    csv = tmp_path / "s.csv"
    csv.write_text("year,month,day,hour,load,kind\n2020,1,1,0,1.0,a\n2020,1,1,1,3.0,b\n2020,1,1,1,5.0,b\n"
                   "2020,1,1,3,7.0,a\n")
    recipe = _recipe(write_recipe, f"""
name: pol
data: {{dataset: csv, path: {csv}, time_column: [year, month, day, hour], target_columns: [load],
        categorical_columns: [kind], frequency: 1h, input_steps: 1, horizon: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
    frame = series.read(recipe.data)
    np.testing.assert_allclose(frame.values[:, 0], [1.0, 4.0, 5.5, 7.0])  # mean of 3 and 5; hour 2 interpolated
    assert frame.columns == ["load", "kind_a", "kind_b"] and frame.targets == 1
    strict = recipe.data.model_copy(update={"missing": "error"})
    with pytest.raises(DataError, match="missing values"):
        series.read(strict)
    # a cell that is not a number is an error naming it, not a gap filled in silence; unless it is a marker
    csv.write_text("year,month,day,hour,load,kind\n2020,1,1,0,1.0,a\n2020,1,1,1,?,b\n2020,1,1,2,\"1,5\",a\n"
                   "2020,1,1,3,7.0,a\n")
    with pytest.raises(DataError, match=r"'load' has 2 cells that are not numbers, the first '\?' at 2020, 1, 1, 1 "
                                        r"\(data row 2\).*data.missing_markers"):
        series.read(recipe.data)
    csv.write_text(csv.read_text().replace('"1,5"', "NA"))
    frame = series.read(recipe.data.model_copy(update={"missing_markers": ["?"]}))
    np.testing.assert_allclose(frame.values[:, 0], [1.0, 3.0, 5.0, 7.0])



def test_a_time_that_does_not_read_is_named(write_recipe, tmp_path):
    """One cell among times that read is named with its row; it was pandas's own message, cut off at "You
    might want to try:", and a hint to change data.time_column, which was right."""
    from dlkit.data import series

    csv = tmp_path / "t.csv"
    csv.write_text("month,load\n2020-01,1\n2020-02,2\nsoon,3\n2020-04,4\nlater,5\n")
    recipe = _recipe(write_recipe, f"""
name: times
data: {{dataset: csv, path: {csv}, time_column: month, input_steps: 1, horizon: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas's "could not infer format" reached stderr
        with pytest.raises(DataError, match=r"time column 'month' has 2 cells that are not times like the others, "
                                            r"the first 'soon' \(data row 3\); correct them$"):
            series.read(recipe.data)
    csv.write_text("month,load\nnever,1\nagain,2\n")  # none reads: the column is not one of times
    with pytest.raises(DataError, match="the time column month could not be read as times"):
        series.read(recipe.data)


def test_a_european_csv_separator_and_decimal_comma(write_recipe, tmp_path):
    """data.separator and data.decimal read a file written with `;` and decimal commas; without them the
    errors say which key to set (before: "no column 'date'", and a column of 1,5 called not numeric)."""
    from dlkit.data import series
    from dlkit.errors import DataError, RecipeError

    csv = tmp_path / "eu.csv"
    csv.write_text("date;load\n2020-01-01 00:00;1,5\n2020-01-01 01:00;2,5\n2020-01-01 02:00;4\n")
    recipe = _recipe(write_recipe, f"""
name: eu
data: {{dataset: csv, path: {csv}, time_column: date, input_steps: 1, horizon: 1}}
model: {{arch: rnn_forecaster, units: [2]}}
""")
    with pytest.raises(DataError, match=r"columns are 'date;load'; the header reads as one column: .* "
                                        r"set data.separator: ';'"):
        series.read(recipe.data)
    semicolons = recipe.data.model_copy(update={"separator": ";"})
    with pytest.raises(DataError, match=r"'load' holds numbers written with a comma \('1,5'\); if the comma is "
                                        r"the decimal mark, set data.decimal: ','"):
        series.read(semicolons)
    frame = series.read(semicolons.model_copy(update={"decimal": ","}))
    np.testing.assert_allclose(frame.values[:, 0], [1.5, 2.5, 4.0])
    csv.write_text("sep=;\n" + csv.read_text())  # Excel's line naming the separator: no header
    np.testing.assert_allclose(series.read(semicolons.model_copy(update={"decimal": ","})).values[:, 0], [1.5, 2.5, 4])
    with pytest.raises(DataError, match=r"its first line, 'sep=;' \(as Excel writes it\), .* set data.separator: ';'"):
        series.read(recipe.data)
    with pytest.raises(RecipeError, match="separator and decimal are both ','"):
        _recipe(write_recipe, f"name: eu\ndata: {{dataset: csv, path: {csv}, decimal: ','}}\n"
                              "model: {arch: rnn_forecaster}\n")


# ---------------------------------------------------------------- the vocabulary round trip


def test_vocabulary_round_trip_in_a_fresh_process(sentiment_run):
    """model.keras and the run's vocabulary, reloaded by `dlkit predict` in a new process, classify raw text
    exactly as the trained model and the in-memory vocabulary do."""
    from dlkit.data.text import Vocabulary
    from dlkit.models import load

    run = Path(sentiment_run["run_dir"])
    texts = ["The battery died after a week.", "Great phone, love it!", "zyzzyva qwertyuiop"]
    out = subprocess.run([sys.executable, "-m", "dlkit.cli", "predict", str(run), "--json"]
                         + [a for t in texts for a in ("--text", t)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    predicted = json.loads(out.stdout)["predictions"]
    vocab = Vocabulary.from_artifact(json.loads((run / "artifacts" / "vocabulary.json").read_text()))
    model = load(run / "model.keras")
    probs = np.asarray(model.predict(vocab.padded(texts, 48), verbose=0))
    for p, row in zip(predicted, probs):
        assert list(p["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-5)
    assert predicted[2]["unknown_tokens"] == 2


def test_vocabulary_is_learnt_from_training_text_only():
    from dlkit.data.text import Vocabulary

    v = Vocabulary.learn(["a b b c"], "word", True, None, 1)
    assert v.ids("b a zz c") == [2, 3, 1, 4]  # by frequency, ties alphabetical, after [PAD] 0 and [UNK] 1
    again = Vocabulary.learn(["a b b c"], "word", True, None, 1)
    assert again.to_artifact() == v.to_artifact()
    chars = Vocabulary.learn(["ab\nba a"], "char", False, None, 1)
    assert chars.text(chars.ids("ab\n a")) == "ab\n a"


@pytest.mark.parametrize("level, max_tokens, min_frequency", [("char", None, 1), ("char", 20, 1), ("word", 300, 1),
                                                              ("word", None, 2)])
def test_a_vocabulary_kept_of_some_tokens_is_the_one_learnt_from_them(level, max_tokens, min_frequency):
    """Vocabulary.kept (a language model's, of the tokens it trains on) is the tokenizer `learn` gives of
    the same text, caps included, and maps each token's old id to its id there."""
    from dlkit.data.text import Vocabulary

    text = (DATA / "tinyshakespeare" / "input.txt").read_text()
    part = text[: text.index("\n", 5000)]  # whole words
    whole = Vocabulary.learn([text], level, True, None, 1)
    ids = np.asarray(whole.ids(part))
    kept, new_id = whole.kept(ids, max_tokens, min_frequency)
    learnt = Vocabulary.learn([part], level, True, max_tokens, min_frequency)
    assert kept.to_artifact() == learnt.to_artifact() and kept.size < whole.size
    assert new_id[ids].tolist() == learnt.ids(part) and new_id[whole.ids(text)].tolist() == learnt.ids(text)


# ---------------------------------------------------------------- the shipped recipes on the slices


SLICES = {
    # stateful over 64 streams: 4 streams leave the slice's last tenth windows to validate on
    "char_lstm_shakespeare": ["train.epochs=1", "train.steps_per_epoch=2", "model.units=[32, 32]", "data.batch_size=4"],
    "ptb_lstm_small": ["train.epochs=1", "train.steps_per_epoch=3", "data.test_limit=400"],
    "energy_gru_pjm": ["train.epochs=1", "train.steps_per_epoch=2", "data.input_steps=48"],
    "airline_lstm": ["train.epochs=2"],
    "digit_strings_mnist": ["train.epochs=1", "train.steps_per_epoch=2", "data.strings=300", "data.test_strings=50"],
}


REPORTED = ("char_lstm_shakespeare", "energy_gru_pjm", "digit_strings_mnist")


@pytest.mark.parametrize("recipe", list(SLICES))
def test_the_recurrent_recipes_train_on_the_slices(recipe, tmp_path):
    """Each shipped recurrent recipe, as it is but for the data (the slices under tests/data) and a few
    steps, trains to a completed run with its task's measures."""
    result = train(ROOT / "recipes" / f"{recipe}.yaml", [f"data.dir={DATA}"] + SLICES[recipe], runs_root=tmp_path)
    assert result["status"] == "completed" and (Path(result["run_dir"]) / "model.keras").is_file()
    measured = result.get("test") or result.get("val")
    if recipe in REPORTED:  # one recipe of each task measured again from model.keras, and printed
        # by default the test split, or the validation split of a run without one (the Shakespeare text is cut
        # into training and validation only), saying so
        evaluated = evaluate(result["run_dir"])
        assert evaluated["split"] == ("test" if "test" in result else "val")
        assert ("note" in evaluated) == ("test" not in result)
        if "test" not in result:  # asked for by name, it is not measured on another split
            with pytest.raises(MissingSplit, match="it has val and train: --split val"):
                evaluate(result["run_dir"], "test")
        from rich.console import Console

        console = Console(file=io.StringIO(), width=100)
        for part in tasks.TASKS[evaluated["task"]].report(evaluated):
            console.print(part)
        assert f"{evaluated['split']} split" in console.file.getvalue()
    if recipe == "digit_strings_mnist":
        assert 0 <= measured["sequence_accuracy"] <= 1 and measured["examples"] == 50
        _reader_predicts(result["run_dir"], tmp_path)
        _reader_measures_images_of_ones_own(result["run_dir"], tmp_path)
    shipped = tasks.load_recipe(ROOT / "recipes" / f"{recipe}.yaml")
    if tasks.of(shipped).name == "forecasting":  # forecast past the end of the very file it read
        from dlkit.generate import predict

        csv = next((DATA / shipped.data.dataset).glob("*.csv"))
        out = predict(result["run_dir"], csv=csv)
        horizon = shipped.data.horizon
        assert len(out["forecast"]) == horizon and out["forecast"][0]["time"] > out["last_time"]
        # a number float64 holds and float32 does not: it was a forecast from inf, with numpy's overflow warning
        lines = csv.read_text().splitlines()
        huge = tmp_path / "huge.csv"
        huge.write_text("\n".join(lines[:1] + [line.rsplit(",", 1)[0] + ",1e300" for line in lines[1:]]) + "\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with pytest.raises(DataError, match="holds values so far beyond the training rows' .* float32"):
                predict(result["run_dir"], csv=huge)
        with pytest.raises(UsageError, match="a folder, not a file"):
            predict(result["run_dir"], csv=tmp_path)
        # evaluate --data: the rows the test span's windows read, as a file of one's own, measure as the span does
        if recipe == "airline_lstm":
            test = evaluate(result["run_dir"])
            cfg = shipped.data
            back = max(cfg.input_steps, cfg.season or 0)
            rows = lines[1:][len(lines) - 1 - int(round((len(lines) - 1) * cfg.test_split)) - back:]
            (tmp_path / "later.csv").write_text("\n".join(lines[:1] + rows) + "\n")
            mine = evaluate(result["run_dir"], data=tmp_path / "later.csv")
            assert mine["windows"] == test["windows"] and mine["span"] == test["span"] and "note" not in mine
            assert mine["model"]["mae"] == pytest.approx(test["model"]["mae"], rel=1e-6)
            for name, scores in test["baselines"].items():
                assert mine["baselines"][name]["mae_per_step"] == pytest.approx(scores["mae_per_step"], rel=1e-6)
    assert measured, result
    if "perplexity" in measured:
        assert math.isfinite(measured["perplexity"]) and measured["tokens"] > 0


def _reader_predicts(run_dir, tmp_path):
    """`dlkit predict` of a digit-string reader (it had none): an image of two digits is set at the left of the
    model's black strip, as training composed its strings, and read to its string with a probability; one
    twice the size is scaled to the strip's height first; one wider than the strip is refused."""
    from PIL import Image

    from dlkit.data import sources
    from dlkit.generate import predict

    digits = sources.load_builtin("mnist", str(DATA), False).x_test[:2]
    pair = np.concatenate(list(digits), axis=1)  # 28 x 56: two digits side by side
    Image.fromarray(pair).save(tmp_path / "pair.png")
    Image.fromarray(pair).resize((112, 56), Image.Resampling.BILINEAR).save(tmp_path / "pair_large.png")
    strip = np.zeros((1, 28, 140), np.uint8)
    strip[0, :, :56] = pair
    np.save(tmp_path / "strips.npy", np.concatenate([strip, strip]))
    out = predict(run_dir, inputs=[tmp_path / "pair.png", tmp_path / "pair_large.png", tmp_path / "strips.npy"])
    read = {p["input"]: p for p in out["predictions"]}
    assert list(read) == ["pair.png", "pair_large.png", "strips.npy[0]", "strips.npy[1]"]
    for p in read.values():
        assert p["digits"] == "" or p["digits"].isdigit() and len(p["digits"]) <= 6  # 6 steps: 5 digits and the end
        assert 0 < p["probability"] <= 1
    assert read["pair.png"] == {**read["strips.npy[0]"], "input": "pair.png"}  # the strip training composes
    Image.fromarray(np.concatenate([pair] * 3, axis=1)).save(tmp_path / "six.png")
    with pytest.raises(UsageError, match=r"six.png: 28 x 168 pixels, 168 wide .* wider than the 140 it reads"):
        predict(run_dir, inputs=[tmp_path / "six.png"])
    with pytest.raises(UsageError, match="a digit-string reader reads images"):
        predict(run_dir, texts=["12"])


def _reader_measures_images_of_ones_own(run_dir, tmp_path):
    """evaluate --data: the run's own test strings written as PNG files, each named by its digits, measure as
    its test split does, the misread ones named; a name without digits, a string longer than the model reads
    and an array's rows (no names) are exit 3, naming the file."""
    import re

    from PIL import Image
    from typer.testing import CliRunner

    from dlkit.cli import app
    from dlkit.tasks import image_to_sequence as its

    recipe = tasks.load_run_recipe(Path(run_dir) / "recipe.yaml")
    s = tasks.of(recipe).load_data(recipe).splits
    (tmp_path / "strings").mkdir()
    for i, (x, y) in enumerate(zip(s.x_test, s.y_test)):
        Image.fromarray(np.squeeze(x)).save(tmp_path / "strings" / f"{its.text(y)}_{i:02d}.png")
    split, mine = evaluate(run_dir), evaluate(run_dir, data=tmp_path / "strings")
    for k in ("examples", "sequence_accuracy", "digit_accuracy", "sequence_accuracy_by_length"):
        assert mine[k] == split[k], k
    wrong = [m["input"] for m in mine["misread"]]
    assert len(wrong) == min(10, round(50 * (1 - mine["sequence_accuracy"])))
    assert all(m["true"] == m["input"].split("_")[0] != m["read"] for m in mine["misread"])
    one = np.squeeze(s.x_test[0])
    for name, needle in (("cat.png", "cat.png: its name does not start with the digits it shows"),
                         ("1234567.png", "1234567.png: 7 digits, and this model reads strings of at most 5"),
                         ("rows.npy", r"rows.npy\[0\]: an array's images have no names")):
        (tmp_path / name.split(".")[0]).mkdir()
        target = tmp_path / name.split(".")[0] / name
        if name.endswith(".npy"):
            np.save(target, one[None])
        else:
            Image.fromarray(one).save(target)
        out = CliRunner().invoke(app, ["evaluate", run_dir, "--data", str(target.parent)])
        assert out.exit_code == 3 and re.search(needle, out.stderr), out.output


# ---------------------------------------------------------------- on JAX, without TensorFlow


@pytest.mark.slow  # four processes starting JAX: a minute and more; `make test-slow`
def test_stateful_language_model_on_jax_without_tensorflow(tmp_path):
    """The JAX-only GPU host's path: a stateful word model (its state tracked, so JAX carries it) trains, is
    measured and samples the same text for the same seed in two processes."""
    from conftest import no_tensorflow_env
    from test_no_tensorflow import _dlkit

    env = no_tensorflow_env(tmp_path)
    common = ["--runs-root", str(tmp_path), "-q", "--json", "-s", f"data.dir={DATA}"]
    lm = json.loads(_dlkit(env, "train", str(ROOT / "recipes" / "ptb_lstm_small.yaml"), *common,
                           "-s", "train.epochs=1", "-s", "train.steps_per_epoch=3", "-s", "model.units=[16]").stdout)
    assert json.loads((Path(lm["run_dir"]) / "manifest.json").read_text())["backend"] == "jax"
    assert math.isfinite(lm["test"]["perplexity"])
    texts = [json.loads(_dlkit(env, "generate", lm["run_dir"], "--prompt", "the company", "--length", "12",
                               "--seed", "3", "--json").stdout)["text"] for _ in range(2)]
    assert texts[0] == texts[1] and texts[0].startswith("the company") and len(texts[0].split()) == 14


def test_digit_strings_are_composed_from_their_own_split():
    """Each string's image holds its digits left to right, black after the last; its target is the digits'
    tokens, the end token, then padding; reading stops at the end token."""
    from dlkit.tasks import image_to_sequence as its

    rng = np.random.default_rng(0)
    digits = rng.integers(1, 256, (10, 28, 28), dtype=np.uint8)
    labels = np.arange(10)
    images, targets = its.compose(digits, labels, 50, 5, seed=3)
    assert images.shape == (50, 28, 140) and targets.shape == (50, 6)
    for image, target in zip(images, targets):
        s = its.text(target)
        assert 1 <= len(s) <= 5 and target[len(s)] == its.END and not target[len(s) + 1:].any()
        for k, ch in enumerate(s):
            np.testing.assert_array_equal(image[:, 28 * k:28 * (k + 1)], digits[int(ch)])
        assert not image[:, 28 * len(s):].any()
    assert its.text([3, 4, its.END, 5]) == "23"


def test_digit_strings_that_would_not_fit_in_memory_are_refused_before_they_are_composed(monkeypatch):
    """data.strings of 2**31 - 1 filled arrays for minutes until the kernel killed the process; a count past
    that was TensorFlow's out-of-range traceback (now every whole number a recipe reads is at most 2**31 - 1)."""
    from dlkit.data import sources
    from dlkit.errors import OutOfMemoryError, RecipeError
    from dlkit.tasks import load_recipe

    path = ROOT / "recipes" / "digit_strings_mnist.yaml"
    monkeypatch.setattr(sources, "_free_memory", lambda: 2**30)  # 1 GB free: 70,000 strings take 0.26 GB
    recipe = load_recipe(path, [f"data.dir={DATA}", "data.strings=300000"])
    with pytest.raises(OutOfMemoryError, match=r"composing 310,000 digit strings \(data.strings and "
                                               r"data.test_strings\) takes 1.2 GB in memory, and this machine "
                                               r"has 1.0 GB free: set fewer"):
        tasks.of(recipe).load_data(recipe)
    with pytest.raises(RecipeError, match=r"data.strings: at most 2,147,483,647 \(2\*\*31 - 1\)"):
        load_recipe(path, ["data.strings=99999999999999999999999"])
    for task_data in ("mlp_regressor_diabetes", "sentiment_lstm", "energy_gru_pjm", "char_lstm_shakespeare",
                      "attention_luong_fra_eng"):  # each its own data section, whose batch_size had no bound
        with pytest.raises(RecipeError, match=r"data.batch_size: Input should be less than or equal to 1000000"):
            load_recipe(ROOT / "recipes" / f"{task_data}.yaml", ["data.batch_size=99999999999999999999999"])


def test_gradient_by_step_fades_back_through_a_simple_rnn(write_recipe):
    """With a contracting recurrent kernel (0.5 I, linear cell), the last step's gradient shrinks by half at
    each step back through a SimpleRNN: the vanishing gradient, computed through the backend's autodiff."""
    import keras

    recipe = _recipe(write_recipe, """
name: fade
data: {dataset: tinyshakespeare, sequence_length: 6}
model: {arch: rnn_lm, cell: rnn, units: [4], embedding_dim: 4}
""")
    spec = DataSpec(input_shape=(6,), modality="token_windows", vocabulary_size=7)
    model = build(recipe, spec, compile=False)
    layer = model.get_layer("rnn_1")
    layer.cell.activation = keras.activations.linear
    layer.cell.recurrent_kernel.assign(0.5 * np.eye(4, dtype="float32"))
    windows_ = np.random.default_rng(0).integers(2, 7, (8, 7)).astype("int32")
    norms = language_model.gradient_by_step(model, recipe, spec, windows_)
    assert norms.shape == (6,)
    np.testing.assert_allclose(norms[:-1] / norms[1:], 0.5, rtol=1e-2)  # float32 kernels: 0.2% seen


# ---------------------------------------------------------------- the command line


def test_predict_and_generate_on_the_command_line(tmp_path, one_epoch_run, sentiment_run):
    """`dlkit predict` answers a text classifier and a forecaster, and says what is wrong otherwise (exit 2);
    `dlkit generate` samples a language model's text, the same for the same seed."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    runner = CliRunner()
    clf = sentiment_run
    texts = tmp_path / "texts.txt"
    texts.write_text("Great value.\n\nTerrible.\n")
    out = runner.invoke(app, ["predict", clf["run_dir"], "--file", str(texts), "--json"])
    assert out.exit_code == 0, out.output
    assert [p["text"] for p in json.loads(out.stdout)["predictions"]] == ["Great value.", "Terrible."]
    for args in (["predict", clf["run_dir"]], ["predict", clf["run_dir"], "--csv", str(texts)],
                 ["predict", clf["run_dir"], "--file", str(tmp_path / "missing.txt")]):
        assert runner.invoke(app, args).exit_code == 2
    (tmp_path / "blank.txt").write_text("\n  \n")  # said "give the text to classify", as if --file were not given
    for given, said in (("blank.txt", "no text in it"), ("missing.txt", "no such file"), (".", "a folder")):
        out = runner.invoke(app, ["predict", clf["run_dir"], "--file", str(tmp_path / given), "--json"])
        assert out.exit_code == 2 and said in json.loads(out.stdout)["error"], out.output
    # an empty "$line" from a shell was classified, as if it were text
    blank = runner.invoke(app, ["predict", clf["run_dir"], "-t", "Great value.", "-t", " ", "--json"])
    assert blank.exit_code == 2 and "--text is blank (number 2 of the 2 given)" in json.loads(blank.stdout)["error"]
    image_run = one_epoch_run(tmp_path / "image")
    assert runner.invoke(app, ["predict", image_run["run_dir"], "--text", "x"]).exit_code == 2

    lm = train(ROOT / "recipes" / "char_lstm_shakespeare.yaml",
               [f"data.dir={DATA}", "train.epochs=1", "train.steps_per_epoch=2", "model.units=[16]"], runs_root=tmp_path)
    samples = [runner.invoke(app, ["generate", lm["run_dir"], "--prompt", "ROMEO:", "--length", "40",
                                   "--temperature", "0.8", "--seed", str(s), "--json"]) for s in (1, 1, 2)]
    assert all(s.exit_code == 0 for s in samples), samples[0].output
    text = [json.loads(s.stdout)["text"] for s in samples]
    assert text[0] == text[1] != text[2] and text[0].startswith("ROMEO:") and len(text[0]) == 46
    for t in ("-1", "nan", "inf"):  # nan and inf were numpy's "Probabilities contain NaN"
        assert runner.invoke(app, ["generate", lm["run_dir"], "--temperature", t]).exit_code == 2, t
    # a temperature near 0 is the likeliest token's, as 0 is (it made inf - inf, a NaN, as 1e-320 divided logits)
    cold = [runner.invoke(app, ["generate", lm["run_dir"], "--prompt", "ROMEO:", "--length", "10", "--temperature",
                                t, "--json"]) for t in ("0", "1e-320")]
    assert cold[0].exit_code == cold[1].exit_code == 0, cold[1].output
    assert json.loads(cold[0].stdout)["text"] == json.loads(cold[1].stdout)["text"]
    endless = runner.invoke(app, ["generate", lm["run_dir"], "--length", "100001"])
    assert endless.exit_code == 2 and "1 to 100,000, received 100001" in endless.stderr
    assert runner.invoke(app, ["generate", lm["run_dir"], "--label", "3"]).exit_code == 2
    many = runner.invoke(app, ["generate", lm["run_dir"], "-n", "3"])  # was dropped: one text, as if it took effect
    assert many.exit_code == 2 and "-n is read by" in many.stderr and "task is language_model" in many.stderr
    # a command the task has not is said so first, before an option it would not read
    drawn = runner.invoke(app, ["generate", image_run["run_dir"], "-n", "5"])
    assert drawn.exit_code == 2 and "classification runs have nothing to generate" in drawn.stderr, drawn.output
    beamed = runner.invoke(app, ["predict", lm["run_dir"], "--beam", "3", "--text", "x"])
    assert beamed.exit_code == 2 and "language_model runs have no `dlkit predict`" in beamed.stderr, beamed.output
    coded = runner.invoke(app, ["encode", lm["run_dir"]])  # RBMs encode too; it named autoencoders and VAEs
    assert coded.exit_code == 2 and "is for autoencoders, VAEs and RBMs" in coded.stderr, coded.output
    unknown = runner.invoke(app, ["generate", lm["run_dir"], "--prompt", "ROMEO€€~", "--length", "4"])
    assert unknown.exit_code == 2 and "'€', '~'" in unknown.output, unknown.output  # not [UNK] in the text
    # bytes a Latin-1 terminal sent (surrogate escapes): the tokenizer's TypeError, a traceback
    latin = runner.invoke(app, ["generate", lm["run_dir"], "--prompt", "caf\udce9", "--json"])
    assert latin.exit_code == 2 and "--prompt: the text's byte 0xe9 (character 4) is not UTF-8" in latin.stdout
    latin = runner.invoke(app, ["predict", clf["run_dir"], "-t", "tr\udce8s", "--json"])
    assert latin.exit_code == 2 and "--file FILE" in json.loads(latin.stdout)["error"], latin.output
    assert runner.invoke(app, ["generate", lm["run_dir"], "--out", "/proc/x.txt"]).exit_code == 5
    assert (Path(lm["run_dir"]) / "gradient_by_step.png").is_file()
    # the slice is too short for 64 streams to leave a validation tail: only the training text to measure
    no_test = runner.invoke(app, ["evaluate", lm["run_dir"]])
    assert no_test.exit_code == 2 and "no 'test' split" in no_test.stderr
    assert "it has train: --split train" in no_test.stderr
    # evaluate --data: a text of one's own, read through the run's vocabulary as one stream, the state carried
    # from window to window: as the model reads the whole text in one sequence from a zero state
    from dlkit import models
    from dlkit.models import ARCHITECTURES
    from dlkit.rundir import RunDir

    mine = tmp_path / "mine.txt"
    mine.write_text((DATA / "tinyshakespeare" / "input.txt").read_text()[:1200] + "€")
    out = runner.invoke(app, ["evaluate", lm["run_dir"], "--data", str(mine), "--json"])
    assert out.exit_code == 0, out.output
    ev = json.loads(out.stdout)
    recipe = tasks.load_run_recipe(Path(lm["run_dir"]) / "recipe.yaml")
    vocab = language_model.vocabulary(RunDir(lm["run_dir"]))
    ids = np.asarray(vocab.ids(mine.read_text()), np.int32)
    whole = ARCHITECTURES["rnn_lm"].build(recipe.model, language_model._spec_of(None, vocab), stateful=False)
    language_model.copy_weights(models.load(Path(lm["run_dir"]) / "model.keras", compile=False), whole)
    nats, tokens = language_model.token_measures(np.asarray(whole.predict(ids[None, :-1], verbose=0)), ids[None, 1:])
    assert ev["tokens"] == tokens == 1200 and ev["nats_per_char"] == pytest.approx(nats / tokens, rel=1e-4)
    assert ev["note"].startswith("1 of the 1,201 tokens (0.1%) are not in the run's vocabulary")  # the €
    (tmp_path / "short.txt").write_text("ROMEO")
    short = runner.invoke(app, ["evaluate", lm["run_dir"], "--data", str(tmp_path / "short.txt")])
    assert short.exit_code == 3 and "5 tokens, fewer than one window" in short.stderr


def test_a_prompt_is_read_as_the_training_text_was():
    """A prompt's token outside an uncapped vocabulary is a usage error naming it; a capped vocabulary read the
    training text's rare tokens as [UNK], so it reads the prompt's so too."""
    from types import SimpleNamespace

    from dlkit.data.text import UNK, Vocabulary
    from dlkit.errors import UsageError

    vocab = Vocabulary.learn(["the cat sat on the mat"], "word", True, None, 1)
    assert vocab.unknown("The dog sat, the dog") == ["dog", ","]
    with pytest.raises(UsageError, match="'dog', ','"):
        language_model.unknown_prompt(vocab, "The dog sat, the dog", SimpleNamespace(max_tokens=None, min_frequency=1))
    for capped in (SimpleNamespace(max_tokens=4, min_frequency=1), SimpleNamespace(max_tokens=None, min_frequency=2)):
        language_model.unknown_prompt(vocab, "the dog", capped)
    assert vocab.text(vocab.ids("the dog")) == f"the {UNK}"


def test_tfds_text_path_with_mock_data(write_recipe, tmp_path):
    """`tfds:imdb_reviews` goes through tensorflow-datasets (mocked, no network): its own train and test
    splits, text decoded, the vocabulary learnt from the training texts."""
    import tensorflow_datasets as tfds

    recipe = _recipe(write_recipe, """
name: imdb
data: {dataset: "tfds:imdb_reviews", max_length: 16, validation_split: 0.25, download: false}
model: {arch: rnn_classifier, units: [4], embedding_dim: 4}
""")
    with tfds.testing.mock_data(num_examples=12):
        data = tasks.of(recipe).load_data(recipe)
    assert data.origin == "tfds:imdb_reviews" and data.spec.class_names == ["neg", "pos"]
    assert (data.spec.num_train, data.spec.num_val, data.spec.num_test) == (9, 3, 12)
    assert data.splits.x_train.shape == (9, 16) and data.spec.vocabulary_size > 2


def test_a_tfds_text_dataset_is_read_only_as_far_as_the_limits_keep(write_recipe, monkeypatch):
    """data.limit and data.test_limit of a tensorflow-datasets text dataset with a test split of its own: only
    their first examples are read (all 50,000 of imdb_reviews were read for a `limit: 100`), and they are the
    ones kept. One without a test split is read whole, for its test share is carved from all its examples."""
    import tensorflow_datasets as tfds

    from dlkit.data import sources, text

    recipe = _recipe(write_recipe, """
name: imdb
data: {dataset: "tfds:imdb_reviews", max_length: 16, validation_split: 0.25, download: false, limit: 8,
       test_limit: 5}
model: {arch: rnn_classifier, units: [4], embedding_dim: 4}
""")
    read, as_numpy = [], tfds.as_numpy
    monkeypatch.setattr(tfds, "as_numpy", lambda ds: (read.append(1) or item for item in as_numpy(ds)))
    with tfds.testing.mock_data(num_examples=12):
        data = tasks.of(recipe).load_data(recipe)
        assert len(read) == 8 + 5
        assert (data.spec.num_train, data.spec.num_val, data.spec.num_test) == (6, 2, 5)
        whole = text.tfds_sentences("imdb_reviews", None, False)
        assert sorted(data.splits.y_train.tolist() + data.splits.y_val.tolist()) == sorted(whole.labels[:8].tolist())
        builder = tfds.builder

        def train_only(*args, **kwargs):  # mock_data makes any split; a dataset without a test split of its own
            made = builder(*args, **kwargs)
            as_dataset = made.as_dataset

            def split_of_its_own(split, **options):
                if split == "test":
                    raise ValueError("Unknown split 'test'")
                return as_dataset(split=split, **options)

            made.as_dataset = split_of_its_own
            return made

        monkeypatch.setattr(tfds, "builder", train_only)
        read.clear()
        data = tasks.of(recipe).load_data(recipe)
        assert len(read) == 12 and (data.spec.num_train + data.spec.num_val, data.spec.num_test) == (8, 2)
        assert len(sources.tfds_pairs("tf_flowers", None, False, "", first={"train": 2})[0]["train"]) == 2


def test_evaluate_refuses_a_vocabulary_that_changed(sentiment_run, tmp_path):
    """The data read again must give the run's own vocabulary: a changed one is a data error, not ids read
    through the wrong table."""
    import shutil

    from dlkit.errors import DataError
    from dlkit.evaluate import evaluate

    result = sentiment_run
    run = Path(shutil.copytree(result["run_dir"], tmp_path / "run"))  # the shared run stays as it was
    assert evaluate(run)["metrics"]["accuracy"] == pytest.approx(result["test"]["accuracy"], abs=1e-6)
    saved = json.loads((run / "artifacts" / "vocabulary.json").read_text())
    saved["tokenizer"]["model"]["vocab"]["great"], saved["tokenizer"]["model"]["vocab"]["good"] = (
        saved["tokenizer"]["model"]["vocab"]["good"], saved["tokenizer"]["model"]["vocab"]["great"])
    (run / "artifacts" / "vocabulary.json").write_text(json.dumps(saved))
    with pytest.raises(DataError, match="vocabulary learnt again"):
        evaluate(run)


def test_evaluate_a_text_classifier_on_labelled_sentences_of_ones_own(sentiment_run, tmp_path):
    """`evaluate --data FILE` reads `sentence<TAB>label` lines through the run's vocabulary, each label a class's
    name or its index: the run's own test sentences written so measure as its test split. A header line is
    left out with a note, the share of tokens the vocabulary lacks is said, and a label that is no class is
    exit 3 at its line."""
    import shutil

    from typer.testing import CliRunner

    from dlkit.cli import app
    from dlkit.data import text

    result = sentiment_run
    run = Path(shutil.copytree(result["run_dir"], tmp_path / "run"))  # the shared run stays as it was
    recipe = tasks.load_run_recipe(run / "recipe.yaml")
    found = text.sentences(recipe.data)
    test = np.random.default_rng(0).permutation(len(found.texts))[: round(len(found.texts) * 0.2)]  # the fixed draw
    names = found.class_names  # negative, positive: written as names and as the file's 0 and 1
    lines = [f"{found.texts[i]}\t{names[found.labels[i]] if k % 2 else found.labels[i]}" for k, i in enumerate(test)]
    (tmp_path / "mine.txt").write_text("sentence\tsentiment\n" + "\n".join(lines) + "\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "mine.txt"), "--json"])
    assert out.exit_code == 0, out.output
    ev = json.loads(out.stdout)
    assert ev["examples"] == len(test) == 60
    for k, v in result["test"].items():
        assert ev["metrics"][k] == pytest.approx(v, abs=1e-5), k
    assert ev["note"].startswith("line 1 of mine.txt ('sentence', label 'sentiment') read as a header and left out")
    assert "are not in the run's vocabulary, and were read as [UNK]" in ev["note"]
    (tmp_path / "bad.txt").write_text("Good phone.\tpositive\nBad phone.\t0\nFine.\tneutral\nMeh.\t1\n")
    out = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(tmp_path / "bad.txt")])
    assert out.exit_code == 3
    assert "bad.txt:3: the label 'neutral' is not one of the run's classes (negative, positive)" in out.stderr


def test_sequence_recipe_errors_come_together_with_their_lines(write_recipe):
    """Keys of another task's data section, a stateful model with shuffling and a series without its file
    are recipe errors with file:line and a hint, all at once."""
    from dlkit.errors import RecipeError

    path = write_recipe("""name: bad
data:
  dataset: ptb
  augment: {flip: horizontal}
  shuffle_buffer: 100
model:
  arch: rnn_lm
  stateful: true
""")
    with pytest.raises(RecipeError) as e:
        tasks.load_recipe(path)
    text = str(e.value)
    assert f"{path}:4: data.augment: not used here" in text
    path = write_recipe("name: bad\ndata: {dataset: ptb, shuffle_buffer: 100}\nmodel: {arch: rnn_lm, stateful: true}\n")
    with pytest.raises(RecipeError, match=r"data.shuffle_buffer: a stateful model reads each stream in order"):
        tasks.load_recipe(path)
    path = write_recipe("name: bad\ndata: {dataset: csv}\nmodel: {arch: rnn_forecaster, batch_norm: after}\n")
    with pytest.raises(RecipeError, match=r"data: dataset 'csv' reads data.path"):
        tasks.load_recipe(path)
