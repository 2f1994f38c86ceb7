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
    assert abs(full.pruned - ratio) < 0.01 and dense.kept_weights == 3 * 3 * lay[2] * lay[3]
    md = kb.render_markdown(a)
    assert "not cycles" in md and "cortex-m55: 90% of weights pruned" in md
    s = a.summary()["cortex-m55"]
    assert 0 < s["dtmm_vs_csr"]["mean"] < 1
