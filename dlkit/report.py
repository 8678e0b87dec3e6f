"""`report(run_dir)`: one self-contained HTML page of a run, the library function behind `dlkit report`.

The page holds what the run directory holds, for reading or sending as one file: the run's status and
headline (as `dlkit runs` shows it), where and how it ran (the manifest), the measures (metrics.json: the
final and best epochs, the test split), every evaluation (eval.json), the exports (exports.json), the
learning curves and the task's pictures (confusion matrices, sample grids, BLEU by length, attention
maps, reconstructions: every PNG and GIF at the run's top level) embedded as data URIs, the epoch history
as a table, and the recipe as the run saved it. No script and nothing fetched: it opens offline.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

from dlkit.errors import StorageError, UsageError
from dlkit.files import write_atomic
from dlkit.rundir import RunDir
from dlkit.runs import flat, row

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #1d2330; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccd; }
.sub { color: #5a6275; margin-top: 0; } .headline { font-size: 1.25em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #e4e6ee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f4f5f9; padding: 0.8em; overflow-x: auto; font-size: 13px; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #e4e6ee; } figcaption { color: #5a6275; font-size: 13px; }
.status-completed { color: #1a7f37; } .status-failed, .status-diverged { color: #c62828; }
"""
MANIFEST_KEYS = ("task", "started", "ended", "host", "device", "backend", "dlkit", "keras", "tensorflow", "jax",
                 "python", "seed", "git_commit", "recipe_file", "data_origin")
HISTORY_ROWS = 200  # longer histories show their first and last rows


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def _table(rows: list[tuple], header: tuple | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(
        f'<td class="num">{_number(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool) else f"<td>{_e(c)}</td>"
        for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _plain(value) -> str:
    """One item of a listed measure as text, unescaped (its table cell escapes it once): a number as _number
    writes it, a mapping as `key value` pairs (an autoencoder's worst reconstructed, a translation's examples)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    return str(value)


def _measures(values: dict) -> str:
    """A dict of measures as key/value rows: numbers and short text; long lists are summarized."""
    rows = []
    for key, value in flat(values).items():
        if isinstance(value, list):  # joined unescaped: its cell escapes it (each item was escaped twice)
            between = "; " if any(isinstance(v, dict) for v in value) else ", "
            value = f"[{len(value)} values]" if len(value) > 12 else between.join(_plain(v) for v in value)
        elif isinstance(value, str) and len(value) > 200:
            value = value[:200] + "..."
        rows.append((key, value))
    return _table(rows) if rows else "<p>none</p>"


def _image(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}[path.suffix.lower()]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{_e(path.name)}">'
            f"<figcaption>{_e(path.name)}</figcaption></figure>")


def _history(path: Path) -> str:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, csv.Error):
        return ""
    if len(rows) < 2:
        return ""
    header, body = rows[0], rows[1:]
    if len(body) > HISTORY_ROWS:
        body = body[: HISTORY_ROWS // 2] + [["..."] * len(header)] + body[-HISTORY_ROWS // 2:]

    def cell(v):
        try:
            return float(v) if "." in v or "e" in v else int(v)
        except ValueError:
            return v

    return _table([tuple(cell(v) for v in r) for r in body], tuple(header))


def _pictures(run: RunDir) -> list[Path]:
    """The run's pictures, the learning curves first."""
    found = sorted(p for p in run.root.iterdir() if p.is_file() and p.suffix.lower() in (".png", ".gif", ".jpg", ".jpeg"))
    return sorted(found, key=lambda p: (p.name != "learning_curves.png", p.suffix.lower() == ".gif", p.name))


def render(run: RunDir) -> str:
    """The page's HTML."""
    summary = row(run.root)
    manifest, metrics = run.read_json(run.manifest), run.read_json(run.metrics)
    evals, exports = run.read_json(run.eval), run.read_json(run.root / "exports.json")
    try:
        recipe = run.recipe.read_text()
    except OSError as e:
        raise UsageError(f"{run.recipe}: cannot read the run's recipe ({e})") from None
    status = summary["status"]
    headline = summary["headline"]
    name = metrics.get("name") or summary["name"]
    parts = [f"<h1>{_e(name)}</h1>",
             f'<p class="sub">{_e(run.root)} · <span class="status-{_e(status)}">{_e(status)}</span>'
             + (f" · {summary['epochs']} epochs" if summary["epochs"] is not None else "")
             + (f" · {summary['wall_time_s']:.0f} s" if summary["wall_time_s"] is not None else "") + "</p>"]
    if headline:
        parts.append(f'<p class="headline">{_e(headline["label"])}: <b>{_number(headline["value"])}</b> '
                     f'<span class="sub">({_e(headline["source"])})</span></p>')
    parts.append("<h2>Run</h2>" + _table([(k, str(manifest[k])) for k in MANIFEST_KEYS if manifest.get(k) is not None]))
    resumed = [r for r in manifest.get("resumed") or () if isinstance(r, dict)]
    if resumed:
        parts.append("<h2>Resumed</h2>" + _table(
            [(r.get("at"), r.get("from_epoch"), r.get("phase", ""), r.get("backend", ""), r.get("device", ""),
              r.get("host", "")) for r in resumed], ("at", "from epoch", "phase", "backend", "device", "host")))
    for section, title in (("test", "Test"), ("val", "Validation"), ("final", "Last epoch"),
                           ("best", "Best of each measure, over the epochs")):
        if isinstance(metrics.get(section), dict) and metrics[section]:
            parts.append(f"<h2>{title}</h2>" + _measures(metrics[section]))
    others = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list)) and k not in ("name", "run_dir")}
    if others:
        parts.append("<h2>Training</h2>" + _measures(others))
    for key, result in evals.items():
        if isinstance(result, dict):
            shown = {k: v for k, v in result.items() if k not in ("status", "task", "run_dir")}
            parts.append(f"<h2>Evaluation: {_e(key)}</h2>" + _measures(shown))
    if exports:
        parts.append("<h2>Exports</h2>" + _table(
            [(fmt, r.get("path"), r.get("model"), r.get("checked_with"), r.get("max_abs_diff"))
             for fmt, r in exports.items() if isinstance(r, dict)],
            ("format", "path", "model", "checked with", "max |difference|")))
    pictures = _pictures(run)
    if pictures:
        parts.append("<h2>Pictures</h2>" + "".join(_image(p) for p in pictures))
    history = _history(run.history)
    if history:
        parts.append("<h2>History</h2>" + history)
    parts.append("<h2>Recipe</h2><pre>" + _e(recipe) + "</pre>")
    title = f"{name} · {run.root.name} · dlkit"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{''.join(parts)}</body></html>\n")


def report(run_dir, out=None, force: bool = False) -> dict:
    """Write the run's page (RUN/report.html unless `out`); an existing file is replaced only with `force`."""
    run = RunDir.open(run_dir)
    target = Path(out) if out is not None else run.root / "report.html"
    if target.suffix.lower() not in (".html", ".htm") or target.is_dir():  # r.txt held HTML; a folder was errno 21
        raise UsageError(f"--out {target}: the report is one HTML file; give a file name ending in .html")
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to replace it")
    page = render(run)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, page)
    except OSError as e:
        raise StorageError(f"cannot write {target}: {e}") from None
    return {"status": "completed", "run_dir": str(run.root), "out": str(target), "size_bytes": target.stat().st_size,
            "pictures": [p.name for p in _pictures(run)]}

