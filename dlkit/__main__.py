"""`dlkit` (the console script) and `python -m dlkit`.

Ctrl-C and SIGTERM are noted from the first instant, before Typer and Rich are imported (a tenth of a second):
a signal then is the command's interrupted exit (130, and its JSON object with --json), where it was a
KeyboardInterrupt's traceback. Only `signal` is imported before a handler is in place; what remains is Python's
own start (its site packages, `signal` itself), two hundredths of a second on a 2-core machine.
"""

import os
import signal


def main() -> None:
    for fd in (0, 1, 2):  # one closed (`dlkit ... >&-`) is /dev/null: the next file opened, a checkpoint, would
        try:  # take its number, and a library's writes to standard output would land in it
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest number free: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    seen = []

    def early(signum, frame):  # until dlkit.errors (dataclasses, threading) is imported
        seen.append(signum)

    early.dlkit = True  # one of dlkit's: catch_interrupts replaces it
    signal.signal(signal.SIGTERM, early)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # not under `nohup`
        signal.signal(signal.SIGHUP, early)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored (`cmd &`)
        signal.signal(signal.SIGINT, early)
    from dlkit.errors import catch_interrupts, interrupt_requested

    catch_interrupts(raising=False)
    for signum in seen:
        interrupt_requested.note(signum)
    from dlkit.cli import main as command

    command()


if __name__ == "__main__":
    main()
