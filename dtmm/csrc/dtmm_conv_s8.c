/*
 * dtmm_conv_s8.c - dense int8 convolution (NHWC input, OHWI weights), CMSIS-NN style.
 *
 * MVE:     im2col of 4 output pixels into int8 scratch (padding = in_zp), then per
 *          filter a 4-row tail-predicated dot product (vmladava) sharing each weight
 *          load; sum(w) is accumulated alongside (vaddva) to apply the input offset:
 *          acc = bias + sum(x * w) - in_zp * sum(w).
 * DSP:     im2col of 2 output pixels into int16 scratch holding x - in_zp (padding 0),
 *          each group of 4 stored as (x0, x2, x1, x3) so that a weight word needs only
 *          __sxtb16 and __sxtb16(ror 8); then a 2 filters x 2 pixels __smlad kernel.
 * plain C: direct loops over the taps inside the input, sum((x - in_zp) * w).
 * See dtmm_kernels.h for the contract.
 */
#include "dtmm_internal.h"

int32_t dtmm_conv_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_dims *filter_dims)
{
    (void)in_dims;
    const int32_t k = filter_dims->h * filter_dims->w * filter_dims->c;
#if DTMM_USE_MVE
    return 4 * k; /* 4 rows of int8 */
#elif DTMM_USE_DSP
    return 2 * k * (int32_t)sizeof(int16_t); /* 2 rows of int16 */
#else
    (void)k;
    return 0;
#endif
}

#if DTMM_USE_MVE
/* int8 im2col row of one output pixel; taps in the padding are filled with in_zp. */
static void im2col_s8(const int8_t *in, const dtmm_dims *id, int32_t kh_n, int32_t kw_n,
                      int32_t iy0, int32_t ix0, int8_t zp, int8_t *dst)
{
    const int32_t c = id->c;
    for (int32_t kh = 0; kh < kh_n; kh++) {
        const int32_t iy = iy0 + kh;
        for (int32_t kw = 0; kw < kw_n; kw++) {
            const int32_t ix = ix0 + kw;
            if (iy >= 0 && iy < id->h && ix >= 0 && ix < id->w)
                memcpy(dst, in + ((int32_t)iy * id->w + ix) * c, (size_t)c);
            else
                memset(dst, zp, (size_t)c);
            dst += c;
        }
    }
}
#endif

#if DTMM_USE_DSP
/* Position of element k of a row in the (x0, x2, x1, x3) group order. */
DTMM_INLINE int32_t reorder_pos(int32_t k, int32_t k4)
{
    return k < k4 ? ((k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1)) : k;
}

/* int16 im2col row (x - in_zp; padding 0) in the __smlad group order. */
static void im2col_s16(const int8_t *in, const dtmm_dims *id, int32_t kh_n, int32_t kw_n,
                       int32_t iy0, int32_t ix0, int32_t zp, int16_t *dst)
{
    const int32_t c = id->c;
    const int32_t k_total = kh_n * kw_n * c, k4 = k_total & ~3;
    const uint32_t off2 = ((uint32_t)(uint16_t)(int16_t)(-zp)) * 0x00010001u;
    int32_t k = 0;
    for (int32_t kh = 0; kh < kh_n; kh++) {
        const int32_t iy = iy0 + kh;
        for (int32_t kw = 0; kw < kw_n; kw++, k += c) {
            const int32_t ix = ix0 + kw;
            if (!(iy >= 0 && iy < id->h && ix >= 0 && ix < id->w)) {
                if ((c & 3) == 0) {
                    memset(dst + k, 0, (size_t)c * sizeof(int16_t));
                } else { /* groups may straddle taps: zero element by element */
                    for (int32_t i = 0; i < c; i++) dst[reorder_pos(k + i, k4)] = 0;
                }
                continue;
            }
            const int8_t *src = in + ((int32_t)iy * id->w + ix) * c;
            if ((c & 3) == 0) {
                /* k is a multiple of 4 here: whole groups, two SXTAB16 per 4 values. */
                for (int32_t i = 0; i < c; i += 4) {
                    const uint32_t x4 = dtmm_read_u32(src + i);
                    dtmm_write_u32(dst + k + i, dtmm_sxtab16(off2, x4));
                    dtmm_write_u32(dst + k + i + 2, dtmm_sxtab16_ror8(off2, x4));
                }
            } else {
                for (int32_t i = 0; i < c; i++)
                    dst[reorder_pos(k + i, k4)] = (int16_t)(src[i] - zp);
            }
        }
    }
}
#endif

dtmm_status dtmm_conv_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                         const dtmm_dims *id, const int8_t *in, const dtmm_dims *fd,
                         const int8_t *weights, const int32_t *bias, const dtmm_dims *od,
                         int8_t *out, void *scratch)
{
    if (fd->c != id->c || od->c != fd->n || !dtmm_conv_params_ok(p, id, fd->h, fd->w, od))
        return DTMM_ERR_ARG;
    const int32_t c_out = fd->n, kh_n = fd->h, kw_n = fd->w, c_in = id->c;
    const int32_t k_total = kh_n * kw_n * c_in;
    const int32_t hw_out = od->h * od->w;
    const int32_t in_zp = p->in_zp;

    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        int8_t *out_n = out + n * hw_out * c_out;
#if DTMM_USE_MVE
        int8_t *col = (int8_t *)scratch;
        for (int32_t p0 = 0; p0 < hw_out; p0 += 4) {
            const int32_t rows = hw_out - p0 < 4 ? hw_out - p0 : 4;
            const int8_t *row[4];
            for (int32_t r = 0; r < 4; r++) {
                if (r < rows) {
                    const int32_t oy = (p0 + r) / od->w, ox = (p0 + r) % od->w;
                    im2col_s8(in_n, id, kh_n, kw_n, oy * p->stride_h - p->pad_top,
                              ox * p->stride_w - p->pad_left, (int8_t)in_zp, col + r * k_total);
                    row[r] = col + r * k_total;
                } else {
                    row[r] = col; /* dead lane: computed, never stored */
                }
            }
            const int8_t *w = weights;
            for (int32_t f = 0; f < c_out; f++, w += k_total) {
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, wsum = 0;
                const int8_t *wp = w, *x0 = row[0], *x1 = row[1], *x2 = row[2], *x3 = row[3];
                int32_t k = k_total;
                /* Full vectors unpredicated (GCC 12 handles VPT blocks poorly), then one
                 * predicated tail. */
                for (; k >= 16; k -= 16) {
                    const int8x16_t wv = vldrbq_s8(wp);
                    wsum = vaddvaq_s8(wsum, wv);
                    a0 = vmladavaq_s8(a0, wv, vldrbq_s8(x0));
                    a1 = vmladavaq_s8(a1, wv, vldrbq_s8(x1));
                    a2 = vmladavaq_s8(a2, wv, vldrbq_s8(x2));
                    a3 = vmladavaq_s8(a3, wv, vldrbq_s8(x3));
                    wp += 16;
                    x0 += 16;
                    x1 += 16;
                    x2 += 16;
                    x3 += 16;
                }
                if (k > 0) {
                    const mve_pred16_t pr = vctp8q((uint32_t)k);
                    const int8x16_t wv = vldrbq_z_s8(wp, pr);
                    wsum = vaddvaq_s8(wsum, wv);
                    a0 = vmladavaq_s8(a0, wv, vldrbq_z_s8(x0, pr));
                    a1 = vmladavaq_s8(a1, wv, vldrbq_z_s8(x1, pr));
                    a2 = vmladavaq_s8(a2, wv, vldrbq_z_s8(x2, pr));
                    a3 = vmladavaq_s8(a3, wv, vldrbq_z_s8(x3, pr));
                }
                const int32_t off = (bias ? bias[f] : 0) - in_zp * wsum;
                const int32_t acc[4] = {a0 + off, a1 + off, a2 + off, a3 + off};
                for (int32_t r = 0; r < rows; r++)
                    out_n[(p0 + r) * c_out + f] =
                        dtmm_requant_s8(acc[r], q->multiplier[f], q->shift[f], p->out_zp,
                                        p->act_min, p->act_max);
            }
        }
#elif DTMM_USE_DSP
        int16_t *colA = (int16_t *)scratch, *colB = colA + k_total;
        const int32_t k4 = k_total & ~3;
        for (int32_t p0 = 0; p0 < hw_out; p0 += 2) {
            const int32_t two = p0 + 1 < hw_out;
            for (int32_t r = 0; r <= two; r++) {
                const int32_t oy = (p0 + r) / od->w, ox = (p0 + r) % od->w;
                im2col_s16(in_n, id, kh_n, kw_n, oy * p->stride_h - p->pad_top,
                           ox * p->stride_w - p->pad_left, in_zp, r ? colB : colA);
            }
            const int16_t *cb = two ? colB : colA; /* dead second pixel: never stored */
            int32_t f = 0;
            for (; f + 1 < c_out; f += 2) {
                const int8_t *w0 = weights + f * k_total, *w1 = w0 + k_total;
                int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
                int32_t k = 0;
                for (; k < k4; k += 4) {
                    const uint32_t xa0 = dtmm_read_u32(colA + k), xa1 = dtmm_read_u32(colA + k + 2);
                    const uint32_t xb0 = dtmm_read_u32(cb + k), xb1 = dtmm_read_u32(cb + k + 2);
                    uint32_t wr = dtmm_read_u32(w0 + k);
                    uint32_t wl = dtmm_sxtb16(wr), wh = dtmm_sxtb16_ror8(wr);
                    a00 = dtmm_smlad(wl, xa0, a00);
                    a00 = dtmm_smlad(wh, xa1, a00);
                    a01 = dtmm_smlad(wl, xb0, a01);
                    a01 = dtmm_smlad(wh, xb1, a01);
                    wr = dtmm_read_u32(w1 + k);
                    wl = dtmm_sxtb16(wr);
                    wh = dtmm_sxtb16_ror8(wr);
                    a10 = dtmm_smlad(wl, xa0, a10);
                    a10 = dtmm_smlad(wh, xa1, a10);
                    a11 = dtmm_smlad(wl, xb0, a11);
                    a11 = dtmm_smlad(wh, xb1, a11);
                }
                for (; k < k_total; k++) {
                    a00 += w0[k] * colA[k];
                    a01 += w0[k] * cb[k];
                    a10 += w1[k] * colA[k];
                    a11 += w1[k] * cb[k];
                }
                const int32_t b0 = bias ? bias[f] : 0, b1 = bias ? bias[f + 1] : 0;
                int8_t *o = out_n + p0 * c_out + f;
                o[0] = dtmm_requant_s8(a00 + b0, q->multiplier[f], q->shift[f], p->out_zp,
                                       p->act_min, p->act_max);
                o[1] = dtmm_requant_s8(a10 + b1, q->multiplier[f + 1], q->shift[f + 1], p->out_zp,
                                       p->act_min, p->act_max);
                if (two) {
                    o[c_out] = dtmm_requant_s8(a01 + b0, q->multiplier[f], q->shift[f], p->out_zp,
                                               p->act_min, p->act_max);
                    o[c_out + 1] = dtmm_requant_s8(a11 + b1, q->multiplier[f + 1], q->shift[f + 1],
                                                   p->out_zp, p->act_min, p->act_max);
                }
            }
            for (; f < c_out; f++) {
                const int8_t *w0 = weights + f * k_total;
                int32_t a00 = 0, a01 = 0;
                int32_t k = 0;
                for (; k < k4; k += 4) {
                    const uint32_t wr = dtmm_read_u32(w0 + k);
                    const uint32_t wl = dtmm_sxtb16(wr), wh = dtmm_sxtb16_ror8(wr);
                    a00 = dtmm_smlad(wl, dtmm_read_u32(colA + k), a00);
                    a00 = dtmm_smlad(wh, dtmm_read_u32(colA + k + 2), a00);
                    a01 = dtmm_smlad(wl, dtmm_read_u32(cb + k), a01);
                    a01 = dtmm_smlad(wh, dtmm_read_u32(cb + k + 2), a01);
                }
                for (; k < k_total; k++) {
                    a00 += w0[k] * colA[k];
                    a01 += w0[k] * cb[k];
                }
                const int32_t b0 = bias ? bias[f] : 0;
                int8_t *o = out_n + p0 * c_out + f;
                o[0] = dtmm_requant_s8(a00 + b0, q->multiplier[f], q->shift[f], p->out_zp,
                                       p->act_min, p->act_max);
                if (two)
                    o[c_out] = dtmm_requant_s8(a01 + b0, q->multiplier[f], q->shift[f], p->out_zp,
                                               p->act_min, p->act_max);
            }
        }
#else
        (void)scratch;
        (void)k_total;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            const int32_t kh_lo = iy0 < 0 ? -iy0 : 0;
            const int32_t kh_hi = id->h - iy0 < kh_n ? id->h - iy0 : kh_n;
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                const int32_t kw_lo = ix0 < 0 ? -ix0 : 0;
                const int32_t kw_hi = id->w - ix0 < kw_n ? id->w - ix0 : kw_n;
                int8_t *o = out_n + (oy * od->w + ox) * c_out;
                for (int32_t f = 0; f < c_out; f++) {
                    int32_t acc = bias ? bias[f] : 0;
                    for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                        for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                            const int8_t *x = in_n + ((iy0 + kh) * id->w + ix0 + kw) * c_in;
                            const int8_t *w = weights + ((f * kh_n + kh) * kw_n + kw) * c_in;
                            for (int32_t c = 0; c < c_in; c++) acc += (x[c] - in_zp) * w[c];
                        }
                    }
                    o[f] = dtmm_requant_s8(acc, q->multiplier[f], q->shift[f], p->out_zp,
                                           p->act_min, p->act_max);
                }
            }
        }
#endif
    }
    return DTMM_OK;
}
