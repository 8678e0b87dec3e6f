"""`evaluate(target, split)`: measure a finished run on a split, the library function behind `dlkit evaluate`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dlkit import backend
from dlkit.errors import UsageError
from dlkit.rundir import RunDir

SPLITS = ("test", "val", "train")


def resolve_run(target: str | Path, runs_root: str | Path = "runs") -> RunDir:
    """A run directory as given, or the latest finished run of a recipe file."""
    path = Path(target)
    if path.is_dir():
        return RunDir.open(path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from dlkit.recipe import load_recipe

        return RunDir.latest(runs_root, load_recipe(path).name)
    raise UsageError(f"{target} is neither a run directory nor a recipe file")


def evaluate(target, split: str = "test", runs_root="runs", reference=None, samples: int = 10000) -> dict:
    backend.setup()
    import keras

    from dlkit import metrics as M
    from dlkit import plots
    from dlkit.data import pipeline
    from dlkit.models import losses  # noqa: F401 - registers dlkit's custom objects for load_model
    from dlkit.recipe import load_recipe

    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    run = resolve_run(target, runs_root)
    if not run.model.is_file():
        status = run.read_json(run.manifest).get("status", "unknown")
        raise UsageError(f"{run.root} has no model.keras (run status: {status}); only finished runs can be evaluated")
    recipe = load_recipe(run.recipe)
    backend.setup()
    from dlkit.models import family

    if family(recipe.model_config_obj.arch) == "gan":
        from dlkit.gan_eval import evaluate_gan

        backend.seed_everything(recipe.seed, recipe.train.deterministic)
        ref = resolve_run(reference, runs_root) if reference else None
        result = evaluate_gan(run, samples, ref)
        evals = run.read_json(run.eval)
        evals["samples" if ref is None else "reference"] = result
        run.write_json(run.eval, evals)
        return result
    if reference:
        raise UsageError("--reference is for GAN runs: it names the classifier that measures their samples")
    backend.seed_everything(recipe.seed, recipe.train.deterministic)
    data = pipeline.load(recipe.data, recipe.seed)  # the same seed carves the same splits as training
    s = data.splits
    x, y = {"test": (s.x_test, s.y_test), "val": (s.x_val, s.y_val), "train": (s.x_train, s.y_train)}[split]
    if x is None:
        raise UsageError(f"run {run.root.name} has no {split!r} split (data.validation_split or the dataset's test set)")
    ds = pipeline.dataset(x, y, recipe.data, recipe.seed, data.scale, training=False)

    start = time.perf_counter()
    model = keras.saving.load_model(run.model)
    measured = {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}
    y_pred = np.argmax(model.predict(ds, verbose=0), axis=-1)
    matrix = M.confusion(y, y_pred, data.spec.num_classes)
    image = run.confusion_matrix(split)
    plots.confusion_matrix(matrix, data.spec.class_names, image, f"{recipe.name}: {split} split")
    result = {
        "status": "completed", "run_dir": str(run.root), "split": split, "examples": int(len(y)),
        "metrics": measured, "accuracy_from_predictions": float(np.mean(y_pred == y)),
        "per_class": M.per_class(matrix, data.spec.class_names), "confusion_matrix": matrix.tolist(),
        "confusion_matrix_image": str(image), "wall_time_s": round(time.perf_counter() - start, 3),
    }
    evals = run.read_json(run.eval)
    evals[split] = result  # earlier evaluations of other splits are kept
    run.write_json(run.eval, evals)
    return result
