"""The compressed fully connected layer (FWCS runs of inputs) end to end: IR, reference
executor from the format arrays, .tflite custom operator and its verifying reader, the
generated C model on every host ISA path and on QEMU -- every integer path bit-exact
with the dense-with-zeros FC, and TFLite Micro on the dense equivalent."""
import numpy as np
import pytest

import flatbuffers
from flatbuffers import flexbuffers

from dtmm.errors import FormatError, GraphError, ModelFileError
from dtmm.formats import footprint
from dtmm.graph.compressed import (CompressedFullyConnected, compress_graph, dense_equivalent,
                                   densify, has_compressed_ops)
from dtmm.graph.ir import FullyConnected
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph
from dtmm.tflite._schema import FILE_IDENTIFIER
from dtmm.tflite.custom_ops import FC_CUSTOM_CODE, _TT_OF_NP, custom_codes
from dtmm.tflite.export import build_model, to_tflite_bytes
from dtmm.tflite.reader import read_tflite
from dtmm.tflite.tflm import run_tflm

from _helpers import needs_qemu


def _graph(n_in=(4, 4, 5), units=10, act="relu", size=None, seed=0, per_channel=False):
    """conv -> reshape -> FC, the FC's weight pruned in runs (one output with no run left)."""
    sg = SynthGraph(n_in, seed=seed)
    _ = sg.conv(6, 3, pads="same", activation="relu")
    _ = sg.reshape((int(np.prod(n_in[:2])) * 6,))
    _ = sg.fc(units, activation=act)
    g = sg.finish()
    op = next(o for o in g.ops if o.kind == "fully_connected")
    rng = np.random.default_rng(seed)
    w = op.weight.copy()
    run = size or 16
    for o in range(w.shape[0]):
        for j in range(0, w.shape[1], run):
            if rng.random() < 0.6:
                w[o, j:j + run] = 0
    w[1] = 0
    op.weight = w
    cg = compress_graph(g, {op.name: "fwcs"}) if size is None else _compress_size(g, op.name, size)
    return sg, g, cg


def _compress_size(g, name, size):
    from dtmm.graph.compressed import compress_op
    import copy
    cg = copy.deepcopy(g)
    cg.ops = [compress_op(o, "fwcs", size=size) if o.name == name else o for o in cg.ops]
    return cg


def test_ir_reference_and_dense_equivalent():
    sg, g, cg = _graph()
    op = cg.ops[-1]
    assert isinstance(op, CompressedFullyConnected) and has_compressed_ops(cg)
    assert op.fmt.size == 16 and op.weight_shape == (10, 96)
    assert isinstance(densify(op), FullyConnected)
    assert np.array_equal(densify(op).weight, g.ops[-1].weight)
    x = sg.random_input(5)
    want = run_reference(g, x)
    assert np.array_equal(run_reference(cg, x), want)
    assert np.array_equal(run_reference(dense_equivalent(cg), x), want)
    # TFLite Micro's reference kernels on the dense equivalent: the same bytes
    assert np.array_equal(run_tflm(to_tflite_bytes(dense_equivalent(cg)), x), want)


@pytest.mark.parametrize("size", [5, 16, 40])
def test_run_lengths_not_dividing_the_inputs(size):
    sg, g, cg = _graph(size=size)
    assert cg.ops[-1].fmt.size == size
    x = sg.random_input(3)
    assert np.array_equal(run_reference(cg, x), run_reference(g, x))


def test_compress_errors():
    _, g, _ = _graph()
    with pytest.raises(FormatError, match="fwcs"):
        compress_graph(g, {g.ops[-1].name: "csr"})
    op = next(o for o in g.ops if o.kind == "fully_connected")
    bad = CompressedFullyConnected("fc", ["x"], "y", fmt=compress_graph(g, {op.name: "fwcs"}).ops[-1].fmt,
                                   bias=np.zeros(3, np.int32))
    with pytest.raises(GraphError, match="bias"):
        bad.verify()


def test_tflite_round_trip_and_byte_model():
    sg, g, cg = _graph()
    data = to_tflite_bytes(cg)
    assert custom_codes(data) == [FC_CUSTOM_CODE]
    rg = read_tflite(data)
    op, op2 = cg.ops[-1], rg.ops[-1]
    assert isinstance(op2, CompressedFullyConnected)
    for f in ("arr", "cptr", "fidx"):
        a, b = getattr(op.fmt, f), getattr(op2.fmt, f)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(op2.quant.multiplier, op.quant.multiplier)
    assert np.array_equal(op2.quant.shift, op.quant.shift)
    x = sg.random_input(3)
    assert np.array_equal(run_reference(rg, x), run_reference(cg, x))
    # the C model's const bytes: one byte model (the planner cross-checks its arrays)
    from dtmm.codegen.plan import plan_model
    plan = plan_model(cg, "cortex-m55")
    assert plan.const_bytes == footprint.graph_bytes(cg).total


def _pack(model) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _mutate_tensor(cg, name, values, dtype) -> bytes:
    m = build_model(cg)
    t = next(t for t in m.subgraphs[0].tensors if t.name == name)
    a = np.asarray(values, dtype)
    m.buffers[t.buffer].data = a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    t.shape = np.asarray([a.size], np.int32)
    t.type = _TT_OF_NP[np.dtype(dtype)]
    return _pack(m)


def _mutate_options(cg, fn) -> bytes:
    m = build_model(cg)
    o = next(o for o in m.subgraphs[0].operators if o.customOptions is not None)
    opts = flexbuffers.Loads(bytes(o.customOptions))
    fn(opts)
    o.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
    return _pack(m)


def _expect(data: bytes, *fragments: str) -> None:
    with pytest.raises(ModelFileError) as ei:
        read_tflite(data)
    for f in fragments:
        assert f in str(ei.value), f"{f!r} not in: {ei.value}"


def test_verifying_reader_rejects_corruptions():
    _, _, cg = _graph()
    f = cg.ops[-1].fmt
    name = cg.ops[-1].name
    where = f"({name!r}, {FC_CUSTOM_CODE})"
    c = f.cptr.copy(); c[0] = 1
    _expect(_mutate_tensor(cg, f"{name}/cptr", c, c.dtype), where, "cptr[0]", "not a multiple")
    c = f.cptr.copy(); c[-1] = 96
    _expect(_mutate_tensor(cg, f"{name}/cptr", c, c.dtype), where, "out of range", "file offset")
    _expect(_mutate_tensor(cg, f"{name}/arr", f.arr[:-1], np.int8), where, "arr has")
    fi = f.fidx.copy(); fi[-1] += 1
    _expect(_mutate_tensor(cg, f"{name}/fidx", fi, fi.dtype), where, "fidx")
    _expect(_mutate_tensor(cg, f"{name}/cptr", f.cptr, np.uint16), where, "index_bytes")
    _expect(_mutate_options(cg, lambda o: o.__setitem__("size", 0)), where, "'size'")
    _expect(_mutate_options(cg, lambda o: o.__setitem__("in_features", 95)), where, "in_features")
    _expect(_mutate_options(cg, lambda o: o.__setitem__("w_scale", [0.1, 0.2])), where, "w_scale")
    _expect(_mutate_options(cg, lambda o: o.__setitem__("w_scale", [-1.0])), where, "w_scale")
    _expect(_mutate_options(cg, lambda o: o.__setitem__("format", "csr")), where, "'format'")


@pytest.mark.parametrize("isa", ["scalar", "dsp", "mve"])
def test_generated_c_model_on_host_every_isa_path(isa):
    from dtmm.codegen.backends import build_host_model

    sg, g, cg = _graph(units=13)
    x = sg.random_input(6)
    assert np.array_equal(build_host_model(cg, isa=isa)(x), run_reference(cg, x))


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("target", ["cortex-m55", "cortex-m7"])
def test_generated_c_model_on_qemu(target):
    from dtmm.codegen.backends import build_firmware, run_firmware

    sg, g, cg = _graph(units=13, size=5, act="none")
    x = sg.random_input(2)
    res = run_firmware(build_firmware(cg, target), x)
    assert np.array_equal(res.outputs, run_reference(cg, x))
