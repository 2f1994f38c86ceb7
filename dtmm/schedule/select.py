"""Which units a strategy removes: the one selection rule the loss models and the pruning share.

Given importance scores (higher = more important) per filter and per filterlet of every
prunable layer:

* a group with ratio ``beta`` loses its ``num_pruned(C, beta)`` channels of lowest
  *group score*, the sum of the channel's filter scores over the group's producers
  (so a channel tied across a residual add is judged by all its filters);
* a layer with ratio ``alpha`` keeps, among the filterlets of its surviving filters,
  the best one of each filter and then the best of the rest, ``kept`` in all
  (:meth:`dtmm.schedule.space.Space.kept_filterlets`); among equal scores the lower
  index is pruned first, as in :func:`dtmm.prune.select.select`.

Example:
    >>> import numpy as np
    >>> s = np.array([[5., 1., 2.], [0., 0., 9.]])
    >>> keep_filterlets(s, np.array([True, True]), 2).astype(int).tolist()
    [[1, 0, 0], [0, 0, 1]]
    >>> keep_filterlets(s, np.array([True, True]), 4).astype(int).tolist()
    [[1, 1, 1], [0, 0, 1]]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.prune.select import num_pruned
from dtmm.schedule.space import ScheduleError, Space

__all__ = ["UnitScores", "group_order", "removed_channels", "keep_filterlets", "strategy_masks"]


@dataclass(frozen=True)
class UnitScores:
    """Scores per prunable layer: ``filters[name]`` (C_out,), ``filterlets[name]``
    (C_out, positions) (conv: KH*KW in row-major order; fc: runs of 16 inputs)."""

    filters: dict[str, np.ndarray]
    filterlets: dict[str, np.ndarray]
    name: str = "l2"


def group_order(space: Space, scores: UnitScores) -> dict[int, np.ndarray]:
    """Per free group, its channels from least to most important (stable by index)."""
    out = {}
    for g in space.groups:
        if g.pinned is not None:
            continue
        s = np.zeros(g.channels)
        for p in g.producers:
            f = np.asarray(scores.filters[p], np.float64)
            if f.shape != (g.channels,):
                raise ScheduleError(f"layer {p!r}: {f.size} filter scores for {g.channels} channels")
            s += f
        out[g.index] = np.argsort(s, kind="stable")
    return out


def removed_channels(space: Space, order: dict[int, np.ndarray], group: int, beta: float) -> np.ndarray:
    """Channel ids group ``group`` loses at ``beta`` (ascending)."""
    g = space.groups[group]
    if g.pinned is not None or beta == 0:
        return np.zeros(0, np.int64)
    k = g.channels - g.kept(beta)
    return np.sort(order[group][:k])


def keep_filterlets(scores: np.ndarray, alive: np.ndarray, kept: int) -> np.ndarray:
    """Filterlet keep-mask (C_out, positions): ``kept`` filterlets of the ``alive`` filters,
    at least one per alive filter, the highest scores first (see the module docstring)."""
    s = np.asarray(scores, np.float64)
    o, k = s.shape
    alive = np.asarray(alive, bool)
    n_alive = int(alive.sum())
    if not n_alive <= kept <= n_alive * k:
        raise ScheduleError(f"cannot keep {kept} filterlets of {n_alive} filters x {k} positions")
    keep = np.zeros((o, k), bool)
    rows = np.flatnonzero(alive)
    # the best filterlet of each alive filter (on ties the higher index: lower ones go first)
    best = k - 1 - np.argmax(s[rows][:, ::-1], axis=1)
    keep[rows, best] = True
    rest = kept - n_alive
    if rest:
        cand = np.flatnonzero((~keep & alive[:, None]).ravel())
        # highest score first; among equal scores the higher index (the lower is pruned first)
        order = np.lexsort((-cand, -s.ravel()[cand]))
        keep.flat[cand[order[:rest]]] = True
    return keep


def strategy_masks(space: Space, strategy, scores: UnitScores):
    """``(filterlet masks {layer: (C_out, positions) bool}, removed {group: channel ids})``
    of a strategy (fwcs and dense layers; filters of removed channels masked out)."""
    order = group_order(space, scores)
    removed = {g.index: removed_channels(space, order, g.index, space.betas[b])
                for g, b in zip(space.groups, strategy.betas)}
    kept_ch = [g.channels - len(removed[g.index]) for g in space.groups]
    masks = {}
    for li, ly in enumerate(space.layers):
        fmt, alpha = space.options(ly)[strategy.options[li]]
        alive = np.ones(ly.c_out, bool)
        alive[removed[ly.out_group]] = False
        fl = np.asarray(scores.filterlets[ly.name], np.float64)
        if fl.shape != (ly.c_out, ly.positions):
            raise ScheduleError(f"layer {ly.name!r}: filterlet scores of shape {fl.shape}, expected "
                                f"({ly.c_out}, {ly.positions})")
        if fmt in ("fwcs",) and alpha > 0:
            kept = space.kept_filterlets(ly, kept_ch[ly.out_group], alpha)
            masks[ly.name] = keep_filterlets(fl, alive, kept)
        elif fmt in ("dense", "fwcs"):
            masks[ly.name] = np.repeat(alive[:, None], ly.positions, axis=1)
        else:
            raise ScheduleError(f"layer {ly.name!r}: format {fmt!r} has no selection rule yet")
    return masks, removed
