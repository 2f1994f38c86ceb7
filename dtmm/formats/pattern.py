"""Pattern pruning storage (PatDNN-style) for 3x3 conv layers.

Every 3x3 kernel ``(o, :, :, i)`` either is removed whole (*connectivity pruning*) or
keeps exactly 4 weights whose positions form one pattern of :data:`PATTERNS`.
Positions are numbered row-major in the 3x3 window (``p = kh * 3 + kw``, 4 = centre).

The library (8 patterns, all containing the centre, as in PatDNN):

====  ==============  ============================
id    positions       shape
====  ==============  ============================
0     1, 3, 4, 5      T pointing up    (no bottom)
1     1, 4, 5, 7      T pointing right (no left)
2     3, 4, 5, 7      T pointing down  (no top)
3     1, 3, 4, 7      T pointing left  (no right)
4     0, 1, 3, 4      top-left square
5     1, 2, 4, 5      top-right square
6     3, 4, 6, 7      bottom-left square
7     4, 5, 7, 8      bottom-right square
====  ==============  ============================

Arrays:

``values`` int8, 4 per kept kernel
    filter after filter, kernel after kernel (increasing input channel), the kernel's 4
    weights in increasing position order.
``pid``  uint8, one per kept kernel: pattern id.
``kidx`` uint8 or uint16, one per kept kernel: input channel ``i``, strictly
    increasing within a filter. Width: uint8 iff ``C_in - 1 <= 255``.
``kptr`` uint8, uint16 or uint32, ``C_out + 1`` entries: ``kptr[o] .. kptr[o+1]`` are
    filter ``o``'s kernels. Width: the smallest holding the number of kept kernels.

Bytes: weights = ``len(values)``; index = ``pid + kidx + kptr`` nbytes; quant as
every format; meta = the layer's C structs + the pattern table the kernel reads (8 patterns
x 4 uint8 positions, :mod:`.footprint`), counted in every layer.

Example:
    >>> import numpy as np
    >>> w = np.zeros((1, 3, 3, 2), np.int8); w[0, 0, 1, 1] = w[0, 1, :, 1] = 5
    >>> p = encode(w)        # kernel 0 all zero -> removed; kernel 1 = pattern 0
    >>> p.pid.tolist(), p.kidx.tolist(), p.kptr.tolist(), p.values.tolist()
    ([0], [1], [0, 1], [5, 5, 5, 5])
    >>> bool((decode(p) == w).all()), byte_count(p).as_dict()['index']
    (True, 4)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.errors import FormatError
from dtmm.formats.common import (INDEX_DTYPES, POINTER_DTYPES, ByteCount,
                                 bad_value, check_array, check_pointer, check_shape,
                                 check_sorted_within_rows, element_mask, index_dtype,
                                 index_itemsize, quant_bytes, weight_int8)
from dtmm.formats.footprint import POINTER_BYTES, meta_bytes

FORMAT = "pattern"
PATTERNS: tuple[tuple[int, int, int, int], ...] = (
    (1, 3, 4, 5), (1, 4, 5, 7), (3, 4, 5, 7), (1, 3, 4, 7),
    (0, 1, 3, 4), (1, 2, 4, 5), (3, 4, 6, 7), (4, 5, 7, 8),
)
"""The pattern library: 4 kept positions (row-major in 3x3) per pattern id."""
KEPT_PER_KERNEL = 4

_POS = np.array(PATTERNS, dtype=np.int64)                      # (n_patterns, 4)
_CODES = (1 << _POS).sum(axis=1)                               # 9-bit masks
_CODE_TO_PID = np.full(512, -1, dtype=np.int64)
_CODE_TO_PID[_CODES] = np.arange(len(PATTERNS))


@dataclass(frozen=True, eq=False)
class Pattern:
    """One 3x3 layer in pattern format. See the module docstring."""

    shape: tuple[int, ...]
    values: np.ndarray
    pid: np.ndarray
    kidx: np.ndarray
    kptr: np.ndarray
    name: str = "layer"

    @property
    def n_kernels(self) -> int:
        return int(len(self.kidx))


def _check_3x3(shape, name: str) -> None:
    if len(shape) != 4 or shape[1] != 3 or shape[2] != 3:
        raise FormatError(f"{FORMAT} {name!r}: pattern pruning supports only 3x3 OHWI conv "
                          f"weights, got shape {tuple(shape)}")


def pattern_mask(weight, kernel_keep=None) -> np.ndarray:
    """Element mask choosing, per kernel, the pattern with the largest ``sum |w|``.

    ``kernel_keep``: optional bool ``(C_out, C_in)``; kernels where it is False are
    removed whole (connectivity pruning). Ties go to the lowest pattern id.

    >>> w = np.zeros((1, 3, 3, 1), np.int8); w[0, 2, 2, 0] = 9
    >>> pattern_mask(w)[0, :, :, 0].astype(int).tolist()
    [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    """
    w = weight_int8(weight, fmt=FORMAT, ndims=(4,))
    _check_3x3(w.shape, "layer")
    a = np.abs(w.astype(np.int64)).transpose(0, 3, 1, 2).reshape(w.shape[0], w.shape[3], 9)
    score = a[:, :, _POS].sum(axis=-1)                           # (O, I, n_patterns)
    best = score.argmax(axis=-1)
    keep9 = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(keep9, _POS[best], True, axis=-1)
    if kernel_keep is not None:
        keep9 &= element_mask(kernel_keep, w.shape[::3], fmt=FORMAT)[:, :, None]
    return keep9.reshape(w.shape[0], w.shape[3], 3, 3).transpose(0, 2, 3, 1)


def encode(weight, mask=None, *, name: str = "layer") -> Pattern:
    """Encode a 3x3 OHWI int8 weight whose element ``mask`` is pattern-shaped.

    ``mask`` (or, if None, the non-zeros of ``weight``) must be, per kernel, empty or
    exactly one library pattern; otherwise FormatError names the kernel. Build such a
    mask with :func:`pattern_mask`.
    """
    w = weight_int8(weight, fmt=FORMAT, ndims=(2, 4))
    _check_3x3(w.shape, name)
    c_out, _, _, c_in = w.shape
    m = (w != 0) if mask is None else element_mask(mask, w.shape, fmt=FORMAT)
    m9 = m.transpose(0, 3, 1, 2).reshape(c_out, c_in, 9)
    codes = (m9.astype(np.int64) << np.arange(9)).sum(axis=-1)
    pid = _CODE_TO_PID[codes]
    bad = np.argwhere((codes != 0) & (pid < 0))
    if bad.size:
        o, i = (int(v) for v in bad[0])
        pos = np.flatnonzero(m9[o, i]).tolist()
        raise FormatError(f"{FORMAT} {name!r}: kernel (o={o}, i={i}) keeps positions {pos}, "
                          f"which is neither empty nor a library pattern {PATTERNS}")
    kept = codes != 0
    n = int(kept.sum())
    kidx_dt = index_dtype(c_in - 1, layer=name, array="kidx")
    kptr_dt = index_dtype(n, layer=name, array="kptr", wide_ok=True)
    o_idx, i_idx = np.nonzero(kept)
    kpid = pid[o_idx, i_idx]
    w9 = w.transpose(0, 3, 1, 2).reshape(c_out, c_in, 9)
    values = w9[o_idx[:, None], i_idx[:, None], _POS[kpid]].reshape(-1)
    kptr = np.zeros(c_out + 1, dtype=np.int64)
    np.cumsum(kept.sum(axis=1), out=kptr[1:])
    return Pattern(shape=tuple(int(d) for d in w.shape),
                   values=np.ascontiguousarray(values, dtype=np.int8),
                   pid=kpid.astype(np.uint8), kidx=i_idx.astype(kidx_dt),
                   kptr=kptr.astype(kptr_dt), name=name)


def verify(fmt: Pattern, expected_shape) -> None:
    """Raise FormatError unless ``fmt`` is a consistent 3x3 pattern layer.

    Checks: shape (3x3 OHWI); dtypes; ``len(kptr) == C_out + 1``, ``kptr[0] == 0``,
    non-decreasing, ``kptr[-1] == len(kidx)``; ``kidx < C_in`` strictly increasing
    within a filter; ``len(pid) == len(kidx)``, ``pid < len(PATTERNS)``;
    ``len(values) == 4 * len(kidx)``.
    """
    name = getattr(fmt, "name", "layer")
    if not isinstance(fmt, Pattern):
        raise FormatError(f"{FORMAT} {name!r}: expected a Pattern object, got {type(fmt).__name__}")
    shape = check_shape(fmt.shape, expected_shape, fmt=FORMAT, name=name, ndims=(4,))
    _check_3x3(shape, name)
    c_out, _, _, c_in = shape
    values = check_array(fmt.values, "values", fmt=FORMAT, name=name, dtypes=[np.int8])
    pid = check_array(fmt.pid, "pid", fmt=FORMAT, name=name, dtypes=[np.uint8])
    kidx = check_array(fmt.kidx, "kidx", fmt=FORMAT, name=name, dtypes=INDEX_DTYPES)
    kptr = check_array(fmt.kptr, "kptr", fmt=FORMAT, name=name, dtypes=POINTER_DTYPES)
    p64 = check_pointer(kptr, "kptr", c_out, len(kidx), fmt=FORMAT, name=name, items="kidx")
    over = np.flatnonzero(kidx.astype(np.int64) >= c_in)
    if over.size:
        raise bad_value(FORMAT, name, "kidx", kidx, int(over[0]),
                        f"out of range: must be < C_in = {c_in}")
    check_sorted_within_rows(kidx, p64, "kidx", fmt=FORMAT, name=name)
    if len(pid) != len(kidx):
        raise FormatError(f"{FORMAT} {name!r}: pid has {len(pid)} entries, "
                          f"expected one per kernel ({len(kidx)})")
    badp = np.flatnonzero(pid >= len(PATTERNS))
    if badp.size:
        raise bad_value(FORMAT, name, "pid", pid, int(badp[0]),
                        f"no such pattern (library has {len(PATTERNS)})")
    if len(values) != KEPT_PER_KERNEL * len(kidx):
        raise FormatError(f"{FORMAT} {name!r}: values has {len(values)} entries, expected "
                          f"{KEPT_PER_KERNEL} per kernel = {KEPT_PER_KERNEL * len(kidx)}")


def decode(fmt: Pattern) -> np.ndarray:
    """Verify, then rebuild the dense 3x3 OHWI int8 weight."""
    verify(fmt, fmt.shape)
    c_out, _, _, c_in = fmt.shape
    out9 = np.zeros((c_out, c_in, 9), dtype=np.int8)
    rows = np.repeat(np.arange(c_out), np.diff(fmt.kptr.astype(np.int64)))
    pos = _POS[fmt.pid.astype(np.int64)]
    out9[rows[:, None], fmt.kidx.astype(np.int64)[:, None], pos] = fmt.values.reshape(-1, 4)
    return out9.reshape(c_out, c_in, 3, 3).transpose(0, 2, 3, 1).copy()


def bytes_from_counts(shape, n_kernels: int, *, name: str = "layer",
                      pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact :func:`byte_count` from shape and number of kept kernels (no arrays).

    >>> bytes_from_counts((32, 3, 3, 16), 115).as_dict()
    {'weights': 460, 'index': 263, 'quant': 384, 'meta': 152, 'total': 1259}
    """
    shape = tuple(int(d) for d in shape)
    _check_3x3(shape, name)
    c_out, _, _, c_in = shape
    n = int(n_kernels)
    if not 0 <= n <= c_out * c_in:
        raise FormatError(f"{FORMAT} {name!r}: {n} kept kernels impossible for shape {shape}")
    index = (n * (1 + index_itemsize(c_in - 1, layer=name, array="kidx"))
             + (c_out + 1) * index_itemsize(n, layer=name, array="kptr", wide_ok=True))
    return ByteCount(weights=KEPT_PER_KERNEL * n, index=index, quant=quant_bytes(c_out),
                     meta=meta_bytes(FORMAT, pointer_bytes, n_patterns=len(PATTERNS)))


def byte_count(fmt: Pattern, pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact bytes of an encoded layer (does not verify)."""
    return ByteCount(weights=int(fmt.values.nbytes),
                     index=int(fmt.pid.nbytes + fmt.kidx.nbytes + fmt.kptr.nbytes),
                     quant=quant_bytes(fmt.shape[0]),
                     meta=meta_bytes(FORMAT, pointer_bytes, n_patterns=len(PATTERNS)))
