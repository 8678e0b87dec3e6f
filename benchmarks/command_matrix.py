"""Every command a user runs after training, on a run of every shipped recipe, through the CLI: each exit is a
clear one (0, or 2/3/6 with a message, and one JSON object on stdout), never a traceback.

    DLKIT_DATA_DIR=../shared/data python benchmarks/command_matrix.py OUT.jsonl [--only NAME] [--summary]

Each recipe is trained one epoch of two steps (as command_fuzz.py trains a variant), then: resume to a second
epoch, evaluate, generate (samples, an interpolation, an --out-dir, --input images, a --prompt, a --label, a
--code), predict (images and an .npy, a digit strip, text, text with --plot, a CSV), encode (a split, images),
export (saved_model, onnx, litert) and report. A command the run's task has no use for must say so (exit 2). Where
a command took its good input (exit 0), the inputs a user gets wrong go to it too: an .npy of no images, floats
in [0, 1], a corrupt or empty file, a folder of none, a CSV without the columns, an empty --file, a --temperature
of nan, inf or 1e-320. The inputs are made from the slices under tests/data. One line per recipe in OUT (each
command's exit, and the end of what it said where it was not 0); a recipe already there is skipped. About 40
minutes on a 2-core machine (an RBM's evaluate is a minute of AIS). `--summary` prints what OUT holds: the count
of each command's exits and every finding, with the git commit and the machine (benchmarks/record.py).
"""

from __future__ import annotations

import collections
import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from command_fuzz import CLEAR, arguments, invoke, train_briefly  # noqa: E402
from record import commit, machine  # noqa: E402

DATA = ROOT / "tests" / "data"
SERIES = {"airline": DATA / "airline_passengers" / "airline-passengers.csv",
          "energy": DATA / "pjm_hourly_energy" / "AEP_hourly.csv"}


def make_inputs(at: Path) -> Path:
    """The good and the bad inputs, in `at`."""
    from PIL import Image
    from sklearn.datasets import load_diabetes

    raw = gzip.decompress((DATA / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    digits = np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)
    Image.fromarray(digits[0]).save(at / "digit.png")
    Image.fromarray(np.concatenate(list(digits[:4]), axis=1)).save(at / "strip.png")  # four digits in a row
    np.save(at / "digits.npy", digits[:3])
    Image.fromarray(np.load(DATA / "cifar10" / "cifar10-subset.npz")["x_test"][0]).save(at / "colour.png")
    load_diabetes(as_frame=True, scaled=False).frame.drop(columns=["target"]).head(5).to_csv(at / "rows.csv",
                                                                                              index=False)
    np.save(at / "none.npy", digits[:0])
    np.save(at / "unit.npy", digits[:2] / 255.0)
    np.save(at / "nan.npy", np.full((1, 28, 28), np.nan, np.float32))
    np.save(at / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(at / "flat.npy", np.zeros(10, np.uint8))
    (at / "cut.npy").write_bytes((at / "digits.npy").read_bytes()[:100])
    (at / "corrupt.png").write_text("not a png")
    (at / "empty.txt").write_text("")
    (at / "blank.txt").write_text("\n  \n")
    (at / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (at / "nothing").mkdir()
    (at / "two_columns.csv").write_text("age,sex\n1,2\n")
    (at / "header_only.csv").write_text((at / "rows.csv").read_text().splitlines()[0] + "\n")
    (at / "one_row.csv").write_text('"Month","Passengers"\n"1949-01",112\n')
    return at


def commands(stem: str, run: str, inputs: Path, work: Path):
    """(name, arguments) of each command after training."""
    image = str(inputs / ("colour.png" if "cifar" in stem else "digit.png"))
    out = lambda name: ["--out", str(work / name), "--force"]  # noqa: E731
    csv = next((str(path) for key, path in SERIES.items() if key in stem), str(inputs / "rows.csv"))
    yield "resume", ["resume", run, "--epochs", "2"]
    yield "evaluate", ["evaluate", run]
    yield "generate", ["generate", run, "-n", "4", *out("samples.png")]
    yield "generate --interpolate", ["generate", run, "-n", "4", "--interpolate", *out("strip.png")]
    yield "generate --out-dir", ["generate", run, "-n", "4", "--out-dir", str(work / "images"), "--force"]
    yield "generate --input", ["generate", run, "-i", image, *out("given.png")]
    yield "generate --prompt", ["generate", run, "--prompt", "the ", "--length", "20", *out("text.txt")]
    yield "generate --label", ["generate", run, "-n", "4", "--label", "3", *out("label.png")]
    yield "generate --code", ["generate", run, "-n", "4", "--code", "3", *out("code.png")]
    yield "predict FILE", ["predict", run, image, str(inputs / "digits.npy")]
    yield "predict strip", ["predict", run, str(inputs / "strip.png")]
    yield "predict --text", ["predict", run, "-t", "this was a great movie", "-t", "go ."]
    yield "predict --plot", ["predict", run, "-t", "go .", "--plot", str(work / "attention.png"), "--force"]
    yield "predict --csv", ["predict", run, "--csv", csv, *out("predictions.csv")]
    yield "encode", ["encode", run, "--force"]
    yield "encode FILE", ["encode", run, image, *out("codes.npy")]
    for fmt in ("saved_model", "onnx", "litert"):
        yield f"export {fmt}", ["export", run, "--format", fmt, "--force"]
    yield "report", ["report", run, "--force"]


BAD_IMAGES = ("none.npy", "unit.npy", "nan.npy", "objects.npy", "flat.npy", "cut.npy", "corrupt.png", "empty.txt",
              "binary.txt", "nothing", "missing.png", "rows.csv")


def wrong_inputs(good: str, args: list[str], inputs: Path):
    """The wrong inputs to a command that took its good one (`good`, `args` as commands() gave them)."""
    if good in ("predict FILE", "generate --input", "encode FILE"):
        keep = [a for a in args if not a.startswith(str(inputs))]  # the command without its image
        for name in BAD_IMAGES:
            at = keep.index("-i") + 1 if "-i" in keep else 2
            yield f"{good} {name}", keep[:at] + [str(inputs / name)] + keep[at:]
    elif good == "predict --csv":
        for name in ("two_columns.csv", "header_only.csv", "one_row.csv", "empty.txt", "binary.txt", "digit.png",
                     "missing.csv"):
            yield f"{good} {name}", args[:2] + ["--csv", str(inputs / name)]
    elif good == "predict --text":
        for name in ("empty.txt", "blank.txt", "binary.txt", "nothing", "missing.txt"):
            yield f"predict --file {name}", args[:2] + ["--file", str(inputs / name)]
        yield "predict --text ''", args[:2] + ["-t", ""]
    elif good == "generate --prompt":
        for t in ("nan", "inf", "-1", "1e-320", "0"):
            yield f"{good} --temperature {t}", args + ["--temperature", t]
        yield f"{good} '\\x00'", args[:2] + ["--prompt", "\x00"] + args[4:]


def said(args: list[str]) -> dict:
    """A command's exit and, where it was not 0 or not clear, the end of what it said."""
    out = invoke(args + ["--json", "-q"])
    row = {"exit": out["exit"]}
    try:
        json.loads(out["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        row["json"] = False
    if "traceback" in out:
        row["traceback"] = out["traceback"]
    if out["exit"] != 0:
        row["said"] = out["stdout"].strip()[-400:] or out["output"][-400:]
    return row


def one(path: Path, inputs: Path, work: Path) -> dict:
    train, sets = train_briefly(path, work)
    row = {"recipe": path.stem, "train": train["exit"], "limits": sets, "commands": {}}
    if train["exit"] != 0:
        row["said"] = train["output"][-600:]
        return row
    run = json.loads(train["stdout"].strip().splitlines()[-1])["run_dir"]
    for name, args in commands(path.stem, run, inputs, work):
        row["commands"][name] = said(args)
        print(path.stem, name, row["commands"][name]["exit"], flush=True)
        if row["commands"][name]["exit"] == 0:
            for wrong, bad in wrong_inputs(name, args, inputs):
                row["commands"][wrong] = said(bad)
    return row


def findings(rows: list[dict]) -> list[tuple[str, str, dict]]:
    """The commands whose exit was not a clear one with one JSON object."""
    return [(r["recipe"], name, c) for r in rows
            for name, c in [("train", {"exit": r["train"]}), *r["commands"].items()]
            if c["exit"] not in (*CLEAR, 6) or "traceback" in c or c.get("json") is False]


def main() -> None:
    a, rows = arguments(__doc__)
    if a.summary:
        exits = collections.Counter(f"{c['exit']}" for r in rows for c in r["commands"].values())
        print(json.dumps({"commit": commit(ROOT), "machine": machine(), "recipes": len(rows),
                          "commands": sum(len(r["commands"]) for r in rows), "exits": dict(exits.most_common()),
                          "findings": [{"recipe": r, "command": n, "exit": c["exit"],
                                        "said": c.get("traceback", c.get("said", ""))[-300:]}
                                       for r, n, c in findings(rows)]}, indent=1))
        return
    done = {r["recipe"] for r in rows}
    recipes = [p for p in sorted((ROOT / "recipes").glob("*.yaml"))
               if (not a.only or a.only in p.stem) and p.stem not in done]
    with tempfile.TemporaryDirectory(prefix="dlkit-matrix-") as tmp, a.out.open("a") as out:
        inputs = make_inputs(Path(tmp))
        for path in recipes:
            with tempfile.TemporaryDirectory(prefix="dlkit-matrix-run-") as work:
                row = one(path, inputs, Path(work))
            out.write(json.dumps(row) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
