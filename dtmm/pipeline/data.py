"""Datasets as every pipeline step sees them: one deterministic split, channel-last views.

Every step splits a dataset with the same fixed seed (:data:`SPLIT_SEED`) into train /
validation / test, so quantization calibrates on training images and accuracy figures
use the test split, never seen in training.

Example:
    >>> ds, tr, va, te = load_splits("digits")
    >>> len(tr) + len(va) + len(te) == len(ds), to_nhwc(te.x[:2]).shape
    (True, (2, 8, 8, 1))
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import DataError

SPLIT_SEED = 0
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2


def load_splits(spec: str, expect: tuple[int, int, int] | None = None):
    """(dataset, train, val, test) for a dataset spec, split deterministically.

    ``expect``: the ``(C, H, W)`` input of the model the data is for, if known."""
    from dtmm.data import load_dataset, split

    ds = load_dataset(spec, expect=expect)
    train, val, test = split(ds, val=VAL_FRACTION, test=TEST_FRACTION, seed=SPLIT_SEED)
    return ds, train, val, test



def to_nhwc(x_nchw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x_nchw, np.float32).transpose(0, 2, 3, 1))



def check_dataset_matches(ds, meta, spec: str) -> None:
    """Refuse a dataset whose input shape or class count differs from a checkpoint's."""
    if tuple(ds.input_shape) != tuple(meta.input_shape) or ds.num_classes != meta.num_classes:
        raise DataError(f"dataset {spec!r} has inputs {ds.input_shape} and {ds.num_classes} classes, "
                        f"but the checkpoint expects {tuple(meta.input_shape)} and "
                        f"{meta.num_classes} classes")



def batches(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]

