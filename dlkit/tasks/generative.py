"""What the generative tasks share (adversarial image generation, image-to-image translation): their train
section (a generator's and a discriminator's optimizer), how they compile and finish, and small helpers
for their pictures and measures. The sample grid is in sample_grid.py, the reference classifier in
reference.py (both need Keras, which task modules import only when they run)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import Field

from dlkit import images, optim
from dlkit.config import Section
from dlkit.data.pipeline import scale_from_artifact
from dlkit.errors import DataError, UsageError
from dlkit.recipe.schema import OptimizerConfig, TrainBase
from dlkit.rundir import RunDir
from dlkit.tasks.base import Callbacks, FitContext, Task


class GanOptimizers(Section):
    """Two optimizers for adversarial models; the DCGAN paper's Adam(2e-4, beta_1=0.5) by default.
    Different learning rates give the two time-scale update rule (TTUR)."""

    generator: OptimizerConfig = OptimizerConfig(name="adam", learning_rate=2e-4, beta_1=0.5)
    discriminator: OptimizerConfig = OptimizerConfig(name="adam", learning_rate=2e-4, beta_1=0.5)


_LOSSES_ARE_LOGGED = "an adversarial model's losses, d_accuracy (or the Wasserstein estimate) and diversity are logged each epoch"


class AdversarialTrain(TrainBase):
    """`train:` of the generative tasks: the generator's and the discriminator's optimizers, no loss, no
    metrics and no monitored value (the losses of a GAN say little about its samples; evaluate measures them)."""

    optimizers: GanOptimizers = GanOptimizers()
    overpower_epochs: int = Field(3, ge=1)  # warn when D's accuracy stays >= 99% this many epochs running
    # also draw the sample grid every this many steps inside an epoch (samples/step_NNNNNNN.png): a long
    # epoch shows its progress before it ends
    sample_every: int | None = Field(None, ge=1)

    not_used = {
        "optimizer": "an adversarial model has two optimizer roles: set train.optimizers.generator and "
                     "train.optimizers.discriminator",
        "loss": "the adversarial losses are the model's own (model.objective chooses them)",
        "metrics": _LOSSES_ARE_LOGGED,
        "monitor": "no value picks a best GAN checkpoint; measure runs with dlkit evaluate --reference",
        "early_stopping": "no value tells when a GAN is done; " + _LOSSES_ARE_LOGGED,
    }

    def cross_problems(self) -> list[str]:
        return super().cross_problems() + [
            f"{path}: the plateau schedule needs a monitored value, and an adversarial model has none; use step, "
            "exponential or cosine" for path, schedule in self.schedules() if schedule.name == "plateau"]

    def schedules(self):
        yield from super().schedules()
        for role in type(self.optimizers).model_fields:
            own = getattr(self.optimizers, role).schedule
            if own is not None:
                yield f"train.optimizers.{role}.schedule", own


class TwoPlayer(Task):
    """A generator side and a discriminator side, each with its own optimizer (the adversarial models'
    `g_optimizer` and `d_optimizer`); no validation during fit and no best checkpoint. Subclasses add a
    `SampleGrid` as their only `before` callback."""

    Train = AdversarialTrain
    roles = ("generator", "discriminator")
    options = frozenset({"n", "samples"})  # generate's -n, evaluate's -n
    validates = False

    def compile(self, model, recipe, steps_per_epoch, phase):
        train = recipe.train
        g, d = (optim.optimizer(train, steps_per_epoch, getattr(train.optimizers, role)) for role in self.roles)
        model.compile(g_optimizer=g, d_optimizer=d, **optim.compile_options(train, steps_per_epoch))
        return model

    def optimizers(self, model):
        return {"generator": model.g_optimizer, "discriminator": model.d_optimizer}

    def finish(self, ctx: FitContext, callbacks: Callbacks) -> dict:
        (grid,) = callbacks.before
        return {"warnings": grid.warnings, "samples": str(ctx.run.samples)}


def in_scale(x: np.ndarray, scale) -> np.ndarray:
    """uint8 images in a model's scale (x * a + b)."""
    return x.astype(np.float32) * scale[0] + scale[1]


def run_scale(run: RunDir, name: str = "scale") -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of a run's input scaling, x * a + b, from its artifacts."""
    return scale_from_artifact(run.read_artifact(name))


def diversity(fake: np.ndarray, real: np.ndarray) -> dict:
    """Mean pairwise distances of generated and real images (both in a model's scale) and their ratio."""
    f, r = images.mean_pairwise_distance(fake), images.mean_pairwise_distance(real)
    return {"generated": f, "real": r, "ratio": f / max(r, 1e-12)}


def drawn(x: np.ndarray, n: int) -> np.ndarray:
    """Up to n of the examples x, a fixed seed's draw kept in their order: the same ones each time, and of every
    class where x is stored class by class (an npz sorted by label), where x[:n] would be the first classes."""
    if len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(0).choice(len(x), n, replace=False))]


def diversity_reals(x_train: np.ndarray) -> np.ndarray:
    """The real images each epoch's diversity figure measures the samples against: a fixed draw of 256 training
    images, of every class where the data is stored class by class (the first 256 were one or two classes)."""
    return drawn(x_train, 256)


def reals_beside(splits, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real images for a generative model's samples from a split: up to n of the split `x` to measure the samples
    against, and up to n of another split (the training one first) for the real-vs-real floor, no example in
    both, each a fixed draw; the split's own two halves where it is the only one."""
    others = [o for o in (splits.x_train, splits.x_test, splits.x_val) if o is not None and o is not x]
    return (drawn(x, n), drawn(others[0], n)) if others else own_halves(x, n)


def samples_key(kind: str, split: str) -> str:
    """eval.json's key for samples measured against a split's images (`kind`: "samples", or "reference" with
    a reference classifier): the kind for the test split, as runs before splits were asked for kept it, else
    the kind and the split, so that one split's result does not replace another's."""
    return kind if split == "test" else f"{kind}:{split}"


def own_halves(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """evaluate --data's real images for a generative model's samples: one's own images (uint8) in an order a
    fixed seed draws (a folder of class folders is read class by class), cut in two halves of up to n each.
    The samples are measured against the first; the second, with no image of the first, gives the
    real-vs-real floor. Fewer than four images is an error (a half of one has no spread to measure)."""
    if len(x) < 4:
        raise UsageError(f"{len(x)} real image(s): measuring samples against real images takes four or more (half "
                         "of them measure the samples, the other half the real-vs-real floor, two or more each)")
    x = x[np.random.default_rng(0).permutation(len(x))]
    half = len(x) // 2
    return x[:min(n, half)], x[half: half + min(n, half)]


def training_draw(read, n: int) -> tuple[np.ndarray | None, list[str]]:
    """evaluate --data's training images, measured beside one's own: a fixed draw of up to n of the run's
    training split (`read()` reads it), where a generator giving back its training images would sit; or None
    and a warning where the run's training data can no longer be read."""
    try:
        return drawn(read(), n), []
    except DataError as e:
        return None, [f"the run's training data could not be read ({e}): no training-vs-yours distance"]


def output_path(path, force: bool, png: bool = False, option: str = "--out"):
    """Where a command writes its output (`option`: --out, --plot): refused if it exists without `force`, and
    checked to be writable before any work is done (its folder made, a probe file written and removed there).
    `png`: a picture, which is written as PNG whatever the name, so the name must end in .png."""
    from dlkit.errors import StorageError

    path = Path(path)
    if png and path.suffix.lower() != ".png":  # PNG bytes in x.jpg or x.txt would mislead whatever opens it
        raise UsageError(f"{path}: pictures are written as PNG files; end the name in .png")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; choose another {option} or pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.dlkit-probe"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}; choose another {option}, in a folder you "
                           "can write to") from None
    return path


MARK = ".dlkit-generate.json"  # what wrote a --out-dir folder: the one kind of folder --force may replace


def output_dir(path, force: bool):
    """Where `generate --out-dir` writes its images: a new or empty folder, or with `force` one an earlier
    --out-dir wrote (its MARK); never a folder of the user's own files, which a replacement would lose. Its
    parent is checked to be writable before any work is done."""
    import tempfile

    from dlkit.errors import StorageError

    path = Path(path)
    if path.parent.is_dir():
        _recover(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out-dir {path}: a file is there; give a folder to write the images in")
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARK).is_file():
            raise UsageError(f"--out-dir {path} holds files dlkit did not write; choose a new or empty folder "
                             "(--force replaces only a folder an earlier --out-dir wrote)")
        if not force:
            raise UsageError(f"--out-dir {path} holds an earlier --out-dir's images; choose another folder or pass "
                             "--force to replace them")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.dlkit-probe-")).rmdir()
    except OSError as e:
        raise StorageError(f"cannot write in {path.parent}: {e.strerror or e}; choose another --out-dir, in a "
                           "folder you can write to") from None
    return path


def _temporary(path: Path, kind: str = "") -> str:
    """The prefix of write_each's temporary folders beside `path`: the new images (`kind` ""), an earlier
    --out-dir's set aside (`old-`), each with the writing process's id, which says when one is stale."""
    return f".{path.name}.dlkit-{kind}{os.getpid()}-"


def _recover(path: Path) -> None:
    """What a `generate --out-dir` killed as it wrote (SIGKILL, a power cut: nothing of its own ran) left
    beside `path`, put right: an earlier --out-dir's images it had set aside go back in place where the new
    ones never arrived (else, replaced, they go), and the new images it had not finished are removed. Only
    folders of processes no longer running on this machine."""
    import glob
    import re
    import shutil

    for folder in sorted(path.parent.glob(f".{glob.escape(path.name)}.dlkit-*")):
        m = re.fullmatch(rf"\.{re.escape(path.name)}\.dlkit-(old-)?(\d+)-\w+", folder.name)
        if not (m and folder.is_dir() and not _running(int(m[2]))):
            continue
        if m[1] and not (path.exists() and (not path.is_dir() or any(path.iterdir()))):
            if path.is_dir():
                path.rmdir()
            os.replace(folder, path)  # the earlier images back, as they were before the killed write
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        return True
    return True


def write_each(path: Path, pictures: np.ndarray, names: list[str], about: dict) -> dict:
    """uint8 images, each a PNG of its own under `path` by its name (`7/00012.png`: sub-folders as the name has
    them), the folder written whole or not at all: beside its place under a temporary name, each file synced,
    then renamed into place (an earlier --out-dir's folder it replaces is removed after). MARK records `about`
    (the run, the seed, ...) and the names. What `generate --out-dir` returns."""
    import json
    import shutil
    import tempfile

    from dlkit.files import fsync_dir, fsync_file

    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary(path)))
    old = None
    try:
        for picture, name in zip(pictures, names):
            file = tmp / name
            file.parent.mkdir(parents=True, exist_ok=True)
            images.save_png(picture, file)  # itself written whole (replace_atomic) and synced
        (tmp / MARK).write_text(json.dumps({**about, "files": names}, indent=1) + "\n", encoding="utf-8")
        fsync_file(tmp / MARK)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the images are meant to be shared
        if path.is_dir() and any(path.iterdir()):  # an earlier --out-dir's (output_dir checked): set aside
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary(path, "old-")))
            os.replace(path, old)
        os.replace(tmp, path)  # over an empty folder too
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)  # the earlier images back in place
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return {"out_dir": str(path), "files": len(names)}


def numbered(n: int) -> list[str]:
    """`00000.png`, ... for n images in the order made (more digits where n needs them)."""
    width = max(5, len(str(n - 1)))
    return [f"{i:0{width}d}.png" for i in range(n)]


def write_images(run: RunDir, pictures: np.ndarray, out_dir: Path, names=None, labels=None, classes: int = 0,
                 **about) -> dict:
    """`generate --out-dir` (write_each) of uint8 images and what generate returns: named `names` (inputs' own,
    input_names), else numbered in the order made; with `labels`, a conditional model's class of each (of
    `classes`), in a folder per class named as the run's classes (`3/00013.png`), the layout `evaluate --data`
    reads labels from. `about` (the seed, ...) goes into the result and the folder's MARK."""
    names = numbered(len(pictures)) if names is None else names
    if labels is not None:
        named = run.read_json(run.manifest)["data_spec"]["class_names"] or [str(c) for c in range(classes)]
        names = [f"{named[c]}/{name}" for c, name in zip(labels, names)]
    about = {"run_dir": str(run.root), "n": len(pictures), **about}
    return {"status": "completed", **about, **write_each(out_dir, pictures, names, about)}


def input_names(names: list[str]) -> list[str]:
    """The PNG names of `generate --out-dir`'s results for inputs read by their names (sources.read_images):
    `3/0001.png` keeps its folders, `photo.jpg` becomes `photo.png`, an array's `a.npy[7]` is `a/00007.png`; a
    name given twice (two folders' `1.png`) gets `-2`, `-3`."""
    import re

    out, seen = [], set()
    for name in names:
        row = re.fullmatch(r"(.*)\.npy\[(\d+)\]", name)
        base = f"{row[1]}/{int(row[2]):05d}" if row else str(Path(name).with_suffix(""))
        candidate, k = f"{base}.png", 1
        while candidate in seen:
            k += 1
            candidate = f"{base}-{k}.png"
        seen.add(candidate)
        out.append(candidate)
    return out


def measures(result: dict, heading: str, rows, after=()) -> list:
    """What an evaluation prints: a rich table titled with the run and `heading`, one row per (label, value)
    (a count as a whole number, another number formatted, text shown as it is), then the `after` lines and the
    result's warnings."""
    from pathlib import Path

    from rich.table import Table

    from dlkit.ui import fmt

    run = Path(result["run_dir"])
    table = Table(title=f"{run.parent.name}/{run.name}: {heading}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in rows:
        whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)  # 50 examples, not 50.0000
        table.add_row(label, value if isinstance(value, str) else f"{value:,}" if whole else fmt(float(value)))
    return [table, *after, *[f"warning: {w}" for w in result.get("warnings", ())]]


def present(result: dict, keys) -> list:
    """(label, value) rows for the keys of `keys` the result has: (key, label) pairs or bare keys."""
    pairs = [(k, k.replace("_", " ")) if isinstance(k, str) else k for k in keys]
    return [(label, result[key]) for key, label in pairs if result.get(key) is not None]


def split_heading(result: dict, counted: str = "examples") -> str:
    """What an evaluation measured, for its table's title: "test split, 200 examples", or the name of the file
    evaluate --data read ("houses.csv, 40 examples")."""
    measured = f"{result['split']} split" if "data" not in result else Path(result["data"]).name
    return f"{measured}, {result[counted]:,} {counted}"


def report_table(result: dict, keys: tuple[str, ...]) -> list:
    """The rows of a generative evaluation that are present, as a rich table, then the grid's path."""
    if "data" in result:
        against = f" against {Path(result['data']).name}, {result['real_examples']:,} images"
    elif "split" in result:  # the split's real images (a CycleGAN's: the images it translated)
        real = result.get("real_examples")
        against = f" against the {result['split']} split" + (f"'s {real:,} images" if real else "")
    else:
        against = ""
    return measures(result, f"{result['samples']} samples{against}",
                    [("diversity (generated / real)", result["diversity"]["ratio"]), *present(result, keys)],
                    after=[f"sample grid: {result['grid']}"])
