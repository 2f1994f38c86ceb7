"""The exact solver: the strategy problem as a mixed-integer linear program (HiGHS).

Variables (all binary):

* ``x[g, b]``: free group ``g`` takes ``beta`` index ``b`` (one per group);
* ``v[i, bi, bo, o]``: layer ``i`` with input-group index ``bi``, output-group index
  ``bo`` and option ``o``. The beta coupling between neighbouring layers is linearised
  by linking constraints: summing ``v`` over everything but ``bo`` gives ``x[g_out, bo]``
  and over everything but ``bi`` gives ``x[g_in, bi]`` (a fixed group has one index), so
  a layer's cost, a function of both betas, is a linear function of ``v``;
* ``u[k]``: kernel source ``k`` is linked (>= every ``v`` whose format uses it), for the
  flash model's kernel code.

Every cost is then linear: const bytes, flash code, instructions and loss as
coefficients of ``v`` and ``x``; SRAM as one constraint per op position, the aligned
sizes of the buffers live there (each a function of one group's beta) plus that op's
scratch (``v``). SRAM is a maximum over live sets, so this is the liveness lower
bound of the arena; the greedy placement can exceed it, so the solution's real arena
is computed and, if it is larger than the budget, the bound is tightened by the
difference and the problem solved again (equal on every zoo model, whose arena is
its lower bound).

Supported graphs: every op other than a prunable layer depends on at most one free
group (true of chains and residual networks; a concat of several free groups is refused,
use the annealer).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from dtmm.codegen.arena import ALIGN
from dtmm.codegen.plan import KERNEL_SOURCES
from dtmm.formats.footprint import OP_ARRAYS
from dtmm.schedule.costs import CostModel, Costs, Strategy
from dtmm.schedule.latency import OpShape
from dtmm.schedule.problem import Problem, violations
from dtmm.schedule.flash import layer_op_kind
from dtmm.schedule.space import ScheduleError

__all__ = ["ExactResult", "solve_exact"]


@dataclass(frozen=True)
class ExactResult:
    strategy: Strategy | None
    costs: Costs | None
    feasible: bool
    status: str
    seconds: float
    variables: int
    rounds: int


def _align(n: int) -> int:
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


class _Builder:
    def __init__(self):
        self.n = 0
        self.cols: list[tuple] = []

    def var(self, tag) -> int:
        self.cols.append(tag)
        self.n += 1
        return self.n - 1


def _single_group(space, tensor: str) -> tuple[int | None, int]:
    """(free group or None, fixed channel count) of a tensor; refuses several free groups."""
    free = [s for s in space.tensors[tensor].segments if space.groups[s.group].pinned is None]
    fixed = sum(s.factor * s.channels for s in space.tensors[tensor].segments
                if space.groups[s.group].pinned is not None)
    if len(free) > 1:
        raise ScheduleError(f"the exact solver needs every tensor to depend on at most one "
                            f"channel group; {tensor!r} depends on {len(free)} (use --solver anneal)")
    return (free[0].group if free else None), fixed


def solve_exact(cm: CostModel, problem: Problem, *, time_limit: float = 300.0,
                max_rounds: int = 5, mip_rel_gap: float = 0.0) -> ExactResult:
    """Solve ``problem`` exactly over ``cm.space`` (see the module docstring)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    t0 = time.perf_counter()
    sp = cm.space
    nb = len(sp.betas)
    bud = problem.budgets
    B = _Builder()
    free = [g.index for g in sp.groups if g.pinned is None]
    x = {(g, b): B.var(("x", g, b)) for g in free for b in range(nb)}

    def kept_of(g: int | None, b: int) -> int:
        return sp.groups[g].kept(sp.betas[b]) if g is not None else 0

    def tensor_chans(t: str, b: int) -> int:
        g, fixed = _single_group(sp, t)
        if g is None:
            return fixed
        seg = next(s for s in sp.tensors[t].segments if s.group == g)
        return fixed + seg.factor * kept_of(g, b)

    def tensor_bytes(t: str, b: int) -> int:
        return sp.tensors[t].positions * tensor_chans(t, b)

    # per-layer variables and their costs
    terms = {k: {} for k in ("bytes", "ins", "loss", "code", "arrays")}   # var -> coef
    scratch_at: dict[int, dict[int, float]] = {}                           # op position -> {var: bytes}
    link_rows: list[tuple[dict[int, float], float, float]] = []
    v_fmt: dict[int, str] = {}
    loss = cm.loss
    for li, ly in enumerate(sp.layers):
        gin, _ = _single_group(sp, ly.in_tensor)
        gout = ly.out_group if sp.groups[ly.out_group].pinned is None else None
        bis = range(nb) if gin is not None else [0]
        bos = range(nb) if gout is not None else [0]
        same = gin is not None and gin == gout          # a residual conv reading its own group
        cells: dict[tuple[int, int], list[int]] = {}
        for bi in bis:
            cin = tensor_bytes(ly.in_tensor, bi) if ly.kind == "fc" else tensor_chans(ly.in_tensor, bi)
            for bo in ([bi] if same else bos):
                cout = kept_of(gout, bo) if gout is not None else sp.groups[ly.out_group].channels
                for oi in range(len(cm.options[li])):
                    lc = cm.layer_cost(li, cin, cout, oi)
                    v = B.var(("v", li, bi, bo, oi))
                    cells.setdefault((bi, bo), []).append(v)
                    terms["bytes"][v] = lc.bytes.total
                    terms["ins"][v] = lc.instructions
                    kind = layer_op_kind(ly, lc.format)
                    v_fmt[v] = kind
                    if cm.code is not None:
                        terms["code"][v] = cm.code.calls.get(kind, 0.0)
                        terms["arrays"][v] = OP_ARRAYS.get(kind, 0)
                    if loss is not None:
                        row = bo if loss.layers[li].shape[0] > 1 else 0
                        terms["loss"][v] = float(loss.layers[li][row, oi])
                    if lc.scratch:
                        scratch_at.setdefault(ly.op_index, {})[v] = lc.scratch
        # linking: sum over (bi, o) = x[gout, bo]; sum over (bo, o) = x[gin, bi]; or sum = 1
        if same:
            for b in bis:
                row = {v: 1.0 for v in cells[(b, b)]}
                row[x[(gin, b)]] = -1.0
                link_rows.append((row, 0.0, 0.0))
        else:
            if gout is not None:
                for bo in bos:
                    row = {v: 1.0 for bi in bis for v in cells[(bi, bo)]}
                    row[x[(gout, bo)]] = -1.0
                    link_rows.append((row, 0.0, 0.0))
            if gin is not None:
                for bi in bis:
                    row = {v: 1.0 for bo in bos for v in cells[(bi, bo)]}
                    row[x[(gin, bi)]] = -1.0
                    link_rows.append((row, 0.0, 0.0))
        link_rows.append(({v: 1.0 for vs in cells.values() for v in vs}, 1.0, 1.0))
    for g in free:
        link_rows.append(({x[(g, b)]: 1.0 for b in range(nb)}, 1.0, 1.0))

    # other ops: costs per beta of the one group they depend on
    const = {"bytes": 0.0, "ins": 0.0, "code": 0.0, "arrays": 0.0}
    kinds_present: set[str] = set()
    for i, op in cm._others:
        gs = {_single_group(sp, t)[0] for t in list(op.inputs) + [op.output]} - {None}
        if len(gs) > 1:
            raise ScheduleError(f"op {op.name!r} depends on several channel groups (use --solver anneal)")
        g = next(iter(gs)) if gs else None
        kinds_present.add(op.kind)
        if cm.code is not None:
            const["code"] += cm.code.calls.get(op.kind, 0.0)
            const["arrays"] += OP_ARRAYS.get(op.kind, 0)
        for b in (range(nb) if g is not None else [0]):
            chans = (tensor_chans(op.inputs[0], b), tensor_chans(op.output, b))
            bc, n_ins = cm._other_cost(i, op, chans)
            if g is None:
                const["bytes"] += bc.total
                const["ins"] += n_ins
            else:
                var = x[(g, b)]
                terms["bytes"][var] = terms["bytes"].get(var, 0.0) + bc.total
                terms["ins"][var] = terms["ins"].get(var, 0.0) + n_ins
    t_in, t_out = cm._io
    g_io = {_single_group(sp, t)[0] for t in (t_in, t_out)} - {None}
    if g_io:
        raise ScheduleError("the graph input and output must keep all their channels")
    const["ins"] += cm.latency.predict(OpShape("invoke", c_in=tensor_bytes(t_in, 0),
                                               c_out=tensor_bytes(t_out, 0)))
    if loss is not None:
        for g in free:
            for b in range(nb):
                terms["loss"][x[(g, b)]] = terms["loss"].get(x[(g, b)], 0.0) + float(loss.groups[g][b])

    # kernel indicator variables (flash code)
    u = {}
    if cm.code is not None:
        fixed_kernels = {KERNEL_SOURCES[k] for k in kinds_present if k in KERNEL_SOURCES}
        for kf in sorted(set(KERNEL_SOURCES[k] for k in v_fmt.values()) - fixed_kernels):
            u[kf] = B.var(("u", kf))
            terms["code"][u[kf]] = cm.code.kernels.get(kf, 0.0)
        const["code"] += cm.code.base + sum(cm.code.kernels.get(k, 0.0) for k in fixed_kernels)
        for v, kind in v_fmt.items():
            kf = KERNEL_SOURCES[kind]
            if kf in u:
                link_rows.append(({v: 1.0, u[kf]: -1.0}, -np.inf, 0.0))

    # live buffers per op position (the liveness bound of the arena)
    live_rows = []
    n_pos = cm.n_ops
    for t in range(n_pos):
        row: dict[int, float] = {}
        fixed = 0.0
        for name, f, l in zip(cm._buf_tensors, cm._buf_first, cm._buf_last):
            if not f <= t <= l:
                continue
            g, _ = _single_group(sp, name)
            if g is None:
                fixed += _align(tensor_bytes(name, 0))
            else:
                for b in range(nb):
                    row[x[(g, b)]] = row.get(x[(g, b)], 0.0) + _align(tensor_bytes(name, b))
        for v, s in scratch_at.get(t, {}).items():
            row[v] = row.get(v, 0.0) + _align(s)
        live_rows.append((row, fixed))

    static_ram = cm.code.static_ram if cm.code is not None else 0
    objective = "ins" if problem.objective == "instructions" else "loss"
    c_obj = np.zeros(B.n)
    for v, c in terms[objective].items():
        c_obj[v] = c
    if problem.objective == "instructions":
        c_obj /= max(1.0, float(np.abs(c_obj).max()))
    else:                   # ties (plans with the same loss change) go to the fewer instructions
        ins = np.zeros(B.n)
        for v, c in terms["ins"].items():
            ins[v] = c
        c_obj += 1e-7 * ins / max(1.0, float(ins.sum()))

    def flash_row():
        row = dict(terms["bytes"])
        for v, c in terms["code"].items():
            row[v] = row.get(v, 0.0) + c
        if cm.code is not None:
            for v, n in terms["arrays"].items():
                row[v] = row.get(v, 0.0) + cm.code.per_array * n
        return row, const["bytes"] + const["code"] + (cm.code.per_array * const["arrays"]
                                                      if cm.code is not None else 0.0)

    slack = 0.0
    loss_slack = 0.0
    rounds = 0
    status = ""
    while True:
        rounds += 1
        rows = list(link_rows)
        if bud.flash is not None:
            r, c0 = flash_row()
            rows.append((r, -np.inf, bud.flash - c0 + 0.49))
        if bud.model_bytes is not None:
            rows.append((dict(terms["bytes"]), -np.inf, bud.model_bytes - const["bytes"] + 0.49))
        if bud.ram is not None:
            cap = bud.ram - static_ram - cm.stack_bytes - slack
            for r, fixed in live_rows:
                rows.append((r, -np.inf, cap - fixed))
        if bud.max_instructions is not None:
            rows.append((dict(terms["ins"]), -np.inf, bud.max_instructions - const["ins"]))
        if bud.max_loss is not None and loss is not None:
            # scaled to O(1): HiGHS's absolute feasibility tolerance (about 1e-6) is large
            # against Taylor loss budgets of 1e-3, and a plan over budget by that much is
            # refused by the exact check below
            sc = 1.0 / max(bud.max_loss, 1e-9)
            rows.append(({v: c * sc for v, c in terms["loss"].items()}, -np.inf,
                         1.0 - 1e-6 - loss_slack * sc))
        ri, ci, vals, lo, hi = [], [], [], [], []
        for k, (r, a, b) in enumerate(rows):
            for v, c in r.items():
                ri.append(k)
                ci.append(v)
                vals.append(c)
            lo.append(a)
            hi.append(b)
        A = coo_matrix((vals, (ri, ci)), shape=(len(rows), B.n)).tocsr()
        res = milp(c_obj, constraints=LinearConstraint(A, lo, hi), integrality=np.ones(B.n),
                   bounds=Bounds(0, 1), options={"time_limit": time_limit, "mip_rel_gap": mip_rel_gap,
                                                 "disp": False})
        status = str(res.message)
        if res.x is None:
            return ExactResult(None, None, False, status, time.perf_counter() - t0, B.n, rounds)
        betas = [0] * len(sp.groups)
        for (g, b), var in x.items():
            if res.x[var] > 0.5:
                betas[g] = b
        opts = [0] * len(sp.layers)
        for var, tag in enumerate(B.cols):
            if tag[0] == "v" and res.x[var] > 0.5:
                opts[tag[1]] = tag[4]
        s = Strategy(tuple(betas), tuple(opts))
        c = cm.evaluate(s)
        over = violations(c, bud)
        if "ram" in over and rounds < max_rounds and bud.ram is not None:
            slack += c.sram_bytes - bud.ram
            continue
        if "loss" in over and rounds < max_rounds and bud.max_loss is not None:
            loss_slack += c.delta_loss - bud.max_loss        # a rounding overshoot: tighten
            continue
        return ExactResult(s, c, not over, status, time.perf_counter() - t0, B.n, rounds)
