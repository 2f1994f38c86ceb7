"""Axis-aligned boxes: ``(x1, y1, x2, y2)`` in pixels, ``x2 > x1``, ``y2 > y1``.

Coordinates are continuous: a box covers ``[x1, x2) x [y1, y2)`` and its area is
``(x2 - x1) * (y2 - y1)``. ``inclusive=True`` switches to the PASCAL VOC devkit's
integer-pixel convention, where a box covers pixels ``x1..x2`` inclusive and its width
is ``x2 - x1 + 1`` (only for comparing with tools that use it).

Example:
    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0, 10.0, 10.0]]); b = np.array([[5.0, 0.0, 15.0, 10.0], [20, 20, 30, 30]])
    >>> iou_matrix(a, b).round(4).tolist()
    [[0.3333, 0.0]]
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import DtmmError

__all__ = ["as_boxes", "box_area", "iou_matrix", "cxcywh_to_xyxy", "xyxy_to_cxcywh", "clip_boxes"]


def as_boxes(boxes, what: str = "boxes") -> np.ndarray:
    """``boxes`` as a float64 ``(K, 4)`` array (``K`` may be 0); checks shape and finiteness.

    >>> as_boxes([]).shape, as_boxes([1, 2, 3, 4]).shape
    ((0, 4), (1, 4))
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None, :]
    if b.ndim != 2 or b.shape[1] != 4:
        raise DtmmError(f"{what} must have shape (K, 4) as (x1, y1, x2, y2), got {b.shape}")
    if not np.isfinite(b).all():
        raise DtmmError(f"{what} contain non-finite coordinates")
    return b


def box_area(boxes, *, inclusive: bool = False) -> np.ndarray:
    """Areas of ``(K, 4)`` boxes (0 for degenerate ones).

    >>> box_area([[0, 0, 2, 3]]).tolist(), box_area([[0, 0, 2, 3]], inclusive=True).tolist()
    ([6.0], [12.0])
    """
    b = as_boxes(boxes)
    e = 1.0 if inclusive else 0.0
    return np.maximum(b[:, 2] - b[:, 0] + e, 0.0) * np.maximum(b[:, 3] - b[:, 1] + e, 0.0)


def iou_matrix(a, b, *, inclusive: bool = False) -> np.ndarray:
    """Intersection over union of every box of ``a`` (K, 4) with every box of ``b`` (M, 4)."""
    a, b = as_boxes(a, "a"), as_boxes(b, "b")
    e = 1.0 if inclusive else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + e
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + e
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    union = box_area(a, inclusive=inclusive)[:, None] + box_area(b, inclusive=inclusive)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def cxcywh_to_xyxy(b) -> np.ndarray:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``.

    >>> cxcywh_to_xyxy([[5, 5, 4, 2]]).tolist()
    [[3.0, 4.0, 7.0, 6.0]]
    """
    b = as_boxes(b)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                     b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], axis=1)


def xyxy_to_cxcywh(b) -> np.ndarray:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``.

    >>> xyxy_to_cxcywh([[3, 4, 7, 6]]).tolist()
    [[5.0, 5.0, 4.0, 2.0]]
    """
    b = as_boxes(b)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                     b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def clip_boxes(b, height: float, width: float) -> np.ndarray:
    """Boxes clipped to the image ``[0, width] x [0, height]``.

    >>> clip_boxes([[-2, 3, 12, 40]], 20, 10).tolist()
    [[0.0, 3.0, 10.0, 20.0]]
    """
    b = as_boxes(b).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    return b
