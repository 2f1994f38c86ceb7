"""Read an int8 ``.tflite`` file back into a quantized dtmm graph.

Reads files written by :mod:`dtmm.tflite.export` and, more generally, any int8
TFLite model made of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D,
AVERAGE_POOL_2D, ADD, CONCATENATION, RESHAPE, SOFTMAX and PAD (a PAD feeding a
VALID conv is folded into the conv's explicit pads), plus dtmm's compressed-conv
custom operators (``DTMM_CONV_2D_FWCS`` / ``_CSR`` / ``_PATTERN``, read and verified
by :mod:`dtmm.tflite.custom_ops` into :class:`~dtmm.graph.compressed.CompressedConv2D`).

Requantization constants are recomputed from the file's float32 scales exactly
as TFLite Micro does at Prepare time (:mod:`dtmm.quant.arith`), so the graph runs
bit-exactly like TFLM under :func:`dtmm.runtime.reference.run_reference`.

Every problem with the file raises :class:`~dtmm.errors.ModelFileError` with a
message naming what is wrong (never a raw flatbuffers traceback).

Example:
    >>> import numpy as np
    >>> from dtmm.graph.ir import Graph, TensorSpec, QParams, MaxPool2D
    >>> from dtmm.tflite.export import to_tflite_bytes
    >>> g = Graph(); q = QParams.per_tensor(0.1, 0)
    >>> _ = g.add_tensor(TensorSpec("x", (4, 4, 1), "int8", q))
    >>> _ = g.add_tensor(TensorSpec("y", (2, 2, 1), "int8", q))
    >>> _ = g.add_op(MaxPool2D("pool", ["x"], "y"))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> g2 = read_tflite(to_tflite_bytes(g))
    >>> [(op.name, op.kind, op.kernel) for op in g2.ops]
    [('pool', 'max_pool2d', (2, 2))]
    >>> read_tflite(b"not a model")
    Traceback (most recent call last):
    ...
    dtmm.errors.ModelFileError: not a .tflite file: too short (11 bytes)
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from dtmm.errors import DtmmError, GraphError, ModelFileError
from dtmm.graph.ir import (Activation, Add, AvgPool2D, Concat, Conv2D, ConvQuant, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, Op, QParams, Reshape, Softmax,
                           TensorSpec)
from dtmm.tflite._padding import same_pads
from dtmm.tflite import validate
from dtmm.tflite._schema import (BUILTIN_NAMES, FILE_IDENTIFIER, METADATA_NAME,
                                 TENSOR_TYPE_NAMES, schema)

__all__ = ["read_tflite", "load_model"]

BO = schema.BuiltinOperator
_MAX_NAME = 256          # longest op name / source taken from dtmm's metadata
#: builtin code -> (options class, whether the options must be present)
_OPTIONS = {
    BO.CONV_2D: (schema.Conv2DOptionsT, True),
    BO.DEPTHWISE_CONV_2D: (schema.DepthwiseConv2DOptionsT, True),
    BO.FULLY_CONNECTED: (schema.FullyConnectedOptionsT, False),
    BO.MAX_POOL_2D: (schema.Pool2DOptionsT, True),
    BO.AVERAGE_POOL_2D: (schema.Pool2DOptionsT, True),
    BO.ADD: (schema.AddOptionsT, False),
    BO.CONCATENATION: (schema.ConcatenationOptionsT, True),
    BO.RESHAPE: (schema.ReshapeOptionsT, False),
    BO.SOFTMAX: (schema.SoftmaxOptionsT, False),
}
_NP_TYPES = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32,
             schema.TensorType.INT64: np.int64, schema.TensorType.UINT8: np.uint8,
             schema.TensorType.INT16: np.int16, schema.TensorType.FLOAT32: np.float32}
_ACTIVATIONS = {
    schema.ActivationFunctionType.NONE: Activation.NONE,
    schema.ActivationFunctionType.RELU: Activation.RELU,
    schema.ActivationFunctionType.RELU6: Activation.RELU6,
}


# ----------------------------------------------------------------------------- loading


def load_model(data: bytes) -> schema.ModelT:
    """Parse and structurally check ``.tflite`` bytes into the schema's ``ModelT``.

    Raises:
        ModelFileError: too short, wrong identifier, truncated or otherwise malformed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFileError(f"expected .tflite bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 16:
        raise ModelFileError(f"not a .tflite file: too short ({len(data)} bytes)")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelFileError(f"not a .tflite file: identifier {data[4:8]!r} != {FILE_IDENTIFIER!r}")
    root = int.from_bytes(data[:4], "little")
    if root + 4 > len(data):
        raise ModelFileError(f"truncated .tflite file: root table offset {root} is beyond its "
                             f"{len(data)} bytes")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except Exception as e:  # flatbuffers raises struct.error, IndexError, ValueError, ...
        raise ModelFileError(f"malformed or truncated .tflite file ({len(data)} bytes): "
                             f"{type(e).__name__}: {e}") from None
    _check_structure(model)
    return model


def _check_structure(model: schema.ModelT) -> None:
    if not model.subgraphs:
        raise ModelFileError("the .tflite file has no subgraph")
    nbuf = len(model.buffers or [])
    nops = len(model.operatorCodes or [])
    for s, sub in enumerate(model.subgraphs):
        tensors = sub.tensors or []
        for i, t in enumerate(tensors):
            if not 0 <= t.buffer < max(nbuf, 1):
                raise ModelFileError(f"subgraph {s} tensor {i} ({_name(t)!r}) refers to missing "
                                     f"buffer {t.buffer} (the file has {nbuf})")
        for k, op in enumerate(sub.operators or []):
            if not 0 <= op.opcodeIndex < nops:
                raise ModelFileError(f"operator {k}: opcode index {op.opcodeIndex} out of range")
            for idx in list(op.inputs if op.inputs is not None else []) + list(
                    op.outputs if op.outputs is not None else []):
                if not -1 <= idx < len(tensors):
                    raise ModelFileError(f"operator {k}: tensor index {idx} out of range")
        for idx in list(sub.inputs if sub.inputs is not None else []) + list(
                sub.outputs if sub.outputs is not None else []):
            if not 0 <= idx < len(tensors):
                raise ModelFileError(f"subgraph {s}: input/output tensor index {idx} out of range")
    for m in model.metadata or []:
        if not 0 <= m.buffer < nbuf:
            raise ModelFileError(f"metadata {_str(m.name)!r} refers to missing buffer {m.buffer}")


def _str(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else (v or "")


def _name(t: schema.TensorT) -> str:
    return _str(t.name)


def _builtin(code: schema.OperatorCodeT) -> int:
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _metadata(model: schema.ModelT) -> dict | None:
    for m in model.metadata or []:
        if _str(m.name) == METADATA_NAME:
            buf = model.buffers[m.buffer]
            try:
                return json.loads(bytes(buf.data).decode("utf-8"))
            except (TypeError, ValueError, UnicodeDecodeError):
                raise ModelFileError(f"metadata {METADATA_NAME!r} is not valid JSON") from None
    return None


# ----------------------------------------------------------------------------- conversion


class _Reader:
    def __init__(self, model: schema.ModelT):
        self.model = model
        self.sub = model.subgraphs[0]
        self.tensors = self.sub.tensors or []
        self.graph = Graph()
        self.names: dict[int, str] = {}
        self.pending_pads: dict[int, tuple[int, tuple[int, int, int, int]]] = {}

    # -- tensors
    def _where(self, idx: int) -> str:
        return f"tensor {idx} ({_name(self.tensors[idx])!r})"

    def qparams(self, idx: int, role: str = "activation", channels: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """Scales, zero points (int64, as stored) and axis of tensor ``idx``, validated for
        ``role`` (see :func:`dtmm.tflite.validate.check_qparams`)."""
        t = self.tensors[idx]
        q = t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise ModelFileError(f"{self._where(idx)} is not quantized (no scale)")
        scale = np.asarray(q.scale, np.float32)
        zp = (np.asarray(q.zeroPoint, np.int64) if q.zeroPoint is not None
              else np.zeros(scale.size, np.int64))
        validate.check_qparams(scale, zp, where=self._where(idx), role=role, channels=channels)
        return scale, zp, int(q.quantizedDimension)

    def constant(self, idx: int, ttype: int) -> np.ndarray:
        """The data of a constant tensor of type ``ttype`` reshaped to its shape."""
        t = self.tensors[idx]
        if t.type != ttype:
            raise ModelFileError(f"{self._where(idx)} has type {TENSOR_TYPE_NAMES.get(t.type, t.type)}"
                                 f", expected {TENSOR_TYPE_NAMES[ttype]}")
        buf = self.model.buffers[t.buffer]
        if t.buffer == 0 or buf.data is None:
            raise ModelFileError(f"{self._where(idx)} should be constant but has no buffer data")
        dtype = np.dtype(_NP_TYPES[ttype]).newbyteorder("<")
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        raw = bytes(buf.data)
        if len(raw) != int(np.prod(shape)) * dtype.itemsize:
            raise ModelFileError(f"{self._where(idx)}: buffer {t.buffer} holds {len(raw)} bytes, "
                                 f"shape {shape} needs {int(np.prod(shape)) * dtype.itemsize}")
        return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("=")).reshape(shape)

    def activation(self, idx: int) -> str:
        """IR name of an int8 activation tensor (batch dim dropped), creating its TensorSpec."""
        if idx in self.names:
            return self.names[idx]
        if idx < 0:
            raise ModelFileError("an operator is missing a required input tensor")
        t = self.tensors[idx]
        if t.type != schema.TensorType.INT8:
            raise ModelFileError(f"{self._where(idx)} has type "
                                 f"{TENSOR_TYPE_NAMES.get(t.type, t.type)}: only int8 activations "
                                 f"are supported")
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        if len(shape) < 2 or shape[0] != 1:
            raise ModelFileError(f"{self._where(idx)} has shape {list(shape)}: expected a batch "
                                 f"dimension of 1 first")
        validate.check_activation_shape(shape[1:], where=self._where(idx))
        scale, zp, _ = self.qparams(idx)
        name = _name(t) or f"t{idx}"
        if name in self.graph.tensors:
            name = f"{name}_{idx}"
        try:
            qp = QParams(scale, zp.astype(np.int32))
        except GraphError as e:
            raise ModelFileError(f"{self._where(idx)}: {e}") from None
        self.graph.add_tensor(TensorSpec(name, shape[1:], "int8", qp))
        self.names[idx] = name
        return name

    def spec(self, idx: int) -> TensorSpec:
        return self.graph.tensors[self.activation(idx)]

    # -- ops
    def weights(self, k: int, op: schema.OperatorT, qdim: int, in_idx: int, out_idx: int):
        w_idx = int(op.inputs[1])
        if w_idx < 0:
            raise ModelFileError(f"operator {k}: missing weight tensor")
        w = self.constant(w_idx, schema.TensorType.INT8)
        if not 0 <= qdim < w.ndim:
            raise ModelFileError(f"{self._where(w_idx)}: weight shape {list(w.shape)} has no axis "
                                 f"{qdim} (expected {qdim + 1 if qdim else 2}-D or more)")
        w_scale, w_zp, w_dim = self.qparams(w_idx, "weight", int(w.shape[qdim]))
        if w_scale.size > 1 and (w_dim != qdim or w_scale.size != w.shape[qdim]):
            raise ModelFileError(f"{self._where(w_idx)}: {w_scale.size} per-channel scales along "
                                 f"axis {w_dim}, expected {w.shape[qdim]} along axis {qdim}")
        nout = w.shape[qdim]
        b_idx = int(op.inputs[2]) if len(op.inputs) > 2 else -1
        if b_idx >= 0:
            bias = self.constant(b_idx, schema.TensorType.INT32).reshape(-1)
            if bias.size != nout:
                raise ModelFileError(f"{self._where(b_idx)}: {bias.size} biases for {nout} outputs")
            bq = self.tensors[b_idx].quantization
            if bq is not None and bq.scale is not None and len(bq.scale):
                b_scale, _, _ = self.qparams(b_idx, "bias", nout)
                in_s = np.float32(self.qparams(in_idx)[0][0])
                want = (in_s * np.broadcast_to(w_scale, b_scale.shape if b_scale.size > 1
                                               else w_scale.shape)).astype(np.float64)
                got = np.broadcast_to(b_scale, want.shape).astype(np.float64)
                off = np.abs(got - want) > 1e-6 * np.minimum(got, want)
                if np.any(off):
                    c = int(np.flatnonzero(off)[0])
                    raise ModelFileError(f"{self._where(b_idx)}: bias scale[{c}] = {float(got[c])!r} is "
                                         f"not input scale x weight scale = {float(want[c])!r} "
                                         f"(TFLite's rule)")
        else:
            bias = np.zeros(nout, np.int32)
        return w, bias, w_scale

    def input_and_pads(self, k: int, in_idx: int, opts, kernel, stride, dilation, pad_ok):
        """Input tensor name and explicit pads, folding a preceding PAD op into them.

        ``pad_ok(value, zp)`` says whether a PAD with raw pad value ``value`` (the zero
        point for PAD, the constant for PADV2) may be folded into this op's pads.
        """
        for what, v in (("stride", stride), ("kernel", kernel), ("dilation", dilation)):
            if min(v) < 1 or max(v) > validate.MAX_DIM:
                raise ModelFileError(f"operator {k}: {what} {tuple(v)} must be in [1, "
                                     f"{validate.MAX_DIM}]")
        pads = (0, 0, 0, 0)
        if in_idx in self.pending_pads:
            src, pads, value = self.pending_pads.pop(in_idx)
            zp = self.spec(src).qparams.zp
            if not pad_ok(value, zp):
                raise ModelFileError(f"operator {k}: a PAD op with pad value {value} (input zero "
                                     f"point {zp}) feeds it; dtmm can fold a PAD only into a conv "
                                     f"(pad value = zero point) or a max pool (pad value -128)")
            if opts.padding != schema.Padding.VALID:
                raise ModelFileError(f"operator {k}: PAD followed by a SAME-padded op is "
                                     f"not supported")
            in_idx = src
        name = self.activation(in_idx)
        if opts.padding == schema.Padding.SAME:
            pads = same_pads(self.graph.tensors[name].shape[:2], kernel, stride, dilation)
        elif opts.padding != schema.Padding.VALID:
            raise ModelFileError(f"operator {k}: unknown padding {opts.padding}")
        return name, tuple(int(p) for p in pads)

    def read_pad(self, k: int, op: schema.OperatorT, code: int) -> None:
        """PAD (pad value = zero point) or PADV2 (an int8 constant pad value): remembered and
        folded into the conv / max pool it feeds (see :meth:`input_and_pads`)."""
        what = f"operator {k} ({BUILTIN_NAMES.get(code, code)})"
        ins = [int(i) for i in op.inputs]
        n_in = 3 if code == BO.PADV2 else 2
        if len(ins) != n_in or min(ins) < 0:
            raise ModelFileError(f"{what}: expected {n_in} input tensors, got {ins}")
        in_idx, p_idx, out_idx = ins[0], ins[1], int(op.outputs[0])
        ptype = self.tensors[p_idx].type
        if ptype not in (schema.TensorType.INT32, schema.TensorType.INT64):
            raise ModelFileError(f"{what}: paddings ({self._where(p_idx)}) must be int32 or int64")
        p = self.constant(p_idx, ptype).astype(np.int64)
        if p.shape != (4, 2) or np.any(p[0] != 0) or np.any(p[3] != 0) or np.any(p < 0) or np.any(
                p > validate.MAX_DIM):
            raise ModelFileError(f"{what}: only H/W paddings in [0, {validate.MAX_DIM}] of a 4-D "
                                 f"tensor are supported, got {p.tolist()}")
        x = self.spec(in_idx)
        out_q = self.qparams_spec(out_idx)
        if not x.qparams.same_as(out_q):
            raise ModelFileError(f"{what}: input and output quantization differ")
        value = x.qparams.zp
        if code == BO.PADV2:
            v_idx = ins[2]
            vq = self.tensors[v_idx].quantization
            v = self.constant(v_idx, schema.TensorType.INT8).reshape(-1)
            if v.size != 1:
                raise ModelFileError(f"{what}: constant_values ({self._where(v_idx)}) must hold one "
                                     f"value, holds {v.size}")
            if vq is None or vq.scale is None or not self.qparams_spec(v_idx).same_as(out_q):
                raise ModelFileError(f"{what}: constant_values ({self._where(v_idx)}) must have the "
                                     f"output's quantization (TFLite's rule)")
            value = int(v[0])
        pads = (int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1]))
        t = self.tensors[out_idx]
        oshape = [int(d) for d in (t.shape if t.shape is not None else [])]
        want = [1, x.shape[0] + pads[0] + pads[1], x.shape[1] + pads[2] + pads[3], x.shape[2]] if (
            len(x.shape) == 3) else None
        if want is None or oshape != want:
            raise ModelFileError(f"{what}: output {self._where(out_idx)} has shape {oshape}; input "
                                 f"{[1, *x.shape]} padded by {p.tolist()} gives {want}")
        self.pending_pads[out_idx] = (in_idx, pads, value)

    def qparams_spec(self, idx: int) -> QParams:
        scale, zp, _ = self.qparams(idx)
        return QParams(scale, zp.astype(np.int32))

    def convert(self, k: int, op: schema.OperatorT, name: str, source: str) -> Op | None:
        code = _builtin(self.model.operatorCodes[op.opcodeIndex])
        opts = op.builtinOptions
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        if len(outs) != 1 or not ins:
            raise ModelFileError(f"operator {k} ({BUILTIN_NAMES.get(code, code)}): expected "
                                 f"inputs and exactly one output")
        if code in (BO.PAD, BO.PADV2):
            self.read_pad(k, op, code)
            return None
        if code == BO.CUSTOM:
            from dtmm.tflite.custom_ops import read_custom_op    # dtmm's compressed convs
            return read_custom_op(self, k, op, ins, outs, name, source)
        for i in ins[1:]:
            if i in self.pending_pads:
                raise ModelFileError(f"operator {k}: uses the output of a PAD op in a way dtmm's "
                                     f"IR cannot express")
        want_opts = _OPTIONS.get(code)
        if want_opts is not None:
            cls, required = want_opts
            if opts is None and required:
                raise ModelFileError(f"operator {k} ({BUILTIN_NAMES[code]}): builtin options are "
                                     f"missing (expected {cls.__name__[:-1]})")
            if opts is not None and not isinstance(opts, cls):
                raise ModelFileError(f"operator {k} ({BUILTIN_NAMES[code]}): builtin options are "
                                     f"{type(opts).__name__[:-1]}, expected {cls.__name__[:-1]}")
        if code in (BO.CONV_2D, BO.DEPTHWISE_CONV_2D, BO.FULLY_CONNECTED) and len(ins) < 2:
            raise ModelFileError(f"operator {k} ({BUILTIN_NAMES[code]}): {len(ins)} input tensor(s); "
                                 f"expected input, weights and optionally bias")
        if code in (BO.CONV_2D, BO.DEPTHWISE_CONV_2D, BO.FULLY_CONNECTED) and len(ins) > 3:
            raise ModelFileError(f"operator {k} ({BUILTIN_NAMES[code]}): {len(ins)} input tensors; "
                                 f"expected input, weights and optionally bias")
        out_idx = outs[0]
        common = dict(name=name, source=source)

        def act(o) -> Activation:
            a = getattr(o, "fusedActivationFunction", 0)
            if a not in _ACTIVATIONS:
                raise ModelFileError(f"operator {k} ({BUILTIN_NAMES[code]}): unsupported fused "
                                     f"activation {a}")
            return _ACTIVATIONS[a]

        if code in (BO.CONV_2D, BO.DEPTHWISE_CONV_2D):
            depthwise = code == BO.DEPTHWISE_CONV_2D
            w, bias, w_scale = self.weights(k, op, 3 if depthwise else 0, ins[0], out_idx)
            if w.ndim != 4:
                raise ModelFileError(f"operator {k}: weight must be 4-D, got {w.shape}")
            stride = (int(opts.strideH), int(opts.strideW))
            dilation = (int(opts.dilationHFactor), int(opts.dilationWFactor))
            kernel = (w.shape[1], w.shape[2])
            x, pads = self.input_and_pads(k, ins[0], opts, kernel, stride, dilation,
                                          lambda value, zp: value == zp)
            y = self.activation(out_idx)
            nout = w.shape[3] if depthwise else w.shape[0]
            quant = ConvQuant(w_scale=w_scale, multiplier=None, shift=None)   # filled by run()
            if depthwise:
                cin = self.graph.tensors[x].shape[-1]
                if nout % cin:
                    raise ModelFileError(f"operator {k}: {nout} depthwise outputs for {cin} inputs")
                if int(opts.depthMultiplier) != nout // cin:
                    raise ModelFileError(f"operator {k} (DEPTHWISE_CONV_2D): option depth_multiplier "
                                         f"= {opts.depthMultiplier}, but the weights map {cin} input "
                                         f"channels to {nout} ({nout // cin} per channel)")
                return DepthwiseConv2D(inputs=[x], output=y, weight=w, bias=bias, stride=stride,
                                       pads=pads, dilation=dilation, depth_multiplier=nout // cin,
                                       activation=act(opts), quant=quant, **common)
            if w.shape[3] != self.graph.tensors[x].shape[-1]:
                raise ModelFileError(f"operator {k}: grouped convolution (weight {w.shape}, input "
                                     f"{self.graph.tensors[x].shape}) is not supported")
            return Conv2D(inputs=[x], output=y, weight=w, bias=bias, stride=stride, pads=pads,
                          dilation=dilation, activation=act(opts), quant=quant, **common)

        if code == BO.FULLY_CONNECTED:
            if opts is not None and (opts.weightsFormat != 0 or opts.keepNumDims):
                raise ModelFileError(f"operator {k} (FULLY_CONNECTED): weights format "
                                     f"{opts.weightsFormat} / keep_num_dims {opts.keepNumDims} are not "
                                     f"supported (expected DEFAULT, false)")
            w, bias, w_scale = self.weights(k, op, 0, ins[0], out_idx)
            if w.ndim != 2:
                raise ModelFileError(f"operator {k}: FC weight must be 2-D, got {w.shape}")
            x, y = self.activation(ins[0]), self.activation(out_idx)
            quant = ConvQuant(w_scale=w_scale, multiplier=None, shift=None)   # filled by run()
            return FullyConnected(inputs=[x], output=y, weight=w, bias=bias, activation=act(opts),
                                  quant=quant, **common)

        if code in (BO.MAX_POOL_2D, BO.AVERAGE_POOL_2D):
            if act(opts) != Activation.NONE:
                raise ModelFileError(f"operator {k} ({BUILTIN_NAMES[code]}): fused activations on "
                                     f"pools are not supported")
            kernel = (int(opts.filterHeight), int(opts.filterWidth))
            stride = (int(opts.strideH), int(opts.strideW))
            x, pads = self.input_and_pads(k, ins[0], opts, kernel, stride, (1, 1),
                                          lambda value, zp: code == BO.MAX_POOL_2D and value == -128)
            cls = MaxPool2D if code == BO.MAX_POOL_2D else AvgPool2D
            return cls(inputs=[x], output=self.activation(out_idx), kernel=kernel, stride=stride,
                       pads=pads, **common)

        if code == BO.ADD:
            if len(ins) != 2:
                raise ModelFileError(f"operator {k} (ADD): expected 2 inputs")
            a, b, y = self.activation(ins[0]), self.activation(ins[1]), self.activation(out_idx)
            if self.graph.tensors[a].shape != self.graph.tensors[b].shape:
                raise ModelFileError(f"operator {k} (ADD): broadcasting is not supported "
                                     f"({self.graph.tensors[a].shape} + {self.graph.tensors[b].shape})")
            return Add(inputs=[a, b], output=y, activation=act(opts), **common)

        if code == BO.CONCATENATION:
            if act(opts) != Activation.NONE:
                raise ModelFileError(f"operator {k} (CONCATENATION): fused activation unsupported")
            xs = [self.activation(i) for i in ins]
            y = self.activation(out_idx)
            rank = len(self.graph.tensors[y].shape) + 1
            axis = int(opts.axis) % rank
            if axis == 0:
                raise ModelFileError(f"operator {k} (CONCATENATION): concatenation along the batch")
            return Concat(inputs=xs, output=y, axis=axis - rank, **common)

        if code == BO.RESHAPE:
            x, y = self.activation(ins[0]), self.activation(out_idx)
            want = [1, *self.graph.tensors[y].shape]
            given = [[int(v) for v in opts.newShape]] if (
                opts is not None and opts.newShape is not None and len(opts.newShape)) else []
            if len(ins) > 1 and ins[1] >= 0:
                st = self.tensors[ins[1]].type
                if st not in (schema.TensorType.INT32, schema.TensorType.INT64):
                    raise ModelFileError(f"operator {k} (RESHAPE): shape input {self._where(ins[1])} "
                                         f"must be int32")
                given.append([int(v) for v in self.constant(ins[1], st).reshape(-1)])
            for g in given:
                ok = len(g) == len(want) and g.count(-1) <= 1 and all(
                    a == b or a == -1 for a, b in zip(g, want))
                if not ok:
                    raise ModelFileError(f"operator {k} (RESHAPE): new shape {g} does not match the "
                                         f"output shape {want}")
            return Reshape(inputs=[x], output=y, shape=tuple(self.graph.tensors[y].shape), **common)

        if code == BO.SOFTMAX:
            x, y = self.activation(ins[0]), self.activation(out_idx)
            beta = float(np.float32(opts.beta)) if opts is not None else 1.0
            return Softmax(inputs=[x], output=y, beta=beta, **common)

        raise ModelFileError(f"operator {k}: unsupported builtin op "
                             f"{BUILTIN_NAMES.get(code, 'code ' + str(code))}")

    def locate(self, op_name: str, field: str, index: int | None = None) -> str:
        """`` [tensor 7 'conv/bias', data at file offset N]`` for a weight or bias of an op."""
        k = self.op_index.get(op_name)
        if k is None:
            return ""
        ins = self.sub.operators[k].inputs
        pos = {"weight": 1, "bias": 2}.get(field)
        if pos is None or ins is None or len(ins) <= pos or int(ins[pos]) < 0:
            return ""
        idx = int(ins[pos])
        from dtmm.tflite.custom_ops import _buffer_file_offset
        off = _buffer_file_offset(getattr(self, "data", None), self.tensors[idx].buffer)
        if off is None:
            return f" [{self._where(idx)}]"
        if index is not None:
            return f" [{self._where(idx)}, {field}[{index}] at file offset {off + 4 * index}]"
        return f" [{self._where(idx)}, data at file offset {off}]"

    def run(self) -> Graph:
        ops = self.sub.operators or []
        meta = _metadata(self.model)
        meta = meta if isinstance(meta, dict) else {}
        meta_ops = meta.get("ops") if isinstance(meta.get("ops"), list) else None
        if meta_ops is not None and not all(
                isinstance(m, dict) and isinstance(m.get("name", ""), str)
                and isinstance(m.get("source", ""), str)
                and 0 < len(m.get("name", "x")) <= _MAX_NAME and len(m.get("source", "")) <= _MAX_NAME
                for m in meta_ops):
            meta_ops = None                  # malformed metadata: name ops by index instead
        self.op_index: dict[str, int] = {}
        op_where: dict[str, str] = {}
        real_codes = [_builtin(self.model.operatorCodes[o.opcodeIndex]) for o in ops]
        n_real = sum(1 for c in real_codes if c not in (BO.PAD, BO.PADV2))
        if meta_ops is not None and len(meta_ops) != n_real:
            meta_ops = None
        self.graph.inputs = [self.activation(int(i)) for i in (self.sub.inputs if self.sub.inputs is not None else [])]
        j = 0
        for k, (op, code) in enumerate(zip(ops, real_codes)):
            if code in (BO.PAD, BO.PADV2):
                self.convert(k, op, "", "")
                continue
            if meta_ops is not None:
                name = str(meta_ops[j].get("name", f"op{j}"))
                source = str(meta_ops[j].get("source", ""))
            else:
                name, source = f"{BUILTIN_NAMES.get(code, 'op').lower()}_{k}", f"tflite operator {k}"
            j += 1
            ir_op = self.convert(k, op, name, source)
            where = f"operator {k} ({ir_op.name!r}, {BUILTIN_NAMES.get(code, code)})"
            if ir_op.name in self.op_index:
                raise ModelFileError(f"{where}: op name {ir_op.name!r} is used twice")
            self.op_index[ir_op.name] = k
            op_where[ir_op.name] = where
            # every field checked, then the constants TFLM's Prepare computes
            quant = validate.check_op(self.graph, ir_op, where=where, locate=self.locate)
            if quant is not None:
                ir_op.quant = quant
            self.graph.add_op(ir_op)
        if self.pending_pads:
            k = next(iter(self.pending_pads))
            raise ModelFileError(f"a PAD op (output {self._where(k)}) does not feed a VALID conv; "
                                 f"dtmm's IR has no standalone PAD")
        self.graph.outputs = [self.activation(int(i)) for i in (self.sub.outputs if self.sub.outputs is not None else [])]
        validate.check_graph(self.graph, op_where)
        return self.graph


def read_tflite(src: str | os.PathLike | bytes | bytearray | memoryview) -> Graph:
    """Load an int8 ``.tflite`` file (path or bytes) as a quantized dtmm graph.

    Raises:
        ModelFileError: unreadable, truncated or malformed file; an unsupported op (named
            with its operator index and builtin name); a non-int8 activation tensor.
    """
    if isinstance(src, (str, os.PathLike)):
        try:
            data = Path(src).read_bytes()
        except OSError as e:
            raise ModelFileError(f"cannot read {os.fspath(src)!r}: {e.strerror or e}") from None
    else:
        data = src
    model = load_model(data)
    if len(model.subgraphs) != 1:
        raise ModelFileError(f"the .tflite file has {len(model.subgraphs)} subgraphs; dtmm reads "
                             f"single-subgraph models")
    try:
        reader = _Reader(model)
        reader.data = bytes(data)            # for file offsets in error messages
        return reader.run()
    except DtmmError as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(str(e)) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, ArithmeticError,
            struct.error) as e:
        raise ModelFileError(f"malformed .tflite file: {type(e).__name__}: {e}") from None

