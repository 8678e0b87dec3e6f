"""The `dlkit` command line. Thin: each command parses options and calls a library function.

Heavy imports (TensorFlow, Keras) happen inside the commands that need them, so `--help`, `validate`,
`show` and `list` answer at once.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlkit.errors import (EXIT_CODES_HELP, EXIT_INTERRUPTED, DlkitError, Interrupted, RecipeError, UsageError,
                          unusable_path)

app = typer.Typer(
    name="dlkit",
    help=f"Config-driven deep learning with Keras 3: YAML recipes in, trained runs out.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=True,  # dlkit --install-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a recipe field: --set train.epochs=3 (value typed as YAML). Repeatable."),
]
RECIPE_HELP = "The recipe YAML file, or the name of a recipe dlkit ships (`dlkit list`): cnn_mnist, lessons/opt_sgd."


def _complete_recipe(ctx, param, incomplete: str) -> list:
    """Tab completion of a RECIPE: the shipped recipes whose names start with what is typed, each with what it
    trains (zsh and fish show it); none, and the shell completes file names (Typer's scripts fall back to them)."""
    from click.shell_completion import CompletionItem

    from dlkit.recipe import shipped

    return [CompletionItem(name, help=shipped.describe(shipped.find(name)))
            for name in shipped.names() if name.startswith(incomplete)]


RunsRoot = Annotated[Path, typer.Option("--runs-root", metavar="DIR", help="Folder that holds run directories.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables, only errors.")]
UnsafeFlag = Annotated[bool, typer.Option(
    "--unsafe", help="Load model files that hold Python code (Lambda layers), outside Keras's safe mode. Only for "
    "files you trust: loading runs their code.")]


CoordinatorOption = Annotated[Optional[str], typer.Option(
    "--coordinator", metavar="HOST:PORT", help="Several processes (JAX): process 0's address, the same for all "
    "(or KERAS_DISTRIBUTION_JOB_ADDRESSES).", rich_help_panel="Several processes")]
ProcessesOption = Annotated[Optional[int], typer.Option(
    "--processes", metavar="N", min=1, help="Several processes: how many take part (or "
    "KERAS_DISTRIBUTION_NUM_PROCESSES). They train as one data-parallel run over all their devices.",
    rich_help_panel="Several processes")]
ProcessIdOption = Annotated[Optional[int], typer.Option(
    "--process-id", metavar="I", min=0, help="Several processes: this one's id, 0 to N-1 (or "
    "KERAS_DISTRIBUTION_PROCESS_ID); process 0 writes the run directory, the others a log beside it.",
    rich_help_panel="Several processes")]


def _join(coordinator, processes, process_id) -> None:
    """Join the run's other processes, when the flags or Keras's variables describe several."""
    from dlkit import backend

    cluster = backend.cluster(coordinator, processes, process_id)
    if cluster is not None:
        backend.join(cluster)


def _version(value: bool):
    if value:
        from dlkit import __version__

        print(f"dlkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
):
    source = sys.modules.get("dlkit.recipe.source")  # (imported by an earlier command in this process, if any)
    if source is not None:
        source.forget_streams()  # a recipe an earlier command read from standard input is not this one's


def _console(stderr=True):
    from dlkit.ui import make_console

    return make_console(stderr=stderr)


@contextmanager
def _terminating_like_ctrl_c(at_end: bool = True):
    """A command's length: SIGTERM closes it as Ctrl-C does (marked interrupted where it trains, exit 130), both
    raising KeyboardInterrupt where they land (errors.catch_interrupts). One noted before the command started (as
    the console script started, imported, parsed) stops it at once. One whose KeyboardInterrupt a library made an
    error of its own (TensorFlow's LiteRT converter) stops it at that error (it was `export`'s exit 7), unless the
    error is a run's own (it closed its run: a training's). One swallowed where it landed (a garbage collector's
    callback) stops it at its end (`at_end`; it ran on to exit 0), not a training's, complete by then, whose loops
    check the flag between steps. A KeyboardInterrupt that Python could not raise (in a `__del__`) is not printed
    as "Exception ignored ... Traceback": the flag holds it. The handlers found are put back after it, and the flag
    cleared: a command run in-process (a notebook's or a script's `app([...])`, a test's) left dlkit's handlers
    installed, and after a Ctrl-C the flag set, which stopped the next command's first loop at its first step."""
    import signal

    from dlkit.errors import catch_interrupts, interrupt_requested
    from dlkit.ui import stop_if_asked

    caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    before = [signal.getsignal(signum) for signum in caught]
    unraisable = sys.unraisablehook

    def hook(u):
        if not isinstance(u.exc_value, KeyboardInterrupt):
            unraisable(u)

    catch_interrupts(raising=True)
    sys.unraisablehook = hook
    try:
        stop_if_asked()
        try:
            yield
        except Exception as e:
            if getattr(e, "run_dir", None) is None:  # not an Interrupted or a DivergedError, which closed a run
                stop_if_asked()
            raise
        if at_end:
            stop_if_asked()
    finally:
        for signum, handler in zip(caught, before):
            if handler is not None:  # None: one not installed from Python, which cannot be put back from it
                signal.signal(signum, handler)
        sys.unraisablehook = unraisable
        interrupt_requested.clear()


def _print_json(value) -> None:
    """Exactly one JSON object on stdout, strict JSON (NaN and infinities as null)."""
    from dlkit.rundir import strict_json

    print(json.dumps(strict_json(value), allow_nan=False, default=str))


def _utf8(option: str, text: str | None, elsewhere: str = "") -> str | None:
    """A text given on the command line, refused where its bytes are not UTF-8: a terminal sending Latin-1 (Python
    keeps such bytes as surrogate escapes, which the tokenizer met as a TypeError, a traceback)."""
    try:
        text is None or text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character {text[e.start]!r}"
        raise UsageError(f"{option}: the text's {what} (character {e.start + 1}) is not UTF-8: the terminal sends "
                         "another encoding (Latin-1?); set it to UTF-8 (LANG=C.UTF-8, and the terminal's own "
                         f"setting){elsewhere}") from None
    return text


def _fail(err: DlkitError, json_mode: bool, extra: dict | None = None) -> typer.Exit:
    """Report a user error without a traceback and pick its exit code."""
    from rich.markup import escape

    # escaped: a message quotes the user's text, whose [brackets] rich would read as its markup and drop
    _console().print(f"[bold red]error[/]: {escape(str(err))}", highlight=False, soft_wrap=True)
    if json_mode:
        status = {2: "error", 3: "data_error", 4: "diverged"}.get(err.exit_code, "error")
        _print_json({"status": status, "exit_code": err.exit_code, "error": str(err), **(extra or {})})
    return typer.Exit(err.exit_code)


@app.command(help=f"Train a recipe into a new run directory.\n\n{EXIT_CODES_HELP}")
def train(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help=RECIPE_HELP, shell_complete=_complete_recipe)],
    set_: SetOption = None,
    runs_root: RunsRoot = Path("runs"),
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Write TensorBoard logs in the run's tensorboard/ (as --set train.tensorboard=true).")] = False,
    devices: Annotated[Optional[str], typer.Option(
        "--devices", metavar="N|auto", help="Data parallel over N devices, or every one (as --set "
        "train.distribution={strategy: data_parallel, devices: N}); data.batch_size is the global batch.")] = None,
    coordinator: CoordinatorOption = None,
    processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    from dlkit import backend
    from dlkit.recipe import recipe_file, shipped
    from dlkit.tasks import load_recipe

    set_ = list(set_ or ()) + (["train.tensorboard=true"] if tensorboard else [])
    if devices is not None:
        set_.append(f"train.distribution={{strategy: data_parallel, devices: {devices}}}")

    def run(reporter):
        load_recipe(recipe, set_)  # a bad recipe is reported before TensorFlow loads
        path = recipe_file(recipe)
        if path != recipe and path == shipped.find(str(recipe)):  # a name dlkit ships: say which file that is
            reporter.message(f"recipe {path} (shipped with dlkit)")
        backend.setup()  # before anything imports TensorFlow, so its start-up log stays quiet
        _join(coordinator, processes, process_id)
        from dlkit.training.train import train as train_fn

        with backend.keras_console(not quiet):
            return train_fn(recipe, set_, runs_root, reporter)

    _training_command(run, quiet, json_)


def _training_command(run, quiet: bool, json_: bool) -> None:
    """What `train` and `resume` share: SIGTERM as Ctrl-C, exit codes, the interrupted run, --json."""
    from rich.markup import escape

    from dlkit.ui import reporter_for, showing

    try:
        reporter = reporter_for(quiet, json_)
        # showing: the long loops after the epochs (test measures)
        with _terminating_like_ctrl_c(at_end=False), showing(None if quiet else reporter.console):
            result = run(reporter)
    except Interrupted as e:
        _console().print(f"[yellow]interrupted[/]: run directory {escape(str(e.run_dir))} is marked interrupted")
        if json_:
            _print_json({**e.result, "exit_code": EXIT_INTERRUPTED})
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:  # before the run directory existed: nothing to mark
        _console().print("[yellow]interrupted[/] before training began: nothing was written")
        if json_:
            _print_json({"status": "interrupted", "exit_code": EXIT_INTERRUPTED})
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except DlkitError as e:
        raise _fail(e, json_, {"run_dir": e.run_dir} if e.run_dir else None) from None
    except OSError as e:  # one no reader or writer caught (a folder where run.lock should be): not a traceback
        raise _fail(unusable_path(e), json_) from None
    if json_:
        _print_json(result)


@app.command(help=f"Continue a run from its last checkpoint, in the same run directory.\n\n{EXIT_CODES_HELP}")
def resume(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run directory (interrupted, diverged, or finished).")],
    epochs: Annotated[Optional[int], typer.Option(metavar="N",
        help="New total number of epochs (to train a finished run further).", min=1)] = None,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    unsafe: UnsafeFlag = False,
    coordinator: CoordinatorOption = None,
    processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    from dlkit import backend

    def run(reporter):
        backend.setup()
        _join(coordinator, processes, process_id)
        from dlkit.training.train import resume as resume_fn

        with backend.keras_console(not quiet):
            return resume_fn(run_dir, epochs, reporter, unsafe)

    _training_command(run, quiet, json_)


@app.command(help=f"Measure a finished run (or a recipe's latest run): what its task measures.\n\n{EXIT_CODES_HELP}")
def evaluate(
    target: Annotated[str, typer.Argument(metavar="RUN_DIR|RECIPE", help="A run directory, or a recipe file or "
                                          "shipped recipe's name (its latest run).")],
    split: Annotated[Optional[str], typer.Option(metavar="SPLIT", help="test, val or train; default test, or val for "
                                                 "a run with no test split (the output says so).")] = None,
    reference: Annotated[Optional[str], typer.Option(metavar="RUN|RECIPE",
        help="Generative runs: a dlkit classifier run (or its recipe) whose features and predictions measure the samples.")] = None,
    samples: Annotated[Optional[int], typer.Option("--samples", "-n", metavar="N", help="Generative runs: how many "
                                                   "samples to measure, 2 to 100,000 (default 10,000, or with --data "
                                                   "half the images given if fewer).")] = None,
    importance_samples: Annotated[Optional[int], typer.Option(
        "--importance-samples", "-k", metavar="K", help="Likelihood models: a VAE's samples per example of the importance-sampled "
        "bound on log p(x) (default 1000; 5000 for a headline figure), an RBM's AIS runs (default 100).")] = None,
    beam: Annotated[Optional[int], typer.Option(metavar="N",
        help="Translation models: the beam's width (1: greedy); default the recipe's train.beam_width.")] = None,
    data: Annotated[Optional[Path], typer.Option(metavar="PATH", help="Measure on data of your own instead of a split: a "
        "folder of class folders (PATH/<class>/<image>) for an image classifier, a CSV with the training CSV's "
        "columns for a feature classifier or a regression, a file of sentence<TAB>label lines for a text "
        "classifier, a text file for a language model, a CSV of its series for a forecaster, source<TAB>target "
        "lines for a translation model, images (a file, .npy or folder) for an autoencoder, a VAE or an RBM, and to "
        "measure a GAN's samples against, a folder of A/ and B/ images for a CycleGAN, images named by their digits "
        "(4071.png) for a digit-string reader.")] = None,
    runs_root: RunsRoot = Path("runs"),
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    unsafe: UnsafeFlag = False,
):
    from dlkit.evaluate import evaluate as evaluate_fn

    def show(result, console):
        from dlkit.tasks import TASKS

        if result.get("note"):
            console.print(f"note: {result['note']}", markup=False, highlight=False)
        if result.get("data"):  # --data: the whole path (a table's title names the file alone)
            console.print(f"data: {result['data']}", markup=False, highlight=False)
        _print_parts(console, TASKS[result["task"]].report(result))

    _answer(lambda: evaluate_fn(target, split, runs_root, reference, samples, importance_samples, unsafe, beam, data),
            json_, show, quiet)


@app.command(help=f"Write what a generative run makes: a grid of samples, a latent interpolation, translations, reconstructions "
                  "(or each image a file of its own, --out-dir), a language model's text."
                  f"\n\n{EXIT_CODES_HELP}")
def generate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory of a generative or reconstructing "
                                            "model (GAN, CycleGAN, autoencoder, VAE, RBM, DBN, language model).")],
    n: Annotated[Optional[int], typer.Option("-n", metavar="N", help="How many samples, test images or "
                                             "interpolation steps to draw (64; at most 10,000, or 100,000 with "
                                             "--out-dir).")] = None,
    label: Annotated[Optional[int], typer.Option(metavar="K", help="Class to draw (conditional models).")] = None,
    code: Annotated[Optional[int], typer.Option(metavar="K", help="Categorical code to draw (InfoGAN).")] = None,
    seed: Annotated[int, typer.Option(metavar="SEED", min=0, max=2**32 - 1, help="Seed of the noise.")] = 0,
    out: Annotated[Optional[Path], typer.Option(metavar="FILE", help="PNG to write; default RUN_DIR/samples-seedS.png.")] = None,
    interpolate: Annotated[bool, typer.Option("--interpolate", help="A strip between two noise vectors.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", metavar="DIR", help="Each image a PNG file "
        "of its own in DIR (new or empty), for other tools (clean-fid, torch-fidelity), instead of one picture: "
        "samples (a conditional model's in a folder per class), translations or reconstructions (of --input "
        "images: under their names).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists (or an earlier --out-dir's "
                                                        "images).")] = False,
    inputs: Annotated[Optional[list[Path]], typer.Option(
        "--input", "-i", metavar="FILE", help="Autoencoders: an image (PNG, JPEG), .npy array of images or "
        "folder of them to reconstruct; CycleGAN: images of domain A to translate to B (or of --from's). "
        "Repeatable.")] = None,
    domain: Annotated[Optional[str], typer.Option("--from", metavar="A|B", help="CycleGAN: the domain the --input "
        "images are of, translated to the other (A).")] = None,
    prompt: Annotated[Optional[str], typer.Option(metavar="TEXT", help="Language models: the text to continue.")] = None,
    length: Annotated[Optional[int], typer.Option(metavar="N",
        help="Language models: how many tokens to sample (500; at most 100,000).")] = None,
    temperature: Annotated[Optional[float], typer.Option(metavar="T",
        help="Language models: divides the logits; below 1 is safer, above 1 wilder, 0 the likeliest token "
        "(1).")] = None,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    unsafe: UnsafeFlag = False,
):
    from dlkit.generate import generate as generate_fn

    def says(result):
        if "text" in result:  # a language model's sample: the text itself, and where it went with --out
            return result["text"] + (f"\n(wrote {result['out']})" if result["out"] else "")
        if "out_dir" in result:
            return f"wrote {result['files']:,} images in {result['out_dir']}"
        return f"wrote {result['out']}"

    _write(lambda: generate_fn(run_dir, n, label, code, seed, out, interpolate, force, inputs or (), unsafe,
                               _utf8("--prompt", prompt), length, temperature, domain, out_dir), json_, says, quiet)


@app.command(help=f"What a trained model says of new inputs: an image classifier's label and probabilities for image "
                  f"files, a text classifier's for raw text, a translation model's translation, a forecaster's next steps past the end of a CSV file, a feature-vector classifier's labels for the rows of one, a regression's numbers for them.\n\n{EXIT_CODES_HELP}")
def predict(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished classifier, text classifier, translation, digit-string reader, forecaster or regression run directory.")],
    files: Annotated[Optional[list[Path]], typer.Argument(
        metavar="FILE", help="Image classifiers and digit-string readers: image files (PNG, JPEG, TIFF, ...), .npy "
        "arrays of images (pixel values 0-255), or folders of them.")] = None,
    text: Annotated[Optional[list[str]], typer.Option("--text", "-t", metavar="TEXT", help="Text to classify or translate. Repeatable.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", metavar="FILE", help="Texts to classify or translate, one per line.")] = None,
    csv: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Forecasters: the series to forecast past the end of. Feature-vector classifiers and regressions: the rows to classify or predict, under a header.")] = None,
    beam: Annotated[Optional[int], typer.Option(metavar="N",
        help="Translation models: the beam's width (1: greedy); default the recipe's train.beam_width.")] = None,
    plot: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Translation models with attention: a PNG of the attention maps.")] = None,
    out: Annotated[Optional[Path], typer.Option(metavar="FILE.csv", help="Also write the predictions to this CSV "
        "file, one row each (a class's probability in column probabilities.<class>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --plot or --out if it exists.")] = False,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    unsafe: UnsafeFlag = False,
):
    from dlkit.generate import predict as predict_fn

    def make():
        texts = [_utf8("--text", t, ", or give the text in a UTF-8 file, --file FILE") for t in text or []]
        if file is not None:
            if not file.is_file():
                raise UsageError(f"--file {file}: {'a folder' if file.is_dir() else 'no such file'}; give a text "
                                 "file, one text per line")
            try:
                lines = [line for line in file.read_text(encoding="utf-8").split("\n") if line.strip()]
            except UnicodeDecodeError:
                from dlkit.files import not_utf8

                raise UsageError(f"--file {not_utf8(file)}") from None
            except OSError as e:
                raise UsageError(f"--file {file}: {e}") from None
            if not lines:
                raise UsageError(f"--file {file}: no text in it; it is read one text per line")
            texts += lines
        return predict_fn(run_dir, texts, csv, unsafe, beam, plot, force, files or (), out)

    _answer(make, json_, _show_predictions, quiet)


def _show_predictions(result, console) -> None:
    from dlkit.tasks import TASKS

    _print_parts(console, TASKS[result["task"]].report_prediction(result))
    if result.get("out"):
        console.print(f"written to {result['out']}", markup=False, highlight=False)


def _print_parts(console, parts) -> None:
    """A task's report: rich renderables, and plain strings printed as they are."""
    for part in parts:
        console.print(part, markup=False) if isinstance(part, str) else console.print(part)


@app.command(help=f"Write the codes of a split's inputs (autoencoders, VAEs, RBMs), with their labels beside them, or "
                  f"of the images given.\n\n{EXIT_CODES_HELP}")
def encode(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished autoencoder, VAE or RBM run directory.")],
    files: Annotated[Optional[list[Path]], typer.Argument(
        metavar="FILE", help="Images to encode in place of a split: image files, .npy arrays of images (pixel values "
        "0-255) or folders of them, read as dlkit predict reads them.")] = None,
    split: Annotated[Optional[str], typer.Option(metavar="SPLIT", help="test (the default), val or train.")] = None,
    out: Annotated[Optional[Path], typer.Option(metavar="FILE", help=".npy file to write; default RUN_DIR/codes_SPLIT.npy "
                                                "(codes_inputs.npy for FILEs). A split's labels go beside it as "
                                                "<name>.labels.npy, the FILEs' names as <name>.names.txt.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    unsafe: UnsafeFlag = False,
):
    from dlkit.generate import encode as encode_fn

    _write(lambda: encode_fn(run_dir, split, out, force, unsafe, files or ()), json_,
           lambda result: f"wrote {result['out']} {tuple(result['shape'])}", quiet)


@app.command(help="Write a finished run's model in a deployable format through Keras's model.export: a TensorFlow "
                  "SavedModel, ONNX or LiteRT. GANs and VAEs export their generator, CycleGANs the A-to-B one. The "
                  "export is loaded back by its own runtime and must give the model's outputs, else it is removed "
                  f"(exit 7).\n\n{EXIT_CODES_HELP}")
def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished run directory.")],
    format_: Annotated[str, typer.Option("--format", metavar="FORMAT", help="saved_model, onnx or litert.")] = "saved_model",
    out: Annotated[Optional[Path], typer.Option(metavar="PATH", help="Where to write; default RUN_DIR/export/saved_model, "
                                                "model.onnx or model.tflite.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export (once the new one has passed its check).")] = False,
    domain: Annotated[Optional[str], typer.Option("--from", metavar="A|B", help="CycleGAN: the domain the exported "
        "generator translates from (A); B writes the B-to-A generator, as model_b_to_a.onnx and the like.")] = None,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
    unsafe: UnsafeFlag = False,
):
    from dlkit.export import export as export_fn
    from dlkit.export import size_text

    _write(lambda: export_fn(run_dir, format_, out, force, unsafe, domain), json_,
           lambda r: f"wrote {r['path']} ({r['format']}, {r['model']}, {size_text(r['size_bytes'])}); reloaded with "
                     f"{r['checked_with']}: outputs within {r['max_abs_diff']:.2g} of the Keras model's"
                     + "".join(f"; it {note}" for note in r["notes"]), quiet)


@app.command(help="One self-contained HTML page of a run: status and headline, the measures, evaluations and exports, "
                  "the learning curves and the task's pictures embedded, the epoch history and the recipe. Opens "
                  f"offline, sends as one file.\n\n{EXIT_CODES_HELP}")
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (finished or not).")],
    out: Annotated[Optional[Path], typer.Option(metavar="FILE", help="The page to write; default RUN_DIR/report.html.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
):
    from dlkit.report import report as report_fn

    _write(lambda: report_fn(run_dir, out, force), json_,
           lambda r: f"wrote {r['out']} ({r['size_bytes'] / 1e3:.0f} kB, {len(r['pictures'])} pictures)", quiet)


def _answer(make, json_: bool, show, quiet: bool = False) -> dict:
    """What the commands that answer once share: run (`_interruptible`), then one JSON object, or
    `show(result, console)` (not with --quiet)."""
    result = _interruptible(make, json_, quiet)
    if json_:
        _print_json(result)
    elif not quiet:
        show(result, _console(stderr=False))
    return result


def _interruptible(make, json_: bool, quiet: bool):
    """`make()`, showing how far its long loops are on stderr (not with --quiet); a user error is its exit
    code and message; Ctrl-C and SIGTERM are exit 130, as they are for `train`."""
    from dlkit import ui

    try:
        with _terminating_like_ctrl_c(), ui.showing(None if quiet else _console()):
            return make()
    except KeyboardInterrupt:
        _console().print("[yellow]interrupted[/]")
        if json_:
            _print_json({"status": "interrupted", "exit_code": EXIT_INTERRUPTED})
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except DlkitError as e:
        raise _fail(e, json_) from None
    except OSError as e:  # one no reader or writer caught: its path and why, not a traceback
        raise _fail(unusable_path(e), json_) from None


def _write(make, json_: bool, says, quiet: bool = False) -> None:
    """`generate`, `encode`, `export` and `report`: one line saying what was written."""
    _answer(make, json_, lambda result, console: console.print(says(result), markup=False), quiet)


@app.command(help="A recipe over a grid of values and seeds, each point a normal run; a summary with the mean and "
                  "standard deviation over seeds. Run again, it skips finished runs and resumes interrupted ones."
                  f"\n\n{EXIT_CODES_HELP}")
def sweep(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help=RECIPE_HELP, shell_complete=_complete_recipe)],
    grid: Annotated[Optional[list[str]], typer.Option(
        "--grid", "-g", metavar="KEY=V1,V2", help="A recipe key and its values, typed as YAML. Repeatable: the "
        "sweep is their product.")] = None,
    seeds: Annotated[int, typer.Option(metavar="N", help="Seeds per point: the recipe's seed and the next N - 1.")] = 1,
    parallel: Annotated[int, typer.Option(metavar="K", help="Runs at a time (separate processes).")] = 1,
    set_: SetOption = None,
    runs_root: RunsRoot = Path("runs"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what each member would do (train, resume its "
                                          "interrupted run, or nothing: done, failed, busy) and the command it "
                                          "would run; run nothing.")] = False,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
):
    from dlkit import sweep as sweep_layer

    say = _saying(quiet)

    def make():
        return sweep_layer.sweep(recipe, grid or [], seeds, parallel, runs_root, set_ or (), say=say, dry_run=dry_run)

    result = _answer(make, json_, _show_sweep_plan if dry_run else _show_sweep, quiet)
    if result["status"] not in ("completed", "planned"):
        raise typer.Exit(1)


def _saying(quiet: bool):
    """`sweep`'s and `tune`'s line a member on stderr as each starts and ends; nothing with --quiet."""
    console = _console(stderr=True)
    return (lambda line: None) if quiet else (lambda line: console.print(line, markup=False, soft_wrap=True))


def _show_sweep_plan(result, console) -> None:
    """A line a member, unwrapped (for grep and for the shell): what it would do, and the command."""
    import shlex

    console.print(f"sweep of {result['recipe']}: the plan, nothing run", markup=False)
    for r in result["runs"]:
        console.print(f"{r['action']}: {r['point']} seed {r['seed']}: {r['run_dir'] or 'a new run'}", markup=False,
                      soft_wrap=True)
        if r["command"]:
            console.print(f"  {shlex.join(r['command'])}", markup=False, soft_wrap=True)


def _show_sweep(result, console) -> None:
    from rich.table import Table

    from dlkit.ui import fmt

    keys = list(result["grid"])
    rows = result["summary"]
    measures = list(dict.fromkeys(k for r in rows for k in r if k not in ("point", "runs", "completed")))
    table = Table(title=f"sweep of {result['recipe']}: mean ± std over seeds")
    for col in [*keys, "runs", *[(rows[0]["headline"]["label"] if k == "headline" and "headline" in rows[0] else k)
                                  for k in measures]]:
        table.add_column(str(col), justify="right")
    for r in rows:
        cells = [str(r["point"][k]) for k in keys] + [f"{r['completed']}/{r['runs']}"]
        for k in measures:
            m = r.get(k)
            cells.append("" if m is None else f"{fmt(m['mean'])} ± {fmt(m['std'])}" if m["n"] > 1 else fmt(m["mean"]))
        table.add_row(*cells)
    console.print(table)
    failed = [r for r in result["runs"] if r["status"] != "completed"]
    for r in failed:
        console.print(f"not completed: {r['point']} seed {r['seed']}: {r['status']} {r['run_dir'] or ''} "
                      f"{r['error'] or ''}".rstrip(), markup=False)


@app.command(help="A search over the recipe keys a recipe's tune section names, each trial a normal run with "
                  "values Optuna chose (TPE, or random draws), judged by its train.monitor at its best epoch; a "
                  "table of the trials, the best first. Run again, it goes on where it stopped, finished trials "
                  f"kept.\n\n{EXIT_CODES_HELP}")
def tune(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help=RECIPE_HELP, shell_complete=_complete_recipe)],
    trials: Annotated[Optional[int], typer.Option(
        metavar="N", help="Trials in all, those run before included (default: the recipe's tune.trials).")] = None,
    parallel: Annotated[int, typer.Option(metavar="K", help="Trials at a time (separate processes).")] = 1,
    set_: SetOption = None,
    runs_root: RunsRoot = Path("runs"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say which trials the runs hold, which would be "
                                          "finished and how many would be new; run nothing.")] = False,
    plot: Annotated[Optional[Path], typer.Option(metavar="FILE", help="A PNG of the trials: the monitor by trial "
                                                 "and against each key's values.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --plot if it exists.")] = False,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
):
    from dlkit import tune as tune_layer

    say = _saying(quiet)

    def make():
        return tune_layer.tune(recipe, trials, parallel, runs_root, set_ or (), say=say, dry_run=dry_run, plot=plot,
                               force=force)

    result = _answer(make, json_, _show_tune, quiet)
    if result["status"] not in ("completed", "planned"):
        raise typer.Exit(1)


def _show_tune(result, console) -> None:
    from rich.table import Table

    from dlkit.ui import fmt

    keys, planned = list(result["space"]), result["status"] == "planned"
    judged = sorted((t for t in result["trials"] if t.get("value") is not None), key=lambda t: t["value"],
                    reverse=result["direction"] == "max")
    rest = [t for t in result["trials"] if t.get("value") is None]
    title = (f"tune of {result['recipe']}: the plan, nothing run ({result['new_trials']} new trial(s) to run)"
             if planned else f"tune of {result['recipe']}: {result['monitor']}, "
             f"{'lower' if result['direction'] == 'min' else 'higher'} is better")
    if result["trials"]:
        # a key by its last part where that is unique (learning_rate, not train.optimizer.learning_rate)
        last = [k.rsplit(".", 1)[-1] for k in keys]
        table = Table(title=title)
        for col in ["trial", *[s if last.count(s) == 1 else k for k, s in zip(keys, last)], result["monitor"],
                    "status", "run"]:
            table.add_column(col, justify="right" if col != "run" else "left", no_wrap=col == "run")
        for t in judged + rest:
            value = "" if t.get("value") is None else fmt(t["value"])
            state = t["action"] if planned else t.get("status", "")
            table.add_row(str(t["number"]), *[fmt(t["params"][k]) if isinstance(t["params"][k], float) else
                                              json.dumps(t["params"][k]) for k in keys],
                          value, state, Path(t["run_dir"]).name if t["run_dir"] else "")
        console.print(table)
    else:
        console.print(title, markup=False)
    best = result.get("best")
    if best is not None:
        import shlex

        console.print(f"best: trial {best['number']}, {result['monitor']} {fmt(best['value'])}: {best['run_dir']}",
                      markup=False, soft_wrap=True)
        console.print("its values: " + " ".join(f"--set {shlex.quote(f'{k}={json.dumps(v)}')}"
                                                for k, v in best["params"].items()), markup=False, soft_wrap=True)
    for t in result["trials"]:
        if t.get("error"):
            console.print(f"trial {t['number']}: {t['error']}", markup=False, soft_wrap=True)
    if result.get("plot"):
        console.print(f"the trials drawn: {result['plot']}", markup=False, soft_wrap=True)
    for warning in result.get("warnings", []):
        console.print(f"warning: {warning}", markup=False, soft_wrap=True)


@app.command(help="The runs under the runs root side by side: `dlkit runs [NAME]` lists them (status, epochs, wall time, "
                  "their task's headline figure); `dlkit runs compare RUN RUN...` shows the recipe keys that differ, what "
                  "the runs ran on where it differs (backend, device, host, versions) and "
                  f"the measures side by side.\n\n{EXIT_CODES_HELP}")
def runs(
    args: Annotated[Optional[list[str]], typer.Argument(
        metavar="NAME | compare RUN...", help="A recipe name to list only its runs; or `compare` and run directories.")] = None,
    runs_root: RunsRoot = Path("runs"),
    json_: JsonFlag = False,
):
    from dlkit import runs as runs_layer

    args = list(args or [])
    if args and args[0] == "compare":
        _answer(lambda: runs_layer.compare(args[1:]), json_, _show_comparison)
        return
    if len(args) > 1:
        raise _fail(UsageError(f"give one recipe name to list its runs, or `compare RUN RUN...`; received {args}"), json_)
    _answer(lambda: runs_layer.table(runs_root, args[0] if args else None), json_, _show_runs)


def _show_runs(result, console) -> None:
    """A rich table on a terminal; piped or redirected, one whole line per run (columns apart by two spaces,
    never wrapped), for grep and awk."""
    from rich.table import Table

    from dlkit.ui import fmt

    if not result["runs"]:
        console.print(f"no runs under {result['runs_root']}", markup=False)
        return
    cols = ("name", "run", "status", "epochs", "wall", "headline", "value")
    rows = []
    for r in result["runs"]:
        h = r["headline"]
        wall = "" if r["wall_time_s"] is None else f"{r['wall_time_s'] / 60:.1f} min"
        status = r["status"] + (" (pruned)" if r.get("pruned") else "")  # a tune stopped it: fewer epochs
        rows.append((r["name"], r["run"], status, "" if r["epochs"] is None else str(r["epochs"]), wall,
                     h["label"] if h else "-", fmt(h["value"]) if h else "-"))
    if not console.is_terminal:
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
        for line in [cols, *rows]:
            print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
        return
    table = Table(title=f"runs under {result['runs_root']}")
    for col in cols:
        table.add_column(col, justify="right" if col in ("epochs", "wall", "value") else "left",
                         no_wrap=col in ("name", "run", "status", "value"))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _show_comparison(result, console) -> None:
    from rich.table import Table

    from dlkit.ui import fmt

    names = [Path(r).parent.name + "/" + Path(r).name for r in result["runs"]]
    for title, rows in (("recipe keys that differ", result["recipe_differences"]),
                        ("what they ran on, where it differs", result["machine_differences"]),
                        ("measures", result["measures"])):
        table = Table(title=title)
        table.add_column("key")
        for n in names:
            table.add_column(n, justify="right", overflow="fold")
        for key, values in rows.items():
            table.add_row(key, *("" if v is None else fmt(v) if isinstance(v, float) else str(v) for v in values))
        if rows:
            console.print(table)
        else:
            console.print(f"{title}: none", markup=False)


@app.command(help=f"Check recipes (schema and data) without training.\n\n{EXIT_CODES_HELP}")
def validate(
    recipes: Annotated[list[Path], typer.Argument(
        metavar="RECIPE", help="One or more recipe files (or shipped recipes' names), or folders: every .yaml recipe "
                               "below each.", shell_complete=_complete_recipe)],
    set_: SetOption = None,
    build: Annotated[bool, typer.Option("--build", help="Also read the data, build the model and show its summary.")] = False,
    quiet: QuietFlag = False,
    json_: JsonFlag = False,
):
    from dlkit.recipe import shipped

    console, errors = _console(stderr=json_), _console()
    console.quiet = quiet  # --quiet: the errors alone (`dlkit validate -q recipes/ && ...`)
    results = []
    # a folder stands for the recipes below it (recipes/lessons/ holds some that others extend); outside the
    # repository, `recipes/` and `lessons/` are the shipped ones
    recipes = [r if r.exists() else shipped.find_folder(str(r)) or r for r in recipes]
    recipes = [p for r in recipes
               for p in ((sorted({*r.rglob("*.yaml"), *r.rglob("*.yml")}) or [r]) if r.is_dir() else [r])]
    _interruptible(lambda: _validate_each(recipes, set_, build, console, errors, results), json_, quiet)
    worst = next((r["exit_code"] for r in results if r["status"] == "error"), 0)
    if json_:
        _print_json({"status": "ok" if not worst else "error", "recipes": results})
    raise typer.Exit(worst)


def _validate_each(recipes, set_, build: bool, console, errors, results: list) -> None:
    """`validate`'s work, one recipe at a time, each one's entry added to `results` as it is checked."""
    from rich.markup import escape

    from dlkit.recipe import located
    from dlkit.recipe.source import shown
    from dlkit.tasks import load_recipe

    for path in recipes:
        entry = {"recipe": str(path), "status": "ok"}
        try:
            recipe = load_recipe(path, set_ or ())
            if recipe.tune is not None:  # every end of the search's ranges, as `dlkit tune` checks them
                from dlkit.tune import check_space, space_of

                check_space(Path(path), list(set_ or ()), space_of(recipe))
            entry["data"] = _check_data(recipe)
            if build:
                entry.update(_build(recipe, console))
            console.print(f"[green]ok[/] {escape(shown(path))} (data: {escape(entry['data'])}"
                          + (f", {entry['params']:,} parameters)" if build else ")"))
        except DlkitError as e:
            if isinstance(e, RecipeError):  # one found after loading (a model too big for its inputs): at its line
                e = located(e, path, set_ or ())
            entry.update(status="error", exit_code=e.exit_code, error=str(e))
            errors.print(f"[bold red]error[/]: {escape(str(e))}", highlight=False, soft_wrap=True)
        results.append(entry)


def _build(recipe, console) -> dict:
    """Build every phase's model, in order (a DBN's RBMs, then the net they start), and print each one's
    summary; the parameters are the last one's, the model a run ends with."""
    from dlkit.training.session import Session

    session = Session.open(recipe)
    phases, earlier = session.task.phases(recipe), {}
    for phase in phases:
        if len(phases) > 1:
            console.print(f"[bold]phase {phase.name}[/]")
        earlier[phase.name] = model = session.model(phase, earlier)
        model.summary(print_fn=lambda line, **_: console.print(line, markup=False, highlight=False))
    entry = {"params": int(model.count_params())}
    if len(phases) > 1:
        entry["phases"] = {name: int(m.count_params()) for name, m in earlier.items()}
    notes = list(dict.fromkeys(session.data.notes))  # what reading the data did, as `train` says it
    for note in notes:
        console.print(note, markup=False, soft_wrap=True)
    if notes:
        entry["data_notes"] = notes
    return entry


def _check_data(recipe) -> str:
    """Data availability without reading it: where each source would be read from."""
    from dlkit import tasks

    return tasks.of(recipe).locate(recipe)


@app.command(help="Print the resolved recipe as YAML: defaults filled, extends merged, --set applied.")
def show(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help=RECIPE_HELP, shell_complete=_complete_recipe)],
    set_: SetOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout: the recipe file "
                                        "read (a shipped recipe's, for its name) and the resolved recipe.")] = False,
):
    import yaml

    from dlkit.recipe import recipe_file
    from dlkit.tasks import load_recipe

    try:
        r = load_recipe(recipe, set_ or ())
    except DlkitError as e:
        raise _fail(e, json_) from None
    if json_:
        _print_json({"status": "ok", "recipe_file": str(recipe_file(recipe)), "recipe": r.to_dict()})
        return
    sys.stdout.write(yaml.safe_dump(r.to_dict(), sort_keys=False))


LIST_GROUPS = ("recipes", "architectures", "tasks", "datasets", "optimizers", "initializers", "regularizers",
               "activations", "augmentations", "schedules", "losses", "metrics")


@app.command(name="list", help="List the recipes dlkit ships (`dlkit train NAME` trains one in any folder), "
                              "architectures, tasks, datasets, optimizers, initializers, regularizers, augmentations, "
                              "...; or one of these groups (`dlkit list optimizers`).")
def list_(
    group: Annotated[Optional[str], typer.Argument(
        metavar="GROUP", help=f"Only this group: {', '.join(LIST_GROUPS)}.",
        shell_complete=lambda ctx, param, incomplete: [g for g in LIST_GROUPS if g.startswith(incomplete)])] = None,
    json_: JsonFlag = False,
):
    import difflib

    from rich.markup import escape

    from dlkit import catalog, models, tasks
    from dlkit.data import sources
    from dlkit.recipe import shipped

    groups = {
        "recipes": None,  # read from the recipe files, and only where asked for (below)
        "architectures": {**{name: f"{a.summary} [{a.task}]" for name, a in models.ARCHITECTURES.items()},
                          **_from_packages(models.installed(), models.ARCHITECTURES)},
        "tasks": {name: t.summary for name, t in tasks.TASKS.items()},
        "datasets": {**{name: d.description for name, d in sources.DATASETS.items()},
                     **_from_packages(sources.installed(), sources.DATASETS), **_sequence_datasets()},
        "optimizers": {k: f"keras.optimizers {v}" + (" (momentum 0.9)" if k == "momentum" else "")
                       for k, v in catalog.OPTIMIZERS.items()},
        "initializers": {k: f"keras.initializers {v}" for k, v in catalog.INITIALIZERS.items()},
        "regularizers": {k: f"keras.regularizers {v}" for k, v in catalog.REGULARIZERS.items()},
        "activations": {k: "" for k in catalog.ACTIVATIONS},
        "augmentations": {k: f"keras.layers.{v} (training only)" for k, v in catalog.AUGMENTATIONS.items()},
        "schedules": {k: "" for k in catalog.SCHEDULES},
        # train.loss and train.metrics: Keras's snake_case names (its class names, MeanSquaredError, are taken too)
        "losses": {k: "" for k in sorted(n for n in catalog.LOSSES if n.islower())},
        "metrics": {k: {"acc": "accuracy", "rmse": "root_mean_squared_error, logged as rmse"}.get(k, "")
                    for k in sorted(n for n in catalog.METRICS if n.islower())},
    }
    if group is not None:
        if group not in groups:
            near = difflib.get_close_matches(group, LIST_GROUPS, n=1, cutoff=0.6)
            raise _fail(UsageError(f"no group {group!r} to list; " + (f"did you mean {near[0]!r}? " if near else "")
                                   + f"the groups are: {', '.join(LIST_GROUPS)}"), json_)
        groups = {group: groups[group]}
    if "recipes" in groups:
        groups["recipes"] = _shipped_recipes()
    if json_:
        _print_json({k: list(v) for k, v in groups.items()})
        return
    out = _console(stderr=False)
    for group, items in groups.items():
        where = f" (in {shipped.folder()}: `dlkit train NAME`, or `extends: NAME` in a recipe of yours)" \
            if group == "recipes" and items else ""
        out.print(f"[bold]{group}[/]{escape(where)}", highlight=False, soft_wrap=True)
        for name, text in items.items():
            out.print(f"  {name:<18} {text}".rstrip(), markup=False, highlight=False, soft_wrap=True)


def _from_packages(entry_points: dict, loaded) -> dict:
    """`dlkit list`'s lines for what installed packages offer by entry point and is not loaded yet (not imported
    to be listed): each with its package and module."""
    return {name: f"from the installed package {ep.dist.name if ep.dist else '?'} ({ep.value})"
            for name, ep in entry_points.items() if name not in loaded}


def _shipped_recipes() -> dict:
    """Each shipped recipe's name: the first sentence of its opening comment and its architecture."""
    from dlkit.recipe import load_raw, shipped

    out = {}
    for name in shipped.names():
        path = shipped.find(name)
        try:
            model = load_raw(path)[0].get("model")
        except DlkitError:
            model = None
        arch = model.get("arch") if isinstance(model, dict) else None
        out[name] = shipped.describe(path) + (f" [{arch}]" if isinstance(arch, str) else "")
    return out


def _sequence_datasets() -> dict:
    """The text, series and table datasets, which their tasks' own data sections name."""
    from dlkit.data import series, text
    from dlkit.tasks import language_model, regression, text_classification, text_translation

    out = {name: f"{src.description} [{'rnn_classifier' if src.kind == 'sentences' else 'rnn_lm'}]"
           for name, src in text.TEXT_SOURCES.items()}
    out["tsv"] = text_classification.SENTENCE_DATASETS["tsv"] + " [rnn_classifier]"
    out["text"] = language_model.STREAM_DATASETS["text"] + " [rnn_lm]"
    out.update({name: f"{desc} [rnn_forecaster]" for name, (_, desc, _) in series.SERIES_SOURCES.items()})
    out["csv (series)"] = "a CSV file with a time column, targets and features (data.path) [rnn_forecaster]"
    out["mnist_strings"] = "1 to 5 MNIST digits side by side, read out as the digit string [cnn_rnn_reader]"
    out["tatoeba_fra_eng"] = text_translation.PAIR_DATASETS["tatoeba_fra_eng"] + " [seq2seq]"
    out["tsv (pairs)"] = text_translation.PAIR_DATASETS["tsv"] + " [seq2seq]"
    out["diabetes"] = regression.REGRESSION_DATASETS["diabetes"] + " [mlp_regressor]"
    out["csv (targets)"] = regression.REGRESSION_DATASETS["csv"] + " [mlp_regressor]"
    out["npz (targets)"] = regression.REGRESSION_DATASETS["npz"] + " [mlp_regressor]"
    return out


def _given_twice(argv: list[str]) -> str | None:
    """What is wrong with `argv` (the words after `dlkit`) where it gives an option that takes one value twice:
    Click keeps the last silently, so `evaluate RUN --split test ... --split val` measured val alone. None if
    no such option is given twice. (Flags given twice mean what they mean once; --set, --grid are lists.)"""
    import typer.main

    # Typer's own Click (typer._click): its classes are read by what they have, not imported
    sub = getattr(typer.main.get_command(app), "commands", {}).get(argv[0]) if argv else None
    if sub is None:
        return None
    options = [p for p in sub.params if p.param_type_name == "option" and not p.multiple and not p.is_flag
               and not p.count]
    given: dict[str, list[str]] = {}
    words = iter(argv[1:])
    for word in words:
        if word == "--":
            break
        for option in options:
            names = option.opts + option.secondary_opts
            if word in names:  # --split val
                value = next(words, "")
            elif word.startswith("--") and word.split("=", 1)[0] in names:  # --split=val
                value = word.split("=", 1)[1]
            elif not word.startswith("--") and word[:2] in names and len(word) > 2:  # -n5
                value = word[2:]
            else:
                continue
            given.setdefault(option.opts[0], []).append(value)
            break
    twice = {name: values for name, values in given.items() if len(values) > 1}
    if not twice:
        return None
    name, values = next(iter(twice.items()))
    return (f"{name} is given {len(values)} times ({', then '.join(map(repr, values))}); it takes one value: give "
            "it once")


def main():
    """The `dlkit` command (the console script, by way of dlkit.__main__, and `python -m dlkit.cli`): the command
    line's command, then _leave with its exit code."""
    from dlkit.errors import catch_interrupts, guard_output, interrupt_requested

    catch_interrupts(raising=False)  # a signal before the command starts is noted: the command answers it
    guard_output()  # a reader of stdout or stderr that goes stops the command as SIGTERM would
    unraisable = sys.unraisablehook

    def hook(u):  # once interrupted, what a finalizer fails at is the interrupt's doing: the process is ending
        if interrupt_requested.signum is None:  # (TensorFlow's function references, cut: "KeyError" in a __del__)
            unraisable(u)

    sys.unraisablehook = hook
    try:
        _command(sys.argv[1:])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)  # as Python says sys.exit's message
    _leave(code)


def _command(argv: list[str]) -> None:
    """The command line's command, to its SystemExit. With --json, a bad option or argument, which Click says
    before any command runs, is also one JSON object on stdout (it was only Click's usage text on stderr); so
    is an option given twice."""
    twice = _given_twice(argv)
    if twice is not None:
        sys.exit(_fail(UsageError(twice), "--json" in argv).exit_code)
    if "--json" not in argv:
        app()  # standalone: its own SystemExit
        sys.exit(0)
    # Click's UsageError (a missing argument, an unknown option, a bad value), from the Click Typer runs on
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    try:
        code = app(standalone_mode=False)
    except usage_error as e:
        e.show()
        _print_json({"status": "error", "exit_code": e.exit_code, "error": e.format_message()})
        sys.exit(e.exit_code)
    except Exception as e:
        if type(e).__name__ != "Abort":
            raise
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # a command's result (a dict) was printed: success


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # (None: closed as Python started, `>&-`, outside the console script)
                stream.flush()
        except (OSError, ValueError):  # a pipe closed by its reader (`dlkit runs --json | head -c 10`)
            pass


def _leave(code: int) -> None:
    """End the process with `code`, without Python's own teardown of its modules: with TensorFlow loaded that is
    about a second after the answer (1.05 s of an evaluate's 6.78 s on a 2-core machine, docs/benchmarks.md),
    in which a SIGTERM killed the process outright (Python resets the handlers first). What Python's exit does
    before that is done as it does it: the threads that are not daemons joined (the checkpoint writer's), the
    atexit functions run (logging's flush, multiprocessing's children, temporary folders' finalizers), stdout
    and stderr flushed. After Ctrl-C the process ends by SIGINT itself, as a shell expects of a program that
    stopped on it: a shell loop or script running `dlkit` then stops too (an exit 130 let bash run the loop's
    next command); `$?` is 130 either way. Once the answer is out, a Ctrl-C ends the process at once, should
    the threads' end hang (the checkpoint writer's idle thread was waited for forever once: it is ended first).
    A Python without CPython's hooks for this exits as usual."""
    import atexit
    import os
    import signal
    import threading

    from dlkit.errors import interrupt_requested, output_failed
    from dlkit.rundir import close_writer

    _flush_streams()  # the answer is out: a Ctrl-C from here on ends the process at once, should anything hang
    failed = output_failed()
    if failed is not None and code == 0:  # the answer, or what was shown, did not reach where it was sent
        print(f"error: {failed}", file=sys.stderr, flush=True)  # (to /dev/null, where that stream was the one)
        code = failed.exit_code
    shutdown, exit_functions = getattr(threading, "_shutdown", None), getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or exit_functions is None:
        sys.exit(code)
    if getattr(signal.getsignal(signal.SIGINT), "dlkit", False):  # not where it is ignored (`cmd &`)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if interrupt_requested.is_set() and interrupt_requested.signum == signal.SIGINT:  # came as it answered
            os.kill(os.getpid(), signal.SIGINT)
    close_writer()
    shutdown()
    exit_functions()
    _flush_streams()
    if code == EXIT_INTERRUPTED and interrupt_requested.signum == signal.SIGINT or \
            interrupt_requested.signum == signal.SIGPIPE:  # its output's reader went: as a program killed by it
        signal.signal(interrupt_requested.signum, signal.SIG_DFL)
        os.kill(os.getpid(), interrupt_requested.signum)
    os._exit(code)


if __name__ == "__main__":
    main()
