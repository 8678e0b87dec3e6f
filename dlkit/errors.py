"""User-facing errors and the exit codes they map to.

A user mistake raises a `DlkitError` subclass; the CLI prints it without a traceback and exits with its
`exit_code`. Anything else is a bug and surfaces with its full traceback.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

EXIT_OK = 0
EXIT_USAGE = 2  # bad recipe or bad usage
EXIT_DATA = 3  # data not found or unreadable
EXIT_DIVERGED = 4  # loss became NaN or inf
EXIT_STORAGE = 5  # the run directory or an output file could not be written (disk full, read-only, permissions)
EXIT_MEMORY = 6  # out of memory (a GPU's or the host's)
EXIT_EXPORT = 7  # an export, loaded back, did not give its model's outputs
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 2 bad recipe or usage; 3 data not found or unreadable; "
    "4 training diverged (NaN/inf loss); 5 the run directory or an output file could not be written (disk full, "
    "read-only); 6 out of memory; 7 an export did not reproduce its model; 130 interrupted (Ctrl-C, SIGTERM or "
    "SIGHUP); 141 the reader of its output went (`| head`)."
)


def first_line(e: BaseException, limit: int = 300) -> str:
    """An exception's first line, for a message: whole up to `limit` characters, else cut at a word with an
    ellipsis (a cut mid-word, "Name or s", reads as a typo)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else line[:limit]) + "…"


def frame_in(e: BaseException, fn):
    """The last frame of `e`'s traceback in the file that defines the function `fn` (a plugin's `build` or
    `load`): where in the user's own code it was raised; None where no frame is there."""
    import traceback

    code = getattr(fn, "__code__", None)
    mine = [f for f in traceback.extract_tb(e.__traceback__) if code is not None and f.filename == code.co_filename]
    return mine[-1] if mine else None


def keras_reason(e: BaseException) -> str:
    """A Keras or TensorFlow error in one line, without terminal bold, TensorFlow's op prefix ("{{function_node
    __wrapped__Sub_device_...}}") and suffix ("[Op:Sub] name: "); a layer's build error ("Exception encountered
    when calling MaxPooling2D.call()", then the reason, then the arguments) as "MaxPooling2D: <the reason>"."""
    import re

    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", re.sub(r"\x1b\[[0-9;]*m", "", str(e))).strip()
    head, _, rest = text.partition("\n\n")
    called = re.fullmatch(r"Exception encountered when calling (\w+)\.call\(\)\.", head)
    line = (f"{called.group(1)}: {first_line(ValueError(rest))}" if called and rest.strip()
            else first_line(ValueError(text)))
    return re.sub(r"\s*\[Op:\w+\].*$", "", line)


class DlkitError(Exception):
    exit_code = EXIT_USAGE
    run_dir: str | None = None  # the run directory the error left behind, if any (a diverged run)


class UsageError(DlkitError):
    exit_code = EXIT_USAGE


SPLITS = ("test", "val", "train")  # a run's splits, as --split names them


class MissingSplit(UsageError):
    """A split (test, val, train) the run does not have; `available` names those it has, in that order."""

    def __init__(self, split: str, available, what: str = "split"):
        self.split, self.available = split, list(available)
        there = (f"; it has {' and '.join(self.available)}: --split {self.available[0]}" if self.available else "")
        super().__init__(f"this run has no {split!r} {what} (data.validation_split, data.test_split or the "
                         f"dataset's own test files){there}")

    @classmethod
    def of(cls, split: str, splits, what: str = "split") -> MissingSplit:
        """For data whose splits are `splits` (x_test, x_val, x_train; None where it has none)."""
        return cls(split, [name for name in SPLITS if getattr(splits, f"x_{name}") is not None], what)


@dataclass
class Problem:
    """One thing wrong with a recipe: where it is, what is wrong, and how to fix it."""

    path: str  # dotted key path, e.g. "model.blocks.0.filters"
    message: str
    location: str | None = None  # "file.yaml:12"
    hint: str | None = None

    def render(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.path}: " if self.path else ""
        text = f"{where}{key}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class RecipeError(DlkitError):
    """Every problem found in a recipe, reported together."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = problems
        self.source = source
        head = f"{len(problems)} problem(s) in recipe {source}" if source else f"{len(problems)} recipe problem(s)"
        super().__init__(head + ":\n" + "\n".join("  - " + p.render() for p in problems))


class DataError(DlkitError):
    exit_code = EXIT_DATA


class DivergedError(DlkitError):
    exit_code = EXIT_DIVERGED


class StorageError(DlkitError):
    exit_code = EXIT_STORAGE


class OutOfMemoryError(DlkitError):
    exit_code = EXIT_MEMORY


def storage_error(e: OSError, what: str) -> StorageError:
    """An OSError from writing, said plainly: which path, and why (full, read-only, not permitted)."""
    where = f"cannot write {e.filename}" if e.filename else "cannot write"
    return StorageError(f"{where} while {what}: {e.strerror or e}. Free space or choose another --runs-root; "
                        "the checkpoints written before stay as they were")


def unusable_path(e: OSError) -> StorageError:
    """An OSError no reader or writer turned into its own error (a folder where a command writes a file), said
    plainly: which path, and why."""
    # a rename's (a temporary file moved onto its target, as every write that must be whole is made) names the
    # target, the path the user has, second
    path = e.filename2 or e.filename
    where = f"cannot use {path}" if path else "a file could not be used"
    return StorageError(f"{where}: {e.strerror or e}")


def is_out_of_memory(e: BaseException) -> bool:
    """TensorFlow's ResourceExhaustedError, XLA's RESOURCE_EXHAUSTED (JAX), or the host's MemoryError."""
    return isinstance(e, MemoryError) or type(e).__name__ == "ResourceExhaustedError" or (
        "RESOURCE_EXHAUSTED" in str(e)[:2000] and "memory" in str(e)[:2000].lower())


class InterruptFlag(threading.Event):
    """Set by dlkit's SIGINT/SIGTERM handler (catch_interrupts), with the signal that set it last (`signum`, kept
    when the flag is cleared: the console script ends by it, dlkit.cli._leave)."""

    signum: int | None = None

    def note(self, signum: int) -> None:
        self.signum = signum
        self.set()


# Set by the handler catch_interrupts installs, which within a command also raises KeyboardInterrupt where the
# signal lands. Where that is swallowed (numpy converting a JAX array, an import's bare except, a garbage
# collector's callback), the long loops still stop: training checks it between steps (callbacks.InterruptCheck),
# ui.work at each advance (both by ui.stop_if_asked), and a command checks it as it ends (dlkit.cli).
interrupt_requested = InterruptFlag()


def catch_interrupts(raising: bool) -> None:
    """SIGTERM (a batch system's timeout, `kill`) and SIGHUP (the terminal closed: an ssh session dropped) as
    Ctrl-C, each noted in `interrupt_requested`; `raising`, they also raise KeyboardInterrupt where they land.
    SIGINT is left alone where it is ignored (`cmd &`) or has a handler of another's (not Python's own, nor this
    one's); SIGHUP where it is ignored (`nohup`) or has another's.
    Not raising is for the moments outside a command (the console script's start, its imports, Click's parsing):
    the command, once started, answers the noted signal as its own (exit 130, and its JSON object), where a
    KeyboardInterrupt there was a traceback, or Typer's silent exit 130."""
    import signal

    def handler(signum, frame):
        interrupt_requested.note(signum)
        if raising:
            raise KeyboardInterrupt

    handler.dlkit = True
    signal.signal(signal.SIGTERM, handler)
    found = signal.getsignal(signal.SIGINT)
    if found is signal.default_int_handler or getattr(found, "dlkit", False):
        signal.signal(signal.SIGINT, handler)
    found = signal.getsignal(signal.SIGHUP)
    if found is signal.SIG_DFL or getattr(found, "dlkit", False):  # it ended the process where it was: a run
        signal.signal(signal.SIGHUP, handler)  # left `running`, its last minutes lost


class _Guarded:
    """sys.stdout or sys.stderr, whose reader may go: a pipe's reader that exits (`dlkit train ... | head`,
    a `tee` stopped) or a terminal that hangs up. The first write that finds it gone (EPIPE, EIO) is noted as a
    SIGPIPE in `interrupt_requested` and the stream is pointed at /dev/null: the command stops as after SIGTERM
    (a training closes its run as interrupted) and the console script then ends by SIGPIPE (dlkit.cli._leave).
    The write's BrokenPipeError escaped from wherever it was: a progress line inside a training ended the
    process with exit 1, its run left `running`. A write that fails otherwise (a full disk under a log file,
    `> /dev/full`) is kept in `failed` and the stream pointed at /dev/null too: the command goes on (a training's
    run directory is its record) and ends with exit 5 naming the stream, where it would have succeeded; it was
    a traceback."""

    failed: list[tuple[str, OSError]] = []  # (the stream's name, the error) of each that failed so

    def __init__(self, stream, name: str):
        self._stream, self._name = stream, name

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as e:
            self._gone(e)
            return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            self._gone(e)

    def _gone(self, e: OSError) -> None:
        import errno
        import os
        import signal

        try:  # what is still buffered, and every later write, goes to /dev/null
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):  # no descriptor of its own (a test's stream): noted alone
            pass
        if e.errno in (errno.EPIPE, errno.EIO):
            interrupt_requested.note(signal.SIGPIPE)
        elif not any(name == self._name for name, _ in _Guarded.failed):
            _Guarded.failed.append((self._name, e))

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer, ...: the stream's own
        return getattr(self._stream, name)


def guard_output() -> None:
    """Put sys.stdout and sys.stderr behind _Guarded, for the console script's process (a notebook's or a
    test's streams are left as they are). One Python found closed (`>&-`: None) writes to /dev/null."""
    import os
    import sys

    def guarded(stream, name):
        if stream is None:
            stream = open(os.devnull, "w", encoding="utf-8")  # (print's None is silent; Rich's and flush's not)
        # a character its encoding lacks (a path's "ü" where the locale is ASCII or Latin-1) is written escaped:
        # it was a UnicodeEncodeError's traceback, a training's run left running
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
        return stream if isinstance(stream, _Guarded) else _Guarded(stream, name)

    sys.stdout, sys.stderr = guarded(sys.stdout, "standard output"), guarded(sys.stderr, "standard error")


def output_failed() -> StorageError | None:
    """The error to end with where standard output or error could not be written (not a reader gone)."""
    if not _Guarded.failed:
        return None
    name, e = _Guarded.failed[0]
    return StorageError(f"could not write {name}: {e.strerror or e}; what the command printed there is lost "
                        "(its files are whole): give it somewhere with room, or --quiet")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during training; the run directory was closed as `interrupted`. Not a user error:
    the CLI exits 130 with the partial result."""

    def __init__(self, run_dir, result: dict):
        super().__init__(f"interrupted; run directory {run_dir} is marked interrupted")
        self.run_dir, self.result = run_dir, result
