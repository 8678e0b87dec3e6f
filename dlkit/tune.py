"""`dlkit tune`: a search over the recipe keys its `tune` section names, each trial a normal run.

The recipe says what is searched:

    tune:
      trials: 20
      space:
        train.optimizer.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
        model.dense: {choices: [[64], [128], [256, 128]]}

Optuna chooses each trial's values (its TPE sampler, or random draws), seeded by the recipe's seed, and is
told what came of each: the trial run's `train.monitor` at its best epoch (the value that picks its
checkpoints/best.keras, `val_loss` unless the recipe says otherwise). A trial runs as `dlkit train` with the
values as `--set`s (`--parallel K` at a time, through the sweep's members), so each is a run like any other:
`dlkit evaluate`, `report`, `runs compare` and `resume` take it.

The runs are the search's memory, as they are a sweep's: run again, `dlkit tune` finds the recipe's runs at
points of the space (its other keys as they are now), hands the finished ones to Optuna, resumes an
interrupted one, and runs only the trials still wanting, so `--trials 40` after 20 runs 20 more. A diverged or
failed trial is a failed trial, and the search goes on. With `tune.prune`, each trial is handed the stopping
rule (the median rule, or successive halving's rungs: over all trials, or Hyperband's, among the trials of
its bracket) of the trials finished before it (prune_rule; training.callbacks.Pruning applies it).
"""

from __future__ import annotations

import copy
import json
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

from dlkit import backend, tasks
from dlkit.errors import EXIT_USAGE, Problem, RecipeError, UsageError
from dlkit.metrics import improves
from dlkit.recipe.loader import load_raw
from dlkit.recipe.source import locate
from dlkit.rundir import check_runs_root
from dlkit.sweep import MAX_MEMBERS, Members, existing_runs, member_command, other_code, refuse_stream, run_state

ABSENT = object()


def tune(recipe_path, trials: int | None = None, parallel: int = 1, runs_root="runs", overrides: list[str] = (),
         say: Callable[[str], None] = lambda line: None, dry_run: bool = False, plot: Path | None = None,
         force: bool = False) -> dict:
    """Run the trials still wanting and summarize every trial; `dry_run`: only what would be done. `plot`: a
    picture of the trials (plots.search), written at the end."""
    recipe_path, runs_root, overrides = Path(recipe_path), Path(runs_root), list(overrides)
    refuse_stream(recipe_path, "a tune")
    if parallel < 1 or (trials is not None and trials < 1):
        raise UsageError(f"--trials and --parallel count: at least 1, received {trials} and {parallel}")
    if trials is not None and trials > MAX_MEMBERS:  # as tune.trials in a recipe: a search runs that many runs
        raise UsageError(f"--trials {trials:,} is more trials than a search runs: at most {MAX_MEMBERS:,}, as "
                         "tune.trials in a recipe")
    if plot is not None:
        from dlkit.tasks.generative import output_path

        plot = output_path(plot, force, png=True, option="--plot")  # refused before any trial runs
    base = tasks.load_recipe(recipe_path, overrides)
    if base.tune is None:
        raise UsageError(f"{recipe_path} has no tune section: name the keys to search and their ranges, e.g.\n"
                         "tune:\n  trials: 20\n  space:\n"
                         "    train.optimizer.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
                         "(docs/recipes.md, the tune section)")
    space = space_of(base)
    both = [k for k in space if any(o.partition("=")[0].strip() == k for o in overrides)]
    if both:  # the trial's value would win over the --set's, in silence
        raise UsageError(f"{both[0]} is both --set and a key of tune.space; search it, or set it and take it out "
                         "of the space")
    monitor, direction = objective(base)
    resolved = check_space(recipe_path, overrides, space)
    wanted = trials if trials is not None else base.tune.trials
    search = Search(recipe_path, overrides, base, space, resolved)
    check_runs_root(runs_root, base.name)  # each trial would be refused alike; the plan too is

    found = search.found(runs_root)
    pending = [t for t in found if t["action"] in ("resume", "train")]
    new = max(0, wanted - len(found))
    environ, threads = backend.share_of_cores(parallel, dict(os.environ)) if parallel > 1 else (None, None)
    head = {"recipe": base.name, "monitor": monitor, "direction": direction, "sampler": base.tune.sampler,
            "space": space, "trials_wanted": wanted, "threads_per_member": threads, "warnings": []}
    if not monitor.startswith("val_"):  # a training value favours the trial that fits its training data best
        head["warnings"].append(f"the trials are judged by {monitor}, a value of the training data, which favours "
                                "the values that fit it closest, not those that generalize: judge by a "
                                "validation value (train.monitor: val_loss, with data.validation_split above 0)")
    edited = other_code(runs_root, base.name)
    if edited:
        head["warnings"].append(edited)
    for t in found:  # what the runs say so far
        if t["action"] in ("done", "failed", "busy"):
            _settle(t, monitor)
    if dry_run:
        for t in pending:
            t["command"] = member_command(t, recipe_path, runs_root)
        trials = [{"number": i, **_public(t)} for i, t in enumerate(found)]
        return _drawn({"status": "planned", **head, "trials": trials, "new_trials": new}, plot)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = search.study(direction, base.tune.sampler, base.seed + len(found), parallel)
    for t in found:  # finished and failed trials are told; the others run first
        if t["action"] in ("done", "failed"):
            study.add_trial(search.frozen(t, monitor))
    if threads is not None:
        said = backend.thread_settings()
        say(f"{parallel} trials at a time on {backend.cpu_cores()} CPU cores: {threads} thread(s) each"
            + (f" ({', '.join(said)} as you set)" if said else ""))
    for warning in head["warnings"]:
        say(f"warning: {warning}")
    say(f"tune of {base.name}: {len(found)} trial(s) found, {len(pending)} to finish, {new} new; judged by "
        f"{monitor} ({'lower' if direction == 'min' else 'higher'} is better)")

    runner = Members(recipe_path, runs_root, environ, say, command="tune")
    queue = [t["params"] for t in pending] + [None] * new
    done = [t for t in found if t["action"] in ("done", "failed", "busy")]
    pool, running, stopped = ThreadPoolExecutor(max_workers=parallel), {}, None
    most_epochs = horizon(base, space)  # Hyperband's brackets are counted for it
    try:
        while queue or running:
            while queue and len(running) < parallel:
                fixed = queue.pop(0)
                if fixed is not None:
                    study.enqueue_trial(search.to_optuna(fixed))
                trial = study.ask(search.distributions)
                t = search.member(search.from_optuna(trial.params), runs_root)
                if base.tune.prune is not None:
                    rule = prune_rule(done, monitor, direction, base.tune.prune, t["params"],
                                      t["params"].get("train.epochs", base.train.epochs), most_epochs)
                    t["env"] = {backend.TUNE_PRUNE_VARIABLE: json.dumps(rule)}
                running[pool.submit(runner.run, t)] = (trial, t)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                trial, t = running.pop(future)
                t = future.result()
                _settle(t, monitor)
                for epoch, value in _curve(t, monitor).items():  # what the pruner and TPE know of a pruned one
                    trial.report(value, epoch)
                if t.get("pruned"):
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif t["value"] is not None:
                    study.tell(trial, t["value"])
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                done.append(t)
            refused = [t for t in done if t.get("exit_code") == EXIT_USAGE]
            if not any(t.get("value") is not None for t in done) and len(refused) >= 2 and \
                    refused[-1]["error"] == refused[-2]["error"] and refused[-1]["params"] != refused[-2]["params"]:
                queue, stopped = [], refused[-1]["error"]  # refused alike at two points: the recipe's error
    except KeyboardInterrupt:
        runner.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    if stopped is not None:
        raise UsageError(f"the search stopped: its first trials, at different values, were refused alike, so the "
                         f"recipe is at fault, not the values (fix it and run the tune again):\n{stopped}")
    return _drawn(summarize(head, done), plot)


def _drawn(result: dict, plot: Path | None) -> dict:
    """The result, with the picture of its trials drawn at `plot` (its path in the result), if asked for."""
    if plot is not None:
        from dlkit import plots

        plots.search(result["trials"], result["space"], result["monitor"], result["direction"], plot,
                     f"tune of {result['recipe']}: {len(result['trials'])} trials")
        result["plot"] = str(plot)
    return result


def objective(recipe) -> tuple[str, str]:
    """(train.monitor, "min" | "max"): what judges a trial, and which way it gets better. (A recipe whose
    task has no monitor cannot hold a tune section: tasks._tuned.)"""
    return recipe.train.monitor, improves(recipe.train.monitor, recipe.train.monitor_mode)


def space_of(recipe) -> dict:
    """The recipe's tune.space as plain data: each key's range or choices."""
    return {k: v.model_dump() for k, v in recipe.tune.space.items()}


def check_space(recipe_path: Path, overrides: list[str], space: dict) -> dict:
    """Every end of every range and every choice is a value the recipe takes at its key, all problems said at
    once at the space's lines, before anything runs. Returns each choice as a resolved recipe holds it
    ([64] as [{units: 64}]; _text), by key: what a run's choice is known by."""
    _, locations = load_raw(recipe_path, overrides)
    problems, seen, resolved = [], set(), {}
    for key, rng in space.items():
        values = rng["choices"] if rng.get("choices") is not None else [rng["low"], rng["high"]]
        for value in values:
            try:
                recipe = tasks.load_recipe(recipe_path, overrides + [f"{key}={json.dumps(value)}"])
                if rng.get("choices") is not None:
                    resolved.setdefault(key, []).append(_text(_get(recipe.to_dict(), key)))
            except RecipeError as e:
                for p in e.problems:
                    said = (key, p.path, p.message)
                    if said in seen:  # a misspelt key, said of each value: once
                        continue
                    seen.add(said)
                    # a key the recipe has not is said of the key; a value it does not take, with the value
                    message = (p.message if p.message.startswith("unknown key") else f"{json.dumps(value)}: {p.message}"
                               ) if p.path == key else f"{p.path}: {p.message}"
                    problems.append(Problem(f"tune.space.{key}", message,
                                            locate(locations, ("tune", "space", key)), p.hint))
    if problems:
        raise RecipeError(problems, str(recipe_path))
    return resolved


class Search:
    """The space as Optuna's distributions, and the way between a trial's values and a member run."""

    def __init__(self, recipe_path: Path, overrides: list[str], base, space: dict, resolved: dict | None = None):
        """`resolved`: check_space's, each choice as a resolved recipe holds it (None: found here)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        self.recipe_path, self.overrides, self.space = recipe_path, overrides, space
        self.base = _without(base.to_dict(), space)
        self.known = {}  # the runs' recipes read so far, by run directory: a trial asked looks among them all
        self.resolved = check_space(recipe_path, overrides, space) if resolved is None else resolved
        self.distributions = {}
        for key, r in space.items():
            if r.get("choices") is not None:  # Optuna's choices are plain values: each list or mapping as JSON
                self.distributions[key] = CategoricalDistribution([_text(c) for c in r["choices"]])
            elif isinstance(r["low"], int) and isinstance(r["high"], int):
                self.distributions[key] = IntDistribution(r["low"], r["high"], log=bool(r.get("log")),
                                                          step=r.get("step") or 1)
            else:
                self.distributions[key] = FloatDistribution(float(r["low"]), float(r["high"]), log=bool(r.get("log")),
                                                            step=r.get("step"))

    def study(self, direction: str, sampler: str, seed: int, parallel: int):
        import optuna

        chosen = (optuna.samplers.RandomSampler(seed=seed) if sampler == "random" else
                  optuna.samplers.TPESampler(seed=seed, constant_liar=parallel > 1))
        return optuna.create_study(direction="minimize" if direction == "min" else "maximize", sampler=chosen)

    def to_optuna(self, params: dict) -> dict:
        """A trial's values as Optuna holds them (a choice as its JSON)."""
        return {k: _text(v) if "choices" in self.space[k] else v for k, v in params.items()}

    def from_optuna(self, params: dict) -> dict:
        return {k: json.loads(v) if "choices" in self.space[k] else v for k, v in params.items()}

    def point(self, recipe: dict) -> dict | None:
        """A run's values at the space's keys, if it is a run of this search: its other keys as the recipe's
        are now, and each value in its range (a range narrowed since leaves it out)."""
        if _without(recipe, self.space) != self.base:
            return None
        params = {}
        for key, r in self.space.items():
            value = _get(recipe, key)
            if key in self.resolved:
                if _text(value) not in self.resolved[key]:
                    return None
                value = r["choices"][self.resolved[key].index(_text(value))]
            elif value is ABSENT or not _inside(value, r):
                return None
            params[key] = value
        return params

    def found(self, runs_root: Path) -> list[dict]:
        """The search's trials so far, oldest first: the newest run at each point, with its action (done,
        failed, busy; resume; train: stopped before its first checkpoint, trained anew)."""
        points = {}
        for recipe, run in existing_runs(runs_root, self.base["name"], self.known):  # newest first
            params = self.point(recipe)
            if params is not None:
                points.setdefault(json.dumps(params, sort_keys=True), (params, run))
        out = []
        for params, run in sorted(points.values(), key=lambda pr: pr[1].name):
            action = run_state(run)
            out.append(self._trial(params, None if action == "train" else run, action))
        return out

    def member(self, params: dict, runs_root: Path) -> dict:
        """The trial at `params` as a sweep member: trained, or its run resumed or taken as it is where the
        point has one (two trials at one point are one run)."""
        for recipe, run in existing_runs(runs_root, self.base["name"], self.known):
            if self.point(recipe) == params:
                action = run_state(run)
                return self._trial(params, None if action == "train" else run, action)
        return self._trial(params, None, "train")

    def _trial(self, params: dict, run, action: str) -> dict:
        sets = self.overrides + [f"{k}={json.dumps(v)}" for k, v in params.items()]
        label = "trial " + ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
        return {"params": params, "sets": sets, "run": run, "action": action, "label": label}

    def frozen(self, t: dict, monitor: str):
        """A finished, pruned or failed trial as Optuna records one."""
        from optuna.trial import TrialState, create_trial

        state = (TrialState.PRUNED if t.get("pruned") else TrialState.COMPLETE if t["value"] is not None else
                 TrialState.FAIL)
        return create_trial(params=self.to_optuna(t["params"]), distributions=self.distributions,
                            value=t["value"] if state == TrialState.COMPLETE else None, state=state,
                            intermediate_values=_curve(t, monitor))


def _curve(t: dict, monitor: str) -> dict[int, float]:
    """A trial's monitored value at each epoch, from its run's history.csv ({} for a run of several phases,
    or none), read once a trial: kept in it as `curve` (a finished run's history does not change)."""
    if "curve" not in t:
        t["curve"] = _read_curve(Path(t["run"]) / "history.csv" if t.get("run") else None, monitor)
    return t["curve"]


def _read_curve(history: Path | None, monitor: str) -> dict[int, float]:
    import csv

    if history is None or not history.is_file():
        return {}
    out = {}
    try:
        with open(history, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    value = float(row.get(monitor) or "nan")
                    epoch = int(row["epoch"])
                except (KeyError, ValueError):
                    continue
                if value == value and abs(value) != float("inf"):
                    out[epoch] = value
    except OSError:
        return {}
    return out


def prune_rule(done: list[dict], monitor: str, direction: str, prune, params: dict | None = None,
               epochs: int | None = None, most_epochs: int | None = None) -> dict:
    """The stopping rule a trial (at `params`, of `epochs` epochs) is handed, from the trials before it: their
    best monitored value up to each epoch. `median`: per epoch, the median over the finished (not pruned)
    trials, for the epochs at least `startup_trials` of them reached before the trial's last (a trial that
    trained all its epochs is not pruned). `halving`: per rung (min_epochs times a power of reduction_factor)
    before the trial's last epoch, every value at that rung of the trials that reached it, pruned ones too
    (ASHA ranks a trial among all that got as far); none before `startup_trials` trials have finished.
    `hyperband`: halving within the trial's bracket (`bracket`, of those for trials of `most_epochs`: the
    search's most), among the trials of that bracket only, from its own first rung."""
    import statistics

    first = prune.min_epochs if prune.rule != "median" else None
    extra = {}
    if prune.rule == "hyperband":
        count = brackets(prune.min_epochs, prune.reduction_factor, most_epochs or epochs or prune.min_epochs)
        k = bracket(params or {}, prune.reduction_factor, count)
        first, extra = prune.min_epochs * prune.reduction_factor ** k, {"bracket": k, "brackets": count}
        done = [t for t in done if bracket(t["params"], prune.reduction_factor, count) == k]
    better = min if direction == "min" else max
    curves, counted = [], ("completed",) if prune.rule == "median" else ("completed", "pruned")
    for t in done:
        if t.get("status") not in counted:
            continue
        curve, best, running = _curve(t, monitor), None, {}
        for epoch in sorted(curve):
            best = curve[epoch] if best is None else better(best, curve[epoch])
            running[epoch] = best
        curves.append(running)
    if first is not None:  # halving, in hyperband's bracket or over all trials
        rungs, epoch = {}, first
        while len(curves) >= prune.startup_trials and any(epoch in c for c in curves) and \
                (epochs is None or epoch < epochs):
            rungs[epoch] = [c[epoch] for c in curves if epoch in c]
            epoch *= prune.reduction_factor
        return {"monitor": monitor, "rule": "halving", "reduction_factor": prune.reduction_factor,
                "min_epochs": first, "rungs": rungs, **extra}
    medians = {}
    for epoch in sorted({e for c in curves for e in c}):
        values = [c[epoch] for c in curves if epoch in c]
        if len(values) >= prune.startup_trials and (epochs is None or epoch < epochs):
            medians[epoch] = statistics.median(values)
    return {"monitor": monitor, "rule": "median", "warmup_epochs": prune.warmup_epochs, "medians": medians}


def horizon(recipe, space: dict) -> int:
    """The most epochs a trial of the search trains: the recipe's, or the most train.epochs the space holds."""
    searched = space.get("train.epochs")
    if searched is None:
        return recipe.train.epochs
    values = searched["choices"] if searched.get("choices") is not None else [searched["high"]]
    return max(int(v) for v in values)


def brackets(min_epochs: int, factor: int, epochs: int) -> int:
    """Hyperband's brackets for trials of up to `epochs` epochs, as Optuna's HyperbandPruner counts them: one
    whose first rung is min_epochs, one at min_epochs times factor, ... up to the last whose first rung is at
    most `epochs`. At least one."""
    count, rung = 1, min_epochs * factor
    while rung <= epochs:
        count, rung = count + 1, rung * factor
    return count


def bracket(params: dict, factor: int, count: int) -> int:
    """The Hyperband bracket of the trial at `params`: drawn from a hash of its values, so a trial found again
    by a later `dlkit tune` is in the bracket it ran in, with Hyperband's shares (Li et al., 2018): the
    bracket of first rung min_epochs * factor^k takes trials in proportion to factor^(s) / (s + 1), s =
    count - 1 - k, the most to the earliest rung."""
    import hashlib

    weights = [factor ** (count - 1 - k) / (count - k) for k in range(count)]
    digest = hashlib.sha256(_text(params).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2 ** 64 * sum(weights)
    for k, w in enumerate(weights):
        if u < w:
            return k
        u -= w
    return count - 1


def _text(value) -> str:
    """A choice as Optuna holds it: its JSON, keys sorted (a run's recipe may list a mapping's keys in
    another order)."""
    return json.dumps(value, sort_keys=True)


def _settle(t: dict, monitor: str) -> None:
    """The trial's value (its monitor at its best epoch) and status from its run, or why it has none."""
    from dlkit.runs import read_object, row

    t.setdefault("error", None)
    t["value"], t["status"] = None, "error"
    run = Path(t["run"]) if t.get("run") else None
    if run is None or not run.is_dir():
        return
    t["status"] = row(run)["status"]
    metrics = read_object(run / "metrics.json") if (run / "metrics.json").is_file() else None
    if t["status"] != "completed" or not metrics:
        return
    judged = metrics.get("monitor") or monitor
    value = (metrics.get("best") or {}).get(judged)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        t["status"], t["error"] = "unjudged", f"the run logged no {judged} to judge it by"
        return
    t["value"], t["judged_by"] = float(value), judged
    if metrics.get("pruned"):
        t["status"], t["pruned"] = "pruned", metrics["pruned"]
    if judged != monitor:  # no validation split: the monitor falls back to the training loss
        t["error"] = f"judged by {judged}: the run had no {monitor}"


def summarize(head: dict, done: list[dict]) -> dict:
    """Every trial, numbered in the order their runs began (a trial that made no run last), and the best."""
    seen, trials = set(), []
    for t in done:  # two trials Optuna put at one point are one run
        if t.get("run") is None or str(t["run"]) not in seen:
            seen.add(str(t.get("run")))
            trials.append(_public(t))
    trials.sort(key=lambda t: (t["run_dir"] is None, Path(t["run_dir"] or "").name))
    for number, t in enumerate(trials):
        t["number"] = number
    judged = [t for t in trials if t.get("value") is not None and t.get("status") != "pruned"]
    best = None
    if judged:
        best = (min if head["direction"] == "min" else max)(judged, key=lambda t: t["value"])
    status = "completed" if best is not None else "failed"
    return {"status": status, **head, "best": best, "trials": trials}


def _public(t: dict) -> dict:
    out = {"params": t["params"], "action": t["action"],
           "run_dir": str(t["run"]) if t.get("run") else None}
    for k in ("status", "value", "judged_by", "pruned", "error", "command"):
        if k in t:
            out[k] = t[k]
    return out


def _without(recipe: dict, space: dict) -> dict:
    """The recipe without its tune section and the space's keys: what every trial of the search shares."""
    out = copy.deepcopy(recipe)
    out.pop("tune", None)
    for key in space:
        *parents, last = key.split(".")
        node = _get(out, ".".join(parents)) if parents else out
        if isinstance(node, dict):
            node.pop(last, None)
        elif _get(node, last) is not ABSENT:  # a list's entry (model.blocks.0): emptied, the others keep their place
            node[int(last)] = None
    return out


def _get(recipe: dict, key: str):
    """The value at a dotted key (a list's entry by its index: model.blocks.0.filters), or ABSENT."""
    node = recipe
    for p in key.split("."):
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and p.isdecimal() and int(p) < len(node):
            node = node[int(p)]
        else:
            return ABSENT
    return node


def _inside(value, r: dict) -> bool:
    """Whether a run's value lies in a range of the space: between its ends, on its steps."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if isinstance(r["low"], int) and isinstance(r["high"], int) and not isinstance(value, int):
        return False
    if not r["low"] <= value <= r["high"]:
        return False
    step = r.get("step")
    return step is None or abs((value - r["low"]) / step - round((value - r["low"]) / step)) < 1e-6
