"""Files written whole or not at all. The files of a run (its JSON, checkpoints, history.csv, figures and
pictures) and what `generate` and `encode` write go through `replace_atomic`: written under a temporary name
beside their place, fsynced, then renamed over it, so that a crash, a full disk or Ctrl-C leaves the old file or
the new one, never a part of one, and no temporary file behind. (An export, a file or a folder, is written
beside its place and renamed the same way, by export.py.)"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename in the folder durable (POSIX: the folder's entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# replace_atomic's temporary names: mkstemp's `.NAME.` + 8 characters + NAME's suffix (`.tmp` for none)
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]+)")


def _temporary_suffix(path: Path) -> str:
    return path.suffix or ".tmp"


def is_temporary(name: str) -> bool:
    """Whether a file name is one replace_atomic writes under before renaming it into place (what a process
    killed midway leaves behind)."""
    m = _TEMPORARY.fullmatch(name)
    return m is not None and m["suffix"] == _temporary_suffix(Path(m["name"]))


def replace_atomic(path: Path, write) -> None:
    """`write(tmp)` writes the file under a temporary name beside `path` (same suffix); it is fsynced, renamed
    over `path`, and the folder fsynced: a crash never leaves a half-written file."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_temporary_suffix(path))
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_file(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are meant to be shared
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder (replace_atomic): after a crash the target is the old
    or the new text, never a part of it. UTF-8, not the locale's encoding (a French translation); a file name
    that is not UTF-8 (Python's surrogate escapes, a Latin-1 "\xfc" on disk) is written as its own bytes, as it
    is on disk, where it was a UnicodeEncodeError's traceback (`dlkit report` of a run under such a folder)."""
    replace_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"))


def utf16(raw: bytes) -> bool:
    """Whether text starts with UTF-16's byte-order mark, as Windows PowerShell's `>` and Notepad's "Unicode"
    write it."""
    return raw[:2] in (b"\xff\xfe", b"\xfe\xff")


def not_utf8(name, raw: bytes | None = None) -> str:
    """Why a text file (`name`; its bytes `raw`, read here when not given) is not read as UTF-8, and how to mend
    it: where its first byte that is not UTF-8 lies (line and column), or that it is UTF-16, as Windows
    PowerShell's `>` and Notepad's "Unicode" write it. A CSV saved by Excel in Windows-1252 was "'utf-8' codec
    can't decode byte 0xe9 in position 3", with no line and no remedy."""
    if raw is None:
        try:
            raw = Path(name).read_bytes()
        except OSError as e:
            return f"cannot read {name}: {e.strerror or e}"
    if utf16(raw):
        return (f"{name} is UTF-16 text, as Windows PowerShell's > and Notepad's \"Unicode\" write it; dlkit reads "
                "text files as UTF-8: save it as UTF-8")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        return (f"{name}, line {line}, column {column}: byte 0x{raw[e.start]:02x} is not UTF-8; dlkit reads text "
                "files as UTF-8: save it as UTF-8 (from Latin-1 or Windows-1252: iconv -f cp1252 -t utf-8 FILE > NEW)")
    return f"{name} is not UTF-8 text"
