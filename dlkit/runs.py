"""`dlkit runs`: the runs under a runs root side by side, and `dlkit runs compare`: what differs between runs.

A row per run directory (`<runs root>/<recipe name>/<start stamp>/`): its status, epochs, wall time and
its task's headline figure (`Task.headlines`: test accuracy, BLEU, perplexity, MAE, ...), read from
`eval.json` (an evaluation of the test split, the last written first) or `metrics.json`. A run whose
manifest still says `running` but whose lock no process holds died without closing it (killed): it is
shown as `stopped`, to resume with `dlkit resume`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dlkit.errors import DataError, UsageError
from dlkit.rundir import RunDir, flat, read_json_object


def _live(run: Path) -> bool:
    """Whether a process holds the run's lock now (it is being trained)."""
    import fcntl
    import os

    lock = run / "run.lock"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock this process took
    return False


def read_object(path: Path) -> dict | None:
    """The file's JSON object ({} where it is absent), or None where it does not read as one: a listing shows
    such a run as unreadable instead of stopping at it."""
    try:
        return read_json_object(path)
    except DataError:
        return None


def _epochs(run: Path, metrics: dict) -> int | None:
    if "epochs_completed" in metrics:
        return metrics["epochs_completed"]
    history = run / "history.csv"
    if history.is_file():
        try:
            with open(history) as f:
                return sum(1 for _ in csv.DictReader(f))
        except (OSError, csv.Error):
            return None
    return None


def row(run: Path) -> dict:
    """One run's row; a directory that is not a run (no manifest) gives status `not a run`."""
    from dlkit import tasks

    files = {name: read_object(run / name) for name in ("manifest.json", "metrics.json", "eval.json")}
    manifest, metrics, evals = (value or {} for value in files.values())
    status = metrics.get("status") or manifest.get("status") or "unknown"
    if status == "running" and not _live(run):
        status = "stopped"
    # listed, not skipped or guessed at (the commands that read it say what to do); an unreadable eval.json
    # loses only the headline of an evaluation
    unreadable = [name for name in ("manifest.json", "metrics.json") if files[name] is None]
    if unreadable:
        status = "unreadable " + ", ".join(unreadable)
    from dlkit.tasks.base import Headline, headline

    # a task this process does not know (a plugin's, registered where its module is imported): the run's own
    task = tasks.TASKS.get(manifest.get("task", ""))
    figure = headline(task.headlines if task is not None else Headline.recorded(manifest.get("headlines")), metrics,
                      evals)
    return {"name": run.parent.name, "run": run.name, "started": manifest.get("started"), "status": status,
            "task": manifest.get("task"), "epochs": _epochs(run, metrics), "wall_time_s": metrics.get("wall_time_s"),
            # a tune's trial stopped by its stopping rule: a finished run, of fewer epochs (where, and what it lost to)
            "pruned": metrics.get("pruned") if isinstance(metrics.get("pruned"), dict) else None,
            "headline": figure, "run_dir": str(run)}


def table(runs_root: str | Path = "runs", name: str | None = None) -> dict:
    """Every run under the root (or one recipe's), oldest first."""
    root = Path(runs_root)
    if not root.is_dir():
        raise UsageError(f"no runs root at {root}; train a recipe first, or pass --runs-root DIR")
    parents = [root / name] if name else sorted(p for p in root.iterdir() if p.is_dir())
    if name and not parents[0].is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "none"
        raise UsageError(f"no runs of {name!r} under {root} (recipes with runs: {known})")
    rows = [row(run) for parent in parents for run in sorted(parent.iterdir())
            if run.is_dir() and (run / "manifest.json").is_file()]
    rows.sort(key=lambda r: (r["started"] or "", r["name"], r["run"]))
    return {"runs_root": str(root), "runs": rows}


def _differing(rows: list[dict], keys) -> dict:
    """Each of `keys` whose values are not the same in every row, with the rows' values."""
    return {k: [r.get(k) for r in rows] for k in keys
            if len({json.dumps(r.get(k), sort_keys=True, default=str) for r in rows}) > 1}


# What a run's manifest says it ran on: `runs compare` shows those that differ (a GPU host's run and a laptop's)
MACHINE_KEYS = ("backend", "device", "host", "replicas", "processes", "cpu_threads", "dlkit", "keras", "tensorflow",
                "jax", "python", "git_commit")


def _machine(manifest: dict) -> dict:
    """What a run ran on (MACHINE_KEYS), and each resume in a line: its epoch, and its backend where recorded."""
    resumes = [r for r in manifest.get("resumed") or () if isinstance(r, dict)]
    said = [f"from epoch {r.get('from_epoch')}" + (f" on {r['backend']} ({r.get('device')})" if "backend" in r else "")
            for r in resumes]
    return {**{k: manifest.get(k) for k in MACHINE_KEYS}, "resumed": "; ".join(said) or None}


def compare(targets: list[str]) -> dict:
    """The recipes' keys that differ between runs (resolved recipes, as each run saved it), what they ran on
    where it differs (MACHINE_KEYS, and the resumes), and their measures side by side: final and best epoch
    values, test measures, evaluations and the headline."""
    import yaml

    if len(targets) < 2:
        raise UsageError("give two runs or more to compare: dlkit runs compare RUN RUN...")
    runs = [RunDir.open(t) for t in targets]
    recipes, measures, machines = [], [], []
    for run in runs:
        machines.append(_machine(run.read_json(run.manifest)))
        try:
            recipes.append(flat(yaml.safe_load(run.recipe.read_text()) or {}))
        except (OSError, yaml.YAMLError) as e:
            raise UsageError(f"{run.recipe}: cannot read the run's recipe ({e})") from None
        metrics, evals = run.read_json(run.metrics), run.read_json(run.eval)
        numbers = {}
        for section in ("final", "best", "test", "val"):
            for k, v in flat(metrics.get(section) or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    numbers[f"{section}.{k}"] = v
        for key, result in evals.items():
            for k, v in flat(result if isinstance(result, dict) else {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    numbers[f"eval.{key}.{k}"] = v
        measures.append(numbers)
    mkeys = list(dict.fromkeys(k for m in measures for k in m))
    return {"runs": [str(r.root) for r in runs],
            "recipe_differences": _differing(recipes, sorted(set().union(*recipes))),
            "machine_differences": _differing(machines, machines[0]),
            "measures": {k: [m.get(k) for m in measures] for k in mkeys},
            "headline": [row(r.root)["headline"] for r in runs]}
