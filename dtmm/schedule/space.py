"""The decision space of the pruning-strategy scheduler: layers, channel groups, grids.

A *strategy* decides, for every prunable layer (a conv of any kernel and stride, or a
fully connected layer), its storage format and its filterlet ratio ``alpha``, and for
every *channel group* its filter ratio ``beta``:

* ``beta`` removes whole output channels. Channels tied together by the graph (both
  inputs and the output of a residual ``Add``, the input and output of a pool, a
  depthwise conv or a reshape; see :mod:`dtmm.prune.dead`, whose rules this mirrors)
  form one group and are removed together, from every producer of the group, so that
  the channel really leaves the graph; that shrinks the consumers' ``C_in`` and the
  activations in between. Groups touching a graph input or output, a softmax, an op
  dtmm cannot follow channels through, or a flattened map read by anything but a fully
  connected layer are *pinned* (``beta = 0``), with the reason recorded.
* ``alpha`` removes that share of the filterlets left in the surviving filters, never
  the last filterlet of a filter (filters leave only through ``beta``, so the plan's
  channel counts are exact). A 1x1 conv's filterlet is its whole filter, so 1x1 convs
  take ``alpha = 0`` and prune through ``beta`` only.
* The format is per layer: ``"dense"`` (``alpha = 0``) or ``"fwcs"``; the baselines'
  ``"csr"`` and ``"pattern"`` can be allowed by the caller. A layer where FWCS costs
  more than dense (the ``C_in = 1`` stem) simply stays dense when that is cheaper.

Counts (kept channels, kept filterlets) follow :func:`dtmm.prune.select.num_pruned`,
the same rounding the pruning step uses.

Example:
    >>> import torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3),
    ...                     nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    >>> sp = build_space(capture(net, (1, 6, 6)))
    >>> [(l.name, l.kind, l.positions) for l in sp.layers]
    [('0', 'conv', 9), ('2', 'conv', 9), ('5', 'fc', 16)]
    >>> [(g.channels, g.producers, g.pinned is None) for g in sp.groups]
    [(1, (), False), (8, ('0',), True), (16, ('2',), True), (10, ('5',), False)]
    >>> sp.groups[3].pinned
    'graph output'
    >>> sp.options(sp.layers[2])[:3]                # a fully connected layer: dense or FWCS runs
    [('dense', 0.0), ('fwcs', 0.0), ('fwcs', 0.05)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dtmm.errors import DtmmError
from dtmm.graph.ir import (Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D, FullyConnected, Graph,
                           MaxPool2D, Reshape)
from dtmm.prune.select import num_pruned

__all__ = ["ScheduleError", "Group", "Segment", "TensorInfo", "Layer", "Space", "build_space",
           "alpha_grid", "beta_grid", "LAYER_FORMATS", "FC_FORMATS", "FC_RUN", "fc_runs", "DEFAULT_ALPHA_STEP", "DEFAULT_BETA_STEP",
           "DEFAULT_BETA_MAX"]


class ScheduleError(DtmmError):
    """A scheduling request that cannot be met or is malformed (names what and why)."""


#: Storage formats a prunable layer may take.
LAYER_FORMATS = ("dense", "fwcs", "csr", "pattern")
#: Storage formats a fully connected layer may take (FWCS: kept runs of 16 inputs,
#: :mod:`dtmm.graph.compressed`'s ``CompressedFullyConnected``).
FC_FORMATS = ("dense", "fwcs")
#: Inputs per filterlet (run) of a fully connected layer (``dtmm.formats.fwcs`` linear layout).
FC_RUN = 16
DEFAULT_ALPHA_STEP = 0.05
DEFAULT_BETA_STEP = 0.125
DEFAULT_BETA_MAX = 0.75


def alpha_grid(step: float = DEFAULT_ALPHA_STEP, top: float = 0.95) -> tuple[float, ...]:
    """Filterlet ratios ``0, step, 2 step, ... <= top`` (rounded to 6 digits).

    >>> alpha_grid(0.25)
    (0.0, 0.25, 0.5, 0.75)
    """
    return _grid(step, top, "alpha")


def beta_grid(step: float = DEFAULT_BETA_STEP, top: float = DEFAULT_BETA_MAX) -> tuple[float, ...]:
    """Filter ratios ``0, step, ... <= top``.

    >>> beta_grid()
    (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
    """
    return _grid(step, top, "beta")


def _grid(step: float, top: float, what: str) -> tuple[float, ...]:
    if not (0 < step <= 1) or not (0 <= top < 1):
        raise ScheduleError(f"{what} grid: step must be in (0, 1] and the top value in [0, 1), "
                            f"got step {step}, top {top}")
    n = int(math.floor(top / step + 1e-9))
    return tuple(round(k * step, 6) for k in range(n + 1))


@dataclass(frozen=True)
class Segment:
    """A run of a tensor's channels that belongs to group ``group`` (``None``: fixed
    channels, e.g. of the graph input), each group channel appearing ``factor`` times
    (a depthwise multiplier)."""

    group: int
    channels: int
    factor: int = 1


@dataclass(frozen=True)
class TensorInfo:
    """An activation tensor: ``positions`` pixels (H*W, or H*W of a flattened map, or 1)
    times the channels of its segments."""

    name: str
    positions: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Group:
    """Output channels removed together (see the module docstring).

    ``producers``: the prunable layers whose filters make these channels; ``pinned``:
    why ``beta`` must stay 0 (None if it may vary).
    """

    index: int
    channels: int
    producers: tuple[str, ...]
    tensors: tuple[str, ...]
    pinned: str | None = None

    def kept(self, beta: float) -> int:
        """Channels left after removing the share ``beta`` (at least one)."""
        return max(1, self.channels - num_pruned(self.channels, beta))


@dataclass(frozen=True)
class Layer:
    """A prunable layer of the graph (a Conv2D or a FullyConnected op).

    ``positions``: filterlets per filter (KH*KW for a conv; ``ceil(I / 16)`` for a fully
    connected layer, its filterlets being runs of 16 inputs); ``in_tensor`` /
    ``out_tensor``: IR tensor names; ``out_group``: the group of its output channels.
    """

    index: int
    name: str
    kind: str                 # "conv" or "fc"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    in_tensor: str
    out_tensor: str
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    c_in: int
    c_out: int
    out_group: int
    positions: int
    op_index: int

    @property
    def weights(self) -> int:
        """Weights of the unpruned layer."""
        return self.c_out * self.kernel[0] * self.kernel[1] * self.c_in


@dataclass
class Space:
    """Layers, groups, tensors and grids of one model (see :func:`build_space`)."""

    graph: Graph
    layers: tuple[Layer, ...]
    groups: tuple[Group, ...]
    tensors: dict[str, TensorInfo]
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    formats: tuple[str, ...]
    layer_formats: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        for ly in self.layers:
            if ly.name == name:
                return ly
        raise ScheduleError(f"no prunable layer named {name!r}; layers: "
                            f"{', '.join(l.name for l in self.layers)}")

    @property
    def free_groups(self) -> tuple[Group, ...]:
        """The groups whose ``beta`` may vary."""
        return tuple(g for g in self.groups if g.pinned is None and len(self.betas) > 1)

    def tensor_channels(self, name: str, kept: list[int] | np.ndarray) -> int:
        """Channels of tensor ``name`` when group ``g`` keeps ``kept[g]`` channels."""
        return sum(s.factor * (kept[s.group] if s.group >= 0 else s.channels)
                   for s in self.tensors[name].segments)

    def tensor_size(self, name: str, kept) -> int:
        """int8 bytes of tensor ``name`` under ``kept`` (see :meth:`tensor_channels`)."""
        return self.tensors[name].positions * self.tensor_channels(name, kept)

    def options(self, layer: Layer) -> list[tuple[str, float]]:
        """The (format, alpha) choices of a layer: dense at alpha 0, the other allowed
        formats at every alpha of the grid (FWCS at alpha 0 only for 1x1 convs and fully
        connected layers of at most 16 inputs, whose filters have one filterlet; CSR and
        pattern layers take every alpha, the baselines setting their ratio through it)."""
        out: list[tuple[str, float]] = []
        for f in self.layer_formats.get(layer.name, self.formats):
            if f == "dense":
                out.append(("dense", 0.0))
            elif f == "fwcs" and (layer.kernel == (1, 1) if layer.kind == "conv"
                                  else layer.positions == 1):
                out.append((f, 0.0))            # one filterlet per filter: beta prunes it
            else:
                out.extend((f, a) for a in self.alphas)
        return out

    def kept_filterlets(self, layer: Layer, kept_out: int, alpha: float) -> int:
        """Filterlets the layer keeps with ``kept_out`` filters at ratio ``alpha``: the share
        ``alpha`` of ``kept_out * positions`` removed, but at least one per filter."""
        n = kept_out * layer.positions
        return max(kept_out, n - num_pruned(n, alpha))


def fc_runs(n_in: int) -> tuple[int, int, int]:
    """``(size, runs, tail)`` of a fully connected layer with ``n_in`` inputs: its FWCS
    run length (``min(16, n_in)``, as :func:`dtmm.formats.fwcs.geometry`), runs per output
    and the length of the last run (``size`` when the runs tile the inputs exactly).

    >>> fc_runs(40), fc_runs(64), fc_runs(10)
    ((16, 3, 8), (16, 4, 16), (10, 1, 10))
    """
    n = int(n_in)
    size = min(FC_RUN, n)
    npos = -(-n // size)
    return size, npos, n - (npos - 1) * size


# ------------------------------------------------------------------------- analysis


class _UF:
    def __init__(self):
        self.p: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.p.setdefault(a, a)
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def _layout(shape) -> tuple[int, int]:
    s = tuple(int(d) for d in shape)
    if len(s) == 3:
        return s[0] * s[1], s[2]
    if len(s) == 1:
        return 1, s[0]
    raise ScheduleError(f"tensor shape {s} is neither (H, W, C) nor (F,)")


def build_space(graph: Graph, *, alphas: tuple[float, ...] | None = None,
                betas: tuple[float, ...] | None = None,
                formats: tuple[str, ...] = ("dense", "fwcs"),
                layer_formats: dict[str, tuple[str, ...]] | None = None,
                prune_fc: bool = True) -> Space:
    """Analyse a (float or quantized) IR graph into a :class:`Space`.

    ``formats``: storage formats allowed for every layer (``layer_formats`` overrides per
    layer; a fully connected layer gets those of :data:`FC_FORMATS`, dense and FWCS, since
    its compressed kernel ``dtmm_fully_connected_fwcs_s8`` stores runs of 16 inputs only);
    ``prune_fc``: whether fully connected layers take part (their filters may still
    shrink with a group).
    """
    for f in formats:
        if f not in LAYER_FORMATS:
            raise ScheduleError(f"unknown format {f!r}; known: {', '.join(LAYER_FORMATS)}")
    alphas = alpha_grid() if alphas is None else tuple(alphas)
    betas = beta_grid() if betas is None else tuple(betas)
    for a in alphas + betas:
        if not 0 <= a < 1:
            raise ScheduleError(f"grid values must be in [0, 1), got {a}")
    if alphas[:1] != (0.0,) or betas[:1] != (0.0,):
        raise ScheduleError("the alpha and beta grids must start at 0")

    uf = _UF()
    gid = 0
    segs: dict[str, list[list]] = {}          # tensor -> [[root_id, channels, factor]]
    pins: dict[int, str] = {}
    producers: dict[int, list[str]] = {}

    def new_group(t: str, c: int) -> int:
        nonlocal gid
        gid += 1
        segs[t] = [[gid, c, 1]]
        return gid

    def pin(t: str, why: str) -> None:
        for s in segs.get(t, []):
            pins.setdefault(s[0], why)

    def tie(a: str, b: str, why: str) -> bool:
        sa, sb = segs[a], segs[b]
        if [(s[1], s[2]) for s in sa] != [(s[1], s[2]) for s in sb]:
            pin(a, why)
            pin(b, why)
            return False
        for x, y in zip(sa, sb):
            uf.union(x[0], y[0])
        return True

    positions: dict[str, int] = {}
    for t in graph.inputs:
        p, c = _layout(graph.tensors[t].shape)
        positions[t] = p
        new_group(t, c)
        pin(t, "graph input")
    layers: list[Layer] = []
    for i, op in enumerate(graph.ops):
        out = op.output
        p_out, c_out = _layout(graph.tensors[out].shape)
        positions[out] = p_out
        flat_in = [t for t in op.inputs if len(graph.tensors[t].shape) == 1 and positions[t] > 1]
        if flat_in and not isinstance(op, (FullyConnected, Reshape)):
            for t in flat_in:
                pin(t, f"flattened map not read by a fully connected layer ({op.name!r})")
        if isinstance(op, (Conv2D, FullyConnected)):
            g = new_group(out, c_out)
            producers[g] = [op.name]
            layers.append(_layer(graph, op, i, len(layers), g, positions))
        elif isinstance(op, DepthwiseConv2D):
            src = op.inputs[0]
            mult = int(op.depth_multiplier)
            segs[out] = [[s[0], s[1], s[2] * mult] for s in segs[src]]
        elif isinstance(op, (MaxPool2D, AvgPool2D)):
            segs[out] = [list(s) for s in segs[op.inputs[0]]]
        elif isinstance(op, Reshape):
            src = op.inputs[0]
            p_in, c_in = _layout(graph.tensors[src].shape)
            shp = tuple(graph.tensors[out].shape)
            if shp == tuple(graph.tensors[src].shape) or (len(shp) == 1 and shp[0] == p_in * c_in):
                segs[out] = [list(s) for s in segs[src]]
                positions[out] = p_in
            else:
                new_group(out, c_out)
                pin(src, f"reshape {op.name!r} mixes channels")
                pin(out, f"reshape {op.name!r} mixes channels")
        elif isinstance(op, Add):
            a, b = op.inputs
            segs[out] = [list(s) for s in segs[a]]
            tie(a, b, f"add {op.name!r} of differently grouped inputs")
        elif isinstance(op, Concat) and len(graph.tensors[out].shape) == 3:
            segs[out] = [list(s) for t in op.inputs for s in segs[t]]
        else:
            new_group(out, c_out)
            why = "softmax" if op.kind == "softmax" else f"unsupported {op.kind} {op.name!r}"
            for t in list(op.inputs) + [out]:
                pin(t, why)
    for t in graph.outputs:
        pin(t, "graph output")

    # canonical groups: roots in order of first appearance
    roots: dict[int, int] = {}
    order = list(graph.inputs) + [op.output for op in graph.ops]
    for t in order:
        for s in segs[t]:
            r = uf.find(s[0])
            roots.setdefault(r, len(roots))
    merged_pins: dict[int, str] = {}
    merged_prod: dict[int, list[str]] = {}
    chans: dict[int, int] = {}
    members: dict[int, list[str]] = {}
    for g, why in pins.items():
        merged_pins.setdefault(roots[uf.find(g)], why)
    for g, names in producers.items():
        merged_prod.setdefault(roots[uf.find(g)], []).extend(names)
    tensors: dict[str, TensorInfo] = {}
    for t in order:
        ts = []
        for s in segs[t]:
            k = roots[uf.find(s[0])]
            chans[k] = s[1]
            if t not in members.setdefault(k, []):
                members[k].append(t)
            ts.append(Segment(k, s[1], s[2]))
        tensors[t] = TensorInfo(t, positions[t], tuple(ts))
    groups = []
    for k in range(len(roots)):
        prod = tuple(merged_prod.get(k, ()))
        why = merged_pins.get(k)
        if why is None and not prod:
            why = "no prunable producer"
        groups.append(Group(k, chans[k], prod, tuple(members.get(k, ())), why))
    layers = [_relabel(ly, roots[uf.find(ly.out_group)]) for ly in layers]
    lf = {ly.name: ((tuple(f for f in formats if f in FC_FORMATS) or ("dense",)) if ly.kind == "fc"
                    else formats) for ly in layers}
    lf.update(layer_formats or {})
    if not prune_fc:
        lf.update({ly.name: ("dense",) for ly in layers if ly.kind == "fc"})
    for name, fs in lf.items():
        bad = [f for f in fs if f not in LAYER_FORMATS]
        if bad:
            raise ScheduleError(f"layer {name!r}: unknown format {bad[0]!r}")
        ly = next((l for l in layers if l.name == name), None)
        if ly is not None and ly.kind == "fc" and any(f not in FC_FORMATS for f in fs):
            raise ScheduleError(f"layer {name!r}: a fully connected layer can be "
                                f"{' or '.join(FC_FORMATS)}, not {fs}")
        if "pattern" in fs and next(l for l in layers if l.name == name).kernel != (3, 3):
            lf[name] = tuple(f for f in fs if f != "pattern") or ("dense",)
    return Space(graph, tuple(layers), tuple(groups), tensors, alphas, betas, tuple(formats), lf)


def _layer(graph: Graph, op, op_index: int, index: int, group: int, positions) -> Layer:
    src = op.inputs[0]
    ins = graph.tensors[src].shape
    outs = graph.tensors[op.output].shape
    if isinstance(op, Conv2D):
        if tuple(op.dilation) != (1, 1):
            raise ScheduleError(f"layer {op.name!r}: dilated convs cannot be deployed by the C "
                                f"kernels (dilation {tuple(op.dilation)})")
        o, kh, kw, c = (int(d) for d in op.weight.shape)
        return Layer(index, op.name, "conv", (kh, kw), tuple(int(s) for s in op.stride),
                     tuple(int(p) for p in op.pads), src, op.output, (int(ins[0]), int(ins[1])),
                     (int(outs[0]), int(outs[1])), c, o, group, kh * kw, op_index)
    o, n_in = (int(d) for d in op.weight.shape)
    return Layer(index, op.name, "fc", (1, 1), (1, 1), (0, 0, 0, 0), src, op.output, (1, 1), (1, 1),
                 n_in, o, group, -(-n_in // 16), op_index)


def _relabel(ly: Layer, group: int) -> Layer:
    from dataclasses import replace

    return replace(ly, out_group=group)
