"""What the paired benchmarks share: both sides run in fresh processes, in an order drawn at random each
round (so a drift of the machine, warming or a neighbour starting up, does not favour the side that always
goes first), and the verdict needs both clocks: the wall-time ratio of the fastest runs (noise only ever adds
time) and the ratio of median CPU time (all threads; other tenants disturb it far less). Each side's spread
and run count are printed, and each verdict is appended to benchmarks/results/bench.jsonl with the commit,
the command and the machine."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench.jsonl"


def rounds(reps: int, sides=("plain", "dlkit"), seed: int | None = None):
    """(round, side) in a random order within each round; the orders are printed as they are drawn."""
    rng = random.Random(seed if seed is not None else time.time_ns())
    for rep in range(reps):
        order = list(sides)
        rng.shuffle(order)
        for side in order:
            yield rep, side


def spread(values) -> str:
    values = sorted(values)
    return (f"min {values[0]:.3g}, median {statistics.median(values):.3g}, max {values[-1]:.3g} "
            f"(spread {100 * (values[-1] - values[0]) / values[0]:.1f}%, n={len(values)})")


def verdict(name: str, what: str, wall: dict, cpu: dict, target: float, extra: dict | None = None) -> int:
    """Print each side's spread, the two ratios (dlkit / plain) and whether both meet `target`; record the
    line. `wall` and `cpu` map side -> list of seconds (per run, or per step). Returns the exit code."""
    for side in ("plain", "dlkit"):
        print(f"  {side:5s} wall: {spread(wall[side])}")
        print(f"  {side:5s} CPU:  {spread(cpu[side])}")
    wall_ratio = min(wall["dlkit"]) / min(wall["plain"])
    cpu_ratio = statistics.median(cpu["dlkit"]) / statistics.median(cpu["plain"])
    paired = [d / p for d, p in zip(wall["dlkit"], wall["plain"])]
    ok = wall_ratio <= target and cpu_ratio <= target
    print(f"{name}: {what} dlkit/plain = {wall_ratio:.3f} wall (fastest runs), {cpu_ratio:.3f} CPU (medians); "
          f"per-round wall ratios {min(paired):.3f}..{max(paired):.3f} over {len(paired)} rounds; target <= "
          f"{target}: {'met' if ok else 'NOT met'} (both clocks must meet it)")
    record({"bench": name, "measure": what, "wall_ratio": round(wall_ratio, 4), "cpu_ratio": round(cpu_ratio, 4),
            "paired_wall_ratios": [round(r, 4) for r in paired], "target": target, "met": ok,
            "wall_s": {k: [round(v, 4) for v in vs] for k, vs in wall.items()},
            "cpu_s": {k: [round(v, 4) for v in vs] for k, vs in cpu.items()}, **(extra or {})})
    return 0 if ok else 1


def record(result: dict) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from record import machine

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "dlkit", "benchmarks"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    line = {"commit": commit + ("+uncommitted changes" if dirty else ""), "command": " ".join(sys.argv),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "result": result}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(line) + "\n")
