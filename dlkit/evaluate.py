"""`evaluate(target, split)`: measure a finished run, the library function behind `dlkit evaluate`. What is
measured is the task's (dlkit.tasks): a classifier's loss, metrics and confusion matrix on a split, a
generative model's samples against a reference classifier, ..."""

from __future__ import annotations

from pathlib import Path

from dlkit import tasks
from dlkit.errors import SPLITS, MissingSplit, RecipeError, UsageError
from dlkit.recipe import recipe_file, shipped
from dlkit.recipe.source import is_stream
from dlkit.rundir import RunDir, enclosing_run
from dlkit.tasks.base import EvalRequest, check_beam
from dlkit.training.session import keeps_callers_settings


def resolve_run(target: str | Path, runs_root: str | Path = "runs") -> RunDir:
    """A run directory as given (or the run a file or folder given lies in: its own recipe.yaml names the run,
    not the recipe's newest run), or the latest finished run of a recipe file (or of a recipe dlkit ships, by
    name: `dlkit evaluate cnn_mnist`)."""
    path = Path(target)
    if path.is_dir() or enclosing_run(path) is not None:  # a file of a run (its recipe.yaml): that run
        return RunDir.open(path)
    try:
        recipe = recipe_file(path)
    except RecipeError:
        recipe = path
    if recipe.suffix in (".yaml", ".yml") and recipe.is_file() or is_stream(recipe):  # (`-`: a recipe piped in)
        return RunDir.open(RunDir.latest(runs_root, tasks.load_recipe(recipe).name).root)
    near = shipped.close(str(target))
    raise UsageError(f"{target} is neither a run directory nor a recipe file"
                     + (f" (did you mean {near}, a recipe dlkit ships?)" if near else ""))


def finished(run: RunDir) -> RunDir:
    if not run.model.is_file():
        status = run.read_json(run.manifest).get("status", "unknown")
        raise UsageError(f"{run.root} has no model.keras (run status: {status}); only finished runs can be used")
    return run


MOST_SAMPLES = 100_000  # evaluate's -n and -k: ten times the default -n, twenty times the largest -k measured


@keeps_callers_settings
def evaluate(target, split: str | None = None, runs_root="runs", reference=None, samples: int | None = None,
             importance_samples: int | None = None, unsafe: bool = False, beam: int | None = None,
             data: str | Path | None = None) -> dict:
    """Measure the run, record the result in its eval.json (earlier results of other splits or kinds are
    kept) and return it; `result["task"]` names the task whose `report` prints it. `split` None: the test
    split, or for a run without one (a text cut into training and validation only) its validation split,
    and the result's `note` says so. `samples` None: the task's default (tasks.base.EVAL_SAMPLES). `data`: data of
    one's own (a labelled folder or CSV, a text, pairs, a series, images: what the run's task reads), measured
    in place of a split, its result keyed `data:<absolute path>`."""
    from dlkit.training.session import Session

    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    # -n from 2: one sample has no spread to measure (its diversity, a Gaussian's covariance for the Fréchet
    # distance: -n 1 was a traceback from scipy)
    for flag, value, least in (("-n/--samples", samples, 2), ("-k/--importance-samples", importance_samples, 1)):
        if value is not None and not least <= value <= MOST_SAMPLES:
            raise UsageError(f"{flag} counts samples: {least} to {MOST_SAMPLES:,}, received {value}")
    check_beam(beam)
    if data is not None and split is not None:
        raise UsageError("--data and --split each say what to measure: give one")
    if data is not None and not Path(data).expanduser().exists():  # said before the model loads
        raise UsageError(f"{data}: no such file or folder (--data)")
    run = finished(resolve_run(target, runs_root))
    run.read_json(run.eval)  # an unreadable file is said before the measuring, not after it
    ref = finished(resolve_run(reference, runs_root)) if reference else None
    recipe = tasks.load_run_recipe(run.recipe)
    task = tasks.of(recipe)
    tasks.refuse_unread(task, samples=samples, beam=beam, importance_samples=importance_samples, data=data)
    session = Session.open(recipe)  # the same seed carves the same splits as training
    model = session.model(checkpoint=run.model, unsafe=unsafe)
    request = EvalRequest(split or "test", ref, samples, importance_samples, unsafe, beam,
                          None if data is None else Path(data))
    try:
        result = session.task.evaluate(run, recipe, model, lambda: session.data_of(run), request)
    except MissingSplit as e:
        if split is not None or data is not None or "val" not in e.available:
            raise
        request.split = "val"
        result = session.task.evaluate(run, recipe, model, lambda: session.data_of(run), request)
        result["note"] = "; ".join(["this run has no test split: its validation split was measured"]
                                   + ([result["note"]] if result.get("note") else []))
    with run.record(run.eval) as evals:  # read again: another command may have added its result meanwhile
        evals[result.pop("key")] = result
    return result
