"""Compressed convolutions (FWCS / CSR / pattern): IR, .tflite custom operators, verifier,
reference execution from the format arrays.

For every format: graph -> compressed .tflite bytes -> read_tflite gives the same arrays and
qparams; run_reference(compressed) == run_reference(dense equivalent) == TFLM(dense
equivalent) byte for byte; corrupted files raise ModelFileError naming the layer and field.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flatbuffers
from flatbuffers import flexbuffers

from dtmm import formats
from dtmm.errors import DtmmError, FormatError, GraphError, ModelFileError
from dtmm.formats.pattern import pattern_mask
from dtmm.graph.compressed import (CompressedConv2D, compress_graph, dense_equivalent, densify,
                                   has_compressed_ops)
from dtmm.graph.ir import Conv2D
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph
from dtmm.tflite._schema import FILE_IDENTIFIER, schema
from dtmm.tflite.custom_ops import (_TT_OF_NP, CUSTOM_CODES, LAYOUT, _buffer_file_offset,
                                    custom_codes)
from dtmm.tflite.export import build_model, to_tflite_bytes
from dtmm.tflite.reader import load_model, read_tflite
from dtmm.tflite.tflm import run_tflm

N = 12


def assert_same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    bad = np.argwhere(a != b)
    assert not len(bad), f"{what}: {len(bad)} of {a.size} values differ, first at {bad[:4].tolist()}"


def prune(w: np.ndarray, fmt: str, sparsity: float, rng, dead_filter: bool) -> np.ndarray:
    """Zero ``w`` (OHWI int8) at the format's granularity; optionally kill filter 0 entirely."""
    w = w.copy()
    cout, kh, kw, cin = w.shape
    if fmt == "fwcs":
        keep = rng.random((cout, kh, kw)) >= sparsity
        w[~keep] = 0
    elif fmt == "csr":
        w[rng.random(w.shape) < sparsity] = 0
    else:  # pattern: keep one pattern per kernel, remove whole kernels
        kernel_keep = rng.random((cout, cin)) >= sparsity
        w[~pattern_mask(w, kernel_keep)] = 0
    if dead_filter:
        w[0] = 0
    return w


def arrays_of(fmt) -> dict:
    return {f: getattr(fmt, f) for f, _ in LAYOUT[{"FWCS": "fwcs", "CSR": "csr",
                                                   "Pattern": "pattern"}[type(fmt).__name__]]}


def check_round_trip(cg, data: bytes) -> None:
    g2 = read_tflite(data)
    for op in cg.ops:
        op2 = g2.op(op.name)
        assert op2.kind == op.kind
        if isinstance(op, CompressedConv2D):
            assert op2.format_name == op.format_name
            assert tuple(op2.fmt.shape) == tuple(op.fmt.shape)
            for f, a in arrays_of(op.fmt).items():
                b = getattr(op2.fmt, f)
                assert a.dtype == b.dtype and np.array_equal(a, b), f"{op.name}/{f}"
            assert np.array_equal(op2.bias, op.bias) and op2.bias.dtype == np.int32
            assert np.array_equal(op2.quant.w_scale, np.asarray(op.quant.w_scale, np.float32))
            assert np.array_equal(op2.quant.multiplier, op.quant.multiplier)
            assert np.array_equal(op2.quant.shift, op.quant.shift)
            assert (op2.stride, op2.pads, op2.dilation, op2.activation) == (
                tuple(op.stride), tuple(op.pads), tuple(op.dilation), op.activation)
        for t in [op.output] + list(op.inputs):
            assert cg.tensors[t].qparams.same_as(g2.tensors[t].qparams)
            assert tuple(cg.tensors[t].shape) == tuple(g2.tensors[t].shape)


def check_all(cg, x) -> np.ndarray:
    """compressed reference == dense-equivalent reference == TFLM; read-back == written."""
    ref = run_reference(cg, x)
    dense = dense_equivalent(cg)
    assert not has_compressed_ops(dense)
    assert_same(ref, run_reference(dense, x), "reference: compressed vs dense equivalent")
    assert_same(ref, run_tflm(to_tflite_bytes(dense), x), "compressed reference vs TFLM(dense)")
    data = to_tflite_bytes(cg)
    check_round_trip(cg, data)
    assert_same(ref, run_reference(read_tflite(data), x), "reference of the read-back graph")
    return ref


# ------------------------------------------------------------------------ single layers

CASES = [   # (input shape, C_out, kernel, stride, pads, dilation, activation)
    ((7, 7, 1), 4, 3, 1, "same", 1, "relu"),               # C_in 1
    ((7, 7, 3), 8, 3, 2, (0, 2, 1, 0), 1, "none"),         # C_in 3, stride 2, asymmetric pads
    ((8, 8, 17), 6, 5, 1, "same", 1, "none"),              # C_in 17, 5x5 (uint16 cptr/col)
    ((5, 5, 64), 8, 3, 1, 1, 1, "relu6"),                  # C_in 64 (uint16 cptr)
    ((6, 6, 16), 8, 1, 1, None, 1, "none"),                # 1x1
    ((9, 8, 3), 5, 3, 2, (1, 0, 2, 1), 1, "relu"),         # stride 2, asymmetric pads
    ((9, 9, 4), 4, 3, 1, 2, 2, "none"),                    # dilation 2
]


@pytest.mark.parametrize("fmt,case", [(f, c) for f in ("fwcs", "csr", "pattern") for c in CASES
                                      if f != "pattern" or c[2] == 3],     # pattern: 3x3 only
                         ids=lambda v: v if isinstance(v, str) else f"{v[0]}-k{v[2]}-s{v[3]}")
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_layer_matches_dense_and_tflm(fmt, case, sparsity):
    shape, cout, k, stride, pads, dil, act = case
    seed = sum(shape) + cout + k + int(sparsity * 10)
    sg = SynthGraph(shape, seed=seed)
    sg.conv(cout, k, stride=stride, pads=pads, dilation=dil, activation=act)
    g = sg.finish()
    rng = np.random.default_rng(seed)
    g.ops[0].weight = prune(g.ops[0].weight, fmt, sparsity, rng, dead_filter=sparsity > 0)
    cg = compress_graph(g, {"conv1": fmt})
    op = cg.ops[0]
    assert isinstance(op, CompressedConv2D) and op.format_name == fmt
    assert np.array_equal(densify(op).weight, g.ops[0].weight)
    x = sg.random_input(N, seed=seed + 1)
    x[0], x[1] = -128, 127
    ref = check_all(cg, x)
    assert_same(ref, run_reference(g, x), "compressed vs original dense graph")
    if sparsity > 0:   # the dead filter outputs requant(bias) only: constant over pixels
        assert len(np.unique(ref[..., 0])) == 1
    assert len(np.unique(ref)) > 3


def test_all_filterlets_pruned_layer_and_empty_arrays():
    sg = SynthGraph((5, 5, 3), seed=3)
    sg.conv(4, 3, pads=1)
    g = sg.finish()
    g.ops[0].weight[:] = 0
    for fmt in ("fwcs", "csr", "pattern"):
        cg = compress_graph(g, {"conv1": fmt})
        assert all(len(a) == 0 for f, a in arrays_of(cg.ops[0].fmt).items()
                   if f not in ("fidx", "rowptr", "kptr"))
        x = sg.random_input(4, seed=0)
        ref = check_all_no_degenerate(cg, x)
        assert_same(ref, run_reference(g, x), fmt)


def check_all_no_degenerate(cg, x):
    ref = run_reference(cg, x)
    dense = dense_equivalent(cg)
    assert_same(ref, run_tflm(to_tflite_bytes(dense), x), "TFLM")
    data = to_tflite_bytes(cg)
    check_round_trip(cg, data)
    assert_same(ref, run_reference(read_tflite(data), x), "read back")
    return ref


def test_csr_uint32_rowptr_and_explicit_masks():
    sg = SynthGraph((3, 3, 128), seed=5)
    sg.conv(64, 3)                                       # 73,728 weights > 65535
    g = sg.finish()
    w = g.ops[0].weight
    w[w == 0] = 1                                        # no zeros: every weight kept
    cg = compress_graph(g, {"conv1": "csr"})
    assert cg.ops[0].fmt.rowptr.dtype == np.uint32
    x = sg.random_input(6, seed=1)
    check_all(cg, x)
    # explicit masks: a filterlet mask for FWCS, element masks for CSR
    fm = np.random.default_rng(0).random(w.shape[:3]) < 0.5
    cg2 = compress_graph(g, {"conv1": "fwcs"}, masks={"conv1": fm})
    assert cg2.ops[0].fmt.n_filterlets == int(fm.sum())
    ref = run_reference(cg2, x)
    g.ops[0].weight = w * np.repeat(fm[..., None], w.shape[3], axis=3).astype(np.int8)
    assert_same(ref, run_reference(g, x), "explicit FWCS mask")


def test_residual_graph_mixing_builtin_and_compressed():
    sg = SynthGraph((10, 10, 3), seed=11)
    a = sg.conv(16, 3, pads="same", activation="relu")              # builtin
    b = sg.conv(16, 3, pads="same", activation="relu", x=a)         # fwcs
    c = sg.conv(16, 3, pads=(1, 1, 1, 1), x=b)                      # pattern
    s = sg.add(a, c, activation="relu")
    d = sg.conv(24, 3, stride=2, pads=1, activation="relu", x=s)    # csr (PAD for dense)
    e = sg.conv(8, 1, x=d)                                          # builtin 1x1
    sg.global_avg_pool(x=e)
    sg.reshape((8,))
    sg.fc(5)
    g = sg.finish()
    rng = np.random.default_rng(0)
    names = {"conv2": "fwcs", "conv3": "pattern", "conv5": "csr"}
    for name, fmt in names.items():
        g.op(name).weight = prune(g.op(name).weight, fmt, 0.7, rng, dead_filter=False)
    cg = compress_graph(g, names)
    assert [o.kind for o in cg.ops][:3] == ["conv2d", "compressed_conv2d", "compressed_conv2d"]
    x = sg.random_input(16, seed=2)
    check_all(cg, x)
    data = to_tflite_bytes(cg)
    assert custom_codes(data) == [CUSTOM_CODES[f] for f in ("fwcs", "pattern", "csr")]
    assert [o.name for o in read_tflite(data).ops] == [o.name for o in cg.ops]


def test_compress_graph_errors_and_default_pattern_mask():
    sg = SynthGraph((6, 6, 4), seed=2)
    sg.conv(4, 5, pads="same")
    sg.max_pool(2)
    g = sg.finish()
    with pytest.raises(GraphError, match="no op named 'nope'"):
        compress_graph(g, {"nope": "fwcs"})
    with pytest.raises(GraphError, match="only Conv2D"):
        compress_graph(g, {"maxpool2": "fwcs"})
    with pytest.raises(FormatError, match="3x3"):
        compress_graph(g, {"conv1": "pattern"})
    with pytest.raises(FormatError, match="not one of"):
        compress_graph(g, {"conv1": "dense"})
    with pytest.raises(GraphError, match="not a compressed"):
        densify(g.ops[0])
    assert isinstance(g.ops[0], Conv2D)                    # the input graph is untouched


# ------------------------------------------------------------------------ corrupted files


def _graph_all_formats():
    sg = SynthGraph((6, 6, 3), seed=21)
    sg.conv(6, 3, pads=1, activation="relu")      # conv1 fwcs
    sg.conv(5, 3, stride=2, pads=(0, 1, 1, 0))    # conv2 csr
    sg.conv(4, 3, pads=1)                         # conv3 pattern
    g = sg.finish()
    rng = np.random.default_rng(1)
    fm = {"conv1": "fwcs", "conv2": "csr", "conv3": "pattern"}
    for name, fmt in fm.items():
        g.op(name).weight = prune(g.op(name).weight, fmt, 0.5, rng, dead_filter=name == "conv1")
    return sg, compress_graph(g, fm)


@pytest.fixture(scope="module")
def valid():
    sg, cg = _graph_all_formats()
    return sg, cg, to_tflite_bytes(cg)


def pack(model) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def mutate_tensor(cg, name: str, fn) -> bytes:
    """Rebuild the file after ``fn(tensor, buffer)`` edits the named tensor's ModelT objects."""
    m = build_model(cg)
    t = next(t for t in m.subgraphs[0].tensors if t.name == name)
    fn(t, m.buffers[t.buffer])
    return pack(m)


def set_array(values, dtype):
    def fn(t, buf):
        a = np.asarray(values, dtype)
        buf.data = a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        t.shape = np.asarray([a.size], np.int32)
        t.type = _TT_OF_NP[np.dtype(dtype)]
    return fn


def mutate_options(cg, op_index: int, fn) -> bytes:
    m = build_model(cg)
    o = m.subgraphs[0].operators[op_index]
    opts = flexbuffers.Loads(bytes(o.customOptions))
    fn(opts)
    o.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
    return pack(m)


def expect(data: bytes, *fragments: str) -> str:
    with pytest.raises(ModelFileError) as ei:
        read_tflite(data)
    msg = str(ei.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in: {msg}"
    return msg


def test_valid_file_reads_and_runs(valid):
    sg, cg, data = valid
    check_round_trip(cg, data)
    x = sg.random_input(4, seed=0)
    assert_same(run_reference(cg, x), run_reference(read_tflite(data), x), "read back")
    # the schema's own readers open it: custom codes and flexbuffers options
    m = schema.Model.GetRootAs(data, 0)
    codes = [m.OperatorCodes(i).CustomCode() for i in range(m.OperatorCodesLength())]
    assert codes == [c.encode() for c in CUSTOM_CODES.values()]
    opts = flexbuffers.Loads(m.Subgraphs(0).Operators(0).CustomOptionsAsNumpy().tobytes())
    assert opts["format"] == "fwcs" and opts["c_in"] == 3 and len(opts["w_scale"]) == 6


def test_fwcs_array_corruptions(valid):
    _, cg, _ = valid
    f = cg.ops[0].fmt
    where = "operator 0 ('conv1', DTMM_CONV_2D_FWCS)"
    c = f.cptr.copy(); c[1] = 27                          # row_len 27: out of range, aligned
    expect(mutate_tensor(cg, "conv1/cptr", set_array(c, c.dtype)), where, "cptr[1]",
           "out of range", "tensor", "file offset")
    c = f.cptr.copy(); c[0] = 1
    expect(mutate_tensor(cg, "conv1/cptr", set_array(c, c.dtype)), where, "cptr[0]",
           "not a multiple of size 3")
    expect(mutate_tensor(cg, "conv1/arr", set_array(f.arr[:-3], np.int8)), where, "arr has")
    fi = f.fidx.copy(); fi[2], fi[3] = fi[3], fi[2]
    expect(mutate_tensor(cg, "conv1/fidx", set_array(fi, fi.dtype)), where, "fidx[3]",
           "decreases")
    fi = f.fidx.copy(); fi[0] = 1
    expect(mutate_tensor(cg, "conv1/fidx", set_array(fi, fi.dtype)), where, "fidx[0]")
    fi = f.fidx.copy(); fi[-1] += 1
    expect(mutate_tensor(cg, "conv1/fidx", set_array(fi, fi.dtype)), where, "fidx")
    # index width disagreeing with the options, and a wrong dtype
    expect(mutate_tensor(cg, "conv1/cptr", set_array(f.cptr, np.uint16)), where, "index_bytes")
    expect(mutate_tensor(cg, "conv1/arr", set_array(f.arr, np.uint8)), where, "arr", "UINT8")

    def short(t, buf):            # a buffer shorter than its tensor's shape
        buf.data = bytes(buf.data)[:-2]
    expect(mutate_tensor(cg, "conv1/arr", short), where, "conv1/arr", "shorter than",
           f"{len(f.arr)} bytes")


def test_csr_and_pattern_array_corruptions(valid):
    _, cg, _ = valid
    c = cg.ops[1].fmt
    w_csr = "operator 1 ('conv2', DTMM_CONV_2D_CSR)"
    col = c.col.copy(); col[-1] = 54                        # row_len 3 * 3 * 6
    expect(mutate_tensor(cg, "conv2/col", set_array(col, col.dtype)), w_csr, f"col[{len(col) - 1}]",
           "out of range")
    rp = c.rowptr.copy(); rp[-1] -= 1
    expect(mutate_tensor(cg, "conv2/rowptr", set_array(rp, rp.dtype)), w_csr, "rowptr")
    expect(mutate_tensor(cg, "conv2/values", set_array(c.values[1:], np.int8)), w_csr, "values")
    p = cg.ops[2].fmt
    w_pat = "operator 2 ('conv3', DTMM_CONV_2D_PATTERN)"
    pid = p.pid.copy(); pid[0] = 8
    expect(mutate_tensor(cg, "conv3/pid", set_array(pid, np.uint8)), w_pat, "pid[0]",
           "no such pattern")
    kidx = p.kidx.copy(); kidx[0] = 5
    expect(mutate_tensor(cg, "conv3/kidx", set_array(kidx, kidx.dtype)), w_pat, "kidx[0]")
    expect(mutate_tensor(cg, "conv3/bias", set_array(cg.ops[2].bias[:-1], np.int32)), w_pat,
           "bias", "expected 4")


def test_option_corruptions(valid):
    _, cg, _ = valid
    where = "operator 0 ('conv1', DTMM_CONV_2D_FWCS)"

    def setter(key, value):
        def fn(o):
            o[key] = value
        return fn
    expect(mutate_options(cg, 0, setter("version", 2)), where, "version")
    expect(mutate_options(cg, 0, setter("stride_h", 0)), where, "stride_h")
    expect(mutate_options(cg, 0, setter("pads", [1, 1, 1])), where, "pads")
    expect(mutate_options(cg, 0, setter("w_scale", [0.1] * 5)), where, "w_scale")
    expect(mutate_options(cg, 0, setter("w_scale", [-0.1] * 6)), where, "w_scale")
    expect(mutate_options(cg, 0, setter("c_in", 4)), where, "c_in")
    expect(mutate_options(cg, 0, setter("kernel_h", 5)), where, "output shape")
    expect(mutate_options(cg, 0, setter("activation", "gelu")), where, "activation")
    expect(mutate_options(cg, 0, setter("format", "csr")), where, "format")
    expect(mutate_options(cg, 2, setter("patterns", [1, 2, 3])), "conv3", "patterns")
    m = build_model(cg)
    m.subgraphs[0].operators[0].customOptions = m.subgraphs[0].operators[0].customOptions[:-5]
    expect(pack(m), where, "custom options")
    m = build_model(cg)
    m.operatorCodes[0].customCode = "SOMETHING_ELSE"
    expect(pack(m), "operator 0", "unsupported custom op 'SOMETHING_ELSE'")


def test_truncated_and_flipped_files(valid):
    _, _, data = valid
    # every cut raises, except dropping the last string's NUL terminator / padding
    for n in list(range(0, len(data) - 3, 5)) + [len(data) - 4]:
        with pytest.raises(ModelFileError):
            read_tflite(data[:n])
    bad = bytearray(data); bad[4:8] = b"XXXX"
    with pytest.raises(ModelFileError, match="identifier"):
        read_tflite(bytes(bad))


# ------------------------------------------------------------------------ property test


def _buffer_ranges(data: bytes) -> list[tuple[int, int]]:
    m = load_model(data)
    out = []
    for i, b in enumerate(m.buffers):
        if b.data is not None and len(b.data):
            off = _buffer_file_offset(data, i)
            if off is not None:
                out.append((off, off + len(b.data)))
    return out


_SG, _CG = _graph_all_formats()
_DATA = to_tflite_bytes(_CG)
_RANGES = _buffer_ranges(_DATA)
_IN_BUFFERS = [p for a, b in _RANGES for p in range(a, b)]


@st.composite
def mutations(draw):
    data = bytearray(_DATA)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip_buf", "overwrite", "overwrite_buf", "truncate"]))
        if kind == "truncate":
            if not data:
                break
            del data[draw(st.integers(0, len(data) - 1)):]
            continue
        if not data:
            break
        if kind.endswith("_buf"):
            pos = draw(st.sampled_from(_IN_BUFFERS))
        else:
            pos = draw(st.integers(0, len(_DATA) - 1))
        if pos >= len(data):
            continue
        if kind.startswith("flip"):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        else:
            val = draw(st.binary(min_size=1, max_size=4))
            data[pos:pos + len(val)] = val
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_files_fail_cleanly(data):
    try:
        g = read_tflite(data)
    except DtmmError:
        return
    shape = g.tensors[g.inputs[0]].shape
    if any(t.size > 1 << 16 for t in g.tensors.values()):
        return                     # a mutated activation shape; not worth running
    x = np.random.default_rng(0).integers(-128, 128, (2,) + tuple(shape)).astype(np.int8)
    try:
        run_reference(g, x)
    except DtmmError:
        pass


def test_tflm_refuses_custom_ops_cleanly_and_export_checks(valid):
    sg, cg, data = valid
    with pytest.raises(ModelFileError, match="TFLite Micro refused"):
        run_tflm(data, sg.random_input(1))
    bad = dense_equivalent(cg)          # still fine to export
    to_tflite_bytes(bad)
    cg2 = compress_graph(dense_equivalent(cg), {"conv1": "fwcs"})
    cg2.ops[0].quant.multiplier = cg2.ops[0].quant.multiplier + 1
    with pytest.raises(GraphError, match="multiplier/shift differ"):
        to_tflite_bytes(cg2)
    cg3 = compress_graph(dense_equivalent(cg), {"conv1": "fwcs"})
    f = cg3.ops[0].fmt
    cg3.ops[0].fmt = formats.FWCS(f.shape, f.size, f.arr, f.cptr + np.uint8(1), f.fidx, f.name)
    with pytest.raises(GraphError, match="not a multiple"):
        to_tflite_bytes(cg3)
    with pytest.raises(FormatError, match="not a multiple"):
        run_reference(cg3, sg.random_input(1))
