"""Pruning granularities: which weights fall together into one pruning unit.

A granularity maps every weight of a layer to the unit it belongs to. Weights are in
channel-last layout: OHWI ``(C_out, KH, KW, C_in)`` for convolutions, ``(O, I)`` for
``nn.Linear`` (see :mod:`dtmm.prune.layout`). The contract (:class:`Granularity`):

* ``unit_ids(shape)`` -> int64 array of ``shape``; entry = id (``0 .. n-1``) of the
  unit holding that weight. Ids follow OHWI storage order.
* ``num_units(shape)`` -> ``n``.
* ``reduce(values, shape)`` -> per-unit sums of a per-weight quantity (``np.bincount``).
* ``build_mask(unit_scores, ratio, shape)`` -> bool keep-mask of ``shape``.

Units of each granularity:

============  ======================================  ==========================================
name          conv OHWI ``(O, KH, KW, I)``            linear ``(O, I)``
============  ======================================  ==========================================
filterlet     the ``I`` weights at one ``(o,kh,kw)``  runs of ``run`` (16) contiguous inputs of
              (DTMM; contiguous in OHWI)              one output; the last run may be shorter
filter        a whole output channel ``o``            a whole output row ``o``
element       one weight                              one weight
kernel        the ``KH x KW`` kernel ``(o, :, :, i)``  one weight
              (PatDNN connectivity pruning)
pattern       scored per weight; masks built in two stages, see :class:`Pattern`
============  ======================================  ==========================================

Depthwise convolutions have OHWI shape ``(C, KH, KW, 1)`` here, so a filterlet is a
single weight (filterlet = element), a filter is one channel's ``KH x KW`` kernel and a
pattern kernel is that same kernel. :func:`dtmm.prune.layout.prunable_layers` skips
depthwise layers by default because filterlet pruning buys nothing there.

Custom granularities only need ``name``, ``unit_ids`` and ``num_units``: subclass
:class:`UnitGranularity` to get ``reduce``, ``expand`` and ``build_mask``.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from dtmm.prune.layout import PruneError
from dtmm.prune.select import check_scores, select

__all__ = [
    "Granularity",
    "UnitGranularity",
    "Filterlet",
    "Filter",
    "Element",
    "Kernel",
    "Pattern",
    "FILTERLET",
    "FILTER",
    "ELEMENT",
    "KERNEL",
    "PATTERN",
    "DEFAULT_PATTERNS",
    "GRANULARITIES",
    "get_granularity",
    "derive_pattern_library",
]


def _check_shape(shape) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if len(shape) not in (2, 4) or any(d <= 0 for d in shape):
        raise PruneError(f"weight shape must be OHWI (4-D) or (O, I) (2-D) with positive sizes, got {shape}")
    return shape


@runtime_checkable
class Granularity(Protocol):
    """What every granularity provides (see the module docstring)."""

    name: str

    def unit_ids(self, shape: Sequence[int]) -> np.ndarray: ...

    def num_units(self, shape: Sequence[int]) -> int: ...

    def reduce(self, values: np.ndarray, shape: Sequence[int]) -> np.ndarray: ...

    def build_mask(self, unit_scores: np.ndarray, ratio: float, shape: Sequence[int]) -> np.ndarray: ...


class UnitGranularity:
    """Base class: a granularity fully described by ``unit_ids`` / ``num_units``.

    Subclasses implement ``_ids(shape)``; this class adds validation, per-unit
    reductions and mask building by :func:`dtmm.prune.select.select`.
    """

    name = "abstract"

    def _ids(self, shape: tuple[int, ...]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_units(self, shape: Sequence[int]) -> int:
        """Number of units of a weight of ``shape``."""
        return int(self._ids(_check_shape(shape)).max()) + 1

    def unit_ids(self, shape: Sequence[int]) -> np.ndarray:
        """Int64 array of ``shape``: the unit id of each weight (OHWI storage order)."""
        shape = _check_shape(shape)
        return np.ascontiguousarray(np.broadcast_to(self._ids(shape), shape), dtype=np.int64)

    def unit_sizes(self, shape: Sequence[int]) -> np.ndarray:
        """Number of weights in each unit.

        Example:
            >>> FILTERLET.unit_sizes((2, 40)).tolist()
            [16, 16, 8, 16, 16, 8]
        """
        return np.bincount(self.unit_ids(shape).ravel(), minlength=self.num_units(shape))

    def reduce(self, values: np.ndarray, shape: Sequence[int] | None = None) -> np.ndarray:
        """Per-unit sums of a per-weight array ``values`` (of the weight's shape).

        Example:
            >>> FILTER.reduce(np.ones((4, 3, 3, 2))).tolist()
            [18.0, 18.0, 18.0, 18.0]
        """
        values = np.asarray(values, dtype=np.float64)
        shape = values.shape if shape is None else _check_shape(shape)
        if values.shape != tuple(shape):
            raise PruneError(f"{self.name}: values of shape {values.shape} do not match weight shape {shape}")
        return np.bincount(self.unit_ids(shape).ravel(), weights=values.ravel(),
                           minlength=self.num_units(shape))

    def expand(self, unit_values, shape: Sequence[int]) -> np.ndarray:
        """Broadcast one value per unit back onto the weights of ``shape``."""
        unit_values = np.asarray(unit_values)
        n = self.num_units(shape)
        if unit_values.shape != (n,):
            raise PruneError(f"{self.name}: expected {n} unit values for shape {tuple(shape)}, "
                             f"got shape {unit_values.shape}")
        return unit_values[self.unit_ids(shape)]

    def build_mask(self, unit_scores, ratio: float, shape: Sequence[int]) -> np.ndarray:
        """Bool keep-mask of ``shape`` pruning the lowest ``ratio`` share of units.

        Example:
            >>> m = FILTER.build_mask([0.3, 0.1, 0.2, 0.4], 0.5, (4, 3, 3, 2))
            >>> m.reshape(4, -1).all(1).tolist()
            [True, False, False, True]
        """
        s = check_scores(unit_scores, f"{self.name} unit scores")
        n = self.num_units(shape)
        if s.size != n:
            raise PruneError(f"{self.name}: expected {n} unit scores for shape {tuple(shape)}, got {s.size}")
        return self.expand(select(s, ratio), shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


class Filterlet(UnitGranularity):
    """DTMM's unit: the ``C_in`` weights at one kernel position ``(o, kh, kw)``.

    In OHWI they are contiguous, so a kept filterlet is one SIMD run. For ``nn.Linear``
    ``(O, I)`` a filterlet is a run of ``run`` contiguous inputs of one output (default
    16, one Helium int8 vector); the last run of a row holds ``I % run`` weights when
    ``run`` does not divide ``I``.

    Example:
        >>> Filterlet().unit_ids((2, 1, 2, 3))[..., 0].tolist()
        [[[0, 1]], [[2, 3]]]
        >>> Filterlet().num_units((10, 40)), Filterlet(run=8).num_units((10, 40))
        (30, 50)
    """

    name = "filterlet"

    def __init__(self, run: int = 16) -> None:
        if int(run) < 1:
            raise PruneError(f"filterlet run length must be >= 1, got {run}")
        self.run = int(run)

    def _ids(self, shape):
        if len(shape) == 4:
            o, kh, kw, _ = shape
            return np.arange(o * kh * kw, dtype=np.int64).reshape(o, kh, kw, 1)
        o, i = shape
        runs = -(-i // self.run)
        return (np.arange(o, dtype=np.int64)[:, None] * runs + np.arange(i, dtype=np.int64)[None, :] // self.run)

    def num_units(self, shape):
        shape = _check_shape(shape)
        if len(shape) == 4:
            return shape[0] * shape[1] * shape[2]
        return shape[0] * -(-shape[1] // self.run)

    def __repr__(self) -> str:
        return f"Filterlet(run={self.run})"


class Filter(UnitGranularity):
    """Structured pruning: one unit per output channel (a whole filter / output row).

    Example:
        >>> Filter().unit_ids((3, 1, 1, 2))[:, 0, 0, :].tolist()
        [[0, 0], [1, 1], [2, 2]]
    """

    name = "filter"

    def _ids(self, shape):
        return np.arange(shape[0], dtype=np.int64).reshape((shape[0],) + (1,) * (len(shape) - 1))

    def num_units(self, shape):
        return _check_shape(shape)[0]


class Element(UnitGranularity):
    """Unstructured pruning: every weight is its own unit.

    Example:
        >>> Element().unit_ids((2, 3)).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """

    name = "element"

    def _ids(self, shape):
        return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)

    def num_units(self, shape):
        return int(np.prod(_check_shape(shape)))


class Kernel(UnitGranularity):
    """Connectivity pruning (PatDNN): one unit per kernel ``(o, :, :, i)`` of a conv.

    Removing a unit cuts the connection from input channel ``i`` to output channel
    ``o``. Unit ids are ``o * C_in + i``. With the :func:`~dtmm.prune.importance.l2`
    scorer a unit's score is the kernel's L2 norm, so :meth:`build_mask` removes the
    kernels of least norm. For ``nn.Linear`` ``(O, I)`` a kernel is a single weight.

    Example:
        >>> Kernel().unit_ids((2, 1, 2, 3))[:, 0, :, :].tolist()
        [[[0, 1, 2], [0, 1, 2]], [[3, 4, 5], [3, 4, 5]]]
        >>> m = KERNEL.build_mask([5.0, 1.0, 3.0, 2.0], 0.5, (2, 3, 3, 2))
        >>> m[:, 0, 0, :].tolist()                  # kernels (0,1) and (1,1) removed
        [[True, False], [True, False]]
    """

    name = "kernel"

    def _ids(self, shape):
        if len(shape) == 2:
            return np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape)
        o, _, _, i = shape
        return np.arange(o * i, dtype=np.int64).reshape(o, 1, 1, i)

    def num_units(self, shape):
        shape = _check_shape(shape)
        return shape[0] * shape[-1]


#: PatDNN-style default library of 4-entry 3x3 patterns (positions ``kh * 3 + kw``),
#: all containing the centre: the four 2x2 squares and the four "T" shapes.
DEFAULT_PATTERNS: tuple[tuple[int, ...], ...] = (
    (0, 1, 3, 4), (1, 2, 4, 5), (3, 4, 6, 7), (4, 5, 7, 8),
    (1, 3, 4, 5), (1, 4, 5, 7), (3, 4, 5, 7), (1, 3, 4, 7),
)


class Pattern(UnitGranularity):
    """PatDNN-style pattern + connectivity pruning.

    Scoring is per weight (``unit_ids`` = element ids), so any scorer gives one score
    per weight. :meth:`build_mask` then works in two stages on each kernel
    ``(o, :, :, i)``:

    1. **Pattern**: for a 3x3 kernel, pick the library pattern whose positions hold the
       largest summed score (ties: the earlier pattern) and keep only those weights
       (``len(pattern)`` = 4 with the default library).
    2. **Connectivity**: rank kernels by the score their kept weights hold and remove the
       lowest ``ratio`` share of kernels entirely (``num_pruned(O * I, ratio)``).

    With the :func:`~dtmm.prune.importance.energy` scorer (``w^2`` per weight) stage 1
    keeps the pattern of most L2 energy and stage 2 drops the kernels of least kept
    energy: PatDNN's rules (:mod:`dtmm.prune.baselines`). A library of 4-position patterns
    is what the pattern storage format holds (pass it on to
    ``dtmm.graph.compressed.compress_graph(libraries=...)``).

    So ``ratio`` counts kernels, and the weight sparsity of a 3x3 layer is
    ``1 - (1 - ratio) * 4 / 9``; :meth:`ratio_for_sparsity` inverts that. Kernels that are
    not 3x3 (1x1, 5x5, ...) get connectivity pruning only (kernel score = sum of its
    weights' scores); for ``nn.Linear`` a kernel is a single weight, i.e. this is then
    element pruning.

    Example:
        >>> s = np.zeros((1, 3, 3, 1)); s[0, 0, 0, 0] = s[0, 0, 1, 0] = 5.0
        >>> m = PATTERN.build_mask(s.ravel(), 0.0, s.shape)
        >>> m[0, :, :, 0].astype(int).tolist()
        [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    """

    name = "pattern"

    def __init__(self, library: Iterable[Iterable[int]] = DEFAULT_PATTERNS) -> None:
        lib = tuple(tuple(sorted(int(p) for p in pat)) for pat in library)
        if not lib:
            raise PruneError("pattern library is empty")
        for pat in lib:
            if len(set(pat)) != len(pat) or any(not 0 <= p < 9 for p in pat) or not pat:
                raise PruneError(f"bad 3x3 pattern {pat}: positions must be distinct and in 0..8")
        self.library = lib

    def _ids(self, shape):
        return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)

    def num_units(self, shape):
        return int(np.prod(_check_shape(shape)))

    def library_matrix(self) -> np.ndarray:
        """Bool array ``(n_patterns, 9)``: row ``p`` marks the positions pattern ``p`` keeps."""
        m = np.zeros((len(self.library), 9), dtype=bool)
        for r, pat in enumerate(self.library):
            m[r, list(pat)] = True
        return m

    def kernel_ids(self, shape: Sequence[int]) -> np.ndarray:
        """Int64 array of ``shape``: kernel id ``o * I + i`` of each weight (linear: element id)."""
        shape = _check_shape(shape)
        if len(shape) == 2:
            return Element().unit_ids(shape)
        o, kh, kw, i = shape
        ids = np.arange(o * i, dtype=np.int64).reshape(o, 1, 1, i)
        return np.ascontiguousarray(np.broadcast_to(ids, shape))

    def ratio_for_sparsity(self, sparsity: float, shape: Sequence[int]) -> float:
        """Connectivity ratio that brings a layer of ``shape`` closest to weight ``sparsity``.

        Sparsities below what the patterns alone give (5/9 for 3x3 and the default
        library) map to ratio 0.

        Example:
            >>> round(PATTERN.ratio_for_sparsity(0.8, (8, 3, 3, 8)), 4)
            0.55
        """
        shape = _check_shape(shape)
        keep = len(self.library[0]) / 9 if len(shape) == 4 and shape[1:3] == (3, 3) else 1.0
        if len(shape) == 4 and shape[1:3] == (3, 3) and len({len(p) for p in self.library}) > 1:
            raise PruneError("ratio_for_sparsity needs a library whose patterns all keep the same count")
        return float(min(1.0, max(0.0, 1.0 - (1.0 - float(sparsity)) / keep)))

    def build_mask(self, unit_scores, ratio: float, shape: Sequence[int]) -> np.ndarray:
        """Two-stage pattern + connectivity keep-mask (see the class docstring)."""
        shape = _check_shape(shape)
        s = check_scores(np.asarray(unit_scores, dtype=np.float64).ravel(), "pattern scores")
        if s.size != int(np.prod(shape)):
            raise PruneError(f"pattern: expected one score per weight ({int(np.prod(shape))}), got {s.size}")
        s = s.reshape(shape)
        if len(shape) == 4 and shape[1:3] == (3, 3):
            o, _, _, i = shape
            kern = s.transpose(0, 3, 1, 2).reshape(o * i, 9)
            lib = self.library_matrix()
            held = kern @ lib.T.astype(np.float64)          # (kernels, patterns)
            best = np.argmax(held, axis=1)                  # first maximum wins ties
            kscore = held[np.arange(o * i), best]
            keep_k = select(kscore, ratio)
            m = lib[best] & keep_k[:, None]
            return np.ascontiguousarray(m.reshape(o, i, 3, 3).transpose(0, 2, 3, 1))
        kid = self.kernel_ids(shape)
        kscore = np.bincount(kid.ravel(), weights=s.ravel())
        return select(kscore, ratio)[kid]

    def __repr__(self) -> str:
        return f"Pattern(library={self.library})"


def derive_pattern_library(weight_scores: Iterable[np.ndarray], k: int = 8, *, size: int = 4,
                           include_centre: bool = True) -> tuple[tuple[int, ...], ...]:
    """PatDNN's pattern-set selection: the ``k`` most frequent top-``size`` 3x3 patterns.

    ``weight_scores`` are per-weight importance arrays in OHWI; only 3x3 layers count.
    For each kernel its ``size`` highest-scoring positions form a candidate (with
    ``include_centre`` the centre is always in and the other ``size - 1`` are the best
    of the remaining eight). The ``k`` most frequent candidates win (ties: the smaller
    tuple); if fewer than ``k`` distinct ones occur, :data:`DEFAULT_PATTERNS` entries of
    the same size fill up. Pass the result to :class:`Pattern`.

    Example:
        >>> w = np.zeros((4, 3, 3, 2)); w[:, 0, :2, :] = 1.0; w[:, 1, :2, :] = 2.0
        >>> derive_pattern_library([w], k=2)    # one observed pattern, one default fills up
        ((0, 1, 3, 4), (1, 2, 4, 5))
    """
    if not 1 <= size <= 9:
        raise PruneError(f"pattern size must be in 1..9, got {size}")
    counts: Counter = Counter()
    for s in weight_scores:
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 4 or s.shape[1:3] != (3, 3):
            continue
        kern = np.abs(s).transpose(0, 3, 1, 2).reshape(-1, 9)
        if include_centre:
            others = np.delete(kern, 4, axis=1)
            top = np.argsort(-others, axis=1, kind="stable")[:, : size - 1]
            top = np.where(top >= 4, top + 1, top)
            top = np.concatenate([np.full((top.shape[0], 1), 4), top], axis=1)
        else:
            top = np.argsort(-kern, axis=1, kind="stable")[:, :size]
        counts.update(tuple(sorted(r)) for r in top.tolist())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lib = [pat for pat, _ in ranked[:k]]
    for pat in DEFAULT_PATTERNS:
        if len(lib) >= k:
            break
        if len(pat) == size and pat not in lib:
            lib.append(pat)
    if not lib:
        raise PruneError("no 3x3 layers and no default patterns of that size to build a library from")
    return tuple(lib)


FILTERLET = Filterlet()
FILTER = Filter()
ELEMENT = Element()
KERNEL = Kernel()
PATTERN = Pattern()

#: The built-in granularities by name.
GRANULARITIES: dict[str, Granularity] = {g.name: g for g in (FILTERLET, FILTER, ELEMENT, KERNEL,
                                                             PATTERN)}


def get_granularity(g: str | Granularity) -> Granularity:
    """Look a granularity up by name (``"filterlet"``, ``"filter"``, ``"element"``,
    ``"kernel"``, ``"pattern"``) or pass an instance through.

    Example:
        >>> get_granularity("filter").name
        'filter'
    """
    if isinstance(g, str):
        try:
            return GRANULARITIES[g]
        except KeyError:
            raise PruneError(f"unknown granularity {g!r}; choose one of {sorted(GRANULARITIES)}") from None
    if isinstance(g, Granularity):
        return g
    raise PruneError(f"not a granularity: {g!r}")
