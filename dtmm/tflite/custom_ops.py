"""dtmm's compressed convolutions as ``.tflite`` custom operators (write, read, verify).

A compressed model stays a standard TFLite flatbuffer (identifier ``TFL3``):
unpruned layers are builtin int8 ops; each :class:`~dtmm.graph.compressed.CompressedConv2D`
is one operator whose ``OperatorCode`` has ``builtin_code = CUSTOM`` (32, also in
``deprecated_builtin_code``), ``version = 1`` and one of these ``custom_code``:

=========================  ==========  ====================================================
custom_code                format      inputs (after input 0, the int8 activation)
=========================  ==========  ====================================================
``DTMM_CONV_2D_FWCS``      FWCS        1 ``arr``    INT8 ``[n_filterlets * C_in]``
                                       2 ``cptr``   UINT8|UINT16 ``[n_filterlets]``
                                       3 ``fidx``   UINT8|UINT16 ``[C_out + 1]``
                                       4 ``bias``   INT32 ``[C_out]``
``DTMM_CONV_2D_CSR``       CSR         1 ``values`` INT8 ``[nnz]``
                                       2 ``col``    UINT8|UINT16 ``[nnz]``
                                       3 ``rowptr`` UINT8|UINT16|UINT32 ``[C_out + 1]``
                                       4 ``bias``   INT32 ``[C_out]``
``DTMM_CONV_2D_PATTERN``   Pattern     1 ``values`` INT8 ``[4 * n_kernels]``
                                       2 ``pid``    UINT8 ``[n_kernels]``
                                       3 ``kidx``   UINT8|UINT16 ``[n_kernels]``
                                       4 ``kptr``   UINT8|UINT16|UINT32 ``[C_out + 1]``
                                       5 ``bias``   INT32 ``[C_out]``
``DTMM_FC_FWCS``           FWCS (O,I)  1 ``arr``    INT8 ``[kept weights]``
                                       2 ``cptr``   UINT8|UINT16 ``[n_runs]``
                                       3 ``fidx``   UINT8|UINT16 ``[O + 1]``
                                       4 ``bias``   INT32 ``[O]``
=========================  ==========  ====================================================

The compressed fully connected layer (:class:`~dtmm.graph.compressed.CompressedFullyConnected`)
has input 0 the int8 activation ``[1, I]`` and output ``[1, O]``; its options are
``version``, ``format`` (``"fwcs"``), ``in_features``, ``out_features``, ``size`` (the
run length, 1..I), ``activation``, ``w_scale`` (1 float: per tensor, as TFLite's
FULLY_CONNECTED, or ``O`` floats) and ``index_bytes``; bias quantization
``scale = float32(input_scale * w_scale)``. The reader recomputes the requantization
constants exactly as for the builtin op (:func:`dtmm.quant.arith.fc_multiplier` per
tensor, :func:`~dtmm.quant.arith.conv_multipliers` per channel) and checks the same
things as for the convolutions (FWCS ``verify`` of the linear layout, shapes, sizes,
the int32 accumulator bound).

Convolutions:

* Input 0 is the int8 NHWC activation ``[1, H, W, C_in]`` (per-tensor qparams); the one
  output is the int8 activation ``[1, OH, OW, C_out]`` with the output qparams. Explicit
  pads are applied inside the op (no PAD op is ever inserted).
* Format arrays are constant 1-D tensors named ``<layer>/<array>`` (``conv2/arr``,
  ``conv2/cptr``, ...), each with its own 16-byte aligned buffer, little-endian, no
  quantization; their semantics are exactly :mod:`dtmm.formats` (OHWI weight order). An
  empty array (e.g. every filterlet pruned) is a ``[0]`` tensor with an empty buffer.
* ``<layer>/bias`` is INT32 ``[C_out]`` with per-channel quantization along axis 0:
  ``scale[c] = float32(input_scale * w_scale[c])``, zero point 0 (as for builtin convs).
* ``custom_options`` (``custom_options_format`` = FLEXBUFFERS) is a flexbuffers map:

  ==================  ===========================================================
  key                 value
  ==================  ===========================================================
  ``version``         int, :data:`OPTIONS_VERSION` (= 1)
  ``format``          ``"fwcs"`` | ``"csr"`` | ``"pattern"`` (must match custom_code)
  ``kernel_h/_w``     int >= 1
  ``c_in``/``c_out``  int >= 1 (``C_in`` = input channels = FWCS ``size``)
  ``stride_h/_w``     int >= 1
  ``dilation_h/_w``   int >= 1
  ``pads``            ``[top, bottom, left, right]``, ints >= 0
  ``activation``      ``"none"`` | ``"relu"`` | ``"relu6"``
  ``w_scale``         ``C_out`` floats: per-output-channel weight scales (float32 values)
  ``index_bytes``     map array name -> element bytes (1, 2 or 4) of every index array
  ``patterns``        pattern only: the layer's own library as 9-bit position masks
                      (bit ``p`` = position ``kh * 3 + kw``), in ``pid`` order: 1..256
                      distinct masks of exactly 4 bits each
                      (:func:`dtmm.formats.pattern.library_codes`)
  ==================  ===========================================================

Requantization constants are not stored: like TFLite for builtin convs, the reader
recomputes them from the float32 scales (:func:`dtmm.quant.arith.conv_multipliers`).

Reading (:func:`read_custom_op`, called by :func:`dtmm.tflite.reader.read_tflite`)
checks everything before trusting it: options parse and have the right types and
ranges, tensor types/shapes/buffer sizes agree with the options, bias and scale counts
equal ``C_out``, the output shape follows from input shape, kernel, stride, pads and
dilation, and the format's own ``verify`` passes. Every failure is a
:class:`~dtmm.errors.ModelFileError` naming the operator index and layer, the field
and (for array contents) the byte offset inside the array and in the file.

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.graph.compressed import compress_graph
    >>> from dtmm.tflite.export import to_tflite_bytes
    >>> from dtmm.tflite.reader import read_tflite
    >>> sg = SynthGraph((6, 6, 3), seed=0); _ = sg.conv(4, 3, pads=1)
    >>> cg = compress_graph(sg.finish(), {"conv1": "csr"})
    >>> data = to_tflite_bytes(cg)
    >>> [custom_code for custom_code in custom_codes(data)]
    ['DTMM_CONV_2D_CSR']
    >>> op = read_tflite(data).ops[0]
    >>> op.kind, op.format_name, op.pads
    ('compressed_conv2d', 'csr', (1, 1, 1, 1))
"""
from __future__ import annotations

import re

import numpy as np
from flatbuffers import flexbuffers

from dtmm import formats as _formats
from dtmm.errors import FormatError, GraphError, ModelFileError
from dtmm.formats import CSR, FWCS, Pattern
from dtmm.formats.pattern import library_codes, library_from_codes
from dtmm.graph.compressed import CompressedConv2D, CompressedFullyConnected
from dtmm.graph.ir import Activation, ConvQuant
from dtmm.quant import arith
from dtmm.tflite._schema import TENSOR_TYPE_NAMES, schema

__all__ = ["CUSTOM_CODES", "FC_CUSTOM_CODE", "OPTIONS_VERSION", "LAYOUT", "custom_codes",
           "export_compressed_conv", "export_compressed_fc", "read_custom_op", "options_of"]

OPTIONS_VERSION = 1
CUSTOM_CODES = {"fwcs": "DTMM_CONV_2D_FWCS", "csr": "DTMM_CONV_2D_CSR",
                "pattern": "DTMM_CONV_2D_PATTERN"}
_FORMAT_OF_CODE = {v: k for k, v in CUSTOM_CODES.items()}
#: custom_code of the compressed fully connected layer (FWCS runs of inputs)
FC_CUSTOM_CODE = "DTMM_FC_FWCS"

TT = schema.TensorType
_INDEX_TYPES = (TT.UINT8, TT.UINT16)
_POINTER_TYPES = (TT.UINT8, TT.UINT16, TT.UINT32)
LAYOUT: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "fwcs": (("arr", (TT.INT8,)), ("cptr", _INDEX_TYPES), ("fidx", _INDEX_TYPES)),
    "csr": (("values", (TT.INT8,)), ("col", _INDEX_TYPES), ("rowptr", _POINTER_TYPES)),
    "pattern": (("values", (TT.INT8,)), ("pid", (TT.UINT8,)), ("kidx", _INDEX_TYPES),
                ("kptr", _POINTER_TYPES)),
}
"""Format arrays after input 0, in input order, with their allowed TensorTypes; bias follows."""

_NP_OF_TT = {TT.INT8: np.int8, TT.UINT8: np.uint8, TT.UINT16: np.uint16, TT.UINT32: np.uint32,
             TT.INT32: np.int32}
_TT_OF_NP = {np.dtype(v): k for k, v in _NP_OF_TT.items()}
_CLASSES = {"fwcs": FWCS, "csr": CSR, "pattern": Pattern}
_ACTS = {a.value: a for a in Activation}
_MAX_DIM = 0xFFFF        # dimensions are uint16 in the C header (see dtmm.formats.common)


def _fmt_arrays(fmt) -> dict[str, np.ndarray]:
    name = {FWCS: "fwcs", CSR: "csr", Pattern: "pattern"}[type(fmt)]
    return {field: getattr(fmt, field) for field, _ in LAYOUT[name]}


# ----------------------------------------------------------------------------- writing


def options_of(op: CompressedConv2D) -> dict:
    """The custom-options map (before flexbuffers encoding) of a compressed conv."""
    cout, kh, kw, cin = op.weight_shape
    w_scale = np.atleast_1d(np.asarray(op.quant.w_scale, np.float32))
    if w_scale.size == 1:
        w_scale = np.repeat(w_scale, cout)
    opts = {
        "version": OPTIONS_VERSION, "format": op.format_name,
        "kernel_h": kh, "kernel_w": kw, "c_in": cin, "c_out": cout,
        "stride_h": int(op.stride[0]), "stride_w": int(op.stride[1]),
        "dilation_h": int(op.dilation[0]), "dilation_w": int(op.dilation[1]),
        "pads": [int(p) for p in op.pads],
        "activation": Activation(op.activation).value,
        "w_scale": [float(s) for s in w_scale],
        "index_bytes": {f: int(a.itemsize) for f, a in _fmt_arrays(op.fmt).items()
                        if f not in ("arr", "values")},
    }
    if op.format_name == "fwcs":
        opts["size"] = int(op.fmt.size)
    if op.format_name == "pattern":
        opts["patterns"] = library_codes(op.fmt.library)
    return opts


def export_compressed_conv(mb, op: CompressedConv2D) -> None:
    """Add ``op`` to an exporter's model builder (:class:`dtmm.tflite.export._ModelBuilder`)."""
    graph = mb.graph
    x_spec, y_spec = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    where = f"op {op.name!r} ({op.kind}, {op.format_name})"
    if len(x_spec.shape) != 3 or len(y_spec.shape) != 3:
        raise GraphError(f"{where}: input {x_spec.shape} and output {y_spec.shape} must be (H, W, C)")
    try:
        op.verify(c_in=x_spec.shape[-1])
    except FormatError as e:
        raise GraphError(f"{where}: {e}") from None
    cout, kh, kw, cin = op.weight_shape
    if max(op.weight_shape) > _MAX_DIM:
        raise GraphError(f"{where}: weight shape {op.weight_shape} has a dimension over {_MAX_DIM}")
    if (min(op.stride) < 1 or min(op.dilation) < 1 or min(op.pads) < 0
            or max(*op.stride, *op.dilation, *op.pads) > _MAX_DIM):
        raise GraphError(f"{where}: stride {op.stride}, dilation {op.dilation} and pads {op.pads} "
                         f"must be >= 1, >= 1 and >= 0 (and <= {_MAX_DIM})")
    want = _out_hw(x_spec.shape[:2], op.kernel, op.stride, op.pads, op.dilation) + (cout,)
    if tuple(y_spec.shape) != want:
        raise GraphError(f"{where}: output shape {y_spec.shape} != {want} implied by the input, "
                         f"kernel, stride, pads and dilation")
    if op.quant is None or np.asarray(op.bias).dtype != np.int32:
        raise GraphError(f"{where}: needs int32 bias and quant constants")
    in_q, out_q = x_spec.qparams, y_spec.qparams
    if in_q is None or out_q is None or not in_q.is_per_tensor or not out_q.is_per_tensor:
        raise GraphError(f"{where}: input and output need per-tensor qparams")
    opts = options_of(op)
    w_scale = np.asarray(opts["w_scale"], np.float32)
    if w_scale.size != cout:
        raise GraphError(f"{where}: {w_scale.size} weight scales for {cout} output channels")
    mult, shift = arith.conv_multipliers(in_q.s, w_scale, out_q.s)
    if not (np.array_equal(np.asarray(op.quant.multiplier, np.int64).ravel(), mult)
            and np.array_equal(np.asarray(op.quant.shift, np.int64).ravel(), shift)):
        raise GraphError(f"{where}: stored multiplier/shift differ from what the scales give "
                         f"({np.asarray(op.quant.multiplier).ravel()[:4]} vs {mult[:4]}); the "
                         f"reader recomputes them, so recompute with dtmm.quant.arith")
    inputs = [mb.activation(op.inputs[0])]
    for field, arr in _fmt_arrays(op.fmt).items():
        inputs.append(mb.add_tensor(f"{op.name}/{field}", (len(arr),), _TT_OF_NP[arr.dtype],
                                    data=np.ascontiguousarray(arr)))
    bias_scale = (np.float32(in_q.s) * w_scale).astype(np.float32)
    inputs.append(mb.add_tensor(f"{op.name}/bias", (cout,), TT.INT32, bias_scale,
                                np.zeros(cout, np.int64), 0,
                                data=np.asarray(op.bias, np.int32)))
    mb.add_custom_operator(CUSTOM_CODES[op.format_name], inputs, [mb.activation(op.output)],
                           bytes(flexbuffers.Dumps(opts)))


def fc_options_of(op: CompressedFullyConnected) -> dict:
    """The custom-options map of a compressed fully connected layer."""
    o, n_in = op.weight_shape
    w_scale = np.atleast_1d(np.asarray(op.quant.w_scale, np.float32))
    return {
        "version": OPTIONS_VERSION, "format": "fwcs", "in_features": n_in, "out_features": o,
        "size": int(op.fmt.size), "activation": Activation(op.activation).value,
        "w_scale": [float(v) for v in w_scale],
        "index_bytes": {"cptr": int(op.fmt.cptr.itemsize), "fidx": int(op.fmt.fidx.itemsize)},
    }


def _fc_multipliers(in_s: float, w_scale: np.ndarray, out_s: float):
    """FULLY_CONNECTED requantization constants, per tensor (one scale) or per channel."""
    if w_scale.size == 1:
        m, sh = arith.fc_multiplier(in_s, float(w_scale[0]), out_s)
        return np.array([m], np.int64), np.array([sh], np.int64)
    return arith.conv_multipliers(in_s, w_scale, out_s)


def export_compressed_fc(mb, op: CompressedFullyConnected) -> None:
    """Add a compressed fully connected layer to an exporter's model builder."""
    graph = mb.graph
    x_spec, y_spec = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    where = f"op {op.name!r} ({op.kind})"
    o, n_in = op.weight_shape
    if int(np.prod(x_spec.shape)) != n_in or int(np.prod(y_spec.shape)) != o or len(y_spec.shape) != 1:
        raise GraphError(f"{where}: input {x_spec.shape} / output {y_spec.shape} do not match "
                         f"weight ({o}, {n_in})")
    try:
        op.verify(n_in)
    except FormatError as e:
        raise GraphError(f"{where}: {e}") from None
    if max(o, n_in) > _MAX_DIM:
        raise GraphError(f"{where}: weight ({o}, {n_in}) has a dimension over {_MAX_DIM}")
    if op.quant is None or np.asarray(op.bias).dtype != np.int32:
        raise GraphError(f"{where}: needs int32 bias and quant constants")
    in_q, out_q = x_spec.qparams, y_spec.qparams
    if in_q is None or out_q is None or not in_q.is_per_tensor or not out_q.is_per_tensor:
        raise GraphError(f"{where}: input and output need per-tensor qparams")
    opts = fc_options_of(op)
    w_scale = np.asarray(opts["w_scale"], np.float32)
    if w_scale.size not in (1, o):
        raise GraphError(f"{where}: {w_scale.size} weight scales for {o} outputs")
    mult, shift = _fc_multipliers(in_q.s, w_scale, out_q.s)
    if not (np.array_equal(np.asarray(op.quant.multiplier, np.int64).ravel(), mult)
            and np.array_equal(np.asarray(op.quant.shift, np.int64).ravel(), shift)):
        raise GraphError(f"{where}: stored multiplier/shift differ from what the scales give; "
                         f"the reader recomputes them, so recompute with dtmm.quant.arith")
    inputs = [mb.activation(op.inputs[0])]
    for field in ("arr", "cptr", "fidx"):
        arr = getattr(op.fmt, field)
        inputs.append(mb.add_tensor(f"{op.name}/{field}", (len(arr),), _TT_OF_NP[arr.dtype],
                                    data=np.ascontiguousarray(arr)))
    bias_scale = (np.float32(in_q.s) * w_scale).astype(np.float32)
    inputs.append(mb.add_tensor(f"{op.name}/bias", (o,), TT.INT32, bias_scale,
                                np.zeros(bias_scale.size, np.int64), 0,
                                data=np.asarray(op.bias, np.int32)))
    mb.add_custom_operator(FC_CUSTOM_CODE, inputs, [mb.activation(op.output)],
                           bytes(flexbuffers.Dumps(opts)))


def _out_hw(hw, kernel, stride, pads, dilation) -> tuple[int, int]:
    t, b, l, r = pads
    oh = (hw[0] + t + b - ((kernel[0] - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (hw[1] + l + r - ((kernel[1] - 1) * dilation[1] + 1)) // stride[1] + 1
    return oh, ow


def custom_codes(data: bytes) -> list[str]:
    """The custom_code of every custom operator of a ``.tflite`` file, in operator order."""
    from dtmm.tflite.reader import load_model
    m = load_model(data)
    codes = m.operatorCodes or []
    out = []
    for o in m.subgraphs[0].operators or []:
        c = codes[o.opcodeIndex]
        if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM:
            cc = c.customCode
            out.append(cc.decode("utf-8", "replace") if isinstance(cc, bytes) else str(cc))
    return out


# ----------------------------------------------------------------------------- reading


def _buffer_file_offset(data: bytes | None, index: int) -> int | None:
    """File offset of buffer ``index``'s first data byte (None if unknown)."""
    if data is None:
        return None
    try:
        b = schema.Model.GetRootAs(data, 0).Buffers(index)
        o = b._tab.Offset(4)
        return int(b._tab.Vector(o)) if o else None
    except Exception:  # noqa: BLE001 - only a nicety for error messages
        return None


class _OpReader:
    """Reads and checks one custom operator; ``r`` is the :class:`dtmm.tflite.reader._Reader`."""

    def __init__(self, r, k: int, op: schema.OperatorT, ins: list[int], outs: list[int],
                 name: str, source: str):
        self.r, self.k, self.op, self.ins, self.outs = r, k, op, ins, outs
        self.name, self.source = name, source
        code = r.model.operatorCodes[op.opcodeIndex].customCode
        self.code = code.decode("utf-8", "replace") if isinstance(code, bytes) else str(code or "")
        self.where = f"operator {k} ({name!r}, {self.code})"
        self.locations: dict[str, str] = {}

    def fail(self, msg: str) -> ModelFileError:
        return ModelFileError(f"{self.where}: {msg}")

    # -- options
    def options(self) -> dict:
        op = self.op
        if op.customOptionsFormat != schema.CustomOptionsFormat.FLEXBUFFERS:
            raise self.fail(f"custom_options_format {op.customOptionsFormat} is not FLEXBUFFERS")
        raw = op.customOptions
        if raw is None or len(raw) == 0:
            raise self.fail("custom options are missing")
        raw = bytes(np.asarray(raw, np.uint8))
        try:
            opts = flexbuffers.Loads(raw)
        except Exception as e:  # noqa: BLE001 - flexbuffers raises many types on bad input
            raise self.fail(f"custom options ({len(raw)} bytes) are not valid flexbuffers: "
                            f"{type(e).__name__}: {e}") from None
        if not isinstance(opts, dict):
            raise self.fail(f"custom options are a flexbuffers {type(opts).__name__}, not a map")
        return opts

    def int_opt(self, opts: dict, key: str, lo: int, hi: int = _MAX_DIM) -> int:
        v = opts.get(key)
        if type(v) is not int or not lo <= v <= hi:
            raise self.fail(f"custom option {key!r} = {v!r} is not an int in [{lo}, {hi}]")
        return v

    # -- tensors
    def tensor_index(self, pos: int, field: str) -> int:
        if pos >= len(self.ins):
            raise self.fail(f"input {pos} ({field}) is missing: {len(self.ins)} inputs")
        idx = self.ins[pos]
        if not 0 <= idx < len(self.r.tensors):
            raise self.fail(f"input {pos} ({field}): tensor index {idx} out of range")
        return idx

    def array(self, pos: int, field: str, types, n: int | None = None) -> np.ndarray:
        """Constant 1-D tensor ``pos`` of one of ``types``; its buffer must match its shape."""
        idx = self.tensor_index(pos, field)
        t = self.r.tensors[idx]
        tname = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name)
        what = f"input {pos} ({field}, tensor {idx} {tname!r})"
        if t.type not in types:
            raise self.fail(f"{what} has type {TENSOR_TYPE_NAMES.get(t.type, t.type)}, expected "
                            + " or ".join(TENSOR_TYPE_NAMES[x] for x in types))
        shape = [int(s) for s in (t.shape if t.shape is not None else [])]
        if len(shape) != 1 or shape[0] < 0:
            raise self.fail(f"{what} has shape {shape}, expected 1-D")
        if n is not None and shape[0] != n:
            raise self.fail(f"{what} has {shape[0]} entries, expected {n}")
        dtype = np.dtype(_NP_OF_TT[t.type]).newbyteorder("<")
        need = shape[0] * dtype.itemsize
        buf = self.r.model.buffers[t.buffer]
        raw = b"" if buf.data is None or isinstance(buf.data, int) else bytes(
            np.asarray(buf.data, np.uint8))
        if need and t.buffer == 0:
            raise self.fail(f"{what} should be constant but refers to the empty buffer 0")
        if len(raw) != need:
            short = "shorter than" if len(raw) < need else "longer than"
            raise self.fail(f"{what}: buffer {t.buffer} holds {len(raw)} bytes, {short} the "
                            f"{need} bytes its shape {shape} of {dtype.name} needs")
        off = _buffer_file_offset(getattr(self.r, "data", None), t.buffer)
        self.locations[field] = f"tensor {idx} {tname!r}" + (
            f", data at file offset {off}" if off is not None else "")
        return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))

    def activation(self, idx: int, what: str) -> str:
        if not 0 <= idx < len(self.r.tensors):
            raise self.fail(f"{what} tensor index {idx} out of range")
        name = self.r.activation(idx)
        shape = self.r.graph.tensors[name].shape
        if len(shape) != 3 or min(shape) < 1:
            raise self.fail(f"{what} tensor {idx} ({name!r}) has shape {list(shape)} without "
                            f"batch; expected (H, W, C) with positive sizes")
        return name

    def flat_activation(self, idx: int, what: str) -> str:
        if not 0 <= idx < len(self.r.tensors):
            raise self.fail(f"{what} tensor index {idx} out of range")
        name = self.r.activation(idx)
        shape = self.r.graph.tensors[name].shape
        if len(shape) != 1 or shape[0] < 1:
            raise self.fail(f"{what} tensor {idx} ({name!r}) has shape {list(shape)} without "
                            f"batch; expected (features,)")
        return name

    def common_options(self, opts: dict) -> None:
        version = opts.get("version")
        if version != OPTIONS_VERSION or type(version) is not int:
            raise self.fail(f"custom option 'version' = {version!r}: this dtmm reads version "
                            f"{OPTIONS_VERSION}")

    def scales(self, opts: dict, n: int, allowed: tuple[int, ...]) -> np.ndarray:
        w_scale = opts.get("w_scale")
        if (not isinstance(w_scale, list) or len(w_scale) not in allowed
                or any(type(v) not in (float, int) for v in w_scale)):
            raise self.fail(f"custom option 'w_scale' must be {' or '.join(map(str, allowed))} "
                            f"numbers, got {type(w_scale).__name__} of length "
                            f"{len(w_scale) if isinstance(w_scale, list) else '-'}")
        with np.errstate(over="ignore"):
            w_scale = np.asarray(w_scale, np.float64).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(w_scale) | (w_scale <= 0))
        if bad.size:
            raise self.fail(f"custom option 'w_scale'[{int(bad[0])}] = {w_scale[bad[0]]} is not a "
                            f"finite positive float32")
        return w_scale

    def read_fc(self) -> CompressedFullyConnected:
        opts = self.options()
        self.common_options(opts)
        if opts.get("format") != "fwcs":
            raise self.fail(f"custom option 'format' = {opts.get('format')!r} must be 'fwcs'")
        n_in, o = self.int_opt(opts, "in_features", 1), self.int_opt(opts, "out_features", 1)
        size = self.int_opt(opts, "size", 1, n_in)
        act = opts.get("activation")
        if not isinstance(act, str) or act not in _ACTS:
            raise self.fail(f"custom option 'activation' = {act!r} is not one of {sorted(_ACTS)}")
        w_scale = self.scales(opts, o, (1, o))
        index_bytes = opts.get("index_bytes")
        if not isinstance(index_bytes, dict):
            raise self.fail(f"custom option 'index_bytes' = {index_bytes!r} is not a map")
        if len(self.ins) != 5 or len(self.outs) != 1:
            raise self.fail(f"expected 5 inputs (activation, arr, cptr, fidx, bias) and 1 output, "
                            f"got {len(self.ins)} and {len(self.outs)}")
        x = self.flat_activation(self.ins[0], "input 0 (activation)")
        y = self.flat_activation(self.outs[0], "output")
        if self.r.graph.tensors[x].shape[0] != n_in or self.r.graph.tensors[y].shape[0] != o:
            raise self.fail(f"input {list(self.r.graph.tensors[x].shape)} / output "
                            f"{list(self.r.graph.tensors[y].shape)} do not match in_features "
                            f"{n_in} / out_features {o}")
        arrays = {}
        for pos, (field, types) in enumerate(LAYOUT["fwcs"], start=1):
            a = self.array(pos, field, types)
            if field != "arr" and index_bytes.get(field) != a.itemsize:
                raise self.fail(f"input {pos} ({field}) has {a.itemsize}-byte elements but custom "
                                f"option index_bytes[{field!r}] = {index_bytes.get(field)!r}")
            arrays[field] = a
        fmt = FWCS(shape=(o, n_in), size=size, name=self.name, **arrays)
        try:
            _formats.verify(fmt, (o, n_in))
        except FormatError as e:
            raise self.fail(f"{e}{self._locate(str(e))}") from None
        bias = self.array(4, "bias", (TT.INT32,), n=o).astype(np.int32)
        in_s, out_s = self.r.graph.tensors[x].qparams.s, self.r.graph.tensors[y].qparams.s
        bq = self.r.tensors[self.ins[4]].quantization
        if bq is not None and bq.scale is not None and len(bq.scale):
            bs = np.asarray(bq.scale, np.float32)
            want_bs = (np.float32(in_s) * w_scale).astype(np.float32)
            if bs.shape != want_bs.shape or not np.array_equal(bs, want_bs):
                raise self.fail(f"bias quantization: scales {bs[:4]} != input_scale * w_scale = "
                                f"{want_bs[:4]}")
        mult, shift = _fc_multipliers(in_s, w_scale, out_s)
        if shift.size and (shift.min() < -31 or shift.max() > 30):
            raise self.fail(f"input_scale * w_scale / output_scale is out of range (shift "
                            f"{int(shift.min())}..{int(shift.max())})")
        if act == "relu6":
            with np.errstate(over="ignore", divide="ignore"):
                if not np.isfinite(np.float32(6.0) / np.float32(out_s)):
                    raise self.fail(f"output scale {out_s} is too small for relu6")
        in_zp = self.r.graph.tensors[x].qparams.zp
        self._check_no_overflow(fmt, bias, np.broadcast_to(shift, (o,)),
                                max(abs(-128 - in_zp), abs(127 - in_zp)))
        return CompressedFullyConnected(name=self.name, inputs=[x], output=y, source=self.source,
                                        fmt=fmt, bias=bias, activation=_ACTS[act],
                                        quant=ConvQuant(w_scale=w_scale, multiplier=mult,
                                                        shift=shift))

    # -- the op
    def read(self) -> CompressedConv2D | CompressedFullyConnected:
        if self.code == FC_CUSTOM_CODE:
            return self.read_fc()
        fmt_name = _FORMAT_OF_CODE.get(self.code)
        if fmt_name is None:
            raise self.fail(f"unsupported custom op {self.code!r}; known: "
                            f"{sorted(list(_FORMAT_OF_CODE) + [FC_CUSTOM_CODE])}")
        opts = self.options()
        version = opts.get("version")
        if version != OPTIONS_VERSION or type(version) is not int:
            raise self.fail(f"custom option 'version' = {version!r}: this dtmm reads version "
                            f"{OPTIONS_VERSION}")
        if opts.get("format") != fmt_name:
            raise self.fail(f"custom option 'format' = {opts.get('format')!r} does not match "
                            f"custom_code (expected {fmt_name!r})")
        kh, kw = self.int_opt(opts, "kernel_h", 1), self.int_opt(opts, "kernel_w", 1)
        cin, cout = self.int_opt(opts, "c_in", 1), self.int_opt(opts, "c_out", 1)
        stride = (self.int_opt(opts, "stride_h", 1), self.int_opt(opts, "stride_w", 1))
        dilation = (self.int_opt(opts, "dilation_h", 1), self.int_opt(opts, "dilation_w", 1))
        pads = opts.get("pads")
        if (not isinstance(pads, list) or len(pads) != 4
                or any(type(p) is not int or not 0 <= p <= _MAX_DIM for p in pads)):
            raise self.fail(f"custom option 'pads' = {pads!r} is not 4 ints in [0, {_MAX_DIM}]")
        act = opts.get("activation")
        if not isinstance(act, str) or act not in _ACTS:
            raise self.fail(f"custom option 'activation' = {act!r} is not one of {sorted(_ACTS)}")
        w_scale = opts.get("w_scale")
        if (not isinstance(w_scale, list) or len(w_scale) != cout
                or any(type(s) not in (float, int) for s in w_scale)):
            raise self.fail(f"custom option 'w_scale' must be {cout} (= c_out) numbers, got "
                            f"{type(w_scale).__name__} of length "
                            f"{len(w_scale) if isinstance(w_scale, list) else '-'}")
        with np.errstate(over="ignore"):
            w_scale = np.asarray(w_scale, np.float64).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(w_scale) | (w_scale <= 0))
        if bad.size:
            raise self.fail(f"custom option 'w_scale'[{int(bad[0])}] = {w_scale[bad[0]]} is not a "
                            f"finite positive float32")
        if fmt_name == "fwcs" and opts.get("size") != cin:
            raise self.fail(f"custom option 'size' = {opts.get('size')!r} must equal c_in = {cin}")
        if fmt_name == "pattern":
            codes = opts.get("patterns")
            if not isinstance(codes, list):
                raise self.fail(f"custom option 'patterns' = {codes!r} is not a list of "
                                f"9-bit position masks")
            try:
                library = library_from_codes(codes, name=self.name)
            except FormatError as e:
                raise self.fail(f"custom option 'patterns': {e}") from None
        index_bytes = opts.get("index_bytes")
        if not isinstance(index_bytes, dict):
            raise self.fail(f"custom option 'index_bytes' = {index_bytes!r} is not a map")

        layout = LAYOUT[fmt_name]
        if len(self.ins) != 2 + len(layout) or len(self.outs) != 1:
            raise self.fail(f"expected {2 + len(layout)} inputs (activation, "
                            f"{', '.join(f for f, _ in layout)}, bias) and 1 output, got "
                            f"{len(self.ins)} and {len(self.outs)}")
        x = self.activation(self.ins[0], "input 0 (activation)")
        y = self.activation(self.outs[0], "output")
        x_shape, y_shape = self.r.graph.tensors[x].shape, self.r.graph.tensors[y].shape
        if x_shape[2] != cin:
            raise self.fail(f"input 0 has {x_shape[2]} channels but custom option c_in = {cin}")
        want = _out_hw(x_shape[:2], (kh, kw), stride, pads, dilation) + (cout,)
        if min(want) < 1 or tuple(y_shape) != want:
            raise self.fail(f"output shape {list(y_shape)} does not follow from input "
                            f"{list(x_shape)}, kernel {kh}x{kw}, stride {stride}, pads {pads}, "
                            f"dilation {dilation} (expected {list(want)})")

        arrays = {}
        for pos, (field, types) in enumerate(layout, start=1):
            a = self.array(pos, field, types)
            if field not in ("arr", "values") and index_bytes.get(field) != a.itemsize:
                raise self.fail(f"input {pos} ({field}) has {a.itemsize}-byte elements but custom "
                                f"option index_bytes[{field!r}] = {index_bytes.get(field)!r}")
            arrays[field] = a
        extra = {"size": cin} if fmt_name == "fwcs" else {}
        if fmt_name == "pattern":
            extra = {"library": library}
        fmt = _CLASSES[fmt_name](shape=(cout, kh, kw, cin), name=self.name, **extra, **arrays)
        try:
            _formats.verify(fmt, (cout, kh, kw, cin))
        except FormatError as e:
            raise self.fail(f"{e}{self._locate(str(e))}") from None

        b_pos = 1 + len(layout)
        bias = self.array(b_pos, "bias", (TT.INT32,), n=cout).astype(np.int32)
        in_s, out_s = self.r.graph.tensors[x].qparams.s, self.r.graph.tensors[y].qparams.s
        bq = self.r.tensors[self.ins[b_pos]].quantization
        if bq is not None and bq.scale is not None and len(bq.scale):
            bs = np.asarray(bq.scale, np.float32)
            want_bs = (np.float32(in_s) * w_scale).astype(np.float32)
            if bs.shape != want_bs.shape or not np.array_equal(bs, want_bs):
                raise self.fail(f"bias quantization: {bs.size} scales {bs[:4]} != input_scale * "
                                f"w_scale = {want_bs[:4]} ({cout} channels)")
        mult, shift = arith.conv_multipliers(in_s, w_scale, out_s)
        if shift.size and (shift.min() < -31 or shift.max() > 30):
            raise self.fail(f"input_scale * w_scale / output_scale is out of range (shift "
                            f"{int(shift.min())}..{int(shift.max())})")
        if act == "relu6":
            with np.errstate(over="ignore", divide="ignore"):
                if not np.isfinite(np.float32(6.0) / np.float32(out_s)):
                    raise self.fail(f"output scale {out_s} is too small for relu6")
        in_zp = self.r.graph.tensors[x].qparams.zp
        self._check_no_overflow(fmt, bias, shift, max(abs(-128 - in_zp), abs(127 - in_zp)))
        return CompressedConv2D(name=self.name, inputs=[x], output=y, source=self.source,
                                fmt=fmt, bias=bias, stride=stride, pads=tuple(pads),
                                dilation=dilation, activation=_ACTS[act],
                                quant=ConvQuant(w_scale=w_scale, multiplier=mult, shift=shift))

    def _check_no_overflow(self, fmt, bias: np.ndarray, shift: np.ndarray, xmax: int) -> None:
        """Reject a layer whose int32 accumulator (or its left-shifted value) could overflow
        for some int8 input: per filter ``|bias| + xmax * sum|w|`` (times ``2**shift`` when
        the shift is a left shift) must fit int32. dtmm's kernels rely on it; it holds by
        orders of magnitude for any trained layer."""
        cout = fmt.shape[0]
        if isinstance(fmt, FWCS) and len(fmt.shape) == 2:       # linear: runs, last shorter
            lens = np.minimum(int(fmt.size), int(fmt.shape[1]) - fmt.cptr.astype(np.int64))
            o = np.repeat(np.repeat(np.arange(cout), np.diff(fmt.fidx.astype(np.int64))), lens)
            v = fmt.arr
        elif isinstance(fmt, FWCS):
            cin = fmt.shape[3]
            o = np.repeat(np.repeat(np.arange(cout), np.diff(fmt.fidx.astype(np.int64))), cin)
            v = fmt.arr
        elif isinstance(fmt, CSR):
            o, v = np.repeat(np.arange(cout), np.diff(fmt.rowptr.astype(np.int64))), fmt.values
        else:
            o = np.repeat(np.repeat(np.arange(cout), np.diff(fmt.kptr.astype(np.int64))), 4)
            v = fmt.values
        wsum = np.bincount(o, weights=np.abs(v.astype(np.float64)), minlength=cout)
        # float64: exact below 2**53, and anything above that fails the test anyway
        bound = ((np.abs(bias.astype(np.float64)) + float(xmax) * wsum)
                 * np.exp2(np.maximum(shift, 0).astype(np.float64)))
        bad = np.flatnonzero(bound > arith.INT32_MAX)
        if bad.size:
            o = int(bad[0])
            raise self.fail(f"filter {o} can overflow the int32 accumulator: |bias| = "
                            f"{abs(int(bias[o]))}, sum |w| = {int(wsum[o])}, input offset up to "
                            f"{xmax}, left shift {max(int(shift[o]), 0)}")

    def _locate(self, msg: str) -> str:
        """`` (tensor ..., data at file offset N + byte offset)`` for the field a message names."""
        m = re.search(r"(\w+)\[(\d+)\] \(byte offset (\d+)\)", msg)
        field = m.group(1) if m else next((f for f in self.locations if f"{f} " in msg), None)
        loc = self.locations.get(field)
        if loc is None:
            return ""
        if m:
            fo = re.search(r"file offset (\d+)", loc)
            if fo:
                return (f" [{loc}; that byte is at file offset "
                        f"{int(fo.group(1)) + int(m.group(3))}]")
        return f" [{loc}]"


def read_custom_op(r, k: int, op: schema.OperatorT, ins: list[int], outs: list[int],
                   name: str, source: str) -> CompressedConv2D:
    """Read operator ``k`` (a dtmm custom op) for the ``.tflite`` reader; raises ModelFileError."""
    return _OpReader(r, k, op, ins, outs, name, source).read()
