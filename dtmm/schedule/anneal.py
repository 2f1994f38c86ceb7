"""Simulated annealing over strategies (the paper's solver), seeded and reproducible.

A move changes one decision: a free group's ``beta`` by one grid step, or a layer's
option to a neighbour (the next ``alpha`` of the same format, or the same ``alpha`` in
another allowed format). Constraint violations are penalised (relative to each
budget, with a weight that grows as the temperature falls), and the best *feasible*
strategy seen is returned. Several restarts from different points (nothing pruned,
everything pruned as far as the grids go, random) make it robust on small budgets.

Example:
    >>> import torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> from dtmm.schedule.space import build_space
    >>> from dtmm.schedule.costs import CostModel
    >>> from dtmm.schedule.latency import default_calibration
    >>> from dtmm.schedule.problem import Budgets, Problem
    >>> net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3),
    ...                     nn.ReLU(), nn.Flatten(), nn.Linear(32 * 6 * 6, 10))
    >>> cm = CostModel(build_space(capture(net, (1, 8, 8))), default_calibration("cortex-m55"))
    >>> dense = cm.evaluate(cm.dense_strategy())
    >>> r = anneal(cm, Problem("loss", Budgets(flash=dense.flash_bytes // 2)), iterations=3000, seed=1)
    >>> r.costs.flash_bytes <= dense.flash_bytes // 2
    True
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dtmm.schedule.costs import CostModel, Costs, Strategy
from dtmm.schedule.problem import Problem, violations
from dtmm.schedule.space import ScheduleError

__all__ = ["AnnealResult", "anneal", "extreme_strategy"]


@dataclass(frozen=True)
class AnnealResult:
    strategy: Strategy
    costs: Costs
    feasible: bool
    evaluations: int
    seconds: float


def extreme_strategy(cm: CostModel, *, target: str = "flash") -> Strategy:
    """Everything pruned as far as the grids go: the largest beta for every free group and,
    per layer, the option with the fewest const bytes (``target="flash"`` or
    ``"model_bytes"``) or the least scratch (``"ram"``) at that beta. For flash, every
    subset of the formats in use is tried (a format's kernel code can outweigh what it
    saves), so the result is the smallest firmware the space holds; for model bytes,
    every format is allowed (the smallest constant data)."""
    import itertools

    sp = cm.space
    betas = tuple(len(sp.betas) - 1 if g.pinned is None else 0 for g in sp.groups)
    s0 = Strategy(betas, cm.dense_strategy().options)
    kept = cm.kept_channels(s0)
    per_layer = []
    for li, ly in enumerate(sp.layers):
        cin = sp.tensor_size(ly.in_tensor, kept) if ly.kind == "fc" else sp.tensor_channels(ly.in_tensor, kept)
        per_layer.append([cm.layer_cost(li, cin, kept[ly.out_group], oi)
                          for oi in range(len(cm.options[li]))])
    if target == "ram":
        return Strategy(betas, tuple(min(range(len(c)), key=lambda i: (c[i].scratch, c[i].bytes.total))
                                     for c in per_layer))
    fmts = sorted({f for o in cm.options for f, _ in o} - {"dense"})
    best = None
    for k in (range(len(fmts) + 1) if target == "flash" else [len(fmts)]):
        for sub in itertools.combinations(fmts, k):
            allowed = {"dense", *sub}
            opts = []
            for li, costs in enumerate(per_layer):
                ok = [i for i, (f, _) in enumerate(cm.options[li]) if f in allowed] or [0]
                opts.append(min(ok, key=lambda i: (costs[i].bytes.total, costs[i].scratch)))
            s = Strategy(betas, tuple(opts))
            fb = cm.evaluate(s, with_loss=False).flash_bytes
            if best is None or fb < best[0]:
                best = (fb, s)
    return best[1]


def _neighbours(cm: CostModel):
    """Per layer, per option: the options one step away."""
    out = []
    for opts in cm.options:
        nb = []
        for oi, (f, a) in enumerate(opts):
            cand = set()
            same = [j for j, (f2, _) in enumerate(opts) if f2 == f]
            k = same.index(oi)
            if k > 0:
                cand.add(same[k - 1])
            if k + 1 < len(same):
                cand.add(same[k + 1])
            for f2 in {f2 for f2, _ in opts if f2 != f}:
                js = [j for j, (ff, _) in enumerate(opts) if ff == f2]
                cand.add(min(js, key=lambda j: abs(opts[j][1] - a)))
            nb.append(sorted(cand))
        out.append(nb)
    return out


def anneal(cm: CostModel, problem: Problem, *, iterations: int = 20000, seed: int = 0,
           restarts: int = 3, t_start: float = 0.3, t_end: float = 1e-3,
           start: Strategy | None = None) -> AnnealResult:
    """Minimise ``problem``'s objective over strategies of ``cm.space`` (see module doc).

    ``iterations`` are split over ``restarts`` runs; the temperature falls geometrically
    from ``t_start`` to ``t_end`` (relative to the objective's scale) in each run.
    """
    if iterations < 1 or restarts < 1:
        raise ScheduleError("anneal needs iterations >= 1 and restarts >= 1")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    sp = cm.space
    free = [g.index for g in sp.groups if g.pinned is None]
    nbeta = len(sp.betas)
    movable_layers = [i for i, o in enumerate(cm.options) if len(o) > 1]
    decisions = [("g", g) for g in free if nbeta > 1] + [("l", i) for i in movable_layers]
    neigh = _neighbours(cm)
    b = problem.budgets
    dense = cm.dense_strategy()
    dense_c = cm.evaluate(dense)
    scale = (max(dense_c.instructions, 1.0) if problem.objective == "instructions"
             else max(b.max_loss or 0.0, 0.05))
    evals = 1

    # ties (e.g. many plans with no loss change) go to the fewer instructions
    tie = 1e-6 / max(dense_c.instructions, 1.0) if problem.objective == "loss" else 0.0

    def energy(c: Costs, w: float) -> float:
        v = violations(c, b)
        return problem.value(c) / scale + tie * c.instructions + w * sum(v.values())

    best: tuple[tuple, Strategy, Costs] | None = None
    if not violations(dense_c, b):
        best = (problem.key(dense_c), dense, dense_c)
    starts = [start or dense, extreme_strategy(cm, target="flash"), None]
    per_run = max(1, iterations // restarts)
    for r in range(restarts):
        s = starts[r] if r < len(starts) and starts[r] is not None else Strategy(
            tuple(int(rng.integers(nbeta)) if g.pinned is None else 0 for g in sp.groups),
            tuple(int(rng.integers(len(o))) for o in cm.options))
        c = cm.evaluate(s)
        evals += 1
        cur_e = energy(c, 10.0)
        if not decisions:
            break
        for it in range(per_run):
            frac = it / max(per_run - 1, 1)
            temp = t_start * (t_end / t_start) ** frac
            w = 10.0 + 990.0 * frac
            kind, idx = decisions[int(rng.integers(len(decisions)))]
            betas, opts = list(s.betas), list(s.options)
            if kind == "g":
                step = 1 if betas[idx] == 0 else (-1 if betas[idx] == nbeta - 1 else int(rng.choice((-1, 1))))
                betas[idx] += step
            else:
                nb = neigh[idx][opts[idx]]
                opts[idx] = int(nb[int(rng.integers(len(nb)))])
            s2 = Strategy(tuple(betas), tuple(opts))
            c2 = cm.evaluate(s2)
            evals += 1
            e2 = energy(c2, w)
            cur_e = energy(c, w)
            if e2 <= cur_e or rng.random() < math.exp(-(e2 - cur_e) / temp):
                s, c = s2, c2
            if not violations(c, b) and (best is None or problem.key(c) < best[0]):
                best = (problem.key(c), s, c)
    if best is None:
        # nothing feasible: return the least-violating point seen last
        return AnnealResult(s, c, False, evals, time.perf_counter() - t0)
    return AnnealResult(best[1], best[2], True, evals, time.perf_counter() - t0)
