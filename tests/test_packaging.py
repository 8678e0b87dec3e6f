"""dlkit as it is installed from its wheel, outside the repository: every package and every shipped recipe is
in the wheel, and the installed dlkit finds its recipes by name (dlkit/recipe/shipped.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


def test_the_listed_packages_are_dlkits_and_its_recipe_folders():
    """pyproject.toml lists the packages (the recipes folder is mapped in as dlkit/recipes): a package added
    to dlkit/ and left out of the list would be missing from every installed dlkit."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dlkit").rglob("__init__.py")}
    recipes = {".".join(("dlkit", *p.parent.relative_to(ROOT).parts)) for p in (ROOT / "recipes").rglob("*.yaml")}
    assert set(config["packages"]) == code | recipes
    assert config["package-dir"] == {"dlkit.recipes": "recipes"}
    assert set(config["package-data"]) == recipes


def test_the_installed_wheel_carries_every_recipe_and_finds_them_by_name(tmp_path):
    """The wheel built from this checkout's files (offline, with this environment's setuptools), unpacked as pip
    installs it and run from a folder of its own: every recipe of recipes/ is in it, and `dlkit show` of a
    lesson by name reads it there, through its two `extends` (opt_sgd.yaml, then ../mlp_mnist.yaml)."""
    source = tmp_path / "source"  # a copy: a build in the checkout would reuse (and leave) its build/ folder
    for folder in ("dlkit", "recipes"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("dlkit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
        packed = {n for n in z.namelist() if n.startswith("dlkit/recipes/")}
    assert packed == {f"dlkit/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "recipes").rglob("*.yaml")}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys, dlkit; from dlkit.recipe import shipped; print(dlkit.__file__, shipped.folder(), "
            "file=sys.stderr); from dlkit.cli import main; sys.argv[0] = 'dlkit'; main()")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code, "show", "lessons/opt_momentum", "--set", "train.epochs=2"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.split()[:2] == [str(tmp_path / "site" / "dlkit" / "__init__.py"),
                                      str(tmp_path / "site" / "dlkit" / "recipes")]
    import yaml

    shown = yaml.safe_load(out.stdout)
    assert (shown["name"], shown["model"]["arch"], shown["data"]["limit"], shown["train"]["epochs"]) == \
        ("opt_momentum", "mlp", 12000, 2)
    assert shown["train"]["optimizer"]["momentum"] == 0.9
