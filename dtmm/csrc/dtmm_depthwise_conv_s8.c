/*
 * dtmm_depthwise_conv_s8.c - int8 depthwise convolution (TFLite semantics, any depth
 * multiplier).  No scratch on any path.
 *
 * MVE (depth multiplier 1): channels in vector lanes (CMSIS-NN's
 *          arm_depthwise_conv_s8_opt idea).  Per group of 16 channels (the last one
 *          tail-predicated) the per-channel constants (multiplier, shifts, bias, and
 *          the offset bias - in_zp * sum over all taps of w) are laid out once on the
 *          stack in the lane order below; then per output pixel, per tap inside the
 *          input, two widening VLDRB.S16 of 8 inputs and 8 weights each, VMULLB /
 *          VMULLT (16 x 16 -> 32 bits) and VADD into 4 int32 accumulators (channel
 *          lanes {0,2,4,6}, {1,3,5,7}, {8,..,14}, {9,..,15}).  Pixels whose window lies
 *          wholly inside the input start from the offset and multiply x itself; border
 *          pixels start from the bias and subtract in_zp in 16 bits first.  Per-lane
 *          vector requantization, VQMOVNB / VQMOVNT back to channel order (int16),
 *          out_zp and the clamp on 8 lanes at a time, VSTRB.16.
 * DSP (depth multiplier 1): per chunk of 16 channels (their requantization records
 *          prepared once, on the stack), per output pixel and group of 4 channels, per
 *          tap inside the input one word of inputs and one of weights, SXTAB16 (x -
 *          in_zp, two channels per word, plain and ROR 8) and SXTB16, and SMLABB /
 *          SMLATT into 4 accumulators, then the QADD + SMMULR requantization
 *          (dtmm_requant_fast_s8, where exact, else the reference); channels past the
 *          last multiple of 4 in plain C.
 * plain C: every depth multiplier (and the SIMD builds' multiplier > 1).
 * host (DTMM_HOST_PATH, see dtmm_isa.h): per output pixel C_out int32 accumulators
 * (stack), updated tap by tap by a loop over the contiguous channels (depth multiplier
 * 1; gcc -O3 vectorises it), then requantized as one loop over the channels.
 */
#include "dtmm_internal.h"

#if DTMM_USE_MVE
#define DW_LANES 16

/* Per-channel constants of one group of 16 channels, lane j * 4 + i <-> channel
 * c0 + (j >> 1) * 8 + (j & 1) + 2 * i (the order of the VMULLB / VMULLT products). */
typedef struct {
    int32_t bias[DW_LANES], off[DW_LANES], mult[DW_LANES], left[DW_LANES], right[DW_LANES];
} dw_mve_consts;

DTMM_INLINE int32_t dw_lane_channel(int32_t l) { return ((l >> 2) >> 1) * 8 + ((l >> 2) & 1) + 2 * (l & 3); }

/* Accumulate the nh x nw taps at x / w (kernel-row strides row_x / row_w, tap stride
 * c) of 16 channels into a0..a3; sub: x - zp first.  n_ch: 16 (all lanes), else the
 * lanes of a tail group (<= 8: the upper half is skipped).  On Cortex-M the loop over
 * a kernel row is a WLS/LE low-overhead loop in inline asm (intrinsics spill one of
 * the 8 Q registers per tap); with DTMM_EMULATE_MVE the intrinsic models. */
#if defined(DTMM_EMULATE_MVE)
DTMM_INLINE void dw_mve_row(const int8_t *xp, const int8_t *wp, int32_t nw, int32_t c,
                            int16_t zp, int sub, int32_t n_ch, int32x4_t *a0, int32x4_t *a1,
                            int32x4_t *a2, int32x4_t *a3)
{
    const mve_pred16_t p_lo = vctp16q((uint32_t)n_ch);
    const mve_pred16_t p_hi = vctp16q((uint32_t)(n_ch > 8 ? n_ch - 8 : 0));
    for (int32_t kw = 0; kw < nw; kw++, xp += c, wp += c) {
        int16x8_t xv = vldrbq_z_s16(xp, p_lo), wv = vldrbq_z_s16(wp, p_lo);
        if (sub) xv = vsubq_n_s16(xv, zp);
        *a0 = vaddq_s32(*a0, vmullbq_int_s16(xv, wv));
        *a1 = vaddq_s32(*a1, vmulltq_int_s16(xv, wv));
        if (n_ch <= 8) continue;
        xv = vldrbq_z_s16(xp + 8, p_hi);
        wv = vldrbq_z_s16(wp + 8, p_hi);
        if (sub) xv = vsubq_n_s16(xv, zp);
        *a2 = vaddq_s32(*a2, vmullbq_int_s16(xv, wv));
        *a3 = vaddq_s32(*a3, vmulltq_int_s16(xv, wv));
    }
}
#else
#define DW_LD(off) "   vldrb.s16   q0, [%[x], #" off "]\n   vldrb.s16   q1, [%[w], #" off "]\n"
#define DW_LDP(off, n)                                                                   \
    "   vctp.16     %[" n "]\n   vpstt\n   vldrbt.s16  q0, [%[x], #" off "]\n"             \
    "   vldrbt.s16  q1, [%[w], #" off "]\n"
#define DW_SUB "   vsub.i16    q0, q0, %[zp]\n"
#define DW_MAC(A, B)                                                                     \
    "   vmullb.s16  q2, q0, q1\n   vadd.i32    %q[" A "], %q[" A "], q2\n"                  \
    "   vmullt.s16  q2, q0, q1\n   vadd.i32    %q[" B "], %q[" B "], q2\n"
#define DW_LOOP(BODY)                                                                    \
    __asm__ volatile("   wls         lr, %[nw], 2f\n"                                   \
                     "1:\n" BODY                                                        \
                     "   add         %[x], %[c]\n"                                      \
                     "   add         %[w], %[c]\n"                                      \
                     "   le          lr, 1b\n"                                          \
                     "2:\n"                                                             \
                     : [a0] "+w"(r0), [a1] "+w"(r1), [a2] "+w"(r2), [a3] "+w"(r3),      \
                       [x] "+r"(xp), [w] "+r"(wp)                                       \
                     : [nw] "r"(nw), [c] "r"(c), [zp] "r"(zpr), [nlo] "r"(nlo),         \
                       [nhi] "r"(nhi)                                                   \
                     : "q0", "q1", "q2", "lr", "memory")
DTMM_INLINE void dw_mve_row(const int8_t *xp, const int8_t *wp, int32_t nw, int32_t c,
                            int16_t zp, int sub, int32_t n_ch, int32x4_t *a0, int32x4_t *a1,
                            int32x4_t *a2, int32x4_t *a3)
{
    int32x4_t r0 = *a0, r1 = *a1, r2 = *a2, r3 = *a3;
    const int32_t zpr = zp, nlo = n_ch, nhi = n_ch - 8;
    if (n_ch == 16) {
        if (sub)
            DW_LOOP(DW_LD("0") DW_SUB DW_MAC("a0", "a1") DW_LD("8") DW_SUB DW_MAC("a2", "a3"));
        else
            DW_LOOP(DW_LD("0") DW_MAC("a0", "a1") DW_LD("8") DW_MAC("a2", "a3"));
    } else if (n_ch > 8) {
        DW_LOOP(DW_LDP("0", "nlo") DW_SUB DW_MAC("a0", "a1") DW_LDP("8", "nhi") DW_SUB
                    DW_MAC("a2", "a3"));
    } else {
        DW_LOOP(DW_LDP("0", "nlo") DW_SUB DW_MAC("a0", "a1"));
    }
    (void)sub;
    *a0 = r0;
    *a1 = r1;
    *a2 = r2;
    *a3 = r3;
}
#undef DW_LD
#undef DW_LDP
#undef DW_SUB
#undef DW_MAC
#undef DW_LOOP
#endif

/* Requantize 4 lanes (constants at k + 4 * j of the lane order), no zero point yet. */
#define DW_REQUANT(v, j)                                                                 \
    do {                                                                               \
        const int32x4_t r_ = vldrwq_s32(k->right + 4 * (j));                           \
        if (any_left) v = vshlq_s32(v, vldrwq_s32(k->left + 4 * (j)));                 \
        v = vqrdmulhq_s32(v, vldrwq_s32(k->mult + 4 * (j)));                           \
        v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, r_), 31)), r_);          \
    } while (0)
/* Lanes of two requantized vectors (even / odd channels) back in channel order as
 * int16, + out_zp, clamped: saturating to int16 first, then a saturating add, then the
 * clamp to [act_min, act_max] (a subrange of int8) give clamp(v + out_zp) exactly. */
#define DW_PACK(e, o_)                                                                   \
    vminq_s16(vmaxq_s16(vqaddq_n_s16(vqmovntq_s32(vqmovnbq_s32(z16, e), o_), out_zp), lo), hi)

/* One group of 16 channels (c0, n_ch <= 16 of them) over every output pixel.  Border
 * pixels (sub = 1) use x - in_zp from the bias, interior ones x from the offset. */
DTMM_INLINE void dw_mve_group(const dtmm_conv_params *p, const dtmm_dims *id, const int8_t *in,
                              const dtmm_dims *fd, const int8_t *weights,
                              const dtmm_dims *od, int8_t *out, const dw_mve_consts *k,
                              int32_t c0, int32_t n_ch, int any_left)
{
    const int32_t c = id->c, kh_n = fd->h, kw_n = fd->w, h_in = id->h, w_in = id->w;
    const int32_t row_x = w_in * c, row_w = kw_n * c, sh = p->stride_h, sw = p->stride_w;
    const int16_t out_zp = (int16_t)p->out_zp;
    const int32_t h_out = od->h, w_out = od->w;
    const int16_t zp = (int16_t)p->in_zp;
    const mve_pred16_t p_lo = vctp16q((uint32_t)n_ch);
    const mve_pred16_t p_hi = vctp16q((uint32_t)(n_ch > 8 ? n_ch - 8 : 0));
    const int16x8_t lo = vdupq_n_s16((int16_t)p->act_min), hi = vdupq_n_s16((int16_t)p->act_max);
    const int16x8_t z16 = vdupq_n_s16(0);
    const int8_t *w0 = weights + c0;
    int8_t *o = out + c0;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * h_in * row_x + c0;
        for (int32_t oy = 0; oy < h_out; oy++) {
            const int32_t iy0 = oy * sh - p->pad_top;
            int32_t kh_lo, kh_hi;
            dtmm_tap_range(iy0, kh_n, h_in, &kh_lo, &kh_hi);
            const int32_t nh = kh_hi - kh_lo;
            const int8_t *x_row = in_n + (iy0 + kh_lo) * row_x;
            const int8_t *w_row = w0 + kh_lo * row_w;
            for (int32_t ox = 0, ix0 = -p->pad_left; ox < w_out; ox++, ix0 += sw, o += c) {
                int32_t kw_lo, kw_hi;
                dtmm_tap_range(ix0, kw_n, w_in, &kw_lo, &kw_hi);
                const int32_t nw = kw_hi - kw_lo;
                const int8_t *x = x_row + (ix0 + kw_lo) * c;
                const int8_t *w = w_row + kw_lo * c;
                const int sub = n_ch != 16 || !(nh == kh_n && nw == kw_n); /* tail: asm subtracts */
                const int32_t *init = sub ? k->bias : k->off;
                int32x4_t a0 = vldrwq_s32(init), a1 = vldrwq_s32(init + 4);
                int32x4_t a2 = vldrwq_s32(init + 8), a3 = vldrwq_s32(init + 12);
                if (!sub) {
                    for (int32_t kh = 0; kh < nh; kh++, x += row_x, w += row_w)
                        dw_mve_row(x, w, nw, c, zp, 0, n_ch, &a0, &a1, &a2, &a3);
                } else if (nw > 0) {
                    for (int32_t kh = 0; kh < nh; kh++, x += row_x, w += row_w)
                        dw_mve_row(x, w, nw, c, zp, 1, n_ch, &a0, &a1, &a2, &a3);
                }
                /* per-lane requantization, bit for bit dtmm_requant_s8 (see
                 * dtmm_mve_requant_store) */
                DW_REQUANT(a0, 0);
                DW_REQUANT(a1, 1);
                if (n_ch == 16) {
                    DW_REQUANT(a2, 2);
                    DW_REQUANT(a3, 3);
                    vstrbq_s16(o, DW_PACK(a0, a1));
                    vstrbq_s16(o + 8, DW_PACK(a2, a3));
                } else {
                    vstrbq_p_s16(o, DW_PACK(a0, a1), p_lo);
                    if (n_ch > 8) {
                        DW_REQUANT(a2, 2);
                        DW_REQUANT(a3, 3);
                        vstrbq_p_s16(o + 8, DW_PACK(a2, a3), p_hi);
                    }
                }
            }
        }
    }
}
#undef DW_REQUANT
#undef DW_PACK

static void dw_mve(const dtmm_conv_params *p, const dtmm_requant_params *q, const dtmm_dims *id,
                   const int8_t *in, const dtmm_dims *fd, const int8_t *weights,
                   const int32_t *bias, const dtmm_dims *od, int8_t *out)
{
    const int32_t c = id->c, taps = fd->h * fd->w;
    dw_mve_consts k;
    for (int32_t c0 = 0; c0 < c; c0 += DW_LANES) {
        const int32_t n_ch = c - c0 < DW_LANES ? c - c0 : DW_LANES;
        for (int32_t l = 0; l < DW_LANES; l++) {
            const int32_t ch = dw_lane_channel(l);
            if (ch >= n_ch) {
                k.bias[l] = k.off[l] = k.mult[l] = k.left[l] = k.right[l] = 0;
                continue;
            }
            const int32_t oc = c0 + ch, s = q->shift[oc];
            int32_t sw = 0;
            for (int32_t t = 0; t < taps; t++) sw += weights[t * c + oc];
            k.bias[l] = bias ? bias[oc] : 0;
            k.off[l] = (int32_t)((uint32_t)k.bias[l] - (uint32_t)p->in_zp * (uint32_t)sw);
            k.mult[l] = q->multiplier[oc];
            k.left[l] = s > 0 ? s : 0;
            k.right[l] = s > 0 ? 0 : s;
        }
        int any_left = 0;
        for (int32_t l = 0; l < DW_LANES; l++) any_left |= k.left[l] != 0;
        if (n_ch == DW_LANES) {
            if (any_left)
                dw_mve_group(p, id, in, fd, weights, od, out, &k, c0, DW_LANES, 1);
            else
                dw_mve_group(p, id, in, fd, weights, od, out, &k, c0, DW_LANES, 0);
        } else {
            dw_mve_group(p, id, in, fd, weights, od, out, &k, c0, n_ch, any_left);
        }
    }
}
#endif /* DTMM_USE_MVE */

#if DTMM_USE_DSP
#define DW_DSP_CHUNK 16 /* channels whose requantization constants are prepared together */

static void dw_dsp(const dtmm_conv_params *p, const dtmm_requant_params *q, const dtmm_dims *id,
                   const int8_t *in, const dtmm_dims *fd, const int8_t *weights,
                   const int32_t *bias, const dtmm_dims *od, int8_t *out)
{
    const int32_t c = id->c, kh_n = fd->h, kw_n = fd->w;
    const int32_t row_x = id->w * c, row_w = kw_n * c, c4 = c & ~3;
    const int32_t zp = p->in_zp, lo = p->act_min, hi = p->act_max;
    const uint32_t off2 = ((uint32_t)(uint16_t)(int16_t)(-zp)) * 0x00010001u;
    /* channels in chunks of DW_DSP_CHUNK: their QADD + SMMULR requantization records are
     * prepared once (a stack array of DW_DSP_CHUNK records), then every output pixel */
    dtmm_requant_fast rf[DW_DSP_CHUNK];
    int fast[DW_DSP_CHUNK];
    for (int32_t c0 = 0; c0 < c; c0 += DW_DSP_CHUNK) {
        const int32_t c1 = c0 + DW_DSP_CHUNK < c ? c0 + DW_DSP_CHUNK : c;
        for (int32_t ch = c0; ch < c1; ch++) {
            fast[ch - c0] = dtmm_requant_fast_ok(q->multiplier[ch], q->shift[ch]);
            rf[ch - c0] = dtmm_requant_fast_make(q->multiplier[ch], q->shift[ch], p->out_zp);
        }
        const int32_t c1_4 = c1 < c4 ? c1 : c4; /* the chunk's whole groups of 4 */
        int8_t *o = out;
        for (int32_t n = 0; n < id->n; n++) {
            const int8_t *in_n = in + n * id->h * row_x;
            for (int32_t oy = 0; oy < od->h; oy++) {
                const int32_t iy0 = oy * p->stride_h - p->pad_top;
                int32_t kh_lo, kh_hi;
                dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
                const int32_t nh = kh_hi - kh_lo;
                for (int32_t ox = 0; ox < od->w; ox++, o += c) {
                    const int32_t ix0 = ox * p->stride_w - p->pad_left;
                    int32_t kw_lo, kw_hi;
                    dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
                    const int32_t nw = nh > 0 ? kw_hi - kw_lo : 0;
                    /* offsets from in_n / weights of the first tap inside the input */
                    const int32_t xoff = (iy0 + kh_lo) * row_x + (ix0 + kw_lo) * c;
                    const int8_t *w = weights + kh_lo * row_w + kw_lo * c;
                    int32_t ch = c0;
                    for (; ch < c1_4; ch += 4) {
                        int32_t a0 = bias ? bias[ch] : 0, a1 = bias ? bias[ch + 1] : 0;
                        int32_t a2 = bias ? bias[ch + 2] : 0, a3 = bias ? bias[ch + 3] : 0;
                        if (nw > 0) {
                            const int8_t *xr = in_n + (xoff + ch), *wr = w + ch;
                            for (int32_t kh = 0; kh < nh; kh++, xr += row_x, wr += row_w) {
                                const int8_t *xp = xr, *wp = wr;
                                for (int32_t kw = 0; kw < nw; kw++, xp += c, wp += c) {
                                    const uint32_t x4 = dtmm_read_u32(xp), w4 = dtmm_read_u32(wp);
                                    const uint32_t xe = dtmm_sxtab16(off2, x4);
                                    const uint32_t xo = dtmm_sxtab16_ror8(off2, x4);
                                    const uint32_t we = dtmm_sxtb16(w4), wo = dtmm_sxtb16_ror8(w4);
                                    a0 = dtmm_smlabb(xe, we, a0);
                                    a2 = dtmm_smlatt(xe, we, a2);
                                    a1 = dtmm_smlabb(xo, wo, a1);
                                    a3 = dtmm_smlatt(xo, wo, a3);
                                }
                            }
                        }
                        const int32_t k = ch - c0;
                        if (fast[k] & fast[k + 1] & fast[k + 2] & fast[k + 3]) {
                            uint32_t v = (uint8_t)dtmm_requant_fast_s8(a0, &rf[k], lo, hi);
                            v |= (uint32_t)(uint8_t)dtmm_requant_fast_s8(a1, &rf[k + 1], lo, hi) << 8;
                            v |= (uint32_t)(uint8_t)dtmm_requant_fast_s8(a2, &rf[k + 2], lo, hi) << 16;
                            v |= (uint32_t)(uint8_t)dtmm_requant_fast_s8(a3, &rf[k + 3], lo, hi) << 24;
                            dtmm_write_u32(o + ch, v); /* the 4 channels in one store */
                        } else {
                            const int32_t acc[4] = {a0, a1, a2, a3};
                            for (int32_t i = 0; i < 4; i++)
                                o[ch + i] = fast[k + i]
                                                ? dtmm_requant_fast_s8(acc[i], &rf[k + i], lo, hi)
                                                : dtmm_requant_s8(acc[i], q->multiplier[ch + i],
                                                                  q->shift[ch + i], p->out_zp,
                                                                  lo, hi);
                        }
                    }
                    for (; ch < c1; ch++) { /* channels past the last multiple of 4 */
                        int32_t acc = bias ? bias[ch] : 0;
                        const int8_t *xr = in_n + (xoff + ch), *wr = w + ch;
                        for (int32_t kh = 0; kh < nh && nw > 0; kh++, xr += row_x, wr += row_w)
                            for (int32_t kw = 0; kw < nw; kw++)
                                acc += (xr[kw * c] - zp) * wr[kw * c];
                        const int32_t k = ch - c0;
                        o[ch] = fast[k] ? dtmm_requant_fast_s8(acc, &rf[k], lo, hi)
                                        : dtmm_requant_s8(acc, q->multiplier[ch], q->shift[ch],
                                                          p->out_zp, lo, hi);
                    }
                }
            }
        }
    }
}
#endif /* DTMM_USE_DSP */

dtmm_status dtmm_depthwise_conv_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                                   int32_t mult, const dtmm_dims *id, const int8_t *in,
                                   const dtmm_dims *fd, const int8_t *weights, const int32_t *bias,
                                   const dtmm_dims *od, int8_t *out)
{
    if (mult < 1 || fd->n != 1 || fd->c != id->c * mult || od->c != fd->c
        || !dtmm_conv_params_ok(p, id, fd->h, fd->w, od))
        return DTMM_ERR_ARG;
    const int32_t c_in = id->c, c_out = fd->c, kh_n = fd->h, kw_n = fd->w;
#if DTMM_USE_MVE
    if (mult == 1) {
        dw_mve(p, q, id, in, fd, weights, bias, od, out);
        return DTMM_OK;
    }
#elif DTMM_USE_DSP
    if (mult == 1) {
        dw_dsp(p, q, id, in, fd, weights, bias, od, out);
        return DTMM_OK;
    }
#endif
#if DTMM_HOST_PATH
    if (mult == 1 && (int64_t)c_out * 4 <= DTMM_HOST_MAX_STACK) {
        int32_t acc[c_out];
        int8_t *o = out;
        for (int32_t n = 0; n < id->n; n++) {
            const int8_t *in_n = in + n * id->h * id->w * c_in;
            for (int32_t oy = 0; oy < od->h; oy++) {
                const int32_t iy0 = oy * p->stride_h - p->pad_top;
                int32_t kh_lo, kh_hi;
                dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
                for (int32_t ox = 0; ox < od->w; ox++, o += c_out) {
                    const int32_t ix0 = ox * p->stride_w - p->pad_left;
                    int32_t kw_lo, kw_hi;
                    dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
                    for (int32_t c = 0; c < c_out; c++) acc[c] = 0;
                    for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                        for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                            const int8_t *restrict x = in_n + ((iy0 + kh) * id->w + ix0 + kw) * c_in;
                            const int8_t *restrict w = weights + (kh * kw_n + kw) * c_out;
                            const int32_t zp = p->in_zp;
                            for (int32_t c = 0; c < c_out; c++) acc[c] += (x[c] - zp) * w[c];
                        }
                    }
                    dtmm_host_requant_row(acc, bias, c_out, q->multiplier, q->shift, p->out_zp,
                                          p->act_min, p->act_max, o);
                }
            }
        }
        return DTMM_OK;
    }
#endif
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t kh_lo, kh_hi;
            dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
            for (int32_t ox = 0; ox < od->w; ox++) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kw_lo, kw_hi;
                dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
                int8_t *o = out + ((n * od->h + oy) * od->w + ox) * c_out;
                for (int32_t oc = 0; oc < c_out; oc++) {
                    const int32_t ic = oc / mult;
                    int32_t acc = bias ? bias[oc] : 0;
                    for (int32_t kh = kh_lo; kh < kh_hi; kh++)
                        for (int32_t kw = kw_lo; kw < kw_hi; kw++)
                            acc += (in_n[((iy0 + kh) * id->w + ix0 + kw) * c_in + ic] - p->in_zp)
                                   * weights[(kh * kw_n + kw) * c_out + oc];
                    o[oc] = dtmm_requant_s8(acc, q->multiplier[oc], q->shift[oc], p->out_zp,
                                            p->act_min, p->act_max);
                }
            }
        }
    }
    return DTMM_OK;
}
