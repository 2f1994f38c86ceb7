/*
 * dtmm_kernels.h - the public API of dtmm's int8 C kernels.
 *
 * One kernel per file, dtmm_<op>[_variant]_s8.c.  Every kernel has a plain-C path
 * that builds anywhere; conv, FWCS conv, fully connected (dense and FWCS), depthwise
 * conv, CSR and pattern conv (requantization), max / average pool and add also have a
 * Cortex-M DSP path (__smlad / __smlabb / SSUB8+SEL / QADD+SMMULR), and all of them but
 * the softmax a Helium/MVE path (see dtmm_isa.h for how the path is chosen and for
 * -DDTMM_FORCE_SCALAR).  All paths give bit-identical outputs.
 *
 * Conventions (the same as TFLite int8 and dtmm.graph.ir):
 *   - Activations NHWC int8, contiguous.  Dense conv weights OHWI int8
 *     (C_out, KH, KW, C_in); depthwise weights (1, KH, KW, C_in * depth_multiplier);
 *     fully connected weights (O, I).  Weights are symmetric (zero point 0).
 *   - Zero points are passed as zero points (NOT negated "offsets" as in CMSIS-NN):
 *     in_zp, out_zp in [-128, 127].
 *   - Bias int32 per output channel, may be NULL (= 0).
 *   - Requantization per output channel: multiplier[c] (Q31, > 0 or 0) and shift[c]
 *     (TFLite sign convention: > 0 left, < 0 right, in [-31, 30]), then + out_zp,
 *     then clamp to [act_min, act_max] (subrange of [-128, 127]; relu: act_min = out_zp).
 *   - Convolution semantics:  acc = bias[o] + sum over taps inside the input of
 *     (x - in_zp) * w.  Taps in the padding contribute 0 (= padding with in_zp, as
 *     TFLite).  Pads are explicit (top, bottom, left, right), dilation 1, and
 *     H_out = (H + pad_top + pad_bottom - KH) / stride_h + 1 (likewise W_out);
 *     out_dims must equal that (DTMM_ERR_ARG otherwise).
 *   - Accumulation is int32; valid models keep every partial sum within int32
 *     (|sum| <= 255 * 128 * K, K the kept weights of one output).
 *   - Scratch: a kernel that needs scratch has <kernel>_get_buffer_size(); pass a
 *     buffer of at least that many bytes, 4-byte aligned (NULL when it returns 0).
 *     The size depends on the ISA path compiled into *that* build (formulas below);
 *     call the function from a build for the same target.
 *   - Return value: DTMM_OK (0) or a negative dtmm_status.
 */
#ifndef DTMM_KERNELS_H
#define DTMM_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t dtmm_status;
#define DTMM_OK 0
#define DTMM_ERR_ARG (-1)          /* inconsistent dimensions / unsupported argument */
#define DTMM_ERR_EMPTY_WINDOW (-2) /* an average-pool window lies wholly in padding */

/* Tensor dimensions.  Activations: n, h, w, c (NHWC).  Conv filters: n = C_out,
 * h = KH, w = KW, c = C_in (OHWI). */
typedef struct {
    int32_t n, h, w, c;
} dtmm_dims;

/* Convolution / depthwise geometry and output quantization. */
typedef struct {
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_bottom, pad_left, pad_right;
    int32_t in_zp, out_zp;
    int32_t act_min, act_max;
} dtmm_conv_params;

/* Per-channel requantization constants (C_out entries each). */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
} dtmm_requant_params;

/* ------------------------------------------------------------------ dense conv */
/* dtmm_conv_s8: dense convolution, CMSIS-NN style (im2col of a few output pixels
 * into scratch, then a matrix multiply against OHWI weights).
 * Scratch (bytes): MVE: 3 * K + 4 * C_out (int8 im2col of 3 pixels, padded with
 * in_zp, and one int32 offset bias - in_zp * sum(w) per filter);
 * DSP: 4 * K (int16 im2col of 2 pixels, x - in_zp, reordered for __smlad);
 * plain C: 0.  K = KH * KW * C_in, C_out = filter_dims->n. */
dtmm_status dtmm_conv_s8(const dtmm_conv_params *params, const dtmm_requant_params *quant,
                         const dtmm_dims *in_dims, const int8_t *in,
                         const dtmm_dims *filter_dims, const int8_t *weights,
                         const int32_t *bias, const dtmm_dims *out_dims, int8_t *out,
                         void *scratch);
int32_t dtmm_conv_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_dims *filter_dims);

/* ------------------------------------------------------------------ FWCS conv (DTMM) */
/* FWCS: filterlet weight compressed storage of one conv layer (paper Sec. III-A).
 *   arr   int8: kept filterlets, filter after filter, each `size` = C_in weights
 *         (in OHWI order of the kernel positions within a filter).
 *   cptr  one entry per kept filterlet: offset of its first weight in the dense OHWI
 *         filter, (kh * KW + kw) * C_in.  uint8 (cptr_bits 8) or uint16 (16).
 *         Entries of one filter strictly increasing.
 *   fidx  C_out + 1 entries: filter o owns filterlets fidx[o] .. fidx[o+1]-1
 *         (fidx[0] = 0).  uint8, uint16 or uint32 (fidx_bits 8/16/32).
 *   A filter with no kept filterlet outputs requant(bias[o]).
 *   Kernel size (kh, kw) and C_out are part of the format; size == C_in. */
typedef struct {
    const int8_t *arr;
    const void *cptr;
    const void *fidx;
    int32_t size;       /* filterlet length = C_in */
    int32_t kh, kw;     /* kernel height / width */
    int32_t c_out;
    int32_t cptr_bits;  /* 8 or 16 */
    int32_t fidx_bits;  /* 8, 16 or 32 */
} dtmm_fwcs;

/* dtmm_conv_fwcs_s8: the DTMM operator.  For each block of DTMM_FWCS_REUSE output
 * pixels (compile-time, 1..8, default 4), for each filter with kept filterlets, for
 * each kept filterlet, the filterlet's weights are loaded once and dotted (SIMD) with
 * the C_in contiguous input values of each pixel of the block (paper Fig. 10: one new
 * load per MAC).  Nothing is copied into a patch buffer (except on the DSP path of
 * denser layers: the block's input runs widened to int16 once, see the scratch below).
 * A filter with no kept filterlet outputs requant(offset[o]) everywhere, computed once
 * per call.  Build switches:
 *   DTMM_FWCS_VARIANT_FULL   (default) weight reuse across DTMM_FWCS_REUSE pixels
 *   DTMM_FWCS_VARIANT_NO_ILP one pixel at a time (paper Fig. 8, no reuse/reordering)
 *   DTMM_FORCE_SCALAR        plain C MACs (any variant)
 * offset (C_out entries, required) replaces the bias: offset[o] = bias[o] - in_zp *
 * sum(kept weights of filter o), computed once at code-generation time
 * (dtmm.quant.arith.input_offset_bias); a tap in the padding reads a run of in_zp
 * values, so acc = offset + sum(x * w) equals the convention above.
 * Scratch (bytes): 32 * (C_out + 1) + 2 * align4(C_out) + align4(C_in) + 8
 *   + P * R * KH * KW: one 32-byte record per filter with filterlets (and a sentinel),
 *   the row of constant outputs and a junk row (both C_out bytes), a run of C_in in_zp
 *   values and a KH*KW x R table of input pointers rebuilt per block of R pixels
 *   (P = sizeof(void *), + alignment); the MVE and DSP paths add align4(C_out * KH * KW)
 *   (each kept filterlet's kernel position, a byte, for the asm loops), the DSP path
 *   also align4(2 * C_in * (R * KH * KW + 1)) for int16 copies of a block's input runs
 *   (used when the layer keeps >= 4 * KH * KW filterlets).
 * Preconditions: C_in == fwcs->size, (KH*KW - 1) * C_in < 65536, fidx[0] == 0, and each
 * cptr entry a multiple of C_in below KH*KW*C_in (validated by the format decoder). */
dtmm_status dtmm_conv_fwcs_s8(const dtmm_conv_params *params, const dtmm_requant_params *quant,
                              const dtmm_dims *in_dims, const int8_t *in,
                              const dtmm_fwcs *weights, const int32_t *offset,
                              const dtmm_dims *out_dims, int8_t *out, void *scratch);
int32_t dtmm_conv_fwcs_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_fwcs *weights);
/* Which variant and reuse factor this build compiled (for reports): returns R
 * (1 for NO_ILP); *isa set to "mve", "dsp" or "scalar" when isa != NULL. */
int32_t dtmm_conv_fwcs_s8_config(const char **isa);

/* ------------------------------------------------------------------ CSR conv */
/* CSR (unstructured) storage of one conv layer, per filter a row:
 *   values  int8, kept weights filter after filter (ascending column);
 *   col     per kept weight, index in the flattened OHWI filter
 *           (kh * KW + kw) * C_in + c; uint8 (col_bits 8) or uint16 (16);
 *   rowptr  C_out + 1 entries; uint8, uint16 or uint32 (rowptr_bits 8/16/32). */
typedef struct {
    const int8_t *values;
    const void *col;
    const void *rowptr;
    int32_t kh, kw, c_in, c_out;
    int32_t col_bits;     /* 8 or 16 */
    int32_t rowptr_bits;  /* 8, 16 or 32 */
} dtmm_csr;

/* dtmm_conv_csr_s8: per output row, a band of KH input rows padded with in_zp is
 * loaded into scratch (no bounds checks after that); per filter and block of 4 output
 * pixels of the row, a sparse dot product over the filter's kept weights: each
 * (column, value) is loaded once and used for the 4 pixels, the column mapped to its
 * input offset through a table built once per call.  acc = offset[o] + sum(x * w) with
 * offset[o] = bias[o] - in_zp * sum(kept w) passed instead of the bias (required; from
 * dtmm.quant.offsets at code-generation time, as for FWCS); a filter with no kept
 * weight stores its constant output.
 *   plain C / DSP: 4 accumulators in registers, one LDRSB + MLA per MAC;
 *   MVE: 8 kept weights at a time: their offsets gathered from the table (VLDRH
 *        gather), the values widened to 16 bits, then per pixel one VLDRB gather of
 *        the 8 inputs and one VMLADAVA (band offsets must fit 16 bits, else plain C).
 * Scratch (bytes), every path: 4 * K + align4(KH * (W + 2 * KW) * C_in),
 * K = KH * KW * C_in, W = in_dims->w. */
dtmm_status dtmm_conv_csr_s8(const dtmm_conv_params *params, const dtmm_requant_params *quant,
                             const dtmm_dims *in_dims, const int8_t *in,
                             const dtmm_csr *weights, const int32_t *offset,
                             const dtmm_dims *out_dims, int8_t *out, void *scratch);
int32_t dtmm_conv_csr_s8_get_buffer_size(const dtmm_dims *in_dims, const dtmm_csr *weights);

/* ------------------------------------------------------------------ pattern conv */
/* PatDNN-style 3x3 pattern storage:
 *   patterns  uint8 [n_patterns][4]: the 4 kept kernel positions (kh * 3 + kw, 0..8,
 *             ascending) of each pattern in the library;
 *   kptr      C_out + 1 entries: filter o keeps kernels kptr[o] .. kptr[o+1]-1;
 *             uint8, uint16 or uint32 (kptr_bits 8/16/32);
 *   kchan     per kept kernel: its input channel (ascending within a filter);
 *             uint8 or uint16 (kchan_bits 8/16);
 *   kpat      uint8 per kept kernel: its pattern id;
 *   values    int8, 4 per kept kernel, in the pattern's position order.
 * kptr_bits / kchan_bits 0 mean 16 (the layout before these fields existed). */
typedef struct {
    const uint8_t *patterns;
    int32_t n_patterns;
    const void *kptr;
    const void *kchan;
    const uint8_t *kpat;
    const int8_t *values;
    int32_t c_in, c_out;
    int32_t kptr_bits;   /* 8, 16 or 32; 0 = 16 */
    int32_t kchan_bits;  /* 8 or 16; 0 = 16 */
} dtmm_pattern;

/* dtmm_conv_pattern_s8: 3x3 kernels only.  Kernel-major (PatDNN): a band of the input
 * rows that a chunk of output rows reads, padded with in_zp, is loaded into scratch;
 * then per filter, per chunk of up to 64 output pixels (whole short rows at once;
 * int32 accumulators in scratch), per kept kernel (channel c, pattern p) the 4 weights
 * are held in registers and applied to every pixel of the chunk at the pattern's 4
 * tap offsets (computed once per call); acc = offset[o] + sum(x * w), offset[o] = bias[o]
 * - in_zp * sum(kept w) passed instead of the bias (required, as for FWCS and CSR).
 *   plain C / DSP: 4 LDRSB + 4 MLA (DSP: SMLABB/SMLABT) per pixel and kernel;
 *   MVE: 4 pixels per vector (32-bit lanes): per tap a VLDRB gather of the 4 pixels'
 *        inputs (C_in * stride_w apart in NHWC) and a VMLA by the scalar weight.
 * Scratch (bytes), every path: 16 * n_patterns + 512
 *   + align4((3 + E) * (W + 6) * C_in), E = min(16 / W, H - 1) extra band rows,
 *   W = in_dims->w, H = in_dims->h (integer division). */
dtmm_status dtmm_conv_pattern_s8(const dtmm_conv_params *params, const dtmm_requant_params *quant,
                                 const dtmm_dims *in_dims, const int8_t *in,
                                 const dtmm_pattern *weights, const int32_t *offset,
                                 const dtmm_dims *out_dims, int8_t *out, void *scratch);
int32_t dtmm_conv_pattern_s8_get_buffer_size(const dtmm_dims *in_dims,
                                             const dtmm_pattern *weights);

/* ------------------------------------------------------------------ depthwise conv */
/* dtmm_depthwise_conv_s8: weights (1, KH, KW, C_in * depth_multiplier), filter_dims
 * = {1, KH, KW, C_out}; output channel ic * depth_multiplier + m reads input channel
 * ic.  Per-channel requant.  Depth multiplier 1: MVE path with 16 channels in vector
 * lanes (VMULLB / VMULLT, per-lane requantization, tail-predicated for C % 16), DSP
 * path with 4 channels per word (SXTAB16 + SMLABB / SMLATT); other multipliers plain
 * C on every target; the DSP path requantizes with QADD + SMMULR where exact
 * (dtmm_requant_fast_s8).  No scratch on any path. */
dtmm_status dtmm_depthwise_conv_s8(const dtmm_conv_params *params, const dtmm_requant_params *quant,
                                   int32_t depth_multiplier,
                                   const dtmm_dims *in_dims, const int8_t *in,
                                   const dtmm_dims *filter_dims, const int8_t *weights,
                                   const int32_t *bias, const dtmm_dims *out_dims, int8_t *out);

/* ------------------------------------------------------------------ fully connected */
/* dtmm_fully_connected_s8: out[b, o] = clamp(requant(bias[o] + sum_k (x[b,k] - in_zp)
 * * w[o,k]) + out_zp).  in: (batches, in_features); weights: (out_features,
 * in_features).  per_channel = 0: quant->multiplier[0] / shift[0] for every output
 * (TFLite FULLY_CONNECTED); 1: one per output.  act_min/act_max and the zero points
 * from params (strides and pads are ignored).  No scratch. */
dtmm_status dtmm_fully_connected_s8(const dtmm_conv_params *params, const dtmm_requant_params *quant,
                                    int32_t per_channel, int32_t batches, int32_t in_features,
                                    int32_t out_features, const int8_t *in, const int8_t *weights,
                                    const int32_t *bias, int8_t *out);

/* dtmm_fully_connected_fwcs_s8: fully connected layer on FWCS weights.  The (O, I)
 * weight is stored as kept runs of `size` contiguous inputs (dtmm.formats.fwcs linear
 * layout: fw->size = run length, fw->kh = 1, fw->kw = ceil(I / size) runs per row,
 * fw->c_out = O; cptr = j * size, the first input of run j; the last run of a row is
 * I - (kw - 1) * size long and stored at that length).  offset[o] = bias[o] - in_zp *
 * sum(kept weights of o) (required; dtmm.quant.offsets at code-generation time), so
 * out[b, o] = clamp(requant(offset[o] + sum over kept runs of dot(w, x)) + out_zp).
 * per_channel / quant / act_min, act_max / out_zp as dtmm_fully_connected_s8
 * (params->in_zp is already in offset).  No scratch. */
dtmm_status dtmm_fully_connected_fwcs_s8(const dtmm_conv_params *params,
                                         const dtmm_requant_params *quant, int32_t per_channel,
                                         int32_t batches, int32_t in_features,
                                         const dtmm_fwcs *weights, const int32_t *offset,
                                         const int8_t *in, int8_t *out);

/* ------------------------------------------------------------------ pooling */
typedef struct {
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_bottom, pad_left, pad_right;
    int32_t act_min, act_max;
} dtmm_pool_params;

/* Max pool (TFLite): max over the taps inside the input (start at -128), clamp.
 * Input and output share scale and zero point.  out_dims as for conv (c = C_in).
 * MVE: 16 channels per vector (VMAX); DSP: 4 channels per word (SSUB8 + SEL). */
dtmm_status dtmm_max_pool_s8(const dtmm_pool_params *params, const dtmm_dims *in_dims,
                             const int8_t *in, const dtmm_dims *out_dims, int8_t *out);
/* Average pool (TFLite): sum over the taps inside the input, count = their number
 * (padding excluded), (sum + count/2) / count if sum > 0 else (sum - count/2) / count
 * (C division, truncating), clamp.  DTMM_ERR_EMPTY_WINDOW if some count is 0.
 * MVE: 4 channels per vector, the division as an exact multiply-high; DSP: 4 channels
 * per word summed in int16 pairs (windows of up to 255 taps), SDIV per channel. */
dtmm_status dtmm_avg_pool_s8(const dtmm_pool_params *params, const dtmm_dims *in_dims,
                             const int8_t *in, const dtmm_dims *out_dims, int8_t *out);

/* ------------------------------------------------------------------ add */
/* TFLite int8 ADD (same shapes, no broadcast), constants from
 * dtmm.quant.arith.add_params:
 *   a' = lt1((a - in1_zp) << left_shift, in1_mult, in1_shift)
 *   b' = lt1((b - in2_zp) << left_shift, in2_mult, in2_shift)
 *   out = clamp(lt1(a' + b', out_mult, out_shift) + out_zp, act_min, act_max)
 * with lt1 = MultiplyByQuantizedMultiplierSmallerThanOneExp (shifts <= 0).
 * MVE: 4 elements per 32-bit vector; DSP: SMMULR high multiplies (exact here). */
typedef struct {
    int32_t in1_zp, in2_zp, out_zp;
    int32_t left_shift;
    int32_t in1_multiplier, in1_shift;
    int32_t in2_multiplier, in2_shift;
    int32_t out_multiplier, out_shift;
    int32_t act_min, act_max;
} dtmm_add_params;

dtmm_status dtmm_add_s8(const dtmm_add_params *params, const int8_t *in1, const int8_t *in2,
                        int8_t *out, int32_t size);

/* ------------------------------------------------------------------ requant helper */
/* out[i] = MultiplyByQuantizedMultiplier(acc[i], multiplier[i], shift[i]) (int32, no
 * zero point, no clamp); elementwise, for testing and for host-side use. */
void dtmm_requantize_s32(const int32_t *acc, const int32_t *multiplier, const int32_t *shift,
                         int32_t *out, int32_t size);

#ifdef __cplusplus
}
#endif
#endif /* DTMM_KERNELS_H */
