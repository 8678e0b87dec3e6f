"""What a finished run makes: `generate(run_dir, ...)` (sample grids, latent interpolations, translations,
reconstructions) behind `dlkit generate`, and `encode(run_dir, split)` (an autoencoder's codes) behind
`dlkit encode`. What each means is the run's task's."""

from __future__ import annotations

from pathlib import Path

from dlkit import tasks
from dlkit.errors import StorageError, UsageError
from dlkit.evaluate import finished
from dlkit.rundir import RunDir
from dlkit.tasks.base import EncodeRequest, GenerateRequest, domain_of
from dlkit.training.session import keeps_callers_settings


def _open(run_dir, unsafe: bool, command: str, then=None, **options):
    """A finished run's recipe, task session and model: the model alone, without its optimizer's state,
    which drawing, encoding and predicting do not use. A task without `command` (its Task method) says so
    first; then `options` given that the run's task does not read are refused (tasks.refuse_unread); then
    `then()`'s checks of the options' values, which only the tasks that read them can be wrong in."""
    from dlkit.tasks.base import Task
    from dlkit.training.session import Session

    run = finished(RunDir.open(run_dir))
    recipe = tasks.load_run_recipe(run.recipe)
    task = tasks.of(recipe)
    if getattr(type(task), command) is getattr(Task, command):  # Task's own: the refusal, before any option's
        raise task.lacking(run, command)
    tasks.refuse_unread(task, **options)
    if then is not None:
        then()
    session = Session.open(recipe)
    return run, recipe, session, session.model(checkpoint=run.model, unsafe=unsafe, compile=False)


MOST_SAMPLES = 10_000  # generate's -n: a 100 x 100 grid, a picture's worth
MOST_FILES = 100_000  # generate's -n with --out-dir: twice the 50,000 samples of a CIFAR-10 Fréchet distance
MOST_TOKENS = 100_000  # generate's --length: a language model samples one token at a time


@keeps_callers_settings
def generate(run_dir, n: int | None = None, label: int | None = None, code: int | None = None, seed: int = 0,
             out=None, interpolate: bool = False, force: bool = False, inputs=(), unsafe: bool = False,
             prompt: str | None = None, length: int | None = None, temperature: float | None = None,
             domain: str | None = None, out_dir=None) -> dict:
    """`n` counts the samples drawn into a picture (None: 64). `length` and `temperature` are a language
    model's (None: 500 tokens at temperature 1). `domain`: a translation model's, the domain the `inputs` are
    of, "A" or "B" (None: A). `out_dir`: each image a PNG file of its own in this folder, for other tools (a
    Fréchet distance by clean-fid or torch-fidelity), in place of the picture; up to MOST_FILES of them."""
    most, what = (MOST_FILES, "images to write") if out_dir is not None else (MOST_SAMPLES, "samples in one picture")
    if n is not None and not 1 <= n <= most:
        raise UsageError(f"-n counts the {what}: 1 to {most:,}, received {n}")
    if out_dir is not None and out is not None:
        raise UsageError("--out names the picture and --out-dir the folder of images written in its place: give one")
    if length is not None and not 1 <= length <= MOST_TOKENS:
        raise UsageError(f"--length counts the tokens to sample: 1 to {MOST_TOKENS:,}, received {length}")
    for path in inputs:  # before the model loads; a folder's images are read by sources.read_images
        if not Path(path).exists():
            raise UsageError(f"--input {path}: no such file or folder")
    if n is not None and inputs:
        raise UsageError("-n and --input do not go together: with --input the picture is of the images given, "
                         "however many")

    def domain_given():  # a translation model's: its own words, after a task that reads no --from says so
        if domain_of(domain) is not None and not inputs:
            raise UsageError("--from names the domain of the --input images; without --input a translation model "
                             "translates test images of both domains")

    run, recipe, session, model = _open(run_dir, unsafe, "generate", domain_given, n=n, prompt=prompt,
                                        length=length, temperature=temperature, domain=domain, out_dir=out_dir)
    domain = domain_of(domain)
    if out_dir is not None:
        from dlkit.tasks.generative import output_dir

        out_dir = output_dir(out_dir, force)  # said before any work
    n, length, temperature = (64 if n is None else n, 500 if length is None else length,
                              1.0 if temperature is None else temperature)
    request = GenerateRequest(n, label, code, seed, out, interpolate, force, [Path(p) for p in inputs], prompt, length,
                              temperature, domain or "A", out_dir)
    return session.task.generate(run, recipe, model, lambda: session.data_of(run), request)


@keeps_callers_settings
def encode(run_dir, split: str | None = None, out=None, force: bool = False, unsafe: bool = False,
           inputs=()) -> dict:
    """The codes of a split's inputs (the test split's by default), or of the images given in its place."""
    from dlkit.evaluate import SPLITS

    if inputs and split is not None:
        raise UsageError("--split and FILE... do not go together: the codes are of a split of the run's data, or of "
                         "the images given")
    split = split or "test"
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    run, recipe, session, model = _open(run_dir, unsafe, "encode")
    request = EncodeRequest(split, out, force, [Path(p) for p in inputs])
    return session.task.encode(run, recipe, model, lambda: session.data_of(run), request)


@keeps_callers_settings
def predict(run_dir, texts=(), csv=None, unsafe: bool = False, beam: int | None = None, plot=None,
            force: bool = False, inputs=(), out=None) -> dict:
    """What the run's model says of new inputs: labels for raw text or images, translations, a forecast past
    the end of a CSV. `out`: a .csv file the predictions are written to as well, one row each
    (prediction_table), checked writable before the model predicts; replaced only with `force`."""
    from dlkit.files import write_atomic
    from dlkit.tasks.base import PredictRequest, check_beam
    from dlkit.tasks.generative import output_path

    check_beam(beam)
    blank = [i for i, t in enumerate(texts, 1) if not t.strip()]
    if blank:  # a shell's empty "$line" was classified (or translated to nothing) as if it were text
        raise UsageError(f"--text is blank (number {', '.join(map(str, blank))} of the {len(texts)} given); give "
                         "the text to classify or translate (a --file's blank lines are skipped)")
    if out is not None and Path(out).suffix.lower() != ".csv":
        raise UsageError(f"--out {out}: predictions are written as a CSV file; end the name in .csv")
    run, recipe, session, model = _open(run_dir, unsafe, "predict", beam=beam, plot=plot)
    target = output_path(out, force) if out is not None else None
    request = PredictRequest(texts=list(texts), inputs=[Path(p) for p in inputs],
                             csv=Path(csv) if csv is not None else None, beam=beam,
                             plot=Path(plot) if plot is not None else None, force=force)
    result = session.task.predict(run, recipe, model, request)
    if target is not None:
        try:
            write_atomic(target, prediction_table(result))  # whole or not at all, as every file dlkit writes
        except OSError as e:  # the folder was checked writable; a full disk can still refuse the file
            raise StorageError(f"cannot write {target}: {e.strerror or e}") from None
        result["out"] = str(target)
    return result


def prediction_table(result: dict) -> str:
    """A predict answer's rows (its `predictions`, or a forecast's steps) as CSV text under a header: a
    nested value one column per key (`probabilities.cat`), a list as JSON, a column a row lacks left empty."""
    import csv
    import io
    import json

    rows = []
    for row in result.get("predictions") or result.get("forecast") or []:
        flat = {}
        for k, v in row.items():
            if isinstance(v, dict):
                flat.update({f"{k}.{c}": w for c, w in v.items()})
            else:
                flat[k] = json.dumps(v) if isinstance(v, (list, tuple)) else v
        rows.append(flat)
    out = io.StringIO()
    writer = csv.DictWriter(out, list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
