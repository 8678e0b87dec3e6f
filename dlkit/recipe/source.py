"""Reading YAML while remembering where every key came from.

`read_yaml` returns the plain data (through `yaml.SafeLoader`, so no arbitrary objects; `1e-3` reads as a number,
as YAML 1.2 reads it) and a map from each key path to `file:line`, which error messages use to point at the
line a user must fix.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from dlkit.errors import Problem, RecipeError
from dlkit.files import utf16

KeyPath = tuple  # ("model", "blocks", 0, "filters")
Locations = dict  # KeyPath -> "file:line"

# A recipe is a few dozen lines. These bounds refuse, quickly and with a message, what no recipe needs: a huge
# file, a value of a megabyte, nesting a hundred deep, or aliases that expand to millions of values (a YAML
# "billion laughs"), before anything walks or copies the tree.
MAX_BYTES = 1_000_000
MAX_SCALAR = 10_000  # characters in one value
MAX_DEPTH = 50
MAX_VALUES = 100_000  # values after expanding aliases


class Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that reads `1e-3` as a number. PyYAML follows YAML 1.1, whose floats need a dot
    (`1.0e-3`), so a learning rate written `1e-3` arrived as the string '1e-3'. YAML 1.2, and every other
    config reader, reads it as 0.001; so do we. Everything else resolves as SafeLoader resolves it."""


# Tried after SafeLoader's own int and float patterns, so it only adds what they miss: an exponent without a dot.
Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                             list("-+0123456789"))


STDIN = "-"  # RECIPE given as `-`: the recipe is read from standard input
_streamed: dict[str, str] = {}  # a recipe read from standard input or a pipe, by the name it was given: read once


def is_stream(path: str | Path) -> bool:
    """A recipe given as `-` (standard input) or as a pipe (`/dev/stdin` piped to, a shell's `<(...)`): it can
    be read once only, so it is read once and kept (a command reads its recipe more than once), and it lies in
    no folder: its `extends` and plugins are found from the working folder."""
    if str(path) == STDIN or str(path) in _streamed:
        return True
    try:
        path = Path(path)
        return path.exists() and not path.is_file() and not path.is_dir()
    except OSError:  # a name too long, a folder not searchable: read as a file, which says why
        return False


def forget_streams() -> None:
    """Each command reads its own standard input: what an earlier command in this process read is dropped."""
    _streamed.clear()


def _read_stream(path: Path) -> str:
    name = str(path)
    if name not in _streamed:
        try:
            if name == STDIN:
                if sys.stdin is None or sys.stdin.isatty():  # reading would wait on the terminal for good
                    raise RecipeError([Problem("", "- reads the recipe from standard input, which is a terminal "
                                               "here", hint="pipe a recipe in: cat recipe.yaml | dlkit train -")])
                raw = getattr(sys.stdin, "buffer", sys.stdin).read(MAX_BYTES + 1)
            else:
                with path.open("rb") as stream:
                    raw = stream.read(MAX_BYTES + 1)
            _streamed[name] = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError([Problem("", f"cannot read recipe {shown(path)}: {e}",
                                       hint=_encoding_hint(e))]) from None
    return _streamed[name]


def shown(path: str | Path) -> str:
    """A recipe's name in messages: `<stdin>` for `-`."""
    return "<stdin>" if str(path) == STDIN else str(path)


def unnamed(source: str) -> bool:
    """A recipe (by its name in messages) read from standard input or a pipe: no file name to name runs by."""
    return source == shown(STDIN) or is_stream(source)


def read_yaml(path: Path) -> tuple[Any, Locations]:
    if is_stream(path):
        return parse_yaml(_read_stream(path), shown(path))
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.y*ml"))
        listed = ", ".join(inside[:5]) + (", ..." if len(inside) > 5 else "")
        raise RecipeError([Problem("", f"{path} is a folder, not a recipe file",
                                   hint=f"give one of its recipes ({listed}); `dlkit validate FOLDER` checks them all"
                                   if inside else "it holds no .yaml file; give a recipe file")])
    try:
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise RecipeError([Problem("", f"{path} is {path.stat().st_size:,} bytes; a recipe is at most "
                                       f"{MAX_BYTES:,}", hint="is this the recipe file?")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([Problem("", f"recipe file not found: {path}", hint="check the path")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError([Problem("", f"cannot read recipe {path}: {e}", hint=_encoding_hint(e))]) from None
    return parse_yaml(text, str(path))


def _encoding_hint(e: Exception) -> str | None:
    """What to do about a recipe that is not UTF-8: UTF-16 is what Windows PowerShell's `>` writes."""
    if not isinstance(e, UnicodeDecodeError):
        return None
    if utf16(e.object):
        return "it is UTF-16 text, as Windows PowerShell's > writes it; a recipe is UTF-8: save it as UTF-8"
    return "a recipe is UTF-8 text: save it as UTF-8"


def _syntax_hint(e: yaml.MarkedYAMLError, text: str) -> str:
    """What to do about a YAML error: a tag (`!!python/object:...`, `!Ref`) is not read at all, a tab where YAML
    wants spaces is said as such, and the rest is syntax."""
    if isinstance(e, yaml.constructor.ConstructorError) and "tag" in (e.problem or ""):
        return "a recipe is plain YAML: tags (!!python/..., !Ref) are not read; write the value itself"
    if "single document" in (e.context or ""):  # a second `---`
        return "a recipe is one YAML document: remove the '---' line and what follows, or put it in a file of its own"
    mark = e.problem_mark or e.context_mark
    lines = text.splitlines()
    if "'\\t'" in (e.problem or "") or mark and mark.line < len(lines) and "\t" in lines[mark.line]:
        return "YAML indents with spaces, not tabs: replace the tab"
    return "fix the syntax: the indentation, a ':' after each key, a closing bracket or quote"


def parse_yaml(text: str, name: str) -> tuple[Any, Locations]:
    if len(text) > MAX_BYTES:
        raise RecipeError([Problem("", f"{name}: {len(text):,} characters; a recipe is at most {MAX_BYTES:,}")])
    loader = None
    try:
        loader = Loader(text)  # its reader already refuses control characters
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, name)
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise RecipeError([Problem("", "the YAML nests too deep to read", name,
                                   f"a recipe nests at most {MAX_DEPTH} levels")]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        if e.context_mark and "<stream end>" in (e.problem or ""):  # an unclosed '[', '{' or quote: where it opened
            mark = e.context_mark
        where = f"{name}:{mark.line + 1}" if mark else name
        what = " ".join(s for s in (e.context, e.problem) if s)
        raise RecipeError([Problem("", f"invalid YAML: {what}", where, _syntax_hint(e, text))]) from None
    except yaml.YAMLError as e:
        raise RecipeError([Problem("", f"invalid YAML: {e}", name)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    locations: Locations = {}
    duplicates: list[Problem] = []
    if node is not None:
        _collect(node, (), name, locations, duplicates)
    if duplicates:
        raise RecipeError(duplicates)
    return data, locations


def _check_size(root: yaml.Node, name: str) -> None:
    """Refuse deep nesting, long values and alias expansion beyond the bounds above, in time linear in the
    document's own size (each node's expanded size is computed once)."""
    sizes: dict[int, int] = {}

    def size(node, depth):
        where = f"{name}:{node.start_mark.line + 1}"
        if depth > MAX_DEPTH:
            raise RecipeError([Problem("", f"the YAML nests more than {MAX_DEPTH} levels deep", where)])
        if id(node) in sizes:
            return sizes[id(node)]
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR:
                raise RecipeError([Problem("", f"a value of {len(node.value):,} characters; at most {MAX_SCALAR:,}",
                                           where)])
            total = 1
        else:
            children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
            total = 1 + sum(size(child, depth + 1) for child in children)
        if total > MAX_VALUES:
            raise RecipeError([Problem("", f"the YAML expands to more than {MAX_VALUES:,} values", where,
                                       "do its aliases (*name) repeat an anchor that repeats others?")])
        sizes[id(node)] = total
        return total

    size(root, 0)


def _collect(node: yaml.Node, path: KeyPath, name: str, out: Locations, duplicates: list) -> None:
    out.setdefault(path, f"{name}:{node.start_mark.line + 1}")
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_path = path + (key_node.value,)
                where = f"{name}:{key_node.start_mark.line + 1}"
                if key_node.value in seen:  # PyYAML would silently keep the last one
                    duplicates.append(Problem(".".join(map(str, key_path)), f"duplicate key (first at {out[key_path]})",
                                              where, "keep one of them"))
                seen.add(key_node.value)
                out.setdefault(key_path, where)
                _collect(value_node, key_path, name, out, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect(item, path + (i,), name, out, duplicates)


def locate(locations: Locations, path: KeyPath) -> str | None:
    """The location of `path`, or of its nearest ancestor that has one (a missing key has no line)."""
    path = tuple(path)
    while True:
        # YAML keys are strings; indices are ints. Pydantic reports both as they are; a dotted path found after
        # loading ("model.blocks.0.pool_size") has its indices as strings.
        for alt in (path, tuple(str(p) if isinstance(p, int) else p for p in path),
                    tuple(int(p) if isinstance(p, str) and p.isdecimal() else p for p in path)):
            if alt in locations:
                return locations[alt]
        if not path:
            return None
        path = path[:-1]
