/*
 * dtmm_avg_pool_s8.c - int8 average pool (TFLite rounding, count excludes padding).
 */
#include "dtmm_internal.h"

dtmm_status dtmm_avg_pool_s8(const dtmm_pool_params *p, const dtmm_dims *id, const int8_t *in,
                             const dtmm_dims *od, int8_t *out)
{
    if (!dtmm_pool_params_ok(p, id, od)) return DTMM_ERR_ARG;
    const int32_t c_n = id->c;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_n;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t ky_lo, ky_hi;
            dtmm_tap_range(iy0, p->filter_h, id->h, &ky_lo, &ky_hi);
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kx_lo, kx_hi;
                dtmm_tap_range(ix0, p->filter_w, id->w, &kx_lo, &kx_hi);
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_n;
                for (int32_t c = 0; c < c_n; c++) {
                    if (ky_hi <= ky_lo || kx_hi <= kx_lo) return DTMM_ERR_EMPTY_WINDOW;
                    const int32_t count = (ky_hi - ky_lo) * (kx_hi - kx_lo);
                    int32_t m = 0;
                    for (int32_t ky = ky_lo; ky < ky_hi; ky++)
                        for (int32_t kx = kx_lo; kx < kx_hi; kx++)
                            m += in_n[((iy0 + ky) * id->w + ix0 + kx) * c_n + c];
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
