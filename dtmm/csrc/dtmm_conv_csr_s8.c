/*
 * dtmm_conv_csr_s8.c - int8 convolution on CSR (unstructured sparse) weights.
 *
 * Per pair of output pixels: an int16 im2col of each (x - in_zp; padding 0), then per
 * filter a sparse dot product over its kept weights; each (column, value) pair is
 * loaded once and used for both pixels.  Plain C on every target.
 */
#include "dtmm_internal.h"

int32_t dtmm_conv_csr_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_csr *w)
{
    (void)in_dims;
    return 2 * w->kh * w->kw * w->c_in * (int32_t)sizeof(int16_t);
}

static void im2col_s16(const int8_t *in, const dtmm_dims *id, int32_t kh_n, int32_t kw_n,
                       int32_t iy0, int32_t ix0, int32_t zp, int16_t *dst)
{
    const int32_t c = id->c;
    for (int32_t kh = 0; kh < kh_n; kh++) {
        const int32_t iy = iy0 + kh;
        for (int32_t kw = 0; kw < kw_n; kw++, dst += c) {
            const int32_t ix = ix0 + kw;
            if (iy >= 0 && iy < id->h && ix >= 0 && ix < id->w) {
                const int8_t *src = in + (iy * id->w + ix) * c;
                for (int32_t i = 0; i < c; i++) dst[i] = (int16_t)(src[i] - zp);
            } else {
                memset(dst, 0, (size_t)c * sizeof(int16_t));
            }
        }
    }
}

DTMM_INLINE void csr_body(const dtmm_conv_params *p, const dtmm_requant_params *q,
                          const dtmm_dims *id, const int8_t *in, const dtmm_csr *cw,
                          const int32_t *bias, const dtmm_dims *od, int8_t *out,
                          int16_t *colA, int16_t *colB, const int col_bits)
{
    const int32_t c_out = cw->c_out, hw_out = od->h * od->w;
    const uint8_t *col8 = (const uint8_t *)cw->col;
    const uint16_t *col16 = (const uint16_t *)cw->col;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * id->c;
        int8_t *out_n = out + n * hw_out * c_out;
        for (int32_t p0 = 0; p0 < hw_out; p0 += 2) {
            const int32_t two = p0 + 1 < hw_out;
            for (int32_t r = 0; r <= two; r++) {
                const int32_t oy = (p0 + r) / od->w, ox = (p0 + r) % od->w;
                im2col_s16(in_n, id, cw->kh, cw->kw, oy * p->stride_h - p->pad_top,
                           ox * p->stride_w - p->pad_left, p->in_zp, r ? colB : colA);
            }
            const int16_t *cb = two ? colB : colA;
            int32_t j = dtmm_index_at(cw->rowptr, cw->rowptr_bits, 0);
            for (int32_t f = 0; f < c_out; f++) {
                const int32_t j1 = dtmm_index_at(cw->rowptr, cw->rowptr_bits, f + 1);
                int32_t a0 = bias ? bias[f] : 0, a1 = a0;
                for (; j < j1; j++) {
                    const int32_t k = col_bits == 8 ? col8[j] : col16[j];
                    const int32_t v = cw->values[j];
                    a0 += colA[k] * v;
                    a1 += cb[k] * v;
                }
                out_n[p0 * c_out + f] = dtmm_requant_s8(a0, q->multiplier[f], q->shift[f],
                                                        p->out_zp, p->act_min, p->act_max);
                if (two)
                    out_n[(p0 + 1) * c_out + f] = dtmm_requant_s8(
                        a1, q->multiplier[f], q->shift[f], p->out_zp, p->act_min, p->act_max);
            }
        }
    }
}

dtmm_status dtmm_conv_csr_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                             const dtmm_dims *id, const int8_t *in, const dtmm_csr *cw,
                             const int32_t *bias, const dtmm_dims *od, int8_t *out,
                             void *scratch)
{
    if (cw->c_in != id->c || od->c != cw->c_out || !dtmm_conv_params_ok(p, id, cw->kh, cw->kw, od)
        || (cw->col_bits != 8 && cw->col_bits != 16)
        || (cw->rowptr_bits != 8 && cw->rowptr_bits != 16 && cw->rowptr_bits != 32))
        return DTMM_ERR_ARG;
    int16_t *colA = (int16_t *)scratch, *colB = colA + cw->kh * cw->kw * cw->c_in;
    if (cw->col_bits == 8)
        csr_body(p, q, id, in, cw, bias, od, out, colA, colB, 8);
    else
        csr_body(p, q, id, in, cw, bias, od, out, colA, colB, 16);
    return DTMM_OK;
}
