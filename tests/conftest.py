"""Shared fixtures. Tests read the real datasets in ../shared/data and never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ["DLKIT_DATA_DIR"] = str(SHARED_DATA)
os.environ["DLKIT_OFFLINE"] = "1"  # never try a download, even where a network exists
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe (text) into tmp_path and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


TINY_MNIST = f"""\
name: tiny
seed: 7
data:
  dataset: mnist
  dir: {SHARED_DATA}
  limit: 600
  test_limit: 200
  batch_size: 50
model:
  arch: cnn
  blocks: [{{filters: 4}}]
  dense: [16]
train:
  epochs: 2
  optimizer: {{name: adam, learning_rate: 0.005}}
"""


@pytest.fixture
def tiny_recipe(write_recipe):
    return write_recipe(TINY_MNIST)
