"""NumPy integer reference executor: the definition of a correct int8 kernel in dtmm.

:func:`run_reference` runs a *quantized* IR graph (see :mod:`dtmm.graph.ir`) on an
int8 NHWC batch with exactly the integer arithmetic of TensorFlow Lite Micro's
reference kernels (checked byte for byte against the TFLM interpreter in
``tests/test_tflite.py``). Every C kernel dtmm emits must match it exactly.

The code is deliberately plain: each op is a short function over whole batches.
Convolution and fully connected layers multiply *integers* in float64 through
BLAS; this is exact because every operand and partial sum is an integer of
magnitude below 2**53 (an int8 weight times an offset input is below 2**15, so a
sum of up to 2**38 such terms is exact), and it is much faster than int64 einsum.
The int32 accumulator of the C kernels is checked for overflow (``OverflowError``).

Example:
    >>> import numpy as np
    >>> from dtmm.graph.ir import Graph, TensorSpec, QParams, MaxPool2D
    >>> g = Graph()
    >>> q = QParams.per_tensor(0.1, 0)
    >>> _ = g.add_tensor(TensorSpec("x", (4, 4, 1), "int8", q))
    >>> _ = g.add_tensor(TensorSpec("y", (2, 2, 1), "int8", q))
    >>> _ = g.add_op(MaxPool2D("pool", ["x"], "y"))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> x = np.arange(16, dtype=np.int8).reshape(1, 4, 4, 1)
    >>> run_reference(g, x)[0, :, :, 0].tolist()
    [[5, 7], [13, 15]]
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dtmm import formats as _formats
from dtmm.errors import GraphError
from dtmm.graph.compressed import CompressedConv2D, CompressedFullyConnected
from dtmm.graph.ir import (Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D, FullyConnected,
                           Graph, MaxPool2D, Op, Reshape, Softmax, TensorSpec)
from dtmm.quant import arith

INT32_MIN, INT32_MAX = arith.INT32_MIN, arith.INT32_MAX

__all__ = ["run_reference", "run_float", "conv_output_size"]


# ----------------------------------------------------------------------------- helpers


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                     dilation: int = 1) -> int:
    """Output length of a conv/pool window along one axis with explicit pads.

    >>> conv_output_size(28, 3, 2, 1, 1)
    14
    """
    eff = (kernel - 1) * dilation + 1
    return (size + pad_before + pad_after - eff) // stride + 1


def _qp(graph: Graph, name: str) -> tuple[float, int]:
    t = graph.tensors[name]
    if t.qparams is None:
        raise GraphError(f"tensor {name!r} has no qparams: run_reference needs a quantized graph")
    return t.qparams.s, t.qparams.zp


def _out_spec(graph: Graph, op: Op) -> TensorSpec:
    return graph.tensors[op.output]


def _check_shape(op: Op, spec: TensorSpec, y: np.ndarray) -> np.ndarray:
    if tuple(y.shape[1:]) != tuple(spec.shape):
        raise GraphError(f"op {op.name!r} ({op.kind}): computed output shape {tuple(y.shape[1:])} "
                         f"!= declared {tuple(spec.shape)}")
    return y


def _check_acc(op: Op, acc: np.ndarray) -> None:
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(f"op {op.name!r} ({op.kind}): int32 accumulator overflows "
                            f"(range [{acc.min()}, {acc.max()}])")


def _requantize(op: Op, graph: Graph, acc: np.ndarray) -> np.ndarray:
    """Per-channel (last axis) MultiplyByQuantizedMultiplier + output offset + clamp."""
    if op.quant is None:
        raise GraphError(f"op {op.name!r} ({op.kind}) has no quant constants")
    _check_acc(op, acc)
    out_s, out_zp = _qp(graph, op.output)
    mult = np.asarray(op.quant.multiplier, np.int64)
    shift = np.asarray(op.quant.shift, np.int64)
    y = arith.multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    lo, hi = arith.activation_range(op.activation, out_s, out_zp)
    return np.clip(y, lo, hi).astype(np.int8)


def _pad_offset_input(x: np.ndarray, zp: int, pads) -> np.ndarray:
    """``x - zp`` as float64, zero padded: identical to padding ``x`` with its zero point."""
    t, b, l, r = pads
    xo = x.astype(np.float64) - zp
    return np.pad(xo, ((0, 0), (t, b), (l, r), (0, 0)))


def _windows(xp: np.ndarray, kh: int, kw: int, stride, dilation, oh: int, ow: int):
    """Yield ``(i, j, view)``: the input samples kernel tap (i, j) sees, shape (N, oh, ow, C)."""
    sh, sw = stride
    dh, dw = dilation
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            yield i, j, xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw, :]


def _exact_int(acc: np.ndarray) -> np.ndarray:
    if np.abs(acc).max(initial=0) >= 2.0 ** 53:
        raise OverflowError("accumulator exceeds 2**53: float64 integer arithmetic not exact")
    return acc.astype(np.int64)


# ----------------------------------------------------------------------------- ops


def _conv2d(op: Conv2D, graph: Graph, x: np.ndarray) -> np.ndarray:
    _, in_zp = _qp(graph, op.inputs[0])
    spec = _out_spec(graph, op)
    oh, ow, cout = spec.shape
    kh, kw = op.kernel
    cin = x.shape[-1]
    # (KH*KW*C_in, C_out): row (i, j, c) holds weight[:, i, j, c], matching im2col below.
    w = op.weight.astype(np.float64).reshape(cout, kh * kw * cin).T
    xp = _pad_offset_input(x, in_zp, op.pads)
    acc = np.empty((x.shape[0], oh, ow, cout), np.float64)
    # im2col in batch chunks of ~32 MiB, then one GEMM per chunk.
    chunk = max(1, (32 << 20) // max(1, oh * ow * kh * kw * cin * 8))
    for n0 in range(0, x.shape[0], chunk):
        wins = list(_windows(xp[n0:n0 + chunk], kh, kw, op.stride, op.dilation, oh, ow))
        if any(win.shape[1:3] != (oh, ow) for _, _, win in wins):
            raise GraphError(f"op {op.name!r}: output shape {spec.shape} does not fit the input")
        cols = np.concatenate([win for _, _, win in wins], axis=-1)   # (n, oh, ow, KH*KW*C_in)
        # 2-D GEMM (a 4-D matmul would run one small GEMM per output row).
        acc[n0:n0 + chunk] = (cols.reshape(-1, cols.shape[-1]) @ w).reshape(cols.shape[:3] + (cout,))
    acc = _exact_int(acc) + op.bias.astype(np.int64)
    return _check_shape(op, spec, _requantize(op, graph, acc))


def _sparse_elements(op: CompressedConv2D) -> tuple[np.ndarray, ...]:
    """Kept weights of a CSR / pattern layer as parallel arrays ``(o, position, c, value)``.

    ``position = kh * KW + kw``. Read straight from the format's arrays (no dense weight):
    CSR ``col = position * C_in + c``; pattern kernel ``(o, kidx)`` holds its 4 values at
    the positions of pattern ``pid`` of the layer's own library (``f.library``). Elements come filter after filter (``o``
    non-decreasing), which :func:`_compressed_conv2d` relies on.
    """
    f = op.fmt
    cout, _, _, cin = op.weight_shape
    if isinstance(f, _formats.CSR):
        o = np.repeat(np.arange(cout), np.diff(f.rowptr.astype(np.int64)))
        col = f.col.astype(np.int64)
        return o, col // cin, col % cin, f.values.astype(np.float64)
    pos4 = np.asarray(f.library, np.int64)[f.pid.astype(np.int64)]          # (K, 4)
    o_k = np.repeat(np.arange(cout), np.diff(f.kptr.astype(np.int64)))
    k = _formats.pattern.KEPT_PER_KERNEL
    return (np.repeat(o_k, k), pos4.reshape(-1), np.repeat(f.kidx.astype(np.int64), k),
            f.values.astype(np.float64))


def _compressed_conv2d(op: CompressedConv2D, graph: Graph, x: np.ndarray) -> np.ndarray:
    """A conv run from its storage format; equals the dense-with-zeros conv bit for bit.

    FWCS: for each kernel position, the kept filterlets at that position (at most one per
    filter) form a ``(n, C_in)`` block of ``arr``; one GEMM of the ``C_in``-long input
    runs of every output pixel (a strided view of the padded input, no im2col) with that
    block adds into those filters' accumulators. CSR / pattern: kept weights grouped by
    kernel position; per position, the products ``input[c] * value`` of every output
    pixel are summed per filter with a segmented sum (elements are sorted by filter).
    All sums are exact integers in float64 (see the module docstring).
    """
    cout, kh, kw, cin = op.weight_shape
    _formats.verify(op.fmt, (cout, kh, kw, cin))       # never index with unchecked arrays
    if x.shape[-1] != cin:
        raise GraphError(f"op {op.name!r}: input has {x.shape[-1]} channels, weight expects {cin}")
    if op.bias is None or np.asarray(op.bias).shape != (cout,):
        raise GraphError(f"op {op.name!r}: bias must have shape ({cout},)")
    _, in_zp = _qp(graph, op.inputs[0])
    spec = _out_spec(graph, op)
    oh, ow, c = spec.shape
    if c != cout:
        raise GraphError(f"op {op.name!r}: output has {c} channels, weight has {cout} filters")
    n = x.shape[0]
    rows = n * oh * ow
    xp = _pad_offset_input(x, in_zp, op.pads)
    acc = np.zeros((rows, cout), np.float64)
    wins = list(_windows(xp, kh, kw, op.stride, op.dilation, oh, ow))
    if any(win.shape[1:3] != (oh, ow) for _, _, win in wins):
        raise GraphError(f"op {op.name!r}: output shape {spec.shape} does not fit the input")
    f = op.fmt
    if isinstance(f, _formats.FWCS):
        o_k = np.repeat(np.arange(cout), np.diff(f.fidx.astype(np.int64)))
        pos_k = f.cptr.astype(np.int64) // cin
        blocks = f.arr.astype(np.float64).reshape(-1, cin)           # one row per filterlet
        for i, j, win in wins:
            sel = np.flatnonzero(pos_k == i * kw + j)
            if sel.size:
                acc[:, o_k[sel]] += win.reshape(rows, cin) @ blocks[sel].T
    else:
        o_e, pos_e, c_e, v_e = _sparse_elements(op)
        for i, j, win in wins:
            sel = np.flatnonzero(pos_e == i * kw + j)
            if not sel.size:
                continue
            o_s, c_s, v_s = o_e[sel], c_e[sel], v_e[sel]
            starts = np.flatnonzero(np.r_[True, o_s[1:] != o_s[:-1]])
            xr = win.reshape(rows, cin)
            step = max(1, (4 << 20) // sel.size)                     # ~32 MiB of products
            for r0 in range(0, rows, step):
                prod = xr[r0:r0 + step][:, c_s] * v_s
                acc[r0:r0 + step, o_s[starts]] += np.add.reduceat(prod, starts, axis=1)
    acc = _exact_int(acc).reshape(n, oh, ow, cout) + np.asarray(op.bias).astype(np.int64)
    return _check_shape(op, spec, _requantize(op, graph, acc))


def _depthwise(op: DepthwiseConv2D, graph: Graph, x: np.ndarray) -> np.ndarray:
    _, in_zp = _qp(graph, op.inputs[0])
    spec = _out_spec(graph, op)
    oh, ow, cout = spec.shape
    m = op.depth_multiplier
    if cout != x.shape[-1] * m:
        raise GraphError(f"op {op.name!r}: {cout} output channels != C_in {x.shape[-1]} * {m}")
    kh, kw = op.kernel
    w = op.weight[0].astype(np.int64)                    # (KH, KW, C_in * m)
    # Output channel oc = ic * m + k reads input channel ic (TFLite layout).
    xp = _pad_offset_input(x, in_zp, op.pads).astype(np.int64)
    xp = np.repeat(xp, m, axis=-1)
    acc = np.zeros((x.shape[0], oh, ow, cout), np.int64)
    for i, j, win in _windows(xp, kh, kw, op.stride, op.dilation, oh, ow):
        if win.shape[1:3] != (oh, ow):
            raise GraphError(f"op {op.name!r}: output shape {spec.shape} does not fit the input")
        acc += win * w[i, j]
    acc += op.bias.astype(np.int64)
    return _check_shape(op, spec, _requantize(op, graph, acc))


def _fully_connected(op: FullyConnected, graph: Graph, x: np.ndarray) -> np.ndarray:
    _, in_zp = _qp(graph, op.inputs[0])
    xf = x.reshape(x.shape[0], -1).astype(np.float64) - in_zp
    if xf.shape[1] != op.weight.shape[1]:
        raise GraphError(f"op {op.name!r}: input has {xf.shape[1]} features, weight "
                         f"{op.weight.shape} expects {op.weight.shape[1]}")
    acc = _exact_int(xf @ op.weight.astype(np.float64).T) + op.bias.astype(np.int64)
    y = _requantize(op, graph, acc)
    return _check_shape(op, _out_spec(graph, op), y.reshape((x.shape[0],) + _out_spec(graph, op).shape))


def _compressed_fc(op: CompressedFullyConnected, graph: Graph, x: np.ndarray) -> np.ndarray:
    """An FC run from its FWCS runs (no dense weight); equals the dense-with-zeros FC.

    Each kept run ``j`` of output ``o`` adds ``dot(arr[run], x[cptr_j : cptr_j + len_j])``;
    all run products are summed per output with one segmented sum (exact in float64)."""
    o_n, n_in = op.weight_shape
    op.verify()                                        # never index with unchecked arrays
    f = op.fmt
    _, in_zp = _qp(graph, op.inputs[0])
    xf = x.reshape(x.shape[0], -1).astype(np.float64) - in_zp
    if xf.shape[1] != n_in:
        raise GraphError(f"op {op.name!r}: input has {xf.shape[1]} features, weight "
                         f"{op.weight_shape} expects {n_in}")
    cp = f.cptr.astype(np.int64)
    lens = np.minimum(int(f.size), n_in - cp)
    cols = np.repeat(cp, lens) + (np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens))
    rows = np.repeat(np.repeat(np.arange(o_n), np.diff(f.fidx.astype(np.int64))), lens)
    acc = np.zeros((x.shape[0], o_n), np.float64)
    if cols.size:
        prod = xf[:, cols] * f.arr.astype(np.float64)
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        acc[:, rows[starts]] = np.add.reduceat(prod, starts, axis=1)
    acc = _exact_int(acc) + np.asarray(op.bias).astype(np.int64)
    y = _requantize(op, graph, acc)
    return _check_shape(op, _out_spec(graph, op), y.reshape((x.shape[0],) + _out_spec(graph, op).shape))


def _pool_windows(op, graph: Graph, x: np.ndarray, fill: int):
    """Padded int64 input with ``fill`` in the pads, a validity mask, and the output size."""
    if not _out_spec(graph, op).qparams.same_as(graph.tensors[op.inputs[0]].qparams):
        raise GraphError(f"op {op.name!r} ({op.kind}): input and output qparams must be equal "
                         f"(TFLite pools work on raw int8 values)")
    t, b, l, r = op.pads
    n, h, w, c = x.shape
    oh = conv_output_size(h, op.kernel[0], op.stride[0], t, b)
    ow = conv_output_size(w, op.kernel[1], op.stride[1], l, r)
    xp = np.pad(x.astype(np.int64), ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill)
    valid = np.pad(np.ones((1, h, w, 1), np.int64), ((0, 0), (t, b), (l, r), (0, 0)))
    return xp, valid, oh, ow


def _max_pool(op: MaxPool2D, graph: Graph, x: np.ndarray) -> np.ndarray:
    # TFLite starts from the int8 lowest value and only visits in-image taps, which
    # is the same as padding with -128.
    xp, _, oh, ow = _pool_windows(op, graph, x, fill=-128)
    out = np.full((x.shape[0], oh, ow, x.shape[-1]), -128, np.int64)
    for _, _, win in _windows(xp, *op.kernel, op.stride, (1, 1), oh, ow):
        out = np.maximum(out, win)
    return _check_shape(op, _out_spec(graph, op), out.astype(np.int8))


def _avg_pool(op: AvgPool2D, graph: Graph, x: np.ndarray) -> np.ndarray:
    xp, valid, oh, ow = _pool_windows(op, graph, x, fill=0)
    acc = np.zeros((x.shape[0], oh, ow, x.shape[-1]), np.int64)
    count = np.zeros((1, oh, ow, 1), np.int64)
    for (_, _, win), (_, _, vwin) in zip(_windows(xp, *op.kernel, op.stride, (1, 1), oh, ow),
                                         _windows(valid, *op.kernel, op.stride, (1, 1), oh, ow)):
        acc += win
        count += vwin
    if np.any(count == 0):
        raise GraphError(f"op {op.name!r}: a pooling window lies entirely in the padding")
    # TFLite: round half away from zero with C truncating division.
    half = count // 2
    num = np.where(acc > 0, acc + half, acc - half)
    avg = np.sign(num) * (np.abs(num) // count)
    return _check_shape(op, _out_spec(graph, op), np.clip(avg, -128, 127).astype(np.int8))


def _add(op: Add, graph: Graph, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = op.quant
    if q is None:
        raise GraphError(f"op {op.name!r} (add) has no quant constants")
    if a.shape != b.shape:
        raise GraphError(f"op {op.name!r}: input shapes {a.shape[1:]} and {b.shape[1:]} differ")
    _, zp1 = _qp(graph, op.inputs[0])
    _, zp2 = _qp(graph, op.inputs[1])
    out_s, out_zp = _qp(graph, op.output)
    shifted1 = (a.astype(np.int64) - zp1) << q.left_shift
    shifted2 = (b.astype(np.int64) - zp2) << q.left_shift
    s1 = arith.multiply_by_quantized_multiplier_smaller_than_one_exp(shifted1, q.in1_multiplier,
                                                                     q.in1_shift)
    s2 = arith.multiply_by_quantized_multiplier_smaller_than_one_exp(shifted2, q.in2_multiplier,
                                                                     q.in2_shift)
    raw = s1 + s2
    _check_acc(op, raw)
    y = arith.multiply_by_quantized_multiplier_smaller_than_one_exp(raw, q.out_multiplier,
                                                                    q.out_shift) + out_zp
    lo, hi = arith.activation_range(op.activation, out_s, out_zp)
    return _check_shape(op, _out_spec(graph, op), np.clip(y, lo, hi).astype(np.int8))


def _concat(op: Concat, graph: Graph, *xs: np.ndarray) -> np.ndarray:
    out_q = _out_spec(graph, op).qparams
    for name in op.inputs:
        if not out_q.same_as(graph.tensors[name].qparams):
            raise GraphError(f"op {op.name!r} (concat): input {name!r} qparams differ from the "
                             f"output's (dtmm concatenates raw int8 values)")
    axis = op.axis if op.axis < 0 else op.axis + 1       # IR axes exclude the batch
    return _check_shape(op, _out_spec(graph, op), np.concatenate(xs, axis=axis))


def _reshape(op: Reshape, graph: Graph, x: np.ndarray) -> np.ndarray:
    if not _out_spec(graph, op).qparams.same_as(graph.tensors[op.inputs[0]].qparams):
        raise GraphError(f"op {op.name!r} (reshape): input and output qparams must be equal")
    return _check_shape(op, _out_spec(graph, op), x.reshape((x.shape[0],) + tuple(op.shape)))


def _softmax(op: Softmax, graph: Graph, x: np.ndarray) -> np.ndarray:
    out_s, out_zp = _qp(graph, op.output)
    if out_zp != -128 or np.float32(out_s) != np.float32(1.0 / 256):
        raise GraphError(f"op {op.name!r} (softmax): int8 output must have scale 1/256 and "
                         f"zero point -128, got {out_s}, {out_zp}")
    q = op.quant
    if q is None:
        raise GraphError(f"op {op.name!r} (softmax) has no quant constants")
    y = arith.softmax_int8(x, q.beta_multiplier, q.beta_left_shift, q.diff_min)
    return _check_shape(op, _out_spec(graph, op), y)


_KERNELS: dict[type, Callable[..., np.ndarray]] = {
    Conv2D: _conv2d,
    CompressedConv2D: _compressed_conv2d,
    DepthwiseConv2D: _depthwise,
    FullyConnected: _fully_connected,
    CompressedFullyConnected: _compressed_fc,
    MaxPool2D: _max_pool,
    AvgPool2D: _avg_pool,
    Add: _add,
    Concat: _concat,
    Reshape: _reshape,
    Softmax: _softmax,
}


# ----------------------------------------------------------------------------- API


def run_reference(graph: Graph, x, *, all_tensors: bool = False
                  ) -> np.ndarray | dict[str, np.ndarray]:
    """Run a quantized graph on an int8 NHWC batch with TFLite Micro's integer arithmetic.

    Args:
        graph: a quantized :class:`~dtmm.graph.ir.Graph` (int8 weights, int32 bias,
            qparams on every tensor, requantization constants on every op).
        x: int8 array ``(N, *input_shape)``, or a dict ``{input_name: array}`` for
            graphs with several inputs.
        all_tensors: return every tensor by name (inputs included) instead of the outputs.

    Returns:
        The int8 output ``(N, *output_shape)`` for a single-output graph, else a dict
        ``{output_name: array}``.

    Raises:
        GraphError: the graph is not quantized or an op's shapes/qparams are inconsistent.
        OverflowError: an int32 accumulator would overflow.

    Example:
        >>> import numpy as np
        >>> from dtmm.graph.ir import Graph, TensorSpec, QParams, Reshape
        >>> g = Graph(); q = QParams.per_tensor(0.5, 3)
        >>> _ = g.add_tensor(TensorSpec("x", (1, 1, 2), "int8", q))
        >>> _ = g.add_tensor(TensorSpec("y", (2,), "int8", q))
        >>> _ = g.add_op(Reshape("flat", ["x"], "y", shape=(2,)))
        >>> g.inputs, g.outputs = ["x"], ["y"]
        >>> run_reference(g, np.array([[[[1, -2]]]], np.int8)).tolist()
        [[1, -2]]
    """
    if not isinstance(x, dict):
        if len(graph.inputs) != 1:
            raise GraphError(f"graph has {len(graph.inputs)} inputs: pass a dict of arrays")
        x = {graph.inputs[0]: x}
    vals: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in x:
            raise GraphError(f"no value given for graph input {name!r}")
        arr = np.asarray(x[name])
        if arr.dtype != np.int8:
            raise GraphError(f"input {name!r} must be int8, got {arr.dtype}")
        want = tuple(graph.tensors[name].shape)
        if tuple(arr.shape[1:]) != want:
            raise GraphError(f"input {name!r}: batch shape {arr.shape} does not match "
                             f"(N, {', '.join(map(str, want))})")
        vals[name] = arr
    for op in graph.ops:
        kernel = _KERNELS.get(type(op))
        if kernel is None:
            raise GraphError(f"op {op.name!r}: run_reference has no kernel for {op.kind}")
        try:
            vals[op.output] = kernel(op, graph, *[vals[i] for i in op.inputs])
        except KeyError as e:
            raise GraphError(f"op {op.name!r}: input {e} is not computed before it") from None
    if all_tensors:
        return vals
    if len(graph.outputs) == 1:
        return vals[graph.outputs[0]]
    return {name: vals[name] for name in graph.outputs}


def run_float(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run a *float* graph on a float32 NHWC batch (torch.nn.functional inside).

    Thin wrapper over :func:`dtmm.graph.float_exec.run_float` so that both
    executors live behind one module.

    Example:
        >>> import numpy as np
        >>> from dtmm.graph.ir import Graph, TensorSpec, Reshape
        >>> g = Graph()
        >>> _ = g.add_tensor(TensorSpec("x", (1, 1, 2)))
        >>> _ = g.add_tensor(TensorSpec("y", (2,)))
        >>> _ = g.add_op(Reshape("flat", ["x"], "y", shape=(2,)))
        >>> g.inputs, g.outputs = ["x"], ["y"]
        >>> run_float(g, np.ones((3, 1, 1, 2), np.float32)).shape
        (3, 2)
    """
    from dtmm.graph.float_exec import run_float as _run_float
    return _run_float(graph, np.asarray(x, np.float32))
