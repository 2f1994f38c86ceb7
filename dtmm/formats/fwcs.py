"""FWCS: filterlet weight compressed storage (DTMM paper, Sec. III-A, Fig. 5).

A *filterlet* is the run of weights at one kernel position of one filter. For an OHWI
conv weight ``(C_out, KH, KW, C_in)`` it is the ``C_in`` weights at ``(o, kh, kw)``,
contiguous in memory. For a fully connected weight ``(O, I)`` it is a run of
``size`` contiguous inputs (``size = min(16, I)`` by default); when ``I % size != 0``
the *last* run of every row is shorter (``I - (npos - 1) * size`` weights, where
``npos = ceil(I / size)``) and is stored at its true length, without padding.

Arrays (all 1-D numpy arrays; these are what the C kernel reads directly):

``arr``  int8
    the kept filterlets' weights, filterlet after filterlet (increasing position),
    filter after filter (increasing ``o``).
``size`` Python int (stored as uint16 in the header)
    filterlet length: ``C_in`` for conv, the run length for linear.
``cptr`` uint8 or uint16, one per kept filterlet
    offset of the filterlet's first weight inside its flattened filter
    (``(kh * KW + kw) * C_in`` for conv; ``j * size`` for linear), so always a
    multiple of ``size``; strictly increasing within a filter. Width: uint8 iff
    ``(npos - 1) * size <= 255`` (the largest offset a layer of that shape may hold).
``fidx`` uint8 or uint16, ``C_out + 1`` entries
    ``fidx[o] .. fidx[o + 1]`` are filter ``o``'s entries in ``cptr``; ``fidx[0] = 0``,
    ``fidx[-1] = len(cptr)``. Width: uint8 iff the number of kept filterlets <= 255.

The weight of kept filterlet ``k`` of filter ``o`` at channel ``c`` is
``arr[a_k + c]`` where ``a_k`` is the sum of the lengths of the filterlets before
``k``; for conv ``a_k = k * size``. Filterlet length is
``min(size, row_len - cptr[k])`` with ``row_len = KH * KW * C_in`` (or ``I``).

Bytes (see :mod:`dtmm.formats.common`): weights = ``len(arr)``; index =
``cptr.nbytes + fidx.nbytes``; quant = bias, multiplier, shift per stored output
channel; meta = the layer's C structs (:mod:`dtmm.formats.footprint`).

Example:
    >>> import numpy as np
    >>> w = np.arange(1, 1 + 2 * 1 * 2 * 3, dtype=np.int8).reshape(2, 1, 2, 3)
    >>> m = np.array([[[True, False]], [[False, True]]])      # (C_out, KH, KW)
    >>> f = encode(w, m, name="conv0")
    >>> f.arr.tolist(), f.size, f.cptr.tolist(), f.fidx.tolist()
    ([1, 2, 3, 10, 11, 12], 3, [0, 3], [0, 1, 2])
    >>> int(decode(f)[1, 0, 1, 2]), int(decode(f)[1, 0, 0, 0])
    (12, 0)
    >>> byte_count(f).as_dict()
    {'weights': 6, 'index': 5, 'quant': 24, 'meta': 116, 'total': 151}
    >>> bytes_from_counts((2, 1, 2, 3), 2) == byte_count(f)
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmm.errors import FormatError
from dtmm.formats.common import (INDEX_DTYPES, ByteCount, bad_value,
                                 check_array, check_pointer, check_shape,
                                 check_sorted_within_rows, element_mask, index_dtype,
                                 index_itemsize, quant_bytes, weight_int8)
from dtmm.formats.footprint import POINTER_BYTES, meta_bytes

FORMAT = "fwcs"
LINEAR_FILTERLET = 16
"""Default filterlet length for fully connected layers."""


@dataclass(frozen=True, eq=False)
class FWCS:
    """One layer in FWCS. See the module docstring for the meaning of each array."""

    shape: tuple[int, ...]
    size: int
    arr: np.ndarray
    cptr: np.ndarray
    fidx: np.ndarray
    name: str = "layer"

    @property
    def n_filterlets(self) -> int:
        return int(len(self.cptr))


def geometry(shape: tuple[int, ...], size: int | None = None) -> tuple[int, int, int, int]:
    """``(c_out, row_len, size, npos)`` for a weight shape (``npos`` = filterlets per filter).

    >>> geometry((8, 3, 3, 16)), geometry((10, 40))
    ((8, 144, 16, 9), (10, 40, 16, 3))
    """
    shape = tuple(int(d) for d in shape)
    c_out = shape[0]
    row_len = math.prod(shape[1:])
    if len(shape) == 4:
        if size is not None and int(size) != shape[3]:
            raise FormatError(f"{FORMAT}: conv filterlet size must equal C_in={shape[3]}, "
                              f"got {size}")
        size = shape[3]
    elif len(shape) == 2:
        size = min(LINEAR_FILTERLET, row_len) if size is None else int(size)
        if size <= 0:
            raise FormatError(f"{FORMAT}: filterlet size must be positive, got {size}")
    else:
        raise FormatError(f"{FORMAT}: shape {shape} must be OHWI (4-D) or (O, I) (2-D)")
    npos = -(-row_len // size)
    return c_out, row_len, int(size), npos


def _filterlet_mask(w: np.ndarray, mask, size: int, npos: int) -> np.ndarray:
    """Bool ``(C_out, npos)`` filterlet mask from None / filterlet mask / element mask."""
    c_out, row_len = w.shape[0], w.size // w.shape[0]
    w2 = w.reshape(c_out, row_len)
    if mask is None:
        elem = w2 != 0
    else:
        m = np.asarray(mask)
        unit_shape = w.shape[:3] if w.ndim == 4 else (c_out, npos)
        if m.shape == unit_shape and m.shape != w.shape:
            return element_mask(m, unit_shape, fmt=FORMAT).reshape(c_out, npos)
        if m.shape == unit_shape == w.shape:  # linear with size 1: both readings agree
            return element_mask(m, unit_shape, fmt=FORMAT)
        if m.shape != w.shape:
            raise FormatError(f"{FORMAT}: mask shape {m.shape} is neither the filterlet mask "
                              f"shape {unit_shape} nor the weight shape {w.shape}")
        elem = element_mask(m, w.shape, fmt=FORMAT).reshape(c_out, row_len)
        pad = np.zeros((c_out, npos * size), dtype=bool)
        pad[:, :row_len] = elem
        padded = pad.reshape(c_out, npos, size)
        any_ = padded.any(axis=2)
        # an element mask must be constant over each filterlet (only its real length)
        lens = np.full(npos, size)
        lens[-1] = row_len - (npos - 1) * size
        full = padded.sum(axis=2) == lens[None, :]
        bad = np.argwhere(any_ & ~full)
        if bad.size:
            o, j = (int(v) for v in bad[0])
            where = (f"(o={o}, kh={j // w.shape[2]}, kw={j % w.shape[2]})" if w.ndim == 4
                     else f"(o={o}, inputs {j * size}..{min((j + 1) * size, row_len) - 1})")
            raise FormatError(f"{FORMAT}: element mask is not constant within filterlet {where}; "
                              "FWCS keeps or drops whole filterlets")
        return any_
    pad = np.zeros((c_out, npos * size), dtype=bool)
    pad[:, :row_len] = elem
    return pad.reshape(c_out, npos, size).any(axis=2)


def encode(weight, mask=None, *, name: str = "layer", size: int | None = None) -> FWCS:
    """Encode an int8 OHWI / (O, I) weight keeping the filterlets selected by ``mask``.

    ``mask``: None (keep every filterlet with a non-zero weight), a bool filterlet mask
    ``(C_out, KH, KW)`` (linear: ``(O, npos)``), or an element mask of the weight's
    shape that is constant within each filterlet. Kept filterlets are stored whole,
    zeros included. ``size`` only applies to linear layers (default ``min(16, I)``).

    >>> f = encode(np.ones((4, 3, 3, 2), np.int8))
    >>> f.n_filterlets, f.cptr.dtype.name, f.fidx.tolist()
    (36, 'uint8', [0, 9, 18, 27, 36])
    """
    w = weight_int8(weight, fmt=FORMAT)
    c_out, row_len, size, npos = geometry(w.shape, size if w.ndim == 2 else None)
    fm = _filterlet_mask(w, mask, size, npos)
    n_kept = int(fm.sum())
    cptr_dt = index_dtype((npos - 1) * size, layer=name, array="cptr")
    fidx_dt = index_dtype(n_kept, layer=name, array="fidx")
    _, pos = np.nonzero(fm)  # row-major: filter after filter, position increasing
    cptr = (pos * size).astype(cptr_dt)
    fidx = np.zeros(c_out + 1, dtype=np.int64)
    np.cumsum(fm.sum(axis=1), out=fidx[1:])
    elem = np.repeat(fm, size, axis=1)[:, :row_len]
    arr = np.ascontiguousarray(w.reshape(c_out, row_len)[elem], dtype=np.int8)
    return FWCS(shape=tuple(int(d) for d in w.shape), size=size, arr=arr, cptr=cptr,
                fidx=fidx.astype(fidx_dt), name=name)


def verify(fmt: FWCS, expected_shape) -> None:
    """Check every field of ``fmt`` before anything trusts it; raise FormatError if bad.

    Checks: shape equals ``expected_shape``; ``size`` (= C_in for conv); dtypes
    (arr int8, cptr/fidx uint8 or uint16, 1-D); ``len(fidx) == C_out + 1``,
    ``fidx[0] == 0``, ``fidx`` non-decreasing, ``fidx[-1] == len(cptr)``; every
    ``cptr < row_len`` and a multiple of ``size``, strictly increasing within a filter;
    ``len(arr)`` equals the summed filterlet lengths (``len(cptr) * C_in`` for conv).

    >>> f = encode(np.ones((2, 3, 3, 4), np.int8))
    >>> verify(f, (2, 3, 3, 4))
    >>> bad = FWCS(f.shape, f.size, f.arr, f.cptr + np.uint8(1), f.fidx)
    >>> verify(bad, (2, 3, 3, 4))
    Traceback (most recent call last):
    dtmm.errors.FormatError: fwcs 'layer': cptr[0] (byte offset 0) = 1: not a multiple of size 4
    """
    name = getattr(fmt, "name", "layer")
    if not isinstance(fmt, FWCS):
        raise FormatError(f"{FORMAT} {name!r}: expected an FWCS object, got {type(fmt).__name__}")
    shape = check_shape(fmt.shape, expected_shape, fmt=FORMAT, name=name)
    if not isinstance(fmt.size, (int, np.integer)) or isinstance(fmt.size, bool):
        raise FormatError(f"{FORMAT} {name!r}: size {fmt.size!r} is not an int")
    if len(shape) == 4 and fmt.size != shape[3]:
        raise FormatError(f"{FORMAT} {name!r}: size = {fmt.size}, expected C_in = {shape[3]}")
    if not 0 < fmt.size <= 0xFFFF:
        raise FormatError(f"{FORMAT} {name!r}: size = {fmt.size} out of range 1..65535")
    c_out, row_len, size, npos = geometry(shape, int(fmt.size))
    arr = check_array(fmt.arr, "arr", fmt=FORMAT, name=name, dtypes=[np.int8])
    cptr = check_array(fmt.cptr, "cptr", fmt=FORMAT, name=name, dtypes=INDEX_DTYPES)
    fidx = check_array(fmt.fidx, "fidx", fmt=FORMAT, name=name, dtypes=INDEX_DTYPES)
    f64 = check_pointer(fidx, "fidx", c_out, len(cptr), fmt=FORMAT, name=name, items="cptr")
    c64 = cptr.astype(np.int64)
    over = np.flatnonzero(c64 >= row_len)
    if over.size:
        raise bad_value(FORMAT, name, "cptr", cptr, int(over[0]),
                        f"out of range: must be < KH*KW*C_in = {row_len}")
    unal = np.flatnonzero(c64 % size)
    if unal.size:
        raise bad_value(FORMAT, name, "cptr", cptr, int(unal[0]), f"not a multiple of size {size}")
    check_sorted_within_rows(cptr, f64, "cptr", fmt=FORMAT, name=name)
    tail = row_len - (npos - 1) * size
    n_tail = int(np.count_nonzero(c64 == (npos - 1) * size)) if tail != size else 0
    want = len(cptr) * size - n_tail * (size - tail)
    if len(arr) != want:
        tail_note = f", {n_tail} of them the short tail of {tail}" if n_tail else ""
        raise FormatError(f"{FORMAT} {name!r}: arr has {len(arr)} values, expected {want} "
                          f"({len(cptr)} filterlets of size {size}{tail_note})")


def decode(fmt: FWCS) -> np.ndarray:
    """Verify, then rebuild the dense int8 weight with zeros at pruned filterlets."""
    verify(fmt, fmt.shape)
    c_out, row_len, size, npos = geometry(fmt.shape, fmt.size)
    fm = np.zeros((c_out, npos), dtype=bool)
    rows = np.repeat(np.arange(c_out), np.diff(fmt.fidx.astype(np.int64)))
    fm[rows, fmt.cptr.astype(np.int64) // size] = True
    out = np.zeros((c_out, row_len), dtype=np.int8)
    out[np.repeat(fm, size, axis=1)[:, :row_len]] = fmt.arr
    return out.reshape(fmt.shape)


def bytes_from_counts(shape, n_filterlets: int, *, n_tail_filterlets: int = 0,
                      size: int | None = None, name: str = "layer",
                      pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact :func:`byte_count` of an FWCS layer from its shape and kept-filterlet count.

    Pure integer arithmetic (no arrays), for the scheduler. ``n_tail_filterlets`` only
    matters for a linear layer whose ``I`` is not a multiple of ``size``: how many of
    the kept filterlets are the short last run of their row.

    >>> bytes_from_counts((256, 3, 3, 256), 230).as_dict()
    {'weights': 58880, 'index': 717, 'quant': 3072, 'meta': 116, 'total': 62785}
    """
    c_out, row_len, size, npos = geometry(shape, size)
    n = int(n_filterlets)
    tail = row_len - (npos - 1) * size
    if not 0 <= n <= c_out * npos:
        raise FormatError(f"{FORMAT} {name!r}: {n} kept filterlets impossible for shape "
                          f"{tuple(shape)} (max {c_out * npos})")
    if not 0 <= n_tail_filterlets <= min(n, c_out if tail != size else 0):
        raise FormatError(f"{FORMAT} {name!r}: {n_tail_filterlets} short tail filterlets "
                          f"impossible (tail length {tail}, size {size}, {n} kept)")
    weights = n * size - int(n_tail_filterlets) * (size - tail)
    index = (n * index_itemsize((npos - 1) * size, layer=name, array="cptr")
             + (c_out + 1) * index_itemsize(n, layer=name, array="fidx"))
    return ByteCount(weights=weights, index=index, quant=quant_bytes(c_out),
                     meta=meta_bytes(FORMAT, pointer_bytes))


def byte_count(fmt: FWCS, pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact bytes of an encoded layer: the arrays' ``nbytes`` plus quant and header.

    Does not verify ``fmt``; see the module docstring for every byte's definition.
    """
    return ByteCount(weights=int(fmt.arr.nbytes),
                     index=int(fmt.cptr.nbytes + fmt.fidx.nbytes),
                     quant=quant_bytes(fmt.shape[0]), meta=meta_bytes(FORMAT, pointer_bytes))
