"""Ctrl-C and SIGTERM at any moment of a real `dlkit` process: each command answers (exit 0), or says it was
interrupted (exit 130 after SIGTERM; after Ctrl-C it ends by SIGINT itself, -2 here), with one JSON object on
stdout, no traceback, every file whole and no temporary left behind.

    DLKIT_DATA_DIR=../shared/data python benchmarks/interrupt_probe.py OUT.jsonl [--only NAME] [--summary]

`--only NAME` probes every shipped recipe whose name holds NAME, not only the few below.

A few recipes (one per task kind, a DBN's phases and a CycleGAN's two domains) are trained one epoch of two steps
(command_fuzz.py's train_briefly); then each command after training that exits 0 on its run (command_matrix.py's
list, and `train` itself) is run once through the `dlkit` console script to time it, and again with a signal sent at
fractions of that time (SIGINT and SIGTERM in turn): in its first instant (but not before 0.05 s: Python's own
start, where no handler of dlkit's can be yet), while it starts, while it works, and as it ends. After each try,
every file under the run's folder and the command's outputs is read back (JSON, PNG, .npy, CSV, HTML, .keras), no
hidden name (what dlkit writes under until an output is whole) is left, and after a command's tries the run still
evaluates (where it did before them). The tests send a signal at a chosen point in-process (tests/test_cli.py); this
sends it wherever the moment falls, to the process as a shell or a batch system does. One line per try in OUT; a
recipe already there is skipped. About an hour on a 2-core machine. `--summary` prints the counts of exits and every
finding, with the commit and the machine.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from command_fuzz import arguments, train_briefly  # noqa: E402
from command_matrix import commands, make_inputs  # noqa: E402
from record import commit, machine  # noqa: E402

RECIPES = ("cnn_mnist", "vae_mnist", "gan_mnist", "char_lstm_shakespeare", "seq2seq_fra_eng", "mlp_regressor_diabetes",
           "airline_lstm", "dbn_mnist", "cyclegan_mnist_m")  # the last two: phases, and two domains
FRACTIONS = (0.02, 0.3, 0.6, 0.85, 0.97)  # of the command's own time
EARLIEST = 0.05  # s: before it, Python's own start (its site packages), where no handler of dlkit's can be yet
DLKIT = Path(sys.executable).parent / "dlkit"  # the console script, as a user's shell runs it


def run_dlkit(args: list[str], delay: float | None = None, signum: int = signal.SIGINT, timeout: float = 900) -> dict:
    """The console script's exit, stdout, stderr and time; with `delay`, `signum` sent after that many seconds."""
    env = {**os.environ, "DLKIT_DATA_DIR": os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data"))}
    start = time.monotonic()
    # SIGINT as a shell's foreground command has it (this script run with `&` ignores it, and so would its children)
    proc = subprocess.Popen([str(DLKIT), *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if delay is not None:
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a process that does not end is a finding, not the probe's end
        proc.kill()
        out, err = proc.communicate()
        return {"exit": f"hung: killed after {timeout} s", "stdout": out, "stderr": err,
                "seconds": round(time.monotonic() - start, 2)}
    return {"exit": proc.returncode, "stdout": out, "stderr": err, "seconds": round(time.monotonic() - start, 2)}


def whole(path: Path) -> str | None:
    """Why a file is not whole (None: it reads back)."""
    import numpy as np
    from PIL import Image

    from dlkit.files import is_temporary

    if is_temporary(path.name):
        return "a temporary file left behind"
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines() if line]
        elif path.suffix == ".png":
            with Image.open(path) as im:
                im.load()
        elif path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".html":
            if not path.read_text().rstrip().endswith("</html>"):
                return "an HTML page without its end"
        elif path.suffix == ".keras":
            import zipfile

            with zipfile.ZipFile(path) as z:
                if z.testzip() is not None:
                    return "a damaged member in the .keras zip"
        elif path.suffix == ".csv":
            import csv

            list(csv.reader(path.open()))
    except Exception as e:  # noqa: BLE001 - what reading it said is the finding
        return f"{type(e).__name__}: {e}"[:200]
    return None


def hidden(*folders: Path) -> set[str]:
    return {str(p) for folder in folders if folder.exists() for p in folder.rglob(".*")}


def broken(*folders: Path, known: set[str] = frozenset()) -> dict:
    """Each file under `folders` that does not read back, and each hidden name (what dlkit writes under until
    its output is whole: a file's or an export's temporary) but those `known` (a whole command leaves them: an
    --out-dir's mark), and why."""
    found = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")) if folder.exists() else []:
            if p.name.startswith(".") and str(p) not in known:
                found[str(p)] = "a hidden name left behind (a temporary)"
            elif p.is_file() and (why := whole(p)) is not None:
                found[str(p)] = why
    return found


def judged(said: dict, signum: int, run: Path | None, work: Path, known: set[str]) -> dict:
    """One try's row: its exit and what was wrong with it. Interrupted, the process exits 130 after SIGTERM and
    ends by SIGINT itself after Ctrl-C (-2 here, 130 in a shell's `$?`)."""
    row = {"exit": said["exit"], "seconds": said["seconds"]}
    wrong = []
    stopped = 130 if signum == signal.SIGTERM else -signal.SIGINT
    if said["exit"] not in (0, stopped):
        wrong.append(f"exit {said['exit']}")
    if "Traceback" in said["stderr"]:
        wrong.append("traceback: " + said["stderr"][-600:])
    try:
        answer = json.loads(said["stdout"])
        if said["exit"] == stopped and answer.get("status") != "interrupted":
            wrong.append(f"exit 130 answered {said['stdout'][-200:]}")
    except ValueError:
        wrong.append(f"stdout is not one JSON object: {said['stdout'][-200:]!r}")
    files = broken(*([run] if run else []), work, known=known)
    if files:
        wrong.append(f"files: {files}")
    if wrong:
        row.update(wrong=wrong, stdout=said["stdout"][-400:], stderr=said["stderr"][-1500:])
    return row


def tries(name: str, args: list[str], run: Path | None, work: Path, out, recipe: str, evaluates: bool) -> None:
    """The command once to time it, then once per FRACTIONS with a signal; each a line of `out`."""
    full = run_dlkit(args)
    if full["exit"] != 0:
        return  # not a command of this run's task, or a wrong input: command_matrix.py's business
    known = hidden(work)
    for i, fraction in enumerate(FRACTIONS):
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        if name == "resume":  # each try one epoch further: the run it resumes is not finished already
            args = args[:-1] + [str(int(args[-1]) + 1)]
        said = run_dlkit(args, max(EARLIEST, fraction * full["seconds"]), signum)
        row = {"recipe": recipe, "command": name, "signal": signal.Signals(signum).name, "fraction": fraction,
               "full_seconds": full["seconds"], **judged(said, signum, run, work, known)}
        if evaluates and run is not None and i == len(FRACTIONS) - 1:  # after the command's tries, the run as it was
            after = run_dlkit(["evaluate", str(run), "-q"])
            if after["exit"] != 0:
                row.setdefault("wrong", []).append(f"the run no longer evaluates: {after['stderr'][-300:]}")
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(recipe, name, row["signal"], fraction, row["exit"], "WRONG" if "wrong" in row else "ok", flush=True)


def one(recipe: str, inputs: Path, out) -> None:
    with tempfile.TemporaryDirectory(prefix="dlkit-interrupt-") as tmp:
        work = Path(tmp)
        train, sets = train_briefly(ROOT / "recipes" / f"{recipe}.yaml", work)
        if train["exit"] != 0:
            out.write(json.dumps({"recipe": recipe, "command": "train", "exit": train["exit"],
                                  "wrong": ["the brief training failed: " + train["output"][-300:]]}) + "\n")
            return
        run = Path(json.loads(train["stdout"].strip().splitlines()[-1])["run_dir"])
        train_args = ["train", str(ROOT / "recipes" / f"{recipe}.yaml"), "--runs-root", str(work / "runs"),
                      "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2"] + [
                      a for s in sets for a in ("--set", s)]
        tries("train", train_args, None, work, out, recipe, False)
        evaluates = run_dlkit(["evaluate", str(run), "-q"])["exit"] == 0  # a run without a test split does not
        for name, args in commands(recipe, str(run), inputs, work / "outputs"):
            (work / "outputs").mkdir(exist_ok=True)
            tries(name, args, run, work, out, recipe, evaluates)


def findings(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "wrong" in r]


def main() -> None:
    a, rows = arguments(__doc__)
    if a.summary:
        exits = collections.Counter(str(r["exit"]) for r in rows)
        print(json.dumps({"commit": commit(ROOT), "machine": machine(), "tries": len(rows),
                          "commands": len({(r["recipe"], r["command"]) for r in rows}),
                          "exits": dict(exits.most_common()), "findings": findings(rows)}, indent=1))
        return
    done = {r["recipe"] for r in rows}
    with tempfile.TemporaryDirectory(prefix="dlkit-interrupt-inputs-") as tmp, a.out.open("a") as out:
        inputs = make_inputs(Path(tmp))
        # without --only, the recipes above; with it, any shipped recipe whose name holds it
        names = RECIPES if not a.only else sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml") if a.only in p.stem)
        for recipe in names:
            if recipe not in done:
                one(recipe, inputs, out)


if __name__ == "__main__":
    main()
