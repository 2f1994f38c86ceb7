/*
 * dtmm_conv_pattern_s8.c - int8 3x3 convolution on PatDNN-style pattern weights.
 *
 * Per output pixel, per filter, per kept kernel (input channel): the 4 taps of the
 * kernel's pattern.  Interior pixels use a 9-entry table of input offsets; border
 * pixels skip taps in the padding.  Plain C on every target.  No scratch.
 */
#include "dtmm_internal.h"

dtmm_status dtmm_conv_pattern_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                                 const dtmm_dims *id, const int8_t *in, const dtmm_pattern *pw,
                                 const int32_t *bias, const dtmm_dims *od, int8_t *out)
{
    if (pw->c_in != id->c || od->c != pw->c_out || pw->n_patterns < 1
        || !dtmm_conv_params_ok(p, id, 3, 3, od))
        return DTMM_ERR_ARG;
    const int32_t c_in = id->c, c_out = pw->c_out, in_zp = p->in_zp;
    int32_t tap_off[9];
    for (int32_t t = 0; t < 9; t++) tap_off[t] = ((t / 3) * id->w + (t % 3)) * c_in;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int interior = iy0 >= 0 && iy0 + 3 <= id->h && ix0 >= 0 && ix0 + 3 <= id->w;
                const int32_t base = (iy0 * id->w + ix0) * c_in;
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_out;
                for (int32_t f = 0; f < c_out; f++) {
                    int32_t acc = bias ? bias[f] : 0;
                    for (int32_t j = pw->kptr[f]; j < pw->kptr[f + 1]; j++) {
                        const uint8_t *pat = pw->patterns + 4 * pw->kpat[j];
                        const int8_t *v = pw->values + 4 * j;
                        const int32_t cb = base + pw->kchan[j];
                        for (int32_t t = 0; t < 4; t++) {
                            const int32_t pos = pat[t];
                            if (!interior) {
                                const int32_t iy = iy0 + pos / 3, ix = ix0 + pos % 3;
                                if (iy < 0 || iy >= id->h || ix < 0 || ix >= id->w) continue;
                            }
                            acc += (in_n[cb + tap_off[pos]] - in_zp) * v[t];
                        }
                    }
                    o[f] = dtmm_requant_s8(acc, q->multiplier[f], q->shift[f], p->out_zp,
                                           p->act_min, p->act_max);
                }
            }
        }
    }
    return DTMM_OK;
}
