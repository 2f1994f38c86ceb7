"""Storage formats: round trips, index widths, exact bytes, verifiers, mutation fuzzing."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtmm.errors import FormatError
from dtmm.formats import (CSR, FWCS, ByteCount, Dense, Pattern, TFLMPrune, byte_count, csr,
                          decode, dense, encode, estimate_bytes, fwcs, pattern, tflm_prune,
                          verify)
from dtmm.formats.common import quant_bytes

RNG = np.random.default_rng(0)


def rand_w(shape, rng=RNG):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def filterlet_mask_for(shape, rng, keep):
    """A random filterlet mask for an OHWI or (O, I) shape (linear runs of 16)."""
    if len(shape) == 4:
        return rng.random(shape[:3]) < keep
    return rng.random((shape[0], -(-shape[1] // min(16, shape[1])))) < keep


CONV_SHAPES = [(c_out, k, k, c_in) for c_in in (1, 3, 17, 64) for k in (1, 3, 5)
               for c_out in (1, 5)]
LINEAR_SHAPES = [(3, 1), (4, 10), (2, 16), (5, 17), (3, 40), (2, 64)]


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("shape", CONV_SHAPES + LINEAR_SHAPES)
@pytest.mark.parametrize("keep", [0.0, 0.4, 1.0])
def test_fwcs_round_trip(shape, keep):
    rng = np.random.default_rng(hash((shape, keep)) % 2**32)
    w = rand_w(shape, rng)
    fm = filterlet_mask_for(shape, rng, keep)
    if len(shape) == 4 and shape[0] > 1 and keep > 0:
        fm[0] = False  # an empty filter in the middle of kept ones
    f = fwcs.encode(w, fm, name="l")
    fwcs.verify(f, shape)
    size = f.size
    elem = np.repeat(fm.reshape(shape[0], -1), size, axis=1)[:, :int(np.prod(shape[1:]))]
    expect = np.where(elem.reshape(shape), w, 0)
    assert np.array_equal(fwcs.decode(f), expect)
    assert f.arr.dtype == np.int8 and f.cptr.dtype in (np.uint8, np.uint16)
    assert len(f.fidx) == shape[0] + 1 and int(f.fidx[-1]) == len(f.cptr)
    assert (f.cptr.astype(int) % size == 0).all()
    # element-mask input gives the same encoding; the mask-free path keeps non-zeros
    f2 = fwcs.encode(w, elem.reshape(shape))
    assert np.array_equal(f2.arr, f.arr) and np.array_equal(f2.cptr, f.cptr)
    n_tail = int(np.count_nonzero(f.cptr.astype(int) == (fm.shape[1] - 1) * size)) \
        if len(shape) == 2 and shape[1] % size else 0
    assert byte_count(f) == fwcs.bytes_from_counts(shape, len(f.cptr), n_tail_filterlets=n_tail)


@pytest.mark.parametrize("shape", CONV_SHAPES + LINEAR_SHAPES)
@pytest.mark.parametrize("keep", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("mod", [csr, tflm_prune, dense])
def test_element_formats_round_trip(shape, keep, mod):
    rng = np.random.default_rng(hash((shape, keep, mod.FORMAT)) % 2**32)
    w = rand_w(shape, rng)
    m = rng.random(shape) < keep
    m[0] = False  # an empty filter
    f = mod.encode(w, m, name="l")
    mod.verify(f, shape)
    assert np.array_equal(mod.decode(f), np.where(m, w, 0))
    kept = None if mod is dense else int(m.sum())
    assert byte_count(f) == estimate_bytes(mod.FORMAT, shape, kept=kept)


@pytest.mark.parametrize("shape", [(1, 3, 3, 1), (5, 3, 3, 3), (4, 3, 3, 17), (3, 3, 3, 64)])
@pytest.mark.parametrize("keep", [0.0, 0.5, 1.0])
def test_pattern_round_trip(shape, keep):
    rng = np.random.default_rng(hash((shape, keep)) % 2**32)
    w = rand_w(shape, rng)
    kk = rng.random((shape[0], shape[3])) < keep
    m = pattern.pattern_mask(w, kk)
    p = pattern.encode(w, m)
    pattern.verify(p, shape)
    assert np.array_equal(pattern.decode(p), np.where(m, w, 0))
    assert p.n_kernels == int(kk.sum())
    assert byte_count(p) == estimate_bytes("pattern", shape, kept=int(kk.sum()))
    # each kept kernel keeps exactly 4 weights, including the centre
    per_kernel = m.sum(axis=(1, 2))
    assert set(np.unique(per_kernel)) <= {0, 4}
    assert (m[:, 1, 1, :] == kk).all()


def test_pattern_mask_picks_largest_pattern():
    w = np.zeros((1, 3, 3, 1), np.int8)
    w[0, :, :, 0] = [[1, 1, 9], [1, 1, 9], [1, 1, 1]]
    m = pattern.pattern_mask(w)[0, :, :, 0]
    assert np.flatnonzero(m).tolist() == list(pattern.PATTERNS[5])  # top-right square


def test_fully_kept_equals_dense_and_all_pruned():
    w = rand_w((4, 3, 3, 8))
    for mod in (fwcs, csr, tflm_prune):
        assert np.array_equal(mod.decode(mod.encode(w, np.ones(w.shape, bool))), w)
        f0 = mod.encode(w, np.zeros(w.shape, bool))
        assert not mod.decode(f0).any()
    f0 = fwcs.encode(w, np.zeros((4, 3, 3), bool))
    assert len(f0.arr) == 0 and f0.fidx.tolist() == [0] * 5


def test_mask_none_keeps_nonzeros():
    w = np.zeros((2, 3, 3, 4), np.int8)
    w[1, 2, 0, 3] = -7
    f = fwcs.encode(w)
    assert f.cptr.tolist() == [6 * 4] and f.fidx.tolist() == [0, 0, 1]
    assert f.arr.tolist() == [0, 0, 0, -7]
    c = csr.encode(w)
    assert c.col.tolist() == [6 * 4 + 3] and c.values.tolist() == [-7]


def test_generic_dispatch():
    w = rand_w((3, 3, 3, 5))
    for name in ("fwcs", "csr", "dense", "tflm_prune"):
        f = encode(name, w)
        verify(f, w.shape)
        assert np.array_equal(decode(f), w)
    with pytest.raises(FormatError, match="unknown format"):
        encode("nope", w)
    with pytest.raises(FormatError, match="kept count"):
        estimate_bytes("fwcs", w.shape)


# ----------------------------------------------------------------------------- refusals
def test_fwcs_refuses_non_constant_element_mask():
    w = rand_w((2, 3, 3, 4))
    m = np.ones(w.shape, bool)
    m[1, 2, 1, 3] = False
    with pytest.raises(FormatError, match=r"not constant within filterlet \(o=1, kh=2, kw=1\)"):
        fwcs.encode(w, m)


def test_fwcs_refuses_bad_mask_shape_and_dtype():
    w = rand_w((2, 3, 3, 4))
    with pytest.raises(FormatError, match="mask shape"):
        fwcs.encode(w, np.ones((2, 3), bool))
    with pytest.raises(FormatError, match="int8"):
        fwcs.encode(w.astype(np.int16))


def test_pattern_refuses_non_library_and_non_3x3():
    w = np.ones((1, 3, 3, 2), np.int8)
    m = np.zeros(w.shape, bool)
    m[0, 0, 0, 1] = m[0, 2, 2, 1] = m[0, 1, 1, 1] = m[0, 0, 2, 1] = True
    with pytest.raises(FormatError, match=r"kernel \(o=0, i=1\) keeps positions \[0, 2, 4, 8\]"):
        pattern.encode(w, m)
    with pytest.raises(FormatError, match="only 3x3"):
        pattern.encode(np.ones((1, 5, 5, 2), np.int8))
    with pytest.raises(FormatError, match="only 3x3"):
        pattern.bytes_from_counts((4, 1, 1, 2), 1)


# ----------------------------------------------------------------------------- index widths
def test_fwcs_index_widths():
    f = fwcs.encode(np.ones((4, 3, 3, 16), np.int8))        # max cptr 128, 36 filterlets
    assert (f.cptr.dtype, f.fidx.dtype) == (np.uint8, np.uint8)
    f = fwcs.encode(np.ones((4, 3, 3, 32), np.int8))        # max cptr 256 -> uint16
    assert (f.cptr.dtype, f.fidx.dtype) == (np.uint16, np.uint8)
    f = fwcs.encode(np.ones((32, 3, 3, 1), np.int8))        # 288 filterlets -> fidx uint16
    assert (f.cptr.dtype, f.fidx.dtype) == (np.uint8, np.uint16)
    # the width depends on the shape, not on which filterlets survived
    m = np.zeros((4, 3, 3), bool)
    m[:, 0, 0] = True
    assert fwcs.encode(np.ones((4, 3, 3, 32), np.int8), m).cptr.dtype == np.uint16


def test_fwcs_uint16_overflow_raises():
    with pytest.raises(FormatError, match=r"layer 'big': cptr .* 65536, which overflows uint16"):
        fwcs.encode(np.ones((1, 3, 3, 8192), np.int8), name="big")   # (9-1)*8192
    fwcs.encode(np.ones((1, 3, 3, 8191), np.int8))                     # 65528 fits
    with pytest.raises(FormatError, match=r"layer 'wide': fidx .* 73728"):
        fwcs.encode(np.ones((8192, 3, 3, 1), np.int8), name="wide")
    with pytest.raises(FormatError, match="overflows uint16"):
        fwcs.bytes_from_counts((8192, 3, 3, 1), 70000)


def test_csr_and_pattern_index_widths():
    c = csr.encode(np.ones((2, 1, 1, 256), np.int8))        # col max 255, nnz 512
    assert (c.col.dtype, c.rowptr.dtype) == (np.uint8, np.uint16)
    c = csr.encode(np.ones((2, 1, 1, 257), np.int8) * np.eye(1, 257, dtype=np.int8))
    assert (c.col.dtype, c.rowptr.dtype) == (np.uint16, np.uint8)
    with pytest.raises(FormatError, match=r"layer 'x': col .* 65536"):
        csr.encode(np.ones((1, 65537), np.int8), name="x")
    assert csr.encode(np.ones((2, 40000), np.int8)).rowptr.dtype == np.uint32  # baseline widens
    assert csr.bytes_from_counts((2, 40000), 80000).index == 80000 * 2 + 3 * 4
    p = pattern.encode(np.zeros((2, 3, 3, 300), np.int8))
    assert (p.kidx.dtype, p.kptr.dtype) == (np.uint16, np.uint8)
    with pytest.raises(FormatError, match=r"kidx .* 65536"):
        pattern.bytes_from_counts((1, 3, 3, 65537), 3)


# ----------------------------------------------------------------------------- exact bytes
def test_quant_definition():
    # bias, requantization multiplier and shift: int32 each, as model.c stores them
    assert quant_bytes(1) == 4 + 4 + 4


def test_fwcs_bytes_by_hand():
    # 3 filters, 3x3, C_in 4: keep filterlets (0,0,0), (0,2,2), (2,1,1)
    w = rand_w((3, 3, 3, 4))
    m = np.zeros((3, 3, 3), bool)
    m[0, 0, 0] = m[0, 2, 2] = m[2, 1, 1] = True
    f = fwcs.encode(w, m)
    assert f.cptr.tolist() == [0, 32, 16] and f.fidx.tolist() == [0, 2, 2, 3]
    assert f.arr.tolist() == w[0, 0, 0].tolist() + w[0, 2, 2].tolist() + w[2, 1, 1].tolist()
    # weights 3*4; index cptr 3*1 + fidx 4*1; quant 3 * (bias, mult, shift int32);
    # meta: dtmm_conv_params 10*4 + dtmm_requant_params 2 pointers + 2 dtmm_dims 16 each
    # + dtmm_fwcs (3 pointers, 6 int32), 32-bit pointers
    assert byte_count(f) == ByteCount(weights=12, index=7, quant=36, meta=40 + 8 + 32 + 36)
    assert byte_count(f).total == 171
    assert byte_count(f, pointer_bytes=8).meta == 40 + 16 + 32 + 48


def test_fwcs_linear_tail_bytes_by_hand():
    # (2, 40): runs of 16 -> offsets 0, 16, 32 (tail of 8 inputs)
    w = rand_w((2, 40))
    m = np.array([[True, False, True], [False, True, False]])
    f = fwcs.encode(w, m)
    assert f.size == 16 and f.cptr.tolist() == [0, 32, 16] and len(f.arr) == 16 + 8 + 16
    assert f.arr.tolist() == w[0, :16].tolist() + w[0, 32:].tolist() + w[1, 16:32].tolist()
    assert byte_count(f) == ByteCount(weights=40, index=3 + 3, quant=24, meta=116)
    assert fwcs.bytes_from_counts((2, 40), 3, n_tail_filterlets=1) == byte_count(f)
    with pytest.raises(FormatError, match="short tail"):
        fwcs.bytes_from_counts((2, 32), 3, n_tail_filterlets=1)


def test_csr_bytes_by_hand():
    w = rand_w((2, 3, 3, 2))
    m = np.zeros(w.shape, bool)
    m[0, 0, 0, 1] = m[0, 2, 2, 0] = m[1, 1, 1, 1] = True
    c = csr.encode(w, m)
    assert c.col.tolist() == [1, 16, 9] and c.rowptr.tolist() == [0, 2, 3]
    assert byte_count(c) == ByteCount(weights=3, index=3 + 3, quant=24, meta=40 + 8 + 32 + 36)


def test_pattern_bytes_by_hand():
    w = rand_w((2, 3, 3, 3))
    kk = np.array([[True, False, True], [False, False, False]])
    p = pattern.encode(w, pattern.pattern_mask(w, kk))
    assert p.kidx.tolist() == [0, 2] and p.kptr.tolist() == [0, 2, 2]
    # weights 2*4; index pid 2 + kidx 2 + kptr 3; quant 2*12; meta: conv params, requant,
    # 2 dims, dtmm_pattern (5 pointers, 5 int32) + the 8 x 4 uint8 pattern table
    assert byte_count(p) == ByteCount(weights=8, index=7, quant=24, meta=40 + 8 + 32 + 40 + 32)


def test_dense_and_tflm_bytes_by_hand():
    w = rand_w((3, 3, 3, 2))
    d = dense.encode(dense.shrink(w, out_keep=[0, 2]))
    # meta: conv params, requant, in / out / filter dims
    assert byte_count(d) == ByteCount(weights=36, index=0, quant=24, meta=40 + 8 + 3 * 16)
    m = np.zeros(w.shape, bool)
    m.flat[[0, 9, 53]] = True          # 54 elements -> 7 bitmask bytes
    t = tflm_prune.encode(w, m)
    assert t.bitmask.tolist() == [0x80, 0x40, 0, 0, 0, 0, 0x04]
    assert byte_count(t) == ByteCount(weights=3, index=7, quant=36, meta=26)


# ----------------------------------------------------------------------------- verifiers
def _fwcs():
    w = rand_w((3, 3, 3, 4), np.random.default_rng(1))
    m = np.zeros((3, 3, 3), bool)
    m[0, 0, 0] = m[0, 1, 2] = m[2, 2, 2] = True
    return fwcs.encode(w, m, name="c1")


@pytest.mark.parametrize("change, pattern_", [
    (dict(cptr=np.array([0, 36, 32], np.uint8)), r"cptr\[1\] \(byte offset 1\) = 36: out of range"),
    (dict(cptr=np.array([0, 21, 32], np.uint8)), r"cptr\[1\] .* = 21: not a multiple"),
    (dict(cptr=np.array([20, 0, 32], np.uint8)), r"cptr\[1\] .* = 0: not greater"),
    (dict(cptr=np.array([0, 20, 32], np.int32)), r"cptr has dtype int32"),
    (dict(fidx=np.array([0, 2, 1, 3], np.uint8)), r"fidx\[2\] \(byte offset 2\) = 1: decreases"),
    (dict(fidx=np.array([1, 2, 2, 3], np.uint8)), r"fidx\[0\] .* = 1: must be 0"),
    (dict(fidx=np.array([0, 2, 2, 2], np.uint8)), r"fidx\[3\] .* = 2: must equal len\(cptr\) = 3"),
    (dict(fidx=np.array([0, 2, 3], np.uint8)), r"fidx has 3 entries, expected 4"),
    (dict(arr=np.zeros(11, np.int8)), r"arr has 11 values, expected 12"),
    (dict(arr=np.zeros(12, np.uint8)), r"arr has dtype uint8"),
    (dict(size=3), r"size = 3, expected C_in = 4"),
    (dict(shape=(3, 3, 3, 5)), r"shape .* differs from expected"),
])
def test_fwcs_verify_rejects(change, pattern_):
    f = dataclasses.replace(_fwcs(), **change)
    with pytest.raises(FormatError, match=r"fwcs 'c1': " + pattern_):
        fwcs.verify(f, (3, 3, 3, 4))
    with pytest.raises(FormatError):
        fwcs.decode(f)


def test_other_verifiers_reject():
    w = rand_w((2, 3, 3, 3), np.random.default_rng(2))
    c = csr.encode(w, np.abs(w) > 60)
    bad_col = c.col.copy()
    bad_col[0] = 200
    with pytest.raises(FormatError, match=r"col\[0\] \(byte offset 0\) = 200: out of range"):
        csr.verify(dataclasses.replace(c, col=bad_col), w.shape)
    with pytest.raises(FormatError, match="values has"):
        csr.verify(dataclasses.replace(c, values=c.values[:-1]), w.shape)
    p = pattern.encode(w, pattern.pattern_mask(w))
    with pytest.raises(FormatError, match=r"pid\[1\] .* = 9: no such pattern"):
        pid = p.pid.copy()
        pid[1] = 9
        pattern.verify(dataclasses.replace(p, pid=pid), w.shape)
    with pytest.raises(FormatError, match=r"kidx\[0\] .* = 3: out of range"):
        kidx = p.kidx.copy()
        kidx[0] = 3
        pattern.verify(dataclasses.replace(p, kidx=kidx), w.shape)
    with pytest.raises(FormatError, match="4 per kernel"):
        pattern.verify(dataclasses.replace(p, values=p.values[:-1]), w.shape)
    t = tflm_prune.encode(w, np.abs(w) > 60)
    with pytest.raises(FormatError, match="but the bitmask keeps"):
        tflm_prune.verify(dataclasses.replace(t, values=t.values[:-1]), w.shape)
    bits = t.bitmask.copy()
    bits[-1] |= 1                      # 54 elements: the last 2 bits are padding
    with pytest.raises(FormatError, match="padding bits"):
        tflm_prune.verify(dataclasses.replace(t, bitmask=bits), w.shape)
    d = dense.encode(w)
    with pytest.raises(FormatError, match="values has shape"):
        dense.verify(dataclasses.replace(d, values=w[:1]), w.shape)
    with pytest.raises(FormatError, match="expected an FWCS"):
        fwcs.verify(c, w.shape)


# ----------------------------------------------------------------------------- fuzzing
_FIELDS = {FWCS: ("arr", "cptr", "fidx", "size"), CSR: ("values", "col", "rowptr"),
           Pattern: ("values", "pid", "kidx", "kptr"), TFLMPrune: ("dcm", "bitmask", "values"),
           Dense: ("values",)}


def _mutate(fmt, data):
    field = data.draw(st.sampled_from(_FIELDS[type(fmt)]))
    a = getattr(fmt, field)
    if field == "size":
        return dataclasses.replace(fmt, size=data.draw(st.integers(-2, 70000)))
    if not isinstance(a, np.ndarray):
        return fmt
    op = data.draw(st.sampled_from(["set", "set", "insert", "delete", "dtype", "truncate",
                                    "2d", "list"]))
    a = a.copy()
    if op == "set" and a.size:
        i = data.draw(st.integers(0, a.size - 1))
        info = np.iinfo(a.dtype)
        a.flat[i] = data.draw(st.integers(int(info.min), int(info.max)))
    elif op == "insert":
        i = data.draw(st.integers(0, a.size))
        info = np.iinfo(a.dtype)
        a = np.insert(a.reshape(-1), i, data.draw(st.integers(int(info.min), int(info.max))))
        a = a.astype(getattr(fmt, field).dtype)
    elif op == "delete" and a.size:
        a = np.delete(a.reshape(-1), data.draw(st.integers(0, a.size - 1)))
    elif op == "dtype":
        a = a.astype(data.draw(st.sampled_from([np.uint8, np.uint16, np.int8, np.int32])))
    elif op == "truncate":
        a = a.reshape(-1)[:data.draw(st.integers(0, a.size))]
    elif op == "2d":
        a = a.reshape(1, -1)
    elif op == "list":
        a = a.tolist()
    return dataclasses.replace(fmt, **{field: a})


def _fuzz_layer(kind, seed):
    rng = np.random.default_rng(seed)
    shape = [(3, 3, 3, 4), (2, 1, 1, 17), (4, 3, 3, 1), (3, 20)][seed % 4]
    if kind == "pattern":
        shape = (3, 3, 3, 5)
    w = rand_w(shape, rng)
    if kind == "fwcs":
        return fwcs.encode(w, filterlet_mask_for(shape, rng, 0.5))
    if kind == "pattern":
        return pattern.encode(w, pattern.pattern_mask(w, rng.random((3, 5)) < 0.5))
    return FORMAT_MODS[kind].encode(w, rng.random(shape) < 0.4)


FORMAT_MODS = {"fwcs": fwcs, "csr": csr, "pattern": pattern, "tflm_prune": tflm_prune,
               "dense": dense}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(FORMAT_MODS)), seed=st.integers(0, 7), data=st.data())
def test_mutated_arrays_never_crash(kind, seed, data):
    fmt = _fuzz_layer(kind, seed)
    shape = fmt.shape
    for _ in range(data.draw(st.integers(1, 3))):
        fmt = _mutate(fmt, data)
    mod = FORMAT_MODS[kind]
    try:
        mod.verify(fmt, shape)
    except FormatError:
        with pytest.raises(FormatError):
            mod.decode(fmt)
        return
    out = mod.decode(fmt)               # must succeed without any other exception
    assert out.shape == shape and out.dtype == np.int8


@settings(max_examples=60, deadline=None)
@given(c_out=st.integers(1, 40), k=st.sampled_from([1, 3, 5]), c_in=st.integers(1, 40),
       keep=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_estimate_matches_encoding(c_out, k, c_in, keep, seed):
    rng = np.random.default_rng(seed)
    shape = (c_out, k, k, c_in)
    w = rand_w(shape, rng)
    fm = rng.random(shape[:3]) < keep
    assert byte_count(fwcs.encode(w, fm)) == estimate_bytes("fwcs", shape, kept=int(fm.sum()))
    em = rng.random(shape) < keep
    assert byte_count(csr.encode(w, em)) == estimate_bytes("csr", shape, kept=int(em.sum()))
    assert byte_count(tflm_prune.encode(w, em)) == estimate_bytes("tflm_prune", shape,
                                                                  kept=int(em.sum()))


# ----------------------------------------------------------------------------- benchmark script
def _bench():
    import importlib.util
    import sys
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_storage.py"
    spec = importlib.util.spec_from_file_location("bench_storage", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_storage"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_bench_replace_section_keeps_the_rest(tmp_path):
    from dtmm.benchmd import write_section
    start = "<!-- bench_storage:start -->"
    out = tmp_path / "BENCHMARKS.md"
    write_section("bench_storage", "first", out)
    assert start in out.read_text() and "first" in out.read_text()
    out.write_text("# top\n\n" + out.read_text().split("\n", 2)[2] + "\n## other\nkeep me\n")
    write_section("bench_storage", "second", out)
    text = out.read_text()
    assert "second" in text and "first" not in text and "keep me" in text and "# top" in text
    assert text.count(start) == 1 and list(tmp_path.iterdir()) == [out]


def test_bench_fwcs_beats_csr_at_90():
    body, summary = _bench().run(seed=1)
    assert all(r > 0.3 for r in summary["fwcs_vs_csr_90"])
    assert "Comparison with the paper" in body
