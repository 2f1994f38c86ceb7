"""``dtmm train``: train a zoo model or your own (``path/to/file.py:factory``) and write its
checkpoint."""
from __future__ import annotations

import time

import numpy as np

from dtmm.errors import DtmmError
from dtmm.pipeline.data import load_splits
from dtmm.util.files import check_output_path, record_outputs

DEFAULT_LR = {"adam": 2e-3, "adamw": 2e-3, "sgd": 0.05}
#: File name ``dtmm train`` writes into its ``--out`` folder.
CHECKPOINT_NAME = "checkpoint.pt"


def train_command(*, model: str, data: str, epochs: int, out: str, seed: int = 0,
                  batch_size: int = 64, lr: float | None = None, optimizer: str = "adam",
                  limit: int | None = None, progress: bool = True) -> dict:
    """Train ``model`` (a zoo name or ``path/to/file.py:factory``) on ``data`` and write
    ``out/checkpoint.pt`` (which records the model spec, a file's absolute path).

    The task comes from the data (:func:`dtmm.train.task.task_for`): a detection set
    (``faces-det``) trains a detector (``yolo``) with the YOLO loss, and ``test_accuracy``
    is then its AP@0.5 (``metric`` names it)."""
    import torch

    from dtmm.train import evaluate, save_checkpoint, train
    from dtmm.pipeline import models as M
    from dtmm.pipeline.tasks import check_splits, check_zoo_model, choose

    if epochs < 1:
        raise DtmmError(f"--epochs must be >= 1, got {epochs}")
    M.check_spec(model)                                          # before any data loading
    out_dir = check_output_path(out, names=[CHECKPOINT_NAME])     # before any training
    ds, tr, va, te = load_splits(data)
    if limit is not None:  # limit applies to the training split only
        idx = np.random.default_rng(seed).permutation(len(tr))[:limit]
        tr = tr.subset(np.sort(idx))
    check_zoo_model(model, ds)
    torch.manual_seed(seed)
    net = M.build(model, ds.input_shape, ds.num_classes)
    task = choose(ds, net)                                  # before any training
    check_splits(task, train=tr, validation=va, test=te)
    t0 = time.time()
    if lr is None:
        lr = DEFAULT_LR[optimizer]
    res = train(net, tr, va, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                weight_decay=5e-4 if optimizer == "sgd" else 0.0, seed=seed, progress=progress,
                task=task)
    acc, loss = evaluate(net, te, task=task)
    check_output_path(out_dir, names=[CHECKPOINT_NAME])     # still ours to write?
    path = out_dir / CHECKPOINT_NAME
    save_checkpoint(path, net, model_name=M.canonical(model), input_shape=ds.input_shape,
                    num_classes=ds.num_classes, dataset=data,
                    extra={"seed": seed, "epochs": epochs, "test_accuracy": acc})
    record_outputs(out_dir, [CHECKPOINT_NAME])
    return {"checkpoint": str(path), "model": model, "dataset": data, "epochs": epochs,
            "train_seconds": round(time.time() - t0, 1), "test_accuracy": round(acc, 4),
            "test_loss": round(loss, 4), "steps": res.steps, "metric": task.metric_name}

