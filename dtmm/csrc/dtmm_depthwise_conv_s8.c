/*
 * dtmm_depthwise_conv_s8.c - int8 depthwise convolution (TFLite semantics, any depth
 * multiplier).  Plain C on every target.
 * host (DTMM_HOST_PATH, see dtmm_isa.h): per output pixel C_out int32 accumulators
 * (stack), updated tap by tap by a loop over the contiguous channels (depth multiplier
 * 1; gcc -O3 vectorises it), then requantized as one loop over the channels.
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
#if DTMM_HOST_PATH
    if (mult == 1 && (int64_t)c_out * 4 <= DTMM_HOST_MAX_STACK) {
        int32_t acc[c_out];
        int8_t *o = out;
        for (int32_t n = 0; n < id->n; n++) {
            const int8_t *in_n = in + n * id->h * id->w * c_in;
            for (int32_t oy = 0; oy < od->h; oy++) {
                const int32_t iy0 = oy * p->stride_h - p->pad_top;
                int32_t kh_lo, kh_hi;
                dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
                for (int32_t ox = 0; ox < od->w; ox++, o += c_out) {
                    const int32_t ix0 = ox * p->stride_w - p->pad_left;
                    int32_t kw_lo, kw_hi;
                    dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
                    for (int32_t c = 0; c < c_out; c++) acc[c] = 0;
                    for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                        for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                            const int8_t *restrict x = in_n + ((iy0 + kh) * id->w + ix0 + kw) * c_in;
                            const int8_t *restrict w = weights + (kh * kw_n + kw) * c_out;
                            const int32_t zp = p->in_zp;
                            for (int32_t c = 0; c < c_out; c++) acc[c] += (x[c] - zp) * w[c];
                        }
                    }
                    dtmm_host_requant_row(acc, bias, c_out, q->multiplier, q->shift, p->out_zp,
                                          p->act_min, p->act_max, o);
                }
            }
        }
        return DTMM_OK;
    }
#endif
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t kh_lo, kh_hi;
            dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kw_lo, kw_hi;
                dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
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
