"""Per-filter input-offset constants of the sparse conv kernels, computed once.

With symmetric int8 weights and an input zero point ``in_zp`` a conv output channel is
``bias[o] + sum((x - in_zp) * w) = offset[o] + sum(x * w)`` with
``offset[o] = bias[o] - in_zp * sum(w[o])``.  The sparse kernels (FWCS, CSR, pattern)
take ``offset`` instead of the bias (``dtmm_kernels.h``), so the weight sums are
computed here once, at code-generation time, instead of on every call on the device
(CMSIS-NN does the same at prepare time).

Example:
    >>> import numpy as np
    >>> sums = row_sums(np.array([1, 2, 3, -4], np.int8), np.array([0, 3, 3, 4]))
    >>> sums.tolist()
    [6, 0, -4]
    >>> input_offset_bias(np.array([10, 20, 30]), sums, in_zp=-5).tolist()
    [40, 20, 10]
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import BuildError

__all__ = ["row_sums", "input_offset_bias"]


def row_sums(values, rowptr, entry_size: int = 1) -> np.ndarray:
    """Sum of ``values`` per row of a compressed layout (int64, one per row).

    Row ``o`` owns entries ``rowptr[o] .. rowptr[o + 1] - 1``, each ``entry_size``
    consecutive values (FWCS: one filterlet of ``size`` weights; pattern: a kernel's 4
    weights; CSR: one weight).
    """
    v = np.asarray(values).astype(np.int64).reshape(-1)
    ptr = np.asarray(rowptr).astype(np.int64).reshape(-1) * int(entry_size)
    if ptr.size < 1 or ptr[0] != 0 or ptr[-1] != v.size or np.any(np.diff(ptr) < 0):
        raise BuildError(f"row_sums: row pointers {ptr[:3].tolist()}... do not cover "
                         f"{v.size} values")
    c = np.concatenate([[0], np.cumsum(v)])
    return c[ptr[1:]] - c[ptr[:-1]]


def input_offset_bias(bias, weight_sums, in_zp: int, name: str = "layer") -> np.ndarray:
    """``bias - in_zp * weight_sums`` as int32 (``bias`` may be None = 0).

    Raises :class:`~dtmm.errors.BuildError` naming the layer if a value leaves int32
    (the kernels accumulate in int32 from this value).
    """
    s = np.asarray(weight_sums, np.int64).reshape(-1)
    b = np.zeros_like(s) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    if b.shape != s.shape:
        raise BuildError(f"{name}: {b.size} bias values for {s.size} filters")
    off = b - int(in_zp) * s
    if off.size and (off.min() < -2**31 or off.max() > 2**31 - 1):
        raise BuildError(f"{name}: bias - in_zp * sum(w) leaves int32 "
                         f"({int(off.min())}..{int(off.max())})")
    return off.astype(np.int32)
