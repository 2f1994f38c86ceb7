"""Tests of dtmm.zoo: shapes, fx capture, architecture rules, parameter counts."""

from __future__ import annotations

import doctest
import operator

import pytest
import torch
import torch.fx
from torch import nn

import dtmm.zoo
from dtmm.errors import DtmmError
from dtmm.zoo import CANONICAL, MODEL_NAMES, ZooError, build_model

ALLOWED_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d,
                   nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Identity)
ALLOWED_FUNCTIONS = {operator.add, torch.cat}

SHAPES = [((1, 28, 28), 10), ((3, 32, 32), 10), ((1, 8, 8), 10), ((1, 25, 25), 2)]


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("shape, classes", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_and_fx_capture(name, shape, classes):
    model = build_model(name, shape, classes, seed=0).eval()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, classes)
    gm = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.allclose(gm(x), out)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            assert isinstance(mod, ALLOWED_MODULES), f"{node.target}: {type(mod).__name__}"
        elif node.op in ("call_function", "call_method"):
            assert node.target in ALLOWED_FUNCTIONS, f"{node.name}: {node.target}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_canonical_parameter_count(name):
    shape, classes, expected = CANONICAL[name]
    model = build_model(name, shape, classes)
    assert _nparams(model) == expected
    assert model(torch.zeros(1, *shape)).shape == (1, classes)


def test_parameter_table_in_docstring_matches():
    doc = dtmm.zoo.__doc__
    for name, (shape, classes, expected) in CANONICAL.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"``{name}``"))
        assert f"{expected:,}" in row and "x".join(map(str, shape)) in row


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_conv_conventions(name):
    model = build_model(name, (3, 32, 32), 10)
    modules = dict(model.named_modules())
    for mname, m in modules.items():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            assert m.padding == (kh // 2, kw // 2), mname
            assert m.stride in ((1, 1), (2, 2)), mname
    # a conv directly followed by BN has no bias (conv_bn blocks: conv, bn)
    for mname, m in modules.items():
        if isinstance(m, nn.Sequential) and "conv" in m._modules and "bn" in m._modules:
            assert m.conv.bias is None, mname


def test_seed_makes_builds_repeatable_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("resnet8", (1, 8, 8), 10, seed=5)
    after = torch.rand(1)
    b = build_model("resnet8", (1, 8, 8), 10, seed=5)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_vgg11_layout():
    m = build_model("vgg11", (3, 32, 32), 10)
    widths = [c.out_channels for c in _convs(m)]
    assert widths == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256]
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == 4
    assert isinstance(m.pool, nn.AdaptiveAvgPool2d)  # 32 -> 2x2 at the end
    small = build_model("vgg11", (1, 8, 8), 10)  # 8 -> 4 -> 2 -> 1, 4th pool skipped
    assert sum(isinstance(x, nn.MaxPool2d) for x in small.modules()) == 3
    assert isinstance(build_model("vgg11", (1, 28, 28), 10).pool, nn.Identity)  # 28 -> 1


def test_resnets_layout():
    r8 = build_model("resnet8", (3, 32, 32), 10)
    assert [b.conv2.conv.out_channels for b in r8.layers] == [16, 32, 64]
    assert [b.conv1.conv.stride for b in r8.layers] == [(1, 1), (2, 2), (2, 2)]
    assert isinstance(r8.layers[0].shortcut, nn.Identity)
    proj = r8.layers[1].shortcut
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == (1, 1) and proj.bias is not None
    r12 = build_model("resnet12", (3, 32, 32), 10)
    assert r12.stem.conv.out_channels == 32
    assert [b.conv2.conv.out_channels for b in r12.layers] == [32, 64, 128, 256]
    assert [b.conv1.conv.stride for b in r12.layers] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(isinstance(b.shortcut.bn, nn.BatchNorm2d) for b in r12.layers[1:])


def test_dscnn_layout_and_kernel_clamp():
    m = build_model("dscnn", (1, 49, 10), 12)
    convs = _convs(m)
    assert convs[0].kernel_size == (10, 4) and convs[0].stride == (2, 2)
    assert len(convs) == 9 and all(c.out_channels == 64 for c in convs)
    assert [c.groups for c in convs[1::2]] == [64] * 4
    assert [c.kernel_size for c in convs[2::2]] == [(1, 1)] * 4
    assert _convs(build_model("dscnn", (1, 8, 8), 10))[0].kernel_size == (8, 4)
    assert _convs(build_model("dscnn", (1, 8, 3), 10))[0].kernel_size == (8, 3)


def test_mobilenet_layout_and_stride_rule():
    m = build_model("mobilenetv1_025", (3, 96, 96), 2)
    convs = _convs(m)
    pw = [convs[0].out_channels] + [c.out_channels for c in convs[2::2]]
    assert pw == [8, 16, 32, 32, 64, 64] + [128] * 6 + [256, 256]
    assert all(c.groups == c.in_channels for c in convs[1::2])
    assert sum(c.stride == (2, 2) for c in convs) == 5

    def n_strided(shape):
        return sum(c.stride == (2, 2) for c in _convs(build_model("mobilenetv1_025", shape, 10)))

    assert n_strided((1, 28, 28)) == 5  # 14, 7, 4, 2, 1
    assert n_strided((1, 8, 8)) == 3    # 4, 2, 1, then stride 1


def test_unknown_model_and_bad_shape():
    with pytest.raises(ZooError) as e:
        build_model("alexnet", (3, 32, 32), 10)
    assert isinstance(e.value, DtmmError)
    for name in MODEL_NAMES:
        assert name in str(e.value)
    with pytest.raises(ZooError, match="input_shape"):
        build_model("resnet8", (32, 32), 10)
    with pytest.raises(ZooError, match="num_classes"):
        build_model("resnet8", (1, 8, 8), 0)


def test_docstring_examples():
    result = doctest.testmod(dtmm.zoo)
    assert result.failed == 0 and result.attempted > 0
