"""What a model learns: the trainer's extension point for tasks other than classification.

:func:`dtmm.train.train` and :func:`dtmm.train.evaluate` are task-agnostic loops; a
*task* supplies what depends on the kind of prediction. The contract (:class:`Task`):

* ``name``, ``metric_name`` (e.g. ``"accuracy"``, ``"AP@0.5"``);
* ``check(ds)`` raises :class:`~dtmm.errors.DataError` for a dataset the task cannot use;
* ``batches(ds, batch_size, *, shuffle, seed)`` yields ``(x, target)``: ``x`` a float32
  NCHW tensor, ``target`` a tensor (anything with ``.to(device)``);
* ``loss(outputs, target)`` -> the scalar training loss (mean over the batch);
* ``batch_metric(outputs, target)`` -> ``(numerator, denominator)`` summed over an epoch
  for the training metric (``EpochStats.train_acc``);
* ``evaluate(model, ds, *, batch_size)`` -> ``(metric, mean loss)`` on a whole dataset
  (``EpochStats.val_acc`` / ``val_loss``), model in eval mode;
* ``finetune_optimizer`` (str) and ``finetune_lr`` (float): the default optimizer and
  learning rate of the built-in fine-tuning after pruning (``dtmm compress`` without
  ``--optimizer`` / ``--lr``);
* ``image_augment`` (bool): whether image-only augmentations (``train(augment=...)``)
  are valid; a task whose targets depend on geometry (boxes) augments inside
  ``batches`` instead.

Built in: :data:`CLASSIFICATION` (cross-entropy, accuracy; the default) and
:class:`dtmm.detect.task.DetectionTask` (tiny YOLO: box loss, AP@0.5). Both also have
``score_outputs(outputs, ds)``: the metric of a model's channel-last float outputs (an int8
graph's, dequantized), which ``dtmm compress`` uses for int8 models.

:func:`task_for` is the one rule that picks the task of a dataset (``dtmm train``,
``dtmm compress``, ``scripts/train_yolo_faces.py``): detection for a
:class:`~dtmm.data.DetectionDataset`, with the model's YOLO layout (anchors) when it
has one, else classification.

Example:
    >>> from dtmm.data import load_dataset
    >>> ds = load_dataset("digits", limit=10)
    >>> xb, yb = next(CLASSIFICATION.batches(ds, 4, shuffle=False, seed=0))
    >>> tuple(xb.shape), CLASSIFICATION.metric_name
    ((4, 1, 8, 8), 'accuracy')
"""
from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from dtmm.data.dataset import Dataset, iterate_batches
from dtmm.errors import DataError

__all__ = ["Task", "ClassificationTask", "CLASSIFICATION", "task_for"]


@runtime_checkable
class Task(Protocol):
    """See the module docstring."""

    name: str
    metric_name: str
    image_augment: bool
    finetune_optimizer: str
    finetune_lr: float

    def check(self, ds) -> None: ...

    def batches(self, ds, batch_size: int, *, shuffle: bool, seed: int) -> Iterator: ...

    def loss(self, outputs: torch.Tensor, target) -> torch.Tensor: ...

    def batch_metric(self, outputs: torch.Tensor, target) -> tuple[float, int]: ...

    def evaluate(self, model: nn.Module, ds, *, batch_size: int = 256) -> tuple[float, float]: ...


class ClassificationTask:
    """Labels in a :class:`~dtmm.data.Dataset`: cross-entropy loss, accuracy."""

    name = "classification"
    metric_name = "accuracy"
    image_augment = True
    finetune_optimizer = "sgd"
    finetune_lr = 0.01

    def check(self, ds) -> None:
        if not isinstance(ds, Dataset):
            raise DataError(f"dataset {getattr(ds, 'name', ds)!r} is a {type(ds).__name__}, not a "
                            f"labelled classification Dataset; train detection sets with "
                            f"task=dtmm.detect.DetectionTask(...)")

    def batches(self, ds, batch_size: int, *, shuffle: bool, seed: int):
        return iterate_batches(ds, batch_size, shuffle=shuffle, seed=seed)

    def loss(self, outputs, target):
        return F.cross_entropy(outputs, target)

    def batch_metric(self, outputs, target):
        return int((outputs.detach().argmax(1) == target).sum()), int(target.shape[0])

    def evaluate(self, model, ds, *, batch_size: int = 256):
        from dtmm.train.trainer import evaluate       # the one classification evaluation

        return evaluate(model, ds, batch_size=batch_size)

    def score_outputs(self, outputs, ds) -> float:
        """Accuracy of float outputs ``(N, classes)`` (any monotone map of the logits, e.g. the
        int8 graph's dequantized output) against ``ds.y``."""
        import numpy as np

        out = np.asarray(outputs)
        return float((out.reshape(len(out), -1).argmax(-1) == np.asarray(ds.y)).mean())

    def __repr__(self) -> str:
        return "ClassificationTask()"


#: The default task of :func:`dtmm.train.train`.
CLASSIFICATION = ClassificationTask()


def task_for(ds, model: nn.Module | None = None) -> Task:
    """The task a dataset is learnt and scored with: :class:`~dtmm.detect.DetectionTask`
    for a :class:`~dtmm.data.DetectionDataset` (anchors from ``model.layout`` when the
    model has one, e.g. :class:`dtmm.zoo.TinyYOLO`), else :data:`CLASSIFICATION`.

    Example:
        >>> from dtmm.data import load_dataset
        >>> task_for(load_dataset("digits", limit=10)).metric_name
        'accuracy'
    """
    from dtmm.data.detection import DetectionDataset

    if isinstance(ds, DetectionDataset):
        from dtmm.detect.task import DetectionTask
        from dtmm.detect.yolo import YoloLayout

        layout = getattr(model, "layout", None)
        return DetectionTask(layout=layout) if isinstance(layout, YoloLayout) else DetectionTask()
    return CLASSIFICATION
