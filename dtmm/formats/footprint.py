"""The byte model of the generated C model: one definition for inspect, codegen and the scheduler.

Three different numbers describe "how big is the model"; dtmm names them apart:

(a) ``tflite_bytes``: the size of the compressed ``.tflite`` file (flatbuffer tables,
    names, alignment and the custom operators' options included). Only the file has it.
(b) ``const_bytes``: the constant data of the generated C model (``model.c``): every
    ``static const`` array (weights, format index arrays, bias, requantization
    multipliers and shifts, pattern tables) and every ``static const`` parameter struct
    (convolution parameters, dims, format descriptors), each at its ``sizeof``, no
    alignment padding. **This module defines it**, per op, from counts alone; the code
    generator's plan (:attr:`dtmm.codegen.plan.ModelPlan.const_bytes`), ``dtmm inspect``
    and the scheduler all call it, and a test compiles ``model.c`` and checks the sum of
    its read-only sections equals it byte for byte.
(c) ``flash_bytes``: the linked firmware's flash: (b) plus alignment padding, the model's
    code, the kernels it links, start-up and libc (:mod:`dtmm.schedule.flash` estimates
    it from a measured table of code sizes; the QEMU backends measure it).

A layer's (b) bytes split as in the paper's Fig. 13 (:class:`~dtmm.formats.ByteCount`):

``weights``  int8 weight values stored (kept and explicitly stored zeros);
``index``    the format's position arrays (FWCS ``cptr`` + ``fidx``, CSR ``col`` +
             ``rowptr``, pattern ``pid`` + ``kidx`` + ``kptr``; dense: none);
``quant``    bias, requantization multiplier and shift, int32 each, per output channel
             (a per-tensor fully connected layer stores one multiplier and one shift);
``meta``     the op's C parameter structs (their size depends on the target's pointer
             width: 4 bytes on Cortex-M, the default here) and small tables (the pattern
             library, a concat's channel counts).

Example:
    >>> meta_bytes("conv2d"), meta_bytes("fwcs"), meta_bytes("fwcs", pointer_bytes=8)
    (96, 116, 136)
    >>> conv_quant_bytes(32), fc_quant_bytes(10, per_channel=False)
    (384, 48)
    >>> struct_size("dtmm_pattern", 8)              # padding after n_patterns on 64-bit
    64
"""
from __future__ import annotations

from dtmm.errors import FormatError

__all__ = ["STRUCT_FIELDS", "OP_STRUCTS", "OP_ARRAYS", "op_array_count", "POINTER_BYTES", "struct_size", "meta_bytes",
           "conv_quant_bytes", "fc_quant_bytes", "fc_fwcs_bytes_from_counts", "op_bytes", "graph_bytes"]

#: Pointer width of the deployment targets (32-bit Cortex-M); hosts pass their own.
POINTER_BYTES = 4

#: Field types of the kernels' parameter structs, in declaration order (dtmm_kernels.h).
#: ``"i32"`` int32_t, ``"ptr"`` a data pointer.
STRUCT_FIELDS: dict[str, tuple[str, ...]] = {
    "dtmm_dims": ("i32",) * 4,
    "dtmm_conv_params": ("i32",) * 10,
    "dtmm_requant_params": ("ptr", "ptr"),
    "dtmm_fwcs": ("ptr", "ptr", "ptr") + ("i32",) * 6,
    "dtmm_csr": ("ptr", "ptr", "ptr") + ("i32",) * 6,
    "dtmm_pattern": ("ptr", "i32", "ptr", "ptr", "ptr", "ptr") + ("i32",) * 4,
    "dtmm_pool_params": ("i32",) * 10,
    "dtmm_add_params": ("i32",) * 12,
}

_CONV_HEAD = ("dtmm_conv_params", "dtmm_requant_params", "dtmm_dims", "dtmm_dims")
#: The parameter structs ``model.c`` defines for one op of each kind (see codegen.render).
OP_STRUCTS: dict[str, tuple[str, ...]] = {
    "conv2d": _CONV_HEAD + ("dtmm_dims",),
    "fwcs": _CONV_HEAD + ("dtmm_fwcs",),
    "csr": _CONV_HEAD + ("dtmm_csr",),
    "pattern": _CONV_HEAD + ("dtmm_pattern",),
    "depthwise_conv2d": _CONV_HEAD + ("dtmm_dims",),
    "fully_connected": ("dtmm_conv_params", "dtmm_requant_params"),
    "compressed_fully_connected": ("dtmm_conv_params", "dtmm_requant_params", "dtmm_fwcs"),
    "max_pool2d": ("dtmm_pool_params", "dtmm_dims", "dtmm_dims"),
    "avg_pool2d": ("dtmm_pool_params", "dtmm_dims", "dtmm_dims"),
    "add": ("dtmm_add_params",),
    "softmax": (),
    "concat": (),
    "reshape": (),
}


#: How many const arrays ``model.c`` defines for one op of each kind (each is 16-byte
#: aligned in flash; the flash model counts them).
OP_ARRAYS: dict[str, int] = {
    "conv2d": 4, "fwcs": 6, "csr": 6, "pattern": 8, "depthwise_conv2d": 4, "fully_connected": 4,
    "max_pool2d": 0, "avg_pool2d": 0, "add": 0, "softmax": 0, "concat": 1, "reshape": 0,
    "compressed_fully_connected": 6,
}


def op_array_count(kind: str, op=None, graph=None) -> int:
    """How many const arrays ``model.c`` defines for one op: :data:`OP_ARRAYS` of its kind,
    except a concat the arena runs in place (:func:`dtmm.codegen.arena.concat_in_place`,
    needs ``op`` and ``graph``), which has none.

    >>> op_array_count("fwcs"), op_array_count("concat")
    (6, 1)
    """
    if kind == "concat" and op is not None and graph is not None:
        from dtmm.codegen.arena import concat_in_place   # the planner's decision
        if concat_in_place(graph, op):
            return 0
    return OP_ARRAYS[kind]


def struct_size(name: str, pointer_bytes: int = POINTER_BYTES) -> int:
    """``sizeof`` of a kernel struct under the usual C layout rules (natural alignment).

    >>> struct_size("dtmm_fwcs"), struct_size("dtmm_fwcs", 8)
    (36, 48)
    """
    sizes = {"i32": 4, "ptr": int(pointer_bytes)}
    off, align = 0, 1
    for f in STRUCT_FIELDS[name]:
        n = sizes[f]
        off = (off + n - 1) // n * n + n
        align = max(align, n)
    return (off + align - 1) // align * align


def meta_bytes(kind: str, pointer_bytes: int = POINTER_BYTES, *, n_patterns: int = 0,
               n_inputs: int = 0) -> int:
    """Bytes of the C parameter structs and small tables of one op.

    ``kind``: an IR op kind (``"conv2d"``, ``"fully_connected"``, ...) or, for a
    compressed conv, its format (``"fwcs"``, ``"csr"``, ``"pattern"``). The pattern kernel
    also reads the layer's pattern table (``n_patterns`` x 4 uint8 positions); a concat
    its input channel counts (``n_inputs`` int32).
    """
    try:
        structs = OP_STRUCTS[kind]
    except KeyError:
        raise FormatError(f"no C byte model for op kind {kind!r}") from None
    n = sum(struct_size(s, pointer_bytes) for s in structs)
    if kind == "pattern":
        n += 4 * int(n_patterns)
    if kind == "concat":
        n += 4 * int(n_inputs)
    return n


def conv_quant_bytes(c_out: int) -> int:
    """Bias + multiplier + shift (int32 each) of a per-channel layer with ``c_out`` outputs."""
    return 12 * int(c_out)


def fc_quant_bytes(out_features: int, *, per_channel: bool) -> int:
    """Bias (int32 per output) + multiplier + shift (one int32 each, or one per output)."""
    n_mult = int(out_features) if per_channel else 1
    return 4 * int(out_features) + 8 * n_mult


def fc_fwcs_bytes_from_counts(shape, n_runs: int, n_tail_runs: int = 0, *, per_channel: bool = False,
                              pointer_bytes: int = POINTER_BYTES, name: str = "layer"):
    """The (b) bytes of a compressed (FWCS) fully connected layer of weight shape ``(O, I)``
    from counts alone (the scheduler's view of :func:`op_bytes` of a
    ``CompressedFullyConnected``): the FWCS arrays of ``n_runs`` kept runs of which
    ``n_tail_runs`` are the short last run of their row
    (:func:`dtmm.formats.fwcs.bytes_from_counts`), the fully connected quant constants and
    structs.

    >>> fc_fwcs_bytes_from_counts((10, 40), 12, 10).as_dict()
    {'weights': 112, 'index': 23, 'quant': 48, 'meta': 84, 'total': 267}
    """
    from dtmm.formats import fwcs
    from dtmm.formats.common import ByteCount

    b = fwcs.bytes_from_counts(tuple(int(d) for d in shape), n_runs, n_tail_filterlets=n_tail_runs,
                               name=name, pointer_bytes=pointer_bytes)
    return ByteCount(weights=b.weights, index=b.index,
                     quant=fc_quant_bytes(int(shape[0]), per_channel=per_channel),
                     meta=meta_bytes("compressed_fully_connected", pointer_bytes))


def op_bytes(op, graph=None, pointer_bytes: int = POINTER_BYTES):
    """The (b) bytes of one IR op of a quantized graph, as a :class:`~dtmm.formats.ByteCount`.

    ``graph`` is needed by a concat only: one of vectors that runs in place
    (:func:`dtmm.codegen.arena.concat_in_place`) has no channel table; without ``graph``
    a concat is counted as a copy.

    >>> import numpy as np
    >>> from dtmm.graph.ir import MaxPool2D
    >>> op_bytes(MaxPool2D("p", ["x"], "y")).as_dict()
    {'weights': 0, 'index': 0, 'quant': 0, 'meta': 72, 'total': 72}
    """
    from dtmm import formats
    from dtmm.formats.common import ByteCount


    kind = getattr(op, "kind", "")
    fmt = getattr(op, "fmt", None)
    if kind == "compressed_fully_connected":                        # FWCS FC: FC quant
        o = int(fmt.shape[0])
        per_channel = op.quant is not None and op.quant.multiplier.size > 1
        return ByteCount(weights=int(fmt.arr.nbytes), index=int(fmt.cptr.nbytes + fmt.fidx.nbytes),
                         quant=fc_quant_bytes(o, per_channel=per_channel),
                         meta=meta_bytes(kind, pointer_bytes))
    if fmt is not None:                                             # compressed conv
        return formats.byte_count(fmt, pointer_bytes=pointer_bytes)
    if kind == "conv2d":
        return formats.dense.bytes_from_counts(op.weight.shape, pointer_bytes=pointer_bytes)
    if kind == "depthwise_conv2d":
        w = op.weight
        n = int(w.size)
        return ByteCount(weights=n, index=0, quant=conv_quant_bytes(w.shape[3]),
                         meta=meta_bytes(kind, pointer_bytes))
    if kind == "fully_connected":
        o = int(op.weight.shape[0])
        per_channel = op.quant is not None and op.quant.multiplier.size > 1
        return ByteCount(weights=int(op.weight.size), index=0,
                         quant=fc_quant_bytes(o, per_channel=per_channel),
                         meta=meta_bytes(kind, pointer_bytes))
    if kind == "concat":
        if graph is not None:
            from dtmm.codegen.arena import concat_in_place   # the planner's decision
            if concat_in_place(graph, op):                   # no code, no channel table
                return ByteCount(0, 0, 0, 0)
        return ByteCount(0, 0, 0, meta_bytes(kind, pointer_bytes, n_inputs=len(op.inputs)))
    return ByteCount(0, 0, 0, meta_bytes(kind, pointer_bytes))


def graph_bytes(graph, pointer_bytes: int = POINTER_BYTES):
    """(b) of a whole quantized graph: the sum of :func:`op_bytes` over its ops.

    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((4, 4, 2), seed=0); _ = sg.conv(3, 1)
    >>> graph_bytes(sg.finish()).as_dict()
    {'weights': 6, 'index': 0, 'quant': 36, 'meta': 96, 'total': 138}
    """
    from dtmm.formats.common import ByteCount

    total = ByteCount(0, 0, 0, 0)
    for op in graph.ops:
        total = total + op_bytes(op, graph, pointer_bytes)
    return total
