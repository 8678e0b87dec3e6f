"""The shipped recipes' accuracy targets, trained in full on the full datasets. Slow (minutes on a CPU):
`make test-slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlkit.data import sources
from dlkit.training.train import train


@pytest.mark.slow
@pytest.mark.parametrize("recipe,target", [
    ("recipes/cnn_mnist.yaml", 0.992),
    ("recipes/cnn_fashion_mnist.yaml", 0.92),
])
def test_recipe_reaches_its_target(recipe, target, tmp_path, full_data, monkeypatch):
    monkeypatch.setenv("DLKIT_DATA_DIR", str(full_data))
    if "fashion" in recipe and not any(sources.has_builtin_files("fashion_mnist", d)
                                       for d in sources.search_dirs("fashion_mnist", None)):
        pytest.skip("needs the full Fashion-MNIST training set: `make data` installs it (Debian's dataset-fashion-mnist)")
    result = train(Path(__file__).parents[1] / recipe, runs_root=tmp_path)
    assert result["test"]["accuracy"] >= target


@pytest.mark.slow
@pytest.mark.parametrize("recipe,key,target", [
    ("recipes/ptb_lstm_small.yaml", "perplexity", 115.0),  # Zaremba et al.'s small model: 114.5
    ("recipes/char_lstm_shakespeare.yaml", "nats_per_char", 1.50),  # on the held-out tail (val): hours on a CPU
    ("recipes/digit_strings_mnist.yaml", "sequence_accuracy", 0.95),
])
def test_sequence_recipe_reaches_its_target(recipe, key, target, tmp_path, full_data, monkeypatch):
    monkeypatch.setenv("DLKIT_DATA_DIR", str(full_data))
    result = train(Path(__file__).parents[1] / recipe, runs_root=tmp_path)
    measured = (result.get("test") or result["val"]) if key != "nats_per_char" else result["val"]
    assert measured[key] >= target if key == "sequence_accuracy" else measured[key] <= target


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["recipes/energy_gru_pjm.yaml", "recipes/airline_lstm.yaml"])
def test_forecaster_beats_the_better_naive_forecast(recipe, tmp_path, full_data, monkeypatch):
    monkeypatch.setenv("DLKIT_DATA_DIR", str(full_data))
    result = train(Path(__file__).parents[1] / recipe, runs_root=tmp_path)
    assert result["test"]["vs_best_baseline"]["mae_ratio"] < 1
