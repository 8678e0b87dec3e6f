"""`dlkit sweep`: a recipe over a grid of values and several seeds, each point a normal run.

A member is the recipe with one value of each `--grid key=v1,v2,...` and a seed (the recipe's seed, then
the next ones: `--seeds N`). Members run as `dlkit train` (or `dlkit resume`) processes, `--parallel K`
at a time. A member is known by its resolved recipe, which every run keeps as its recipe.yaml: running the
same sweep again finds each member's run under the runs root and skips a finished one, resumes an
interrupted one, and trains only the members that have no run. The summary gives, per grid point, the
mean and standard deviation over seeds of the task's headline figure and of every test measure.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import yaml

from dlkit import backend, tasks
from dlkit.errors import Problem, RecipeError, UsageError
from dlkit.recipe.source import Loader, is_stream, shown
from dlkit.rundir import check_runs_root


MAX_MEMBERS = 10_000  # runs in one sweep: grid points times seeds


def parse_grid(items: list[str]) -> dict[str, list]:
    """`key=v1,v2` items to {key: [values]}, each value typed as YAML (`0.1` a float, `adam` a string); a
    list value is written in brackets, `model.units=[64],[128, 64]`."""
    grid = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise UsageError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. train.optimizer.learning_rate=0.1,0.01)")
        try:
            parsed = yaml.load(f"[{values}]", Loader=Loader)  # a recipe's loader: 1e-2 is a number
        except yaml.YAMLError as e:
            raise UsageError(f"--grid {item!r}: the values do not read as YAML ({e})") from None
        key = key.strip()
        if key in grid:
            raise UsageError(f"--grid {key} is given twice; list all its values in one --grid")
        if key == "seed":
            raise UsageError("--grid seed: the seeds are --seeds N's (the recipe's seed and the next N - 1)")
        seen = [json.dumps(v, sort_keys=True) for v in parsed]
        twice = next((v for v, text in zip(parsed, seen) if seen.count(text) > 1), None)
        if twice is not None:  # the same point twice: two runs of one thing, summarized as two
            raise UsageError(f"--grid {key}: {json.dumps(twice)} is listed twice; list each value once")
        grid[key] = parsed
    return grid


def members(recipe_path: Path, grid: dict[str, list], seeds: int, overrides: list[str]) -> list[dict]:
    """Every member: its overrides, grid point, seed and resolved recipe (checked: a bad value is a recipe
    error before anything runs)."""
    base = tasks.load_recipe(recipe_path, overrides)
    keys = list(grid)
    both = [k for k in keys if any(o.partition("=")[0].strip() == k for o in overrides)]
    if both:  # the grid's value would win over the --set's, in silence
        raise UsageError(f"{both[0]} is both --set and --grid; give its values in --grid alone")
    out, problems = [], {}
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        for i in range(seeds):
            seed = base.seed + i
            sets = list(overrides) + [f"{k}={json.dumps(v)}" for k, v in point.items()] + [f"seed={seed}"]
            try:
                resolved = tasks.load_recipe(recipe_path, sets).to_dict()
            except RecipeError as e:
                for p in e.problems:
                    _note(problems, p, keys)
                break  # the next seeds would say the same of this point
            out.append({"point": point, "seed": seed, "sets": sets, "recipe": resolved})
    if problems:
        lines = [Problem(path, message, _where(where, values, grid), hint).render()
                 for (where, path, message, hint), values in problems.items()]
        raise UsageError(f"the grid has values the recipe {recipe_path} does not take:\n"
                         + "\n".join("  - " + line for line in lines[:10])
                         + (f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else ""))
    return out


def _where(where: str, values: list, grid: dict) -> str:
    """`--grid key=v1,v2` for the values a problem was found at, or `--grid key` when it was found at all of
    them (a misspelt key)."""
    if not where.startswith("--grid ") or len(values) == len(grid[where[7:]]) > 1:
        return where
    return f"{where}={','.join(values)}"


def _note(problems: dict, p: Problem, keys: list[str]) -> None:
    """Gathers a problem found at a grid point under what it says: one found at every value of a key (a
    misspelt key) is said once, of the key; one of a value, once, however many points hold the value."""
    where, value = p.location or "", None
    if where.startswith("--set ") and where[6:].partition("=")[0] in keys:
        key, _, value = where[6:].partition("=")
        where, value = f"--grid {key}", json.loads(value)
        value = value if isinstance(value, str) else json.dumps(value)  # as typed: lots, not "lots"
    values = problems.setdefault((where, p.path, p.message, p.hint), [])
    if value is not None and value not in values:
        values.append(value)


def existing_runs(runs_root: Path, name: str, known: dict | None = None) -> list[tuple[dict, Path]]:
    """(resolved recipe, run dir) of every run of the recipe under the root, newest first. `known`: the
    recipes read before, by run directory, read again only where they are not there (a run's recipe.yaml is
    written as it starts and not changed after)."""
    parent = runs_root / name
    found, digests = [], {}
    for run in sorted(parent.glob("*"), reverse=True) if parent.is_dir() else []:
        if known is not None and run in known:  # read, and its code checked, by an earlier call
            found.append((known[run], run))
            continue
        if _other_code(run, digests):
            continue
        try:
            found.append((tasks.load_run_recipe(run / "recipe.yaml").to_dict(), run))
        except Exception:  # noqa: BLE001 - a run whose recipe no longer loads is not a member
            continue
        if known is not None:
            known[run] = found[-1][0]
    return found


def other_code(runs_root: Path, name: str) -> str | None:
    """What to say of the recipe's runs that trained with other code than its plugins (files, installed
    modules) hold now (not counted by existing_runs), or None where there are none."""
    parent, digests = runs_root / name, {}
    runs = [run for run in sorted(parent.glob("*")) if _other_code(run, digests)] if parent.is_dir() else []
    if not runs:
        return None
    return (f"{len(runs)} run(s) of {name} trained with other code than its plugins hold now (edited since; "
            f"the newest {runs[-1]}) are not counted: their points are trained again")


def _other_code(run: Path, digests: dict) -> bool:
    """Whether the run trained with other code than its recipe's plugins hold now (the sha256 its manifest
    records of each plugin file, and of each installed module's file, against the file's): its recipe reads
    the same, but it is not a run of the recipe as it is. `digests`: the files' hashes, read once a call."""
    from dlkit.recipe import plugins

    # each plugin file, and each installed module's file (edited in place: an editable install), with its digest
    # now, None where it is gone (the recipe that lists it does not load; a module uninstalled or moved)
    recorded = [(k["file"], plugins.fingerprint, k["sha256"]) for k in plugins.kept(run)] + \
        [(k["path"], plugins.module_fingerprint, k["sha256"]) for k in plugins.modules_kept(run)]
    for path, digest_now, sha256 in recorded:
        if path not in digests:
            digests[path] = digest_now(Path(path))
        if digests[path] not in (None, sha256):
            return True
    return False


def run_state(run: Path) -> str:
    from dlkit.runs import row

    status = row(run)["status"]
    if status == "completed" and (run / "model.keras").is_file():
        return "done"
    if status in ("diverged", "failed", "error") or status.startswith("unreadable"):
        return "failed"
    if status == "running":
        return "busy"  # another process trains it now
    if not any(run.glob("**/checkpoints/*.keras")):
        return "train"  # stopped before its first checkpoint: nothing to resume (`resume` says so), so anew
    return "resume"  # interrupted, or stopped (killed)


def refuse_stream(recipe_path: Path, what: str) -> None:
    """Each member of a sweep or a tune is a `dlkit train` of its own, which reads RECIPE again: standard input
    or a pipe, read once, is not there for it."""
    if is_stream(recipe_path):
        raise UsageError(f"{what}'s runs are each a `dlkit train` of their own, which read RECIPE again, and "
                         f"{shown(recipe_path)} can be read once only: write the recipe to a file and give that")


def member_command(member: dict, recipe_path: Path, runs_root: Path) -> list[str]:
    """The command a member's action runs: `resume` of its run, or `train` of the recipe with its --set."""
    cli = [sys.executable, "-m", "dlkit"]
    if member["action"] == "resume":
        return cli + ["resume", str(member["run"]), "--json", "-q"]
    return cli + ["train", str(recipe_path), "--runs-root", str(runs_root), "--json", "-q",
                  *[a for s in member["sets"] for a in ("--set", s)]]


def sweep(recipe_path, grid_items: list[str], seeds: int = 1, parallel: int = 1, runs_root="runs",
          overrides: list[str] = (), say: Callable[[str], None] = lambda line: None, dry_run: bool = False) -> dict:
    """Run the members that are not finished, and summarize them all; `dry_run`: only the plan (plan())."""
    recipe_path, runs_root = Path(recipe_path), Path(runs_root)
    refuse_stream(recipe_path, "a sweep")
    if seeds < 1 or parallel < 1:
        raise UsageError(f"--seeds and --parallel count: at least 1, received {seeds} and {parallel}")
    grid = parse_grid(grid_items)
    points = math.prod(len(values) for values in grid.values())
    if points * seeds > MAX_MEMBERS:  # --seeds 100000000 listed its members until the machine ran out of memory
        raise UsageError(f"this sweep is {points * seeds:,} runs ({points:,} grid points x {seeds:,} seeds); a sweep "
                         f"runs at most {MAX_MEMBERS:,}: give fewer values or seeds")
    todo = members(recipe_path, grid, seeds, list(overrides))
    name = todo[0]["recipe"]["name"]
    check_runs_root(runs_root, name)  # each member would be refused alike; the plan too is
    existing = existing_runs(runs_root, name)
    for m in todo:
        m["run"] = next((run for rec, run in existing if rec == m["recipe"]), None)
        m["action"] = "train" if m["run"] is None else run_state(m["run"])
        m["run"] = None if m["action"] == "train" else m["run"]  # a new run (one stopped early is left as it is)
    # K members at a time share the cores: each gets cores // K threads for its libraries, unless the user
    # set a count (backend.share_of_cores); one at a time, a member has every core, as `dlkit train` has
    environ, threads = backend.share_of_cores(parallel, dict(os.environ)) if parallel > 1 else (None, None)
    edited = other_code(runs_root, name)
    if edited:
        say(f"note: {edited}")
    if dry_run:
        return {**plan(name, grid, todo, recipe_path, runs_root), "threads_per_member": threads}
    if threads is not None:
        said = backend.thread_settings()
        say(f"{parallel} members at a time on {backend.cpu_cores()} CPU cores: {threads} thread(s) each"
            + (f" ({', '.join(said)} as you set)" if said else ""))

    runner = Members(recipe_path, runs_root, environ, say)
    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        done = list(pool.map(runner.run, todo))
    except KeyboardInterrupt:
        runner.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return {**summarize(name, grid, done), "threads_per_member": threads}


class Members:
    """Members run as `dlkit train` (or `dlkit resume`) processes, `run` one to its end in the calling thread:
    a sweep's grid points, a tune's trials.

    The members run in sessions of their own, so a Ctrl-C at the terminal reaches the sweep alone; the sweep
    (or the tune) then calls `stop`: each running member is sent one SIGTERM (it closes its run as interrupted, which the
    next sweep resumes), and no other starts; the sweep waits for them and ends as interrupted (exit 130).
    SIGTERM to the sweep (a batch system's) does the same: before, the running member trained on to its end,
    and one the sweep's own kill left behind went on training alone."""

    def __init__(self, recipe_path: Path, runs_root: Path, environ: dict | None, say: Callable[[str], None],
                 command: str = "sweep"):
        self.recipe_path, self.runs_root, self.environ, self.say = recipe_path, runs_root, environ, say
        self.command = command  # what to run again, said when stopped
        self.live, self.lock, self.stopping = set(), threading.Lock(), threading.Event()

    def run(self, m: dict) -> dict:
        """Run member `m` (its action, run, sets, and `label`, or point and seed; `env`: variables of its own),
        and add to it what came of it: exit_code, run (the run directory) and error."""
        label = m.get("label") or f"{m['point']} seed {m['seed']}"
        if m["action"] in ("done", "failed", "busy"):
            self.say(f"{m['action'] if m['action'] != 'done' else 'finished already'}: {label} ({m['run']})")
            return m
        with self.lock:
            if self.stopping.is_set():
                return m
            env = {**(self.environ or os.environ), **m["env"]} if m.get("env") else self.environ  # its own too
            proc = subprocess.Popen(member_command(m, self.recipe_path, self.runs_root), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
            self.live.add(proc)
        stdout, stderr = proc.communicate()
        with self.lock:
            self.live.discard(proc)
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"status": "error", "error": stderr.strip()[-500:]}
        m["exit_code"] = proc.returncode
        m["run"] = Path(result["run_dir"]) if result.get("run_dir") else m["run"]
        m["error"] = result.get("error")
        verb = {"train": "trained", "resume": "resumed"}[m["action"]]
        # a member stopped by a signal before its own handler was set (as it started) says nothing itself
        how = (f"exit {proc.returncode}" if proc.returncode >= 0 else
               f"stopped by {signal.Signals(-proc.returncode).name} as it started")
        self.say(f"{verb}: {label}: {result.get('status')} ({how}){' ' + str(m['run']) if m['run'] else ''}")
        return m

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            for proc in self.live:
                proc.send_signal(signal.SIGTERM)
            count = len(self.live)
        self.say(f"interrupted: {count} running member(s) asked to stop; run the {self.command} again to "
                 "resume them")


def plan(name: str, grid: dict, todo: list[dict], recipe_path: Path, runs_root: Path) -> dict:
    """What a sweep would do, member by member, with nothing run: its action (train; resume its interrupted
    run; or none: done, failed, busy) and the command that action runs."""
    runs = [{"point": m["point"], "seed": m["seed"], "action": m["action"],
             "run_dir": str(m["run"]) if m["run"] else None,
             "command": member_command(m, recipe_path, runs_root) if m["action"] in ("train", "resume") else None}
            for m in todo]
    return {"status": "planned", "recipe": name, "grid": grid, "runs": runs}


def measures(test: dict) -> dict:
    """A run's test figures that a sweep averages: its numbers, not the count of examples they are over."""
    return {k: v for k, v in test.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "examples"}


def summarize(name: str, grid: dict, done: list[dict]) -> dict:
    from dlkit.runs import read_object, row

    runs, points = [], {}
    for m in done:
        r = row(m["run"]) if m["run"] is not None and Path(m["run"]).is_dir() else None
        metrics = {}
        if r is not None and (Path(m["run"]) / "metrics.json").is_file():
            test = (read_object(Path(m["run"]) / "metrics.json") or {}).get("test") or {}  # unreadable: row says
            metrics = measures(test)
        entry = {"point": m["point"], "seed": m["seed"], "action": m["action"],
                 "run_dir": str(m["run"]) if m["run"] else None, "status": r["status"] if r else "error", "headline": r["headline"] if r else None, "test": metrics,
                 "error": m.get("error")}
        runs.append(entry)
        points.setdefault(json.dumps(m["point"], sort_keys=True), []).append(entry)
    table = []
    for key, entries in points.items():
        ok = [e for e in entries if e["status"] == "completed"]
        stats = {}
        heads = [e["headline"]["value"] for e in ok if e["headline"]]
        if heads:
            stats["headline"] = {"label": ok[0]["headline"]["label"], **_mean_std(heads)}
        for k in dict.fromkeys(k for e in ok for k in e["test"]):
            stats[k] = _mean_std([e["test"][k] for e in ok if k in e["test"]])
        table.append({"point": json.loads(key), "runs": len(entries), "completed": len(ok), **stats})
    failed = [r for r in runs if r["status"] != "completed"]
    return {"status": "completed" if not failed else "incomplete", "recipe": name, "grid": grid,
            "summary": table, "runs": runs}


def _mean_std(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}
