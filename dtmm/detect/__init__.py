"""Object detection: boxes, NMS, VOC-style AP, the tiny YOLO head and its training task.

* :mod:`~dtmm.detect.boxes` -- ``(x1, y1, x2, y2)`` pixel boxes, IoU;
* :mod:`~dtmm.detect.nms` -- greedy non-maximum suppression;
* :mod:`~dtmm.detect.metrics` -- AP at an IoU threshold, PASCAL VOC all-points;
* :mod:`~dtmm.detect.yolo` -- the head layout of :class:`dtmm.zoo.TinyYOLO`, decoding,
  training targets and loss;
* :mod:`~dtmm.detect.task` -- :class:`DetectionTask`, so :func:`dtmm.train.train` trains
  and evaluates a detector on a :class:`~dtmm.data.DetectionDataset`.

Datasets: ``faces-det`` (composited, :mod:`dtmm.data.faces_det`) and ``fddb:PATH``
(:mod:`dtmm.data.fddb`).

Example (train a tiny YOLO for one epoch on a few composited images, then AP@0.5):
    >>> from dtmm.data import load_faces_det
    >>> from dtmm.train import train
    >>> from dtmm.zoo import build_model
    >>> ds = load_faces_det(16, size=32)
    >>> net = build_model("yolo", ds.input_shape, 1, seed=0)
    >>> res = train(net, ds, ds, epochs=1, lr=1e-3, optimizer="adam", task=DetectionTask(),
    ...             progress=False)
    >>> 0.0 <= res.val_acc <= 1.0
    True
"""
from dtmm.detect.boxes import iou_matrix
from dtmm.detect.metrics import APResult, average_precision
from dtmm.detect.nms import nms
from dtmm.detect.task import DetectionTask
from dtmm.detect.yolo import DEFAULT_ANCHORS, LossWeights, YoloLayout, decode, decode_nhwc

__all__ = ["iou_matrix", "nms", "average_precision", "APResult", "YoloLayout", "LossWeights",
           "DEFAULT_ANCHORS", "decode", "decode_nhwc", "DetectionTask"]
