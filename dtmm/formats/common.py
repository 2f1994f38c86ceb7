"""Shared byte accounting, index-width selection and validation helpers.

Byte accounting (the same definitions for every format, so that comparisons are fair)
======================================================================================

``ByteCount`` splits a layer's bytes the way the DTMM paper's Fig. 13 does, and the
numbers are exactly the constant bytes that layer occupies in the generated C model
(``model.c``; the definition lives in :mod:`dtmm.formats.footprint`, shared by
``dtmm inspect``, the code generator and the scheduler):

``weights``
    int8 weight values actually stored (one byte each, kept *and* explicitly stored
    zeros included). Dense stores every weight of its (possibly shrunken) tensor.
``index``
    bytes of the position arrays a kernel needs to find each stored weight:
    FWCS ``cptr`` + ``fidx``; CSR ``col`` + ``rowptr``; pattern ``kidx`` + ``kptr`` +
    ``pid``; TFLM prune bitmask. Dense has none. Each array counts
    ``len(array) * itemsize`` bytes.
``quant``
    bias, requantization multiplier and shift, each int32 as the kernels read them:
    ``QUANT_BYTES_PER_CHANNEL`` = 12 bytes per stored output channel. "Stored output
    channel" means a row of the encoded tensor: an FWCS filter whose filterlets are all
    pruned still counts (its output is the constant ``requant(bias)``); removing a
    channel altogether is done by encoding a smaller tensor (as structured pruning does).
``meta``
    the layer's C parameter structs (convolution parameters with zero points and
    activation range, dims, the format descriptor; :func:`~dtmm.formats.footprint.meta_bytes`),
    at the target's pointer width (4 bytes, Cortex-M, unless ``pointer_bytes`` says
    otherwise), plus the pattern table of a pattern layer.

Not counted, for every format alike: alignment padding between arrays (it is part of
the firmware's flash, not of these bytes) and the ``.tflite`` container.

Index widths: every index array is ``uint8`` when the largest value that array may hold
*for that layer* fits in 8 bits, otherwise ``uint16``; above 65535 the encoder raises
:class:`~dtmm.errors.FormatError` naming layer, array and value (never a silent wrap).
One exception: the per-filter pointer arrays of the *baselines* (CSR ``rowptr``, pattern
``kptr``) widen to uint32 when the kept count passes 65535, which ordinary layers reach
(a 256x3x3x256 layer keeps 147,456 weights at 75 % sparsity); FWCS never widens.
"The largest value it may hold" is computed from the layer shape and the kept count
(never from the particular positions that survived), so byte counts are exactly
computable from counts alone, without encoding.

Example:
    >>> ByteCount(weights=10, index=3, quant=12, meta=96).total
    121
    >>> index_dtype(255, layer="conv1", array="cptr")
    dtype('uint8')
    >>> index_dtype(256, layer="conv1", array="cptr")
    dtype('uint16')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from dtmm.errors import FormatError

QUANT_BYTES_PER_CHANNEL = 4 + 4 + 4
"""bias + requantization multiplier + shift, int32 each, per stored output channel."""

HEADER_BYTES = 1 + 1 + 4 * 2
"""TFLM prune layout only (:mod:`.tflm_prune`): format id, index-width code, 4 dims as uint16."""

INDEX_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
POINTER_DTYPES = INDEX_DTYPES + (np.dtype(np.uint32),)
"""Allowed dtypes of the CSR ``rowptr`` and pattern ``kptr`` arrays (see index_dtype)."""
_INDEX_BY_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32}


@dataclass(frozen=True)
class ByteCount:
    """Exact flash bytes of one encoded layer, split as in the paper's Fig. 13.

    Example:
        >>> a = ByteCount(1, 2, 3, 4); (a + a).total
        20
    """

    weights: int
    index: int
    quant: int
    meta: int

    @property
    def total(self) -> int:
        return self.weights + self.index + self.quant + self.meta

    def __add__(self, other: "ByteCount") -> "ByteCount":
        return ByteCount(self.weights + other.weights, self.index + other.index,
                         self.quant + other.quant, self.meta + other.meta)

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "index": self.index, "quant": self.quant,
                "meta": self.meta, "total": self.total}


def quant_bytes(c_out: int) -> int:
    """Quantization + bias bytes of a layer with ``c_out`` stored output channels.

    >>> quant_bytes(32)
    384
    """
    return QUANT_BYTES_PER_CHANNEL * int(c_out)


def index_dtype(max_value: int, *, layer: str, array: str, wide_ok: bool = False) -> np.dtype:
    """Smallest unsigned index dtype (uint8 or uint16) holding ``0..max_value``.

    Raises FormatError when even uint16 overflows, unless ``wide_ok`` (used only for the
    per-filter pointer arrays of the CSR and pattern baselines, whose kept-weight counts
    routinely pass 65535 in ordinary layers) allows uint32.

    >>> index_dtype(65535, layer="fc", array="fidx")
    dtype('uint16')
    >>> index_dtype(70000, layer="fc", array="rowptr", wide_ok=True)
    dtype('uint32')
    """
    return np.dtype(_INDEX_BY_SIZE[index_itemsize(max_value, layer=layer, array=array,
                                                  wide_ok=wide_ok)])


def index_itemsize(max_value: int, *, layer: str, array: str, wide_ok: bool = False) -> int:
    """Byte width (1, 2, or 4 if ``wide_ok``) chosen by :func:`index_dtype`, as an int."""
    max_value = int(max_value)
    if max_value <= 0xFF:
        return 1
    if max_value <= 0xFFFF:
        return 2
    if wide_ok and max_value <= 0xFFFFFFFF:
        return 4
    raise FormatError(
        f"layer {layer!r}: {array} must hold values up to {max_value}, "
        f"which overflows uint16 (max 65535); split the layer")


def weight_int8(weight, *, fmt: str, ndims: Iterable[int] = (2, 4)) -> np.ndarray:
    """Check that ``weight`` is an int8 array of an accepted rank; return it as ndarray."""
    w = np.asarray(weight)
    if w.dtype != np.int8:
        raise FormatError(f"{fmt}: weight must be int8, got dtype {w.dtype}")
    if w.ndim not in tuple(ndims):
        raise FormatError(f"{fmt}: weight must have rank in {tuple(ndims)} "
                          f"(OHWI conv or (O, I) linear), got shape {w.shape}")
    if w.size == 0:
        raise FormatError(f"{fmt}: weight has an empty dimension: shape {w.shape}")
    return w


def element_mask(mask, shape: tuple[int, ...], *, fmt: str) -> np.ndarray:
    """Check an element mask of exactly ``shape`` and return it as bool."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise FormatError(f"{fmt}: mask shape {m.shape} does not match weight shape {shape}")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise FormatError(f"{fmt}: mask must be boolean (or 0/1)")
        m = m.astype(bool)
    return m


def check_shape(shape, expected_shape, *, fmt: str, name: str,
                ndims: Iterable[int] = (2, 4)) -> tuple[int, ...]:
    """Validate a format's stored shape against the shape the caller expects."""
    try:
        s = tuple(int(d) for d in shape)
        e = tuple(int(d) for d in expected_shape)
    except (TypeError, ValueError):
        raise FormatError(f"{fmt} {name!r}: shape {shape!r} is not a tuple of ints") from None
    if s != tuple(shape) or any(type(d) is bool for d in shape):
        raise FormatError(f"{fmt} {name!r}: shape {shape!r} is not a tuple of ints")
    if s != e:
        raise FormatError(f"{fmt} {name!r}: shape {s} differs from expected shape {e}")
    if len(s) not in tuple(ndims):
        raise FormatError(f"{fmt} {name!r}: shape {s} must have rank in {tuple(ndims)}")
    if any(d <= 0 for d in s):
        raise FormatError(f"{fmt} {name!r}: shape {s} has a non-positive dimension")
    return s


def check_array(a, field: str, *, fmt: str, name: str,
                dtypes: Iterable[np.dtype]) -> np.ndarray:
    """Check that a stored array is a 1-D numpy array of one of ``dtypes``."""
    if not isinstance(a, np.ndarray):
        raise FormatError(f"{fmt} {name!r}: {field} must be a numpy array, got {type(a).__name__}")
    dts = tuple(np.dtype(d) for d in dtypes)
    if a.dtype not in dts:
        raise FormatError(f"{fmt} {name!r}: {field} has dtype {a.dtype}, expected "
                          + " or ".join(str(d) for d in dts))
    if a.ndim != 1:
        raise FormatError(f"{fmt} {name!r}: {field} must be 1-D, got shape {a.shape}")
    return a


def bad_value(fmt: str, name: str, field: str, arr: np.ndarray, i: int, why: str) -> FormatError:
    """A FormatError naming field, element index, byte offset and value."""
    return FormatError(f"{fmt} {name!r}: {field}[{i}] (byte offset {i * arr.itemsize}) "
                       f"= {int(arr[i])}: {why}")


def check_pointer(ptr: np.ndarray, field: str, n_rows: int, n_items: int, *,
                  fmt: str, name: str, items: str) -> np.ndarray:
    """Validate a CSR-like row pointer: ``n_rows + 1`` entries, starts at 0, never
    decreases, ends at ``n_items``. Returns it as int64."""
    if len(ptr) != n_rows + 1:
        raise FormatError(f"{fmt} {name!r}: {field} has {len(ptr)} entries, "
                          f"expected {n_rows + 1} (rows + 1)")
    p = ptr.astype(np.int64)
    if p[0] != 0:
        raise bad_value(fmt, name, field, ptr, 0, "must be 0")
    dec = np.flatnonzero(np.diff(p) < 0)
    if dec.size:
        i = int(dec[0]) + 1
        raise bad_value(fmt, name, field, ptr, i,
                        f"decreases (previous entry {int(p[i - 1])}); must be non-decreasing")
    if p[-1] != n_items:
        raise bad_value(fmt, name, field, ptr, n_rows,
                        f"must equal len({items}) = {n_items}")
    return p


def check_sorted_within_rows(idx: np.ndarray, ptr64: np.ndarray, field: str, *,
                             fmt: str, name: str) -> None:
    """Check that ``idx`` strictly increases inside each row ``ptr64[r]..ptr64[r+1]``."""
    n = len(idx)
    if n < 2:
        return
    starts = np.zeros(n + 1, dtype=bool)
    starts[ptr64] = True
    d = np.diff(idx.astype(np.int64))
    bad = np.flatnonzero((d <= 0) & ~starts[1:n])
    if bad.size:
        i = int(bad[0]) + 1
        raise bad_value(fmt, name, field, idx, i,
                        f"not greater than the previous entry {int(idx[i - 1])} of the same row")
