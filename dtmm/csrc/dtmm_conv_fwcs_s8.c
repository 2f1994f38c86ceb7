/*
 * dtmm_conv_fwcs_s8.c - the DTMM convolution operator on FWCS weights (paper Sec. III-B).
 *
 * Loop order: batch -> block of R output pixels (row-major, may wrap rows) -> filter
 * -> kept filterlet -> chunk of the filterlet.  For each chunk the weights are loaded
 * once and multiplied with the R input runs (the C_in contiguous NHWC values at each
 * pixel's tap), so every MAC needs a single new load (paper Fig. 9b / Fig. 10):
 *   MVE:  vldrb (weights, predicated tail) + R x (vldrb input, vmladava)
 *   DSP:  LDR + 2 SXTB16 (weights) + R x (LDR, 2 SXTB16, 2 SMLAD) per 4 weights
 *   C:    one weight, R scalar MACs
 * Input offset: acc = bias - in_zp * sum(kept w) + sum(x * w); a tap in the padding
 * points at a run of in_zp values (so it adds in_zp * w, cancelled by the first
 * term) - no patch buffer, no copies of input data.  The per-filter kept-weight sums
 * are computed here, into scratch, once per call (nnz/16 vector adds on MVE).
 *
 * A filterlet's kernel position comes from cptr = (kh*KW + kw) * C_in through an
 * exact multiply by a 16-bit reciprocal of C_in (no division per filterlet) and a
 * KH*KW table of input offsets built once per call.
 *
 * Build switches (see dtmm_kernels.h): DTMM_FWCS_VARIANT_FULL (default),
 * DTMM_FWCS_VARIANT_NO_ILP (R = 1), DTMM_FWCS_REUSE (R, default 4), DTMM_FORCE_SCALAR.
 */
#include "dtmm_internal.h"

#if defined(DTMM_FWCS_VARIANT_NO_ILP)
#  define FWCS_R 1
#  define FWCS_VARIANT_NAME "no_ilp"
#else
#  ifndef DTMM_FWCS_REUSE
#    define DTMM_FWCS_REUSE 4
#  endif
#  define FWCS_R (DTMM_FWCS_REUSE)
#  define FWCS_VARIANT_NAME "full"
#endif
#if FWCS_R < 1 || FWCS_R > 8
#  error "DTMM_FWCS_REUSE must be in 1..8"
#endif

int32_t dtmm_conv_fwcs_s8_config(const char **isa)
{
    if (isa) {
#if DTMM_USE_MVE
        *isa = "mve";
#elif DTMM_USE_DSP
        *isa = "dsp";
#else
        *isa = "scalar";
#endif
    }
    return FWCS_R;
}

int32_t dtmm_conv_fwcs_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_fwcs *w)
{
    (void)in_dims;
    return 8 * w->kh * w->kw + 4 * w->c_out + ((w->size + 3) & ~3);
}

/* Sum of n int8 values (contiguous). */
static int32_t sum_s8(const int8_t *x, int32_t n)
{
    int32_t s = 0, i = 0;
#if DTMM_USE_MVE
    for (; i + 16 <= n; i += 16) s = vaddvaq_s8(s, vldrbq_s8(x + i));
    if (i < n) s = vaddvaq_s8(s, vldrbq_z_s8(x + i, vctp8q((uint32_t)(n - i))));
#elif DTMM_USE_DSP
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = dtmm_read_u32(x + i);
        s = dtmm_smlad(dtmm_sxtb16(v), 0x00010001u, s);
        s = dtmm_smlad(dtmm_sxtb16_ror8(v), 0x00010001u, s);
    }
    for (; i < n; i++) s += x[i];
#else
    for (; i < n; i++) s += x[i];
#endif
    return s;
}

/* acc[r] += dot(w[0:n], x[r][0:n]) for the R pixels of a block: the weights are
 * loaded once per chunk and reused R times. */
DTMM_INLINE void dot_r(const int8_t *w, const int8_t *const *x, int32_t n, int32_t *acc)
{
#if DTMM_USE_MVE
    /* Full vectors unpredicated (GCC 12 handles VPT blocks poorly), then one
     * predicated tail. */
    int32_t c = 0;
    for (; c + 16 <= n; c += 16) {
        const int8x16_t wv = vldrbq_s8(w + c);
        DTMM_UNROLL
        for (int32_t r = 0; r < FWCS_R; r++) acc[r] = vmladavaq_s8(acc[r], wv, vldrbq_s8(x[r] + c));
    }
    if (c < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - c));
        const int8x16_t wv = vldrbq_z_s8(w + c, pr);
        DTMM_UNROLL
        for (int32_t r = 0; r < FWCS_R; r++)
            acc[r] = vmladavaq_s8(acc[r], wv, vldrbq_z_s8(x[r] + c, pr));
    }
#elif DTMM_USE_DSP
    int32_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const uint32_t wr = dtmm_read_u32(w + c);
        const uint32_t wl = dtmm_sxtb16(wr), wh = dtmm_sxtb16_ror8(wr);
        DTMM_UNROLL
        for (int32_t r = 0; r < FWCS_R; r++) {
            const uint32_t xr = dtmm_read_u32(x[r] + c);
            acc[r] = dtmm_smlad(dtmm_sxtb16(xr), wl, acc[r]);
            acc[r] = dtmm_smlad(dtmm_sxtb16_ror8(xr), wh, acc[r]);
        }
    }
    for (; c < n; c++) {
        const int32_t wv = w[c];
        DTMM_UNROLL
        for (int32_t r = 0; r < FWCS_R; r++) acc[r] += x[r][c] * wv;
    }
#else
    for (int32_t c = 0; c < n; c++) {
        const int32_t wv = w[c];
        DTMM_UNROLL
        for (int32_t r = 0; r < FWCS_R; r++) acc[r] += x[r][c] * wv;
    }
#endif
}

/* The operator body, specialised by the compiler for 8- and 16-bit cptr. */
DTMM_INLINE void fwcs_body(const dtmm_conv_params *p, const dtmm_requant_params *q,
                           const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                           const int32_t *bias, const dtmm_dims *od, int8_t *out,
                           const int32_t *in_off, const int32_t *khkw, const int32_t *ksum,
                           const int8_t *zp_run, const int cptr_bits)
{
    const int32_t c_in = id->c, c_out = fw->c_out, kh_n = fw->kh, kw_n = fw->kw;
    const int32_t hw_out = od->h * od->w;
    const uint32_t inv = (65536u + (uint32_t)c_in - 1u) / (uint32_t)c_in;
    const uint8_t *cptr8 = (const uint8_t *)fw->cptr;
    const uint16_t *cptr16 = (const uint16_t *)fw->cptr;

    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        int8_t *out_n = out + n * hw_out * c_out;
        int32_t oy = 0, ox = 0; /* coordinates of pixel p0 */
        for (int32_t p0 = 0; p0 < hw_out; p0 += FWCS_R) {
            int32_t iy0[FWCS_R], ix0[FWCS_R], base[FWCS_R];
            int32_t all_in = 1, live = 0;
            for (int32_t r = 0; r < FWCS_R; r++) {
                if (p0 + r < hw_out) {
                    iy0[r] = oy * p->stride_h - p->pad_top;
                    ix0[r] = ox * p->stride_w - p->pad_left;
                    base[r] = (iy0[r] * id->w + ix0[r]) * c_in;
                    all_in &= iy0[r] >= 0 && iy0[r] + kh_n <= id->h && ix0[r] >= 0
                              && ix0[r] + kw_n <= id->w;
                    live++;
                    if (++ox == od->w) {
                        ox = 0;
                        oy++;
                    }
                } else { /* dead lane: every tap reads the in_zp run, never stored */
                    iy0[r] = -kh_n;
                    ix0[r] = -kw_n;
                    base[r] = 0;
                    all_in = 0;
                }
            }
            const int8_t *w = fw->arr;
            for (int32_t f = 0; f < c_out; f++) {
                const int32_t j0 = dtmm_index_at(fw->fidx, fw->fidx_bits, f);
                const int32_t j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1);
                const int32_t init = (bias ? bias[f] : 0) - p->in_zp * ksum[f];
                int32_t acc[FWCS_R];
                const int8_t *x[FWCS_R];
                for (int32_t r = 0; r < FWCS_R; r++) acc[r] = init;
                w = fw->arr + j0 * c_in;
                if (all_in) {
                    for (int32_t j = j0; j < j1; j++, w += c_in) {
                        const uint32_t cp = cptr_bits == 8 ? cptr8[j] : cptr16[j];
                        const int32_t off = in_off[(cp * inv) >> 16];
                        DTMM_UNROLL
                        for (int32_t r = 0; r < FWCS_R; r++) x[r] = in_n + (base[r] + off);
                        dot_r(w, x, c_in, acc);
                    }
                } else {
                    for (int32_t j = j0; j < j1; j++, w += c_in) {
                        const uint32_t cp = cptr_bits == 8 ? cptr8[j] : cptr16[j];
                        const uint32_t k = (cp * inv) >> 16;
                        const int32_t off = in_off[k];
                        const int32_t kh = khkw[k] >> 16, kw = khkw[k] & 0xFFFF;
                        for (int32_t r = 0; r < FWCS_R; r++) {
                            const int32_t iy = iy0[r] + kh, ix = ix0[r] + kw;
                            x[r] = ((uint32_t)iy < (uint32_t)id->h && (uint32_t)ix < (uint32_t)id->w)
                                       ? in_n + (base[r] + off)
                                       : zp_run;
                        }
                        dot_r(w, x, c_in, acc);
                    }
                }
                for (int32_t r = 0; r < live; r++)
                    out_n[(p0 + r) * c_out + f] =
                        dtmm_requant_s8(acc[r], q->multiplier[f], q->shift[f], p->out_zp,
                                        p->act_min, p->act_max);
            }
        }
    }
}

dtmm_status dtmm_conv_fwcs_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                              const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                              const int32_t *bias, const dtmm_dims *od, int8_t *out,
                              void *scratch)
{
    const int32_t c_in = id->c, kk = fw->kh * fw->kw;
    if (fw->size != c_in || c_in < 1 || od->c != fw->c_out
        || !dtmm_conv_params_ok(p, id, fw->kh, fw->kw, od))
        return DTMM_ERR_ARG;
    if ((fw->cptr_bits != 8 && fw->cptr_bits != 16)
        || (fw->fidx_bits != 8 && fw->fidx_bits != 16 && fw->fidx_bits != 32)
        || (int64_t)(kk - 1) * c_in >= 65536)
        return DTMM_ERR_ARG;

    int32_t *in_off = (int32_t *)scratch;
    int32_t *khkw = in_off + kk;
    int32_t *ksum = khkw + kk;
    int8_t *zp_run = (int8_t *)(ksum + fw->c_out);
    for (int32_t kh = 0; kh < fw->kh; kh++) {
        for (int32_t kw = 0; kw < fw->kw; kw++) {
            in_off[kh * fw->kw + kw] = (kh * id->w + kw) * c_in;
            khkw[kh * fw->kw + kw] = (kh << 16) | kw;
        }
    }
    memset(zp_run, (int8_t)p->in_zp, (size_t)c_in);
    for (int32_t f = 0; f < fw->c_out; f++) {
        const int32_t j0 = dtmm_index_at(fw->fidx, fw->fidx_bits, f);
        const int32_t j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1);
        ksum[f] = sum_s8(fw->arr + j0 * c_in, (j1 - j0) * c_in);
    }
    if (fw->cptr_bits == 8)
        fwcs_body(p, q, id, in, fw, bias, od, out, in_off, khkw, ksum, zp_run, 8);
    else
        fwcs_body(p, q, id, in, fw, bias, od, out, in_off, khkw, ksum, zp_run, 16);
    return DTMM_OK;
}
