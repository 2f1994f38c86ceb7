"""The read-time validator: every field of a model file checked before anything runs.

:func:`dtmm.tflite.reader.read_tflite` calls these checks while it converts a file,
before the reference executor, TFLite Micro or the code generator ever sees the
graph, so a damaged or hostile file is refused with a
:class:`~dtmm.errors.ModelFileError` naming the operator, the tensor, the field and
the value (and the file offset of constant data), never a plain Python exception
later and never undefined behaviour in a C kernel.

What is checked (TFLite / TFLite Micro rules, plus what dtmm's kernels rely on):

* **tensors** (:func:`check_activation_shape`, :func:`check_qparams`): every
  dimension in ``[1, MAX_DIM]``, at most :data:`MAX_ACTIVATION_BYTES` per activation;
  scales finite and > 0 (float32), activation zero points in ``[-128, 127]``,
  weight and bias zero points 0, one scale per channel (or one) along the right axis;
* **ops** (:func:`check_op`): shapes consistent with the op (weight layout, kernel,
  stride, pads, dilation and output size; channel counts; reshape sizes; concat
  axes); equal input/output quantization where TFLite Micro requires it (max/avg
  pool, reshape, concatenation); softmax output ``1/256, -128`` and a finite positive
  ``beta``; fused-activation ranges computable; the requantization constants TFLite
  Micro derives (:func:`dtmm.tflite.prepare.tflm_quant`) representable: conv / depthwise
  / fully connected multipliers with a shift in ``[-31, 30]``, ADD and SOFTMAX
  multipliers in range; and for conv, depthwise and fully connected, as for dtmm's
  compressed convs, no int32 overflow for any int8 input: per output channel
  ``(|bias| + max|x - zp| * sum|w|) * 2**max(shift, 0) <= 2**31 - 1``;
* **the graph** (:func:`check_graph`): operators in execution order (an input
  produced by a later operator, which a cycle needs, is refused), every tensor
  produced once, every graph output produced by an operator (never a graph input).

Example:
    >>> import numpy as np
    >>> check_qparams(np.array([0.5], np.float32), np.array([128]), where="tensor 3 'x'")
    Traceback (most recent call last):
    ...
    dtmm.errors.ModelFileError: tensor 3 'x': quantization zero_point[0] = 128 is outside the int8 range [-128, 127]
    >>> check_qparams(np.array([np.inf], np.float32), np.array([0]), where="tensor 3 'x'")
    Traceback (most recent call last):
    ...
    dtmm.errors.ModelFileError: tensor 3 'x': quantization scale[0] = inf is not a finite float32 > 0
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from dtmm.errors import GraphError, ModelFileError
from dtmm.graph.ir import (Activation, Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, Op, Reshape, Softmax)
from dtmm.quant import arith

__all__ = ["MAX_DIM", "MAX_ACTIVATION_BYTES", "check_qparams", "check_activation_shape",
           "check_op", "check_graph", "accumulator_bound"]

#: Largest tensor dimension (the C kernels' headers hold dimensions as uint16).
MAX_DIM = 0xFFFF
#: Largest activation tensor (int8 bytes, batch 1). Far above any microcontroller's SRAM;
#: it only keeps a damaged shape from making the executors allocate gigabytes.
MAX_ACTIVATION_BYTES = 16 << 20
#: Shift range of a conv / fully connected requantization: TFLite's
#: MultiplyByQuantizedMultiplier shifts the int32 accumulator left by up to 30 bits
#: (31 would overflow any non-zero value) and right by up to 31.
SHIFT_MIN, SHIFT_MAX = -31, 30

Locate = Callable[..., str]
"""``locate(op_name, field, index=None)`` -> ``" [tensor 7 'conv/bias', bias[3] at file offset
1246]"`` (the element's bytes when ``index`` is given) or ``""`` when unknown."""


def _no_location(op_name: str, field: str, index: int | None = None) -> str:
    return ""


# ----------------------------------------------------------------------------- tensors


def check_qparams(scale: np.ndarray, zero_point: np.ndarray, *, where: str, role: str = "activation",
                  channels: int | None = None) -> None:
    """Check one tensor's quantization (``scale`` float32, ``zero_point`` as read, int64).

    ``role``: ``"activation"`` (per-tensor, zero point in int8), ``"weight"`` or ``"bias"``
    (zero points 0; one scale or ``channels`` scales).
    """
    scale = np.atleast_1d(np.asarray(scale))
    zp = np.atleast_1d(np.asarray(zero_point))
    if scale.size == 0:
        raise ModelFileError(f"{where}: quantization has no scale")
    if zp.size != scale.size:
        raise ModelFileError(f"{where}: quantization has {scale.size} scales but {zp.size} "
                             f"zero points")
    with np.errstate(all="ignore"):
        s32 = scale.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(s32) | ~(s32 > 0))
    if bad.size:
        i = int(bad[0])
        raise ModelFileError(f"{where}: quantization scale[{i}] = {scale[i]} is not a finite "
                             f"float32 > 0")
    if role == "activation":
        if scale.size != 1:
            raise ModelFileError(f"{where}: {scale.size} scales; activations need per-tensor "
                                 f"quantization (one scale, one zero point)")
        z = int(zp[0])
        if not -128 <= z <= 127:
            raise ModelFileError(f"{where}: quantization zero_point[0] = {z} is outside the int8 "
                                 f"range [-128, 127]")
        return
    nz = np.flatnonzero(zp != 0)
    if nz.size:
        i = int(nz[0])
        raise ModelFileError(f"{where}: quantization zero_point[{i}] = {int(zp[i])}; {role} zero "
                             f"points must be 0 (symmetric int8 {role}s)")
    if channels is not None and scale.size not in (1, channels):
        raise ModelFileError(f"{where}: {scale.size} {role} scales for {channels} channels "
                             f"(expected 1 or {channels})")


def check_activation_shape(shape, *, where: str) -> None:
    """Every dimension in ``[1, MAX_DIM]`` and at most :data:`MAX_ACTIVATION_BYTES` in all."""
    dims = [int(d) for d in shape]
    for i, d in enumerate(dims):
        if not 1 <= d <= MAX_DIM:
            raise ModelFileError(f"{where}: shape {dims}: dimension {i} = {d} is outside "
                                 f"[1, {MAX_DIM}]")
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if n > MAX_ACTIVATION_BYTES:
        raise ModelFileError(f"{where}: shape {dims} holds {n:,} int8 values, more than dtmm "
                             f"accepts for one activation ({MAX_ACTIVATION_BYTES:,})")


# ----------------------------------------------------------------------------- ops


def _out_hw(x, kernel, stride, pads, dil) -> tuple[int, int]:
    t, b, l, r = pads
    oh = (x[0] + t + b - ((kernel[0] - 1) * dil[0] + 1)) // stride[0] + 1
    ow = (x[1] + l + r - ((kernel[1] - 1) * dil[1] + 1)) // stride[1] + 1
    return oh, ow


def _geometry(graph: Graph, op: Op, where: str) -> None:
    """Shapes and window parameters the executors rely on."""
    from dtmm.graph.compressed import CompressedConv2D

    x = tuple(graph.tensors[op.inputs[0]].shape)
    y = tuple(graph.tensors[op.output].shape)
    if isinstance(op, (Conv2D, DepthwiseConv2D, CompressedConv2D, MaxPool2D, AvgPool2D)):
        kernel = tuple(int(k) for k in op.kernel)
        dil = tuple(getattr(op, "dilation", (1, 1)))
        if (len(x) != 3 or len(y) != 3 or min(*op.stride, *dil, *kernel) < 1
                or min(op.pads) < 0 or max(*op.stride, *dil, *kernel, *op.pads) > MAX_DIM):
            raise ModelFileError(f"{where}: input {list(x)} / output {list(y)} must be (H, W, C); "
                                 f"stride {tuple(op.stride)}, dilation {dil} and kernel {kernel} "
                                 f"in [1, {MAX_DIM}]; pads {tuple(op.pads)} in [0, {MAX_DIM}]")
        oh, ow = _out_hw(x, kernel, op.stride, op.pads, dil)
        if (oh, ow) != y[:2]:
            raise ModelFileError(f"{where}: output shape {list(y)} does not follow from input "
                                 f"{list(x)}, kernel {kernel}, stride {tuple(op.stride)}, pads "
                                 f"{tuple(op.pads)}, dilation {dil} (expected {oh}x{ow})")
        if isinstance(op, (MaxPool2D, AvgPool2D)):
            if y[2] != x[2]:
                raise ModelFileError(f"{where}: {x[2]} input channels but {y[2]} output channels")
            t, b, l, r = op.pads
            if max(t, b) >= kernel[0] or max(l, r) >= kernel[1]:
                raise ModelFileError(f"{where}: pads {tuple(op.pads)} of a {kernel[0]}x{kernel[1]}"
                                     f" window leave windows entirely in the padding")
    elif isinstance(op, Reshape):
        if int(np.prod(x)) != int(np.prod(y)):
            raise ModelFileError(f"{where}: reshape of {list(x)} to {list(y)} changes the size")
    elif isinstance(op, Concat):
        shapes = [tuple(graph.tensors[i].shape) for i in op.inputs]
        ax = op.axis % len(y) if -len(y) <= op.axis < len(y) else None

        def drop(s):
            return s[:ax] + s[ax + 1:]
        if ax is None or any(len(s) != len(y) or drop(s) != drop(y) for s in shapes) or (
                sum(s[ax] for s in shapes) != y[ax]):
            raise ModelFileError(f"{where}: cannot concatenate {[list(s) for s in shapes]} into "
                                 f"{list(y)} along axis {op.axis}")
    elif isinstance(op, (Add, Softmax)) and x != y:
        raise ModelFileError(f"{where}: output shape {list(y)} != input shape {list(x)}")
    elif isinstance(op, Add) and tuple(graph.tensors[op.inputs[1]].shape) != x:
        raise ModelFileError(f"{where}: input shapes {list(x)} and "
                             f"{list(graph.tensors[op.inputs[1]].shape)} differ (no broadcasting)")

    if isinstance(op, Conv2D):
        w = op.weight
        if w.ndim != 4 or w.shape[3] != x[-1] or w.shape[0] != y[-1]:
            raise ModelFileError(f"{where}: weight shape {list(w.shape)} is not OHWI for "
                                 f"{x[-1]} input and {y[-1]} output channels")
    elif isinstance(op, DepthwiseConv2D):
        w = op.weight
        m = int(op.depth_multiplier)
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != y[-1] or m < 1 or x[-1] * m != y[-1]:
            raise ModelFileError(f"{where}: weight shape {list(w.shape)} / depth multiplier {m} "
                                 f"do not map {x[-1]} input channels to {y[-1]}")
    elif isinstance(op, FullyConnected):
        w = op.weight
        if w.ndim != 2 or len(y) != 1 or y[0] != w.shape[0] or int(np.prod(x)) != w.shape[1]:
            raise ModelFileError(f"{where}: weight shape {list(w.shape)} does not map input "
                                 f"{list(x)} to output {list(y)}")
    if isinstance(op, (Conv2D, DepthwiseConv2D, FullyConnected)):
        nout = op.weight.shape[3] if isinstance(op, DepthwiseConv2D) else op.weight.shape[0]
        if op.weight.dtype != np.int8:
            raise ModelFileError(f"{where}: weight type {op.weight.dtype}, expected int8")
        if op.bias is None or op.bias.dtype != np.int32 or op.bias.shape != (nout,):
            raise ModelFileError(f"{where}: bias must be int32 of shape ({nout},), got "
                                 f"{getattr(op.bias, 'dtype', None)} {getattr(op.bias, 'shape', None)}")
        ws = np.atleast_1d(np.asarray(op.quant.w_scale)) if op.quant is not None else np.zeros(0)
        if ws.size not in (1, nout):
            raise ModelFileError(f"{where}: {ws.size} weight scales for {nout} output channels")


def _equal_qparams(graph: Graph, op: Op, where: str) -> None:
    """TFLite Micro's pools, reshape and concatenation move raw int8 values: the input and
    output quantization must be identical."""
    if not isinstance(op, (MaxPool2D, AvgPool2D, Reshape, Concat)):
        return
    out_q = graph.tensors[op.output].qparams
    for name in op.inputs:
        q = graph.tensors[name].qparams
        if not out_q.same_as(q):
            raise ModelFileError(f"{where}: input {name!r} has scale {q.s!r}, zero point {q.zp} but "
                                 f"output {op.output!r} has scale {out_q.s!r}, zero point "
                                 f"{out_q.zp}; TFLite Micro requires them equal for {op.kind}")


def accumulator_bound(weight_abs_sum: np.ndarray, bias: np.ndarray, in_zp: int,
                      shift: np.ndarray) -> np.ndarray:
    """Per output channel, the largest ``|acc| * 2**max(shift, 0)`` any int8 input can give
    (float64; exact below 2**53, and anything near that is refused anyway).

    >>> accumulator_bound(np.array([100.0]), np.array([5]), -128, np.array([1])).tolist()
    [51010.0]
    """
    xmax = max(abs(-128 - int(in_zp)), abs(127 - int(in_zp)))
    return ((np.abs(np.asarray(bias, np.float64)) + float(xmax) * np.asarray(weight_abs_sum, np.float64))
            * np.exp2(np.maximum(np.asarray(shift, np.int64), 0).astype(np.float64)))


def _weight_abs_sum(op: Op) -> np.ndarray:
    w = np.abs(np.asarray(op.weight, np.float64))
    if isinstance(op, DepthwiseConv2D):
        return w.reshape(-1, w.shape[3]).sum(axis=0)
    return w.reshape(w.shape[0], -1).sum(axis=1)


def _check_constants(graph: Graph, op: Op, quant, where: str, locate: Locate) -> None:
    """Representable requantization constants and no int32 overflow."""
    if not isinstance(op, (Conv2D, DepthwiseConv2D, FullyConnected)):
        return
    shift = np.asarray(quant.shift, np.int64).ravel()
    in_q = graph.tensors[op.inputs[0]].qparams
    out_s = graph.tensors[op.output].qparams.s
    ws = np.atleast_1d(np.asarray(quant.w_scale, np.float32))
    bad = np.flatnonzero((shift < SHIFT_MIN) | (shift > SHIFT_MAX))
    if bad.size:
        c = int(bad[0])
        wsc = float(ws[c if ws.size > 1 else 0])
        raise ModelFileError(f"{where}: input scale {in_q.s!r} x weight scale[{c}] {wsc!r} / output "
                             f"scale {out_s!r} = {in_q.s * wsc / out_s:.6g} needs a requantization "
                             f"shift of {int(shift[c])}, outside [{SHIFT_MIN}, {SHIFT_MAX}]"
                             f"{locate(op.name, 'weight')}")
    nout = op.bias.size
    sh = np.broadcast_to(shift, (nout,)) if shift.size == 1 else shift
    bound = accumulator_bound(_weight_abs_sum(op), op.bias, in_q.zp, sh)
    bad = np.flatnonzero(bound > arith.INT32_MAX)
    if bad.size:
        o = int(bad[0])
        wsum = int(_weight_abs_sum(op)[o])
        raise ModelFileError(f"{where}: output channel {o} can overflow the int32 accumulator: "
                             f"|bias[{o}]| = {abs(int(op.bias[o]))}, sum |weight| = {wsum}, input "
                             f"offset up to {max(abs(-128 - in_q.zp), abs(127 - in_q.zp))}, left "
                             f"shift {max(int(sh[o]), 0)}{locate(op.name, 'bias', o)}")


def _activation_range(graph: Graph, op: Op, where: str) -> None:
    act = getattr(op, "activation", None)
    if act is None:
        return
    q = graph.tensors[op.output].qparams
    try:
        lo, hi = arith.activation_range(act, q.s, q.zp)
    except (ValueError, OverflowError) as e:
        raise ModelFileError(f"{where}: fused activation {Activation(act).value} cannot be "
                             f"applied with output scale {q.s!r} ({e})") from None
    if lo > hi:
        raise ModelFileError(f"{where}: fused activation {Activation(act).value} gives an empty "
                             f"output range [{lo}, {hi}]")


def check_op(graph: Graph, op: Op, *, where: str, locate: Locate = _no_location):
    """Validate ``op`` (its tensors already in ``graph``) and return the requantization
    constants TFLite Micro derives for it (:func:`dtmm.tflite.prepare.tflm_quant`; None
    for ops without any). Raises ModelFileError naming ``where``, the field and the value.
    """
    from dtmm.graph.compressed import CompressedConv2D
    from dtmm.tflite.prepare import tflm_quant

    for name in [*op.inputs, op.output]:
        t = graph.tensors.get(name)
        if t is None or t.qparams is None or t.dtype != "int8":
            raise ModelFileError(f"{where}: tensor {name!r} is not an int8 quantized activation")
    _geometry(graph, op, where)
    _equal_qparams(graph, op, where)
    if isinstance(op, Softmax):
        q = graph.tensors[op.output].qparams
        if q.zp != -128 or np.float32(q.s) != np.float32(1.0 / 256):
            raise ModelFileError(f"{where}: output {op.output!r} has scale {q.s!r}, zero point "
                                 f"{q.zp}; TFLite Micro's int8 softmax needs 1/256 and -128")
        if not (np.isfinite(op.beta) and op.beta > 0):
            raise ModelFileError(f"{where}: softmax beta = {op.beta!r} is not a finite number > 0")
    _activation_range(graph, op, where)
    if isinstance(op, CompressedConv2D):
        return None                      # checked in full by dtmm.tflite.custom_ops
    try:
        quant = tflm_quant(graph, op)
    except (ValueError, OverflowError, GraphError, ZeroDivisionError) as e:
        scales = ", ".join(f"{n!r} scale {graph.tensors[n].qparams.s!r}"
                           for n in [*op.inputs, op.output])
        raise ModelFileError(f"{where}: the requantization constants TFLite Micro derives from "
                             f"the scales ({scales}) are out of range: {e}") from None
    if quant is not None:
        _check_constants(graph, op, quant, where, locate)
    return quant


# ----------------------------------------------------------------------------- graph


def check_graph(graph: Graph, op_where: Mapping[str, str] | None = None) -> None:
    """Whole-graph rules: execution order (no cycles), single producers, outputs.

    ``op_where`` maps op names to how errors should name them (``"operator 3 (CONV_2D)"``).
    """
    op_where = op_where or {}
    if not graph.inputs:
        raise ModelFileError("the graph has no input")
    if not graph.outputs:
        raise ModelFileError("the graph has no output")
    for what, names in (("input", graph.inputs), ("output", graph.outputs)):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ModelFileError(f"graph {what} {dup[0]!r} is listed {names.count(dup[0])} times")
    for name in graph.outputs:
        if name in graph.inputs:
            raise ModelFileError(f"graph output {name!r} is also a graph input: the model computes "
                                 f"nothing")
    producer = {}
    for k, op in enumerate(graph.ops):
        where = op_where.get(op.name, f"op {k} ({op.name!r}, {op.kind})")
        if op.output in graph.inputs:
            raise ModelFileError(f"{where}: writes graph input {op.output!r}")
        if op.output in producer:
            raise ModelFileError(f"{where}: tensor {op.output!r} is already produced by "
                                 f"{producer[op.output][1]}")
        producer[op.output] = (k, where)
    for k, op in enumerate(graph.ops):
        where = op_where.get(op.name, f"op {k} ({op.name!r}, {op.kind})")
        for i in op.inputs:
            if i in graph.inputs:
                continue
            if i not in producer:
                raise ModelFileError(f"{where}: input {i!r} is neither a graph input nor produced "
                                     f"by an operator")
            if producer[i][0] >= k:
                raise ModelFileError(f"{where}: input {i!r} is produced by {producer[i][1]}, which "
                                     f"comes later: operators must be in execution order (a "
                                     f"cycle cannot be)")
    for name in graph.outputs:
        if name not in producer:
            raise ModelFileError(f"graph output {name!r} is not produced by any operator")
    try:
        graph.validate()
    except GraphError as e:
        raise ModelFileError(f"the graph is inconsistent: {e}") from None
