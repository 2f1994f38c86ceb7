/*
 * dtmm_conv_pattern_s8.c - int8 3x3 convolution on PatDNN-style pattern weights.
 *
 * Kernel-major, as PatDNN: the 4 weights of a kept kernel stay in registers while they
 * are applied to a whole chunk of output pixels.  Per output row, a band of the 3
 * input rows it reads, padded with in_zp (dtmm_internal.h), is loaded into scratch, so
 * no tap needs a bounds check.  Per filter and chunk of <= 64 output pixels (whole
 * short rows at once, so that a kernel's set-up is shared by more pixels) the
 * int32 accumulators start at offset[o] = bias - in_zp * sum(kept w) (computed once at
 * code-generation time); a filter with no kept kernel stores its constant output; the
 * DSP path requantizes with dtmm_requant_fast_s8 where exact (as FWCS and CSR);
 * per kept kernel (channel c, pattern p) the pattern's 4 tap offsets in the band
 * (computed once per call per pattern) give, for pixel i of the chunk (band offset
 * pix[i], a table built once per chunk and shared by every filter),
 *     acc[i] += sum_t w_t * x[pix[i] + c + off_p[t]].
 *   plain C / DSP: 4 LDRSB + 4 MLA per pixel and kernel (DSP: weights packed in pairs
 *                  for SMLABB / SMLABT, two pixels per iteration; a __smlad pair would
 *                  need a PKHBT per pair of taps: no fewer instructions);
 *   MVE:           4 pixels per vector: per tap one VLDRB.S32 gather (the 4 pixels'
 *                  inputs lie C_in * stride_w apart in NHWC, farther across rows) and
 *                  one VMLA by the scalar weight; accumulators loaded / stored once per
 *                  kernel and vector.
 * See dtmm_kernels.h for the contract and the scratch formula.
 */
#include "dtmm_internal.h"

#define PAT_CHUNK 64 /* output pixels per accumulator chunk (may span output rows) */

/* Extra band rows beyond 3, so that a chunk covers several short output rows: about
 * 16 / W more rows (at most H - 1); a chunk then spans up to extra / stride_h + 1 rows. */
DTMM_INLINE int32_t pat_extra_rows(const dtmm_dims *id)
{
    int32_t e = 16 / (id->w > 0 ? id->w : 1);
    return e > id->h - 1 ? (id->h > 1 ? id->h - 1 : 0) : e;
}

int32_t dtmm_conv_pattern_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_pattern *w)
{
    const int32_t band = (3 + pat_extra_rows(in_dims)) * dtmm_band_row_bytes(in_dims, 3);
    (void)w->c_out;
    return 16 * w->n_patterns + 8 * PAT_CHUNK + ((band + 3) & ~3);
}

/* acc[i] += sum_t w[t] * x[o[t] + pix[i]] for i < n, where pix = acc + PAT_CHUNK holds
 * each chunk pixel's band offset. */
DTMM_INLINE void pat_apply(int32_t *acc, const int8_t *x, const int32_t *o, const int8_t *w,
                           int32_t n)
{
    const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    const int8_t *x0 = x + o[0], *x1 = x + o[1], *x2 = x + o[2], *x3 = x + o[3];
#if DTMM_USE_MVE
    const uint32_t *pix = (const uint32_t *)(acc + PAT_CHUNK);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32x4_t pv = vldrwq_u32(pix + i);
        int32x4_t a = vldrwq_s32(acc + i);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_s32(x0, pv), w0);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_s32(x1, pv), w1);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_s32(x2, pv), w2);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_s32(x3, pv), w3);
        vstrwq_s32(acc + i, a);
    }
    if (i < n) {
        const mve_pred16_t p = vctp32q((uint32_t)(n - i));
        const uint32x4_t pv = vldrwq_z_u32(pix + i, p);
        int32x4_t a = vldrwq_z_s32(acc + i, p);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_z_s32(x0, pv, p), w0);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_z_s32(x1, pv, p), w1);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_z_s32(x2, pv, p), w2);
        a = vmlaq_n_s32(a, vldrbq_gather_offset_z_s32(x3, pv, p), w3);
        vstrwq_p_s32(acc + i, a, p);
    }
#elif DTMM_USE_DSP
    /* weights packed in pairs for SMLABB / SMLABT (fewer live registers); two pixels
     * per iteration: 8 LDRSB + 8 SMLAxy + LDRD offsets, LDRD / STRD accumulators */
    const uint32_t w01 = (uint16_t)w0 | ((uint32_t)w1 << 16);
    const uint32_t w23 = (uint16_t)w2 | ((uint32_t)w3 << 16);
    int32_t *a = acc, *const end = acc + (n & ~1);
    for (; a < end; a += 2) {
        const int32_t k0 = a[PAT_CHUNK], k1 = a[PAT_CHUNK + 1];
        int32_t s0 = a[0], s1 = a[1];
        s0 = dtmm_smlabb((uint32_t)x0[k0], w01, s0);
        s1 = dtmm_smlabb((uint32_t)x0[k1], w01, s1);
        s0 = dtmm_smlabt((uint32_t)x1[k0], w01, s0);
        s1 = dtmm_smlabt((uint32_t)x1[k1], w01, s1);
        s0 = dtmm_smlabb((uint32_t)x2[k0], w23, s0);
        s1 = dtmm_smlabb((uint32_t)x2[k1], w23, s1);
        s0 = dtmm_smlabt((uint32_t)x3[k0], w23, s0);
        s1 = dtmm_smlabt((uint32_t)x3[k1], w23, s1);
        a[0] = s0;
        a[1] = s1;
    }
    if (n & 1) {
        const int32_t k = a[PAT_CHUNK];
        a[0] += x0[k] * w0 + x1[k] * w1 + x2[k] * w2 + x3[k] * w3;
    }
#else
    const int32_t *pix = acc + PAT_CHUNK;
    for (int32_t i = 0; i < n; i++) {
        const int32_t k = pix[i];
        acc[i] += x0[k] * w0 + x1[k] * w1 + x2[k] * w2 + x3[k] * w3;
    }
#endif
}

dtmm_status dtmm_conv_pattern_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                                 const dtmm_dims *id, const int8_t *in, const dtmm_pattern *pw,
                                 const int32_t *offset, const dtmm_dims *od, int8_t *out,
                                 void *scratch)
{
    const int32_t kpb = pw->kptr_bits ? pw->kptr_bits : 16;
    const int32_t kcb = pw->kchan_bits ? pw->kchan_bits : 16;
    if (pw->c_in != id->c || od->c != pw->c_out || pw->n_patterns < 1 || !offset
        || (kpb != 8 && kpb != 16 && kpb != 32) || (kcb != 8 && kcb != 16)
        || !dtmm_conv_params_ok(p, id, 3, 3, od))
        return DTMM_ERR_ARG;
    const int32_t c_in = id->c, c_out = pw->c_out, in_zp = p->in_zp;
    const int32_t row = dtmm_band_row_bytes(id, 3), step = p->stride_w * c_in;
    const int32_t band_rows = 3 + pat_extra_rows(id);

    /* scratch: ptab[n_patterns][4] | acc[PAT_CHUNK] | pix[PAT_CHUNK] | band */
    int32_t *ptab = (int32_t *)scratch;
    int32_t *acc = ptab + 4 * pw->n_patterns;
    int32_t *pix = acc + PAT_CHUNK;
    int8_t *band = (int8_t *)(pix + PAT_CHUNK);
    for (int32_t i = 0; i < 4 * pw->n_patterns; i++) {
        const int32_t pos = pw->patterns[i];
        ptab[i] = (pos / 3) * row + (pos % 3) * c_in;
    }
    const uint8_t *kc8 = (const uint8_t *)pw->kchan;
    const uint16_t *kc16 = (const uint16_t *)pw->kchan;
    int32_t ox_lo, ox_hi;
    dtmm_band_span(p, id, 3, od->w, &ox_lo, &ox_hi);
    const int32_t ncols_all = ox_hi - ox_lo;
    /* output rows per chunk: as many whole rows as PAT_CHUNK pixels and the band hold */
    int32_t rows_per = ncols_all > 0 ? PAT_CHUNK / ncols_all : 1;
    const int32_t band_fit = (band_rows - 3) / p->stride_h + 1;
    rows_per = rows_per < 1 ? 1 : rows_per > band_fit ? band_fit : rows_per;
    dtmm_band_init(band, id, band_rows, 3, in_zp);

    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        for (int32_t oy = 0; oy < od->h; oy += rows_per) {
            const int32_t nr = od->h - oy < rows_per ? od->h - oy : rows_per;
            dtmm_band_rows(band, in_n, id, (nr - 1) * p->stride_h + 3, 3,
                           oy * p->stride_h - p->pad_top, in_zp);
            int8_t *out_row = out + ((n * od->h + oy) * od->w) * c_out;
            /* windows wholly in the padding (pads >= 3 only): acc = bias */
            if (ncols_all < od->w) {
                for (int32_t f = 0; f < c_out; f++) {
                    const int32_t j0 = dtmm_index_at(pw->kptr, kpb, f);
                    const int32_t j1 = dtmm_index_at(pw->kptr, kpb, f + 1);
                    const int32_t b = offset[f] + in_zp * dtmm_sum_s8(pw->values + 4 * j0,
                                                                      4 * (j1 - j0));
                    const int8_t yb = dtmm_requant_s8(b, q->multiplier[f],
                                                      q->shift[f], p->out_zp, p->act_min,
                                                      p->act_max);
                    for (int32_t r = 0; r < nr; r++)
                        for (int32_t ox = 0; ox < od->w; ox++)
                            if (ox < ox_lo || ox >= ox_hi)
                                out_row[(r * od->w + ox) * c_out + f] = yb;
                }
            }
            /* chunks: nr rows x ncols columns starting at column c0 */
            for (int32_t c0 = ox_lo; c0 < ox_hi; c0 += PAT_CHUNK) {
                const int32_t ncols = ox_hi - c0 < PAT_CHUNK ? ox_hi - c0 : PAT_CHUNK;
                const int32_t cn = nr * ncols;
                for (int32_t r = 0, i = 0; r < nr; r++)
                    for (int32_t c = 0; c < ncols; c++, i++)
                        pix[i] = r * p->stride_h * row + c * step;
                const int8_t *x = band + (c0 * p->stride_w - p->pad_left + 3) * c_in;
                for (int32_t f = 0; f < c_out; f++) {
                    const int32_t j0 = dtmm_index_at(pw->kptr, kpb, f);
                    const int32_t j1 = dtmm_index_at(pw->kptr, kpb, f + 1);
                    const int32_t init = offset[f];
                    const int32_t m = q->multiplier[f], s = q->shift[f];
                    if (j0 == j1) { /* no kept kernel: a constant output */
                        const int8_t yc = dtmm_requant_s8(init, m, s, p->out_zp, p->act_min,
                                                          p->act_max);
                        for (int32_t r = 0; r < nr; r++)
                            for (int32_t i = 0; i < ncols; i++)
                                out_row[(r * od->w + c0 + i) * c_out + f] = yc;
                        continue;
                    }
                    for (int32_t i = 0; i < cn; i++) acc[i] = init;
                    const int8_t *w = pw->values + 4 * j0;
                    if (kcb == 8) {
                        for (int32_t j = j0; j < j1; j++, w += 4)
                            pat_apply(acc, x + kc8[j], ptab + 4 * pw->kpat[j], w, cn);
                    } else {
                        for (int32_t j = j0; j < j1; j++, w += 4)
                            pat_apply(acc, x + kc16[j], ptab + 4 * pw->kpat[j], w, cn);
                    }
#if DTMM_USE_DSP
                    const int fast = dtmm_requant_fast_ok(m, s);
                    const dtmm_requant_fast rf = dtmm_requant_fast_make(m, s, p->out_zp);
#endif
                    for (int32_t r = 0; r < nr; r++) {
                        int8_t *o = out_row + (r * od->w + c0) * c_out + f;
                        const int32_t *a = acc + r * ncols;
#if DTMM_USE_MVE
                        const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
                        const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)c_out);
                        for (int32_t i = 0; i < ncols; i += 4) {
                            const mve_pred16_t pr = vctp32q((uint32_t)(ncols - i));
                            dtmm_mve_requant_store(vldrwq_z_s32(a + i, pr), m, s, p->out_zp, lo,
                                                   hi, o + i * c_out, offs, pr);
                        }
#else
#  if DTMM_USE_DSP
                        if (fast) {
                            for (int32_t i = 0; i < ncols; i++)
                                o[i * c_out] = dtmm_requant_fast_s8(a[i], &rf, p->act_min,
                                                                    p->act_max);
                            continue;
                        }
#  endif
                        for (int32_t i = 0; i < ncols; i++)
                            o[i * c_out] = dtmm_requant_s8(a[i], m, s, p->out_zp, p->act_min,
                                                           p->act_max);
#endif
                    }
                }
            }
        }
    }
    return DTMM_OK;
}
