/*
 * dtmm_depthwise_conv_s8.c - int8 depthwise convolution (TFLite semantics, any depth
 * multiplier).  Plain C on every target.
 */
#include "dtmm_internal.h"

dtmm_status dtmm_depthwise_conv_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                                   int32_t mult, const dtmm_dims *id, const int8_t *in,
                                   const dtmm_dims *fd, const int8_t *weights, const int32_t *bias,
                                   const dtmm_dims *od, int8_t *out)
{
    if (mult < 1 || fd->n != 1 || fd->c != id->c * mult || od->c != fd->c
        || !dtmm_conv_params_ok(p, id, fd->h, fd->w, od))
        return DTMM_ERR_ARG;
    const int32_t c_in = id->c, c_out = fd->c, kh_n = fd->h, kw_n = fd->w;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            const int32_t kh_lo = iy0 < 0 ? -iy0 : 0;
            const int32_t kh_hi = id->h - iy0 < kh_n ? id->h - iy0 : kh_n;
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int32_t kw_lo = ix0 < 0 ? -ix0 : 0;
                const int32_t kw_hi = id->w - ix0 < kw_n ? id->w - ix0 : kw_n;
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_out;
                for (int32_t oc = 0; oc < c_out; oc++) {
                    const int32_t ic = oc / mult;
                    int32_t acc = bias ? bias[oc] : 0;
                    for (int32_t kh = kh_lo; kh < kh_hi; kh++)
                        for (int32_t kw = kw_lo; kw < kw_hi; kw++)
                            acc += (in_n[((iy0 + kh) * id->w + ix0 + kw) * c_in + ic] - p->in_zp)
                                   * weights[(kh * kw_n + kw) * c_out + oc];
                    o[oc] = dtmm_requant_s8(acc, q->multiplier[oc], q->shift[oc], p->out_zp,
                                            p->act_min, p->act_max);
                }
            }
        }
    }
    return DTMM_OK;
}
