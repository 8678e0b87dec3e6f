"""`train(recipe_path, runs_root)` and `resume(run_dir)`: the entry points behind `dlkit train` and `dlkit
resume`, called directly by tests.

Order matters: the recipe is validated, the data read and the first phase's model built and compiled (and
every later phase's, as a check) before the run directory exists, so a bad recipe or missing data never
leaves a half-made run behind.

A run is one or more phases (dlkit.tasks.base.Phase), each one `fit`; the task supplies everything that
differs by kind of learning (data, model, optimizers, callbacks, what a finished run writes), and this
module runs the phases with the core callbacks: interrupt check, divergence guard, checkpoints and
history, progress.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dlkit import __version__, backend, keras_private, optim, plots, tasks
from dlkit import recipe as recipe_layer
from dlkit.errors import (DataError, DivergedError, Interrupted, OutOfMemoryError, RecipeError, UsageError,
                          interrupt_requested, is_out_of_memory, storage_error)
from dlkit.files import write_atomic
from dlkit.recipe.schema import MAX_EPOCHS
from dlkit.rundir import (FORMAT, RunDir, check_recipe_unchanged, said, save_model_atomic, strict_json,
                          wait_for_checkpoint)
from dlkit.tasks.base import FitContext
from dlkit.training.session import Session, keeps_callers_settings
from dlkit.ui import PlainReporter, Reporter, make_console


@keeps_callers_settings
def train(recipe_path, overrides=(), runs_root="runs", reporter: Reporter | None = None) -> dict:
    """Train the recipe and return the result (what `--json` prints). Raises DlkitError subclasses on user
    errors, DivergedError on NaN/inf, Interrupted on Ctrl-C."""
    try:
        recipe_path = recipe_layer.recipe_file(recipe_path)  # a shipped recipe's name: its file, in the manifest
        return _train(recipe_path, overrides, runs_root, reporter or Reporter())
    except RecipeError as e:
        # one found after loading (a class the data lacks, a model its inputs are too small for, a monitored
        # name the epochs do not log): at its key's line
        raise recipe_layer.located(e, recipe_path, overrides) from None


def _train(recipe_path, overrides, runs_root, reporter: Reporter) -> dict:
    recipe = tasks.load_recipe(recipe_path, overrides)
    session = Session.open(recipe)
    phases = session.task.phases(recipe)
    model = _first_model(session, phases)

    follower = _Follower.of_this_process()
    run = RunDir.create(follower.scratch if follower else runs_root, recipe.name)
    if backend.process_count() > 1:  # every process learns process 0's run directory
        leader = Path(runs_root) / backend.broadcast_text(str(run.root.relative_to(run.root.parent.parent)))
        if follower:
            reporter = follower.follow(leader)
    try:
        run.lock()  # (within: a lock that fails leaves no run directory)
        text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
        write_atomic(run.recipe, text)
        run.write_artifacts(session.data.artifacts)
        kept = _keep_plugins(run, recipe)
        # the text kept: a resume tells an edit of recipe.yaml since (rundir.check_recipe_unchanged)
        run.write_json(run.manifest, {**_manifest(recipe, recipe_path, session, model, phases), "recipe_yaml": text,
                                      **({"plugins": kept} if kept else {})})
    except OSError as e:  # nothing trained yet: no half-made run directory is left behind
        run.unlock()
        run.discard()
        if follower:
            follower.close()
        raise storage_error(e, "writing the new run directory's first files") from None
    if run.unguarded:
        reporter.message(f"warning: {run.unguarded}")
    if follower:
        return follower.run(lambda: _run(run, session, phases, reporter, first=0, model=model))
    return _run(run, session, phases, reporter, first=0, model=model)


def _history_rows(path: Path) -> list[dict]:
    """history.csv's rows as numbers ([] where there is none). dlkit writes it whole, so a row that does not
    read (a cell missing, a word) was changed or cut since: a data error naming it, not a traceback."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            try:
                rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""})
            except (TypeError, ValueError):
                raise DataError(f"{path}, line {reader.line_num}: a row that does not read as numbers under its "
                                "header; dlkit writes the file whole, so it was changed or cut since: restore it "
                                "from a copy of the run") from None
    return rows


def _first_model(session, phases):
    """The first phase's model, built and compiled. Every later phase's model (a DBN's fine-tuned net) is built
    and compiled too, from the ones before it as they start, and thrown away: a recipe error in a later phase
    (a metric its targets do not fit) is said now, before the run directory exists, and not after the phases
    before it have trained. Those builds leave the random streams and Keras's layer names as they were, so
    each later phase still starts from the weights it would have had."""
    model = session.model(phases[0])
    if len(phases) > 1:
        notes = list(session.data.notes)
        earlier = {phases[0].name: model}
        with keras_private.global_state_kept():
            for phase in phases[1:]:
                earlier[phase.name] = session.model(phase, earlier)
        session.data.notes[:] = notes  # each phase says its own when it is built to train
    return model


class _Follower:
    """A process other than 0 of a run over several processes. It trains in step with process 0 (every step,
    validation and checkpoint is a computation all of them take part in), so it goes through the same code,
    but its copy of the run directory lives in a scratch folder removed at the end: process 0 alone writes
    the run directory. What it reports goes to a log beside that directory, RUN.process-<i>.log."""

    def __init__(self, index: int):
        self.index = index
        self.scratch = Path(tempfile.mkdtemp(prefix=f"dlkit-process-{index}-"))
        self.leader = self.log = self._file = None

    @classmethod
    def of_this_process(cls):
        index = backend.process_index()
        return cls(index) if index > 0 else None

    def follow(self, leader: Path) -> Reporter:
        """The reporter writing this process's log beside process 0's run directory `leader`."""
        self.leader = leader
        self.log = leader.with_name(f"{leader.name}.process-{self.index}.log")
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.log, "a", encoding="utf-8")
        except OSError as e:
            self.close()
            raise storage_error(e, f"writing process {self.index}'s log {self.log}") from None
        console = make_console()
        console.file = self._file
        reporter = PlainReporter(console)
        reporter.message(f"process {self.index} of {backend.process_count()}, in step with process 0, whose run "
                         f"directory is {leader}; this process's own copy, {self.scratch}, is removed at the end")
        return reporter

    def run(self, fn) -> dict:
        """fn's result, with process 0's run directory in it; the scratch copy is removed however it ends."""
        try:
            result = fn()
            print(json.dumps(strict_json(result), default=str), file=self._file)
            return {**result, "run_dir": str(self.leader), "process": self.index, "log": str(self.log)}
        finally:
            self.close()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self._file is not None:
            self._file.close()
            self._file = None


@keeps_callers_settings
def resume(run_dir, epochs: int | None = None, reporter: Reporter | None = None, unsafe: bool = False) -> dict:
    """Continue a run from the last checkpoint of the phase it stopped in: the model, every optimizer's state
    (moments, step count, schedule position), the random streams and the data order carry on where the last
    finished epoch left them. `epochs` raises the run's total (its recipe.yaml is updated to match)."""
    reporter = reporter or Reporter()
    if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:  # said of the run's recipe, it was "--set train.epochs"
        raise UsageError(f"--epochs {epochs:,}: a run's total of epochs is 1 to {MAX_EPOCHS:,}, as train.epochs in a "
                         "recipe")
    run = RunDir.open(run_dir)
    edited = check_recipe_unchanged(run, run.read_json(run.manifest))  # before the recipe's own problems
    recipe = tasks.load_run_recipe(run.recipe, [f"train.epochs={epochs}"] if epochs is not None else ())
    follower = _Follower.of_this_process()
    if follower:  # it resumes a copy of the run (every process needs the run directory: a shared disk, or a copy)
        reporter = follower.follow(run.root)
        try:
            shutil.copytree(run.root, follower.scratch / run.root.name, ignore=shutil.ignore_patterns("run.lock"))
        except OSError as e:
            follower.close()
            raise storage_error(e, f"copying {run.root} for process {follower.index}") from None
        run = RunDir.open(follower.scratch / run.root.name)
    run.lock()
    try:
        if run.unguarded:
            reporter.message(f"warning: {run.unguarded}")
        gone = run.remove_leftovers()  # what a killed process was writing: the lock says none is now
        if gone:
            reporter.message(f"removed {len(gone)} temporary file(s) a killed process left half-written in the "
                             f"run ({', '.join(str(p.relative_to(run.root)) for p in gone[:3])})")
        if follower:
            return follower.run(lambda: _resume(run, recipe, epochs, reporter, unsafe, edited))
        return _resume(run, recipe, epochs, reporter, unsafe, edited)
    except BaseException:
        run.unlock()
        raise


def _resume(run, recipe, epochs, reporter, unsafe, edited: dict) -> dict:
    """`edited`: what recipe.yaml says otherwise than when the run last trained, that the resume uses
    (rundir.check_recipe_unchanged): said, and recorded in the manifest's `resumed` entry."""
    from dlkit.training.callbacks import load_rng_sidecar

    session = Session.open(recipe)
    session.data_of(run)  # read first, as training did, and checked against what the run trained on
    task, steps = session.task, session.steps_per_epoch
    phases = task.phases(recipe)
    several = len(phases) > 1
    manifest = run.read_json(run.manifest)
    completed = manifest.get("phases_completed", [])
    i = next(k for k, p in enumerate(phases) if p.name not in completed or k == len(phases) - 1)
    earlier = {p.name: session.model(p, checkpoint=run.phase(p.name, several).model, unsafe=unsafe)
               for p in phases[:i]}
    while True:
        phase, where = phases[i], run.phase(phases[i].name, several)
        checkpoint, damaged = where.verified_checkpoint()
        for text in damaged:
            reporter.message(f"warning: {text}" + (f"; resuming from {checkpoint}" if checkpoint else ""))
        if checkpoint is None:
            if i == 0 or damaged:
                # a finished run (its model.keras written) whose checkpoints were removed did finish its epochs
                why = ("; ".join(damaged) if damaged else "its checkpoints were removed after it finished (model.keras "
                       "holds the weights, not the optimizer's state a resume continues from)" if where.model.is_file()
                       else "no epoch finished")
                raise UsageError(f"{where.root} has no intact checkpoint (checkpoints/last.keras or previous.keras with "
                                 f"its checksum): {why}, so there is nothing to resume; train the recipe again")
            model, done, skip = None, 0, 0  # the phase had not begun
            break
        model = session.model(phase, earlier, checkpoint=checkpoint, unsafe=unsafe)
        optimizers = task.optimizers(model)
        # where the checkpoint stands: epochs done and batches into the next (a checkpoint taken inside an
        # epoch); history.csv may hold one more row if a kill fell between them
        done, skip = divmod(load_rng_sidecar(model, optimizers, where.rng_sidecar(checkpoint)), steps)
        if done < phase.epochs:
            break
        if i == len(phases) - 1 and not run.model.is_file():
            break  # killed after its last epoch's checkpoint, before it was finished: finish it now
        if i == len(phases) - 1 and manifest.get("status") != "completed":
            # stopped while it finished (its test measures, a translation's beam search): finish it now, from the
            # model.keras it saved, which early stopping may have set back to the best epoch's weights
            model = session.model(phase, earlier, checkpoint=run.model, unsafe=unsafe)
            break
        if i == len(phases) - 1:
            raise UsageError(f"{run.root} has finished {done} of its {phase.epochs} epochs; to train it further, "
                             f"raise the total with --epochs (e.g. --epochs {done + max(done // 2, 1)})")
        earlier[phase.name] = _close_phase(run, where, phase, model)  # it ended but was not marked so
        i += 1
    if model is not None:
        session.how_it_runs(model)
    rows = _history_rows(where.history)[:done]
    if epochs is not None and model is not None and i == len(phases) - 1:
        _stretch_schedules(session, phases[i], earlier, model, reporter)
    if epochs is not None:
        write_atomic(run.recipe, yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    if edited:
        reporter.message(f"note: {run.recipe} was changed since the run last trained, and it resumes with the change: "
                         f"{said(edited)}")
    history = manifest.get("resumed", [])
    here = _software_and_machine()
    before = next((h for h in reversed(history) if "backend" in h), manifest)  # the session that trained last
    if any(before.get(k) != here[k] for k in ("backend", "device")):
        reporter.message(f"warning: {run.root} was trained on {before.get('backend')} ({before.get('device')}) and "
                         f"resumes on {here['backend']} ({here['device']}): it goes on from the checkpoint's weights, "
                         f"optimizer state, random streams and data order, but not bit for bit as it would on the "
                         f"backend and device it was trained on")
    entry = {"from_epoch": done, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv, **here}
    if skip:
        entry["from_step"] = done * steps + skip
    if several:
        entry["phase"] = phases[i].name
    if edited:
        entry["recipe_changes"] = {k: list(values) for k, values in edited.items()}
    run.update_manifest(status="running", ended=None, pid=os.getpid(), resumed=history + [entry],
                        recipe_yaml=run.recipe.read_text(encoding="utf-8"))  # what the next resume is held to
    return _run(run, session, phases, reporter, first=i, model=model, initial_epoch=done, skip=skip, rows=rows,
                earlier=earlier)


def _stretch_schedules(session, phase, earlier, model, reporter) -> None:
    """--epochs raised the total: a learning-rate schedule that spans the run (cosine, step with hold_epochs)
    is the one a fresh build of the phase compiles for the new total, not the checkpoint's, which ended at
    the old total (a cosine at its floor: the added epochs would not have moved the weights). A rollback's
    factor stays on it."""
    with keras_private.global_state_kept():  # the throwaway build moves no random stream
        fresh = session.task.optimizers(session.model(phase, earlier))
    changed = [role for role, opt in session.task.optimizers(model).items() if optim.take_schedule(opt, fresh[role])]
    if changed:
        reporter.message(f"the learning-rate schedule now spans {phase.epochs} epochs: at this step it is where a "
                         f"{phase.epochs}-epoch run's would be")


def _close_phase(run, where, phase, model):
    """A phase of a run of several has ended: its model is kept and the manifest says so."""
    save_model_atomic(model, where.model)
    done = run.read_json(run.manifest).get("phases_completed", [])
    run.update_manifest(phases_completed=done + [phase.name])
    return model


def _run(run, session, phases, reporter, first: int, model=None, initial_epoch: int = 0, skip: int = 0, rows=(),
         earlier=None) -> dict:
    """Fit the phases from `first` on; the first of them may come with its model (built, or resumed). The
    run's lock is held until they end, however they end."""
    try:
        return _run_phases(run, session, phases, reporter, first, model, initial_epoch, skip, rows, earlier)
    finally:
        run.unlock()


def _run_phases(run, session, phases, reporter, first, model, initial_epoch, skip, rows, earlier) -> dict:
    several, earlier, shown = len(phases) > 1, dict(earlier or {}), set()
    start, fit_seconds, fit_cpu_seconds = time.perf_counter(), 0.0, 0.0
    result = {"name": session.recipe.name, "run_dir": str(run.root)}
    if session.data.notes:  # what reading the data did (rows left out, cells filled): `--json` carries it too
        result["data_notes"] = list(session.data.notes)
    if initial_epoch or skip:
        result["resumed_from_epoch"] = initial_epoch
        if skip:
            result["resumed_from_step"] = initial_epoch * session.steps_per_epoch + skip
    for i in range(first, len(phases)):
        phase, where = phases[i], run.phase(phases[i].name, several)
        if model is None:  # a later phase, built from the earlier ones' models
            try:
                model = session.model(phase, earlier)
            except BaseException:
                _close_failed(run)
                raise
        if several:
            reporter.message(f"phase {i + 1}/{len(phases)}: {phase.name}")
            result.setdefault("phases", {})[phase.name] = summary = {}
        else:
            summary = result
        final = i == len(phases) - 1
        keeper, seconds, cpu_seconds = _fit(run, where, session, phase, model, reporter, initial_epoch, skip, rows,
                                            earlier, result, summary, final, shown)
        fit_seconds, fit_cpu_seconds = fit_seconds + seconds, fit_cpu_seconds + cpu_seconds
        if not final:
            earlier[phase.name] = _close_phase(run, where, phase, model)
        model, initial_epoch, skip, rows = None, 0, 0, ()
    result.update(_summary(keeper, start, session))
    rollbacks = run.read_json(run.manifest).get("rollbacks")
    if rollbacks:
        result["rollbacks"] = len(rollbacks)
    result.update(status="completed", fit_time_s=round(fit_seconds, 3),
                  fit_cpu_time_s=round(fit_cpu_seconds, 3),  # all threads; steadier than wall time on a busy host
                  wall_time_s=round(time.perf_counter() - start, 3))
    try:
        run.write_json(run.metrics, result)
        run.update_manifest(status="completed", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    except OSError as e:
        raise storage_error(e, "closing the finished run") from None
    reporter.summary(result)
    return result


def _fit(run, where, session, phase, model, reporter, initial_epoch, skip, rows, earlier, result, summary, final,
         shown: set):
    """One phase's `fit`, with the core callbacks and the task's; the last phase also finishes the run.
    Returns the history keeper and the fit's wall and CPU seconds. `shown`: the data notes an earlier phase
    printed (each is printed once a run)."""
    from dlkit.training import callbacks

    recipe, task = session.recipe, session.task
    several = summary is not result
    data = task.phase_data(recipe, session.data, phase, earlier)
    optimizers = task.optimizers(model)
    guard = callbacks.DivergenceGuard()
    monitor = task.monitor(recipe, data.val is not None, phase)
    # the epochs' checkpoints written in the checkpoint thread, one process and no distribution: over several
    # devices or processes the variables are sharded (each process saves its own copy of the run)
    alone = backend.process_count() == 1 and session.placement.replicas == 1
    keeper = callbacks.CheckpointAndHistory(where, guard, optimizers, monitor, rows, session.steps_per_epoch,
                                            background=alone)
    # the task's callbacks see the keeper's own rows, which grow as epochs end (early stopping replays them)
    ctx = FitContext(run, where, recipe, data, model, reporter, phase, initial_epoch, keeper.rows, monitor=monitor,
                     skip=skip)
    extra = task.callbacks(ctx)
    cap, steps = recipe.train.steps_per_epoch, session.steps_per_epoch
    progress = callbacks.ProgressCallback(reporter, phase.epochs, steps, optimizers, initial_epoch)
    cbs = [callbacks.InterruptCheck(), guard, *extra.before, keeper, progress, *extra.after]
    pruning = callbacks.Pruning.from_environment(monitor, keeper.rows) if final else None
    if pruning is not None:  # a trial of `dlkit tune` with its stopping rule: after the epoch is kept
        cbs.append(pruning)
    if backend.process_count() > 1 and (extra.before or extra.after):
        local = callbacks.ProcessLocal(model)
        cbs = [local.enter, *cbs, local.leave]
    if recipe.train.tensorboard:
        if callbacks.TensorBoardWriter.available():
            logdir = run.root / "tensorboard" / (phase.name if several else "")
            cbs.append(callbacks.TensorBoardWriter(logdir, where, optimizers))
        else:
            reporter.message("warning: train.tensorboard needs TensorFlow's summary writer, which is not installed "
                             "here (a JAX-only host); this run writes no TensorBoard logs")
    if recipe.train.checkpoint_every is not None:
        every = recipe.train.checkpoint_every
        mid = callbacks.MidEpochCheckpoint(keeper, steps, every.steps, every.minutes)
        cbs.insert(2, mid)
    else:
        mid = None
    reporter.start(run.root, recipe, data.spec, model)
    for note in data.notes:
        if note not in shown:
            reporter.message(note)
            shown.add(note)
    wanted = recipe.train.steps_per_execution
    taken = optim.steps_per_execution(wanted, steps)
    if wanted > 1 and session.placement.strategy is not None:
        reporter.message(f"train.steps_per_execution: 1 step a call, not {wanted}: Keras's TensorFlow trainer fails "
                         "with more under a MirroredStrategy (keras-team/keras#19246); a data-parallel run on JAX "
                         "takes the recipe's")
    elif taken != wanted:
        reporter.message(f"train.steps_per_execution: {taken} steps a call, the largest up to {wanted} that divides "
                         f"an epoch's {steps} steps")
    result["params"] = int(model.count_params())
    validation = data.val if task.validates else None
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        while True:
            # the pipeline already shuffles (each epoch's order from the seed): shuffle=False
            if skip:  # resumed inside an epoch: first the rest of it, from the batch its checkpoint had reached
                if mid is not None:
                    mid.offset = skip
                batches = data.feed.rest(initial_epoch, skip, cap)
                keras_private.build_for(model, batches)  # the step traced once
                model.fit(batches, validation_data=validation, epochs=initial_epoch + 1, initial_epoch=initial_epoch,
                          callbacks=cbs, verbose=0, shuffle=False)
                initial_epoch += 1
            if initial_epoch < phase.epochs and not model.stop_training:
                batches = data.feed.epochs(initial_epoch, cap)
                keras_private.build_for(model, batches)  # the step traced once
                model.fit(batches, validation_data=validation, epochs=phase.epochs, initial_epoch=initial_epoch,
                          steps_per_epoch=steps, callbacks=cbs, verbose=0, shuffle=False)
            back = _roll_back(run, where, recipe, model, optimizers, guard, keeper, reporter, steps, several, phase)
            if back is None:
                break
            initial_epoch, skip = back
        wait_for_checkpoint()  # the last epoch's, written in the checkpoint thread, in place
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if pruning is not None and pruning.pruned is not None:
            result["pruned"] = pruning.pruned
            reporter.message(pruning.said())
        summary["epoch_seconds"] = progress.seconds  # the first holds the compilation: throughput is in the later
        if guard.diverged_at is None:
            plots.learning_curves(keeper.rows, where.learning_curves)
            if final:
                save_model_atomic(model, run.model)
                result.update(_finish(ctx, extra, task, session, run))
    except BaseException as e:
        reporter.train_end()
        # Ctrl-C or SIGTERM, or an error it caused where it landed (inside TensorFlow's C code it came out as
        # SystemError "bad argument to internal function", a traceback)
        if isinstance(e, KeyboardInterrupt) or isinstance(e, Exception) and interrupt_requested.is_set():
            try:
                wait_for_checkpoint()  # an epoch's checkpoint being written finishes first: it is resumed from
            except OSError:
                pass  # not written: the one before it stands (checksums.json vouches for it)
            summary.update(_summary(keeper, start, session), status="interrupted")
            result["status"] = "interrupted"
            run.write_json(run.metrics, result)
            run.update_manifest(status="interrupted", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            raise Interrupted(run.root, result) from None
        try:
            wait_for_checkpoint()  # nothing writes in the run directory after it is closed
        except Exception:  # noqa: BLE001 - the failure being handled is the one to report
            pass
        _close_failed(run)
        if isinstance(e, OSError):
            raise storage_error(e, f"training {where.root}") from None
        if is_out_of_memory(e):
            size = recipe.data.batch_size
            raise OutOfMemoryError(
                f"out of memory training {recipe.model.arch} at data.batch_size: {size} ({type(e).__name__}). Try a "
                f"smaller batch (--set data.batch_size={max(1, size // 2)}) or a smaller model; the last checkpoint "
                f"is kept, and `dlkit resume {run.root}` continues from it") from None
        raise
    if guard.diverged_at is not None:
        where_text = _diverged_where(guard, phase, several)
        summary.update(_summary(keeper, start, session), status="diverged")
        result.update(status="diverged", diverged_at=where_text)
        run.write_json(run.metrics, result)
        run.update_manifest(status="diverged", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        kept = f"the last good checkpoint is {where.last_checkpoint}" if where.last_checkpoint.exists() else \
            "no epoch finished cleanly, so there is no checkpoint"
        err = DivergedError(
            f"training diverged: the loss became NaN or inf at {where_text}; {kept}. "
            "Try a lower learning rate, gradient clipping (clipnorm in the optimizer's section), "
            "batch normalization, or train.on_nan: rollback (go back to the last good checkpoint at a lower rate).")
        err.run_dir = str(run.root)
        raise err from None
    if several:
        summary.update(_summary(keeper, start, session))
    return keeper, seconds, cpu_seconds


def _finish(ctx, extra, task, session, run) -> dict:
    """The task's work on a finished run (test measures, pictures). In a run over several processes each
    does it by itself, on the model just saved and splits with their last short batch (backend.alone)."""
    if backend.process_count() == 1:
        return task.finish(ctx, extra)
    with backend.alone():
        model = session.model(checkpoint=run.model)
        data = ctx.data.fresh() if ctx.data.pipelines is not None else ctx.data
        return task.finish(dataclasses.replace(ctx, model=model, data=data), extra)


def _diverged_where(guard, phase, several: bool) -> str:
    epoch, step = guard.diverged_at
    return (f"phase {phase.name}, " if several else "") + f"epoch {epoch + 1}" + (
        f", step {step + 1}" if step >= 0 else "")


def _roll_back(run, where, recipe, model, optimizers, guard, keeper, reporter, steps, several, phase):
    """train.on_nan: rollback. After a NaN or infinite loss, put the model, its optimizers and its random
    streams back as the last good checkpoint has them, lower every learning rate by `lr_factor`, and say so
    (a message, the manifest's `rollbacks`, a `rollbacks` column in history.csv). Returns the (epoch, step)
    to go on from, or None when training is to stop: no divergence, on_nan is stop, the rollbacks are used
    up, or there is no good checkpoint to go back to."""
    from dlkit.training.callbacks import load_rng_sidecar

    on_nan = recipe.train.on_nan
    if guard.diverged_at is None or on_nan.action != "rollback":
        return None
    done = run.read_json(run.manifest).get("rollbacks", [])
    if len(done) >= on_nan.times:
        reporter.message(f"warning: the loss diverged again after {len(done)} rollbacks "
                         f"(train.on_nan.times: {on_nan.times}); stopping")
        return None
    checkpoint, damaged = where.verified_checkpoint()
    for text in damaged:
        reporter.message(f"warning: {text}")
    if checkpoint is None:
        return None
    diverged = _diverged_where(guard, phase, several)
    model.load_weights(checkpoint)  # weights and optimizer state, in place: the callbacks keep their model
    position = load_rng_sidecar(model, optimizers, where.rng_sidecar(checkpoint))
    for optimizer in optimizers.values():
        optim.scale_learning_rate(optimizer, on_nan.lr_factor)
    model.make_train_function(force=True)  # the old rate may be traced into it
    epoch, skip = divmod(position, steps)
    keeper.rolled_back(epoch, len(done) + 1)
    guard.reset()
    model.stop_training = False
    entry = {"diverged_at": diverged, "back_to_step": epoch * steps + skip, "lr_factor": on_nan.lr_factor,
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    run.update_manifest(rollbacks=done + [entry])
    reporter.message(f"warning: the loss became NaN or inf at {diverged}; rolled back to epoch {epoch + 1}"
                     + (f", step {skip + 1}" if skip else "") + f" and multiplied the learning rate by "
                     f"{on_nan.lr_factor} (rollback {len(done) + 1} of {on_nan.times})")
    return epoch, skip


def _close_failed(run) -> None:
    """Mark a run failed, if the disk still lets us (a full disk may not)."""
    try:
        run.update_manifest(status="failed", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    except OSError:
        pass


def _summary(keeper, start: float, session) -> dict:
    from dlkit import metrics

    rows = keeper.rows
    seconds = time.perf_counter() - start
    examples = len(rows) * min(session.data.spec.num_train, session.steps_per_epoch * session.recipe.data.batch_size)
    return {
        "epochs_completed": len(rows),
        "final": {k: v for k, v in (rows[-1] if rows else {}).items() if k != "epoch"},
        "best": metrics.best_of(rows),
        "best_epoch": keeper.best_epoch,
        "monitor": keeper.monitor,
        "wall_time_s": round(seconds, 3),
        "throughput": round(examples / seconds, 1) if seconds > 0 else 0.0,
    }


def _git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _software_and_machine() -> dict:
    """What a session of training runs on: the versions that make its numbers, its backend, device and host.
    The manifest holds the first session's; each resume records its own."""
    import keras

    tf = backend.tensorflow()
    jax = sys.modules.get("jax") if keras.backend.backend() == "jax" else None
    return {"dlkit": __version__, "keras": keras.__version__, "tensorflow": tf and tf.__version__,
            "jax": jax and jax.__version__, "python": platform.python_version(), "backend": keras.backend.backend(),
            "device": backend.describe_device(), "host": platform.node(), "cpu_threads": backend.thread_settings()}


def _keep_plugins(run: RunDir, recipe) -> list[dict]:
    """A copy of each plugin file (or folder) the recipe imported, as it was imported, in the run's plugins/ (what the
    run's recipe is loaded with from now on: tasks.plugin_copies), and the manifest's record of them and of
    the plugin modules and packages it used."""
    from dlkit.files import replace_atomic
    from dlkit.recipe import plugins

    kept, names = [], set()
    for source in plugins.sources(recipe.plugins):
        stem, n, end = Path(source.path).stem, 1, "" if source.folder else ".py"
        while (name := f"{stem}{end}" if n == 1 else f"{stem}-{n}{end}") in names:  # two of one name
            n += 1
        names.add(name)
        for inside, data in source.files.items():  # a file's one, or a folder's every .py
            target = run.root / "plugins" / name / inside if source.folder else run.root / "plugins" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_atomic(target, lambda tmp, data=data: tmp.write_bytes(data))
        kept.append({"file": source.path, "copy": f"plugins/{name}", "sha256": source.sha256})
    domain_b = getattr(recipe.data, "domain_b", None)
    datasets = (recipe.data.dataset,) + ((domain_b.dataset,) if domain_b is not None else ())
    return kept + plugins.provenance(recipe.plugins, recipe.model.arch, datasets)


def _manifest(recipe, recipe_path, session, model, phases) -> dict:
    import keras

    manifest = {
        **_software_and_machine(), "format": FORMAT,
        "pid": os.getpid(), "seed": recipe.seed, "recipe_file": recipe_layer.source.shown(recipe_path),
        "git_commit": _git_commit(Path(recipe_path).resolve().parent), "command": sys.argv,
        "task": session.task.name, "headlines": [dataclasses.asdict(h) for h in session.task.headlines],
        "data_origin": session.data.origin, "data_notes": session.data.notes,
        "data_spec": session.data.spec.to_dict(),
        "params": int(model.count_params()), "replicas": session.placement.replicas,
        "processes": backend.process_count(),
        "devices": session.placement.devices or None,
        # JAX: the folder compiled programs were read from and kept in (backend.compilation_cache), or None
        "compilation_cache": backend.compilation_cache() if keras.backend.backend() == "jax" else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ended": None, "status": "running",
    }
    if len(phases) > 1:
        manifest.update(phases=[p.name for p in phases], phases_completed=[])
    return manifest
