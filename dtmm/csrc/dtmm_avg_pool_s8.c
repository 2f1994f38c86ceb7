/*
 * dtmm_avg_pool_s8.c - int8 average pool (TFLite rounding, count excludes padding).
 *
 * out = (sum + count/2) / count if sum > 0 else (sum - count/2) / count (C division,
 * truncating) = sign(sum) * ((|sum| + count/2) / count), clamped.
 *   MVE:  4 channels per 32-bit vector (VLDRB.S32 + VADD per tap); the division by
 *         the window's count as an exact multiply-high: q = VMULH.U32(n, M) >> (L - 1)
 *         with L = ceil(log2 count), M = ceil(2^(31+L) / count) (exact for n < 2^31:
 *         M * count - 2^(31+L) < count <= 2^L), once per output pixel for its channels;
 *   DSP:  4 channels per word summed as two packed int16 pairs (SXTAB16; sums fit
 *         int16 for windows of up to 255 taps, longer ones take the C loop), then one
 *         SDIV per channel;
 *   C:    one channel at a time.
 */
#include "dtmm_internal.h"

dtmm_status dtmm_avg_pool_s8(const dtmm_pool_params *p, const dtmm_dims *id, const int8_t *in,
                             const dtmm_dims *od, int8_t *out)
{
    if (!dtmm_pool_params_ok(p, id, od)) return DTMM_ERR_ARG;
    const int32_t c_n = id->c, row = id->w * c_n;
#if DTMM_USE_MVE
    const int32x4_t vlo = vdupq_n_s32(p->act_min), vhi = vdupq_n_s32(p->act_max);
#endif
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * row;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t ky_lo, ky_hi;
            dtmm_tap_range(iy0, p->filter_h, id->h, &ky_lo, &ky_hi);
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kx_lo, kx_hi;
                dtmm_tap_range(ix0, p->filter_w, id->w, &kx_lo, &kx_hi);
                if (c_n > 0 && (ky_hi <= ky_lo || kx_hi <= kx_lo)) return DTMM_ERR_EMPTY_WINDOW;
                const int32_t count = (ky_hi - ky_lo) * (kx_hi - kx_lo);
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_n;
                const int32_t b0 = iy0 * row + ix0 * c_n; /* taps index from it */
                const int8_t *base = in_n;
                int32_t c = 0;
#if DTMM_USE_MVE
                if (count > 1) {
                    int32_t l = 0;
                    while ((1 << l) < count) l++;
                    const uint32_t mul = (uint32_t)((((uint64_t)1 << (31 + l)) + (uint64_t)count - 1)
                                                    / (uint64_t)count);
                    for (; c < c_n; c += 4) {
                        const mve_pred16_t pr = vctp32q((uint32_t)(c_n - c));
                        int32x4_t s = vdupq_n_s32(0);
                        for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                            for (int32_t kx = kx_lo; kx < kx_hi; kx++)
                                s = vaddq_s32(s, vldrbq_z_s32(base + (b0 + ky * row + kx * c_n + c), pr));
                        const int32x4_t sg = vshrq_n_s32(s, 31);
                        const uint32x4_t num = vreinterpretq_u32_s32(vaddq_n_s32(vabsq_s32(s),
                                                                                count / 2));
                        const int32x4_t q = vreinterpretq_s32_u32(
                            vshlq_r_u32(vmulhq_u32(num, vdupq_n_u32(mul)), 1 - l));
                        const int32x4_t v = vsubq_s32(veorq_s32(q, sg), sg);
                        vstrbq_p_s32(o + c, vminq_s32(vmaxq_s32(v, vlo), vhi), pr);
                    }
                }
#elif DTMM_USE_DSP
                if (count <= 255) {
                    for (; c + 4 <= c_n; c += 4) {
                        uint32_t s02 = 0, s13 = 0; /* int16 pairs: channels (0, 2), (1, 3) */
                        for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                            for (int32_t kx = kx_lo; kx < kx_hi; kx++) {
                                const uint32_t v = dtmm_read_u32(base + (b0 + ky * row + kx * c_n + c));
                                s02 = dtmm_sxtab16(s02, v);
                                s13 = dtmm_sxtab16_ror8(s13, v);
                            }
                        const int32_t s4[4] = {(int16_t)s02, (int16_t)s13, (int16_t)(s02 >> 16),
                                               (int16_t)(s13 >> 16)};
                        for (int32_t i = 0; i < 4; i++) {
                            int32_t m = s4[i];
                            m = m > 0 ? (m + count / 2) / count : (m - count / 2) / count;
                            m = m < p->act_min ? p->act_min : m;
                            m = m > p->act_max ? p->act_max : m;
                            o[c + i] = (int8_t)m;
                        }
                    }
                }
#endif
                for (; c < c_n; c++) {
                    int32_t m = 0;
                    for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                        for (int32_t kx = kx_lo; kx < kx_hi; kx++) m += base[b0 + ky * row + kx * c_n + c];
                    m = m > 0 ? (m + count / 2) / count : (m - count / 2) / count;
                    m = m < p->act_min ? p->act_min : m;
                    m = m > p->act_max ? p->act_max : m;
                    o[c] = (int8_t)m;
                }
            }
        }
    }
    return DTMM_OK;
}
