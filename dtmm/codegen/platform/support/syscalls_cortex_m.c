/*
 * syscalls_cortex_m.c - newlib-nano system calls over Arm semihosting, plus the
 * Cortex-M implementation of dtmm_platform.h (input, fault report, exit code).
 *
 * stdout/stderr go to the semihosting console (":tt"); exit(code) uses
 * SYS_EXIT_EXTENDED so the code reaches the host as QEMU's exit status.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "dtmm_platform.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20
#define ADP_Stopped_ApplicationExit 0x20026

static inline int sh_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static int sh_console = -1;

static int console_handle(void)
{
    if (sh_console < 0) {
        static const char tt[] = ":tt";
        uint32_t args[3] = {(uint32_t)tt, 4u /* "w" */, 3u};
        sh_console = sh_call(SYS_OPEN, args);
    }
    return sh_console;
}

int _write(int fd, const void *buf, size_t n)
{
    if (fd != 1 && fd != 2) {
        errno = EBADF;
        return -1;
    }
    uint32_t args[3] = {(uint32_t)console_handle(), (uint32_t)buf, (uint32_t)n};
    int not_written = sh_call(SYS_WRITE, args);
    return (int)n - not_written;
}

int _read(int fd, void *buf, size_t n)
{
    (void)fd;
    (void)buf;
    (void)n;
    return 0;
}

int _close(int fd)
{
    (void)fd;
    return 0;
}

off_t _lseek(int fd, off_t off, int whence)
{
    (void)fd;
    (void)off;
    (void)whence;
    return 0;
}

int _fstat(int fd, struct stat *st)
{
    (void)fd;
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFCHR;
    return 0;
}

int _isatty(int fd)
{
    (void)fd;
    return 1; /* line-buffered stdout: completed lines survive a fault */
}

int _kill(int pid, int sig)
{
    (void)pid;
    (void)sig;
    errno = EINVAL;
    return -1;
}

int _getpid(void) { return 1; }

extern char __heap_start[];
extern char __heap_end[];
static char *heap_top = __heap_start;

void *_sbrk(ptrdiff_t incr)
{
    char *prev = heap_top;
    if (incr < 0 || (size_t)incr > (size_t)(__heap_end - heap_top)) {
        errno = ENOMEM;
        return (void *)-1;
    }
    heap_top += incr;
    return prev;
}

__attribute__((noreturn)) void _exit(int code)
{
    uint32_t block[2] = {ADP_Stopped_ApplicationExit, (uint32_t)code};
    sh_call(SYS_EXIT_EXTENDED, block);
    /* Not reached under QEMU; keep a plain SYS_EXIT as a fallback. */
    sh_call(SYS_EXIT, (const void *)ADP_Stopped_ApplicationExit);
    for (;;) {
    }
}

size_t dtmm_read_input(void *buf, size_t cap)
{
    static const char name[] = "dtmm_input.bin";
    uint32_t oargs[3] = {(uint32_t)name, 1u /* "rb" */, sizeof name - 1};
    int h = sh_call(SYS_OPEN, oargs);
    if (h < 0) {
        return 0;
    }
    uint32_t hargs[1] = {(uint32_t)h};
    int len = sh_call(SYS_FLEN, hargs);
    size_t n = (len < 0) ? 0 : ((size_t)len < cap ? (size_t)len : cap);
    size_t got = 0;
    if (n > 0) {
        uint32_t rargs[3] = {(uint32_t)h, (uint32_t)buf, (uint32_t)n};
        got = n - (size_t)sh_call(SYS_READ, rargs);
    }
    sh_call(SYS_CLOSE, hargs);
    return got;
}

size_t dtmm_input_next(void *buf, size_t n)
{
    static int h = -2; /* -2: not opened yet, -1: no input or exhausted */
    static const char name[] = "dtmm_input.bin";
    if (h == -2) {
        uint32_t oargs[3] = {(uint32_t)name, 1u /* "rb" */, sizeof name - 1};
        h = sh_call(SYS_OPEN, oargs);
        if (h < 0) {
            h = -1;
        }
    }
    size_t got = 0;
    while (h >= 0 && got < n) {
        uint32_t rargs[3] = {(uint32_t)h, (uint32_t)((char *)buf + got), (uint32_t)(n - got)};
        const size_t want = n - got;
        const int left = sh_call(SYS_READ, rargs); /* bytes NOT read */
        const size_t read = (left < 0 || (size_t)left > want) ? 0 : want - (size_t)left;
        got += read;
        if (read == 0) { /* end of the input */
            uint32_t hargs[1] = {(uint32_t)h};
            sh_call(SYS_CLOSE, hargs);
            h = -1;
        }
    }
    return got;
}

static char *put_hex(char *p, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    *p++ = '0';
    *p++ = 'x';
    for (int s = 28; s >= 0; s -= 4) {
        *p++ = digits[(v >> s) & 15];
    }
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s) {
        *p++ = *s++;
    }
    return p;
}

/* Called from dtmm_fault_entry (startup_cortex_m.S) on a fresh stack. */
__attribute__((noreturn, used)) void dtmm_fault_report(uint32_t pc, uint32_t lr, uint32_t exc_return)
{
    static const char *const names[16] = {"?",          "Reset",       "NMI",      "HardFault",
                                          "MemManage",  "BusFault",    "UsageFault", "SecureFault",
                                          "Reserved",   "Reserved",    "Reserved", "SVCall",
                                          "DebugMon",   "Reserved",    "PendSV",   "SysTick"};
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    uint32_t exc = ipsr & 0x1FF;
    uint32_t cfsr = *(volatile uint32_t *)0xE000ED28;
    uint32_t hfsr = *(volatile uint32_t *)0xE000ED2C;
    char msg[200];
    char *p = msg;
    p = put_str(p, "\nDTMM_FAULT ");
    p = put_str(p, exc < 16 ? names[exc] : "IRQ");
    p = put_str(p, " exception=");
    p = put_hex(p, exc);
    p = put_str(p, " pc=");
    p = put_hex(p, pc);
    p = put_str(p, " lr=");
    p = put_hex(p, lr);
    p = put_str(p, " cfsr=");
    p = put_hex(p, cfsr);
    p = put_str(p, " hfsr=");
    p = put_hex(p, hfsr);
    p = put_str(p, " exc_return=");
    p = put_hex(p, exc_return);
    *p++ = '\n';
    _write(1, msg, (size_t)(p - msg));
    _exit(DTMM_FAULT_EXIT_CODE);
}

/* -nostartfiles drops crti.o/crtn.o; __libc_init_array still calls _init. */
void _init(void) {}
void _fini(void) {}
