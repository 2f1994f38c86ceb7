/*
 * dtmm_platform.h - the small C API every dtmm firmware and host program may use.
 *
 * Build with dtmm.codegen.platform.build(); the same calls work on the host and on
 * the emulated Cortex-M targets (QEMU + semihosting).
 *
 *   #include "dtmm_platform.h"
 *   int main(void) {
 *       static int8_t y[16];
 *       dtmm_bench_start();            // instruction counting starts here (QEMU only)
 *       my_kernel(y);
 *       dtmm_bench_stop();             // ... and stops here; one count per start/stop pair
 *       dtmm_print_hex("y", y, sizeof y);   // parsed back by platform.parse_hex()
 *       return 0;                      // exit code reaches the host
 *   }
 *
 * Target macros (set by the build, never by hand):
 *   DTMM_TARGET_HOST / DTMM_TARGET_CORTEX_M     which kind of target
 *   DTMM_TARGET_NAME                            "host", "cortex-m4", "cortex-m7", "cortex-m55"
 *   DTMM_ARCH_MVE   (1 on cortex-m55)           Helium/MVE path may be used
 *   DTMM_ARCH_DSP   (1 on cortex-m4/m7/m55)     DSP extension (__SMLAD etc.) may be used
 * Ablations: build with simd="dsp" (drops DTMM_ARCH_MVE) or simd="scalar"
 * (drops both and defines DTMM_FORCE_SCALAR) to force a plainer ISA path.
 */
#ifndef DTMM_PLATFORM_H
#define DTMM_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marker functions for instruction counting.  Each start/stop pair yields one count
 * (instructions executed after dtmm_bench_start() returns, up to and including the
 * call instruction that enters dtmm_bench_stop()).  No-ops on the host. */
void dtmm_bench_start(void);
void dtmm_bench_stop(void);

/* Print "DTMM_HEX <name> <nbytes> <hex>\n" on stdout (fast path, no printf). */
void dtmm_print_hex(const char *name, const void *data, size_t nbytes);

/* Read up to cap bytes of the run's input (run(..., input_bytes=...)) into buf.
 * Returns the number of bytes read (0 if there is no input). */
size_t dtmm_read_input(void *buf, size_t cap);

/* Stream the run's input: read the next up to n bytes into buf (the file is opened on the
 * first call and read on from there). Returns the number of bytes read: n, fewer at the
 * end of the input, 0 when it is exhausted (or there is no input). */
size_t dtmm_input_next(void *buf, size_t n);

/* Place very large constant tables / buffers.  On cortex-m55 these go to the 4 MiB
 * SSE-300 SRAM at 0x31000000 (the 512 KiB TCMs are too small for big models);
 * elsewhere they stay in the normal flash / RAM regions. */
#if defined(DTMM_TARGET_CORTEX_M)
#define DTMM_LARGE_CONST __attribute__((section(".dtmm_large_const")))
#define DTMM_LARGE_BSS __attribute__((section(".dtmm_large_bss")))
#else
#define DTMM_LARGE_CONST
#define DTMM_LARGE_BSS
#endif

/* Exit code the firmware's fault handler uses (HardFault, MemManage, BusFault, ...). */
#define DTMM_FAULT_EXIT_CODE 250

#ifdef __cplusplus
}
#endif
#endif /* DTMM_PLATFORM_H */
