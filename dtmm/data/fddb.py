"""A user's local FDDB (Face Detection Data Set and Benchmark, Jain & Learned-Miller 2010).

FDDB cannot be downloaded here; point ``fddb:PATH`` (or :func:`load_fddb`) at a local
copy laid out as distributed::

    PATH/FDDB-folds/FDDB-fold-01-ellipseList.txt ... FDDB-fold-10-ellipseList.txt
    PATH/originalPics/2002/08/11/big/img_591.jpg ...   (or PATH/2002/08/11/big/img_591.jpg)

Each ellipse list holds, per image: its path without extension (relative to the
picture root), the number of faces, then one line per face with
``major_axis_radius minor_axis_radius angle center_x center_y 1`` (pixels; ``angle`` in
radians between the major axis and the x axis; the trailing 1 may be missing).

Ellipses become boxes the standard geometric way: the **tight axis-aligned bounding box
of the rotated ellipse**, half-width ``sqrt(a^2 cos^2(t) + b^2 sin^2(t))`` and
half-height ``sqrt(a^2 sin^2(t) + b^2 cos^2(t))`` around the centre (``a``, ``b`` the
major / minor radii, ``t`` the angle), clipped to the image (:func:`ellipse_to_box`).
Images are resized (stretched, as the paper's 112x112x3) to ``size x size`` with
bilinear filtering and the boxes scaled with them; boxes that clipping leaves under one
pixel wide or high are dropped. The fold (0-9) is each image's ``group``, so splits
keep folds whole. Pixels are float32 in [0, 1], 3 channels (grey pictures replicated)
or 1 with ``channels=1``.

Example:
    >>> b = ellipse_to_box(40.0, 20.0, np.pi / 2, 100.0, 80.0)     # upright face
    >>> [round(v, 6) for v in b]
    [80.0, 40.0, 120.0, 120.0]
"""
from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from dtmm.data.detection import DetectionDataset
from dtmm.errors import DataError

__all__ = ["load_fddb", "parse_ellipse_list", "ellipse_to_box", "FDDB_SIZE"]

FDDB_SIZE = 112
_FOLD_FILE = re.compile(r"^FDDB-fold-(\d{2})-ellipseList\.txt$")


def ellipse_to_box(major: float, minor: float, angle: float, cx: float, cy: float
                   ) -> tuple[float, float, float, float]:
    """Tight axis-aligned box ``(x1, y1, x2, y2)`` of an FDDB ellipse (not clipped)."""
    c, s = math.cos(angle), math.sin(angle)
    hw = math.sqrt((major * c) ** 2 + (minor * s) ** 2)
    hh = math.sqrt((major * s) ** 2 + (minor * c) ** 2)
    return cx - hw, cy - hh, cx + hw, cy + hh


def parse_ellipse_list(path: str | os.PathLike) -> list[tuple[str, list[tuple[float, ...]]]]:
    """``[(image path, [(major, minor, angle, cx, cy), ...]), ...]`` of one ellipse list.

    Raises :class:`~dtmm.errors.DataError` naming the file and line of anything malformed.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8", errors="strict").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"fddb: cannot read {p}: {e}") from None
    out = []
    k = 0

    def next_line(what: str) -> str:
        nonlocal k
        while k < len(lines) and not lines[k].strip():
            k += 1
        if k >= len(lines):
            raise DataError(f"fddb: {p}: file ends where {what} was expected (after line {k})")
        k += 1
        return lines[k - 1].strip()

    while True:
        while k < len(lines) and not lines[k].strip():
            k += 1
        if k >= len(lines):
            break
        name = next_line("an image path")
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise DataError(f"fddb: {p}:{k}: image path {name!r} must be relative, without '..'")
        count_s = next_line(f"the face count of {name!r}")
        try:
            count = int(count_s)
        except ValueError:
            raise DataError(f"fddb: {p}:{k}: face count {count_s!r} of {name!r} is not an "
                            f"integer") from None
        if count < 0:
            raise DataError(f"fddb: {p}:{k}: negative face count {count} for {name!r}")
        faces = []
        for _ in range(count):
            line = next_line(f"an ellipse of {name!r}")
            parts = line.split()
            try:
                vals = [float(v) for v in parts]
            except ValueError:
                raise DataError(f"fddb: {p}:{k}: ellipse {line!r} is not numbers") from None
            if len(vals) not in (5, 6) or not all(math.isfinite(v) for v in vals):
                raise DataError(f"fddb: {p}:{k}: an ellipse line holds 'major minor angle "
                                f"center_x center_y [1]', got {line!r}")
            if vals[0] <= 0 or vals[1] <= 0:
                raise DataError(f"fddb: {p}:{k}: ellipse radii must be > 0, got {line!r}")
            faces.append(tuple(vals[:5]))
        out.append((name, faces))
    return out


def _fold_files(root: Path) -> dict[int, Path]:
    d = root / "FDDB-folds"
    if not d.is_dir():
        raise DataError(f"fddb: no FDDB-folds directory in {root} (expected "
                        f"{d}/FDDB-fold-01-ellipseList.txt ...)")
    found = {}
    for f in sorted(d.iterdir()):
        m = _FOLD_FILE.match(f.name)
        if m:
            found[int(m.group(1))] = f
    if not found:
        raise DataError(f"fddb: {d} holds no FDDB-fold-XX-ellipseList.txt file")
    return found


def _image_path(root: Path, name: str) -> Path:
    for base in (root / "originalPics", root):
        for ext in (".jpg", ".jpeg", ".png", ".JPG"):
            p = base / (name + ext)
            if p.is_file():
                return p
    raise DataError(f"fddb: image {name!r} not found under {root / 'originalPics'} or {root} "
                    f"(tried .jpg, .jpeg, .png)")


def load_fddb(root: str | os.PathLike, *, folds=None, size: int = FDDB_SIZE, channels: int = 3,
              progress: bool = True) -> DetectionDataset:
    """Load a local FDDB copy (see the module docstring) as a :class:`DetectionDataset`.

    ``folds``: fold numbers 1..10 to read (default: every ellipse list present).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(os.path.expanduser(os.fspath(root)))
    if not root.is_dir():
        raise DataError(f"fddb: not a directory: {root}")
    if channels not in (1, 3):
        raise DataError(f"fddb: channels must be 1 or 3, got {channels}")
    if int(size) < 8:
        raise DataError(f"fddb: size must be >= 8, got {size}")
    files = _fold_files(root)
    want = sorted(files) if folds is None else sorted({int(f) for f in folds})
    missing = [f for f in want if f not in files]
    if missing:
        raise DataError(f"fddb: no ellipse list for fold(s) {missing} in {root / 'FDDB-folds'}")
    entries = [(fold, name, faces) for fold in want for name, faces in parse_ellipse_list(files[fold])]
    if not entries:
        raise DataError(f"fddb: the ellipse lists of folds {want} in {root} list no image")
    x = np.empty((len(entries), channels, size, size), np.float32)
    boxes, groups = [], np.empty(len(entries), np.int64)
    show = progress and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(entries), unit="img", desc="fddb", leave=False)
    t0 = time.time()
    try:
        for k, (fold, name, faces) in enumerate(entries):
            path = _image_path(root, name)
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB" if channels == 3 else "L")
                    w0, h0 = im.size
                    im = im.resize((size, size), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.float32) / 255.0
            except (OSError, UnidentifiedImageError, ValueError) as e:
                raise DataError(f"fddb: cannot read image {path}: {e}") from None
            x[k] = a.transpose(2, 0, 1) if channels == 3 else a[None]
            sx, sy = size / w0, size / h0
            bs = []
            for major, minor, angle, cx, cy in faces:
                x1, y1, x2, y2 = ellipse_to_box(major, minor, angle, cx, cy)
                x1, x2 = max(0.0, x1) * sx, min(float(w0), x2) * sx
                y1, y2 = max(0.0, y1) * sy, min(float(h0), y2) * sy
                if x2 - x1 >= 1.0 and y2 - y1 >= 1.0:
                    bs.append((x1, y1, x2, y2))
            boxes.append(np.asarray(bs, np.float32).reshape(-1, 4))
            groups[k] = fold - 1
            if bar is not None:
                bar.update(1)
            elif progress and (k + 1) % 500 == 0:
                print(f"fddb: {k + 1}/{len(entries)} images ({time.time() - t0:.1f} s)",
                      file=sys.stderr, flush=True)
    finally:
        if bar is not None:
            bar.close()
    return DetectionDataset(x, tuple(boxes), ("face",), "fddb", str(root), groups)
