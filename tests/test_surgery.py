"""Torch-level channel surgery (dtmm.prune.surgery.shrink_model) against the IR specification."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from _helpers import realistic_bn
from dtmm.errors import GraphError
from dtmm.graph.capture import capture
from dtmm.graph.float_exec import run_float
from dtmm.prune import PruneError, apply_masks, get_masks, remove_dead_channels, remove_masks
from dtmm.prune.surgery import dead_filters_of, shrink_model
from dtmm.zoo import build_model

ATOL = 1e-5


def _run_ir(g, x: torch.Tensor) -> np.ndarray:
    out = run_float(g, x.permute(0, 2, 3, 1).numpy())
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out


def _masked_copy_graph(model, shape):
    return capture(remove_masks(copy.deepcopy(model)).eval(), shape)


def _shapes(g):
    return [(op.name, op.kind, tuple(g.tensors[op.output].shape)) for op in g.ops]


def _set_bias(model, name, chans, value):
    m = model.get_submodule(name)
    with torch.no_grad():
        for c in chans:
            m.bias[c] = value


def _mask_filters(model, name, chans, extra_seed=None):
    """Mask whole filters ``chans`` of module ``name`` (and, optionally, random filterlets)."""
    m = model.get_submodule(name)
    keep = torch.ones_like(m.weight, dtype=torch.bool)
    if extra_seed is not None and m.weight.dim() == 4 and m.groups == 1:
        g = torch.Generator().manual_seed(extra_seed)
        pos = torch.rand(m.weight.shape[0], 1, *m.weight.shape[2:], generator=g) < 0.3
        keep &= ~pos.expand_as(keep)
    keep[list(chans)] = False
    apply_masks(model, {name: keep})
    return keep


# ------------------------------------------------------------------ constructed cases


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.c = nn.Conv2d(6, 4, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = torch.relu(self.a(x) + self.b(x))
        return self.fc(torch.flatten(self.pool(torch.relu(self.c(y))), 1))


def test_residual_add_both_sides_and_one_side():
    torch.manual_seed(0)
    m = _Res().eval()
    _mask_filters(m, "a", [1, 3])                 # 1 dead on both sides, 3 only on side a
    _mask_filters(m, "b", [1])
    _set_bias(m, "a", [1, 3], 0.7)
    _set_bias(m, "b", [1], 0.2)                   # relu(0.9) folds into c, which has no bias
    r = shrink_model(m, (3, 6, 6))
    assert r.removed == {"a": [1], "b": [1]}
    assert r.report.kept_by_add == {"a": [3]}
    c = r.model.get_submodule("c")
    assert c.in_channels == 5 and c.bias is not None           # a bias was added for the fold
    assert r.model.get_submodule("a").out_channels == 5
    assert _shapes(capture(remove_masks(copy.deepcopy(r.model)), (3, 6, 6))) == _shapes(r.graph)
    x = torch.rand(4, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(r.model(x), m(x), atol=ATOL)
    assert r.report.is_exact


def test_flatten_linear_with_explicit_view_and_masks_carried():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 6, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(6 * 3 * 3, 4)

        def forward(self, x):
            y = self.pool(torch.relu(self.conv(x)))
            return self.fc(y.view(y.size(0), 54))       # explicit size: becomes -1

    torch.manual_seed(1)
    m = Net().eval()
    keep = _mask_filters(m, "conv", [1, 4], extra_seed=3)
    _set_bias(m, "conv", [1, 4], 0.4)
    fc_keep = torch.rand(4, 54) > 0.2
    apply_masks(m, {"fc": fc_keep})
    r = shrink_model(m, (2, 6, 6))
    assert r.removed == {"conv": [1, 4]}
    assert r.channels["fc"].kept_in == tuple(i for i in range(54) if i // 9 not in (1, 4))
    masks = get_masks(r.model)
    assert torch.equal(masks["conv"], keep[[0, 2, 3, 5]])
    assert torch.equal(masks["fc"], fc_keep[:, list(r.channels["fc"].kept_in)])
    x = torch.rand(3, 2, 6, 6)
    with torch.no_grad():
        assert torch.allclose(r.model(x), m(x), atol=ATOL)
    assert r.report.is_exact
    # the input model is untouched and still masked
    assert parametrize.is_parametrized(m.conv) and m.conv.out_channels == 6
    assert torch.equal(get_masks(m)["conv"], keep)


def test_depthwise_channels_leave_with_their_input():
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Conv2d(4, 8, 3, groups=4), nn.BatchNorm2d(8), nn.ReLU(),   # mult 2, no pad
                      nn.Conv2d(8, 3, 1), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    realistic_bn(m, 0)
    _mask_filters(m, "0", [1])
    r = shrink_model(m, (3, 6, 6))
    assert r.removed == {"0": [1], "3": [2, 3]}
    dw = r.model.get_submodule("3")
    assert (dw.in_channels, dw.out_channels, dw.groups) == (3, 6, 3)
    assert r.model.get_submodule("1").num_features == 3 and r.model.get_submodule("4").num_features == 6
    assert r.channels["4"].kept_out == (0, 1, 4, 5, 6, 7)
    x = torch.rand(3, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(r.model(x), m(x), atol=ATOL)
    assert r.report.is_exact


def test_concat_and_padded_consumer_border():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 3, 1)
            self.b = nn.Conv2d(2, 4, 1)
            self.c = nn.Conv2d(7, 2, 3, padding=1)

        def forward(self, x):
            return self.c(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1))

    torch.manual_seed(3)
    m = Cat().eval()
    _mask_filters(m, "a", [0])
    _mask_filters(m, "b", [2])
    _set_bias(m, "a", [0], -0.3)       # relu(-0.3) = 0: exact even though c is padded
    _set_bias(m, "b", [2], 0.8)        # 0.8 != 0: c over-counts it at the border
    r = shrink_model(m, (2, 6, 6))
    assert r.removed == {"a": [0], "b": [2]}
    assert r.model.get_submodule("c").in_channels == 5
    assert r.report.approximate_consumers == ["c"]
    x = torch.rand(3, 2, 6, 6)
    with torch.no_grad():
        y, y2 = m(x), r.model(x)
    assert torch.allclose(y2[..., 1:-1, 1:-1], y[..., 1:-1, 1:-1], atol=ATOL)   # exact inside
    assert not torch.allclose(y2[..., 0, :], y[..., 0, :], atol=ATOL)           # the border differs
    np.testing.assert_allclose(y2.numpy(), _run_ir(r.graph, x), atol=ATOL)    # as the IR pass says


def test_shrunk_model_trains_under_its_masks():
    torch.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    _mask_filters(m, "0", [2])
    keep3 = _mask_filters(m, "3", [], extra_seed=5)
    r = shrink_model(m.train(), (1, 6, 6))
    assert r.model.training
    model = r.model
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = model(torch.rand(4, 1, 6, 6)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = model.get_submodule("3").weight
    want = keep3[:, [0, 1, 3]]
    assert torch.all(w[~want] == 0) and torch.all(w[want] != 0)


def test_refusals():
    from dtmm.quant.fake import WeightFakeQuant

    m = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 1))
    with pytest.raises(PruneError, match="no module named 'nope'"):
        shrink_model(m, (1, 4, 4), {"nope": [0]})
    with pytest.raises(PruneError, match="'1'.*not a conv"):
        shrink_model(m, (1, 4, 4), {"1": [0]})
    with pytest.raises(GraphError, match="nonzero"):
        shrink_model(m, (1, 4, 4), {"0": [1]})
    q = copy.deepcopy(m)
    parametrize.register_parametrization(q[0], "weight", WeightFakeQuant())
    with pytest.raises(PruneError, match="WeightFakeQuant"):
        shrink_model(q, (1, 4, 4))


def test_nothing_dead_gives_an_equal_copy():
    m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)).eval()
    r = shrink_model(m, (1, 4, 4))
    assert r.removed == {} and r.channels == {}
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(r.model(x), m(x))


def test_dead_filters_of_reads_masks():
    m = nn.Sequential(nn.Conv2d(1, 3, 3))
    _mask_filters(m, "0", [0, 2])
    assert dead_filters_of(m) == {"0": [0, 2]}


# ------------------------------------------------------------------ zoo models

ZOO = [("resnet8", (3, 12, 12)), ("vgg11", (3, 16, 16)), ("resnet12", (3, 12, 12)),
       ("dscnn", (1, 20, 10)), ("mobilenetv1_025", (3, 16, 16))]


def _prune_zoo(model: nn.Module, seed: int) -> None:
    """Kill ~25% of the filters of every conv (depthwise included) plus random filterlets;
    for residual blocks with a projection also kill shared channels on both sides."""
    rng = np.random.default_rng(seed)
    mods = dict(model.named_modules())
    shared: dict[str, list[int]] = {}
    for name, mod in mods.items():
        if name.endswith("shortcut") and isinstance(mod, (nn.Conv2d, nn.Sequential)):
            block = name[: -len("shortcut")]
            sc = name if isinstance(mod, nn.Conv2d) else name + ".conv"
            both = rng.choice(mod.out_channels if isinstance(mod, nn.Conv2d) else mod.conv.out_channels,
                              2, replace=False).tolist()
            shared[sc] = both
            shared[block + "conv2.conv"] = both
    for name, mod in mods.items():
        if not isinstance(mod, nn.Conv2d):
            continue
        n = mod.out_channels
        dead = set(rng.choice(n, max(1, n // 4), replace=False).tolist()) | set(shared.get(name, []))
        keep = torch.ones_like(mod.weight, dtype=torch.bool)
        if mod.groups == 1 and mod.kernel_size != (1, 1):
            pos = torch.from_numpy(rng.random((n, 1) + tuple(mod.kernel_size)) < 0.3)
            keep &= ~pos.expand_as(keep)
        keep[sorted(dead)] = False
        apply_masks(model, {name: keep})


@pytest.mark.parametrize("name,shape", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_models(name, shape):
    torch.manual_seed(0)
    m = realistic_bn(build_model(name, shape, 5, seed=0), 7)
    _prune_zoo(m, seed=1)
    g = _masked_copy_graph(m, shape)
    g2, rep = remove_dead_channels(g, dead_filters_of(m))
    r = shrink_model(m, shape)
    assert rep.num_removed > 0 and r.removed
    # the same IR shapes as the IR pass, and the same numbers as the shrunk IR graph
    assert _shapes(capture(remove_masks(copy.deepcopy(r.model)), shape)) == _shapes(g2)
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y_masked, y_shrunk = m(x), r.model(x)
    np.testing.assert_allclose(y_shrunk.numpy(), _run_ir(g2, x), atol=1e-4, rtol=1e-4)
    n_params = lambda mod: sum(p.numel() for p in mod.parameters())     # noqa: E731
    assert n_params(r.model) < n_params(m)
    if rep.is_exact:
        np.testing.assert_allclose(y_shrunk.numpy(), y_masked.numpy(), atol=1e-4, rtol=1e-4)
        return
    # border approximation: the first approximate conv consumer is exact away from the border
    first = next(op for op in g.ops if op.name in rep.approximate_consumers and rep.folded[op.name].into_bias)
    outs = {}

    def hook(key):
        return lambda mod, inp, out: outs.__setitem__(key, out.detach())

    h1 = m.get_submodule(first.name).register_forward_hook(hook("masked"))
    h2 = r.model.get_submodule(first.name).register_forward_hook(hook("shrunk"))
    with torch.no_grad():
        m(x), r.model(x)
    h1.remove(), h2.remove()
    kept = list(r.channels[first.name].kept_out)
    a, b = outs["masked"][:, kept], outs["shrunk"]
    rows, cols = _exact_region(g, first)
    torch.testing.assert_close(b[..., rows, cols], a[..., rows, cols], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(b, a, atol=1e-4)          # ... and really differs at the border


def _window_region(n_out: int, region_in: tuple[int, int], k: int, s: int, p: int, d: int) -> tuple[int, int]:
    """Output rows whose window lies inside input rows ``region_in`` (inclusive bounds)."""
    ok = [y for y in range(n_out) if y * s - p >= region_in[0] and y * s - p + (k - 1) * d <= region_in[1]]
    return ok[0], ok[-1]


def _exact_region(g, op) -> tuple[slice, slice]:
    """Pixels of a consumer's output where folding is exact: its window avoids its own padding
    and, when the folded channels come from a padded depthwise (constant only inside its own
    border), that depthwise's border too."""
    from dtmm.graph.ir import DepthwiseConv2D

    src = op.inputs[0]
    h, w = g.tensors[src].shape[:2]
    reg = [(0, h - 1), (0, w - 1)]
    prod = g.producer(src)
    if isinstance(prod, DepthwiseConv2D):
        ph, pw = g.tensors[prod.inputs[0]].shape[:2]
        kh, kw = prod.kernel
        reg = [_window_region(h, (0, ph - 1), kh, prod.stride[0], prod.pads[0], prod.dilation[0]),
               _window_region(w, (0, pw - 1), kw, prod.stride[1], prod.pads[2], prod.dilation[1])]
    oh, ow = g.tensors[op.output].shape[:2]
    kh, kw = op.kernel
    r = _window_region(oh, reg[0], kh, op.stride[0], op.pads[0], op.dilation[0])
    c = _window_region(ow, reg[1], kw, op.stride[1], op.pads[2], op.dilation[1])
    return slice(r[0], r[1] + 1), slice(c[0], c[1] + 1)


@pytest.mark.parametrize("name,shape", [ZOO[0], ZOO[1], ZOO[4]], ids=["resnet8", "vgg11", "mobilenetv1_025"])
def test_zoo_models_exact_when_constants_are_zero(name, shape):
    """Dead channels whose BN bias drives them below 0 are exactly 0 after ReLU: no border error."""
    m = realistic_bn(build_model(name, shape, 5, seed=0), 7)
    _prune_zoo(m, seed=1)
    mods = dict(m.named_modules())
    for cname, chans in dead_filters_of(m).items():
        bn = mods.get(cname[: -len("conv")] + "bn") if cname.endswith("conv") else None
        if bn is not None:
            with torch.no_grad():
                bn.bias[chans] = -10.0
                bn.running_mean[chans] = 0.0
    r = shrink_model(m, shape)
    assert r.report.is_exact and r.removed
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        np.testing.assert_allclose(r.model(x).numpy(), m(x).numpy(), atol=1e-4, rtol=1e-4)


def test_rebuild_shrunk_reloads_a_shrunk_model_from_json_maps():
    import json

    from dtmm.prune import load_masked_state_dict
    from dtmm.prune.surgery import rebuild_shrunk

    shape = (3, 12, 12)
    m = realistic_bn(build_model("resnet8", shape, 5, seed=0), 7)
    _prune_zoo(m, seed=1)
    r = shrink_model(m, shape)
    maps = json.loads(json.dumps(r.channels_json()))
    again = rebuild_shrunk(realistic_bn(build_model("resnet8", shape, 5, seed=3), 2), maps)
    load_masked_state_dict(again, r.model.state_dict())
    x = torch.rand(2, *shape)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), r.model(x))
    assert set(get_masks(again)) == set(get_masks(r.model))
    with pytest.raises(PruneError, match="outside"):
        rebuild_shrunk(build_model("resnet8", shape, 5), {"stem.conv": {"kept_in": [0], "kept_out": [99]}})
