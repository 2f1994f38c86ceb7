"""A pruning plan: the solved strategy as a self-describing JSON document, and the solve itself.

:func:`solve` turns a :class:`~dtmm.schedule.costs.CostModel` and a
:class:`~dtmm.schedule.problem.Problem` into a :class:`Plan`, after checking that each
budget can be reached at all (:func:`reachable`; an infeasible budget is refused
before any search, with the smallest flash / SRAM this model can reach and the layers
that hold most of it). :meth:`Plan.to_json` / :func:`load_plan` write and read it
(``dtmm plan --out plan.json``, ``dtmm prune --plan plan.json``); a plan file is
validated field by field when read, like any file a user may bring.

Per layer a plan has ``name``, ``format``, ``alpha``, ``beta`` (its output group's),
``kept_filterlets``, ``c_in`` / ``c_out`` after pruning, ``bytes`` (the const bytes of
the layer by category), ``predicted_instructions`` and ``delta_loss``; ``predicted``
has ``flash_bytes`` (c), ``const_bytes`` (b), ``tflite_bytes`` (a, an estimate),
``ram_bytes`` (arena + static data, as the QEMU backends measure it), ``sram_bytes``
(``ram_bytes`` + the reserved stack: what the SRAM budget limits), ``arena_bytes``,
``instructions`` and
``delta_loss``; ``budgets`` what was asked.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from dtmm.schedule.costs import CostModel, Costs, Strategy
from dtmm.schedule.problem import Budgets, Problem, violations
from dtmm.schedule.space import ScheduleError

__all__ = ["Plan", "solve", "reachable", "check_reachable", "load_plan", "format_plan", "SOLVERS", "PLAN_FORMAT"]

SOLVERS = ("anneal", "exact")
PLAN_FORMAT = "dtmm-plan"


@dataclass
class Plan:
    """A solved pruning plan (see the module docstring); ``strategy`` indexes ``space``."""

    target: str
    objective: str
    solver: str
    loss_model: str
    importance: str
    budgets: Budgets
    layers: list[dict]
    groups: list[dict]
    predicted: dict
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    strategy: Strategy
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format": PLAN_FORMAT, "version": 1, "target": self.target,
                "objective": self.objective, "solver": self.solver, "loss_model": self.loss_model,
                "importance": self.importance, "budgets": self.budgets.to_json(),
                "predicted": self.predicted, "layers": self.layers, "groups": self.groups,
                "grids": {"alpha": list(self.alphas), "beta": list(self.betas)},
                "strategy": {"betas": list(self.strategy.betas), "options": list(self.strategy.options)},
                "meta": self.meta}


def _costs_json(c: Costs, unit: str) -> dict:
    return {"flash_bytes": int(c.flash_bytes), "const_bytes": int(c.const_bytes),
            "tflite_bytes": int(c.tflite_bytes), "tflite_bytes_note": "estimate",
            "ram_bytes": int(c.ram_bytes), "sram_bytes": int(c.sram_bytes),
            "stack_bytes": int(c.sram_bytes - c.ram_bytes), "arena_bytes": int(c.arena_bytes),
            "instructions": int(round(c.instructions)), "instructions_unit": unit,
            "delta_loss": round(float(c.delta_loss), 6), "bytes": c.breakdown.as_dict()}


def build_plan(cm: CostModel, problem: Problem, s: Strategy, c: Costs, *, solver: str,
               meta: dict | None = None) -> Plan:
    """The :class:`Plan` of strategy ``s`` (costs ``c``) of ``cm``."""
    sp = cm.space
    lcs = cm.layer_costs(s)
    layers = []
    for li, (ly, lc) in enumerate(zip(sp.layers, lcs)):
        g = sp.groups[ly.out_group]
        beta = sp.betas[s.betas[ly.out_group]] if g.pinned is None else 0.0
        dl = 0.0
        if cm.loss is not None:            # its filterlets' share + its share of its group's filters
            dl = cm.loss.layer_delta(li, s)
            if g.pinned is None:
                dl += float(cm.loss.groups[g.index][s.betas[g.index]]) / max(len(g.producers), 1)
        layers.append({"name": ly.name, "kind": ly.kind, "format": lc.format, "alpha": lc.alpha,
                       "beta": beta, "kept_filterlets": int(lc.kept) if lc.format == "fwcs" else None,
                       "kept_units": int(lc.kept), "c_in": int(lc.c_in), "c_out": int(lc.c_out),
                       "c_out_dense": ly.c_out, "bytes": lc.bytes.as_dict(),
                       "scratch_bytes": int(lc.scratch),
                       "predicted_instructions": int(round(lc.instructions)),
                       "delta_loss": round(float(dl), 6), "group": ly.out_group})
    groups = []
    for g, b in zip(sp.groups, s.betas):
        dl = float(cm.loss.groups[g.index][b]) if cm.loss is not None else 0.0
        groups.append({"index": g.index, "channels": g.channels, "beta": sp.betas[b],
                       "kept": g.kept(sp.betas[b]) if g.pinned is None else g.channels,
                       "producers": list(g.producers), "pinned": g.pinned,
                       "delta_loss": round(dl, 6)})
    unit = cm.latency.unit
    return Plan(cm.target, problem.objective, solver,
                getattr(cm.loss, "name", "none"), getattr(cm.loss, "importance", "l2"),
                problem.budgets, layers, groups, _costs_json(c, unit), sp.alphas, sp.betas, s,
                dict(meta or {}))


def reachable(cm: CostModel) -> dict:
    """The smallest flash and SRAM this model can reach in the space, and what binds them."""
    from dtmm.schedule.anneal import extreme_strategy

    out = {}
    for what in ("flash", "ram"):
        s = extreme_strategy(cm, target=what)
        c = cm.evaluate(s, with_loss=False)
        lcs = cm.layer_costs(s)
        if what == "flash":
            top = sorted(zip(cm.space.layers, lcs), key=lambda t: -t[1].bytes.total)[:3]
            binds = [f"{ly.name} ({lc.bytes.total:,} B)" for ly, lc in top]
            least = cm.evaluate(extreme_strategy(cm, target="model_bytes"), with_loss=False)
            out["flash"] = {"bytes": c.flash_bytes, "const_bytes": c.const_bytes,
                            "code_bytes": c.flash_bytes - c.const_bytes, "binding": binds,
                            "least_const_bytes": least.const_bytes}
        else:
            out["ram"] = {"bytes": c.sram_bytes, "arena_bytes": c.arena_bytes,
                          "binding": _ram_binding(cm, s, lcs)}
    return out


def _ram_binding(cm: CostModel, s: Strategy, lcs) -> list[str]:
    sp = cm.space
    kept = cm.kept_channels(s)
    best, where = -1, 0
    for t in range(cm.n_ops):
        tot = sum(sp.tensor_size(n, kept) for n, f, l in zip(cm._buf_tensors, cm._buf_first,
                                                            cm._buf_last) if f <= t <= l)
        tot += sum(lc.scratch for ly, lc in zip(sp.layers, lcs) if ly.op_index == t)
        if tot > best:
            best, where = tot, t
    op = sp.graph.ops[where]
    live = [n for n, f, l in zip(cm._buf_tensors, cm._buf_first, cm._buf_last) if f <= where <= l]
    return [f"op {op.name!r} (position {where}) with live tensors " + ", ".join(live)]


def check_reachable(cm: CostModel, b: Budgets) -> None:
    """Raise ScheduleError if the flash, model-data or SRAM budget is below what the model
    can reach."""
    if b.flash is None and b.ram is None and b.model_bytes is None:
        return
    r = reachable(cm)
    msgs = []
    if b.flash is not None and r["flash"]["bytes"] > b.flash:
        f = r["flash"]
        msgs.append(f"flash budget {b.flash:,} B is below the smallest firmware this model can "
                    f"reach, {f['bytes']:,} B: {f['code_bytes']:,} B of code (kernels, start-up, "
                    f"libc) and {f['const_bytes']:,} B of model data with every layer pruned as far "
                    f"as the grids go (largest layers then: {', '.join(f['binding'])})")
    if b.model_bytes is not None and r["flash"]["least_const_bytes"] > b.model_bytes:
        f = r["flash"]
        msgs.append(f"model-data budget {b.model_bytes:,} B is below the smallest this model can "
                    f"reach, {f['least_const_bytes']:,} B with every layer pruned as far as the grids go "
                    f"(largest layers then: {', '.join(f['binding'])})")
    if b.ram is not None and r["ram"]["bytes"] > b.ram:
        msgs.append(f"SRAM budget {b.ram:,} B is below the smallest this model can reach, "
                    f"{r['ram']['bytes']:,} B ({r['ram']['arena_bytes']:,} B arena + static data "
                    f"+ {cm.stack_bytes:,} B stack; peak at {r['ram']['binding'][0]})")
    if msgs:
        raise ScheduleError("; ".join(msgs))


def solve(cm: CostModel, problem: Problem, *, solver: str = "anneal", seed: int = 0,
          iterations: int = 20000, time_limit: float = 300.0) -> Plan:
    """Solve ``problem`` with ``solver`` (``"anneal"`` or ``"exact"``); raises ScheduleError
    when the budgets cannot be met (naming what is reachable)."""
    from dtmm.schedule.anneal import anneal
    from dtmm.schedule.exact import solve_exact

    if solver not in SOLVERS:
        raise ScheduleError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    check_reachable(cm, problem.budgets)
    asked = problem
    if problem.budgets.flash is not None:       # aim under the flash budget by the estimate's error
        from dataclasses import replace

        from dtmm.schedule.flash import FLASH_MARGIN

        problem = replace(problem, budgets=replace(problem.budgets,
                                                   flash=int(problem.budgets.flash * FLASH_MARGIN)))
    if solver == "anneal":
        r = anneal(cm, problem, iterations=iterations, seed=seed)
        meta = {"seconds": round(r.seconds, 3), "evaluations": r.evaluations, "seed": seed}
        s, c, ok = r.strategy, r.costs, r.feasible
    else:
        r = solve_exact(cm, problem, time_limit=time_limit)
        meta = {"seconds": round(r.seconds, 3), "variables": r.variables, "rounds": r.rounds,
                "status": r.status}
        s, c, ok = r.strategy, r.costs, r.feasible
    if not ok or s is None:
        over = violations(c, problem.budgets) if c is not None else {}
        detail = (", ".join(f"{k} over by {100 * v:.1f}%" for k, v in over.items())
                  if over else "no feasible point found")
        raise ScheduleError(f"no strategy meets all the budgets together ({detail}); each budget "
                            f"alone is reachable: relax one of them")
    return build_plan(cm, asked, s, c, solver=solver, meta=meta)


# ------------------------------------------------------------------------- reading

_LAYER_KEYS = {"name": str, "format": str, "alpha": (int, float), "beta": (int, float)}


def load_plan(path) -> dict:
    """Read and validate a plan file (untrusted input); returns its JSON object."""
    p = Path(path)
    if p.is_dir():
        raise ScheduleError(f"{p}: is a directory, expected a plan file written by dtmm plan")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ScheduleError(f"{p}: cannot read the plan ({e.strerror})") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScheduleError(f"{p}: not a JSON plan file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != PLAN_FORMAT:
        raise ScheduleError(f"{p}: not a dtmm plan (expected \"format\": \"{PLAN_FORMAT}\")")
    layers = obj.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ScheduleError(f"{p}: field 'layers' must be a non-empty list")
    for i, ly in enumerate(layers):
        if not isinstance(ly, dict):
            raise ScheduleError(f"{p}: layers[{i}] must be an object")
        for k, typ in _LAYER_KEYS.items():
            v = ly.get(k)
            if not isinstance(v, typ) or isinstance(v, bool):
                raise ScheduleError(f"{p}: layers[{i}].{k} missing or of the wrong type ({v!r})")
        for k in ("alpha", "beta"):
            if not (0 <= ly[k] < 1) or not math.isfinite(ly[k]):
                raise ScheduleError(f"{p}: layers[{i}] ({ly['name']!r}).{k} = {ly[k]} must be in [0, 1)")
        if ly["format"] not in ("dense", "fwcs", "csr", "pattern"):
            raise ScheduleError(f"{p}: layers[{i}] ({ly['name']!r}).format = {ly['format']!r} is "
                                f"not one of dense, fwcs, csr, pattern")
    names = [ly["name"] for ly in layers]
    if len(set(names)) != len(names):
        raise ScheduleError(f"{p}: a layer is listed twice")
    return obj


def format_plan(plan: dict) -> str:
    """A readable table of a plan's JSON object."""
    rows = [("layer", "format", "alpha", "beta", "C_in", "C_out", "filterlets", "bytes",
             "instructions", "dL")]
    for ly in plan["layers"]:
        rows.append((ly["name"], ly["format"], f"{ly['alpha']:.2f}", f"{ly['beta']:.3f}",
                     str(ly.get("c_in", "")), f"{ly.get('c_out', '')}/{ly.get('c_out_dense', '')}",
                     "" if ly.get("kept_filterlets") is None else f"{ly['kept_filterlets']:,}",
                     f"{ly['bytes']['total']:,}", f"{ly['predicted_instructions']:,}",
                     f"{ly['delta_loss']:.4f}"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    out.insert(1, "  ".join("-" * x for x in w))
    pr, bud = plan["predicted"], plan["budgets"]

    def lim(v):
        return "no limit" if v is None else f"{v:,}"
    out += ["", f"target {plan['target']}, objective {plan['objective']}, solver {plan['solver']}, "
                f"loss model {plan['loss_model']}",
            f"flash      {pr['flash_bytes']:>12,} B   budget {lim(bud['flash_bytes'])}"
            f"   (.tflite about {pr['tflite_bytes']:,} B)",
            f"model data {pr['const_bytes']:>12,} B   budget {lim(bud.get('model_bytes'))}"
            f"   (the constant data of the generated model, in the flash above)",
            f"SRAM       {pr['sram_bytes']:>12,} B   budget {lim(bud['sram_bytes'])}"
            f"   (arena {pr['arena_bytes']:,} B + static data = {pr['ram_bytes']:,} B; "
            f"+ {pr['stack_bytes']:,} B stack)",
            f"{pr['instructions_unit']:<10} {pr['instructions']:>12,}     budget "
            f"{lim(bud['max_instructions'])}",
            f"loss change {pr['delta_loss']:>11.4f}     budget {lim(bud['max_loss_increase'])}"]
    return "\n".join(out)
