"""Choosing which units to prune: per layer, globally, and per-layer ratio files.

Every function here works on *unit scores*: a 1-D array per layer holding one
importance value per pruning unit (see :mod:`dtmm.prune.granularity`; the scorers in
:mod:`dtmm.prune.importance` return exactly that). Higher score = more important.

Counting rule, used everywhere (cost models should call :func:`num_pruned` too):
a ratio ``r`` on ``n`` units prunes ``floor(r * n)`` units (with a 1e-9 tolerance so
that ``0.3 * 10`` prunes 3), never more than ``n``.

Tie-breaking is deterministic: among equal scores, the unit with the lower index is
pruned first (a stable sort). For global selection, ties across layers go to the
layer listed first.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from dtmm.prune.layout import PruneError

__all__ = ["num_pruned", "check_ratio", "check_scores", "select", "select_global", "load_ratios"]


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """Return ``ratio`` as a float, raising :class:`PruneError` unless it lies in [0, 1].

    Example:
        >>> check_ratio(0.25)
        0.25
    """
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise PruneError(f"{what} must be a number in [0, 1], got {ratio!r}") from None
    if not (0.0 <= r <= 1.0):  # also rejects NaN
        raise PruneError(f"{what} must lie in [0, 1], got {ratio!r}")
    return r


def check_scores(scores, what: str = "scores") -> np.ndarray:
    """Return ``scores`` as a finite 1-D float64 array or raise :class:`PruneError`.

    Example:
        >>> check_scores([1, 2]).dtype
        dtype('float64')
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise PruneError(f"{what} must be 1-D (one value per unit), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise PruneError(f"{what} contain NaN or infinite values")
    return s


def num_pruned(n_units: int, ratio: float) -> int:
    """How many of ``n_units`` a pruning ``ratio`` removes: ``floor(ratio * n_units)``.

    Example:
        >>> num_pruned(10, 0.5), num_pruned(10, 0.3), num_pruned(7, 0.5), num_pruned(3, 1.0)
        (5, 3, 3, 3)
    """
    r = check_ratio(ratio)
    if n_units < 0:
        raise PruneError(f"n_units must be >= 0, got {n_units}")
    return min(int(n_units), int(math.floor(r * n_units + 1e-9)))


def select(scores, ratio: float) -> np.ndarray:
    """Keep-mask over units: prune the ``num_pruned(len(scores), ratio)`` lowest-scoring units.

    Ties are broken by index (the lower index is pruned first).

    Example:
        >>> select([3.0, 1.0, 2.0, 1.0], 0.5)
        array([ True, False,  True, False])
        >>> int(select(np.arange(10.0), 0.5).sum())
        5
    """
    s = check_scores(scores)
    k = num_pruned(s.size, ratio)
    keep = np.ones(s.size, dtype=bool)
    if k:
        keep[np.argsort(s, kind="stable")[:k]] = False
    return keep


def _normalise(s: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return s
    if how == "l2":
        d = float(np.linalg.norm(s))
    elif how == "max":
        d = float(np.max(np.abs(s))) if s.size else 0.0
    elif how == "mean":
        d = float(np.mean(np.abs(s))) if s.size else 0.0
    else:
        raise PruneError(f"unknown normalisation {how!r}; use 'l2', 'max', 'mean' or 'none'")
    return s / d if d > 0 else s


def select_global(scores: Mapping[str, np.ndarray], ratio: float, *, normalize: str = "l2",
                  min_keep: int = 1) -> dict[str, np.ndarray]:
    """Keep-masks for several layers, pruning the lowest ``ratio`` share of *all* units together.

    Scores are first normalised per layer (``"l2"``: divided by the layer's L2 norm,
    as in Molchanov et al.'s Taylor pruning; ``"max"``, ``"mean"`` or ``"none"``), so
    layers with larger raw scores do not keep everything. The ratio counts units
    (``num_pruned(total_units, ratio)``), not weights. Each layer keeps at least
    ``min_keep`` units (capped at its size); the pruned count is still exact whenever
    the caps allow it.

    Example:
        >>> keep = select_global({"a": np.array([1.0, 2, 3, 4]), "b": np.array([10.0, 20])}, 0.5)
        >>> {k: v.tolist() for k, v in keep.items()}
        {'a': [False, False, True, True], 'b': [False, True]}
    """
    if min_keep < 0:
        raise PruneError(f"min_keep must be >= 0, got {min_keep}")
    names = list(scores)
    arrs = [check_scores(scores[n], f"scores of layer {n!r}") for n in names]
    normed = [_normalise(a, normalize) for a in arrs]
    sizes = np.array([a.size for a in arrs], dtype=np.int64)
    total = int(sizes.sum())
    k = num_pruned(total, ratio)
    out = {n: np.ones(a.size, dtype=bool) for n, a in zip(names, arrs)}
    if k == 0 or total == 0:
        return out
    flat = np.concatenate(normed)
    layer = np.repeat(np.arange(len(names)), sizes)
    unit = np.concatenate([np.arange(s) for s in sizes])
    # Sort by (score, layer, unit): lexsort's last key is the primary one.
    order = np.lexsort((unit, layer, flat))
    # Rank of each candidate within its own layer, in the global order.
    lay_sorted = layer[order]
    by_layer = np.argsort(lay_sorted, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(total, dtype=np.int64)
    rank[by_layer] = np.arange(total) - np.repeat(starts, sizes)
    cap = np.maximum(sizes - min_keep, 0)
    eligible = order[rank < cap[lay_sorted]]
    chosen = eligible[:k]
    for i, n in enumerate(names):
        out[n][unit[chosen[layer[chosen] == i]]] = False
    return out


def load_ratios(ratios: Mapping[str, float] | str | Path | float, known: Iterable[str], *,
                default: float | None = None) -> dict[str, float]:
    """Per-layer ratios from a dict, a JSON file ``{layer_name: ratio}``, or one number for all.

    Every name must be in ``known`` (else :class:`PruneError` naming it and the known
    layers); every ratio must lie in [0, 1]. Layers in ``known`` but not in the dict get
    ``default``; with ``default=None`` they are left out of the result.

    Example:
        >>> load_ratios({"conv1": 0.5}, ["conv1", "conv2"], default=0.0)
        {'conv1': 0.5, 'conv2': 0.0}
        >>> load_ratios(0.25, ["a", "b"])
        {'a': 0.25, 'b': 0.25}
    """
    known = list(known)
    if isinstance(ratios, (int, float)) and not isinstance(ratios, bool):
        r = check_ratio(ratios)
        return {n: r for n in known}
    if isinstance(ratios, (str, Path)):
        path = Path(ratios)
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise PruneError(f"cannot read ratio file {str(path)!r}: {e}") from None
        except json.JSONDecodeError as e:
            raise PruneError(f"ratio file {str(path)!r} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise PruneError(f"ratio file {str(path)!r} must hold a JSON object {{layer_name: ratio}}")
        ratios = data
    known_set = set(known)
    unknown = [n for n in ratios if n not in known_set]
    if unknown:
        raise PruneError(f"unknown layer name(s) {unknown} in ratios; known layers: {known}")
    out: dict[str, float] = {}
    for n in known:
        if n in ratios:
            out[n] = check_ratio(ratios[n], f"ratio of layer {n!r}")
        elif default is not None:
            out[n] = check_ratio(default, "default ratio")
    return out
