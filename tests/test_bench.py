"""The kernel micro-benchmark (dtmm.bench.kernels): quick run on QEMU, repeatable, verified."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from dtmm.bench import kernels as kb

needs_qemu = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "qemu-system-arm")),
    reason="needs arm-none-eabi-gcc and qemu-system-arm")


def test_reference_conv_matches_naive_loops():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 4, 5, 3)).astype(np.int8)
    w = rng.integers(-127, 128, (2, 3, 3, 3)).astype(np.int8)
    bias = np.array([7, -9], np.int32)
    p = kb.ConvParams(pads=(1, 1, 1, 1), in_zp=-3)
    acc = kb._reference_acc(x, w, bias, p)
    want = np.zeros((1, 4, 5, 2), np.int64)
    for oy in range(4):
        for ox in range(5):
            for o in range(2):
                s = int(bias[o])
                for kh in range(3):
                    for kw in range(3):
                        iy, ix = oy + kh - 1, ox + kw - 1
                        if 0 <= iy < 4 and 0 <= ix < 5:
                            s += int(((x[0, iy, ix].astype(np.int64) - p.in_zp) * w[o, kh, kw]).sum())
                want[0, oy, ox, o] = s
    assert (acc == want).all()


def test_mismatch_is_an_error():
    with pytest.raises(kb.KernelMismatchError):
        kb._check(np.zeros((1, 2), np.int8), np.ones((1, 2), np.int8), "demo")


@needs_qemu
@pytest.mark.qemu
def test_quick_bench_is_repeatable_and_verified():
    a = kb.run_kernel_bench(quick=True)
    b = kb.run_kernel_bench(quick=True)
    keys = {c.key for c in kb.CONFIGS["cortex-m55"]}
    assert {r.key for r in a.rows} == keys
    assert len(a.rows) == len(keys)
    assert a.counts() == b.counts()                       # QEMU counts repeat exactly
    assert all(r.verified and r.instructions > 0 for r in a.rows)
    lay, ratio = kb.QUICK_LAYER, kb.QUICK_RATIO
    full, noilp = a.get("cortex-m55", "dtmm_r4", lay, ratio), a.get("cortex-m55", "dtmm_noilp", lay, ratio)
    dense = a.get("cortex-m55", "dense", lay, 0.0)
    assert full.isa == "mve" and a.get("cortex-m55", "dtmm_scalar", lay, ratio).isa == "scalar"
    assert full.instructions < noilp.instructions          # weight reuse saves instructions
    assert full.instructions < dense.instructions          # 90 % pruned beats dense
    assert abs(full.pruned - ratio) < 0.01 and dense.kept_weights == 3 * 3 * lay.c_in * lay.c_out
    # the class decode adds up to the count; the cycle model is there (and labelled a model)
    assert sum(full.classes) == full.instructions and full.cycles > 0
    md = kb.render_markdown(a)
    assert "not cycles" in md and "cortex-m55: 90% of weights pruned" in md
    assert "not latency measured" in md and "not rerun" in md
    s = a.summary()
    assert 0 < s["cortex-m55"]["dtmm_vs_csr"]["mean"] < 1
    goals = {g["goal"]: g for g in s["goals"]}
    g = goals["M55, 90 % pruned, C_in >= 64"]
    assert g["met"] == (g["x_cmsis"] <= 0.15) and g["instructions"] == full.instructions


def test_reference_conv_stride_and_depthwise():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (1, 7, 6, 3)).astype(np.int8)
    p = kb.ConvParams(stride=(2, 2), pads=(2, 2, 2, 2), in_zp=5)
    for dw in (False, True):
        w = rng.integers(-127, 128, (1 if dw else 4, 5, 5, 3)).astype(np.int8)
        bias = np.arange(3 if dw else 4, dtype=np.int32)
        acc = kb._reference_acc(x, w, bias, p, depthwise=dw)
        xp = np.pad(x.astype(np.int64) - 5, ((0, 0), (2, 2), (2, 2), (0, 0)))
        ho, wo = (7 + 4 - 5) // 2 + 1, (6 + 4 - 5) // 2 + 1
        assert acc.shape == (1, ho, wo, 3 if dw else 4)
        for oy in range(ho):
            for ox in range(wo):
                win = xp[0, 2 * oy:2 * oy + 5, 2 * ox:2 * ox + 5]
                if dw:
                    want = (win * w[0]).sum(axis=(0, 1)) + bias
                else:
                    want = np.array([(win * w[o]).sum() for o in range(4)]) + bias
                assert (acc[0, oy, ox] == want).all()


def test_layer_names_and_goal_bounds():
    assert kb.Layer(16, 16, 64, 64, k=1).name == "16x16x64 -> 64 (1x1)"
    assert len(kb.ANCHOR_LAYERS) == 6 and set(kb.CMSIS_NN_ANCHOR) == set(kb.ANCHOR_LAYERS)
    assert kb.cmsis_instructions(kb.Layer(32, 32, 16, 32), "cortex-m55") == 32 * 32 * 9 * 16 * 32 / 3.0
    assert kb.cmsis_instructions(kb.Layer(16, 16, 64, 64, k=1), "cortex-m55") is None
