"""``dtmm.compress``: the compress pipeline for a user's own model, data loaders and trainer.

The same steps as ``dtmm compress`` (:mod:`dtmm.pipeline.compress`), on a trained
``nn.Module`` and the user's data loaders instead of names; fine-tuning runs through
``fine_tune`` when given (a :data:`dtmm.train.finetune.FineTuneFn`: it receives the
pruned model and a :class:`~dtmm.train.finetune.FineTuneContext` with the user's own
train / val loaders, and trains in place under the masks), else the built-in trainer.

The task comes from the loaders' targets (:mod:`dtmm.pipeline.tasks`): integer labels
``(N,)`` mean classification (accuracy); float boxes ``(N, K, 4)`` -- ``(x1, y1, x2, y2)``
as fractions of the image, rows of NaN padding, what
:meth:`dtmm.detect.DetectionTask.batches` yields -- mean detection (a YOLO-style model,
AP@0.5, the YOLO loss).

Example (a toy model on bundled digits, not run as a doctest: it trains and runs QEMU)::

    import torch
    import dtmm
    from dtmm.data import load_dataset, split
    tr, va, te = split(load_dataset("digits"), val=0.1, test=0.2)
    loader = lambda ds: torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(ds.x), torch.from_numpy(ds.y)), batch_size=64)
    net = ...  # a trained nn.Module taking (N, 1, 8, 8)
    res = dtmm.compress(net, torch.zeros(1, 1, 8, 8), loader(tr), loader(va),
                        {"flash": "48KB", "ram": "32KB", "max_accuracy_drop": 1.0},
                        target="cortex-m55", test_loader=loader(te), out="runs/mine")
    res.summary["flash_bytes"], res.summary["accuracy"]["int8_after"], res.files["model.tflite"]
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, replace

import numpy as np

from dtmm.data.dataset import Dataset
from dtmm.errors import DataError, DtmmError

__all__ = ["compress"]


def _is_boxes(y: np.ndarray) -> bool:
    return y.ndim == 3 and y.shape[-1] == 4 and np.issubdtype(y.dtype, np.floating)


def _materialise(loader, what: str, num_classes: int | None = None):
    """A :class:`~dtmm.data.Dataset` (labels) or :class:`~dtmm.data.DetectionDataset`
    (normalised padded boxes, see the module docstring) holding every batch of a loader
    (TinyML data is small)."""
    xs, ys = [], []
    try:
        for batch in loader:
            x, y = batch[0], batch[1]
            xs.append(np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, np.float32))
            ys.append(np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y))
    except (TypeError, IndexError) as e:
        raise DataError(f"{what}: expected an iterable of (inputs, labels) batches ({e})") from None
    if not xs:
        raise DataError(f"{what}: the loader gave no batches")
    x = np.concatenate(xs)
    if x.ndim != 4:
        raise DataError(f"{what}: inputs must be (N, C, H, W), got shape {x.shape}")
    if any(_is_boxes(y) for y in ys):
        return _detection(x, ys, what)
    y = np.concatenate([y.astype(np.int64) for y in ys])
    n = int(num_classes or (int(y.max()) + 1))
    return Dataset(x, y, tuple(str(i) for i in range(n)), what)


def _detection(x: np.ndarray, ys: list, what: str):
    """A :class:`~dtmm.data.DetectionDataset` from batches of normalised, NaN-padded boxes."""
    from dtmm.data.detection import DetectionDataset

    _, _, h, w = x.shape
    boxes = []
    for y in ys:
        if not _is_boxes(y):
            raise DataError(f"{what}: every batch's targets must be boxes (N, K, 4) once one is, "
                            f"got shape {y.shape}")
        for b in y.astype(np.float64):
            b = b[~np.isnan(b).any(axis=1)]
            boxes.append(b * np.array([w, h, w, h]))
    if len(boxes) != len(x):
        raise DataError(f"{what}: {len(x)} images but boxes for {len(boxes)}")
    return DetectionDataset(x, boxes, ("object",), what)


def compress(model, example_input, train_loader, val_loader, budgets: dict, *,
             target: str = "cortex-m55", test_loader=None, fine_tune=None, out=None,
             config=None, resume: bool = False, quiet: bool = True):
    """Compress a trained ``model`` under ``budgets``; returns a
    :class:`~dtmm.pipeline.compress.CompressResult` (``summary``, ``plan``, ``files``).

    ``budgets``: ``{"flash": "512KB", "ram": "256KB", "max_instructions": "3M",
    "model_bytes": "28KB", "max_accuracy_drop": 0.5 | "max_loss_increase": 0.1}`` (any
    subset with a size budget); ``example_input``: a tensor ``(1, C, H, W)``; ``test_loader``: where the
    accuracies are measured (default: ``val_loader``); ``out``: the output folder
    (default: a new temporary folder); ``config``: a
    :class:`~dtmm.pipeline.compress.CompressConfig` for everything else.
    """
    import torch
    import torch.nn as nn

    from dtmm.pipeline.compress import CompressConfig, _budgets, _check_config, _Compress, check_before_work
    from dtmm.pipeline.run import Run
    from dtmm.train.checkpoint import CheckpointMeta

    if not isinstance(model, nn.Module):
        raise DtmmError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(d) for d in getattr(example_input, "shape", ()))
    if len(shape) != 4 or shape[0] != 1:
        raise DtmmError(f"example_input must be a tensor of shape (1, C, H, W), got {shape}")
    known = ("flash", "ram", "max_instructions", "model_bytes", "max_accuracy_drop", "max_loss_increase")
    unknown = set(budgets) - set(known)
    if unknown:
        raise DtmmError(f"unknown budget(s) {sorted(unknown)}; known: {', '.join(known)}")
    cfg = replace(config or CompressConfig(), target=target, **budgets)
    if "max_accuracy_drop" not in budgets and "max_loss_increase" in budgets:
        cfg = replace(cfg, max_accuracy_drop=None)
    _check_config(cfg)
    b = _budgets(cfg)
    model = model.eval()
    with torch.no_grad():
        head = model(torch.as_tensor(example_input, dtype=torch.float32)).shape
    n_classes = int(head[-1]) if len(head) == 2 else None
    check_before_work(model, shape[1:], cfg, b)
    tr = _materialise(train_loader, "train_loader", n_classes)
    va = _materialise(val_loader, "val_loader", n_classes)
    te = _materialise(test_loader, "test_loader", n_classes) if test_loader is not None else va
    for ds, what in ((tr, "train_loader"), (va, "val_loader"), (te, "test_loader")):
        if tuple(ds.x.shape[1:]) != shape[1:]:
            raise DataError(f"{what}: inputs of shape {tuple(ds.x.shape[1:])}, the model takes {shape[1:]}")
        if type(ds) is not type(tr):
            raise DataError(f"{what} gives {'boxes' if type(ds) is not Dataset else 'labels'}, "
                            f"train_loader {'labels' if type(tr) is Dataset else 'boxes'}")
    from dtmm.pipeline.tasks import check_splits, choose

    task = choose(tr, model, shape[1:])
    check_splits(task, train_loader=tr, val_loader=va, test_loader=te)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    out = out or tempfile.mkdtemp(prefix="dtmm-compress-")
    data = hashlib.sha256(tr.x.tobytes() + va.x.tobytes() + te.x.tobytes())
    if type(tr) is not Dataset:                         # detection: the boxes too
        for ds in (tr, va, te):
            for bx in ds.boxes:
                data.update(np.ascontiguousarray(bx).tobytes() + b"|")
    inputs = {"model": type(model).__name__, "weights_sha256": h.hexdigest(),
              "data_sha256": data.hexdigest(),
              "config": asdict(cfg), "fine_tune": getattr(fine_tune, "__qualname__", None)}
    run = Run(out, kind="compress", inputs=inputs, resume=resume, quiet=quiet, steps=7)
    ctx = _Compress(run, cfg, b, type(model).__name__, None, "user data", te, tr, va, te, fine_tune,
                    net=model, ft_data=(train_loader, val_loader) if fine_tune is not None else None,
                    task=task)
    ctx.given_meta = CheckpointMeta(model_name=type(model).__name__, input_shape=shape[1:],
                                    num_classes=tr.num_classes)
    ctx.ds = te
    return ctx.run()
