/*
 * dtmm_softmax_s8.c - int8 softmax, bit-exact with TFLite Micro's reference int8
 * SOFTMAX and with dtmm.quant.arith.softmax_int8 (see dtmm_softmax_s8.h).
 *
 * gemmlowp fixed point, int32 raws: the input difference to the row maximum is
 * rescaled to Q5.26 (beta_multiplier, beta_left_shift), exponentiated with
 * exp_on_negative_values (Q0.31), summed in Q12.19, inverted with
 * one_over_one_plus_x_for_x_in_0_1 and scaled to the int8 output (scale 1/256,
 * zero point -128).  Fixed-point additions wrap as two's complement (done in
 * uint32 to stay defined C).  Plain C on every target.
 */
#include "dtmm_softmax_s8.h"

#include "dtmm_requant.h"

#define SCALED_DIFF_INTEGER_BITS 5
#define ACCUM_INTEGER_BITS 12

static inline int32_t add_w(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t sub_w(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent>. */
static inline int32_t srmpot(int32_t x, int32_t exponent)
{
    if (exponent == 0) return x;
    if (exponent < 0) return dtmm_rdbpot(x, -exponent);
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* exp(a) for a Q0.31 a in [-1/4, 0). */
static int32_t exp_interval(int32_t a)
{
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = add_w(a, 1 << 28);
    const int32_t x2 = dtmm_srdhm(x, x);
    const int32_t x3 = dtmm_srdhm(x2, x);
    const int32_t x4 = dtmm_srdhm(x2, x2);
    const int32_t x4_over_4 = srmpot(x4, -2);
    const int32_t poly = srmpot(add_w(dtmm_srdhm(add_w(x4_over_4, x3), constant_1_over_3), x2), -1);
    return add_w(constant_term, dtmm_srdhm(constant_term, add_w(x, poly)));
}

/* exp(a) for a Q5.26 a <= 0, Q0.31 result. */
static int32_t exp_on_negative_values(int32_t a)
{
    static const int32_t mult[7] = {1672461947, 1302514674, 790015084, 290630308,
                                    39332535, 720401, 242};
    const int32_t frac = 31 - SCALED_DIFF_INTEGER_BITS;
    const int32_t one_quarter = (int32_t)1 << (frac - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t amq = sub_w(a & mask, one_quarter);
    int32_t result = exp_interval(srmpot(amq, SCALED_DIFF_INTEGER_BITS));
    const int32_t remainder = sub_w(amq, a);
    for (int32_t k = -2; k <= 4; k++) {
        if (SCALED_DIFF_INTEGER_BITS > k && (remainder & ((int32_t)1 << (frac + k)))) {
            result = dtmm_srdhm(result, mult[k + 2]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a Q0.31 a in [0, 1). */
static int32_t one_over_one_plus_x(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half_den = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = add_w(1515870810, dtmm_srdhm(half_den, -1010580540));
    for (int i = 0; i < 3; i++) {
        const int32_t hdx = dtmm_srdhm(half_den, x);
        const int32_t one_minus = sub_w((int32_t)1 << 29, hdx);
        x = add_w(x, srmpot(dtmm_srdhm(x, one_minus), 2));
    }
    return srmpot(x, 1);
}

static int32_t clz32(uint32_t x)
{
#if defined(__GNUC__)
    return x ? __builtin_clz(x) : 32;
#else
    int32_t n = 0;
    while (n < 32 && !(x & 0x80000000u)) { x <<= 1; n++; }
    return n;
#endif
}

dtmm_status dtmm_softmax_s8(const int8_t *in, int32_t rows, int32_t depth,
                            int32_t beta_multiplier, int32_t beta_left_shift, int32_t diff_min,
                            int8_t *out)
{
    if (rows < 0 || depth < 1 || beta_left_shift < 0 || beta_left_shift > 31) return DTMM_ERR_ARG;
    for (int32_t r = 0; r < rows; r++, in += depth, out += depth) {
        int32_t max_in = -128;
        for (int32_t c = 0; c < depth; c++) max_in = in[c] > max_in ? in[c] : max_in;
        int32_t sum = 0;
        for (int32_t c = 0; c < depth; c++) {
            const int32_t diff = (int32_t)in[c] - max_in;
            if (diff >= diff_min) {
                const int32_t scaled = dtmm_srdhm((int32_t)((uint32_t)diff << beta_left_shift),
                                                  beta_multiplier);
                sum = add_w(sum, srmpot(exp_on_negative_values(scaled), -ACCUM_INTEGER_BITS));
            }
        }
        /* GetReciprocal: sum > 0 (the maximum contributes 2^19). */
        const int32_t headroom_plus_one = clz32((uint32_t)sum);
        const int32_t num_bits_over_unit = ACCUM_INTEGER_BITS - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
        const int32_t exponent = num_bits_over_unit + 31 - 8;
        for (int32_t c = 0; c < depth; c++) {
            const int32_t diff = (int32_t)in[c] - max_in;
            int32_t v = -128;
            if (diff >= diff_min) {
                const int32_t scaled = dtmm_srdhm((int32_t)((uint32_t)diff << beta_left_shift),
                                                  beta_multiplier);
                const int32_t e = exp_on_negative_values(scaled);
                v = dtmm_rdbpot(dtmm_srdhm(shifted_scale, e), exponent) - 128;
                v = v < -128 ? -128 : (v > 127 ? 127 : v);
            }
            out[c] = (int8_t)v;
        }
    }
    return DTMM_OK;
}
