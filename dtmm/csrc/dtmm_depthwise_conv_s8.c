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
 * DSP (depth multiplier 1, C >= 4): the channels in groups of 4 (the last group of a
 *          C % 4 != 0 layer overlaps the one before it), per chunk of 8 groups one record
 *          each on the stack (bias, multiplier, (2 out_zp + 1) << right, right + 1), then
 *          per output pixel and group, per tap inside the input one word of inputs and
 *          one of weights, SXTAB16 (x - in_zp, plain and ROR 8) and SXTB16, SMLABB /
 *          SMLATT into 4 accumulators; the requantization of the 4 channels:
 *          QADD + SMMULR, ADD + QDADD + ASR (rounding divide and out_zp at once,
 *          dtmm_requant_dsp), SSAT, 3 BFI, the clamp on the packed word (SSUB8 + SEL),
 *          one STR.  Whole 3x3 windows are one asm block (taps, requantization, store),
 *          border rows of a 3-wide kernel an asm block per row; groups with a left
 *          shift shift first, groups with a multiplier or shift dtmm_requant_dsp does
 *          not cover take the reference.  C < 4: one channel at a time.
 * plain C: every depth multiplier (and the SIMD builds' multiplier > 1).
 * host (DTMM_HOST_PATH, see dtmm_isa.h): per output pixel C_out int32 accumulators
 * (stack), updated tap by tap by a loop over the contiguous channels (depth multiplier
 * 1; gcc -O3 vectorises it), then requantized as one loop over the channels.
 */
#include "dtmm_internal.h"

#include <stddef.h>

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
#define DW_DSP_GROUPS 8 /* groups of 4 channels whose records are prepared together */

/* One group of 4 consecutive channels ch .. ch + 3 (the last group of a C % 4 != 0 layer
 * overlaps the one before it: those channels are computed and stored twice, the same
 * bytes).  kind 0: the 4 channels take dtmm_requant_dsp; 1: the same after their left
 * shifts; 2: a channel needs the reference dtmm_requant_s8 (the 4 take it).  The asm
 * below reads the fields up to row_x at the offsets checked after the struct. */
typedef struct {
    int32_t bias[4];  /* the accumulators' start (0 without a bias) */
    int32_t rq[4][3]; /* per channel: multiplier, dtmm_requant_dsp_h, right + 1 */
    uint32_t lohi[2]; /* act_min, act_max in each byte */
    int32_t c;        /* the layer's channels (tap stride) */
    uint32_t off2;    /* -in_zp in both halfwords (SXTAB16) */
    int32_t row_x;    /* input row stride */
    int32_t ch, kind;
    int32_t left[4];  /* left shifts (kind 1) */
} dw_dsp_group;
_Static_assert(offsetof(dw_dsp_group, rq) == 16 && offsetof(dw_dsp_group, lohi) == 64
                   && offsetof(dw_dsp_group, c) == 72 && offsetof(dw_dsp_group, off2) == 76
                   && offsetof(dw_dsp_group, row_x) == 80,
               "dw_dsp_group: the offsets the asm reads");

static void dw_dsp_group_make(dw_dsp_group *g, int32_t ch, const dtmm_requant_params *q,
                              const int32_t *bias, const dtmm_conv_params *p, int32_t c,
                              int32_t row_x)
{
    const int32_t zp = p->out_zp;
    const int zp_ok = zp >= -128 && zp <= 127;
    int any_left = 0, all_fast = zp_ok;
    for (int32_t i = 0; i < 4; i++) {
        const int32_t m = q->multiplier[ch + i], s = q->shift[ch + i];
        g->bias[i] = bias ? bias[ch + i] : 0;
        g->rq[i][0] = m;
        g->rq[i][1] = zp_ok ? dtmm_requant_dsp_h(s, zp) : 0;
        g->rq[i][2] = (s > 0 ? 0 : -s) + 1;
        g->left[i] = s > 0 ? s : 0;
        any_left |= s > 0;
        all_fast &= dtmm_requant_fast_ok(m, s);
    }
    g->lohi[0] = (uint32_t)(uint8_t)p->act_min * 0x01010101u;
    g->lohi[1] = (uint32_t)(uint8_t)p->act_max * 0x01010101u;
    g->c = c;
    g->off2 = ((uint32_t)(uint16_t)(int16_t)(-p->in_zp)) * 0x00010001u;
    g->row_x = row_x;
    g->ch = ch;
    g->kind = !all_fast ? 2 : any_left ? 1 : 0;
}

/* One tap of 4 channels: a0..a3 += (x - in_zp) * w (SXTAB16 / SXTB16, SMLABB / SMLATT). */
#define DW_DSP_TAP(xp, wp)                                                               \
    do {                                                                               \
        const uint32_t x4_ = dtmm_read_u32(xp), w4_ = dtmm_read_u32(wp);               \
        const uint32_t xe_ = dtmm_sxtab16(off2, x4_), xo_ = dtmm_sxtab16_ror8(off2, x4_); \
        const uint32_t we_ = dtmm_sxtb16(w4_), wo_ = dtmm_sxtb16_ror8(w4_);            \
        a0 = dtmm_smlabb(xe_, we_, a0);                                                \
        a2 = dtmm_smlatt(xe_, we_, a2);                                                \
        a1 = dtmm_smlabb(xo_, wo_, a1);                                                \
        a3 = dtmm_smlatt(xo_, wo_, a3);                                                \
    } while (0)

/* DW_DSP_ASM: the Cortex-M asm blocks below (up to 14 registers: only where dtmm_isa.h
 * allows the asm loops, DTMM_DSP_ASM); otherwise the same in C. */
#if DTMM_DSP_ASM
#  define DW_DSP_ASM 1
#else
#  define DW_DSP_ASM 0
#endif

#if DW_DSP_ASM
/* asm text: one tap (X, W: the addresses of the input and weight words) into a0..a3,
 * temporaries t0..t3, the in_zp pair in off. */
#  define DW_TAP_ASM(X, W)                                                                \
    "   ldr     %[t0], " X "\n"                                                          \
    "   ldr     %[t1], " W "\n"                                                          \
    "   sxtab16 %[t2], %[off], %[t0]\n"                                                  \
    "   sxtb16  %[t3], %[t1]\n"                                                          \
    "   sxtab16 %[t0], %[off], %[t0], ror #8\n"                                          \
    "   sxtb16  %[t1], %[t1], ror #8\n"                                                  \
    "   smlabb  %[a0], %[t2], %[t3], %[a0]\n"                                            \
    "   smlatt  %[a2], %[t2], %[t3], %[a2]\n"                                            \
    "   smlabb  %[a1], %[t0], %[t1], %[a1]\n"                                            \
    "   smlatt  %[a3], %[t0], %[t1], %[a3]\n"
#  define DW_ROW3_ASM                                                                     \
    DW_TAP_ASM("[%[x]]", "[%[w]]")                                                       \
    DW_TAP_ASM("[%[x], %[c]]", "[%[w], %[c]]")                                           \
    DW_TAP_ASM("[%[x], %[c], lsl #1]", "[%[w], %[c], lsl #1]")
/* asm text: requantize a0..a3 with the record at g (dtmm_requant_dsp, two channels at a
 * time so that no multiply's result is used at once), SSAT #8, 3 BFI, the clamp to
 * [act_min, act_max] (SSUB8 + SEL twice), one STR at o. */
#  define DW_RQ2_ASM(A, B, OFF_A, OFF_B)                                                  \
    "   ldrd    %[t0], %[t1], [%[g], #" OFF_A "]\n"                                       \
    "   ldrd    %[t2], %[t3], [%[g], #" OFF_B "]\n"                                       \
    "   qadd    %[" A "], %[" A "], %[" A "]\n"                                           \
    "   qadd    %[" B "], %[" B "], %[" B "]\n"                                           \
    "   smmulr  %[" A "], %[" A "], %[t0]\n"                                              \
    "   smmulr  %[" B "], %[" B "], %[t2]\n"                                              \
    "   ldr     %[t0], [%[g], #" OFF_A "+8]\n"                                            \
    "   ldr     %[t2], [%[g], #" OFF_B "+8]\n"                                            \
    "   add     %[t1], %[t1], %[" A "], asr #31\n"                                        \
    "   add     %[t3], %[t3], %[" B "], asr #31\n"                                        \
    "   qdadd   %[t1], %[t1], %[" A "]\n"                                                 \
    "   qdadd   %[t3], %[t3], %[" B "]\n"                                                 \
    "   asr     %[" A "], %[t1], %[t0]\n"                                                 \
    "   asr     %[" B "], %[t3], %[t2]\n"                                                 \
    "   ssat    %[" A "], #8, %[" A "]\n"                                                 \
    "   ssat    %[" B "], #8, %[" B "]\n"
#  define DW_RQ_ASM                                                                       \
    DW_RQ2_ASM("a0", "a1", "16", "28")                                                   \
    DW_RQ2_ASM("a2", "a3", "40", "52")                                                   \
    "   bfi     %[a0], %[a1], #8, #8\n"                                                  \
    "   bfi     %[a0], %[a2], #16, #8\n"                                                 \
    "   bfi     %[a0], %[a3], #24, #8\n"                                                 \
    "   ldrd    %[t0], %[t1], [%[g], #64]\n"                                             \
    "   ssub8   %[t2], %[a0], %[t0]\n"                                                   \
    "   sel     %[a0], %[a0], %[t0]\n"                                                   \
    "   ssub8   %[t2], %[a0], %[t1]\n"                                                   \
    "   sel     %[a0], %[t1], %[a0]\n"                                                   \
    "   str     %[a0], [%[o]]\n"
#endif

/* Requantize the accumulators a0..a3 of group g (kind 0, or 1 after the left shifts) and
 * store the 4 bytes at o (DW_RQ_ASM, or the same in C). */
DTMM_INLINE void dw_dsp_requant4(const dw_dsp_group *g, int32_t a0, int32_t a1, int32_t a2,
                                 int32_t a3, int8_t *o)
{
#if !DW_DSP_ASM
    const int32_t t0 = dtmm_ssat8(dtmm_requant_dsp(a0, g->rq[0][0], g->rq[0][1], g->rq[0][2]));
    const int32_t t1 = dtmm_ssat8(dtmm_requant_dsp(a1, g->rq[1][0], g->rq[1][1], g->rq[1][2]));
    const int32_t t2 = dtmm_ssat8(dtmm_requant_dsp(a2, g->rq[2][0], g->rq[2][1], g->rq[2][2]));
    const int32_t t3 = dtmm_ssat8(dtmm_requant_dsp(a3, g->rq[3][0], g->rq[3][1], g->rq[3][2]));
    const uint32_t v = dtmm_pack_b4(t0, t1, t2, t3);
    dtmm_write_u32(o, dtmm_min_s8x4(dtmm_max_s8x4(v, g->lohi[0]), g->lohi[1]));
#else
    int32_t t0, t1, t2, t3;
    __asm__ volatile(DW_RQ_ASM
                     : [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),
                       [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
                     : [g] "r"(g), [o] "r"(o)
                     : "cc", "memory");
#endif
}

/* The groups of kind 1 and 2 (out of the hot loop). */
static void dw_dsp_requant4_other(const dw_dsp_group *g, const dtmm_requant_params *q,
                                  const dtmm_conv_params *p, int32_t a0, int32_t a1,
                                  int32_t a2, int32_t a3, int8_t *o)
{
    if (g->kind == 1) {
        dw_dsp_requant4(g, (int32_t)((uint32_t)a0 << g->left[0]),
                        (int32_t)((uint32_t)a1 << g->left[1]), (int32_t)((uint32_t)a2 << g->left[2]),
                        (int32_t)((uint32_t)a3 << g->left[3]), o);
        return;
    }
    const int32_t acc[4] = {a0, a1, a2, a3};
    for (int32_t i = 0; i < 4; i++)
        o[i] = dtmm_requant_s8(acc[i], q->multiplier[g->ch + i], q->shift[g->ch + i], p->out_zp,
                               p->act_min, p->act_max);
}

/* A whole 3x3 window of group g (kind 0): x, w at its first tap, output at o.  On
 * Cortex-M one asm block: the bias, 9 taps of 10 instructions, the row steps, the
 * requantization and the store (14 registers: GCC's loop spills around smaller blocks). */
DTMM_INLINE void dw_dsp_full33(const dw_dsp_group *g, const int8_t *x, const int8_t *w, int8_t *o)
{
#if !DW_DSP_ASM
    const int32_t c = g->c;
    const uint32_t off2 = g->off2;
    int32_t a0 = g->bias[0], a1 = g->bias[1], a2 = g->bias[2], a3 = g->bias[3];
    for (int32_t kh = 0; kh < 3; kh++, x += g->row_x, w += 3 * c) {
        DW_DSP_TAP(x, w);
        DW_DSP_TAP(x + c, w + c);
        DW_DSP_TAP(x + 2 * c, w + 2 * c);
    }
    dw_dsp_requant4(g, a0, a1, a2, a3, o);
#else
    int32_t a0, a1, a2, a3, c, t0, t1, t2, t3;
    uint32_t off;
#  define DW_NEXT_ROW_ASM                                                                 \
    "   ldr     %[t0], [%[g], #80]\n"                                                    \
    "   add     %[x], %[x], %[t0]\n"                                                     \
    "   add     %[w], %[w], %[c], lsl #1\n"                                              \
    "   add     %[w], %[w], %[c]\n"
    __asm__ volatile("   ldrd    %[c], %[off], [%[g], #72]\n"
                     "   ldrd    %[a0], %[a1], [%[g]]\n"
                     "   ldrd    %[a2], %[a3], [%[g], #8]\n"
                     DW_ROW3_ASM DW_NEXT_ROW_ASM DW_ROW3_ASM DW_NEXT_ROW_ASM DW_ROW3_ASM
                     DW_RQ_ASM
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3),
                       [x] "+&r"(x), [w] "+&r"(w), [c] "=&r"(c), [off] "=&r"(off),
                       [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
                     : [g] "r"(g), [o] "r"(o)
                     : "cc", "memory");
#  undef DW_NEXT_ROW_ASM
#endif
}

/* nh >= 1 rows of 3 taps (kernel width 3: the weight rows are 3 c apart), 4 channels,
 * into a0..a3 (the border pixels of a 3-wide kernel).  On Cortex-M one asm block per row
 * (10 instructions per tap, 12 registers). */
DTMM_INLINE void dw_dsp_rows3(const int8_t *x, const int8_t *w, int32_t nh, int32_t c,
                              int32_t row_x, uint32_t off2, int32_t *a0_, int32_t *a1_,
                              int32_t *a2_, int32_t *a3_)
{
    int32_t a0 = *a0_, a1 = *a1_, a2 = *a2_, a3 = *a3_;
    for (; nh > 0; nh--, x += row_x, w += 3 * c) {
#if !DW_DSP_ASM
        DW_DSP_TAP(x, w);
        DW_DSP_TAP(x + c, w + c);
        DW_DSP_TAP(x + 2 * c, w + 2 * c);
#else
        uint32_t t0, t1, t2, t3;
        __asm__ volatile(DW_ROW3_ASM
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                           [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
                         : [x] "r"(x), [w] "r"(w), [c] "r"(c), [off] "r"(off2));
#endif
    }
    *a0_ = a0;
    *a1_ = a1;
    *a2_ = a2;
    *a3_ = a3;
}
#if DW_DSP_ASM
#  undef DW_TAP_ASM
#  undef DW_ROW3_ASM
#  undef DW_RQ2_ASM
#  undef DW_RQ_ASM
#endif

/* Channels 0 .. c - 1 (c < 4) of every output pixel, one at a time. */
static void dw_dsp_narrow(const dtmm_conv_params *p, const dtmm_requant_params *q,
                          const dtmm_dims *id, const int8_t *in, const dtmm_dims *fd,
                          const int8_t *weights, const int32_t *bias, const dtmm_dims *od,
                          int8_t *out)
{
    const int32_t c = id->c, kh_n = fd->h, kw_n = fd->w, row_x = id->w * c, row_w = kw_n * c;
    const int32_t zp = p->in_zp, lo = p->act_min, hi = p->act_max;
    const int zp_ok = p->out_zp >= -128 && p->out_zp <= 127;
    int32_t fast[3], left[3], h[3], r1[3]; /* dtmm_requant_dsp per channel, where exact */
    for (int32_t ch = 0; ch < c; ch++) {
        const int32_t s = q->shift[ch];
        fast[ch] = zp_ok && dtmm_requant_fast_ok(q->multiplier[ch], s);
        left[ch] = s > 0 ? s : 0;
        h[ch] = zp_ok ? dtmm_requant_dsp_h(s, p->out_zp) : 0;
        r1[ch] = (s > 0 ? 0 : -s) + 1;
    }
    int8_t *o = out;
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * row_x;
        for (int32_t oy = 0; oy < od->h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_top;
            int32_t kh_lo, kh_hi;
            dtmm_tap_range(iy0, kh_n, id->h, &kh_lo, &kh_hi);
            for (int32_t ox = 0; ox < od->w; ox++, o += c) {
                const int32_t ix0 = ox * p->stride_w - p->pad_left;
                int32_t kw_lo, kw_hi;
                dtmm_tap_range(ix0, kw_n, id->w, &kw_lo, &kw_hi);
                const int32_t nh = kh_hi - kh_lo, nw = kw_hi - kw_lo;
                for (int32_t ch = 0; ch < c; ch++) {
                    int32_t acc = bias ? bias[ch] : 0;
                    const int8_t *xr = in_n + (iy0 + kh_lo) * row_x + (ix0 + kw_lo) * c + ch;
                    const int8_t *wr = weights + kh_lo * row_w + kw_lo * c + ch;
                    for (int32_t kh = 0; kh < nh && nw > 0; kh++, xr += row_x, wr += row_w)
                        for (int32_t kw = 0; kw < nw; kw++)
                            acc += (xr[kw * c] - zp) * wr[kw * c];
                    if (fast[ch]) {
                        const int32_t t = dtmm_ssat8(
                            dtmm_requant_dsp((int32_t)((uint32_t)acc << left[ch]),
                                             q->multiplier[ch], h[ch], r1[ch]));
                        o[ch] = (int8_t)(t < lo ? lo : t > hi ? hi : t);
                    } else {
                        o[ch] = dtmm_requant_s8(acc, q->multiplier[ch], q->shift[ch], p->out_zp,
                                                lo, hi);
                    }
                }
            }
        }
    }
}

static void dw_dsp(const dtmm_conv_params *p, const dtmm_requant_params *q, const dtmm_dims *id,
                   const int8_t *in, const dtmm_dims *fd, const int8_t *weights,
                   const int32_t *bias, const dtmm_dims *od, int8_t *out)
{
    const int32_t c = id->c, kh_n = fd->h, kw_n = fd->w;
    const int32_t row_x = id->w * c, row_w = kw_n * c;
    if (c < 4) {
        dw_dsp_narrow(p, q, id, in, fd, weights, bias, od, out);
        return;
    }
    const uint32_t off2 = ((uint32_t)(uint16_t)(int16_t)(-p->in_zp)) * 0x00010001u;
    const int32_t n_groups = (c + 3) >> 2;
    /* groups in chunks of DW_DSP_GROUPS: their records are prepared once (on the stack),
     * then every output pixel */
    dw_dsp_group gr[DW_DSP_GROUPS];
    for (int32_t g0 = 0; g0 < n_groups; g0 += DW_DSP_GROUPS) {
        const int32_t ng = n_groups - g0 < DW_DSP_GROUPS ? n_groups - g0 : DW_DSP_GROUPS;
        int all0 = 1; /* every group of the chunk kind 0 */
        for (int32_t g = 0; g < ng; g++) {
            dw_dsp_group_make(&gr[g], 4 * (g0 + g) < c - 4 ? 4 * (g0 + g) : c - 4, q, bias, p,
                              c, row_x);
            all0 &= gr[g].kind == 0;
        }
        const dw_dsp_group *const g_end = gr + ng;
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
                    const int rows3 = nw == 3 && kw_n == 3;
                    /* the first tap inside the input */
                    const int8_t *x0 = in_n + (iy0 + kh_lo) * row_x + (ix0 + kw_lo) * c;
                    const int8_t *w0 = weights + kh_lo * row_w + kw_lo * c;
                    if (all0 && rows3 && nh == 3 && kh_n == 3) { /* whole 3x3 windows */
                        for (const dw_dsp_group *g = gr; g < g_end; g++)
                            dw_dsp_full33(g, x0 + g->ch, w0 + g->ch, o + g->ch);
                        continue;
                    }
                    for (const dw_dsp_group *g = gr; g < g_end; g++) {
                        int32_t a0 = g->bias[0], a1 = g->bias[1], a2 = g->bias[2], a3 = g->bias[3];
                        const int8_t *xr = x0 + g->ch, *wr = w0 + g->ch;
                        if (rows3) { /* whole rows of a 3-wide kernel */
                            dw_dsp_rows3(xr, wr, nh, c, row_x, off2, &a0, &a1, &a2, &a3);
                        } else if (nw > 0) {
                            for (int32_t kh = nh; kh > 0; kh--, xr += row_x, wr += row_w) {
                                const int8_t *xp = xr, *wp = wr;
                                for (int32_t kw = nw; kw > 0; kw--, xp += c, wp += c)
                                    DW_DSP_TAP(xp, wp);
                            }
                        }
                        if (g->kind == 0)
                            dw_dsp_requant4(g, a0, a1, a2, a3, o + g->ch);
                        else
                            dw_dsp_requant4_other(g, q, p, a0, a1, a2, a3, o + g->ch);
                    }
                }
            }
        }
    }
}
#undef DW_DSP_TAP
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
