"""Dead filters leave the graph: remove constant output channels from a float IR graph.

When every filterlet of a filter is pruned, its output channel no longer depends on
the input: it is the constant ``act(bias[c])`` at every pixel (float IR, BN already
folded into the bias). :func:`remove_dead_channels` drops such channels from the
graph and folds their constant value into the consumers' biases, so the MCU neither
computes nor stores them.

How it works (three passes on a deep copy; the input graph is never touched):

1. **Constants.** Seeds are the dead channels: rows of Conv2D / FullyConnected (and
   columns of DepthwiseConv2D) weights that are all exactly zero, or the channels
   listed in ``dead``. Their value is ``act(bias)`` with the op's fused activation.
   Values then flow forward: max / avg pool and channel-preserving Reshape keep a
   constant; a depthwise output ``k = c * mult + j`` of a constant input ``c`` is
   ``act(v_c * sum(w[..., k]) + b[k])``; an Add output is constant when *both*
   inputs are, ``act(v1 + v2)``; Concat maps input channels to output channels.
   (Conv2D / FC outputs are constant only when seeded.)
2. **Agreement.** A channel of a tensor can only leave if every op touching it
   agrees. Ops that pass a channel through *tie* channels together (pool in/out,
   depthwise in ``c`` / outs ``c*mult+j``, Add in0/in1/out, Concat in/out, Reshape
   in/out, flattened map -> flat vector); a tied group is removed all together or
   not at all, and only if every member is constant and none is *pinned*: graph
   inputs and outputs, Softmax, ops this pass does not know, flattened maps read by
   anything but a FullyConnected. Conv2D / FullyConnected consumers do not tie:
   they absorb the constant into their bias. So a channel dead on only one side of
   an Add stays (its all-zero filter keeps producing the constant; FWCS stores an
   empty filter for free), and a dead final-classifier row stays. A tensor never
   loses all its channels: if it would, its lowest removable group is kept.
3. **Rewrite.** Producers drop weight rows and bias entries (Conv2D / FC rows,
   depthwise columns); Conv2D consumers get ``bias[o] += v_c * sum_{kh,kw}
   w[o, kh, kw, c]`` and lose input column ``c``; FullyConnected consumers of a
   flattened ``(H, W, C)`` map (NHWC order, column ``p * C + c``) fold and drop the
   ``H * W`` columns of channel ``c``, those of a pooled vector column ``c``. Tensor
   shapes and Reshape targets are updated and the result is validated.

**Exactness at borders.** Folding a constant into a bias is exact wherever the
consumer's window lies inside the feature map. Where a zero-padded Conv2D (or
depthwise) window overlaps the padding, the true contribution of the constant
channel is smaller (padding contributes 0, not ``v_c``), so the folded bias
over-counts there: the result is *border-approximate*. A fold is reported exact when
the consumer has no padding, or the folded weights are all zero, or every folded
constant is exactly 0 (then padding and the channel agree), and every folded
constant was itself exact (a constant that went through a padded depthwise is
only interior-constant). FullyConnected folds and pools (max pads with -inf, avg
excludes padding) are exact. Fine-tuning after removal recovers the border error,
which only matters for constants that are far from 0.

Example:
    >>> import torch, torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> from dtmm.graph.float_exec import run_float
    >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    >>> with torch.no_grad():
    ...     m[0].weight[1] = 0                          # filter 1 is dead
    >>> g = capture(m, (3, 6, 6))
    >>> g2, rep = remove_dead_channels(g)
    >>> rep.removed, g2.tensors[g2.ops[0].output].shape
    ({'0': [1]}, (4, 4, 3))
    >>> rep.folded["2"].exact
    True
    >>> x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    >>> bool(np.allclose(run_float(g, x), run_float(g2, x), atol=1e-5))
    True
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from dtmm.errors import GraphError
from dtmm.graph.ir import (Activation, Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, Op, Reshape, Softmax)

__all__ = ["remove_dead_channels", "DeadChannelReport", "Fold"]

_Node = tuple[str, int]          # (tensor name, channel id in the original graph)


# ------------------------------------------------------------------------- report


@dataclass
class Fold:
    """One consumer op that absorbed removed constant channels of its input.

    ``channels`` are ids in the original graph's numbering of tensor ``tensor``
    (produced by op ``producer``). ``into_bias`` is True for Conv2D / FullyConnected
    (the constant was folded into the bias) and False for a DepthwiseConv2D, whose
    output channel became a constant and left with its input. ``exact`` is False when
    the result is right only at interior pixels (see the module docstring).
    """

    consumer: str
    producer: str
    tensor: str
    channels: list[int]
    exact: bool
    into_bias: bool = True


@dataclass
class DeadChannelReport:
    """What :func:`remove_dead_channels` did; all channel ids are original ids.

    * ``removed``: producer op name -> output channels removed from its output tensor
      (Conv2D / FC / depthwise filters and the pass-through ops they went through:
      pools, Add, Concat, Reshape).
    * ``values``: producer op name -> {channel: constant value} of the removed channels.
    * ``folded``: consumer op name -> :class:`Fold`.
    * ``kept``: producer op name -> {channel: reason} for constant channels that stay.
      Reasons start with one of ``"add other side alive"``, ``"graph output"``,
      ``"graph input"``, ``"softmax"``, ``"depthwise input alive"``, ``"unsupported"``,
      ``"flattened map not read by FullyConnected"``, ``"tensor would be empty"``,
      ``"tied to live channel"``.
    """

    removed: dict[str, list[int]] = field(default_factory=dict)
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    folded: dict[str, Fold] = field(default_factory=dict)
    kept: dict[str, dict[int, str]] = field(default_factory=dict)

    @property
    def exact_consumers(self) -> list[str]:
        """Consumers whose result is unchanged at every pixel."""
        return [k for k, f in self.folded.items() if f.exact]

    @property
    def approximate_consumers(self) -> list[str]:
        """Consumers whose result is unchanged only away from zero-padded borders."""
        return [k for k, f in self.folded.items() if not f.exact]

    @property
    def is_exact(self) -> bool:
        """True when the new graph computes the same outputs as the old one at every pixel.

        (A border-approximate consumer also perturbs everything downstream of it, e.g. a
        global average pool, even where the downstream folds themselves are exact.)
        """
        return not self.approximate_consumers

    @property
    def kept_by_add(self) -> dict[str, list[int]]:
        """Constant channels kept because the other input of an Add is not constant there."""
        out: dict[str, list[int]] = {}
        for op, chans in self.kept.items():
            ids = sorted(c for c, r in chans.items() if r.startswith("add other side alive"))
            if ids:
                out[op] = ids
        return out

    @property
    def num_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())


# ------------------------------------------------------------------------ helpers


def _act(v: float, act: Activation) -> float:
    if act == Activation.RELU:
        return max(v, 0.0)
    if act == Activation.RELU6:
        return min(max(v, 0.0), 6.0)
    return v


def _out_channels(op: Op) -> int:
    if isinstance(op, DepthwiseConv2D):
        return int(op.weight.shape[3])
    return int(op.weight.shape[0])


def _zero_channels(op: Op) -> np.ndarray:
    """Output channels of a weighted op whose weights are all exactly zero."""
    w = np.asarray(op.weight)
    if isinstance(op, DepthwiseConv2D):
        flat = w.reshape(-1, w.shape[3]).T
    else:
        flat = w.reshape(w.shape[0], -1)
    return np.flatnonzero(~np.any(flat != 0, axis=1))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[_Node, _Node] = {}

    def find(self, a: _Node) -> _Node:
        p = self.parent.setdefault(a, a)
        if p != a:
            p = self.parent[a] = self.find(p)
        return p

    def union(self, a: _Node, b: _Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


class _Analysis:
    """State shared by the three passes (see the module docstring)."""

    def __init__(self, g: Graph, dead: Mapping[str, Iterable[int]] | None):
        self.g = g
        self.producer: dict[str, Op] = {op.output: op for op in g.ops}
        self.consumers: dict[str, list[Op]] = {t: [] for t in g.tensors}
        for op in g.ops:
            for t in dict.fromkeys(op.inputs):
                self.consumers[t].append(op)
        self.layout: dict[str, tuple[int, int]] = {}       # tensor -> (positions P, channels C)
        self.const: dict[str, dict[int, float]] = {t: {} for t in g.tensors}
        self.exact: dict[str, dict[int, bool]] = {t: {} for t in g.tensors}
        self.uf = _UnionFind()
        self.pins: dict[_Node, str] = {}
        self.ties: list[tuple[str, str, list[_Node], list[_Node]]] = []  # (kind, op, inputs, outputs)
        self.opaque: set[str] = set()                      # Reshape ops whose channel mapping is unknown
        self.seeds = self._seeds(dead)

    # -- pass 0: layouts and seeds
    def _shape_layout(self, t: str) -> tuple[int, int]:
        s = self.g.tensors[t].shape
        if len(s) == 3:
            return int(s[0]) * int(s[1]), int(s[2])
        if len(s) == 1:
            return 1, int(s[0])
        raise GraphError(f"tensor {t!r}: shape {s} is neither (H, W, C) nor (F,)")

    def layouts(self) -> None:
        for t in self.g.inputs:
            self.layout[t] = self._shape_layout(t)
        for op in self.g.ops:
            out = op.output
            if isinstance(op, Reshape):
                src = op.inputs[0]
                p, c = self.layout[src]
                ins, outs = self.g.tensors[src].shape, tuple(self.g.tensors[out].shape)
                if outs == tuple(ins):
                    self.layout[out] = (p, c)
                elif len(ins) == 3 and outs == (p * c,):
                    self.layout[out] = (p, c)                       # NHWC flatten: column p*C + c
                elif len(ins) == 1 and p == 1 and len(outs) == 3 and outs[:2] == (1, 1) and outs[2] == c:
                    self.layout[out] = (1, c)
                else:
                    self.layout[out] = self._shape_layout(out)
                    self.opaque.add(op.name)
                    self._pin_all(src, f"unsupported reshape {op.name!r}")
                    self._pin_all(out, f"unsupported reshape {op.name!r}")
            else:
                self.layout[out] = self._shape_layout(out)

    def _seeds(self, dead: Mapping[str, Iterable[int]] | None) -> dict[str, list[int]]:
        weighted = (Conv2D, FullyConnected, DepthwiseConv2D)
        seeds: dict[str, list[int]] = {}
        if dead is None:
            for op in self.g.ops:
                if isinstance(op, weighted):
                    z = _zero_channels(op)
                    if z.size:
                        seeds[op.name] = z.tolist()
            return seeds
        names = {op.name: op for op in self.g.ops}
        for name, chans in dead.items():
            op = names.get(name)
            if op is None:
                raise GraphError(f"dead channels given for op {name!r}, which is not in the graph")
            if not isinstance(op, weighted):
                raise GraphError(f"op {name!r}: dead channels given for a {op.kind} op "
                                 "(only conv2d, depthwise_conv2d and fully_connected have filters)")
            ids = sorted({int(c) for c in np.asarray(list(chans), dtype=np.int64).ravel()})
            n = _out_channels(op)
            bad = [c for c in ids if not 0 <= c < n]
            if bad:
                raise GraphError(f"op {name!r}: dead channel ids {bad} out of range [0, {n})")
            live = sorted(set(ids) - set(_zero_channels(op).tolist()))
            if live:
                raise GraphError(f"op {name!r}: channels {live} are listed as dead but have nonzero "
                                 "weights (apply the pruning masks before capture)")
            if ids:
                seeds[name] = ids
        return seeds

    # -- pass 1: constant values
    def constants(self) -> None:
        for op in self.g.ops:
            out = op.output
            cst, ex = self.const[out], self.exact[out]
            if isinstance(op, (Conv2D, FullyConnected)):
                for c in self.seeds.get(op.name, []):
                    cst[c], ex[c] = _act(float(op.bias[c]), op.activation), True
            elif isinstance(op, DepthwiseConv2D):
                src = op.inputs[0]
                mult = int(op.depth_multiplier)
                zero = set(self.seeds.get(op.name, []))
                padded = any(op.pads)
                for k in range(_out_channels(op)):
                    c = k // mult
                    if k in zero:
                        cst[k], ex[k] = _act(float(op.bias[k]), op.activation), True
                    elif c in self.const[src]:
                        v, ws = self.const[src][c], float(np.sum(op.weight[..., k], dtype=np.float64))
                        cst[k] = _act(v * ws + float(op.bias[k]), op.activation)
                        ex[k] = self.exact[src][c] and (not padded or v == 0.0
                                                        or not np.any(op.weight[..., k]))
            elif isinstance(op, (MaxPool2D, AvgPool2D, Reshape)):
                src = op.inputs[0]
                if op.name not in self.opaque:
                    cst.update(self.const[src])
                    ex.update(self.exact[src])
            elif isinstance(op, Add):
                a, b = op.inputs
                for c in set(self.const[a]) & set(self.const[b]):
                    cst[c] = _act(self.const[a][c] + self.const[b][c], op.activation)
                    ex[c] = self.exact[a][c] and self.exact[b][c]
            elif isinstance(op, Concat) and self._concat_ok(op):
                off = 0
                for t in op.inputs:
                    for c, v in self.const[t].items():
                        cst[off + c], ex[off + c] = v, self.exact[t][c]
                    off += self.layout[t][1]

    # -- pass 2: ties and pins
    def _pin_all(self, t: str, reason: str) -> None:
        n = self.layout[t][1] if t in self.layout else self._shape_layout(t)[1]
        for c in range(n):
            self.pins.setdefault((t, c), reason)

    def _concat_ok(self, op: Concat) -> bool:
        nd = len(self.g.tensors[op.output].shape)
        return op.axis in (-1, nd - 1) and all(self.layout[t][0] == 1 or len(self.g.tensors[t].shape) == 3
                                               for t in op.inputs)

    def _tie(self, kind: str, op: Op, ins: list[_Node], outs: list[_Node]) -> None:
        nodes = ins + outs
        for n in nodes[1:]:
            self.uf.union(nodes[0], n)
        self.ties.append((kind, op.name, ins, outs))

    def ties_and_pins(self) -> None:
        g = self.g
        for t in g.inputs:
            self._pin_all(t, "graph input")
        for t in g.outputs:
            self._pin_all(t, "graph output")
        for op in g.ops:
            flat_in = [t for t in op.inputs if len(g.tensors[t].shape) == 1 and self.layout[t][0] > 1]
            if flat_in and not isinstance(op, (FullyConnected, Reshape)):
                for t in flat_in:
                    self._pin_all(t, "flattened map not read by FullyConnected "
                                     f"(read by {op.kind} {op.name!r})")
            if isinstance(op, (Conv2D, FullyConnected)):
                continue                                   # consumers fold, producers are free
            out = op.output
            if isinstance(op, DepthwiseConv2D):
                mult = int(op.depth_multiplier)
                for c in range(self.layout[op.inputs[0]][1]):
                    self._tie("depthwise", op, [(op.inputs[0], c)],
                              [(out, c * mult + j) for j in range(mult)])
            elif isinstance(op, (MaxPool2D, AvgPool2D, Reshape)):
                if op.name not in self.opaque:
                    for c in range(self.layout[out][1]):
                        self._tie(op.kind, op, [(op.inputs[0], c)], [(out, c)])
            elif isinstance(op, Add):
                a, b = op.inputs
                for c in range(self.layout[out][1]):
                    self._tie("add", op, [(a, c), (b, c)], [(out, c)])
            elif isinstance(op, Concat) and self._concat_ok(op):
                off = 0
                for t in op.inputs:
                    for c in range(self.layout[t][1]):
                        self._tie("concat", op, [(t, c)], [(out, off + c)])
                    off += self.layout[t][1]
            else:
                reason = "softmax" if isinstance(op, Softmax) else f"unsupported {op.kind} {op.name!r}"
                for t in list(op.inputs) + [out]:
                    self._pin_all(t, reason)

    # -- decision
    def decide(self) -> tuple[dict[str, list[int]], dict[_Node, str]]:
        groups: dict[_Node, list[_Node]] = {}
        for t, consts in self.const.items():
            for c in consts:
                self.uf.find((t, c))
        for n in list(self.uf.parent):
            groups.setdefault(self.uf.find(n), []).append(n)
        removable = {r for r, ms in groups.items()
                     if all(c in self.const[t] for t, c in ms) and not any(m in self.pins for m in ms)}
        reasons: dict[_Node, str] = {}
        changed = True
        while changed:                                      # never empty a tensor
            changed = False
            for t in self.g.tensors:
                n = self.layout[t][1]
                if n and all(self.uf.find((t, c)) in removable for c in range(n)):
                    root = self.uf.find((t, 0))
                    removable.discard(root)
                    reasons[root] = f"tensor would be empty ({t!r})"
                    changed = True
        removed: dict[str, list[int]] = {}
        for r in removable:
            for t, c in groups[r]:
                removed.setdefault(t, []).append(c)
        kept: dict[_Node, str] = {}
        for r, ms in groups.items():
            if r in removable:
                continue
            reason = reasons.get(r) or self._why(ms)
            for m in ms:
                if m[1] in self.const[m[0]]:
                    kept[m] = reason
        order = list(self.g.inputs) + [op.output for op in self.g.ops]
        return {t: sorted(removed[t]) for t in order if t in removed}, kept

    def _why(self, members: list[_Node]) -> str:
        pins = sorted({self.pins[m] for m in members if m in self.pins})
        if pins:
            return "; ".join(pins)
        ms = set(members)
        for kind, name, ins, outs in self.ties:
            if ins[0] not in ms:
                continue
            live = [n for n in ins if n[1] not in self.const[n[0]]]
            if kind == "add" and live and len(live) < len(ins):
                return f"add other side alive ({name!r}: input {live[0][0]!r} channel {live[0][1]})"
            if kind == "depthwise" and live:
                return f"depthwise input alive ({name!r}: input {live[0][0]!r} channel {live[0][1]})"
        live = sorted(n for n in members if n[1] not in self.const[n[0]])
        return f"tied to live channel {live[0][1]} of {live[0][0]!r}" if live else "tied to live channel"


# -------------------------------------------------------------------------- rewrite


def _fold_conv(op: Conv2D, cols: list[int], vals: np.ndarray) -> bool:
    """Fold constant input channels into a Conv2D's bias, drop them; True if their weights were 0."""
    w = op.weight.astype(np.float64)[..., cols]            # (O, KH, KW, k)
    op.bias = (op.bias.astype(np.float64) + w.sum(axis=(1, 2)) @ vals).astype(np.float32)
    op.weight = np.ascontiguousarray(np.delete(op.weight, cols, axis=3))
    return not np.any(w)


def remove_dead_channels(graph: Graph, dead: Mapping[str, Iterable[int]] | None = None
                         ) -> tuple[Graph, DeadChannelReport]:
    """Remove dead (constant) output channels from a float IR graph; fold them into consumers.

    ``dead`` maps op names (Conv2D / FullyConnected / DepthwiseConv2D; the module paths
    capture uses, as in :func:`dtmm.prune.joint_masks`) to dead output channel ids; their
    weights must be all zero. With ``dead=None`` every all-zero filter is dead. Returns
    ``(new_graph, report)``; ``graph`` is not modified. See the module docstring for the
    rules (what may leave, border approximation) and :class:`DeadChannelReport`.

    Conv2D / FC outputs that become constant only because all their live inputs were
    folded away are not detected in the same call; calling again with ``dead=None``
    removes those too.

    Example:
        >>> import torch, torch.nn as nn
        >>> from dtmm.graph.capture import capture
        >>> m = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                   nn.Flatten(), nn.Linear(3, 2))
        >>> with torch.no_grad():
        ...     m[0].weight[2] = 0; m[0].bias[2] = 0.5      # constant relu(0.5) = 0.5
        >>> g2, rep = remove_dead_channels(capture(m, (1, 4, 4)))
        >>> rep.removed
        {'0': [2], '2': [2], '3': [2]}
        >>> rep.values['0'], g2.ops[-1].weight.shape
        ({2: 0.5}, (2, 2))
    """
    for op in graph.weighted_ops():
        if op.weight.dtype != np.float32 or op.quant is not None:
            raise GraphError(f"op {op.name!r}: remove_dead_channels needs a float graph "
                             f"(weights are {op.weight.dtype}); run it before quantize_graph")
    q = next((t.name for t in graph.tensors.values() if t.qparams is not None), None)
    if q is not None:
        raise GraphError(f"tensor {q!r} has qparams: remove_dead_channels needs a float graph")
    graph.validate()
    g = copy.deepcopy(graph)
    a = _Analysis(g, dead)
    a.layouts()
    a.constants()
    a.ties_and_pins()
    removed, kept = a.decide()

    report = DeadChannelReport()
    for t, chans in removed.items():
        p = a.producer.get(t)
        key = p.name if p is not None else t
        report.removed[key] = chans
        report.values[key] = {c: a.const[t][c] for c in chans}
    for (t, c), why in sorted(kept.items()):
        p = a.producer.get(t)
        report.kept.setdefault(p.name if p is not None else t, {})[c] = why

    # rewrite weights (old layouts are needed for folding, so shapes are updated last)
    for op in g.ops:
        if not isinstance(op, (Conv2D, FullyConnected, DepthwiseConv2D)):
            continue
        src = op.inputs[0]
        rin = removed.get(src, [])
        rout = removed.get(op.output, [])
        if rin:
            vals = np.array([a.const[src][c] for c in rin], dtype=np.float64)
            exact_in = all(a.exact[src][c] for c in rin)
            prod = a.producer.get(src)
            pname = prod.name if prod is not None else src
            if isinstance(op, Conv2D):
                wz = _fold_conv(op, rin, vals)
                exact = exact_in and (not any(op.pads) or wz or not np.any(vals))
                report.folded[op.name] = Fold(op.name, pname, src, list(rin), bool(exact))
            elif isinstance(op, FullyConnected):
                P, C = a.layout[src]
                cols = [p * C + c for p in range(P) for c in rin]
                colvals = np.array([a.const[src][c] for p in range(P) for c in rin], dtype=np.float64)
                w = op.weight.astype(np.float64)
                op.bias = (op.bias.astype(np.float64) + w[:, cols] @ colvals).astype(np.float32)
                op.weight = np.ascontiguousarray(np.delete(op.weight, cols, axis=1))
                report.folded[op.name] = Fold(op.name, pname, src, list(rin), bool(exact_in))
            else:                                        # depthwise: tied, channels leave together
                mult = int(op.depth_multiplier)
                ks = [c * mult + j for c in rin for j in range(mult)]
                exact = all(a.exact[op.output][k] for k in ks)
                report.folded[op.name] = Fold(op.name, pname, src, list(rin), bool(exact), into_bias=False)
        if rout:
            if isinstance(op, DepthwiseConv2D):
                op.weight = np.ascontiguousarray(np.delete(op.weight, rout, axis=3))
            else:
                op.weight = np.ascontiguousarray(np.delete(op.weight, rout, axis=0))
            op.bias = np.ascontiguousarray(np.delete(op.bias, rout))

    for t, chans in removed.items():
        spec = g.tensors[t]
        P, C = a.layout[t]
        n = C - len(chans)
        spec.shape = (tuple(spec.shape[:2]) + (n,)) if len(spec.shape) == 3 else (P * n,)
    for op in g.ops:
        if isinstance(op, Reshape) and op.output in removed:
            op.shape = tuple(g.tensors[op.output].shape)
    try:
        g.validate()
    except GraphError as e:                                # a bug here, but say where
        raise GraphError(f"remove_dead_channels produced an invalid graph: {e}") from e
    return g, report
