/* dtmm_platform_host.c - host (native gcc) implementation of dtmm_platform.h. */
#include <stdio.h>

#include "dtmm_platform.h"

__attribute__((noinline, noipa)) void dtmm_bench_start(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, noipa)) void dtmm_bench_stop(void) { __asm__ volatile("" ::: "memory"); }

size_t dtmm_read_input(void *buf, size_t cap)
{
    FILE *f = fopen("dtmm_input.bin", "rb");
    size_t n;
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}
