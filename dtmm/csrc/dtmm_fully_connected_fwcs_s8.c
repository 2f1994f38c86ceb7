/*
 * dtmm_fully_connected_fwcs_s8.c - int8 fully connected layer on FWCS weights: the
 * (O, I) weight stored as kept runs ("filterlets") of `size` contiguous inputs
 * (dtmm.formats.fwcs, linear layout: the last run of a row may be shorter).
 *
 * Per output o: acc = offset[o] + sum over o's kept runs j of dot(w_j, x[cptr_j ..]),
 * offset[o] = bias[o] - in_zp * sum(kept w of o) (precomputed at code-generation time,
 * as for the FWCS conv), so the input is read raw:
 *   MVE:  per run (size 16: one vector) VLDRB w + VLDRB x + VMLADAVA, a run of any other
 *         length as a tail-predicated loop (VCTP); the outputs requantized 4 at a time
 *         as one vector when the quantization is per tensor (TFLite FULLY_CONNECTED),
 *         else per output;
 *   DSP:  per 4 weights LDR + 2 SXTB16 for w and for x, 2 SMLAD; requantization with
 *         dtmm_requant_fast_s8 (QADD + SMMULR) where exact;
 *   C:    one MAC per weight.
 * An output with no kept run is requant(offset[o]). No scratch.
 */
#include "dtmm_internal.h"

/* dot(w[0:n], x[0:n]) of one run. */
DTMM_INLINE int32_t fcf_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t acc)
{
#if DTMM_USE_MVE
    if (n == 16) return vmladavaq_s8(acc, vldrbq_s8(w), vldrbq_s8(x));
    for (int32_t k = 0; k < n; k += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - k));
        acc = vmladavaq_s8(acc, vldrbq_z_s8(w + k, pr), vldrbq_z_s8(x + k, pr));
    }
    return acc;
#elif DTMM_USE_DSP
    int32_t k = 0;
    for (; k + 4 <= n; k += 4) {
        const uint32_t xr = dtmm_read_u32(x + k), wr = dtmm_read_u32(w + k);
        acc = dtmm_smlad(dtmm_sxtb16(xr), dtmm_sxtb16(wr), acc);
        acc = dtmm_smlad(dtmm_sxtb16_ror8(xr), dtmm_sxtb16_ror8(wr), acc);
    }
    for (; k < n; k++) acc += x[k] * w[k];
    return acc;
#else
    for (int32_t k = 0; k < n; k++) acc += x[k] * w[k];
    return acc;
#endif
}

dtmm_status dtmm_fully_connected_fwcs_s8(const dtmm_conv_params *p,
                                         const dtmm_requant_params *q, int32_t per_channel,
                                         int32_t batches, int32_t in_features,
                                         const dtmm_fwcs *fw, const int32_t *offset,
                                         const int8_t *in, int8_t *out)
{
    const int32_t o_n = fw->c_out, size = fw->size;
    if (batches < 0 || in_features < 1 || o_n < 1 || size < 1 || !offset || fw->kh != 1
        || fw->kw != (in_features + size - 1) / size || p->act_min > p->act_max
        || (fw->cptr_bits != 8 && fw->cptr_bits != 16)
        || (fw->fidx_bits != 8 && fw->fidx_bits != 16 && fw->fidx_bits != 32))
        return DTMM_ERR_ARG;
    const uint8_t *c8 = (const uint8_t *)fw->cptr;
    const uint16_t *c16 = (const uint16_t *)fw->cptr;
    const int32_t lo = p->act_min, hi = p->act_max;
#if DTMM_USE_MVE
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    const uint32x4_t offs = vidupq_n_u32(0, 1);
#endif
    for (int32_t b = 0; b < batches; b++) {
        const int8_t *x = in + b * in_features;
        int8_t *ob = out + b * o_n;
        const int8_t *w = fw->arr;
        int32_t j = dtmm_index_at(fw->fidx, fw->fidx_bits, 0);
        for (int32_t o0 = 0; o0 < o_n; o0 += 4) {
            const int32_t nb = o_n - o0 < 4 ? o_n - o0 : 4;
            int32_t acc[4] = {0, 0, 0, 0};
            for (int32_t i = 0; i < nb; i++) {
                const int32_t o = o0 + i, j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, o + 1);
                int32_t a = offset[o];
                for (; j < j1; j++) {
                    const int32_t cp = fw->cptr_bits == 8 ? c8[j] : c16[j];
                    const int32_t len = in_features - cp < size ? in_features - cp : size;
                    a = fcf_dot(w, x + cp, len, a);
                    w += len;
                }
                acc[i] = a;
            }
#if DTMM_USE_MVE
            if (!per_channel) {
                dtmm_mve_requant_store(dtmm_mve_vec4(acc[0], acc[1], acc[2], acc[3]),
                                       q->multiplier[0], q->shift[0], p->out_zp, vlo, vhi,
                                       ob + o0, offs, vctp32q((uint32_t)nb));
                continue;
            }
#endif
            for (int32_t i = 0; i < nb; i++) {
                const int32_t qi = per_channel ? o0 + i : 0;
#if DTMM_USE_DSP
                if (dtmm_requant_fast_ok(q->multiplier[qi], q->shift[qi])) {
                    const dtmm_requant_fast f =
                        dtmm_requant_fast_make(q->multiplier[qi], q->shift[qi], p->out_zp);
                    ob[o0 + i] = dtmm_requant_fast_s8(acc[i], &f, lo, hi);
                    continue;
                }
#endif
                ob[o0 + i] = dtmm_requant_s8(acc[i], q->multiplier[qi], q->shift[qi], p->out_zp,
                                             lo, hi);
            }
        }
    }
    return DTMM_OK;
}
