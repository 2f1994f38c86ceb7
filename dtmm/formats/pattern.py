"""Pattern pruning storage (PatDNN-style) for 3x3 conv layers.

Every 3x3 kernel ``(o, :, :, i)`` either is removed whole (*connectivity pruning*) or
keeps exactly 4 weights whose positions form one pattern of the layer's *library*.
Positions are numbered row-major in the 3x3 window (``p = kh * 3 + kw``, 4 = centre).

Each :class:`Pattern` layer carries its own library (``Pattern.library``): 1 to 256
patterns of exactly 4 distinct positions each (the C kernel applies 4 weights per kept
kernel), stored ascending, no two alike; ``pid`` indexes it. PatDNN derives its library
from the model (:func:`dtmm.prune.derive_pattern_library`); pass it to :func:`encode` /
:func:`pattern_mask` (and :func:`dtmm.graph.compressed.compress_graph` ``libraries=``).
A library of any other pattern size is refused with a :class:`~dtmm.errors.FormatError`
(:func:`check_library`). The default, :data:`PATTERNS` (8 patterns, all containing the
centre, as in PatDNN):

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
every format; meta = the layer's C structs + the pattern table the kernel reads (the
layer's own library: ``n_patterns`` x 4 uint8 positions, :mod:`.footprint`), counted in
every layer.

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
"""Weights every kept kernel stores (the size of every library pattern)."""
MAX_PATTERNS = 256
"""Most patterns a library may hold (``pid`` is uint8)."""

Library = tuple[tuple[int, int, int, int], ...]


def check_library(library, *, name: str = "layer") -> Library:
    """Validate a pattern library and return it canonical (each pattern ascending).

    A library is 1..:data:`MAX_PATTERNS` patterns, each exactly :data:`KEPT_PER_KERNEL`
    distinct positions in 0..8, no two patterns alike; order is kept (``pid`` = index).
    Raises FormatError naming the layer and the offending pattern.

    >>> check_library([(4, 1, 0, 3), [5, 4, 2, 1]])
    ((0, 1, 3, 4), (1, 2, 4, 5))
    >>> check_library([(0, 4, 8)])
    Traceback (most recent call last):
    ...
    dtmm.errors.FormatError: pattern 'layer': library pattern 0 (0, 4, 8) has 3 positions; the pattern format and its C kernel store exactly 4 weights per kept kernel
    """
    try:
        lib = tuple(tuple(int(p) for p in pat) for pat in library)
    except (TypeError, ValueError):
        raise FormatError(f"{FORMAT} {name!r}: a pattern library is a sequence of position "
                          f"tuples, got {library!r}") from None
    if not 1 <= len(lib) <= MAX_PATTERNS:
        raise FormatError(f"{FORMAT} {name!r}: a pattern library holds 1..{MAX_PATTERNS} "
                          f"patterns, got {len(lib)}")
    seen: dict[tuple[int, ...], int] = {}
    out = []
    for i, pat in enumerate(lib):
        if len(pat) != KEPT_PER_KERNEL:
            raise FormatError(f"{FORMAT} {name!r}: library pattern {i} {pat} has {len(pat)} "
                              f"positions; the pattern format and its C kernel store exactly "
                              f"{KEPT_PER_KERNEL} weights per kept kernel")
        if len(set(pat)) != len(pat) or any(not 0 <= p <= 8 for p in pat):
            raise FormatError(f"{FORMAT} {name!r}: library pattern {i} {pat}: positions must "
                              f"be distinct and in 0..8")
        pat = tuple(sorted(pat))
        if pat in seen:
            raise FormatError(f"{FORMAT} {name!r}: library patterns {seen[pat]} and {i} are "
                              f"both {pat}")
        seen[pat] = i
        out.append(pat)
    return tuple(out)


def library_codes(library) -> list[int]:
    """The library as 9-bit position masks (bit ``p`` set iff position ``p`` is kept).

    >>> library_codes([(0, 1, 3, 4)])
    [27]
    """
    return [int(sum(1 << p for p in pat)) for pat in check_library(library)]


def library_from_codes(codes, *, name: str = "layer") -> Library:
    """Inverse of :func:`library_codes`; validates like :func:`check_library`.

    >>> library_from_codes([27, 54])
    ((0, 1, 3, 4), (1, 2, 4, 5))
    """
    pats = []
    for i, c in enumerate(codes):
        if type(c) is not int or not 0 < c < 512:
            raise FormatError(f"{FORMAT} {name!r}: library code {i} = {c!r} is not a 9-bit "
                              f"position mask in 1..511")
        pats.append(tuple(p for p in range(9) if c >> p & 1))
    return check_library(pats, name=name)


def _positions(library) -> np.ndarray:
    """``(n_patterns, 4)`` int64 positions of a (checked) library."""
    return np.array(library, dtype=np.int64).reshape(len(library), KEPT_PER_KERNEL)


def _code_to_pid(library) -> np.ndarray:
    t = np.full(512, -1, dtype=np.int64)
    t[(1 << _positions(library)).sum(axis=1)] = np.arange(len(library))
    return t


@dataclass(frozen=True, eq=False)
class Pattern:
    """One 3x3 layer in pattern format. See the module docstring."""

    shape: tuple[int, ...]
    values: np.ndarray
    pid: np.ndarray
    kidx: np.ndarray
    kptr: np.ndarray
    name: str = "layer"
    library: Library = PATTERNS

    @property
    def n_kernels(self) -> int:
        return int(len(self.kidx))

    @property
    def n_patterns(self) -> int:
        return len(self.library)


def _check_3x3(shape, name: str) -> None:
    if len(shape) != 4 or shape[1] != 3 or shape[2] != 3:
        raise FormatError(f"{FORMAT} {name!r}: pattern pruning supports only 3x3 OHWI conv "
                          f"weights, got shape {tuple(shape)}")


def pattern_mask(weight, kernel_keep=None, *, library=PATTERNS) -> np.ndarray:
    """Element mask choosing, per kernel, the ``library`` pattern with the largest ``sum |w|``.

    ``kernel_keep``: optional bool ``(C_out, C_in)``; kernels where it is False are
    removed whole (connectivity pruning). Ties go to the lowest pattern id. This *prunes*
    (weights outside the chosen pattern are dropped); :func:`lossless_mask` never does.

    >>> w = np.zeros((1, 3, 3, 1), np.int8); w[0, 2, 2, 0] = 9
    >>> pattern_mask(w)[0, :, :, 0].astype(int).tolist()
    [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    """
    w = weight_int8(weight, fmt=FORMAT, ndims=(4,))
    _check_3x3(w.shape, "layer")
    pos = _positions(check_library(library))
    a = np.abs(w.astype(np.int64)).transpose(0, 3, 1, 2).reshape(w.shape[0], w.shape[3], 9)
    score = a[:, :, pos].sum(axis=-1)                            # (O, I, n_patterns)
    best = score.argmax(axis=-1)
    keep9 = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(keep9, pos[best], True, axis=-1)
    if kernel_keep is not None:
        keep9 &= element_mask(kernel_keep, w.shape[::3], fmt=FORMAT)[:, :, None]
    return keep9.reshape(w.shape[0], w.shape[3], 3, 3).transpose(0, 2, 3, 1)


def lossless_mask(weight, *, library=PATTERNS, name: str = "layer") -> np.ndarray:
    """The element mask that stores ``weight`` in pattern format *without changing it*.

    Per kernel: all zero -> removed; otherwise the first ``library`` pattern holding
    every non-zero weight of the kernel. A kernel whose non-zeros no pattern holds
    raises FormatError naming the layer, kernel and positions (the weight was not
    pruned with this library: prune it first, e.g. :func:`pattern_mask` or
    :class:`dtmm.prune.Pattern`, and pass the same library).

    >>> w = np.zeros((1, 3, 3, 2), np.int8); w[0, 1, 1, 0] = 3; w[0, 0, 0, 1] = w[0, 2, 2, 1] = 1
    >>> lossless_mask(w, library=[(1, 3, 4, 5), (0, 4, 5, 8)])[0, :, :, 0].astype(int).tolist()
    [[0, 1, 0], [1, 1, 1], [0, 0, 0]]
    >>> lossless_mask(w)
    Traceback (most recent call last):
    ...
    dtmm.errors.FormatError: pattern 'layer': kernel (o=0, i=1) has non-zero weights at positions [0, 8], which no pattern of the layer's library holds; storing it would change the weights (prune with that library first, or pass the library the weights were pruned with)
    """
    w = weight_int8(weight, fmt=FORMAT, ndims=(4,))
    _check_3x3(w.shape, name)
    lib = check_library(library, name=name)
    c_out, _, _, c_in = w.shape
    nz9 = (w != 0).transpose(0, 3, 1, 2).reshape(c_out, c_in, 9)
    lib9 = np.zeros((len(lib), 9), dtype=bool)
    for r, pat in enumerate(lib):
        lib9[r, list(pat)] = True
    # fits[o, i, p]: pattern p holds every non-zero of kernel (o, i)
    fits = ~(nz9[:, :, None, :] & ~lib9[None, None, :, :]).any(axis=-1)
    used = nz9.any(axis=-1)
    bad = np.argwhere(used & ~fits.any(axis=-1))
    if bad.size:
        o, i = (int(v) for v in bad[0])
        raise FormatError(f"{FORMAT} {name!r}: kernel (o={o}, i={i}) has non-zero weights at "
                          f"positions {np.flatnonzero(nz9[o, i]).tolist()}, which no pattern of "
                          f"the layer's library holds; storing it would change the weights "
                          f"(prune with that library first, or pass the library the weights "
                          f"were pruned with)")
    m9 = lib9[fits.argmax(axis=-1)] & used[:, :, None]
    return np.ascontiguousarray(m9.reshape(c_out, c_in, 3, 3).transpose(0, 2, 3, 1))


def encode(weight, mask=None, *, name: str = "layer", library=PATTERNS) -> Pattern:
    """Encode a 3x3 OHWI int8 weight whose element ``mask`` is pattern-shaped.

    ``mask`` (or, if None, the non-zeros of ``weight``) must be, per kernel, empty or
    exactly one pattern of ``library`` (default :data:`PATTERNS`); otherwise FormatError
    names the kernel. Build such a mask with :func:`pattern_mask` (prunes) or
    :func:`lossless_mask` (keeps the weights). The library is stored in the result.
    """
    w = weight_int8(weight, fmt=FORMAT, ndims=(2, 4))
    _check_3x3(w.shape, name)
    lib = check_library(library, name=name)
    pos_all = _positions(lib)
    c_out, _, _, c_in = w.shape
    m = (w != 0) if mask is None else element_mask(mask, w.shape, fmt=FORMAT)
    m9 = m.transpose(0, 3, 1, 2).reshape(c_out, c_in, 9)
    codes = (m9.astype(np.int64) << np.arange(9)).sum(axis=-1)
    pid = _code_to_pid(lib)[codes]
    bad = np.argwhere((codes != 0) & (pid < 0))
    if bad.size:
        o, i = (int(v) for v in bad[0])
        pos = np.flatnonzero(m9[o, i]).tolist()
        raise FormatError(f"{FORMAT} {name!r}: kernel (o={o}, i={i}) keeps positions {pos}, "
                          f"which is neither empty nor a library pattern {lib}")
    kept = codes != 0
    n = int(kept.sum())
    kidx_dt = index_dtype(c_in - 1, layer=name, array="kidx")
    kptr_dt = index_dtype(n, layer=name, array="kptr", wide_ok=True)
    o_idx, i_idx = np.nonzero(kept)
    kpid = pid[o_idx, i_idx]
    w9 = w.transpose(0, 3, 1, 2).reshape(c_out, c_in, 9)
    values = w9[o_idx[:, None], i_idx[:, None], pos_all[kpid]].reshape(-1)
    kptr = np.zeros(c_out + 1, dtype=np.int64)
    np.cumsum(kept.sum(axis=1), out=kptr[1:])
    return Pattern(shape=tuple(int(d) for d in w.shape),
                   values=np.ascontiguousarray(values, dtype=np.int8),
                   pid=kpid.astype(np.uint8), kidx=i_idx.astype(kidx_dt),
                   kptr=kptr.astype(kptr_dt), name=name, library=lib)


def verify(fmt: Pattern, expected_shape) -> None:
    """Raise FormatError unless ``fmt`` is a consistent 3x3 pattern layer.

    Checks: shape (3x3 OHWI); the library (:func:`check_library`, already canonical);
    dtypes; ``len(kptr) == C_out + 1``, ``kptr[0] == 0``, non-decreasing,
    ``kptr[-1] == len(kidx)``; ``kidx < C_in`` strictly increasing within a filter;
    ``len(pid) == len(kidx)``, ``pid < len(library)``; ``len(values) == 4 * len(kidx)``.
    """
    name = getattr(fmt, "name", "layer")
    if not isinstance(fmt, Pattern):
        raise FormatError(f"{FORMAT} {name!r}: expected a Pattern object, got {type(fmt).__name__}")
    shape = check_shape(fmt.shape, expected_shape, fmt=FORMAT, name=name, ndims=(4,))
    _check_3x3(shape, name)
    c_out, _, _, c_in = shape
    lib = check_library(fmt.library, name=name)
    if lib != fmt.library:
        raise FormatError(f"{FORMAT} {name!r}: library {fmt.library!r} is not canonical "
                          f"(positions must be ascending ints): build it with check_library")
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
    badp = np.flatnonzero(pid >= len(lib))
    if badp.size:
        raise bad_value(FORMAT, name, "pid", pid, int(badp[0]),
                        f"no such pattern (library has {len(lib)})")
    if len(values) != KEPT_PER_KERNEL * len(kidx):
        raise FormatError(f"{FORMAT} {name!r}: values has {len(values)} entries, expected "
                          f"{KEPT_PER_KERNEL} per kernel = {KEPT_PER_KERNEL * len(kidx)}")


def decode(fmt: Pattern) -> np.ndarray:
    """Verify, then rebuild the dense 3x3 OHWI int8 weight."""
    verify(fmt, fmt.shape)
    c_out, _, _, c_in = fmt.shape
    out9 = np.zeros((c_out, c_in, 9), dtype=np.int8)
    rows = np.repeat(np.arange(c_out), np.diff(fmt.kptr.astype(np.int64)))
    pos = _positions(fmt.library)[fmt.pid.astype(np.int64)]
    out9[rows[:, None], fmt.kidx.astype(np.int64)[:, None], pos] = fmt.values.reshape(-1, 4)
    return out9.reshape(c_out, c_in, 3, 3).transpose(0, 2, 3, 1).copy()


def bytes_from_counts(shape, n_kernels: int, *, name: str = "layer",
                      pointer_bytes: int = POINTER_BYTES, n_patterns: int = len(PATTERNS)
                      ) -> ByteCount:
    """Exact :func:`byte_count` from shape, kept kernels and library size (no arrays).

    >>> bytes_from_counts((32, 3, 3, 16), 115).as_dict()
    {'weights': 460, 'index': 263, 'quant': 384, 'meta': 152, 'total': 1259}
    >>> bytes_from_counts((32, 3, 3, 16), 115, n_patterns=12).meta     # 4 more patterns
    168
    """
    if not 1 <= int(n_patterns) <= MAX_PATTERNS:
        raise FormatError(f"{FORMAT} {name!r}: a library holds 1..{MAX_PATTERNS} patterns, "
                          f"got n_patterns={n_patterns}")
    shape = tuple(int(d) for d in shape)
    _check_3x3(shape, name)
    c_out, _, _, c_in = shape
    n = int(n_kernels)
    if not 0 <= n <= c_out * c_in:
        raise FormatError(f"{FORMAT} {name!r}: {n} kept kernels impossible for shape {shape}")
    index = (n * (1 + index_itemsize(c_in - 1, layer=name, array="kidx"))
             + (c_out + 1) * index_itemsize(n, layer=name, array="kptr", wide_ok=True))
    return ByteCount(weights=KEPT_PER_KERNEL * n, index=index, quant=quant_bytes(c_out),
                     meta=meta_bytes(FORMAT, pointer_bytes, n_patterns=int(n_patterns)))


def byte_count(fmt: Pattern, pointer_bytes: int = POINTER_BYTES) -> ByteCount:
    """Exact bytes of an encoded layer (does not verify)."""
    return ByteCount(weights=int(fmt.values.nbytes),
                     index=int(fmt.pid.nbytes + fmt.kidx.nbytes + fmt.kptr.nbytes),
                     quant=quant_bytes(fmt.shape[0]),
                     meta=meta_bytes(FORMAT, pointer_bytes, n_patterns=len(fmt.library)))
