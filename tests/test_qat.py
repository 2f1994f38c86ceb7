"""QAT that reaches the file: BN folding on masked models, masks under fake-quant, learned ranges
carried into the int8 export, and the exported model against the fake-quant model's integers."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _helpers import realistic_bn
from dtmm.data import load_dataset, split
from dtmm.errors import QuantizationError
from dtmm.graph.ir import Conv2D, DepthwiseConv2D, FullyConnected
from dtmm.prune import apply_masks, get_masks, l2, masks_from_scores, prunable_layers
from dtmm.prune.masks import WeightMask
from dtmm.prune.surgery import shrink_model
from dtmm.quant.calibrate import choose_qparams
from dtmm.quant.fake import (INPUT_KEY, FakeQuantize, WeightFakeQuant, fold_batchnorm, integer_outputs,
                             learned_ranges, prepare_qat, quantize_qat, strip_qat)
from dtmm.quant.quantize import quantize_graph, quantize_input
from dtmm.runtime.reference import run_reference
from dtmm.train import FineTuneConfig, evaluate, fine_tune, train
from dtmm.zoo import build_model


def _masked_resnet(shape=(1, 8, 8), seed=0):
    m = realistic_bn(build_model("resnet8", shape, 10, seed=seed), seed + 1)
    layers = prunable_layers(m, include_linear=False)
    apply_masks(m, masks_from_scores(m, l2(m, list(layers), "filterlet"), "filterlet", 0.5))
    return m


def test_fold_batchnorm_keeps_bn_scale_and_masks_on_masked_models():
    m = _masked_resnet()
    masks = get_masks(m)
    x = torch.rand(4, 1, 8, 8)
    folded = fold_batchnorm(m)
    assert not any(isinstance(s, nn.BatchNorm2d) for s in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), m(x), atol=1e-5, rtol=1e-5)
    got = get_masks(folded)
    assert set(got) == set(masks) and all(torch.equal(got[k], masks[k]) for k in masks)
    # the original model is untouched
    with torch.no_grad():
        torch.testing.assert_close(m(x), _masked_resnet()(x))


def test_prepare_qat_holds_masks_under_weight_fake_quant():
    tr, va, _ = split(load_dataset("digits", limit=300), val=0.2, test=0.0)
    m = _masked_resnet()
    masks = get_masks(m)
    q = prepare_qat(m)
    chain = q.get_submodule("layers.1.conv1.conv").parametrizations["weight"]
    assert [type(p) for p in chain] == [WeightMask, WeightFakeQuant]          # mask first
    res = fine_tune(q, tr, va, config=FineTuneConfig(epochs=1, lr=0.01, optimizer="adam"), quiet=True)
    assert res.steps > 0
    mods = dict(q.named_modules())
    for name, mk in masks.items():
        assert torch.equal(get_masks(q)[name], mk)
        assert torch.all(mods[name].weight[~mk] == 0)                          # effective (fake-quant) weight
        assert torch.all(mods[name].parametrizations["weight"].original[~mk] == 0)
    plain = strip_qat(q)
    assert not any(isinstance(s, FakeQuantize) for s in plain.modules())
    assert torch.all(plain.get_submodule("layers.1.conv1.conv").weight[~masks["layers.1.conv1.conv"]] == 0)


def test_prepare_qat_on_a_shrunk_model():
    m = _masked_resnet()
    mk = get_masks(m)["layers.1.conv1.conv"]
    mk[[0, 3]] = False                                       # two dead filters, removable
    apply_masks(m, {"layers.1.conv1.conv": mk})
    r = shrink_model(m, (1, 8, 8))
    assert r.removed["layers.1.conv1.conv"] == [0, 3]
    q = prepare_qat(r.model)
    q.train()
    q(torch.rand(8, 1, 8, 8))
    g, qg = quantize_qat(q, (1, 8, 8))
    assert [(o.name, g.tensors[o.output].shape) for o in g.ops] == \
           [(o.name, r.graph.tensors[o.output].shape) for o in r.graph.ops]


def test_learned_ranges_reach_the_int8_graph():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(4 * 3 * 3, 3))
    q = prepare_qat(m)
    q.train()
    for _ in range(3):
        q(torch.rand(16, 1, 6, 6) * 2)
    ranges = learned_ranges(q)
    assert set(ranges) == {INPUT_KEY, "0", "5"}
    g, qg = quantize_qat(q, (1, 6, 6))
    fqs = {f.observes: f for f in q.modules() if isinstance(f, FakeQuantize)}
    assert qg.tensors[qg.inputs[0]].qparams.s == fqs[INPUT_KEY].qparams()[0].item()
    for op in qg.ops:
        if op.name in fqs:
            qp = qg.tensors[op.output].qparams
            s, zp = fqs[op.name].qparams()
            assert (qp.s, qp.zp) == (s.item(), int(zp.item())), op.name
            assert qp.same_as(choose_qparams(*ranges[op.name]))
    pool = next(o for o in qg.ops if o.kind == "max_pool2d")          # shares its input's parameters
    assert qg.tensors[pool.output].qparams.same_as(qg.tensors[pool.inputs[0]].qparams)
    # recalibration on other data gives other parameters: the ranges really come from QAT
    qg2 = quantize_graph(g, [np.random.default_rng(0).random((8, 6, 6, 1), np.float32) * 0.5])
    assert not qg2.tensors[qg2.inputs[0]].qparams.same_as(qg.tensors[qg.inputs[0]].qparams)
    with pytest.raises(QuantizationError, match="names no op"):
        quantize_graph(g, None, ranges={"nope": (0.0, 1.0)})
    with pytest.raises(QuantizationError, match="never observed"):
        learned_ranges(prepare_qat(m))


def _explained(v: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> tuple[int, int]:
    """(mismatches, mismatches not within ``bound`` of a rounding boundary); last axis = channel."""
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127)
    bad = q != ref
    dist = np.abs(np.abs(v) % 1.0 - 0.5)                   # distance of the real value from x.5
    unexplained = bad & (dist > np.broadcast_to(bound, v.shape)) & (q > -128) & (q < 127)
    return int(bad.sum()), int(unexplained.sum())


def _check_layers(q, qg, allt) -> tuple[int, int, int]:
    """Run every conv / depthwise / FC layer of the fake-quant model on the int8 model's own
    input integers; every mismatch must lie near a rounding boundary (see the test below).
    Returns (layers checked, mismatching distinct values, distinct values)."""
    checked, total_bad, total = 0, 0, 0
    for op in qg.ops:
        if not isinstance(op, (Conv2D, DepthwiseConv2D, FullyConnected)):
            continue
        mod = q.get_submodule(op.name)
        in_qp = qg.tensors[op.inputs[0]].qparams
        out_qp = qg.tensors[op.output].qparams
        xi = (allt[op.inputs[0]].astype(np.float64) - in_qp.zp) * in_qp.s
        with torch.no_grad():
            w, b = mod.weight.double(), mod.bias.double()          # fake-quant weights, float bias
            if isinstance(mod, nn.Conv2d):
                y = F.conv2d(torch.from_numpy(xi).permute(0, 3, 1, 2), w, b, stride=mod.stride,
                             padding=mod.padding, dilation=mod.dilation, groups=mod.groups).permute(0, 2, 3, 1)
            else:
                y = F.linear(torch.from_numpy(xi), w, b)
        y = y.numpy()
        if op.activation.value == "relu":
            y = np.maximum(y, 0.0)
        v = y / out_qp.s + out_qp.zp
        M = op.quant.multiplier.astype(np.float64) * 2.0 ** (op.quant.shift.astype(np.float64) - 31)
        rs = np.maximum(-op.quant.shift, 0).astype(np.float64)
        bound = np.where(rs > 0, 0.5 * 2.0 ** -rs, 0.0) + 0.5 * M + 1e-6
        ref = allt[op.output].astype(np.int64)
        n_bad, n_unexplained = _explained(v, ref, bound)
        assert n_unexplained == 0, f"{op.name}: {n_unexplained} mismatches not near a rounding boundary"
        # Flat image regions (and a dead filter kept by a residual add, which outputs its bias
        # everywhere) repeat one computation at many pixels: one rounding event counted many
        # times. The rate is therefore taken over distinct (channel, value) pairs.
        qv = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127)
        chan = np.broadcast_to(np.arange(v.shape[-1]), v.shape)
        pairs = np.stack([chan.ravel(), np.round(v.ravel(), 9)], axis=1)
        uniq, first = np.unique(pairs, axis=0, return_index=True)
        n_live_bad = int((qv.ravel()[first] != ref.ravel()[first]).sum())
        n_distinct = len(uniq)
        assert n_live_bad <= 0.01 * n_distinct, f"{op.name}: {n_live_bad} of {n_distinct} distinct values differ"
        checked += 1
        total_bad += n_live_bad
        total += n_distinct
    return checked, total_bad, total


@pytest.fixture(scope="module")
def qat_digits():
    """ResNet-8 on digits: trained (toy), 50% filterlets pruned, shrunk, fine-tuned, QAT-tuned."""
    torch.manual_seed(0)
    ds = load_dataset("digits")
    tr, va, te = split(ds, 0.1, 0.2, seed=0)
    m = build_model("resnet8", ds.input_shape, 10, seed=0)
    train(m, tr, va, epochs=2, lr=0.05, progress=False)
    layers = prunable_layers(m, include_linear=False)
    apply_masks(m, masks_from_scores(m, l2(m, list(layers), "filterlet"), "filterlet", 0.5))
    s = shrink_model(m, ds.input_shape).model
    fine_tune(s, tr, va, config=FineTuneConfig(epochs=1, lr=0.02), quiet=True)
    q = prepare_qat(s)
    fine_tune(q, tr, va, config=FineTuneConfig(epochs=1, lr=0.005), quiet=True)
    g, qg = quantize_qat(q, ds.input_shape)
    return q, qg, te


def test_exported_int8_matches_fake_quant_integers(qat_digits):
    """The exported model against the fake-quant model on 360 real digits images.

    Named cause of the differences: the int8 model requantizes each conv / FC
    accumulator with TFLite's fixed-point MultiplyByQuantizedMultiplier, which rounds
    twice (the doubling high multiply rounds to 2^-rs of an output step, then the
    right shift by rs rounds again), and uses an int32 bias rounded to a step of
    s_in * s_w; fake-quant rounds the exact float once. So a value can differ by one
    step only when the real value lies within 2^-(rs+1) + M/2 (M = s_in * s_w / s_out)
    of a rounding boundary x.5. Layer by layer, on the int8 model's own inputs, every
    mismatch is checked to be such a case; end to end, single-step differences
    compound through 13 layers, so the logits differ by a few steps at most while the
    predicted class agrees.
    """
    q, qg, te = qat_digits
    x = torch.from_numpy(te.x)
    qin = qg.tensors[qg.inputs[0]].qparams
    xq = quantize_input(te.x.transpose(0, 2, 3, 1), qin)
    allt = run_reference(qg, xq, all_tensors=True)
    fqs = {f.observes: f for f in q.modules() if isinstance(f, FakeQuantize)}
    # the input quantization is identical
    s_in, zp_in = fqs[INPUT_KEY].qparams()
    assert np.array_equal(torch.round(fqs[INPUT_KEY].eval()(x).double() / s_in + zp_in).numpy()
                          .transpose(0, 2, 3, 1), xq)
    checked, total_bad, total = _check_layers(q, qg, allt)
    assert checked >= 10 and total_bad / total < 0.005
    # end to end
    want = integer_outputs(q, x)
    got = allt[qg.outputs[0]]
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 4
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
    acc_int8 = float((got.argmax(1) == te.y).mean())
    acc_fq = evaluate(q, te)[0]
    assert abs(acc_int8 - acc_fq) <= 0.01 and acc_int8 > 0.8


def test_integer_outputs_needs_a_final_fake_quant():
    q = prepare_qat(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Softmax(dim=1)))
    q.train()
    q(torch.rand(4, 1, 2, 2))
    with pytest.raises(QuantizationError, match="not produced by a FakeQuantize"):
        integer_outputs(q, torch.rand(2, 1, 2, 2))


def test_depthwise_and_average_pool_export_matches_fake_quant():
    """DS-CNN (depthwise + pointwise + global average pool) on digits, masked, QAT-tuned briefly."""
    torch.manual_seed(0)
    tr, va, te = split(load_dataset("digits", limit=600), 0.1, 0.3, seed=0)
    m = build_model("dscnn", (1, 8, 8), 10, seed=0)
    train(m, tr, va, epochs=1, lr=0.05, progress=False)
    layers = prunable_layers(m, include_linear=False)
    apply_masks(m, masks_from_scores(m, l2(m, list(layers), "filterlet"), "filterlet", 0.3))
    q = prepare_qat(m)
    fine_tune(q, tr, va, config=FineTuneConfig(epochs=1, lr=0.005), quiet=True)
    _, qg = quantize_qat(q, (1, 8, 8))
    assert any(isinstance(o, DepthwiseConv2D) for o in qg.ops)
    xq = quantize_input(te.x.transpose(0, 2, 3, 1), qg.tensors[qg.inputs[0]].qparams)
    allt = run_reference(qg, xq, all_tensors=True)
    checked, bad, total = _check_layers(q, qg, allt)
    assert checked >= 5 and bad / total < 0.005
    # the global average pool rounds as the int8 pool does: equal on equal inputs
    pool = next(o for o in qg.ops if o.kind == "avg_pool2d")
    from dtmm.quant.fake import AvgPoolFakeQuant
    apq = next(mm for mm in q.modules() if isinstance(mm, AvgPoolFakeQuant))
    qp = qg.tensors[pool.inputs[0]].qparams
    xin = torch.from_numpy((allt[pool.inputs[0]].astype(np.float64) - qp.zp) * qp.s).permute(0, 3, 1, 2).float()
    pooled = apq(F.adaptive_avg_pool2d(xin, 1), xin)
    got = torch.round(pooled.double() / qp.s + qp.zp).numpy().reshape(len(xq), -1)
    assert np.array_equal(got, allt[pool.output].reshape(len(xq), -1))
    want = integer_outputs(q, torch.from_numpy(te.x))
    assert (allt[qg.outputs[0]].argmax(1) == want.argmax(1)).mean() >= 0.98
