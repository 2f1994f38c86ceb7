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
from dtmm.errors import InvalidArgument

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
        raise InvalidArgument(f"rounding_divide_by_pot: exponent must be in [0, 31], got {exponent}")
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
        raise InvalidArgument(f"quantize_multiplier: negative multiplier {real_multiplier}")
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
        raise InvalidArgument(f"multiplier {real_multiplier} must be in (0, 1)")
    q, shift = quantize_multiplier(real_multiplier)
    if shift > 0:
        raise InvalidArgument(f"multiplier {real_multiplier} gave a positive shift")
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

    def quantize(f: float) -> int:
        # TFLite's Quantize(): ``TfLiteRound(f / scale)`` evaluated in float32.
        with np.errstate(over="ignore"):
            q = np.float32(f) / np.float32(scale)
        return int(zero_point) + tflite_round(float(q))

    if act == "relu":
        return max(qmin, quantize(0.0)), qmax
    if act == "relu6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    raise InvalidArgument(f"unknown activation {activation!r}")


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


# ------------------------------------------------------------------------- SOFTMAX
#
# TFLite (Micro)'s int8 -> int8 SOFTMAX (reference_ops::Softmax) works in gemmlowp
# fixed point: the input difference to the row maximum is rescaled to Q5.26,
# exponentiated with ``exp_on_negative_values`` (Q0.31 result), summed in Q12.19,
# and the sum is inverted with ``one_over_one_plus_x_for_x_in_0_1``. The helpers
# below reproduce those gemmlowp routines on int64 arrays holding int32 values.

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUM_INTEGER_BITS = 12


def _wrap32(x) -> np.ndarray:
    """Two's-complement int32 wrap-around of int64 values (C int32 add/sub)."""
    return ((_i64(x) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32 values."""
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX,
                    np.where(x < -threshold, INT32_MIN, x << exponent))


def _fp_mul(a, b) -> np.ndarray:
    """Product of two gemmlowp FixedPoint int32 raws (integer bits add up)."""
    return saturating_rounding_doubling_high_mul(a, b)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """gemmlowp exp() of a Q0.31 value in [-1/4, 0): Taylor series around -1/8."""
    a = _i64(a)
    constant_term = 1895147668          # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883       # 1/3 in Q0.31
    x = _wrap32(a + (1 << 28))          # a + 1/8
    x2 = _fp_mul(x, x)
    x3 = _fp_mul(x2, x)
    x4 = _fp_mul(x2, x2)
    x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2)
    poly = saturating_rounding_multiply_by_pot(
        _wrap32(_fp_mul(_wrap32(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return _wrap32(constant_term + _fp_mul(constant_term, _wrap32(x + poly)))


def exp_on_negative_values(a, integer_bits: int = SOFTMAX_SCALED_DIFF_INTEGER_BITS) -> np.ndarray:
    """gemmlowp exp_on_negative_values: Q(integer_bits) input <= 0 -> Q0.31 output."""
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = _wrap32((a & mask) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = _wrap32(a_mod_quarter_minus_one_quarter - a)
    # Barrel shifter: multiply by exp(-2**k) for every set bit of the remainder.
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                                 (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where(remainder & bit, _fp_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))   # -32.0 in Q(integer_bits)
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """gemmlowp 1 / (1 + x) for a Q0.31 x in [0, 1): Newton-Raphson, Q0.31 result."""
    a = _i64(a)
    s = a + INT32_MAX                                      # RoundingHalfSum(a, One())
    half_denominator = _trunc_div(s + np.where(s >= 0, 1, -1), 2)
    constant_48_over_17 = 1515870810                       # Q2.29
    constant_neg_32_over_17 = -1010580540                  # Q2.29
    one_q2 = 1 << 29
    x = _wrap32(constant_48_over_17 + _fp_mul(half_denominator, constant_neg_32_over_17))
    for _ in range(3):
        half_denominator_times_x = _fp_mul(half_denominator, x)          # Q2.29
        one_minus = _wrap32(one_q2 - half_denominator_times_x)           # Q2.29
        x = _wrap32(x + saturating_rounding_multiply_by_pot(_fp_mul(x, one_minus), 2))
    # ExactMulByPot<-1> keeps the raw value (Q2 -> Q1); Rescale<0> shifts left by 1.
    return saturating_rounding_multiply_by_pot(x, 1)


def get_reciprocal(x, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: ``(Q0.31 scale, num_bits_over_unit)`` with
    ``1/x == scale * 2**-num_bits_over_unit`` for a positive Q(x_integer_digits) x."""
    x = _i64(x)
    if np.any(x <= 0):
        raise InvalidArgument("get_reciprocal: x must be positive")
    # CountLeadingZeros of a positive 32-bit value is 32 - bit_length; frexp's
    # exponent is exactly the bit length for integers below 2**53.
    headroom_plus_one = 32 - np.frexp(x.astype(np.float64))[1].astype(np.int64)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = _wrap32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def preprocess_softmax_scaling(beta: float, input_scale: float,
                               input_integer_bits: int = SOFTMAX_SCALED_DIFF_INTEGER_BITS
                               ) -> tuple[int, int]:
    """TFLite PreprocessSoftmaxScaling (double-rounding build): ``(multiplier, left_shift)``."""
    max_real_multiplier = float((1 << 31) - 1)
    real = min(float(beta) * float(input_scale) * (1 << (31 - input_integer_bits)),
               max_real_multiplier)
    if not real > 1.0:
        raise InvalidArgument(f"softmax: beta * input_scale * 2**{31 - input_integer_bits} = {real} "
                         f"must be > 1")
    q, shift = quantize_multiplier(real)
    if shift < 0:
        raise InvalidArgument(f"softmax: multiplier {real} gave a negative shift")
    return q, shift


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """TFLite CalculateInputRadius: largest |input diff| that does not overflow."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * (1 << (total_signed_bits - input_integer_bits))
                          / (1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def softmax_params(input_scale: float, beta: float = 1.0) -> dict[str, int]:
    """Constants of TFLite Micro's int8 SOFTMAX, as ``CalculateSoftmaxParams`` computes
    them at Prepare time from the float32 input scale and float32 ``beta``.

    Returns the fields of :class:`dtmm.graph.ir.SoftmaxQuant`.

    >>> softmax_params(0.1)   # float32(0.1) * 2**26 = 0.8000000119 * 2**23
    {'beta_multiplier': 1717986944, 'beta_left_shift': 23, 'diff_min': -248}
    """
    mult, left_shift = preprocess_softmax_scaling(float(np.float32(beta)),
                                                  float(np.float32(input_scale)))
    diff_min = -calculate_input_radius(SOFTMAX_SCALED_DIFF_INTEGER_BITS, left_shift)
    return dict(beta_multiplier=int(mult), beta_left_shift=int(left_shift), diff_min=int(diff_min))


def softmax_int8(x, beta_multiplier: int, beta_left_shift: int, diff_min: int) -> np.ndarray:
    """TFLite reference int8 SOFTMAX over the last axis (output scale 1/256, zp -128).

    >>> p = softmax_params(0.1)
    >>> softmax_int8(np.array([[0, 0], [10, -10]], np.int8), **p).tolist()
    [[0, 0], [97, -97]]
    """
    x = _i64(x)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    # Differences below diff_min are skipped by TFLite (they would overflow the rescale).
    rescaled = multiply_by_quantized_multiplier(np.where(valid, diff, 0), beta_multiplier,
                                                beta_left_shift)
    exp = exp_on_negative_values(rescaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS)      # Q0.31
    exp_acc = saturating_rounding_multiply_by_pot(exp, -SOFTMAX_ACCUM_INTEGER_BITS)  # Q12.19
    sum_of_exps = _wrap32(np.where(valid, exp_acc, 0).sum(axis=-1, keepdims=True))
    shifted_scale, num_bits_over_unit = get_reciprocal(sum_of_exps, SOFTMAX_ACCUM_INTEGER_BITS)
    prod = _fp_mul(shifted_scale, exp)
    exponent = num_bits_over_unit + 31 - 8
    out = _rdbpot_array(prod, exponent) - 128
    out = np.clip(out, -128, 127)
    return np.where(valid, out, -128).astype(np.int8)


def _rdbpot_array(x, exponent) -> np.ndarray:
    """rounding_divide_by_pot with broadcasting exponents (checked to be in [0, 31])."""
    x, exponent = np.broadcast_arrays(_i64(x), _i64(exponent))
    return rounding_divide_by_pot(x, exponent)
