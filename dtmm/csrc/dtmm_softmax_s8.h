/*
 * dtmm_softmax_s8.h - int8 softmax, bit for bit TensorFlow Lite Micro's reference
 * int8 -> int8 SOFTMAX (gemmlowp fixed point; dtmm.quant.arith.softmax_int8).
 *
 * Kept beside dtmm_kernels.h (not inside it) because it is used only by generated
 * models (dtmm.codegen).  The constants come from dtmm.quant.arith.softmax_params
 * (the fields of dtmm.graph.ir.SoftmaxQuant), computed once in Python.
 */
#ifndef DTMM_SOFTMAX_S8_H
#define DTMM_SOFTMAX_S8_H

#include <stdint.h>

#include "dtmm_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax over the last axis of `rows` rows of `depth` int8 values.  Output scale
 * 1/256, zero point -128 (as TFLite requires).  Inputs whose difference to the row
 * maximum is below diff_min give -128.  in and out may not overlap.  No scratch.
 * Returns DTMM_ERR_ARG for rows < 0, depth < 1 or beta_left_shift outside [0, 31]. */
dtmm_status dtmm_softmax_s8(const int8_t *in, int32_t rows, int32_t depth,
                            int32_t beta_multiplier, int32_t beta_left_shift, int32_t diff_min,
                            int8_t *out);

#ifdef __cplusplus
}
#endif
#endif /* DTMM_SOFTMAX_S8_H */
