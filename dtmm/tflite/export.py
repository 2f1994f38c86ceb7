"""Export a quantized dtmm graph as an int8 ``.tflite`` flatbuffer (no TensorFlow needed).

Written with the TFLite schema's generated object API (``ModelT``, ``SubGraphT``,
...) that ships in the tflite-micro wheel. What the file contains:

* one subgraph, every activation tensor int8 with shape ``[1, *shape]`` and
  per-tensor quantization; tensor names are the IR names, constant tensors are
  named ``<op>/weight``, ``<op>/bias``, ``<op>/pad`` so TFLite errors name layers;
* conv weights per-channel quantized (``quantized_dimension`` 0 for CONV_2D, 3 for
  DEPTHWISE_CONV_2D), int32 bias with scale ``float32(in_scale * w_scale[c])``
  and zero point 0, as TFLite Micro expects;
* explicit pads become ``SAME`` when they equal TFLite SAME's pads for that
  shape, ``VALID`` when zero, else a PAD op (int8, pad value = zero point)
  before a ``VALID`` conv, or a PADV2 op with pad value -128 before a ``VALID``
  max pool (e.g. PyTorch's ``MaxPool2d(3, 2, padding=1)``: a padded tap never
  wins, as in TFLite's own max pool). Average pools with non-SAME pads are
  refused (TFLite excludes padding from the count, a PAD op would not);
* a :class:`~dtmm.graph.compressed.CompressedConv2D` becomes a dtmm custom operator
  (``DTMM_CONV_2D_FWCS`` / ``_CSR`` / ``_PATTERN``) whose format arrays are constant
  tensors and whose parameters are flexbuffers custom options; the exact layout is in
  :mod:`dtmm.tflite.custom_ops`. TFLite Micro cannot run these: export
  :func:`dtmm.graph.compressed.dense_equivalent` for it;
* metadata ``"dtmm"``: JSON with the dtmm version and each IR op's name, kind
  and source, so :func:`dtmm.tflite.reader.read_tflite` restores the names.

Requantization constants are *not* stored: TFLite recomputes them from the
float32 scales at Prepare time, and so does the reader. The exporter checks that
the graph's stored constants equal what TFLite will compute
(:func:`dtmm.tflite.prepare.check_quant`), so the file behaves like the graph.

Example:
    >>> import numpy as np
    >>> from dtmm.graph.ir import Graph, TensorSpec, QParams, MaxPool2D
    >>> g = Graph(); q = QParams.per_tensor(0.1, 0)
    >>> _ = g.add_tensor(TensorSpec("x", (4, 4, 1), "int8", q))
    >>> _ = g.add_tensor(TensorSpec("y", (2, 2, 1), "int8", q))
    >>> _ = g.add_op(MaxPool2D("pool", ["x"], "y"))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> to_tflite_bytes(g)[4:8]
    b'TFL3'
"""
from __future__ import annotations

import json
import os

import flatbuffers
import numpy as np

import dtmm
from dtmm.errors import GraphError
from dtmm.graph.compressed import CompressedConv2D, CompressedFullyConnected
from dtmm.graph.ir import (Activation, Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, Op, Reshape, Softmax)
from dtmm.tflite._padding import same_pads
from dtmm.tflite._schema import FILE_IDENTIFIER, METADATA_NAME, SCHEMA_VERSION, schema
from dtmm.tflite.prepare import check_quant

__all__ = ["to_tflite_bytes", "export_tflite"]

_BUFFER_ALIGNMENT = 16

_ACTIVATIONS = {
    Activation.NONE: schema.ActivationFunctionType.NONE,
    Activation.RELU: schema.ActivationFunctionType.RELU,
    Activation.RELU6: schema.ActivationFunctionType.RELU6,
}


class _AlignedBufferT(schema.BufferT):
    """A BufferT whose data vector is 16-byte aligned (as the TFLite converter writes it)."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        data = None
        if self.data is not None:
            raw = bytes(self.data)
            builder.StartVector(1, len(raw), _BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


class _ModelBuilder:
    """Accumulates tensors, buffers, operator codes and operators of one subgraph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.buffers: list[schema.BufferT] = [_AlignedBufferT()]   # buffer 0: the empty sentinel
        self.tensors: list[schema.TensorT] = []
        self.tensor_index: dict[str, int] = {}
        self.opcodes: list[schema.OperatorCodeT] = []
        self.opcode_index: dict[int, int] = {}
        self.operators: list[schema.OperatorT] = []

    # -- tensors
    def _buffer(self, data: np.ndarray | bytes | None) -> int:
        if data is None:
            return 0
        buf = _AlignedBufferT()
        buf.data = data if isinstance(data, bytes) else np.ascontiguousarray(data).astype(
            data.dtype.newbyteorder("<")).tobytes()
        self.buffers.append(buf)
        return len(self.buffers) - 1

    def add_tensor(self, name: str, shape, ttype: int, scale=None, zero_point=None,
                   quantized_dimension: int = 0, data=None) -> int:
        if name in self.tensor_index:
            raise GraphError(f"tensor name {name!r} is used twice in the exported model")
        t = schema.TensorT()
        t.name = name
        t.shape = np.asarray(shape, np.int32)
        t.type = ttype
        t.buffer = self._buffer(data)
        if scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.atleast_1d(np.asarray(scale, np.float32))
            q.zeroPoint = np.atleast_1d(np.asarray(zero_point, np.int64))
            q.quantizedDimension = quantized_dimension
            t.quantization = q
        self.tensors.append(t)
        self.tensor_index[name] = len(self.tensors) - 1
        return self.tensor_index[name]

    def activation(self, name: str) -> int:
        """Index of an IR activation tensor, creating it (int8, batch 1) on first use."""
        if name not in self.tensor_index:
            spec = self.graph.tensors[name]
            if spec.qparams is None or not spec.qparams.is_per_tensor:
                raise GraphError(f"tensor {name!r} needs per-tensor qparams to be exported")
            self.add_tensor(name, (1,) + tuple(spec.shape), schema.TensorType.INT8,
                            spec.qparams.scale, spec.qparams.zero_point)
        return self.tensor_index[name]

    # -- operators
    def add_operator(self, builtin: int, inputs: list[int], outputs: list[int],
                     options_type: int = 0, options=None) -> None:
        if builtin not in self.opcode_index:
            code = schema.OperatorCodeT()
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = 1
            self.opcodes.append(code)
            self.opcode_index[builtin] = len(self.opcodes) - 1
        o = schema.OperatorT()
        o.opcodeIndex = self.opcode_index[builtin]
        o.inputs = np.asarray(inputs, np.int32)
        o.outputs = np.asarray(outputs, np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)

    def add_custom_operator(self, custom_code: str, inputs: list[int], outputs: list[int],
                            options: bytes) -> None:
        """A CUSTOM operator with ``custom_code`` and flexbuffers ``custom_options``."""
        key = ("custom", custom_code)
        if key not in self.opcode_index:
            code = schema.OperatorCodeT()
            code.builtinCode = schema.BuiltinOperator.CUSTOM
            code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            code.customCode = custom_code
            code.version = 1
            self.opcodes.append(code)
            self.opcode_index[key] = len(self.opcodes) - 1
        o = schema.OperatorT()
        o.opcodeIndex = self.opcode_index[key]
        o.inputs = np.asarray(inputs, np.int32)
        o.outputs = np.asarray(outputs, np.int32)
        o.customOptions = np.frombuffer(options, np.uint8).copy()
        o.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
        self.operators.append(o)


# ----------------------------------------------------------------------------- ops


def _qp(graph: Graph, name: str):
    q = graph.tensors[name].qparams
    if q is None:
        raise GraphError(f"tensor {name!r} has no qparams: export needs a quantized graph")
    return q


def _padding_mode(op: Op, graph: Graph, kernel, stride, dilation=(1, 1)):
    """``('SAME'|'VALID', pads_for_PAD_or_None)`` for an op's explicit pads."""
    pads = tuple(int(p) for p in op.pads)
    if not any(pads):
        return schema.Padding.VALID, None
    h, w = graph.tensors[op.inputs[0]].shape[:2]
    if pads == same_pads((h, w), kernel, stride, dilation):
        return schema.Padding.SAME, None
    return schema.Padding.VALID, pads


def _insert_pad(mb: _ModelBuilder, op: Op, pads, value: int | None = None) -> int:
    """PAD op (pad value = input zero point) before ``op``, or PADV2 with the raw int8 pad
    ``value`` (-128 before a max pool: padded taps then never win, exactly as TFLite's
    max pool skips them); returns the padded tensor index."""
    graph = mb.graph
    src = op.inputs[0]
    h, w, c = graph.tensors[src].shape
    t, b, l, r = pads
    if min(pads) < 0:
        raise GraphError(f"op {op.name!r}: negative pads {pads} cannot be exported")
    q = _qp(graph, src)
    paddings = np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32)
    pidx = mb.add_tensor(f"{op.name}/paddings", (4, 2), schema.TensorType.INT32, data=paddings)
    out = mb.add_tensor(f"{op.name}/pad", (1, h + t + b, w + l + r, c), schema.TensorType.INT8,
                        q.scale, q.zero_point)
    if value is None:
        mb.add_operator(schema.BuiltinOperator.PAD, [mb.activation(src), pidx], [out],
                        schema.BuiltinOptions.PadOptions, schema.PadOptionsT())
        return out
    vidx = mb.add_tensor(f"{op.name}/pad_value", (), schema.TensorType.INT8, q.scale, q.zero_point,
                         data=np.array([value], np.int8))
    mb.add_operator(schema.BuiltinOperator.PADV2, [mb.activation(src), pidx, vidx], [out],
                    schema.BuiltinOptions.PadV2Options, schema.PadV2OptionsT())
    return out


def _weights_and_bias(mb: _ModelBuilder, op: Op, qdim: int) -> tuple[int, int]:
    graph = mb.graph
    if op.quant is None:
        raise GraphError(f"op {op.name!r} ({op.kind}) has no quant constants")
    if op.weight.dtype != np.int8 or op.bias.dtype != np.int32:
        raise GraphError(f"op {op.name!r}: weight must be int8 and bias int32, got "
                         f"{op.weight.dtype} / {op.bias.dtype}")
    in_scale = np.float32(_qp(graph, op.inputs[0]).s)
    w_scale = np.atleast_1d(np.asarray(op.quant.w_scale, np.float32))
    nch = op.weight.shape[qdim]
    if w_scale.size not in (1, nch):
        raise GraphError(f"op {op.name!r}: {w_scale.size} weight scales for {nch} channels")
    wz = np.zeros(w_scale.size, np.int64)
    widx = mb.add_tensor(f"{op.name}/weight", op.weight.shape, schema.TensorType.INT8,
                         w_scale, wz, qdim, data=op.weight)
    bias_scale = (in_scale * w_scale).astype(np.float32)   # float32 product, as TFLite checks
    bidx = mb.add_tensor(f"{op.name}/bias", op.bias.shape, schema.TensorType.INT32,
                         bias_scale, np.zeros(bias_scale.size, np.int64), 0, data=op.bias)
    return widx, bidx


def _export_conv(mb: _ModelBuilder, op: Conv2D | DepthwiseConv2D) -> None:
    depthwise = isinstance(op, DepthwiseConv2D)
    padding, pads = _padding_mode(op, mb.graph, op.kernel, op.stride, op.dilation)
    x = _insert_pad(mb, op, pads) if pads else mb.activation(op.inputs[0])
    widx, bidx = _weights_and_bias(mb, op, 3 if depthwise else 0)
    if depthwise:
        opts = schema.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = int(op.depth_multiplier)
        builtin, otype = (schema.BuiltinOperator.DEPTHWISE_CONV_2D,
                          schema.BuiltinOptions.DepthwiseConv2DOptions)
    else:
        opts = schema.Conv2DOptionsT()
        builtin, otype = schema.BuiltinOperator.CONV_2D, schema.BuiltinOptions.Conv2DOptions
    opts.padding = padding
    opts.strideH, opts.strideW = (int(s) for s in op.stride)
    opts.dilationHFactor, opts.dilationWFactor = (int(d) for d in op.dilation)
    opts.fusedActivationFunction = _ACTIVATIONS[Activation(op.activation)]
    mb.add_operator(builtin, [x, widx, bidx], [mb.activation(op.output)], otype, opts)


def _export_fc(mb: _ModelBuilder, op: FullyConnected) -> None:
    widx, bidx = _weights_and_bias(mb, op, 0)
    opts = schema.FullyConnectedOptionsT()
    opts.fusedActivationFunction = _ACTIVATIONS[Activation(op.activation)]
    opts.keepNumDims = False
    mb.add_operator(schema.BuiltinOperator.FULLY_CONNECTED,
                    [mb.activation(op.inputs[0]), widx, bidx], [mb.activation(op.output)],
                    schema.BuiltinOptions.FullyConnectedOptions, opts)


def _export_pool(mb: _ModelBuilder, op: MaxPool2D | AvgPool2D) -> None:
    graph = mb.graph
    if not _qp(graph, op.inputs[0]).same_as(_qp(graph, op.output)):
        raise GraphError(f"op {op.name!r} ({op.kind}): TFLite pools need equal input and output "
                         f"qparams")
    padding, pads = _padding_mode(op, graph, op.kernel, op.stride)
    x = mb.activation(op.inputs[0])
    if pads is not None:
        if not isinstance(op, MaxPool2D):
            raise GraphError(f"op {op.name!r} ({op.kind}): pads {tuple(op.pads)} are neither zero "
                             f"nor TFLite SAME for input {graph.tensors[op.inputs[0]].shape[:2]}; a "
                             f"PAD op would change the averaged count, so this cannot be exported")
        x = _insert_pad(mb, op, pads, value=-128)
    opts = schema.Pool2DOptionsT()
    opts.padding = padding
    opts.strideH, opts.strideW = (int(s) for s in op.stride)
    opts.filterHeight, opts.filterWidth = (int(k) for k in op.kernel)
    opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
    builtin = (schema.BuiltinOperator.MAX_POOL_2D if isinstance(op, MaxPool2D)
               else schema.BuiltinOperator.AVERAGE_POOL_2D)
    mb.add_operator(builtin, [x], [mb.activation(op.output)],
                    schema.BuiltinOptions.Pool2DOptions, opts)


def _export_add(mb: _ModelBuilder, op: Add) -> None:
    a, b = (mb.graph.tensors[i].shape for i in op.inputs)
    if tuple(a) != tuple(b):
        raise GraphError(f"op {op.name!r} (add): input shapes {a} and {b} differ")
    opts = schema.AddOptionsT()
    opts.fusedActivationFunction = _ACTIVATIONS[Activation(op.activation)]
    mb.add_operator(schema.BuiltinOperator.ADD, [mb.activation(i) for i in op.inputs],
                    [mb.activation(op.output)], schema.BuiltinOptions.AddOptions, opts)


def _export_concat(mb: _ModelBuilder, op: Concat) -> None:
    graph = mb.graph
    out_q = _qp(graph, op.output)
    for name in op.inputs:
        if not out_q.same_as(_qp(graph, name)):
            raise GraphError(f"op {op.name!r} (concat): input {name!r} qparams differ from the "
                             f"output's")
    rank = len(graph.tensors[op.output].shape) + 1
    opts = schema.ConcatenationOptionsT()
    opts.axis = int(op.axis) + rank if op.axis < 0 else int(op.axis) + 1
    opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
    mb.add_operator(schema.BuiltinOperator.CONCATENATION, [mb.activation(i) for i in op.inputs],
                    [mb.activation(op.output)], schema.BuiltinOptions.ConcatenationOptions, opts)


def _export_reshape(mb: _ModelBuilder, op: Reshape) -> None:
    graph = mb.graph
    if not _qp(graph, op.inputs[0]).same_as(_qp(graph, op.output)):
        raise GraphError(f"op {op.name!r} (reshape): input and output qparams must be equal")
    new_shape = np.array((1,) + tuple(graph.tensors[op.output].shape), np.int32)
    sidx = mb.add_tensor(f"{op.name}/shape", new_shape.shape, schema.TensorType.INT32,
                         data=new_shape)
    opts = schema.ReshapeOptionsT()
    opts.newShape = [int(v) for v in new_shape]
    mb.add_operator(schema.BuiltinOperator.RESHAPE, [mb.activation(op.inputs[0]), sidx],
                    [mb.activation(op.output)], schema.BuiltinOptions.ReshapeOptions, opts)


def _export_softmax(mb: _ModelBuilder, op: Softmax) -> None:
    q = _qp(mb.graph, op.output)
    if q.zp != -128 or np.float32(q.s) != np.float32(1.0 / 256):
        raise GraphError(f"op {op.name!r} (softmax): int8 output must have scale 1/256 and zero "
                         f"point -128 (TFLite Micro checks it), got {q.s}, {q.zp}")
    opts = schema.SoftmaxOptionsT()
    opts.beta = float(op.beta)
    mb.add_operator(schema.BuiltinOperator.SOFTMAX, [mb.activation(op.inputs[0])],
                    [mb.activation(op.output)], schema.BuiltinOptions.SoftmaxOptions, opts)


def _export_compressed_conv(mb: _ModelBuilder, op: CompressedConv2D) -> None:
    from dtmm.tflite.custom_ops import export_compressed_conv   # custom_ops imports this module
    export_compressed_conv(mb, op)


def _export_compressed_fc(mb: _ModelBuilder, op: CompressedFullyConnected) -> None:
    from dtmm.tflite.custom_ops import export_compressed_fc     # custom_ops imports this module
    export_compressed_fc(mb, op)


_EXPORTERS = {
    Conv2D: _export_conv,
    CompressedConv2D: _export_compressed_conv,
    CompressedFullyConnected: _export_compressed_fc,
    DepthwiseConv2D: _export_conv,
    FullyConnected: _export_fc,
    MaxPool2D: _export_pool,
    AvgPool2D: _export_pool,
    Add: _export_add,
    Concat: _export_concat,
    Reshape: _export_reshape,
    Softmax: _export_softmax,
}


# ----------------------------------------------------------------------------- API


def build_model(graph: Graph) -> schema.ModelT:
    """The ``ModelT`` object tree of a quantized graph (see the module docstring)."""
    graph.validate()
    if not graph.is_quantized:
        missing = [n for n, t in graph.tensors.items() if t.qparams is None][:3]
        raise GraphError(f"export needs a quantized graph; tensors without qparams: {missing}")
    mb = _ModelBuilder(graph)
    for name in graph.inputs:
        mb.activation(name)
    for op in graph.ops:
        exporter = _EXPORTERS.get(type(op))
        if exporter is None:
            raise GraphError(f"op {op.name!r}: no TFLite export for {op.kind}")
        check_quant(graph, op)     # TFLM recomputes the constants: they must agree
        exporter(mb, op)

    sub = schema.SubGraphT()
    sub.tensors = mb.tensors
    sub.inputs = np.asarray([mb.tensor_index[n] for n in graph.inputs], np.int32)
    sub.outputs = np.asarray([mb.tensor_index[n] for n in graph.outputs], np.int32)
    sub.operators = mb.operators
    sub.name = "main"

    meta = {
        "format": "dtmm-tflite",
        "dtmm_version": dtmm.__version__,
        "ops": [{"name": o.name, "kind": o.kind, "source": o.source} for o in graph.ops],
    }
    mb.buffers.append(_AlignedBufferT(data=json.dumps(meta, sort_keys=True).encode()))
    md = schema.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(mb.buffers) - 1

    model = schema.ModelT()
    model.version = SCHEMA_VERSION
    model.operatorCodes = mb.opcodes
    model.subgraphs = [sub]
    model.buffers = mb.buffers
    model.metadata = [md]
    model.description = f"dtmm {dtmm.__version__}"
    return model


def to_tflite_bytes(graph: Graph) -> bytes:
    """Serialise a quantized graph to ``.tflite`` bytes (identifier ``TFL3``).

    Raises:
        GraphError: the graph is not quantized, or uses something TFLite cannot express
            (e.g. a max pool with non-SAME pads), naming the op.

    Example:
        >>> from dtmm.tflite.reader import read_tflite  # doctest: +SKIP
        >>> g2 = read_tflite(to_tflite_bytes(g))         # doctest: +SKIP
    """
    model = build_model(graph)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def export_tflite(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` as ``.tflite``, atomically (temp file + ``os.replace``),
    with the user's umask (see :func:`dtmm.util.files.atomic_write_bytes`).

    Example:
        >>> export_tflite(g, "model.tflite")   # doctest: +SKIP
    """
    from dtmm.util.files import atomic_write_bytes

    atomic_write_bytes(path, to_tflite_bytes(graph))      # mode 0666 & ~umask
