/*
 * dtmm_requant.h - TFLite-exact fixed-point requantization, header-only.
 *
 * Bit for bit the integer arithmetic of TensorFlow Lite (Micro)'s reference kernels
 * and of dtmm.quant.arith:
 *   dtmm_srdhm            gemmlowp SaturatingRoundingDoublingHighMul (saturates the
 *                         single overflow case a == b == INT32_MIN to INT32_MAX)
 *   dtmm_rdbpot           gemmlowp RoundingDivideByPOT (exponent 0..31, rounds half
 *                         away from zero)
 *   dtmm_requantize       MultiplyByQuantizedMultiplier, double-rounding form:
 *                         shift > 0 multiplies by 2^shift first, shift < 0 divides
 *                         by 2^-shift (rounding) after the high multiply.
 *                         Precondition (as in TFLite): acc * 2^max(shift,0) fits int32.
 *   dtmm_requantize_lt1   MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)
 *
 * Example: dtmm_requantize(100, 1073741824, 0) == 50   (multiplier 0.5)
 */
#ifndef DTMM_REQUANT_H
#define DTMM_REQUANT_H

#include <stdint.h>

static inline int32_t dtmm_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30));
    /* C division truncates toward zero, as gemmlowp's does. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static inline int32_t dtmm_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t dtmm_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* Unsigned shift: defined behaviour, same bits as TFLite's int32 multiply. */
    const int32_t shifted = (int32_t)((uint32_t)acc << left);
    return dtmm_rdbpot(dtmm_srdhm(shifted, multiplier), right);
}

static inline int32_t dtmm_requantize_lt1(int32_t x, int32_t multiplier, int32_t shift)
{
    return dtmm_rdbpot(dtmm_srdhm(x, multiplier), -shift);
}

/* Requantize an int32 accumulator to int8: clamp(requant(acc) + out_zp, act_min, act_max). */
static inline int8_t dtmm_requant_s8(int32_t acc, int32_t multiplier, int32_t shift,
                                     int32_t out_zp, int32_t act_min, int32_t act_max)
{
    int32_t v = dtmm_requantize(acc, multiplier, shift) + out_zp;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return (int8_t)v;
}

#endif /* DTMM_REQUANT_H */
