/*
 * dtmm_driver_main.c - firmware that runs a batch of kernel calls sent as its input
 * (dtmm_read_input) and prints, per call i, "DTMM_HEX s<i>" (int32 status) and
 * "DTMM_HEX o<i>" (output bytes); each kernel call is one dtmm_bench_start/stop
 * region, so the run's instruction counts are per call.
 *
 * Input: u32 magic 0x4B4D5444 ("DTMK"), u32 n_calls, then per call:
 *   i32 op, i32 out_bytes, i32 ints[DTMM_DRIVER_NINTS], i32 n_blobs,
 *   per blob: i32 nbytes (0 = NULL), bytes padded to a multiple of 16.
 * Exit code: 0, or 3 bad input, 4 buffer too small.
 */
#include <stdint.h>
#include <string.h>

#include "dtmm_kernel_driver.h"
#include "dtmm_platform.h"

#ifndef DTMM_DRIVER_IN_CAP
#define DTMM_DRIVER_IN_CAP (2560 * 1024) /* the CSR layers of the kernel bench at 30 % */
#endif
#ifndef DTMM_DRIVER_OUT_CAP
#define DTMM_DRIVER_OUT_CAP (512 * 1024)
#endif
#ifndef DTMM_DRIVER_SCRATCH_CAP
#define DTMM_DRIVER_SCRATCH_CAP (256 * 1024)
#endif

static uint8_t in_buf[DTMM_DRIVER_IN_CAP] DTMM_LARGE_BSS __attribute__((aligned(16)));
static uint8_t out_buf[DTMM_DRIVER_OUT_CAP] DTMM_LARGE_BSS __attribute__((aligned(16)));
static uint8_t scratch_buf[DTMM_DRIVER_SCRATCH_CAP] DTMM_LARGE_BSS __attribute__((aligned(16)));

static int32_t rd(const uint8_t **p)
{
    int32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

int main(void)
{
    const size_t n = dtmm_read_input(in_buf, sizeof in_buf);
    const uint8_t *p = in_buf, *end = in_buf + n;
    if (n >= sizeof in_buf) return 4; /* the input may not have fitted */
    if (n < 8 || (uint32_t)rd(&p) != 0x4B4D5444u) return 3;
    const int32_t calls = rd(&p);
    for (int32_t i = 0; i < calls; i++) {
        int32_t ints[DTMM_DRIVER_NINTS];
        const void *blobs[DTMM_DRIVER_MAX_BLOBS];
        char name[16];
        if (p + 4 * (3 + DTMM_DRIVER_NINTS) > end) return 3;
        const int32_t op = rd(&p), out_bytes = rd(&p);
        for (int k = 0; k < DTMM_DRIVER_NINTS; k++) ints[k] = rd(&p);
        const int32_t nb = rd(&p);
        if (nb < 0 || nb > DTMM_DRIVER_MAX_BLOBS) return 3;
        for (int k = 0; k < nb; k++) {
            const int32_t len = rd(&p);
            blobs[k] = len ? (const void *)p : (const void *)0;
            p += (len + 15) & ~15;
            if (p > end) return 3;
        }
        const int32_t need = dtmm_driver_scratch_size(op, ints);
        if (out_bytes > DTMM_DRIVER_OUT_CAP || need > DTMM_DRIVER_SCRATCH_CAP) return 4;
        memset(out_buf, 0, (size_t)out_bytes);
        dtmm_bench_start();
        const int32_t st = dtmm_driver_call(op, ints, blobs, out_buf, scratch_buf);
        dtmm_bench_stop();
        name[0] = 's';
        int len = 1;
        char digits[12];
        int nd = 0;
        int32_t v = i;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (nd) name[len++] = digits[--nd];
        name[len] = 0;
        dtmm_print_hex(name, &st, 4);
        name[0] = 'o';
        dtmm_print_hex(name, out_buf, (size_t)out_bytes);
    }
    return 0;
}
