"""Kernel scratch sizes as formulas: the Python twin of every ``*_get_buffer_size``.

The arena planner (:mod:`dtmm.codegen.arena`) and the scheduler
(:mod:`dtmm.schedule`) need each kernel's scratch bytes for shapes that were never
compiled; these pure functions give them without a compiler. Each one mirrors its C
function line by line and is tested equal to it over a grid of shapes on every ISA
path, on the host (64-bit pointers) and on the Cortex-M targets under QEMU (32-bit
pointers) (``tests/test_scratch.py``); the generated model re-checks them against its
own build at start-up (``dtmm_model_check()``), so a drift cannot go unnoticed.

Arguments are plain ints: ``isa`` is the kernels' path (``"scalar"``, ``"dsp"``,
``"mve"``, see :func:`dtmm.codegen.arena.isa_path`), ``pointer_bytes`` the target's
pointer width (4 on Cortex-M, 8 on a 64-bit host), ``reuse`` the FWCS kernel's
compile-time reuse factor R (``DTMM_FWCS_REUSE``, 4 unless a benchmark variant sets it).

Example:
    >>> conv_scratch("dsp", k=3 * 3 * 4, c_out=8)          # 2 int16 im2col rows
    144
    >>> fwcs_scratch("mve", 4, kh=3, kw=3, c_out=32, size=16)
    1576
    >>> fwcs_scratch("mve", 8, kh=3, kw=3, c_out=32, size=16)      # 64-bit host emulation
    1720
"""
from __future__ import annotations

from dtmm.errors import BuildError

__all__ = ["conv_scratch", "fwcs_scratch", "csr_scratch", "pattern_scratch", "layer_scratch", "ISA_PATHS",
           "FWCS_REUSE", "CSR_BLOCK", "PATTERN_CHUNK"]

#: The kernels' ISA paths (``dtmm_isa.h``).
ISA_PATHS = ("scalar", "dsp", "mve")
#: ``DTMM_FWCS_REUSE`` default: output pixels per FWCS block (``dtmm_conv_fwcs_s8.c``).
FWCS_REUSE = 4
#: ``FWCS_REC_BYTES`` in ``dtmm_conv_fwcs_s8.c``: one per-call record per live filter.
FWCS_RECORD_BYTES = 32
#: ``CSR_R`` in ``dtmm_conv_csr_s8.c`` (not part of its scratch formula, kept for reference).
CSR_BLOCK = 4
#: ``PAT_CHUNK`` in ``dtmm_conv_pattern_s8.c``: output pixels per accumulator chunk.
PATTERN_CHUNK = 64


def _align4(n: int) -> int:
    return (int(n) + 3) & ~3


def _check_isa(isa: str) -> None:
    if isa not in ISA_PATHS:
        raise BuildError(f"isa must be one of {ISA_PATHS}, got {isa!r}")


def conv_scratch(isa: str, *, k: int, c_out: int) -> int:
    """``dtmm_conv_s8_get_buffer_size``: ``k = KH * KW * C_in``.

    MVE: 3 int8 im2col rows + one int32 offset per filter; DSP: 2 int16 im2col rows;
    plain C (host fast path included): none.

    >>> conv_scratch("mve", k=9, c_out=2), conv_scratch("scalar", k=9, c_out=2)
    (35, 0)
    """
    _check_isa(isa)
    if isa == "mve":
        return 3 * int(k) + 4 * int(c_out)
    if isa == "dsp":
        return 2 * int(k) * 2
    return 0


def fwcs_scratch(isa: str, pointer_bytes: int, *, kh: int, kw: int, c_out: int, size: int,
                 reuse: int = FWCS_REUSE) -> int:
    """``dtmm_conv_fwcs_s8_get_buffer_size``.

    One 32-byte record per filter with filterlets plus a sentinel, the constant-output
    row and a junk row (C_out bytes each, 4-aligned), the in_zp run (``size`` bytes,
    4-aligned), 8 bytes of alignment slack, the block's pointer table (KH*KW x R
    pointers); MVE and DSP add one byte per possible kept filterlet (its kernel
    position, C_out * KH * KW, 4-aligned) for the asm loops, DSP also the int16 copies
    of the block's input runs and of the in_zp run.

    >>> fwcs_scratch("dsp", 4, kh=1, kw=1, c_out=8, size=16)
    512
    """
    _check_isa(isa)
    kk = int(kh) * int(kw)
    n = (FWCS_RECORD_BYTES * (int(c_out) + 1) + 2 * _align4(c_out) + _align4(size) + 8
         + int(pointer_bytes) * int(reuse) * kk)
    if isa in ("mve", "dsp"):
        n += _align4(int(c_out) * kk)        # each kept filterlet's kernel position
    if isa == "dsp":
        n += _align4(2 * int(size) * (int(reuse) * kk + 1))
    return n


def band_row_bytes(w: int, c: int, kw: int) -> int:
    """``dtmm_band_row_bytes``: one padded input row of a band (``(W + 2 KW) * C``)."""
    return (int(w) + 2 * int(kw)) * int(c)


def csr_scratch(*, in_h: int, in_w: int, c_in: int, kh: int, kw: int, c_out: int) -> int:
    """``dtmm_conv_csr_s8_get_buffer_size`` (the same on every ISA path).

    The column -> input offset table (KH*KW*C_in int32), the band (the per-filter
    offsets come precomputed: :mod:`dtmm.quant.offsets`).

    >>> csr_scratch(in_h=8, in_w=8, c_in=4, kh=3, kw=3, c_out=8)
    312
    """
    del in_h, c_out
    return (4 * int(kh) * int(kw) * int(c_in)
            + _align4(int(kh) * band_row_bytes(in_w, c_in, kw)))


def pattern_extra_rows(in_h: int, in_w: int) -> int:
    """``pat_extra_rows``: band rows beyond 3 so that a chunk spans several short rows."""
    e = 16 // (int(in_w) if in_w > 0 else 1)
    if e > int(in_h) - 1:
        return int(in_h) - 1 if in_h > 1 else 0
    return e


def pattern_scratch(*, in_h: int, in_w: int, c_in: int, c_out: int, n_patterns: int) -> int:
    """``dtmm_conv_pattern_s8_get_buffer_size`` (3x3 kernels; every ISA path).

    >>> pattern_scratch(in_h=8, in_w=8, c_in=4, c_out=8, n_patterns=8)
    920
    """
    del c_out
    band = (3 + pattern_extra_rows(in_h, in_w)) * band_row_bytes(in_w, c_in, 3)
    return 16 * int(n_patterns) + 8 * PATTERN_CHUNK + _align4(band)


def layer_scratch(kind: str, isa: str, pointer_bytes: int, *, in_h: int, in_w: int, c_in: int,
                  kh: int, kw: int, c_out: int, n_patterns: int = 8) -> int:
    """Scratch of one layer by kind: ``"conv2d"`` (dense), ``"fwcs"``, ``"csr"``, ``"pattern"``;
    every other op kind (depthwise, fully connected, pools, add, softmax, ...) needs none.
    The one dispatch the arena planner and the scheduler share.

    >>> layer_scratch("fwcs", "mve", 4, in_h=8, in_w=8, c_in=16, kh=3, kw=3, c_out=32)
    1576
    >>> layer_scratch("fully_connected", "dsp", 4, in_h=1, in_w=1, c_in=64, kh=1, kw=1, c_out=10)
    0
    """
    if kind == "conv2d":
        return conv_scratch(isa, k=kh * kw * c_in, c_out=c_out)
    if kind == "fwcs":
        return fwcs_scratch(isa, pointer_bytes, kh=kh, kw=kw, c_out=c_out, size=c_in)
    if kind == "csr":
        return csr_scratch(in_h=in_h, in_w=in_w, c_in=c_in, kh=kh, kw=kw, c_out=c_out)
    if kind == "pattern":
        return pattern_scratch(in_h=in_h, in_w=in_w, c_in=c_in, c_out=c_out, n_patterns=n_patterns)
    _check_isa(isa)
    return 0
