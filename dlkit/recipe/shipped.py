"""The recipes that ship with dlkit, by name: `dlkit train cnn_mnist` in any folder, `extends: cnn_mnist` in a
recipe of one's own, `dlkit list` to see them all.

They are the repository's recipes/ folder. pyproject.toml packages it as dlkit/recipes, so an installed wheel
carries them; a source checkout (an editable install, the tests) reads recipes/ beside dlkit/.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path, PurePosixPath

PACKAGE = Path(__file__).resolve().parents[1]  # dlkit/
SUFFIXES = (".yaml", ".yml")
LONGEST = 130  # characters of a description `dlkit list` prints


def folder() -> Path | None:
    """Where the shipped recipes are: dlkit/recipes in an installed wheel, recipes/ beside dlkit/ in a source
    checkout; None where neither is (a wheel built without them)."""
    installed = PACKAGE / "recipes"
    if installed.is_dir():
        return installed
    checkout = PACKAGE.parent / "recipes"
    if checkout.is_dir() and (PACKAGE.parent / "pyproject.toml").is_file():
        return checkout
    return None


@functools.cache  # the folder is dlkit's own: it does not change while dlkit runs
def names() -> tuple[str, ...]:
    """Every shipped recipe's name: its path below the folder without `.yaml` (`cnn_mnist`, `lessons/opt_sgd`)."""
    root = folder()
    if root is None:
        return ()
    return tuple(sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml")
                        if p.is_file()))


def find(text: str) -> Path | None:
    """The shipped recipe `text` names, or None. A name is `cnn_mnist`, `cnn_mnist.yaml` or `lessons/opt_sgd`,
    and may start with `recipes/` as the README's commands do (`dlkit train recipes/gan_mnist.yaml` works in a
    folder without the repository's recipes/). Absolute paths and `..` name no shipped recipe."""
    root, name = folder(), _name(text)
    if root is None or name is None or name not in names():
        return None
    return root / f"{name}.yaml"


def find_folder(text: str) -> Path | None:
    """The shipped folder `text` names (`recipes`, `lessons`, `recipes/lessons`), or None: `dlkit validate
    recipes/` checks every shipped recipe outside the repository too."""
    root, parts = folder(), _within(text)
    if root is None or parts is None:
        return None
    found = root.joinpath(*parts)
    return found if found.is_dir() and any(found.rglob("*.yaml")) else None


def close(text: str) -> str | None:
    """The shipped recipe whose name is nearest to `text`'s, where one is near (a misspelt name)."""
    name = _name(text)
    if name is None:
        return None
    found = difflib.get_close_matches(name, names(), n=1, cutoff=0.75)
    return found[0] if found else None


def _within(text: str) -> tuple[str, ...] | None:
    """`text`'s path below the shipped folder (a leading `recipes/` dropped), or None for one that cannot be
    there (absolute, or through `..`)."""
    path = PurePosixPath(str(text).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        return None
    return path.parts[1:] if path.parts[:1] == ("recipes",) else path.parts


def _name(text: str) -> str | None:
    """The shipped name `text` would be (`recipes/lessons/opt_sgd.yaml`: `lessons/opt_sgd`), or None."""
    parts = _within(text)
    if not parts:
        return None
    path = PurePosixPath(*parts)
    return (path.with_suffix("") if path.suffix in SUFFIXES else path).as_posix()


def describe(path: Path) -> str:
    """The first sentence of a recipe's opening comment (each shipped recipe starts by saying what it is)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.(\s|$)", text)  # "Vaswani et al. 2017" goes on
    sentence = text[:end.start() + 1] if end else text
    return sentence if len(sentence) <= LONGEST else sentence[:LONGEST].rsplit(" ", 1)[0] + " ..."
