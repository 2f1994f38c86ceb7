/*
 * dtmm_kernel_driver.h - one entry point that runs any dtmm kernel from a flat list of
 * int32 parameters and data blobs.  The host ctypes wrapper and the Cortex-M test /
 * benchmark firmware (dtmm_driver_main.c) share it, so one Python front end
 * (dtmm.runtime.kernels_host) drives every implementation with the same calls.
 * The layout of `ints` per op is documented in dtmm_kernel_driver.c and mirrored
 * in kernels_host.py.
 */
#ifndef DTMM_KERNEL_DRIVER_H
#define DTMM_KERNEL_DRIVER_H

#include <stdint.h>

#define DTMM_DRIVER_NINTS 32
#define DTMM_DRIVER_MAX_BLOBS 10

enum {
    DTMM_OP_CONV = 1,
    DTMM_OP_CONV_FWCS = 2,
    DTMM_OP_CONV_CSR = 3,
    DTMM_OP_CONV_PATTERN = 4,
    DTMM_OP_DEPTHWISE = 5,
    DTMM_OP_FC = 6,
    DTMM_OP_MAX_POOL = 7,
    DTMM_OP_AVG_POOL = 8,
    DTMM_OP_ADD = 9,
    DTMM_OP_REQUANT = 10,
    DTMM_OP_FWCS_CONFIG = 11,
    DTMM_OP_SCRATCH_SIZE = 12,
    DTMM_OP_FC_FWCS = 13
};

/* Scratch bytes the op needs (-1: unknown op). */
int32_t dtmm_driver_scratch_size(int32_t op, const int32_t *ints);
/* Run the op; blobs[i] NULL for an absent optional array (bias).  Returns the kernel's
 * dtmm_status (DTMM_ERR_ARG for an unknown op). */
int32_t dtmm_driver_call(int32_t op, const int32_t *ints, const void *const *blobs, void *out,
                         void *scratch);

#endif
