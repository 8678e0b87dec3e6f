"""The run directory: the one place that knows its layout. No other module builds these paths.

    runs/<recipe name>/<YYYYmmdd-HHMMSS>[-N]/
        recipe.yaml          the resolved recipe (defaults filled, overrides applied)
        manifest.json        versions, backend, device, threads, seed, git commit, command, times, status,
                             phases, and each resume (when, from which epoch, on what)
        artifacts/<name>.json  what using the model needs besides it: the input scaling, a vocabulary, ...
        history.csv          one row per epoch, written as training goes
        metrics.json         final, best and test metrics, parameters, wall time, throughput
        model.keras          the trained model; keras.saving.load_model reads it
        checkpoints/         last.keras and best.keras, with optimizer state, replaced atomically
        phases/<phase>/      a run of several phases (pretraining, then fine-tuning): each phase's own
                             history.csv, checkpoints/ and model.keras; the last phase's model is model.keras
        learning_curves.png  and what the task draws: confusion_matrix.png (classifiers),
                             samples/epoch_NNN.png, samples.png, progress.gif (generative models)
        eval.json            what `dlkit evaluate` measured, by split
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import math
import os
import platform
import re
import time
from pathlib import Path

from dlkit.errors import DataError, StorageError, UsageError, first_line
from dlkit.files import fsync_file, is_temporary, replace_atomic, write_atomic

STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
# Bumped when the layout changes; runs of another format get a clear error, not a half-working command.
FORMAT = 2  # 2: artifacts/ (format 1, dlkit 0.1.0, kept the input scaling in manifest.json)
# the name a checkpoint is written under before it is renamed into place (PhaseDir.save_checkpoint)
CHECKPOINT_TEMPORARY = re.compile(r"\.last-tmp-\d+\.(keras|rng\.npz)")


_pending = None  # the checkpoint being written in the background (a Future), if any


@functools.cache
def _writer():
    """The process's one checkpoint-writing thread, made when first needed."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(1, thread_name_prefix="dlkit-checkpoint")


NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # flock's errors on a filesystem that locks nothing


def close_writer() -> None:
    """End the checkpoint-writing thread, if one was made, once what it writes is in place (the process's end:
    an idle worker of an executor left open was waited for forever by a process ending, observed once)."""
    if _writer.cache_info().currsize:
        _writer().shutdown(wait=True)
        _writer.cache_clear()


def in_checkpoint_thread(fn, *args):
    """fn(*args) run in the checkpoint-writing thread, waited for: what must happen in that thread while the
    caller's state stands still (Keras keeps some of its saving state per thread)."""
    wait_for_checkpoint()
    return _writer().submit(fn, *args).result()


def wait_for_checkpoint() -> None:
    """Until the checkpoint being written in the background (if any) is in place; what writing it raised
    (a full disk's OSError) is raised here, once."""
    global _pending
    pending = _pending
    if pending is None:
        return
    try:
        pending.result()
    except BaseException:
        if pending.done():  # it failed: said once
            _pending = None
        raise  # else the wait itself was interrupted (a second Ctrl-C): still to be waited for
    _pending = None


class PhaseDir:
    """Where one phase of a run keeps its history, checkpoints and final model."""

    def __init__(self, root: Path):
        self.root = Path(root)

    history = property(lambda self: self.root / "history.csv")
    model = property(lambda self: self.root / "model.keras")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last_checkpoint = property(lambda self: self.checkpoints / "last.keras")
    previous_checkpoint = property(lambda self: self.checkpoints / "previous.keras")  # the one before last
    best_checkpoint = property(lambda self: self.checkpoints / "best.keras")
    checksums = property(lambda self: self.checkpoints / "checksums.json")
    learning_curves = property(lambda self: self.root / "learning_curves.png")
    progress_gif = property(lambda self: self.root / "progress.gif")  # the epochs' grids, animated

    def rng_sidecar(self, checkpoint: Path) -> Path:
        """The random streams and training position saved beside a checkpoint (checkpoints/last.rng.npz)."""
        return checkpoint.with_name(checkpoint.stem + ".rng.npz")

    def sample_grid(self, epoch: int) -> Path:
        """The grid a model draws at the end of an epoch (samples/epoch_NNN.png)."""
        folder = self.root / "samples"
        folder.mkdir(exist_ok=True)
        return folder / f"epoch_{epoch:03d}.png"

    def image(self, name: str) -> Path:
        """A picture a task draws (confusion_matrix.png, samples.png, filters.png, ...)."""
        return self.root / name

    # ------------------------------------------------------------ checkpoints that survive a crash

    def save_checkpoint(self, save_model, save_rng=None, then=None, background: bool = False) -> None:
        """A new last checkpoint, the old one kept as previous.keras. `save_model(path)` writes the model,
        `save_rng(path)` its random streams (if any), and `then()` runs once it is in place (best.keras).

        Each file is written in full and fsynced under a temporary name first; the SHA-256 of the new
        checkpoint is recorded in checksums.json only once it is in place, so a crash at any point leaves
        the files checksums.json vouches for complete, and at worst the newest is not yet vouched for (and
        resume takes the one before it).

        `background`: written in the process's checkpoint thread while the caller goes on (`save_model` then
        writes a state taken before, not the model's live one). One checkpoint at a time: every save, and
        every read of the checkpoints (verified_checkpoint), first waits for the one being written
        (`wait_for_checkpoint`), which also raises what writing it raised."""
        wait_for_checkpoint()
        if not background:
            return self._save_checkpoint(save_model, save_rng, then)
        global _pending
        _pending = _writer().submit(self._save_checkpoint, save_model, save_rng, then)

    def _save_checkpoint(self, save_model, save_rng, then) -> None:
        tmp = self.checkpoints / f".last-tmp-{os.getpid()}.keras"
        tmp_rng = self.checkpoints / f".last-tmp-{os.getpid()}.rng.npz"
        try:
            save_model(tmp)
            fsync_file(tmp)
            if save_rng is not None:
                save_rng(tmp_rng)
            digest = sha256(tmp)
            for current, old in ((self.last_checkpoint, self.previous_checkpoint),
                                 (self.rng_sidecar(self.last_checkpoint), self.rng_sidecar(self.previous_checkpoint))):
                if current.exists():
                    os.replace(current, old)
            os.replace(tmp, self.last_checkpoint)
            if tmp_rng.exists():
                os.replace(tmp_rng, self.rng_sidecar(self.last_checkpoint))
            known = read_json_object(self.checksums)
            write_atomic(self.checksums, json.dumps({"last": digest, "previous": known.get("last")}) + "\n")
        finally:
            tmp.unlink(missing_ok=True)
            tmp_rng.unlink(missing_ok=True)
        if then is not None:
            then()

    def verified_checkpoint(self) -> tuple[Path | None, list[str]]:
        """The newest checkpoint whose contents checksums.json vouches for (last.keras, else previous.keras),
        and warnings naming a damaged one; (None, warnings) when there is none."""
        wait_for_checkpoint()
        known = set(read_json_object(self.checksums).values())
        warnings = []
        for path in (self.last_checkpoint, self.previous_checkpoint):
            if not path.is_file():
                continue
            if sha256(path) in known:
                return path, warnings
            warnings.append(f"{path} is damaged or was not finished (its checksum is not in checksums.json)")
        return None, warnings


def check_runs_root(runs_root: str | Path, name: str, writable: bool = True) -> None:
    """That run directories of recipe `name` can be made under `runs_root`, before anything is: neither the
    root nor its recipe folder is a file, and (`writable`) the nearest of them that exists, or of the root's
    parents, is a folder this process may write in. A sweep's or a tune's plan is checked so, as a run is."""
    parent = Path(runs_root) / name
    for folder in (Path(runs_root), parent):  # a file there was "Not a directory. Free space or ..."
        if folder.is_symlink() and not folder.exists():  # it was "File exists", or "Too many levels of links"
            try:
                to = f" to {os.readlink(folder)}"
            except OSError:
                to = ""
            raise UsageError(f"{folder} is a link{to} that leads to no folder (it is missing, or the links loop): "
                             "make the folder it points to, or choose another --runs-root")
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder} is a file, and the runs root holds a folder of run directories per "
                             "recipe: choose another --runs-root")
    if writable:
        existing = next(p for p in (parent, *parent.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(f"cannot create a run directory under {parent}: {existing} is not a folder you can "
                               "write to; choose another --runs-root")


class RunDir(PhaseDir):
    """A run directory. A run of one phase keeps its history and checkpoints at the top; `phase(name)` gives
    the folder of a phase of a run that has several."""

    _lock = None  # the held run.lock's file descriptor
    unguarded: str | None = None  # why run.lock does not lock here (a filesystem without file locks), to say

    recipe = property(lambda self: self.root / "recipe.yaml")
    manifest = property(lambda self: self.root / "manifest.json")
    metrics = property(lambda self: self.root / "metrics.json")

    def phase(self, name: str, several: bool) -> PhaseDir:
        if not several:
            return self
        folder = self.root / "phases" / name
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        return PhaseDir(folder)

    def artifact(self, name: str) -> Path:
        return self.root / "artifacts" / f"{name}.json"

    def write_artifacts(self, artifacts: dict) -> None:
        (self.root / "artifacts").mkdir(exist_ok=True)
        for name, value in artifacts.items():
            self.write_json(self.artifact(name), value)

    def read_artifact(self, name: str) -> dict:
        path = self.artifact(name)
        if not path.is_file():
            raise UsageError(f"{self.root} has no artifacts/{name}.json, which using its model needs; "
                             "train the recipe again")
        return read_json_object(path)
    eval = property(lambda self: self.root / "eval.json")
    samples = property(lambda self: self.root / "samples.png")  # generative models: the final grid

    def confusion_matrix(self, split: str = "test") -> Path:
        return self.root / ("confusion_matrix.png" if split == "test" else f"confusion_matrix_{split}.png")

    @classmethod
    def create(cls, runs_root: str | Path, name: str) -> RunDir:
        """A new, empty run directory. mkdir is atomic, so parallel runs started in the same second each
        get their own folder (-2, -3, ... suffixes)."""
        parent = Path(runs_root) / name
        stamp = time.strftime("%Y%m%d-%H%M%S")
        check_runs_root(runs_root, name, writable=False)  # writing is tried, and its error said, below
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for n in range(1, 10_000):
                root = parent / (stamp if n == 1 else f"{stamp}-{n}")
                try:
                    root.mkdir()
                except FileExistsError:
                    continue
                (root / "checkpoints").mkdir()
                return cls(root)
        except OSError as e:  # nothing is written yet: no checkpoint to keep, as storage_error says of a run's
            raise StorageError(f"cannot create a run directory under {parent}: {e.strerror or e}; choose another "
                               "--runs-root, a folder you can write to (or free space)") from None
        raise UsageError(f"could not create a run directory under {parent}")

    def remove_leftovers(self) -> list[Path]:
        """Remove the temporary files a process killed as it wrote them (SIGKILL, a power cut: nothing of its
        own ran) left in the run: a checkpoint's, up to the model's size, and any file's of replace_atomic.
        Called with the run's lock held, so no live process writes them; only names dlkit gives its temporary
        files, never a file of the user's. Returns what it removed."""
        gone = []
        for path in sorted(self.root.rglob(".*")):
            if (CHECKPOINT_TEMPORARY.fullmatch(path.name) or is_temporary(path.name)) and path.is_file():
                path.unlink(missing_ok=True)
                gone.append(path)
        return gone

    def lock(self) -> None:
        """Hold the run's lock (run.lock, an flock) while this process trains it: a second `dlkit resume` of a
        live run is refused. The operating system drops the lock when the holder dies, however it dies
        (kill -9 included), so a stale lock is simply taken over."""
        import fcntl

        fd = os.open(self.root / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UsageError(f"{self.root} is being trained by {holder}; wait for it, or stop it (kill the process: "
                             "the run is closed as interrupted) and resume then") from None
        except OSError as e:  # some network filesystems lock nothing: the run trains, unguarded, and says so
            if e.errno not in NO_LOCKS:
                os.close(fd)
                raise
            self.unguarded = (f"{self.root} is on a filesystem that does not lock files ({e.strerror}): a second "
                              "`dlkit resume` of this run while this process trains it would not be refused; run "
                              "one at a time")
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {platform.node()}\n".encode())
        self._lock = fd

    def unlock(self) -> None:
        import fcntl

        fd = self._lock
        if fd is not None:
            if self.unguarded is None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._lock = None

    def discard(self) -> None:
        """Remove a run directory that never got going (its first files could not be written)."""
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """The run directory at `path`, or the one `path` lies in: a file of a run (its `recipe.yaml`, its
        `model.keras`, a checkpoint) or a folder inside it names that run. Any other folder is refused, with the
        runs it holds where it is a recipe's folder of runs or a runs root."""
        run = cls(Path(path))
        if not is_run(run.root):
            enclosing = enclosing_run(run.root)
            if enclosing is None:
                raise UsageError(f"{path} is not a dlkit run directory (no manifest.json and recipe.yaml)"
                                 + _runs_beneath(run.root))
            run = cls(enclosing)
        manifest = run.read_json(run.manifest)
        if manifest.get("format", 1) != FORMAT:
            raise UsageError(
                f"{path} was written by dlkit {manifest.get('dlkit', '?')} in run format {manifest.get('format', 1)}; "
                f"this dlkit reads format {FORMAT}. Its model.keras still loads with keras.saving.load_model "
                "(import dlkit.models first); to use it with dlkit commands, train the recipe again")
        return run

    @classmethod
    def latest(cls, runs_root: str | Path, name: str) -> RunDir:
        """The newest finished run of a recipe: the one that has a model.keras."""
        parent = Path(runs_root) / name
        runs = sorted((p for p in parent.glob("*") if (p / "model.keras").is_file()),
                      key=lambda p: (p.stat().st_mtime, p.name)) if parent.is_dir() else []
        if not runs:
            raise UsageError(f"no finished run of {name!r} under {parent}; train it first: dlkit train RECIPE")
        return cls(runs[-1])

    def read_json(self, path: Path) -> dict:
        return read_json_object(path)

    def write_json(self, path: Path, data: dict) -> None:
        write_atomic(path, json.dumps(strict_json(data), indent=2, default=str, allow_nan=False) + "\n")

    @contextlib.contextmanager
    def record(self, path: Path):
        """A record the commands after training each add to (eval.json, exports.json), read, changed in the
        `with` block and written whole, with no other process between the reading and the writing: two
        `dlkit evaluate`s of one run at once (a batch of splits, GNU parallel) each kept the file as it read it
        plus its own result, and the later write lost the other's (two processes adding 200 results each: 226
        of 400 kept). The lock is an flock on the run's folder, held for the read and the write only; where the
        filesystem locks nothing (ENOLCK) the record is written as before."""
        import fcntl

        fd = os.open(self.root, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:
                if e.errno not in NO_LOCKS:
                    raise
            data = self.read_json(path)
            yield data
            self.write_json(path, data)
        finally:
            os.close(fd)  # (the lock goes with it)

    def update_manifest(self, **fields) -> dict:
        data = self.read_json(self.manifest)
        data.update(fields)
        self.write_json(self.manifest, data)
        return data


def is_run(folder: Path) -> bool:
    return (folder / "manifest.json").is_file() and (folder / "recipe.yaml").is_file()


def enclosing_run(path: Path) -> Path | None:
    """The run directory an existing file or folder lies in (up to three levels down: `checkpoints/last.keras`,
    a phase's files), or None."""
    return next((p for p in list(path.parents)[:3] if is_run(p)), None) if path.exists() else None


def _runs_beneath(folder: Path) -> str:
    """What a folder given for a run holds of runs, said after the refusal: the run directories of a recipe
    (runs/NAME), or the recipes' folders of a runs root (runs). Nothing for any other folder or a file."""
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        runs = [p for p in children if is_run(p)]
        recipes = [p.name for p in children if not runs and any(is_run(q) for q in p.iterdir() if q.is_dir())]
    except OSError:  # unreadable: the refusal alone
        return ""
    if runs:
        done = [p for p in runs if (p / "model.keras").is_file()]
        newest = max(done or runs, key=lambda p: (p.stat().st_mtime, p.name))
        return (f"; it holds {len(runs)} run(s) of recipe {folder.name}: give one of them, e.g. {newest} (the newest"
                f"{' finished' if done else ''})")
    if recipes:
        return (f"; it is a runs root, with runs of {', '.join(recipes[:5])}{', ...' if len(recipes) > 5 else ''}: "
                f"give a run directory under it (dlkit runs --runs-root {folder} lists them)")
    return ""


def flat(value, prefix: str = "") -> dict:
    """Nested dicts as dotted keys; lists kept whole."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def _fixed_for_a_resume(key: str) -> bool:
    """A recipe key a resume cannot change: what the checkpoint carries (the model, its layers and their settings
    the saved model's; every optimizer and its schedule, their state saved with them; the seed, which the random
    streams and the data order go on from; the precision the weights were kept in), and what the checkpoint's
    place in the data is counted in (the data section but where it lies and how it is fetched: `dir`, `path`,
    `download`, `cache`; and `train.steps_per_epoch`: a run of 3 steps an epoch resumed at 4 redid its first epoch
    from its fourth step, and history.csv lost that epoch's row)."""
    keys = key.split(".")
    if keys[0] in ("model", "seed"):
        return True
    if keys[0] == "data":
        return keys[-1] not in ("dir", "path", "download", "cache")
    return keys[0] == "train" and len(keys) > 1 and (
        "optimizer" in keys[1] or keys[1] in ("schedule", "steps_per_epoch", "precision"))


def recipe_changes(kept: str | None, now: str) -> dict[str, tuple]:
    """Each key whose value differs between the recipe.yaml a run wrote (`kept`, its text as the manifest keeps
    it) and the one it holds `now` (edited since), as (before, now); {} for a run of an earlier dlkit, whose
    manifest keeps no text. Layout and comments are not changes."""
    import yaml

    if kept is None or kept == now:
        return {}
    try:
        before, after = flat(yaml.safe_load(kept) or {}), flat(yaml.safe_load(now) or {})
    except yaml.YAMLError:  # (said by the recipe's own loading, at its line)
        return {}
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def said(changes: dict[str, tuple]) -> str:
    """recipe_changes' changes as a message says them: `key: before -> after; ...`."""
    return "; ".join(f"{k}: {before!r} -> {after!r}" for k, (before, after) in changes.items())


def check_recipe_unchanged(run: RunDir, manifest: dict) -> dict[str, tuple]:
    """What was changed in a run's recipe.yaml since it last trained, for `dlkit resume`: a change a resume cannot
    make (_fixed_for_a_resume: the model, an optimizer, a schedule, the seed, the data) is refused, naming each
    key with both values, since the resumed run would not train with it as meant and its recipe.yaml would
    misstate what trained (an edited learning rate was ignored in silence, and the file kept the new one). Any
    other change (where the data lies, train.epochs, checkpoint_every, early stopping) is returned: the resume
    uses it, says so and records it."""
    try:
        now = run.recipe.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # (said by the recipe's own loading)
        return {}
    changes = recipe_changes(manifest.get("recipe_yaml"), now)
    fixed = {k: v for k, v in changes.items() if _fixed_for_a_resume(k)}
    if fixed:
        listed = said(dict(list(fixed.items())[:5]))
        more = f" (and {len(fixed) - 5} more)" if len(fixed) > 5 else ""
        raise UsageError(f"{run.recipe} was changed since the run trained ({listed}{more}): a resume goes on from "
                         "the checkpoint with the model, optimizers, schedule, seed, precision and data the run began "
                         "with (where the data lies aside), so the change would not apply as meant and recipe.yaml "
                         "would misstate what trained. Put those values back to resume, or train the changed recipe "
                         f"as a new run: dlkit train {run.recipe}")
    return changes


def read_json_object(path: Path) -> dict:
    """A run file's JSON object ({} where the file is absent). dlkit writes these whole (write_atomic), so
    one that does not parse was changed or cut outside dlkit: a data error naming it, not a traceback."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        problem = f"is not valid JSON ({first_line(e)})"
    except OSError as e:
        raise DataError(f"cannot read {path}: {first_line(e)}") from None
    else:
        if isinstance(value, dict):
            return value
        problem = f"holds a JSON {type(value).__name__}, not an object"
    kept = path.name in ("eval.json", "exports.json")  # earlier results, which the next command writes anew
    raise DataError(f"{path} {problem}. dlkit writes it whole, so it was changed or cut since; "
                    + ("delete it to start its records afresh" if kept else "restore it from a copy of the run"))


def strict_json(value):
    """The value with NaN and infinities (a diverged loss, an unbounded estimate) as None: JSON that every
    reader takes (json.dumps would write NaN, which is not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model_atomic(model, path: Path) -> None:
    """model.save to a temporary .keras file, fsynced, then renamed: a crash never leaves a half-written
    model."""
    replace_atomic(path, model.save)
