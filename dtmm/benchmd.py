"""Write one benchmark's section of ``BENCHMARKS.md`` between its marker comments.

Each benchmark script owns the text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``; other sections are left alone. The file is replaced
atomically (temporary file in the same folder, then ``os.replace``).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "B.md"
    >>> write_section("demo", "| a |\\n", p)
    >>> write_section("demo", "| b |\\n", p)
    >>> p.read_text().count("| b |"), p.read_text().count("| a |")
    (1, 0)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
#: The repository's BENCHMARKS.md in a source checkout, else ./BENCHMARKS.md.
DEFAULT_PATH = (_REPO if (_REPO / "pyproject.toml").exists() else Path.cwd()) / "BENCHMARKS.md"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _span(text: str, name: str) -> tuple[int, int] | None:
    """Start and end offsets of section ``name`` (markers included), or None."""
    start, end = _markers(name)
    if start in text and end in text and text.index(start) < text.index(end):
        return text.index(start), text.index(end) + len(end)
    return None


def _replace_file(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_section(name: str, body: str, path: str | os.PathLike = DEFAULT_PATH, *,
                  after: str | None = None) -> None:
    """Put ``body`` between ``name``'s markers in ``path``; a new section goes right after
    section ``after`` when that one is there, else at the end of the file."""
    path = Path(path)
    start, end = _markers(name)
    section = f"{start}\n{body.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    span, prev = _span(old, name), (_span(old, after) if after else None)
    if span is not None:
        new = old[:span[0]] + section + old[span[1]:]
    elif prev is not None:
        new = old[:prev[1]] + "\n\n" + section + old[prev[1]:]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    _replace_file(path, new)


def section_names(path: str | os.PathLike = DEFAULT_PATH) -> list[str]:
    """The names of the sections in ``path``, in file order.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "B.md"
    >>> write_section("a", "x", p); write_section("c", "z", p); write_section("b", "y", p, after="a")
    >>> section_names(p)
    ['a', 'b', 'c']
    >>> remove_section("b", p), section_names(p)
    (True, ['a', 'c'])
    """
    import re

    path = Path(path)
    text = path.read_text() if path.exists() else ""
    return [m for m in re.findall(r"<!-- ([A-Za-z0-9_.-]+):start -->", text) if _span(text, m)]


def remove_section(name: str, path: str | os.PathLike = DEFAULT_PATH) -> bool:
    """Remove section ``name`` (markers and the blank line before them); False if absent."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    span = _span(old, name)
    if span is None:
        return False
    head = old[:span[0]].rstrip("\n")
    tail = old[span[1]:].lstrip("\n")
    _replace_file(path, head + ("\n\n" + tail if tail else "\n"))
    return True
