"""Results added at once to one run's eval.json: how many two processes keep, each adding its own N.

    python benchmarks/record_race.py OUT.jsonl [--each 200]

Two processes add N results each to one eval.json, as two `dlkit evaluate`s of one run at once do, first the
way evaluate did before RunDir.record (read the file, add, write it whole), then through RunDir.record (the
same under an flock on the run's folder). One line per way in OUT, with the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from record import commit, machine  # noqa: E402

from dlkit.rundir import RunDir  # noqa: E402


def add(root: str, tag: str, each: int, locked: bool) -> None:
    run = RunDir(Path(root))
    for i in range(each):
        if locked:
            with run.record(run.eval) as evals:
                evals[f"{tag}{i}"] = i
        else:  # evaluate's way before RunDir.record
            evals = run.read_json(run.eval)
            evals[f"{tag}{i}"] = i
            run.write_json(run.eval, evals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--each", type=int, default=200)
    a = ap.parse_args()
    for locked in (False, True):
        with tempfile.TemporaryDirectory() as root:
            start = time.perf_counter()
            procs = [multiprocessing.Process(target=add, args=(root, tag, a.each, locked)) for tag in "ab"]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            kept = len(json.loads((Path(root) / "eval.json").read_text()))
            row = {"way": "RunDir.record" if locked else "read, add, write", "added": 2 * a.each, "kept": kept,
                   "seconds": round(time.perf_counter() - start, 2), "commit": commit(ROOT), "machine": machine(),
                   "command": " ".join(["python", *sys.argv])}
        print(json.dumps(row))
        with a.out.open("a") as out:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
