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


def write_section(name: str, body: str, path: str | os.PathLike = DEFAULT_PATH) -> None:
    """Put ``body`` between ``name``'s markers in ``path`` (appending the section if new)."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old and old.index(start) < old.index(end):
        new = old[:old.index(start)] + section + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(new)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
