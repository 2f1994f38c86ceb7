"""Joint filter (beta) + filterlet (alpha) pruning, as in the DTMM prototype, and dead filters.

For one layer with strategy ``(beta, alpha)``:

1. remove the ``num_pruned(O, beta)`` lowest-scoring whole filters (filter scores);
2. among the filterlets of the surviving filters, remove the
   ``num_pruned(n_surviving_filterlets, alpha)`` lowest-scoring ones (filterlet scores).

So ``alpha`` is relative to the survivors: any ``(beta, alpha)`` in ``[0, 1]^2`` is valid
and the layer's filterlet sparsity is ``beta' + (1 - beta') * alpha'`` with the rounded
shares ``beta' = num_pruned(O, beta) / O`` etc. A filter whose filterlets are all gone
after step 2 is *dead* just like one removed in step 1: :func:`dead_filters` lists both,
and the graph stage removes those output channels (folding their constant output --
bias and activation of zero -- into the consumer).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from dtmm.prune.granularity import FILTER, FILTERLET, Granularity, get_granularity
from dtmm.prune.layout import PruneError
from dtmm.prune.select import check_scores, select

__all__ = ["joint_mask", "joint_masks", "dead_filters"]


def dead_filters(mask: np.ndarray) -> np.ndarray:
    """Output channels (axis 0) of a keep-mask that keep no weight at all, ascending.

    Works for OHWI, OIHW and (O, I) masks alike.

    Example:
        >>> m = np.ones((3, 3, 3, 2), bool); m[1] = False
        >>> dead_filters(m).tolist()
        [1]
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim < 1 or m.shape[0] == 0:
        raise PruneError(f"mask must have an output-channel axis, got shape {m.shape}")
    return np.flatnonzero(~m.reshape(m.shape[0], -1).any(axis=1))


def joint_mask(filter_scores, filterlet_scores, shape: Sequence[int], beta: float, alpha: float, *,
               fine: str | Granularity = FILTERLET) -> np.ndarray:
    """Keep-mask of ``shape`` (OHWI / OI) from joint filter + filterlet pruning.

    ``filter_scores`` has one value per output channel, ``filterlet_scores`` one per unit
    of ``fine`` (filterlets by default; any granularity whose units lie within one
    filter works, e.g. ``"element"``). See the module docstring for the semantics.

    Example:
        >>> fs = np.array([1.0, 5.0, 3.0])                  # filter 0 is weakest
        >>> fl = np.tile([0.0, 1.0, 2.0, 3.0], 3)           # 3 filters x (2x2) filterlets
        >>> m = joint_mask(fs, fl, (3, 2, 2, 4), beta=1/3, alpha=0.5)
        >>> m[..., 0].reshape(3, 4).astype(int).tolist()
        [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    """
    g = get_granularity(fine)
    shape = tuple(int(d) for d in shape)
    fs = check_scores(filter_scores, "filter scores")
    fl = check_scores(filterlet_scores, f"{g.name} scores")
    if fs.size != shape[0]:
        raise PruneError(f"expected {shape[0]} filter scores for shape {shape}, got {fs.size}")
    ids = g.unit_ids(shape)
    n = g.num_units(shape)
    if fl.size != n:
        raise PruneError(f"expected {n} {g.name} scores for shape {shape}, got {fl.size}")
    owner = np.full(n, -1, dtype=np.int64)
    fids = FILTER.unit_ids(shape).ravel()
    owner[ids.ravel()] = fids
    if np.any(owner[ids.ravel()] != fids):
        raise PruneError(f"granularity {g.name!r} has units spanning several filters; joint pruning needs "
                         "units inside one filter")
    keep_f = select(fs, beta)
    cand = np.flatnonzero(keep_f[owner])
    keep_u = np.zeros(n, dtype=bool)
    keep_u[cand] = select(fl[cand], alpha)
    return keep_u[ids]


def joint_masks(filter_scores: Mapping[str, np.ndarray], filterlet_scores: Mapping[str, np.ndarray],
                shapes: Mapping[str, Sequence[int]], strategy: Mapping[str, tuple[float, float]], *,
                fine: str | Granularity = FILTERLET) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`joint_mask` for every layer in ``strategy`` (``{layer: (beta, alpha)}``).

    Returns ``(masks, dead)``: OHWI / OI keep-masks and, per layer, the ascending array
    of dead output channels (:func:`dead_filters`). Unknown layer names raise
    :class:`PruneError`.

    Example:
        >>> masks, dead = joint_masks({"c": np.array([1.0, 2.0])}, {"c": np.arange(2.0)},
        ...                           {"c": (2, 1, 1, 3)}, {"c": (0.5, 0.0)})
        >>> dead["c"].tolist()
        [0]
    """
    missing = [n for n in strategy if n not in shapes or n not in filter_scores or n not in filterlet_scores]
    if missing:
        raise PruneError(f"strategy names layer(s) {missing} without shapes or scores; known: {list(shapes)}")
    masks, dead = {}, {}
    for name, ba in strategy.items():
        try:
            beta, alpha = ba
        except (TypeError, ValueError):
            raise PruneError(f"strategy of layer {name!r} must be (beta, alpha), got {ba!r}") from None
        masks[name] = joint_mask(filter_scores[name], filterlet_scores[name], shapes[name], beta, alpha, fine=fine)
        dead[name] = dead_filters(masks[name])
    return masks, dead
