"""The task contract: everything about a run that differs by kind of learning.

An architecture (dlkit.models) says which task it trains as; the task says

- which `data:` and `train:` sections its recipes have (`Data`, `Train`), so a key the task does not use
  is a recipe error with its file and line, and `dlkit show` prints only keys that take effect;
- what it learns from (`load_data`, `phase_data`): the examples, arranged from the source's batches;
- its optimizer roles (`roles`; the first counts training steps) and how it compiles (`compile`);
- the phases of a run (`phases`; most runs have one, named "train");
- its callbacks beside the core ones, and which value picks the best checkpoint (`monitor`);
- what a finished run writes (`finish`), what `dlkit evaluate` measures and prints (`evaluate`,
  `report`) and what `dlkit generate` does (`generate`).

The training loop, `dlkit evaluate` and `dlkit generate` (the layer above) call only these hooks; nothing
there asks what kind of model it holds. docs/architecture.md lists the hooks with the task each one
serves; tests/test_task_seam.py adds a task and an architecture from outside dlkit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from dlkit.data import pipeline
from dlkit.errors import Problem, UsageError
from dlkit.models import ARCHITECTURES
from dlkit.recipe.schema import DataConfig, TrainBase
from dlkit.rundir import PhaseDir, RunDir


@dataclass(frozen=True)
class Phase:
    """One `fit` of a run: its name (the folder under phases/ when a run has several) and its epochs."""

    name: str
    epochs: int


@dataclass
class FitContext:
    """What a task's callbacks and `finish` see of the phase being trained."""

    run: RunDir
    where: PhaseDir  # the phase's history and checkpoints (the run's own folder for a one-phase run)
    recipe: Any
    data: Any
    model: Any
    reporter: Any
    phase: Phase
    initial_epoch: int = 0
    rows: list = field(default_factory=list)  # history rows of the epochs done before a resume
    skip: int = 0  # a run resumed inside an epoch: the batches of `initial_epoch` its checkpoint had done
    monitor: tuple[str, str] | None = None  # (name, "min" | "max") picking the best checkpoint


@dataclass
class Callbacks:
    """A task's callbacks: `before` see each epoch's logs before they are written to history.csv and may add
    to them (a GAN's diversity statistic); `after` see the finished epoch (early stopping, a plateau schedule
    reading the rate the epoch ran at)."""

    before: list = field(default_factory=list)
    after: list = field(default_factory=list)


def evaluation(task: Task, run: RunDir, request: EvalRequest, measure: Callable[[], dict]) -> dict:
    """An evaluation result as the tasks that measure their own data return it: the split's measures,
    timed, keyed by the split in eval.json."""
    import time

    if request.reference is not None:
        raise UsageError(f"--reference is for generative image models; {task.name} runs are measured on their "
                         "own data")
    start = time.perf_counter()
    measured = measure()
    measured_on = {"key": request.split, "split": request.split} if request.data is None else own_data(request.data)
    return {"status": "completed", "task": task.name, "run_dir": str(run.root), **measured_on, **measured,
            "wall_time_s": round(time.perf_counter() - start, 3)}


def domain_of(value: str | None) -> str | None:
    """--from's domain of a translation model, "A" or "B" (None: not given); anything else is a usage error."""
    if value is not None and value.upper() not in ("A", "B"):
        raise UsageError(f"--from {value}: a translation model's domains are A and B")
    return None if value is None else value.upper()


def data_path(path) -> Path:
    """evaluate --data's path as its result names it: absolute, `~` expanded."""
    return Path(path).expanduser().absolute()


def own_data(path) -> dict:
    """Where an evaluate --data result goes and what it names: its eval.json key, `data:<absolute path>`, and
    the path."""
    path = data_path(path)
    return {"key": f"data:{path}", "data": str(path)}


def data_slug(path) -> str:
    """A file name's part for evaluate --data's pictures: the data's name and a digest of its whole path, so
    two folders of one name (two `test` folders) draw two pictures."""
    import hashlib
    import os

    path = data_path(path)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in path.stem)[:40] or "root"
    return f"data_{name}_{hashlib.sha1(os.fsencode(str(path))).hexdigest()[:8]}"


@dataclass(frozen=True)
class Headline:
    """The figure `dlkit runs` shows for a task's runs: `key` (dotted, into a split's measures) found first
    in the run's evaluations of the test split (the last written first), then in metrics.json's test and
    val measures. A task may list several; the first found is shown."""

    key: str
    label: str
    better: str = "max"  # max | min

    @classmethod
    def recorded(cls, kept) -> tuple[Headline, ...]:
        """The headlines a run's manifest.json keeps (`headlines`: its task's, for a task `dlkit runs` does not
        know, a plugin's); what is not one, an edited file's, is passed over."""
        kept = kept if isinstance(kept, list) else []
        return tuple(cls(h["key"], h["label"], h["better"]) for h in kept if isinstance(h, dict)
                     and isinstance(h.get("key"), str) and isinstance(h.get("label"), str)
                     and h.get("better") in ("max", "min"))


def headline(headlines, metrics: dict, evals: dict) -> dict | None:
    """{label, value, better, split, source} of the first of the `headlines` (a task's) a run has, or None."""

    def dig(measures, key):
        for part in key.split("."):
            if not isinstance(measures, dict) or part not in measures:
                return None
            measures = measures[part]
        return measures if isinstance(measures, (int, float)) and not isinstance(measures, bool) else None

    # a GAN's or a CycleGAN's evaluation (keyed "reference" or "samples") names the split its real images are of;
    # one written before it did was of the test split wherever the data had one
    places = [(f"eval.json:{k}", v.get("split", "test" if k in ("reference", "samples") else None), v)
              for k, v in reversed(list(evals.items())) if isinstance(v, dict)]
    places += [("metrics.json", split, metrics.get(split)) for split in ("test", "val")]
    for h in headlines:
        for source, split, measures in places:
            if split not in ("test", "val") or (source != "metrics.json" and split != "test"):
                continue
            value = dig(measures, h.key)
            if value is not None:
                return {"label": f"{split} {h.label}", "value": float(value), "better": h.better, "split": split,
                        "source": source}
    return None


@dataclass
class EvalRequest:
    split: str = "test"
    reference: RunDir | None = None  # generative tasks: a classifier run that measures samples
    samples: int | None = None  # how many samples a generative run draws to measure; None: EVAL_SAMPLES
    # likelihood models: samples of the importance-sampled estimate (a VAE's per example, an RBM's AIS runs);
    # None: the task's default
    importance_samples: int | None = None
    unsafe: bool = False  # load the reference's model.keras outside Keras's safe mode (--unsafe)
    beam: int | None = None  # translation models: the beam's width (1: greedy); None: the recipe's
    data: Path | None = None  # data of one's own, measured in place of a split (the tasks whose options hold "data")


@dataclass
class GenerateRequest:
    n: int = 64
    label: int | None = None
    code: int | None = None
    seed: int = 0
    out: Path | None = None
    interpolate: bool = False
    force: bool = False
    inputs: list[Path] = field(default_factory=list)  # images to work from (an autoencoder reconstructs them)
    prompt: str | None = None  # language models: the text sampling continues
    length: int = 500  # language models: how many tokens to sample
    temperature: float = 1.0  # language models: logits / temperature (0: the likeliest token every step)
    domain: str = "A"  # translation models: the domain the inputs are of ("A" or "B"), translated to the other
    out_dir: Path | None = None  # each image a PNG of its own in this folder (generative.output_dir), not a picture


@dataclass
class PredictRequest:
    texts: list[str] = field(default_factory=list)  # text models: one prediction per text
    inputs: list[Path] = field(default_factory=list)  # image classifiers: image files or .npy arrays
    csv: Path | None = None  # forecasters: forecast past the end of this file
    beam: int | None = None  # translation models: the beam's width (1: greedy); None: the recipe's
    plot: Path | None = None  # translation models: draw the attention maps here
    force: bool = False  # overwrite an existing `plot`


@dataclass
class EncodeRequest:
    split: str = "test"
    out: Path | None = None
    force: bool = False
    inputs: list[Path] = field(default_factory=list)  # image files, .npy arrays or folders, in place of a split


EVAL_SAMPLES = 10_000  # evaluate's -n when not given
MOST_BEAM = 64  # --beam and train.beam_width: a beam search's widest


def check_beam(beam: int | None) -> None:
    """evaluate's and predict's --beam, said before the model loads."""
    if beam is not None and not 1 <= beam <= MOST_BEAM:
        raise UsageError(f"--beam is the beam's width: 1 (greedy) to {MOST_BEAM}, as train.beam_width takes, "
                         f"received {beam}")


# Task.options' names, as typed: generate's -n (n) and evaluate's (samples) are two options of one letter
OPTIONS = {"n": "-n", "samples": "-n/--samples", "importance_samples": "-k", "beam": "--beam", "plot": "--plot",
           "prompt": "--prompt", "length": "--length", "temperature": "--temperature", "data": "--data",
           "domain": "--from", "out_dir": "--out-dir"}


class Task:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line, for `dlkit list`
    Data: ClassVar[type] = DataConfig
    Train: ClassVar[type] = TrainBase
    roles: ClassVar[tuple[str, ...]] = ("model",)  # optimizer roles; the first steps once per batch
    headlines: ClassVar[tuple[Headline, ...]] = ()  # what `dlkit runs` shows of a run, the first found
    validates: ClassVar[bool] = True  # fit is given the validation split
    classifies: ClassVar[bool] = False  # it tells classes apart: data of one class is refused
    # the command-line options only some tasks read (OPTIONS' keys): given to any other, they are refused
    options: ClassVar[frozenset[str]] = frozenset()
    # a task without `dlkit predict` whose answer for inputs of one's own is another command's: that command
    # ({run}: the run directory)
    predict_instead: ClassVar[str | None] = None

    def check(self, recipe) -> list[Problem]:
        """What the sections cannot see alone: problems across them (a sigmoid output with data not in
        [0, 1]). Each names its key path; the loader adds its file and line."""
        return []

    # ---------------------------------------------------------------- data and phases

    def examples(self, recipe) -> Callable:
        """How a batch of the source's (inputs, labels) becomes what the model learns from."""
        return pipeline.as_given

    def load_data(self, recipe):
        return pipeline.load(recipe.data, recipe.seed, self.examples(recipe))

    def needs_labels(self, recipe) -> str | None:
        """What in this recipe learns from class labels (a classifier, a conditional GAN), or None when it
        learns from the inputs alone: then unlabelled images (an npz without y_train, a folder of images
        without class folders) train it too."""
        return None

    def data_sources(self, recipe) -> list:
        """The recipe's sections that name a dataset (`dlkit validate` checks each can be found)."""
        return [recipe.data]

    def locate(self, recipe) -> str:
        """Where the recipe's data would be read from, checked without reading it (`dlkit validate`); raises
        DataError when it is nowhere to be found and may not be downloaded."""
        from dlkit.data import sources

        return " + ".join(sources.locate(section) for section in self.data_sources(recipe))

    def phases(self, recipe) -> list[Phase]:
        return [Phase("train", recipe.train.epochs)]

    def phase_data(self, recipe, data, phase: Phase, earlier: dict):
        """The data a phase trains on; `earlier` holds the models of the phases before it, by name."""
        return data

    # ---------------------------------------------------------------- model

    def build(self, recipe, spec, phase: Phase, earlier: dict):
        return ARCHITECTURES[recipe.model.arch].build(recipe.model, spec)

    def check_targets(self, model, recipe, data) -> None:
        """Raise RecipeError if a loss or metric the recipe names cannot take the data's targets and the
        freshly compiled model's outputs."""

    def check_monitored(self, model, recipe, data, phase: Phase) -> None:
        """Raise RecipeError if a name the phase's callbacks watch (train.monitor, an early stop's monitor) is
        not one its epochs will log: known from the freshly compiled model, before anything trains."""

    def initialize(self, model, recipe, data, phase: Phase) -> None:
        """A freshly built model's start from the data, if it has one (an RBM's visible biases are the data's
        log-odds); models loaded from checkpoints are left as they are."""

    def compile(self, model, recipe, steps_per_epoch: int, phase: Phase):
        raise NotImplementedError

    def optimizers(self, model) -> dict:
        """The model's optimizer of each role, in `roles` order."""
        raise NotImplementedError

    # ---------------------------------------------------------------- fitting

    def monitor(self, recipe, has_val: bool, phase: Phase) -> tuple[str, str] | None:
        """(metric, "min" | "max") that picks the phase's checkpoints/best.keras, or None for none."""
        return None

    def callbacks(self, ctx: FitContext) -> Callbacks:
        return Callbacks()

    def finish(self, ctx: FitContext, callbacks: Callbacks) -> dict:
        """After the last phase ended cleanly (model.keras is written): test measures and pictures. Returns
        what to add to the run's result (metrics.json and --json)."""
        return {}

    # ---------------------------------------------------------------- after training

    def evaluate(self, run: RunDir, recipe, model, data: Callable, request: EvalRequest) -> dict:
        """What `dlkit evaluate` measures; `data()` reads the recipe's data when needed. The result carries
        `task` and `key` (its key in eval.json)."""
        raise UsageError(f"{self.name} runs have no evaluation")

    def report(self, result: dict) -> list:
        """What `dlkit evaluate` prints of a result: rich renderables or plain strings."""
        return []

    def lacking(self, run: RunDir, command: str) -> UsageError:
        """What a run of this task says to `dlkit generate`, `predict` or `encode` when the task has no such
        method (Task's own, which raises this)."""
        return UsageError(f"{run.root}: {self.name} runs " + {
            "generate": "have nothing to generate; `dlkit generate` is for generative and reconstructing models "
                        "(GANs, CycleGANs, autoencoders, VAEs, RBMs, DBNs, language models)",
            "predict": "have no `dlkit predict`; it is for classifiers (images, text, feature rows), text "
                       "translation models, digit-string readers, forecasters and regressions"
                       + (f". {self.predict_instead.format(run=run.root)}" if self.predict_instead else ""),
            "encode": "have no codes; `dlkit encode` is for autoencoders, VAEs and RBMs"}[command])

    def generate(self, run: RunDir, recipe, model, data: Callable, request: GenerateRequest) -> dict:
        raise self.lacking(run, "generate")

    def predict(self, run: RunDir, recipe, model, request: PredictRequest) -> dict:
        """What `dlkit predict` answers for new inputs (raw text, a CSV file), read with the run's artifacts."""
        raise self.lacking(run, "predict")

    def report_prediction(self, result: dict) -> list:
        """What `dlkit predict` prints of a result: rich renderables or plain strings."""
        return []

    def exported(self, run: RunDir, recipe, model) -> tuple[Any, str]:
        """The Keras model `dlkit export` writes, and what it is in words: the trained model by default."""
        return model, f"the {recipe.model.arch} model"

    def encode(self, run: RunDir, recipe, model, data: Callable, request: EncodeRequest) -> dict:
        """What `dlkit encode` writes: a split's codes."""
        raise self.lacking(run, "encode")


@contextlib.contextmanager
def by_itself(model):
    """In a run over several processes, `model` run by this process alone (a picture drawn while training, a
    DBN's features between its phases): its variables hold local copies of their values and no distribution
    is set (backend.alone), since Keras predicts across processes only from tf.data and gathers no output;
    afterwards the shared values are back for the steps. Alone, nothing changes."""
    from dlkit import backend
    from dlkit.keras_private import local_values, put_back

    if backend.process_count() == 1:
        yield
        return
    with backend.alone():
        saved = local_values(model)
        try:
            yield
        finally:
            put_back(saved)
