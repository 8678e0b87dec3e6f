"""How long a `dlkit` process lasts after its answer: the console script's own end (dlkit.cli._leave: threads
joined, atexit run, then os._exit) against Python's usual exit (the same command through `app()`, which ends by
SystemExit and Python's teardown of every module, TensorFlow's included), in one run.

    DLKIT_DATA_DIR=../shared/data python benchmarks/command_end.py OUT.jsonl [--repeats 5]

A one-epoch cnn_mnist run (64 digits) is trained, then `dlkit evaluate RUN --json -q` (TensorFlow loaded) and
`dlkit show cnn_mnist --json` (no TensorFlow) are each run `--repeats` times both ways, alternating. Each time
is from the process's start to its first line on stdout (the answer) and to its exit; the line appended to OUT
holds the medians, the git commit, the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from record import commit, machine  # noqa: E402

USUAL = "import sys; from dlkit.cli import app; sys.argv = ['dlkit', *sys.argv[1:]]; app()"


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Seconds to the first line on stdout, and to the exit."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    answered = time.monotonic() - start
    proc.stdout.read()
    if proc.wait() != 0 or not line:
        raise SystemExit(f"{command} failed (exit {proc.returncode})")
    return answered, time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    env = {**os.environ, "DLKIT_DATA_DIR": os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data"))}
    script = [str(Path(sys.executable).parent / "dlkit")]
    with tempfile.TemporaryDirectory(prefix="dlkit-end-") as tmp:
        trained = subprocess.run([*script, "train", "cnn_mnist", "--runs-root", tmp, "--json", "-q", "--set",
                                  "train.epochs=1", "--set", "data.limit=64", "--set", "data.test_limit=32"],
                                 capture_output=True, text=True, env=env, cwd=ROOT)
        run = json.loads(trained.stdout)["run_dir"]
        row = {"commit": commit(ROOT), "machine": machine(), "repeats": a.repeats,
               "command": " ".join(["python", "benchmarks/command_end.py", str(a.out), "--repeats", str(a.repeats)])}
        for name, args in (("evaluate", ["evaluate", run, "--json", "-q"]), ("show", ["show", "cnn_mnist", "--json"])):
            ways = {"console script": script + args, "python's exit": [sys.executable, "-c", USUAL, *args]}
            times = {way: [] for way in ways}
            for _ in range(a.repeats):
                for way, command in ways.items():
                    times[way].append(timed(command, env))
            row[name] = {way: {"to_answer_s": round(statistics.median(t[0] for t in ts), 2),
                               "to_exit_s": round(statistics.median(t[1] for t in ts), 2),
                               "after_answer_s": round(statistics.median(t[1] - t[0] for t in ts), 2)}
                         for way, ts in times.items()}
            print(name, json.dumps(row[name]), flush=True)
    with a.out.open("a") as out:
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
