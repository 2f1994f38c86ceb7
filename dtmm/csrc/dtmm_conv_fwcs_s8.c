/*
 * dtmm_conv_fwcs_s8.c - the DTMM convolution operator on FWCS weights (paper Sec. III-B).
 *
 * Loop order: batch -> block of R output pixels (row-major, may wrap rows) -> filter
 * -> kept filterlet -> chunk of the filterlet.  For each chunk the weights are loaded
 * once and multiplied with the R input runs (the C_in contiguous NHWC values at each
 * pixel's tap), so every MAC needs a single new load (paper Fig. 9b / Fig. 10):
 *   MVE:  vldrb (weights) + R x (vldrb input, vmladava), tail-predicated
 *   DSP:  LDR + 2 SXTB16 (weights) + R x (LDR, 2 SXTB16, 2 SMLAD) per 4 weights; or,
 *         when the layer keeps >= 4 filterlets per kernel position (4 * KH*KW in all),
 *         the block's input runs are first widened to int16 in scratch (CMSIS-NN
 *         order x0, x2, x1, x3; SXTB16 pairs) and then per 4 weights
 *         LDR + 2 SXTB16 + R x (LDRD, 2 SMLAD) (groups of 4 pixels; inline asm on
 *         Cortex-M, 2 LDR for odd C_in)
 *   C:    one weight, R scalar MACs
 * Input offset: acc = bias - in_zp * sum(kept w) + sum(x * w); a tap in the padding
 * points at a run of in_zp values (so it adds in_zp * w, cancelled by the first
 * term) - no patch buffer (the DSP int16 widening aside).  The per-filter offsets
 * bias - in_zp * sum(kept w) are computed here, into scratch, once per call (nnz/16
 * vector adds on MVE).
 *
 * A filterlet's kernel position k comes from cptr = (kh*KW + kw) * C_in through an
 * exact multiply by a 16-bit reciprocal of C_in (no division per filterlet); per block
 * of R pixels a KH*KW x R table holds each pixel's input pointer at each k (or the
 * in_zp run for a tap in the padding), so a filterlet costs one table lookup and its
 * dot product wherever the block lies (borders included).
 * MVE: the dot products are WLSTP/LETP tail-predicated loops in inline asm (groups of
 * 4 / 2 / 1 pixels: VMLADAVA accumulates into even registers only, so R = 8 runs as
 * two groups of 4), and the R outputs of a filter are requantized as one vector.
 * MVE, R = 1, 2, 4 or 8, C_in = 16, 32 or 64 (short filterlets, where that
 * per-filterlet set-up weighed most): fwcs_block_small runs each filter, per group of
 * min(R, 4) pixels, as one WLS/LE loop over its kept filterlets (cptr load, shifted add
 * to the table row, LDM/LDR of the group's run pointers, then per 16 weights VLDRB +
 * G x (VLDRB, VMLADAVA)), no reciprocal or predication; the reuse variants differ only
 * in R there too.
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
    /* the block's pointer table: KH*KW x R pointers (8 bytes of slack align it to 8) */
    int32_t n = (int32_t)sizeof(const int8_t *) * FWCS_R * w->kh * w->kw + 8 + 4 * w->c_out
                + ((w->size + 3) & ~3);
#if DTMM_USE_DSP
    /* int16 copies of the block's input windows (R x KH*KW runs) and of the in_zp run */
    n += ((2 * w->size * (FWCS_R * w->kh * w->kw + 1)) + 3) & ~3;
#endif
    return n;
}

/* dtmm_sum_s8 out of line (once per filter): inlined into the kernel it changes the
 * register allocation and costs instructions at R = 2 and 4 (cortex-m55 bench). */
static int32_t sum_s8(const int8_t *x, int32_t n)
{
    return dtmm_sum_s8(x, n);
}

/* acc[r] += dot(w[0:n], x[r][0:n]) for the R pixels of a block: the weights are
 * loaded once per chunk and reused R times. */
DTMM_INLINE void dot_r(const int8_t *w, const int8_t *const *x, int32_t n, int32_t *acc)
{
#if DTMM_USE_MVE
    /* Groups of 4, then 2, then 1 pixels; each a tail-predicated loop that loads the
     * weights once per 16 and reuses them (at most 4 accumulators live: VMLADAVA
     * takes even registers only). */
    int32_t r = 0;
    DTMM_UNROLL
    for (; r + 4 <= FWCS_R; r += 4)
        dtmm_mve_dot_1x4(w, x[r], x[r + 1], x[r + 2], x[r + 3], n, &acc[r], &acc[r + 1],
                         &acc[r + 2], &acc[r + 3]);
    if (FWCS_R - r >= 2) {
        dtmm_mve_dot_1x2(w, x[r], x[r + 1], n, &acc[r], &acc[r + 1]);
        r += 2;
    }
    if (FWCS_R - r >= 1) dtmm_mve_dot_1x1(w, x[r], n, &acc[r]);
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

#if DTMM_USE_MVE && !defined(DTMM_EMULATE_MVE)                                       \
    && (FWCS_R == 1 || FWCS_R == 2 || FWCS_R == 4 || FWCS_R == 8)
/* Short filterlets (C_in = 16, 32 or 64: 1, 2 or 4 vectors) at R = 1, 2, 4 or 8: the
 * whole filter in one low-overhead loop (WLS/LE, one iteration per kept filterlet) per
 * group of G = min(R, 4) pixels (R = 8: two groups of 4, as dot_r), no per-filterlet
 * loop set-up, predication or reciprocal: the table row of kernel position k is at
 * byte offset k * 4 * R = cptr * 4 * R / C_in (cptr = k * C_in), one shifted add;
 * LDM (G = 4, 2) or LDR (G = 1) loads the group's run pointers.  Per filterlet and
 * vector: VLDRB (weights) + G x (VLDRB, VMLADAVA); per filterlet 4 more (cptr load,
 * add, LDM/LDR, LE).  r1, r3, r5, r9 hold the run pointers (LDM wants ascending
 * registers; odd ones, VMLADAVA accumulates into even registers). */
#  define FWCS_SMALL_CIN 1
#  define FWCS_G (FWCS_R < 4 ? FWCS_R : 4)
/* "add.w r9, tab, r9[, shift]" for C_in = 16, 32, 64: shift by log2(4 R) - log2(C_in) */
#  if FWCS_R == 1
#    define FWCS_ADDTAB_1 "add.w r9, %[tab], r9, lsr #2"
#    define FWCS_ADDTAB_2 "add.w r9, %[tab], r9, lsr #3"
#    define FWCS_ADDTAB_4 "add.w r9, %[tab], r9, lsr #4"
#  elif FWCS_R == 2
#    define FWCS_ADDTAB_1 "add.w r9, %[tab], r9, lsr #1"
#    define FWCS_ADDTAB_2 "add.w r9, %[tab], r9, lsr #2"
#    define FWCS_ADDTAB_4 "add.w r9, %[tab], r9, lsr #3"
#  elif FWCS_R == 4
#    define FWCS_ADDTAB_1 "add.w r9, %[tab], r9"
#    define FWCS_ADDTAB_2 "add.w r9, %[tab], r9, lsr #1"
#    define FWCS_ADDTAB_4 "add.w r9, %[tab], r9, lsr #2"
#  else
#    define FWCS_ADDTAB_1 "add.w r9, %[tab], r9, lsl #1"
#    define FWCS_ADDTAB_2 "add.w r9, %[tab], r9"
#    define FWCS_ADDTAB_4 "add.w r9, %[tab], r9, lsr #1"
#  endif
#  define FWCS_VEC4_(off)                                                             \
    "   vldrb.8     q0, [%[w]], #16\n"                                                 \
    "   vldrb.8     q1, [r1, #" off "]\n"                                              \
    "   vmladava.s8 %[a0], q0, q1\n"                                                   \
    "   vldrb.8     q2, [r3, #" off "]\n"                                              \
    "   vmladava.s8 %[a1], q0, q2\n"                                                   \
    "   vldrb.8     q1, [r5, #" off "]\n"                                              \
    "   vmladava.s8 %[a2], q0, q1\n"                                                   \
    "   vldrb.8     q2, [r9, #" off "]\n"                                              \
    "   vmladava.s8 %[a3], q0, q2\n"
#  define FWCS_VEC2_(off)                                                             \
    "   vldrb.8     q0, [%[w]], #16\n"                                                 \
    "   vldrb.8     q1, [r1, #" off "]\n"                                              \
    "   vmladava.s8 %[a0], q0, q1\n"                                                   \
    "   vldrb.8     q2, [r9, #" off "]\n"                                              \
    "   vmladava.s8 %[a1], q0, q2\n"
#  define FWCS_VEC1_(off)                                                             \
    "   vldrb.8     q0, [%[w]], #16\n"                                                 \
    "   vldrb.8     q1, [r9, #" off "]\n"                                              \
    "   vmladava.s8 %[a0], q0, q1\n"
#  if FWCS_G == 4
#    define FWCS_VEC_(off) FWCS_VEC4_(off)
/* 4 pixels: the 4 accumulators moved into v in the same asm */
#    define FWCS_FILTER_ASM_(LDCP, ADDTAB, BODY)                                       \
    __asm__ volatile("   wls         lr, %[n], 2f\n"                                   \
                     "1: " LDCP "\n"                                                   \
                     "   " ADDTAB "\n"                                                 \
                     "   ldm         r9, {r1, r3, r5, r9}\n" BODY                      \
                     "   le          lr, 1b\n"                                         \
                     "2: vmov        %q[v][2], %q[v][0], %[a0], %[a2]\n"               \
                     "   vmov        %q[v][3], %q[v][1], %[a1], %[a3]\n"               \
                     : [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3),  \
                       [w] "+r"(w), [cp] "+r"(cp), [v] "=w"(v)                         \
                     : [n] "r"(n), [tab] "r"(tab)                                      \
                     : "r1", "r3", "r5", "r9", "q0", "q1", "q2", "lr", "memory")
#  elif FWCS_G == 2
#    define FWCS_VEC_(off) FWCS_VEC2_(off)
#    define FWCS_FILTER_ASM_(LDCP, ADDTAB, BODY)                                       \
    __asm__ volatile("   wls         lr, %[n], 2f\n"                                   \
                     "1: " LDCP "\n"                                                   \
                     "   " ADDTAB "\n"                                                 \
                     "   ldm         r9, {r1, r9}\n" BODY                              \
                     "   le          lr, 1b\n"                                         \
                     "2:\n"                                                            \
                     : [a0] "+Te"(a0), [a1] "+Te"(a1), [w] "+r"(w), [cp] "+r"(cp)      \
                     : [n] "r"(n), [tab] "r"(tab)                                      \
                     : "r1", "r9", "q0", "q1", "q2", "lr", "memory")
#  else
#    define FWCS_VEC_(off) FWCS_VEC1_(off)
#    define FWCS_FILTER_ASM_(LDCP, ADDTAB, BODY)                                       \
    __asm__ volatile("   wls         lr, %[n], 2f\n"                                   \
                     "1: " LDCP "\n"                                                   \
                     "   " ADDTAB "\n"                                                 \
                     "   ldr         r9, [r9]\n" BODY                                  \
                     "   le          lr, 1b\n"                                         \
                     "2:\n"                                                            \
                     : [a0] "+Te"(a0), [w] "+r"(w), [cp] "+r"(cp)                      \
                     : [n] "r"(n), [tab] "r"(tab)                                      \
                     : "r9", "q0", "q1", "lr", "memory")
#  endif

/* One group of G pixels of a filter (table tab, the group's first column): its n kept
 * filterlets (weights *wp, cptr *cpp, both advanced past them) into v (lanes 0..G-1). */
DTMM_INLINE int32x4_t fwcs_group_small_(const int8_t *const *tab, const int8_t **wp,
                                        const uint8_t **cpp, int32_t n, int32_t init,
                                        const int VECS, const int CBITS)
{
    int32x4_t v;
    const int8_t *w = *wp;
    const uint8_t *cp = *cpp;
    int32_t a0 = init;
#  if FWCS_G >= 2
    int32_t a1 = init;
#  endif
#  if FWCS_G == 4
    int32_t a2 = init, a3 = init;
#  endif
    if (CBITS == 8) {
        if (VECS == 1)
            FWCS_FILTER_ASM_("ldrb        r9, [%[cp]], #1", FWCS_ADDTAB_1, FWCS_VEC_("0"));
        else if (VECS == 2)
            FWCS_FILTER_ASM_("ldrb        r9, [%[cp]], #1", FWCS_ADDTAB_2,
                             FWCS_VEC_("0") FWCS_VEC_("16"));
        else
            FWCS_FILTER_ASM_("ldrb        r9, [%[cp]], #1", FWCS_ADDTAB_4,
                             FWCS_VEC_("0") FWCS_VEC_("16") FWCS_VEC_("32") FWCS_VEC_("48"));
    } else {
        if (VECS == 1)
            FWCS_FILTER_ASM_("ldrh        r9, [%[cp]], #2", FWCS_ADDTAB_1, FWCS_VEC_("0"));
        else if (VECS == 2)
            FWCS_FILTER_ASM_("ldrh        r9, [%[cp]], #2", FWCS_ADDTAB_2,
                             FWCS_VEC_("0") FWCS_VEC_("16"));
        else
            FWCS_FILTER_ASM_("ldrh        r9, [%[cp]], #2", FWCS_ADDTAB_4,
                             FWCS_VEC_("0") FWCS_VEC_("16") FWCS_VEC_("32") FWCS_VEC_("48"));
    }
#  if FWCS_G == 2
    v = dtmm_mve_vec4(a0, a1, 0, 0);
#  elif FWCS_G == 1
    v = vdupq_n_s32(a0);
#  endif
    *wp = w;
    *cpp = cp;
    return v;
}

/* All C_out filters of one block of R pixels (table tab) for C_in = VECS * 16, cptr
 * entries of CBITS bits: per filter and group of G pixels one low-overhead loop over
 * its kept filterlets, then one vector requantization per group.  Weights and cptr are
 * walked by running pointers (filters are stored one after the other). */
DTMM_INLINE void fwcs_block_small_(const dtmm_fwcs *fw, const int8_t *const *tab,
                                   const int32_t *foff, const dtmm_requant_params *q,
                                   int32_t out_zp, const int32x4_t *vc, int8_t *o,
                                   int32_t live, const int VECS, const int CBITS)
{
    const int32_t c_out = fw->c_out, fbits = fw->fidx_bits;
    const void *fidx = fw->fidx;
    const int32_t *mult = q->multiplier, *shift = q->shift;
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)c_out);
    const int32x4_t lo = vc[0], hi = vc[1];
    /* R = 8: one pass over the filters per group of 4 pixels (as few live registers
     * as at R = 4); the second only when the block has more than 4 live pixels */
    DTMM_UNROLL
    for (int32_t g = 0; g < FWCS_R; g += FWCS_G) {
        if (g > 0 && g >= live) break;
        const mve_pred16_t pred = vctp32q((uint32_t)(live - g));
        const int8_t *const *tg = tab + g;
        int8_t *og = o + g * c_out;
        int32_t j0 = dtmm_index_at(fidx, fbits, 0);
        const int8_t *w = fw->arr + j0 * VECS * 16;
        const uint8_t *cp = (const uint8_t *)fw->cptr + j0 * (CBITS / 8);
        for (int32_t f = 0; f < c_out; f++) {
            const int32_t j1 = dtmm_index_at(fidx, fbits, f + 1), n = j1 - j0;
            j0 = j1;
            const int32x4_t v = fwcs_group_small_(tg, &w, &cp, n, foff[f], VECS, CBITS);
            dtmm_mve_requant_store(v, mult[f], shift[f], out_zp, lo, hi, og + f, offs, pred);
        }
    }
}

/* fwcs_block_small_ for the layer's C_in (16, 32 or 64) and cptr width. */
static __attribute__((noinline)) void fwcs_block_small(const dtmm_fwcs *fw,
                                                       const int8_t *const *tab,
                                                       const int32_t *foff,
                                                       const dtmm_requant_params *q,
                                                       int32_t out_zp, const int32x4_t *vc,
                                                       int8_t *o, int32_t live)
{
    const int vecs = fw->size >> 4;
    if (fw->cptr_bits == 8) {
        if (vecs == 1) fwcs_block_small_(fw, tab, foff, q, out_zp, vc, o, live, 1, 8);
        else if (vecs == 2) fwcs_block_small_(fw, tab, foff, q, out_zp, vc, o, live, 2, 8);
        else fwcs_block_small_(fw, tab, foff, q, out_zp, vc, o, live, 4, 8);
    } else {
        if (vecs == 1) fwcs_block_small_(fw, tab, foff, q, out_zp, vc, o, live, 1, 16);
        else if (vecs == 2) fwcs_block_small_(fw, tab, foff, q, out_zp, vc, o, live, 2, 16);
        else fwcs_block_small_(fw, tab, foff, q, out_zp, vc, o, live, 4, 16);
    }
}
#else
#  define FWCS_SMALL_CIN 0
#endif

#if DTMM_USE_DSP
/* dot_r on int16 copies of the input runs (see widen_s16): x[r] point to int16 runs,
 * each group of 4 stored as (x0, x2, x1, x3), so a weight word needs SXTB16 and
 * SXTB16 ror 8 only: per 4 weights 1 LDR + 2 SXTB16, then per pixel 1 LDRD (2 LDR
 * for odd C_in) + 2 SMLAD (the int8 path: per pixel 1 LDR + 2 SXTB16 + 2 SMLAD). */
DTMM_INLINE void dot_r16(const int8_t *w, const int8_t *const *x, int32_t n, int32_t *acc)
{
    /* groups of <= 4 pixels (more accumulators and run pointers would spill) */
    DTMM_UNROLL
    for (int32_t g = 0; g < FWCS_R; g += 4) {
        enum { G = FWCS_R < 4 ? FWCS_R : 4 };
        const int32_t gn = FWCS_R - g < G ? FWCS_R - g : G;
        int32_t a[G];
        int32_t c = 0;
        if ((n & 1) == 0) {
            /* even C_in: runs are word aligned, one LDRD (post-increment) per pixel and
             * 4 weights: per 4 weights 1 LDR + 2 SXTB16 + R x (1 LDRD + 2 SMLAD) */
            const uint32_t *xp[G];
            DTMM_UNROLL
            for (int32_t r = 0; r < G; r++) {
                xp[r] = r < gn ? (const uint32_t *)(const void *)x[g + r] : 0;
                a[r] = r < gn ? acc[g + r] : 0;
            }
#if !defined(DTMM_EMULATE_DSP)
            if (gn == 4 && n >= 4) {
                /* 4 pixels: LDR + 2 SXTB16 per 4 weights, LDRD + 2 SMLAD per pixel */
                const int8_t *wp = w;
                const uint32_t *p0 = xp[0], *p1 = xp[1], *p2 = xp[2], *p3 = xp[3];
                int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
                uint32_t cnt = (uint32_t)n >> 2, wl, wh, lo, hi;
                __asm__ volatile(
                    "1: ldr    %[wh], [%[wp]], #4\n"
                    "   sxtb16 %[wl], %[wh]\n"
                    "   sxtb16 %[wh], %[wh], ror #8\n"
                    "   ldrd   %[lo], %[hi], [%[p0]], #8\n"
                    "   smlad  %[a0], %[lo], %[wl], %[a0]\n"
                    "   smlad  %[a0], %[hi], %[wh], %[a0]\n"
                    "   ldrd   %[lo], %[hi], [%[p1]], #8\n"
                    "   smlad  %[a1], %[lo], %[wl], %[a1]\n"
                    "   smlad  %[a1], %[hi], %[wh], %[a1]\n"
                    "   ldrd   %[lo], %[hi], [%[p2]], #8\n"
                    "   smlad  %[a2], %[lo], %[wl], %[a2]\n"
                    "   smlad  %[a2], %[hi], %[wh], %[a2]\n"
                    "   ldrd   %[lo], %[hi], [%[p3]], #8\n"
                    "   smlad  %[a3], %[lo], %[wl], %[a3]\n"
                    "   smlad  %[a3], %[hi], %[wh], %[a3]\n"
                    "   subs   %[cnt], %[cnt], #1\n"
                    "   bne    1b\n"
                    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [wp] "+r"(wp),
                      [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [p3] "+r"(p3),
                      [cnt] "+r"(cnt), [wl] "=&r"(wl), [wh] "=&r"(wh), [lo] "=&r"(lo),
                      [hi] "=&r"(hi)
                    :
                    : "cc", "memory");
                a[0] = a0;
                a[1] = a1;
                a[2] = a2;
                a[3] = a3;
                c = n & ~3;
            }
#endif
            for (; c + 4 <= n; c += 4) {
                const uint32_t wr = dtmm_read_u32(w + c);
                const uint32_t wl = dtmm_sxtb16(wr), wh = dtmm_sxtb16_ror8(wr);
                DTMM_UNROLL
                for (int32_t r = 0; r < G; r++) {
                    if (r >= gn) break;
                    const uint32_t lo = xp[r][0], hi = xp[r][1];
                    xp[r] += 2;
                    a[r] = dtmm_smlad(lo, wl, a[r]);
                    a[r] = dtmm_smlad(hi, wh, a[r]);
                }
            }
        } else {
            DTMM_UNROLL
            for (int32_t r = 0; r < G; r++) a[r] = r < gn ? acc[g + r] : 0;
            for (; c + 4 <= n; c += 4) {
                const uint32_t wr = dtmm_read_u32(w + c);
                const uint32_t wl = dtmm_sxtb16(wr), wh = dtmm_sxtb16_ror8(wr);
                DTMM_UNROLL
                for (int32_t r = 0; r < G; r++) {
                    if (r >= gn) break;
                    const int16_t *xr = (const int16_t *)(const void *)x[g + r] + c;
                    a[r] = dtmm_smlad(dtmm_read_u32(xr), wl, a[r]);
                    a[r] = dtmm_smlad(dtmm_read_u32(xr + 2), wh, a[r]);
                }
            }
        }
        for (; c < n; c++) {
            const int32_t wv = w[c];
            DTMM_UNROLL
            for (int32_t r = 0; r < G; r++)
                if (r < gn) a[r] += ((const int16_t *)(const void *)x[g + r])[c] * wv;
        }
        DTMM_UNROLL
        for (int32_t r = 0; r < G; r++)
            if (r < gn) acc[g + r] = a[r];
    }
}
#endif

/* Requantize the R accumulators of filter f (pixels p0 .. p0 + live - 1) into out. */
DTMM_INLINE void store_r(const int32_t *acc, int32_t live, int8_t *o, int32_t c_out, int32_t m,
                         int32_t s, const dtmm_conv_params *p, const void *vctx)
{
#if DTMM_USE_MVE
    const int32x4_t *vc = (const int32x4_t *)vctx; /* lo, hi */
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)c_out);
    DTMM_UNROLL
    for (int32_t g = 0; g < FWCS_R; g += 4) {
        const int32_t n = live - g;
        if (n <= 0) break;
        const int32x4_t v = dtmm_mve_vec4(acc[g], g + 1 < FWCS_R ? acc[g + 1] : 0,
                                          g + 2 < FWCS_R ? acc[g + 2] : 0,
                                          g + 3 < FWCS_R ? acc[g + 3] : 0);
        dtmm_mve_requant_store(v, m, s, p->out_zp, vc[0], vc[1], o + g * c_out, offs,
                               vctp32q((uint32_t)n));
    }
#else
    (void)vctx;
    for (int32_t r = 0; r < live; r++)
        o[r * c_out] = dtmm_requant_s8(acc[r], m, s, p->out_zp, p->act_min, p->act_max);
#endif
}

#if DTMM_USE_DSP
/* dst[0:n] = (int16) src[0:n], each whole group of 4 stored as (x0, x2, x1, x3). */
DTMM_INLINE void widen_s16(int16_t *dst, const int8_t *src, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = dtmm_read_u32(src + i);
        dtmm_write_u32(dst + i, dtmm_sxtb16(v));
        dtmm_write_u32(dst + i + 2, dtmm_sxtb16_ror8(v));
    }
    for (; i < n; i++) dst[i] = src[i];
}
#endif

/* The operator body, specialised by the compiler for 8- and 16-bit cptr.
 * tab: KH*KW x R input pointers of the current block (tab[k * R + r] = start of the
 * C_in run pixel r reads at kernel position k, or zp_run for a tap in the padding),
 * rebuilt once per block and shared by every filter. */
DTMM_INLINE void fwcs_body(const dtmm_conv_params *p, const dtmm_requant_params *q,
                           const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                           const dtmm_dims *od, int8_t *out, const int8_t **tab,
                           const int32_t *foff, const int8_t *zp_run, int16_t *wide,
                           const int cptr_bits, const int use16, const int small)
{
    const int32_t c_in = id->c, c_out = fw->c_out, kh_n = fw->kh, kw_n = fw->kw;
    const int32_t hw_out = od->h * od->w;
    const uint32_t inv = (65536u + (uint32_t)c_in - 1u) / (uint32_t)c_in;
    const uint8_t *cptr8 = (const uint8_t *)fw->cptr;
    const uint16_t *cptr16 = (const uint16_t *)fw->cptr;
#if DTMM_USE_MVE
    const int32x4_t vctx[2] = {vdupq_n_s32(p->act_min), vdupq_n_s32(p->act_max)};
#else
    const void *vctx = 0;
#endif
#if !DTMM_USE_DSP
    (void)wide;
    (void)use16;
#endif
#if !FWCS_SMALL_CIN
    (void)small;
#endif

    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        int8_t *out_n = out + n * hw_out * c_out;
        int32_t oy = 0, ox = 0; /* coordinates of pixel p0 */
        for (int32_t p0 = 0; p0 < hw_out; p0 += FWCS_R) {
            int32_t live = 0;
            for (int32_t r = 0; r < FWCS_R; r++) {
                int32_t iy0 = -kh_n, ix0 = -kw_n; /* dead lane: every tap reads zp_run */
                if (p0 + r < hw_out) {
                    iy0 = oy * p->stride_h - p->pad_top;
                    ix0 = ox * p->stride_w - p->pad_left;
                    live++;
                    if (++ox == od->w) {
                        ox = 0;
                        oy++;
                    }
                }
                for (int32_t kh = 0; kh < kh_n; kh++) {
                    const int32_t iy = iy0 + kh;
                    const int row_ok = (uint32_t)iy < (uint32_t)id->h;
                    for (int32_t kw = 0; kw < kw_n; kw++) {
                        const int32_t ix = ix0 + kw, k = kh * kw_n + kw;
                        const int inside = row_ok && (uint32_t)ix < (uint32_t)id->w;
#if DTMM_USE_DSP
                        if (use16) { /* int16 copy of the run (tab holds int16 pointers) */
                            int16_t *dst = wide + (r * kh_n * kw_n + k) * c_in;
                            if (inside) widen_s16(dst, in_n + (iy * id->w + ix) * c_in, c_in);
                            tab[k * FWCS_R + r] = inside ? (const int8_t *)(void *)dst : zp_run;
                            continue;
                        }
#endif
                        tab[k * FWCS_R + r] = inside ? in_n + (iy * id->w + ix) * c_in : zp_run;
                    }
                }
            }
#if FWCS_SMALL_CIN
            if (small) {
                fwcs_block_small(fw, tab, foff, q, p->out_zp, vctx, out_n + p0 * c_out, live);
                continue;
            }
#endif
            int32_t j0 = dtmm_index_at(fw->fidx, fw->fidx_bits, 0);
            for (int32_t f = 0; f < c_out; f++) {
                const int32_t j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1);
                int32_t acc[FWCS_R];
                const int32_t init = foff[f];
                for (int32_t r = 0; r < FWCS_R; r++) acc[r] = init;
                const int8_t *w = fw->arr + j0 * c_in;
                for (int32_t j = j0; j < j1; j++, w += c_in) {
                    const uint32_t cp = cptr_bits == 8 ? cptr8[j] : cptr16[j];
#if DTMM_USE_DSP
                    if (use16) {
                        dot_r16(w, tab + ((cp * inv) >> 16) * FWCS_R, c_in, acc);
                        continue;
                    }
#endif
                    dot_r(w, tab + ((cp * inv) >> 16) * FWCS_R, c_in, acc);
                }
                j0 = j1;
                store_r(acc, live, out_n + p0 * c_out + f, c_out, q->multiplier[f], q->shift[f],
                        p, vctx);
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

    /* scratch: foff[C_out] | zp_run[align4(C_in)] | (8-byte aligned) tab[KH*KW*R]
     * | DSP: int16 in_zp run [C_in], int16 windows [R][KH*KW][C_in] */
    int32_t *foff = (int32_t *)scratch;
    int8_t *zp_run = (int8_t *)(foff + fw->c_out);
    const uintptr_t t = (uintptr_t)(zp_run + ((c_in + 3) & ~3));
    const int8_t **tab = (const int8_t **)((t + 7u) & ~(uintptr_t)7u);
    int16_t *wide = 0;
    const int8_t *zp_src = zp_run;
    int use16 = 0;
    memset(zp_run, (int8_t)p->in_zp, (size_t)c_in);
#if DTMM_USE_DSP
    /* Widen to int16 when each widened run serves enough filterlets: widening costs
     * about 1.25 instructions per value, each use then saves about 0.3-0.6 per value
     * (measured break-even: ~3 kept filterlets per kernel position; widen from 4). */
    use16 = dtmm_index_at(fw->fidx, fw->fidx_bits, fw->c_out) >= 4 * kk;
    if (use16) { /* int16 windows after the table; the int16 in_zp run first */
        wide = (int16_t *)(void *)(tab + kk * FWCS_R);
        for (int32_t i = 0; i < c_in; i++) wide[i] = (int16_t)p->in_zp;
        zp_src = (const int8_t *)(void *)wide;
        wide += c_in;
    }
#endif
    for (int32_t f = 0; f < fw->c_out; f++) {
        const int32_t j0 = dtmm_index_at(fw->fidx, fw->fidx_bits, f);
        const int32_t j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1);
        foff[f] = (bias ? bias[f] : 0) - p->in_zp * sum_s8(fw->arr + j0 * c_in, (j1 - j0) * c_in);
    }
#if FWCS_SMALL_CIN
    if (c_in == 16 || c_in == 32 || c_in == 64) /* fwcs_block_small: any cptr width */
        fwcs_body(p, q, id, in, fw, od, out, tab, foff, zp_src, wide, 16, 0, 1);
    else
#endif
    if (fw->cptr_bits == 8 && use16)
        fwcs_body(p, q, id, in, fw, od, out, tab, foff, zp_src, wide, 8, 1, 0);
    else if (fw->cptr_bits == 8)
        fwcs_body(p, q, id, in, fw, od, out, tab, foff, zp_src, wide, 8, 0, 0);
    else if (use16)
        fwcs_body(p, q, id, in, fw, od, out, tab, foff, zp_src, wide, 16, 1, 0);
    else
        fwcs_body(p, q, id, in, fw, od, out, tab, foff, zp_src, wide, 16, 0, 0);
    return DTMM_OK;
}
