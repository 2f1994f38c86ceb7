"""Tests of dtmm.codegen.platform: build + run on host and QEMU Cortex-M targets."""

from __future__ import annotations

import shutil
import zlib

import numpy as np
import pytest

from dtmm.codegen.platform import (
    FAULT_EXIT_CODE,
    RegionOverflowError,
    RunError,
    build,
    c_array,
    get_target,
    parse_hex,
    run,
    section_sizes,
    size,
)
from dtmm.errors import BuildError

CM_TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55")
ALL_TARGETS = ("host",) + CM_TARGETS

_missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-nm", "arm-none-eabi-size", "qemu-system-arm")
            if shutil.which(t) is None]
needs_qemu = pytest.mark.skipif(
    bool(_missing), reason=f"needs {', '.join(_missing)} (apt-get install qemu-system-arm gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi)")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")


def _skip_unless_available(target: str) -> None:
    if target == "host":
        if shutil.which("gcc") is None:
            pytest.skip("needs a host gcc")
    elif _missing:
        pytest.skip(f"needs {', '.join(_missing)}")


# A multi-purpose probe: the first input byte picks what it does, so one build per
# target serves several tests.
PROBE_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "dtmm_platform.h"
#include "data.h"

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

int main(void) {
    uint8_t in[8] = {0};
    size_t got = dtmm_read_input(in, sizeof in);
    int mode = got ? in[0] : 0;
    if (mode == 1) {                          /* exit code */
        printf("exiting with %d\n", in[1]);
        exit(in[1]);
    } else if (mode == 2) {                   /* undefined instruction */
        printf("about to fault\n");
#if defined(DTMM_TARGET_HOST)
        __builtin_trap();
#else
        __asm__ volatile("udf #0");
#endif
    } else if (mode == 3) {                   /* branch to an address without the Thumb bit */
#if !defined(DTMM_TARGET_HOST)
        void (*volatile f)(void) = (void (*)(void))0x00000100u;
        f();
#endif
    } else if (mode == 4) {                   /* hang */
        for (;;) { __asm__ volatile("" ::: "memory"); }
    } else if (mode == 5) {                   /* counted loop of N iterations */
        uint32_t n = (uint32_t)in[1] | ((uint32_t)in[2] << 8);
        uint32_t acc = 1;
        dtmm_bench_start();
        for (uint32_t i = 0; i < n; ++i) {
            acc = acc * 33u + i;
            __asm__ volatile("" : "+r"(acc));
        }
        dtmm_bench_stop();
        dtmm_bench_start();                   /* second, empty region */
        dtmm_bench_stop();
        printf("acc %lu\n", (unsigned long)acc);
        return 0;
    }
    int32_t dot = 0;
    for (int i = 0; i < DATA_N; ++i) dot += (int32_t)data_a[i] * data_b[i];
    printf("crc %08lx dot %ld\n", (unsigned long)crc32((const uint8_t *)data_a, DATA_N), (long)dot);
    dtmm_print_hex("a", data_a, 8);
    return 0;
}
"""


@pytest.fixture(scope="module")
def probe_src(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, 300, dtype=np.int8)
    b = rng.integers(-128, 128, 300, dtype=np.int8)
    (d / "data.h").write_text(
        "#include <stdint.h>\n#define DATA_N 300\n"
        + c_array("data_a", a, static=True) + "\n" + c_array("data_b", b, static=True) + "\n")
    (d / "probe.c").write_text(PROBE_C)
    expected = f"crc {zlib.crc32(a.tobytes()):08x} dot {int(np.dot(a.astype(np.int64), b))}\n"
    return d, expected, a


@pytest.fixture(scope="module")
def probes(probe_src, tmp_path_factory):
    d, _, _ = probe_src
    out = tmp_path_factory.mktemp("probe_out")
    cache = {}

    def get(target):
        _skip_unless_available(target)
        if target not in cache:
            cache[target] = build(target, [d / "probe.c"], include_dirs=[d], out_dir=out)
        return cache[target]

    return get


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_checksum_identical_on_all_targets(probes, probe_src, target):
    _, expected, a = probe_src
    res = run(probes(target), timeout_s=30)
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0] + "\n" == expected
    np.testing.assert_array_equal(parse_hex(res.stdout, "a", np.int8), a[:8])
    if target == "host":
        assert res.instructions is None
    else:
        assert res.instructions == []  # no start/stop pair executed in this mode
        assert res.total_instructions and res.total_instructions > 1000


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_exit_code_propagates(probes, target):
    res = run(probes(target), input_bytes=bytes([1, 42]), timeout_s=30)
    assert res.exit_code == 42
    assert "exiting with 42" in res.stdout


@pytest.mark.parametrize("target", CM_TARGETS)
@pytest.mark.parametrize("mode", [2, 3], ids=["udf", "bad-branch"])
def test_fault_is_reported(probes, target, mode):
    with pytest.raises(RunError, match=r"faulted on cortex-m.*HardFault") as ei:
        run(probes(target), input_bytes=bytes([mode]), timeout_s=30)
    assert "DTMM_FAULT" in ei.value.stdout
    assert FAULT_EXIT_CODE == 250


def test_host_crash_is_reported(probes):
    with pytest.raises(RunError, match="signal"):
        run(probes("host"), input_bytes=bytes([2]), timeout_s=30)


@pytest.mark.parametrize("target", ["host", "cortex-m55"])
def test_hang_hits_timeout(probes, target):
    with pytest.raises(RunError, match="did not finish within 1.5 s"):
        run(probes(target), input_bytes=bytes([4]), timeout_s=1.5)


@needs_qemu
@pytest.mark.parametrize("target", CM_TARGETS)
def test_instruction_counts_deterministic_and_linear(probes, target):
    art = probes(target)

    def counts(n):
        res = run(art, input_bytes=bytes([5, n & 255, n >> 8]), timeout_s=30)
        assert res.exit_code == 0
        assert len(res.instructions) == 2
        return res.instructions

    c100, c100b, c200, c400 = counts(100), counts(100), counts(200), counts(400)
    assert c100 == c100b                      # exact repeat, run to run
    assert c100[1] == 1                       # empty region: just the call into dtmm_bench_stop
    per_iter = (c200[0] - c100[0]) / 100
    assert c400[0] - c200[0] == 2 * (c200[0] - c100[0])   # exactly linear in N
    assert 2 <= per_iter <= 10


MVE_C = r"""
#include <stdint.h>
#include <stdio.h>
#include "dtmm_platform.h"
#if !defined(__ARM_FEATURE_MVE) || !defined(DTMM_ARCH_MVE)
#error "MVE expected on cortex-m55"
#endif
#include <arm_mve.h>
static const int8_t a[16] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -128};
static const int8_t b[16] = {127, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -128};
int main(void) {
    int32_t scalar = 0;
    for (int i = 0; i < 16; ++i) scalar += a[i] * b[i];
    int32_t v = vmladavq_s8(vld1q_s8(a), vld1q_s8(b));
    printf("mve %ld scalar %ld\n", (long)v, (long)scalar);
    return v == scalar ? 0 : 1;
}
"""

DSP_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <arm_acle.h>
#include "dtmm_platform.h"
#if !defined(__ARM_FEATURE_DSP) || !defined(DTMM_ARCH_DSP) || defined(DTMM_ARCH_MVE)
#error "DSP (and no MVE) expected"
#endif
int main(void) {
    /* lanes (3, -2) . (1000, 7) + 5 = 3000 - 14 + 5 */
    int16x2_t x = (int16x2_t)((uint32_t)(uint16_t)3 | ((uint32_t)(uint16_t)-2 << 16));
    int16x2_t y = (int16x2_t)((uint32_t)1000u | ((uint32_t)7u << 16));
    volatile int32_t acc = 5;
    int32_t r = __smlad(x, y, acc);
    printf("smlad %ld\n", (long)r);
    return r == 2991 ? 0 : 1;
}
"""


@needs_qemu
def test_mve_intrinsic_runs_on_m55(tmp_path):
    (tmp_path / "mve.c").write_text(MVE_C)
    res = run(build("cortex-m55", [tmp_path / "mve.c"], out_dir=tmp_path / "out"), timeout_s=30)
    expected = 127 - 4 + 9 - 16 + 25 - 36 + 49 - 64 + 81 - 100 + 121 - 144 + 169 - 196 + 225 + 128 * 128
    assert res.stdout == f"mve {expected} scalar {expected}\n"
    assert res.exit_code == 0


@needs_qemu
@pytest.mark.parametrize("target,simd", [("cortex-m4", "auto"), ("cortex-m7", "auto"), ("cortex-m55", "dsp")])
def test_smlad_runs_on_dsp_targets(tmp_path, target, simd):
    (tmp_path / "dsp.c").write_text(DSP_C)
    res = run(build(target, [tmp_path / "dsp.c"], out_dir=tmp_path / "out", simd=simd), timeout_s=30)
    assert res.stdout == "smlad 2991\n"
    assert res.exit_code == 0


@needs_gcc
def test_scalar_ablation_defines():
    assert get_target("cortex-m55").isa_defines("scalar") == {"DTMM_FORCE_SCALAR": "1"}
    assert get_target("cortex-m55").isa_defines("dsp") == {"DTMM_ARCH_DSP": "1"}
    assert get_target("cortex-m4").isa_defines() == {"DTMM_ARCH_DSP": "1"}
    assert get_target("host").isa_defines() == {}
    with pytest.raises(BuildError, match="simd"):
        get_target("host").isa_defines("neon")
    with pytest.raises(BuildError, match="unknown target"):
        get_target("cortex-m3")


OVERFLOW_C = r"""
#include <stdint.h>
#include "dtmm_platform.h"
BIG_DECL
int main(void) { return big[SIZE - 1] + (int)(uintptr_t)&big[0] % 3; }
"""


@needs_qemu
@pytest.mark.parametrize(
    "target,decl,size_,region",
    [
        ("cortex-m4", "const uint8_t big[SIZE] = {1};", 5 << 20, "CODE"),
        ("cortex-m55", "const uint8_t big[SIZE] = {1};", 600 << 10, "ITCM"),
        ("cortex-m55", "uint8_t big[SIZE];", 600 << 10, "DTCM"),
        ("cortex-m55", "DTMM_LARGE_CONST const uint8_t big[SIZE] = {1};", 5 << 20, "SRAM"),
    ],
)
def test_region_overflow_names_region(tmp_path, target, decl, size_, region):
    (tmp_path / "big.c").write_text(OVERFLOW_C.replace("BIG_DECL", decl))
    with pytest.raises(RegionOverflowError, match=f"does not fit {target}: region {region} ") as ei:
        build(target, [tmp_path / "big.c"], defines={"SIZE": size_}, out_dir=tmp_path / "out")
    assert ei.value.region == region and ei.value.target == target
    assert 0 < ei.value.overflow_bytes <= size_
    assert "overflowed by" in str(ei.value)


@needs_qemu
def test_large_const_goes_to_m55_sram_and_size_counts_it(tmp_path):
    (tmp_path / "big.c").write_text(OVERFLOW_C.replace("BIG_DECL", "DTMM_LARGE_CONST const uint8_t big[SIZE] = {[SIZE-1] = 7};"))
    art = build("cortex-m55", [tmp_path / "big.c"], defines={"SIZE": 1 << 20}, out_dir=tmp_path / "out")
    assert section_sizes(art)[".dtmm_large_const"] == 1 << 20
    flash, ram = size(art)
    assert flash > 1 << 20 and ram < 64 << 10
    res = run(art, timeout_s=30)
    assert res.exit_code == 7 + (0x31000000 % 3)


@needs_gcc
def test_build_cache_and_errors(tmp_path):
    src = tmp_path / "m.c"
    src.write_text("int main(void) { return N; }\n")
    a1 = build("host", [src], defines={"N": 3}, out_dir=tmp_path / "o")
    a2 = build("host", [src], defines={"N": 3}, out_dir=tmp_path / "o")
    a3 = build("host", [src], defines={"N": 4}, out_dir=tmp_path / "o")
    assert a1.path == a2.path != a3.path
    assert run(a3).exit_code == 4
    src.write_text("int main(void) { return N + ; }\n")
    with pytest.raises(BuildError, match="compile/link failed for target host"):
        build("host", [src], defines={"N": 3}, out_dir=tmp_path / "o")
    with pytest.raises(BuildError, match="not found"):
        build("host", [tmp_path / "missing.c"], out_dir=tmp_path / "o")


@needs_gcc
def test_host_shared_library(tmp_path):
    import ctypes

    src = tmp_path / "lib.c"
    src.write_text("int add3(int x) { return x + 3; }\n")
    art = build("host", [src], kind="shared", out_dir=tmp_path / "o")
    assert art.kind == "shared" and art.path.suffix == ".so"
    assert ctypes.CDLL(str(art.path)).add3(4) == 7
    with pytest.raises(RunError, match="shared library"):
        run(art)


def test_c_array_and_parse_hex_roundtrip():
    x = np.array([[-2147483648, 5], [7, 2147483647]], dtype=np.int32)
    text = c_array("x", x)
    assert "int32_t x[4]" in text and "(-2147483647 - 1)" in text
    payload = x.astype("<i4").tobytes().hex()
    out = f"junk\nDTMM_HEX x {x.nbytes} {payload}\n"
    np.testing.assert_array_equal(parse_hex(out, "x", np.int32, (2, 2)), x)
    with pytest.raises(BuildError, match="no DTMM_HEX output named 'y'"):
        parse_hex(out, "y")
    with pytest.raises(BuildError, match="truncated"):
        parse_hex("DTMM_HEX x 4 0102\n", "x")


STACK_C = r"""
#include <stdio.h>
#include "dtmm_platform.h"
static int rec(volatile int n) { volatile char buf[256]; buf[0] = (char)n; return n ? rec(n - 1) + buf[0] : 0; }
int main(void) { printf("start\n"); printf("%d\n", rec(DEPTH)); return 0; }
"""


@needs_qemu
@pytest.mark.parametrize("target,cause", [("cortex-m4", "MSTKERR"), ("cortex-m55", "STKOF")])
def test_stack_overflow_is_caught(tmp_path, target, cause):
    (tmp_path / "so.c").write_text(STACK_C)
    ok = build(target, [tmp_path / "so.c"], defines={"DEPTH": 10}, out_dir=tmp_path / "o", stack_bytes=8192)
    assert run(ok, timeout_s=30).stdout == "start\n55\n"
    bad = build(target, [tmp_path / "so.c"], defines={"DEPTH": 1000}, out_dir=tmp_path / "o", stack_bytes=8192)
    with pytest.raises(RunError, match=cause) as ei:
        run(bad, timeout_s=30)
    assert ei.value.stdout.startswith("start\n")


SCALAR_C = r"""
#include "dtmm_platform.h"
#if defined(__ARM_FEATURE_MVE) || defined(DTMM_ARCH_MVE) || defined(DTMM_ARCH_DSP) || !defined(DTMM_FORCE_SCALAR)
#error "scalar ablation expected"
#endif
int main(void) { return 0; }
"""


@needs_qemu
def test_scalar_ablation_builds_without_mve(tmp_path):
    (tmp_path / "s.c").write_text(SCALAR_C)
    art = build("cortex-m55", [tmp_path / "s.c"], out_dir=tmp_path / "o", simd="scalar")
    res = run(art, timeout_s=30)
    assert res.exit_code == 0 and res.instructions == [] and res.total_instructions > 0


@needs_gcc
def test_docstring_examples():
    import doctest
    import importlib

    for name in ("targets", "toolchain", "runner", "arrays", "__init__"):
        mod = importlib.import_module("dtmm.codegen.platform" + ("" if name == "__init__" else "." + name))
        result = doctest.testmod(mod)
        assert result.failed == 0, name


# A region of known instructions: its per-class counts, less those of the same call with
# an empty body (the call, prologue and return around it), must come back exactly.
CLASSES_C = r"""
#include "dtmm_platform.h"
static int8_t buf[64] __attribute__((aligned(16)));
#if defined(__ARM_FEATURE_MVE)
#  define MVE_BODY                                                                 \
        "   vldrb.8     q0, [%[p]]\n"      /* MVE load/store x2 */                   \
        "   vstrb.8     q0, [%[p], #16]\n"                                           \
        "   vmladava.s8 r0, q0, q0\n"      /* MVE MAC x2 */                          \
        "   vqrdmulh.s32 q1, q0, q0\n"                                               \
        "   vadd.i32    q1, q1, q0\n"      /* other MVE x3 */                        \
        "   vdup.32     q1, r0\n"                                                    \
        "   vctp.8      r0\n"
#  define VREGS , "q0", "q1"
#else
#  define MVE_BODY ""
#  define VREGS
#endif
#define BODY                                                                       \
        "   movs  r0, #1\n"            /* ALU x4 */                                  \
        "   adds  r0, r0, #2\n"                                                      \
        "   lsls  r0, r0, #1\n"                                                      \
        "   smlad r0, r0, r0, r0\n"                                                  \
        "   ldr   r1, [%[p]]\n"        /* load/store x3 */                           \
        "   str   r1, [%[p], #4]\n"                                                  \
        "   ldrb  r1, [%[p], #8]\n"                                                  \
        "   b     1f\n"                /* branch x1 */                               \
        "1:\n" MVE_BODY
__attribute__((noinline)) static void probe1(int8_t *p)
{
    __asm__ volatile(BODY : : [p] "r"(p) : "r0", "r1", "memory", "cc" VREGS);
}
__attribute__((noinline)) static void probe0(int8_t *p)
{
    __asm__ volatile("" : : [p] "r"(p) : "r0", "r1", "memory", "cc" VREGS);
}
int main(void)
{
    dtmm_bench_start();
    probe1(buf);
    dtmm_bench_stop();
    dtmm_bench_start();
    probe0(buf);
    dtmm_bench_stop();
    return 0;
}
"""


@needs_qemu
@pytest.mark.parametrize("target", CM_TARGETS)
def test_instruction_classes_and_cycle_model(tmp_path, target):
    from dtmm.codegen.platform.runner import INSTRUCTION_CLASSES

    (tmp_path / "cls.c").write_text(CLASSES_C)
    res = run(build(target, [tmp_path / "cls.c"], out_dir=tmp_path / "out"), timeout_s=30)
    assert res.exit_code == 0
    (n1, n0), (c1, c0) = res.instructions, res.instruction_classes
    assert sum(c1) == n1 and sum(c0) == n0
    got = dict(zip(INSTRUCTION_CLASSES, (a - b for a, b in zip(c1, c0))))
    mve = target == "cortex-m55"
    assert got == {"scalar_alu": 4, "load_store": 3, "branch": 1,
                   "mve_load_store": 2 if mve else 0, "mve_mac": 2 if mve else 0,
                   "mve_other": 3 if mve else 0}
    y1, y0 = res.estimated_cycles
    assert 0 < y0 < y1 < 4 * n1
