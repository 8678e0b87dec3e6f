"""A recipe's `plugins`: the Python files and modules whose architectures it may name as `model.arch`, and
whose datasets as `data.dataset`.

Each is imported as the recipe loads, before the schema reads its sections, and the architecture it declares
(the face of dlkit/models' modules: `Config`, `build`, `TASK`) or the dataset (`DATASET`, `load`, and
optionally its own `data:` keys, `Data`: dlkit.data.sources.of_module) is registered. A file is imported
once per content: the same file read again, or a run's copy of it, is the module already imported. A run
keeps a copy of each file it imported (its plugins/ folder, the manifest's `plugins`), and a run's recipe
is loaded with those copies (`files`), so the run is evaluated, resumed and exported with the code it
trained with. Problems are the recipe's, at the entry's line: a file not found, one that does not import
(its own error, at its own line), one that declares neither an architecture nor a dataset, or one of dlkit's
names.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from dlkit import models
from dlkit.data import sources as datasets
from dlkit.errors import Problem
from dlkit.recipe.source import Locations, locate

MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
HINT = ("a plugin is a Python file (`my_arch.py`, relative to the recipe that lists it), a folder holding a package "
        "(`my_models/`), or an importable module (`mypackage.my_arch`), declaring an architecture (Config, build and "
        "TASK, as docs/examples/convmixer.py does) or a dataset (DATASET and load, as docs/examples/hdf5_dataset.py "
        "does)")


class NotFound(ValueError):
    """A plugin's file or module that is not there (said with HINT: where it is looked for)."""


@dataclass(frozen=True)
class Source:
    """A plugin as it was imported: its path as listed, its files' bytes (by their path inside a folder
    plugin; a file plugin's one file under its own name), whether it is a folder, and the sha256 (digest)."""

    path: str
    files: dict
    folder: bool
    sha256: str


IMPORTED: dict[str, Source] = {}  # what each listed file or folder was imported from, by its path as listed


def read(path: Path) -> dict:
    """A plugin's Python files and their bytes: a file's own, or every .py under a folder (a package), by its
    path inside it."""
    if not path.is_dir():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*.py"))
            if "__pycache__" not in p.parts}


def digest(files: dict, folder: bool) -> str:
    """The sha256 a run records of its plugin: a file's bytes', or a folder's files' by path."""
    if not folder:
        return hashlib.sha256(next(iter(files.values()))).hexdigest()
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name] + b"\0")
    return h.hexdigest()


def fingerprint(path: Path) -> str | None:
    """The digest of a plugin file or folder as it is now (None: not there, or not readable)."""
    try:
        return digest(read(path), path.is_dir())
    except OSError:
        return None


def module_fingerprint(path) -> str | None:
    """The digest of an imported module's code as it is now, from its file (`__file__`): a package's (an
    `__init__.py`) every .py file under its folder, as a folder plugin's; another module's file. None where
    there is none (a built-in or namespace module) or it is not readable."""
    if not path:
        return None
    path = Path(path)
    return fingerprint(path.parent if path.name == "__init__.py" else path)


def module_source(name: str | None) -> dict:
    """What a run's manifest records of an imported module's code: its file and that digest (sweep and tune
    tell by it whether an installed module was edited since, its version unchanged: an editable install)."""
    path = getattr(sys.modules.get(name), "__file__", None)
    return {"path": path, "sha256": module_fingerprint(path)}


def _records(run: Path) -> list:
    """A run's manifest's `plugins` records; [] where there are none or the manifest does not read."""
    import json

    try:
        return json.loads((run / "manifest.json").read_text()).get("plugins") or []
    except (OSError, ValueError, AttributeError):
        return []


def kept(run: Path) -> list[dict]:
    """A run's records of the plugin files and folders it kept copies of (its manifest's `plugins`: file,
    copy, sha256); [] where there are none or the manifest does not read."""
    return [k for k in _records(run) if isinstance(k, dict) and isinstance(k.get("file"), str)
            and isinstance(k.get("copy"), str) and isinstance(k.get("sha256"), str)]


def is_file(entry: str) -> bool:
    """A file's or a folder's entry (`x.py`, `dir/x`, `models/`), rather than a module's dotted name."""
    return entry.endswith(".py") or "/" in entry or os.sep in entry


def resolve(entry, folder: Path | None = None):
    """A file's entry made absolute: `~` and `$NAME` expanded, a relative path read from `folder` (the recipe
    that names it; the working directory for a --set's). A module's name, or anything else, as it is."""
    if not isinstance(entry, str) or not is_file(entry):
        return entry
    path = os.path.expanduser(os.path.expandvars(entry))
    return os.path.normpath(os.path.join(folder or os.getcwd(), path))


def problem(entry: str) -> str | None:
    """What is wrong with an entry's form (the schema's check), or None."""
    if not entry.strip():
        return "an empty plugin entry"
    if not is_file(entry) and not MODULE.fullmatch(entry):
        return f"{entry!r} is neither a Python file (NAME.py) nor a module's dotted name"
    return None


def checked(entry: str) -> str:
    """The schema's check of an entry: its form, and a file's path made absolute."""
    wrong = problem(entry)
    if wrong:
        raise ValueError(f"{wrong}; {HINT}")
    return resolve(entry)


def load(entries, locations: Locations, files: dict[str, Path] | None = None) -> list[Problem]:
    """Import each entry of a recipe's `plugins` and register the architecture it declares; the problems,
    each at its entry's line. `files`: {path as listed: file to import in its place} (a run's copies)."""
    if not isinstance(entries, list):  # the schema says what it should be
        return []
    problems, declared = [], {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, str) or problem(entry):
            continue
        entry = resolve(entry)
        where = locate(locations, ("plugins", i))
        try:
            module, origin = (_import_file(entry, (files or {}).get(entry)) if is_file(entry)
                              else _import_module(entry))
            dataset = datasets.of_module(module, origin)
            architecture = models.of_module(module, origin) if dataset is None or hasattr(module, "Config") else None
        except ValueError as e:
            problems.append(Problem(f"plugins.{i}", str(e), where, HINT if isinstance(e, NotFound) else None))
            continue
        named = ([("architecture", architecture.name)] if architecture else []) + (
            [("dataset", dataset[0])] if dataset else [])
        twice = [(kind, name, declared[kind, name]) for kind, name in named
                 if declared.setdefault((kind, name), origin) != origin]
        if twice:
            problems += [Problem(f"plugins.{i}", f"{origin} declares {kind} {name!r}, as {other} does", where,
                                 "list one of them") for kind, name, other in twice]
            continue
        if architecture:
            models.register(architecture)
        if dataset:
            datasets.register(*dataset)
    return problems


def _import_file(entry: str, instead: Path | None):
    path = Path(instead or entry)
    origin = f"plugin {entry}" + (f" (the run's copy, {path})" if instead else "")
    folder = path.is_dir()
    if not (folder or path.is_file()):
        raise NotFound(f"plugin file not found: {path}")
    if folder and not (path / "__init__.py").is_file():
        raise ValueError(f"plugin folder {path} has no __init__.py: a folder plugin is a package whose "
                         "__init__.py declares the architecture (its other files imported relatively: "
                         "`from .layers import ...`)")
    if not folder and path.suffix != ".py":
        raise ValueError(f"plugin {path} is not a Python file (NAME.py)")
    try:
        files = read(path)
    except OSError as e:
        raise ValueError(f"cannot read plugin {path}: {e.strerror or e}") from None
    sha = digest(files, folder)
    IMPORTED[entry] = Source(entry, files, folder, sha)
    name = f"_dlkit_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{sha[:12]}"
    if name in sys.modules:  # this content, imported already (a run's copy of the file, a recipe loaded again)
        return sys.modules[name], origin
    _quiet_keras()
    spec = (importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
            if folder else importlib.util.spec_from_file_location(name, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as `import` does, so its classes' module (and a package's parts) resolve
    try:
        with contextlib.redirect_stdout(sys.stderr):  # what it prints is not the command's answer (--json)
            spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 - the plugin's own error (a sys.exit too), said as its own
        for part in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[part]
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ValueError(f"{origin} does not import: {_said(e, path)}") from None
    return module, origin


def _import_module(entry: str):
    origin = f"plugin module {entry}"
    _quiet_keras()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return importlib.import_module(entry), origin
    except ModuleNotFoundError as e:
        if e.name and (entry == e.name or entry.startswith(e.name + ".")):  # the module itself, not one it imports
            raise NotFound(f"no module named {e.name!r}: install the package that has {entry}, or put its "
                           "folder on PYTHONPATH (a file of your own: name it as NAME.py; a folder: as NAME/)") from None
        raise ValueError(f"{origin} does not import: {_said(e, None)}") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the plugin's own error
        raise ValueError(f"{origin} does not import: {_said(e, None)}") from None


def _quiet_keras() -> None:
    """Keras imported dlkit's way (its start-up logs off) before a plugin's `import keras` imports it noisily."""
    from dlkit import backend

    backend.setup()


def _said(e: BaseException, path: Path | None) -> str:
    """The error a plugin raised as it imported, at the line of the plugin's (or its module's) that raised it."""
    if isinstance(e, SyntaxError):
        return f"{e.filename}:{e.lineno}: {e.msg}"
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if path is None or Path(f.filename) == path or Path(f.filename).is_relative_to(path)]
    at = f" ({mine[-1].filename}:{mine[-1].lineno})" if mine else ""
    return f"{type(e).__name__}: {e}{at}"


def sources(entries: list[str]) -> list[Source]:
    """The files and folders among a loaded recipe's plugins, as they were imported (what a run keeps a copy
    of)."""
    return [IMPORTED[e] for e in entries if is_file(e) and e in IMPORTED]


def provenance(entries: list[str], arch: str, data: tuple[str, ...] = ()) -> list[dict]:
    """What a run's manifest says of the code outside dlkit it trained with: each plugin module's file and
    its package's version, and the installed package an architecture or a dataset came from (an entry point).
    The files are recorded by the trainer as it keeps their copies."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    out = []
    for entry in entries:
        if is_file(entry) or entry not in sys.modules:
            continue
        dists = packages_distributions().get(entry.partition(".")[0], [])
        try:
            release = f"{dists[0]} {version(dists[0])}" if dists else None
        except PackageNotFoundError:
            release = None
        out.append({"module": entry, **module_source(entry), "package": release})
    packaged = ([models.FROM_PACKAGES[arch]] if arch in models.FROM_PACKAGES else []) + \
        [datasets.FROM_PACKAGES[name] for name in dict.fromkeys(data) if name in datasets.FROM_PACKAGES]
    return out + [{**record, **module_source(record.get("module"))} for record in packaged]


def modules_kept(run: Path) -> list[dict]:
    """A run's records of the installed modules it trained with (a module plugin, an entry point's), those
    that name a file and its digest; [] where the manifest does not read."""
    return [k for k in _records(run) if isinstance(k, dict) and isinstance(k.get("module"), str)
            and isinstance(k.get("path"), str) and isinstance(k.get("sha256"), str)]
