"""The task of a pipeline run (classification or detection) and the numbers that depend on it.

The task is chosen from the data by :func:`dtmm.train.task.task_for` (a
:class:`~dtmm.data.DetectionDataset` means detection, with the model's YOLO layout;
anything else classification), then checked against the model's output before any long
work (:func:`choose`). Everything the compress pipeline scores goes through here:

* :func:`float_metric` -- the task's metric of a torch model (accuracy; AP@0.5);
* :func:`int8_metric` / :func:`outputs_metric` -- the same metric of an int8 graph, from
  its int8 outputs dequantized and scored by the task's ``score_outputs`` (detection:
  decoded like the float model, :meth:`dtmm.detect.DetectionTask.score_outputs`);
* :func:`targets`, :func:`loss_fn`, :func:`loss_name` -- what the scheduler's loss model
  (:mod:`dtmm.schedule.loss`) measures: the task's loss against targets aligned with the
  images (labels, or padded normalised boxes).

Example:
    >>> from dtmm.data import load_dataset
    >>> from dtmm.zoo import build_model
    >>> ds = load_dataset("digits", limit=20)
    >>> choose(ds, build_model("resnet8", ds.input_shape, 10)).metric_name
    'accuracy'
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import DataError
from dtmm.train.task import ClassificationTask, Task, task_for

__all__ = ["choose", "check_zoo_model", "check_model", "check_splits", "is_classification", "targets", "loss_fn",
           "loss_name", "float_metric", "int8_metric", "outputs_metric"]


def is_classification(task: Task) -> bool:
    return isinstance(task, ClassificationTask)


def choose(ds, net, input_shape=None) -> Task:
    """The task of ``ds`` for ``net`` (:func:`~dtmm.train.task.task_for`), after
    :func:`check_model`."""
    task = task_for(ds, net)
    check_model(task, net, tuple(input_shape or ds.input_shape), ds)
    return task


def check_zoo_model(spec: str | None, ds) -> None:
    """Refuse, before the model is built, a zoo detector on a classification set and a zoo
    classifier on a detection set (a user's own model is checked by :func:`check_model`)."""
    from dtmm.data.detection import DetectionDataset
    from dtmm.zoo import DETECTION_MODEL_NAMES, MODEL_NAMES

    name = str(spec or "").strip().lower()
    detection = isinstance(ds, DetectionDataset)
    if name in DETECTION_MODEL_NAMES and not detection:
        raise DataError(f"{name} is a detector, and dataset {ds.name!r} is a classification set: give "
                        f"it a detection set (faces-det, fddb:PATH), or a classifier "
                        f"({', '.join(MODEL_NAMES)})")
    if name in MODEL_NAMES and detection:
        raise DataError(f"dataset {ds.name!r} is a detection set (boxes per image), and {name} is a "
                        f"classifier: use a detector ({', '.join(DETECTION_MODEL_NAMES)})")


def _out_shape(net, input_shape) -> tuple[int, ...]:
    import torch

    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros((1, *input_shape), dtype=torch.float32))
    except Exception as e:  # noqa: BLE001 - the user's model: say which input it failed on
        raise DataError(f"the model fails on a {tuple(input_shape)} input: {type(e).__name__}: {e}") from None
    finally:
        net.train(was)
    if not hasattr(out, "shape"):
        raise DataError(f"the model returns a {type(out).__name__}, not a tensor")
    return tuple(int(d) for d in out.shape)


def check_model(task: Task, net, input_shape, ds) -> None:
    """Refuse a model whose output the task cannot use: class logits ``(N, classes)`` for
    classification; a YOLO head ``(N, 5A, S_h, S_w)`` of the task's anchors for detection."""
    shape = _out_shape(net, input_shape)
    name = getattr(ds, "name", "the data")
    if is_classification(task):
        if len(shape) < 2 or int(np.prod(shape[2:])) != 1:
            raise DataError(f"dataset {name!r} is a classification set, but the model outputs "
                            f"{shape} per {tuple(input_shape)} image, not class logits (1, classes)")
        return
    ch = getattr(getattr(task, "layout", None), "channels", None)
    if len(shape) != 4 or (ch is not None and shape[1] != ch):
        want = f"(1, {ch}, S_h, S_w)" if ch is not None else "(1, C, S_h, S_w)"
        raise DataError(f"dataset {name!r} is a {task.name} set (boxes per image): the model must be "
                        f"a YOLO-style detector whose head outputs {want}, but it outputs {shape} "
                        f"(a classifier?); use --model yolo")


def check_splits(task: Task, **splits) -> None:
    """Refuse, before any work, splits the task cannot learn or score (e.g. detection
    splits without a single box, where AP@0.5 is undefined); classification splits are
    checked where they are used, as before."""
    if is_classification(task):
        return
    for what, ds in splits.items():
        task.check(ds)
        if len(ds) == 0:
            raise DataError(f"the {what} split of {ds.name!r} is empty")
        if not is_classification(task) and getattr(ds, "n_boxes", 1) == 0:
            raise DataError(f"the {what} split of {ds.name!r} has no boxes: {task.metric_name} is "
                            f"undefined; use more images")


def targets(task: Task, ds) -> np.ndarray:
    """The task's training targets for every image of ``ds``, in order (labels; padded
    normalised boxes ``(N, K, 4)`` for detection)."""
    if is_classification(task):
        return ds.y
    _, y = next(iter(task.batches(ds, max(len(ds), 1), shuffle=False, seed=0)))
    return y.numpy()


def loss_fn(task: Task):
    """``loss(outputs, targets)`` of the task; ``None`` for classification (cross-entropy)."""
    return None if is_classification(task) else task.loss


def loss_name(task: Task) -> str | None:
    """The task's loss in cache keys; ``None`` for classification (keys stay as they were)."""
    return None if is_classification(task) else f"{task.name}:{task!r}"


def float_metric(task: Task, net, ds) -> float:
    """The task's metric of a torch model on ``ds`` (accuracy; AP@0.5)."""
    if is_classification(task):
        from dtmm.pipeline.evaluate import float_accuracy

        return float_accuracy(net, ds.x, ds.y)
    was = net.training
    try:
        return float(task.evaluate(net, ds)[0])
    finally:
        net.train(was)


def outputs_metric(task: Task, graph, q: np.ndarray, ds) -> float:
    """The task's metric of an int8 graph's outputs ``q`` for the images of ``ds``."""
    from dtmm.quant.quantize import dequantize

    if is_classification(task):
        return task.score_outputs(q, ds)
    return task.score_outputs(dequantize(q, graph.tensors[graph.outputs[0]].qparams), ds)


def int8_metric(task: Task, graph, ds) -> float:
    """The task's metric of an int8 graph on ``ds`` (the NumPy integer reference)."""
    from dtmm.pipeline.evaluate import int8_predict

    return outputs_metric(task, graph, int8_predict(graph, ds.x), ds)
