/*
 * dtmm_conv_csr_s8.c - int8 convolution on CSR (unstructured sparse) weights.
 *
 * Per output row, a band of the KH input rows it reads, padded with in_zp
 * (dtmm_internal.h), is loaded into scratch, so no tap needs a bounds check.  A table
 * built once per call maps each column k = (kh * KW + kw) * C_in + c of the flattened
 * filter to its offset in the band, (kh * band_row + kw * C_in + c).  Per filter and
 * block of 4 output pixels of the row, accumulators start at offset[o] = bias - in_zp *
 * sum(kept w) (computed once at code-generation time, as for FWCS), and each kept weight
 * (column, value) is loaded once and used for the 4 pixels; a filter with no kept weight
 * stores its constant output, and the DSP path requantizes with dtmm_requant_fast_s8
 * (QADD + SMMULR) where exact, as the FWCS kernel does:
 *   plain C / DSP: per weight LDRB/H column + LDR offset + LDRSB value, then per pixel
 *                  one LDRSB + MLA (a __smlad pair would need a PKHBT per pair: no gain);
 *   MVE:           8 weights at a time: their columns loaded (VLDRB/H.U16), their band
 *                  offsets gathered from the table (VLDRH gather), their values widened
 *                  (VLDRB.S16); per pixel one VLDRB.S16 gather of the 8 inputs and one
 *                  VMLADAVA; the 4 outputs requantized as one vector.  Needs band
 *                  offsets < 65536 (else the plain-C loop runs).
 * See dtmm_kernels.h for the contract and the scratch formula.
 */
#include "dtmm_internal.h"

#define CSR_R 4 /* output pixels per block */

int32_t dtmm_conv_csr_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_csr *w)
{
    return 4 * w->kh * w->kw * w->c_in + ((dtmm_band_bytes(in_dims, w->kh, w->kw) + 3) & ~3);
}

/* a[r] += sum over kept weights j0..j1-1 of values[j] * x[r][off(col[j])]. */
DTMM_INLINE void csr_dot_c(const int8_t *values, const void *colp, int col_bits, int32_t j0,
                           int32_t j1, const int32_t *offtab, const int8_t *x0,
                           const int8_t *x1, const int8_t *x2, const int8_t *x3, int32_t *a)
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    const uint8_t *c8 = (const uint8_t *)colp;
    const uint16_t *c16 = (const uint16_t *)colp;
    for (int32_t j = j0; j < j1; j++) {
        const int32_t o = offtab[col_bits == 8 ? c8[j] : c16[j]];
        const int32_t v = values[j];
        a0 += x0[o] * v;
        a1 += x1[o] * v;
        a2 += x2[o] * v;
        a3 += x3[o] * v;
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

#if DTMM_USE_MVE
/* One group of (up to) 8 kept weights j..j+7 against the 4 pixels (pr: live lanes). */
#  define CSR_MVE_GROUP(GATHER, WLOAD, XLOAD)                                               \
    do {                                                                                   \
        const uint16x8_t ov = GATHER;                                                      \
        const int16x8_t wv = WLOAD;                                                        \
        a0 = vmladavaq_s16(a0, XLOAD(x0, ov), wv);                                         \
        a1 = vmladavaq_s16(a1, XLOAD(x1, ov), wv);                                         \
        a2 = vmladavaq_s16(a2, XLOAD(x2, ov), wv);                                         \
        a3 = vmladavaq_s16(a3, XLOAD(x3, ov), wv);                                         \
    } while (0)
#  define CSR_XLOAD(x, ov) vldrbq_gather_offset_s16(x, ov)
#  define CSR_XLOAD_Z(x, ov) vldrbq_gather_offset_z_s16(x, ov, pr)

DTMM_INLINE void csr_dot_mve(const int8_t *values, const void *colp, const int col_bits,
                             int32_t j0, int32_t j1, const uint16_t *offtab, const int8_t *x0,
                             const int8_t *x1, const int8_t *x2, const int8_t *x3, int32_t *a)
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    const uint8_t *c8 = (const uint8_t *)colp;
    const uint16_t *c16 = (const uint16_t *)colp;
    int32_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        const uint16x8_t cv = col_bits == 8 ? vldrbq_u16(c8 + j) : vldrhq_u16(c16 + j);
        CSR_MVE_GROUP(vldrhq_gather_shifted_offset_u16(offtab, cv), vldrbq_s16(values + j),
                      CSR_XLOAD);
    }
    if (j < j1) {
        const mve_pred16_t pr = vctp16q((uint32_t)(j1 - j));
        const uint16x8_t cv = col_bits == 8 ? vldrbq_z_u16(c8 + j, pr) : vldrhq_z_u16(c16 + j, pr);
        CSR_MVE_GROUP(vldrhq_gather_shifted_offset_z_u16(offtab, cv, pr),
                      vldrbq_z_s16(values + j, pr), CSR_XLOAD_Z);
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#endif

dtmm_status dtmm_conv_csr_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                             const dtmm_dims *id, const int8_t *in, const dtmm_csr *cw,
                             const int32_t *offset, const dtmm_dims *od, int8_t *out,
                             void *scratch)
{
    if (cw->c_in != id->c || od->c != cw->c_out || !offset
        || !dtmm_conv_params_ok(p, id, cw->kh, cw->kw, od)
        || (cw->col_bits != 8 && cw->col_bits != 16)
        || (cw->rowptr_bits != 8 && cw->rowptr_bits != 16 && cw->rowptr_bits != 32))
        return DTMM_ERR_ARG;
    const int32_t c_in = id->c, c_out = cw->c_out, kh_n = cw->kh, kw_n = cw->kw;
    const int32_t k_total = kh_n * kw_n * c_in, in_zp = p->in_zp;
    const int32_t row = dtmm_band_row_bytes(id, kw_n), step = p->stride_w * c_in;

    /* scratch: offtab[K] (int32; uint16 on the MVE path) | band */
    int32_t *offtab = (int32_t *)scratch;
    int8_t *band = (int8_t *)(offtab + k_total);
#if DTMM_USE_MVE
    const int use_mve = (kh_n - 1) * row + kw_n * c_in <= 65536;
    uint16_t *offtab16 = (uint16_t *)offtab;
#endif
    for (int32_t k = 0, kk = 0; kk < kh_n * kw_n; kk++) {
        const int32_t base = (kk / kw_n) * row + (kk % kw_n) * c_in;
        for (int32_t c = 0; c < c_in; c++, k++) {
#if DTMM_USE_MVE
            if (use_mve) {
                offtab16[k] = (uint16_t)(base + c);
                continue;
            }
#endif
            offtab[k] = base + c;
        }
    }
    int32_t ox_lo, ox_hi;
    dtmm_band_span(p, id, kw_n, od->w, &ox_lo, &ox_hi);
    dtmm_band_init(band, id, kh_n, kw_n, in_zp);
#if DTMM_USE_MVE
    const int32x4_t vlo = vdupq_n_s32(p->act_min), vhi = vdupq_n_s32(p->act_max);
    const uint32x4_t voffs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)c_out);
#endif

    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        for (int32_t oy = 0; oy < od->h; oy++) {
            dtmm_band_rows(band, in_n, id, kh_n, kw_n, oy * p->stride_h - p->pad_top, in_zp);
            int8_t *out_row = out + ((n * od->h + oy) * od->w) * c_out;
            for (int32_t f = 0; f < c_out; f++) {
                const int32_t j0 = dtmm_index_at(cw->rowptr, cw->rowptr_bits, f);
                const int32_t j1 = dtmm_index_at(cw->rowptr, cw->rowptr_bits, f + 1);
                const int32_t m = q->multiplier[f], s = q->shift[f];
                if (ox_lo > 0 || ox_hi < od->w) {
                    /* windows wholly in the padding (pads >= KW only): acc = bias */
                    const int32_t b = offset[f] + in_zp * dtmm_sum_s8(cw->values + j0, j1 - j0);
                    const int8_t yb = dtmm_requant_s8(b, m, s, p->out_zp, p->act_min, p->act_max);
                    for (int32_t ox = 0; ox < ox_lo; ox++) out_row[ox * c_out + f] = yb;
                    for (int32_t ox = ox_hi; ox < od->w; ox++) out_row[ox * c_out + f] = yb;
                }
                if (j0 == j1) { /* no kept weight: a constant output */
                    const int8_t yc = dtmm_requant_s8(offset[f], m, s, p->out_zp, p->act_min,
                                                      p->act_max);
                    for (int32_t ox = ox_lo; ox < ox_hi; ox++) out_row[ox * c_out + f] = yc;
                    continue;
                }
#if DTMM_USE_DSP
                const int fast = dtmm_requant_fast_ok(m, s);
                const dtmm_requant_fast rf = dtmm_requant_fast_make(m, s, p->out_zp);
#endif
                for (int32_t ox = ox_lo; ox < ox_hi; ox += CSR_R) {
                    const int32_t live = ox_hi - ox < CSR_R ? ox_hi - ox : CSR_R;
                    const int8_t *x0 = band + (ox * p->stride_w - p->pad_left + kw_n) * c_in;
                    /* dead lanes repeat pixel 0 (computed, never stored) */
                    const int8_t *x1 = live > 1 ? x0 + step : x0;
                    const int8_t *x2 = live > 2 ? x0 + 2 * step : x0;
                    const int8_t *x3 = live > 3 ? x0 + 3 * step : x0;
                    int32_t a[CSR_R] = {offset[f], offset[f], offset[f], offset[f]};
#if DTMM_USE_MVE
                    if (use_mve && cw->col_bits == 8)
                        csr_dot_mve(cw->values, cw->col, 8, j0, j1, offtab16, x0, x1, x2, x3, a);
                    else if (use_mve)
                        csr_dot_mve(cw->values, cw->col, 16, j0, j1, offtab16, x0, x1, x2, x3, a);
                    else
#endif
                    if (cw->col_bits == 8)
                        csr_dot_c(cw->values, cw->col, 8, j0, j1, offtab, x0, x1, x2, x3, a);
                    else
                        csr_dot_c(cw->values, cw->col, 16, j0, j1, offtab, x0, x1, x2, x3, a);
                    int8_t *o = out_row + ox * c_out + f;
#if DTMM_USE_MVE
                    dtmm_mve_requant_store(dtmm_mve_vec4(a[0], a[1], a[2], a[3]), m, s, p->out_zp,
                                           vlo, vhi, o, voffs, vctp32q((uint32_t)live));
#else
#  if DTMM_USE_DSP
                    if (fast) {
                        for (int32_t r = 0; r < live; r++)
                            o[r * c_out] = dtmm_requant_fast_s8(a[r], &rf, p->act_min, p->act_max);
                        continue;
                    }
#  endif
                    for (int32_t r = 0; r < live; r++)
                        o[r * c_out] = dtmm_requant_s8(a[r], m, s, p->out_zp, p->act_min,
                                                       p->act_max);
#endif
                }
            }
        }
    }
    return DTMM_OK;
}
