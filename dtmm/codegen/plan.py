"""Plan stage of code generation: a quantized IR graph -> a typed :class:`ModelPlan`.

The plan holds everything the C model needs, already decided: the constant arrays
(weights, bias, requantization constants, format index arrays, each with its C
type and whether it goes to the large-data region), one typed call per op with
its arena offsets and kernel parameters, the arena plan and the kernel sources.
:mod:`dtmm.codegen.render` turns it into C text without further analysis, and
:mod:`dtmm.codegen.emit` writes the files.

Op -> kernel:

===========================  ===========================================
``Conv2D``                   ``dtmm_conv_s8`` (dilation 1 only)
``CompressedConv2D`` fwcs    ``dtmm_conv_fwcs_s8``
``CompressedConv2D`` csr     ``dtmm_conv_csr_s8``
``CompressedConv2D`` pattern ``dtmm_conv_pattern_s8`` (3x3)
``DepthwiseConv2D``          ``dtmm_depthwise_conv_s8``
``FullyConnected``           ``dtmm_fully_connected_s8``
``CompressedFullyConnected`` ``dtmm_fully_connected_fwcs_s8`` (FWCS runs of inputs)
``MaxPool2D`` / ``AvgPool2D`` ``dtmm_max_pool_s8`` / ``dtmm_avg_pool_s8``
``Add``                      ``dtmm_add_s8``
``Softmax``                  ``dtmm_softmax_s8`` (TFLite Micro-exact)
``Concat`` (channels)        a copy loop inside ``model.c``; none for vectors whose inputs
                             the arena placed side by side (``arena.concat_in_place``)
``Reshape``                  nothing: the output aliases the input in the arena
===========================  ===========================================

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((8, 8, 3), seed=0)
    >>> _ = sg.conv(4, 3, pads="same", activation="relu"); _ = sg.softmax()
    >>> p = plan_model(sg.finish(), "cortex-m4")
    >>> [type(s.call).__name__ for s in p.steps], p.kernel_sources[:1]
    (['ConvCall', 'SoftmaxCall'], ('dtmm_conv_s8.c',))
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from dtmm.codegen.arena import ArenaPlan, concat_in_place, plan_arena
from dtmm.errors import BuildError
from dtmm.formats import footprint
from dtmm.formats.common import ByteCount
from dtmm.graph.ir import (Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D, FullyConnected, Graph,
                           MaxPool2D, Reshape, Softmax)
from dtmm.quant import arith, offsets

__all__ = ["ModelPlan", "Step", "ConstArray", "TensorRef", "Dims", "ConvParamsC", "ConvCall",
           "SparseConvCall", "FwcsCall", "CsrCall", "PatternCall", "DepthwiseCall", "FcCall", "FwcsFcCall",
           "PoolCall", "AddCall", "SoftmaxCall", "ConcatCall", "AliasCall", "plan_model",
           "KERNEL_HEADERS", "KERNEL_SOURCES", "LARGE_THRESHOLD"]

#: The kernel source each op kind (a compressed conv: its format) links; concat and
#: reshape run no kernel. One table for the planner and the scheduler's flash model.
KERNEL_SOURCES = {
    "conv2d": "dtmm_conv_s8.c", "fwcs": "dtmm_conv_fwcs_s8.c", "csr": "dtmm_conv_csr_s8.c",
    "pattern": "dtmm_conv_pattern_s8.c", "depthwise_conv2d": "dtmm_depthwise_conv_s8.c",
    "fully_connected": "dtmm_fully_connected_s8.c", "max_pool2d": "dtmm_max_pool_s8.c",
    "avg_pool2d": "dtmm_avg_pool_s8.c", "add": "dtmm_add_s8.c", "softmax": "dtmm_softmax_s8.c",
    "compressed_fully_connected": "dtmm_fully_connected_fwcs_s8.c",
}
#: Headers every kernel file includes (copied into each generated project).
KERNEL_HEADERS = ("dtmm_kernels.h", "dtmm_internal.h", "dtmm_isa.h", "dtmm_requant.h")
#: On a target with a "large" region (cortex-m55's 4 MiB SRAM), constants are placed there
#: when they total more than this many bytes (the 512 KiB ITCM also holds the code), and
#: the arena when it is larger than this (the 512 KiB DTCM also holds stack and statics).
LARGE_THRESHOLD = 256 * 1024
#: Arrays below this size always stay in the normal regions.
_LARGE_MIN_ARRAY = 1024


# ----------------------------------------------------------------------------- plan types


@dataclass(frozen=True)
class ConstArray:
    """A constant C array: identifier, flat data (its dtype is the C type), placement."""

    cname: str
    data: np.ndarray
    large: bool = False

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass(frozen=True)
class TensorRef:
    """An activation tensor in the arena."""

    name: str
    offset: int
    nbytes: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Dims:
    """``dtmm_dims`` (n, h, w, c)."""

    n: int
    h: int
    w: int
    c: int


@dataclass(frozen=True)
class ConvParamsC:
    """``dtmm_conv_params``."""

    stride_h: int
    stride_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    in_zp: int
    out_zp: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class _Requant:
    bias: str            # the bias array, or for the sparse kernels the offset array
    multiplier: str
    shift: str


@dataclass(frozen=True)
class ConvCall:
    x: TensorRef
    y: TensorRef
    in_dims: Dims
    filter_dims: Dims
    out_dims: Dims
    params: ConvParamsC
    weights: str
    rq: _Requant


@dataclass(frozen=True)
class SparseConvCall:
    """Fields of the compressed-conv calls; a subclass adds the fields of its C weight
    struct (``dtmm_fwcs`` / ``dtmm_csr`` / ``dtmm_pattern``, in the struct's order), then ``rq``."""

    x: TensorRef
    y: TensorRef
    in_dims: Dims
    out_dims: Dims
    params: ConvParamsC


@dataclass(frozen=True)
class FwcsCall(SparseConvCall):
    arr: str
    cptr: str
    fidx: str
    size: int
    kh: int
    kw: int
    c_out: int
    cptr_bits: int
    fidx_bits: int
    rq: _Requant


@dataclass(frozen=True)
class CsrCall(SparseConvCall):
    values: str
    col: str
    rowptr: str
    kh: int
    kw: int
    c_in: int
    c_out: int
    col_bits: int
    rowptr_bits: int
    rq: _Requant


@dataclass(frozen=True)
class PatternCall(SparseConvCall):
    patterns: str
    n_patterns: int
    kptr: str
    kchan: str
    kpat: str
    values: str
    c_in: int
    c_out: int
    kptr_bits: int
    kchan_bits: int
    rq: _Requant


@dataclass(frozen=True)
class DepthwiseCall:
    x: TensorRef
    y: TensorRef
    in_dims: Dims
    filter_dims: Dims
    out_dims: Dims
    params: ConvParamsC
    depth_multiplier: int
    weights: str
    rq: _Requant


@dataclass(frozen=True)
class FcCall:
    x: TensorRef
    y: TensorRef
    params: ConvParamsC
    per_channel: int
    in_features: int
    out_features: int
    weights: str
    rq: _Requant


@dataclass(frozen=True)
class FwcsFcCall:
    """``dtmm_fully_connected_fwcs_s8``: the ``dtmm_fwcs`` struct's fields (linear layout:
    ``kh`` 1, ``kw`` runs per row) and ``rq.bias`` = the per-output offsets."""

    x: TensorRef
    y: TensorRef
    params: ConvParamsC
    per_channel: int
    in_features: int
    arr: str
    cptr: str
    fidx: str
    size: int
    kh: int
    kw: int
    c_out: int
    cptr_bits: int
    fidx_bits: int
    rq: _Requant


@dataclass(frozen=True)
class PoolCall:
    x: TensorRef
    y: TensorRef
    is_max: bool
    filter_h: int
    filter_w: int
    stride_h: int
    stride_w: int
    pads: tuple[int, int, int, int]
    in_dims: Dims
    out_dims: Dims


@dataclass(frozen=True)
class AddCall:
    a: TensorRef
    b: TensorRef
    y: TensorRef
    in1_zp: int
    in2_zp: int
    out_zp: int
    left_shift: int
    in1_multiplier: int
    in1_shift: int
    in2_multiplier: int
    in2_shift: int
    out_multiplier: int
    out_shift: int
    act_min: int
    act_max: int
    size: int


@dataclass(frozen=True)
class SoftmaxCall:
    x: TensorRef
    y: TensorRef
    rows: int
    depth: int
    beta_multiplier: int
    beta_left_shift: int
    diff_min: int


@dataclass(frozen=True)
class ConcatCall:
    xs: tuple[TensorRef, ...]
    y: TensorRef
    pixels: int
    channels: tuple[int, ...]


@dataclass(frozen=True)
class AliasCall:
    """A reshape: no code; ``y`` shares ``x``'s arena bytes."""

    x: TensorRef
    y: TensorRef


Call = (ConvCall | FwcsCall | CsrCall | PatternCall | DepthwiseCall | FcCall | FwcsFcCall | PoolCall
        | AddCall
        | SoftmaxCall | ConcatCall | AliasCall)


@dataclass(frozen=True)
class Step:
    """One op of the model: its typed kernel call, its scratch (offset, bytes) if any, and
    its constant bytes in ``model.c`` (arrays and parameter structs, by category)."""

    index: int
    op_name: str
    op_kind: str
    cid: str                 # C identifier prefix of this op's constants
    call: Call
    scratch_offset: int | None = None
    scratch_bytes: int = 0
    const: ByteCount = ByteCount(0, 0, 0, 0)


@dataclass(frozen=True)
class ModelPlan:
    """Everything the C model of one graph on one target consists of."""

    target: str
    simd: str
    arena: ArenaPlan
    arena_large: bool
    input: TensorRef
    output: TensorRef
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    steps: tuple[Step, ...]
    consts: tuple[ConstArray, ...]
    kernel_sources: tuple[str, ...]
    kernel_headers: tuple[str, ...] = KERNEL_HEADERS
    notes: tuple[str, ...] = field(default=())
    target_spec: object = field(default=None, compare=False, repr=False)

    @property
    def target_info(self):
        """The :class:`~dtmm.codegen.platform.Target` this plan is for."""
        from dtmm.codegen.platform import get_target

        return self.target_spec if self.target_spec is not None else get_target(self.target)

    @property
    def const_bytes(self) -> int:
        """The model's constant bytes, number (b) of :mod:`dtmm.formats.footprint`: every
        const array (weights, format indices, bias, multipliers, shifts, tables) and every
        const parameter struct of ``model.c``, at its ``sizeof``, without alignment padding."""
        return sum(s.const.total for s in self.steps)

    @property
    def const_breakdown(self) -> ByteCount:
        """:attr:`const_bytes` split into weights / index / quant / meta."""
        total = ByteCount(0, 0, 0, 0)
        for s in self.steps:
            total = total + s.const
        return total


# ----------------------------------------------------------------------------- planning


def _cid(i: int, kind: str) -> str:
    """C identifier prefix of op ``i``'s constants: made by dtmm from the op's index and kind
    (``L3_conv2d``), never from a name read from a file."""
    return f"L{i}_" + (re.sub(r"[^a-z0-9_]", "_", kind)[:40] or "op")


def _dims(shape) -> Dims:
    s = tuple(int(v) for v in shape)
    if len(s) == 3:
        return Dims(1, *s)
    if len(s) == 1:
        return Dims(1, 1, 1, s[0])
    raise BuildError(f"cannot map tensor shape {s} to NHWC dims")


def _qp(graph: Graph, name: str) -> tuple[float, int]:
    t = graph.tensors[name]
    if t.qparams is None or not t.qparams.is_per_tensor:
        raise BuildError(f"tensor {name!r}: code generation needs per-tensor qparams")
    return t.qparams.s, t.qparams.zp


class _Planner:
    def __init__(self, graph: Graph, target: str, simd: str, isa: str | None):
        self.g = graph
        self.target = target
        self.simd = simd
        self.arena = plan_arena(graph, target, simd=simd, isa=isa)
        from dtmm.codegen.platform import get_target

        self.pointer_bytes = get_target(target).pointer_bytes
        self.consts: list[ConstArray] = []
        self.sources: list[str] = []

    def ref(self, name: str) -> TensorRef:
        t = self.g.tensors[name]
        return TensorRef(name, self.arena.offsets[name], t.size, tuple(t.shape))

    def const(self, cname: str, data, dtype) -> str:
        arr = np.ascontiguousarray(np.asarray(data).reshape(-1))
        if arr.dtype != np.dtype(dtype):
            info = np.iinfo(dtype)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise BuildError(f"{cname}: values out of range for {np.dtype(dtype).name}")
            arr = arr.astype(dtype)
        self.consts.append(ConstArray(cname, arr))
        return cname

    def need(self, *files: str) -> None:
        for f in files:
            if f not in self.sources:
                self.sources.append(f)

    def conv_params(self, op, act=True) -> ConvParamsC:
        _, in_zp = _qp(self.g, op.inputs[0])
        out_s, out_zp = _qp(self.g, op.output)
        lo, hi = arith.activation_range(op.activation, out_s, out_zp) if act else (-128, 127)
        stride = getattr(op, "stride", (1, 1))
        pads = getattr(op, "pads", (0, 0, 0, 0))
        return ConvParamsC(int(stride[0]), int(stride[1]), *(int(p) for p in pads), in_zp, out_zp,
                           int(lo), int(hi))

    def requant(self, cid: str, op, n: int, weight_sums=None) -> _Requant:
        """The bias / multiplier / shift constants of ``op``. With ``weight_sums`` (the
        sparse kernels) the first array is ``bias - in_zp * weight_sums`` (``{cid}_offset``,
        :mod:`dtmm.quant.offsets`) instead of the bias: same bytes, no per-call sums."""
        q = op.quant
        if q is None:
            raise BuildError(f"op {op.name!r} ({op.kind}) has no quantization constants")
        mult = np.asarray(q.multiplier).reshape(-1)
        shift = np.asarray(q.shift).reshape(-1)
        if mult.size not in (1, n) or shift.size != mult.size:
            raise BuildError(f"op {op.name!r}: {mult.size} multipliers for {n} outputs")
        from dtmm.tflite.validate import SHIFT_MAX, SHIFT_MIN   # the read-time rule, once
        if shift.size and (shift.min() < SHIFT_MIN or shift.max() > SHIFT_MAX):
            raise BuildError(f"op {op.name!r}: requantization shift {int(shift.min())}.."
                             f"{int(shift.max())} outside [{SHIFT_MIN}, {SHIFT_MAX}] (the C "
                             f"kernels' shifts would be undefined behaviour)")
        bias = np.asarray(op.bias).reshape(-1)
        if bias.dtype.kind not in "iu":
            raise BuildError(f"op {op.name!r}: bias is {bias.dtype}, not int32 (graph not quantized?)")
        if weight_sums is not None:
            _, in_zp = _qp(self.g, op.inputs[0])
            first = self.const(f"{cid}_offset", offsets.input_offset_bias(
                bias, weight_sums, in_zp, f"op {op.name!r}"), np.int32)
        else:
            first = self.const(f"{cid}_bias", bias, np.int32)
        return _Requant(first,
                        self.const(f"{cid}_mult", mult, np.int32),
                        self.const(f"{cid}_shift", shift, np.int32))

    def check_dilation(self, op) -> None:
        if tuple(getattr(op, "dilation", (1, 1))) != (1, 1):
            raise BuildError(f"op {op.name!r} ({op.kind}): dilation {tuple(op.dilation)} runs on "
                             f"the reference and TFLite Micro only; dtmm's C kernels (host, "
                             f"Cortex-M, export) support dilation 1")

    def check_weight(self, op) -> None:
        if np.asarray(op.weight).dtype != np.int8:
            raise BuildError(f"op {op.name!r} ({op.kind}): weight is {np.asarray(op.weight).dtype}, "
                             f"not int8 (graph not quantized?)")

    # -- per op
    def step(self, i: int, op) -> Step:
        n0 = len(self.consts)
        step = self._step(i, op)
        self._check_bytes(step, self.consts[n0:])
        return step

    def _check_bytes(self, step: Step, arrays: list[ConstArray]) -> None:
        """The arrays just planned must be the footprint's array bytes (one truth)."""
        kind = step.op_kind if step.op_kind != "compressed_conv2d" else self.g.op(step.op_name).format_name
        structs = sum(footprint.struct_size(n, self.pointer_bytes) for n in footprint.OP_STRUCTS[kind])
        n_arrays = footprint.op_array_count(kind, self.g.op(step.op_name), self.g)
        if len(arrays) != n_arrays:
            raise BuildError(f"op {step.op_name!r}: {len(arrays)} const arrays planned, the byte "
                             f"model says {n_arrays}: dtmm.formats.footprint is out of date")
        if sum(a.nbytes for a in arrays) != step.const.total - structs:
            raise BuildError(f"op {step.op_name!r}: planned const arrays "
                             f"({sum(a.nbytes for a in arrays)} B) differ from the byte model "
                             f"({step.const.total - structs} B): dtmm.formats.footprint is out of "
                             f"date")

    def _step(self, i: int, op) -> Step:
        cid = _cid(i, getattr(op, "kind", "op"))
        x = self.ref(op.inputs[0])
        y = self.ref(op.output)
        kind = getattr(op, "kind", type(op).__name__)
        if isinstance(op, Conv2D):
            self.check_dilation(op)
            self.check_weight(op)
            self.need(KERNEL_SOURCES["conv2d"])
            cout = int(op.weight.shape[0])
            call = ConvCall(x, y, _dims(x.shape), Dims(*(int(d) for d in op.weight.shape)),
                            _dims(y.shape), self.conv_params(op),
                            self.const(f"{cid}_w", op.weight, np.int8), self.requant(cid, op, cout))
        elif kind == "compressed_conv2d":
            call = self.compressed(cid, op, x, y)
        elif kind == "compressed_fully_connected":
            call = self.compressed_fc(cid, op, x, y)
        elif isinstance(op, DepthwiseConv2D):
            self.check_dilation(op)
            self.check_weight(op)
            self.need(KERNEL_SOURCES["depthwise_conv2d"])
            w = np.asarray(op.weight)
            call = DepthwiseCall(x, y, _dims(x.shape), Dims(1, w.shape[1], w.shape[2], w.shape[3]),
                                 _dims(y.shape), self.conv_params(op), int(op.depth_multiplier),
                                 self.const(f"{cid}_w", w, np.int8),
                                 self.requant(cid, op, int(w.shape[3])))
        elif isinstance(op, FullyConnected):
            self.check_weight(op)
            self.need(KERNEL_SOURCES["fully_connected"])
            o, n_in = (int(d) for d in op.weight.shape)
            if x.nbytes != n_in or y.nbytes != o:
                raise BuildError(f"op {op.name!r}: input {x.shape} / output {y.shape} do not match "
                                 f"weight {op.weight.shape}")
            rq = self.requant(cid, op, o)
            per_channel = int(np.asarray(op.quant.multiplier).size > 1)
            call = FcCall(x, y, self.conv_params(op), per_channel, n_in, o,
                          self.const(f"{cid}_w", op.weight, np.int8), rq)
        elif isinstance(op, (MaxPool2D, AvgPool2D)):
            if not self.g.tensors[op.output].qparams.same_as(self.g.tensors[op.inputs[0]].qparams):
                raise BuildError(f"op {op.name!r} ({op.kind}): input and output qparams differ")
            is_max = isinstance(op, MaxPool2D)
            self.need(KERNEL_SOURCES["max_pool2d" if is_max else "avg_pool2d"])
            call = PoolCall(x, y, is_max, int(op.kernel[0]), int(op.kernel[1]), int(op.stride[0]),
                            int(op.stride[1]), tuple(int(p) for p in op.pads), _dims(x.shape),
                            _dims(y.shape))
        elif isinstance(op, Add):
            if op.quant is None:
                raise BuildError(f"op {op.name!r} (add) has no quantization constants")
            b = self.ref(op.inputs[1])
            if not (x.nbytes == b.nbytes == y.nbytes):
                raise BuildError(f"op {op.name!r} (add): shapes {x.shape}, {b.shape} -> {y.shape} "
                                 f"(no broadcasting in dtmm_add_s8)")
            self.need(KERNEL_SOURCES["add"])
            q = op.quant
            out_s, out_zp = _qp(self.g, op.output)
            lo, hi = arith.activation_range(op.activation, out_s, out_zp)
            call = AddCall(x, b, y, _qp(self.g, op.inputs[0])[1], _qp(self.g, op.inputs[1])[1], out_zp,
                           q.left_shift, q.in1_multiplier, q.in1_shift, q.in2_multiplier,
                           q.in2_shift, q.out_multiplier, q.out_shift, int(lo), int(hi), y.nbytes)
        elif isinstance(op, Softmax):
            if op.quant is None:
                raise BuildError(f"op {op.name!r} (softmax) has no quantization constants")
            out_s, out_zp = _qp(self.g, op.output)
            if out_zp != -128 or np.float32(out_s) != np.float32(1.0 / 256):
                raise BuildError(f"op {op.name!r} (softmax): output must have scale 1/256 and zero "
                                 f"point -128")
            self.need(KERNEL_SOURCES["softmax"])
            depth = int(x.shape[-1])
            call = SoftmaxCall(x, y, x.nbytes // depth, depth, op.quant.beta_multiplier,
                               op.quant.beta_left_shift, op.quant.diff_min)
        elif isinstance(op, Concat):
            if op.axis not in (-1, len(y.shape) - 1):
                raise BuildError(f"op {op.name!r} (concat): only the channel axis is supported")
            xs = tuple(self.ref(n) for n in op.inputs)
            out_q = self.g.tensors[op.output].qparams
            for n in op.inputs:
                if not out_q.same_as(self.g.tensors[n].qparams):
                    raise BuildError(f"op {op.name!r} (concat): input {n!r} qparams differ from "
                                     f"the output's")
            chans = tuple(int(t.shape[-1]) for t in xs)
            if concat_in_place(self.g, op):
                # the arena placed the inputs side by side inside the output: no code
                off = y.offset
                for t in xs:
                    if t.offset != off:
                        raise BuildError(f"op {op.name!r} (concat): planner did not place "
                                         f"{t.name!r} in place")
                    off += t.nbytes
                call = AliasCall(xs[0], y)
            else:
                self.const(f"{cid}_chans", np.array(chans, np.int32), np.int32)
                call = ConcatCall(xs, y, y.nbytes // int(y.shape[-1]), chans)
        elif isinstance(op, Reshape):
            if x.offset != y.offset or x.nbytes != y.nbytes:
                raise BuildError(f"op {op.name!r} (reshape): planner did not alias its output")
            call = AliasCall(x, y)
        else:
            raise BuildError(f"op {op.name!r}: no C kernel for op kind {kind!r}")
        s = self.arena.scratch.get(op.name, 0)
        return Step(i, op.name, kind, cid, call,
                    self.arena.scratch_offsets.get(op.name) if s else None, s,
                    footprint.op_bytes(op, self.g, self.pointer_bytes))

    def compressed_fc(self, cid: str, op, x: TensorRef, y: TensorRef) -> FwcsFcCall:
        o, n_in = op.weight_shape
        if x.nbytes != n_in or y.nbytes != o:
            raise BuildError(f"op {op.name!r}: input {x.shape} / output {y.shape} do not match "
                             f"weight {op.weight_shape}")
        try:
            op.verify(n_in)
        except Exception as e:                                   # FormatError / GraphError
            raise BuildError(f"op {op.name!r}: invalid compressed weights: {e}") from None
        f = op.fmt
        self.need(KERNEL_SOURCES["compressed_fully_connected"])
        cp = f.cptr.astype(np.int64)
        lens = np.minimum(int(f.size), n_in - cp)
        rows = np.repeat(np.repeat(np.arange(o), np.diff(f.fidx.astype(np.int64))), lens)
        sums = np.bincount(rows, weights=f.arr.astype(np.float64), minlength=o)
        rq = self.requant(cid, op, o, np.rint(sums).astype(np.int64))
        per_channel = int(np.asarray(op.quant.multiplier).size > 1)
        cb = f.cptr.dtype.itemsize * 8
        fb = f.fidx.dtype.itemsize * 8
        if cb not in (8, 16) or fb not in (8, 16, 32):
            raise BuildError(f"op {op.name!r}: cptr / fidx dtypes {f.cptr.dtype} / {f.fidx.dtype} "
                             f"unsupported")
        return FwcsFcCall(x, y, self.conv_params(op), per_channel, n_in,
                          self.const(f"{cid}_arr", f.arr, np.int8),
                          self.const(f"{cid}_cptr", f.cptr, f.cptr.dtype),
                          self.const(f"{cid}_fidx", f.fidx, f.fidx.dtype),
                          int(f.size), 1, -(-n_in // int(f.size)), o, cb, fb, rq)

    def compressed(self, cid: str, op, x: TensorRef, y: TensorRef):
        self.check_dilation(op)
        f = op.fmt
        cout, kh, kw, cin = op.weight_shape
        try:
            op.verify(int(x.shape[-1]))
        except Exception as e:                                   # FormatError / GraphError
            raise BuildError(f"op {op.name!r}: invalid compressed weights: {e}") from None
        p = self.conv_params(op)
        name = op.format_name
        if name == "fwcs":
            sums = offsets.row_sums(f.arr, f.fidx, int(f.size))
        elif name == "csr":
            sums = offsets.row_sums(f.values, f.rowptr)
        elif name == "pattern":
            sums = offsets.row_sums(f.values, f.kptr, 4)
        else:
            sums = None
        rq = self.requant(cid, op, cout, sums)

        def bits(a, allowed, what):
            b = np.asarray(a).dtype.itemsize * 8
            if b not in allowed:
                raise BuildError(f"op {op.name!r}: {what} dtype {np.asarray(a).dtype} unsupported")
            return b

        if name == "fwcs":
            self.need(KERNEL_SOURCES["fwcs"])
            if _is_host(self.target):            # its host fast path calls the dense kernel
                self.need(KERNEL_SOURCES["conv2d"])
            cb = bits(f.cptr, (8, 16), "cptr")
            fb = bits(f.fidx, (8, 16, 32), "fidx")
            return FwcsCall(x, y, _dims(x.shape), _dims(y.shape), p,
                            self.const(f"{cid}_arr", f.arr, np.int8),
                            self.const(f"{cid}_cptr", f.cptr, f.cptr.dtype),
                            self.const(f"{cid}_fidx", f.fidx, f.fidx.dtype),
                            int(f.size), kh, kw, cout, cb, fb, rq)
        if name == "csr":
            self.need(KERNEL_SOURCES["csr"])
            cb = bits(f.col, (8, 16), "col")
            rb = bits(f.rowptr, (8, 16, 32), "rowptr")
            return CsrCall(x, y, _dims(x.shape), _dims(y.shape), p,
                           self.const(f"{cid}_values", f.values, np.int8),
                           self.const(f"{cid}_col", f.col, f.col.dtype),
                           self.const(f"{cid}_rowptr", f.rowptr, f.rowptr.dtype),
                           kh, kw, cin, cout, cb, rb, rq)
        if name == "pattern":
            if (kh, kw) != (3, 3):
                raise BuildError(f"op {op.name!r}: pattern kernels are 3x3 only, got {kh}x{kw}")
            self.need(KERNEL_SOURCES["pattern"])
            table = np.asarray(f.library, np.uint8)           # the layer's own library
            kb = bits(f.kptr, (8, 16, 32), "kptr")
            cb = bits(f.kidx, (8, 16), "kidx")
            return PatternCall(x, y, _dims(x.shape), _dims(y.shape), p,
                               self.const(f"{cid}_patterns", table, np.uint8), int(table.shape[0]),
                               self.const(f"{cid}_kptr", f.kptr, f.kptr.dtype),
                               self.const(f"{cid}_kchan", f.kidx, f.kidx.dtype),
                               self.const(f"{cid}_kpat", f.pid, np.uint8),
                               self.const(f"{cid}_values", f.values, np.int8), cin, cout, kb, cb,
                               rq)
        raise BuildError(f"op {op.name!r}: no C kernel for format {name!r}")


def _is_host(target) -> bool:
    from dtmm.codegen.platform import get_target

    return get_target(target).is_host


def _has_large_region(target) -> bool:
    from dtmm.codegen.platform import get_target

    return get_target(target).region_for("large") is not None


def plan_model(graph: Graph, target: str = "host", *, simd: str = "auto",
               isa: str | None = None) -> ModelPlan:
    """Plan the C model of a quantized ``graph`` for ``target`` (no files are written).

    ``simd`` picks the Cortex-M ISA path as in :func:`dtmm.codegen.platform.build`;
    ``isa`` (host only) emulates a Cortex-M path on the host (``"dsp"`` / ``"mve"``:
    ``-DDTMM_EMULATE_DSP`` / ``-DDTMM_EMULATE_MVE``, the kernels' bit-exact C models of
    each intrinsic), which the host backend uses for speed.

    Raises :class:`~dtmm.errors.BuildError` naming the op for anything the C kernels
    cannot run (unquantized tensors, dilation, several inputs/outputs, unknown ops).
    """
    from dtmm.codegen.platform import get_target

    tspec = get_target(target)
    tname = tspec.name
    if isa is not None and not tspec.is_host:
        raise BuildError(f"isa= is for host builds only; {tname} compiles its own ISA path")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise BuildError(f"code generation supports one input and one output, got "
                         f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs")
    if graph.inputs[0] in graph.outputs:
        raise BuildError("the graph output is its input: nothing to generate")
    for name, t in graph.tensors.items():
        if t.dtype != "int8" or t.qparams is None:
            raise BuildError(f"tensor {name!r} is {t.dtype} without int8 qparams: quantize the "
                             f"graph first (dtmm.quant.quantize_graph)")
    pl = _Planner(graph, target, simd, isa)
    steps = tuple(pl.step(i, op) for i, op in enumerate(graph.ops))
    consts = pl.consts
    notes: list[str] = []
    large_ok = _has_large_region(target)
    total = sum(c.nbytes for c in consts)
    if large_ok and total > LARGE_THRESHOLD:
        consts = [ConstArray(c.cname, c.data, c.nbytes >= _LARGE_MIN_ARRAY) for c in consts]
        notes.append(f"constants ({total} B) placed in the large-data region")
    arena_large = bool(large_ok and pl.arena.size > LARGE_THRESHOLD)
    if arena_large:
        notes.append(f"arena ({pl.arena.size} B) placed in the large-data region")
    in_s, in_zp = _qp(graph, graph.inputs[0])
    out_s, out_zp = _qp(graph, graph.outputs[0])
    sources = tuple(sorted(pl.sources))
    headers = KERNEL_HEADERS + (("dtmm_softmax_s8.h",) if "dtmm_softmax_s8.c" in sources else ())
    return ModelPlan(target=tname, simd=simd, arena=pl.arena, arena_large=arena_large,
                     input=pl.ref(graph.inputs[0]), output=pl.ref(graph.outputs[0]),
                     input_scale=in_s, input_zero_point=in_zp, output_scale=out_s,
                     output_zero_point=out_zp, steps=steps, consts=tuple(consts),
                     kernel_sources=sources, kernel_headers=headers, notes=tuple(notes),
                     target_spec=tspec)
