"""Run one dlkit command with --json and append its result to a results file, with the git commit, the
command and the machine: how the figures in docs/benchmarks.md are recorded.

    python benchmarks/record.py FILE.jsonl [--cwd DIR] -- dlkit ARGS...
    e.g. python benchmarks/record.py benchmarks/results/unsupervised.jsonl -- \\
         dlkit evaluate runs/vae_mnist/<run> -k 5000

The command runs as `python -m dlkit.cli ARGS --json` (DLKIT_DATA_DIR defaults to ../shared/data) in the
repository, or in DIR (`--cwd`: a dlkit installed from its wheel, run outside the checkout); its CPU
time (children's) and wall time are recorded beside its result, with the DLKIT_, JAX_, XLA_ and KERAS_
environment variables it ran under.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"Keras {version('keras')} on {os.environ.get('KERAS_BACKEND', 'tensorflow')}")


def commit(tree: Path) -> str:
    """The git commit of the dlkit in `tree`, marked where its dlkit/ has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "dlkit"], cwd=tree, capture_output=True, text=True)
    return head + ("+uncommitted dlkit changes" if dirty.stdout.strip() else "")


def one_thread() -> None:
    """One BLAS and OpenMP thread, set before numpy loads: the same figure on a busy machine and a quiet one."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def timed_checkout(path: str) -> Path:
    """A --checkout benchmark's dlkit: `path`'s (e.g. a `git worktree` of an older commit) goes first on
    sys.path and is imported from there, so that two commits are timed on one machine in one sitting."""
    checkout = Path(path).resolve()
    sys.path.insert(0, str(checkout))
    import dlkit

    assert Path(dlkit.__file__).resolve().is_relative_to(checkout), f"dlkit imported from {dlkit.__file__}"
    return checkout


def checkout_options(repeat: int, fresh: bool = False):
    """A --checkout benchmark's options: --checkout and --repeat (the fresh processes, with `fresh`, which adds
    the hidden --sample a fresh process is started with)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", default=str(ROOT), help="the checkout whose dlkit is timed")
    ap.add_argument("--repeat", type=int, default=repeat, help="fresh processes" if fresh else "repeats")
    if fresh:
        ap.add_argument("--sample", action="store_true", help=argparse.SUPPRESS)  # one fresh process's sample
    return ap


def fresh_samples(script: str, args: list[str], repeat: int) -> dict:
    """`repeat` runs of `script --sample ARGS`, each in a fresh process printing {"first": s, "again": s} as
    its last line: their medians, and each sample."""
    import statistics

    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, script, "--sample", *args], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"a sample failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"processes": len(runs), **{f"{k}_cpu_s": round(statistics.median(r[k] for r in runs), 3) for k in runs[0]},
            "samples": [{k: round(v, 3) for k, v in r.items()} for r in runs]}


def append_line(results: str, checkout: Path, rows: list) -> None:
    """One line in benchmarks/results/`results`: the commit of `checkout` timed, the command, the machine."""
    line = {"commit": commit(checkout), "command": "python " + " ".join(sys.argv), "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "result": rows}
    with open(ROOT / "benchmarks" / "results" / results, "a") as f:
        f.write(json.dumps(line) + "\n")


def _imported_from(cwd: Path) -> str:
    """Where `python -m dlkit.cli` in `cwd` imports dlkit from (an installed wheel's site-packages, or not)."""
    return subprocess.run([sys.executable, "-c", "import dlkit; print(dlkit.__file__)"], cwd=cwd,
                          capture_output=True, text=True).stdout.strip()


def main():
    argv, cwd = sys.argv[1:], ROOT
    if argv[1:2] == ["--cwd"] and len(argv) > 2:
        cwd = Path(argv[2]).resolve()
        argv = argv[:1] + argv[3:]
    if len(argv) < 3 or argv[1] != "--" or argv[2] != "dlkit":
        sys.exit(__doc__)
    out, args = Path(argv[0]), argv[3:]
    env = {**os.environ, "DLKIT_DATA_DIR": os.environ.get("DLKIT_DATA_DIR", str(ROOT.parent / "shared" / "data"))}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dlkit.cli", *args, "--json"], env=env, cwd=cwd,
                          capture_output=True, text=True)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout) if done.stdout.strip() else {"status": "error", "error": done.stderr[-1000:]}
    line = {"commit": commit(ROOT), "command": "dlkit " + " ".join(args),
            **({"cwd": str(cwd), "dlkit_from": _imported_from(cwd)} if cwd != ROOT else {}),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "exit_code": done.returncode,
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("DLKIT_", "JAX_", "XLA_", "KERAS_"))},
            "process_wall_s": round(time.perf_counter() - start, 1),
            "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "result": result}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line)[:2000])
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
