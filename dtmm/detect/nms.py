"""Greedy non-maximum suppression.

Example:
    >>> import numpy as np
    >>> b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()    # box 1 overlaps box 0 (IoU 0.68)
    [0, 2]
"""
from __future__ import annotations

import numpy as np

from dtmm.detect.boxes import as_boxes, iou_matrix
from dtmm.errors import DtmmError

__all__ = ["nms"]


def nms(boxes, scores, iou_threshold: float = 0.45, *, max_detections: int | None = None
        ) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first.

    Boxes are visited by decreasing score (equal scores: lower index first); a box is
    kept unless its IoU with an already kept box is greater than ``iou_threshold``. At
    most ``max_detections`` indices are returned.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != b.shape[0]:
        raise DtmmError(f"nms: {b.shape[0]} boxes but {s.shape[0]} scores")
    if not 0.0 <= iou_threshold <= 1.0:
        raise DtmmError(f"nms: iou_threshold must be in [0, 1], got {iou_threshold}")
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    limit = len(order) if max_detections is None else int(max_detections)
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = iou_matrix(b[i:i + 1], b[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
