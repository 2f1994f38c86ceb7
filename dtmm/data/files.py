"""Loaders for a user's local data: CIFAR-10 pickles, image folders, ``.npz``.

All three return a :class:`~dtmm.data.dataset.Dataset` with float32 NCHW pixels
in [0, 1] (8-bit data divided by 255) and raise :class:`~dtmm.errors.DataError`
with the offending path for anything they cannot read.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np

from dtmm.data.dataset import Dataset
from dtmm.errors import DataError

__all__ = ["load_cifar10", "load_folder", "load_npz", "IMAGE_EXTENSIONS", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

#: File name endings :func:`load_folder` reads (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".pbm",
                    ".tif", ".tiff", ".webp", ".npy")


def _require_path(path: str | os.PathLike, what: str) -> Path:
    p = Path(os.path.expanduser(os.fspath(path)))
    if not str(path):
        raise DataError(f"{what}: no path given (use '{what}:/path/to/data')")
    if not p.exists():
        raise DataError(f"{what}: path does not exist: {p}")
    return p


# --------------------------------------------------------------------------- CIFAR-10

class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays and plain Python containers.

    The CIFAR batches are pickles; refusing every other global means a
    malicious file cannot run code while being loaded.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
        ("_codecs", "encode"): ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(*target)


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"cifar10: cannot read {path}: {e}") from e
    except Exception as e:  # truncated / garbage / refused globals
        raise DataError(f"cifar10: {path} is not a valid CIFAR-10 pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"cifar10: {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _read_pickle(path)
    try:
        data = np.asarray(_get(d, "data"))
        labels = np.asarray(_get(d, "labels"))
    except KeyError as e:
        raise DataError(f"cifar10: {path} has no {e.args[0]!r} entry "
                        f"(keys: {sorted(map(str, d))})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataError(f"cifar10: {path}: 'data' must be uint8 of shape (N, 3072), "
                        f"got {data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(f"cifar10: {path}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer)
                        or labels.min() < 0 or labels.max() > 9):
        raise DataError(f"cifar10: {path}: labels must be integers 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(path: str | os.PathLike) -> Dataset:
    """Load a local CIFAR-10 in its python-pickle batch format.

    ``path`` is the ``cifar-10-batches-py`` directory (holding ``data_batch_1``
    .. ``data_batch_5``, ``test_batch`` and ``batches.meta``) or its parent.
    Each batch is a pickle dict with ``b'data'`` (uint8, ``(N, 3072)``: the R,
    G and B 32x32 planes, row-major) and ``b'labels'``. The batches found are
    concatenated in the order ``data_batch_1..5``, then ``test_batch``; use
    :func:`~dtmm.data.split` for a train/val/test split. Class names come from
    ``batches.meta`` (``b'label_names'``), or the standard CIFAR-10 names when
    that file is missing.

    Example:
        >>> import pickle, tempfile, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 5]}
        >>> with open(f"{d}/data_batch_1", "wb") as f: pickle.dump(batch, f)
        >>> ds = load_cifar10(d)
        >>> ds.input_shape, ds.y.tolist(), ds.class_names[3]
        ((3, 32, 32), [3, 5], 'cat')
    """
    root = _require_path(path, "cifar10")
    if not root.is_dir():
        raise DataError(f"cifar10: {root} is not a directory")
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    files = sorted(
        (p for p in root.iterdir() if re.fullmatch(r"data_batch_\d+", p.name)),
        key=lambda p: int(p.name.rsplit("_", 1)[1]),
    )
    if (root / "test_batch").exists():
        files.append(root / "test_batch")
    if not files:
        raise DataError(f"cifar10: no data_batch_N or test_batch files in {root}")
    xs, ys = [], []
    for f in files:
        x, y = _read_cifar_batch(f)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    if x.shape[0] == 0:
        raise DataError(f"cifar10: the batches in {root} hold no images")
    names = CIFAR10_CLASSES
    meta_path = root / "batches.meta"
    if meta_path.exists():
        meta = _read_pickle(meta_path)
        try:
            raw = _get(meta, "label_names")
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw)
        except (KeyError, TypeError, UnicodeDecodeError) as e:
            raise DataError(f"cifar10: {meta_path} has no usable 'label_names' ({e})") from None
        if len(names) <= int(y.max()):
            raise DataError(f"cifar10: {meta_path} names {len(names)} classes but labels "
                            f"go up to {int(y.max())}")
    return Dataset((x / np.float32(255.0)).astype(np.float32), y, names, "cifar10", str(root))


# --------------------------------------------------------------------------- image folders

def _read_npy(path: Path) -> np.ndarray:
    """One ``.npy`` sample as HWC float32: ``(H, W)`` or ``(H, W, C)`` with any C; uint8 is
    divided by 255, bool becomes 0/1, floats are kept (they must be finite)."""
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - decoding an untrusted file
        raise DataError(f"folder: cannot read array {path} ({type(e).__name__}: {e})") from e
    if not isinstance(a, np.ndarray):
        raise DataError(f"folder: {path} is not a .npy array file")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or min(a.shape) < 1:
        raise DataError(f"folder: {path}: array of shape {a.shape}; expected (H, W) or (H, W, C)")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise DataError(f"folder: {path}: holds NaN or infinite values")
        return a
    raise DataError(f"folder: {path}: array type {a.dtype}; expected uint8, bool or float")


def _read_image(path: Path) -> np.ndarray:
    """Read one image as HWC float32 in [0, 1] with C = 1 (grey) or 3 (colour); a ``.npy``
    sample keeps its own channel count (see :func:`_read_npy`)."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() == ".npy":
        return _read_npy(path)

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("1", "L", "LA"):
                a = np.asarray(im.convert("L"), dtype=np.float32)[:, :, None] / 255.0
            elif mode.startswith("I;16"):
                a = np.asarray(im, dtype=np.float32)[:, :, None] / 65535.0
            elif mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            else:
                raise DataError(f"folder: {path}: unsupported image mode {mode!r}")
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"folder: cannot read image {path}: {e}") from e
    except Exception as e:  # noqa: BLE001 - Pillow decoding an untrusted file
        raise DataError(f"folder: cannot decode image {path} ({type(e).__name__}: {e})") from e
    return a


def load_folder(path: str | os.PathLike) -> Dataset:
    """Load an ImageFolder-style directory: one subdirectory per class.

    Class ``i`` is the ``i``-th subdirectory in sorted name order (all
    subdirectories count, even empty ones, so indices do not shift). Files
    ending in one of :data:`IMAGE_EXTENSIONS` are read (sorted by name): pictures
    with Pillow, ``.npy`` files as ``(H, W)`` / ``(H, W, C)`` arrays with any number of
    channels (for inputs that are not pictures: sensor windows, audio features);
    other files and hidden entries are ignored. Images are not resized:
    all must have the same size and all be grey (modes 1/L/LA/I;16) or all be
    colour (RGB/RGBA/P…, alpha dropped), otherwise :class:`DataError` names
    the first file that differs.

    Example:
        >>> import tempfile, os, numpy as np
        >>> from PIL import Image
        >>> d = tempfile.mkdtemp()
        >>> for cls in ("cat", "dog"):
        ...     os.mkdir(f"{d}/{cls}")
        ...     Image.fromarray(np.zeros((4, 6), np.uint8)).save(f"{d}/{cls}/0.png")
        >>> ds = load_folder(d)
        >>> ds.class_names, ds.input_shape, ds.y.tolist()
        (('cat', 'dog'), (1, 4, 6), [0, 1])
    """
    root = _require_path(path, "folder")
    if not root.is_dir():
        raise DataError(f"folder: {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"folder: {root} has no class subdirectories")
    images: list[np.ndarray] = []
    labels: list[int] = []
    first: Path | None = None
    for ci, cname in enumerate(classes):
        files = sorted(
            p for p in (root / cname).iterdir()
            if p.is_file() and not p.name.startswith(".")
            and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        for f in files:
            a = _read_image(f)
            if first is None:
                first = f
            elif a.shape != images[0].shape:
                ref = images[0].shape
                raise DataError(
                    f"folder: {f} is {a.shape[1]}x{a.shape[0]} with {a.shape[2]} channel(s), "
                    f"but {first} is {ref[1]}x{ref[0]} with {ref[2]} channel(s); "
                    "all images must have the same size and colour mode"
                )
            images.append(a)
            labels.append(ci)
    if not images:
        raise DataError(f"folder: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    x = np.stack(images).transpose(0, 3, 1, 2)
    return Dataset(x, np.asarray(labels, np.int64), tuple(classes), root.name or "folder", str(root))


# --------------------------------------------------------------------------- npz

def _to_nchw(x: np.ndarray, p: Path, layout: str | None, expect) -> np.ndarray:
    """``x`` as NCHW; see :func:`load_npz` for how the layout is decided."""
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim != 4:
        raise DataError(f"npz: {p}: x has shape {x.shape}; expected (N,H,W), (N,H,W,C) or (N,C,H,W)")
    if layout is not None:
        layout = layout.strip().upper()
        if layout not in ("NHWC", "NCHW"):
            raise DataError(f"npz: {p}: layout {layout!r} must be 'NHWC' or 'NCHW'")
        return x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
    nhwc, nchw = tuple(x.shape[i] for i in (3, 1, 2)), tuple(x.shape[1:])
    if expect is not None:
        expect = tuple(int(v) for v in expect)
        if nhwc == expect:
            return x.transpose(0, 3, 1, 2)
        if nchw == expect:
            return x
        raise DataError(f"npz: {p}: x has shape {x.shape}, which is neither NHWC nor NCHW of the "
                        f"expected input (C, H, W) = {expect}")
    if x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    if x.shape[1] in (1, 3):
        return x
    if x.shape[3] < min(x.shape[1], x.shape[2]):
        return x.transpose(0, 3, 1, 2)
    if x.shape[1] < min(x.shape[2], x.shape[3]):
        return x
    raise DataError(f"npz: {p}: cannot tell the layout of x with shape {x.shape}; add an array "
                    f"layout='NHWC' or 'NCHW' to the file")


def load_npz(path: str | os.PathLike, expect: tuple[int, int, int] | None = None) -> Dataset:
    """Load a ``.npz`` holding arrays ``x`` (images) and ``y`` (integer labels).

    ``x`` may have any number of channels (sensor and audio-feature models often have
    2, 5 or 17). Its layout is decided, in this order, by:

    * an optional array ``layout`` in the file: ``"NHWC"`` or ``"NCHW"``;
    * ``expect``, the ``(C, H, W)`` input shape of the model it is for (``dtmm verify``,
      ``quantize`` and ``prune`` pass it): the layout that gives that shape;
    * 3-D ``(N, H, W)`` — one grey channel;
    * 4-D with a last dimension of 1 or 3 — NHWC (this rule wins, so a
      ``(N, 3, 32, 3)`` array is read as NHWC); with a second dimension of 1 or 3 — NCHW;
    * otherwise the strictly smallest of the three non-batch dimensions is the channel
      axis (``(N, 28, 28, 5)`` is NHWC, ``(N, 17, 40, 40)`` NCHW); if none is,
      :class:`DataError` asks for a ``layout`` array.

    Values: ``uint8`` is divided by 255; ``bool`` becomes 0/1; float arrays are
    kept as they are (assumed already normalised) but must be finite. ``y``
    must hold non-negative integers (integral floats are accepted). An
    optional array ``class_names`` (strings) names the classes; without it the
    classes are ``"0" .. str(max(y))``.

    Example:
        >>> import tempfile, numpy as np
        >>> p = tempfile.mkdtemp() + "/toy.npz"
        >>> np.savez(p, x=np.zeros((3, 5, 5, 3), np.uint8), y=np.array([0, 2, 1]))
        >>> ds = load_npz(p)
        >>> ds.input_shape, ds.num_classes
        ((3, 5, 5), 3)
        >>> np.savez(p, x=np.zeros((3, 9, 9, 5), np.uint8), y=np.array([0, 2, 1]))
        >>> load_npz(p).input_shape
        (5, 9, 9)
    """
    p = _require_path(path, "npz")
    if p.is_dir():
        raise DataError(f"npz: {p} is a directory, expected a .npz file")
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"x", "y"} <= keys:
                raise DataError(f"npz: {p} must contain arrays 'x' and 'y', found {sorted(keys)}")
            x = z["x"]
            y = z["y"]
            names = z["class_names"] if "class_names" in keys else None
            layout = str(np.asarray(z["layout"]).reshape(-1)[0]) if "layout" in keys and np.asarray(
                z["layout"]).size else None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - decoding an untrusted file: zlib, zipfile, numpy ...
        raise DataError(f"npz: cannot read {p} ({type(e).__name__}: {e}); expected a .npz "
                        f"written by numpy.savez with arrays 'x' and 'y'") from e

    x = _to_nchw(x, p, layout, expect)
    if x.shape[0] == 0:
        raise DataError(f"npz: {p} holds no images")
    if x.dtype == np.uint8:
        xf = x.astype(np.float32) / np.float32(255.0)
    elif x.dtype == np.bool_:
        xf = x.astype(np.float32)
    elif np.issubdtype(x.dtype, np.floating):
        xf = x.astype(np.float32)
        if not np.isfinite(xf).all():
            raise DataError(f"npz: {p}: x holds NaN or infinite values")
    else:
        raise DataError(f"npz: {p}: x must be uint8, bool or float, got {x.dtype}")

    if y.ndim != 1:
        raise DataError(f"npz: {p}: y must be 1-D, got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"npz: {p}: {x.shape[0]} images but {y.shape[0]} labels")
    if np.issubdtype(y.dtype, np.floating):
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(f"npz: {p}: y must hold integer class indices")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"npz: {p}: y must hold integer class indices, got {y.dtype}")
    yi = y.astype(np.int64)
    if yi.min() < 0:
        raise DataError(f"npz: {p}: negative label {int(yi.min())}")
    if names is not None:
        class_names = tuple(str(n) for n in np.asarray(names).ravel())
        if len(class_names) <= int(yi.max()):
            raise DataError(f"npz: {p}: {len(class_names)} class_names but labels go up to "
                            f"{int(yi.max())}")
    else:
        class_names = tuple(str(i) for i in range(int(yi.max()) + 1))
    return Dataset(xf, yi, class_names, p.stem, str(p))
