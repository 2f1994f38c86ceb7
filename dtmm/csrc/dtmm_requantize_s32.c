/*
 * dtmm_requantize_s32.c - elementwise MultiplyByQuantizedMultiplier (see dtmm_requant.h).
 */
#include "dtmm_internal.h"

void dtmm_requantize_s32(const int32_t *acc, const int32_t *multiplier, const int32_t *shift,
                         int32_t *out, int32_t size)
{
    for (int32_t i = 0; i < size; i++) out[i] = dtmm_requantize(acc[i], multiplier[i], shift[i]);
}
