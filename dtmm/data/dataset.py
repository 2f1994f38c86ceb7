"""The in-memory :class:`Dataset`, stratified splitting and batching.

Every loader in :mod:`dtmm.data` returns the same thing: a :class:`Dataset`
holding the whole dataset as one float32 NCHW array with values in ``[0, 1]``
(``x``) and one int64 label vector (``y``). Tiny-ML datasets fit in memory, and
one array makes splitting, calibration sampling and batching trivial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from dtmm.errors import DataError, InvalidArgument

__all__ = ["Dataset", "split", "iterate_batches"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset held in memory.

    Attributes:
        x: float32 array of shape ``(N, C, H, W)``. Loaders scale pixels to
            ``[0, 1]`` (8-bit images are divided by 255); no mean/std
            normalisation is applied, so int8 input quantization sees the
            raw pixel range.
        y: int64 array of shape ``(N,)`` with values in ``[0, num_classes)``.
        class_names: one name per class; ``num_classes == len(class_names)``.
        name: short name of the dataset (e.g. ``"digits"``).
        source: where it was loaded from (a package or a path), for reports.

    Example:
        >>> import numpy as np
        >>> ds = Dataset(np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 0, 1]),
        ...              ("a", "b"), "toy")
        >>> len(ds), ds.num_classes, ds.input_shape
        (4, 2, (1, 2, 2))
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    name: str
    source: str = field(default="")

    def __post_init__(self) -> None:
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        if x.ndim != 4:
            raise DataError(f"dataset {self.name!r}: x must be 4-D (N, C, H, W), got shape {x.shape}")
        if y.ndim != 1:
            raise DataError(f"dataset {self.name!r}: y must be 1-D, got shape {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"dataset {self.name!r}: {x.shape[0]} images but {y.shape[0]} labels"
            )
        if len(self.class_names) == 0:
            raise DataError(f"dataset {self.name!r}: no classes")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"dataset {self.name!r}: labels must be integers, got {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= len(self.class_names)):
            raise DataError(
                f"dataset {self.name!r}: labels must lie in [0, {len(self.class_names)}), "
                f"found {int(y.min())}..{int(y.max())}"
            )
        object.__setattr__(self, "x", np.ascontiguousarray(x, dtype=np.float32))
        object.__setattr__(self, "y", np.ascontiguousarray(y, dtype=np.int64))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        _, c, h, w = self.x.shape
        return (int(c), int(h), int(w))

    def subset(self, indices, name: str | None = None) -> "Dataset":
        """Return a new dataset holding the items at ``indices`` (copied).

        Example:
            >>> import numpy as np
            >>> ds = Dataset(np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 0, 1]),
            ...              ("a", "b"), "toy")
            >>> ds.subset([1, 3]).y.tolist()
            [1, 1]
        """
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.x[idx], self.y[idx], self.class_names, name or self.name, self.source)

    def class_counts(self) -> np.ndarray:
        """Number of items per class, shape ``(num_classes,)``."""
        return np.bincount(self.y, minlength=self.num_classes)


def split(
    ds: Dataset, val: float = 0.1, test: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset, Dataset]:
    """Split ``ds`` into ``(train, val, test)``, stratified and deterministic.

    Each class is shuffled on its own with ``numpy.random.default_rng(seed)``;
    ``round(n_c * test)`` of its ``n_c`` items go to test, ``round(n_c * val)``
    to val, the rest to train. Every split therefore holds each class in the
    same proportion as ``ds``, and the same seed always gives the same split.
    Each split is then shuffled (with the same generator), so any prefix of it is
    a random sample of all classes even when the source is stored class by class
    (as mnist5k is). ``val=0`` or ``test=0`` gives an empty split. A
    :class:`~dtmm.data.detection.DetectionDataset` is split by whole groups instead
    (:func:`~dtmm.data.detection.split_detection`).

    Example:
        >>> import numpy as np
        >>> ds = Dataset(np.zeros((20, 1, 1, 1), np.float32), np.arange(20) % 2, ("a", "b"), "toy")
        >>> tr, va, te = split(ds, val=0.2, test=0.2, seed=0)
        >>> len(tr), len(va), len(te), te.class_counts().tolist()
        (12, 4, 4, [2, 2])
    """
    from dtmm.data.detection import DetectionDataset, split_detection

    if isinstance(ds, DetectionDataset):
        return split_detection(ds, val=val, test=test, seed=seed)
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise InvalidArgument(f"need 0 <= val, test and val + test < 1, got val={val}, test={test}")
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in range(ds.num_classes):
        idx = np.flatnonzero(ds.y == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(idx.size * test))
        n_val = int(round(idx.size * val))
        n_val = min(n_val, idx.size - n_test)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    out = []
    for suffix, chunks in zip(("train", "val", "test"), parts):
        idx = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        idx = idx[rng.permutation(idx.size)]
        out.append(ds.subset(idx, name=f"{ds.name}/{suffix}"))
    return out[0], out[1], out[2]


def iterate_batches(
    ds: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False
) -> Iterator[tuple["torch.Tensor", "torch.Tensor"]]:  # noqa: F821
    """Yield ``(x, y)`` torch tensor batches (float32 NCHW, int64) from ``ds``.

    With ``shuffle=True`` the order is a permutation drawn from
    ``numpy.random.default_rng(seed)``: the same seed gives the same batches.
    The tensors share memory with ``ds`` only when not shuffled.

    Example:
        >>> import numpy as np
        >>> ds = Dataset(np.zeros((5, 1, 2, 2), np.float32), np.zeros(5, np.int64), ("a",), "toy")
        >>> [tuple(xb.shape) for xb, yb in iterate_batches(ds, 2)]
        [(2, 1, 2, 2), (2, 1, 2, 2), (1, 1, 2, 2)]
    """
    import torch

    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    n = len(ds)
    order = np.random.default_rng(seed).permutation(n) if shuffle else None
    stop = n - (n % batch_size) if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            xb, yb = ds.x[start:start + batch_size], ds.y[start:start + batch_size]
        else:
            sel = order[start:start + batch_size]
            xb, yb = ds.x[sel], ds.y[sel]
        yield torch.from_numpy(xb), torch.from_numpy(yb)
