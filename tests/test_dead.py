"""Tests of dtmm.prune.dead.remove_dead_channels (dead filters leave the float graph)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from dtmm.errors import GraphError
from dtmm.graph.capture import capture
from dtmm.graph.float_exec import run_float
from dtmm.graph.ir import Conv2D, DepthwiseConv2D, FullyConnected
from dtmm.prune import remove_dead_channels
from dtmm.prune.dead import DeadChannelReport

ATOL = 1e-5


def _kill(conv: nn.Module, chans, bias=None) -> None:
    """Zero the weights of output channels ``chans`` (optionally set their bias)."""
    with torch.no_grad():
        for c in chans:
            conv.weight[c] = 0
            if bias is not None:
                conv.bias[c] = bias


def _x(shape, n=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def _prepare(model: nn.Module, in_chw=None, seed=0):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            with torch.no_grad():
                m.bias.uniform_(-0.5, 0.5)
    return model


def _snapshot(g):
    return copy.deepcopy(g)


def _same_graph(a, b) -> bool:
    if [o.name for o in a.ops] != [o.name for o in b.ops]:
        return False
    if {k: v.shape for k, v in a.tensors.items()} != {k: v.shape for k, v in b.tensors.items()}:
        return False
    for x, y in zip(a.ops, b.ops):
        for attr in ("weight", "bias"):
            if hasattr(x, attr) and not np.array_equal(getattr(x, attr), getattr(y, attr)):
                return False
        if getattr(x, "shape", None) != getattr(y, "shape", None):
            return False
    return True


def _run(g, x):
    return run_float(g, x)


def _check_exact(g, g2, x):
    np.testing.assert_allclose(_run(g2, x), _run(g, x), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- conv -> conv


@pytest.mark.parametrize("k2,pad2", [(1, 0), (3, 0)])
def test_conv_chain_exact(k2, pad2):
    m = _prepare(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, k2, padding=pad2)),
                 (3, 8, 8))
    _kill(m[0], [2, 5], bias=0.7)                 # constant relu(0.7) = 0.7
    g = capture(m, (3, 8, 8))
    before = _snapshot(g)
    g2, rep = remove_dead_channels(g)
    assert _same_graph(g, before)                 # input graph untouched
    g2.validate()
    assert rep.removed == {"0": [2, 5]}
    assert rep.values["0"] == pytest.approx({2: 0.7, 5: 0.7})
    assert g2.op("0").weight.shape == (6, 3, 3, 3) and g2.op("0").bias.shape == (6,)
    assert g2.op("2").weight.shape == (5, k2, k2, 6)
    assert g2.tensors[g2.op("0").output].shape == (8, 8, 6)
    assert rep.folded["2"].exact and rep.folded["2"].channels == [2, 5]
    assert rep.exact_consumers == ["2"] and rep.approximate_consumers == [] and rep.is_exact
    _check_exact(g, g2, _x((8, 8, 3)))


def test_relu_negative_bias_constant_zero():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)),
                 (3, 6, 6))
    _kill(m[0], [1], bias=-0.3)                   # constant relu(-0.3) = 0: exact even with padding
    g = capture(m, (3, 6, 6))
    g2, rep = remove_dead_channels(g)
    assert rep.values["0"] == {1: 0.0}
    assert rep.folded["2"].exact
    _check_exact(g, g2, _x((6, 6, 3)))


def test_padded_consumer_border_approximate():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1)),
                 (3, 8, 8))
    _kill(m[0], [0, 4], bias=0.9)
    g = capture(m, (3, 8, 8))
    g2, rep = remove_dead_channels(g)
    assert rep.approximate_consumers == ["2"] and not rep.folded["2"].exact and not rep.is_exact
    x = _x((8, 8, 3))
    y, y2 = _run(g, x), _run(g2, x)
    np.testing.assert_allclose(y2[:, 1:-1, 1:-1], y[:, 1:-1, 1:-1], atol=ATOL, rtol=0)
    assert not np.allclose(y2[:, 0], y[:, 0], atol=ATOL)     # the border really differs


# ------------------------------------------------------ flattened map -> linear


def test_maxpool_flatten_linear():
    m = _prepare(nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Flatten(), nn.Linear(6 * 3 * 3, 4)), (2, 6, 6))
    _kill(m[0], [1, 3], bias=0.4)
    g = capture(m, (2, 6, 6))
    g2, rep = remove_dead_channels(g)
    g2.validate()
    assert rep.removed == {"0": [1, 3], "2": [1, 3], "3": [1, 3]}
    assert g2.tensors[g2.op("2").output].shape == (3, 3, 4)
    assert g2.tensors[g2.op("3").output].shape == (36,)
    assert g2.op("3").shape == (36,)
    assert g2.op("4").weight.shape == (4, 36)
    assert rep.folded["4"].exact and rep.folded["4"].into_bias
    _check_exact(g, g2, _x((6, 6, 2)))


def test_global_pool_linear_and_dead_classifier_row_stays():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(5, 3)), (3, 6, 6))
    _kill(m[0], [4], bias=7.0)                    # relu6(7) = 6
    _kill(m[4], [1])                              # dead classifier row: output, stays
    g = capture(m, (3, 6, 6))
    g2, rep = remove_dead_channels(g)
    assert rep.values["0"] == {4: 6.0}
    assert rep.removed["0"] == [4] and "4" not in rep.removed
    assert rep.kept["4"][1].startswith("graph output")
    assert g2.op("4").weight.shape == (3, 4)
    assert g2.tensors[g2.outputs[0]].shape == (3,)
    assert rep.folded["4"].exact
    _check_exact(g, g2, _x((6, 6, 3)))


def test_softmax_output_row_stays():
    m = _prepare(nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 3), nn.Softmax(dim=1)),
                 (3, 2, 2))
    _kill(m[1], [2], bias=0.3)
    _kill(m[3], [0])
    g = capture(m, (3, 2, 2))
    g2, rep = remove_dead_channels(g)
    assert rep.removed == {"1": [2]}
    assert "softmax" in rep.kept["3"][0] or "graph output" in rep.kept["3"][0]
    _check_exact(g, g2, _x((2, 2, 3)))


# ------------------------------------------------------------------- residual


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.c = nn.Conv2d(6, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = torch.relu(self.a(x) + self.b(x))
        return self.fc(torch.flatten(self.pool(torch.relu(self.c(y))), 1))


def test_residual_add_both_sides_and_one_side():
    m = _prepare(_Res(), (3, 6, 6))
    _kill(m.a, [1, 3], bias=0.2)                  # channel 1 dead on both sides, 3 only on side a
    _kill(m.b, [1], bias=-0.5)
    g = capture(m, (3, 6, 6))
    add = next(o for o in g.ops if o.kind == "add")
    g2, rep = remove_dead_channels(g)
    g2.validate()
    assert rep.removed["a"] == [1] and rep.removed["b"] == [1] and rep.removed[add.name] == [1]
    assert rep.values[add.name][1] == pytest.approx(0.0)       # relu(0.2 - 0.5)
    assert rep.kept_by_add == {"a": [3]}
    assert g2.op("a").weight.shape[0] == 5 and not np.any(g2.op("a").weight[2])   # old 3 -> new 2
    assert g2.tensors[add.output].shape == (6, 6, 5)
    assert rep.folded["c"].exact
    _check_exact(g, g2, _x((6, 6, 3)))


def test_add_constant_value_through_activation():
    m = _prepare(_Res(), (3, 6, 6))
    _kill(m.a, [0], bias=0.25)
    _kill(m.b, [0], bias=0.5)
    g = capture(m, (3, 6, 6))
    add = next(o for o in g.ops if o.kind == "add")
    g2, rep = remove_dead_channels(g)
    assert rep.values[add.name] == pytest.approx({0: 0.75})
    _check_exact(g, g2, _x((6, 6, 3)))


# --------------------------------------------------------------------- concat


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 1)
        self.c = nn.Conv2d(9, 3, 1)

    def forward(self, x):
        return self.c(torch.cat([torch.relu(self.a(x)), self.b(x)], 1))


def test_concat():
    m = _prepare(_Cat(), (3, 5, 5))
    _kill(m.a, [1], bias=0.6)
    _kill(m.b, [0, 4])
    g = capture(m, (3, 5, 5))
    cat = next(o for o in g.ops if o.kind == "concat")
    g2, rep = remove_dead_channels(g)
    g2.validate()
    assert rep.removed[cat.name] == [1, 4, 8]
    assert rep.removed["a"] == [1] and rep.removed["b"] == [0, 4]
    assert g2.tensors[cat.output].shape == (5, 5, 6)
    assert g2.op("c").weight.shape == (3, 1, 1, 6)
    _check_exact(g, g2, _x((5, 5, 3)))


# ------------------------------------------------------------------ depthwise


@pytest.mark.parametrize("pad", [0, 1])
def test_depthwise_propagation(pad):
    m = _prepare(nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, 12, 3, padding=pad, groups=6),
                               nn.ReLU(), nn.Conv2d(12, 4, 1)), (3, 7, 7))
    _kill(m[0], [2], bias=0.8)
    g = capture(m, (3, 7, 7))
    g2, rep = remove_dead_channels(g)
    g2.validate()
    dw = g2.op("2")
    assert isinstance(dw, DepthwiseConv2D) and dw.weight.shape == (1, 3, 3, 10) and dw.bias.shape == (10,)
    assert rep.removed["0"] == [2] and rep.removed["2"] == [4, 5]
    assert rep.folded["2"].into_bias is False
    assert rep.folded["2"].exact == (pad == 0) and rep.folded["4"].exact == (pad == 0)
    x = _x((7, 7, 3))
    y, y2 = _run(g, x), _run(g2, x)
    if pad == 0:
        np.testing.assert_allclose(y2, y, atol=ATOL, rtol=0)
    else:
        np.testing.assert_allclose(y2[:, 1:-1, 1:-1], y[:, 1:-1, 1:-1], atol=ATOL, rtol=0)


def test_dead_depthwise_channel_with_live_input_stays():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 2, 1)),
                 (3, 5, 5))
    _kill(m[1], [3])
    g = capture(m, (3, 5, 5))
    g2, rep = remove_dead_channels(g)
    assert rep.removed == {}
    assert rep.kept["1"][3].startswith("depthwise input alive")
    _check_exact(g, g2, _x((5, 5, 3)))


# ---------------------------------------------------------------- edge cases


def test_dead_output_tensor_channel_stays_and_no_empty_tensor():
    m = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Conv2d(3, 2, 1))
    _kill(m[0], [0, 1, 2])                        # every filter dead: one must stay
    _kill(m[1], [1])                              # graph output
    g = capture(m, (2, 4, 4))
    g2, rep = remove_dead_channels(g)
    assert rep.removed == {"0": [1, 2]}
    assert rep.kept["0"][0].startswith("tensor would be empty")
    assert rep.kept["1"][1].startswith("graph output")
    _check_exact(g, g2, _x((4, 4, 2)))


def test_explicit_dead_dict_and_errors():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, 2, 1)), (3, 4, 4))
    _kill(m[0], [1, 4])
    g = capture(m, (3, 4, 4))
    g2, rep = remove_dead_channels(g, {"0": np.array([4])})        # only what is listed
    assert rep.removed == {"0": [4]}
    _check_exact(g, g2, _x((4, 4, 3)))
    with pytest.raises(GraphError, match="'0'.*nonzero"):
        remove_dead_channels(g, {"0": [0]})
    with pytest.raises(GraphError, match="'nope'"):
        remove_dead_channels(g, {"nope": [0]})
    with pytest.raises(GraphError, match="'0'.*out of range"):
        remove_dead_channels(g, {"0": [6]})
    q = copy.deepcopy(g)
    q.op("0").weight = q.op("0").weight.astype(np.int8)
    with pytest.raises(GraphError, match="'0'.*float graph"):
        remove_dead_channels(q)


def test_idempotent_and_report_type():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 2, 1)), (3, 6, 6))
    _kill(m[0], [0])
    g2, rep = remove_dead_channels(capture(m, (3, 6, 6)))
    assert isinstance(rep, DeadChannelReport) and rep.num_removed == 1
    g3, rep3 = remove_dead_channels(g2)
    assert rep3.num_removed == 0 and _same_graph(g2, g3)


def test_no_dead_channels_is_identity():
    m = _prepare(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)), (3, 6, 6))
    g = capture(m, (3, 6, 6))
    g2, rep = remove_dead_channels(g)
    assert rep.removed == {} and rep.folded == {} and _same_graph(g, g2)
    assert all(isinstance(o, (Conv2D, FullyConnected)) or o.kind == "reshape" for o in g2.ops)
