/* dtmm_platform_common.c - helpers shared by host and Cortex-M builds. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dtmm_platform.h"

void dtmm_print_hex(const char *name, const void *data, size_t nbytes)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)data;
    char buf[256];
    size_t k;

    fflush(stdout);
    k = (size_t)snprintf(buf, sizeof buf, "DTMM_HEX %s %lu ", name, (unsigned long)nbytes);
    if (k >= sizeof buf) {
        k = sizeof buf - 1;
    }
    for (size_t i = 0; i < nbytes; ++i) {
        if (k + 3 > sizeof buf) {
            write(1, buf, k);
            k = 0;
        }
        buf[k++] = digits[p[i] >> 4];
        buf[k++] = digits[p[i] & 15];
    }
    buf[k++] = '\n';
    write(1, buf, k);
}
