"""Detection datasets: images with per-image boxes, group-aware splitting.

A :class:`DetectionDataset` holds every image as one float32 NCHW array in ``[0, 1]``
(like :class:`~dtmm.data.dataset.Dataset`) and, per image, a float32 ``(K, 4)`` array of
boxes ``(x1, y1, x2, y2)`` in pixels of that array (continuous coordinates, see
:mod:`dtmm.detect.boxes`); ``K`` may be 0. ``groups`` (optional, one int per image) ties
images that must stay in the same split: :func:`split_detection` never puts one group
in two splits (FDDB: its folds; the composited faces: which faces were pasted).

Example:
    >>> import numpy as np
    >>> ds = DetectionDataset(np.zeros((4, 1, 8, 8), np.float32),
    ...                       [np.array([[1, 1, 4, 4]]), np.zeros((0, 4)), np.array([[0, 0, 8, 8]]),
    ...                        np.zeros((0, 4))], ("face",), "toy", groups=[0, 0, 1, 2])
    >>> len(ds), ds.input_shape, ds.n_boxes, ds.subset([0, 2]).boxes[1].tolist()
    (4, (1, 8, 8), 2, [[0.0, 0.0, 8.0, 8.0]])
    >>> tr, va, te = split_detection(ds, val=0.0, test=0.25, seed=0)
    >>> sorted(set(tr.groups) & set(te.groups))
    []
"""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from dtmm.errors import DataError

__all__ = ["DetectionDataset", "split_detection"]


@dataclass(frozen=True, eq=False)
class DetectionDataset:
    """Images ``x`` (float32 ``(N, C, H, W)``, ``[0, 1]``) with ``boxes`` per image.

    ``class_names``: the object classes (one, ``("face",)``, for the detectors here);
    ``groups``: int64 ``(N,)`` split groups (default: every image its own group).
    """

    x: np.ndarray
    boxes: tuple
    class_names: tuple[str, ...]
    name: str
    source: str = ""
    groups: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        x = np.asarray(self.x)
        if x.ndim != 4:
            raise DataError(f"dataset {self.name!r}: x must be 4-D (N, C, H, W), got shape {x.shape}")
        if len(self.boxes) != x.shape[0]:
            raise DataError(f"dataset {self.name!r}: {x.shape[0]} images but boxes for "
                            f"{len(self.boxes)}")
        h, w = x.shape[2:]
        boxes = []
        for i, b in enumerate(self.boxes):
            b = np.asarray(b, np.float32)
            b = b.reshape(0, 4) if b.size == 0 else b
            if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
                raise DataError(f"dataset {self.name!r}: boxes of image {i} must be finite (K, 4) "
                                f"(x1, y1, x2, y2), got shape {b.shape}")
            bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]) | (b[:, :2] < 0).any(1) \
                | (b[:, 2] > w) | (b[:, 3] > h)
            if bad.any():
                raise DataError(f"dataset {self.name!r}: image {i} box {b[bad][0].tolist()} is empty "
                                f"or outside the {w}x{h} image")
            b.setflags(write=False)
            boxes.append(b)
        groups = np.arange(x.shape[0]) if self.groups is None else np.asarray(self.groups)
        if groups.shape != (x.shape[0],) or (groups.size and not np.issubdtype(groups.dtype, np.integer)):
            raise DataError(f"dataset {self.name!r}: groups must be one integer per image")
        if not self.class_names:
            raise DataError(f"dataset {self.name!r}: no classes")
        object.__setattr__(self, "x", np.ascontiguousarray(x, dtype=np.float32))
        object.__setattr__(self, "boxes", tuple(boxes))
        object.__setattr__(self, "groups", np.ascontiguousarray(groups, dtype=np.int64))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (f"DetectionDataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
                f"boxes={self.n_boxes})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        _, c, h, w = self.x.shape
        return (int(c), int(h), int(w))

    @property
    def n_boxes(self) -> int:
        """Total number of boxes."""
        return int(sum(len(b) for b in self.boxes))

    def subset(self, indices, name: str | None = None) -> "DetectionDataset":
        """A new dataset of the images at ``indices`` (copied), with their boxes and groups."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return DetectionDataset(self.x[idx], tuple(self.boxes[i] for i in idx), self.class_names,
                                name or self.name, self.source, self.groups[idx])


def split_detection(ds: DetectionDataset, val: float = 0.1, test: float = 0.2, seed: int = 0
                    ) -> tuple[DetectionDataset, DetectionDataset, DetectionDataset]:
    """Split into ``(train, val, test)`` by whole groups, deterministically.

    Groups are shuffled with ``numpy.random.default_rng(seed)`` and taken for test, then
    val, while each split stays at or below its share of the images (a split gets at
    least one group when its share is positive and more than one group exists); the rest
    is train. Each split is then shuffled with the same generator.
    """
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise ValueError(f"need 0 <= val, test and val + test < 1, got val={val}, test={test}")
    rng = np.random.default_rng(seed)
    uniq = np.unique(ds.groups)
    uniq = uniq[rng.permutation(uniq.size)]
    sizes = {int(g): int(c) for g, c in zip(*np.unique(ds.groups, return_counts=True))}
    n = len(ds)
    chosen: list[list[int]] = [[], []]                 # test, val
    rest = list(int(g) for g in uniq)
    for k, share in enumerate((test, val)):
        target, got = share * n, 0
        for g in list(rest):
            if share <= 0 or len(rest) <= 1:
                break
            if got + sizes[g] <= target + 1e-9 or not chosen[k]:
                chosen[k].append(g)
                rest.remove(g)
                got += sizes[g]
            if got >= target - 1e-9:
                break
    out = []
    for suffix, gs in (("train", rest), ("val", chosen[1]), ("test", chosen[0])):
        idx = np.flatnonzero(np.isin(ds.groups, gs))
        idx = idx[rng.permutation(idx.size)]
        out.append(ds.subset(idx, name=f"{ds.name}/{suffix}"))
    return out[0], out[1], out[2]
