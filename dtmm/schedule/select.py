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

from dtmm.schedule.space import ScheduleError, Space, fc_runs

__all__ = ["UnitScores", "group_order", "removed_channels", "keep_filterlets", "strategy_masks",
           "layer_mask", "fc_input_keep", "fc_run_scores"]


@dataclass(frozen=True)
class UnitScores:
    """Selection scores per prunable layer (higher = more important).

    ``filters[name]`` (C_out,): ranks whole filters (summed over a group's producers);
    ``filterlets[name]`` (C_out, positions): conv KH*KW positions in row-major order, fc
    runs of 16 inputs; for the baselines, ``elements[name]`` (C_out, KH*KW*C_in) per weight
    in OHWI order (unstructured / CSR), ``kernels[name]`` (C_out, C_in) per 3x3 kernel after
    its pattern and ``patterns[name]`` (C_out, C_in) the kernel's pattern in ``library``
    (PatDNN). A fully connected layer's runs are those of its *pruned* inputs (what the
    FWCS kernel stores), so they are scored from ``fc_inputs[name]`` (O, I), one value per
    weight in the IR's column order: a run scores ``|sum|`` of its values
    (``fc_reduce="abs_sum"``, Taylor's signed ``dL/dw * w``) or their ``sum``
    (``"sum"``: ``|w|`` or ``w**2``).
    """

    filters: dict[str, np.ndarray]
    filterlets: dict[str, np.ndarray]
    name: str = "l2"
    elements: dict[str, np.ndarray] | None = None
    kernels: dict[str, np.ndarray] | None = None
    patterns: dict[str, np.ndarray] | None = None
    library: tuple | None = None
    fc_inputs: dict[str, np.ndarray] | None = None
    fc_reduce: str = "sum"


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
    return _fill_best(keep, s, alive, kept - n_alive)


def _fill_best(keep: np.ndarray, s: np.ndarray, alive: np.ndarray, rest: int) -> np.ndarray:
    """Keep ``rest`` more units of the alive rows, the highest scores first; among equal
    scores the higher index (the lower is pruned first)."""
    if rest:
        cand = np.flatnonzero((~keep & alive[:, None]).ravel())
        order = np.lexsort((-cand, -s.ravel()[cand]))
        keep.flat[cand[order[:rest]]] = True
    return keep


def strategy_masks(space: Space, strategy, scores: UnitScores):
    """``(masks, removed)`` of a strategy: per layer the keep-mask of its weights, OHWI
    ``(C_out, KH, KW, C_in)`` for a conv, ``(O, I)`` for a fully connected layer (filters
    of removed channels all False), and per group the removed channel ids.

    Fine units by format: FWCS keeps :func:`keep_filterlets` of the filterlet scores; CSR
    the same rule on the per-weight scores (at least one weight per filter); pattern
    keeps the best kernels (at least one per filter), each with its pattern.
    """
    order = group_order(space, scores)
    removed = {g.index: removed_channels(space, order, g.index, space.betas[b])
               for g, b in zip(space.groups, strategy.betas)}
    kept_ch = [g.channels - len(removed[g.index]) for g in space.groups]
    masks = {}
    for li, ly in enumerate(space.layers):
        fmt, alpha = space.options(ly)[strategy.options[li]]
        alive = np.ones(ly.c_out, bool)
        alive[removed[ly.out_group]] = False
        in_keep = fc_input_keep(space, ly, removed) if ly.kind == "fc" else None
        masks[ly.name] = layer_mask(space, ly, fmt, alpha, alive, kept_ch[ly.out_group], scores,
                                    in_keep=in_keep)
    return masks, removed


def fc_input_keep(space: Space, ly, removed: dict[int, np.ndarray]) -> np.ndarray:
    """(I,) bool: the inputs of fully connected layer ``ly`` (IR column order ``p * C + c``)
    that survive the channel removal ``removed`` (per group, as :func:`strategy_masks`)."""
    ti = space.tensors[ly.in_tensor]
    parts = []
    for sg in ti.segments:
        k = np.ones(sg.channels, bool)
        gone = removed.get(sg.group)
        if gone is not None and len(gone):
            k[np.asarray(gone, np.int64)] = False
        parts.append(np.repeat(k, sg.factor))
    keep_c = np.concatenate(parts) if parts else np.ones(0, bool)
    out = np.tile(keep_c, ti.positions)
    if out.size != ly.c_in:
        raise ScheduleError(f"layer {ly.name!r}: {out.size} inputs from its tensor, weight has {ly.c_in}")
    return out


def fc_run_scores(scores: UnitScores, ly, cols: np.ndarray) -> np.ndarray:
    """(O, runs) scores of the runs of 16 of a fully connected layer's inputs ``cols`` (the
    surviving input columns, ascending), from ``scores.fc_inputs`` (see :class:`UnitScores`)."""
    if scores.fc_inputs is None or ly.name not in scores.fc_inputs:
        raise ScheduleError(f"layer {ly.name!r}: no per-input scores for its FWCS runs")
    el = np.asarray(scores.fc_inputs[ly.name], np.float64)
    if el.shape != (ly.c_out, ly.c_in):
        raise ScheduleError(f"layer {ly.name!r}: input scores of shape {el.shape}, expected "
                            f"{(ly.c_out, ly.c_in)}")
    size, npos, _ = fc_runs(len(cols))
    pad = np.zeros((ly.c_out, npos * size))
    pad[:, :len(cols)] = el[:, cols]
    r = pad.reshape(ly.c_out, npos, size).sum(axis=2)
    return np.abs(r) if scores.fc_reduce == "abs_sum" else r


def _keep_runs(s: np.ndarray, alive: np.ndarray, kept: int, short_tail: bool) -> np.ndarray:
    """:func:`keep_filterlets` for a fully connected layer's runs; where the last run of a
    row is short (16 does not divide the inputs) every alive row keeps it (so the bytes
    follow from counts: :func:`dtmm.schedule.costs.fc_tail_runs`), and the best of the
    full runs fill the rest."""
    if not short_tail:
        return keep_filterlets(s, alive, kept)
    o, k = s.shape
    n_alive = int(alive.sum())
    if not n_alive <= kept <= n_alive * k:
        raise ScheduleError(f"cannot keep {kept} runs of {n_alive} outputs x {k} runs")
    keep = np.zeros((o, k), bool)
    keep[alive, k - 1] = True
    return _fill_best(keep, s, alive, kept - n_alive)


def layer_mask(space: Space, ly, fmt: str, alpha: float, alive: np.ndarray, kept_out: int,
               scores: UnitScores, *, in_keep: np.ndarray | None = None) -> np.ndarray:
    """The keep-mask of one layer (see :func:`strategy_masks`); ``in_keep``: a fully
    connected layer's surviving inputs (:func:`fc_input_keep`; None: all), whose runs of
    16 are its filterlets."""
    from dtmm.schedule.costs import layer_kept_units

    kh, kw = ly.kernel
    full = (ly.c_out, kh, kw, ly.c_in) if ly.kind == "conv" else (ly.c_out, ly.c_in)
    if fmt == "dense" or alpha == 0 and fmt == "fwcs":
        return np.broadcast_to(alive.reshape((-1,) + (1,) * (len(full) - 1)), full).copy()
    if fmt == "fwcs" and ly.kind == "fc":
        cols = np.flatnonzero(np.ones(ly.c_in, bool) if in_keep is None else in_keep)
        size, npos, tail = fc_runs(len(cols))
        kept = layer_kept_units(space, ly, fmt, alpha, len(cols), kept_out)
        keep = _keep_runs(fc_run_scores(scores, ly, cols), alive, kept, npos > 1 and tail != size)
        m = np.zeros(full, bool)
        m[:, cols] = np.repeat(keep, size, axis=1)[:, :len(cols)]
        return m
    if fmt == "fwcs":
        fl = _scores(scores.filterlets, ly.name, (ly.c_out, ly.positions))
        kept = layer_kept_units(space, ly, fmt, alpha, ly.c_in, kept_out)
        keep = keep_filterlets(fl, alive, kept)
        return np.broadcast_to(keep.reshape(ly.c_out, kh, kw, 1), full).copy()
    if fmt == "csr":
        el = _scores(scores.elements, ly.name, (ly.c_out, kh * kw * ly.c_in))
        kept = layer_kept_units(space, ly, fmt, alpha, ly.c_in, kept_out)
        return keep_filterlets(el, alive, kept).reshape(full)
    if fmt == "pattern":
        if scores.library is None:
            raise ScheduleError(f"layer {ly.name!r}: pattern pruning needs a pattern library")
        ks = _scores(scores.kernels, ly.name, (ly.c_out, ly.c_in))
        pid = _scores(scores.patterns, ly.name, (ly.c_out, ly.c_in)).astype(np.int64)
        kept = layer_kept_units(space, ly, fmt, alpha, ly.c_in, kept_out)
        kk = keep_filterlets(ks, alive, kept)                             # kept kernels (O, I)
        lib = np.zeros((len(scores.library), 9), bool)
        for i, pat in enumerate(scores.library):
            lib[i, list(pat)] = True
        pos = lib[pid] & kk[..., None]                                      # (O, I, 9)
        return np.ascontiguousarray(pos.reshape(ly.c_out, ly.c_in, 3, 3).transpose(0, 2, 3, 1))
    raise ScheduleError(f"layer {ly.name!r}: no selection rule for format {fmt!r}")


def _scores(table, name: str, shape) -> np.ndarray:
    if table is None or name not in table:
        raise ScheduleError(f"layer {name!r}: no scores for this method's units")
    a = np.asarray(table[name], np.float64)
    if a.shape != tuple(shape):
        raise ScheduleError(f"layer {name!r}: scores of shape {a.shape}, expected {tuple(shape)}")
    return a
