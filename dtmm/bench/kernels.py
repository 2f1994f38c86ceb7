"""Conv kernel micro-benchmarks on QEMU Cortex-M55 / M7 (DTMM paper Fig. 6(b) and Fig. 14).

For the six conv layers of the CMSIS-NN anchor (3x3, pad 1, stride 1) and four more
shapes (a 1x1, a 5x5, a stride-2 conv and a 3x3 depthwise layer) at 30 / 50 / 70 / 90 /
95 % of the weights pruned, every kernel of ``dtmm/csrc`` runs as firmware on QEMU
(:class:`dtmm.runtime.kernels_host.TargetKernels`) and the executed instructions of
the kernel call are recorded, by instruction class, with the counting plugin's
estimated-cycles model (:mod:`dtmm.bench.cycles`) beside them:

=================  ==========================================================================
method             kernel and weights
=================  ==========================================================================
``dense``          ``dtmm_conv_s8`` on the unpruned layer (ratio 0); depthwise layers:
                   ``dtmm_depthwise_conv_s8`` (the only method there)
``dtmm``           ``dtmm_conv_fwcs_s8`` (the DTMM operator), filterlet pruning, reuse R=2/4/8
``dtmm_noilp``     the same kernel built with ``DTMM_FWCS_VARIANT_NO_ILP`` (paper "w/o-ins")
``csr``            ``dtmm_conv_csr_s8``, element (unstructured) pruning at the same share
``pattern``        ``dtmm_conv_pattern_s8``, PatDNN-style 4-of-9 patterns + kernel removal (3x3)
``structured``     ``dtmm_conv_s8`` on a smaller dense layer: whole filters removed
=================  ==========================================================================

The ablations (R = 2 / 8, no-ilp, scalar, the M55's DSP builds) run on the anchor
layers at 50 and 90 %. Weights are seeded Gaussian int8, magnitude-pruned with
:mod:`dtmm.prune` granularities and encoded with :mod:`dtmm.formats`.

Every kernel output is compared bit for bit with a NumPy reference of the dense
convolution of the pruned-with-zeros weights before its count is kept; a mismatch
raises :class:`KernelMismatchError`, so a wrong kernel never produces a number.

The counts are **executed instructions counted by QEMU, not cycles**: QEMU does not
model pipelines, dual issue or memory wait states. The CMSIS-NN column is a figure
measured elsewhere (:data:`CMSIS_NN_SOURCE`), not rerun by this benchmark.

Example:
    >>> from dtmm.bench.kernels import run_kernel_bench       # doctest: +SKIP
    >>> b = run_kernel_bench(quick=True)                        # doctest: +SKIP
    >>> r = b.get("cortex-m55", "dtmm_r4", b.layers[0], b.ratios[0])   # doctest: +SKIP
    >>> r.instructions, round(r.macs_per_insn, 2)               # doctest: +SKIP
    (120454, 3.92)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from dtmm.bench import cycles as cyc
from dtmm.errors import DtmmError
from dtmm.formats import csr, dense, fwcs, pattern
from dtmm.prune.granularity import ELEMENT, FILTER, FILTERLET, PATTERN
from dtmm.quant.arith import multiply_by_quantized_multiplier, quantize_multiplier
from dtmm.runtime.kernels_host import ConvParams

__all__ = ["Layer", "LAYERS", "ANCHOR_LAYERS", "EXTRA_LAYERS", "RATIOS", "ABLATION_RATIOS",
           "QUICK_LAYER", "QUICK_RATIO", "CONFIGS", "CMSIS_NN_ANCHOR", "CMSIS_NN_SOURCE", "GOALS",
           "KernelConfig", "KernelRow", "KernelBench", "KernelMismatchError", "run_kernel_bench",
           "render_markdown", "add_cli_arguments", "run_cli", "main"]


@dataclass(frozen=True, order=True)
class Layer:
    """A benchmarked layer: NHWC input ``h x w x c_in``, ``c_out`` filters of ``k x k``,
    ``stride``, "same" padding (``k // 2``); ``depthwise``: C_out = C_in, multiplier 1.

    >>> Layer(16, 16, 32, 64, stride=2).name, Layer(8, 8, 64, 64, depthwise=True).name
    ('16x16x32 -> 64 (3x3 s2)', '8x8x64 dw (3x3)')
    >>> Layer(32, 32, 16, 32).out_pixels, Layer(16, 16, 32, 64, stride=2).out_pixels
    (1024, 64)
    """

    h: int
    w: int
    c_in: int
    c_out: int
    k: int = 3
    stride: int = 1
    depthwise: bool = False

    @property
    def name(self) -> str:
        if self.depthwise:
            return f"{self.h}x{self.w}x{self.c_in} dw ({self.k}x{self.k})"
        base = f"{self.h}x{self.w}x{self.c_in} -> {self.c_out}"
        if (self.k, self.stride) == (3, 1):
            return base
        return base + f" ({self.k}x{self.k}{' s%d' % self.stride if self.stride > 1 else ''})"

    @property
    def pads(self) -> tuple[int, int, int, int]:
        p = self.k // 2
        return (p, p, p, p)

    @property
    def out_hw(self) -> tuple[int, int]:
        p = self.k // 2
        return ((self.h + 2 * p - self.k) // self.stride + 1,
                (self.w + 2 * p - self.k) // self.stride + 1)

    @property
    def out_pixels(self) -> int:
        ho, wo = self.out_hw
        return ho * wo

    @property
    def dense_weights(self) -> int:
        return self.k * self.k * (self.c_in if not self.depthwise else 1) * self.c_out

    @property
    def dense_macs(self) -> int:
        return self.dense_weights * self.out_pixels


#: The six layers of the CMSIS-NN anchor (DESIGN.md): 3x3, pad 1, stride 1.
ANCHOR_LAYERS: tuple[Layer, ...] = (
    Layer(32, 32, 16, 32), Layer(16, 16, 32, 64), Layer(8, 8, 64, 128), Layer(8, 8, 128, 128),
    Layer(4, 4, 256, 256), Layer(16, 16, 64, 32))
#: More shapes: a 1x1, a 5x5, a stride-2 and a depthwise layer.
EXTRA_LAYERS: tuple[Layer, ...] = (
    Layer(16, 16, 64, 64, k=1), Layer(16, 16, 32, 32, k=5), Layer(16, 16, 32, 64, stride=2),
    Layer(16, 16, 64, 64, depthwise=True))
LAYERS: tuple[Layer, ...] = ANCHOR_LAYERS + EXTRA_LAYERS
RATIOS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 0.95)
#: Ratios of the ablation builds (on the anchor layers).
ABLATION_RATIOS: tuple[float, ...] = (0.5, 0.9)
QUICK_LAYER = Layer(8, 8, 64, 128)
QUICK_RATIO = 0.9
TARGETS = ("cortex-m55", "cortex-m7")

#: Arm CMSIS-NN ``arm_convolve_s8`` dense kept MACs per executed instruction on the same
#: QEMU (counts, not cycles). Measured elsewhere, NOT rerun by this benchmark.
CMSIS_NN_ANCHOR = {
    Layer(32, 32, 16, 32): {"cortex-m55": 3.0, "cortex-m7": 0.47},
    Layer(16, 16, 32, 64): {"cortex-m55": 4.2, "cortex-m7": 0.54},
    Layer(8, 8, 64, 128): {"cortex-m55": 5.0, "cortex-m7": 0.58},
    Layer(8, 8, 128, 128): {"cortex-m55": 5.3, "cortex-m7": 0.59},
    Layer(4, 4, 256, 256): {"cortex-m55": 5.6, "cortex-m7": 0.60},
    Layer(16, 16, 64, 32): {"cortex-m55": 4.6, "cortex-m7": 0.55},
}
CMSIS_NN_SOURCE = ("measured elsewhere, not rerun here: DESIGN.md anchor table (Arm CMSIS-NN "
                   "99f736a `arm_convolve_s8`, gcc 12.2 -O2, QEMU 7.2, re-measured 2026-12-02); "
                   "CMSIS-NN instructions = dense MACs / its MACs per instruction")

#: Issue 11's goals on the anchor layers: (target, ratio, which layers, bound on DTMM
#: R=4 instructions / CMSIS-NN dense instructions, label).
GOALS = (
    ("cortex-m55", 0.9, "c_in>=64", 0.15, "M55, 90 % pruned, C_in >= 64"),
    ("cortex-m55", 0.9, "c_in<64", 0.25, "M55, 90 % pruned, C_in 16 and 32"),
    ("cortex-m55", 0.5, "all", 0.55, "M55, 50 % pruned"),
    ("cortex-m7", 0.9, "all", 0.15, "M7, 90 % pruned"),
)

# Paper figures (real Cortex-M55 latency, i.e. cycles), for the comparison text.
PAPER_RATIO = 0.9                  # the paper's Fig. 6(b) compares at 90 %
PAPER_DTMM_VS_CSR = 84.61          # % lower latency than unstructured pruning, Fig. 6(b)
PAPER_NOILP = (20.8, 55.3)         # % more latency without instruction-level acceleration
PAPER_SCALAR = (231.8, 635.0)      # % more latency with scalar code (3.3x - 7.4x)
PAPER_LANES = {8: 16.2, 4: 48.9}   # % more latency at 8 / 4 lanes than at 16


class KernelMismatchError(DtmmError):
    """A kernel's output differs from the NumPy reference: its count is not recorded."""


class _Skip(Exception):
    """A kernel cannot run this case (a documented limit of its storage format)."""


@dataclass(frozen=True)
class KernelConfig:
    """One measured kernel variant: method, firmware build (``simd``, ``defines``);
    ``ablation``: measured on the anchor layers at :data:`ABLATION_RATIOS` only."""

    key: str
    title: str
    method: str                       # dense | dtmm | dtmm_noilp | csr | pattern | structured
    simd: str = "auto"
    defines: tuple[str, ...] = ()
    reuse: int = 0                    # FWCS reuse factor R (1 = no-ilp), 0 for other kernels
    ablation: bool = False

    @property
    def pruned(self) -> bool:
        return self.method != "dense"

    def covers(self, layer: Layer, ratio: float) -> bool:
        if layer.depthwise and self.method != "dense":
            return False          # the sparse formats are for convolutions
        if self.ablation:
            return layer in ANCHOR_LAYERS and (not self.pruned or any(
                abs(ratio - r) < 1e-9 for r in ABLATION_RATIOS))
        return True


_C = KernelConfig
#: Variants measured on both targets (M55 adds its DSP ablations before dense_scalar).
_COMMON_CONFIGS = (
    _C("dense", "dense", "dense"),
    _C("dtmm_r4", "DTMM full R=4", "dtmm", reuse=4),
    _C("dtmm_r2", "DTMM R=2", "dtmm", defines=("DTMM_FWCS_REUSE=2",), reuse=2, ablation=True),
    _C("dtmm_r8", "DTMM R=8", "dtmm", defines=("DTMM_FWCS_REUSE=8",), reuse=8, ablation=True),
    _C("dtmm_noilp", "DTMM no-ilp", "dtmm_noilp", defines=("DTMM_FWCS_VARIANT_NO_ILP",), reuse=1,
       ablation=True),
    _C("dtmm_scalar", "DTMM scalar", "dtmm", simd="scalar", reuse=4, ablation=True),
    _C("csr", "CSR", "csr"),
    _C("pattern", "pattern", "pattern"),
    _C("structured", "structured", "structured"),
)
_DENSE_SCALAR = _C("dense_scalar", "dense scalar", "dense", simd="scalar", ablation=True)
#: Kernel variants measured per target.
CONFIGS: dict[str, tuple[KernelConfig, ...]] = {
    "cortex-m55": _COMMON_CONFIGS + (
        _C("dtmm_dsp", "DTMM DSP (2 lanes)", "dtmm", simd="dsp", reuse=4, ablation=True),
        _C("dense_dsp", "dense DSP (2 lanes)", "dense", simd="dsp", ablation=True),
        _DENSE_SCALAR,
    ),
    "cortex-m7": _COMMON_CONFIGS + (_DENSE_SCALAR,),
}
_LANES = {"mve": 16, "dsp": 2, "scalar": 1}


@dataclass(frozen=True)
class KernelRow:
    """One verified measurement: a kernel variant on one layer at one pruning ratio.
    ``classes``: the instructions by class (:data:`dtmm.bench.cycles.CLASSES`);
    ``cycles``: the counting plugin's estimated-cycles MODEL (not a measurement)."""

    target: str
    key: str                           # KernelConfig.key
    method: str
    isa: str                           # ISA path the build compiled: mve / dsp / scalar
    layer: Layer
    ratio: float                       # requested share of weights pruned (0 for dense)
    pruned: float                      # actual share of weights removed
    kept_weights: int
    out_pixels: int
    instructions: int                  # executed instructions of the kernel call (QEMU)
    reuse: int = 0
    verified: bool = True
    classes: tuple[int, ...] | None = None
    cycles: int | None = None

    @property
    def lanes(self) -> int:
        return _LANES[self.isa]

    @property
    def kept_macs(self) -> int:
        return self.kept_weights * self.out_pixels

    @property
    def macs_per_insn(self) -> float:
        return self.kept_macs / self.instructions

    @property
    def outputs(self) -> int:
        return self.out_pixels * self.layer.c_out

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layer"] = dict(asdict(self.layer), name=self.layer.name)
        d["classes"] = None if self.classes is None else dict(zip(cyc.CLASSES, self.classes))
        d.update(lanes=self.lanes, kept_macs=self.kept_macs, macs_per_insn=self.macs_per_insn)
        return d


@dataclass
class KernelBench:
    """All rows of one run plus what was run; :meth:`summary` computes the comparisons."""

    rows: list[KernelRow] = field(default_factory=list)
    targets: tuple[str, ...] = ()
    layers: tuple[Layer, ...] = ()
    ratios: tuple[float, ...] = ()
    seed: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def get(self, target: str, key: str, layer, ratio: float) -> KernelRow | None:
        """The row of ``key`` (dense rows are found under any ``ratio``)."""
        layer = _as_layer(layer)
        for r in self.rows:
            if r.target == target and r.key == key and r.layer == layer and (
                    r.method == "dense" or abs(r.ratio - ratio) < 1e-9):
                return r
        return None

    @property
    def anchors(self) -> tuple[Layer, ...]:
        return tuple(lay for lay in self.layers if lay in CMSIS_NN_ANCHOR)

    def counts(self) -> dict[tuple, int]:
        """``{(target, key, layer, ratio): instructions}`` (for repeatability checks)."""
        return {(r.target, r.key, r.layer, r.ratio): r.instructions for r in self.rows}

    def summary(self) -> dict:
        return _summary(self)

    def as_dict(self) -> dict:
        return {"unit": "executed instructions counted by QEMU (not cycles); cycles = the "
                        "counting plugin's estimated-cycles model (not measured)",
                "targets": list(self.targets), "layers": [lay.name for lay in self.layers],
                "ratios": list(self.ratios), "seed": self.seed, "seconds": round(self.seconds, 1),
                "rows": [r.as_dict() for r in self.rows], "skipped": list(self.skipped),
                "summary": self.summary()}


def _as_layer(layer) -> Layer:
    if isinstance(layer, Layer):
        return layer
    t = tuple(int(v) for v in layer)
    return Layer(*t)


def cmsis_instructions(layer: Layer, target: str) -> float | None:
    """CMSIS-NN dense instructions on ``layer``, from the anchor (measured elsewhere)."""
    a = CMSIS_NN_ANCHOR.get(layer, {}).get(target)
    return None if a is None else layer.dense_macs / a


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Case:
    """One layer's input, quantization and (pruned) weights with its reference output."""

    x: np.ndarray
    w: np.ndarray           # int8 OHWI weights (depthwise: (1, K, K, C)), pruned entries zero
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    params: ConvParams
    want: np.ndarray        # reference output of ``w`` (dense with zeros)


def _make_weight(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Gaussian weights quantized symmetrically to int8 (as scripts/bench_storage.py)."""
    w = rng.standard_normal(shape)
    return np.round(w / np.abs(w).max() * 127).astype(np.int8)


def _reference_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray, p: ConvParams,
                   depthwise: bool = False) -> np.ndarray:
    """int64 accumulators of the conv (padding = in_zp, i.e. zero after the offset)."""
    n, h, wd, ci = x.shape
    co, kh, kw, _ = w.shape
    t, b, l, r = p.pads
    sh, sw = p.stride
    xp = np.pad(x.astype(np.float64) - p.in_zp, ((0, 0), (t, b), (l, r), (0, 0)))
    ho, wo = (h + t + b - kh) // sh + 1, (wd + l + r - kw) // sw + 1
    cols = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # n,h',w',ci,kh,kw
    cols = cols[:, ::sh, ::sw][:, :ho, :wo]
    if depthwise:           # w: (1, KH, KW, C): channel c reads input channel c
        acc = np.einsum("nyxckl,klc->nyxc", cols, w[0].astype(np.float64))
        return np.rint(acc).astype(np.int64) + bias.astype(np.int64)
    cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * ci)
    acc = cols @ w.reshape(co, -1).T.astype(np.float64)     # exact: |acc| < 2**53
    return np.rint(acc).astype(np.int64).reshape(n, ho, wo, co) + bias.astype(np.int64)


def _requant(acc: np.ndarray, mult, shift, p: ConvParams) -> np.ndarray:
    v = multiply_by_quantized_multiplier(acc, mult, shift) + p.out_zp
    return np.clip(v, p.act_min, p.act_max).astype(np.int8)


def _case(x, w, bias, p: ConvParams, rng: np.random.Generator, depthwise: bool = False) -> _Case:
    """Reference output of ``w`` with per-channel multipliers chosen so that about
    three standard deviations of each channel's accumulator span the int8 range."""
    acc = _reference_acc(x, w, bias, p, depthwise)
    sd = acc.reshape(-1, acc.shape[-1]).std(axis=0)
    n = acc.shape[-1]
    mult, shift = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for c, s in enumerate(sd):
        q, sh = quantize_multiplier(127.0 / (3.0 * float(s) + 1.0) * float(rng.uniform(0.8, 1.2)))
        mult[c], shift[c] = q, sh
    return _Case(x, w, bias, mult, shift, p, _requant(acc, mult, shift, p))


@dataclass(frozen=True)
class _LayerData:
    """A layer's seeded data and its pruned variants (one per granularity and ratio)."""

    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray
    params: ConvParams
    rng_seed: int


def _layer_data(lay: Layer, seed: int, li: int) -> _LayerData:
    rng = np.random.default_rng([seed, li])
    x = rng.integers(-128, 128, (1, lay.h, lay.w, lay.c_in)).astype(np.int8)
    wshape = (1, lay.k, lay.k, lay.c_in) if lay.depthwise else (lay.c_out, lay.k, lay.k, lay.c_in)
    w = _make_weight(wshape, rng)
    bias = rng.integers(-4000, 4000, lay.c_out).astype(np.int32)
    p = ConvParams(stride=(lay.stride, lay.stride), pads=lay.pads, in_zp=int(rng.integers(-20, 20)),
                   out_zp=int(rng.integers(-10, 10)))
    return _LayerData(x, w, bias, p, seed * 1000 + li)


def _masks(w: np.ndarray, ratio: float) -> dict[str, np.ndarray]:
    """Magnitude keep-masks (weight shape) per granularity at ``ratio`` of its units
    (pattern pruning: 3x3 kernels only)."""
    a = np.abs(w.astype(np.float64))
    shape = w.shape
    out = {
        "filterlet": FILTERLET.build_mask(FILTERLET.reduce(a), ratio, shape),
        "element": ELEMENT.build_mask(a.ravel(), ratio, shape),
        "filter": FILTER.build_mask(FILTER.reduce(a), ratio, shape),
    }
    if shape[1:3] == (3, 3):
        out["pattern"] = PATTERN.build_mask(a.ravel(), PATTERN.ratio_for_sparsity(ratio, shape), shape)
    return out


_GRANULARITY = {"dtmm": "filterlet", "dtmm_noilp": "filterlet", "csr": "element",
                "pattern": "pattern", "structured": "filter"}


# ----------------------------------------------------------------------------- running


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if got.shape != want.shape:
        raise KernelMismatchError(f"{what}: output shape {got.shape} != reference {want.shape}")
    bad = np.argwhere(got != want)
    if bad.size:
        first = "; ".join(f"{tuple(int(i) for i in b)}: got {int(got[tuple(b)])}, want "
                          f"{int(want[tuple(b)])}" for b in bad[:5])
        raise KernelMismatchError(f"{what}: {len(bad)} of {got.size} outputs differ from the "
                                  f"reference (first: {first}); no count recorded")


def _call(k, method: str, case: _Case, keep: np.ndarray | None,
          depthwise: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Run ``method`` on kernels ``k``; return (output, expected output, kept weights)."""
    x, w, b, m, s, p = case.x, case.w, case.bias, case.mult, case.shift, case.params
    khw = (w.shape[1], w.shape[2])
    if method == "dense" and depthwise:
        return k.depthwise_conv_s8(x, w, b, m, s, p), case.want, w.size
    if method == "dense":
        return k.conv_s8(x, w, b, m, s, p), case.want, w.size
    if method in ("dtmm", "dtmm_noilp"):
        f = fwcs.encode(w, keep.any(axis=3))
        got = k.conv_fwcs_s8(x, f.arr, f.cptr, f.fidx, khw, b, m, s, p)
        return got, case.want, f.arr.size
    if method == "csr":
        c = csr.encode(w, keep)
        return k.conv_csr_s8(x, c.values, c.col, c.rowptr, khw, b, m, s, p), case.want, c.nnz
    if method == "pattern":
        if keep is None:
            raise _Skip("pattern pruning is for 3x3 kernels")
        f = pattern.encode(w, keep)
        got = k.conv_pattern_s8(x, np.array(pattern.PATTERNS, np.uint8), f.kptr, f.kidx,
                                f.pid.astype(np.uint8), f.values, b, m, s, p)
        return got, case.want, f.values.size
    if method == "structured":
        out_keep = np.nonzero(keep.reshape(w.shape[0], -1).all(axis=1))[0]
        d = dense.encode(dense.shrink(w, out_keep=out_keep))
        ws = d.values.reshape(len(out_keep), *w.shape[1:])
        got = k.conv_s8(x, ws, b[out_keep], m[out_keep], s[out_keep], p)
        return got, case.want[..., out_keep], ws.size
    raise ValueError(f"unknown method {method!r}")


def run_kernel_bench(*, targets: Sequence[str] = TARGETS, layers: Sequence[Layer] = LAYERS,
                     ratios: Sequence[float] = RATIOS, seed: int = 0, quick: bool = False,
                     configs: Iterable[str] | None = None,
                     progress: Callable[[str], None] | None = None) -> KernelBench:
    """Run the kernel micro-benchmarks under QEMU; every count is of a verified output.

    ``quick``: only :data:`QUICK_LAYER` at :data:`QUICK_RATIO` on the Cortex-M55 (for
    tests, ~10 s once the firmware is cached). ``configs``: restrict to these
    :data:`CONFIGS` keys. ``progress`` receives one line per measurement.
    Raises :class:`KernelMismatchError` if any kernel output differs from the reference.
    """
    from dtmm.runtime.kernels_host import TargetKernels

    if quick:
        targets, layers, ratios = ("cortex-m55",), (QUICK_LAYER,), (QUICK_RATIO,)
    layers = tuple(_as_layer(x) for x in layers)
    wanted = None if configs is None else set(configs)
    t0 = time.perf_counter()
    bench = KernelBench(targets=tuple(targets), layers=layers, ratios=tuple(float(r) for r in ratios),
                        seed=seed)
    for li, lay in enumerate(layers):
        data = _layer_data(lay, seed, LAYERS.index(lay) if lay in LAYERS else 100 + li)
        rng = np.random.default_rng(data.rng_seed)
        cases: dict[tuple[str, float], _Case] = {
            ("dense", 0.0): _case(data.x, data.w, data.bias, data.params, rng, lay.depthwise)}
        masks: dict[float, dict[str, np.ndarray]] = {}
        if not lay.depthwise:
            for ratio in bench.ratios:
                masks[ratio] = _masks(data.w, ratio)
                for gran, m in masks[ratio].items():
                    cases[gran, ratio] = _case(data.x, (data.w * m).astype(np.int8), data.bias,
                                               data.params, rng)
        for target in targets:
            for cfg in CONFIGS[target]:
                if wanted is not None and cfg.key not in wanted:
                    continue
                todo = [r for r in (bench.ratios if cfg.pruned else (0.0,)) if cfg.covers(lay, r)]
                if not todo:
                    continue
                k = _kernels(TargetKernels, target, cfg.simd, cfg.defines)
                isa = k.fwcs_config()[1]
                for ratio in todo:
                    what = f"{target} {cfg.key} layer {lay.name} ratio {ratio}"
                    if cfg.pruned:
                        gran = _GRANULARITY[cfg.method]
                        keep = masks[ratio].get(gran)
                        case = cases.get((gran, ratio), cases["dense", 0.0])
                    else:
                        case, keep = cases["dense", 0.0], None
                    try:
                        got, want, kept = _call(k, cfg.method, case, keep, lay.depthwise)
                    except _Skip as e:
                        bench.skipped.append(f"{what}: {e}")
                        if progress:
                            progress(f"{what}: skipped ({e})")
                        continue
                    _check(got, want, what)
                    n = k.last_instructions
                    if not n:
                        raise DtmmError(f"{what}: no instruction count came back")
                    row = KernelRow(target, cfg.key, cfg.method, isa, lay, ratio,
                                    1.0 - kept / data.w.size, kept, lay.out_pixels, int(n),
                                    cfg.reuse, classes=k.last_classes, cycles=k.last_cycles)
                    bench.rows.append(row)
                    if progress:
                        progress(f"{what}: {n:,} instructions, {row.macs_per_insn:.2f} kept MACs/insn")
    bench.seconds = time.perf_counter() - t0
    return bench


_KCACHE: dict[tuple, object] = {}


def _kernels(cls, target: str, simd: str, defines: tuple[str, ...]):
    key = (target, simd, defines)
    if key not in _KCACHE:
        _KCACHE[key] = cls(target, simd=simd, defines=defines)
    return _KCACHE[key]


# ----------------------------------------------------------------------------- summary


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _rng(xs: Sequence[float], fmt=_pct) -> str:
    return f"{fmt(min(xs))}-{fmt(max(xs))}" if xs else "n/a"


def _goal_layers(which: str, layers: Sequence[Layer]) -> list[Layer]:
    if which == "c_in>=64":
        return [lay for lay in layers if lay.c_in >= 64]
    if which == "c_in<64":
        return [lay for lay in layers if lay.c_in < 64]
    return list(layers)


def goal_rows(b: KernelBench) -> list[dict]:
    """One dict per (goal, anchor layer): DTMM R=4 instructions over CMSIS-NN dense
    instructions (the anchor, measured elsewhere) against the goal's bound, and the
    dense kernel's own ratio (goal: below 1 on every anchor layer)."""
    out = []
    for target, ratio, which, bound, label in GOALS:
        if target not in b.targets or not any(abs(ratio - r) < 1e-9 for r in b.ratios):
            continue
        for lay in _goal_layers(which, b.anchors):
            r, c = b.get(target, "dtmm_r4", lay, ratio), cmsis_instructions(lay, target)
            if r is None or c is None:
                continue
            x = r.instructions / c
            out.append({"goal": label, "target": target, "layer": lay.name, "ratio": ratio,
                        "instructions": r.instructions, "cmsis_instructions": c, "x_cmsis": x,
                        "bound": bound, "met": x <= bound, "over": x / bound - 1})
    for target in b.targets:
        for lay in b.anchors:
            r, c = b.get(target, "dense", lay, 0.0), cmsis_instructions(lay, target)
            if r is None or c is None:
                continue
            x = r.instructions / c
            out.append({"goal": f"{'M55' if target == 'cortex-m55' else 'M7'}, dense beats CMSIS-NN",
                        "target": target, "layer": lay.name, "ratio": 0.0,
                        "instructions": r.instructions, "cmsis_instructions": c, "x_cmsis": x,
                        "bound": 1.0, "met": x < 1.0, "over": x - 1})
    return out


def _summary(b: KernelBench) -> dict:
    """Comparisons with the paper and the goals, computed from the rows (per target)."""
    out: dict = {"goals": goal_rows(b)}
    abl = [r for r in b.ratios if any(abs(r - a) < 1e-9 for a in ABLATION_RATIOS)]
    for t in b.targets:
        s: dict = {}

        def ratio_of(num: str, den: str, ratios=b.ratios, layers=b.anchors):
            vals = []
            for lay in layers:
                for r in ratios:
                    a, c = b.get(t, num, lay, r), b.get(t, den, lay, r)
                    if a and c:
                        vals.append(a.instructions / c.instructions)
            return vals

        hi = PAPER_RATIO if any(abs(PAPER_RATIO - r) < 1e-9 for r in b.ratios) else (
            max(b.ratios) if b.ratios else None)
        if hi is not None:
            red = [1 - x for x in ratio_of("dtmm_r4", "csr", (hi,))]
            if red:
                s["dtmm_vs_csr"] = {"ratio": hi, "reduction": red, "mean": float(np.mean(red))}
        for key, name in (("dtmm_noilp", "noilp_over_full"), ("dtmm_scalar", "scalar_over_full"),
                          ("dtmm_dsp", "dsp_over_full"), ("dtmm_r2", "r2_over_r4"),
                          ("dtmm_r8", "r8_over_r4"), ("pattern", "pattern_over_full"),
                          ("structured", "structured_over_full")):
            v = ratio_of(key, "dtmm_r4", abl if key.startswith("dtmm_") else b.ratios)
            if v:
                s[name] = {"values": v, "min": min(v), "max": max(v), "mean": float(np.mean(v))}
        lo = 0.5 if any(abs(0.5 - r) < 1e-9 for r in b.ratios) else (min(b.ratios) if b.ratios else None)
        if lo is not None:
            sp = [1 / x for x in ratio_of("dtmm_r4", "dense", (lo,))]
            if sp:
                s["dense_over_dtmm"] = {"ratio": lo, "speedup": sp}
        dm = [(lay, b.get(t, "dense", lay, 0.0)) for lay in b.layers]
        s["dense_macs_per_insn"] = {lay.name: r.macs_per_insn for lay, r in dm if r}
        fw = [b.get(t, "dtmm_r4", lay, r) for lay in b.layers for r in b.ratios]
        s["dtmm_macs_per_insn"] = [r.macs_per_insn for r in fw if r]
        cs = [b.get(t, "csr", lay, r) for lay in b.layers for r in b.ratios]
        s["csr_insn_per_mac"] = [1 / r.macs_per_insn for r in cs if r]
        out[t] = s
    return out


def _fmt_cell(r: KernelRow | None) -> str:
    return "-" if r is None else f"{r.instructions:,} ({r.macs_per_insn:.2f})"


def _lname(lay) -> str:
    return _as_layer(lay).name


_MAIN_COLS = ("dense", "dtmm_r4", "dtmm_r2", "dtmm_r8", "dtmm_noilp", "dtmm_scalar", "csr",
              "pattern", "structured")
_CLASS_NAMES = {"scalar_alu": "ALU", "load_store": "ld/st", "branch": "branch",
                "mve_load_store": "MVE ld/st", "mve_mac": "MVE MAC", "mve_other": "MVE other"}


def _per_output(r: KernelRow) -> str:
    """Instructions per output element by class, e.g. ``ALU 2.1, ld/st 1.0, ...``."""
    if r.classes is None:
        return "-"
    return ", ".join(f"{_CLASS_NAMES[c]} {n / r.outputs:.1f}" for c, n in zip(cyc.CLASSES, r.classes)
                     if n)


def render_markdown(b: KernelBench, command: str = "python scripts/bench_kernels.py") -> str:
    """The BENCHMARKS.md section: goals, tables per target and ratio, classes, cycles
    model, lanes, dense vs CMSIS-NN, comparison text."""
    L: list[str] = []
    add = L.append
    add("## Conv kernels (paper Fig. 6(b), Fig. 14): executed instructions per layer")
    add("")
    add(f"`{command}` (seed {b.seed}, {b.seconds:.0f} s). One image per layer; \"same\" padding; "
        "seeded Gaussian int8 weights magnitude-pruned per method at its own granularity "
        "(`dtmm.prune`: filterlet for DTMM, element for CSR, 4-of-9 pattern + kernel removal "
        "for pattern (3x3 only), whole filters for structured), encoded by `dtmm.formats`. "
        "**Counts are executed instructions of the kernel call counted by QEMU (TCG plugin), "
        "not cycles**: QEMU models no pipeline, dual issue or wait states. "
        "Every output was checked bit for bit against a NumPy conv of the pruned-with-zeros "
        "weights before its count was recorded. Cells: instructions (kept MACs per "
        "instruction = kept weights x output pixels / instructions). DTMM full = "
        "`dtmm_conv_fwcs_s8` reusing each filterlet load across R output pixels; no-ilp = "
        "one pixel at a time (paper \"w/o-ins\"); scalar = the same kernel in plain C "
        "(paper \"w/o-ins-vec\"); the R=2 / R=8 / no-ilp / scalar / DSP ablations run on the "
        "six anchor layers at 50 and 90 % only. CSR = per output row a zero-point-padded input "
        "band, per filter and 4 output pixels each kept (column, value) loaded once; pattern = "
        "PatDNN-style kernel-major. The sparse kernels (DTMM, CSR, pattern) all take the "
        "per-filter offset bias - in_zp * sum(kept w) precomputed at code-generation time, "
        "write a filter with no kept weight as one constant and requantize with the same "
        "helpers (M7: QADD + SMMULR where exact). "
        "**Gathers count as one instruction here but load one element per cycle on the "
        "Cortex-M55** (see the cycles model below), so the M55 CSR and pattern counts flatter "
        "them. structured = the dense kernel on a layer with fewer filters. Dense does not "
        "depend on the ratio (repeated for reference). "
        f"**CMSIS-NN figures are {CMSIS_NN_SOURCE}.**")
    add("")
    # goals
    G = goal_rows(b)
    if G:
        add("### Issue 11 goals on the anchor layers (DTMM R=4 / CMSIS-NN dense instructions)")
        add("")
        add("| goal | layer | DTMM instructions | CMSIS-NN instructions (anchor, not rerun) | "
            "x CMSIS-NN | bound | result |")
        add("|---|---|---:|---:|---:|---:|---|")
        for g in G:
            res = "met" if g["met"] else f"**not met: {100 * g['over']:+.0f} % over the bound**"
            add(f"| {g['goal']} | {g['layer']} | {g['instructions']:,} | "
                f"{g['cmsis_instructions']:,.0f} | {g['x_cmsis']:.3f}x | "
                f"{'<' if g['ratio'] == 0 else '<='} {g['bound']:.2f}x | {res} |")
        add("")
        nmet = sum(g["met"] for g in G)
        add(f"{nmet} of {len(G)} goal cells met.")
        add("")
    titles = {c.key: c.title for cs in CONFIGS.values() for c in cs}
    for t in b.targets:
        isa = {r.key: r.isa for r in b.rows if r.target == t}
        for ratio in b.ratios:
            cols = [c for c in _MAIN_COLS if c in isa]
            add(f"### {t}: {ratio:.0%} of weights pruned")
            add("")
            add("| layer (H x W x C_in -> C_out) | " + " | ".join(
                f"{titles[c]} [{isa[c]}]" for c in cols) + " | CMSIS-NN dense (anchor) | "
                "DTMM / CMSIS-NN |")
            add("|---|" + "---:|" * (len(cols) + 2))
            for lay in b.layers:
                if lay.depthwise:
                    continue
                c = cmsis_instructions(lay, t)
                f = b.get(t, "dtmm_r4", lay, ratio)
                add(f"| {lay.name} | " + " | ".join(_fmt_cell(b.get(t, k, lay, ratio)) for k in cols)
                    + f" | {'-' if c is None else f'{c:,.0f}'} | "
                    + ("-" if c is None or f is None else f"{f.instructions / c:.3f}x") + " |")
            add("")
    # depthwise
    dws = [lay for lay in b.layers if lay.depthwise]
    if dws:
        add("### Depthwise layers (dense `dtmm_depthwise_conv_s8`; the sparse formats are for "
            "convolutions)")
        add("")
        add("| layer | target | instructions | MACs / instruction | est. cycles (model) |")
        add("|---|---|---:|---:|---:|")
        for lay in dws:
            for t in b.targets:
                r = b.get(t, "dense", lay, 0.0)
                if r:
                    add(f"| {lay.name} | {t} | {r.instructions:,} | {r.macs_per_insn:.2f} | "
                        f"{'-' if r.cycles is None else f'{r.cycles:,}'} |")
        add("")
    # per output classes
    hi = max(b.ratios) if b.ratios else None
    show = [r for r in (0.5, 0.9) if any(abs(r - x) < 1e-9 for x in b.ratios)]
    if show:
        add("### What remains per output: DTMM R=4 instructions per output element by class")
        add("")
        add("Per output element (pixel x filter), from the counting plugin's decode of each "
            "executed instruction (ALU = scalar data processing incl. DSP multiplies; ld/st = "
            "scalar loads and stores; MVE MAC = vector multiplies and multiply-accumulates).")
        add("")
        add("| target | ratio | layer | instructions / output | by class |")
        add("|---|---:|---|---:|---|")
        for t in b.targets:
            for ratio in show:
                for lay in b.anchors:
                    r = b.get(t, "dtmm_r4", lay, ratio)
                    if r:
                        add(f"| {t} | {ratio:.0%} | {lay.name} | {r.instructions / r.outputs:.1f} | "
                            f"{_per_output(r)} |")
        add("")
    # cycles model
    if any(r.cycles for r in b.rows) and show:
        add("### Estimated cycles: a MODEL beside the instruction counts (not measured)")
        add("")
        add("The counting plugin schedules each executed block on a simple model of the core "
            "(`dtmm.bench.cycles`); the figures below are that model, **not latency measured** "
            "on hardware. Model: " + " ".join(cyc.model_text(t) for t in b.targets)
            + " Sources: " + "; ".join(cyc.SOURCES) + ".")
        add("")
        add("| target | ratio | layer | dense insn / est. cycles | DTMM R=4 insn / est. cycles | "
            "CSR insn / est. cycles | DTMM / dense: insn, est. cycles |")
        add("|---|---:|---|---:|---:|---:|---:|")
        for t in b.targets:
            for ratio in show:
                for lay in b.anchors:
                    d, f, c = (b.get(t, k, lay, ratio) for k in ("dense", "dtmm_r4", "csr"))

                    def ic(r):
                        return "-" if r is None or r.cycles is None else \
                            f"{r.instructions:,} / {r.cycles:,}"
                    rat = "-" if d is None or f is None or not d.cycles else \
                        f"{f.instructions / d.instructions:.2f}, {f.cycles / d.cycles:.2f}"
                    add(f"| {t} | {ratio:.0%} | {lay.name} | {ic(d)} | {ic(f)} | {ic(c)} | {rat} |")
        add("")
    # actual shares
    t0 = b.targets[0] if b.targets else None
    if t0:
        add("### Actual share of weights pruned per method")
        add("")
        add("| layer | ratio | DTMM (filterlet) | CSR (element) | pattern | structured (filters) |")
        add("|---|---:|---:|---:|---:|---:|")
        for lay in b.layers:
            if lay.depthwise:
                continue
            for ratio in b.ratios:
                cells = [b.get(t0, k, lay, ratio) for k in ("dtmm_r4", "csr", "pattern", "structured")]
                add(f"| {lay.name} | {ratio:.0%} | " + " | ".join(
                    "-" if r is None else f"{r.pruned:.1%}" for r in cells) + " |")
        add("")
    # lanes
    if "cortex-m55" in b.targets and b.anchors and any(
            b.get("cortex-m55", "dtmm_dsp", lay, r) for lay in b.anchors for r in b.ratios):
        t = "cortex-m55"
        add("### Lane study on the Cortex-M55 (paper Fig. 14(b)): same kernel, same weights")
        add("")
        add("16 lanes = Helium MVE (`simd=\"auto\"`), 2 lanes = `__smlad` DSP path "
            "(`simd=\"dsp\"`), 1 lane = plain C (`simd=\"scalar\"`). Cells: instructions "
            "(x the 16-lane count).")
        add("")
        add("| layer | ratio | DTMM 16 lanes | DTMM 2 lanes | DTMM 1 lane | dense 16 | dense 2 | dense 1 |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|")
        for lay in b.anchors:
            for ratio in b.ratios:
                f16, f2, f1 = (b.get(t, k, lay, ratio) for k in ("dtmm_r4", "dtmm_dsp", "dtmm_scalar"))
                if f2 is None:
                    continue
                d16, d2, d1 = (b.get(t, k, lay, 0.0) for k in ("dense", "dense_dsp", "dense_scalar"))

                def c(r, base):
                    return "-" if r is None or base is None else \
                        f"{r.instructions:,} ({r.instructions / base.instructions:.2f}x)"
                add(f"| {lay.name} | {ratio:.0%} | {c(f16, f16)} | {c(f2, f16)} | {c(f1, f16)} | "
                    f"{c(d16, d16)} | {c(d2, d16)} | {c(d1, d16)} |")
        add("")
    # dense vs CMSIS-NN
    add("### Dense kernel vs CMSIS-NN `arm_convolve_s8` (kept MACs per instruction; the CMSIS-NN "
        "column is measured elsewhere and not rerun by this script)")
    add("")
    add("| layer | " + " | ".join(f"ours {t} | CMSIS-NN {t} (anchor)" for t in b.targets) + " |")
    add("|---|" + "---:|---:|" * len(b.targets))
    for lay in b.anchors:
        cells = []
        for t in b.targets:
            r = b.get(t, "dense", lay, 0.0)
            cells += ["-" if r is None else f"{r.macs_per_insn:.2f}",
                      f"{CMSIS_NN_ANCHOR.get(lay, {}).get(t, float('nan')):.2f}"]
        add(f"| {lay.name} | " + " | ".join(cells) + " |")
    add("")
    if b.skipped:
        add("Not measured (\"-\" above): " + "; ".join(sorted(set(
            s.split(": ", 1)[1] + " (" + s.split(" layer ", 1)[1].split(" ratio")[0] + ")"
            for s in b.skipped))) + ".")
        add("")
    add("### Comparison with the paper (computed from the tables above)")
    add("")
    for line in _comparison_text(b):
        add(f"- {line}")
    add("")
    return "\n".join(L)


def _per_mac(rows) -> list[float]:
    return [r.instructions / r.kept_macs for r in rows if r]


def _f2(x: float) -> str:
    return f"{x:.2f}"


def _comparison_text(b: KernelBench) -> list[str]:
    """Bullet points comparing with the paper; every number computed from ``b``."""
    S = b.summary()
    out: list[str] = []
    for t in b.targets:
        s = S[t]
        if "dtmm_vs_csr" in s:
            d = s["dtmm_vs_csr"]
            mean = 100 * d["mean"]
            fi = _per_mac(b.get(t, "dtmm_r4", l, d["ratio"]) for l in b.anchors)
            ci = _per_mac(b.get(t, "csr", l, d["ratio"]) for l in b.anchors)
            gap = mean - PAPER_DTMM_VS_CSR
            txt = (f"**{t}, DTMM vs CSR at {d['ratio']:.0%}**: {mean:.1f} % fewer instructions "
                   f"on average (per layer {', '.join(_pct(x) for x in d['reduction'])} %); "
                   f"paper: {PAPER_DTMM_VS_CSR} % lower latency (gap {gap:+.1f} points). Both "
                   f"keep about the same weights, so the reduction is 1 - (DTMM instructions per "
                   f"kept MAC: {_rng(fi, _f2)}) / (CSR: {_rng(ci, _f2)}).")
            if gap <= -5:
                txt += (" Ours is lower: our CSR kernel loads each index and value once for 4 "
                        "pixels and reads a padded band without bounds checks (about "
                        f"{min(ci):.1f}-{max(ci):.1f} instructions per MAC"
                        f"{', its 8-weight gathers counting one instruction each' if t == 'cortex-m55' else ''}"
                        "), and on this core "
                        "the DTMM kernel's per-filterlet and per-output work (table lookup, "
                        "loop setup, requantization) is not hidden by vector MACs in an "
                        "instruction count.")
            elif gap >= 5:
                txt += (" Ours is higher: one Helium VMLADAVA counts as one instruction for 16 "
                        "MACs while on hardware it occupies the vector unit for two beats, and "
                        "CSR pays an index load and a table lookup per kept weight besides its "
                        "MACs, so counts widen the gap that cycles show.")
            out.append(txt)
        if "noilp_over_full" in s:
            v = s["noilp_over_full"]
            lo, hi = 100 * (v["min"] - 1), 100 * (v["max"] - 1)
            by_cin = {}
            for lay in b.anchors:
                vals = [b.get(t, "dtmm_noilp", lay, r).instructions / b.get(t, "dtmm_r4", lay, r).instructions
                        for r in b.ratios if b.get(t, "dtmm_noilp", lay, r) and b.get(t, "dtmm_r4", lay, r)]
                if vals:
                    by_cin[lay.c_in] = float(np.mean(vals)) - 1
            txt = (f"**{t}, no-ilp over full (R=4)**: +{lo:.1f} to +{hi:.1f} % instructions "
                   f"(mean +{100 * (v['mean'] - 1):.1f} %; by C_in: "
                   + ", ".join(f"{c}: +{100 * x:.0f} %" for c, x in by_cin.items())
                   + f"); paper: +{PAPER_NOILP[0]}-{PAPER_NOILP[1]} % latency.")
            if hi > PAPER_NOILP[1] + 5 and t == "cortex-m55":
                txt += (" Above the paper: besides the weight load saved per 16-MAC chunk "
                        "((1 + 2R)/R = 2.25 vs 3 instructions, +33 % in the vector loop alone), "
                        "R=4 shares among 4 pixels the per-filterlet work (cptr lookup, pointer "
                        "loads, loop set-up) and the per-filter work (accumulator set-up, one "
                        "vector requantization for 4 outputs); with short filterlets (small "
                        "C_in) or few filterlets per filter (high sparsity) that shared work "
                        "dominates an instruction count.")
            elif lo < PAPER_NOILP[0] - 5:
                txt += (" Below the paper: an instruction count sees only the weight loads and "
                        "the shared overhead that reuse removes, not the load/MAC overlap in "
                        "the pipeline that the paper's cycle measurements include.")
            out.append(txt)
        if "scalar_over_full" in s:
            v = s["scalar_over_full"]
            p_lo, p_hi = 1 + PAPER_SCALAR[0] / 100, 1 + PAPER_SCALAR[1] / 100
            txt = (f"**{t}, scalar over full**: {v['min']:.2f}x-{v['max']:.2f}x instructions "
                   f"(mean {v['mean']:.2f}x); paper: {p_lo:.1f}x-{p_hi:.1f}x latency.")
            if t != "cortex-m55":
                txt += " (Here \"full\" is the 2-lane DSP path, so the gap is small.)"
            elif v["max"] > p_hi + 0.5:
                txt += (" Above the paper: one Helium instruction does 16 "
                        "MACs but on hardware takes two cycles, so instruction counts favour "
                        "the vector path by up to 2x more than cycles do.")
            elif v["min"] < p_lo - 0.5:
                txt += (" Below the paper: the scalar build shares the kernel's blocking and "
                        "its per-filterlet / per-output work, which stay scalar in both.")
            out.append(txt)
        if "dsp_over_full" in s:
            v = s["dsp_over_full"]
            out.append(f"**{t}, lanes**: the 2-lane DSP path executes {v['min']:.2f}x-"
                       f"{v['max']:.2f}x the 16-lane MVE instructions (mean {v['mean']:.2f}x); "
                       f"scalar (1 lane) {s['scalar_over_full']['mean']:.2f}x. The paper "
                       f"reports +{PAPER_LANES[8]} % (8 lanes) and +{PAPER_LANES[4]} % (4 lanes) "
                       "latency; Helium has no 8- or 4-lane int8 MAC, so our points are 16 / 2 / 1.")
        if "r2_over_r4" in s and "r8_over_r4" in s:
            out.append(f"**{t}, reuse factor**: R=2 executes "
                       f"{_rng([x - 1 for x in s['r2_over_r4']['values']])} % more instructions "
                       f"than R=4, R=8 {_rng([x - 1 for x in s['r8_over_r4']['values']])} % "
                       "(negative = fewer).")
        if "dense_over_dtmm" in s:
            d = s["dense_over_dtmm"]
            sp = d["speedup"]
            ideal = 1 / (1 - d["ratio"])
            txt = (f"**{t}, DTMM at {d['ratio']:.0%} vs dense**: dense / DTMM = "
                   f"{', '.join(_f2(x) for x in sp)} per layer (ideal {ideal:.1f} if kept MACs "
                   "per instruction stayed equal).")
            beats = []
            for r in b.ratios:
                n = sum(1 for l in b.anchors if b.get(t, "dtmm_r4", l, r) and b.get(t, "dense", l, 0.0)
                        and b.get(t, "dtmm_r4", l, r).instructions < b.get(t, "dense", l, 0.0).instructions)
                beats.append(f"{n}/{len(b.anchors)} at {r:.0%}")
            txt += f" Layers where DTMM executes fewer instructions than dense: {', '.join(beats)}."
            if min(sp) < ideal * 0.9:
                dm = [b.get(t, "dense", l, 0.0) for l in b.anchors]
                fm = [b.get(t, "dtmm_r4", l, d["ratio"]) for l in b.anchors]
                txt += (f" Dense reaches {_rng([r.macs_per_insn for r in dm if r], _f2)} MACs "
                        f"per instruction on dot products of K = 9 C_in; DTMM at {d['ratio']:.0%} "
                        f"{_rng([r.macs_per_insn for r in fm if r], _f2)}: its dot products are "
                        "one filterlet (C_in) long, so its per-filterlet and per-output work "
                        "weighs most in small-C_in layers.")
            out.append(txt)
    return out


# ----------------------------------------------------------------------------- CLI


def add_cli_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``dtmm bench kernels`` / ``scripts/bench_kernels.py``."""
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quick", action="store_true",
                   help=f"one layer ({_lname(QUICK_LAYER)}), one ratio ({QUICK_RATIO:.0%}%), M55 "
                        "only; never writes BENCHMARKS.md")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--out", type=Path, default=None, help="BENCHMARKS.md to write (default: repo's)")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    return p


def run_cli(args: argparse.Namespace, command: str = "python scripts/bench_kernels.py") -> int:
    """Run the benchmark for parsed ``args``; print markdown (or JSON); write the section."""
    from dtmm.benchmd import DEFAULT_PATH, write_section

    log = (lambda m: print(m, file=sys.stderr, flush=True))
    b = run_kernel_bench(targets=tuple(args.targets), seed=args.seed, quick=args.quick, progress=log)
    md = render_markdown(b, command + (" --quick" if args.quick else ""))
    if args.json:
        print(json.dumps(b.as_dict(), indent=1))
    else:
        print(md)
    if not args.quick and not args.no_write:
        out = args.out or DEFAULT_PATH
        write_section("bench_kernels", md, out)
        log(f"(wrote section bench_kernels into {out})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = add_cli_arguments(argparse.ArgumentParser(
        description="Conv kernel micro-benchmarks on QEMU (executed instructions, not cycles)"))
    return run_cli(p.parse_args(argv))
