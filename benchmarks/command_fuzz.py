"""Train and evaluate every bool and choice variant of the shipped recipes, through the CLI: each exit is a
clear one (0, or 2/3 with a message, and one JSON object on stdout), never a traceback.

    DLKIT_DATA_DIR=../shared/data python benchmarks/command_fuzz.py OUT.jsonl [--shard I/N] [--only NAME]

`make test-slow`'s fuzz (tests/test_models.py) builds each variant and draws its first batch; this one goes on
to what a user runs: `dlkit train --json` (one epoch of two steps, on the recipe's data cut by data.limit, or a
larger limit, or none where a text or series is too short for a batch), then `dlkit evaluate --json` of the
run. Each variant is one line of OUT (its exits and the ends of its outputs); a variant already in OUT is
skipped, so a run stopped (create OUT.stop) goes on where it was, and `--shard I/N` runs every Nth variant
(two processes on two cores). The variants go round the recipes, so a run stopped early has tried each.
It takes hours on a 2-core machine (an RBM's evaluate alone is a minute of AIS): outside `make test-slow`.
`--summary` prints what OUT holds: the counts of each pair of exits and every finding, with the git commit and
the machine (benchmarks/record.py) to keep beside it.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
TRIES = (["data.limit=64", "data.test_limit=32"],  # a classifier's or a GAN's few batches
         ["data.limit=20000", "data.test_limit=2000", "data.validation_limit=2000"],  # a text's windows
         [])  # a series without limits, or a dataset whose section has none
CLEAR = (0, 2, 3)


def variants(path: Path):
    """(name, recipe tree) of each bool flipped and each choice (a Literal field) at its every other value, in
    the model, data and train sections: the knobs of tests/test_models.py's fuzz."""
    from test_models import _choices, _knobs, _variants

    from dlkit.tasks import load_recipe

    recipe = load_recipe(path)
    tree = recipe.to_dict()
    knobs = []
    for section in ("model", "data", "train"):
        knobs += [(k, v) for k, v in _knobs(tree[section], (section,)) if isinstance(v[0], bool)]
        knobs += list(_choices(getattr(recipe, section), (section,)))
    for key, value, variant in _variants(tree, knobs):
        yield ".".join(map(str, key)) + f"={value}", variant


def invoke(args: list[str]) -> dict:
    from typer.testing import CliRunner

    from dlkit.cli import app

    out = CliRunner().invoke(app, args, catch_exceptions=True)
    said = {"exit": out.exit_code, "output": out.output[-600:], "stdout": out.stdout}
    if out.exception is not None and not isinstance(out.exception, SystemExit):
        said["traceback"] = "".join(traceback.format_exception(out.exception))[-1500:]
    return said


def train_briefly(recipe: Path, work: Path) -> tuple[dict, list[str]]:
    """`dlkit train --json` of one epoch of two steps under work/runs, on the first of TRIES' limits that gives
    more than a recipe or data error (or the last): what invoke() said, and those limits."""
    for sets in TRIES:
        args = ["train", str(recipe), "--runs-root", str(work / "runs"), "--json", "-q",
                "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2"]
        train = invoke(args + [a for s in sets for a in ("--set", s)])
        if train["exit"] not in (2, 3) or "traceback" in train or not sets:
            break
    return train, sets


def one(path: Path, tree: dict, work: Path) -> dict:
    import yaml

    recipe = work / path.name
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    train, sets = train_briefly(recipe, work)
    result = {"train_exit": train["exit"], "train_out": train["output"], "limits": sets}
    if "traceback" in train:
        result["train_traceback"] = train["traceback"]
    try:
        answer = json.loads(train["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        result["train_json"] = False
        return result
    if train["exit"] == 0:
        evaluated = invoke(["evaluate", answer["run_dir"], "--json", "-q"])
        result.update(eval_exit=evaluated["exit"], eval_out=evaluated["output"])
        if "traceback" in evaluated:
            result["eval_traceback"] = evaluated["traceback"]
        try:
            json.loads(evaluated["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            result["eval_json"] = False
    return result


def findings(rows: list[dict]) -> list[dict]:
    """The variants whose train or evaluate was not a clear exit with one JSON object."""
    return [r for r in rows if r.get("train_exit") not in CLEAR or r.get("eval_exit", 0) not in CLEAR
            or "train_traceback" in r or "eval_traceback" in r or r.get("train_json") is False
            or r.get("eval_json") is False]


def rows_of(out: Path) -> list[dict]:
    """OUT's lines, but for a summary line kept at the head of a results file (benchmarks/results)."""
    rows = [json.loads(line) for line in out.open()] if out.exists() else []
    return [r for r in rows if "recipe" in r]


def arguments(doc: str, shard: bool = False) -> tuple[argparse.Namespace, list[dict]]:
    """The command line the probe scripts share (OUT, --only, --summary; --shard here), and OUT's rows."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    if shard:
        ap.add_argument("--shard", default="0/1", help="I/N: every Nth variant, from the Ith")
    ap.add_argument("--only", help="recipes whose name holds this")
    ap.add_argument("--summary", action="store_true", help="print what OUT holds and stop")
    a = ap.parse_args()
    return a, rows_of(a.out)


def main() -> None:
    a, rows = arguments(__doc__, shard=True)
    if a.summary:
        from record import commit, machine

        print(json.dumps({"commit": commit(ROOT), "machine": machine(), "variants": len(rows),
                          "recipes": len({r["recipe"] for r in rows}),
                          "exits": {f"{t}/{e}": n for (t, e), n in collections.Counter(
                              (r.get("train_exit"), r.get("eval_exit", "-")) for r in rows).most_common()},
                          "findings": [{k: r[k] for k in ("recipe", "variant", "train_exit") if k in r}
                                       for r in findings(rows)]}, indent=1))
        return
    index, count = map(int, a.shard.split("/"))
    done = {(r["recipe"], r["variant"]) for r in rows}
    recipes = [p for p in sorted((ROOT / "recipes").glob("*.yaml")) if not a.only or a.only in p.stem]
    jobs = sorted(((k, p, name, tree) for p in recipes for k, (name, tree) in enumerate(variants(p))),
                  key=lambda j: (j[0], j[1].stem))  # round the recipes: each recipe's first variant, then...
    jobs = [j for j in jobs if (j[1].stem, j[2]) not in done][index::count]
    print(f"{len(jobs)} variants to try", flush=True)
    with tempfile.TemporaryDirectory(prefix="dlkit-fuzz-") as work, a.out.open("a") as out:
        for _, path, name, tree in jobs:
            if a.out.with_suffix(".stop").exists():
                break
            row = {"recipe": path.stem, "variant": name, **one(path, tree, Path(work))}
            shutil.rmtree(Path(work) / "runs", ignore_errors=True)  # a language model's run is 80 MB
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(path.stem, name, row["train_exit"], row.get("eval_exit", "-"), flush=True)


if __name__ == "__main__":
    main()
