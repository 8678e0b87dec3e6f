"""The run directory: the one place that knows its layout. No other module builds these paths.

    runs/<recipe name>/<YYYYmmdd-HHMMSS>[-N]/
        recipe.yaml          the resolved recipe (defaults filled, overrides applied)
        manifest.json        versions, backend, device, seed, git commit, command, times, status, phases
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

import json
import math
import os
import tempfile
import time
from pathlib import Path

from dlkit.errors import UsageError

STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
# Bumped when the layout changes; runs of another format get a clear error, not a half-working command.
FORMAT = 2  # 2: artifacts/ (format 1, dlkit 0.1.0, kept the input scaling in manifest.json)


class PhaseDir:
    """Where one phase of a run keeps its history, checkpoints and final model."""

    def __init__(self, root: Path):
        self.root = Path(root)

    history = property(lambda self: self.root / "history.csv")
    model = property(lambda self: self.root / "model.keras")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last_checkpoint = property(lambda self: self.checkpoints / "last.keras")
    best_checkpoint = property(lambda self: self.checkpoints / "best.keras")
    learning_curves = property(lambda self: self.root / "learning_curves.png")
    progress_gif = property(lambda self: self.root / "progress.gif")  # the epochs' grids, animated

    def rng_sidecar(self, checkpoint: Path) -> Path:
        """The random streams saved beside a checkpoint (checkpoints/last.rng.npz)."""
        return checkpoint.with_name(checkpoint.stem + ".rng.npz")

    def sample_grid(self, epoch: int) -> Path:
        """The grid a model draws at the end of an epoch (samples/epoch_NNN.png)."""
        folder = self.root / "samples"
        folder.mkdir(exist_ok=True)
        return folder / f"epoch_{epoch:03d}.png"

    def image(self, name: str) -> Path:
        """A picture a task draws (confusion_matrix.png, samples.png, filters.png, ...)."""
        return self.root / name


class RunDir(PhaseDir):
    """A run directory. A run of one phase keeps its history and checkpoints at the top; `phase(name)` gives
    the folder of a phase of a run that has several."""

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
        return json.loads(path.read_text())
    eval = property(lambda self: self.root / "eval.json")
    samples = property(lambda self: self.root / "samples.png")  # generative models: the final grid

    def confusion_matrix(self, split: str = "test") -> Path:
        return self.root / ("confusion_matrix.png" if split == "test" else f"confusion_matrix_{split}.png")

    @classmethod
    def create(cls, runs_root: str | Path, name: str) -> RunDir:
        """A new, empty run directory. mkdir is atomic, so parallel runs started in the same second each
        get their own folder (-2, -3, ... suffixes)."""
        parent = Path(runs_root) / name
        parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 10_000):
            root = parent / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                root.mkdir()
            except FileExistsError:
                continue
            (root / "checkpoints").mkdir()
            return cls(root)
        raise UsageError(f"could not create a run directory under {parent}")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(Path(path))
        if not run.manifest.is_file() or not run.recipe.is_file():
            raise UsageError(f"{path} is not a dlkit run directory (no manifest.json and recipe.yaml)")
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
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_json(self, path: Path, data: dict) -> None:
        write_atomic(path, json.dumps(strict_json(data), indent=2, default=str, allow_nan=False) + "\n")

    def update_manifest(self, **fields) -> dict:
        data = self.read_json(self.manifest)
        data.update(fields)
        self.write_json(self.manifest, data)
        return data


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


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it over the target."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model_atomic(model, path: Path) -> None:
    """model.save to a temporary .keras file, then rename: a crash never leaves a half-written model."""
    tmp = path.with_name(f".{path.stem}-tmp-{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
