"""Shipped recipes trained as they are, but for the data (the MNIST slice under tests/data) and one epoch
per phase: each builds, trains and finishes. Their full runs are in docs/benchmarks.md.

`make test` keeps the two whose settings no other test of the default run trains (a KL sparsity penalty; a
DBN fine-tuned from random weights, with no pretraining phase). The others are slow cases (`make test-slow`):
`make test` builds and compiles every shipped recipe (tests/test_models.py), and trains their settings at
smaller sizes in the families' own tests (a dense and a denoising conv autoencoder, a VAE with dynamic
binarization and KL warm-up, an RBM with persistent chains, a DBN with labels on its top RBM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from dlkit.training.train import train


@pytest.mark.parametrize("recipe", [
    "sparse_ae_mnist", "dbn_mnist_random",
    *(pytest.param(r, marks=pytest.mark.slow)
      for r in ("ae_mnist", "dae_fashion_mnist", "vae_mnist", "rbm_mnist", "dbn_mnist")),
])
def test_the_unsupervised_recipes_train_on_the_slice(recipe, tmp_path, monkeypatch):
    """Each shipped recipe of the family, as it is but for the data (the MNIST slice; Fashion-MNIST's
    training set is not in it) and one epoch per phase, trains to a completed run. Named as a user outside
    the repository names it: the manifest keeps the file that name stands for."""
    overrides = [f"data.dir={DATA}", "data.dataset=mnist", "data.limit=200", "data.test_limit=100", "train.epochs=1"]
    if recipe.startswith("dbn"):
        overrides.append("train.pretrain_epochs=1")
    monkeypatch.chdir(tmp_path)
    result = train(recipe, overrides, runs_root=tmp_path)
    assert result["status"] == "completed" and (Path(result["run_dir"]) / "model.keras").is_file()
    manifest = json.loads((Path(result["run_dir"]) / "manifest.json").read_text())
    assert manifest["recipe_file"] == str(ROOT / "recipes" / f"{recipe}.yaml")
