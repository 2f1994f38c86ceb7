"""Post-training int8 quantization of a float IR graph, following the TFLite int8 spec.

* activations: per-tensor asymmetric int8, ranges calibrated on data;
* conv / depthwise weights: per-output-channel symmetric int8 in [-127, 127];
  fully connected weights: per-tensor symmetric (as TFLite's FULLY_CONNECTED);
* bias: int32 with scale ``input_scale * weight_scale`` and zero point 0;
* requantization constants (multiplier, shift) computed from the float32 scales
  exactly as TFLite Micro computes them at Prepare time;
* max/avg pool and reshape keep their input's parameters; concat inputs and
  output share one set; softmax outputs use scale 1/256, zero point -128.

Example:
    >>> import numpy as np, torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> g = capture(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), (1, 4, 4))
    >>> qg = quantize_graph(g, [np.random.default_rng(0).random((8, 4, 4, 1), np.float32)])
    >>> qg.ops[0].weight.dtype, qg.ops[0].bias.dtype, qg.is_quantized
    (dtype('int8'), dtype('int32'), True)
"""
from __future__ import annotations

import copy
from typing import Iterable

import numpy as np

from dtmm.errors import QuantizationError
from dtmm.graph.float_exec import run_float_all
from dtmm.graph.ir import (Add, AddQuant, AvgPool2D, Concat, ConvQuant, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, QParams, Reshape, Softmax,
                           SoftmaxQuant, WEIGHTED_OPS)
from dtmm.quant import arith
from dtmm.quant.calibrate import Observer, choose_qparams

SOFTMAX_QPARAMS = QParams.per_tensor(1.0 / 256.0, -128)


def symmetric_weight_scales(w: np.ndarray, axis: int | None) -> np.ndarray:
    """float32 scales ``max|w| / 127`` per channel along ``axis`` (or per tensor if None).

    An all-zero channel gets scale 1/127 so that its bias keeps a sensible resolution.
    """
    if axis is None:
        m = np.array([np.abs(w).max()]) if w.size else np.array([0.0])
    else:
        m = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    m = np.where(m > 0, m, 1.0)
    return (m / 127.0).astype(np.float32)


def quantize_weights(w: np.ndarray, scales: np.ndarray, axis: int | None) -> np.ndarray:
    """Round ``w / scale`` half away from zero and clamp to [-127, 127]."""
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    s = scales.astype(np.float64).reshape(shape)
    q = np.sign(w) * np.floor(np.abs(w.astype(np.float64) / s) + 0.5)
    return np.clip(q, -127, 127).astype(np.int8)


def quantize_bias(b: np.ndarray, in_scale: float, w_scales: np.ndarray) -> np.ndarray:
    """int32 bias at scale ``float32(in_scale * w_scale)``; raises if it overflows int32."""
    bs = (np.float32(in_scale) * w_scales.astype(np.float32)).astype(np.float64)
    q = np.sign(b) * np.floor(np.abs(b.astype(np.float64) / bs) + 0.5)
    if np.any(np.abs(q) > arith.INT32_MAX):
        raise QuantizationError("bias does not fit int32 at scale input_scale * weight_scale")
    return q.astype(np.int32)


def quantize_input(x: np.ndarray, qp: QParams) -> np.ndarray:
    """Quantize a float NHWC batch with the graph input's parameters (round half away)."""
    v = np.asarray(x, np.float64) / qp.s
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + qp.zp
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    return (q.astype(np.float32) - qp.zp) * np.float32(qp.s)


class _Groups:
    """Union-find over tensor names that must share quantization parameters."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def calibrate(graph: Graph, batches: Iterable[np.ndarray], method: str = "minmax",
              percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """Run the float graph on NHWC float batches and return each tensor's range."""
    obs = Observer(method, percentile)
    n = 0
    for xb in batches:
        if len(xb) == 0:
            continue
        obs.update(run_float_all(graph, xb))
        n += len(xb)
    if n == 0:
        raise QuantizationError("no calibration data: the calibration set is empty")
    return obs.ranges()


def assign_qparams(graph: Graph, ranges: dict[str, tuple[float, float]]) -> dict[str, QParams]:
    """Activation qparams per tensor, honouring the ops that require shared parameters.

    Tensors that must share parameters (pool / reshape in and out, concat inputs and
    output) form a group whose range is the union of its members' ranges; a tensor
    without a range of its own takes its group's. Softmax outputs get the fixed
    :data:`SOFTMAX_QPARAMS`. A tensor whose group has no range at all is an error.
    """
    groups = _Groups()
    fixed: dict[str, QParams] = {}
    for op in graph.ops:
        if isinstance(op, (MaxPool2D, AvgPool2D, Reshape)):
            groups.union(op.output, op.inputs[0])
        elif isinstance(op, Concat):
            for i in op.inputs:
                groups.union(i, op.output)
        elif isinstance(op, Softmax):
            fixed[op.output] = SOFTMAX_QPARAMS
    span: dict[str, tuple[float, float]] = {}
    for name in graph.tensors:
        if name not in ranges:
            continue
        root = groups.find(name)
        lo, hi = ranges[name]
        plo, phi = span.get(root, (lo, hi))
        span[root] = (min(lo, plo), max(hi, phi))
    out = {}
    for name in graph.tensors:
        if name in fixed:
            out[name] = fixed[name]
            continue
        root = groups.find(name)
        if root not in span:
            raise QuantizationError(f"tensor {name!r} was not observed during calibration")
        out[name] = choose_qparams(*span[root])
    return out


def ranges_by_tensor(graph: Graph, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Map ranges keyed by IR op name (or ``"<input>"``) to the op's output tensor name.

    These are the keys :func:`dtmm.quant.fake.learned_ranges` returns. A key that names
    no op of ``graph`` raises :class:`QuantizationError` (a QAT model and a graph that
    do not belong together).

    Example:
        >>> import torch.nn as nn
        >>> from dtmm.graph.capture import capture
        >>> g = capture(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), (1, 4, 4))
        >>> ranges_by_tensor(g, {"<input>": (0.0, 1.0), "0": (0.0, 2.0)})
        {'input': (0.0, 1.0), '0': (0.0, 2.0)}
    """
    from dtmm.quant.fake import INPUT_KEY

    ops = {op.name: op for op in graph.ops}
    out = {}
    for key, (lo, hi) in ranges.items():
        if key == INPUT_KEY:
            out[graph.inputs[0]] = (float(lo), float(hi))
        elif key in ops:
            out[ops[key].output] = (float(lo), float(hi))
        else:
            raise QuantizationError(f"a learned range is keyed {key!r}, which names no op of the graph "
                                    f"(ops: {', '.join(list(ops)[:8])}{', ...' if len(ops) > 8 else ''})")
    return out


def quantize_graph(graph: Graph, calibration: Iterable[np.ndarray] | None = None, method: str = "minmax",
                   percentile: float = 99.99, *, ranges: dict[str, tuple[float, float]] | None = None) -> Graph:
    """Return an int8 copy of a float graph, calibrated on NHWC float batches.

    ``ranges``: activation ranges learned elsewhere (quantization-aware training),
    keyed by IR op name or ``"<input>"`` as :func:`dtmm.quant.fake.learned_ranges`
    returns them; they replace the calibrated range of those tensors. With ``ranges``,
    ``calibration`` may be ``None`` when every tensor is covered by a range or by its
    parameter-sharing group (pools, reshapes, concat).
    """
    if graph.is_quantized:
        raise QuantizationError("graph is already quantized")
    if calibration is None and ranges is None:
        raise QuantizationError("no calibration data and no learned ranges: nothing to quantize with")
    observed = calibrate(graph, calibration, method, percentile) if calibration is not None else {}
    if ranges is not None:
        observed.update(ranges_by_tensor(graph, ranges))
    return apply_qparams(graph, assign_qparams(graph, observed))


def apply_qparams(graph: Graph, qparams: dict[str, QParams]) -> Graph:
    """Quantize weights/bias and compute every op's integer constants for given tensor qparams."""
    q = copy.deepcopy(graph)
    for name, t in q.tensors.items():
        t.qparams = qparams[name]
        t.dtype = "int8"
    for op in q.ops:
        in_q = q.tensors[op.inputs[0]].qparams
        out_q = q.tensors[op.output].qparams
        where = f"op {op.name!r} ({op.source or op.kind})"
        if isinstance(op, WEIGHTED_OPS):
            axis = None if isinstance(op, FullyConnected) else (3 if isinstance(op, DepthwiseConv2D) else 0)
            ws = symmetric_weight_scales(op.weight, axis)
            op.weight = quantize_weights(op.weight, ws, axis)
            try:
                op.bias = quantize_bias(op.bias, in_q.s, ws)
            except QuantizationError as e:
                raise QuantizationError(f"{where}: {e}") from None
            if isinstance(op, FullyConnected):
                m, s = arith.fc_multiplier(in_q.s, ws[0], out_q.s)
                mult, shift = np.array([m], np.int32), np.array([s], np.int32)
            else:
                mult, shift = arith.conv_multipliers(in_q.s, ws, out_q.s)
            op.quant = ConvQuant(w_scale=ws, multiplier=mult, shift=shift)
        elif isinstance(op, Add):
            q2 = q.tensors[op.inputs[1]].qparams
            op.quant = AddQuant(**arith.add_params(in_q.s, q2.s, out_q.s))
        elif isinstance(op, Softmax):
            op.quant = SoftmaxQuant(**arith.softmax_params(in_q.s, op.beta))
        elif isinstance(op, (MaxPool2D, AvgPool2D, Reshape)):
            if not in_q.same_as(out_q):
                raise QuantizationError(f"{where}: output qparams must equal input qparams")
        elif isinstance(op, Concat):
            if any(not q.tensors[i].qparams.same_as(out_q) for i in op.inputs):
                raise QuantizationError(f"{where}: all concat inputs must share the output's qparams")
    q.validate()
    return q
