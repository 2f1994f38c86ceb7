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

size_t dtmm_input_next(void *buf, size_t n)
{
    static FILE *f;
    static int state; /* 0: not opened yet, 1: open, 2: no input or exhausted */
    size_t got = 0;
    if (state == 0) {
        f = fopen("dtmm_input.bin", "rb");
        state = f ? 1 : 2;
    }
    while (state == 1 && got < n) {
        const size_t k = fread((char *)buf + got, 1, n - got, f);
        got += k;
        if (k == 0) {
            fclose(f);
            f = NULL;
            state = 2;
        }
    }
    return got;
}
