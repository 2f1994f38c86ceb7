"""Training and evaluating the tiny YOLO with :func:`dtmm.train.train`: the detection task.

:class:`DetectionTask` fulfils the :mod:`dtmm.train.task` contract for a
:class:`~dtmm.data.DetectionDataset`:

* ``batches`` yields ``(x, boxes)``: ``x`` float32 NCHW, ``boxes`` float32
  ``(N, K_max, 4)`` per-image boxes normalised to ``[0, 1]`` (``x / W``, ``y / H``),
  padded with NaN rows. In training (``shuffle=True``) images are mirrored left-right
  with probability 1/2 (``hflip``), boxes with them, from a generator seeded by ``seed``.
* ``loss`` encodes the boxes for the head's grid (:func:`dtmm.detect.yolo.encode_targets`)
  and returns :func:`dtmm.detect.yolo.yolo_loss`.
* ``batch_metric``: recall of the responsible anchors, i.e. the share of boxes whose
  responsible anchor scores ``sigmoid(t_o) > 0.5`` (a cheap training signal; not AP).
* ``evaluate``: ``(AP@0.5, mean loss)`` on the whole set, detections from
  :func:`dtmm.detect.yolo.decode` (score >= ``score_threshold``, NMS at ``nms_iou``, at
  most ``max_detections`` per image) scored by :func:`dtmm.detect.metrics.average_precision`;
* ``score_outputs``: the same AP@0.5 of channel-last head outputs (an int8 graph's
  dequantized output, :func:`dtmm.detect.yolo.decode_nhwc`): how ``dtmm compress`` and
  ``scripts/train_yolo_faces.py`` score int8 models;
* ``distill_loss``: a soft-target loss to a teacher's head (fine-tuning with distillation,
  :class:`dtmm.train.finetune.Distillation`): per anchor, the KL divergence of the
  student's objectness from the teacher's (Bernoulli, ``sigmoid(t_o)``), plus
  ``w_coord`` times the squared error of ``sigmoid(t_x), sigmoid(t_y), t_w, t_h`` weighted
  by the teacher's objectness (boxes count where the teacher sees a face); summed over the
  grid, averaged over the batch (the scale of ``loss``).

Example:
    >>> import torch
    >>> from dtmm.data import load_faces_det
    >>> from dtmm.zoo import build_model
    >>> ds = load_faces_det(8, size=32)
    >>> task = DetectionTask()
    >>> xb, bb = next(task.batches(ds, 4, shuffle=False, seed=0))
    >>> tuple(xb.shape), tuple(bb.shape[::2])
    ((4, 1, 32, 32), (4, 4))
    >>> net = build_model("yolo", (1, 32, 32), 1, seed=0)
    >>> float(task.loss(net(xb), bb).detach()) > 0
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dtmm.detect.metrics import average_precision
from dtmm.detect.yolo import LossWeights, YoloLayout, decode, decode_nhwc, encode_targets, yolo_loss
from dtmm.errors import DataError

__all__ = ["DetectionTask"]


def _unpad(boxes: torch.Tensor) -> list[np.ndarray]:
    b = boxes.detach().cpu().numpy().astype(np.float64)
    return [r[~np.isnan(r).any(axis=1)] for r in b]


@dataclass
class DetectionTask:
    """The YOLO detection task (see the module docstring)."""

    layout: YoloLayout = field(default_factory=YoloLayout)
    weights: LossWeights = field(default_factory=LossWeights)
    hflip: bool = True
    score_threshold: float = 0.01
    nms_iou: float = 0.45
    max_detections: int = 50
    iou_threshold: float = 0.5

    name: ClassVar[str] = "detection"
    metric_name: ClassVar[str] = "AP@0.5"
    #: the YOLO loss is summed over the grid: SGD with momentum diverges in the first epoch
    #: of fine-tuning at 0.01 and at 0.001 (train loss 45 against 0.9 for Adam at 1e-4 on
    #: faces-det); the dense model is trained with Adam too
    finetune_optimizer: ClassVar[str] = "adam"
    finetune_lr: ClassVar[float] = 1e-4
    image_augment: ClassVar[bool] = False

    def check(self, ds) -> None:
        from dtmm.data.detection import DetectionDataset

        if not isinstance(ds, DetectionDataset):
            raise DataError(f"dataset {getattr(ds, 'name', ds)!r} is a {type(ds).__name__}, not a "
                            f"DetectionDataset (boxes per image): the detection task needs boxes")

    def batches(self, ds, batch_size: int, *, shuffle: bool, seed: int):
        n = len(ds)
        _, h, w = ds.input_shape
        rng = np.random.default_rng(seed)
        order = rng.permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            sel = order[start:start + batch_size]
            x = ds.x[sel].copy()
            boxes = [ds.boxes[i].astype(np.float64) / np.array([w, h, w, h]) for i in sel]
            if shuffle and self.hflip:
                flip = rng.random(len(sel)) < 0.5
                x[flip] = x[flip][..., ::-1]
                boxes = [np.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], 1) if f and len(b)
                         else b for b, f in zip(boxes, flip)]
            k = max([len(b) for b in boxes] + [1])
            pad = np.full((len(sel), k, 4), np.nan, np.float32)
            for i, b in enumerate(boxes):
                pad[i, :len(b)] = b
            yield torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(pad)

    def targets(self, outputs: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Encoded targets for ``outputs``' grid from normalised padded ``boxes``."""
        t = encode_targets(_unpad(boxes), self.layout, (1.0, 1.0), tuple(outputs.shape[2:]),
                           ignore_iou=self.weights.ignore_iou)
        return t.to(outputs.device)

    def loss(self, outputs, boxes):
        return yolo_loss(outputs, self.targets(outputs, boxes), self.layout, self.weights)

    def batch_metric(self, outputs, boxes):
        t = self.targets(outputs, boxes)
        pos = t[..., 0] == 1
        p = self.layout.split(outputs.detach())[..., 0]
        return int((p[pos] > 0).sum()), int(pos.sum())

    def detect(self, model: nn.Module, x, image_hw: tuple[int, int] | None = None,
               batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
        """Detections ``(boxes, scores)`` per image of the float NCHW batch ``x``."""
        x = torch.as_tensor(np.asarray(x, np.float32))
        hw = tuple(x.shape[2:]) if image_hw is None else image_hw
        was = model.training
        model.eval()
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        out = []
        try:
            with torch.no_grad():
                for i in range(0, len(x), batch_size):
                    out += decode(model(x[i:i + batch_size].to(dev)), self.layout, hw,
                                  score_threshold=self.score_threshold, nms_iou=self.nms_iou,
                                  max_detections=self.max_detections)
        finally:
            model.train(was)
        return out

    def evaluate(self, model, ds, *, batch_size: int = 256):
        self.check(ds)
        if len(ds) == 0:
            raise DataError(f"cannot evaluate on empty dataset {ds.name!r}")
        if ds.n_boxes == 0:
            raise DataError(f"dataset {ds.name!r} has no boxes: AP@0.5 is undefined")
        was = model.training
        model.eval()
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        _, h, w = ds.input_shape
        dets, loss_sum = [], 0.0
        try:
            with torch.no_grad():
                for xb, bb in self.batches(ds, batch_size, shuffle=False, seed=0):
                    out = model(xb.to(dev))
                    loss_sum += float(self.loss(out, bb)) * xb.shape[0]
                    dets += decode(out, self.layout, (h, w), score_threshold=self.score_threshold,
                                   nms_iou=self.nms_iou, max_detections=self.max_detections)
        finally:
            model.train(was)
        ap = average_precision(dets, list(ds.boxes), iou_threshold=self.iou_threshold).ap
        return ap, loss_sum / len(ds)

    def score_outputs(self, outputs, ds) -> float:
        """AP@0.5 on ``ds`` of float head outputs in NHWC ``(N, S_h, S_w, 5A)`` (e.g. the
        int8 graph's dequantized output), decoded like :meth:`evaluate`."""
        self.check(ds)
        if ds.n_boxes == 0:
            raise DataError(f"dataset {ds.name!r} has no boxes: AP@0.5 is undefined")
        _, h, w = ds.input_shape
        dets = decode_nhwc(outputs, self.layout, (h, w), score_threshold=self.score_threshold,
                           nms_iou=self.nms_iou, max_detections=self.max_detections)
        return average_precision(dets, list(ds.boxes), iou_threshold=self.iou_threshold).ap

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Soft-target loss of head ``student`` to head ``teacher`` (module docstring); 0
        when they are equal."""
        s, t = self.layout.split(student), self.layout.split(teacher.detach())
        p = torch.sigmoid(t[..., 0])
        kl = (F.binary_cross_entropy_with_logits(s[..., 0], p, reduction="none")
              - F.binary_cross_entropy_with_logits(t[..., 0], p, reduction="none"))
        xy = (torch.sigmoid(s[..., 1:3]) - torch.sigmoid(t[..., 1:3])).pow(2).sum(-1)
        wh = (s[..., 3:5] - t[..., 3:5]).pow(2).sum(-1)
        return (kl.sum() + self.weights.coord * (p * (xy + wh)).sum()) / student.shape[0]
