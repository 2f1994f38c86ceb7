/*
 * dtmm_add_s8.c - TFLite int8 ADD, elementwise on equal shapes.
 *   MVE:  4 elements per 32-bit vector (VLDRB.S32), both rescalings and the output
 *         requantization as vector ops (dtmm_mve_requant_lt1), VSTRB.32; 16 per loop.
 *   DSP:  per element, each input's high multiply as one SMMULR of 2 * (x - zp) << ls
 *         (exact: that value fits int32), the output's as dtmm_requant_fast_s8 (QADD +
 *         SMMULR) when its constants allow, else the reference.
 *   host (DTMM_HOST_PATH): the same loop with branch-free requantization (vectorises).
 */
#include "dtmm_internal.h"

dtmm_status dtmm_add_s8(const dtmm_add_params *p, const int8_t *in1, const int8_t *in2,
                        int8_t *out, int32_t size)
{
    if (size < 0 || p->act_min > p->act_max || p->left_shift < 0 || p->left_shift > 22
        || p->in1_shift > 0 || p->in2_shift > 0 || p->out_shift > 0)
        return DTMM_ERR_ARG;
#if DTMM_HOST_PATH
    { /* branch-free requantization: the loop vectorises (see dtmm_isa.h) */
        const int32_t z1 = p->in1_zp, z2 = p->in2_zp, ls = p->left_shift, oz = p->out_zp;
        const int32_t m1 = p->in1_multiplier, s1 = p->in1_shift, m2 = p->in2_multiplier;
        const int32_t s2 = p->in2_shift, mo = p->out_multiplier, so = p->out_shift;
        const int32_t lo = p->act_min, hi = p->act_max;
        for (int32_t i = 0; i < size; i++) {
            const int32_t sa = dtmm_host_requantize_lt1((in1[i] - z1) * (1 << ls), m1, s1);
            const int32_t sb = dtmm_host_requantize_lt1((in2[i] - z2) * (1 << ls), m2, s2);
            int32_t v = dtmm_host_requantize_lt1(sa + sb, mo, so) + oz;
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            out[i] = (int8_t)v;
        }
        return DTMM_OK;
    }
#endif
#if DTMM_USE_MVE
    {
        const int32_t z1 = p->in1_zp, z2 = p->in2_zp, ls = p->left_shift, oz = p->out_zp;
        const int32_t m1 = p->in1_multiplier, s1 = p->in1_shift, m2 = p->in2_multiplier;
        const int32_t s2 = p->in2_shift, mo = p->out_multiplier, so = p->out_shift;
        const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
#  define ADD_MVE_(A, B)                                                                  \
        dtmm_mve_requant_lt1(                                                              \
            vaddq_s32(dtmm_mve_requant_lt1(vshlq_r_s32(vaddq_n_s32(A, -z1), ls), m1, s1),   \
                      dtmm_mve_requant_lt1(vshlq_r_s32(vaddq_n_s32(B, -z2), ls), m2, s2)),  \
            mo, so)
        int32_t i = 0;
        for (; i + 4 <= size; i += 4) {
            const int32x4_t v = vaddq_n_s32(ADD_MVE_(vldrbq_s32(in1 + i), vldrbq_s32(in2 + i)), oz);
            vstrbq_s32(out + i, vminq_s32(vmaxq_s32(v, lo), hi));
        }
        if (i < size) {
            const mve_pred16_t pr = vctp32q((uint32_t)(size - i));
            const int32x4_t v = vaddq_n_s32(
                ADD_MVE_(vldrbq_z_s32(in1 + i, pr), vldrbq_z_s32(in2 + i, pr)), oz);
            vstrbq_p_s32(out + i, vminq_s32(vmaxq_s32(v, lo), hi), pr);
        }
#  undef ADD_MVE_
        return DTMM_OK;
    }
#elif DTMM_USE_DSP
    if ((p->out_multiplier == 0 || p->out_multiplier >= (1 << 30)) && p->out_shift >= -21) {
        const int32_t z1 = p->in1_zp, z2 = p->in2_zp, ls1 = p->left_shift + 1;
        const int32_t m1 = p->in1_multiplier, m2 = p->in2_multiplier;
        const int32_t r1 = -p->in1_shift, r2 = -p->in2_shift;
        const int32_t h1 = r1 > 0 ? 1 << (r1 - 1) : 0, h2 = r2 > 0 ? 1 << (r2 - 1) : 0;
        const uint32_t o1 = r1 > 0, o2 = r2 > 0;
        const dtmm_requant_fast fo = dtmm_requant_fast_make(p->out_multiplier, p->out_shift,
                                                            p->out_zp);
        const int32_t lo = p->act_min, hi = p->act_max;
        for (int32_t i = 0; i < size; i++) {
            /* SRDHM(a, m) = SMMULR(2a, m) exactly: |2a| <= 255 << 23 fits int32 */
            const int32_t ya = dtmm_smmulr((in1[i] - z1) * (1 << ls1), m1);
            const int32_t yb = dtmm_smmulr((in2[i] - z2) * (1 << ls1), m2);
            const int32_t sa = ((ya + h1) - (int32_t)(((uint32_t)ya >> 31) & o1)) >> r1;
            const int32_t sb = ((yb + h2) - (int32_t)(((uint32_t)yb >> 31) & o2)) >> r2;
            out[i] = dtmm_requant_fast_s8(sa + sb, &fo, lo, hi);
        }
        return DTMM_OK;
    }
#endif
    for (int32_t i = 0; i < size; i++) {
        const int32_t a = (in1[i] - p->in1_zp) * (1 << p->left_shift);
        const int32_t b = (in2[i] - p->in2_zp) * (1 << p->left_shift);
        const int32_t sa = dtmm_requantize_lt1(a, p->in1_multiplier, p->in1_shift);
        const int32_t sb = dtmm_requantize_lt1(b, p->in2_multiplier, p->in2_shift);
        int32_t v = dtmm_requantize_lt1(sa + sb, p->out_multiplier, p->out_shift) + p->out_zp;
        v = v < p->act_min ? p->act_min : v;
        v = v > p->act_max ? p->act_max : v;
        out[i] = (int8_t)v;
    }
    return DTMM_OK;
}
