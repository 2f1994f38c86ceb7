/*
 * dtmm_max_pool_s8.c - int8 max pool (TFLite semantics, padding taps ignored).
 *
 * Per output pixel the taps inside the input ([ky_lo, ky_hi) x [kx_lo, kx_hi)), then
 * per group of channels:
 *   MVE:  16 channels per vector: VLDRB + VMAX per tap, VMAX/VMIN clamp, VSTRB (the
 *         channel tail predicated);
 *   DSP:  4 channels per word: LDR + SSUB8/SEL (packed signed max) per tap, the clamp
 *         the same way, STR (a channel tail of 1-3 in plain C);
 *   C:    one channel at a time.
 */
#include "dtmm_internal.h"

dtmm_status dtmm_max_pool_s8(const dtmm_pool_params *p, const dtmm_dims *id, const int8_t *in,
                             const dtmm_dims *od, int8_t *out)
{
    if (!dtmm_pool_params_ok(p, id, od)) return DTMM_ERR_ARG;
    const int32_t c_n = id->c, row = id->w * c_n;
#if DTMM_USE_MVE
    const int8x16_t vlo = vdupq_n_s8((int8_t)p->act_min), vhi = vdupq_n_s8((int8_t)p->act_max);
#elif DTMM_USE_DSP
    const uint32_t plo = 0x01010101u * (uint8_t)p->act_min;
    const uint32_t phi = 0x01010101u * (uint8_t)p->act_max;
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
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_n;
                const int32_t b0 = iy0 * row + ix0 * c_n; /* taps index from it */
                const int8_t *base = in_n;
                int32_t c = 0;
#if DTMM_USE_MVE
                for (; c < c_n; c += 16) {
                    const mve_pred16_t pr = vctp8q((uint32_t)(c_n - c));
                    int8x16_t m = vdupq_n_s8(-128);
                    for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                        for (int32_t kx = kx_lo; kx < kx_hi; kx++)
                            m = vmaxq_s8(m, vldrbq_z_s8(base + (b0 + ky * row + kx * c_n + c), pr));
                    vstrbq_p_s8(o + c, vminq_s8(vmaxq_s8(m, vlo), vhi), pr);
                }
#elif DTMM_USE_DSP
                for (; c + 4 <= c_n; c += 4) {
                    uint32_t m = 0x80808080u;
                    for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                        for (int32_t kx = kx_lo; kx < kx_hi; kx++)
                            m = dtmm_max_s8x4(m, dtmm_read_u32(base + (b0 + ky * row + kx * c_n + c)));
                    dtmm_write_u32(o + c, dtmm_min_s8x4(dtmm_max_s8x4(m, plo), phi));
                }
#endif
                for (; c < c_n; c++) {
                    int32_t m = -128;
                    for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                        for (int32_t kx = kx_lo; kx < kx_hi; kx++) {
                            const int32_t v = base[b0 + ky * row + kx * c_n + c];
                            m = v > m ? v : m;
                        }
                    m = m < p->act_min ? p->act_min : m;
                    m = m > p->act_max ? p->act_max : m;
                    o[c] = (int8_t)m;
                }
            }
        }
    }
    return DTMM_OK;
}
