/*
 * dtmm_conv_fwcs_s8.c - the DTMM convolution operator on FWCS weights (paper Sec. III-B).
 *
 * Loop order: batch -> block of R output pixels (row-major, may wrap rows) -> live
 * filter -> kept filterlet -> chunk of the filterlet.  For each chunk the weights are
 * loaded once and multiplied with the R input runs (the C_in contiguous NHWC values at
 * each pixel's tap), so every MAC needs a single new load (paper Fig. 9b / Fig. 10).
 *
 * What is done once instead of per output:
 *   - at code-generation time: offset[o] = bias[o] - in_zp * sum(kept weights of o)
 *     (dtmm.quant.arith.input_offset_bias), passed instead of the bias;
 *   - per call (O(C_out) work, into scratch): one 8-word record per live filter (a
 *     filter with >= 1 kept filterlet) holding its offset, filterlet count and
 *     requantization constants already split into left shift / rounding right shift;
 *     and, when some filter has no filterlet, the row of C_out output bytes those
 *     constant filters produce (requant(offset[o]), computed once);
 *   - per block of R pixels: a KH*KW x R table of input pointers (one per pixel and
 *     kernel position, the in_zp run for a tap in the padding); inside the input it is
 *     filled from one base pointer without bounds checks.  When some filter is dead the
 *     constant row is copied to the block's pixels first; only live filters run.
 *
 * Per live filter and block (the fixed cost per output):
 *   MVE, C_in < 64 or a multiple of 16 (1, 2, 4 or 8m vectors): one inline-asm loop over
 *     all live filters per group of G = min(R, 4) pixels: per filter LDM of (offset, n),
 *     the G accumulators set, a WLS/LE loop over its n filterlets (kernel position load,
 *     shifted add into the table, LDM of the G run pointers, then per 16 weights VLDRB +
 *     G x (VLDRB, VMLADAVA), a last partial vector predicated),
 *     then LDM of its requantization record and one vector requantization of the G
 *     outputs (VSHL, VQRDMULH, VPT + VQSUB rounding fix, VRSHL, VADD, VMAX, VMIN) and
 *     one VSTRB scatter to the G pixels (lanes of dead pixels go to a junk row).
 *   MVE, other C_in: tail-predicated dot products (dtmm_mve_dot_1x{1,2,4}), the same
 *     vector requantization from C.
 *   DSP (an asm loop per filter for C_in % 4 == 0 and R = 4, else C):
 *     LDR + 2 SXTB16 (weights) + R x (LDR, 2 SXTB16, 2 SMLAD) per 4 weights, or,
 *     when the layer keeps >= 4 filterlets per kernel position, the block's input runs
 *     widened to int16 first (CMSIS-NN order x0, x2, x1, x3) and then per 4 weights
 *     LDR + 2 SXTB16 + R x (LDRD, 2 SMLAD); requantization per output with QADD +
 *     SMMULR (dtmm_requant_fast, exact for the records it accepts, else the reference).
 *   C:   one weight, R scalar MACs; the reference requantization.
 *   host (DTMM_HOST_FAST builds only, never a Cortex-M): see "host fast path" below
 *        (an AVX2 loop chosen at run time on x86, else vectorisable plain C).
 * A filterlet's kernel position k = cptr / C_in (cptr = (kh*KW + kw) * C_in) comes from
 * a per-call byte array (asm loops, KH*KW <= 256) or an exact multiply by a 16-bit
 * reciprocal of C_in (C loops).
 *
 * Build switches (see dtmm_kernels.h): DTMM_FWCS_VARIANT_FULL (default),
 * DTMM_FWCS_VARIANT_NO_ILP (R = 1), DTMM_FWCS_REUSE (R, default 4), DTMM_FORCE_SCALAR;
 * host builds: DTMM_HOST_FAST (the host fast path), DTMM_HOST_NO_X86_SIMD (without its
 * AVX2 loop).
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

/* Per-call record of one live filter (scratch).  The field order is fixed by the MVE
 * asm: LDM {r0, r1} = (init, n) before the filter, LDM {r0-r5} = (mult .. zp) after. */
typedef struct {
    int32_t init;      /* offset[o] = bias[o] - in_zp * sum(kept weights of o) */
    int32_t n;         /* kept filterlets (>= 1); 0 in the sentinel after the last one */
    int32_t mult;      /* requantization multiplier */
    int32_t left;      /* max(shift, 0) */
    int32_t neg_right; /* min(shift, 0) */
    int32_t one;       /* 1 when shift < 0 (the rounding fix applies), else 0 */
    int32_t ch;        /* output channel o */
#if DTMM_USE_DSP
    int32_t half;      /* 1 << (right - 1) (0 if right = 0) for dtmm_requant_fast_s8, or
                        * -1 when the channel needs the reference requantization */
#else
    int32_t zp;        /* out_zp (MVE: loaded with the requantization record) */
#endif
} fwcs_rec;
#define FWCS_REC_BYTES 32

DTMM_INLINE int32_t align4(int32_t n) { return (n + 3) & ~3; }

int32_t dtmm_conv_fwcs_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_fwcs *w)
{
    (void)in_dims;
    /* records of the live filters + sentinel | constant row | junk row | in_zp run |
     * (8 bytes of slack align it to 8) the block's pointer table: KH*KW x R pointers */
    int32_t n = FWCS_REC_BYTES * (w->c_out + 1) + 2 * align4(w->c_out) + align4(w->size) + 8
                + (int32_t)sizeof(const int8_t *) * FWCS_R * w->kh * w->kw;
#if DTMM_USE_MVE || DTMM_USE_DSP
    /* the kernel position of each kept filterlet, a byte each (the asm loops) */
    n += align4(w->c_out * w->kh * w->kw);
#endif
#if DTMM_USE_DSP
    /* int16 copies of the block's input windows (R x KH*KW runs) and of the in_zp run */
    n += align4(2 * w->size * (FWCS_R * w->kh * w->kw + 1));
#endif
    return n;
}

/* ------------------------------------------------------------------ dot products */

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
#  if DTMM_DSP_ASM && (FWCS_R == 4 || FWCS_R == 8)
    if (n >= 4) {
      DTMM_UNROLL
      for (int32_t g = 0; g < FWCS_R; g += 4) {
        /* 4 pixels in registers: per 4 weights LDR + 2 SXTB16, per pixel LDR + 2 SXTB16
         * + 2 SMLAD (the C loop below keeps the accumulators in memory) */
        const int8_t *wp = w, *p0 = x[g], *p1 = x[g + 1], *p2 = x[g + 2], *p3 = x[g + 3];
        int32_t a0 = acc[g], a1 = acc[g + 1], a2 = acc[g + 2], a3 = acc[g + 3];
        uint32_t cnt = (uint32_t)n >> 2, wl, wh, xl, xh;
        __asm__ volatile(
            "1: ldr    %[wh], [%[wp]], #4\n"
            "   sxtb16 %[wl], %[wh]\n"
            "   sxtb16 %[wh], %[wh], ror #8\n"
            "   ldr    %[xh], [%[p0]], #4\n"
            "   sxtb16 %[xl], %[xh]\n"
            "   sxtb16 %[xh], %[xh], ror #8\n"
            "   smlad  %[a0], %[xl], %[wl], %[a0]\n"
            "   smlad  %[a0], %[xh], %[wh], %[a0]\n"
            "   ldr    %[xh], [%[p1]], #4\n"
            "   sxtb16 %[xl], %[xh]\n"
            "   sxtb16 %[xh], %[xh], ror #8\n"
            "   smlad  %[a1], %[xl], %[wl], %[a1]\n"
            "   smlad  %[a1], %[xh], %[wh], %[a1]\n"
            "   ldr    %[xh], [%[p2]], #4\n"
            "   sxtb16 %[xl], %[xh]\n"
            "   sxtb16 %[xh], %[xh], ror #8\n"
            "   smlad  %[a2], %[xl], %[wl], %[a2]\n"
            "   smlad  %[a2], %[xh], %[wh], %[a2]\n"
            "   ldr    %[xh], [%[p3]], #4\n"
            "   sxtb16 %[xl], %[xh]\n"
            "   sxtb16 %[xh], %[xh], ror #8\n"
            "   smlad  %[a3], %[xl], %[wl], %[a3]\n"
            "   smlad  %[a3], %[xh], %[wh], %[a3]\n"
            "   subs   %[cnt], %[cnt], #1\n"
            "   bne    1b\n"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [wp] "+r"(wp),
              [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [p3] "+r"(p3), [cnt] "+r"(cnt),
              [wl] "=&r"(wl), [wh] "=&r"(wh), [xl] "=&r"(xl), [xh] "=&r"(xh)
            :
            : "cc", "memory");
        acc[g] = a0;
        acc[g + 1] = a1;
        acc[g + 2] = a2;
        acc[g + 3] = a3;
      }
      c = n & ~3;
    }
#  endif
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
#if DTMM_DSP_ASM
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

/* ------------------------------------------------------------------ MVE filter loop */

#if DTMM_MVE_ASM
/* Any C_in with KH*KW <= 256.  One asm loop runs every live filter of a block for one
 * group of G = min(R, 4) pixels (R = 8: two groups).  Per filter: LDM (init, n), the G
 * accumulators set, a WLS/LE loop over its n kept filterlets (the filterlet's kernel
 * position k from the per-call byte array kp, the table row at tab + k * 4R: one LDRB
 * and one shifted add; LDM/LDR of the group's run pointers; per 16 weights VLDRB +
 * G x (VLDRB, VMLADAVA), a last partial vector predicated), then LDM of (mult, left,
 * neg_right, one, ch, zp), the requantization of the G accumulators as one vector and a
 * VSTRB scatter at ch + addr[i] (addr: the G pixels' output rows, or the junk row).  The
 * record after the last live filter has n = 0.  Accumulators: r0, r2, r4, r6 (VMLADAVA
 * accumulates into even registers); run pointers: r1, r3, r5, r9.  Variants by the
 * number VF of whole vectors per filterlet: 1, 2, 4 unrolled, multiples of 8 as a loop
 * of 8-vector bodies, and, with a partial last vector, 0 .. 3; any other C_in runs the
 * generic C loop. */
#  define FWCS_FAST_MVE 1
#  define FWCS_G (FWCS_R < 4 ? FWCS_R : 4)
#  define FWCS_LOG2R (FWCS_R >= 8 ? 3 : FWCS_R >= 4 ? 2 : FWCS_R >= 2 ? 1 : 0)
#  if FWCS_R != 1 && FWCS_R != 2 && FWCS_R != 4 && FWCS_R != 8
#    undef FWCS_FAST_MVE
#    define FWCS_FAST_MVE 0
#  endif
#endif
#ifndef FWCS_FAST_MVE
#  define FWCS_FAST_MVE 0
#endif

#if FWCS_FAST_MVE
#  define FWCS_V4_                                                                        \
    "   vldrb.8     q0, [%[w]], #16\n"                                                     \
    "   vldrb.8     q1, [r1], #16\n"                                                       \
    "   vmladava.s8 r0, q0, q1\n"                                                          \
    "   vldrb.8     q2, [r3], #16\n"                                                       \
    "   vmladava.s8 r2, q0, q2\n"                                                          \
    "   vldrb.8     q1, [r5], #16\n"                                                       \
    "   vmladava.s8 r4, q0, q1\n"                                                          \
    "   vldrb.8     q2, [r9], #16\n"                                                       \
    "   vmladava.s8 r6, q0, q2\n"
#  define FWCS_V2_                                                                        \
    "   vldrb.8     q0, [%[w]], #16\n"                                                     \
    "   vldrb.8     q1, [r1], #16\n"                                                       \
    "   vmladava.s8 r0, q0, q1\n"                                                          \
    "   vldrb.8     q2, [r9], #16\n"                                                       \
    "   vmladava.s8 r2, q0, q2\n"
#  define FWCS_V1_                                                                        \
    "   vldrb.8     q0, [%[w]], #16\n"                                                     \
    "   vldrb.8     q1, [r9], #16\n"                                                       \
    "   vmladava.s8 r0, q0, q1\n"
/* The last, partial vector of a filterlet (T = 1..16 weights, P0 = VCTP.8 T, set per
 * filter): predicated loads (inactive lanes read nothing and load 0), full MACs. */
#  define FWCS_T4_                                                                        \
    "   vpstttt\n"                                                                          \
    "   vldrbt.8    q0, [%[w]]\n"                                                           \
    "   vldrbt.8    q1, [r1]\n"                                                             \
    "   vldrbt.8    q2, [r3]\n"                                                             \
    "   vldrbt.8    q3, [r5]\n"                                                             \
    "   vmladava.s8 r0, q0, q1\n"                                                           \
    "   vmladava.s8 r2, q0, q2\n"                                                           \
    "   vmladava.s8 r4, q0, q3\n"                                                           \
    "   vpst\n"                                                                             \
    "   vldrbt.8    q1, [r9]\n"                                                             \
    "   vmladava.s8 r6, q0, q1\n"                                                           \
    "   add         %[w], %[w], %[t]\n"
#  define FWCS_T2_                                                                        \
    "   vpsttt\n"                                                                           \
    "   vldrbt.8    q0, [%[w]]\n"                                                           \
    "   vldrbt.8    q1, [r1]\n"                                                             \
    "   vldrbt.8    q2, [r9]\n"                                                             \
    "   vmladava.s8 r0, q0, q1\n"                                                           \
    "   vmladava.s8 r2, q0, q2\n"                                                           \
    "   add         %[w], %[w], %[t]\n"
#  define FWCS_T1_                                                                        \
    "   vpstt\n"                                                                            \
    "   vldrbt.8    q0, [%[w]]\n"                                                           \
    "   vldrbt.8    q1, [r9]\n"                                                             \
    "   vmladava.s8 r0, q0, q1\n"                                                           \
    "   add         %[w], %[w], %[t]\n"
#  if FWCS_G == 4
#    define FWCS_T_ FWCS_T4_
#    define FWCS_V_ FWCS_V4_
#    define FWCS_SET_ "   mov r2, r0\n   mov r4, r0\n   mov r6, r0\n"
#    define FWCS_PTRS_ "   ldm         r9, {r1, r3, r5, r9}\n"
#    define FWCS_TOVEC_                                                                   \
    "   vmov        q3[2], q3[0], r0, r4\n"                                                \
    "   vmov        q3[3], q3[1], r2, r6\n"
#  elif FWCS_G == 2
#    define FWCS_T_ FWCS_T2_
#    define FWCS_V_ FWCS_V2_
#    define FWCS_SET_ "   mov r2, r0\n"
#    define FWCS_PTRS_ "   ldm         r9, {r1, r9}\n"
#    define FWCS_TOVEC_                                                                   \
    "   vmov        q3[2], q3[0], r0, r0\n"                                                \
    "   vmov        q3[3], q3[1], r2, r2\n"
#  else
#    define FWCS_T_ FWCS_T1_
#    define FWCS_V_ FWCS_V1_
#    define FWCS_SET_ ""
#    define FWCS_PTRS_ "   ldr         r9, [r9]\n"
#    define FWCS_TOVEC_ "   vdup.32     q3, r0\n"
#  endif
#  define FWCS_V2X_ FWCS_V_ FWCS_V_
#  define FWCS_V4X_ FWCS_V2X_ FWCS_V2X_
#  define FWCS_V8X_ FWCS_V4X_ FWCS_V4X_
/* VF = 8m whole vectors: m passes of an 8-vector body (the count in a stack slot) */
#  define FWCS_V8L_                                                                       \
    "   ldr         %[c], %[m8]\n"                                                         \
    "4:\n" FWCS_V8X_                                                                      \
    "   subs        %[c], %[c], #1\n"                                                      \
    "   bne         4b\n"
#  define FWCS_KLOOP_(PRE, BODY, REGS, INS)                                                  \
    __asm__ volatile("0: ldm         %[rec]!, {r0, r1}\n"                                  \
                     "   cbnz        r1, 3f\n"                                             \
                     "   b           9f\n"                                                 \
                     "3:\n" FWCS_SET_ PRE                                                  \
                     "   wls         lr, r1, 2f\n"                                         \
                     "1: ldrb        r9, [%[kp]], #1\n"                                    \
                     "   add.w       r9, %[tab], r9, lsl #%c[sh]\n" FWCS_PTRS_ BODY         \
                     "   le          lr, 1b\n"                                             \
                     "2:\n" FWCS_TOVEC_                                                    \
                     "   ldm         %[rec]!, {r0, r1, r2, r3, r4, r5}\n"                  \
                     "   vshl.s32     q3, r1\n"                                            \
                     "   vqrdmulh.s32 q3, q3, r0\n"                                        \
                     "   vpt.s32      lt, q3, zr\n"                                        \
                     "   vqsubt.s32   q3, q3, r3\n"                                        \
                     "   vrshl.s32    q3, r2\n"                                            \
                     "   vadd.i32     q3, q3, r5\n"                                        \
                     "   vmax.s32     q3, q3, %q[lo]\n"                                    \
                     "   vmin.s32     q3, q3, %q[hi]\n"                                    \
                     "   vstrb.32     q3, [r4, %q[addr]]\n"                                \
                     "   b           0b\n"                                                 \
                     "9:\n"                                                                \
                     : [rec] "+r"(rec), [w] "+r"(w), [kp] "+r"(kp) REGS                    \
                     : [tab] "r"(tab), [addr] "w"(addr), [lo] "w"(lo), [hi] "w"(hi),       \
                       [sh] "i"(2 + FWCS_LOG2R) INS                                        \
                     : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r9", "lr", "q0", "q1",    \
                       "q2", "q3", "memory", "cc")

/* VF (whole vectors per filterlet, 0 .. 3 with a partial last one) of the asm loop for
 * C_in, or -1 (the generic loop). */
DTMM_INLINE int fwcs_mve_vf(int32_t c_in)
{
    if ((c_in & 15) == 0) {
        const int32_t vf = c_in >> 4;
        return vf == 1 || vf == 2 || vf == 4 || (vf & 7) == 0 ? vf : -1;
    }
    return c_in < 64 ? c_in >> 4 : -1;
}

/* All live filters (records rec, ending with n = 0) for one group of pixels: kernel
 * positions kp, table rows at tab (the group's first column), output addresses addr
 * (per lane). */
static __attribute__((noinline)) void fwcs_filters(const fwcs_rec *rec, const int8_t *w,
                                                   const uint8_t *kp, const int8_t *const *tab,
                                                   int32_t c_in, uint32x4_t addr, int32x4_t lo,
                                                   int32x4_t hi)
{
    const int32_t t = c_in & 15, m8 = c_in >> 7; /* t: the partial vector's weights */
    uint32_t c;
#  define FWCS_NO_
#  define FWCS_C_ , [c] "=&r"(c)
#  define FWCS_M8_ , [m8] "m"(m8)
#  define FWCS_T_IN_ , [t] "r"(t)
#  define FWCS_VCTP_ "   vctp.8      %[t]\n"
    if (t == 0) {
        switch (c_in >> 4) {
        case 1: FWCS_KLOOP_("", FWCS_V_, FWCS_NO_, FWCS_NO_); break;
        case 2: FWCS_KLOOP_("", FWCS_V2X_, FWCS_NO_, FWCS_NO_); break;
        case 4: FWCS_KLOOP_("", FWCS_V4X_, FWCS_NO_, FWCS_NO_); break;
        default: FWCS_KLOOP_("", FWCS_V8L_, FWCS_C_, FWCS_M8_); break;
        }
    } else {
        switch (c_in >> 4) {
        case 0: FWCS_KLOOP_(FWCS_VCTP_, FWCS_T_, FWCS_NO_, FWCS_T_IN_); break;
        case 1: FWCS_KLOOP_(FWCS_VCTP_, FWCS_V_ FWCS_T_, FWCS_NO_, FWCS_T_IN_); break;
        case 2: FWCS_KLOOP_(FWCS_VCTP_, FWCS_V2X_ FWCS_T_, FWCS_NO_, FWCS_T_IN_); break;
        default: FWCS_KLOOP_(FWCS_VCTP_, FWCS_V2X_ FWCS_V_ FWCS_T_, FWCS_NO_, FWCS_T_IN_); break;
        }
    }
    (void)c;
}
#endif

/* ------------------------------------------------------------------ requantization */

/* Store the R requantized accumulators of record rc (pixels 0 .. live-1 of the block,
 * output rows o + r * c_out). */
DTMM_INLINE void store_r(const int32_t *acc, int32_t live, int8_t *o, int32_t c_out,
                         const fwcs_rec *rc, const dtmm_conv_params *p, const void *vctx)
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
        dtmm_mve_requant_store(v, rc->mult, rc->left + rc->neg_right, p->out_zp, vc[0], vc[1],
                               o + g * c_out, offs, vctp32q((uint32_t)n));
    }
#elif DTMM_USE_DSP
    (void)vctx;
    const int32_t s = rc->left + rc->neg_right;
    if (rc->half >= 0) {
        const dtmm_requant_fast f = dtmm_requant_fast_make(rc->mult, s, p->out_zp);
        const int32_t lo = p->act_min, hi = p->act_max;
        for (int32_t r = 0; r < live; r++) o[r * c_out] = dtmm_requant_fast_s8(acc[r], &f, lo, hi);
    } else {
        for (int32_t r = 0; r < live; r++)
            o[r * c_out] = dtmm_requant_s8(acc[r], rc->mult, s, p->out_zp, p->act_min,
                                           p->act_max);
    }
#else
    (void)vctx;
    const int32_t s = rc->left + rc->neg_right;
    for (int32_t r = 0; r < live; r++)
        o[r * c_out] = dtmm_requant_s8(acc[r], rc->mult, s, p->out_zp, p->act_min, p->act_max);
#endif
}

#if DTMM_DSP_ASM && FWCS_R == 4
/* DSP, R = 4, C_in % 4 == 0, KH*KW <= 256: all n kept filterlets of one filter in one
 * asm loop.  Per filterlet: its kernel position k from the per-call byte array (that
 * array's pointer, the table base and the chunk count C_in / 4 live in stack slots: all
 * 14 registers are taken), the table row at tab + 16 k, 2 LDRD of the 4 run pointers
 * (not an LDM: it loads in register-number order, and the compiler picks the
 * registers), then per 4 weights LDR + 2 SXTB16 and per pixel LDR + 2 SXTB16 + 2 SMLAD
 * (int8 runs) or LDRD + 2 SMLAD (int16 runs). */
#  define FWCS_FAST_DSP 1
#  define FWCS_PIX8_(P, A)                                                                \
    "   ldr    %[xh], [%[" #P "]], #4\n"                                                    \
    "   sxtb16 %[xl], %[xh]\n"                                                             \
    "   sxtb16 %[xh], %[xh], ror #8\n"                                                     \
    "   smlad  %[" #A "], %[xl], %[wl], %[" #A "]\n"                                       \
    "   smlad  %[" #A "], %[xh], %[wh], %[" #A "]\n"
#  define FWCS_PIX16_(P, A)                                                               \
    "   ldrd   %[xl], %[xh], [%[" #P "]], #8\n"                                            \
    "   smlad  %[" #A "], %[xl], %[wl], %[" #A "]\n"                                       \
    "   smlad  %[" #A "], %[xh], %[wh], %[" #A "]\n"
#  define FWCS_DSP_ASM_(PIX)                                                              \
    __asm__ volatile("1: ldr    %[xl], %[kpm]\n"                                           \
                     "   ldrb   %[xh], [%[xl]], #1\n"                                      \
                     "   str    %[xl], %[kpm]\n"                                           \
                     "   ldr    %[wl], %[tabm]\n"                                          \
                     "   add    %[p3], %[wl], %[xh], lsl #4\n"                             \
                     "   ldrd   %[p0], %[p1], [%[p3]]\n"                                   \
                     "   ldrd   %[p2], %[p3], [%[p3], #8]\n"                               \
                     "   ldr    %[cnt], %[chm]\n"                                          \
                     "2: ldr    %[wh], [%[wp]], #4\n"                                      \
                     "   sxtb16 %[wl], %[wh]\n"                                            \
                     "   sxtb16 %[wh], %[wh], ror #8\n"                                    \
                     PIX(p0, a0)                                                           \
                     PIX(p1, a1)                                                           \
                     PIX(p2, a2)                                                           \
                     PIX(p3, a3)                                                           \
                     "   subs   %[cnt], %[cnt], #1\n"                                      \
                     "   bne    2b\n"                                                      \
                     "   ldr    %[cnt], %[nm]\n"                                           \
                     "   subs   %[cnt], %[cnt], #1\n"                                      \
                     "   str    %[cnt], %[nm]\n"                                           \
                     "   bne    1b\n"                                                      \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),          \
                       [wp] "+r"(wp), [p0] "=&r"(p0), [p1] "=&r"(p1), [p2] "=&r"(p2),       \
                       [p3] "=&r"(p3), [cnt] "=&r"(cnt), [wl] "=&r"(wl), [wh] "=&r"(wh),    \
                       [xl] "=&r"(xl), [xh] "=&r"(xh), [kpm] "+m"(kpv), [nm] "+m"(nv)       \
                     : [tabm] "m"(tabv), [chm] "m"(chunks)                                 \
                     : "cc", "memory")

/* The live filters of one block (C_in % 4 == 0; w16: int16 runs in tab). */
static __attribute__((noinline)) void fwcs_block_dsp4(const dtmm_conv_params *p,
                                                      const dtmm_fwcs *fw, const fwcs_rec *recs,
                                                      const int8_t *const *tab,
                                                      const uint8_t *kbuf, int8_t *o,
                                                      int32_t live, int w16)
{
    const int32_t c_out = fw->c_out, chunks = fw->size >> 2;
    const int8_t *wp = fw->arr;
    const uint8_t *kpv = kbuf;
    const int8_t *const *tabv = tab;
    const int32_t lo = p->act_min, hi = p->act_max, zp = p->out_zp;
    for (const fwcs_rec *rc = recs; rc->n; rc++) {
        int32_t a0 = rc->init, a1 = a0, a2 = a0, a3 = a0, nv = rc->n;
        const int8_t *p0, *p1, *p2, *p3;
        uint32_t cnt, wl, wh, xl, xh;
        if (w16) FWCS_DSP_ASM_(FWCS_PIX16_);
        else FWCS_DSP_ASM_(FWCS_PIX8_);
        (void)p0; (void)p1; (void)p2; (void)p3; (void)cnt; (void)wl; (void)wh; (void)xl;
        (void)xh;
        int8_t *oc = o + rc->ch;
        if (live == 4 && rc->half >= 0) { /* the whole block, fast requantization */
            const dtmm_requant_fast f = {rc->mult, rc->left, -rc->neg_right, rc->half, rc->one,
                                         zp};
            oc[0] = dtmm_requant_fast_s8(a0, &f, lo, hi);
            oc[c_out] = dtmm_requant_fast_s8(a1, &f, lo, hi);
            oc[2 * c_out] = dtmm_requant_fast_s8(a2, &f, lo, hi);
            oc[3 * c_out] = dtmm_requant_fast_s8(a3, &f, lo, hi);
        } else {
            const int32_t acc[4] = {a0, a1, a2, a3};
            store_r(acc, live, oc, c_out, rc, p, 0);
        }
    }
}
#else
#  define FWCS_FAST_DSP 0
#endif

/* ------------------------------------------------------------------ pointer table */

/* Fill tab[k * R + r] (KH*KW x R) for the R pixels from (oy, ox) on (row-major, may
 * wrap rows; pixels past the image's last read zp_run everywhere); returns how many
 * are live and advances (oy, ox) past them. */
DTMM_INLINE int32_t fwcs_table(const dtmm_conv_params *p, const dtmm_dims *id,
                               const dtmm_dims *od, int32_t kh_n, int32_t kw_n,
                               const int8_t *in_n, const int8_t *zp_run, int32_t left_px,
                               int32_t *oyp, int32_t *oxp, const int8_t **tab)
{
    const int32_t c = id->c, w_in = id->w, sw = p->stride_w;
    int32_t oy = *oyp, ox = *oxp;
    const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * sw - p->pad_left;
    if (left_px >= FWCS_R && ox + FWCS_R <= od->w && iy0 >= 0 && iy0 + kh_n <= id->h
        && ix0 >= 0 && ix0 + (FWCS_R - 1) * sw + kw_n <= w_in) {
        /* the R pixels lie on one row and every tap inside the input */
        const int8_t *rowp = in_n + (iy0 * w_in + ix0) * c;
        const int32_t step = sw * c;
        const int8_t **t = tab;
        for (int32_t kh = 0; kh < kh_n; kh++, rowp += w_in * c) {
            const int8_t *pp = rowp;
            for (int32_t kw = 0; kw < kw_n; kw++, pp += c, t += FWCS_R) {
                DTMM_UNROLL
                for (int32_t r = 0; r < FWCS_R; r++) t[r] = pp + r * step;
            }
        }
        ox += FWCS_R;
        if (ox == od->w) {
            ox = 0;
            oy++;
        }
        *oyp = oy;
        *oxp = ox;
        return FWCS_R;
    }
    int32_t live = 0;
    for (int32_t r = 0; r < FWCS_R; r++) {
        if (r >= left_px) { /* dead lane: every tap reads zp_run */
            for (int32_t k = 0; k < kh_n * kw_n; k++) tab[k * FWCS_R + r] = zp_run;
            continue;
        }
        const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * sw - p->pad_left;
        live++;
        if (++ox == od->w) {
            ox = 0;
            oy++;
        }
        const int8_t **t = tab + r;
        for (int32_t kh = 0; kh < kh_n; kh++) {
            const int32_t iy = y0 + kh;
            if ((uint32_t)iy >= (uint32_t)id->h) {
                for (int32_t kw = 0; kw < kw_n; kw++, t += FWCS_R) *t = zp_run;
                continue;
            }
            const int32_t rowoff = iy * w_in;
            for (int32_t kw = 0; kw < kw_n; kw++, t += FWCS_R) {
                const int32_t ix = x0 + kw;
                *t = (uint32_t)ix < (uint32_t)w_in ? in_n + (rowoff + ix) * c : zp_run;
            }
        }
    }
    *oyp = oy;
    *oxp = ox;
    return live;
}

/* ------------------------------------------------------------------ operator body */

/* dst[0:n] = src[0:n]: a pixel's constant outputs (the dead filters' row). */
DTMM_INLINE void copy_row(int8_t *dst, const int8_t *src, int32_t n)
{
#if DTMM_USE_MVE
    dtmm_mve_copy(dst, src, n);
#else
    memcpy(dst, src, (size_t)n);
#endif
}

/* The generic per-block filter loop (every path; cptr of cptr_bits; use16: the DSP
 * int16 runs in tab). */
DTMM_INLINE void fwcs_block_generic(const dtmm_conv_params *p, const dtmm_fwcs *fw,
                                    const fwcs_rec *recs, const int8_t *const *tab,
                                    int8_t *o, int32_t live, const void *vctx,
                                    const int cptr_bits, const int use16)
{
    const int32_t c_in = fw->size, c_out = fw->c_out;
    const uint32_t inv = (65536u + (uint32_t)c_in - 1u) / (uint32_t)c_in;
    const uint8_t *cptr8 = (const uint8_t *)fw->cptr;
    const uint16_t *cptr16 = (const uint16_t *)fw->cptr;
    const int8_t *w = fw->arr;
    int32_t j = 0;
#if !DTMM_USE_DSP
    (void)use16;
#endif
    for (const fwcs_rec *rc = recs; rc->n; rc++) {
        int32_t acc[FWCS_R];
        for (int32_t r = 0; r < FWCS_R; r++) acc[r] = rc->init;
        for (const int32_t j1 = j + rc->n; j < j1; j++, w += c_in) {
            const uint32_t cp = cptr_bits == 8 ? cptr8[j] : cptr16[j];
            const int8_t *const *x = tab + ((cp * inv) >> 16) * FWCS_R;
#if DTMM_USE_DSP
            if (use16) {
                dot_r16(w, x, c_in, acc);
                continue;
            }
#endif
            dot_r(w, x, c_in, acc);
        }
        store_r(acc, live, o + rc->ch, c_out, rc, p, vctx);
    }
}

#if DTMM_HOST_PATH
/* ------------------------------------------------------------------ host fast path
 * DTMM_HOST_FAST only (see dtmm_isa.h): the host shared-library build
 * (dtmm.codegen.backends.build_host_model) defines it; no Cortex-M build compiles this
 * section, and the plain-C path above (what a Cortex-M without DSP/MVE runs) is
 * tested separately (tests/test_kernels.py, variant c_r4).  Same bits as every path.
 *
 * Both versions widen the input once per image into an int16 copy padded with in_zp
 * (a stack VLA, so no bounds checks after that), take the output pixels in blocks of
 * up to 8 in raster order (a block may wrap rows; only the image's last block has idle
 * lanes, which read pixel 0 and are not stored), and per block and filter add up the
 * products of the filter's kept filterlets with each pixel's input runs into one
 * int32 sum per pixel.  The requantization is vectorised too (a scalar one per output
 * cost more than all the MACs of a 90%-pruned layer).
 *
 * x86 with AVX2 (checked at run time, so a portable build gets it too; fwcs_host_avx2):
 *   the int16 copy keeps C_in (no channel padding).  A filter's kept filterlets at
 *   consecutive kernel columns of one kernel row are one run, contiguous both in arr
 *   and in the window (NHWC), so small C_in packs several filterlets per vector; each
 *   run is read 16 weights at a time (sign-extended once, shared by the 8 pixels; the
 *   last 16 masked to the run's length, so the 16 inputs read there may run past it,
 *   into the next pixel or a skipped row: finite values times zero weights).
 *   Per pixel one int32 vector accumulator kept across all of the filter's runs
 *   (VPMADDWD + VPADDD per 16 weights; int8 x int8 pair sums are exact in int32 and
 *   the int32 sums wrap like the plain loops'), one horizontal reduction per filter
 *   and block, and the requantization of the 8 pixels of a filter as one vector
 *   (fwcs_host_rq8).  Measured faster than the dense host kernel on the same layer at
 *   any density (ResNet-8 / VGG shapes), so it serves every layer.
 * Elsewhere (plain C for the auto-vectoriser; fwcs_host_c): channels padded to a
 *   multiple of 16 (C16) in the copy and in a per-call copy of arr, so every filterlet
 *   is whole 16-lane vectors; per filterlet one dtmm_host_dot_1x4 of 4 pixels (gcc
 *   only emits pmaddwd for a reduction loop, so one horizontal sum per filterlet);
 *   sums of a block in a filter-major tile, then per pixel its row of C_out sums
 *   requantized as one loop over the channels padded to 16.  Layers keeping more than
 *   a quarter of their filterlets, or with C_in < 8, go to the dense kernel's host
 *   path instead (fwcs_host_dense; measured break-even on an AVX2 host).
 * Either returns 0 (then the plain path runs) when its buffers would pass
 * DTMM_HOST_MAX_STACK. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) \
    && !defined(DTMM_HOST_NO_X86_SIMD)
#  include <immintrin.h>
#  define FWCS_HOST_AVX2 1
#else
#  define FWCS_HOST_AVX2 0
#endif
#define FWCS_HOST_P 8 /* pixels per block */

/* The dense kernel's host path on the weights decoded per call (zeros where pruned)
 * with the bias restored (offset + in_zp * sum(w)). */
static int fwcs_host_dense(const dtmm_conv_params *p, const dtmm_requant_params *q,
                           const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                           const int32_t *offset, const dtmm_dims *od, int8_t *out)
{
    const int32_t c_in = id->c, kk = fw->kh * fw->kw, c_out = fw->c_out;
    if ((int64_t)c_out * kk * c_in + 4 * (int64_t)c_out + 64 > DTMM_HOST_MAX_STACK) return 0;
    int8_t wd[c_out * kk * c_in];
    int32_t bias[c_out];
    memset(wd, 0, (size_t)(c_out * kk * c_in));
    const int8_t *w = fw->arr;
    int32_t j = 0;
    for (int32_t f = 0; f < c_out; f++) {
        const int32_t j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1);
        int32_t sum = 0;
        for (; j < j1; j++, w += c_in) {
            const int32_t cp = fw->cptr_bits == 8 ? ((const uint8_t *)fw->cptr)[j]
                                                  : ((const uint16_t *)fw->cptr)[j];
            memcpy(wd + f * kk * c_in + cp, w, (size_t)c_in);
            for (int32_t i = 0; i < c_in; i++) sum += w[i];
        }
        bias[f] = (int32_t)((uint32_t)offset[f] + (uint32_t)p->in_zp * (uint32_t)sum);
    }
    const dtmm_dims fd = {c_out, fw->kh, fw->kw, c_in};
    return dtmm_conv_s8(p, q, id, in, &fd, wd, bias, od, out, NULL) == DTMM_OK;
}

/* Kernel position of kept filterlet j. */
DTMM_INLINE int32_t fwcs_host_kpos(const dtmm_fwcs *fw, int32_t j)
{
    return (fw->cptr_bits == 8 ? ((const uint8_t *)fw->cptr)[j]
                               : ((const uint16_t *)fw->cptr)[j]) / fw->size;
}

/* 1 when padded row y (0 .. hp-1) of the int16 copy is read by some output row. */
DTMM_INLINE int fwcs_host_row_used(const dtmm_conv_params *p, int32_t kh_n, int32_t oh, int32_t y)
{
    for (int32_t kh = 0; kh < kh_n; kh++) {
        const int32_t t = y - kh;
        if (t >= 0 && t % p->stride_h == 0 && t / p->stride_h < oh) return 1;
    }
    return 0;
}

/* The int16 copy of image in_n: rows of wp pixels of c values (c >= C_in; channels
 * C_in .. c-1 and the padding pixels in_zp); rows no output reads are skipped. */
static void fwcs_host_widen(const dtmm_conv_params *p, const dtmm_dims *id, const dtmm_dims *od,
                            int32_t kh_n, const int8_t *in_n, int32_t c, int32_t wp,
                            int16_t *restrict xp)
{
    const int32_t c_in = id->c, hp = id->h + p->pad_top + p->pad_bottom;
    const int16_t zp = (int16_t)p->in_zp;
    for (int32_t y = 0; y < hp; y++) {
        if (!fwcs_host_row_used(p, kh_n, od->h, y)) continue;
        const int32_t iy = y - p->pad_top;
        int16_t *restrict row = xp + y * wp * c;
        if ((uint32_t)iy >= (uint32_t)id->h) {
            for (int32_t i = 0; i < wp * c; i++) row[i] = zp;
            continue;
        }
        const int8_t *restrict src = in_n + iy * id->w * c_in;
        int16_t *restrict dst = row + p->pad_left * c;
        for (int32_t i = 0; i < p->pad_left * c; i++) row[i] = zp;
        if (c == c_in) { /* the row's pixels are one contiguous run */
            for (int32_t i = 0; i < id->w * c; i++) dst[i] = src[i];
        } else {
            for (int32_t x = 0; x < id->w; x++, src += c_in, dst += c) {
                for (int32_t i = 0; i < c_in; i++) dst[i] = src[i];
                for (int32_t i = c_in; i < c; i++) dst[i] = zp;
            }
        }
        for (int32_t i = (p->pad_left + id->w) * c; i < wp * c; i++) row[i] = zp;
    }
}

/* Window origins of the (up to 8) output pixels of the block starting at raster
 * position (*oy, *ox), advanced past it; idle lanes get lane 0's. */
DTMM_INLINE void fwcs_host_block(const dtmm_conv_params *p, const dtmm_dims *od, const int16_t *xp,
                                 int32_t c, int32_t wp, int32_t live, int32_t *oy, int32_t *ox,
                                 const int16_t **b)
{
    for (int32_t r = 0; r < FWCS_HOST_P; r++) {
        if (r >= live) {
            b[r] = b[0];
            continue;
        }
        b[r] = xp + (*oy * p->stride_h * wp + *ox * p->stride_w) * c;
        if (++*ox == od->w) {
            *ox = 0;
            ++*oy;
        }
    }
}

#if FWCS_HOST_AVX2
/* 1 when the CPU runs AVX2 (checked once; a benign race between threads). */
static int fwcs_host_has_avx2(void)
{
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return has;
}

/* One run of a filter: len weights at w (contiguous in arr) against the len inputs
 * at offset xoff of each pixel's window. */
typedef struct {
    const int8_t *w;
    int32_t xoff, len;
} fwcs_host_run;

/* Requantization constants of one output channel for fwcs_host_rq8. */
typedef struct {
    int32_t mult, left, right, half, mask, min_mult;
} fwcs_host_rq;

/* 16 x 0xff then 16 x 0: the 16 bytes at fwcs_host_mask + 16 - n keep the first n
 * lanes of a vector (n <= 16). */
static const int8_t fwcs_host_mask[32] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                          -1, -1, -1, -1, -1, -1, -1, -1};

/* dtmm_requant_s8 of 8 int32 lanes sharing one channel's constants, bit for bit:
 *   x = acc << left (wrapping, as the reference's uint32 shift);
 *   srdhm(x, m) = (x * m + 2^30) >> 31 with an arithmetic shift (for ab = x * m < 0
 *     the reference's truncating (ab + 1 - 2^30) / 2^31 is the same floor), of which
 *     only bits 31..62 are kept, so a logical 64-bit shift gives them; the one
 *     overflow x = m = INT32_MIN gives INT32_MIN there and is flipped to INT32_MAX;
 *   rdbpot: (q >> right) + ((q & mask) > (mask >> 1) + (q < 0));
 *   + out_zp, clamp to [act_min, act_max]. */
__attribute__((target("avx2"), always_inline)) static inline __m256i
fwcs_host_rq8(__m256i acc, const fwcs_host_rq *c, __m256i zp, __m256i lo, __m256i hi)
{
    const __m256i x = _mm256_sll_epi32(acc, _mm_cvtsi32_si128(c->left));
    const __m256i m = _mm256_set1_epi32(c->mult);
    const __m256i round = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, m), round), 31);
    const __m256i odd = _mm256_srli_epi64(
        _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), m), round), 31);
    __m256i q = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    q = _mm256_xor_si256(q, _mm256_and_si256(_mm256_cmpeq_epi32(x, _mm256_set1_epi32(INT32_MIN)),
                                             _mm256_set1_epi32(c->min_mult)));
    const __m256i rem = _mm256_and_si256(q, _mm256_set1_epi32(c->mask));
    const __m256i thr = _mm256_sub_epi32(_mm256_set1_epi32(c->half),
                                         _mm256_cmpgt_epi32(_mm256_setzero_si256(), q));
    __m256i v = _mm256_sub_epi32(_mm256_sra_epi32(q, _mm_cvtsi32_si128(c->right)),
                                 _mm256_cmpgt_epi32(rem, thr));
    v = _mm256_add_epi32(v, zp);
    return _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
}

/* The block of P (8 or 4) pixels with windows b[r] (the first `live` stored at
 * out + r * c_out): out[r * c_out + f] = requant(offset[f] + the products of f's
 * runs with window r). */
__attribute__((target("avx2"), always_inline)) static inline void
fwcs_host_filters_avx2(const int16_t *const *b, const fwcs_host_run *run, const int32_t *nrun,
                       const int32_t *offset, const fwcs_host_rq *rq, const dtmm_conv_params *p,
                       int32_t c_out, int8_t *out, int32_t live, const int P)
{
    const __m256i zp = _mm256_set1_epi32(p->out_zp), lo = _mm256_set1_epi32(p->act_min);
    const __m256i hi = _mm256_set1_epi32(p->act_max);
    for (int32_t f = 0; f < c_out; f++) {
        __m256i a[8];
        for (int r = 0; r < P; r++) a[r] = _mm256_setzero_si256();
        for (const fwcs_host_run *e = run + nrun[f]; run < e; run++) {
            const int8_t *w = run->w;
            int32_t x = run->xoff;
            for (int32_t n = run->len; n > 0; n -= 16, w += 16, x += 16) {
                const __m128i keep = _mm_loadu_si128(
                    (const __m128i *)(fwcs_host_mask + 16 - (n < 16 ? n : 16)));
                const __m256i wv = _mm256_cvtepi8_epi16(
                    _mm_and_si128(_mm_loadu_si128((const __m128i *)w), keep));
                for (int r = 0; r < P; r++) {
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(b[r] + x));
                    a[r] = _mm256_add_epi32(a[r], _mm256_madd_epi16(xv, wv));
                }
            }
        }
        /* horizontal sums: lane r of s = offset[f] + the sum of a[r]'s 8 lanes */
        __m256i s;
        const __m256i g0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]),
                                             _mm256_hadd_epi32(a[2], a[3]));
        if (P == 8) {
            const __m256i g1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]),
                                                 _mm256_hadd_epi32(a[6], a[7]));
            s = _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20),
                                 _mm256_permute2x128_si256(g0, g1, 0x31));
        } else {
            s = _mm256_castsi128_si256(_mm_add_epi32(_mm256_castsi256_si128(g0),
                                                     _mm256_extracti128_si256(g0, 1)));
        }
        s = _mm256_add_epi32(s, _mm256_set1_epi32(offset[f]));
        int32_t v[8];
        _mm256_storeu_si256((__m256i *)v, fwcs_host_rq8(s, &rq[f], zp, lo, hi));
        for (int32_t r = 0; r < live; r++) out[r * c_out + f] = (int8_t)v[r];
    }
}

__attribute__((target("avx2"))) static void
fwcs_host_filters_avx2_8(const int16_t *const *b, const fwcs_host_run *run, const int32_t *nrun,
                         const int32_t *offset, const fwcs_host_rq *rq,
                         const dtmm_conv_params *p, int32_t c_out, int8_t *out, int32_t live)
{
    fwcs_host_filters_avx2(b, run, nrun, offset, rq, p, c_out, out, live, 8);
}

__attribute__((target("avx2"))) static void
fwcs_host_filters_avx2_4(const int16_t *const *b, const fwcs_host_run *run, const int32_t *nrun,
                         const int32_t *offset, const fwcs_host_rq *rq,
                         const dtmm_conv_params *p, int32_t c_out, int8_t *out, int32_t live)
{
    fwcs_host_filters_avx2(b, run, nrun, offset, rq, p, c_out, out, live, 4);
}

static int fwcs_host_avx2(const dtmm_conv_params *p, const dtmm_requant_params *q,
                          const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                          const int32_t *offset, const dtmm_dims *od, int8_t *out)
{
    const int32_t c_in = id->c, kw_n = fw->kw, c_out = fw->c_out;
    const int32_t nk = dtmm_index_at(fw->fidx, fw->fidx_bits, c_out);
    const int32_t hp = id->h + p->pad_top + p->pad_bottom, wp = id->w + p->pad_left + p->pad_right;
    const int32_t nx = hp * wp * c_in + 16; /* 16 of slack: a run's last 16 may pass it */
    if ((int64_t)nx * 2 + (int64_t)nk * (int64_t)sizeof(fwcs_host_run)
            + (int64_t)c_out * (4 + (int64_t)sizeof(fwcs_host_rq)) + (int64_t)kw_n * c_in + 256
        > DTMM_HOST_MAX_STACK)
        return 0;
    int16_t xp[nx];
    fwcs_host_run run[nk > 0 ? nk : 1];
    int32_t nrun[c_out];
    fwcs_host_rq rq[c_out];
    int8_t wtail[kw_n * c_in + 32];
    memset(xp + nx - 16, 0, 16 * sizeof(int16_t));
    /* runs: filterlets of one filter at consecutive kernel columns of one kernel row */
    int32_t nr = 0, j = 0;
    for (int32_t f = 0; f < c_out; f++) {
        const int32_t j1 = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1), r0 = nr;
        while (j < j1) {
            const int32_t k = fwcs_host_kpos(fw, j);
            int32_t n = 1;
            while (j + n < j1 && k % kw_n + n < kw_n && fwcs_host_kpos(fw, j + n) == k + n) n++;
            run[nr++] = (fwcs_host_run){fw->arr + j * c_in, ((k / kw_n) * wp + k % kw_n) * c_in,
                                        n * c_in};
            j += n;
        }
        nrun[f] = nr - r0;
        const int32_t s = q->shift[f], right = s > 0 ? 0 : -s;
        const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
        rq[f] = (fwcs_host_rq){q->multiplier[f], s > 0 ? s : 0, right, mask >> 1, mask,
                               q->multiplier[f] == INT32_MIN ? -1 : 0};
    }
    /* Runs read whole multiples of 16 weights.  Those that would read past the end of
     * arr (a suffix of the runs, all starting fewer than KW * C_in + 16 bytes before
     * it) read a copy of that tail of arr followed by 16 zero bytes instead. */
    const int8_t *const arr_end = fw->arr + nk * c_in;
    int32_t t0 = nr;
    while (t0 > 0 && run[t0 - 1].w + ((run[t0 - 1].len + 15) & ~15) > arr_end) t0--;
    if (t0 < nr) {
        const int8_t *const tail = run[t0].w;
        memcpy(wtail, tail, (size_t)(arr_end - tail));
        memset(wtail + (arr_end - tail), 0, 16);
        for (int32_t i = t0; i < nr; i++) run[i].w = wtail + (run[i].w - tail);
    }
    const int32_t hw_out = od->h * od->w;
    for (int32_t n = 0; n < id->n; n++) {
        fwcs_host_widen(p, id, od, fw->kh, in + n * id->h * id->w * c_in, c_in, wp, xp);
        int32_t oy = 0, ox = 0;
        for (int32_t p0 = 0; p0 < hw_out; p0 += FWCS_HOST_P) {
            const int32_t live = hw_out - p0 < FWCS_HOST_P ? hw_out - p0 : FWCS_HOST_P;
            const int16_t *b[FWCS_HOST_P];
            fwcs_host_block(p, od, xp, c_in, wp, live, &oy, &ox, b);
            int8_t *o = out + (n * hw_out + p0) * c_out;
            if (live > 4)
                fwcs_host_filters_avx2_8(b, run, nrun, offset, rq, p, c_out, o, live);
            else
                fwcs_host_filters_avx2_4(b, run, nrun, offset, rq, p, c_out, o, live);
        }
    }
    return 1;
}
#endif /* FWCS_HOST_AVX2 */

/* Plain-C sums of 4 pixels: t[f * 8 + r] = offset[f] + sum over f's filterlets of
 * dot(w_j[0:c16], b[r][koff[j] ..]). */
static void fwcs_host_filters_c4(const int16_t *const *b, const int8_t *w, const int32_t *koff,
                                 const int32_t *nf, const int32_t *offset, int32_t c_out,
                                 int32_t c16, int32_t *t)
{
    for (int32_t f = 0; f < c_out; f++) {
        int32_t a[4] = {offset[f], offset[f], offset[f], offset[f]};
        for (int32_t e = nf[f]; e > 0; e--, koff++, w += c16) {
            int32_t s[4];
            const int32_t off = *koff;
            dtmm_host_dot_1x4(w, b[0] + off, b[1] + off, b[2] + off, b[3] + off, c16, s);
            for (int32_t r = 0; r < 4; r++) a[r] += s[r];
        }
        for (int32_t r = 0; r < 4; r++) t[f * FWCS_HOST_P + r] = a[r];
    }
}

static int fwcs_host_c(const dtmm_conv_params *p, const dtmm_requant_params *q,
                       const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                       const int32_t *offset, const dtmm_dims *od, int8_t *out)
{
    const int32_t c_in = id->c, kw_n = fw->kw, c_out = fw->c_out;
    const int32_t nk = dtmm_index_at(fw->fidx, fw->fidx_bits, c_out);
    if ((c_in < 8 || 4 * (int64_t)nk > (int64_t)c_out * fw->kh * kw_n)
        && fwcs_host_dense(p, q, id, in, fw, offset, od, out))
        return 1;
    const int32_t c = (c_in + 15) & ~15;    /* C16 */
    const int32_t cop = (c_out + 15) & ~15; /* C_out padded for the requantization loop */
    const int32_t hp = id->h + p->pad_top + p->pad_bottom, wp = id->w + p->pad_left + p->pad_right;
    if ((int64_t)hp * wp * c * 2 + (int64_t)nk * (4 + c) + (int64_t)cop * (4 * FWCS_HOST_P + 17)
            + 256 > DTMM_HOST_MAX_STACK)
        return 0;
    int16_t xp[hp * wp * c > 0 ? hp * wp * c : 1];
    int32_t koff[nk > 0 ? nk : 1];
    int8_t wpad[nk * c > 0 ? nk * c : 1];
    int32_t nf[cop], mp[cop], sp[cop], t[cop * FWCS_HOST_P], row[cop];
    int8_t orow[cop];
    for (int32_t j = 0; j < nk; j++) {
        const int32_t k = fwcs_host_kpos(fw, j);
        koff[j] = ((k / kw_n) * wp + k % kw_n) * c;
        memcpy(wpad + j * c, fw->arr + j * c_in, (size_t)c_in);
        memset(wpad + j * c + c_in, 0, (size_t)(c - c_in));
    }
    for (int32_t f = 0; f < cop; f++) { /* padding channels: sums 0, multiplier 0 */
        nf[f] = f < c_out ? dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1)
                                - dtmm_index_at(fw->fidx, fw->fidx_bits, f)
                          : 0;
        mp[f] = f < c_out ? q->multiplier[f] : 0;
        sp[f] = f < c_out ? q->shift[f] : 0;
        row[f] = 0;
    }
    const int32_t hw_out = od->h * od->w;
    for (int32_t n = 0; n < id->n; n++) {
        fwcs_host_widen(p, id, od, fw->kh, in + n * id->h * id->w * c_in, c, wp, xp);
        int32_t oy = 0, ox = 0;
        for (int32_t p0 = 0; p0 < hw_out; p0 += FWCS_HOST_P) {
            const int32_t live = hw_out - p0 < FWCS_HOST_P ? hw_out - p0 : FWCS_HOST_P;
            const int16_t *b[FWCS_HOST_P];
            fwcs_host_block(p, od, xp, c, wp, live, &oy, &ox, b);
            fwcs_host_filters_c4(b, wpad, koff, nf, offset, c_out, c, t);
            if (live > 4) fwcs_host_filters_c4(b + 4, wpad, koff, nf, offset, c_out, c, t + 4);
            int8_t *o = out + (n * hw_out + p0) * c_out;
            for (int32_t r = 0; r < live; r++, o += c_out) {
                for (int32_t f = 0; f < c_out; f++) row[f] = t[f * FWCS_HOST_P + r];
                dtmm_host_requant_row(row, NULL, cop, mp, sp, p->out_zp, p->act_min, p->act_max,
                                      orow);
                memcpy(o, orow, (size_t)c_out);
            }
        }
    }
    return 1;
}

static int fwcs_host(const dtmm_conv_params *p, const dtmm_requant_params *q, const dtmm_dims *id,
                     const int8_t *in, const dtmm_fwcs *fw, const int32_t *offset,
                     const dtmm_dims *od, int8_t *out)
{
#if FWCS_HOST_AVX2
    if (fwcs_host_has_avx2() && fwcs_host_avx2(p, q, id, in, fw, offset, od, out)) return 1;
#endif
    return fwcs_host_c(p, q, id, in, fw, offset, od, out);
}
#endif /* DTMM_HOST_PATH */

dtmm_status dtmm_conv_fwcs_s8(const dtmm_conv_params *p, const dtmm_requant_params *q,
                              const dtmm_dims *id, const int8_t *in, const dtmm_fwcs *fw,
                              const int32_t *offset, const dtmm_dims *od, int8_t *out,
                              void *scratch)
{
    const int32_t c_in = id->c, c_out = fw->c_out, kh_n = fw->kh, kw_n = fw->kw;
    const int32_t kk = kh_n * kw_n;
    if (fw->size != c_in || c_in < 1 || od->c != c_out || !offset
        || !dtmm_conv_params_ok(p, id, kh_n, kw_n, od))
        return DTMM_ERR_ARG;
    if ((fw->cptr_bits != 8 && fw->cptr_bits != 16)
        || (fw->fidx_bits != 8 && fw->fidx_bits != 16 && fw->fidx_bits != 32)
        || (int64_t)(kk - 1) * c_in >= 65536)
        return DTMM_ERR_ARG;

#if DTMM_HOST_PATH
    if (fwcs_host(p, q, id, in, fw, offset, od, out)) return DTMM_OK;
#endif
    /* scratch: recs[C_out + 1] | crow[align4(C_out)] | junk[align4(C_out)]
     * | zp_run[align4(C_in)] | (8-aligned) tab[KH*KW*R]
     * | MVE, DSP: kbuf[align4(C_out*KH*KW)] (kernel position per kept filterlet)
     * | DSP: int16 in_zp run [C_in], int16 windows [R][KH*KW][C_in] */
    fwcs_rec *recs = (fwcs_rec *)scratch;
    int8_t *crow = (int8_t *)(recs + c_out + 1);
    int8_t *junk = crow + align4(c_out);
    int8_t *zp_run = junk + align4(c_out);
    const uintptr_t t = (uintptr_t)(zp_run + align4(c_in));
    const int8_t **tab = (const int8_t **)((t + 7u) & ~(uintptr_t)7u);
    memset(zp_run, (int8_t)p->in_zp, (size_t)c_in);
    const int8_t *zp_src = zp_run;
    int16_t *wide = 0;
    int use16 = 0;
    (void)junk;
#if DTMM_USE_DSP
    /* Widen to int16 when each widened run serves enough filterlets: widening costs
     * about 1.25 instructions per value, each use then saves about 0.3-0.6 per value
     * (measured break-even: ~3 kept filterlets per kernel position; widen from 4). */
    use16 = dtmm_index_at(fw->fidx, fw->fidx_bits, c_out) >= 4 * kk;
    if (use16) { /* int16 windows after the table; the int16 in_zp run first */
        wide = (int16_t *)(void *)((uint8_t *)(void *)(tab + kk * FWCS_R)
                                   + align4(c_out * kk));
        for (int32_t i = 0; i < c_in; i++) wide[i] = (int16_t)p->in_zp;
        zp_src = (const int8_t *)(void *)wide;
        wide += c_in;
    }
#endif
#if !DTMM_USE_DSP
    (void)wide;
#endif

    /* records of the live filters; constant outputs of the dead ones */
    int32_t n_live = 0;
    for (int32_t f = 0; f < c_out; f++) {
        const int32_t n = dtmm_index_at(fw->fidx, fw->fidx_bits, f + 1)
                          - dtmm_index_at(fw->fidx, fw->fidx_bits, f);
        const int32_t s = q->shift[f];
        if (n == 0) {
            crow[f] = dtmm_requant_s8(offset[f], q->multiplier[f], s, p->out_zp, p->act_min,
                                      p->act_max);
            continue;
        }
        fwcs_rec *rc = &recs[n_live++];
        rc->init = offset[f];
        rc->n = n;
        rc->mult = q->multiplier[f];
        rc->left = s > 0 ? s : 0;
        rc->neg_right = s > 0 ? 0 : s;
        rc->one = s < 0;
        rc->ch = f;
#if DTMM_USE_DSP
        rc->half = !dtmm_requant_fast_ok(rc->mult, s) ? -1 : s < 0 ? 1 << (-s - 1) : 0;
#else
        rc->zp = p->out_zp;
#endif
    }
    memset(&recs[n_live], 0, sizeof(fwcs_rec)); /* sentinel: n = 0 */
    const int has_dead = n_live < c_out;

    const int32_t hw_out = od->h * od->w;
#if DTMM_USE_MVE
    const int32x4_t vctx[2] = {vdupq_n_s32(p->act_min), vdupq_n_s32(p->act_max)};
#else
    const void *vctx = 0;
#endif
#if FWCS_FAST_MVE || FWCS_FAST_DSP
    /* the asm loops: each kept filterlet's kernel position as a byte (after the table) */
    uint8_t *kbuf = (uint8_t *)(void *)(tab + kk * FWCS_R);
#  if FWCS_FAST_MVE
    const int fast = fwcs_mve_vf(c_in) >= 0 && kk <= 256;
    const uint32x4_t lane_rows = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)c_out);
#  else
    const int fast = (c_in & 3) == 0 && kk <= 256;
#  endif
    if (fast) {
        const int32_t nk = dtmm_index_at(fw->fidx, fw->fidx_bits, c_out);
        for (int32_t j = 0; j < nk; j++)
            kbuf[j] = (uint8_t)((fw->cptr_bits == 8 ? ((const uint8_t *)fw->cptr)[j]
                                                    : ((const uint16_t *)fw->cptr)[j]) / c_in);
    }
#endif
    for (int32_t n = 0; n < id->n; n++) {
        const int8_t *in_n = in + n * id->h * id->w * c_in;
        int8_t *out_n = out + n * hw_out * c_out;
        int32_t oy = 0, ox = 0;
        for (int32_t p0 = 0; p0 < hw_out; p0 += FWCS_R) {
            const int32_t live = fwcs_table(p, id, od, kh_n, kw_n, in_n, zp_src, hw_out - p0,
                                            &oy, &ox, tab);
            int8_t *o = out_n + p0 * c_out;
#if DTMM_USE_DSP
            if (use16) { /* int16 copies of the block's runs; tab then points at them */
                for (int32_t k = 0; k < kk; k++) {
                    for (int32_t r = 0; r < FWCS_R; r++) {
                        const int8_t *src = tab[k * FWCS_R + r];
                        if (src == zp_src) continue;
                        int16_t *dst = wide + (r * kk + k) * c_in;
                        widen_s16(dst, src, c_in);
                        tab[k * FWCS_R + r] = (const int8_t *)(void *)dst;
                    }
                }
            }
#endif
            if (has_dead)
                for (int32_t r = 0; r < live; r++) copy_row(o + r * c_out, crow, c_out);
            if (n_live == 0) continue;
#if FWCS_FAST_MVE
            if (fast) {
                DTMM_UNROLL
                for (int32_t g = 0; g < FWCS_R; g += FWCS_G) {
                    if (g > 0 && g >= live) break;
                    const int32_t gl = live - g < FWCS_G ? live - g : FWCS_G;
                    const uint32x4_t rows = vaddq_n_u32(lane_rows, (uint32_t)(o + g * c_out));
                    const uint32x4_t addr = vpselq_u32(rows, vdupq_n_u32((uint32_t)junk),
                                                       vctp32q((uint32_t)gl));
                    fwcs_filters(recs, fw->arr, kbuf, tab + g, c_in, addr, vctx[0], vctx[1]);
                }
                continue;
            }
#endif
#if FWCS_FAST_DSP
            if (fast) {
                fwcs_block_dsp4(p, fw, recs, tab, kbuf, o, live, use16);
                continue;
            }
#endif
            if (use16 && fw->cptr_bits == 8)
                fwcs_block_generic(p, fw, recs, tab, o, live, vctx, 8, 1);
            else if (use16)
                fwcs_block_generic(p, fw, recs, tab, o, live, vctx, 16, 1);
            else if (fw->cptr_bits == 8)
                fwcs_block_generic(p, fw, recs, tab, o, live, vctx, 8, 0);
            else
                fwcs_block_generic(p, fw, recs, tab, o, live, vctx, 16, 0);
        }
    }
    return DTMM_OK;
}
