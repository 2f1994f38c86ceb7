"""Hand-computed edge cases of dtmm.quant.arith (TFLite / gemmlowp fixed-point arithmetic).

Bit-exactness against the TFLM interpreter itself is checked in tests/test_tflite.py;
these tests pin the individual primitives to values worked out by hand.
"""
import numpy as np
import pytest

from dtmm.quant import arith
from dtmm.quant.arith import INT32_MAX, INT32_MIN

Q30 = 1 << 30   # 0.5 as a Q0.31 multiplier


# --------------------------------------------------------------- SaturatingRoundingDoublingHighMul

@pytest.mark.parametrize("a,b,expected", [
    (Q30, Q30, 1 << 29),             # 0.5 * 0.5 = 0.25
    (1, Q30, 1),                     # +0.5 rounds up
    (-1, Q30, 0),                    # -0.5 rounds up too (gemmlowp nudge 1 - 2**30)
    (3, Q30, 2),                     # +1.5 -> 2
    (-3, Q30, -1),                   # -1.5 -> -1
    (-5, Q30, -2),                   # -2.5 -> -2
    (INT32_MIN, INT32_MIN, INT32_MAX),   # the single overflow case saturates
    (INT32_MIN, INT32_MAX, -INT32_MAX),  # -1 * (1 - 2**-31)
    (INT32_MAX, INT32_MAX, INT32_MAX - 1),
    (0, INT32_MIN, 0),
])
def test_srdhm(a, b, expected):
    assert int(arith.saturating_rounding_doubling_high_mul(a, b)) == expected


def test_srdhm_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    a = rng.integers(INT32_MIN, INT32_MAX, 1000, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, 1000, endpoint=True)
    got = arith.saturating_rounding_doubling_high_mul(a, b)
    for x, y, g in zip(a[:50].tolist(), b[:50].tolist(), got[:50].tolist()):
        ab = x * y
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        q = abs(ab + nudge) // (1 << 31) * (1 if ab + nudge >= 0 else -1)   # C truncation
        assert g == q


# --------------------------------------------------------------- RoundingDivideByPOT

@pytest.mark.parametrize("x,e,expected", [
    (5, 1, 3), (-5, 1, -3),          # ties away from zero
    (4, 1, 2), (-4, 1, -2),
    (6, 2, 2), (-6, 2, -2),          # 1.5 / -1.5
    (7, 2, 2), (-7, 2, -2),          # 1.75
    (5, 2, 1), (-5, 2, -1),          # 1.25
    (123, 0, 123), (-123, 0, -123),
    (INT32_MAX, 31, 1), (INT32_MIN, 31, -1),
])
def test_rounding_divide_by_pot(x, e, expected):
    assert int(arith.rounding_divide_by_pot(x, e)) == expected


def test_rounding_divide_by_pot_rejects_bad_exponent():
    with pytest.raises(ValueError):
        arith.rounding_divide_by_pot(1, 32)
    with pytest.raises(ValueError):
        arith.rounding_divide_by_pot(1, -1)


# --------------------------------------------------------------- MultiplyByQuantizedMultiplier

@pytest.mark.parametrize("x,m,shift,expected", [
    (100, Q30, 0, 50),               # * 0.5
    (100, Q30, -1, 25),              # * 0.25 (right shift after the high multiply)
    (3, Q30, 1, 3),                  # * 1.0 (left shift before)
    (3, Q30, 3, 12),                 # * 4
    (-100, Q30, -2, -13),            # -12.5 -> -13 (away from zero in the final shift)
    (1, Q30, -1, 1),                 # double rounding: 0.5 -> 1, then 0.5 -> 1 (exact 0.25)
    (-1, Q30, -1, 0),                # -0.5 -> 0, then 0
    (5, 0, 0, 0),                    # flushed multiplier
])
def test_multiply_by_quantized_multiplier(x, m, shift, expected):
    assert int(arith.multiply_by_quantized_multiplier(x, m, shift)) == expected


def test_multiply_by_quantized_multiplier_per_channel_broadcast():
    acc = np.array([[100, 100, -100]])
    got = arith.multiply_by_quantized_multiplier(acc, np.array([Q30, Q30, Q30]), np.array([0, -1, 1]))
    assert got.tolist() == [[50, 25, -100]]


def test_left_shift_overflow_is_reported():
    with pytest.raises(OverflowError):
        arith.multiply_by_quantized_multiplier(1 << 30, Q30, 2)


# --------------------------------------------------------------- QuantizeMultiplier

@pytest.mark.parametrize("real,expected", [
    (0.5, (Q30, 0)),
    (1.0, (Q30, 1)),
    (0.25, (Q30, -1)),
    (2.0, (Q30, 2)),
    (0.75, (3 << 29, 0)),
    (2.0 ** -31, (Q30, -30)),
    (2.0 ** -32, (Q30, -31)),        # smallest shift kept
    (2.0 ** -33, (0, 0)),            # shift < -31 -> flushed to zero
    (1e-12, (0, 0)),
    (0.0, (0, 0)),
    (1 - 2.0 ** -33, (Q30, 1)),      # q * 2**31 rounds up to 2**31 -> halve, shift + 1
    (0.1, (1717986918, -3)),         # 0.8 * 2**31 = 1717986918.4
])
def test_quantize_multiplier(real, expected):
    assert arith.quantize_multiplier(real) == expected


def test_quantize_multiplier_rounds_half_away_from_zero():
    # q * 2**31 = 1073741824.5 exactly -> 1073741825 (std::round), not banker's rounding.
    real = (Q30 + 0.5) / 2 ** 31
    assert arith.quantize_multiplier(real) == (Q30 + 1, 0)


def test_quantize_multiplier_rejects_negative():
    with pytest.raises(ValueError):
        arith.quantize_multiplier(-0.5)


def test_quantize_multiplier_smaller_than_one():
    assert arith.quantize_multiplier_smaller_than_one_exp(0.3) == arith.quantize_multiplier(0.3)
    with pytest.raises(ValueError):
        arith.quantize_multiplier_smaller_than_one_exp(1.0)


def test_tflite_round():
    assert [arith.tflite_round(v) for v in (2.5, -2.5, 0.5, -0.5, 1.49999, -1.5)] == [3, -3, 1, -1, 1, -2]


# --------------------------------------------------------------- scales -> constants

def test_conv_multipliers_use_double_of_float32_scales():
    m, s = arith.conv_multipliers(0.02, np.array([0.01, 0.005], np.float32), 0.1)
    for i, w in enumerate([0.01, 0.005]):
        real = float(np.float32(0.02)) * float(np.float32(w)) / float(np.float32(0.1))
        assert (int(m[i]), int(s[i])) == arith.quantize_multiplier(real)


def test_fc_multiplier_takes_float32_product():
    real = float(np.float32(0.02) * np.float32(0.01)) / float(np.float32(0.1))
    assert arith.fc_multiplier(0.02, 0.01, 0.1) == arith.quantize_multiplier(real)


def test_add_params_equal_scales():
    p = arith.add_params(0.5, 0.5, 0.5)
    # inputs: 0.5 / (2 * 0.5) = 0.5 -> (2**30, 0); output: 1 / 2**20 -> (2**30, -19 + 1)
    assert p == dict(left_shift=20, in1_multiplier=Q30, in1_shift=0, in2_multiplier=Q30,
                     in2_shift=0, out_multiplier=Q30, out_shift=-18)


# --------------------------------------------------------------- activation range

@pytest.mark.parametrize("act,scale,zp,expected", [
    ("none", 0.1, 5, (-128, 127)),
    ("relu", 0.1, -10, (-10, 127)),
    ("relu", 0.1, -128, (-128, 127)),
    ("relu6", 0.05, -128, (-128, -8)),       # 6 / 0.05 = 120
    ("relu6", 0.01, 0, (0, 127)),            # 600 saturates
    ("relu6", 0.1, 20, (20, 80)),
])
def test_activation_range(act, scale, zp, expected):
    assert arith.activation_range(act, scale, zp) == expected


def test_activation_range_divides_in_float32():
    # float32(6) / s == 176.5 exactly in float32 (-> 177) while the double quotient is
    # 176.4999927 (-> 176). TFLite's Quantize() divides in float; checked against TFLM
    # in tests/test_tflite.py::test_relu6_bound_uses_float32_division.
    s = float.fromhex("0x1.167b4ap-5")
    assert arith.activation_range("relu6", s, -128) == (-128, -128 + 177)


# --------------------------------------------------------------- softmax

def test_softmax_params():
    # float32(0.1) * 2**26 = 0.80000001192 * 2**23
    assert arith.softmax_params(0.1) == dict(beta_multiplier=1717986944, beta_left_shift=23,
                                             diff_min=-248)
    # 0.5 * 2**26 = 0.5 * 2**26 -> (2**30, 26); radius floor(31 * 2**26 / 2**26) = 31
    assert arith.softmax_params(0.5) == dict(beta_multiplier=Q30, beta_left_shift=26, diff_min=-31)
    # the real multiplier is capped at 2**31 - 1 for huge input scales: only the max survives
    assert arith.softmax_params(1000.0) == dict(beta_multiplier=INT32_MAX, beta_left_shift=31,
                                                diff_min=0)


def test_exp_on_negative_values():
    one = 1 << 26                                   # 1.0 in Q5.26
    a = np.array([0, -one, -one // 4, -3 * one, -one // 3, -31 * one, -(32 * one - 1)])
    got = arith.exp_on_negative_values(a)
    assert got[0] == INT32_MAX
    want = np.exp(a / 2.0 ** 26) * 2 ** 31
    assert np.all(np.abs(got - want) <= 5e-7 * 2 ** 31)   # gemmlowp's accuracy


def test_one_over_one_plus_x():
    x = np.array([0, 1 << 30, (3 << 29)])          # 0, 0.5, 0.75
    got = arith.one_over_one_plus_x_for_x_in_0_1(x)
    want = 2 ** 31 / (1 + x / 2 ** 31)
    assert np.all(np.abs(got - np.minimum(want, INT32_MAX)) <= 8)


def test_get_reciprocal():
    one = 1 << 19                                   # 1.0 in Q12.19
    scale, nbits = arith.get_reciprocal(np.array([one, 3 * one, 1000 * one]), 12)
    assert nbits.tolist() == [0, 1, 9]             # 1000 = 1.953 * 2**9
    assert abs(int(scale[1]) / 2 ** 31 * 2 ** -1 - 1 / 3) < 1e-8


def test_softmax_int8_shapes_and_values():
    p = arith.softmax_params(0.1)
    out = arith.softmax_int8(np.array([[0, 0], [10, -10], [127, -128], [5, 5]], np.int8), **p)
    assert out.tolist() == [[0, 0], [97, -97], [127, -128], [0, 0]]
    # a uniform row of 4: 0.25 -> 64 - 128 = -64
    assert arith.softmax_int8(np.full((1, 4), 7, np.int8), **p).tolist() == [[-64] * 4]
