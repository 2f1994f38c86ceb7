/*
 * dtmm_fully_connected_s8.c - dense int8 fully connected layer (TFLite semantics).
 *
 * MVE:     per output a tail-predicated vmladava dot product of raw x and w, with
 *          sum(w) (vaddva) to apply the input offset: acc = bias + x.w - in_zp * sum(w).
 * DSP:     per 4 inputs one LDR + 2 SXTAB16 (x - in_zp, 16-bit lanes) and one LDR +
 *          2 SXTB16 (w), then 2 SMLAD.
 * plain C: sum((x - in_zp) * w).
 * host (DTMM_HOST_PATH, see dtmm_isa.h): x - in_zp widened to int16 once per batch row
 *          (stack), then dot products of 4 outputs at a time over the contiguous
 *          inputs (int8 weights sign-extended in the loop; gcc -O3 vectorises them).
 */
#include "dtmm_internal.h"

DTMM_INLINE int32_t fc_dot(const int8_t *x, const int8_t *w, int32_t n, int32_t in_zp)
{
#if DTMM_USE_MVE
    int32_t acc = 0, wsum = 0;
    int32_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const int8x16_t wv = vldrbq_s8(w + k);
        wsum = vaddvaq_s8(wsum, wv);
        acc = vmladavaq_s8(acc, wv, vldrbq_s8(x + k));
    }
    if (k < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - k));
        const int8x16_t wv = vldrbq_z_s8(w + k, pr);
        wsum = vaddvaq_s8(wsum, wv);
        acc = vmladavaq_s8(acc, wv, vldrbq_z_s8(x + k, pr));
    }
    return acc - in_zp * wsum;
#elif DTMM_USE_DSP
    const uint32_t off2 = ((uint32_t)(uint16_t)(int16_t)(-in_zp)) * 0x00010001u;
    int32_t acc = 0, k = 0;
    for (; k + 4 <= n; k += 4) {
        const uint32_t xr = dtmm_read_u32(x + k), wr = dtmm_read_u32(w + k);
        acc = dtmm_smlad(dtmm_sxtab16(off2, xr), dtmm_sxtb16(wr), acc);
        acc = dtmm_smlad(dtmm_sxtab16_ror8(off2, xr), dtmm_sxtb16_ror8(wr), acc);
    }
    for (; k < n; k++) acc += (x[k] - in_zp) * w[k];
    return acc;
#else
    int32_t acc = 0;
    for (int32_t k = 0; k < n; k++) acc += (x[k] - in_zp) * w[k];
    return acc;
#endif
}

dtmm_status dtmm_fully_connected_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                                    int32_t per_channel, int32_t batches, int32_t in_features,
                                    int32_t out_features, const int8_t *in, const int8_t *weights,
                                    const int32_t *bias, int8_t *out)
{
    if (batches < 0 || in_features < 1 || out_features < 1 || p->act_min > p->act_max)
        return DTMM_ERR_ARG;
#if DTMM_HOST_PATH
    if ((int64_t)in_features * 2 <= DTMM_HOST_MAX_STACK) {
        int16_t xw[in_features];
        for (int32_t b = 0; b < batches; b++) {
            dtmm_host_widen(in + b * in_features, in_features, p->in_zp, xw);
            int8_t *ob = out + b * out_features;
            int32_t o = 0, a[4];
            for (; o < out_features; o += 4) {
                const int32_t nb = out_features - o < 4 ? out_features - o : 4;
                const int8_t *w0 = weights + o * in_features;
                if (nb == 4) {
                    dtmm_host_dot_4x1(w0, w0 + in_features, w0 + 2 * in_features,
                                      w0 + 3 * in_features, xw, in_features, a);
                } else {
                    for (int32_t j = 0; j < nb; j++)
                        a[j] = dtmm_host_dot_1x1(w0 + j * in_features, xw, in_features);
                }
                for (int32_t j = 0; j < nb; j++) {
                    const int32_t qi = per_channel ? o + j : 0;
                    ob[o + j] = dtmm_host_requant(a[j] + (bias ? bias[o + j] : 0), q->multiplier[qi],
                                                  q->shift[qi], p->out_zp, p->act_min, p->act_max);
                }
            }
        }
        return DTMM_OK;
    }
#endif
    for (int32_t b = 0; b < batches; b++) {
        const int8_t *x = in + b * in_features;
        for (int32_t o = 0; o < out_features; o++) {
            const int32_t acc = fc_dot(x, weights + o * in_features, in_features, p->in_zp)
                                + (bias ? bias[o] : 0);
            const int32_t qi = per_channel ? o : 0;
            out[b * out_features + o] = dtmm_requant_s8(acc, q->multiplier[qi], q->shift[qi],
                                                        p->out_zp, p->act_min, p->act_max);
        }
    }
    return DTMM_OK;
}
