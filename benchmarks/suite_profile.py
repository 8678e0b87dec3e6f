"""Where `make test`'s CPU time goes: the suite run as `make test` runs it, under py-spy's sampling profiler
(every process: the pytest workers and the processes the tests start), summed by what the samples were
doing. `make profile-test` runs it; the summary is printed and appended to a results file with the commit,
the command and the machine.

    python benchmarks/suite_profile.py [--rate HZ] [--out FILE.jsonl] [--raw FILE] -- PYTEST ARGS

(`make profile-test` passes `make test`'s own pytest arguments.)

The categories are inclusive and may overlap (a figure drawn inside a run's finish counts in both "figures"
and "finish"); each is the share of all samples whose stack holds one of its frames. Sampling slows the
suite (about a quarter on the 2-core VM), so the seconds are samples / rate, not the suite's own time.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import ROOT, commit, machine  # noqa: E402


# (name, frame patterns): a sample counts in a category when a frame of its stack contains a pattern (py-spy's
# frames read "function (file:line)")
CATEGORIES = [
    ("imports (all modules)", ["_find_and_load (<frozen importlib._bootstrap>"]),
    ("import tensorflow", ["<module> (tensorflow/__init__.py"]),
    ("import jax", ["<module> (jax/__init__.py"]),
    ("import sklearn (by keras.wrappers)", ["<module> (sklearn/__init__.py"]),
    ("TensorFlow tracing (tf.function)", ["trace_function (tensorflow/python/eager/polymorphic_function/"]),
    ("JAX tracing and compiling", ["_cpp_pjit.<locals>.cache_miss (jax/_src/pjit.py"]),
    ("XLA compiling (JAX)", ["backend_compile_and_load (jax/_src/compiler.py"]),
    ("Keras fit", ["fit (keras/src/backend/"]),
    ("variables made (Keras)", ["Variable.__init__ (keras/src/backend/common/variables.py"]),
    ("models saved (.keras)", ["save_model (keras/src/saving/saving_lib.py"]),
    ("models loaded (.keras)", ["load_model (keras/src/saving/saving_lib.py"]),
    ("figures (matplotlib savefig)", ["Figure.savefig (matplotlib/figure.py"]),
    ("learning curves", ["learning_curves (dlkit/plots.py"]),
    ("confusion matrices", ["confusion_matrix (dlkit/plots.py"]),
    ("a run's finish (test measures, pictures)", ["_finish (dlkit/training/train.py"]),
    ("test collection", ["pytest_collection (_pytest/main.py"]),
]
LINE = re.compile(r"^(.*) (\d+)$")
TEST = re.compile(r"^(test_\w+) \((test_\w+\.py):\d+\)$")
PROCESS = re.compile(r'^process \d+:"(.*?)"?$')  # a command with ";" in it is cut there


def summarize(raw: Path, rate: float) -> dict:
    """Seconds of samples per category, per process kind and per test module (the test's own process only)."""
    total, cats, kinds, modules = 0, collections.Counter(), collections.Counter(), collections.Counter()
    for line in raw.open(errors="replace"):
        m = LINE.match(line.rstrip("\n"))
        if not m:
            continue
        frames, n = m.group(1).split(";"), int(m.group(2))
        total += n
        commands = [p.group(1) for p in map(PROCESS.match, frames) if p]
        kinds[kind(commands[-1] if commands else "")] += n
        for name, patterns in CATEGORIES:
            if any(p in m.group(1) for p in patterns):
                cats[name] += n
        test = next(filter(None, map(TEST.match, frames)), None)
        if test:
            modules[test.group(2)] += n
    seconds = lambda c: {k: round(v / rate, 1) for k, v in c.most_common()}  # noqa: E731
    return {"samples": total, "sampled_s": round(total / rate, 1),
            "categories": {k: {"s": round(cats[k] / rate, 1), "share": round(cats[k] / max(total, 1), 3)}
                           for k, _ in CATEGORIES},
            "processes": seconds(kinds), "test_modules_in_workers": seconds(modules)}


def kind(command: str) -> str:
    if command.endswith("-u -c import sys"):  # xdist's workers: python -u -c "import sys;exec(...)"
        return "pytest workers"
    if "-m dlkit" in command or command.endswith("bin/dlkit"):
        return "dlkit commands started by tests"
    if "_probe.py" in command:
        return "probe scripts started by tests"
    if "-m pytest" in command:
        return "pytest controller"
    return "other processes started by tests"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=40, help="samples a second (default 40)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "suite_profile.jsonl")
    ap.add_argument("--raw", type=Path, help="keep py-spy's raw stacks here")
    ap.add_argument("pytest_args", nargs="+", help="after --: pytest's arguments (make profile-test: make test's)")
    args = ap.parse_args()
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.is_file():
        sys.exit("py-spy is not installed: `make install` installs it (the dev extra)")
    raw = args.raw or Path(tempfile.mkdtemp(prefix="dlkit-suite-profile-")) / "stacks.txt"
    pytest = [sys.executable, "-m", "pytest", *args.pytest_args]
    command = [str(spy), "record", "--subprocesses", "--nonblocking", "-r", str(args.rate), "-f", "raw",
               "-o", str(raw), "--", *pytest]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    outcome = next((line for line in reversed(lines) if " in " in line and ("passed" in line or "failed" in line)),
                   lines[-1] if lines else "")
    if not raw.is_file():
        sys.exit(f"py-spy wrote nothing (exit {done.returncode}): {done.stderr[-2000:]}")
    summary = summarize(raw, args.rate)
    line = {"commit": commit(ROOT), "command": " ".join(["py-spy record --subprocesses -r", str(args.rate), "--",
                                                         "python", *pytest[1:]]),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "exit_code": done.returncode,
            "pytest": outcome.strip("= "), "wall_s_under_profiler": round(wall, 1), **summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(f"{line['pytest']}: {wall:.0f} s under the profiler, {summary['sampled_s']:.0f} s of samples")
    print("\nby category (inclusive, overlapping):")
    for name, v in summary["categories"].items():
        print(f"  {v['s']:8.1f} s  {100 * v['share']:5.1f}%  {name}")
    print("\nby process:")
    for name, s in summary["processes"].items():
        print(f"  {s:8.1f} s  {name}")
    print("\ntest modules, in the workers (their own processes' samples are under 'by process'):")
    for name, s in list(summary["test_modules_in_workers"].items())[:15]:
        print(f"  {s:8.1f} s  {name}")
    print(f"\nappended to {args.out}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
