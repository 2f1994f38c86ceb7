/*
 * dtmm_isa.h - internal: choice of the ISA path of every kernel and the few SIMD
 * primitives the DSP / MVE paths use.  Not part of the public API.
 *
 * Exactly one of DTMM_USE_MVE, DTMM_USE_DSP, DTMM_USE_SCALAR is 1:
 *
 *   DTMM_FORCE_SCALAR                      -> plain C (ablation; any target)
 *   Helium/MVE available                   -> MVE path (16 int8 lanes, tail predication)
 *   DSP extension available                -> DSP path (__smlad: 2 x 16-bit MACs)
 *   otherwise (host)                       -> plain C
 *
 * "Available" means: inside a dtmm.codegen.platform build (DTMM_TARGET_CORTEX_M
 * defined) the platform's DTMM_ARCH_MVE / DTMM_ARCH_DSP macros decide (so its
 * simd="dsp" / "scalar" ablations work on a Cortex-M55); elsewhere the compiler's
 * __ARM_FEATURE_MVE / __ARM_FEATURE_DSP decide, and -DDTMM_NO_MVE drops MVE by hand.
 *
 * Host testing of the SIMD paths: -DDTMM_EMULATE_MVE or -DDTMM_EMULATE_DSP compile
 * the MVE or DSP path on any host, with each intrinsic replaced by a plain-C model
 * of its exact integer semantics (below).  The tests run every path this way.
 */
#ifndef DTMM_ISA_H
#define DTMM_ISA_H

#include <stdint.h>
#include <string.h>

#if defined(DTMM_FORCE_SCALAR)
#  define DTMM_USE_MVE 0
#  define DTMM_USE_DSP 0
#elif defined(DTMM_EMULATE_MVE)
#  define DTMM_USE_MVE 1
#  define DTMM_USE_DSP 0
#elif defined(DTMM_EMULATE_DSP)
#  define DTMM_USE_MVE 0
#  define DTMM_USE_DSP 1
#elif defined(DTMM_TARGET_CORTEX_M) && defined(DTMM_ARCH_MVE) && defined(__ARM_FEATURE_MVE)
#  define DTMM_USE_MVE 1
#  define DTMM_USE_DSP 0
#elif defined(DTMM_TARGET_CORTEX_M) && defined(DTMM_ARCH_DSP) && defined(__ARM_FEATURE_DSP)
#  define DTMM_USE_MVE 0
#  define DTMM_USE_DSP 1
#elif defined(DTMM_TARGET_CORTEX_M)
#  define DTMM_USE_MVE 0
#  define DTMM_USE_DSP 0
#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !defined(DTMM_NO_MVE)
#  define DTMM_USE_MVE 1
#  define DTMM_USE_DSP 0
#elif defined(__ARM_FEATURE_DSP)
#  define DTMM_USE_MVE 0
#  define DTMM_USE_DSP 1
#else
#  define DTMM_USE_MVE 0
#  define DTMM_USE_DSP 0
#endif
#define DTMM_USE_SCALAR (!DTMM_USE_MVE && !DTMM_USE_DSP)

/* DTMM_DSP_ASM / DTMM_MVE_ASM: the hand-scheduled inline-asm loops of the DSP and MVE
 * paths.  They name up to 14 core registers at once, which GCC allocates only when it
 * optimizes for speed: at -O0 and -Og r7 is the frame pointer, and at -O1 and -Os some
 * blocks still fail with "'asm' operand has impossible constraints".  Without
 * __OPTIMIZE__, with __OPTIMIZE_SIZE__ (-Os, -Oz) or with -DDTMM_NO_ASM they are off and
 * the same loops run in C and intrinsics (the code the emulated host builds test; same
 * bits, more instructions).  The preprocessor cannot tell -O1 or -Og from -O2: build the
 * kernels at -O2 or -O3, or define DTMM_NO_ASM (an exported project's Makefile defines it
 * whenever its CFLAGS' last -O level is not -O2, -O3 or -Ofast). */
#if !defined(DTMM_NO_ASM) && defined(__OPTIMIZE__) && !defined(__OPTIMIZE_SIZE__)
#  define DTMM_ASM_OK 1
#else
#  define DTMM_ASM_OK 0
#endif
#if DTMM_USE_DSP && !defined(DTMM_EMULATE_DSP) && DTMM_ASM_OK
#  define DTMM_DSP_ASM 1
#else
#  define DTMM_DSP_ASM 0
#endif
#if DTMM_USE_MVE && !defined(DTMM_EMULATE_MVE) && DTMM_ASM_OK
#  define DTMM_MVE_ASM 1
#else
#  define DTMM_MVE_ASM 0
#endif

/* DTMM_HOST_PATH: the plain-C path in the variant written for a host compiler's
 * auto-vectoriser (int16 im2col blocks on the stack, contiguous dot products that
 * gcc -O3 turns into pmaddwd / vpdpwssd, vectorisable requantization).  Only the
 * host shared-library build (dtmm.codegen.backends.build_host_model) defines
 * DTMM_HOST_FAST; Cortex-M builds (FORCE_SCALAR ablations, cores without DSP) keep
 * the plain loops.  Same bits, same (zero) planned scratch: its buffers are C99
 * variable-length arrays on the stack, bounded by DTMM_HOST_MAX_STACK bytes (a call
 * that would need more falls back to the plain loops). */
#if DTMM_USE_SCALAR && defined(DTMM_HOST_FAST)
#  define DTMM_HOST_PATH 1
#else
#  define DTMM_HOST_PATH 0
#endif
#ifndef DTMM_HOST_MAX_STACK
#  define DTMM_HOST_MAX_STACK (128 * 1024)
#endif

#if defined(__GNUC__)
#  define DTMM_INLINE static inline __attribute__((always_inline))
#  define DTMM_UNROLL _Pragma("GCC unroll 8")
#else
#  define DTMM_INLINE static inline
#  define DTMM_UNROLL
#endif

/* Unaligned little-endian loads / stores (one LDR/STR on Cortex-M4/M7/M55). */
DTMM_INLINE uint32_t dtmm_read_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
DTMM_INLINE void dtmm_write_u32(void *p, uint32_t v) { memcpy(p, &v, 4); }

/* ------------------------------------------------------------------ DSP */
#if DTMM_USE_DSP
#  if defined(DTMM_EMULATE_DSP)
/* Plain-C models of the ACLE SIMD32 intrinsics (exact semantics). */
DTMM_INLINE uint32_t dtmm_sxtb16(uint32_t x)
{
    uint32_t lo = (uint32_t)(int32_t)(int8_t)(x & 0xFF) & 0xFFFFu;
    uint32_t hi = (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFF) & 0xFFFFu;
    return lo | (hi << 16);
}
DTMM_INLINE uint32_t dtmm_sxtb16_ror8(uint32_t x) { return dtmm_sxtb16((x >> 8) | (x << 24)); }
DTMM_INLINE uint32_t dtmm_sxtab16(uint32_t a, uint32_t x)
{
    uint32_t e = dtmm_sxtb16(x);
    uint32_t lo = (a + e) & 0xFFFFu;
    uint32_t hi = ((a >> 16) + (e >> 16)) & 0xFFFFu;
    return lo | (hi << 16);
}
DTMM_INLINE uint32_t dtmm_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return dtmm_sxtab16(a, (x >> 8) | (x << 24));
}
DTMM_INLINE int32_t dtmm_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    int32_t p0 = (int32_t)(int16_t)(a & 0xFFFF) * (int32_t)(int16_t)(b & 0xFFFF);
    int32_t p1 = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)p0 + (uint32_t)p1);
}
/* SMLABB / SMLABT: acc + bottom(a) * bottom(b) / top(b) (16 x 16 bits). */
DTMM_INLINE int32_t dtmm_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)a * (int32_t)(int16_t)b));
}
DTMM_INLINE int32_t dtmm_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)(int16_t)a * (int32_t)(int16_t)(b >> 16)));
}
/* Packed signed byte max / min of 4 lanes (SSUB8 sets the GE flags, SEL picks). */
DTMM_INLINE uint32_t dtmm_max_s8x4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        const int8_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << i;
    }
    return r;
}
DTMM_INLINE uint32_t dtmm_min_s8x4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        const int8_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
        r |= (uint32_t)(uint8_t)(x < y ? x : y) << i;
    }
    return r;
}
/* QADD: saturating a + b.  SMMULR: (a * b + 2^31) >> 32 (64-bit product, rounded). */
DTMM_INLINE int32_t dtmm_qadd(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + b;
    return s > INT32_MAX ? INT32_MAX : s < INT32_MIN ? INT32_MIN : (int32_t)s;
}
DTMM_INLINE int32_t dtmm_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}
/* SMLATT: acc + top(a) * top(b). */
DTMM_INLINE int32_t dtmm_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc
                     + (uint32_t)((int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16)));
}
/* QDADD: saturating a + saturating 2 b.  SSAT #8: clamp to [-128, 127].  pack_b4: the
 * low bytes of b0..b3 as one word, b0 lowest (3 BFI). */
DTMM_INLINE int32_t dtmm_qdadd(int32_t a, int32_t b) { return dtmm_qadd(a, dtmm_qadd(b, b)); }
DTMM_INLINE int32_t dtmm_ssat8(int32_t x) { return x < -128 ? -128 : x > 127 ? 127 : x; }
DTMM_INLINE uint32_t dtmm_pack_b4(int32_t b0, int32_t b1, int32_t b2, int32_t b3)
{
    return ((uint32_t)b0 & 0xFFu) | ((uint32_t)b1 & 0xFFu) << 8 | ((uint32_t)b2 & 0xFFu) << 16
           | (uint32_t)b3 << 24;
}
#  else
#    include <arm_acle.h>
DTMM_INLINE int32_t dtmm_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabb((int32_t)a, (int32_t)b, acc);
}
DTMM_INLINE int32_t dtmm_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabt((int32_t)a, (int32_t)b, acc);
}
DTMM_INLINE int32_t dtmm_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlatt((int32_t)a, (int32_t)b, acc);
}
DTMM_INLINE uint32_t dtmm_max_s8x4(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
DTMM_INLINE uint32_t dtmm_min_s8x4(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
DTMM_INLINE int32_t dtmm_qadd(int32_t a, int32_t b) { return __qadd(a, b); }
DTMM_INLINE int32_t dtmm_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
DTMM_INLINE uint32_t dtmm_sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int8x4_t)x); }
DTMM_INLINE uint32_t dtmm_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
DTMM_INLINE uint32_t dtmm_sxtab16(uint32_t a, uint32_t x)
{
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}
DTMM_INLINE uint32_t dtmm_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
DTMM_INLINE int32_t dtmm_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}
DTMM_INLINE int32_t dtmm_qdadd(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("qdadd %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
DTMM_INLINE int32_t dtmm_ssat8(int32_t x) { return __ssat(x, 8); }
DTMM_INLINE uint32_t dtmm_pack_b4(int32_t b0, int32_t b1, int32_t b2, int32_t b3)
{
    uint32_t r = (uint32_t)b0;
    __asm__("bfi %0, %1, #8, #8\n\tbfi %0, %2, #16, #8\n\tbfi %0, %3, #24, #8"
            : "+&r"(r) : "r"(b1), "r"(b2), "r"(b3));
    return r;
}
#  endif
#endif /* DTMM_USE_DSP */

/* ------------------------------------------------------------------ MVE */
#if DTMM_USE_MVE
#  if defined(DTMM_EMULATE_MVE)
/* Plain-C model of the few arm_mve.h intrinsics the kernels use.  Predicated-off
 * lanes are neither read nor accumulated, as on hardware. */
typedef struct { int8_t v[16]; } int8x16_t;
typedef uint16_t mve_pred16_t;
DTMM_INLINE mve_pred16_t vctp8q(uint32_t n)
{
    return n >= 16 ? (mve_pred16_t)0xFFFF : (mve_pred16_t)((1u << n) - 1u);
}
DTMM_INLINE int8x16_t vldrbq_z_s8(const int8_t *p, mve_pred16_t pred)
{
    int8x16_t r;
    for (int i = 0; i < 16; i++) r.v[i] = ((pred >> i) & 1) ? p[i] : 0;
    return r;
}
DTMM_INLINE int8x16_t vldrbq_s8(const int8_t *p) { return vldrbq_z_s8(p, 0xFFFF); }
DTMM_INLINE int32_t vmladavaq_s8(int32_t acc, int8x16_t a, int8x16_t b)
{
    for (int i = 0; i < 16; i++) acc += (int32_t)a.v[i] * b.v[i];
    return acc;
}
DTMM_INLINE int32_t vaddvaq_s8(int32_t acc, int8x16_t a)
{
    for (int i = 0; i < 16; i++) acc += a.v[i];
    return acc;
}
DTMM_INLINE void vstrbq_p_s8(int8_t *p, int8x16_t a, mve_pred16_t pred)
{
    for (int i = 0; i < 16; i++)
        if ((pred >> i) & 1) p[i] = a.v[i];
}
DTMM_INLINE void vstrbq_s8(int8_t *p, int8x16_t a) { vstrbq_p_s8(p, a, 0xFFFF); }
DTMM_INLINE int8x16_t vdupq_n_s8(int8_t x)
{
    int8x16_t r;
    for (int i = 0; i < 16; i++) r.v[i] = x;
    return r;
}
/* 32-bit lanes (requantization).  A predicate has 4 bits per 32-bit lane. */
typedef struct { int32_t v[4]; } int32x4_t;
typedef struct { uint32_t v[4]; } uint32x4_t;
DTMM_INLINE mve_pred16_t vctp32q(uint32_t n)
{
    return n >= 4 ? (mve_pred16_t)0xFFFF : (mve_pred16_t)((1u << (4 * n)) - 1u);
}
DTMM_INLINE int32x4_t vdupq_n_s32(int32_t x)
{
    int32x4_t r = {{x, x, x, x}};
    return r;
}
DTMM_INLINE int32x4_t vsetq_lane_s32(int32_t x, int32x4_t a, int lane)
{
    a.v[lane] = x;
    return a;
}
DTMM_INLINE uint32x4_t vidupq_n_u32(uint32_t start, int imm)
{
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = start + (uint32_t)(i * imm);
    return r;
}
DTMM_INLINE uint32x4_t vmulq_n_u32(uint32x4_t a, uint32_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] *= b;
    return a;
}
DTMM_INLINE int32x4_t vaddq_n_s32(int32x4_t a, int32_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] + (uint32_t)b);
    return a;
}
DTMM_INLINE int32x4_t vandq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] &= b.v[i];
    return a;
}
DTMM_INLINE int32x4_t vshrq_n_s32(int32x4_t a, int n)
{
    for (int i = 0; i < 4; i++) a.v[i] >>= n;
    return a;
}
DTMM_INLINE int32x4_t vqaddq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) {
        const int64_t s = (int64_t)a.v[i] + b.v[i];
        a.v[i] = s > INT32_MAX ? INT32_MAX : s < INT32_MIN ? INT32_MIN : (int32_t)s;
    }
    return a;
}
DTMM_INLINE int32x4_t vmaxq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
}
DTMM_INLINE int32x4_t vminq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
    return a;
}
/* VSHL (register), shift in 0..31 here: non-saturating left shift (wraps). */
DTMM_INLINE int32x4_t vshlq_r_s32(int32x4_t a, int32_t n)
{
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] << n);
    return a;
}
/* VQRDMULH: saturate((2 * a * b + 2^31) >> 32). */
DTMM_INLINE int32x4_t vqrdmulhq_n_s32(int32x4_t a, int32_t b)
{
    for (int i = 0; i < 4; i++) {
        if (a.v[i] == INT32_MIN && b == INT32_MIN) {
            a.v[i] = INT32_MAX;
        } else {
            const int64_t p = 2 * (int64_t)a.v[i] * b + ((int64_t)1 << 31);
            a.v[i] = (int32_t)(p >> 32);
        }
    }
    return a;
}
/* VRSHL (register), shift n in -31..0 here: rounding arithmetic right shift by -n. */
DTMM_INLINE int32x4_t vrshlq_n_s32(int32x4_t a, int32_t n)
{
    if (n < 0)
        for (int i = 0; i < 4; i++)
            a.v[i] = (int32_t)(((int64_t)a.v[i] + ((int64_t)1 << (-n - 1))) >> -n);
    return a;
}
/* VSTRB.32 scatter: store the low byte of each enabled lane at base + offset. */
DTMM_INLINE void vstrbq_scatter_offset_p_s32(int8_t *base, uint32x4_t off, int32x4_t a,
                                             mve_pred16_t pred)
{
    for (int i = 0; i < 4; i++)
        if ((pred >> (4 * i)) & 1) base[off.v[i]] = (int8_t)a.v[i];
}
/* Pixel-vector MACs (pattern conv): 32-bit lanes, byte gathers. */
DTMM_INLINE uint32x4_t vaddq_n_u32(uint32x4_t a, uint32_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] += b;
    return a;
}
DTMM_INLINE int32x4_t vldrwq_z_s32(const int32_t *p, mve_pred16_t pred)
{
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = ((pred >> (4 * i)) & 1) ? p[i] : 0;
    return r;
}
DTMM_INLINE void vstrwq_p_s32(int32_t *p, int32x4_t a, mve_pred16_t pred)
{
    for (int i = 0; i < 4; i++)
        if ((pred >> (4 * i)) & 1) p[i] = a.v[i];
}
/* VLDRB.S32 gather: lane i = (int8) base[off[i]] (0 where predicated off). */
DTMM_INLINE int32x4_t vldrbq_gather_offset_z_s32(const int8_t *base, uint32x4_t off,
                                                 mve_pred16_t pred)
{
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = ((pred >> (4 * i)) & 1) ? base[off.v[i]] : 0;
    return r;
}
DTMM_INLINE int32x4_t vldrwq_s32(const int32_t *p) { return vldrwq_z_s32(p, 0xFFFF); }
DTMM_INLINE uint32x4_t vldrwq_z_u32(const uint32_t *p, mve_pred16_t pred)
{
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = ((pred >> (4 * i)) & 1) ? p[i] : 0;
    return r;
}
DTMM_INLINE uint32x4_t vldrwq_u32(const uint32_t *p) { return vldrwq_z_u32(p, 0xFFFF); }
DTMM_INLINE void vstrwq_s32(int32_t *p, int32x4_t a) { vstrwq_p_s32(p, a, 0xFFFF); }
DTMM_INLINE int32x4_t vldrbq_gather_offset_s32(const int8_t *base, uint32x4_t off)
{
    return vldrbq_gather_offset_z_s32(base, off, 0xFFFF);
}
/* VMLA.S32 (vector by scalar, accumulate): a + b * c, wrapping. */
DTMM_INLINE int32x4_t vmlaq_n_s32(int32x4_t a, int32x4_t b, int32_t c)
{
    for (int i = 0; i < 4; i++)
        a.v[i] = (int32_t)((uint32_t)a.v[i] + (uint32_t)b.v[i] * (uint32_t)c);
    return a;
}
/* 16-bit lanes (CSR conv: gathers of 8 kept weights' inputs).  A predicate has 2 bits
 * per 16-bit lane. */
typedef struct { int16_t v[8]; } int16x8_t;
typedef struct { uint16_t v[8]; } uint16x8_t;
DTMM_INLINE mve_pred16_t vctp16q(uint32_t n)
{
    return n >= 8 ? (mve_pred16_t)0xFFFF : (mve_pred16_t)((1u << (2 * n)) - 1u);
}
DTMM_INLINE uint16x8_t vldrbq_z_u16(const uint8_t *p, mve_pred16_t pred)
{
    uint16x8_t r;
    for (int i = 0; i < 8; i++) r.v[i] = ((pred >> (2 * i)) & 1) ? p[i] : 0;
    return r;
}
DTMM_INLINE uint16x8_t vldrhq_z_u16(const uint16_t *p, mve_pred16_t pred)
{
    uint16x8_t r;
    for (int i = 0; i < 8; i++) r.v[i] = ((pred >> (2 * i)) & 1) ? p[i] : 0;
    return r;
}
DTMM_INLINE int16x8_t vldrbq_z_s16(const int8_t *p, mve_pred16_t pred)
{
    int16x8_t r;
    for (int i = 0; i < 8; i++) r.v[i] = ((pred >> (2 * i)) & 1) ? p[i] : 0;
    return r;
}
/* VLDRH.U16 gather, offsets scaled by 2 (element index). */
DTMM_INLINE uint16x8_t vldrhq_gather_shifted_offset_z_u16(const uint16_t *base, uint16x8_t off,
                                                          mve_pred16_t pred)
{
    uint16x8_t r;
    for (int i = 0; i < 8; i++) r.v[i] = ((pred >> (2 * i)) & 1) ? base[off.v[i]] : 0;
    return r;
}
/* VLDRB.S16 gather: lane i = (int8) base[off[i]]. */
DTMM_INLINE int16x8_t vldrbq_gather_offset_z_s16(const int8_t *base, uint16x8_t off,
                                                 mve_pred16_t pred)
{
    int16x8_t r;
    for (int i = 0; i < 8; i++) r.v[i] = ((pred >> (2 * i)) & 1) ? base[off.v[i]] : 0;
    return r;
}
DTMM_INLINE uint16x8_t vldrbq_u16(const uint8_t *p) { return vldrbq_z_u16(p, 0xFFFF); }
DTMM_INLINE uint16x8_t vldrhq_u16(const uint16_t *p) { return vldrhq_z_u16(p, 0xFFFF); }
DTMM_INLINE int16x8_t vldrbq_s16(const int8_t *p) { return vldrbq_z_s16(p, 0xFFFF); }
DTMM_INLINE uint16x8_t vldrhq_gather_shifted_offset_u16(const uint16_t *base, uint16x8_t off)
{
    return vldrhq_gather_shifted_offset_z_u16(base, off, 0xFFFF);
}
DTMM_INLINE int16x8_t vldrbq_gather_offset_s16(const int8_t *base, uint16x8_t off)
{
    return vldrbq_gather_offset_z_s16(base, off, 0xFFFF);
}
DTMM_INLINE int32_t vmladavaq_s16(int32_t acc, int16x8_t a, int16x8_t b)
{
    for (int i = 0; i < 8; i++) acc = (int32_t)((uint32_t)acc + (uint32_t)((int32_t)a.v[i] * b.v[i]));
    return acc;
}
/* Depthwise conv: channels in lanes (16-bit products widened to 32-bit lanes by the
 * bottom / top multiplies, per-lane requantization, narrowing interleaved stores). */
DTMM_INLINE int16x8_t vdupq_n_s16(int16_t x)
{
    int16x8_t r;
    for (int i = 0; i < 8; i++) r.v[i] = x;
    return r;
}
DTMM_INLINE int16x8_t vsubq_n_s16(int16x8_t a, int16_t b)
{
    for (int i = 0; i < 8; i++) a.v[i] = (int16_t)(a.v[i] - b);
    return a;
}
/* VMULLB.S16 / VMULLT.S16: lane i = a[2i] * b[2i] / a[2i+1] * b[2i+1] (int32). */
DTMM_INLINE int32x4_t vmullbq_int_s16(int16x8_t a, int16x8_t b)
{
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = (int32_t)a.v[2 * i] * b.v[2 * i];
    return r;
}
DTMM_INLINE int32x4_t vmulltq_int_s16(int16x8_t a, int16x8_t b)
{
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = (int32_t)a.v[2 * i + 1] * b.v[2 * i + 1];
    return r;
}
DTMM_INLINE int32x4_t vaddq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] + (uint32_t)b.v[i]);
    return a;
}
/* VSHL (vector), per-lane shifts in 0..31 here: non-saturating left shift (wraps). */
DTMM_INLINE int32x4_t vshlq_s32(int32x4_t a, int32x4_t n)
{
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] << n.v[i]);
    return a;
}
/* VQRDMULH (vector): saturate((2 * a * b + 2^31) >> 32) per lane. */
DTMM_INLINE int32x4_t vqrdmulhq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) {
        if (a.v[i] == INT32_MIN && b.v[i] == INT32_MIN) {
            a.v[i] = INT32_MAX;
        } else {
            const int64_t p = 2 * (int64_t)a.v[i] * b.v[i] + ((int64_t)1 << 31);
            a.v[i] = (int32_t)(p >> 32);
        }
    }
    return a;
}
/* VRSHL (vector), per-lane shifts in -31..0 here: rounding arithmetic right shift. */
DTMM_INLINE int32x4_t vrshlq_s32(int32x4_t a, int32x4_t n)
{
    for (int i = 0; i < 4; i++)
        if (n.v[i] < 0)
            a.v[i] = (int32_t)(((int64_t)a.v[i] + ((int64_t)1 << (-n.v[i] - 1))) >> -n.v[i]);
    return a;
}
/* VMOVNB.I32 / VMOVNT.I32: the low halves of b's lanes into the even / odd 16-bit
 * lanes of a (the other lanes kept). */
DTMM_INLINE int16x8_t vmovnbq_s32(int16x8_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[2 * i] = (int16_t)b.v[i];
    return a;
}
DTMM_INLINE int16x8_t vmovntq_s32(int16x8_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[2 * i + 1] = (int16_t)b.v[i];
    return a;
}
/* VSTRB.16: the low byte of each enabled 16-bit lane (2 predicate bits per lane). */
DTMM_INLINE void vstrbq_p_s16(int8_t *p, int16x8_t a, mve_pred16_t pred)
{
    for (int i = 0; i < 8; i++)
        if ((pred >> (2 * i)) & 1) p[i] = (int8_t)a.v[i];
}
DTMM_INLINE void vstrbq_s16(int8_t *p, int16x8_t a) { vstrbq_p_s16(p, a, 0xFFFF); }
/* VQMOVNB.S32 / VQMOVNT.S32: b's lanes saturated to int16 into the even / odd lanes. */
DTMM_INLINE int16_t dtmm_sat16(int32_t v) { return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v); }
DTMM_INLINE int16x8_t vqmovnbq_s32(int16x8_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[2 * i] = dtmm_sat16(b.v[i]);
    return a;
}
DTMM_INLINE int16x8_t vqmovntq_s32(int16x8_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[2 * i + 1] = dtmm_sat16(b.v[i]);
    return a;
}
DTMM_INLINE int16x8_t vqaddq_n_s16(int16x8_t a, int16_t b)
{
    for (int i = 0; i < 8; i++) a.v[i] = dtmm_sat16((int32_t)a.v[i] + b);
    return a;
}
DTMM_INLINE int16x8_t vmaxq_s16(int16x8_t a, int16x8_t b)
{
    for (int i = 0; i < 8; i++) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
}
DTMM_INLINE int16x8_t vminq_s16(int16x8_t a, int16x8_t b)
{
    for (int i = 0; i < 8; i++) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
    return a;
}
/* Elementwise ops and pools: byte <-> 32-bit lane loads / stores, shifts, abs, max. */
DTMM_INLINE int32x4_t vldrbq_z_s32(const int8_t *p, mve_pred16_t pred)
{
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = ((pred >> (4 * i)) & 1) ? p[i] : 0;
    return r;
}
DTMM_INLINE int32x4_t vldrbq_s32(const int8_t *p) { return vldrbq_z_s32(p, 0xFFFF); }
DTMM_INLINE void vstrbq_p_s32(int8_t *p, int32x4_t a, mve_pred16_t pred)
{
    for (int i = 0; i < 4; i++)
        if ((pred >> (4 * i)) & 1) p[i] = (int8_t)a.v[i];
}
DTMM_INLINE void vstrbq_s32(int8_t *p, int32x4_t a) { vstrbq_p_s32(p, a, 0xFFFF); }
DTMM_INLINE int32x4_t vsubq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] = (int32_t)((uint32_t)a.v[i] - (uint32_t)b.v[i]);
    return a;
}
DTMM_INLINE int32x4_t veorq_s32(int32x4_t a, int32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] ^= b.v[i];
    return a;
}
/* VABS.S32 (wraps INT32_MIN to itself, as the instruction). */
DTMM_INLINE int32x4_t vabsq_s32(int32x4_t a)
{
    for (int i = 0; i < 4; i++) a.v[i] = a.v[i] < 0 ? (int32_t)(0u - (uint32_t)a.v[i]) : a.v[i];
    return a;
}
/* VMULH.U32: high 32 bits of the unsigned 64-bit product. */
DTMM_INLINE uint32x4_t vmulhq_u32(uint32x4_t a, uint32x4_t b)
{
    for (int i = 0; i < 4; i++) a.v[i] = (uint32_t)(((uint64_t)a.v[i] * b.v[i]) >> 32);
    return a;
}
DTMM_INLINE uint32x4_t vdupq_n_u32(uint32_t x)
{
    uint32x4_t r = {{x, x, x, x}};
    return r;
}
/* VSHL (register) on unsigned lanes: n < 0 shifts right (logical), n in -31..31 here. */
DTMM_INLINE uint32x4_t vshlq_r_u32(uint32x4_t a, int32_t n)
{
    for (int i = 0; i < 4; i++) a.v[i] = n >= 0 ? a.v[i] << n : a.v[i] >> -n;
    return a;
}
DTMM_INLINE uint32x4_t vreinterpretq_u32_s32(int32x4_t a)
{
    uint32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = (uint32_t)a.v[i];
    return r;
}
DTMM_INLINE int32x4_t vreinterpretq_s32_u32(uint32x4_t a)
{
    int32x4_t r;
    for (int i = 0; i < 4; i++) r.v[i] = (int32_t)a.v[i];
    return r;
}
DTMM_INLINE int8x16_t vmaxq_s8(int8x16_t a, int8x16_t b)
{
    for (int i = 0; i < 16; i++) a.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i];
    return a;
}
DTMM_INLINE int8x16_t vminq_s8(int8x16_t a, int8x16_t b)
{
    for (int i = 0; i < 16; i++) a.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i];
    return a;
}
#  else
#    include <arm_mve.h>
#  endif
#endif /* DTMM_USE_MVE */

#endif /* DTMM_ISA_H */
