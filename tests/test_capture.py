"""torch.fx capture: the float IR computes what the PyTorch model computes; clear refusals."""
import operator

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dtmm.errors import GraphError, UnsupportedOpError
from dtmm.graph.capture import capture
from dtmm.graph.float_exec import run_float
from dtmm.graph.ir import Activation, Conv2D, DepthwiseConv2D
from dtmm.zoo import trained_like_batchnorm


def _check(model, shape, atol=1e-5):
    torch.manual_seed(1)
    model = trained_like_batchnorm(model, seed=0)
    g = capture(model, shape)
    x = torch.randn((3,) + tuple(shape))
    with torch.no_grad():
        want = model(x).numpy()
    got = run_float(g, x.permute(0, 2, 3, 1).numpy())
    if want.ndim == 4:
        want = want.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, atol=atol, rtol=1e-4)
    return g


class Residual(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=stride, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(8)
        self.sc = nn.Conv2d(3, 8, 1, stride=stride)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        y = torch.relu(y + self.sc(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


@pytest.mark.parametrize("stride,size", [(1, 9), (2, 8), (2, 9)])
def test_residual_block_with_projection(stride, size):
    g = _check(Residual(stride), (3, size, size))
    add = [op for op in g.ops if op.kind == "add"][0]
    assert add.activation == Activation.RELU


@pytest.mark.parametrize("k,pad", [(1, 0), (3, 1), (5, 2), (5, "same"), (3, "valid")])
def test_conv_kernels_and_padding(k, pad):
    m = nn.Sequential(nn.Conv2d(17, 5, k, padding=pad), nn.ReLU6())
    g = _check(m, (17, 7, 7))
    assert g.ops[0].activation == Activation.RELU6
    assert g.ops[0].weight.shape == (5, k, k, 17)          # OHWI


def test_zero_pad_is_folded_into_conv():
    m = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, stride=2))
    g = _check(m, (3, 8, 8))
    assert len(g.ops) == 1 and g.ops[0].pads == (0, 1, 0, 1)


def test_depthwise_with_multiplier_and_pools():
    m = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, groups=3), nn.BatchNorm2d(6), nn.ReLU(),
                      nn.MaxPool2d(2), nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.Linear(6 * 3 * 3, 5),
                      nn.Softmax(dim=1))
    g = _check(m, (3, 8, 8))
    dw = g.ops[0]
    assert isinstance(dw, DepthwiseConv2D) and dw.depth_multiplier == 2 and dw.weight.shape == (1, 3, 3, 6)
    assert [o.kind for o in g.ops] == ["depthwise_conv2d", "max_pool2d", "avg_pool2d", "reshape",
                                       "fully_connected", "softmax"]


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 3, 1)
        self.b = nn.Conv2d(4, 5, 3, padding=1)

    def forward(self, x):
        y = torch.cat([self.a(x), F.relu(self.b(x))], dim=1)
        return y.mean((2, 3))


def test_concat_and_mean():
    g = _check(Concat(), (4, 6, 5))
    assert g.tensors[g.outputs[0]].shape == (8,)


class ViewFlatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 5, 2)

    def forward(self, x):
        x = self.c(x)
        return self.fc(x.view(x.size(0), -1))


def test_flatten_of_feature_map_permutes_linear_columns():
    g = _check(ViewFlatten(), (2, 4, 5))
    fc = g.ops[-1]
    assert fc.weight.shape == (2, 60)


@pytest.mark.parametrize("module,needle", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), "Sigmoid"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU()), "LeakyReLU"),
    (nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3)), "BatchNorm2d"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "groups=2"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding_mode="reflect")), "reflect"),
    (nn.Sequential(nn.AvgPool2d(3, padding=1)), "padding"),
])
def test_unsupported_is_refused_naming_node_path_and_op(module, needle):
    shape = (4 if isinstance(module[0], nn.Conv2d) and module[0].in_channels == 4 else 1, 8, 8)
    with pytest.raises(UnsupportedOpError) as e:
        capture(module, shape)
    msg = str(e.value)
    assert needle in msg and "module path" in msg and "node" in msg


def test_unsupported_function_names_it():
    class M(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x)
    with pytest.raises(UnsupportedOpError, match="sigmoid"):
        capture(M(), (1, 4, 4))


def test_untraceable_model_gives_graph_error():
    class M(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x
    with pytest.raises(GraphError, match="could not trace"):
        capture(M(), (1, 4, 4))


def test_wrong_input_shape_is_a_graph_error():
    with pytest.raises(GraphError, match="input shape"):
        capture(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 8, 8))


def test_capture_leaves_training_mode_unchanged():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    m.train()
    capture(m, (1, 5, 5))
    assert m.training


def test_graph_is_topological_and_typed():
    g = capture(Residual(2), (3, 8, 8))
    g.validate()
    convs = [o for o in g.ops if isinstance(o, Conv2D)]
    assert all(o.weight.dtype == np.float32 and o.bias.dtype == np.float32 for o in convs)
    assert operator.eq(len(convs), 3)
