"""Tests of dtmm.prune: granularities, importance scorers, selection, joint pruning, masks."""
from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dtmm import prune
from dtmm.errors import DtmmError
from dtmm.prune import (
    ELEMENT,
    FILTER,
    FILTERLET,
    PATTERN,
    Filterlet,
    Pattern,
    PruneError,
)


def tiny_model(seed: int = 0, c_in: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(c_in, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    )


def tiny_data(seed: int = 1, n_batches: int = 3, bs: int = 8, c_in: int = 3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, c_in, 6, 6, generator=g), torch.randint(0, 5, (bs,), generator=g))
            for _ in range(n_batches)]


# --------------------------------------------------------------------------- granularities

CONV_SHAPES = [(o, k, k, c) for o, k, c in itertools.product((1, 5), (1, 3, 5), (1, 3, 17))]


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_filterlet_units_on_conv(shape):
    o, kh, kw, c = shape
    ids = FILTERLET.unit_ids(shape)
    assert ids.shape == shape and ids.dtype == np.int64
    assert FILTERLET.num_units(shape) == o * kh * kw
    # Each filterlet is the C_in weights at one (o, kh, kw), contiguous in OHWI order.
    assert np.array_equal(ids.ravel(), np.repeat(np.arange(o * kh * kw), c))
    for oo, hh, ww in [(0, 0, 0), (o - 1, kh - 1, kw - 1), (o // 2, kh // 2, 0)]:
        u = ids[oo, hh, ww, 0]
        assert np.array_equal(np.argwhere(ids == u), [[oo, hh, ww, i] for i in range(c)])
    assert np.array_equal(FILTERLET.unit_sizes(shape), np.full(o * kh * kw, c))


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_filter_and_element_units_on_conv(shape):
    o = shape[0]
    f = FILTER.unit_ids(shape)
    assert FILTER.num_units(shape) == o
    assert np.array_equal(f, np.broadcast_to(np.arange(o)[:, None, None, None], shape))
    e = ELEMENT.unit_ids(shape)
    assert ELEMENT.num_units(shape) == int(np.prod(shape))
    assert np.array_equal(e.ravel(), np.arange(int(np.prod(shape))))
    assert PATTERN.num_units(shape) == int(np.prod(shape))   # pattern scores per weight


def test_filterlet_units_on_linear():
    ids = FILTERLET.unit_ids((3, 40))
    assert FILTERLET.num_units((3, 40)) == 9
    assert FILTERLET.unit_sizes((3, 40)).tolist() == [16, 16, 8] * 3
    assert ids[0].tolist() == [0] * 16 + [1] * 16 + [2] * 8
    assert ids[2].tolist() == [6] * 16 + [7] * 16 + [8] * 8
    assert FILTERLET.unit_sizes((2, 16)).tolist() == [16, 16]
    assert FILTERLET.unit_sizes((2, 17)).tolist() == [16, 1, 16, 1]
    assert FILTERLET.unit_sizes((1, 1)).tolist() == [1]
    assert Filterlet(run=8).unit_sizes((1, 20)).tolist() == [8, 8, 4]
    assert FILTER.unit_sizes((3, 40)).tolist() == [40, 40, 40]


def test_depthwise_conventions():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1, groups=2))
    assert list(prune.prunable_layers(model)) == ["0", "2"]          # depthwise skipped by default
    assert list(prune.prunable_layers(model, include_depthwise=True)) == ["0", "1", "2"]
    shape = prune.weight_ohwi(model[1]).shape
    assert shape == (8, 3, 3, 1)
    # A depthwise filterlet is a single weight; a filter is one channel's kernel.
    assert np.array_equal(FILTERLET.unit_ids(shape), ELEMENT.unit_ids(shape))
    assert FILTER.unit_sizes(shape).tolist() == [9] * 8
    assert prune.weight_ohwi(model[2]).shape == (4, 1, 1, 4)          # grouped: C_in per group


def test_bad_shapes_and_names():
    with pytest.raises(PruneError):
        FILTERLET.unit_ids((3, 3, 3))
    with pytest.raises(PruneError):
        FILTER.unit_ids((0, 3))
    with pytest.raises(PruneError):
        prune.get_granularity("stripe")
    with pytest.raises(PruneError):
        Filterlet(run=0)
    with pytest.raises(PruneError):
        Pattern([(0, 1, 9, 4)])
    assert issubclass(PruneError, DtmmError)


# --------------------------------------------------------------------------- selection

def test_exact_ratios_and_ties():
    assert int(prune.select(np.arange(10.0), 0.5).sum()) == 5
    assert [prune.num_pruned(10, r) for r in (0.0, 0.1, 0.3, 0.5, 0.7, 0.99, 1.0)] == [0, 1, 3, 5, 7, 9, 10]
    assert prune.num_pruned(7, 0.5) == 3
    # Ties: the lower index is pruned first.
    assert prune.select(np.ones(6), 0.5).tolist() == [False, False, False, True, True, True]
    keep = prune.select([5.0, 1.0, 3.0, 1.0, 2.0], 0.4)
    assert keep.tolist() == [True, False, True, False, True]
    # Unit masks prune exactly ratio * units.
    shape = (6, 3, 3, 17)
    scores = np.random.default_rng(0).random(FILTERLET.num_units(shape))
    m = FILTERLET.build_mask(scores, 0.5, shape)
    kept_units = np.unique(FILTERLET.unit_ids(shape)[m])
    assert kept_units.size == 27
    assert np.all(m.reshape(-1, 17).all(1) | ~m.reshape(-1, 17).any(1))    # whole filterlets only
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(PruneError):
            prune.select(np.arange(3.0), bad)
    with pytest.raises(PruneError):
        prune.select([1.0, float("nan")], 0.5)
    with pytest.raises(PruneError):
        FILTERLET.build_mask(np.zeros(5), 0.5, shape)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(0, 1))
def test_select_property(scores, ratio):
    s = np.array(scores)
    keep = prune.select(s, ratio)
    assert (~keep).sum() == prune.num_pruned(s.size, ratio)
    if keep.any() and (~keep).any():
        assert s[~keep].max() <= s[keep].min()
    assert np.array_equal(keep, prune.select(s, ratio))          # deterministic


def test_select_global():
    scores = {"a": np.array([1.0, 2, 3, 4]), "b": np.array([100.0, 200, 300, 400]), "c": np.array([0.0, 0.0])}
    # L2-normalised: a and b have identical normalised scores.
    keep = prune.select_global(scores, 0.5, min_keep=0)
    assert sum(int((~k).sum()) for k in keep.values()) == 5
    assert keep["c"].tolist() == [False, False]
    # Equal normalised scores: the tie goes to the layer listed first.
    assert keep["a"].tolist() == [False, False, True, True] and keep["b"].tolist() == [False, True, True, True]
    # min_keep protects every layer but keeps the total exact.
    keep = prune.select_global(scores, 0.5, min_keep=1)
    assert keep["c"].tolist() == [False, True]
    assert sum(int((~k).sum()) for k in keep.values()) == 5
    # Without normalisation, b keeps everything.
    keep = prune.select_global(scores, 0.5, normalize="none", min_keep=0)
    assert keep["b"].all()
    with pytest.raises(PruneError):
        prune.select_global(scores, 0.5, normalize="softmax")


def test_load_ratios(tmp_path):
    known = ["conv1", "conv2", "fc"]
    assert prune.load_ratios({"conv2": 0.25}, known) == {"conv2": 0.25}
    assert prune.load_ratios({"conv2": 0.25}, known, default=0.0) == {"conv1": 0.0, "conv2": 0.25, "fc": 0.0}
    p = tmp_path / "ratios.json"
    p.write_text(json.dumps({"conv1": 0.5, "fc": 0.1}))
    assert prune.load_ratios(p, known) == {"conv1": 0.5, "fc": 0.1}
    assert prune.load_ratios(str(p), known) == {"conv1": 0.5, "fc": 0.1}
    with pytest.raises(PruneError, match="convX"):
        prune.load_ratios({"convX": 0.5}, known)
    with pytest.raises(PruneError):
        prune.load_ratios({"conv1": 1.5}, known)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PruneError):
        prune.load_ratios(tmp_path / "bad.json", known)
    with pytest.raises(PruneError):
        prune.load_ratios(tmp_path / "missing.json", known)


# --------------------------------------------------------------------------- importance

def _manual_grad(model, layer, data, batches):
    model.eval()
    w = layer.weight
    g = torch.zeros_like(w, dtype=torch.float64)
    for x, y in data[:batches]:
        loss = F.cross_entropy(model(x), y)
        g += torch.autograd.grad(loss, [w])[0].double()
    return (g / batches).numpy()


def test_taylor_matches_brute_force():
    model = tiny_model()
    data = tiny_data()
    model.train()
    s = prune.taylor(model, ["0", "2", "5"], "filterlet", data=data, batches=2)
    assert model.training                                             # mode restored
    assert all(p.grad is None for p in model.parameters())            # .grad untouched
    for name in ("0", "2"):
        conv = dict(model.named_modules())[name]
        g = _manual_grad(model, conv, data, 2)
        w = conv.weight.detach().double().numpy()
        gw = (g * w).transpose(0, 2, 3, 1)                             # OHWI
        o, kh, kw, _ = gw.shape
        expect = np.abs(gw.sum(axis=3)).reshape(-1)                    # |sum over filterlet|
        assert s[name].shape == (o * kh * kw,)
        np.testing.assert_allclose(s[name], expect, rtol=1e-6, atol=1e-12)
        # Not the same as the sum of absolute values (abs is of the unit's sum).
        assert not np.allclose(s[name], np.abs(gw).sum(axis=3).reshape(-1))
    fc = model[5]
    g = _manual_grad(model, fc, data, 2)
    gw = g * fc.weight.detach().double().numpy()                      # (5, 96): runs of 16
    expect = np.abs(gw.reshape(5, 6, 16).sum(-1)).reshape(-1)
    np.testing.assert_allclose(s["5"], expect, rtol=1e-6, atol=1e-12)
    # Filter granularity: whole output channel.
    sf = prune.taylor(model, ["2"], "filter", data=data, batches=2)["2"]
    g = _manual_grad(model, model[2], data, 2)
    expect = np.abs((g * model[2].weight.detach().double().numpy()).reshape(6, -1).sum(1))
    np.testing.assert_allclose(sf, expect, rtol=1e-6, atol=1e-12)


def test_taylor_predicts_loss_change():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 5 * 5, 3))
    with torch.no_grad():
        model[0].weight.mul_(0.3)
    g = torch.Generator().manual_seed(4)
    data = [(torch.randn(32, 4, 5, 5, generator=g), torch.randint(0, 3, (32,), generator=g))]
    x, y = data[0]
    contrib = prune.taylor_contributions(model, ["0"], data=data, batches=1)["0"]   # OHWI signed
    est = FILTERLET.reduce(contrib, contrib.shape)          # signed first-order estimate of L(w) - L(w=0)
    model.eval()
    with torch.no_grad():
        base = F.cross_entropy(model(x), y).item()
        actual = []
        for u in range(FILTERLET.num_units(contrib.shape)):
            o, kh, kw = np.unravel_index(u, contrib.shape[:3])
            saved = model[0].weight[o, :, kh, kw].clone()
            model[0].weight[o, :, kh, kw] = 0
            actual.append(base - F.cross_entropy(model(x), y).item())
            model[0].weight[o, :, kh, kw] = saved
    actual = np.array(actual)
    assert np.corrcoef(est, actual)[0, 1] > 0.95
    score = prune.taylor(model, ["0"], "filterlet", data=data, batches=1)["0"]
    np.testing.assert_allclose(score, np.abs(est))
    rank = lambda a: np.argsort(np.argsort(a))
    assert np.corrcoef(rank(score), rank(np.abs(actual)))[0, 1] > 0.8


def test_taylor_needs_data():
    with pytest.raises(PruneError):
        prune.taylor(tiny_model(), ["0"], data=None)
    with pytest.raises(PruneError):
        prune.taylor(tiny_model(), ["0"], data=[])
    with pytest.raises(PruneError, match="nope"):
        prune.taylor(tiny_model(), ["nope"], data=tiny_data())


def test_l1_l2_exact():
    model = tiny_model()
    w = model[2].weight.detach().double().numpy().transpose(0, 2, 3, 1)     # (6, 3, 3, 4)
    for gname, red in [("filterlet", lambda a: a.sum(3).reshape(-1)),
                       ("filter", lambda a: a.reshape(6, -1).sum(1)),
                       ("element", lambda a: a.reshape(-1))]:
        np.testing.assert_allclose(prune.l1(model, ["2"], gname)["2"], red(np.abs(w)), rtol=1e-12)
        np.testing.assert_allclose(prune.l2(model, ["2"], gname)["2"], np.sqrt(red(w * w)), rtol=1e-12)
    wl = model[5].weight.detach().double().numpy()
    np.testing.assert_allclose(prune.l1(model, ["5"], FILTERLET)["5"], np.abs(wl).reshape(5, 6, 16).sum(-1).ravel())
    assert set(prune.l1(model)) == {"0", "2", "5"}                              # default layers


def test_chip_matches_numpy_nuclear_norms():
    model = tiny_model()
    data = tiny_data(n_batches=3, bs=3)
    s = prune.chip(model, ["0", "2"], "filter", data=data, batches=2, taps={"2": "3"})
    feats = {}
    with torch.no_grad():
        model.eval()
        for name, upto in (("0", 1), ("2", 4)):
            feats[name] = np.concatenate([model[:upto](x).double().numpy() for x, _ in data[:2]])
    for name, f in feats.items():
        n, c = f.shape[:2]
        ci = np.zeros((n, c))
        for i in range(n):
            a = f[i].reshape(c, -1)
            full = np.linalg.norm(a, "nuc")
            for j in range(c):
                b = a.copy()
                b[j] = 0
                ci[i, j] = full - np.linalg.norm(b, "nuc")
        np.testing.assert_allclose(s[name], ci.mean(0), rtol=1e-7, atol=1e-9)
    # Chunked evaluation gives the same numbers.
    f = torch.from_numpy(feats["2"][:2])
    np.testing.assert_allclose(prune.channel_independence(f, chunk=4).numpy(),
                               prune.channel_independence(f, chunk=64).numpy(), rtol=1e-10)


def test_chip_errors():
    model, data = tiny_model(), tiny_data()
    for g in ("filterlet", "element", "pattern"):
        with pytest.raises(PruneError, match="filter granularity"):
            prune.chip(model, ["0"], g, data=data)
    with pytest.raises(PruneError):
        prune.chip(model, ["5"], "filter", data=data)                       # Linear
    with pytest.raises(PruneError):
        prune.chip(model, ["0"], "filter", data=None)
    with pytest.raises(PruneError):
        prune.chip(model, ["0"], "filter", data=data, taps={"0": "99"})
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Conv2d(3, 3, 1), relu, nn.Conv2d(3, 3, 1), relu)
    with pytest.raises(PruneError, match="more than once"):
        prune.chip(shared, ["0"], "filter", data=data, taps={"0": "1"})
    assert not shared[1]._forward_hooks                                    # hooks removed


def test_scorer_registry():
    assert prune.get_scorer("taylor") is prune.taylor
    assert set(prune.SCORERS) == {"taylor", "l1", "l2", "energy", "chip"}
    with pytest.raises(PruneError):
        prune.get_scorer("hessian")


# --------------------------------------------------------------------------- pattern

def test_pattern_masks():
    rng = np.random.default_rng(0)
    shape = (6, 3, 3, 5)
    scores = rng.random(shape)
    lib = PATTERN.library_matrix()
    for ratio in (0.0, 0.3, 0.5):
        m = PATTERN.build_mask(scores.ravel(), ratio, shape)
        kern = m.transpose(0, 3, 1, 2).reshape(-1, 9)
        kept = kern.any(1)
        assert (~kept).sum() == prune.num_pruned(30, ratio)
        assert np.all(kern[kept].sum(1) == 4)
        sk = scores.transpose(0, 3, 1, 2).reshape(-1, 9)
        for k in np.flatnonzero(kept):
            matches = np.flatnonzero((lib == kern[k]).all(1))
            assert matches.size == 1                                          # a library pattern
            assert sk[k][kern[k]].sum() == pytest.approx((sk[k] * lib).sum(1).max())   # the best one
        # Connectivity removes the kernels whose best pattern holds least.
        held = (sk @ lib.T.astype(float)).max(1)
        if (~kept).any():
            assert held[~kept].max() <= held[kept].min()
    s = 1 - PATTERN.build_mask(scores.ravel(), 0.5, shape).mean()
    assert s == pytest.approx(1 - (15 / 30) * 4 / 9)
    assert PATTERN.ratio_for_sparsity(1 - (15 / 30) * 4 / 9, shape) == pytest.approx(0.5)
    assert PATTERN.ratio_for_sparsity(0.2, shape) == 0.0


def test_pattern_non3x3_and_linear():
    rng = np.random.default_rng(1)
    shape = (4, 1, 1, 6)                                                     # 1x1: connectivity only
    sc = rng.random(shape)
    m = PATTERN.build_mask(sc, 0.5, shape)
    assert np.array_equal(m, ELEMENT.build_mask(sc.ravel(), 0.5, shape))
    shape = (2, 5, 5, 3)
    m = PATTERN.build_mask(rng.random(shape), 0.5, shape)
    kern = m.transpose(0, 3, 1, 2).reshape(6, 25)
    assert sorted(kern.sum(1).tolist()) == [0, 0, 0, 25, 25, 25]
    assert PATTERN.build_mask(rng.random((3, 40)), 0.25, (3, 40)).sum() == 90
    custom = Pattern([(4,), (0,)])
    m = custom.build_mask(rng.random((2, 3, 3, 2)), 0.0, (2, 3, 3, 2))
    assert m.sum() == 4


def test_derive_pattern_library():
    w = np.zeros((10, 3, 3, 2))
    w[:, 1, :, :] = 1.0                                                    # middle row strongest
    w[:, 0, 1, :] = 0.5
    lib = prune.derive_pattern_library([w, np.zeros((2, 1, 1, 2))], k=3)
    assert lib[0] == (1, 3, 4, 5) and len(lib) == 3
    assert Pattern(lib).build_mask(w, 0.0, w.shape).transpose(0, 3, 1, 2).reshape(-1, 9)[0].tolist() == \
        [False, True, False, True, True, True, False, False, False]


# --------------------------------------------------------------------------- joint

def test_joint_filter_filterlet():
    rng = np.random.default_rng(2)
    shape = (10, 3, 3, 4)
    fs = rng.random(10)
    fl = rng.random(90)
    m = prune.joint_mask(fs, fl, shape, beta=0.3, alpha=0.5)
    dead = prune.dead_filters(m)
    removed = np.argsort(fs, kind="stable")[:3]
    assert set(removed) <= set(dead.tolist())
    units = m.any(3).reshape(10, 9)
    assert units.sum() == 63 - prune.num_pruned(63, 0.5)                    # alpha relative to survivors
    assert np.all(m.all(3) | ~m.any(3))
    surv = np.setdiff1d(np.arange(10), removed)
    flr = fl.reshape(10, 9)
    assert flr[surv][~units[surv]].max() <= flr[surv][units[surv]].min()
    # A filter whose filterlets all go under alpha is reported dead too.
    fs = np.array([1.0, 2.0, 3.0])
    fl = np.array([0.0] * 4 + [5.0] * 4 + [6.0] * 4)
    masks, dead = prune.joint_masks({"c": fs}, {"c": fl}, {"c": (3, 2, 2, 1)}, {"c": (0.0, 1 / 3)})
    assert dead["c"].tolist() == [0]
    masks, dead = prune.joint_masks({"c": fs}, {"c": fl}, {"c": (3, 2, 2, 1)}, {"c": (1 / 3, 0.5)})
    assert dead["c"].tolist() == [0, 1] and masks["c"].sum() == 4            # beta kills 0, alpha kills 1
    with pytest.raises(PruneError):
        prune.joint_masks({"c": fs}, {"c": fl}, {"c": (3, 2, 2, 1)}, {"d": (0.1, 0.1)})
    with pytest.raises(PruneError):
        prune.joint_mask(fs, fl[:5], (3, 2, 2, 1), 0.1, 0.1)
    # Linear layer: filterlets are runs of 16.
    m = prune.joint_mask(np.arange(3.0), np.arange(9.0), (3, 40), 1 / 3, 0.0)
    assert prune.dead_filters(m).tolist() == [0] and m[1:].all()


# --------------------------------------------------------------------------- masks

def _masked_model(seed=0):
    model = tiny_model(seed)
    data = tiny_data()
    scores = prune.taylor(model, ["0", "2", "5"], "filterlet", data=data, batches=1)
    masks = prune.masks_from_scores(model, scores, "filterlet", {"0": 0.5, "2": 0.7, "5": 0.4})
    prune.apply_masks(model, masks)
    return model, masks, data


def _train(model, opt, data, steps):
    model.train()
    for i in range(steps):
        x, y = data[i % len(data)]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1),
], ids=["sgd", "sgd-nesterov", "adam", "adamw"])
def test_pruned_weights_stay_zero(make_opt):
    model, masks, data = _masked_model()
    before = {n: prune.weight_param(dict(model.named_modules())[n]).detach().clone() for n in masks}
    opt = make_opt(model.parameters())
    _train(model, opt, data, 20)
    mods = dict(model.named_modules())
    for name, mask in masks.items():
        w = mods[name].weight.detach()
        orig = prune.weight_param(mods[name]).detach()
        assert torch.all(w[~mask] == 0) and torch.all(orig[~mask] == 0)
        assert not torch.equal(orig[mask], before[name][mask])                 # kept weights trained
        assert torch.equal(prune.get_masks(model)[name], mask)
    # Gradients of pruned weights are exactly zero.
    x, y = data[0]
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for name, mask in masks.items():
        assert torch.all(prune.weight_param(mods[name]).grad[~mask] == 0)


def test_optimizer_built_before_masks_still_works():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    param = model[0].weight
    mask = torch.rand(model[0].weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    prune.apply_masks(model, {"0": mask})
    assert prune.weight_param(model[0]) is param                              # same Parameter object
    _train(model, opt, tiny_data(), 5)
    assert torch.all(model[0].weight.detach()[~mask] == 0)


def test_masks_forward_and_errors():
    model = tiny_model()
    x = tiny_data()[0][0]
    w = model[2].weight.detach().clone()
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[:3] = True
    prune.apply_masks(model, {"2": mask})
    ref = tiny_model()
    with torch.no_grad():
        ref[2].weight.mul_(mask)
    torch.testing.assert_close(model(x), ref(x))
    assert prune.sparsity(model) == {"2": 0.5}
    # Re-applying replaces the mask.
    prune.apply_masks(model, {"2": torch.ones_like(mask)})
    assert prune.get_masks(model)["2"].all()
    with pytest.raises(PruneError):
        prune.apply_masks(model, {"9": mask})
    with pytest.raises(PruneError, match="shape"):
        prune.apply_masks(model, {"0": mask})
    with pytest.raises(PruneError, match="bool"):
        prune.apply_masks(model, {"2": mask.float()})
    with pytest.raises(PruneError, match="unknown layer"):
        prune.masks_from_scores(model, {"2": np.zeros(54)}, "filterlet", {"4": 0.5})


def test_state_dict_round_trip():
    model, masks, data = _masked_model()
    _train(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), data, 3)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf)
    fresh = tiny_model(seed=123)
    res = prune.load_masked_state_dict(fresh, sd)
    assert not res.missing_keys and not res.unexpected_keys
    got = prune.get_masks(fresh)
    assert set(got) == set(masks) and all(torch.equal(got[n], masks[n]) for n in masks)
    x = data[0][0]
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    # Training the reloaded model keeps pruned weights at zero.
    _train(fresh, torch.optim.Adam(fresh.parameters(), lr=1e-2), data, 5)
    assert all(torch.all(dict(fresh.named_modules())[n].weight.detach()[~m] == 0) for n, m in masks.items())


def test_remove_masks_bakes():
    model, masks, data = _masked_model()
    x = data[0][0]
    model.eval()
    y = model(x).detach()
    prune.remove_masks(model)
    assert prune.get_masks(model) == {}
    assert isinstance(model[0].weight, nn.Parameter)
    assert set(model.state_dict()) == set(tiny_model().state_dict())
    torch.testing.assert_close(model(x), y, rtol=0, atol=0)
    for n, m in masks.items():
        assert torch.all(dict(model.named_modules())[n].weight.detach()[~m] == 0)


def test_layout_conversions():
    rng = np.random.default_rng(0)
    m_ohwi = rng.random((4, 3, 5, 2)) > 0.5
    t = prune.masks_to_torch({"c": m_ohwi})["c"]
    assert t.shape == (4, 2, 3, 5) and t.dtype == torch.bool
    assert np.array_equal(prune.masks_to_ohwi({"c": t})["c"], m_ohwi)
    w = torch.randn(4, 2, 3, 5)
    assert torch.equal(prune.from_ohwi(prune.to_ohwi(w)), w)
    assert np.array_equal(prune.to_ohwi(w.numpy())[1, 2, 3, 0], w[1, 0, 2, 3].numpy())


def test_pattern_end_to_end_and_custom_granularity():
    model, data = tiny_model(), tiny_data()
    scores = prune.taylor(model, ["2"], "pattern", data=data, batches=1)
    assert scores["2"].shape == (6 * 4 * 9,)                                  # one score per weight
    masks = prune.masks_from_scores(model, scores, "pattern", {"2": 0.25})
    prune.apply_masks(model, masks)
    kern = masks["2"].reshape(24, 9)                                          # OIHW: (o, i) kernels
    assert (kern.sum(1) == 4).sum() == 24 - prune.num_pruned(24, 0.25) and (kern.sum(1) == 0).sum() == 6

    class Row(prune.UnitGranularity):                                         # one unit per (o, kh)
        name = "row"

        def _ids(self, shape):
            o, kh = shape[0], shape[1]
            return np.arange(o * kh).reshape(o, kh, 1, 1)

    row = Row()
    assert isinstance(row, prune.Granularity)
    s = prune.l1(model, ["0"], row)["0"]
    assert s.shape == (12,)
    m = row.build_mask(s, 0.5, (4, 3, 3, 3))
    assert m.reshape(12, 9).all(1).sum() == 6 and (m.reshape(12, 9).any(1) == m.reshape(12, 9).all(1)).all()
