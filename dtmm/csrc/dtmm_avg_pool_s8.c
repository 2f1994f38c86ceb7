/*
 * dtmm_avg_pool_s8.c - int8 average pool (TFLite rounding, count excludes padding).
 */
#include "dtmm_internal.h"

dtmm_status dtmm_avg_pool_s8(const dtmm_pool_params *p, const dtmm_dims *id, const int8_t *in,
                             const dtmm_dims *od, int8_t *out)
{
    if (od->c != id->c || p->act_min > p->act_max
        || !dtmm_conv_dims_ok(id, p->filter_h, p->filter_w, p->stride_h, p->stride_w,
                              p->pad_top, p->pad_bottom, p->pad_left, p->pad_right, od))
        return DTMM_ERR_ARG;
    const int32_t c_n = id->c;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_n;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            const int32_t y_lo = iy0 < 0 ? 0 : iy0;
            const int32_t y_hi = iy0 + p->filter_h < id->h ? iy0 + p->filter_h : id->h;
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int32_t x_lo = ix0 < 0 ? 0 : ix0;
                const int32_t x_hi = ix0 + p->filter_w < id->w ? ix0 + p->filter_w : id->w;
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_n;
                for (int32_t c = 0; c < c_n; c++) {
                    if (y_hi <= y_lo || x_hi <= x_lo) return DTMM_ERR_EMPTY_WINDOW;
                    const int32_t count = (y_hi - y_lo) * (x_hi - x_lo);
                    int32_t m = 0;
                    for (int32_t y = y_lo; y < y_hi; y++)
                        for (int32_t x = x_lo; x < x_hi; x++) m += in_n[(y * id->w + x) * c_n + c];
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
