/*
 * dtmm_internal.h - internal helpers shared by the kernel files (not public API).
 */
#ifndef DTMM_INTERNAL_H
#define DTMM_INTERNAL_H

#include "dtmm_isa.h"
#include "dtmm_kernels.h"
#include "dtmm_requant.h"

/* Entry i of an unsigned index array of 8, 16 or 32-bit entries. */
DTMM_INLINE int32_t dtmm_index_at(const void *p, int32_t bits, int32_t i)
{
    if (bits == 8) return ((const uint8_t *)p)[i];
    if (bits == 16) return ((const uint16_t *)p)[i];
    return (int32_t)((const uint32_t *)p)[i];
}

/* Check the output dims of a conv / pool with kernel kh x kw. */
DTMM_INLINE int dtmm_conv_dims_ok(const dtmm_dims *in, int32_t kh, int32_t kw, int32_t sh,
                                  int32_t sw, int32_t pt, int32_t pb, int32_t pl, int32_t pr,
                                  const dtmm_dims *out)
{
    if (sh < 1 || sw < 1 || pt < 0 || pb < 0 || pl < 0 || pr < 0 || kh < 1 || kw < 1) return 0;
    const int32_t hp = in->h + pt + pb, wp = in->w + pl + pr;
    if (hp < kh || wp < kw) return 0;
    return out->n == in->n && out->h == (hp - kh) / sh + 1 && out->w == (wp - kw) / sw + 1;
}

DTMM_INLINE int dtmm_conv_params_ok(const dtmm_conv_params *p, const dtmm_dims *in,
                                    int32_t kh, int32_t kw, const dtmm_dims *out)
{
    return dtmm_conv_dims_ok(in, kh, kw, p->stride_h, p->stride_w, p->pad_top, p->pad_bottom,
                             p->pad_left, p->pad_right, out)
           && p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127;
}

#endif /* DTMM_INTERNAL_H */
