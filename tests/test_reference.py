"""The NumPy integer reference executor against naive loops and hand-computed values.

(Byte-for-byte agreement with TFLite Micro is in tests/test_tflite.py.)
"""
import numpy as np
import pytest

from dtmm.errors import GraphError
from dtmm.graph.ir import (Activation, Add, AddQuant, AvgPool2D, Concat, Conv2D, ConvQuant,
                           Graph, MaxPool2D, QParams, Reshape, Softmax,
                           SoftmaxQuant, TensorSpec)
from dtmm.quant import arith
from dtmm.runtime.reference import conv_output_size, run_float, run_reference
from dtmm.runtime.synth import SynthGraph


def requant_scalar(acc: int, m: int, s: int, zp: int, lo: int, hi: int) -> int:
    return min(hi, max(lo, int(arith.multiply_by_quantized_multiplier(acc, m, s)) + zp))


def one_op_graph(op, in_shape, out_shape, in_q, out_q) -> Graph:
    g = Graph()
    g.add_tensor(TensorSpec("x", in_shape, "int8", in_q))
    g.add_tensor(TensorSpec("y", out_shape, "int8", out_q))
    g.add_op(op)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


# ------------------------------------------------------------------ conv against naive loops


def naive_conv(x, g: Graph, op) -> np.ndarray:
    """Direct transcription of TFLite's reference ConvPerChannel / DepthwiseConvPerChannel."""
    in_zp = g.tensors[op.inputs[0]].qparams.zp
    out_q = g.tensors[op.output].qparams
    lo, hi = arith.activation_range(op.activation, out_q.s, out_q.zp)
    n, h, w, cin = x.shape
    oh, ow, cout = g.tensors[op.output].shape
    kh, kw = op.kernel
    depthwise = op.kind == "depthwise_conv2d"
    out = np.zeros((n, oh, ow, cout), np.int8)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for oc in range(cout):
                    acc = 0
                    for fy in range(kh):
                        for fx in range(kw):
                            iy = oy * op.stride[0] - op.pads[0] + fy * op.dilation[0]
                            ix = ox * op.stride[1] - op.pads[2] + fx * op.dilation[1]
                            if not (0 <= iy < h and 0 <= ix < w):
                                continue
                            if depthwise:
                                ic = oc // op.depth_multiplier
                                acc += int(op.weight[0, fy, fx, oc]) * (int(x[b, iy, ix, ic]) - in_zp)
                            else:
                                for ic in range(cin):
                                    acc += int(op.weight[oc, fy, fx, ic]) * (int(x[b, iy, ix, ic]) - in_zp)
                    acc += int(op.bias[oc])
                    out[b, oy, ox, oc] = requant_scalar(acc, int(op.quant.multiplier[oc]),
                                                        int(op.quant.shift[oc]), out_q.zp, lo, hi)
    return out


@pytest.mark.parametrize("stride,pads,dilation,act", [
    ((1, 1), (1, 1, 1, 1), (1, 1), "relu"),
    ((2, 1), (1, 0, 2, 1), (1, 2), "none"),
    ((2, 2), (0, 0, 0, 0), (1, 1), "relu6"),
])
def test_conv_matches_naive_loops(stride, pads, dilation, act):
    sg = SynthGraph((7, 6, 3), seed=5)
    sg.conv(4, 3, stride=stride, pads=pads, dilation=dilation, activation=act)
    g = sg.finish()
    x = sg.random_input(3, seed=2)
    assert np.array_equal(run_reference(g, x), naive_conv(x, g, g.ops[0]))


@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise_matches_naive_loops(mult):
    sg = SynthGraph((6, 5, 3), seed=6)
    sg.depthwise(3, mult, stride=2, pads=(1, 1, 0, 1), activation="relu")
    g = sg.finish()
    x = sg.random_input(3, seed=2)
    assert np.array_equal(run_reference(g, x), naive_conv(x, g, g.ops[0]))


def test_fully_connected_matches_naive():
    sg = SynthGraph((2, 2, 3), seed=7)
    sg.fc(5, activation="relu")
    g = sg.finish()
    op = g.ops[0]
    x = sg.random_input(4, seed=3)
    in_zp = g.tensors["input"].qparams.zp
    out_q = g.tensors[op.output].qparams
    lo, hi = arith.activation_range("relu", out_q.s, out_q.zp)
    flat = x.reshape(4, -1).astype(np.int64)             # NHWC flattening
    want = [[requant_scalar(int(((flat[b] - in_zp) * op.weight[o]).sum()) + int(op.bias[o]),
                            int(op.quant.multiplier[0]), int(op.quant.shift[0]), out_q.zp, lo, hi)
             for o in range(5)] for b in range(4)]
    assert run_reference(g, x).tolist() == want


def test_accumulator_overflow_raises():
    q = QParams.per_tensor(0.1, 0)
    m, s = arith.quantize_multiplier(0.5)
    op = Conv2D("big", ["x"], "y", weight=np.full((1, 1, 1, 1), 127, np.int8),
                bias=np.array([arith.INT32_MAX - 100], np.int32),
                quant=ConvQuant(np.float32([0.1]), np.int32([m]), np.int32([s])))
    g = one_op_graph(op, (1, 1, 1), (1, 1, 1), q, q)
    assert run_reference(g, np.zeros((1, 1, 1, 1), np.int8)).shape == (1, 1, 1, 1)
    with pytest.raises(OverflowError, match="big"):
        run_reference(g, np.full((1, 1, 1, 1), 127, np.int8))


# ------------------------------------------------------------------ pools


def test_avg_pool_rounds_half_away_from_zero_and_excludes_pads():
    q = QParams.per_tensor(0.1, 3)
    op = AvgPool2D("avg", ["x"], "y", kernel=(2, 2), stride=(2, 2))
    g = one_op_graph(op, (2, 8, 1), (1, 4, 1), q, q)
    x = np.array([[1, 2, -1, -2, 1, 2, -1, -2],
                  [2, 2, -2, -2, 1, 2, -1, -2]], np.int8).reshape(1, 2, 8, 1)
    # sums 7, -7, 6, -6 over 4 -> 1.75, -1.75, 1.5, -1.5 -> 2, -2, 2, -2
    assert run_reference(g, x)[0, 0, :, 0].tolist() == [2, -2, 2, -2]

    op = AvgPool2D("avg", ["x"], "y", kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1))
    g = one_op_graph(op, (2, 2, 1), (2, 2, 1), q, q)
    x = np.array([1, 2, 3, 4], np.int8).reshape(1, 2, 2, 1)
    # every window sees the 4 real values only: 10 / 4 = 2.5 -> 3
    assert run_reference(g, x)[0, :, :, 0].tolist() == [[3, 3], [3, 3]]


def test_max_pool_ignores_padding():
    q = QParams.per_tensor(0.1, 0)
    op = MaxPool2D("max", ["x"], "y", kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1))
    g = one_op_graph(op, (3, 3, 1), (2, 2, 1), q, q)
    x = np.full((1, 3, 3, 1), -100, np.int8)
    x[0, 2, 2, 0] = -90
    assert run_reference(g, x)[0, :, :, 0].tolist() == [[-100, -100], [-100, -90]]


def test_pool_needs_equal_qparams():
    op = MaxPool2D("max", ["x"], "y")
    g = one_op_graph(op, (2, 2, 1), (1, 1, 1), QParams.per_tensor(0.1, 0), QParams.per_tensor(0.2, 0))
    with pytest.raises(GraphError, match="max"):
        run_reference(g, np.zeros((1, 2, 2, 1), np.int8))


# ------------------------------------------------------------------ add, concat, reshape, softmax


def test_add_equal_scales_is_integer_addition():
    q = QParams.per_tensor(0.5, 0)
    p = arith.add_params(0.5, 0.5, 0.5)
    g = Graph()
    for n in ("a", "b", "y"):
        g.add_tensor(TensorSpec(n, (4,), "int8", q))
    g.add_op(Add("add", ["a", "b"], "y", activation=Activation.RELU, quant=AddQuant(**p)))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    a = np.array([[3, 100, -5, 10]], np.int8)
    b = np.array([[4, 100, -7, -3]], np.int8)
    assert run_reference(g, {"a": a, "b": b}).tolist() == [[7, 127, 0, 7]]


def test_concat_and_reshape_check_qparams():
    g = Graph()
    g.add_tensor(TensorSpec("a", (1, 1, 2), "int8", QParams.per_tensor(0.1, 0)))
    g.add_tensor(TensorSpec("b", (1, 1, 2), "int8", QParams.per_tensor(0.1, 1)))
    g.add_tensor(TensorSpec("y", (1, 1, 4), "int8", QParams.per_tensor(0.1, 0)))
    g.add_op(Concat("cat", ["a", "b"], "y"))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    x = {"a": np.zeros((1, 1, 1, 2), np.int8), "b": np.ones((1, 1, 1, 2), np.int8)}
    with pytest.raises(GraphError, match="cat"):
        run_reference(g, x)
    g.tensors["b"].qparams = QParams.per_tensor(0.1, 0)
    assert run_reference(g, x).tolist() == [[[[0, 0, 1, 1]]]]

    op = Reshape("flat", ["x"], "y", shape=(4,))
    g = one_op_graph(op, (2, 2, 1), (4,), QParams.per_tensor(0.1, 0), QParams.per_tensor(0.1, 2))
    with pytest.raises(GraphError, match="flat"):
        run_reference(g, np.zeros((1, 2, 2, 1), np.int8))


def test_softmax_values_and_output_qparams_check():
    p = arith.softmax_params(0.1)
    op = Softmax("sm", ["x"], "y", quant=SoftmaxQuant(**p))
    g = one_op_graph(op, (4,), (4,), QParams.per_tensor(0.1, 0), QParams.per_tensor(1 / 256, -128))
    x = np.array([[7, 7, 7, 7], [127, -128, -128, -128]], np.int8)
    assert run_reference(g, x).tolist() == [[-64] * 4, [127, -128, -128, -128]]
    g.tensors["y"].qparams = QParams.per_tensor(1 / 128, -128)
    with pytest.raises(GraphError, match="1/256"):
        run_reference(g, x)


# ------------------------------------------------------------------ API behaviour


def test_multi_output_and_all_tensors():
    sg = SynthGraph((4, 4, 2), seed=8)
    a = sg.conv(3, 1)
    b = sg.max_pool(2, x="input")
    g = sg.finish([a, b])
    x = sg.random_input(2)
    out = run_reference(g, x)
    assert set(out) == {a, b} and out[a].shape == (2, 4, 4, 3) and out[b].shape == (2, 2, 2, 2)
    every = run_reference(g, x, all_tensors=True)
    assert set(every) == {"input", a, b}


def test_bad_inputs_are_reported():
    sg = SynthGraph((4, 4, 2), seed=8)
    sg.conv(3, 1)
    g = sg.finish()
    with pytest.raises(GraphError, match="int8"):
        run_reference(g, np.zeros((1, 4, 4, 2), np.float32))
    with pytest.raises(GraphError, match="batch shape"):
        run_reference(g, np.zeros((1, 4, 4, 3), np.int8))
    g.tensors["input"].qparams = None
    with pytest.raises(GraphError, match="quantized"):
        run_reference(g, np.zeros((1, 4, 4, 2), np.int8))


def test_conv_output_size():
    assert conv_output_size(28, 3, 1, 1, 1) == 28
    assert conv_output_size(28, 3, 2, 1, 1) == 14
    assert conv_output_size(27, 3, 2, 0, 0) == 13
    assert conv_output_size(10, 3, 1, 0, 0, dilation=2) == 6


def test_run_float_conv_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3, 1)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    g = Graph()
    g.add_tensor(TensorSpec("x", (5, 5, 1)))
    g.add_tensor(TensorSpec("y", (5, 5, 2)))
    g.add_op(Conv2D("c", ["x"], "y", weight=w, bias=b, pads=(1, 1, 1, 1)))
    g.inputs, g.outputs = ["x"], ["y"]
    x = rng.standard_normal((2, 5, 5, 1)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((2, 5, 5, 2), np.float32)
    for i in range(3):
        for j in range(3):
            want += xp[:, i:i + 5, j:j + 5, :] @ w[:, i, j, :].T
    want += b
    assert np.allclose(run_float(g, x), want, atol=1e-5)
