"""Every shipped recipe trains in 16 bits: `train.precision: mixed_float16` (its losses scaled, by Keras's own
step or by dlkit's: tests/test_steps_agree.py checks the steps) and `mixed_bfloat16`. Run by hand across the
recipes, this found the tracebacks that made every model's output float32; as a test it found the
augmentation layers computing in 16 bits (cnn_cifar10's TypeError). Slow (`make test-slow`, on its
DLKIT_DATA_DIR's full datasets, a text's validation and test parts cut short): two steps of every recipe,
then its finish (test measures, pictures)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import ROOT

SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_trains_in_16_bits(path, precision, tmp_path):
    import csv

    import keras

    from dlkit.errors import DataError
    from dlkit.tasks import load_recipe
    from dlkit.training.train import train

    short = [f"train.precision={precision}", "train.epochs=1", "train.steps_per_epoch=2"]
    recipe = load_recipe(path).to_dict()
    if "pretrain_epochs" in recipe["train"]:
        short.append("train.pretrain_epochs=1")
    if recipe["data"].get("dataset") == "ptb":  # its own validation file, which data.limit does not cut: 2,000
        short.append("data.validation_limit=2000")  # of its 73,759 tokens, measured at batch 1 in float16
    try:
        # a text's limits count tokens: 256 are too few for a batch of windows, and then 80,000 are taken (their
        # last tenth, validated on, a batch of 64 windows of 100 characters)
        for sets in (["data.limit=256", "data.test_limit=64"], ["data.limit=80000", "data.test_limit=4000"], []):
            try:
                result = train(path, [*short, *sets], runs_root=tmp_path)
                break
            except DataError as e:
                if "not found" in str(e):
                    pytest.skip(f"its data: {str(e).splitlines()[0]}")
                if sets == []:
                    raise
    finally:
        keras.config.set_dtype_policy("float32")  # the run set it for the process
    assert result["status"] == "completed" and (Path(result["run_dir"]) / "model.keras").is_file()
    histories = sorted(Path(result["run_dir"]).rglob("history.csv"))
    assert histories
    for history in histories:  # every logged measure finite: no float16 overflow reached a loss
        for row in csv.DictReader(open(history)):
            bad = {k: v for k, v in row.items() if v not in ("", None) and not math.isfinite(float(v))}
            assert not bad, f"{history.relative_to(result['run_dir'])}: {bad}"
