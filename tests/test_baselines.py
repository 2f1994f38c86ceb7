"""Known-answer tests of the baselines' own mechanics (issue 10): CHIP, L1-filter, PatDNN
(pattern selection by L2 energy, connectivity pruning by kernel norm), unstructured magnitude."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dtmm import formats, prune
from dtmm.prune import baselines as B
from dtmm.zoo import build_model


def _conv(weight_oihw) -> nn.Sequential:
    w = torch.as_tensor(np.asarray(weight_oihw), dtype=torch.float32)
    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=False,
                     padding=(w.shape[2] // 2, w.shape[3] // 2))
    with torch.no_grad():
        conv.weight.copy_(w)
    return nn.Sequential(conv)


# ----------------------------------------------------------------------------- CHIP

@pytest.mark.parametrize("seed", range(5))
def test_chip_linear_combination_ranks_least_independent(seed):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((3, 6, 7, 7))
    comb = 0.7 * f[:, 0] - 0.4 * f[:, 2] + 0.5 * f[:, 5]                 # channel 3 = a combination
    norm = np.linalg.norm(f[:, [0, 1, 2, 4, 5]].reshape(3, 5, -1), axis=-1).mean(1)
    f[:, 3] = comb / np.linalg.norm(comb.reshape(3, -1), axis=-1)[:, None, None] * norm[:, None, None]
    assert B.chip_ranking(f)[0] == 3


def test_chip_scorer_on_a_conv_prunes_the_dependent_filter():
    """Through the real scorer: filter 3's output is a linear combination of filters 0 and 2
    (a linear conv), so CHIP removes filter 3 first."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3))
    w[3] = (w[0] + w[2]) / np.sqrt(2.0)
    net = _conv(w).eval()
    data = [(torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), None)]
    ci = prune.chip(net, ["0"], "filter", data=data, batches=1)["0"]
    assert int(np.argmin(ci)) == 3
    m = B.method_masks("chip", net, ["0"], 0.25, data=data, batches=1).masks["0"]
    assert m.reshape(4, -1).all(1).tolist() == [True, True, True, False]


def test_activation_taps_follow_bn_and_relu():
    vgg = build_model("vgg11", (1, 8, 8), 10)
    taps = B.activation_taps(vgg, ["features.conv1_1.conv", "features.conv2_1.conv"])
    assert taps == {"features.conv1_1.conv": "features.conv1_1.relu",
                    "features.conv2_1.conv": "features.conv2_1.relu"}
    r8 = build_model("resnet8", (1, 8, 8), 10)
    taps = B.activation_taps(r8, ["layers.0.conv1.conv", "layers.0.conv2.conv"])
    # the second conv of a block feeds the residual add: its BatchNorm output is measured
    assert taps == {"layers.0.conv1.conv": "layers.0.conv1.relu",
                    "layers.0.conv2.conv": "layers.0.conv2.bn"}


# ----------------------------------------------------------------------------- L1 filter

def test_l1_filter_ranks_by_l1_not_l2():
    w = np.zeros((3, 1, 1, 4))
    w[0, 0, 0] = [1, 1, 1, 1]          # L1 4, L2 2
    w[1, 0, 0] = [3, 0, 0, 0]          # L1 3, L2 3   -> least L1: pruned first
    w[2, 0, 0] = [2, 2, 2, -2]         # L1 8
    assert B.l1_filter_ranking(w).tolist() == [1, 0, 2]
    assert B.l1_filter_mask(w, 1 / 3).reshape(3, -1).all(1).tolist() == [True, False, True]
    net = _conv(w.transpose(0, 3, 1, 2))
    m = B.method_masks("l1-filter", net, ["0"], 1 / 3).masks["0"]
    assert m.reshape(3, -1).all(1).tolist() == [True, False, True]
    assert B.method_masks("l1-filter", net, ["0"], 1 / 3).formats == {}    # structured: no format


# ----------------------------------------------------------------------------- PatDNN

def _l1_vs_l2_kernel():
    """A 3x3 kernel whose best pattern by L1 (top-left square) differs from the one by L2
    energy (bottom-right square)."""
    k = np.zeros((3, 3))
    k[0, 0] = k[0, 1] = k[1, 0] = 2.0                  # top-left square: L1 6, energy 12
    k[2, 2] = 3.5                                     # bottom-right square: L1 3.5, energy 12.25
    return k


def test_pattern_selection_keeps_most_l2_energy():
    lib = ((0, 1, 3, 4), (4, 5, 7, 8))
    w = np.zeros((2, 3, 3, 3))
    w[0, :, :, 1] = _l1_vs_l2_kernel()
    rng = np.random.default_rng(0)
    w[1] = rng.standard_normal((3, 3, 3))
    choice = B.pattern_choice(w, lib)
    assert choice[0, 1] == 1
    for o in range(2):                                  # brute force: the energy-maximal pattern
        for i in range(3):
            e = [sum(w[o].reshape(9, 3)[p, i] ** 2 for p in pat) for pat in lib]
            assert choice[o, i] == int(np.argmax(e))
    _, masks = B.patdnn_masks({"c": w}, 0.0, library=lib)
    assert np.flatnonzero(masks["c"][0, :, :, 1]).tolist() == [4, 5, 7, 8]
    # the same through the torch scorer and granularity; L1 would have picked the other one
    net = _conv(w.transpose(0, 3, 1, 2))
    by = {s: prune.masks_to_ohwi(prune.masks_from_scores(
        net, prune.get_scorer(s)(net, ["0"], "pattern"), prune.Pattern(lib), 0.0))["0"]
        for s in ("energy", "l1")}
    assert np.flatnonzero(by["energy"][0, :, :, 1]).tolist() == [4, 5, 7, 8]
    assert np.flatnonzero(by["l1"][0, :, :, 1]).tolist() == [0, 1, 3, 4]


def test_connectivity_pruning_removes_kernels_of_least_norm():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 5)) * rng.uniform(0.1, 3.0, (4, 1, 1, 5))
    norms = np.sqrt((w ** 2).sum(axis=(1, 2)))          # (O, I)
    for ratio in (0.25, 0.5, 0.9):
        m = B.connectivity_mask(w, ratio)
        kept = m.any(axis=(1, 2))
        assert (m.all(axis=(1, 2)) == kept).all()          # whole kernels only
        k = prune.num_pruned(20, ratio)
        assert (~kept).sum() == k
        assert set(np.flatnonzero(~kept.ravel())) == set(np.argsort(norms.ravel())[:k])
    net = _conv(w.transpose(0, 3, 1, 2))                     # Kernel granularity + l2 scorer
    s = prune.l2(net, ["0"], "kernel")["0"]
    assert np.allclose(s, norms.ravel())
    m = prune.masks_to_ohwi(prune.masks_from_scores(net, {"0": s}, "kernel", 0.5))["0"]
    assert np.array_equal(m, B.connectivity_mask(w, 0.5))


def test_patdnn_connectivity_after_patterns_and_library():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 3, 3, 4))
    lib, masks = B.patdnn_masks({"a": w}, 0.5, k=4)
    assert len(lib) == 4 and all(4 in p and len(p) == 4 for p in lib)
    m = masks["a"]
    kern = m.transpose(0, 3, 1, 2).reshape(24, 9)
    kept = kern.any(1)
    assert kept.sum() == 12 and set(kern[kept].sum(1)) == {4}
    held = ((w ** 2).transpose(0, 3, 1, 2).reshape(24, 9) * kern).sum(1)
    e9 = (w ** 2).transpose(0, 3, 1, 2).reshape(24, 9)
    best = np.array([max(e9[k, list(p)].sum() for p in lib) for k in range(24)])
    assert np.allclose(held[kept], best[kept])                # each kept kernel: its best pattern
    assert best[~kept].max() <= best[kept].min()               # removed: least kept energy
    # the library is the most frequent top-4 energy shape (centre always in)
    top = []
    for k in w.transpose(0, 3, 1, 2).reshape(24, 9) ** 2:
        others = [p for p in np.argsort(-np.delete(k, 4), kind="stable")[:3]]
        top.append(tuple(sorted([4] + [p + (p >= 4) for p in others])))
    counts = {p: top.count(p) for p in set(top)}
    assert counts[lib[0]] == max(counts.values())
    # PatDNN's masks store losslessly in the pattern format with the library
    q = np.where(m, np.clip(np.round(w * 40), -127, 127), 0).astype(np.int8)
    f = formats.pattern.encode(q, formats.pattern.lossless_mask(q, library=lib), library=lib)
    assert np.array_equal(formats.decode(f), q)


def test_patdnn_refuses_non_3x3():
    with pytest.raises(prune.PruneError, match="3x3 conv layers only; layer 'p'"):
        B.patdnn_masks({"p": np.ones((2, 1, 1, 2))}, 0.5)


# ----------------------------------------------------------------------------- unstructured

def test_unstructured_keeps_exactly_the_largest_magnitudes():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 3, 3, 6))
    for s in (0.0, 0.3, 0.75, 1.0):
        m = B.magnitude_mask(w, s)
        n_keep = w.size - prune.num_pruned(w.size, s)
        assert m.sum() == n_keep
        assert set(np.flatnonzero(m.ravel())) == set(np.argsort(-np.abs(w).ravel())[:n_keep])
    net = _conv(w.transpose(0, 3, 1, 2))
    r = B.method_masks("unstructured", net, ["0"], 0.75)
    assert np.array_equal(prune.masks_to_ohwi(r.masks)["0"], B.magnitude_mask(w, 0.75))
    assert r.formats == {"0": "csr"}


def test_method_table_is_consistent():
    for m in B.METHODS.values():
        prune.get_granularity(m.granularity)
        prune.get_scorer(m.importance)
        assert m.format in formats.FORMATS
        assert m.structured == (m.format == "dense")
    with pytest.raises(prune.PruneError, match="unknown pruning method"):
        B.get_method("nope")
