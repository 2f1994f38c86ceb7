/*
 * dtmm_internal.h - internal helpers shared by the kernel files (not public API).
 */
#ifndef DTMM_INTERNAL_H
#define DTMM_INTERNAL_H

#include "dtmm_isa.h"
#include "dtmm_kernels.h"
#include "dtmm_requant.h"

/* Entry i of an unsigned index array of 8, 16 or 32-bit entries. */
DTMM_INLINE int32_t dtmm_index_at(const void *p, int32_t bits, int32_t i)
{
    if (bits == 8) return ((const uint8_t *)p)[i];
    if (bits == 16) return ((const uint16_t *)p)[i];
    return (int32_t)((const uint32_t *)p)[i];
}

/* Check the output dims of a conv / pool with kernel kh x kw. */
DTMM_INLINE int dtmm_conv_dims_ok(const dtmm_dims *in, int32_t kh, int32_t kw, int32_t sh,
                                  int32_t sw, int32_t pt, int32_t pb, int32_t pl, int32_t pr,
                                  const dtmm_dims *out)
{
    if (sh < 1 || sw < 1 || pt < 0 || pb < 0 || pl < 0 || pr < 0 || kh < 1 || kw < 1) return 0;
    const int32_t hp = in->h + pt + pb, wp = in->w + pl + pr;
    if (hp < kh || wp < kw) return 0;
    return out->n == in->n && out->h == (hp - kh) / sh + 1 && out->w == (wp - kw) / sw + 1;
}

DTMM_INLINE int dtmm_conv_params_ok(const dtmm_conv_params *p, const dtmm_dims *in,
                                    int32_t kh, int32_t kw, const dtmm_dims *out)
{
    return dtmm_conv_dims_ok(in, kh, kw, p->stride_h, p->stride_w, p->pad_top, p->pad_bottom,
                             p->pad_left, p->pad_right, out)
           && p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127;
}

/* Argument check of the pooling kernels (window filter_h x filter_w, channels kept). */
DTMM_INLINE int dtmm_pool_params_ok(const dtmm_pool_params *p, const dtmm_dims *in,
                                    const dtmm_dims *out)
{
    return out->c == in->c && p->act_min <= p->act_max
           && dtmm_conv_dims_ok(in, p->filter_h, p->filter_w, p->stride_h, p->stride_w,
                                p->pad_top, p->pad_bottom, p->pad_left, p->pad_right, out);
}

/* Taps [*lo, *hi) of a window of k_n taps at input index i0 (< 0 in the padding) that
 * fall inside the input [0, size); empty when *hi <= *lo. */
DTMM_INLINE void dtmm_tap_range(int32_t i0, int32_t k_n, int32_t size, int32_t *lo,
                                int32_t *hi)
{
    *lo = i0 < 0 ? -i0 : 0;
    *hi = size - i0 < k_n ? size - i0 : k_n;
}

/* dtmm_tap_range clamped to 0 <= *lo <= *hi <= k_n (run lengths of an im2col row). */
DTMM_INLINE void dtmm_tap_span(int32_t i0, int32_t k_n, int32_t size, int32_t *lo,
                               int32_t *hi)
{
    dtmm_tap_range(i0, k_n, size, lo, hi);
    *lo = *lo > k_n ? k_n : *lo;
    *hi = *hi < *lo ? *lo : *hi;
}

#if DTMM_USE_DSP
/* Scalar requantization with two DSP instructions for the high multiply, bit for bit
 * dtmm_requant_s8 for the channels dtmm_requant_fast_ok accepts:
 *   a = acc << left;  x = SMMULR(QADD(a, a), m) = floor((2 a m + 2^31) / 2^32);
 *   y = (x + 2^(r-1) - [x < 0 and r > 0]) >> r;  clamp(y + out_zp).
 * Why it is exact: SaturatingRoundingDoublingHighMul(a, m) = floor((2 a m + 2^31) / 2^32)
 * (gemmlowp's nudge rounds halves up for either sign; its one saturating case needs
 * m = INT32_MIN, excluded), so x is exact whenever 2a fits int32.  Otherwise |a| > 2^30
 * and, with m >= 2^30, both the exact and the saturated high products have magnitude
 * >= 2^29 - 1 and the same sign; after a right shift r <= 21 that is >= 256, so both
 * clamp to the same bound (|out_zp| <= 128).  m = 0 gives 0 both ways.  The rounding
 * line is RoundingDivideByPOT (round half away from zero) for |x| <= 2^30: no overflow.
 * Multipliers from dtmm.quant.arith.quantize_multiplier are 0 or in [2^30, 2^31). */
typedef struct {
    int32_t mult, left, right, half, one, zp;
} dtmm_requant_fast;

DTMM_INLINE int dtmm_requant_fast_ok(int32_t m, int32_t s)
{
    return (m == 0 || m >= (1 << 30)) && s >= -21;
}

DTMM_INLINE dtmm_requant_fast dtmm_requant_fast_make(int32_t m, int32_t s, int32_t out_zp)
{
    dtmm_requant_fast f;
    f.mult = m;
    f.left = s > 0 ? s : 0;
    f.right = s > 0 ? 0 : -s;
    f.half = f.right > 0 ? 1 << (f.right - 1) : 0;
    f.one = f.right > 0;
    f.zp = out_zp;
    return f;
}

DTMM_INLINE int8_t dtmm_requant_fast_s8(int32_t acc, const dtmm_requant_fast *f, int32_t lo,
                                        int32_t hi)
{
    int32_t x = (int32_t)((uint32_t)acc << f->left);
    x = dtmm_smmulr(dtmm_qadd(x, x), f->mult);
    x = ((x + f->half) - (int32_t)(((uint32_t)x >> 31) & (uint32_t)f->one)) >> f->right;
    x += f->zp;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    return (int8_t)x;
}

/* The same high multiply with the rounding divide and out_zp in 3 more instructions:
 *   y = SMMULR(QADD(a, a), m) as above (a = acc << left already);
 *   t = QDADD(h + (y >> 31), y) >> (right + 1),  h = (2 out_zp + 1) << right,
 * so t = RoundingDivideByPOT(y, right) + out_zp, and SSAT #8 of t then the clamp to
 * [act_min, act_max] is dtmm_requant_s8, for the (m, s) dtmm_requant_fast_ok accepts and
 * -128 <= out_zp <= 127.  Why: with N = 2y + h + [y < 0 ? -1 : 0] (no saturation),
 * floor(N / 2^(right+1)) = floor((y + 2^(right-1) - [y < 0]) / 2^right) + out_zp for
 * right >= 1 (N and the exact numerator 2(y + 2^(right-1) - [y<0] + out_zp 2^right)
 * differ by at most 1, and the exact one is even: no multiple of 2^(right+1) lies
 * between them), and floor((2y + 2 out_zp + 1 - [y<0]) / 2) = y + out_zp for right = 0.
 * Saturation: |y| <= 2^30 - 1, so 2y never saturates; when QDADD does, |N| >= 2^31
 * and with right + 1 <= 22 both results are >= 512 in magnitude, same sign.  When QADD
 * saturated (|a| > 2^30, see above) |y| >= 2^29 - 1 both ways and |h| <= 255 * 2^21,
 * so both t (exact and ours) are >= 128 or <= -129: the same clamp.  m = 0: t = out_zp. */
DTMM_INLINE int32_t dtmm_requant_dsp_h(int32_t s, int32_t out_zp)
{
    return (int32_t)((uint32_t)(2 * out_zp + 1) << (s > 0 ? 0 : -s));
}

DTMM_INLINE int32_t dtmm_requant_dsp(int32_t a, int32_t m, int32_t h, int32_t right1)
{
    const int32_t y = dtmm_smmulr(dtmm_qadd(a, a), m);
    return dtmm_qdadd(h + (y >> 31), y) >> right1;
}
#endif

#if DTMM_USE_MVE
/* Requantize up to 4 accumulators of ONE output channel (multiplier m, shift s) and
 * store the int8 results of the lanes enabled in `pred` at base + offs[i]:
 * clamp(MultiplyByQuantizedMultiplier(acc, m, s) + out_zp, lo, hi), bit for bit
 * dtmm_requant_s8:  VQRDMULH is gemmlowp's SaturatingRoundingDoublingHighMul (same
 * rounding, same INT32_MIN * INT32_MIN saturation); RoundingDivideByPOT is VRSHL by
 * -right after adding -1 to negative values (CMSIS-NN's arm_divide_by_power_of_two_mve),
 * which turns VRSHL's round-half-up into round-half-away-from-zero. */
DTMM_INLINE void dtmm_mve_requant_store(int32x4_t v, int32_t m, int32_t s, int32_t out_zp,
                                        int32x4_t lo, int32x4_t hi, int8_t *base,
                                        uint32x4_t offs, mve_pred16_t pred)
{
    const int32_t left = s > 0 ? s : 0;
    const int32_t neg_right = s > 0 ? 0 : s;
    v = vshlq_r_s32(v, left);
    v = vqrdmulhq_n_s32(v, m);
    const int32x4_t fix = vshrq_n_s32(vandq_s32(v, vdupq_n_s32(neg_right)), 31);
    v = vrshlq_n_s32(vqaddq_s32(v, fix), neg_right);
    v = vaddq_n_s32(v, out_zp);
    v = vminq_s32(vmaxq_s32(v, lo), hi);
    vstrbq_scatter_offset_p_s32(base, offs, v, pred);
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp of 4 lanes (shift s <= 0), bit for bit
 * dtmm_requantize_lt1 (VQRDMULH, then the rounding fix and VRSHL as above). */
DTMM_INLINE int32x4_t dtmm_mve_requant_lt1(int32x4_t v, int32_t m, int32_t s)
{
    v = vqrdmulhq_n_s32(v, m);
    const int32x4_t fix = vshrq_n_s32(vandq_s32(v, vdupq_n_s32(s)), 31);
    return vrshlq_n_s32(vqaddq_s32(v, fix), s);
}

/* Tail-predicated int8 dot products, n >= 0 elements each (any n: the last vector is
 * predicated), weights loaded once per 16 and reused across the rows:
 *   dtmm_mve_dot_1x{1,2,4}: one weight run w against 1, 2 or 4 input runs x0..x3
 *                            (paper Fig. 8 / Fig. 10), a{r} += dot(w, x{r});
 *   dtmm_mve_dot_2x3:       two weight runs w0, w1 against three input runs,
 *                            a{f}{r} += dot(w{f}, x{r})  (dense conv, 8 MACs/insn).
 * On Cortex-M these are WLSTP/LETP low-overhead loops in inline asm (GCC 12 indexes
 * the loads instead of post-incrementing and spills around intrinsic loops); without
 * them (DTMM_MVE_ASM 0, dtmm_isa.h: emulated builds, -O0, -Os, DTMM_NO_ASM) the same
 * computation uses the intrinsics (their models in dtmm_isa.h when emulating). */
#if !DTMM_MVE_ASM
#  define DTMM_MVE_DOT_LOOP(n, ...)                                                    \
    for (int32_t i_ = 0; i_ < (n); i_ += 16) {                                         \
        const mve_pred16_t p_ = vctp8q((uint32_t)((n) - i_));                          \
        __VA_ARGS__                                                                    \
    }
DTMM_INLINE void dtmm_mve_dot_1x4(const int8_t *w, const int8_t *x0, const int8_t *x1,
                                  const int8_t *x2, const int8_t *x3, int32_t n, int32_t *a0,
                                  int32_t *a1, int32_t *a2, int32_t *a3)
{
    DTMM_MVE_DOT_LOOP(n, {
        const int8x16_t wv = vldrbq_z_s8(w + i_, p_);
        *a0 = vmladavaq_s8(*a0, wv, vldrbq_z_s8(x0 + i_, p_));
        *a1 = vmladavaq_s8(*a1, wv, vldrbq_z_s8(x1 + i_, p_));
        *a2 = vmladavaq_s8(*a2, wv, vldrbq_z_s8(x2 + i_, p_));
        *a3 = vmladavaq_s8(*a3, wv, vldrbq_z_s8(x3 + i_, p_));
    })
}
DTMM_INLINE void dtmm_mve_dot_1x2(const int8_t *w, const int8_t *x0, const int8_t *x1,
                                  int32_t n, int32_t *a0, int32_t *a1)
{
    DTMM_MVE_DOT_LOOP(n, {
        const int8x16_t wv = vldrbq_z_s8(w + i_, p_);
        *a0 = vmladavaq_s8(*a0, wv, vldrbq_z_s8(x0 + i_, p_));
        *a1 = vmladavaq_s8(*a1, wv, vldrbq_z_s8(x1 + i_, p_));
    })
}
DTMM_INLINE void dtmm_mve_dot_1x1(const int8_t *w, const int8_t *x0, int32_t n, int32_t *a0)
{
    DTMM_MVE_DOT_LOOP(n, {
        *a0 = vmladavaq_s8(*a0, vldrbq_z_s8(w + i_, p_), vldrbq_z_s8(x0 + i_, p_));
    })
}
DTMM_INLINE void dtmm_mve_dot_2x3(const int8_t *w0, const int8_t *w1, const int8_t *x0,
                                  const int8_t *x1, const int8_t *x2, int32_t n, int32_t *a00,
                                  int32_t *a01, int32_t *a02, int32_t *a10, int32_t *a11,
                                  int32_t *a12)
{
    DTMM_MVE_DOT_LOOP(n, {
        const int8x16_t u = vldrbq_z_s8(w0 + i_, p_), v = vldrbq_z_s8(w1 + i_, p_);
        const int8x16_t y0 = vldrbq_z_s8(x0 + i_, p_), y1 = vldrbq_z_s8(x1 + i_, p_);
        const int8x16_t y2 = vldrbq_z_s8(x2 + i_, p_);
        *a00 = vmladavaq_s8(*a00, u, y0);
        *a10 = vmladavaq_s8(*a10, v, y0);
        *a01 = vmladavaq_s8(*a01, u, y1);
        *a11 = vmladavaq_s8(*a11, v, y1);
        *a02 = vmladavaq_s8(*a02, u, y2);
        *a12 = vmladavaq_s8(*a12, v, y2);
    })
}
#else
DTMM_INLINE void dtmm_mve_dot_1x4(const int8_t *w, const int8_t *x0, const int8_t *x1,
                                  const int8_t *x2, const int8_t *x3, int32_t n, int32_t *a0,
                                  int32_t *a1, int32_t *a2, int32_t *a3)
{
    int32_t r0 = *a0, r1 = *a1, r2 = *a2, r3 = *a3;
    __asm__ volatile(
        "   wlstp.8     lr, %[n], 2f\n"
        "1: vldrb.8     q0, [%[w]], #16\n"
        "   vldrb.8     q1, [%[x0]], #16\n"
        "   vmladava.s8 %[r0], q0, q1\n"
        "   vldrb.8     q2, [%[x1]], #16\n"
        "   vmladava.s8 %[r1], q0, q2\n"
        "   vldrb.8     q1, [%[x2]], #16\n"
        "   vmladava.s8 %[r2], q0, q1\n"
        "   vldrb.8     q2, [%[x3]], #16\n"
        "   vmladava.s8 %[r3], q0, q2\n"
        "   letp        lr, 1b\n"
        "2:\n"
        : [r0] "+Te"(r0), [r1] "+Te"(r1), [r2] "+Te"(r2), [r3] "+Te"(r3), [w] "+r"(w),
          [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3)
        : [n] "r"(n)
        : "q0", "q1", "q2", "lr", "memory");
    *a0 = r0;
    *a1 = r1;
    *a2 = r2;
    *a3 = r3;
}
DTMM_INLINE void dtmm_mve_dot_1x2(const int8_t *w, const int8_t *x0, const int8_t *x1,
                                  int32_t n, int32_t *a0, int32_t *a1)
{
    int32_t r0 = *a0, r1 = *a1;
    __asm__ volatile(
        "   wlstp.8     lr, %[n], 2f\n"
        "1: vldrb.8     q0, [%[w]], #16\n"
        "   vldrb.8     q1, [%[x0]], #16\n"
        "   vmladava.s8 %[r0], q0, q1\n"
        "   vldrb.8     q2, [%[x1]], #16\n"
        "   vmladava.s8 %[r1], q0, q2\n"
        "   letp        lr, 1b\n"
        "2:\n"
        : [r0] "+Te"(r0), [r1] "+Te"(r1), [w] "+r"(w), [x0] "+r"(x0), [x1] "+r"(x1)
        : [n] "r"(n)
        : "q0", "q1", "q2", "lr", "memory");
    *a0 = r0;
    *a1 = r1;
}
DTMM_INLINE void dtmm_mve_dot_1x1(const int8_t *w, const int8_t *x0, int32_t n, int32_t *a0)
{
    int32_t r0 = *a0;
    __asm__ volatile(
        "   wlstp.8     lr, %[n], 2f\n"
        "1: vldrb.8     q0, [%[w]], #16\n"
        "   vldrb.8     q1, [%[x0]], #16\n"
        "   vmladava.s8 %[r0], q0, q1\n"
        "   letp        lr, 1b\n"
        "2:\n"
        : [r0] "+Te"(r0), [w] "+r"(w), [x0] "+r"(x0)
        : [n] "r"(n)
        : "q0", "q1", "lr", "memory");
    *a0 = r0;
}
DTMM_INLINE void dtmm_mve_dot_2x3(const int8_t *w0, const int8_t *w1, const int8_t *x0,
                                  const int8_t *x1, const int8_t *x2, int32_t n, int32_t *a00,
                                  int32_t *a01, int32_t *a02, int32_t *a10, int32_t *a11,
                                  int32_t *a12)
{
    int32_t r00 = *a00, r01 = *a01, r02 = *a02, r10 = *a10, r11 = *a11, r12 = *a12;
    __asm__ volatile(
        "   wlstp.8     lr, %[n], 2f\n"
        "1: vldrb.8     q0, [%[w0]], #16\n"
        "   vldrb.8     q1, [%[w1]], #16\n"
        "   vldrb.8     q2, [%[x0]], #16\n"
        "   vmladava.s8 %[r00], q0, q2\n"
        "   vmladava.s8 %[r10], q1, q2\n"
        "   vldrb.8     q3, [%[x1]], #16\n"
        "   vmladava.s8 %[r01], q0, q3\n"
        "   vmladava.s8 %[r11], q1, q3\n"
        "   vldrb.8     q2, [%[x2]], #16\n"
        "   vmladava.s8 %[r02], q0, q2\n"
        "   vmladava.s8 %[r12], q1, q2\n"
        "   letp        lr, 1b\n"
        "2:\n"
        : [r00] "+Te"(r00), [r01] "+Te"(r01), [r02] "+Te"(r02), [r10] "+Te"(r10),
          [r11] "+Te"(r11), [r12] "+Te"(r12), [w0] "+r"(w0), [w1] "+r"(w1), [x0] "+r"(x0),
          [x1] "+r"(x1), [x2] "+r"(x2)
        : [n] "r"(n)
        : "q0", "q1", "q2", "q3", "lr", "memory");
    *a00 = r00;
    *a01 = r01;
    *a02 = r02;
    *a10 = r10;
    *a11 = r11;
    *a12 = r12;
}
#endif

/* Vector of 4 int32 values from scalars. */
DTMM_INLINE int32x4_t dtmm_mve_vec4(int32_t a, int32_t b, int32_t c, int32_t d)
{
    int32x4_t v = vdupq_n_s32(a);
    v = vsetq_lane_s32(b, v, 1);
    v = vsetq_lane_s32(c, v, 2);
    return vsetq_lane_s32(d, v, 3);
}

/* dst[0:n] = src[0:n] (n >= 0). */
DTMM_INLINE void dtmm_mve_copy(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 16; n -= 16, src += 16, dst += 16) vstrbq_s8(dst, vldrbq_s8(src));
    if (n > 0) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
    }
}

/* dst[0:n] = v (n >= 0). */
DTMM_INLINE void dtmm_mve_fill(int8_t *dst, int8x16_t v, int32_t n)
{
    for (; n >= 16; n -= 16, dst += 16) vstrbq_s8(dst, v);
    if (n > 0) vstrbq_p_s8(dst, v, vctp8q((uint32_t)n));
}
#endif


#if DTMM_HOST_PATH
/* ------------------------------------------------------------------ host path
 * Helpers of the DTMM_HOST_PATH variants (see dtmm_isa.h): loops written so that
 * gcc -O3 vectorises them (int16 x int16 -> int32 multiply-adds, per-lane shifts). */

/* dtmm_requantize_lt1 (shift <= 0) without branches, bit for bit the same. */
DTMM_INLINE int32_t dtmm_host_requantize_lt1(int32_t a, int32_t m, int32_t s)
{
    const int64_t ab = (int64_t)a * (int64_t)m;
    const int64_t t = ab + (ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30)));
    int32_t x = (int32_t)(t / ((int64_t)1 << 31));
    x = (a == INT32_MIN && m == INT32_MIN) ? INT32_MAX : x;
    const int32_t mask = (int32_t)(((uint32_t)1 << -s) - 1u);
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> -s) + ((x & mask) > threshold ? 1 : 0);
}

/* dtmm_requant_s8 without branches (a select for the saturating case), bit for bit
 * the same, so a loop over channels vectorises. */
DTMM_INLINE int8_t dtmm_host_requant(int32_t acc, int32_t m, int32_t s, int32_t out_zp,
                                     int32_t act_min, int32_t act_max)
{
    const int32_t left = s > 0 ? s : 0, right = s > 0 ? 0 : -s;
    int32_t v = dtmm_host_requantize_lt1((int32_t)((uint32_t)acc << left), m, -right) + out_zp;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return (int8_t)v;
}

/* out[i] = requant(acc[i] + bias[i]) of n channels (bias may be NULL). */
static inline void dtmm_host_requant_row(const int32_t *restrict acc, const int32_t *restrict bias,
                                         int32_t n, const int32_t *restrict m,
                                         const int32_t *restrict s, int32_t out_zp,
                                         int32_t act_min, int32_t act_max, int8_t *restrict out)
{
    if (bias) {
        for (int32_t i = 0; i < n; i++)
            out[i] = dtmm_host_requant(acc[i] + bias[i], m[i], s[i], out_zp, act_min, act_max);
    } else {
        for (int32_t i = 0; i < n; i++)
            out[i] = dtmm_host_requant(acc[i], m[i], s[i], out_zp, act_min, act_max);
    }
}

/* dst[i] = src[i] - zp as int16 (n >= 0). */
static inline void dtmm_host_widen(const int8_t *restrict src, int32_t n, int32_t zp,
                                   int16_t *restrict dst)
{
    for (int32_t i = 0; i < n; i++) dst[i] = (int16_t)(src[i] - zp);
}

/* int16 im2col row of one output pixel (x - in_zp; taps in the padding 0), in OHWI
 * tap order: K = kh_n * kw_n * C values. */
static inline void dtmm_host_im2col(const int8_t *in, const dtmm_dims *id, int32_t kh_n,
                                    int32_t kw_n, int32_t iy0, int32_t ix0, int32_t zp,
                                    int16_t *dst)
{
    const int32_t c = id->c, run = kw_n * c;
    int32_t lo, hi;
    dtmm_tap_span(ix0, kw_n, id->w, &lo, &hi);
    for (int32_t kh = 0; kh < kh_n; kh++, dst += run) {
        const int32_t iy = iy0 + kh;
        if ((uint32_t)iy >= (uint32_t)id->h || lo == hi) {
            memset(dst, 0, (size_t)run * sizeof(int16_t));
            continue;
        }
        memset(dst, 0, (size_t)(lo * c) * sizeof(int16_t));
        dtmm_host_widen(in + (iy * id->w + ix0 + lo) * c, (hi - lo) * c, zp, dst + lo * c);
        memset(dst + hi * c, 0, (size_t)((kw_n - hi) * c) * sizeof(int16_t));
    }
}

/* The dot products below run their k loop as DTMM_HOST_KLOOP(n, STEP): a loop over
 * the multiple of 32, then one constant block of 16, then single steps, so that the
 * vectorised loop (16 or 32 int16 lanes) leaves no scalar remainder when 16 | n (any
 * C_in multiple of 16).  STEP(k) is one k of the loop body. */
#define DTMM_HOST_KLOOP(n, STEP)                                                         \
    do {                                                                               \
        const int32_t n32_ = (n) & ~31;                                                \
        int32_t k_ = 0;                                                                \
        for (; k_ < n32_; k_++) STEP(k_);                                              \
        if ((n) - k_ >= 16) {                                                          \
            for (int32_t j_ = 0; j_ < 16; j_++) STEP(k_ + j_);                         \
            k_ += 16;                                                                  \
        }                                                                              \
        for (; k_ < (n); k_++) STEP(k_);                                               \
    } while (0)

/* Dot products of two int8 weight runs with four int16 runs (n >= 0):
 * a[f * 4 + r] = sum_k w{f}[k] * x{r}[k]. */
static inline void dtmm_host_dot_2x4(const int8_t *restrict w0, const int8_t *restrict w1,
                                     const int16_t *restrict x0, const int16_t *restrict x1,
                                     const int16_t *restrict x2, const int16_t *restrict x3,
                                     int32_t n, int32_t *restrict a)
{
    int32_t a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
#define STEP_(k)                                                                         \
    do {                                                                               \
        const int16_t u = w0[k], v = w1[k];                                            \
        a00 += x0[k] * u;                                                              \
        a01 += x1[k] * u;                                                              \
        a02 += x2[k] * u;                                                              \
        a03 += x3[k] * u;                                                              \
        a10 += x0[k] * v;                                                              \
        a11 += x1[k] * v;                                                              \
        a12 += x2[k] * v;                                                              \
        a13 += x3[k] * v;                                                              \
    } while (0)
    DTMM_HOST_KLOOP(n, STEP_);
#undef STEP_
    a[0] = a00; a[1] = a01; a[2] = a02; a[3] = a03;
    a[4] = a10; a[5] = a11; a[6] = a12; a[7] = a13;
}

/* One int8 weight run with four int16 runs: a[r] = sum_k w[k] * x{r}[k]. */
static inline void dtmm_host_dot_1x4(const int8_t *restrict w, const int16_t *restrict x0,
                                     const int16_t *restrict x1, const int16_t *restrict x2,
                                     const int16_t *restrict x3, int32_t n, int32_t *restrict a)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#define STEP_(k)                                                                         \
    do {                                                                               \
        const int16_t u = w[k];                                                        \
        a0 += x0[k] * u;                                                               \
        a1 += x1[k] * u;                                                               \
        a2 += x2[k] * u;                                                               \
        a3 += x3[k] * u;                                                               \
    } while (0)
    DTMM_HOST_KLOOP(n, STEP_);
#undef STEP_
    a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3;
}

/* One int16 run against four int8 weight runs: a[f] = sum_k w{f}[k] * x[k]. */
static inline void dtmm_host_dot_4x1(const int8_t *restrict w0, const int8_t *restrict w1,
                                     const int8_t *restrict w2, const int8_t *restrict w3,
                                     const int16_t *restrict x, int32_t n, int32_t *restrict a)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#define STEP_(k)                                                                         \
    do {                                                                               \
        const int16_t v = x[k];                                                        \
        a0 += w0[k] * v;                                                               \
        a1 += w1[k] * v;                                                               \
        a2 += w2[k] * v;                                                               \
        a3 += w3[k] * v;                                                               \
    } while (0)
    DTMM_HOST_KLOOP(n, STEP_);
#undef STEP_
    a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3;
}

/* sum_k w[k] * x[k] (int8 weights, int16 inputs). */
static inline int32_t dtmm_host_dot_1x1(const int8_t *restrict w, const int16_t *restrict x,
                                        int32_t n)
{
    int32_t a = 0;
#define STEP_(k) (a += w[k] * x[k])
    DTMM_HOST_KLOOP(n, STEP_);
#undef STEP_
    return a;
}
#endif /* DTMM_HOST_PATH */

/* ------------------------------------------------------------------ helpers */
/* Sum of n int8 values (contiguous). */
DTMM_INLINE int32_t dtmm_sum_s8(const int8_t *x, int32_t n)
{
    int32_t s = 0, i = 0;
#if DTMM_USE_MVE
    for (; i + 16 <= n; i += 16) s = vaddvaq_s8(s, vldrbq_s8(x + i));
    if (i < n) s = vaddvaq_s8(s, vldrbq_z_s8(x + i, vctp8q((uint32_t)(n - i))));
#elif DTMM_USE_DSP
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = dtmm_read_u32(x + i);
        s = dtmm_smlad(dtmm_sxtb16(v), 0x00010001u, s);
        s = dtmm_smlad(dtmm_sxtb16_ror8(v), 0x00010001u, s);
    }
    for (; i < n; i++) s += x[i];
#else
    for (; i < n; i++) s += x[i];
#endif
    return s;
}

/* ------------------------------------------------------------------ padded input band
 * The sparse conv kernels (CSR, pattern) read their input from a band of KH input rows
 * padded with in_zp, so that no tap needs a bounds check.  Band row r holds input row
 * iy0 + r (all in_zp when outside the input) as
 *     KW in_zp pixels | the W input pixels | KW in_zp pixels      (each pixel C bytes)
 * so a row is (W + 2 KW) * C bytes.  Output pixel ox reads its KH x KW window at band
 * column ox * stride_w - pad_left + KW; pixels whose column falls outside
 * [0, W + KW] (only with a pad >= KW) have their whole window in the padding, and
 * their accumulator is the bias.  Taps in the padding read in_zp, so a kernel that
 * starts from bias - in_zp * sum(w) gets the convention of dtmm_kernels.h exactly. */
DTMM_INLINE int32_t dtmm_band_row_bytes(const dtmm_dims *id, int32_t kw)
{
    return (id->w + 2 * kw) * id->c;
}
DTMM_INLINE int32_t dtmm_band_bytes(const dtmm_dims *id, int32_t kh, int32_t kw)
{
    return kh * dtmm_band_row_bytes(id, kw);
}

/* Fill the whole band with in_zp (once per call: the pad columns never change). */
static inline void dtmm_band_init(int8_t *band, const dtmm_dims *id, int32_t kh, int32_t kw,
                                  int32_t zp)
{
    memset(band, (int8_t)zp, (size_t)dtmm_band_bytes(id, kh, kw));
}

/* Load input rows iy0 .. iy0 + kh - 1 of one image into the band (the body columns). */
static inline void dtmm_band_rows(int8_t *band, const int8_t *in_n, const dtmm_dims *id,
                                  int32_t kh, int32_t kw, int32_t iy0, int32_t zp)
{
    const int32_t row = dtmm_band_row_bytes(id, kw), body = id->w * id->c;
    int8_t *dst = band + kw * id->c;
    for (int32_t r = 0; r < kh; r++, dst += row) {
        const int32_t iy = iy0 + r;
#if DTMM_USE_MVE
        if ((uint32_t)iy < (uint32_t)id->h)
            dtmm_mve_copy(dst, in_n + iy * body, body);
        else
            dtmm_mve_fill(dst, vdupq_n_s8((int8_t)zp), body);
#else
        if ((uint32_t)iy < (uint32_t)id->h)
            memcpy(dst, in_n + iy * body, (size_t)body);
        else
            memset(dst, (int8_t)zp, (size_t)body);
#endif
    }
}

/* Output columns [*lo, *hi) whose window starts inside the band (see above); the
 * others lie wholly in the padding. */
DTMM_INLINE void dtmm_band_span(const dtmm_conv_params *p, const dtmm_dims *id, int32_t kw,
                                int32_t w_out, int32_t *lo, int32_t *hi)
{
    const int32_t sw = p->stride_w, off = kw - p->pad_left; /* column = ox * sw + off */
    int32_t a = 0, b = w_out;
    while (a < b && a * sw + off < 0) a++;
    while (b > a && (b - 1) * sw + off > id->w + kw) b--;
    *lo = a;
    *hi = b;
}

#endif /* DTMM_INTERNAL_H */
