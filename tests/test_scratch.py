"""The scratch formulas of dtmm.codegen.scratch equal every kernel's C *_get_buffer_size.

On the host for each ISA path (plain C, and the DSP / MVE paths with their intrinsics
emulated; 64-bit pointers) and on each Cortex-M target under QEMU (32-bit pointers),
over a grid of shapes. Integers: exact equality.
"""
import itertools

import pytest

from dtmm.codegen import scratch as S
from dtmm.runtime import kernels_host as K

from _helpers import needs_qemu

CP = [1, 1, 0, 0, 0, 0, 0, 0, -128, 127]

_HOST_DEFINES = {"scalar": (), "dsp": ("DTMM_EMULATE_DSP",), "mve": ("DTMM_EMULATE_MVE",)}


def _grid():
    """(driver op, driver ints, formula thunk(isa, pointer_bytes)) over a grid of shapes."""
    cases = []
    for c, k, o in itertools.product((1, 3, 16, 17, 64, 256), (1, 3, 5), (1, 8, 33)):
        ints = [1, 8, 8, c, o, k, k, c]
        cases.append((K.OP_CONV, ints,
                      lambda isa, pb, c=c, k=k, o=o: S.conv_scratch(isa, k=k * k * c, c_out=o)))
    for c, (kh, kw), o in itertools.product((1, 5, 16, 32, 64, 100, 256), ((1, 1), (3, 3), (5, 5), (1, 3)),
                                            (1, 16, 33)):
        ints = [1, 8, 8, c, 1, 8, 8, o] + CP + [c, kh, kw, o, 8, 8]
        cases.append((K.OP_CONV_FWCS, ints,
                      lambda isa, pb, c=c, kh=kh, kw=kw, o=o:
                      S.fwcs_scratch(isa, pb, kh=kh, kw=kw, c_out=o, size=c)))
    for (h, w), c, k, o in itertools.product(((1, 1), (5, 7), (28, 28)), (1, 3, 64), (1, 3, 5),
                                             (1, 16)):
        ints = [1, h, w, c, 1, h, w, o] + CP + [k, k, c, o, 8, 16]
        cases.append((K.OP_CONV_CSR, ints,
                      lambda isa, pb, h=h, w=w, c=c, k=k, o=o:
                      S.csr_scratch(in_h=h, in_w=w, c_in=c, kh=k, kw=k, c_out=o)))
    for (h, w), c, o, npat in itertools.product(((1, 1), (2, 9), (4, 4), (28, 28), (3, 40)),
                                                (1, 16, 64), (1, 16), (1, 8)):
        ints = [1, h, w, c, 1, h, w, o] + CP + [npat, c, o, 16, 16]
        cases.append((K.OP_CONV_PATTERN, ints,
                      lambda isa, pb, h=h, w=w, c=c, o=o, npat=npat:
                      S.pattern_scratch(in_h=h, in_w=w, c_in=c, c_out=o, n_patterns=npat)))
    return cases


@pytest.mark.parametrize("isa", S.ISA_PATHS)
def test_formulas_equal_c_on_host(isa):
    import ctypes

    kernels = K.load_kernels(_HOST_DEFINES[isa])
    pb = ctypes.sizeof(ctypes.c_void_p)
    for op, ints, formula in _grid():
        assert kernels.scratch_size(op, ints) == formula(isa, pb), (op, ints, isa)


@needs_qemu
@pytest.mark.parametrize("target,isa", [("cortex-m4", "dsp"), ("cortex-m7", "dsp"),
                                        ("cortex-m55", "mve"), ("cortex-m55", "dsp")])
def test_formulas_equal_c_on_target(target, isa):
    from dtmm.codegen.arena import isa_path

    simd = "auto" if isa == "mve" else ("dsp" if target == "cortex-m55" else "auto")
    assert isa_path(target, simd) == isa
    kernels = K.TargetKernels(target, simd=simd)
    grid = _grid()
    got = kernels.scratch_sizes([(op, ints) for op, ints, _ in grid])
    want = [formula(isa, 4) for _, _, formula in grid]
    assert got == want


def test_fwcs_pointer_table_uses_target_pointer_width():
    """On 32-bit targets the FWCS pointer table is R * KH * KW * 4 bytes, half the host's."""
    host = S.fwcs_scratch("mve", 8, kh=3, kw=3, c_out=16, size=32)
    m55 = S.fwcs_scratch("mve", 4, kh=3, kw=3, c_out=16, size=32)
    assert host - m55 == S.FWCS_REUSE * 9 * 4
