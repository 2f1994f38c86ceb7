"""Writing outputs safely: atomic, with the user's umask, never over a user's file.

Rules every dtmm verb follows (see ``RULES.md``):

* every file is written to a temporary file in its final folder, fsynced, then
  renamed over the target (:func:`atomic_write_bytes`); a set of files is staged
  completely before the first rename (:func:`write_outputs`), so a failure leaves the
  folder as it was;
* files get mode ``0666 & ~umask`` and new folders ``0777 & ~umask``, as ``open`` and
  ``mkdir`` would give them (``tempfile.mkstemp``'s 0600 is corrected);
* each output folder holds a manifest, :data:`MANIFEST_NAME`, listing the files dtmm
  wrote there with their SHA-256. dtmm replaces a file only if the manifest lists it
  with the same content it has now (or the new content is byte-identical); a file
  the user put there or edited makes the verb refuse, naming it. Files not among the
  outputs (the ``app.c`` or ``dtmm_input.bin`` a user added to an exported project)
  are never touched. Outputs of an earlier run that the new run no longer writes
  (same ``group``) are removed only if unchanged;
* :func:`check_output_path` is called by every verb before any long work: an
  existing non-directory, an uncreatable or unwritable folder, or an output name
  that collides with a user's file is an :class:`~dtmm.errors.OutputPathError` (exit 2).

Example:
    >>> import tempfile, pathlib, os
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> _ = check_output_path(d, names=["model.tflite"])
    >>> _ = write_outputs(d, {"model.tflite": b"TFL3", "summary.json": b"{}"})
    >>> sorted(p.name for p in d.iterdir())
    ['.dtmm-manifest.json', 'model.tflite', 'summary.json']
    >>> _ = (d / "notes.txt").write_text("mine")
    >>> _ = write_outputs(d, {"model.tflite": b"TFL3 v2"})       # replaces its own file
    >>> (d / "notes.txt").read_text()
    'mine'
    >>> (d / "summary.json").write_text("edited by the user") and None
    >>> write_outputs(d, {"summary.json": b"{}"})
    Traceback (most recent call last):
    ...
    dtmm.errors.OutputPathError: refusing to overwrite .../summary.json: it changed since dtmm wrote it; move it away or choose another output folder
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from dtmm.errors import OutputPathError

__all__ = ["MANIFEST_NAME", "umask", "file_mode", "dir_mode", "make_dirs", "atomic_write_bytes",
           "atomic_write_json", "check_output_path", "check_output_file", "write_outputs",
           "write_output_file", "record_outputs", "read_manifest"]

#: The manifest file dtmm keeps in every folder it writes outputs to.
MANIFEST_NAME = ".dtmm-manifest.json"
_MANIFEST_FORMAT = "dtmm-manifest"
_MANIFEST_VERSION = 1


# ----------------------------------------------------------------------------- modes


def umask() -> int:
    """The process umask (read from /proc where possible, so it is never changed)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(..., "w")`` gives a new file."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """``0o777 & ~umask``: the mode ``mkdir`` gives a new folder."""
    return 0o777 & ~umask()


def make_dirs(path: str | os.PathLike) -> list[Path]:
    """Create ``path`` and missing parents (mode ``0777 & ~umask``); return those created."""
    p = Path(path)
    missing = []
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d)                  # mode 0o777, the umask applies
        except FileExistsError:
            if not d.is_dir():
                raise
    return list(reversed(missing))


# ----------------------------------------------------------------------------- atomic writes


def _stage(path: Path, data: bytes) -> str:
    """Write ``data`` to a new temporary file next to ``path``; return its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    The file gets mode ``0666 & ~umask``; missing folders are created (``0777 & ~umask``).
    This writes one file and keeps no manifest: verbs use :func:`write_outputs`.

    >>> import tempfile, pathlib, stat
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a" / "b.bin"
    >>> atomic_write_bytes(p, b"xy"); p.read_bytes()
    b'xy'
    >>> stat.S_IMODE(p.stat().st_mode) == file_mode()
    True
    """
    path = Path(path)
    make_dirs(path.parent)
    tmp = _stage(path, bytes(data))
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented JSON plus a newline."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


# ----------------------------------------------------------------------------- manifest


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict[str, dict]:
    """``{relative path: {"sha256": ..., "group": ...}}`` of the files dtmm wrote in
    ``folder`` (empty when there is no manifest). An unreadable manifest is an error:
    without it dtmm cannot tell its files from the user's."""
    p = Path(folder) / MANIFEST_NAME
    if not p.exists():
        return {}
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        files = raw["files"] if raw.get("format") == _MANIFEST_FORMAT else None
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("sha256"), str)
                for k, v in files.items()):
            raise ValueError("no 'files' map")
    except (OSError, ValueError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise OutputPathError(f"{p}: dtmm's output manifest is unreadable ({type(e).__name__}); "
                              f"move the folder's files away or choose another output folder"
                              ) from None
    return files


def _write_manifest(folder: Path, files: Mapping[str, dict]) -> None:
    body = {"format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION,
            "note": "files dtmm wrote in this folder; dtmm replaces or removes only these, "
                    "and only while unchanged",
            "files": {k: dict(files[k]) for k in sorted(files)}}
    atomic_write_bytes(folder / MANIFEST_NAME, (json.dumps(body, indent=1) + "\n").encode())


def _check_relpath(rel: str) -> None:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or rel == MANIFEST_NAME:
        raise ValueError(f"output name {rel!r} must be a relative path inside the folder")


def _collision(folder: Path, rel: str, manifest: Mapping[str, dict], new: bytes | None) -> str | None:
    """Why ``folder/rel`` may not be (over)written, or None when it may."""
    p = folder / rel
    # every folder on the way must be a folder (not a file or a link to elsewhere)
    q = folder
    for part in Path(rel).parts[:-1]:
        q = q / part
        if q.is_symlink() or (q.exists() and not q.is_dir()):
            return f"{q} is not a folder"
    if p.is_symlink():
        return f"{p} is a symbolic link"
    if not p.exists():
        return None
    if p.is_dir():
        return f"{p} is a folder"
    if new is not None and p.stat().st_size == len(new) and p.read_bytes() == new:
        return None                                   # identical content: nothing is lost
    entry = manifest.get(rel)
    if entry is None:
        return (f"refusing to overwrite {p}: dtmm did not write it (it is not listed in "
                f"{MANIFEST_NAME}); move it away or choose another output folder")
    if _sha256_file(p) != entry.get("sha256"):
        return (f"refusing to overwrite {p}: it changed since dtmm wrote it; move it away or "
                f"choose another output folder")
    return None


def _nearest_existing(p: Path) -> Path:
    a = p
    while not a.exists() and not a.is_symlink():
        if a.parent == a:
            break
        a = a.parent
    return a


def _probe_writable(d: Path) -> str | None:
    """None if a file can be created in folder ``d`` (tried, then removed), else why not."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dtmm-probe-", dir=d)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return None


def check_output_path(path: str | os.PathLike, *, names: Iterable[str] = (), what: str = "--out"
                      ) -> Path:
    """Check, before any long work, that ``path`` can be dtmm's output folder.

    ``path`` must be an existing writable folder or creatable (its nearest existing
    ancestor is a writable folder); each of ``names`` (relative paths of the files the
    verb will write) must be absent, written by dtmm and unchanged, or a folder-free path.
    Returns ``path`` as a :class:`~pathlib.Path`; raises
    :class:`~dtmm.errors.OutputPathError` naming ``what`` and the path otherwise.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "file"
    >>> _ = f.write_text("x")
    >>> check_output_path(f)
    Traceback (most recent call last):
    ...
    dtmm.errors.OutputPathError: --out .../file: exists and is not a folder
    >>> check_output_path(f / "sub")
    Traceback (most recent call last):
    ...
    dtmm.errors.OutputPathError: --out .../file/sub: cannot be created: .../file is not a folder
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if not os.fspath(path):
        raise OutputPathError(f"{what}: no output folder given")
    if p.exists():
        if not p.is_dir():
            raise OutputPathError(f"{what} {p}: exists and is not a folder")
        why = _probe_writable(p)
        if why is not None:
            raise OutputPathError(f"{what} {p}: the folder is not writable ({why})")
        manifest = read_manifest(p)
        for rel in names:
            _check_relpath(rel)
            msg = _collision(p, rel, manifest, None)
            if msg is not None:
                raise OutputPathError(msg if msg.startswith("refusing") else
                                      f"{what} {p}: cannot write {rel}: {msg}")
        return p
    a = _nearest_existing(p)
    if not a.is_dir():
        raise OutputPathError(f"{what} {p}: cannot be created: {a} is not a folder")
    why = _probe_writable(a)
    if why is not None:
        raise OutputPathError(f"{what} {p}: cannot be created in {a} ({why})")
    return p


def write_outputs(folder: str | os.PathLike, files: Mapping[str, bytes], *, group: str | None = None,
                  what: str = "--out") -> list[Path]:
    """Write ``files`` (relative path -> bytes) into ``folder`` and record them in its
    manifest; return the paths written.

    Every file is staged under a temporary name first; only when all are staged are
    they renamed into place, so on any error nothing changes. Refuses (with
    :class:`~dtmm.errors.OutputPathError`, before writing anything) to replace a file
    dtmm did not write or that changed since. With ``group``, files an earlier write of
    the same group recorded but this one does not write are removed if unchanged (a
    re-export without the CSR kernel drops ``kernels/dtmm_conv_csr_s8.c``).
    """
    folder = Path(os.path.expanduser(os.fspath(folder)))
    check_output_path(folder, what=what)
    manifest = dict(read_manifest(folder)) if folder.is_dir() else {}
    for rel in files:
        _check_relpath(rel)
        msg = _collision(folder, rel, manifest, files[rel])
        if msg is not None:
            raise OutputPathError(msg if msg.startswith("refusing") else
                                  f"{what} {folder}: cannot write {rel}: {msg}")
    created: list[Path] = []
    staged: list[tuple[str, Path]] = []
    try:
        created += make_dirs(folder)
        for rel, data in files.items():
            final = folder / rel
            created += make_dirs(final.parent)
            staged.append((_stage(final, bytes(data)), final))
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as e:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        raise OutputPathError(f"{what} {folder}: cannot write outputs: "
                              f"{e.strerror or e} ({e.filename or folder})") from None
    for rel, data in files.items():
        manifest[rel] = {"sha256": hashlib.sha256(bytes(data)).hexdigest(),
                         **({"group": group} if group else {})}
    if group is not None:
        for rel in [r for r, e in manifest.items() if e.get("group") == group and r not in files]:
            p = folder / rel
            entry = manifest.pop(rel)
            try:
                if p.is_file() and not p.is_symlink() and _sha256_file(p) == entry["sha256"]:
                    p.unlink()
                    _remove_empty_parents(folder, p.parent)
            except OSError:
                pass
    _write_manifest(folder, manifest)
    return [folder / rel for rel in files]


def _remove_empty_parents(folder: Path, d: Path) -> None:
    while d != folder and folder in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


def record_outputs(folder: str | os.PathLike, names: Iterable[str], *, group: str | None = None
                   ) -> None:
    """Add files another writer already put in ``folder`` (e.g. a checkpoint written by
    :func:`dtmm.train.save_checkpoint`) to its manifest, with their current content."""
    folder = Path(folder)
    manifest = dict(read_manifest(folder))
    for rel in names:
        _check_relpath(rel)
        manifest[rel] = {"sha256": _sha256_file(folder / rel), **({"group": group} if group else {})}
    _write_manifest(folder, manifest)


def check_output_file(path: str | os.PathLike, *, what: str = "--out") -> Path:
    """:func:`check_output_path` for a verb whose output is one file (``dtmm plan --out
    plan.json``): ``path`` must not be a folder, its folder must be usable, and an existing
    file there must be one dtmm wrote (recorded in that folder's manifest) and unchanged.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output_file(d)
    Traceback (most recent call last):
    ...
    dtmm.errors.OutputPathError: --out ...: is a folder; give the output file's path
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_dir():
        raise OutputPathError(f"{what} {p}: is a folder; give the output file's path")
    a = _nearest_existing(p.parent)
    if not a.is_dir():
        raise OutputPathError(f"{what} {p}: cannot be created: {a} is not a folder")
    check_output_path(p.parent, names=[p.name], what=what)
    return p


def write_output_file(path: str | os.PathLike, data: bytes, *, what: str = "--out") -> Path:
    """Write one output file through :func:`write_outputs` on its folder (manifest kept there)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    write_outputs(p.parent, {p.name: data}, what=what)
    return p
