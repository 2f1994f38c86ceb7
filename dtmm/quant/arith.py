"""TFLite-exact fixed-point arithmetic, vectorised over NumPy int64 arrays.

These functions reproduce, value for value, the integer arithmetic of TensorFlow
Lite (Micro)'s reference kernels (gemmlowp's ``SaturatingRoundingDoublingHighMul``
and ``RoundingDivideByPOT``, ``QuantizeMultiplier`` and
``MultiplyByQuantizedMultiplier`` in its default double-rounding form). Every
kernel in dtmm - NumPy reference, host C, Cortex-M - uses these exact semantics.

Example:
    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> int(multiply_by_quantized_multiplier(100, *quantize_multiplier(0.5)))
    50
    >>> int(rounding_divide_by_pot(-5, 1))   # -2.5 rounds away from zero
    -3
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    """C integer division (truncation toward zero) for int64 arrays."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (returned as int64).

    ``(a * b * 2 + 2**31 rounding) >> 32`` with round-half-away-from-zero via a
    nudge, saturating the single overflow case ``a == b == INT32_MIN``.
    """
    a, b = _i64(a), _i64(b)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _trunc_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, res)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero."""
    x, exponent = _i64(x), _i64(exponent)
    if np.any((exponent < 0) | (exponent > 31)):
        raise ValueError(f"rounding_divide_by_pot: exponent must be in [0, 31], got {exponent}")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (double rounding), elementwise.

    ``shift`` > 0 multiplies by ``2**shift`` before the high multiply; ``shift`` < 0
    divides by ``2**-shift`` (rounding) after it.
    """
    x, multiplier, shift = _i64(x), _i64(multiplier), _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = x * (np.int64(1) << left)
    # In C this product is an int32 multiply; it must not overflow for valid models.
    if np.any((shifted < INT32_MIN) | (shifted > INT32_MAX)):
        raise OverflowError("multiply_by_quantized_multiplier: x << left_shift overflows int32")
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, left_shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (``left_shift`` <= 0)."""
    x, multiplier, left_shift = _i64(x), _i64(multiplier), _i64(left_shift)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -left_shift)


def multiply_by_quantized_multiplier_greater_than_one(x, multiplier, left_shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplierGreaterThanOne (``left_shift`` >= 0)."""
    x, multiplier = _i64(x), _i64(multiplier)
    return saturating_rounding_doubling_high_mul(x * (np.int64(1) << int(left_shift)), multiplier)


def tflite_round(x: float) -> int:
    """C++ ``std::round``: half away from zero (Python's ``round`` is half-to-even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: ``real = q * 2**(shift - 31)`` with q a Q31 int32.

    Returns ``(quantized_multiplier, shift)``. Multipliers too small to represent
    (shift < -31) become ``(0, 0)`` as in TFLite.
    """
    if real_multiplier < 0:
        raise ValueError(f"quantize_multiplier: negative multiplier {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplierSmallerThanOneExp: requires 0 < m < 1; shift <= 0."""
    if not 0.0 < real_multiplier < 1.0:
        raise ValueError(f"multiplier {real_multiplier} must be in (0, 1)")
    q, shift = quantize_multiplier(real_multiplier)
    if shift > 0:
        raise ValueError(f"multiplier {real_multiplier} gave a positive shift")
    return q, shift


def conv_multipliers(input_scale: float, weight_scales: np.ndarray, output_scale: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel requantization constants of CONV_2D / DEPTHWISE_CONV_2D.

    As TFLite Micro's ``PopulateConvolutionQuantizationParams``: the float32 scales
    are widened to double and ``in * w / out`` is computed in double.
    """
    ws = np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))
    ins, outs = float(np.float32(input_scale)), float(np.float32(output_scale))
    mult = np.empty(ws.size, np.int32)
    shift = np.empty(ws.size, np.int32)
    for i, w in enumerate(ws):
        mult[i], shift[i] = quantize_multiplier(ins * float(w) / outs)
    return mult, shift


def fc_multiplier(input_scale: float, weight_scale: float, output_scale: float) -> tuple[int, int]:
    """FULLY_CONNECTED requantization (per-tensor): as TFLite's
    ``GetQuantizedConvolutionMultipler``, the product ``in * w`` is taken in float32
    before widening to double and dividing by the output scale."""
    prod = float(np.float32(input_scale) * np.float32(weight_scale))
    return quantize_multiplier(prod / float(np.float32(output_scale)))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 outputs.

    >>> activation_range("relu", 0.1, -10)
    (-10, 127)
    >>> activation_range("relu6", 0.05, -128)
    (-128, -8)
    """
    qmin, qmax = -128, 127
    act = getattr(activation, "value", activation)
    if act == "none":
        return qmin, qmax
    lo = zero_point + tflite_round(0.0 / scale)
    if act == "relu":
        return max(qmin, lo), qmax
    if act == "relu6":
        return max(qmin, lo), min(qmax, zero_point + tflite_round(6.0 / scale))
    raise ValueError(f"unknown activation {activation!r}")


# ----------------------------------------------------------------------------- ADD

ADD_LEFT_SHIFT = 20


def add_params(in1_scale: float, in2_scale: float, out_scale: float) -> dict[str, int]:
    """Constants of TFLite's int8 ADD (``PrepareGeneralSubOp``-style rescaling).

    Both inputs are brought to a common scale ``2 * max(s1, s2)`` with 20 bits of
    headroom, summed, then rescaled to the output.
    """
    s1, s2, so = (float(np.float32(v)) for v in (in1_scale, in2_scale, out_scale))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(s1 / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(s2 / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one_exp(twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    return dict(left_shift=ADD_LEFT_SHIFT, in1_multiplier=m1, in1_shift=sh1,
                in2_multiplier=m2, in2_shift=sh2, out_multiplier=mo, out_shift=sho)
