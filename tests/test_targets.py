"""The shipped recipes' accuracy targets, trained in full. Slow (minutes on a CPU): `make test-slow`."""

from __future__ import annotations

import pytest

from dlkit.training.train import train


@pytest.mark.slow
@pytest.mark.parametrize("recipe,target", [
    ("recipes/cnn_mnist.yaml", 0.992),
    ("recipes/cnn_fashion_mnist.yaml", 0.92),
])
def test_recipe_reaches_its_target(recipe, target, tmp_path):
    from pathlib import Path

    result = train(Path(__file__).parents[1] / recipe, runs_root=tmp_path)
    assert result["test"]["accuracy"] >= target
