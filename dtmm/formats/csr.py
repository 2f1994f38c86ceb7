"""CSR: compressed sparse rows for element-wise (unstructured) sparsity (paper Fig. 4).

Each filter (output channel) is one row of ``row_len = KH * KW * C_in`` weights
(``I`` for a linear ``(O, I)`` weight), flattened in OHWI order.

``values`` int8
    kept weights, row after row, increasing column within a row.
``col``    uint8 or uint16, one per kept weight
    column of the weight inside its flattened filter, strictly increasing within a row.
    Width: uint8 iff ``row_len - 1 <= 255``.
``rowptr`` uint8, uint16 or uint32, ``C_out + 1`` entries
    ``rowptr[o] .. rowptr[o + 1]`` index filter ``o``'s entries. Width: the smallest
    holding the number of kept weights (uint32 only past 65535, see ``common``).

Bytes: weights = ``len(values)``; index = ``col.nbytes + rowptr.nbytes``;
quant as every format; meta = the layer's C structs (:mod:`.footprint`).

Example:
    >>> import numpy as np
    >>> w = np.array([[0, 5, 0, 7], [0, 0, 0, 0], [1, 0, 0, 0]], np.int8)
    >>> c = encode(w)
    >>> c.values.tolist(), c.col.tolist(), c.rowptr.tolist()
    ([5, 7, 1], [1, 3, 0], [0, 2, 2, 3])
    >>> bool((decode(c) == w).all()), byte_count(c).total
    (True, 162)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmm.errors import FormatError
from dtmm.formats.common import (INDEX_DTYPES, POINTER_DTYPES, ByteCount,
                                 bad_value, check_array, check_pointer, check_shape,
                                 check_sorted_within_rows, element_mask, index_dtype,
                                 index_itemsize, quant_bytes, weight_int8)
from dtmm.formats.footprint import POINTER_BYTES, meta_bytes

FORMAT = "csr"


@dataclass(frozen=True, eq=False)
class CSR:
    """One layer in CSR. See the module docstring for the meaning of each array."""

    shape: tuple[int, ...]
    values: np.ndarray
    col: np.ndarray
    rowptr: np.ndarray
    name: str = "layer"

    @property
    def nnz(self) -> int:
        return int(len(self.values))


def _rows(shape) -> tuple[int, int]:
    shape = tuple(int(d) for d in shape)
    return shape[0], math.prod(shape[1:])


def encode(weight, mask=None, *, name: str = "layer") -> CSR:
    """Encode an int8 weight (any rank >= 2; OHWI or (O, I)) keeping ``mask``'s elements.

    ``mask``: element mask of the weight's shape, or None (keep non-zeros). Kept zeros
    are stored explicitly.

    >>> encode(np.ones((2, 3, 3, 30), np.int8)).col.dtype.name   # row_len 270 > 256
    'uint16'
    """
    w = weight_int8(weight, fmt=FORMAT)
    c_out, row_len = _rows(w.shape)
    m = (w != 0) if mask is None else element_mask(mask, w.shape, fmt=FORMAT)
    m2 = m.reshape(c_out, row_len)
    nnz = int(m2.sum())
    col_dt = index_dtype(row_len - 1, layer=name, array="col")
    ptr_dt = index_dtype(nnz, layer=name, array="rowptr", wide_ok=True)
    _, col = np.nonzero(m2)
    rowptr = np.zeros(c_out + 1, dtype=np.int64)
    np.cumsum(m2.sum(axis=1), out=rowptr[1:])
    return CSR(shape=tuple(int(d) for d in w.shape),
               values=np.ascontiguousarray(w.reshape(c_out, row_len)[m2], dtype=np.int8),
               col=col.astype(col_dt), rowptr=rowptr.astype(ptr_dt), name=name)


def verify(fmt: CSR, expected_shape) -> None:
    """Raise FormatError unless every array of ``fmt`` is consistent with the shape.

    Checks: shape; dtypes; ``len(rowptr) == C_out + 1``, ``rowptr[0] == 0``,
    non-decreasing, ``rowptr[-1] == len(col) == len(values)``; every ``col < row_len``,
    strictly increasing within a row.

    >>> c = encode(np.ones((2, 4), np.int8))
    >>> try:
    ...     verify(CSR(c.shape, c.values, c.col[::-1].copy(), c.rowptr), (2, 4))
    ... except FormatError as e:
    ...     print(e)
    csr 'layer': col[1] (byte offset 1) = 2: not greater than the previous entry 3 of the same row
    """
    name = getattr(fmt, "name", "layer")
    if not isinstance(fmt, CSR):
        raise FormatError(f"{FORMAT} {name!r}: expected a CSR object, got {type(fmt).__name__}")
    shape = check_shape(fmt.shape, expected_shape, fmt=FORMAT, name=name)
    c_out, row_len = _rows(shape)
    values = check_array(fmt.values, "values", fmt=FORMAT, name=name, dtypes=[np.int8])
    col = check_array(fmt.col, "col", fmt=FORMAT, name=name, dtypes=INDEX_DTYPES)
    rowptr = check_array(fmt.rowptr, "rowptr", fmt=FORMAT, name=name, dtypes=POINTER_DTYPES)
    if len(values) != len(col):
        raise FormatError(f"{FORMAT} {name!r}: values has {len(values)} entries "
                          f"but col has {len(col)}")
    p64 = check_pointer(rowptr, "rowptr", c_out, len(col), fmt=FORMAT, name=name, items="col")
    over = np.flatnonzero(col.astype(np.int64) >= row_len)
    if over.size:
        raise bad_value(FORMAT, name, "col", col, int(over[0]),
                        f"out of range: must be < row length {row_len}")
    check_sorted_within_rows(col, p64, "col", fmt=FORMAT, name=name)


def decode(fmt: CSR) -> np.ndarray:
    """Verify, then rebuild the dense int8 weight (zeros where nothing is stored)."""
    verify(fmt, fmt.shape)
    c_out, row_len = _rows(fmt.shape)
    out = np.zeros((c_out, row_len), dtype=np.int8)
    rows = np.repeat(np.arange(c_out), np.diff(fmt.rowptr.astype(np.int64)))
    out[rows, fmt.col.astype(np.int64)] = fmt.values
    return out.reshape(fmt.shape)


def bytes_from_counts(shape, nnz: int, *, name: str = "layer",
                      pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact :func:`byte_count` from shape and number of kept weights (no arrays).

    >>> bytes_from_counts((32, 3, 3, 16), 461).as_dict()
    {'weights': 461, 'index': 527, 'quant': 384, 'meta': 116, 'total': 1488}
    """
    c_out, row_len = _rows(shape)
    nnz = int(nnz)
    if not 0 <= nnz <= c_out * row_len:
        raise FormatError(f"{FORMAT} {name!r}: {nnz} kept weights impossible "
                          f"for shape {tuple(shape)}")
    index = (nnz * index_itemsize(row_len - 1, layer=name, array="col")
             + (c_out + 1) * index_itemsize(nnz, layer=name, array="rowptr", wide_ok=True))
    return ByteCount(weights=nnz, index=index, quant=quant_bytes(c_out),
                     meta=meta_bytes(FORMAT, pointer_bytes))


def byte_count(fmt: CSR, pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact bytes of an encoded layer (does not verify)."""
    return ByteCount(weights=int(fmt.values.nbytes),
                     index=int(fmt.col.nbytes + fmt.rowptr.nbytes),
                     quant=quant_bytes(fmt.shape[0]), meta=meta_bytes(FORMAT, pointer_bytes))
