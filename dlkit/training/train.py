"""`train(recipe_path, runs_root)`: the one entry point behind `dlkit train`, called directly by tests.

Order matters: the recipe is validated, the data read and the model built and compiled before the run
directory exists, so a bad recipe or missing data never leaves a half-made run behind.
"""

from __future__ import annotations

import csv
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from dlkit import __version__, backend
from dlkit.errors import DivergedError, Interrupted
from dlkit.recipe import load_recipe
from dlkit.rundir import RunDir, save_model_atomic
from dlkit.ui import Reporter


def build_model(recipe, spec):
    from dlkit.models import ARCHITECTURES

    return ARCHITECTURES[recipe.model_config_obj.arch].build(recipe.model_config_obj, spec)


def compile_model(model, recipe, steps_per_epoch: int):
    from dlkit.errors import Problem, RecipeError
    from dlkit.models import ARCHITECTURES
    from dlkit.training import optim

    module = ARCHITECTURES[recipe.model_config_obj.arch]
    if hasattr(module, "compile"):  # models with their own train_step (GANs) compile themselves
        return module.compile(model, recipe, steps_per_epoch)
    cfg = recipe.train
    if cfg.optimizers is not None:
        raise RecipeError([Problem("train.optimizers", f"{recipe.model_config_obj.arch} trains with one optimizer",
                                   hint="use train.optimizer")])
    model.compile(
        optimizer=optim.optimizer(cfg, steps_per_epoch),
        loss=optim.loss(cfg, ARCHITECTURES[recipe.model_config_obj.arch], recipe.model_config_obj),
        metrics=optim.metrics(cfg),
        jit_compile=cfg.jit_compile,
    )
    return model


def prepare(recipe):
    """Data and a compiled model for a validated recipe (seeded first, so both are reproducible)."""
    from dlkit.data import pipeline
    from dlkit.training import optim

    backend.setup()
    backend.seed_everything(recipe.seed, recipe.train.deterministic)
    data = pipeline.load(recipe.data, recipe.seed)
    steps = optim.steps_per_epoch(data.spec.num_train, recipe.data.batch_size, recipe.train.steps_per_epoch)
    model = compile_model(build_model(recipe, data.spec), recipe, steps)
    return data, model, steps


def _git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _manifest(recipe, recipe_path, data, model) -> dict:
    import keras

    tf = backend.tensorflow()
    scale = [v.tolist() for v in data.scale]
    return {
        "dlkit": __version__, "keras": keras.__version__, "tensorflow": tf and tf.__version__,
        "python": platform.python_version(), "backend": keras.backend.backend(), "device": backend.describe_device(),
        "host": platform.node(), "pid": os.getpid(), "seed": recipe.seed, "recipe_file": str(recipe_path),
        "git_commit": _git_commit(Path(recipe_path).resolve().parent), "command": sys.argv,
        "data_origin": data.origin, "data_spec": data.spec.to_dict(),
        "data_scale": scale,  # the model sees x * a + b; generate and evaluate undo it
        "params": int(model.count_params()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ended": None, "status": "running",
    }


def _monitor(recipe, has_val: bool) -> tuple[str, str]:
    monitor = recipe.train.monitor
    if not has_val and monitor.startswith("val_"):
        monitor = monitor[4:]
    mode = "min" if "loss" in monitor or "error" in monitor else "max"
    return monitor, mode


def train(recipe_path, overrides=(), runs_root="runs", reporter: Reporter | None = None) -> dict:
    """Train the recipe and return the result (what `--json` prints). Raises DlkitError subclasses on user
    errors, DivergedError on NaN/inf, Interrupted on Ctrl-C."""
    reporter = reporter or Reporter()
    recipe = load_recipe(recipe_path, overrides)
    data, model, steps = prepare(recipe)

    run = RunDir.create(runs_root, recipe.name)
    (run.recipe).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    run.write_json(run.manifest, _manifest(recipe, recipe_path, data, model))
    return _fit(run, recipe, data, model, steps, reporter)


def resume(run_dir, epochs: int | None = None, reporter: Reporter | None = None) -> dict:
    """Continue a run from checkpoints/last.keras in its own directory: the model, every optimizer's state
    (moments, step count, schedule position), a GAN's RNG state and the data order carry on where the last
    finished epoch left them. `epochs` raises the run's total (its recipe.yaml is updated to match)."""
    import keras

    from dlkit.data import pipeline
    from dlkit.errors import UsageError
    from dlkit.training import optim

    reporter = reporter or Reporter()
    run = RunDir.open(run_dir)
    recipe = load_recipe(run.recipe, [f"train.epochs={epochs}"] if epochs is not None else ())
    _refuse_if_running(run)
    if not run.last_checkpoint.is_file():
        raise UsageError(f"{run.root} has no checkpoints/last.keras: no epoch finished, so there is nothing to "
                         "resume; train the recipe again")
    backend.setup()
    backend.seed_everything(recipe.seed, recipe.train.deterministic)
    data = pipeline.load(recipe.data, recipe.seed)
    steps = optim.steps_per_epoch(data.spec.num_train, recipe.data.batch_size, recipe.train.steps_per_epoch)
    import dlkit.models.gan_model  # noqa: F401 - registers the adversarial models for load_model

    model = keras.saving.load_model(run.last_checkpoint)
    from dlkit.training.callbacks import load_rng_sidecar

    load_rng_sidecar(model, run.last_checkpoint)  # dropout and noise streams of plain Keras models
    # epochs done, from the checkpoint itself: history.csv may hold one more row if a kill fell between them
    optimizer = getattr(model, "g_optimizer", None) or model.optimizer
    done = int(keras.ops.convert_to_numpy(optimizer.iterations)) // steps
    if done >= recipe.train.epochs:
        raise UsageError(f"{run.root} has finished {done} of its {recipe.train.epochs} epochs; to train it "
                         f"further, raise the total with --epochs (e.g. --epochs {done + max(done // 2, 1)})")
    rows = []
    if run.history.is_file():
        with open(run.history, newline="") as f:
            rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v != ""}
                    for r in csv.DictReader(f)][:done]
    # The data order: each new iterator over the training set reshuffles (seeded), and Keras's epoch iterator
    # makes two per epoch over a finite dataset (one for the epoch, one made ready at its end). Making the
    # same number here puts epoch done+1 on the order it had in an uninterrupted run (tests/test_resume.py
    # checks the weights match). With train.steps_per_epoch set, passes and epochs differ: resuming starts a
    # fresh pass instead.
    if hasattr(data.train, "start_epoch"):  # the numpy pipeline (no TensorFlow): orders are per epoch
        data.train.start_epoch(done)
    elif recipe.train.steps_per_epoch is None:
        for _ in range(2 * done):
            iter(data.train)
    if epochs is not None:
        (run.recipe).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    history = run.read_json(run.manifest).get("resumed", [])
    run.update_manifest(status="running", ended=None, pid=os.getpid(),
                        resumed=history + [{"from_epoch": done, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                            "command": sys.argv}])
    return _fit(run, recipe, data, model, steps, reporter, initial_epoch=done, rows=rows)


def _refuse_if_running(run) -> None:
    """Two processes must not train one run directory: refuse while the process that owns it is alive."""
    from dlkit.errors import UsageError

    manifest = run.read_json(run.manifest)
    pid = manifest.get("pid")
    if manifest.get("status") != "running" or manifest.get("host") != platform.node() or not pid:
        return
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return  # it died without closing the run (kill -9, a crash): resuming is what it needs
    except PermissionError:
        pass  # alive, but another user's
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.is_file() and b"dlkit" not in cmdline.read_bytes():
        return  # the number was reused by an unrelated process
    raise UsageError(f"{run.root} is still being trained by process {pid} on this machine; wait for it, or stop "
                     f"it (kill {pid}: the run is closed as interrupted) and resume then")


def _fit(run, recipe, data, model, steps, reporter, initial_epoch: int = 0, rows=()) -> dict:
    import keras

    from dlkit.training import callbacks as C

    reporter.start(run.root, recipe, data.spec, model)

    from dlkit.models import family

    generative = family(recipe.model_config_obj.arch) == "gan"
    monitor, mode = _monitor(recipe, data.val is not None)
    guard = C.DivergenceGuard()
    keeper = C.CheckpointAndHistory(run, guard, monitor, mode, rows)
    cbs = [C.InterruptCheck(), guard]
    sampler = None
    if generative:
        from dlkit.training.samples import SampleGrid

        sampler = SampleGrid(run, model, data, recipe.seed, reporter, recipe.model_config_obj.overpower_epochs,
                             initial_epoch)
        cbs.append(sampler)  # before the keeper: it adds `diversity` to the epoch's logs
    cbs += [keeper, C.ProgressCallback(reporter, recipe.train.epochs, steps, initial_epoch)]
    if recipe.train.early_stopping:
        es = recipe.train.early_stopping
        cbs.append(C.ResumableEarlyStopping(monitor=_monitor_name(es.monitor, data.val), patience=es.patience,
                                            min_delta=es.min_delta, restore_best_weights=es.restore_best_weights,
                                            rows=rows))
    if recipe.train.schedule.name == "plateau":
        sc = recipe.train.schedule
        cbs.append(C.ResumableReduceLROnPlateau(monitor=monitor, factor=sc.factor, patience=sc.patience,
                                                min_lr=sc.min_learning_rate, verbose=0, rows=rows))

    start, cpu_start = time.perf_counter(), time.process_time()
    result = {"name": recipe.name, "run_dir": str(run.root), "params": int(model.count_params())}
    if initial_epoch:
        result["resumed_from_epoch"] = initial_epoch
    fit_steps = recipe.train.steps_per_epoch
    if hasattr(data.train, "max_steps"):  # the numpy pipeline caps its own epochs, each a fresh pass
        data.train.max_steps, fit_steps = fit_steps, None
    elif fit_steps is not None:  # capped epochs run on through the passes (else Keras cuts one short at each pass's end)
        data.train = data.train.repeat()
    try:
        model.fit(data.train, validation_data=None if generative else data.val, epochs=recipe.train.epochs,
                  initial_epoch=initial_epoch, steps_per_epoch=fit_steps, callbacks=cbs, verbose=0,
                  shuffle=False)  # the pipeline already shuffles, seeded
        fit_seconds, fit_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if guard.diverged_at is None:
            _finish(model, run, recipe, data, keeper, sampler, result)
    except KeyboardInterrupt:
        reporter.train_end()
        result.update(_summary(keeper, start, data, steps, recipe.data.batch_size), status="interrupted")
        run.write_json(run.metrics, result)
        run.update_manifest(status="interrupted", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise Interrupted(run.root, result) from None
    except BaseException:
        reporter.train_end()
        run.update_manifest(status="failed", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise
    if guard.diverged_at is not None:
        epoch, step = guard.diverged_at
        where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step >= 0 else "")
        result.update(_summary(keeper, start, data, steps, recipe.data.batch_size), status="diverged", diverged_at=where)
        run.write_json(run.metrics, result)
        run.update_manifest(status="diverged", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        kept = f"the last good checkpoint is {run.last_checkpoint}" if run.last_checkpoint.exists() else \
            "no epoch finished cleanly, so there is no checkpoint"
        err = DivergedError(
            f"training diverged: the loss became NaN or inf at {where}; {kept}. "
            "Try a lower learning rate, gradient clipping (clipnorm in the optimizer's section) "
            "or batch normalization.")
        err.run_dir = str(run.root)
        raise err from None

    result.update(_summary(keeper, start, data, steps, recipe.data.batch_size), status="completed")
    result["fit_time_s"] = round(fit_seconds, 3)
    result["fit_cpu_time_s"] = round(fit_cpu_seconds, 3)  # all threads; steadier than wall time on a busy host
    result["wall_time_s"] = round(time.perf_counter() - start, 3)
    run.write_json(run.metrics, result)
    run.update_manifest(status="completed", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    reporter.summary(result)
    return result


def _finish(model, run, recipe, data, keeper, sampler, result) -> None:
    """After a clean fit: the model file, test metrics and pictures (into `result`)."""
    from dlkit import metrics as M
    from dlkit import plots

    save_model_atomic(model, run.model)
    if sampler is not None:
        result["warnings"] = sampler.warnings
        result["samples"] = str(run.samples)
    elif data.test is not None:
        result["test"] = {k: float(v) for k, v in model.evaluate(data.test, verbose=0, return_dict=True).items()}
        y_pred = np.argmax(model.predict(data.test, verbose=0), axis=-1)
        matrix = M.confusion(data.splits.y_test, y_pred, data.spec.num_classes)
        plots.confusion_matrix(matrix, data.spec.class_names, run.confusion_matrix("test"),
                               f"{recipe.name}: test split")
    plots.learning_curves(keeper.rows, run.learning_curves)


def _monitor_name(name: str, val) -> str:
    return name[4:] if val is None and name.startswith("val_") else name


def _summary(keeper, start: float, data, steps: int, batch_size: int) -> dict:
    from dlkit import metrics as M

    rows = keeper.rows
    seconds = time.perf_counter() - start
    examples = len(rows) * min(data.spec.num_train, steps * batch_size)
    return {
        "epochs_completed": len(rows),
        "final": {k: v for k, v in (rows[-1] if rows else {}).items() if k != "epoch"},
        "best": M.best_of(rows),
        "best_epoch": keeper.best_epoch,
        "monitor": keeper.monitor,
        "wall_time_s": round(seconds, 3),
        "throughput": round(examples / seconds, 1) if seconds > 0 else 0.0,
    }
