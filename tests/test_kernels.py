"""The C kernels (dtmm/csrc) on the host, bit for bit against naive NumPy oracles.

Every ISA path is exercised on the host: the plain-C path directly, the DSP and MVE
paths through DTMM_EMULATE_DSP / DTMM_EMULATE_MVE (C models of the intrinsics), and
the FWCS variants (reuse R = 2/4/8, no-ILP, forced scalar) as separate builds.
"""
from __future__ import annotations

import functools
import math
import shutil
import zlib

import numpy as np
import pytest

from dtmm.quant.arith import (INT32_MAX, INT32_MIN, add_params, multiply_by_quantized_multiplier,
                              quantize_multiplier)
from dtmm.runtime.kernels_host import (ConvParams, KernelError, PoolParams, conv_output_hw,
                                       load_kernels)

# ----------------------------------------------------------------------------- builds

VARIANTS = {
    "c_r4": (),
    "c_r2": ("DTMM_FWCS_REUSE=2",),
    "c_r8": ("DTMM_FWCS_REUSE=8",),
    "c_noilp": ("DTMM_FWCS_VARIANT_NO_ILP",),
    "scalar": ("DTMM_FORCE_SCALAR", "DTMM_EMULATE_MVE"),   # FORCE_SCALAR wins over any SIMD
    "dsp_r4": ("DTMM_EMULATE_DSP",),
    "dsp_r8": ("DTMM_EMULATE_DSP", "DTMM_FWCS_REUSE=8"),
    "dsp_noilp": ("DTMM_EMULATE_DSP", "DTMM_FWCS_VARIANT_NO_ILP"),
    "mve_r4": ("DTMM_EMULATE_MVE",),
    "mve_r2": ("DTMM_EMULATE_MVE", "DTMM_FWCS_REUSE=2"),
    "mve_r8": ("DTMM_EMULATE_MVE", "DTMM_FWCS_REUSE=8"),
    "mve_noilp": ("DTMM_EMULATE_MVE", "DTMM_FWCS_VARIANT_NO_ILP"),
    "host_fast": ("DTMM_HOST_FAST",),     # plain C, host variants (build_host_model's)
    # the same without the FWCS host path's AVX2 loop (what a non-x86 host runs)
    "host_fast_c": ("DTMM_HOST_FAST", "DTMM_HOST_NO_X86_SIMD"),
}
ISA_VARIANTS = ["c_r4", "dsp_r4", "mve_r4", "scalar", "host_fast"]   # kernels without FWCS switches


@pytest.fixture(scope="module", params=list(VARIANTS))
def fwcs_kernels(request):
    return request.param, load_kernels(VARIANTS[request.param])


@pytest.fixture(scope="module", params=ISA_VARIANTS)
def isa_kernels(request):
    return load_kernels(VARIANTS[request.param])


@pytest.fixture(scope="module")
def kernels():
    return load_kernels(())


@pytest.fixture(scope="module", params=["c_r4", "host_fast"])
def plain_kernels(request):
    """The plain-C kernels and their DTMM_HOST_FAST variants (depthwise, add, ...)."""
    return load_kernels(VARIANTS[request.param])


# ----------------------------------------------------------------------------- oracles


def assert_same(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Exact equality; on failure name the first mismatching indices and values."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    if bad.size:
        lines = [f"  at {tuple(int(i) for i in idx)}: got {int(got[tuple(idx)])}, "
                 f"want {int(want[tuple(idx)])}" for idx in bad[:8]]
        pytest.fail(f"{what}: {len(bad)} of {got.size} values differ; first:\n" + "\n".join(lines))


def requant_out(acc, mult, shift, out_zp, act_min, act_max) -> np.ndarray:
    v = multiply_by_quantized_multiplier(acc, mult, shift) + out_zp
    return np.clip(v, act_min, act_max).astype(np.int8)


def ref_conv(x, w, bias, mult, shift, p: ConvParams) -> np.ndarray:
    """Naive conv: pad (x - in_zp) with zeros, sum tap by tap, requantize per channel."""
    n, h, wd, ci = x.shape
    co, kh_n, kw_n, _ = w.shape
    t, b, l, r = p.pads
    sh, sw = p.stride
    ho, wo = conv_output_hw(h, wd, kh_n, kw_n, p.stride, p.pads)
    xp = np.pad(x.astype(np.int64) - p.in_zp, ((0, 0), (t, b), (l, r), (0, 0)))
    acc = np.zeros((n, ho, wo, co), np.int64)
    for kh in range(kh_n):
        for kw in range(kw_n):
            patch = xp[:, kh:kh + sh * (ho - 1) + 1:sh, kw:kw + sw * (wo - 1) + 1:sw, :]
            acc += patch @ w[:, kh, kw, :].astype(np.int64).T
    if bias is not None:
        acc += bias
    return requant_out(acc, mult, shift, p.out_zp, p.act_min, p.act_max)


def ref_depthwise(x, w, bias, mult, shift, p: ConvParams, dm: int) -> np.ndarray:
    n, h, wd, ci = x.shape
    _, kh_n, kw_n, co = w.shape
    t, b, l, r = p.pads
    sh, sw = p.stride
    ho, wo = conv_output_hw(h, wd, kh_n, kw_n, p.stride, p.pads)
    xp = np.pad(x.astype(np.int64) - p.in_zp, ((0, 0), (t, b), (l, r), (0, 0)))
    xp = np.repeat(xp, dm, axis=3)   # output channel ic * dm + m reads input channel ic
    acc = np.zeros((n, ho, wo, co), np.int64)
    for kh in range(kh_n):
        for kw in range(kw_n):
            acc += xp[:, kh:kh + sh * (ho - 1) + 1:sh, kw:kw + sw * (wo - 1) + 1:sw, :] * w[0, kh, kw]
    if bias is not None:
        acc += bias
    return requant_out(acc, mult, shift, p.out_zp, p.act_min, p.act_max)


def ref_pool(x, pp: PoolParams, kind: str) -> np.ndarray:
    n, h, wd, c = x.shape
    ho, wo = conv_output_hw(h, wd, *pp.filter, pp.stride, pp.pads)
    out = np.zeros((n, ho, wo, c), np.int64)
    for oy in range(ho):
        for ox in range(wo):
            y0, x0 = oy * pp.stride[0] - pp.pads[0], ox * pp.stride[1] - pp.pads[2]
            win = x[:, max(y0, 0):min(y0 + pp.filter[0], h), max(x0, 0):min(x0 + pp.filter[1], wd), :]
            win = win.astype(np.int64).reshape(n, -1, c)
            if kind == "max":
                out[:, oy, ox] = win.max(axis=1)
            else:
                cnt, s = win.shape[1], win.sum(axis=1)
                # C integer division truncates toward zero
                num = np.where(s > 0, s + cnt // 2, s - cnt // 2)
                out[:, oy, ox] = np.sign(num) * (np.abs(num) // cnt)
    return np.clip(out, pp.act_min, pp.act_max).astype(np.int8)


# ----------------------------------------------------------------------------- data


def seed(*parts) -> int:
    """A deterministic seed per test case (``hash`` of a str varies per process)."""
    return zlib.crc32(repr(parts).encode())


def rand_quant(rng, c_out: int, k: int):
    """Per-channel (multiplier, shift) that map accumulators of ~sqrt(k)*128*40 to int8."""
    mult, shift = np.empty(c_out, np.int32), np.empty(c_out, np.int32)
    for i in range(c_out):
        real = rng.uniform(0.3, 3.0) / (40.0 * 64.0 * math.sqrt(max(k, 1)))
        mult[i], shift[i] = quantize_multiplier(real)
    return mult, shift


def filterlet_mask(rng, c_out: int, kk: int, sparsity: float) -> np.ndarray:
    keep = rng.random((c_out, kk)) >= sparsity
    if c_out >= 3:
        keep[0, :] = False          # a filter with every filterlet pruned
        keep[1, :] = True           # a filter with every filterlet kept
    return keep


def encode_fwcs(w: np.ndarray, keep: np.ndarray, cptr_dtype, fidx_dtype):
    co, kh, kw, ci = w.shape
    wf = w.reshape(co, kh * kw, ci)
    arr, cptr, fidx = [], [], [0]
    for o in range(co):
        for k in range(kh * kw):
            if keep[o, k]:
                arr.append(wf[o, k])
                cptr.append(k * ci)
        fidx.append(len(cptr))
    arr = np.concatenate(arr).astype(np.int8) if arr else np.zeros(0, np.int8)
    return arr, np.array(cptr, cptr_dtype), np.array(fidx, fidx_dtype)


# (name, N, H, W, C_in, C_out, K, stride, pads(top, bottom, left, right))
CONV_CASES = [
    ("cin1_3x3_pad1", 1, 5, 5, 1, 4, 3, 1, (1, 1, 1, 1)),
    ("cin3_3x3_s2_same_even", 1, 6, 6, 3, 5, 3, 2, (0, 1, 0, 1)),
    ("cin17_5x5", 1, 7, 5, 17, 6, 5, 1, (2, 2, 2, 2)),
    ("cin64_1x1", 2, 4, 3, 64, 3, 1, 1, (0, 0, 0, 0)),
    ("cin16_3x3_s2_asym", 1, 8, 8, 16, 7, 3, 2, (1, 1, 0, 2)),
    ("cin5_3x3_bigpad", 1, 3, 4, 5, 3, 3, 1, (2, 2, 2, 1)),
]


def make_conv(case, rng, relu: bool):
    name, n, h, w, ci, co, k, s, pads = case
    x = rng.integers(-128, 128, (n, h, w, ci), dtype=np.int8)
    wt = rng.integers(-127, 128, (co, k, k, ci), dtype=np.int8)
    bias = rng.integers(-3000, 3000, co).astype(np.int32)
    mult, shift = rand_quant(rng, co, k * k * ci)
    out_zp = int(rng.integers(-20, 20))
    p = ConvParams(stride=(s, s), pads=pads, in_zp=int(rng.integers(-128, 128)), out_zp=out_zp,
                   act_min=out_zp if relu else -128, act_max=127)
    return x, wt, bias, mult, shift, p


# ----------------------------------------------------------------------------- requant


def test_requantize_matches_arith(kernels):
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 20), 1 << 20, 4000).astype(np.int32)
    mult = rng.integers(0, INT32_MAX, 4000, dtype=np.int64).astype(np.int32)
    shift = rng.integers(-31, 11, 4000).astype(np.int32)
    # edges: ties, the saturating INT32_MIN * INT32_MIN case, shift extremes, zero
    edge = np.array([[INT32_MIN, INT32_MIN, 0], [INT32_MIN, INT32_MIN, -5], [-5, 1 << 30, -1],
                     [5, 1 << 30, -1], [-3, 1 << 30, 0], [INT32_MAX, INT32_MAX, 0],
                     [INT32_MIN, INT32_MAX, -31], [1 << 20, 1 << 30, 10], [-(1 << 20), 1 << 30, 10],
                     [7, 0, 0], [INT32_MIN, 1 << 30, -31], [-1, INT32_MAX, -31]], np.int64)
    acc = np.concatenate([acc, edge[:, 0].astype(np.int32)])
    mult = np.concatenate([mult, edge[:, 1].astype(np.int32)])
    shift = np.concatenate([shift, edge[:, 2].astype(np.int32)])
    want = multiply_by_quantized_multiplier(acc, mult, shift)
    assert_same(kernels.requantize_s32(acc, mult, shift), want.astype(np.int32), "requantize")
    assert int(kernels.requantize_s32([INT32_MIN], [INT32_MIN], [0])[0]) == INT32_MAX


# ----------------------------------------------------------------------------- dense conv


def check_conv_dense(k, case):
    rng = np.random.default_rng(seed(case[0]))
    for relu in (False, True):
        x, w, bias, mult, shift, p = make_conv(case, rng, relu)
        got = k.conv_s8(x, w, bias, mult, shift, p)
        assert_same(got, ref_conv(x, w, bias, mult, shift, p), f"conv {case[0]} relu={relu}")


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_dense(isa_kernels, case):
    check_conv_dense(isa_kernels, case)


def test_conv_dense_saturating_and_no_bias(isa_kernels):
    rng = np.random.default_rng(7)
    x, w, _, _, _, p = make_conv(CONV_CASES[2], rng, False)
    mult = np.full(w.shape[0], 1 << 30, np.int32)        # 0.5: most outputs clamp
    shift = np.zeros(w.shape[0], np.int32)
    want = ref_conv(x, w, None, mult, shift, p)
    assert (want == 127).any() and (want == -128).any()
    assert_same(isa_kernels.conv_s8(x, w, None, mult, shift, p), want, "conv saturating")


# Host variant (DTMM_HOST_FAST): small-K transposed path (K < 32), blocks of 4 pixels x
# 2 filters with partial blocks and an odd filter, K with and without a multiple of 16.
HOST_CASES = [
    ("h_cin1_3x3_co33", 1, 9, 7, 1, 33, 3, 1, (1, 1, 1, 1)),
    ("h_cin32_3x3_co33", 2, 6, 5, 32, 33, 3, 1, (1, 1, 1, 1)),
    ("h_cin16_3x3_s2", 1, 9, 9, 16, 16, 3, 2, (1, 1, 1, 1)),
    ("h_cin48_1x1_s2", 1, 7, 7, 48, 20, 1, 2, (0, 0, 0, 0)),
    ("h_cin7_5x5_co9", 1, 6, 6, 7, 9, 5, 1, (2, 2, 2, 2)),
    ("h_cin40_3x3_valid", 1, 5, 6, 40, 6, 3, 1, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("case", HOST_CASES, ids=[c[0] for c in HOST_CASES])
def test_conv_dense_host_variant(case):
    check_conv_dense(load_kernels(VARIANTS["host_fast"]), case)
    check_conv_dense(load_kernels(VARIANTS["c_r4"]), case)


@pytest.mark.parametrize("ci", [2, 64])      # small-K and blocked paths
def test_conv_dense_host_variant_requant_edges(ci):
    """The branch-free requantization of the host variant against the reference:
    multipliers over the whole int32 range (INT32_MIN included), shifts -31 .. 10."""
    rng = np.random.default_rng(ci)
    co = 96
    x = rng.integers(-128, 128, (1, 4, 4, ci), dtype=np.int8)
    w = rng.integers(-127, 128, (co, 1, 1, ci), dtype=np.int8)
    bias = rng.integers(-3000, 3000, co).astype(np.int32)
    mult = rng.integers(INT32_MIN, INT32_MAX, co, dtype=np.int64).astype(np.int32)
    mult[:4] = [INT32_MIN, INT32_MAX, 0, 1 << 30]
    shift = rng.integers(-31, 11 if ci == 2 else 5, co).astype(np.int32)
    shift[:8] = [0, -31, 10 if ci == 2 else 4, -1, 0, 0, -31, -30]
    for zp in (-128, 0, 127):
        p = ConvParams(in_zp=zp, out_zp=-3)
        want = ref_conv(x, w, bias, mult, shift, p)
        for name in ("host_fast", "c_r4"):
            got = load_kernels(VARIANTS[name]).conv_s8(x, w, bias, mult, shift, p)
            assert_same(got, want, f"conv requant edges {name} ci={ci} zp={zp}")


# ----------------------------------------------------------------------------- FWCS conv


def check_conv_fwcs(name, kern, case, sparsity, all_index_types=True):
    rng = np.random.default_rng(seed((case[0], sparsity)))
    x, w, bias, mult, shift, p = make_conv(case, rng, relu=sparsity == 0.5)
    kk, ci = case[6] * case[6], case[4]
    keep = filterlet_mask(rng, w.shape[0], kk, sparsity)
    wm = w * np.repeat(keep, ci, axis=1).reshape(w.shape)
    want = ref_conv(x, wm, bias, mult, shift, p)
    cptr_types = [np.uint16] + ([np.uint8] if (kk - 1) * ci < 256 else [])
    combos = [(t, f) for t in cptr_types for f in (np.uint8, np.uint16, np.uint32)]
    if not all_index_types:
        combos = [(cptr_types[-1], np.uint16), (np.uint16, np.uint32)]
    for cptr_t, fidx_t in combos:
        if keep.sum() > 255 and fidx_t is np.uint8:
            continue
        arr, cptr, fidx = encode_fwcs(w, keep, cptr_t, fidx_t)
        got = kern.conv_fwcs_s8(x, arr, cptr, fidx, (case[6], case[6]), bias, mult, shift, p)
        assert_same(got, want, f"fwcs[{name}] {case[0]} s={sparsity} cptr={np.dtype(cptr_t).name} "
                               f"fidx={np.dtype(fidx_t).name}")



@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_conv_fwcs(fwcs_kernels, case, sparsity):
    check_conv_fwcs(*fwcs_kernels, case, sparsity)


# Dense-enough layers (kept filterlets >= 5 * KH * KW) so that the DSP path widens the
# input to int16, with C_in not a multiple of 4 (group tails, unaligned int16 runs).
FWCS_WIDE_CASES = [
    ("wide_cin1", 1, 5, 6, 1, 12, 3, 1, (1, 1, 1, 1)),
    ("wide_cin3_s2", 1, 7, 7, 3, 12, 3, 2, (1, 0, 1, 0)),
    ("wide_cin6", 2, 4, 5, 6, 10, 3, 1, (2, 1, 0, 2)),
]


@pytest.mark.parametrize("case", FWCS_WIDE_CASES, ids=[c[0] for c in FWCS_WIDE_CASES])
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
def test_conv_fwcs_widened(fwcs_kernels, case, sparsity):
    check_conv_fwcs(*fwcs_kernels, case, sparsity, all_index_types=False)


# FWCS host fast path (DTMM_HOST_FAST): the AVX2 run loop (host_fast, on a CPU with
# AVX2) and the plain-C one (host_fast_c).  C_in from 1 (filterlets of a kernel row
# packed into one vector) to 128 (past the old path's stack budget), odd C_out, blocks
# of 8 pixels in raster order with 1, 4 or 7 live in the last one, strides, 1x1.
FWCS_HOST_CASES = [
    ("hf_cin1_co15", 1, 9, 7, 1, 15, 3, 1, (1, 1, 1, 1)),
    ("hf_cin4_co16_s2", 1, 9, 9, 4, 16, 3, 2, (1, 1, 1, 1)),
    ("hf_cin9_co15", 2, 6, 6, 9, 15, 3, 1, (1, 1, 1, 1)),
    ("hf_cin15_co23_1x1_s2", 1, 10, 10, 15, 23, 1, 2, (0, 0, 0, 0)),
    ("hf_cin23_co42_s2", 1, 9, 9, 23, 42, 3, 2, (1, 0, 1, 0)),
    ("hf_cin42_co40", 1, 5, 7, 42, 40, 3, 1, (1, 1, 1, 1)),
    ("hf_cin64_5x5", 1, 6, 6, 64, 8, 5, 1, (2, 2, 2, 2)),
    ("hf_cin128_co128", 1, 7, 7, 128, 128, 3, 1, (1, 1, 1, 1)),
]


@pytest.mark.parametrize("case", FWCS_HOST_CASES, ids=[c[0] for c in FWCS_HOST_CASES])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_conv_fwcs_host_paths(case, sparsity):
    for name in ("host_fast", "host_fast_c"):
        check_conv_fwcs(name, load_kernels(VARIANTS[name]), case, sparsity, all_index_types=False)


def test_conv_fwcs_host_requant_edges():
    """The FWCS host paths' vector requantization against the reference.  Filters 0..31
    keep no filterlet, so their accumulator is exactly their bias: INT32_MIN with
    multiplier INT32_MIN (the one saturating product), ties of the doubling high
    multiply and of the rounding shift, shifts 0 .. -31; 32..63 scale to the int8 range;
    64..95 multipliers over the whole int32 range, shifts -31 .. 4 (mostly clamped)."""
    rng = np.random.default_rng(11)
    ci, co = 16, 96
    x = rng.integers(-128, 128, (1, 5, 6, ci), dtype=np.int8)
    w = rng.integers(-128, 128, (co, 3, 3, ci), dtype=np.int8)
    keep = filterlet_mask(rng, co, 9, 0.5)
    keep[:32] = False
    keep[32] = True
    wm = w * np.repeat(keep, ci, axis=1).reshape(w.shape)
    bias = rng.integers(-3000, 3000, co).astype(np.int64)
    mult = rng.integers(INT32_MIN, INT32_MAX, co, dtype=np.int64)
    shift = rng.integers(-31, 5, co)
    bias[:16] = [INT32_MIN, INT32_MIN, INT32_MAX, 101, -101, 255, -255, 1, -1, 0,
                 3 << 20, -(3 << 20), 7, -7, 1 << 24, -(1 << 24)]
    mult[:16] = [INT32_MIN, INT32_MIN, INT32_MAX, 1 << 30, 1 << 30, 1 << 30, 1 << 30, INT32_MIN,
                 INT32_MIN, INT32_MAX, 1 << 30, 1 << 30, INT32_MAX, INT32_MAX, 3 << 29, 3 << 29]
    shift[:16] = [0, -31, 0, 0, 0, -1, -1, 0, 0, 0, -16, -16, -2, -2, -18, -18]
    bias[16:32] = rng.integers(-(1 << 20), 1 << 20, 16)
    mult[16:64] = rng.integers(1 << 30, INT32_MAX, 48)
    shift[16:32] = rng.integers(-24, -10, 16)
    shift[32:64] = rng.integers(-16, -8, 32)
    bias, mult, shift = bias.astype(np.int32), mult.astype(np.int32), shift.astype(np.int32)
    arr, cptr, fidx = encode_fwcs(w, keep, np.uint16, np.uint16)
    for zp, act_min in ((-128, -128), (0, -3), (127, -128)):
        p = ConvParams(pads=(1, 1, 1, 1), in_zp=zp, out_zp=-3, act_min=act_min)
        want = ref_conv(x, wm, bias, mult, shift, p)
        assert len(np.unique(want[..., 32:64])) > 50      # mostly not clamped
        for name in ("host_fast", "host_fast_c", "c_r4"):
            got = load_kernels(VARIANTS[name]).conv_fwcs_s8(x, arr, cptr, fidx, (3, 3), bias, mult,
                                                            shift, p)
            assert_same(got, want, f"fwcs requant edges {name} zp={zp} act_min={act_min}")


def test_fwcs_config_reports_variant():
    expect = {"c_r4": (4, "scalar"), "c_r2": (2, "scalar"), "c_r8": (8, "scalar"),
              "c_noilp": (1, "scalar"), "scalar": (4, "scalar"), "dsp_r4": (4, "dsp"),
              "dsp_noilp": (1, "dsp"), "mve_r8": (8, "mve"), "mve_noilp": (1, "mve")}
    for name, want in expect.items():
        assert load_kernels(VARIANTS[name]).fwcs_config() == want, name


def test_fwcs_rejects_bad_arguments(kernels):
    rng = np.random.default_rng(3)
    x, w, bias, mult, shift, p = make_conv(CONV_CASES[0], rng, False)
    arr, cptr, fidx = encode_fwcs(w, np.ones((4, 9), bool), np.uint8, np.uint8)
    with pytest.raises(ValueError):
        kernels.conv_fwcs_s8(x, arr, cptr + 1, fidx, (3, 3), bias, mult, shift, p)
    with pytest.raises(TypeError):
        kernels.conv_fwcs_s8(x, arr, cptr.astype(np.int32), fidx, (3, 3), bias, mult, shift, p)


# ----------------------------------------------------------------------------- CSR / pattern


def encode_csr(w: np.ndarray, keep: np.ndarray, col_t, row_t):
    co = w.shape[0]
    wf, kf = w.reshape(co, -1), keep.reshape(co, -1)
    cols = [np.nonzero(kf[o])[0] for o in range(co)]
    values = np.concatenate([wf[o, c] for o, c in enumerate(cols)]).astype(np.int8)
    rowptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])])
    return values, np.concatenate(cols).astype(col_t), rowptr.astype(row_t)


# Extra geometry for the sparse kernels' band / border logic:
# (name, N, H, W, C_in, C_out, K, stride, pads)
SPARSE_EXTRA_CASES = [
    ("cin1_3x3_s2_pad1", 1, 7, 9, 1, 3, 3, 2, (1, 1, 1, 1)),
    ("cin8_3x3_pads_ge_k", 2, 4, 5, 8, 4, 3, 1, (4, 3, 3, 5)),     # windows wholly in padding
    ("cin4_3x3_wide_row", 1, 3, 70, 4, 3, 3, 1, (1, 1, 1, 1)),     # > 64 pixels per row
    ("cin6_3x3_s2_nopad", 1, 9, 8, 6, 5, 3, 2, (0, 0, 0, 0)),
    ("cin3_3x3_stride21", 1, 6, 7, 3, 4, 3, 1, (0, 2, 1, 0)),
]
SPARSE_CASES = CONV_CASES + SPARSE_EXTRA_CASES


def check_conv_csr(kernels, case, sparsity, row_types=(np.uint16, np.uint32)):
    rng = np.random.default_rng(seed(("csr", case[0], sparsity)))
    x, w, bias, mult, shift, p = make_conv(case, rng, relu=True)
    keep = rng.random(w.shape) >= sparsity
    keep[0] = False                      # an empty filter
    if w.shape[0] > 2:
        keep[1] = True                   # a dense filter
    wm = w * keep
    want = ref_conv(x, wm, bias, mult, shift, p)
    k_total = w[0].size
    for col_t in [np.uint16] + ([np.uint8] if k_total <= 256 else []):
        for row_t in row_types:
            vals, col, rowptr = encode_csr(w, keep, col_t, row_t)
            got = kernels.conv_csr_s8(x, vals, col, rowptr, (case[6], case[6]), bias, mult, shift, p)
            assert_same(got, want, f"csr {case[0]} s={sparsity} col={np.dtype(col_t).name} "
                                   f"rowptr={np.dtype(row_t).name}")


@pytest.mark.parametrize("case", SPARSE_CASES, ids=[c[0] for c in SPARSE_CASES])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_conv_csr(isa_kernels, case, sparsity):
    check_conv_csr(isa_kernels, case, sparsity)


def test_conv_csr_wide_band_falls_back(isa_kernels):
    """Band offsets beyond 16 bits (the MVE gather's limit): the plain-C loop runs."""
    check_conv_csr(isa_kernels, ("wide_band", 1, 3, 30, 1024, 2, 3, 1, (1, 1, 1, 1)), 0.9,
                   row_types=(np.uint16,))


def test_conv_csr_uint8_rowptr(isa_kernels):
    check_conv_csr(isa_kernels, CONV_CASES[0], 0.5, row_types=(np.uint8,))


PATTERNS = np.array([[0, 1, 3, 4], [1, 3, 4, 5], [1, 4, 5, 7], [3, 4, 5, 7], [4, 5, 7, 8],
                     [0, 4, 5, 8], [1, 2, 4, 6], [2, 4, 6, 8]], np.uint8)


def make_pattern(rng, w, keep_p=0.6):
    """Random pattern weights (filter 0 empty) -> (kptr, kchan, kpat, vals, dense weights)."""
    co, ci = w.shape[0], w.shape[3]
    kptr, kchan, kpat, vals = [0], [], [], []
    wm = np.zeros_like(w)
    for o in range(co):
        chans = np.nonzero(rng.random(ci) < keep_p)[0] if o else np.zeros(0, int)
        for c in chans:
            pid = int(rng.integers(0, len(PATTERNS)))
            v = rng.integers(-127, 128, 4).astype(np.int8)
            for t, pos in enumerate(PATTERNS[pid]):
                wm[o, pos // 3, pos % 3, c] = v[t]
            kchan.append(c), kpat.append(pid), vals.append(v)
        kptr.append(len(kchan))
    vals = np.array(vals, np.int8).reshape(-1, 4) if vals else np.zeros((0, 4), np.int8)
    return np.array(kptr), np.array(kchan, int), np.array(kpat, np.uint8), vals, wm


def check_conv_pattern(kernels, case, types=((np.uint16, np.uint16),)):
    rng = np.random.default_rng(seed(("pat", case[0])))
    x, w, bias, mult, shift, p = make_conv(case, rng, relu=False)
    kptr, kchan, kpat, vals, wm = make_pattern(rng, w)
    want = ref_conv(x, wm, bias, mult, shift, p)
    for kptr_t, kchan_t in types:
        if kptr[-1] > np.iinfo(kptr_t).max or w.shape[3] - 1 > np.iinfo(kchan_t).max:
            continue
        got = kernels.conv_pattern_s8(x, PATTERNS, kptr.astype(kptr_t), kchan.astype(kchan_t),
                                      kpat, vals, bias, mult, shift, p)
        assert_same(got, want, f"pattern {case[0]} kptr={np.dtype(kptr_t).name} "
                               f"kchan={np.dtype(kchan_t).name}")


PATTERN_INDEX_TYPES = [(np.uint16, np.uint16), (np.uint32, np.uint8), (np.uint8, np.uint16),
                       (np.uint32, np.uint16)]


@pytest.mark.parametrize("case", [c for c in SPARSE_CASES if c[6] == 3], ids=lambda c: c[0])
def test_conv_pattern(isa_kernels, case):
    check_conv_pattern(isa_kernels, case, PATTERN_INDEX_TYPES)


def test_conv_pattern_more_than_65535_kernels(kernels):
    """uint32 kptr: more kept kernels than a uint16 holds (the 4x4x256 -> 256 case)."""
    rng = np.random.default_rng(21)
    case = ("big", 1, 2, 2, 256, 300, 3, 1, (1, 1, 1, 1))
    x, w, bias, mult, shift, p = make_conv(case, rng, relu=False)
    kptr, kchan, kpat, vals, wm = make_pattern(rng, w, keep_p=0.9)
    assert kptr[-1] > 0xFFFF
    got = kernels.conv_pattern_s8(x, PATTERNS, kptr.astype(np.uint32), kchan.astype(np.uint16),
                                  kpat, vals, bias, mult, shift, p)
    assert_same(got, ref_conv(x, wm, bias, mult, shift, p), "pattern uint32 kptr")


# ----------------------------------------------------------------------------- others


# (name, N, H, W, C, K, stride, pads(top, bottom, left, right)): the SIMD paths put 16
# (MVE) or 4 (DSP) channels in lanes, so C around those sizes, borders of every kind.
DW_CASES = [
    ("c3_3x3_s2_same_even", 1, 6, 6, 3, 3, 2, (0, 1, 0, 1)),
    ("c17_5x5", 1, 7, 5, 17, 5, 1, (2, 2, 2, 2)),
    ("c16_3x3_s2_asym", 1, 8, 8, 16, 3, 2, (1, 1, 0, 2)),
    ("c8_3x3_pad1", 2, 5, 6, 8, 3, 1, (1, 1, 1, 1)),
    ("c40_3x3_s2_asym", 1, 9, 7, 40, 3, 2, (0, 2, 1, 0)),
    ("c64_3x3_pad1", 1, 6, 5, 64, 3, 1, (1, 1, 1, 1)),
    ("c33_5x5_s2_bigpad", 1, 5, 6, 33, 5, 2, (4, 3, 2, 5)),     # windows wholly in padding
    ("c6_3x3_valid", 1, 5, 5, 6, 3, 1, (0, 0, 0, 0)),
]


def check_depthwise(k, case, dm, relu=True, with_bias=True):
    rng = np.random.default_rng(seed(("dw", case[0], dm, relu)))
    name, n, h, wd, ci, kk, s, pads = case
    x = rng.integers(-128, 128, (n, h, wd, ci), dtype=np.int8)
    w = rng.integers(-127, 128, (1, kk, kk, ci * dm), dtype=np.int8)
    bias = rng.integers(-2000, 2000, ci * dm).astype(np.int32) if with_bias else None
    mult, shift = rand_quant(rng, ci * dm, kk * kk)
    in_zp = int(rng.integers(-128, 128))
    out_zp = int(rng.integers(-20, 20))
    p = ConvParams((s, s), pads, in_zp=in_zp, out_zp=out_zp,
                   act_min=out_zp if relu else -128, act_max=127)
    got = k.depthwise_conv_s8(x, w, bias, mult, shift, p, dm)
    assert_same(got, ref_depthwise(x, w, bias, mult, shift, p, dm),
                f"depthwise {name} dm={dm} relu={relu} bias={with_bias}")


@pytest.mark.parametrize("dm", [1, 2])
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[2], CONV_CASES[4]], ids=lambda c: c[0])
def test_depthwise(plain_kernels, case, dm):
    rng = np.random.default_rng(11 + dm)
    _, n, h, wd, ci, _, k, s, pads = case
    x = rng.integers(-128, 128, (n, h, wd, ci), dtype=np.int8)
    w = rng.integers(-127, 128, (1, k, k, ci * dm), dtype=np.int8)
    bias = rng.integers(-2000, 2000, ci * dm).astype(np.int32)
    mult, shift = rand_quant(rng, ci * dm, k * k)
    p = ConvParams((s, s), pads, in_zp=-9, out_zp=4, act_min=4, act_max=127)
    got = plain_kernels.depthwise_conv_s8(x, w, bias, mult, shift, p, dm)
    assert_same(got, ref_depthwise(x, w, bias, mult, shift, p, dm), f"depthwise {case[0]} dm={dm}")


@pytest.mark.parametrize("dm", [1, 2])
@pytest.mark.parametrize("case", DW_CASES, ids=[c[0] for c in DW_CASES])
def test_depthwise_isa(isa_kernels, case, dm):
    check_depthwise(isa_kernels, case, dm)


def test_depthwise_isa_no_bias_no_relu(isa_kernels):
    check_depthwise(isa_kernels, DW_CASES[1], 1, relu=False, with_bias=False)
    check_depthwise(isa_kernels, DW_CASES[4], 1, relu=False, with_bias=False)


def test_depthwise_isa_requant_edges(isa_kernels):
    """Per-lane requantization: multipliers over the int32 range, shifts -31 .. 10
    (left shifts included), saturation both ways, every in_zp extreme."""
    rng = np.random.default_rng(17)
    c = 40
    x = rng.integers(-128, 128, (1, 5, 5, c), dtype=np.int8)
    w = rng.integers(-127, 128, (1, 3, 3, c), dtype=np.int8)
    bias = rng.integers(-3000, 3000, c).astype(np.int32)
    mult = rng.integers(0, INT32_MAX, c, dtype=np.int64).astype(np.int32)
    mult[:4] = [INT32_MAX, 0, 1 << 30, 1]
    shift = rng.integers(-31, 11, c).astype(np.int32)
    shift[:8] = [0, -31, 10, -1, 0, 0, -31, -30]
    for zp in (-128, 0, 127):
        p = ConvParams((1, 1), (1, 1, 1, 1), in_zp=zp, out_zp=-3)
        assert_same(isa_kernels.depthwise_conv_s8(x, w, bias, mult, shift, p),
                    ref_depthwise(x, w, bias, mult, shift, p, 1), f"depthwise requant edges zp={zp}")


# The DSP path's groups of 4 channels: C not a multiple of 4 (the last group overlaps the
# one before it), C < 4 (one channel at a time), and each of its tap loops: whole 3x3
# windows (one asm block), border rows of a 3-wide kernel (kernel heights 3 and 5), and
# the generic loop (5x5, 3x5, stride 2).  (name, N, H, W, C, KH, KW, stride, pads)
DW_TAIL_CASES = [(f"c{c}_{kh}x{kw}_s{s}", 1, h, w, c, kh, kw, s, pads)
                 for c in (1, 2, 3, 5, 7, 17)
                 for (h, w, kh, kw, s, pads) in ((6, 7, 3, 3, 1, (1, 1, 1, 1)),
                                                 (7, 6, 5, 3, 2, (2, 1, 1, 1)),
                                                 (5, 6, 3, 5, 1, (1, 1, 2, 2)))]


def check_depthwise_rect(k, case, relu: bool):
    """Random data with per-channel multipliers quantize_multiplier makes (the DSP
    path's fast requantization), a kernel of any shape; bit-exact with the oracle."""
    name, n, h, wd, c, kh, kw, s, pads = case
    rng = np.random.default_rng(seed(("dw_rect", name, relu)))
    x = rng.integers(-128, 128, (n, h, wd, c), dtype=np.int8)
    w = rng.integers(-127, 128, (1, kh, kw, c), dtype=np.int8)
    bias = rng.integers(-3000, 3000, c).astype(np.int32)
    mult, shift = rand_quant(rng, c, kh * kw)
    out_zp = int(rng.integers(-30, 30))
    p = ConvParams((s, s), pads, in_zp=int(rng.integers(-128, 128)), out_zp=out_zp,
                   act_min=out_zp if relu else -128, act_max=100 if relu else 127)
    assert_same(k.depthwise_conv_s8(x, w, bias, mult, shift, p),
                ref_depthwise(x, w, bias, mult, shift, p, 1), f"depthwise {name} relu={relu}")


@pytest.mark.parametrize("case", DW_TAIL_CASES, ids=[c[0] for c in DW_TAIL_CASES])
def test_depthwise_isa_channel_tails(isa_kernels, case):
    for relu in (False, True):
        check_depthwise_rect(isa_kernels, case, relu)


def dw_requant_sweep_case(kk: int):
    """A depthwise layer whose accumulators sweep 256 consecutive values around chosen
    points: 16 x 16 pixels, x = pixel index - 128, in_zp 0, the one weight 1 (kernel
    kk x kk: the centre tap, pad kk // 2), so acc = bias[c] + x.  46 channels: 0..31
    (the first 8 groups) every requantization the DSP path's fast formula takes
    (multipliers 0, 2^30, 2^30 + 1, INT32_MAX, random >= 2^30; shifts 0 .. -21;
    accumulators around 0, +-2^30 where 2 acc saturates, and near INT32_MIN / MAX, so
    both QADD and QDADD saturate), 32..39 left shifts (up to acc << left just below and
    above 2^30), 40..45 groups that take the reference requantization (shift -22,
    multipliers < 2^30, shift -31) with an overlapping last group."""
    c = 46
    pix = np.arange(256) - 128
    x = np.broadcast_to(pix.reshape(1, 16, 16, 1), (1, 16, 16, c)).astype(np.int8)
    w = np.zeros((1, kk, kk, c), np.int8)
    w[0, kk // 2, kk // 2, :] = 1
    mults = [0, 1 << 30, (1 << 30) + 1, INT32_MAX, INT32_MAX - 1, 1518500250, 1895939320, 1208925819]
    shifts = [0, -1, -2, -5, -13, -20, -21]
    # (not within 128 of the int32 limits with shift 0: there requant(acc) + out_zp
    # overflows int32 in the plain-C and MVE paths, as in TFLite's int32 arithmetic)
    accs = [0, 1 << 30, -(1 << 30), (1 << 30) - 100, -(1 << 30) + 100, INT32_MAX - 2000,
            INT32_MIN + 2000, 3 << 28, -(3 << 28), 1 << 21, -(1 << 21), 12345, -777777]
    mult = np.zeros(c, np.int64)
    shift = np.zeros(c, np.int64)
    bias = np.zeros(c, np.int64)
    for i in range(32):
        mult[i] = mults[i % len(mults)]
        shift[i] = shifts[(i * 3) % len(shifts)]
        bias[i] = accs[(i * 5) % len(accs)]
    mult[:8] = INT32_MAX              # every shift with the largest multiplier and saturation
    shift[:8] = [0, -21, -1, -21, 0, -20, -2, -21]
    bias[:8] = [INT32_MAX - 2000, INT32_MAX - 200, 1 << 30, (1 << 30) - 64, INT32_MIN + 2000,
                -(1 << 30), -(1 << 30) + 64, INT32_MIN + 200]
    # the smallest fast multiplier at the largest fast shift, acc far past 2^30 both ways
    mult[8:10], shift[8:10], bias[8:10] = 1 << 30, -21, [INT32_MAX - 2000, INT32_MIN + 2000]
    # left shifts: |acc << left| < 2^31 (the reference's precondition), 2 acc << left
    # on both sides of the int32 range
    mult[32:40] = [1 << 30, INT32_MAX, 1518500250, (1 << 30) + 1, INT32_MAX, 1 << 30, 1895939320,
                   INT32_MAX]
    shift[32:40] = [1, 2, 10, 3, 10, 1, 4, 9]
    bias[32:40] = [1000, -5000, (1 << 20) - 128, 12345, -(1 << 20) + 128, (1 << 29) + 200, -777,
                   (1 << 21) - 128]
    mult[40:] = [1 << 30, INT32_MAX, (1 << 30) + 1, INT32_MAX, (1 << 30) - 1, 123456789]
    shift[40:] = [-22, -22, -21, -3, 5, -31]
    bias[40:] = [INT32_MAX - 2000, -(1 << 30), INT32_MAX - 2000, -123, 30, 1 << 24]
    return (x, w, bias.astype(np.int32), mult.astype(np.int32), shift.astype(np.int32),
            kk // 2)


def check_depthwise_requant_sweep(k, kk: int):
    x, w, bias, mult, shift, pad = dw_requant_sweep_case(kk)
    for out_zp, lo, hi in ((0, -128, 127), (-128, -128, 127), (127, -128, 127), (-7, -7, 127),
                           (5, -20, 30)):
        p = ConvParams((1, 1), (pad, pad, pad, pad), in_zp=0, out_zp=out_zp, act_min=lo,
                       act_max=hi)
        assert_same(k.depthwise_conv_s8(x, w, bias, mult, shift, p),
                    ref_depthwise(x, w, bias, mult, shift, p, 1),
                    f"depthwise requant sweep {kk}x{kk} out_zp={out_zp} [{lo}, {hi}]")


@pytest.mark.parametrize("kk", [1, 3])
def test_depthwise_isa_requant_sweep(isa_kernels, kk):
    check_depthwise_requant_sweep(isa_kernels, kk)

def check_fc(isa_kernels, in_f):
    rng = np.random.default_rng(in_f)
    x = rng.integers(-128, 128, (3, in_f), dtype=np.int8)
    w = rng.integers(-127, 128, (10, in_f), dtype=np.int8)
    bias = rng.integers(-5000, 5000, 10).astype(np.int32)
    acc = (x.astype(np.int64) + 17) @ w.astype(np.int64).T + bias
    m1, s1 = quantize_multiplier(1.0 / (40 * 64 * math.sqrt(in_f)))
    got = isa_kernels.fully_connected_s8(x, w, bias, m1, s1, in_zp=-17, out_zp=3)
    assert_same(got, requant_out(acc, m1, s1, 3, -128, 127), f"fc per-tensor in={in_f}")
    mult, shift = rand_quant(rng, 10, in_f)
    got = isa_kernels.fully_connected_s8(x, w, None, mult, shift, in_zp=-17, out_zp=3, act_min=3)
    assert_same(got, requant_out(acc - bias, mult, shift, 3, 3, 127), f"fc per-channel in={in_f}")


@pytest.mark.parametrize("in_f", [1, 3, 17, 64, 100])
def test_fully_connected(isa_kernels, in_f):
    check_fc(isa_kernels, in_f)


def check_fc_fwcs(k, in_f, out_f=10, sparsity=0.5, size=16):
    """FC on FWCS weights (runs of ``size`` inputs, the last one shorter when size does
    not divide I) against the dense-with-zeros NumPy FC; every cptr / fidx width."""
    from dtmm.formats import fwcs

    rng = np.random.default_rng(seed(("fcf", in_f, out_f, sparsity, size)))
    x = rng.integers(-128, 128, (3, in_f), dtype=np.int8)
    w = rng.integers(-127, 128, (out_f, in_f), dtype=np.int8)
    npos = -(-in_f // size)
    keep = rng.random((out_f, npos)) >= sparsity
    if out_f >= 3:
        keep[0], keep[1] = False, True       # an output with no run, one with all
    f = fwcs.encode(w, keep, size=size)
    wd = fwcs.decode(f).astype(np.int64)
    bias = rng.integers(-5000, 5000, out_f).astype(np.int32)
    acc = (x.astype(np.int64) + 17) @ wd.T + bias
    m1, s1 = quantize_multiplier(1.0 / (40 * 64 * math.sqrt(in_f)))
    mult, shift = rand_quant(rng, out_f, in_f)
    for ct in ((np.uint8, np.uint16) if (npos - 1) * size < 256 else (np.uint16,)):
        for ft in (np.uint8, np.uint16, np.uint32):
            if f.cptr.size > 255 and ft is np.uint8:
                continue
            cp, fi = f.cptr.astype(ct), f.fidx.astype(ft)
            got = k.fully_connected_fwcs_s8(x, f.arr, cp, fi, size, bias, m1, s1, in_zp=-17, out_zp=3)
            assert_same(got, requant_out(acc, m1, s1, 3, -128, 127),
                        f"fc fwcs per-tensor in={in_f} out={out_f} s={sparsity} {ct.__name__}/{ft.__name__}")
            got = k.fully_connected_fwcs_s8(x, f.arr, cp, fi, size, None, mult, shift, in_zp=-17,
                                            out_zp=3, act_min=3)
            assert_same(got, requant_out(acc - bias, mult, shift, 3, 3, 127),
                        f"fc fwcs per-channel in={in_f} out={out_f} s={sparsity}")


@pytest.mark.parametrize("in_f,out_f,size", [(1, 3, 16), (17, 10, 16), (64, 9, 16), (100, 10, 16),
                                             (40, 7, 8), (33, 5, 5)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_fully_connected_fwcs(isa_kernels, in_f, out_f, size, sparsity):
    check_fc_fwcs(isa_kernels, in_f, out_f, sparsity, size)


POOLS = [PoolParams((2, 2), (2, 2)), PoolParams((3, 3), (2, 2), (1, 1, 1, 1)),
         PoolParams((3, 3), (1, 1), (0, 2, 1, 0), act_min=-10, act_max=50),
         PoolParams((5, 5), (1, 1), (2, 2, 2, 2))]


@pytest.mark.parametrize("pp", POOLS, ids=range(len(POOLS)))
def test_pools(isa_kernels, pp):
    check_pools(isa_kernels, pp)


def check_pools(kernels, pp):
    rng = np.random.default_rng(5)
    for c in (5, 16, 37):        # channel tails of the 4 / 16-lane paths
        x = rng.integers(-128, 128, (2, 7, 6, c), dtype=np.int8)
        assert_same(kernels.max_pool_s8(x, pp), ref_pool(x, pp, "max"), f"max pool c={c}")
        assert_same(kernels.avg_pool_s8(x, pp), ref_pool(x, pp, "avg"), f"avg pool c={c}")


def test_avg_pool_empty_window_is_an_error(kernels):
    x = np.zeros((1, 2, 2, 1), np.int8)
    with pytest.raises(KernelError):
        kernels.avg_pool_s8(x, PoolParams((2, 2), (3, 3), (3, 0, 0, 0)))


@pytest.mark.parametrize("scales", [(0.05, 0.02, 0.06), (0.1, 0.1, 0.15), (0.01, 0.08, 0.04)])
def test_add(isa_kernels, scales):
    check_add(isa_kernels, scales)


def check_add(k, scales, shape=(4, 33)):
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, shape, dtype=np.int8)
    b = rng.integers(-128, 128, shape, dtype=np.int8)
    a.reshape(-1)[:4] = [-128, 127, -128, 127]
    b.reshape(-1)[:4] = [-128, 127, 127, -128]
    ap = add_params(*scales)
    sa = multiply_by_quantized_multiplier((a.astype(np.int64) - 5) << ap["left_shift"],
                                          ap["in1_multiplier"], ap["in1_shift"])
    sb = multiply_by_quantized_multiplier((b.astype(np.int64) + 12) << ap["left_shift"],
                                          ap["in2_multiplier"], ap["in2_shift"])
    for zpo, act_min in ((-3, -3), (40, -128)):
        want = requant_out(sa + sb, ap["out_multiplier"], ap["out_shift"], zpo, act_min, 127)
        assert_same(k.add_s8(a, b, 5, -12, zpo, ap, act_min=act_min), want,
                    f"add {scales} {shape} zp={zpo}")
    # the reference path (constants the fast DSP path does not take): out shift < -21
    ap2 = dict(ap, out_shift=-25)
    want = requant_out(sa + sb, ap["out_multiplier"], -25, 0, -128, 127)
    assert_same(k.add_s8(a, b, 5, -12, 0, ap2), want, f"add {scales} out_shift=-25")


def test_conv_rejects_inconsistent_dims(kernels):
    x = np.zeros((1, 4, 4, 3), np.int8)
    w = np.zeros((2, 3, 3, 4), np.int8)   # C_in mismatch
    with pytest.raises(KernelError):
        kernels.conv_s8(x, w, None, [1 << 30] * 2, [0] * 2, ConvParams())


def test_buffer_sizes(kernels):
    assert kernels.conv_s8_buffer_size((1, 8, 8, 16), (32, 3, 3, 16)) == 0          # plain C
    # MVE: 3 int8 im2col rows + one int32 offset per filter
    assert load_kernels(VARIANTS["mve_r4"]).conv_s8_buffer_size((1, 8, 8, 16), (32, 3, 3, 16)) == 3 * 144 + 4 * 32
    assert load_kernels(VARIANTS["dsp_r4"]).conv_s8_buffer_size((1, 8, 8, 16), (32, 3, 3, 16)) == 4 * 144


# ----------------------------------------------------------------------------- QEMU targets

_QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")
needs_qemu = pytest.mark.skipif(any(shutil.which(t) is None for t in _QEMU_TOOLS),
                                reason="needs arm-none-eabi-gcc and qemu-system-arm")

# (target, simd, defines) -> expected (R, isa) of the FWCS kernel
QEMU_BUILDS = {
    "m4": ("cortex-m4", "auto", (), (4, "dsp")),
    "m7": ("cortex-m7", "auto", (), (4, "dsp")),
    "m7_r8": ("cortex-m7", "auto", ("DTMM_FWCS_REUSE=8",), (8, "dsp")),
    "m7_noilp": ("cortex-m7", "auto", ("DTMM_FWCS_VARIANT_NO_ILP",), (1, "dsp")),
    "m55": ("cortex-m55", "auto", (), (4, "mve")),
    "m55_r2": ("cortex-m55", "auto", ("DTMM_FWCS_REUSE=2",), (2, "mve")),
    "m55_r8": ("cortex-m55", "auto", ("DTMM_FWCS_REUSE=8",), (8, "mve")),
    "m55_noilp": ("cortex-m55", "auto", ("DTMM_FWCS_VARIANT_NO_ILP",), (1, "mve")),
    "m55_dsp": ("cortex-m55", "dsp", (), (4, "dsp")),
    "m55_scalar": ("cortex-m55", "scalar", (), (4, "scalar")),
}


@functools.lru_cache(maxsize=None)
def target_kernels(name: str):
    from dtmm.runtime.kernels_host import TargetKernels
    target, simd, defines, _ = QEMU_BUILDS[name]
    return TargetKernels(target, simd=simd, defines=defines)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", list(QEMU_BUILDS))
def test_qemu_fwcs(name):
    k = target_kernels(name)
    assert k.fwcs_config() == QEMU_BUILDS[name][3]
    for case in (CONV_CASES[1], CONV_CASES[2], CONV_CASES[4], CONV_CASES[5]):
        for sparsity in (0.0, 0.5, 0.9):
            check_conv_fwcs(name, k, case, sparsity, all_index_types=False)
    for case in FWCS_WIDE_CASES:
        check_conv_fwcs(name, k, case, 0.0, all_index_types=False)


# The asm filter loops: M55 C_in < 64 or 16, 32, 64 or a multiple of 128 (R = 1, 2, 4, 8:
# 1, 2, 4 or 8m vectors per filterlet, a partial last one for C_in < 64), M4/M7 (DSP,
# R = 4) C_in % 4 == 0, other C_in the C loops; with a partial last block of pixels (H_out * W_out not
# a multiple of R), interior blocks (the table filled without bounds checks), and dead
# filters (no filterlet left: the constant row) at 90 % sparsity.
FWCS_SMALL_CIN_CASES = [
    ("small_cin16", 1, 5, 5, 16, 9, 3, 1, (1, 1, 1, 1)),
    ("small_cin32_s2", 2, 6, 5, 32, 6, 3, 2, (1, 0, 1, 1)),
    ("small_cin64_1x1", 1, 3, 3, 64, 5, 1, 1, (0, 0, 0, 0)),
    ("small_cin16_6px", 1, 2, 3, 16, 7, 3, 1, (1, 1, 1, 1)),  # R = 8: 6 live pixels
    ("cin128_interior", 1, 6, 8, 128, 6, 3, 1, (1, 1, 1, 1)),
    ("cin256_1x1", 1, 3, 4, 256, 5, 1, 1, (0, 0, 0, 0)),
    ("cin8_5x5", 1, 7, 6, 8, 6, 5, 1, (2, 2, 2, 2)),
    ("cin4_s2", 1, 9, 9, 4, 6, 3, 2, (1, 1, 1, 1)),
    # M55: any C_in < 64 (a partial last vector per filterlet, positions in a byte array)
    ("cin1_tail", 1, 6, 7, 1, 7, 3, 1, (1, 1, 1, 1)),
    ("cin21_tail", 1, 5, 6, 21, 9, 3, 1, (1, 1, 1, 1)),
    ("cin48_tail_s2", 1, 7, 7, 48, 5, 3, 2, (1, 1, 1, 1)),
    ("cin63_tail", 2, 3, 4, 63, 5, 3, 1, (0, 2, 1, 1)),
    # DSP asm for any C_in % 4 == 0; M55 C loop for 80; 3 passes of the 8-vector body
    ("cin12", 1, 5, 5, 12, 6, 3, 1, (1, 1, 1, 1)),
    ("cin80_generic", 1, 3, 4, 80, 5, 3, 1, (1, 1, 1, 1)),
    ("cin384_1x1", 1, 2, 3, 384, 4, 1, 1, (0, 0, 0, 0)),
]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", ["m55", "m55_r2", "m55_r8", "m55_noilp", "m7", "m55_dsp"])
@pytest.mark.parametrize("case", FWCS_SMALL_CIN_CASES, ids=[c[0] for c in FWCS_SMALL_CIN_CASES])
def test_qemu_fwcs_small_cin(name, case):
    k = target_kernels(name)
    for sparsity in (0.0, 0.5, 0.9):
        # every cptr / fidx width on the main build, two combinations on the others
        check_conv_fwcs(name, k, case, sparsity, all_index_types=name == "m55")


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("name", ["m4", "m7", "m55", "m55_dsp", "m55_scalar"])
def test_qemu_other_kernels(name):
    k = target_kernels(name)
    for case in CONV_CASES:
        check_conv_dense(k, case)
    for in_f in (3, 17, 100):
        check_fc(k, in_f)
    for in_f, size in ((17, 16), (100, 16), (33, 5)):
        check_fc_fwcs(k, in_f, 10, 0.5, size)
    for case in DW_CASES:
        for dm in (1, 2):
            check_depthwise(k, case, dm)
    check_depthwise(k, DW_CASES[4], 1, relu=False, with_bias=False)
    if name in ("m4", "m7", "m55_dsp"):      # the DSP path's tails, tap loops, requantization
        for case in DW_TAIL_CASES:
            check_depthwise_rect(k, case, True)
        for kk in (1, 3):
            check_depthwise_requant_sweep(k, kk)
    if name in ("m7", "m55", "m55_scalar"):   # CSR / pattern: MVE or plain C
        test_requantize_matches_arith(k)
        for case in (CONV_CASES[2], CONV_CASES[4], SPARSE_EXTRA_CASES[0], SPARSE_EXTRA_CASES[1]):
            check_conv_csr(k, case, 0.5)
        for case in (CONV_CASES[4], SPARSE_EXTRA_CASES[0], SPARSE_EXTRA_CASES[1]):
            check_conv_pattern(k, case, PATTERN_INDEX_TYPES[:2])
    for pp in POOLS[1:3]:
        check_pools(k, pp)
    check_add(k, (0.05, 0.02, 0.06), (3, 37))


@needs_qemu
@pytest.mark.qemu
def test_qemu_weight_reuse_saves_instructions():
    """Paper Fig. 10 ablation direction: reusing a filterlet across R pixels executes
    fewer instructions than one pixel at a time (QEMU counts instructions, not cycles)."""
    rng = np.random.default_rng(1)
    case = ("anchor", 1, 8, 8, 32, 32, 3, 1, (1, 1, 1, 1))
    x, w, bias, mult, shift, p = make_conv(case, rng, False)
    keep = filterlet_mask(rng, 32, 9, 0.5)
    arr, cptr, fidx = encode_fwcs(w, keep, np.uint16, np.uint16)
    counts = {}
    for name in ("m55", "m55_noilp", "m7", "m7_noilp"):
        k = target_kernels(name)
        k.conv_fwcs_s8(x, arr, cptr, fidx, (3, 3), bias, mult, shift, p)
        counts[name] = k.last_instructions
    assert counts["m55"] < counts["m55_noilp"], counts
    assert counts["m7"] < counts["m7_noilp"], counts
