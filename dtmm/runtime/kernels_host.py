"""The C kernels of ``dtmm/csrc`` built into a host shared library, called through ctypes.

Every wrapper takes NumPy arrays in dtmm's layouts (NHWC int8 activations, OHWI int8
weights, int32 bias / multiplier / shift) and returns a new int8 array. The library
is compiled with ``gcc -O2 -shared -fPIC`` once per (sources, compiler, flags) and
cached by content hash in ``$DTMM_CACHE_DIR/kernels`` (default ``~/.cache/dtmm``).

Compile-time variants are selected with ``defines``: ``DTMM_FWCS_REUSE=2``,
``DTMM_FWCS_VARIANT_NO_ILP``, ``DTMM_FORCE_SCALAR``, and, to run the Cortex-M SIMD
paths on the host with C models of each intrinsic, ``DTMM_EMULATE_DSP`` or
``DTMM_EMULATE_MVE``.

Example:
    >>> import numpy as np
    >>> k = HostKernels()
    >>> x = np.arange(-8, 8, dtype=np.int8).reshape(1, 2, 2, 4)
    >>> w = np.ones((3, 1, 1, 4), np.int8)
    >>> q = np.full(3, 1 << 30, np.int32), np.zeros(3, np.int32)   # multiplier 0.5
    >>> k.conv_s8(x, w, None, *q, ConvParams())[0, 0, 0].tolist()
    [-13, -13, -13]
"""
from __future__ import annotations

import ctypes as C
import functools
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dtmm.errors import BuildError, DtmmError, InvalidArgument, InvalidType
from dtmm.quant.offsets import input_offset_bias, row_sums

CSRC_DIR = Path(__file__).resolve().parent.parent / "csrc"

__all__ = ["ConvParams", "PoolParams", "KernelFrontEnd", "HostKernels", "TargetKernels",
           "build_host_library", "load_kernels", "conv_output_hw", "KernelError", "CSRC_DIR"]


class KernelError(DtmmError):
    """A kernel rejected its arguments (negative dtmm_status)."""


# ----------------------------------------------------------------------------- params


@dataclass(frozen=True)
class ConvParams:
    """Geometry and output quantization of a conv / depthwise / FC call.

    ``pads`` = (top, bottom, left, right); zero points as zero points (not negated).
    """

    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    in_zp: int = 0
    out_zp: int = 0
    act_min: int = -128
    act_max: int = 127


@dataclass(frozen=True)
class PoolParams:
    """Geometry and clamp of a pooling call; ``pads`` = (top, bottom, left, right)."""

    filter: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    act_min: int = -128
    act_max: int = 127


def conv_output_hw(h: int, w: int, kh: int, kw: int, stride: Sequence[int],
                   pads: Sequence[int]) -> tuple[int, int]:
    """Output height and width of a conv / pool with explicit pads.

    >>> conv_output_hw(8, 8, 3, 3, (2, 2), (0, 1, 0, 1))
    (4, 4)
    """
    t, b, l, r = pads
    return (h + t + b - kh) // stride[0] + 1, (w + l + r - kw) // stride[1] + 1


# ----------------------------------------------------------------------------- driver ops

# Mirrors dtmm/csrc/driver/dtmm_kernel_driver.h (op codes, ints layout per op).
_NINTS = 32
OP_CONV, OP_CONV_FWCS, OP_CONV_CSR, OP_CONV_PATTERN, OP_DEPTHWISE, OP_FC = 1, 2, 3, 4, 5, 6
OP_MAX_POOL, OP_AVG_POOL, OP_ADD, OP_REQUANT, OP_FWCS_CONFIG = 7, 8, 9, 10, 11
OP_SCRATCH_SIZE, OP_FC_FWCS = 12, 13
_ISA_NAMES = {0: "scalar", 1: "dsp", 2: "mve"}
DRIVER_DIR = CSRC_DIR / "driver"


class _Dims(C.Structure):
    _fields_ = [("n", C.c_int32), ("h", C.c_int32), ("w", C.c_int32), ("c", C.c_int32)]


def _cp_ints(p: ConvParams) -> list[int]:
    return [p.stride[0], p.stride[1], *p.pads, p.in_zp, p.out_zp, p.act_min, p.act_max]


# ----------------------------------------------------------------------------- build


def _cache_dir() -> Path:
    root = os.environ.get("DTMM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "dtmm")
    return Path(root) / "kernels"


def build_host_library(defines: Sequence[str] = (), cc: str = "gcc",
                       build_dir: str | os.PathLike | None = None,
                       extra_flags: Sequence[str] = ()) -> Path:
    """Compile every ``dtmm/csrc/*.c`` into one shared library; return its path.

    The result is cached under a name derived from the sources, the compiler, the
    flags and ``defines`` (``"NAME"`` or ``"NAME=VALUE"``, without ``-D``).
    """
    sources = sorted(CSRC_DIR.glob("*.c")) + [CSRC_DIR / "driver" / "dtmm_kernel_driver.c"]
    headers = sorted(CSRC_DIR.glob("*.h")) + sorted((CSRC_DIR / "driver").glob("*.h"))
    from dtmm.codegen.platform.toolchain import SANITIZE_FLAGS, sanitize_requested, tool_env

    flags = ["-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", *extra_flags,
             *(SANITIZE_FLAGS if sanitize_requested() else ()), *(f"-D{d}" for d in defines)]
    h = hashlib.sha256()
    for f in sources + headers:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(cc.encode())
    h.update("\0".join(flags).encode())
    out_dir = Path(build_dir) if build_dir is not None else _cache_dir()
    out = out_dir / f"libdtmm_kernels_{h.hexdigest()[:16]}.so"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [cc, *flags, "-I", str(CSRC_DIR), "-I", str(CSRC_DIR / "driver"), *map(str, sources), "-o", tmp]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=tool_env())
        if res.returncode != 0:
            raise BuildError(f"kernel build failed ({' '.join(cmd)}):\n{res.stderr}")
        os.replace(tmp, out)  # atomic: concurrent builders agree
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# ----------------------------------------------------------------------------- helpers


def _arr(a, dtype, name: str, ndim: int | None = None) -> np.ndarray:
    """C-contiguous array of exactly ``dtype``; integer inputs must fit."""
    a = np.asarray(a)
    if a.dtype != dtype:
        if not np.issubdtype(a.dtype, np.integer):
            raise InvalidType(f"{name}: expected an integer array ({np.dtype(dtype).name}), got {a.dtype}")
        info = np.iinfo(dtype)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise InvalidArgument(f"{name}: values out of range for {np.dtype(dtype).name}")
        a = a.astype(dtype)
    if ndim is not None and a.ndim != ndim:
        raise InvalidArgument(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(C.c_void_p)


def _index_bits(a: np.ndarray, name: str, allowed: Sequence[int]) -> int:
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16, np.dtype(np.uint32): 32}.get(a.dtype)
    if bits not in allowed:
        raise InvalidType(f"{name}: dtype must be one of "
                        f"{[f'uint{b}' for b in allowed]}, got {a.dtype}")
    return bits


def _dims(shape: Sequence[int]) -> list[int]:
    return [int(v) for v in shape]


def _blob(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or a.size == 0 else np.ascontiguousarray(a)


# ----------------------------------------------------------------------------- front end


class KernelFrontEnd:
    """The kernels' Python API, independent of where they run.

    Subclasses implement :meth:`_invoke` (one kernel call through the C driver):
    :class:`HostKernels` (ctypes, host shared library) and :class:`TargetKernels`
    (firmware on QEMU Cortex-M). The same tests run against every implementation.
    """

    def _invoke(self, op: int, ints: list[int], blobs: list[np.ndarray | None],
                out_shape: tuple[int, ...], out_dtype=np.int8) -> tuple[int, np.ndarray]:
        raise NotImplementedError

    def _run(self, name: str, op: int, ints, blobs, out_shape, out_dtype=np.int8) -> np.ndarray:
        if len(ints) > _NINTS:
            raise InvalidArgument(f"{name}: {len(ints)} int parameters > {_NINTS}")
        ints = [int(v) for v in ints] + [0] * (_NINTS - len(ints))
        status, out = self._invoke(op, ints, [_blob(b) for b in blobs], tuple(out_shape), out_dtype)
        if status != 0:
            raise KernelError(f"{name} returned status {status}")
        return out

    @staticmethod
    def _conv_common(x, bias, mult, shift, c_out: int):
        x = _arr(x, np.int8, "x", 4)
        bias = None if bias is None else _arr(bias, np.int32, "bias", 1)
        mult = _arr(np.broadcast_to(mult, (c_out,)), np.int32, "multiplier")
        shift = _arr(np.broadcast_to(shift, (c_out,)), np.int32, "shift")
        if bias is not None and bias.shape != (c_out,):
            raise InvalidArgument(f"bias: expected shape ({c_out},), got {bias.shape}")
        return x, bias, mult, shift

    @staticmethod
    def _out_shape(x, kh, kw, c_out, p) -> tuple[int, int, int, int]:
        ho, wo = conv_output_hw(x.shape[1], x.shape[2], kh, kw, p.stride, p.pads)
        if ho < 1 or wo < 1:
            raise InvalidArgument(f"empty output {ho}x{wo}")
        return (x.shape[0], ho, wo, c_out)

    # -- dense conv
    def conv_s8(self, x, w, bias, mult, shift, params: ConvParams) -> np.ndarray:
        """Dense conv: x (N,H,W,C_in) int8, w (C_out,KH,KW,C_in) int8 -> (N,Ho,Wo,C_out)."""
        w = _arr(w, np.int8, "w", 4)
        x, bias, mult, shift = self._conv_common(x, bias, mult, shift, w.shape[0])
        oshape = self._out_shape(x, w.shape[1], w.shape[2], w.shape[0], params)
        ints = _dims(x.shape) + _dims(w.shape) + _dims(oshape) + _cp_ints(params)
        return self._run("dtmm_conv_s8", OP_CONV, ints, [x, w, bias, mult, shift], oshape)

    # -- FWCS conv
    def scratch_size(self, op: int, ints) -> int:
        """The scratch bytes this build's kernel asks for (its ``*_get_buffer_size``), for the
        driver op ``op`` with the driver's ``ints`` layout (see dtmm_kernel_driver.c)."""
        ints = [int(v) for v in ints]
        return int(self._run("scratch_size", OP_SCRATCH_SIZE, [int(op)] + ints, [], (1,),
                             np.int32)[0])

    def fwcs_config(self) -> tuple[int, str]:
        """(reuse factor R, ISA path) compiled into this build's FWCS kernel."""
        r, isa = self._run("dtmm_conv_fwcs_s8_config", OP_FWCS_CONFIG, [], [], (2,), np.int32)
        return int(r), _ISA_NAMES[int(isa)]

    def conv_fwcs_s8(self, x, arr, cptr, fidx, kernel_hw: tuple[int, int], bias, mult, shift,
                     params: ConvParams) -> np.ndarray:
        """DTMM operator on FWCS weights (``arr`` int8, ``cptr`` uint8/uint16, ``fidx``
        uint8/uint16/uint32 with C_out + 1 entries). The kernel takes the per-filter
        ``bias - in_zp * sum(kept w)`` (:func:`dtmm.quant.offsets.input_offset_bias`),
        computed here as the code generator does."""
        x = _arr(x, np.int8, "x", 4)
        c_in = x.shape[3]
        arr = _arr(arr, np.int8, "arr", 1)
        cptr, fidx = np.ascontiguousarray(cptr), np.ascontiguousarray(fidx)
        cb = _index_bits(cptr, "cptr", (8, 16))
        fb = _index_bits(fidx, "fidx", (8, 16, 32))
        c_out = fidx.size - 1
        if (c_out < 1 or int(fidx[0]) != 0 or int(fidx[-1]) != cptr.size
                or arr.size != cptr.size * c_in):
            raise InvalidArgument(f"FWCS arrays inconsistent: {fidx.size} fidx entries, last "
                             f"{int(fidx[-1]) if fidx.size else None}, {cptr.size} cptr entries, "
                             f"{arr.size} weights with C_in={c_in}")
        kk = kernel_hw[0] * kernel_hw[1]
        if cptr.size and (np.any(cptr.astype(np.int64) % c_in) or int(cptr.max()) >= kk * c_in):
            raise InvalidArgument("cptr entries must be multiples of C_in below KH*KW*C_in")
        x, bias, mult, shift = self._conv_common(x, bias, mult, shift, c_out)
        oshape = self._out_shape(x, *kernel_hw, c_out, params)
        ints = (_dims(x.shape) + _dims(oshape) + _cp_ints(params)
                + [c_in, kernel_hw[0], kernel_hw[1], c_out, cb, fb])
        offset = input_offset_bias(bias, row_sums(arr, fidx, c_in), params.in_zp, "fwcs")
        return self._run("dtmm_conv_fwcs_s8", OP_CONV_FWCS, ints,
                         [x, arr, cptr, fidx, offset, mult, shift], oshape)

    # -- CSR conv
    def conv_csr_s8(self, x, values, col, rowptr, kernel_hw: tuple[int, int], bias, mult, shift,
                    params: ConvParams) -> np.ndarray:
        """CSR conv: ``values`` int8, ``col`` uint8/uint16 (index in the flattened OHWI
        filter), ``rowptr`` uint8/uint16/uint32 (C_out + 1)."""
        x = _arr(x, np.int8, "x", 4)
        values = _arr(values, np.int8, "values", 1)
        col, rowptr = np.ascontiguousarray(col), np.ascontiguousarray(rowptr)
        cb = _index_bits(col, "col", (8, 16))
        rb = _index_bits(rowptr, "rowptr", (8, 16, 32))
        c_out, c_in = rowptr.size - 1, x.shape[3]
        if col.size != values.size or int(rowptr[-1]) != values.size:
            raise InvalidArgument("CSR arrays inconsistent")
        if col.size and int(col.max()) >= kernel_hw[0] * kernel_hw[1] * c_in:
            raise InvalidArgument("CSR column index out of range")
        x, bias, mult, shift = self._conv_common(x, bias, mult, shift, c_out)
        oshape = self._out_shape(x, *kernel_hw, c_out, params)
        ints = (_dims(x.shape) + _dims(oshape) + _cp_ints(params)
                + [kernel_hw[0], kernel_hw[1], c_in, c_out, cb, rb])
        offset = input_offset_bias(bias, row_sums(values, rowptr), params.in_zp, "csr")
        return self._run("dtmm_conv_csr_s8", OP_CONV_CSR, ints,
                         [x, values, col, rowptr, offset, mult, shift], oshape)

    # -- pattern conv
    def conv_pattern_s8(self, x, patterns, kptr, kchan, kpat, values, bias, mult, shift,
                        params: ConvParams) -> np.ndarray:
        """3x3 pattern conv: ``patterns`` uint8 (P, 4) positions, ``kptr`` uint8/uint16/uint32
        (C_out+1), ``kchan`` uint8/uint16 and ``kpat`` uint8 per kept kernel, ``values``
        int8 (n_kernels, 4). Index arrays of another integer dtype are converted to
        uint16 (as before the width fields existed)."""
        x = _arr(x, np.int8, "x", 4)
        patterns = _arr(patterns, np.uint8, "patterns", 2)
        kptr = np.ascontiguousarray(kptr)
        if kptr.dtype not in (np.uint8, np.uint16, np.uint32):
            kptr = _arr(kptr, np.uint16, "kptr", 1)
        kchan = np.ascontiguousarray(kchan)
        if kchan.dtype not in (np.uint8, np.uint16):
            kchan = _arr(kchan, np.uint16, "kchan", 1)
        kpb = _index_bits(kptr, "kptr", (8, 16, 32))
        kcb = _index_bits(kchan, "kchan", (8, 16))
        kpat = _arr(kpat, np.uint8, "kpat", 1)
        values = _arr(values, np.int8, "values").reshape(-1)
        c_out, c_in = kptr.size - 1, x.shape[3]
        nk = kchan.size
        if (patterns.shape[1] != 4 or kpat.size != nk or values.size != 4 * nk or int(kptr[-1]) != nk
                or (nk and (int(kchan.max()) >= c_in or int(kpat.max()) >= patterns.shape[0]))
                or (patterns.size and int(patterns.max()) > 8)):
            raise InvalidArgument("pattern arrays inconsistent")
        x, bias, mult, shift = self._conv_common(x, bias, mult, shift, c_out)
        oshape = self._out_shape(x, 3, 3, c_out, params)
        ints = (_dims(x.shape) + _dims(oshape) + _cp_ints(params)
                + [patterns.shape[0], c_in, c_out, kpb, kcb])
        offset = input_offset_bias(bias, row_sums(values, kptr, 4), params.in_zp, "pattern")
        return self._run("dtmm_conv_pattern_s8", OP_CONV_PATTERN, ints,
                         [x, patterns, kptr, kchan, kpat, values, offset, mult, shift], oshape)

    # -- depthwise
    def depthwise_conv_s8(self, x, w, bias, mult, shift, params: ConvParams,
                          depth_multiplier: int = 1) -> np.ndarray:
        """Depthwise conv: w (1, KH, KW, C_in * depth_multiplier)."""
        w = _arr(w, np.int8, "w", 4)
        x, bias, mult, shift = self._conv_common(x, bias, mult, shift, w.shape[3])
        oshape = self._out_shape(x, w.shape[1], w.shape[2], w.shape[3], params)
        ints = _dims(x.shape) + _dims(w.shape) + _dims(oshape) + _cp_ints(params) + [depth_multiplier]
        return self._run("dtmm_depthwise_conv_s8", OP_DEPTHWISE, ints, [x, w, bias, mult, shift], oshape)

    # -- fully connected
    def fully_connected_s8(self, x, w, bias, mult, shift, in_zp: int, out_zp: int,
                           act_min: int = -128, act_max: int = 127) -> np.ndarray:
        """FC: x (B, I) int8, w (O, I) int8; ``mult``/``shift`` scalars (per-tensor) or (O,)."""
        x = _arr(x, np.int8, "x", 2)
        w = _arr(w, np.int8, "w", 2)
        per_channel = int(np.ndim(mult) > 0 and np.size(mult) > 1)
        mult = _arr(np.atleast_1d(mult), np.int32, "multiplier")
        shift = _arr(np.atleast_1d(shift), np.int32, "shift")
        bias = None if bias is None else _arr(bias, np.int32, "bias", 1)
        cp = ConvParams(in_zp=in_zp, out_zp=out_zp, act_min=act_min, act_max=act_max)
        ints = _cp_ints(cp) + [per_channel, x.shape[0], x.shape[1], w.shape[0]]
        return self._run("dtmm_fully_connected_s8", OP_FC, ints, [x, w, bias, mult, shift],
                         (x.shape[0], w.shape[0]))

    # -- compressed fully connected
    def fully_connected_fwcs_s8(self, x, arr, cptr, fidx, size: int, bias, mult, shift,
                                in_zp: int, out_zp: int, act_min: int = -128,
                                act_max: int = 127) -> np.ndarray:
        """FC on FWCS weights (linear layout, runs of ``size`` inputs): x (B, I) int8;
        ``fidx`` has O + 1 entries. The kernel takes ``bias - in_zp * sum(kept w)``
        (:func:`dtmm.quant.offsets.input_offset_bias`), computed here as the code generator
        does. ``mult``/``shift`` scalars (per-tensor) or (O,)."""
        x = _arr(x, np.int8, "x", 2)
        n_in = x.shape[1]
        arr = _arr(arr, np.int8, "arr", 1)
        cptr, fidx = np.ascontiguousarray(cptr), np.ascontiguousarray(fidx)
        cb = _index_bits(cptr, "cptr", (8, 16))
        fb = _index_bits(fidx, "fidx", (8, 16, 32))
        o_n, size = fidx.size - 1, int(size)
        npos = -(-n_in // size) if size > 0 else 0
        lens = np.minimum(size, n_in - cptr.astype(np.int64))
        if (o_n < 1 or size < 1 or int(fidx[0]) != 0 or int(fidx[-1]) != cptr.size
                or np.any(cptr.astype(np.int64) % size) or np.any(lens < 1)
                or arr.size != int(lens.sum())):
            raise ValueError("FWCS FC arrays inconsistent")
        per_channel = int(np.ndim(mult) > 0 and np.size(mult) > 1)
        mult = _arr(np.atleast_1d(mult), np.int32, "multiplier")
        shift = _arr(np.atleast_1d(shift), np.int32, "shift")
        rows = np.repeat(np.arange(o_n), np.diff(fidx.astype(np.int64)))
        sums = np.bincount(np.repeat(rows, lens), weights=arr.astype(np.float64), minlength=o_n)
        offset = input_offset_bias(bias, np.rint(sums).astype(np.int64), in_zp, "fwcs fc")
        cp = ConvParams(in_zp=in_zp, out_zp=out_zp, act_min=act_min, act_max=act_max)
        ints = _cp_ints(cp) + [per_channel, x.shape[0], n_in, size, 1, npos, o_n, cb, fb]
        return self._run("dtmm_fully_connected_fwcs_s8", OP_FC_FWCS, ints,
                         [x, arr, cptr, fidx, offset, mult, shift], (x.shape[0], o_n))

    # -- pools
    def _pool(self, name: str, op: int, x, pp: PoolParams) -> np.ndarray:
        x = _arr(x, np.int8, "x", 4)
        ho, wo = conv_output_hw(x.shape[1], x.shape[2], *pp.filter, pp.stride, pp.pads)
        oshape = (x.shape[0], ho, wo, x.shape[3])
        ints = [*pp.filter, *pp.stride, *pp.pads, pp.act_min, pp.act_max] + _dims(x.shape) + _dims(oshape)
        return self._run(name, op, ints, [x], oshape)

    def max_pool_s8(self, x, params: PoolParams) -> np.ndarray:
        return self._pool("dtmm_max_pool_s8", OP_MAX_POOL, x, params)

    def avg_pool_s8(self, x, params: PoolParams) -> np.ndarray:
        return self._pool("dtmm_avg_pool_s8", OP_AVG_POOL, x, params)

    # -- add
    def add_s8(self, a, b, in1_zp: int, in2_zp: int, out_zp: int, add_params: dict,
               act_min: int = -128, act_max: int = 127) -> np.ndarray:
        """TFLite int8 ADD of equal shapes; ``add_params`` from :func:`dtmm.quant.arith.add_params`."""
        a, b = _arr(a, np.int8, "a"), _arr(b, np.int8, "b")
        if a.shape != b.shape:
            raise InvalidArgument(f"add_s8: shapes differ {a.shape} {b.shape}")
        ap = add_params
        ints = [in1_zp, in2_zp, out_zp, ap["left_shift"], ap["in1_multiplier"], ap["in1_shift"],
                ap["in2_multiplier"], ap["in2_shift"], ap["out_multiplier"], ap["out_shift"],
                act_min, act_max, a.size]
        return self._run("dtmm_add_s8", OP_ADD, ints, [a, b], a.shape)

    # -- requant
    def requantize_s32(self, acc, mult, shift) -> np.ndarray:
        """Elementwise MultiplyByQuantizedMultiplier (broadcasting ``mult``/``shift``)."""
        acc = _arr(acc, np.int32, "acc")
        mult = _arr(np.broadcast_to(mult, acc.shape), np.int32, "multiplier")
        shift = _arr(np.broadcast_to(shift, acc.shape), np.int32, "shift")
        return self._run("dtmm_requantize_s32", OP_REQUANT, [acc.size], [acc, mult, shift],
                         acc.shape, np.int32)


class HostKernels(KernelFrontEnd):
    """The kernels built for the host (one set of ``defines``), called through ctypes."""

    def __init__(self, defines: Sequence[str] = (), cc: str = "gcc",
                 build_dir: str | os.PathLike | None = None) -> None:
        self.defines = tuple(defines)
        self.path = build_host_library(self.defines, cc=cc, build_dir=build_dir)
        from dtmm.codegen.platform.toolchain import check_sanitizer_runtime

        check_sanitizer_runtime()
        self.lib = C.CDLL(str(self.path))
        self.lib.dtmm_driver_call.restype = C.c_int32
        self.lib.dtmm_driver_call.argtypes = [C.c_int32, C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p]
        self.lib.dtmm_driver_scratch_size.restype = C.c_int32
        self.lib.dtmm_driver_scratch_size.argtypes = [C.c_int32, C.c_void_p]
        for fn in ("dtmm_conv_s8_get_buffer_size",):
            getattr(self.lib, fn).restype = C.c_int32
            getattr(self.lib, fn).argtypes = [C.c_void_p, C.c_void_p]

    def _invoke(self, op, ints, blobs, out_shape, out_dtype=np.int8):
        iv = np.array(ints, np.int32)
        ptrs = (C.c_void_p * max(len(blobs), 1))(*[None if b is None else b.ctypes.data for b in blobs])
        need = self.lib.dtmm_driver_scratch_size(op, iv.ctypes.data)
        if need < 0:
            raise KernelError(f"unknown driver op {op}")
        scratch = np.zeros(max(need, 16), np.uint8)
        out = np.zeros(out_shape, out_dtype)
        status = self.lib.dtmm_driver_call(op, iv.ctypes.data, C.cast(ptrs, C.c_void_p),
                                           out.ctypes.data, scratch.ctypes.data)
        return int(status), out

    def conv_s8_buffer_size(self, x_shape, w_shape) -> int:
        """Scratch bytes of dtmm_conv_s8 in this build."""
        return int(self.lib.dtmm_conv_s8_get_buffer_size(C.byref(_Dims(*_dims(x_shape))),
                                                          C.byref(_Dims(*_dims(w_shape)))))


class TargetKernels(KernelFrontEnd):
    """The kernels as Cortex-M firmware on QEMU (dtmm.codegen.platform), same API.

    One firmware per (target, simd, defines) runs each call; ``last_instructions``
    holds the executed-instruction count of the last kernel call (QEMU counts
    instructions, not cycles), ``last_classes`` the same by instruction class and
    ``last_cycles`` the plugin's estimated-cycles model of it (a model, not a measurement).

    >>> k = TargetKernels("cortex-m55")                       # doctest: +SKIP
    >>> k.fwcs_config()                                       # doctest: +SKIP
    (4, 'mve')
    """

    def __init__(self, target: str, simd: str = "auto", defines: Sequence[str] = ()) -> None:
        from dtmm.codegen.platform import build

        self.target, self.simd, self.defines = target, simd, tuple(defines)
        dmap = {}
        for d in self.defines:
            k, _, v = d.partition("=")
            dmap[k] = v if v else None
        sources = sorted(CSRC_DIR.glob("*.c")) + [DRIVER_DIR / "dtmm_kernel_driver.c",
                                                   DRIVER_DIR / "dtmm_driver_main.c"]
        self.artifact = build(target, sources, include_dirs=[CSRC_DIR, DRIVER_DIR], defines=dmap,
                              simd=simd, stack_bytes=16 * 1024)
        self.last_instructions: int | None = None
        #: executed instructions of the last call by class (runner.INSTRUCTION_CLASSES)
        self.last_classes: tuple[int, ...] | None = None
        #: the counting plugin's cycle MODEL of the last call (an estimate, not measured)
        self.last_cycles: int | None = None

    def _invoke(self, op, ints, blobs, out_shape, out_dtype=np.int8):
        (status, out), = self._invoke_many([(op, ints, blobs, out_shape, out_dtype)])
        self.last_instructions = self.last_batch_instructions[0]
        self.last_classes = self.last_batch_classes[0]
        self.last_cycles = self.last_batch_cycles[0]
        return status, out

    def _invoke_many(self, calls) -> list[tuple[int, np.ndarray]]:
        """Several driver calls ``(op, ints, blobs, out_shape, out_dtype)`` in one firmware
        run; sets ``last_batch_instructions`` (one executed-instruction count per call)."""
        from dtmm.codegen.platform import parse_hex, run

        parts = [np.array([0x4B4D5444, len(calls)], np.int64).astype(np.uint32).tobytes()]
        sizes = []
        for op, ints, blobs, out_shape, out_dtype in calls:
            out_bytes = int(np.prod(out_shape, dtype=np.int64)) * np.dtype(out_dtype).itemsize
            sizes.append(out_bytes)
            parts.append(np.array([op, out_bytes, *ints, len(blobs)], np.int64)
                         .astype(np.uint32).tobytes())
            for b in blobs:
                raw = b"" if b is None else b.tobytes()
                parts.append(np.uint32(len(raw)).tobytes() + raw + b"\0" * (-len(raw) % 16))
        res = run(self.artifact, input_bytes=b"".join(parts), timeout_s=120)
        if res.exit_code != 0:
            raise KernelError(f"kernel firmware on {self.target} exited with {res.exit_code}:\n"
                              f"{res.stdout[-2000:]}")
        outs = []
        for i, ((_, _, _, out_shape, out_dtype), nb) in enumerate(zip(calls, sizes)):
            status = int(parse_hex(res.stdout, f"s{i}", np.int32)[0])
            out = (parse_hex(res.stdout, f"o{i}", out_dtype).reshape(out_shape) if nb
                   else np.zeros(out_shape, out_dtype))
            outs.append((status, out))
        self.last_batch_instructions = list(res.instructions or [None] * len(calls))
        self.last_batch_classes = list(res.instruction_classes or [None] * len(calls))
        self.last_batch_cycles = list(res.estimated_cycles or [None] * len(calls))
        return outs

    def scratch_sizes(self, queries) -> list[int]:
        """:meth:`scratch_size` of many ``(op, ints)`` queries in one firmware run."""
        calls = []
        for op, ints in queries:
            iv = [int(op)] + [int(v) for v in ints]
            calls.append((OP_SCRATCH_SIZE, iv + [0] * (_NINTS - len(iv)), [], (1,), np.int32))
        res = self._invoke_many(calls)
        bad = [st for st, _ in res if st != 0]
        if bad:
            raise KernelError(f"scratch_size returned status {bad[0]}")
        return [int(out[0]) for _, out in res]


@functools.lru_cache(maxsize=None)
def load_kernels(defines: tuple[str, ...] = ()) -> HostKernels:
    """A cached :class:`HostKernels` per ``defines`` tuple."""
    return HostKernels(defines)
