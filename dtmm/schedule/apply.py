"""Applying a plan: the torch masks, the pruned IR graph and its compressed int8 form.

:func:`plan_strategy` maps a plan's per-layer ``format`` / ``alpha`` / ``beta`` onto a
:class:`~dtmm.schedule.space.Space` of the same model (names and grids must match);
:func:`mask_model` zeroes the units the plan removes (the selection rule of
:mod:`dtmm.schedule.select`, so the same units the loss model scored), re-estimates
BatchNorm; :func:`pruned_graphs` captures, removes the dead channels (the plan's
betas, across residual adds), quantizes and stores every FWCS layer with exactly the
kept filterlets (a fully connected one as a ``CompressedFullyConnected`` of its kept runs). The result has exactly the channel counts and kept filterlets of the
plan, so its const bytes and arena are the plan's predictions (tested).
"""
from __future__ import annotations

import copy

import numpy as np

from dtmm.schedule.costs import Strategy
from dtmm.schedule.select import UnitScores, strategy_masks
from dtmm.schedule.space import ScheduleError, Space, fc_runs

__all__ = ["plan_strategy", "mask_model", "pruned_graphs", "kept_units_mask"]


def kept_units_mask(fmt: str, weight) -> np.ndarray:
    """The storage mask of a pruned layer's float weight: exactly its kept units (the non-zero
    ones; int8 rounding may later zero a kept weight, which stays stored). FWCS conv: a
    filterlet mask ``(C_out, KH, KW)``; FWCS fully connected: the kept runs of 16 inputs
    ``(C_out, runs)``; CSR / pattern: the element mask.

    >>> kept_units_mask("fwcs", np.r_[np.zeros(16), np.ones(4)].reshape(1, 20)).tolist()
    [[False, True]]
    """
    nz = np.asarray(weight) != 0
    if fmt == "fwcs" and nz.ndim == 2:           # the kept runs of 16 of the (pruned) inputs
        size, npos, _ = fc_runs(nz.shape[1])
        pad = np.zeros((nz.shape[0], npos * size), bool)
        pad[:, :nz.shape[1]] = nz
        return pad.reshape(nz.shape[0], npos, size).any(axis=2)
    if fmt == "fwcs":
        return nz.any(axis=3)
    return nz


def plan_strategy(space: Space, plan: dict) -> Strategy:
    """The :class:`Strategy` of ``space`` that a plan's JSON object describes."""
    by_name = {ly["name"]: ly for ly in plan["layers"]}
    names = [ly.name for ly in space.layers]
    if set(by_name) != set(names):
        extra = sorted(set(by_name) - set(names))
        missing = sorted(set(names) - set(by_name))
        raise ScheduleError("the plan does not match this model: "
                            + (f"unknown layer(s) {', '.join(extra)}" if extra else "")
                            + ("; " if extra and missing else "")
                            + (f"missing layer(s) {', '.join(missing)}" if missing else ""))
    opts = []
    betas = [0] * len(space.groups)
    seen: dict[int, float] = {}
    for ly in space.layers:
        p = by_name[ly.name]
        choice = (p["format"], round(float(p["alpha"]), 6))
        options = [(f, round(a, 6)) for f, a in space.options(ly)]
        if choice not in options:
            raise ScheduleError(f"layer {ly.name!r}: format {p['format']!r} at alpha {p['alpha']} is "
                                f"not an option of this model's space")
        opts.append(options.index(choice))
        g = space.groups[ly.out_group]
        beta = round(float(p["beta"]), 6)
        if g.pinned is not None:
            if beta != 0:
                raise ScheduleError(f"layer {ly.name!r}: beta {beta} on channels that cannot be "
                                    f"removed ({g.pinned})")
            continue
        if ly.out_group in seen and seen[ly.out_group] != beta:
            raise ScheduleError(f"layer {ly.name!r}: beta {beta} differs from {seen[ly.out_group]} of "
                                f"the layers its channels are tied to")
        seen[ly.out_group] = beta
        grid = [round(b, 6) for b in space.betas]
        if beta not in grid:
            raise ScheduleError(f"layer {ly.name!r}: beta {beta} is not on the grid {grid}")
        betas[ly.out_group] = grid.index(beta)
    return Strategy(tuple(betas), tuple(opts))


def mask_model(net, space: Space, strategy: Strategy, scores: UnitScores, x_train: np.ndarray, *,
               bn_batches: int = 8, batch_size: int = 64):
    """A copy of ``net`` with the strategy's units zeroed (masks baked in) and BatchNorm
    statistics re-estimated; returns ``(model, filterlet masks, removed channels)``."""
    from dtmm.prune.batchnorm import recalibrate_batchnorm
    from dtmm.prune import apply_masks, remove_masks
    from dtmm.schedule.loss import torch_masks

    m = copy.deepcopy(net).eval()
    fl, removed = strategy_masks(space, strategy, scores)
    apply_masks(m, torch_masks(space, fl, removed, m))
    remove_masks(m)
    recalibrate_batchnorm(m, x_train, batch_size, bn_batches)
    return m, fl, removed


def pruned_graphs(masked_net, input_shape, space: Space, strategy: Strategy, calib_nhwc: np.ndarray,
                  *, calibration: str = "minmax", library=None):
    """``(float graph, int8 graph, compressed int8 graph, dead-channel report)`` of a masked
    model; the channel counts are checked against the strategy."""
    from dtmm.graph.capture import capture
    from dtmm.graph.compressed import compress_graph
    from dtmm.prune import remove_dead_channels
    from dtmm.quant.quantize import quantize_graph

    g0 = capture(masked_net, tuple(input_shape))
    g, report = remove_dead_channels(g0)
    kept = [grp.kept(space.betas[b]) if grp.pinned is None else grp.channels
            for grp, b in zip(space.groups, strategy.betas)]
    formats, masks, libraries = {}, {}, {}
    for li, ly in enumerate(space.layers):
        op = g.op(ly.name)
        want = kept[ly.out_group]
        if int(op.weight.shape[0]) != want:
            raise ScheduleError(f"layer {ly.name!r}: {op.weight.shape[0]} output channels after "
                                f"pruning, the plan has {want} (a filter the plan keeps is all zero?)")
        fmt, _ = space.options(ly)[strategy.options[li]]
        if fmt != "dense":
            formats[ly.name] = fmt
            masks[ly.name] = kept_units_mask(fmt, op.weight)
            if fmt == "pattern":
                if library is None:
                    raise ScheduleError(f"layer {ly.name!r}: a pattern layer needs its library")
                libraries[ly.name] = library
    if len(calib_nhwc) == 0:
        raise ScheduleError("no calibration images")
    qg = quantize_graph(g, [calib_nhwc[i:i + 64] for i in range(0, len(calib_nhwc), 64)],
                        method=calibration)
    cg = compress_graph(qg, formats, masks, libraries=libraries or None) if formats else qg
    return g, qg, cg, report
