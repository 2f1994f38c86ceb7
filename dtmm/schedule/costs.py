"""The cost of a strategy: bytes, flash, SRAM, instructions and loss change, from counts only.

:class:`CostModel` evaluates a :class:`Strategy` (one ``beta`` index per channel group,
one option index per layer, see :mod:`dtmm.schedule.space`) without a compiler, QEMU or
any file: every number comes from the same definitions the later stages use.

* **const bytes** (number (b) of :mod:`dtmm.formats.footprint`): per layer the format's
  exact ``bytes_from_counts`` at the target's pointer width, per other op its structs
  and (depthwise) weights. Equal to the generated model's ``const_bytes``.
* **SRAM**: the arena of :func:`dtmm.codegen.arena.plan_arena`, exactly: the same
  liveness, the kernels' scratch formulas (:mod:`dtmm.codegen.scratch`) and the same
  greedy placement (:func:`dtmm.codegen.arena.place`) on the pruned tensor sizes.
* **instructions**: :class:`~dtmm.schedule.latency.LatencyModel` per op plus the
  ``dtmm_model_invoke`` copies.
* **flash** and **.tflite bytes**: estimates from tables measured per target
  (:mod:`dtmm.schedule.flash`).
* **loss change**: a :mod:`dtmm.schedule.loss` model (additive over groups and layers).

Evaluating a strategy of a 20-layer model takes well under a millisecond (per-layer
costs are memoised by their kept counts; ``scripts/bench_schedule.py`` measures it).
"""
from __future__ import annotations

from dataclasses import dataclass

from dtmm import formats
from dtmm.codegen.arena import liveness, place
from dtmm.codegen.scratch import layer_scratch
from dtmm.formats import footprint
from dtmm.formats.common import ByteCount
from dtmm.graph.ir import DepthwiseConv2D
from dtmm.prune.select import num_pruned
from dtmm.schedule.latency import LatencyModel, OpShape
from dtmm.schedule.space import Layer, ScheduleError, Space, fc_runs

__all__ = ["Strategy", "LayerCost", "Costs", "CostModel", "layer_kept_units", "fc_tail_runs"]


@dataclass(frozen=True)
class Strategy:
    """``betas[g]``: index into ``space.betas`` for group ``g`` (0 when pinned);
    ``options[i]``: index into ``space.options(layer i)``."""

    betas: tuple[int, ...]
    options: tuple[int, ...]


@dataclass(frozen=True)
class LayerCost:
    """One layer under a strategy."""

    c_in: int
    c_out: int
    format: str
    alpha: float
    kept: int                    # kept filterlets (fwcs) / weights (csr) / kernels (pattern) / weights (dense)
    bytes: ByteCount
    scratch: int
    instructions: float


@dataclass(frozen=True)
class Costs:
    """Every predicted number of one strategy (see the module docstring)."""

    const_bytes: int
    flash_bytes: int
    tflite_bytes: int
    arena_bytes: int
    ram_bytes: int               # arena + the firmware's static data (what QEMU's ram_bytes measures)
    sram_bytes: int              # ram_bytes + the reserved stack: what must fit the chip's SRAM
    instructions: float
    delta_loss: float
    breakdown: ByteCount


def layer_kept_units(space: Space, layer: Layer, fmt: str, alpha: float, c_in: int, c_out: int) -> int:
    """Kept units of a layer: filterlets (fwcs), weights (csr, dense), kernels (pattern); the
    share ``alpha`` of them removed, but never a filter's last one. A fully connected
    layer's filterlets are its runs of 16 of its ``c_in`` (pruned) inputs."""
    k = layer.kernel[0] * layer.kernel[1]
    if fmt == "fwcs":
        if layer.kind == "conv":
            return space.kept_filterlets(layer, c_out, alpha)
        n = c_out * fc_runs(c_in)[1]
        return max(c_out, n - num_pruned(n, alpha))
    if fmt == "csr":             # at least one weight per filter (filters leave through beta)
        n = c_out * k * c_in
        return max(c_out, n - num_pruned(n, alpha))
    if fmt == "pattern":         # at least one kernel per filter
        n = c_out * c_in
        return max(c_out, n - num_pruned(n, alpha))
    return c_out * k * c_in


def fc_tail_runs(c_in: int, c_out: int) -> int:
    """Kept short last runs of an FWCS fully connected layer: every kept filter keeps its
    short last run (the selection rule of :func:`dtmm.schedule.select.layer_mask`), so
    there are ``c_out`` of them when 16 does not divide ``c_in``, else none."""
    size, npos, tail = fc_runs(c_in)
    return int(c_out) if npos > 1 and tail != size else 0


class CostModel:
    """Evaluates strategies of ``space`` for one target (see the module docstring).

    ``latency``: the target's :class:`LatencyModel`; ``loss``: an object with
    ``delta(strategy) -> float`` (or None: loss 0); ``code``: a
    :class:`~dtmm.schedule.flash.CodeSizes` (or None: flash = const bytes, tflite 0);
    ``stack_bytes``: SRAM the firmware reserves for its stack, added to ``ram_bytes`` in
    ``sram_bytes`` (the number an SRAM budget is compared with).
    """

    def __init__(self, space: Space, latency: LatencyModel, *, loss=None, code=None,
                 target: str | None = None, pointer_bytes: int | None = None,
                 stack_bytes: int = 16 * 1024):
        from dtmm.codegen.platform import get_target

        self.space = space
        self.latency = latency
        self.loss = loss
        self.code = code
        self.target = target or latency.target
        t = get_target(self.target)
        self.isa = latency.isa
        self.pointer_bytes = t.pointer_bytes if pointer_bytes is None else int(pointer_bytes)
        self.stack_bytes = int(stack_bytes)
        g = space.graph
        self.options = [space.options(ly) for ly in space.layers]
        self._layer_at = {ly.op_index: ly for ly in space.layers}
        self._others = [(i, op) for i, op in enumerate(g.ops) if i not in self._layer_at]
        bufs = liveness(g, any_dtype=True)
        self._buf_tensors = [b.name for b in bufs]
        self._buf_first = [b.first for b in bufs]
        self._buf_last = [b.last for b in bufs]
        self._scratch_names = [f"{ly.name}/scratch" for ly in space.layers]
        self._memo_layer: dict = {}
        self._memo_other: dict = {}
        self._memo_arena: dict = {}
        t_in, t_out = g.inputs[0], g.outputs[0]
        self._io = (t_in, t_out)
        self.n_ops = len(g.ops)
        # precomputed for evaluate(): kept channels per (group, beta index), each tensor's
        # channels as fixed + sum(factor * kept[group]), lifetimes of arena buffers
        self._kept_tab = [[gr.kept(b) if gr.pinned is None else gr.channels for b in space.betas]
                          for gr in space.groups]
        self._lin = {}
        for name, ti in space.tensors.items():
            fixed = sum(sg.factor * sg.channels for sg in ti.segments if space.groups[sg.group].pinned)
            free = tuple((sg.group, sg.factor) for sg in ti.segments if not space.groups[sg.group].pinned)
            self._lin[name] = (ti.positions, fixed, free)
        self._layer_io = [(ly.in_tensor, ly.kind == "fc", ly.out_group) for ly in space.layers]
        self._other_io = [(i, op, op.inputs[0], op.output) for i, op in self._others]
        n_all = len(bufs) + len(space.layers)
        fl = self._buf_first + [ly.op_index for ly in space.layers]
        ll = self._buf_last + [ly.op_index for ly in space.layers]
        self._all_first, self._all_last = fl, ll
        self._all_names = self._buf_tensors + self._scratch_names
        self._overlaps = [[j for j in range(n_all) if j != i and fl[j] <= ll[i] and fl[i] <= ll[j]]
                          for i in range(n_all)]

    # -- per layer / per op ------------------------------------------------------------
    def layer_cost(self, li: int, c_in: int, c_out: int, oi: int) -> LayerCost:
        key = (li, c_in, c_out, oi)
        hit = self._memo_layer.get(key)
        if hit is not None:
            return hit
        ly = self.space.layers[li]
        fmt, alpha = self.options[li][oi]
        kh, kw = ly.kernel
        pb = self.pointer_bytes
        kept = layer_kept_units(self.space, ly, fmt, alpha, c_in, c_out)
        if ly.kind == "fc":                      # no scratch, dense or FWCS
            if fmt == "dense":
                bc = formats.dense.bytes_from_counts((c_out, c_in), pointer_bytes=pb)
                sh = OpShape("fc", 1, 1, c_in, c_out)
            elif fmt == "fwcs":
                tail = fc_tail_runs(c_in, c_out)
                bc = footprint.fc_fwcs_bytes_from_counts((c_out, c_in), kept, tail, per_channel=False,
                                                         pointer_bytes=pb, name=ly.name)
                sh = OpShape("fc_fwcs", 1, 1, c_in, c_out, kept=kept, tail=tail)
            else:
                raise ScheduleError(f"layer {ly.name!r}: a fully connected layer cannot be {fmt!r}")
            scratch = 0
        else:
            shape = (c_out, kh, kw, c_in)
            if fmt == "dense":
                bc = formats.dense.bytes_from_counts(shape, pointer_bytes=pb)
            elif fmt == "fwcs":
                bc = formats.fwcs.bytes_from_counts(shape, kept, pointer_bytes=pb, name=ly.name)
            elif fmt == "csr":
                bc = formats.csr.bytes_from_counts(shape, kept, pointer_bytes=pb, name=ly.name)
            else:
                bc = formats.pattern.bytes_from_counts(shape, kept, pointer_bytes=pb, name=ly.name)
            ih, iw = ly.in_hw
            oh, ow = ly.out_hw
            sh = OpShape("conv" if fmt == "dense" else fmt, oh, ow, c_in, c_out, kh, kw, ih, iw,
                         0 if fmt == "dense" else kept, stride_h=ly.stride[0], stride_w=ly.stride[1],
                         pad_t=ly.pads[0], pad_l=ly.pads[2])
            scratch = layer_scratch("conv2d" if fmt == "dense" else fmt, self.isa, pb, in_h=ih,
                                    in_w=iw, c_in=c_in, kh=kh, kw=kw, c_out=c_out)
        out = LayerCost(c_in, c_out, fmt, alpha, kept, bc, scratch, self.latency.predict(sh))
        self._memo_layer[key] = out
        return out

    def _other_cost(self, i: int, op, chans: tuple[int, ...]) -> tuple[ByteCount, float]:
        key = (i, chans)
        hit = self._memo_other.get(key)
        if hit is not None:
            return hit
        g = self.space.graph
        pb = self.pointer_bytes
        kind = op.kind
        ins = g.tensors[op.inputs[0]].shape
        outs = g.tensors[op.output].shape
        hw = lambda s: (int(s[0]), int(s[1])) if len(s) == 3 else (1, 1)  # noqa: E731
        (ih, iw), (oh, ow) = hw(ins), hw(outs)
        c_in, c_out = chans[0], chans[-1]
        if isinstance(op, DepthwiseConv2D):
            kh, kw = op.kernel
            bc = ByteCount(kh * kw * c_out, 0, footprint.conv_quant_bytes(c_out),
                           footprint.meta_bytes(kind, pb))
            sh = OpShape("depthwise", oh, ow, c_in, c_out, kh, kw, ih, iw, mult=int(op.depth_multiplier),
                         stride_h=int(op.stride[0]), stride_w=int(op.stride[1]), pad_t=int(op.pads[0]),
                         pad_l=int(op.pads[2]))
        else:
            bc = ByteCount(0, 0, 0, footprint.meta_bytes(kind, pb, n_inputs=len(op.inputs)))
            if kind in ("max_pool2d", "avg_pool2d"):
                sh = OpShape(kind[:-2], oh, ow, c_in, c_out, int(op.kernel[0]), int(op.kernel[1]), ih, iw)
            elif kind == "add":
                n = oh * ow * c_out if len(outs) == 3 else c_out
                sh = OpShape("add", 1, 1, n, n)
            elif kind == "softmax":
                rows = (oh * ow) if len(outs) == 3 else 1
                sh = OpShape("softmax", rows, 1, c_out, c_out)
            elif kind == "concat":
                sh = OpShape("concat", oh, ow, 0, c_out, kept=len(op.inputs))
            else:
                sh = None                                   # reshape: no code
        out = (bc, self.latency.predict(sh) if sh is not None else 0.0)
        self._memo_other[key] = out
        return out

    # -- whole strategy ----------------------------------------------------------------
    def kept_channels(self, s: Strategy) -> list[int]:
        return [t[b] for t, b in zip(self._kept_tab, s.betas)]

    def _chans(self, name: str, kept) -> int:
        _, fixed, free = self._lin[name]
        for g, f in free:
            fixed += f * kept[g]
        return fixed

    def _size(self, name: str, kept) -> int:
        return self._lin[name][0] * self._chans(name, kept)

    def layer_costs(self, s: Strategy, kept: list[int] | None = None) -> list[LayerCost]:
        kept = self.kept_channels(s) if kept is None else kept
        out = []
        for li, (t_in, is_fc, g_out) in enumerate(self._layer_io):
            cin = self._size(t_in, kept) if is_fc else self._chans(t_in, kept)
            out.append(self.layer_cost(li, cin, kept[g_out], s.options[li]))
        return out

    def evaluate(self, s: Strategy, *, with_loss: bool = True) -> Costs:
        kept = self.kept_channels(s)
        lcs = self.layer_costs(s, kept)
        w = ix = q = m = 0
        ins = 0.0
        for lc in lcs:
            b = lc.bytes
            w += b.weights
            ix += b.index
            q += b.quant
            m += b.meta
            ins += lc.instructions
        for i, op, t_in, t_out in self._other_io:
            bc, n = self._other_cost(i, op, (self._chans(t_in, kept), self._chans(t_out, kept)))
            w += bc.weights
            ix += bc.index
            q += bc.quant
            m += bc.meta
            ins += n
        t_in, t_out = self._io
        ins += self._invoke(self._size(t_in, kept), self._size(t_out, kept))
        arena = self.arena_bytes(s, kept, lcs)
        total = ByteCount(w, ix, q, m)
        const = total.total
        flash = self.code.flash_bytes(self, s, lcs, const) if self.code is not None else const
        tfl = self.code.tflite_bytes(self, s, lcs, const) if self.code is not None else 0
        ram = arena + (self.code.static_ram if self.code is not None else 0)
        loss = float(self.loss.delta(s)) if (with_loss and self.loss is not None) else 0.0
        return Costs(const, flash, tfl, arena, ram, ram + self.stack_bytes, ins, loss, total)

    def op_instructions(self, s: Strategy) -> dict[str, float]:
        """Predicted instructions of every op of the pruned graph by op name (reshapes 0),
        plus ``"dtmm_model_invoke"`` for the input/output copies."""
        kept = self.kept_channels(s)
        out = {ly.name: lc.instructions for ly, lc in zip(self.space.layers, self.layer_costs(s, kept))}
        for i, op, t_in, t_out in self._other_io:
            out[op.name] = self._other_cost(i, op, (self._chans(t_in, kept), self._chans(t_out, kept)))[1]
        t_in, t_out = self._io
        out["dtmm_model_invoke"] = self._invoke(self._size(t_in, kept), self._size(t_out, kept))
        return out

    def _invoke(self, n_in: int, n_out: int) -> float:
        key = ("invoke", n_in, n_out)
        v = self._memo_other.get(key)
        if v is None:
            v = self._memo_other[key] = self.latency.predict(OpShape("invoke", c_in=n_in, c_out=n_out))
        return v

    def arena_bytes(self, s: Strategy, kept=None, lcs=None) -> int:
        """The arena :func:`~dtmm.codegen.arena.plan_arena` would plan for the pruned graph."""
        kept = self.kept_channels(s) if kept is None else kept
        lcs = self.layer_costs(s, kept) if lcs is None else lcs
        sizes = tuple([self._size(t, kept) for t in self._buf_tensors] + [lc.scratch for lc in lcs])
        hit = self._memo_arena.get(sizes)
        if hit is not None:
            return hit
        # zero-size scratch buffers are not placed by the planner; here they take no room
        _, end = place(sizes, self._all_first, self._all_last, self._all_names, self._overlaps)
        if len(self._memo_arena) > 200_000:
            self._memo_arena.clear()
        out = self._memo_arena[sizes] = (end + 15) // 16 * 16
        return out

    def dense_strategy(self) -> Strategy:
        """Nothing pruned, every layer dense (or its first option)."""
        opts = []
        for o in self.options:
            opts.append(o.index(("dense", 0.0)) if ("dense", 0.0) in o else 0)
        return Strategy(tuple(0 for _ in self.space.groups), tuple(opts))
