"""`dlkit report`: one self-contained HTML page of a run, checked as text and opened in headless Chromium
(no console errors, nothing failed to load, a screenshot that is not blank)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlkit.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def trained(tiny_run):
    return tiny_run


def test_the_page_holds_the_run_and_needs_nothing_else(trained):
    out = run("report", trained, "--json")
    assert out.exit_code == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    page = Path(result["out"]).read_text()
    assert Path(result["out"]) == trained / "report.html"
    metrics = json.loads((trained / "metrics.json").read_text())
    assert f"{metrics['test']['accuracy']:.4g}" in page  # the headline and the test table
    pictures = sorted(p.name for p in trained.glob("*.png"))
    assert {"learning_curves.png", "confusion_matrix.png"} <= set(pictures) and result["pictures"][0] == "learning_curves.png"
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(pictures)
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page  # self-contained, no scripts
    assert page.count("<tr>") >= 2 + 2  # history rows (2 epochs) among the tables

    again = run("report", trained)
    assert again.exit_code == 2 and "--force" in again.stderr
    assert run("report", trained, "--force").exit_code == 0
    assert run("report", trained.parent).exit_code == 2  # not a run directory
    # a page written as r.txt, and --force onto the run's own folder (errno 21, exit 5), are refused at once
    for out in (trained.parent / "r.txt", trained):
        wrong = run("report", trained, "--out", out, "--force", "--json")
        assert wrong.exit_code == 2 and "give a file name ending in .html" in json.loads(wrong.stdout)["error"]
    assert not (trained.parent / "r.txt").exists()


def test_a_listed_measure_is_escaped_once():
    """An evaluation's short lists (an RBM's warnings, an autoencoder's worst reconstructed images under
    --data, a translation's examples) read as text in their cell: each item was escaped, then the whole cell
    again, so a quote showed as &#x27; on the page and a mapping as Python's repr."""
    from dlkit.report import _measures

    page = _measures({"warnings": ["log p > 0: 'check' <it>"], "steps": [1, 2.5],
                      "worst": [{"input": "a&b.png", "mse": 0.25}, {"input": "c.png", "mse": 0.125}]})
    assert "<td>log p &gt; 0: &#x27;check&#x27; &lt;it&gt;</td>" in page and "&amp;" not in page.replace("a&amp;b", "")
    assert "<td>1, 2.5</td>" in page
    assert "<td>input a&amp;b.png, mse 0.25; input c.png, mse 0.125</td>" in page


def test_an_evaluation_table_shows_counts_as_whole_numbers():
    from rich.console import Console

    from dlkit.tasks.generative import measures

    console = Console(file=io.StringIO(), width=100)
    console.print(measures({"run_dir": "/runs/r/1"}, "test split", [("examples", np.int64(12000)), ("samples k", 50),
                                                                   ("accuracy", 0.25)])[0])
    shown = console.file.getvalue()
    assert "│ 12,000 │" in shown and "│     50 │" in shown and "│ 0.2500 │" in shown and "50.0000" not in shown, shown


def test_a_run_that_died_is_reported_as_stopped(trained, tmp_path):
    import shutil

    copy = tmp_path / "tiny" / "20261130-000000"
    shutil.copytree(trained, copy)
    (copy / "metrics.json").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    with open(copy / "recipe.yaml", "a") as f:
        f.write("# a <b>note</b> & <script>alert(1)</script>\n")
    assert run("report", copy, "--out", tmp_path / "page.html").exit_code == 0
    page = (tmp_path / "page.html").read_text()
    assert 'class="status-stopped">stopped' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page  # the recipe as text, escaped


def test_a_run_under_a_folder_whose_name_is_not_utf8(trained, tmp_path):
    """A folder named in Latin-1 on disk ("r\\xfcns"; Python's surrogate escapes): the page was a UnicodeEncodeError's
    traceback; it holds the name's own bytes, as the disk has them."""
    import os
    import shutil

    copy = tmp_path / os.fsdecode(b"r\xfcns") / "tiny" / "20261130-000000"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("report.html"))  # one an earlier test wrote
    out = run("report", copy, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["size_bytes"] == (copy / "report.html").stat().st_size
    assert b"r\xfcns" in (copy / "report.html").read_bytes()


def test_the_page_opens_in_a_browser_without_errors(trained, tmp_path):
    from browser import chromium, open_page

    if chromium() is None:
        pytest.skip("needs Debian's chromium (make install installs it where it may use apt)")
    assert run("report", trained, "--out", tmp_path / "page.html").exit_code == 0
    opened = open_page(tmp_path / "page.html")
    assert opened["messages"] == [], opened["messages"]
    assert opened["title"].startswith("tiny")
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(opened["png"])).convert("L"), dtype=float)
    assert shot.shape[1] == 1200 and shot.shape[0] > 1000 and shot.std() > 10 and (shot < 128).mean() > 0.005  # text and pictures drawn

    bad = tmp_path / "bad.html"  # the check itself sees a page's errors
    bad.write_text('<html><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
    levels = {(m["level"], m["text"][:24]) for m in open_page(bad)["messages"]}
    assert ("error", "boom") in levels and any("Failed to load resource" in t for _, t in levels)
