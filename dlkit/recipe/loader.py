"""Loading a recipe: `extends` inheritance, `--set` overrides, then the strict schema."""

from __future__ import annotations

import copy
import dataclasses
import reprlib
from pathlib import Path
from typing import Any


from dlkit.errors import DlkitError, Problem, RecipeError
from dlkit.recipe import plugins, shipped
from dlkit.recipe.source import MAX_SCALAR, Locations, is_stream, locate, parse_yaml, read_yaml, shown


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """`a.b.c=value` -> (("a", "b", "c"), value), the value typed as YAML would type it (with the same bounds
    as a recipe file: no alias bombs, no megabyte values)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")) or len(key) > 200:
        raise RecipeError(
            [Problem("", f"bad --set {text[:80]!r}", hint="write --set key.path=value, e.g. --set train.epochs=3")]
        )
    if len(raw) > MAX_SCALAR:
        raise RecipeError([Problem(key, f"--set value of {len(raw):,} characters; at most {MAX_SCALAR:,}")])
    try:
        value = parse_yaml(raw, f"--set {key}")[0] if raw.strip() else ""
    except RecipeError as e:
        raise RecipeError([Problem(key, f"--set value {raw[:80]!r}: {p.message}", hint=p.hint)
                           for p in e.problems]) from None
    return tuple(key.split(".")), value


def _merge(base: dict, override: dict) -> dict:
    """Deep-merge mappings; lists and scalars from `override` replace the base value. A mapping that names
    a different `name` (another optimizer, schedule, initializer) replaces the base one whole: an Adam's
    beta_1 means nothing to the RMSProp that replaces it."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("name", old.get("name")) == old.get("name"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_with_extends(path: Path, chain: tuple[Path, ...]) -> tuple[dict, Locations]:
    stream = is_stream(path)  # standard input or a pipe: resolved, a pipe's name is no file (/proc/N/fd/pipe:[M])
    path = path if stream else path.resolve()
    folder = Path.cwd() if stream else path.parent  # what its extends and plugins are relative to
    data, locations = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            [Problem("", f"a recipe must be a mapping of keys, got {type(data).__name__}", locate(locations, ()))]
        )
    if isinstance(data.get("plugins"), list):  # a file a recipe lists is beside it, as its extends is
        data["plugins"] = [plugins.resolve(entry, folder) for entry in data["plugins"]]
    parent = data.pop("extends", None)
    if parent is None:
        return data, locations
    if not isinstance(parent, str):
        raise RecipeError(
            [Problem("extends", "extends must be a file path", locate(locations, ("extends",)),
                     "write extends: base.yaml (relative to this recipe)")]
        )
    parent_path = folder / parent
    # a file beside this one (NAME may leave out .yaml; never this file itself: `extends: cnn_mnist` in a
    # cnn_mnist.yaml of one's own means dlkit's), else the recipe dlkit ships of that name
    beside = [p for p in _files(parent_path) if p.resolve() != path]
    parent_path = beside[0] if beside else shipped.find(parent) or parent_path
    if not parent_path.is_file():
        near = shipped.close(parent)
        raise RecipeError(
            [Problem("extends", f"base recipe not found: {parent_path}", locate(locations, ("extends",)),
                     "the path is relative to the recipe that extends it, or names a recipe dlkit ships: "
                     + (f"did you mean {near}?" if near else "`dlkit list` shows them"))]
        )
    if parent_path.resolve() in chain + (path,):
        cycle = " -> ".join(p.name for p in chain + (path, parent_path.resolve()))
        raise RecipeError([Problem("extends", f"extends cycle: {cycle}", locate(locations, ("extends",)),
                                   "remove one of the extends links")])
    base, base_locations = _read_with_extends(parent_path, chain + (path,))
    # Keys this file sets point here; keys it inherits point at the base file.
    merged_locations = dict(base_locations)
    merged_locations.update({k: v for k, v in locations.items() if k != ("extends",)})
    return _merge(base, data), merged_locations


def _files(path: Path) -> list[Path]:
    """The files a recipe's NAME stands for, of `NAME` and `NAME.yaml`, in that order."""
    return [p for p in ((path, path.with_name(path.name + ".yaml")) if path.name else (path,)) if p.is_file()]


def recipe_file(text: str | Path) -> Path:
    """The recipe file a command's RECIPE names: the file where there is one (NAME may leave out `.yaml`), else
    the recipe dlkit ships under that name (`cnn_mnist`, `lessons/opt_sgd`, `recipes/gan_mnist.yaml` outside
    the repository)."""
    path = Path(text)
    if is_stream(path):  # `-` or a pipe: read as it is, once
        return path
    files = _files(path)
    if files:
        return files[0]
    found = shipped.find(str(text))
    if found is not None:  # a folder of that name (runs kept by recipe name) is no recipe: the shipped one is
        return found
    if path.exists():  # a folder: reading it says so, and what it holds
        return path
    near = shipped.close(str(text))
    raise RecipeError([Problem("", f"recipe file not found: {path}",
                               hint=f"did you mean {near}, a recipe dlkit ships?" if near else
                               "check the path, or name a recipe dlkit ships: `dlkit list` shows them")])


def load_raw(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, Locations]:
    """The merged recipe as plain data, with the location of every key. `path` may name a shipped recipe."""
    data, locations = _read_with_extends(recipe_file(path), ())
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "extends":  # said "unknown key (did you mean 'extends'?)": the file's extends is read first
            raise RecipeError([Problem("extends", f"--set {text}: a recipe's extends is read from its file, "
                                       "before any --set", hint="write `extends: BASE` in a recipe of your own, "
                                       "with the keys it changes below it")])
        node, at = data, ()  # `at`: the keys so far as the file's locations hold them (a list's index an int)
        for i, key in enumerate(keys[:-1]):
            if isinstance(node, list):  # a list's entry, by its index: model.blocks.0.filters
                key = _index(node, keys[: i + 1], text, locations)
                child = node[key]
            else:
                child = node.get(key)
                if child is None:  # a section the --set makes: a problem with it (a misspelt name) is the --set's
                    child = node[key] = {}
                    locations.setdefault((*at, key), f"--set {text}")
            if not isinstance(child, (dict, list)):
                here = ".".join(keys[: i + 1])
                raise RecipeError(  # (an MLP's `hidden: [256]` reads as [{units: 256}], written as the file has it)
                    [Problem(here, f"--set {text}: this key holds a value ({reprlib.repr(child)} in the recipe), "
                             "not a section",
                             locate(locations, keys[: i + 1]), hint=f"set it whole: --set {here}=VALUE")]
                )
            node, at = child, (*at, key)
        last = _index(node, keys, text, locations) if isinstance(node, list) else keys[-1]
        node[last] = value
        at = (*at, last)
        for old in [k for k in locations if k[:len(at)] == at]:  # what the file had there is gone
            del locations[old]
        locations[at] = f"--set {text}"
    return data, locations


def _index(entries: list, keys: tuple[str, ...], text: str, locations: Locations) -> int:
    """The entry of a list that a --set's key names (keys[-1], its index from 0); else the problem, at the list."""
    key = keys[-1]
    if key.isdecimal() and int(key) < len(entries):
        return int(key)
    where = ".".join(keys[:-1])
    raise RecipeError([Problem(where, f"--set {text}: {where} is a list of {len(entries)} entries; {key!r} is not "
                               "one of their indexes" + (f" (0 to {len(entries) - 1})" if entries else ""),
                               locate(locations, keys[:-1]),
                               hint="name an entry by its index from 0 (--set model.blocks.0.filters=64), or set "
                                    "the whole list (--set 'model.dense=[128, 64]')")])


def located(err: RecipeError, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RecipeError:
    """`err` with each problem that has no place given its key's line in the recipe (or its --set): problems
    found after loading, such as a monitored name the epochs turn out not to log."""
    try:
        _, locations = load_raw(path, overrides)
    except (DlkitError, OSError):  # the recipe changed or went since it was loaded: the problems as they are
        return err
    problems = [p if p.location else dataclasses.replace(p, location=locate(locations, tuple(p.path.split("."))))
                for p in err.problems]
    out = RecipeError(problems, shown(path))
    out.run_dir = err.run_dir
    return out


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, sections, checks=None,
                plugin_files: dict[str, Path] | None = None, as_written: bool = False):
    """Load, merge, override and validate a recipe. Raises RecipeError listing every problem.

    `sections(architecture)` gives the data and train section classes of the architecture's task, and
    `checks(recipe)` its problems across sections; callers above this layer use dlkit.tasks.load_recipe,
    which passes the registered tasks' own. The recipe's plugins are imported first (`plugin_files`: a run's
    copies of them, by the path the recipe lists). `as_written`: a run's own resolved recipe (schema.validate)."""
    from dlkit.recipe.schema import _line_order, validate

    data, locations = load_raw(path, overrides)
    problems = plugins.load(data.get("plugins"), locations, plugin_files)
    try:
        recipe = validate(data, locations, shown(path), sections, checks, as_written)
    except RecipeError as e:
        if not problems:
            raise
        # a plugin that did not load leaves its architecture unknown: said once, as the plugin's problem
        rest = [p for p in e.problems if not (p.path == "model.arch" and p.message.startswith("unknown architecture"))]
        raise RecipeError(sorted(problems + rest, key=lambda p: _line_order(p.location)), e.source) from None
    if problems:
        raise RecipeError(problems, shown(path))
    return recipe
