"""dtmm's NumPy reference == TensorFlow Lite Micro, byte for byte; .tflite export/read round trip;
malformed files raise ModelFileError.

Each case builds a small quantized graph with random int8 weights (fixed seeds), exports
it to .tflite, runs random int8 inputs through TFLM's interpreter (reference kernels)
and through ``run_reference``, and requires identical int8 outputs.
"""
import os

import numpy as np
import pytest

from dtmm.errors import GraphError, ModelFileError
from dtmm.graph.ir import Graph, MaxPool2D, QParams, TensorSpec
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph
from dtmm.tflite._schema import schema
from dtmm.tflite.export import build_model, export_tflite, to_tflite_bytes
from dtmm.tflite.reader import load_model, read_tflite
from dtmm.tflite.tflm import run_tflm

N_SAMPLES = 48


def assert_same(ref: np.ndarray, got: np.ndarray, what: str = "") -> None:
    """Exact equality; on failure report the first mismatching indices and values."""
    assert ref.shape == got.shape, f"{what}: shapes {ref.shape} vs {got.shape}"
    bad = np.argwhere(ref != got)
    if len(bad):
        first = [(tuple(int(v) for v in i), int(ref[tuple(i)]), int(got[tuple(i)])) for i in bad[:8]]
        pytest.fail(f"{what}: {len(bad)} of {ref.size} values differ; first (index, reference, "
                    f"tflm): {first}")


def inputs(sg: SynthGraph, n: int = N_SAMPLES, seed: int = 1) -> np.ndarray:
    x = sg.random_input(n, seed=seed)
    x[0] = -128                                           # extremes: all-min and all-max inputs
    x[1] = 127
    return x


def builtin_names(model_bytes: bytes) -> list[str]:
    m = load_model(model_bytes)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names[max(m.operatorCodes[o.opcodeIndex].builtinCode,
                      m.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode)]
            for o in m.subgraphs[0].operators]


def check_against_tflm(sg: SynthGraph, outputs=None, n: int = N_SAMPLES) -> bytes:
    g = sg.finish(outputs)
    x = inputs(sg, n)
    ref = run_reference(g, x)
    data = to_tflite_bytes(g)
    assert_same(ref, run_tflm(data, x), f"reference vs TFLM ({[op.kind for op in g.ops]})")
    # Reading the file back gives a graph with identical integer behaviour.
    assert_same(ref, run_reference(read_tflite(data), x), "reference of the read-back graph")
    # Not degenerate: the outputs take many values (the scales are sensible).
    assert len(np.unique(ref)) > 3
    return data


# ------------------------------------------------------------------------ convolutions


@pytest.mark.parametrize("shape,cout,k,stride,pads,act", [
    ((6, 6, 16), 8, 1, 1, None, "none"),                  # 1x1
    ((7, 7, 3), 8, 3, 1, "same", "relu"),                 # 3x3 SAME, C_in 3
    ((8, 8, 17), 6, 5, 1, "same", "none"),                # 5x5, C_in 17
    ((10, 10, 4), 5, 3, 2, "same", "relu6"),              # stride 2 SAME, even input
    ((9, 9, 4), 5, 3, 2, "same", "none"),                 # stride 2 SAME, odd input
    ((10, 10, 4), 5, 3, 2, 1, "relu"),                    # PyTorch pad 1 stride 2, even -> PAD
    ((9, 9, 5), 4, 3, 2, 1, "none"),                      # PyTorch pad 1 stride 2, odd == SAME
    ((9, 8, 3), 4, 3, 1, (0, 2, 1, 0), "none"),           # asymmetric pads -> PAD
    ((8, 8, 3), 4, 3, 1, None, "none"),                   # VALID
    ((12, 12, 16), 32, 3, 1, 1, "relu"),                  # wider layer
])
def test_conv2d(shape, cout, k, stride, pads, act):
    sg = SynthGraph(shape, seed=sum(shape) + cout + k)
    sg.conv(cout, k, stride=stride, pads=pads, activation=act)
    data = check_against_tflm(sg)
    h, w = shape[:2]
    p = sg.g.ops[0].pads
    from dtmm.tflite._padding import same_pads
    expect_pad = any(p) and p != same_pads((h, w), (k, k), (stride, stride))
    assert ("PAD" in builtin_names(data)) == expect_pad


def test_conv2d_dilation_and_rect_kernel():
    sg = SynthGraph((11, 10, 5), seed=3)
    sg.conv(6, 3, pads="same", dilation=2, activation="relu")
    sg.conv(4, (1, 3), stride=(1, 2), pads="same")
    check_against_tflm(sg)


@pytest.mark.parametrize("mult,stride,pads,act", [
    (1, 1, "same", "relu6"),
    (2, 1, "same", "none"),
    (1, 2, "same", "relu"),
    (2, 2, 1, "none"),                                    # PAD + VALID depthwise
])
def test_depthwise(mult, stride, pads, act):
    sg = SynthGraph((10, 10, 6), seed=10 + mult + stride)
    sg.depthwise(3, mult, stride=stride, pads=pads, activation=act)
    check_against_tflm(sg)


def test_relu6_bound_uses_float32_division():
    # Output scale where float32(6) / scale == 176.5 but the double quotient is 176.49999:
    # TFLM's relu6 upper bound is zp + 177, as arith.activation_range computes.
    s = float.fromhex("0x1.167b4ap-5")
    sg = SynthGraph((6, 6, 8), seed=4)
    y = sg.conv(8, 1, activation="relu6")
    sg.set_qparams(y, QParams.per_tensor(s, -128))
    g = sg.finish()
    x = inputs(sg, 64)
    ref = run_reference(g, x)
    assert ref.max() == -128 + 177                          # the bound is reached
    assert_same(ref, run_tflm(to_tflite_bytes(g), x))


# ------------------------------------------------------------------------ dense, pools


def test_fully_connected_from_feature_map_and_vector():
    sg = SynthGraph((4, 4, 8), seed=20)
    sg.fc(24, activation="relu")                          # FC straight from a feature map
    sg.fc(10)
    check_against_tflm(sg)


@pytest.mark.parametrize("cls,k,stride,pads,shape", [
    ("max", 2, 2, None, (8, 8, 5)),
    ("max", 3, 2, "same", (9, 9, 3)),
    ("max", 3, 1, "same", (6, 7, 4)),
    ("avg", 2, 2, None, (8, 8, 5)),
    ("avg", 3, 2, "same", (10, 10, 3)),                   # count excludes padding
    ("avg", 3, 1, "same", (5, 6, 4)),
])
def test_pools(cls, k, stride, pads, shape):
    sg = SynthGraph(shape, seed=k * 10 + stride)
    (sg.max_pool if cls == "max" else sg.avg_pool)(k, stride, pads=pads)
    check_against_tflm(sg)


def test_global_average_pool_then_classifier():
    sg = SynthGraph((7, 7, 16), seed=30)
    sg.conv(16, 3, pads="same", activation="relu")
    sg.global_avg_pool()
    sg.reshape((16,))
    sg.fc(10)
    check_against_tflm(sg)


# ------------------------------------------------------------------------ add, concat, softmax


@pytest.mark.parametrize("act,out_scale", [("none", None), ("relu", None), ("relu6", 0.02)])
def test_residual_add_with_different_scales(act, out_scale):
    sg = SynthGraph((8, 8, 8), seed=40)
    a = sg.conv(8, 3, pads="same", activation="relu")
    b = sg.conv(8, 3, pads="same", x=a)
    assert sg.g.tensors[a].qparams.s != sg.g.tensors[b].qparams.s
    sg.add(a, b, activation=act, out_scale=out_scale)
    check_against_tflm(sg)


def test_add_of_graph_input_and_conv():
    sg = SynthGraph((6, 6, 4), seed=41, in_scale=0.05, in_zp=7)
    b = sg.conv(4, 1)
    sg.add("input", b)
    check_against_tflm(sg)


def test_concat():
    sg = SynthGraph((8, 8, 3), seed=50)
    c = sg.max_pool(1, 1)                                 # identity pool: the input's qparams
    a = sg.conv(4, 1, activation="relu", x="input")
    sg.set_qparams(a, sg.g.tensors[c].qparams)
    b = sg.conv(5, 3, pads="same", x="input")
    sg.set_qparams(b, sg.g.tensors[c].qparams)
    sg.concat([a, b, c])
    check_against_tflm(sg)


@pytest.mark.parametrize("scale,beta,n", [(0.05, 1.0, 10), (0.2, 1.0, 10), (0.01, 1.0, 37),
                                          (0.1, 0.5, 16), (0.5, 1.0, 5)])
def test_softmax(scale, beta, n):
    sg = SynthGraph((n,), seed=60, in_scale=scale, in_zp=-3)
    sg.softmax(beta)
    check_against_tflm(sg, n=96)


def test_reshape_then_fc_softmax():
    sg = SynthGraph((4, 4, 2), seed=70)
    sg.reshape((2, 4, 4))
    sg.reshape((32,))
    sg.fc(12)
    sg.softmax()
    g = sg.finish()
    x = inputs(sg)
    assert_same(run_reference(g, x), run_tflm(to_tflite_bytes(g), x))


def test_small_resnet_end_to_end():
    sg = SynthGraph((12, 12, 3), seed=80)
    x0 = sg.conv(8, 3, pads=1, activation="relu")
    y = sg.conv(8, 3, pads=1, activation="relu")
    y = sg.conv(8, 3, pads=1, x=y)
    r = sg.add(x0, y, activation="relu")
    d = sg.conv(16, 3, stride=2, pads=1, activation="relu", x=r)    # PAD op
    s = sg.conv(16, 1, stride=2, x=r)
    sg.add(d, s, activation="relu")
    sg.depthwise(3, 1, pads="same", activation="relu6")
    sg.global_avg_pool()
    sg.reshape((16,))
    logits = sg.fc(10)
    sg.set_qparams(logits, QParams.per_tensor(0.02, 5))   # a softmax that is not one-hot
    sg.softmax()
    check_against_tflm(sg, n=32)


# ------------------------------------------------------------------------ round trip


def graphs_equal(a: Graph, b: Graph) -> None:
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert set(a.tensors) == set(b.tensors)
    for name, t in a.tensors.items():
        u = b.tensors[name]
        assert (t.shape, t.dtype) == (u.shape, u.dtype), name
        assert t.qparams.same_as(u.qparams), name
    assert [o.name for o in a.ops] == [o.name for o in b.ops]
    for o, p in zip(a.ops, b.ops):
        assert type(o) is type(p) and o.inputs == p.inputs and o.output == p.output, o.name
        for field in ("stride", "pads", "dilation", "kernel", "depth_multiplier", "activation",
                      "axis", "shape", "beta", "source"):
            if hasattr(o, field):
                assert getattr(o, field) == getattr(p, field), (o.name, field)
        for field in ("weight", "bias"):
            if hasattr(o, field):
                x, y = getattr(o, field), getattr(p, field)
                assert x.dtype == y.dtype and np.array_equal(x, y), (o.name, field)
        if getattr(o, "quant", None) is not None:
            for k, v in vars(o.quant).items():
                assert np.array_equal(np.asarray(v), np.asarray(getattr(p.quant, k))), (o.name, k)


def test_round_trip_gives_the_same_graph(tmp_path):
    sg = SynthGraph((10, 10, 3), seed=90)
    a = sg.conv(8, 3, stride=2, pads=1, activation="relu")    # PAD folded back into pads
    b = sg.conv(8, 3, pads="same", x=a)
    sg.add(a, b, activation="relu6")
    sg.depthwise(3, 2, pads="same")
    sg.max_pool(2)
    sg.avg_pool(3, 1, pads="same")
    sg.global_avg_pool()
    sg.reshape((16,))
    sg.fc(10, activation="relu")
    sg.softmax(beta=1.0)
    g = sg.finish()
    for op in g.ops:
        op.source = f"model.{op.name}"
    path = tmp_path / "m.tflite"
    export_tflite(g, path)
    assert os.listdir(tmp_path) == ["m.tflite"]             # no temp file left behind
    g2 = read_tflite(path)
    graphs_equal(g, g2)
    assert read_tflite(path.read_bytes()).ops[0].name == g.ops[0].name
    assert to_tflite_bytes(g2) == path.read_bytes()          # deterministic, stable


def test_reader_without_metadata_names_ops_by_builtin():
    sg = SynthGraph((6, 6, 3), seed=91)
    sg.conv(4, 3, pads=1, stride=2)
    g = sg.finish()
    model = build_model(g)
    model.metadata = None
    import flatbuffers
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    g2 = read_tflite(bytes(b.Output()))
    assert [op.name for op in g2.ops] == ["conv_2d_1"]       # operator 0 is the PAD
    assert g2.ops[0].pads == g.ops[0].pads


# ------------------------------------------------------------------------ export refusals


def test_non_same_maxpool_pads_export_as_padv2_bit_exact():
    sg = SynthGraph((8, 8, 3), seed=1)
    sg.max_pool(3, 2, pads=1)                                  # PyTorch-style, not SAME at 8x8
    g = sg.finish()
    data = to_tflite_bytes(g)
    assert [c.builtinCode for c in load_model(data).operatorCodes] == [
        schema.BuiltinOperator.PADV2, schema.BuiltinOperator.MAX_POOL_2D]
    assert read_tflite(data).ops[0].pads == (1, 1, 1, 1)
    x = sg.random_input(6, seed=2)
    assert (run_tflm(data, x) == run_reference(g, x)).all()


def test_export_refuses_non_same_avgpool_pads():
    sg = SynthGraph((8, 8, 3), seed=1)
    sg.avg_pool(3, 2, pads=1)
    with pytest.raises(GraphError, match="avgpool1.*count"):
        to_tflite_bytes(sg.finish())


def test_export_refuses_constants_tflm_would_not_compute():
    sg = SynthGraph((4, 4, 2), seed=3)
    sg.conv(3, 1)
    g = sg.finish()
    g.ops[0].quant.multiplier = g.ops[0].quant.multiplier + 1
    with pytest.raises(GraphError, match="conv1.*multiplier"):
        to_tflite_bytes(g)


def test_export_refuses_float_graph():
    g = Graph()
    g.add_tensor(TensorSpec("x", (4, 4, 1)))
    g.add_tensor(TensorSpec("y", (2, 2, 1)))
    g.add_op(MaxPool2D("pool", ["x"], "y"))
    g.inputs, g.outputs = ["x"], ["y"]
    with pytest.raises(GraphError, match="quantized"):
        to_tflite_bytes(g)


# ------------------------------------------------------------------------ malformed files


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    sg = SynthGraph((6, 6, 3), seed=2)
    sg.conv(4, 3, pads="same", activation="relu")
    sg.global_avg_pool()
    sg.reshape((4,))
    sg.fc(3)
    sg.softmax()
    return to_tflite_bytes(sg.finish())


def test_truncated_files_raise_model_file_error(model_bytes):
    for n in list(range(0, 64, 3)) + list(range(64, len(model_bytes), 29)):
        with pytest.raises(ModelFileError):
            read_tflite(model_bytes[:n])
    with pytest.raises(ModelFileError):
        run_tflm(model_bytes[:len(model_bytes) // 2], np.zeros((1, 6, 6, 3), np.int8))


def test_garbage_and_wrong_identifier(model_bytes):
    rng = np.random.default_rng(0)
    with pytest.raises(ModelFileError, match="identifier"):
        read_tflite(b"\x1c\x00\x00\x00TFL2" + model_bytes[8:])
    for _ in range(20):
        junk = bytearray(rng.integers(0, 256, len(model_bytes), dtype=np.uint8).tobytes())
        junk[4:8] = b"TFL3"
        with pytest.raises(ModelFileError):
            read_tflite(bytes(junk))
    with pytest.raises(ModelFileError, match="cannot read"):
        read_tflite("/nonexistent/model.tflite")


def _repack(model) -> bytes:
    import flatbuffers
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_is_named(model_bytes):
    model = load_model(model_bytes)
    model.operatorCodes[0].builtinCode = schema.BuiltinOperator.MUL
    model.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.MUL
    with pytest.raises(ModelFileError, match=r"operator 0: unsupported builtin op MUL"):
        read_tflite(_repack(model))


def test_non_int8_tensor_is_named(model_bytes):
    model = load_model(model_bytes)
    model.subgraphs[0].tensors[0].type = schema.TensorType.FLOAT32
    name = model.subgraphs[0].tensors[0].name.decode()
    with pytest.raises(ModelFileError, match=f"{name}.*FLOAT32"):
        read_tflite(_repack(model))


def test_missing_buffer(model_bytes):
    model = load_model(model_bytes)
    model.subgraphs[0].tensors[1].buffer = 999
    with pytest.raises(ModelFileError, match="missing buffer 999"):
        read_tflite(_repack(model))


# ------------------------------------------------------------------------ files not written by dtmm


def test_reader_recomputes_constants_like_tflm_for_other_quantization_layouts():
    """Per-tensor conv weights (TFLM broadcasts the scale) and per-channel FC weights:
    layouts dtmm does not export but other converters do."""
    sg = SynthGraph((6, 6, 3), seed=95)
    sg.conv(4, 3, pads="same", activation="relu")
    sg.fc(6)
    g = sg.finish()
    model = build_model(g)
    tensors = model.subgraphs[0].tensors
    by_name = {t.name: t for t in tensors}
    conv_w, conv_b = by_name["conv1/weight"], by_name["conv1/bias"]
    conv_w.quantization.scale = np.float32([0.011])
    conv_w.quantization.zeroPoint = np.int64([0])
    in_s = np.float32(g.tensors["input"].qparams.s)
    conv_b.quantization.scale = np.float32([in_s * np.float32(0.011)])
    conv_b.quantization.zeroPoint = np.int64([0])
    fc_w, fc_b = by_name["fc2/weight"], by_name["fc2/bias"]
    ws = np.random.default_rng(0).uniform(0.005, 0.02, 6).astype(np.float32)
    fc_w.quantization.scale = ws
    fc_w.quantization.zeroPoint = np.zeros(6, np.int64)
    fc_b.quantization.scale = (np.float32(g.tensors["conv1_out"].qparams.s) * ws).astype(np.float32)
    fc_b.quantization.zeroPoint = np.zeros(6, np.int64)
    data = _repack(model)
    g2 = read_tflite(data)
    assert g2.ops[0].quant.multiplier.shape == (4,)        # broadcast per-tensor scale
    assert g2.ops[1].quant.multiplier.shape == (6,)        # per-channel FC
    x = inputs(sg)
    ref = run_reference(g2, x)
    assert len(np.unique(ref)) > 3
    assert_same(ref, run_tflm(data, x), "per-tensor conv / per-channel FC")


def test_standalone_pad_is_refused():
    sg = SynthGraph((6, 6, 3), seed=96)
    sg.conv(4, 3, pads=(1, 0, 1, 0))                        # PAD + VALID conv
    model = build_model(sg.finish())
    ops = model.subgraphs[0].operators
    model.subgraphs[0].outputs = np.asarray(ops[0].outputs, np.int32)
    model.subgraphs[0].operators = ops[:1]                  # keep only the PAD
    with pytest.raises(ModelFileError, match="PAD"):
        read_tflite(_repack(model))
