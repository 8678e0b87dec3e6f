"""What a run shows a person: rich live progress on a terminal, one plain line per epoch otherwise.

One Reporter per run. It is driven by `ProgressCallback` while Keras' own output is off (fit verbose=0).
`rich` honours NO_COLOR and notices when output is not a terminal.
"""

from __future__ import annotations

import contextlib
import math

from rich.console import Console
from rich.errors import LiveError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dlkit.errors import UsageError, interrupt_requested


def make_console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def progress_seconds() -> float:
    """$DLKIT_PROGRESS_SECONDS: how often, at least, progress is said off a terminal (30 s unset); a value that
    is no number of seconds is a usage error, not a traceback."""
    import os

    text = os.environ.get("DLKIT_PROGRESS_SECONDS", "30")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"DLKIT_PROGRESS_SECONDS={text!r}: expected seconds, a number 0 or more (unset: 30)")
    return seconds


def fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


def clock(seconds: float) -> str:
    """Minutes and seconds, as a time left is said: 1:05."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def fmt_logs(logs: dict) -> str:
    return "  ".join(f"{k}={fmt(v)}" for k, v in logs.items())


class Reporter:
    """Silent reporter (--quiet); the others override what they show."""

    def __init__(self, console: Console | None = None):
        self.console = console or make_console()
        self.progress = None  # RichReporter's live bars, while training

    def message(self, text: str) -> None: ...
    def start(self, run_dir, recipe, spec, model) -> None: ...
    def train_begin(self, epochs: int, steps: int, initial_epoch: int = 0) -> None: ...
    def epoch_begin(self, epoch: int) -> None: ...
    def batch(self, step: int, logs: dict | None) -> None: ...
    def epoch_end(self, epoch: int, logs: dict, seconds: float) -> None: ...
    def train_end(self) -> None: ...
    def summary(self, result: dict) -> None: ...


class PlainReporter(Reporter):
    """One line per epoch, and inside an epoch a progress line (step, rate, time left, running logs) at least
    every `every` seconds ($DLKIT_PROGRESS_SECONDS, default 30): for logs, pipes and CI, where a long epoch
    would otherwise print nothing for many minutes."""

    def __init__(self, console: Console | None = None, every: float | None = None):
        super().__init__(console)
        self.every = progress_seconds() if every is None else every
        self.epochs = self.steps = 0
        self.epoch = 0
        self.epoch_start = self.last_line = 0.0

    def train_begin(self, epochs: int, steps: int, initial_epoch: int = 0) -> None:
        self.epochs, self.steps = epochs, steps
        if initial_epoch:
            self.console.print(f"resuming after epoch {initial_epoch}/{epochs}", markup=False)

    def epoch_begin(self, epoch: int) -> None:
        import time

        self.epoch = epoch
        self.epoch_start = self.last_line = time.monotonic()

    def batch(self, step: int, logs: dict | None) -> None:
        import time

        now = time.monotonic()
        if now - self.last_line < self.every or not self.steps:
            return
        self.last_line = now
        done = step + 1
        rate = done / max(now - self.epoch_start, 1e-9)
        left = max(self.steps - done, 0) / rate
        self.console.print(f"epoch {self.epoch + 1}/{self.epochs}  step {done}/{self.steps}  {rate:.2f} steps/s  "
                           f"{clock(left)} left in the epoch  {fmt_logs(logs or {})}",
                           markup=False, soft_wrap=True)

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    def start(self, run_dir, recipe, spec, model) -> None:
        self.console.print(f"run {run_dir}", markup=False)
        self.console.print(f"recipe {recipe.name}: {recipe.model.arch} on {recipe.data.dataset} "
                           f"({spec.num_train} train, {spec.num_val} val, {spec.num_test} test), "
                           f"{model.count_params():,} parameters", markup=False)
        model.summary(print_fn=lambda line, **_: self.console.print(line, markup=False, highlight=False))

    def epoch_end(self, epoch: int, logs: dict, seconds: float) -> None:
        self.console.print(f"epoch {epoch + 1}/{self.epochs}  {seconds:.1f}s  {fmt_logs(logs)}", markup=False, soft_wrap=True)

    def summary(self, result: dict) -> None:
        self.console.print(render_summary(result))
        self.console.print(summary_line(result), markup=False)


class RichReporter(PlainReporter):
    """Live epoch and step bars with the running loss and metrics."""

    def start(self, run_dir, recipe, spec, model) -> None:
        self.console.rule(f"[bold]{escape(recipe.name)}[/] -> {escape(str(run_dir))}")
        model.summary(print_fn=lambda line, **_: self.console.print(line, markup=False, highlight=False))

    def train_begin(self, epochs: int, steps: int, initial_epoch: int = 0) -> None:
        self.epochs, self.steps = epochs, steps
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
            console=self.console, transient=False,
        )
        self.progress.start()
        self.epoch_task = self.progress.add_task("epochs", total=epochs, completed=initial_epoch, metrics="")
        self.step_task = self.progress.add_task("steps", total=steps, metrics="")

    def epoch_begin(self, epoch: int) -> None:
        self.progress.reset(self.step_task, total=self.steps, description=f"epoch {epoch + 1}", metrics="")

    def batch(self, step: int, logs: dict | None) -> None:
        fields = {"metrics": fmt_logs(logs)} if logs is not None else {}
        self.progress.update(self.step_task, completed=step + 1, **fields)

    def epoch_end(self, epoch: int, logs: dict, seconds: float) -> None:
        self.progress.update(self.step_task, completed=self.steps)  # step updates are throttled
        self.progress.update(self.epoch_task, completed=epoch + 1, metrics=fmt_logs(logs))
        self.progress.console.print(f"epoch {epoch + 1}/{self.epochs}  {seconds:.1f}s  {fmt_logs(logs)}", markup=False, soft_wrap=True)

    def train_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def render_summary(result: dict) -> Table:
    table = Table(title=f"{result.get('name', 'run')}: {result['status']}", show_header=True)
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column("best", justify="right")
    final, best, test = result.get("final", {}), result.get("best", {}), result.get("test", {})
    # the test column shows the task's numbers; its tables and examples are in metrics.json (and `dlkit evaluate`)
    test = {k: v for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if test:
        table.add_column("test", justify="right")
    for key in dict.fromkeys([*final, *best, *test]):
        if key.startswith("val_") or key.endswith("learning_rate"):
            continue
        row = [key, fmt(final.get(key, "")), fmt(best.get(key, ""))] + ([fmt(test.get(key, ""))] if test else [])
        table.add_row(*row)
        if f"val_{key}" in final:
            table.add_row(f"val_{key}", fmt(final[f"val_{key}"]), fmt(best.get(f"val_{key}", "")), *([""] if test else []))
    return table


def summary_line(result: dict) -> str:
    return (f"{result.get('params', 0):,} parameters, {result.get('wall_time_s', 0):.1f}s wall, "
            f"{result.get('throughput', 0):,.0f} examples/s; run directory {result.get('run_dir')}")


def reporter_for(quiet: bool, json_mode: bool) -> Reporter:
    """--quiet shows nothing; with --json the human output moves to stderr so stdout is the JSON alone."""
    console = make_console(stderr=json_mode)
    if quiet:
        return Reporter(console)
    return RichReporter(console) if console.is_terminal else PlainReporter(console)


# ---------------------------------------------------------------- a command's long work

class _Shown:
    """Where a command shows its long work (`work`), while `showing` holds: a live bar on a terminal, else a line
    at least every `every` seconds, as training's progress is shown."""

    def __init__(self, console: Console, every: float):
        self.console, self.every = console, every
        self.progress = None  # the live bars on a terminal, while some work runs

    def bars(self) -> Progress:
        if self.progress is None:
            bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), console=self.console, transient=True)
            bars.start()
            self.progress = bars
        return self.progress


_shown: list[_Shown] = []  # the `showing`s entered, the innermost last


@contextlib.contextmanager
def showing(console: Console | None, every: float | None = None):
    """While a command runs: where the long loops it calls (`work`) show how far they are. None: nowhere
    (--quiet). A library caller that never enters this sees nothing. `every`: $DLKIT_PROGRESS_SECONDS (30)."""
    if console is None:
        yield
        return
    shown = _Shown(console, progress_seconds() if every is None else every)
    _shown.append(shown)
    try:
        yield
    finally:
        _shown.remove(shown)
        if shown.progress is not None:
            shown.progress.stop()


def stop_if_asked() -> None:
    """KeyboardInterrupt if Ctrl-C or SIGTERM came (errors.interrupt_requested) though its own KeyboardInterrupt
    was swallowed where it landed (a Ctrl-C during an import ran a VAE's 90-s measure to its end)."""
    if interrupt_requested.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def work(description: str, total: int, unit: str = ""):
    """A long loop's progress, advanced by the function this yields (`advance(n)`: n more of `total` done).
    Shown while a command is `showing`: a bar on a terminal, else a line at least every so many seconds (none
    for work shorter than that)."""
    import time

    if not _shown:
        yield lambda n=1: stop_if_asked()
        return
    shown = _shown[-1]
    if shown.console.is_terminal:
        try:
            bars = shown.bars()
        except LiveError:  # the epochs' own bars are live (work inside an epoch): they show how far it is
            yield lambda n=1: stop_if_asked()
            return
        task = bars.add_task(description, total=total)

        def advance_bar(n=1):
            stop_if_asked()
            bars.advance(task, n)
        try:
            yield advance_bar
        finally:
            bars.remove_task(task)
            if not bars.tasks:  # gone before the answer is printed
                bars.stop()
                shown.progress = None
        return
    done, first, last = 0, None, 0.0  # first: (when, how many done) at the first advance; last: the last line's time

    def advance(n=1):
        nonlocal done, last, first
        stop_if_asked()
        done += n
        now = time.monotonic()
        if first is None:  # the first step holds start-up costs (a decoder's, a model's tracing): the rate and
            first, last = (now, done), now  # the interval count from its end
            return
        if now - last >= shown.every and done < total:
            last = now
            left = (total - done) * (now - first[0]) / (done - first[1])
            shown.console.print(f"{description}: {done:,}/{total:,}{unit}  {clock(left)} left", markup=False,
                                soft_wrap=True)
    yield advance
