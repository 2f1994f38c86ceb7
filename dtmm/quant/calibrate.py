"""Activation range calibration: min/max, percentile or MSE, over real data.

An :class:`Observer` sees every tensor of a float graph for each calibration
batch and returns a ``(lo, hi)`` range per tensor. Ranges then become TFLite-style
asymmetric int8 parameters with :func:`choose_qparams`.

Example:
    >>> import numpy as np
    >>> choose_qparams(0.0, 1.0)        # an image in [0, 1]
    QParams(scale=array([0.00392157], dtype=float32), zero_point=array([-128], dtype=int32), axis=0)
    >>> obs = Observer("minmax"); obs.update({"t": np.array([-1.0, 3.0])}); obs.ranges()["t"]
    (-1.0, 3.0)
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import QuantizationError
from dtmm.graph.ir import QParams
from dtmm.quant.arith import tflite_round

METHODS = ("minmax", "percentile", "mse")
_SAMPLE_PER_BATCH = 4096
_MAX_SAMPLES = 200_000


def choose_qparams(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters covering ``[lo, hi]`` (widened to include 0).

    Follows TFLite's ChooseQuantizationParams: ``scale = (hi - lo) / 255`` and a
    zero point nudged to an integer so that real 0 is exactly representable.
    A degenerate range (a tensor that stayed 0 during calibration) gets ``[0, 1]``.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-6:
        # A tensor that was (almost) constant zero during calibration: any scale represents
        # it; a unit range keeps the bias of consumers representable in int32.
        hi = lo + 1.0
    scale = np.float32((hi - lo) / 255.0)
    zp_from_min = -128 - lo / float(scale)
    zp = int(np.clip(tflite_round(zp_from_min), -128, 127))
    return QParams.per_tensor(scale, zp)


class Observer:
    """Collect per-tensor ranges over calibration batches.

    ``method``: ``minmax`` (absolute range), ``percentile`` (clip to the
    ``percentile``/``100-percentile`` quantiles of a value sample) or ``mse``
    (the clipping range that minimises int8 quantization error on the sample).
    """

    def __init__(self, method: str = "minmax", percentile: float = 99.99, seed: int = 0):
        if method not in METHODS:
            raise QuantizationError(f"unknown calibration method {method!r}; choose from {METHODS}")
        self.method = method
        self.percentile = float(percentile)
        self.lo: dict[str, float] = {}
        self.hi: dict[str, float] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.rng = np.random.default_rng(seed)

    def update(self, values: dict[str, np.ndarray]) -> None:
        for name, v in values.items():
            v = np.asarray(v, dtype=np.float32).ravel()
            if v.size == 0:
                continue
            lo, hi = float(v.min()), float(v.max())
            self.lo[name] = min(lo, self.lo.get(name, lo))
            self.hi[name] = max(hi, self.hi.get(name, hi))
            if self.method != "minmax":
                take = v if v.size <= _SAMPLE_PER_BATCH else self.rng.choice(v, _SAMPLE_PER_BATCH, replace=False)
                bucket = self.samples.setdefault(name, [])
                if sum(b.size for b in bucket) < _MAX_SAMPLES:
                    bucket.append(take)

    def ranges(self) -> dict[str, tuple[float, float]]:
        if not self.lo:
            raise QuantizationError("calibration saw no data (empty calibration set?)")
        out = {}
        for name in self.lo:
            lo, hi = self.lo[name], self.hi[name]
            if self.method == "percentile":
                s = np.concatenate(self.samples[name])
                lo = max(lo, float(np.percentile(s, 100.0 - self.percentile)))
                hi = min(hi, float(np.percentile(s, self.percentile)))
            elif self.method == "mse":
                lo, hi = _mse_range(np.concatenate(self.samples[name]), lo, hi)
            out[name] = (lo, hi)
        return out


def _mse_range(sample: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Shrink ``[lo, hi]`` by a common factor to minimise the quantization MSE of ``sample``."""
    best, best_err = (lo, hi), np.inf
    for frac in np.linspace(0.3, 1.0, 36):
        qp = choose_qparams(lo * frac, hi * frac)
        s, z = qp.s, qp.zp
        q = np.clip(np.round(sample / s) + z, -128, 127)
        err = float(np.mean((sample - (q - z) * s) ** 2))
        if err < best_err:
            best, best_err = (lo * frac, hi * frac), err
    return best
