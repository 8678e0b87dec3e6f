"""The layer contract (pyproject.toml's [tool.importlinter]): each layer imports only from those below it,
and no sibling modules import each other in a circle. A violation fails the suite with lint-imports' own
report of the import chain."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_dlkit_keeps_its_layers_and_has_no_cycles():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def test_the_contract_catches_an_upward_import_and_a_cycle(tmp_path):
    """The check can fail: a model module reaching up into the recipe layer breaks the layers contract, and
    two sibling modules importing each other break the cycle contract."""
    shutil.copytree(ROOT / "dlkit", tmp_path / "dlkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    gan = tmp_path / "dlkit" / "models" / "gan.py"
    gan.write_text(gan.read_text() + "\n\ndef _upward():\n    from dlkit.recipe import schema  # noqa: F401\n")
    images = tmp_path / "dlkit" / "images.py"
    images.write_text(images.read_text() + "\n\ndef _circle():\n    from dlkit import plots  # noqa: F401\n")
    plots = tmp_path / "dlkit" / "plots.py"
    plots.write_text(plots.read_text() + "\n\ndef _circle():\n    from dlkit import images  # noqa: F401\n")
    out = lint(tmp_path)
    assert out.returncode != 0 and "0 kept, 2 broken" in out.stdout, out.stdout[-3000:]
    assert "dlkit.models.gan -> dlkit.recipe" in out.stdout
