/*
 * dtmm_conv_s8.c - dense int8 convolution (NHWC input, OHWI weights), CMSIS-NN style.
 *
 * MVE:     per-filter offsets bias - in_zp * sum(w) computed once per call (vaddva);
 *          im2col of 3 output pixels into int8 scratch (padding = in_zp; one vector
 *          copy per kernel row, taps of a row being contiguous in NHWC); then blocks of
 *          2 filters x 3 pixels, a tail-predicated WLSTP/LETP loop of 5 loads and 6
 *          VMLADAVA per 16 (8 MACs per instruction); acc = offset + sum(x * w);
 *          vector requantization of the 3 pixels of a filter, scattered to the output.
 * DSP:     im2col of 2 output pixels into int16 scratch holding x - in_zp (padding 0),
 *          each group of 4 stored as (x0, x2, x1, x3) so that a weight word needs only
 *          __sxtb16 and __sxtb16(ror 8); then a 2 filters x 2 pixels __smlad kernel.
 * plain C: direct loops over the taps inside the input, sum((x - in_zp) * w).
 * host (DTMM_HOST_PATH, plain C for a vectorising host compiler, see dtmm_isa.h):
 *          im2col of 4 output pixels into int16 (x - in_zp, padding 0) on the stack,
 *          then per 2 filters x 4 pixels 8 dot products over the contiguous K taps
 *          (int8 weights sign-extended in the loop; gcc -O3: pmaddwd / vpdpwssd),
 *          int32 accumulators of the block, requantized per pixel as one loop over
 *          the channels.  For K < DTMM_HOST_SMALL_K (e.g. a first layer with 1 input
 *          channel) the weights are transposed to int16 (K, C_out rounded up to 16,
 *          zero padded: no scalar channel tail) on the stack and each pixel's
 *          accumulators are updated tap by tap.  No planned scratch.
 * See dtmm_kernels.h for the contract.
 */
#include "dtmm_internal.h"

int32_t dtmm_conv_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_dims *filter_dims)
{
    (void)in_dims;
    const int32_t k = filter_dims->h * filter_dims->w * filter_dims->c;
#if DTMM_USE_MVE
    return 3 * k + 4 * filter_dims->n; /* 3 int8 im2col rows + per-filter offsets */
#elif DTMM_USE_DSP
    return 2 * k * (int32_t)sizeof(int16_t); /* 2 rows of int16 */
#else
    (void)k;
    return 0;
#endif
}

#if DTMM_USE_MVE
/* int8 im2col row of one output pixel: per kernel row one vector copy of the taps
 * inside the input (contiguous in NHWC) and vector fills of in_zp for the rest. */
static void im2col_s8(const int8_t *in, const dtmm_dims *id, int32_t kh_n, int32_t kw_n,
                      int32_t iy0, int32_t ix0, int8x16_t zpv, int8_t *dst)
{
    const int32_t c = id->c, run = kw_n * c;
    int32_t lo = -ix0, hi = id->w - ix0;
    lo = lo < 0 ? 0 : lo > kw_n ? kw_n : lo;
    hi = hi > kw_n ? kw_n : hi < lo ? lo : hi;
    for (int32_t kh = 0; kh < kh_n; kh++, dst += run) {
        const int32_t iy = iy0 + kh;
        if ((uint32_t)iy >= (uint32_t)id->h || lo == hi) {
            dtmm_mve_fill(dst, zpv, run);
            continue;
        }
        dtmm_mve_fill(dst, zpv, lo * c);
        dtmm_mve_copy(dst + lo * c, in + (iy * id->w + ix0 + lo) * c, (hi - lo) * c);
        dtmm_mve_fill(dst + hi * c, zpv, (kw_n - hi) * c);
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

#if DTMM_HOST_PATH
#ifndef DTMM_HOST_SMALL_K
#  define DTMM_HOST_SMALL_K 32
#endif
#define HOST_P 4 /* output pixels per block */

/* Small K: weights transposed to int16 wt[k][f] with the channels padded to cop (a
 * multiple of 16, zero weights, bias, multiplier and shift), per pixel
 * acc[f] += x[k] * wt[k][f] over the cop channels; the padding keeps every channel
 * loop free of a scalar tail (C_out = 15: half the time of C_out = 16 without it). */
static void host_conv_small_k(const dtmm_conv_params *p, const dtmm_dims *id, const int8_t *in_n,
                              const dtmm_dims *fd, const int16_t *restrict wt, int32_t cop,
                              const int32_t *restrict bias, const int32_t *restrict mult,
                              const int32_t *restrict shift, const dtmm_dims *od, int8_t *out_n)
{
    const int32_t c_out = fd->n, k_total = fd->h * fd->w * fd->c;
    int16_t col[k_total];
    int32_t acc[cop];
    int8_t row[cop];
    int8_t *o = out_n;
    for (int32_t oy = 0; oy < od->h; oy++) {
        for (int32_t ox = 0; ox < od->w; ox++, o += c_out) {
            dtmm_host_im2col(in_n, id, fd->h, fd->w, oy * p->stride_h - p->pad_top,
                             ox * p->stride_w - p->pad_left, p->in_zp, col);
            for (int32_t f = 0; f < cop; f++) acc[f] = bias[f];
            for (int32_t k = 0; k < k_total; k++) {
                const int32_t xk = col[k];
                const int16_t *restrict wk = wt + k * cop;
                for (int32_t f = 0; f < cop; f++) acc[f] += xk * wk[f];
            }
            dtmm_host_requant_row(acc, NULL, cop, mult, shift, p->out_zp, p->act_min,
                                  p->act_max, row);
            memcpy(o, row, (size_t)c_out);
        }
    }
}

/* Blocks of HOST_P pixels x 2 filters of dot products over the contiguous K. */
static void host_conv_blocked(const dtmm_conv_params *p, const dtmm_requant_params *q,
                              const dtmm_dims *id, const int8_t *in_n, const dtmm_dims *fd,
                              const int8_t *weights, const int32_t *bias, const dtmm_dims *od,
                              int8_t *out_n)
{
    const int32_t c_out = fd->n, k_total = fd->h * fd->w * fd->c;
    const int32_t hw_out = od->h * od->w;
    int16_t col[HOST_P * k_total];
    int32_t acc[HOST_P * c_out];
    int32_t oy = 0, ox = 0;
    for (int32_t p0 = 0; p0 < hw_out; p0 += HOST_P) {
        const int32_t rows = hw_out - p0 < HOST_P ? hw_out - p0 : HOST_P;
        for (int32_t r = 0; r < rows; r++) {
            dtmm_host_im2col(in_n, id, fd->h, fd->w, oy * p->stride_h - p->pad_top,
                             ox * p->stride_w - p->pad_left, p->in_zp, col + r * k_total);
            if (++ox == od->w) {
                ox = 0;
                oy++;
            }
        }
        /* dead rows of a last partial block read row 0 and are never stored */
        const int16_t *x0 = col, *x1 = rows > 1 ? col + k_total : col;
        const int16_t *x2 = rows > 2 ? col + 2 * k_total : col;
        const int16_t *x3 = rows > 3 ? col + 3 * k_total : col;
        int32_t f = 0, a[2 * HOST_P];
        for (; f + 1 < c_out; f += 2) {
            const int8_t *w0 = weights + f * k_total;
            dtmm_host_dot_2x4(w0, w0 + k_total, x0, x1, x2, x3, k_total, a);
            for (int32_t r = 0; r < HOST_P; r++) {
                acc[r * c_out + f] = a[r];
                acc[r * c_out + f + 1] = a[HOST_P + r];
            }
        }
        if (f < c_out) {
            dtmm_host_dot_1x4(weights + f * k_total, x0, x1, x2, x3, k_total, a);
            for (int32_t r = 0; r < HOST_P; r++) acc[r * c_out + f] = a[r];
        }
        for (int32_t r = 0; r < rows; r++)
            dtmm_host_requant_row(acc + r * c_out, bias, c_out, q->multiplier, q->shift,
                                  p->out_zp, p->act_min, p->act_max, out_n + (p0 + r) * c_out);
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
        /* Blocks of 3 output pixels x 2 filters (6 accumulators: VMLADAVA writes even
         * registers only), 5 loads per 6 vector MACs; vector requantization. */
        int32_t *foff = (int32_t *)scratch;
        int8_t *col = (int8_t *)(foff + c_out);
        if (n == 0) {
            for (int32_t f = 0; f < c_out; f++) {
                const int8_t *w = weights + f * k_total;
                int32_t s = 0, k = 0;
                for (; k + 16 <= k_total; k += 16) s = vaddvaq_s8(s, vldrbq_s8(w + k));
                if (k < k_total)
                    s = vaddvaq_s8(s, vldrbq_z_s8(w + k, vctp8q((uint32_t)(k_total - k))));
                foff[f] = (bias ? bias[f] : 0) - in_zp * s;
            }
        }
        const int8x16_t zpv = vdupq_n_s8((int8_t)in_zp);
        const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
        const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)c_out);
        int32_t oy = 0, ox = 0;
        for (int32_t p0 = 0; p0 < hw_out; p0 += 3) {
            const int32_t rows = hw_out - p0 < 3 ? hw_out - p0 : 3;
            for (int32_t r = 0; r < rows; r++) {
                im2col_s8(in_n, id, kh_n, kw_n, oy * p->stride_h - p->pad_top,
                          ox * p->stride_w - p->pad_left, zpv, col + r * k_total);
                if (++ox == od->w) {
                    ox = 0;
                    oy++;
                }
            }
            const int8_t *x0 = col, *x1 = rows > 1 ? col + k_total : col; /* dead rows: */
            const int8_t *x2 = rows > 2 ? col + 2 * k_total : col;        /* never stored */
            const mve_pred16_t pr = vctp32q((uint32_t)rows);
            int8_t *o = out_n + p0 * c_out;
            int32_t f = 0;
            for (; f + 1 < c_out; f += 2) {
                const int32_t b0 = foff[f], b1 = foff[f + 1];
                int32_t a00 = b0, a01 = b0, a02 = b0, a10 = b1, a11 = b1, a12 = b1;
                dtmm_mve_dot_2x3(weights + f * k_total, weights + (f + 1) * k_total, x0, x1, x2,
                                 k_total, &a00, &a01, &a02, &a10, &a11, &a12);
                dtmm_mve_requant_store(dtmm_mve_vec4(a00, a01, a02, 0), q->multiplier[f],
                                       q->shift[f], p->out_zp, lo, hi, o + f, offs, pr);
                dtmm_mve_requant_store(dtmm_mve_vec4(a10, a11, a12, 0), q->multiplier[f + 1],
                                       q->shift[f + 1], p->out_zp, lo, hi, o + f + 1, offs, pr);
            }
            if (f < c_out) {
                const int32_t b0 = foff[f];
                int32_t a0 = b0, a1 = b0, a2 = b0, a3 = b0;
                dtmm_mve_dot_1x4(weights + f * k_total, x0, x1, x2, x2, k_total, &a0, &a1, &a2,
                                 &a3);
                dtmm_mve_requant_store(dtmm_mve_vec4(a0, a1, a2, 0), q->multiplier[f],
                                       q->shift[f], p->out_zp, lo, hi, o + f, offs, pr);
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
#if DTMM_HOST_PATH
        const int32_t cop = (c_out + 15) & ~15;
        if (k_total < DTMM_HOST_SMALL_K
            && (int64_t)k_total * (cop + 1) * 2 + (int64_t)cop * 17 + 64 <= DTMM_HOST_MAX_STACK) {
            int16_t wt[k_total * cop]; /* (K, C_out padded to cop) */
            int32_t bp[cop], mp[cop], sp[cop];
            for (int32_t f = 0; f < cop; f++) {
                for (int32_t k = 0; k < k_total; k++)
                    wt[k * cop + f] = f < c_out ? weights[f * k_total + k] : 0;
                bp[f] = f < c_out && bias ? bias[f] : 0;
                mp[f] = f < c_out ? q->multiplier[f] : 0;
                sp[f] = f < c_out ? q->shift[f] : 0;
            }
            host_conv_small_k(p, id, in_n, fd, wt, cop, bp, mp, sp, od, out_n);
            continue;
        }
        if ((int64_t)HOST_P * (k_total * 2 + c_out * 4) <= DTMM_HOST_MAX_STACK) {
            host_conv_blocked(p, q, id, in_n, fd, weights, bias, od, out_n);
            continue;
        }
#endif
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t kh_lo, kh_hi;
            dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kw_lo, kw_hi;
                dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
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
