"""The instruction (latency) model: per-op counts from shapes, fitted per target.

The DTMM paper models a pruned conv layer's time per output pixel as
``T = T_ft + T_cm + T_ps`` (fetch the input patch, then per kept filterlet an index
look-up and ``ceil(C / l)`` SIMD MACs, then bias and requantization per output) and fits
``t_mem, t_idx, t_com, t_post`` by regression (its Eq. 7). Our kernels differ, so the
terms do too, each one a *feature* whose coefficient is fitted by non-negative least
squares on counts measured under QEMU (:mod:`dtmm.schedule.calibrate`):

* **weight reuse R**: the FWCS kernel loads a filterlet chunk once for R output pixels,
  so per pixel a kept filterlet costs ``ceil(C_in / l)`` vector MACs plus a share of the
  look-up; the share ``1/R`` is a constant of the build, absorbed by the coefficient of
  ``pixels x filterlets`` (and the weight load by that of ``pixels x filterlets x chunks``);
* **per-output requantization** (``pixels x C_out``) and per-block pointer tables
  (``pixels x KH*KW``) replace the paper's ``T_ps`` and ``T_ft`` (no patch is copied);
* per call, the per-filter offsets ``bias - zp * sum(w)`` (``filterlets x chunks``);
* **the small-C_in fast path** (Helium, C_in in {16, 32, 64}: one loop over a filter's
  filterlets, no per-filterlet set-up) and the DSP path that first widens the input to
  int16 (taken when a layer keeps >= 4 filterlets per kernel position) have different
  costs: each is its own *kind* (``fwcs_small``, ``fwcs_wide``) with its own
  coefficients, chosen by :func:`op_kind` exactly as the kernel chooses its path.

Non-conv ops get their own terms, since their share is large in small models (the
residual adds of ResNet-8 are about 40 % of its Cortex-M55 instructions before they had
SIMD paths): depthwise, fully connected, pools, add, softmax, concat, and the
``dtmm_model_invoke`` input/output copies. ``l`` is the lane count of the ISA path
(16 int8 lanes for Helium, 4 for the DSP's 32-bit words, 1 for plain C).

Counts are executed instructions (QEMU), not cycles, unless a calibration was fitted on
a real board's cycle counts (:func:`LatencyModel.unit`).

Example:
    >>> m = LatencyModel("cortex-m55", "mve", {"add": {"elements": 0.5, "vectors": 4.0, "call": 30.0}})
    >>> m.predict(OpShape("add", out_h=8, out_w=8, c_out=16))
    798.0
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from dtmm.codegen.scratch import FWCS_REUSE
from dtmm.schedule.space import ScheduleError

__all__ = ["OpShape", "LatencyModel", "FEATURES", "KINDS", "op_kind", "fwcs_mve_vf", "op_shape", "features", "fit",
           "LANES", "load_calibration", "default_calibration", "CALIBRATION_DIR"]

#: int8 lanes per SIMD MAC of each ISA path.
LANES = {"mve": 16, "dsp": 4, "scalar": 1}


@dataclass(frozen=True)
class OpShape:
    """What an op's cost depends on (zeros where a field does not apply).

    ``kind``: ``conv`` (dense), ``fwcs``, ``csr``, ``pattern``, ``depthwise``, ``fc``,
    ``fc_fwcs``, ``max_pool``, ``avg_pool``, ``add``, ``softmax``, ``concat``, ``invoke``;
    ``kept``: kept filterlets (fwcs; runs of 16 inputs for ``fc_fwcs``), weights (csr) or
    kernels (pattern); ``tail``: of an ``fc_fwcs``'s kept runs, those that are the short
    last run of their row; for pools ``kh, kw`` is the window; for ``fc`` / ``fc_fwcs``
    ``c_in`` is the input features; for ``softmax`` ``out_h`` is
    the rows and ``c_out`` the depth; for ``invoke`` ``c_in`` / ``c_out`` are the input
    and output bytes.
    """

    kind: str
    out_h: int = 1
    out_w: int = 1
    c_in: int = 0
    c_out: int = 0
    kh: int = 1
    kw: int = 1
    in_h: int = 1
    in_w: int = 1
    kept: int = 0
    mult: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_t: int = 0
    pad_l: int = 0
    tail: int = 0

    @property
    def taps_inside(self) -> int:
        """Window taps that read the input, summed over the output pixels (the pools skip
        padding taps).

        >>> OpShape("max_pool", 4, 4, 8, 8, 3, 3, 4, 4, pad_t=1, pad_l=1).taps_inside  # (2+3+3+2)^2
        100
        """
        def rows(n_out, k, s, p, n_in):
            return sum(min(o * s - p + k, n_in) - max(o * s - p, 0) for o in range(n_out))
        return (rows(self.out_h, self.kh, self.stride_h, self.pad_t, self.in_h)
                * rows(self.out_w, self.kw, self.stride_w, self.pad_l, self.in_w))

    @property
    def interior(self) -> int:
        """Output pixels whose whole window lies inside the input (no padding taps)."""
        def inside(n_out, k, s, p, n_in):
            return sum(1 for o in range(n_out) if o * s - p >= 0 and o * s - p + k <= n_in)
        return (inside(self.out_h, self.kh, self.stride_h, self.pad_t, self.in_h)
                * inside(self.out_w, self.kw, self.stride_w, self.pad_l, self.in_w))


def _chunks(n: int, lanes: int) -> int:
    return -(-int(n) // lanes)


def _f_conv(s: OpShape, l: int) -> dict[str, float]:
    p, k = s.out_h * s.out_w, s.kh * s.kw
    return {"macs": p * s.c_out * _chunks(k * s.c_in, l), "outputs": p * s.c_out,
            "im2col": p * k * _chunks(s.c_in, l), "pixels": p,
            "offsets": s.c_out * _chunks(k * s.c_in, l), "call": 1}


def _f_fwcs(s: OpShape, l: int) -> dict[str, float]:
    p, k, ch = s.out_h * s.out_w, s.kh * s.kw, _chunks(s.c_in, l)
    # the kernel runs blocks of FWCS_REUSE output pixels: a partial last block costs a whole
    # one in the filter loop
    slots = _chunks(p, FWCS_REUSE) * FWCS_REUSE
    return {"macs": slots * s.kept * ch, "filterlets": slots * s.kept, "outputs": slots * s.c_out,
            "tables": p * k, "pixels": p, "offsets": s.kept * ch + s.c_out, "call": 1}


def _f_fwcs_wide(s: OpShape, l: int) -> dict[str, float]:
    f = _f_fwcs(s, l)
    f["widen"] = s.out_h * s.out_w * s.kh * s.kw * s.c_in
    return f


def _f_fwcs_generic(s: OpShape, l: int) -> dict[str, float]:
    # the generic C loop; on DSP it widens the input runs to int16 under the same rule as
    # the fast loop (from 4 kept filterlets per kernel position)
    f = _f_fwcs(s, l)
    k = s.kh * s.kw
    f["widen"] = s.out_h * s.out_w * k * s.c_in if l == 4 and s.kept >= 4 * k else 0
    return f


def _f_csr(s: OpShape, l: int) -> dict[str, float]:
    p = s.out_h * s.out_w
    band = s.out_h * s.kh * (s.in_w + 2 * s.kw) * _chunks(s.c_in, l)
    return {"macs": p * s.kept, "outputs": p * s.c_out, "band": band, "pixels": p,
            "offsets": s.kept + s.kh * s.kw * s.c_in + s.c_out, "call": 1}


def _f_pattern(s: OpShape, l: int) -> dict[str, float]:
    p = s.out_h * s.out_w
    band = s.out_h * 3 * (s.in_w + 6) * _chunks(s.c_in, l)
    return {"macs": p * s.kept, "kernels": s.kept * _chunks(p, 64), "outputs": p * s.c_out,
            "band": band, "pixels": p, "offsets": s.kept + s.c_out, "call": 1}


def _f_depthwise(s: OpShape, l: int) -> dict[str, float]:
    p, c, k = s.out_h * s.out_w, s.c_out, s.kh * s.kw
    inner = s.interior
    vec = s.mult == 1 and l > 1                   # the SIMD paths take depth multiplier 1 only
    groups = _chunks(c, l) if vec else 0
    return {"taps_inner": inner * k * groups, "taps_border": (p - inner) * k * groups,
            "taps_tail": p * k * (c % l if vec else c), "outputs": p * c,
            "vectors": p * _chunks(c, 16), "setup": _chunks(c, 16) * k, "pixels": p, "call": 1}


def _f_fc(s: OpShape, l: int) -> dict[str, float]:
    return {"macs": s.c_out * _chunks(s.c_in, l), "outputs": s.c_out, "inputs": s.c_in, "call": 1}


def _f_fc_fwcs(s: OpShape, l: int) -> dict[str, float]:
    """``dtmm_fully_connected_fwcs_s8.c``: per output an offset, the ``fidx`` look-up and a
    requantization (MVE: 4 outputs per vector, ``blocks``); per kept run a ``cptr`` load
    and its length; per run its dot product: ``ceil(len / 16)`` VMLADAVA (MVE, a run of
    length other than 16 through the predicated loop: ``odd_runs``), ``len // 4`` word
    pairs of SMLAD plus ``len % 4`` scalar MACs (DSP), ``len`` MACs (C)."""
    from dtmm.schedule.space import fc_runs

    size, _, tail = fc_runs(max(s.c_in, 1))
    full, short = s.kept - s.tail, s.tail
    if l == 16:
        macs = full * _chunks(size, 16) + short * _chunks(tail, 16)
        rem = 0
    else:
        macs = full * (size // l) + short * (tail // l)
        rem = full * (size % l) + short * (tail % l)
    odd = (full if size != 16 else 0) + (short if tail != 16 else 0)
    return {"macs": macs, "rem": rem, "odd_runs": odd if l == 16 else 0, "runs": s.kept,
            "outputs": s.c_out, "blocks": _chunks(s.c_out, 4), "call": 1}


def _f_max_pool(s: OpShape, l: int) -> dict[str, float]:
    # dtmm_max_pool_s8.c: 16 channels per vector (MVE, the tail predicated), 4 per word
    # (DSP: SSUB8 + SEL, a channel tail of 1-3 in C); only the taps inside the input
    p, c, t = s.out_h * s.out_w, s.c_out, s.taps_inside
    vec, tail = (_chunks(c, l), 0) if l == 16 else (c // l, c % l)
    return {"taps": t * c, "taps_vec": t * vec, "taps_tail": t * tail, "outputs": p * c,
            "out_vec": p * _chunks(c, l), "rows": s.out_h * s.kh, "pixels": p, "call": 1}


def _f_avg_pool(s: OpShape, l: int) -> dict[str, float]:
    # dtmm_avg_pool_s8.c: 4 channels per vector or word (int32 / int16 sums) on both SIMD
    # paths; the division once per output vector (MVE) or per channel (DSP SDIV)
    p, c, t = s.out_h * s.out_w, s.c_out, s.taps_inside
    lanes = min(l, 4)
    return {"taps": t * c, "taps_vec": t * _chunks(c, lanes), "outputs": p * c,
            "out_vec": p * _chunks(c, lanes), "rows": s.out_h * s.kh, "pixels": p, "call": 1}


def _f_add(s: OpShape, l: int) -> dict[str, float]:
    n = s.out_h * s.out_w * s.c_out
    return {"elements": n, "vectors": _chunks(n, 16), "call": 1}


def _f_softmax(s: OpShape, l: int) -> dict[str, float]:
    return {"elements": s.out_h * s.c_out, "rows": s.out_h, "call": 1}


def _f_concat(s: OpShape, l: int) -> dict[str, float]:
    p = s.out_h * s.out_w
    return {"elements": p * s.c_out, "pixels": p, "inputs": s.kept, "call": 1}


def _f_invoke(s: OpShape, l: int) -> dict[str, float]:
    return {"bytes": s.c_in + s.c_out, "call": 1}


#: kind -> feature function ``(shape, lanes) -> {feature: value}``.
FEATURES = {"conv": _f_conv, "fwcs": _f_fwcs, "fwcs_small": _f_fwcs, "fwcs_wide": _f_fwcs_wide,
            "csr": _f_csr, "pattern": _f_pattern, "depthwise": _f_depthwise, "fc": _f_fc,
            "fc_fwcs": _f_fc_fwcs,
            "fwcs_generic": _f_fwcs_generic,
            "max_pool": _f_max_pool, "avg_pool": _f_avg_pool, "add": _f_add, "softmax": _f_softmax,
            "concat": _f_concat, "invoke": _f_invoke}
KINDS = tuple(FEATURES)


def fwcs_mve_vf(c_in: int) -> int:
    """Whole vectors per filterlet of the MVE asm filter loop for ``c_in``, or -1 where
    ``dtmm_conv_fwcs_s8.c`` runs its generic C loop (mirrors its ``fwcs_mve_vf``).

    >>> [fwcs_mve_vf(c) for c in (3, 16, 24, 48, 64, 80, 96, 128)]
    [0, 1, 1, -1, 4, -1, -1, 8]
    """
    if c_in % 16 == 0:
        vf = c_in // 16
        return vf if vf in (1, 2, 4) or vf % 8 == 0 else -1
    return c_in // 16 if c_in < 64 else -1


def op_kind(shape: OpShape, isa: str) -> str:
    """The cost kind of an op on ISA path ``isa``: the FWCS kernel's paths are told apart
    exactly as ``dtmm_conv_fwcs_s8.c`` chooses them (MVE: the asm filter loop where
    :func:`fwcs_mve_vf` allows it, C_in 16/32/64 as their own unrolled kind; DSP: the
    4-pixel SMLAD loop for C_in % 4 == 0, widened to int16 from 4 kept filterlets per
    kernel position; otherwise the generic C loop)."""
    if shape.kind == "fwcs":
        kk = shape.kh * shape.kw
        if isa == "mve":
            if fwcs_mve_vf(shape.c_in) < 0 or kk > 256:
                return "fwcs_generic"
            return "fwcs_small" if shape.c_in in (16, 32, 64) else "fwcs"
        if isa == "dsp":
            if shape.c_in % 4 or kk > 256:
                return "fwcs_generic"
            if shape.kept >= 4 * kk:
                return "fwcs_wide"
    return shape.kind


def features(shape: OpShape, isa: str) -> tuple[str, dict[str, float]]:
    """``(kind, {feature: value})`` of an op shape on an ISA path."""
    kind = op_kind(shape, isa)
    try:
        fn = FEATURES[kind]
    except KeyError:
        raise ScheduleError(f"no latency model for op kind {kind!r}") from None
    return kind, fn(shape, LANES[isa])


@dataclass
class LatencyModel:
    """Fitted coefficients per cost kind for one target and ISA path.

    ``coef[kind][feature]`` multiplies the feature; ``meta`` records how it was fitted
    (unit, source, fit errors, sample counts).
    """

    target: str
    isa: str
    coef: dict[str, dict[str, float]]
    meta: dict = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """``"instructions"`` (QEMU counts) or ``"cycles"`` (a board's measurements)."""
        return self.meta.get("unit", "instructions")

    def predict(self, shape: OpShape) -> float:
        kind, feats = features(shape, self.isa)
        c = self.coef.get(kind)
        if c is None:
            raise ScheduleError(f"the {self.target} calibration has no {kind!r} model; "
                                f"recalibrate (dtmm calibrate --target {self.target})")
        return float(sum(c.get(k, 0.0) * v for k, v in feats.items()))

    def to_json(self) -> dict:
        return {"format": "dtmm-latency-calibration", "version": 1, "target": self.target,
                "isa": self.isa, "coef": self.coef, "meta": self.meta}

    @staticmethod
    def from_json(obj: dict, *, source: str = "calibration") -> "LatencyModel":
        if not isinstance(obj, dict) or obj.get("format") != "dtmm-latency-calibration":
            raise ScheduleError(f"{source}: not a dtmm latency calibration file (no "
                                f"format: dtmm-latency-calibration)")
        try:
            coef = {str(k): {str(f): float(v) for f, v in fs.items()}
                    for k, fs in obj["coef"].items()}
            model = LatencyModel(str(obj["target"]), str(obj["isa"]), coef, dict(obj.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ScheduleError(f"{source}: malformed calibration ({type(e).__name__}: {e})") from None
        if model.isa not in LANES:
            raise ScheduleError(f"{source}: unknown ISA path {model.isa!r}")
        for kind, fs in coef.items():
            if kind not in FEATURES:
                raise ScheduleError(f"{source}: unknown op kind {kind!r}")
            bad = [f for f, v in fs.items() if not math.isfinite(v) or v < 0]
            if bad:
                raise ScheduleError(f"{source}: {kind}.{bad[0]} must be a finite value >= 0")
        return model


def fit(samples: list[tuple[OpShape, float]], isa: str) -> tuple[dict[str, dict[str, float]], dict]:
    """Non-negative least-squares coefficients per kind from measured ``(shape, count)``.

    Rows are weighted by ``1 / count`` so that the fit minimises *relative* errors (small
    and large layers count alike). Returns ``(coef, stats)`` with, per kind, the number of
    samples and the mean / max absolute relative error on them.

    >>> s = [(OpShape("add", out_h=h, out_w=h, c_out=8), 2.0 * h * h * 8 + 40) for h in (2, 4, 8, 16)]
    >>> coef, stats = fit(s, "scalar")
    >>> round(coef["add"]["elements"], 3), stats["add"]["max_rel_error"] < 1e-6
    (2.0, True)
    """
    from scipy.optimize import nnls

    by_kind: dict[str, list[tuple[dict[str, float], float]]] = {}
    for shape, y in samples:
        kind, f = features(shape, isa)
        by_kind.setdefault(kind, []).append((f, float(y)))
    coef: dict[str, dict[str, float]] = {}
    stats: dict[str, dict] = {}
    for kind, rows in by_kind.items():
        names = list(rows[0][0])
        a = np.array([[f[n] for n in names] for f, _ in rows], np.float64)
        y = np.array([v for _, v in rows], np.float64)
        w = 1.0 / np.maximum(y, 1.0)
        scale = np.maximum(np.abs(a * w[:, None]).max(axis=0), 1e-12)
        x, _ = nnls(a * w[:, None] / scale, y * w)
        x = x / scale
        coef[kind] = {n: float(v) for n, v in zip(names, x)}
        rel = np.abs(a @ x - y) / np.maximum(y, 1.0)
        stats[kind] = {"samples": len(rows), "mean_rel_error": float(rel.mean()),
                       "max_rel_error": float(rel.max())}
    return coef, stats


#: Where the calibrations shipped with dtmm live (one JSON per target).
CALIBRATION_DIR = __import__("pathlib").Path(__file__).resolve().parent / "calibrations"


def load_calibration(path) -> LatencyModel:
    """Read a calibration file written by ``dtmm calibrate`` (or a board CSV import)."""
    from pathlib import Path

    p = Path(path)
    try:
        obj = json.loads(p.read_text())
    except OSError as e:
        raise ScheduleError(f"{p}: cannot read the calibration file ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScheduleError(f"{p}: not a JSON calibration file ({e})") from None
    return LatencyModel.from_json(obj, source=str(p))


def default_calibration(target: str, isa: str | None = None) -> LatencyModel:
    """The calibration shipped for ``target`` (``cortex-m4``, ``cortex-m7``, ``cortex-m55``).

    ``isa``: the ISA path (default: the target's best); a calibration fitted on another
    path is refused.
    """
    path = CALIBRATION_DIR / f"{target}.json"
    if not path.is_file():
        raise ScheduleError(f"no shipped calibration for target {target!r}; known: "
                            + ", ".join(sorted(p.stem for p in CALIBRATION_DIR.glob("*.json")))
                            + f" (or measure one: dtmm calibrate --target {target})")
    m = load_calibration(path)
    if isa is not None and m.isa != isa:
        raise ScheduleError(f"the shipped {target} calibration is for the {m.isa} path, not {isa}")
    return m


def op_shape(op, graph) -> OpShape | None:
    """The :class:`OpShape` of an IR op of a quantized graph (None for a reshape: no code).

    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((8, 8, 4), seed=0); _ = sg.conv(6, 3, stride=2, pads="same"); g = sg.finish()
    >>> op_shape(g.ops[0], g)
    OpShape(kind='conv', out_h=4, out_w=4, c_in=4, c_out=6, kh=3, kw=3, in_h=8, in_w=8, kept=0, mult=1, stride_h=2, stride_w=2, pad_t=0, pad_l=0, tail=0)
    """
    kind = getattr(op, "kind", "")
    ins = graph.tensors[op.inputs[0]].shape if op.inputs else ()
    outs = graph.tensors[op.output].shape
    hw = lambda s: (int(s[0]), int(s[1])) if len(s) == 3 else (1, 1)  # noqa: E731
    (ih, iw), (oh, ow) = hw(ins), hw(outs)
    geo = {}
    if kind in ("conv2d", "compressed_conv2d", "depthwise_conv2d"):
        geo = {"stride_h": int(op.stride[0]), "stride_w": int(op.stride[1]),
               "pad_t": int(op.pads[0]), "pad_l": int(op.pads[2])}
    if kind == "conv2d":
        o, kh, kw, c = (int(d) for d in op.weight.shape)
        return OpShape("conv", oh, ow, c, o, kh, kw, ih, iw, **geo)
    if kind == "compressed_conv2d":
        o, kh, kw, c = op.weight_shape
        f = op.fmt
        kept = {"fwcs": lambda: f.n_filterlets, "csr": lambda: len(f.values),
                "pattern": lambda: len(f.pid)}[op.format_name]()
        return OpShape(op.format_name, oh, ow, c, o, kh, kw, ih, iw, int(kept), **geo)
    if kind == "depthwise_conv2d":
        _, kh, kw, c = (int(d) for d in op.weight.shape)
        return OpShape("depthwise", oh, ow, int(ins[-1]), c, kh, kw, ih, iw,
                       mult=int(op.depth_multiplier), **geo)
    if kind == "fully_connected":
        o, n = (int(d) for d in op.weight.shape)
        return OpShape("fc", 1, 1, n, o)
    if kind == "compressed_fully_connected":
        o, n = (int(d) for d in op.fmt.shape)
        f = op.fmt
        npos = -(-n // f.size)               # (the cost features assume the default size 16)
        short = n - (npos - 1) * f.size != f.size
        tails = int((np.asarray(f.cptr) == (npos - 1) * f.size).sum()) if short else 0
        return OpShape("fc_fwcs", 1, 1, n, o, kept=int(f.n_filterlets), tail=tails)
    if kind in ("max_pool2d", "avg_pool2d"):
        return OpShape(kind[:-2], oh, ow, int(ins[-1]), int(outs[-1]), int(op.kernel[0]),
                       int(op.kernel[1]), ih, iw, stride_h=int(op.stride[0]),
                       stride_w=int(op.stride[1]), pad_t=int(op.pads[0]), pad_l=int(op.pads[2]))
    if kind == "add":
        n = int(np.prod(outs))
        return OpShape("add", 1, 1, n, n)
    if kind == "softmax":
        depth = int(outs[-1])
        return OpShape("softmax", int(np.prod(outs)) // depth, 1, depth, depth)
    if kind == "concat":
        return OpShape("concat", oh, ow, 0, int(outs[-1]), kept=len(op.inputs))
    if kind == "reshape":
        return None
    raise ScheduleError(f"op {op.name!r}: no latency model for op kind {kind!r}")
