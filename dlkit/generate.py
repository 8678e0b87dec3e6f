"""`generate(run_dir, ...)`: what a finished run of a generative task makes (sample grids, latent
interpolations, translations), the library function behind `dlkit generate`."""

from __future__ import annotations

from dlkit import tasks
from dlkit.errors import UsageError
from dlkit.evaluate import finished
from dlkit.rundir import RunDir
from dlkit.tasks.base import GenerateRequest


def generate(run_dir, n: int = 64, label: int | None = None, code: int | None = None, seed: int = 0,
             out=None, interpolate: bool = False, force: bool = False) -> dict:
    from dlkit.training.session import Session

    run = finished(RunDir.open(run_dir))
    if n < 1:
        raise UsageError(f"-n must be at least 1, received {n}")
    recipe = tasks.load_recipe(run.recipe)
    session = Session.open(recipe)
    model = session.model(checkpoint=run.model)
    request = GenerateRequest(n, label, code, seed, out, interpolate, force)
    return session.task.generate(run, recipe, model, lambda: session.data, request)
