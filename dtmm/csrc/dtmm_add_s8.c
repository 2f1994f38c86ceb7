/*
 * dtmm_add_s8.c - TFLite int8 ADD, elementwise on equal shapes.
 * host (DTMM_HOST_PATH): the same loop with branch-free requantization (vectorises).
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
