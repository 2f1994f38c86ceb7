"""Average precision at an IoU threshold, PASCAL VOC style (all-points interpolation).

The rules (those of the VOC devkit since 2010, for one class):

1. Detections of all images are ranked by decreasing score (equal scores keep their
   input order: image by image, then detection order).
2. Each detection, in rank order, is compared with the ground-truth boxes of *its*
   image: the one of largest IoU is its match candidate. If that IoU is greater than
   ``iou_threshold`` (strictly, as the devkit) and the box is not yet matched, the
   detection is a true positive and the box becomes matched; if the box was already
   matched, or the IoU is not above the threshold, it is a false positive. A candidate
   marked *difficult* makes the detection count as neither.
3. ``recall = TP / n_gt`` (difficult boxes not counted in ``n_gt``) and
   ``precision = TP / (TP + FP)`` after each rank.
4. AP is the area under the precision envelope: with ``recall`` bracketed by 0 and 1
   and ``precision`` by 0 and 0, each precision is replaced by the maximum precision at
   any equal or higher recall, and ``AP = sum (r[i+1] - r[i]) * p[i+1]`` over the points
   where recall changes.

No detections give AP 0; no ground truth at all is an error (AP is undefined).

Example (one image, two faces, three detections: TP, FP, TP):
    >>> import numpy as np
    >>> gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    >>> det = [(np.array([[0, 0, 10, 9], [40, 40, 50, 50], [21, 20, 30, 30]], float),
    ...         np.array([0.9, 0.8, 0.7]))]
    >>> r = average_precision(det, gt)
    >>> r.tp.tolist(), round(r.ap, 4)       # 0.5 * 1 + 0.5 * 2/3
    ([1, 0, 1], 0.8333)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dtmm.detect.boxes import as_boxes, iou_matrix
from dtmm.errors import DtmmError

__all__ = ["APResult", "average_precision", "ap_from_pr"]


@dataclass(frozen=True)
class APResult:
    """AP and the curve it came from.

    ``tp`` / ``fp``: int 0/1 per ranked detection (both 0: ignored, matched a difficult
    box); ``precision`` / ``recall`` after each ranked detection; ``scores`` in rank order.
    """

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    scores: np.ndarray
    n_gt: int
    n_detections: int


def ap_from_pr(precision, recall) -> float:
    """All-points interpolated AP from a precision/recall curve (rule 4 of the module).

    >>> ap_from_pr([1.0, 0.5, 2 / 3], [0.5, 0.5, 1.0])
    0.8333333333333333
    """
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def average_precision(detections: Sequence, ground_truth: Sequence, *, iou_threshold: float = 0.5,
                      difficult: Sequence | None = None, inclusive: bool = False) -> APResult:
    """VOC-style AP of one class over a set of images (see the module docstring).

    Args:
        detections: per image, ``(boxes (K, 4), scores (K,))`` in pixels ``(x1, y1, x2, y2)``.
        ground_truth: per image, boxes ``(M, 4)``.
        iou_threshold: a match needs IoU strictly greater than this (AP@0.5: 0.5).
        difficult: optional per image bool ``(M,)``: boxes that neither count nor penalise.
        inclusive: the VOC devkit's integer-pixel box convention (see
            :mod:`dtmm.detect.boxes`); default continuous coordinates.
    """
    if len(detections) != len(ground_truth):
        raise DtmmError(f"average_precision: {len(detections)} images of detections but "
                        f"{len(ground_truth)} of ground truth")
    gts = [as_boxes(g, f"ground truth of image {i}") for i, g in enumerate(ground_truth)]
    if difficult is None:
        diffs = [np.zeros(len(g), bool) for g in gts]
    else:
        diffs = [np.asarray(d, bool).reshape(-1) for d in difficult]
        if len(diffs) != len(gts) or any(len(d) != len(g) for d, g in zip(diffs, gts)):
            raise DtmmError("average_precision: difficult flags must match the ground truth boxes")
    n_gt = int(sum((~d).sum() for d in diffs))
    if n_gt == 0:
        raise DtmmError("average_precision: no (non-difficult) ground-truth box: AP is undefined")
    img, boxes, scores = [], [], []
    for i, item in enumerate(detections):
        try:
            b, s = item
        except (TypeError, ValueError):
            raise DtmmError(f"detections of image {i} must be a (boxes, scores) pair") from None
        b = as_boxes(b, f"detections of image {i}")
        s = np.asarray(s, np.float64).reshape(-1)
        if len(s) != len(b):
            raise DtmmError(f"image {i}: {len(b)} detected boxes but {len(s)} scores")
        img.append(np.full(len(b), i))
        boxes.append(b)
        scores.append(s)
    img = np.concatenate(img) if img else np.zeros(0, int)
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    tp = np.zeros(len(order), np.int64)
    fp = np.zeros(len(order), np.int64)
    matched = [np.zeros(len(g), bool) for g in gts]
    for r, d in enumerate(order):
        g = gts[img[d]]
        if len(g) == 0:
            fp[r] = 1
            continue
        ious = iou_matrix(boxes[d:d + 1], g, inclusive=inclusive)[0]
        j = int(np.argmax(ious))
        if ious[j] > iou_threshold:
            if diffs[img[d]][j]:
                continue
            if not matched[img[d]][j]:
                matched[img[d]][j] = True
                tp[r] = 1
            else:
                fp[r] = 1
        else:
            fp[r] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    ap = ap_from_pr(precision, recall) if len(order) else 0.0
    return APResult(ap=ap, precision=precision, recall=recall, tp=tp, fp=fp,
                    scores=scores[order], n_gt=n_gt, n_detections=len(order))
