"""The tiny YOLO head: output layout, box decoding, training targets and loss.

Head layout (one class; ``A`` anchors; an ``S_h x S_w`` grid, 7x7 for 112x112 inputs):
the model's last layer is a 1x1 conv with ``5 * A`` output channels. In the PyTorch
output ``(N, 5 * A, S_h, S_w)`` (NHWC ``(S_h, S_w, 5 * A)`` in the int8 graph), channel
``5 * a + k`` of cell ``(i, j)`` holds, for anchor ``a``:

====  ========  ============================================================
k     name      decoded (image of ``H x W`` pixels)
====  ========  ============================================================
0     ``t_o``   objectness score ``sigmoid(t_o)``
1     ``t_x``   box centre ``cx = (j + sigmoid(t_x)) / S_w * W``
2     ``t_y``   box centre ``cy = (i + sigmoid(t_y)) / S_h * H``
3     ``t_w``   box width ``w = anchor_w * exp(t_w) * W``
4     ``t_h``   box height ``h = anchor_h * exp(t_h) * H``
====  ========  ============================================================

Anchors are ``(width, height)`` as fractions of the image (YOLOv2-style priors; the
default :data:`DEFAULT_ANCHORS` suits faces of 1/8 to 1/2 of the image).

Training (:func:`encode_targets`, :func:`yolo_loss`): the cell holding a box's centre
and the anchor whose shape best matches the box (IoU of the two boxes centred together)
are *responsible* for it; if that anchor of that cell is taken by another box, the next
best free anchor of the cell is used, and a box that finds none is dropped (counted in
the encoder's return value). Other anchors of that cell whose shape IoU with the box
exceeds ``ignore_iou`` are ignored by the objectness loss (they are not wrong to fire).
The loss per image is
``w_obj * sum_pos BCE(t_o, 1) + w_noobj * sum_neg BCE(t_o, 0)
+ w_coord * sum_pos [(sig(t_x) - x*)^2 + (sig(t_y) - y*)^2 + (t_w - w*)^2 + (t_h - h*)^2]``
with ``x*`` the centre's offset inside its cell and ``w* = log(w / anchor_w)``,
averaged over the batch.

Example:
    >>> import numpy as np, torch
    >>> lay = YoloLayout(anchors=((0.25, 0.25),))
    >>> t = encode_targets([np.array([[16.0, 16.0, 44.0, 44.0]])], lay, (112, 112), (7, 7))
    >>> tuple(t.shape), t[0, 0, 1, 1].tolist()          # centre (30, 30) -> cell (1, 1)
    ((1, 1, 7, 7, 5), [1.0, 0.875, 0.875, 0.0, 0.0])
    >>> out = torch.zeros(1, 5, 7, 7); out[0, 0] = -9.0; out[0, 0, 1, 1] = 9.0
    >>> out[0, 1:3, 1, 1] = float(np.log(7))            # sigmoid = 0.875
    >>> boxes, scores = decode(out, lay, (112, 112))[0]
    >>> boxes.round(2).tolist(), scores.round(4).tolist()
    ([[16.0, 16.0, 44.0, 44.0]], [0.9999])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dtmm.detect.boxes import as_boxes, clip_boxes, xyxy_to_cxcywh
from dtmm.detect.nms import nms
from dtmm.errors import DtmmError

__all__ = ["DEFAULT_ANCHORS", "YoloLayout", "LossWeights", "encode_targets", "yolo_loss",
           "decode", "decode_nhwc"]

#: Default anchors (width, height), fractions of the image: faces of ~1/6 and ~1/3 of it.
DEFAULT_ANCHORS: tuple[tuple[float, float], ...] = ((0.17, 0.17), (0.36, 0.36))

_PARTS = 5            # t_o, t_x, t_y, t_w, t_h


@dataclass(frozen=True)
class YoloLayout:
    """The head's anchors; ``channels`` = ``5 * len(anchors)`` output channels."""

    anchors: tuple[tuple[float, float], ...] = DEFAULT_ANCHORS

    def __post_init__(self):
        a = tuple((float(w), float(h)) for w, h in self.anchors)
        if not a or any(not (0 < w <= 4 and 0 < h <= 4) for w, h in a):
            raise DtmmError(f"YOLO anchors must be (width, height) fractions in (0, 4], got {self.anchors}")
        object.__setattr__(self, "anchors", a)

    @property
    def num_anchors(self) -> int:
        return len(self.anchors)

    @property
    def channels(self) -> int:
        return _PARTS * len(self.anchors)

    def split(self, out: torch.Tensor) -> torch.Tensor:
        """``(N, 5A, S_h, S_w)`` -> ``(N, A, S_h, S_w, 5)``."""
        if out.ndim != 4 or out.shape[1] != self.channels:
            raise DtmmError(f"YOLO head output must be (N, {self.channels}, S_h, S_w) for "
                            f"{self.num_anchors} anchors, got {tuple(out.shape)}")
        n, _, sh, sw = out.shape
        return out.reshape(n, self.num_anchors, _PARTS, sh, sw).permute(0, 1, 3, 4, 2)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (YOLOv1's 5 / 0.5 for coordinates / empty cells)."""

    coord: float = 5.0
    obj: float = 1.0
    noobj: float = 0.5
    ignore_iou: float = 0.5


def _shape_iou(w, h, aw, ah):
    inter = np.minimum(w, aw) * np.minimum(h, ah)
    return inter / (w * h + aw * ah - inter)


def encode_targets(boxes: Sequence, layout: YoloLayout, image_hw: tuple[int, int],
                   grid_hw: tuple[int, int], *, ignore_iou: float = LossWeights.ignore_iou,
                   return_dropped: bool = False):
    """Training targets ``(N, A, S_h, S_w, 5)`` float32 for per-image pixel boxes.

    Per anchor slot: ``[state, x*, y*, w*, h*]`` with state 1 (responsible), 0
    (background) or -1 (ignored by the objectness loss); see the module docstring.
    With ``return_dropped`` also the number of boxes that found no free anchor.
    """
    H, W = (float(v) for v in image_hw)
    sh, sw = (int(v) for v in grid_hw)
    A = layout.num_anchors
    aw = np.array([a[0] for a in layout.anchors])
    ah = np.array([a[1] for a in layout.anchors])
    t = np.zeros((len(boxes), A, sh, sw, _PARTS), np.float32)
    dropped = 0
    for n, b in enumerate(boxes):
        b = as_boxes(b, f"boxes of image {n}")
        if len(b) == 0:
            continue
        c = xyxy_to_cxcywh(clip_boxes(b, H, W))
        ok = (c[:, 2] > 0) & (c[:, 3] > 0)
        c = c[ok]
        # larger boxes first: if two compete for a slot, the larger keeps it
        for cx, cy, w, h in c[np.argsort(-(c[:, 2] * c[:, 3]), kind="stable")]:
            fx, fy, fw, fh = cx / W * sw, cy / H * sh, w / W, h / H
            j, i = min(int(fx), sw - 1), min(int(fy), sh - 1)
            ious = _shape_iou(fw, fh, aw, ah)
            for a in np.argsort(-ious, kind="stable"):
                if t[n, a, i, j, 0] != 1:
                    t[n, a, i, j] = (1.0, fx - j, fy - i, np.log(fw / aw[a]), np.log(fh / ah[a]))
                    break
            else:
                dropped += 1
                continue
            for a2 in np.flatnonzero(ious > ignore_iou):
                if t[n, a2, i, j, 0] == 0:
                    t[n, a2, i, j, 0] = -1.0
    t = torch.from_numpy(t)
    return (t, dropped) if return_dropped else t


def yolo_loss(out: torch.Tensor, target: torch.Tensor, layout: YoloLayout,
              weights: LossWeights = LossWeights()) -> torch.Tensor:
    """The YOLO loss (module docstring) of head output ``out`` against ``encode_targets``."""
    p = layout.split(out)
    if tuple(target.shape) != tuple(p.shape):
        raise DtmmError(f"YOLO target shape {tuple(target.shape)} does not match the head "
                        f"output {tuple(p.shape)} (N, A, S_h, S_w, 5)")
    state = target[..., 0]
    pos, neg = state == 1, state == 0
    obj = F.binary_cross_entropy_with_logits(p[..., 0], pos.to(p.dtype), reduction="none")
    loss = weights.obj * obj[pos].sum() + weights.noobj * obj[neg].sum()
    if pos.any():
        pp, tt = p[pos], target[pos]
        xy = (torch.sigmoid(pp[:, 1:3]) - tt[:, 1:3]).pow(2).sum()
        wh = (pp[:, 3:5] - tt[:, 3:5]).pow(2).sum()
        loss = loss + weights.coord * (xy + wh)
    return loss / out.shape[0]


def decode(out, layout: YoloLayout, image_hw: tuple[int, int], *, score_threshold: float = 0.01,
           nms_iou: float = 0.45, max_detections: int = 50) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image ``(boxes (K, 4) pixels xyxy, scores (K,))`` from head output ``(N, 5A, S_h, S_w)``.

    Boxes with ``sigmoid(t_o) >= score_threshold`` are decoded (module docstring),
    clipped to the image, then greedy NMS at ``nms_iou`` keeps at most
    ``max_detections``, best first. Accepts a torch tensor or a float numpy array.
    """
    t = torch.as_tensor(np.asarray(out, np.float32) if not isinstance(out, torch.Tensor) else out)
    p = layout.split(t.detach().float().cpu()).numpy().astype(np.float64)     # (N, A, S_h, S_w, 5)
    H, W = (float(v) for v in image_hw)
    n, A, sh, sw, _ = p.shape
    aw = np.array([a[0] for a in layout.anchors])[:, None, None]
    ah = np.array([a[1] for a in layout.anchors])[:, None, None]
    jj, ii = np.meshgrid(np.arange(sw), np.arange(sh))
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    res = []
    for k in range(n):
        q = p[k]
        score = sig(q[..., 0])
        cx = (jj + sig(q[..., 1])) / sw * W
        cy = (ii + sig(q[..., 2])) / sh * H
        w = aw * np.exp(np.minimum(q[..., 3], 10.0)) * W
        h = ah * np.exp(np.minimum(q[..., 4], 10.0)) * H
        keep = score >= score_threshold
        b = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)[keep]
        s = score[keep]
        b = clip_boxes(b, H, W)
        good = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        b, s = b[good], s[good]
        idx = nms(b, s, nms_iou, max_detections=max_detections)
        res.append((b[idx], s[idx]))
    return res


def decode_nhwc(out, layout: YoloLayout, image_hw: tuple[int, int], **kw):
    """:func:`decode` for NHWC head outputs ``(N, S_h, S_w, 5A)`` (e.g. the dequantized
    output of the int8 graph or the C model)."""
    a = np.asarray(out, np.float32)
    if a.ndim != 4:
        raise DtmmError(f"decode_nhwc: expected (N, S_h, S_w, C), got shape {a.shape}")
    return decode(np.ascontiguousarray(a.transpose(0, 3, 1, 2)), layout, image_hw, **kw)
