/*
 * insn_count_plugin.c - QEMU (7.2 ABI) TCG plugin: count executed guest
 * instructions between marker functions, by instruction class, with an
 * estimated-cycles MODEL beside them.
 *
 * Arguments: start=0xADDR,stop=0xADDR,out=/path/to/file[,model=m4|m7|m55]
 *
 * Every translation block adds its instruction count, its count per class and its
 * modelled cycles to global counters with inline TCG ops at block entry (cheap).
 * The first instruction of each marker function gets an exec callback that
 * snapshots "counters before this instruction" = counters - (the part of its block
 * not yet executed).  A start/stop pair appends
 *     region N                       (stop_snapshot - start_snapshot - 1)
 *     classes A L B VL VM VO C       per class, and the modelled cycles
 * to the output file: the instructions after the one-instruction start function up
 * to and including the call into the stop function (the start function's own
 * instruction is taken off its class and its cycles).  The totals are written at exit.
 *
 * Classes (decoded from the Thumb-2 encoding): A scalar ALU (data processing,
 * multiplies, DSP SIMD), L scalar load/store (LDR/STR/LDM/STM/PUSH/POP, FP loads),
 * B branch (B/BL/BX/CBZ, POP/LDM of PC, TBB, the low-overhead-loop instructions),
 * VL MVE load/store (contiguous, interleaving, gather/scatter), VM MVE multiply and
 * multiply-accumulate (VMUL, VMULL, VMULH, VQ(R)DMULH, VMLA(S), VMLADAV, VMLALDAV...),
 * VO any other MVE / FP instruction.
 *
 * The cycle model (model=) is a per-block static schedule, NOT a measurement: see
 * dtmm/bench/cycles.py for the figures and their sources.  Blocks are scheduled
 * on their own (no stalls across blocks, no memory wait states, every branch
 * costs the same whether taken or not).
 *
 * Debian ships no qemu-plugin.h, so the few declarations used are written here
 * and match QEMU 7.2's ABI (QEMU_PLUGIN_VERSION 1).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- declarations from QEMU 7.2 include/qemu/qemu-plugin.h ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* opaque: not used */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
/* ---------------------------------------------------------------- */

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

enum { C_ALU, C_LDST, C_BR, C_VLDST, C_VMAC, C_VOTHER, NCLASS };
enum { F_MUL = 1, F_SINGLE = 2, F_LOB = 4, F_DIV = 8, F_STORE = 16 };
enum { M_NONE, M_M4, M_M7, M_M55 };

typedef struct {
    uint8_t cls;
    uint8_t flags;
    uint8_t xfer;  /* registers moved by LDM/STM/PUSH/POP/LDRD/STRD (else 1) */
    uint8_t elems; /* elements of an MVE gather / scatter (0 otherwise) */
} insn_info;

/* 0 total, 1..6 per class, 7 modelled cycles */
#define NCNT (NCLASS + 2)
static uint64_t cnt[NCNT];
static uint64_t start_addr = UINT64_MAX;
static uint64_t stop_addr = UINT64_MAX;
static uint64_t start_snapshot[NCNT];
static bool in_region;
static int model = M_NONE;
static FILE *out;

typedef struct {
    int kind;                /* 0 start, 1 stop */
    uint64_t pending[NCNT];  /* the part of the block at or after the marker */
    uint64_t self[NCNT];     /* the marker instruction itself */
} marker_info;

static int popcount16(uint32_t x)
{
    int n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

static insn_info classify(const uint8_t *d, size_t size)
{
    insn_info r = {C_ALU, 0, 1, 0};
    const uint32_t h1 = (uint32_t)d[0] | ((uint32_t)d[1] << 8);
    if (size < 4) {
        if ((h1 & 0xF000) == 0xD000) {           /* B<c>; 1101 111x is UDF / SVC */
            if ((h1 & 0x0E00) != 0x0E00) r.cls = C_BR;
        } else if ((h1 & 0xF800) == 0xE000 || (h1 & 0xF500) == 0xB100 || (h1 & 0xFF00) == 0x4700
                   || (h1 & 0xFF87) == 0x4687) {  /* B, CBZ/CBNZ, BX/BLX, MOV pc */
            r.cls = C_BR;
        } else if ((h1 & 0xFF00) == 0xBD00) {    /* POP {.., pc} */
            r.cls = C_BR;
            r.xfer = (uint8_t)(popcount16(h1 & 0xFF) + 1);
            r.flags |= F_SINGLE;
        } else if ((h1 & 0xF600) == 0xB400) {    /* PUSH / POP */
            r.cls = C_LDST;
            r.xfer = (uint8_t)(popcount16(h1 & 0x1FF));
            r.flags |= F_SINGLE | ((h1 & 0x0800) ? 0 : F_STORE);
        } else if ((h1 & 0xF000) == 0xC000) {    /* LDM / STM */
            r.cls = C_LDST;
            r.xfer = (uint8_t)popcount16(h1 & 0xFF);
            r.flags |= F_SINGLE | ((h1 & 0x0800) ? 0 : F_STORE);
        } else if ((h1 & 0xF800) == 0x4800 || (h1 & 0xF000) == 0x5000 || (h1 & 0xE000) == 0x6000
                   || (h1 & 0xF000) == 0x8000 || (h1 & 0xF000) == 0x9000) {
            r.cls = C_LDST;
            if (((h1 & 0xF000) == 0x5000 && (h1 & 0x0E00) < 0x0600)
                || ((h1 & 0xE000) == 0x6000 && !(h1 & 0x0800))
                || ((h1 & 0xF000) == 0x8000 && !(h1 & 0x0800))
                || ((h1 & 0xF000) == 0x9000 && !(h1 & 0x0800)))
                r.flags |= F_STORE;
        } else if ((h1 & 0xFFC0) == 0x4340) {    /* MULS */
            r.flags |= F_MUL;
        }
        return r;
    }
    const uint32_t h2 = (uint32_t)d[2] | ((uint32_t)d[3] << 8);
    if ((h1 & 0xFFC0) == 0xF000 && h2 == 0xE801) { /* VCTP */
        r.cls = C_VOTHER;
        return r;
    }
    if ((h1 & 0xF800) == 0xF000 && (h2 & 0x8000)) {
        /* branches and miscellaneous control; B<c>.W with cond 111x is MSR/hints */
        if ((h2 & 0x5000) == 0 && ((h1 >> 6) & 0xE) == 0xE) return r;
        r.cls = C_BR;
        if ((h2 & 0xD001) == 0xC001) r.flags |= F_LOB; /* WLS/DLS/LE/(LE|WLS|DLS)TP */
        return r;
    }
    if ((h1 & 0xEC00) == 0xEC00) {               /* coprocessor / FP / MVE space */
        const uint32_t cp = (h2 >> 8) & 0xF;
        if ((h1 & 0xEE00) == 0xEC00) {           /* loads / stores, 64-bit moves */
            if ((h1 & 0xFFA0) == 0xEC00) {        /* VMOV two GPRs <-> lanes / D reg */
                r.cls = C_VOTHER;
                return r;
            }
            if (cp == 10 || cp == 11) {           /* VFP load / store / push / pop */
                r.cls = C_LDST;
                r.flags |= (h1 & 0x0010) ? 0 : F_STORE;
                return r;
            }
            r.cls = C_VLDST;
            r.flags |= (h1 & 0x0010) ? 0 : F_STORE;
            if (((h1 & 0x0120) == 0 && (h2 & 0x1E00) != 0x1E00) || (h1 & 0xFF00) == 0xFD00) {
                /* gather / scatter: vector offsets (P = W = 0) or a vector base */
                const uint32_t sz = (h2 >> 7) & 3;
                r.elems = (h1 & 0xFF00) == 0xFD00 ? 4 : (uint8_t)(sz == 0 ? 16 : sz == 1 ? 8 : sz == 2 ? 4 : 2);
            }
            return r;
        }
        r.cls = C_VOTHER;
        if ((h1 & 0xEF00) == 0xEF00) {           /* vector data processing */
            if (((h2 & 0x0F00) == 0x0900 && (h2 & 0x10)) || ((h2 & 0x0F00) == 0x0B00 && !(h2 & 0x10)))
                r.cls = C_VMAC;                   /* VMUL (vector); VQDMULH / VQRDMULH */
            return r;
        }
        if (cp != 14 && cp != 15) return r;       /* FP data processing, VMOV/VDUP */
        if ((h1 & 0xEF80) == 0xEE80) {           /* across-lane ops */
            const uint32_t hi = (h1 >> 4) & 7;
            if (hi == 7) {
                if (!(h1 & 1)) r.cls = C_VMAC;    /* VMLADAV / VMLSDAV (VADDV: bit 16) */
            } else if (hi <= 5) {                 /* VMLALDAV / VRMLALDAVH (not VABAV, VADDLV) */
                if (!(h2 & 1) && !(cp == 15 && (h1 & 0xF) == 9)) r.cls = C_VMAC;
            }
            return r;
        }
        if ((h1 & 0x30) != 0x30) {               /* size 11 here: shifts, VMOVN... */
            if ((h2 & 0x0F70) == 0x0E40) r.cls = C_VMAC; /* VMLA / VMLAS (scalar) */
            else if ((h2 & 0x0F70) == 0x0E60 && (h1 & 1) && !((h1 & 0x1000) && (h2 & 0x1000)))
                r.cls = C_VMAC;                   /* VMUL / VQ(R)DMULH (scalar), not VBRSR */
            else if ((h1 & 0xEF81) == 0xEE01 && (h2 & 0x0F50) == 0x0E00)
                r.cls = C_VMAC;                   /* VMULL / VMULH / VRMULH */
        }
        return r;
    }
    if ((h1 & 0xFE40) == 0xE800) {               /* LDM / STM (.W) */
        r.cls = (h1 & 0x0010) && (h2 & 0x8000) ? C_BR : C_LDST;
        r.xfer = (uint8_t)popcount16(h2 & 0xDFFF);
        r.flags |= F_SINGLE | ((h1 & 0x0010) ? 0 : F_STORE);
        return r;
    }
    if ((h1 & 0xFE40) == 0xE840) {               /* LDRD/STRD, exclusives, TBB/TBH */
        if ((h1 & 0xFFF0) == 0xE8D0 && (h2 & 0xFFE0) == 0xF000) {
            r.cls = C_BR;
            r.flags |= F_SINGLE;
            return r;
        }
        r.cls = C_LDST;
        r.flags |= F_SINGLE | ((h1 & 0x0010) ? 0 : F_STORE);
        if (h1 & 0x0120) r.xfer = 2;
        return r;
    }
    if ((h1 & 0xFE00) == 0xF800) {               /* single loads / stores, PLD */
        r.cls = C_LDST;
        if (!(h1 & 0x0010)) r.flags |= F_STORE;
        else if ((h2 >> 12) == 15 && (h1 & 0x0060) == 0x0040) r.cls = C_BR; /* LDR pc */
        return r;
    }
    if ((h1 & 0xFF00) == 0xFB00) {               /* multiplies, MACs, long multiplies, DIV */
        r.flags |= F_MUL;
        if ((h1 & 0xFFD0) == 0xFB90 && (h2 & 0x00F0) == 0x00F0) r.flags = F_DIV | F_SINGLE;
    }
    return r;
}

/* Modelled issue cycle of each instruction of a block (at[i]) and its total.
 *   M55: in order; scalar instructions 1 cycle (LDM/STM/PUSH/POP 1 per register,
 *        branches 2, low-overhead-loop instructions 1); an MVE instruction issues
 *        in a cycle and keeps its pipe (load/store, integer, multiply) busy for its
 *        two beats, so instructions of different pipes overlap by one beat; a
 *        gather / scatter keeps the load/store pipe one cycle per element.
 *   M7:  in order, dual issue of two neighbouring instructions unless either is
 *        single-issue (LDM/STM/LDRD/STRD/PUSH/POP/TBB/DIV) or both use the same
 *        single pipe (multiply-accumulate, store, branch) or both are loads beyond
 *        the two load pipes; register dependencies are not tracked (optimistic);
 *        LDM/STM 1 cycle per 2 registers, DIV 7, branches 2.
 *   M4:  in order, single issue: 1 cycle each, loads and stores 2 (LDM/STM/PUSH/POP
 *        1 + registers), branches 2, DIV 7 (M4 divides take 2-12 cycles). */
static uint64_t schedule(const insn_info *in, size_t n, uint32_t *at)
{
    uint64_t t = 0;
    if (model == M_M55) {
        uint64_t pipe[3] = {0, 0, 0}; /* load/store, integer, multiply: free at */
        for (size_t i = 0; i < n; i++) {
            const insn_info *x = &in[i];
            at[i] = (uint32_t)t;
            if (x->cls >= C_VLDST) {
                const int p = x->cls == C_VLDST ? 0 : x->cls == C_VMAC ? 2 : 1;
                uint64_t s = t > pipe[p] ? t : pipe[p];
                at[i] = (uint32_t)s;
                pipe[p] = s + (x->elems ? x->elems : 2);
                t = s + 1;
            } else if (x->cls == C_BR) {
                t += (x->flags & F_LOB) ? 1 : 2;
            } else if (x->cls == C_LDST) {
                t += x->xfer ? x->xfer : 1;
            } else {
                t += (x->flags & F_DIV) ? 7 : 1;
            }
        }
        return t;
    }
    if (model == M_M7) {
        for (size_t i = 0; i < n; i++) {
            const insn_info *x = &in[i];
            at[i] = (uint32_t)t;
            uint64_t c = 1;
            if (x->flags & F_DIV) c = 7;
            else if (x->cls == C_BR) c = 2;
            else if (x->flags & F_SINGLE) c = (uint64_t)(x->xfer + 1) / 2;
            if (c < 1) c = 1;
            /* pair with the next instruction? */
            if (c == 1 && i + 1 < n && x->cls != C_BR && !(x->flags & F_SINGLE)) {
                const insn_info *y = &in[i + 1];
                const int y_single = (y->flags & (F_SINGLE | F_DIV)) || y->cls == C_BR;
                const int both_mul = (x->flags & F_MUL) && (y->flags & F_MUL);
                const int both_store = (x->flags & F_STORE) && (y->flags & F_STORE);
                if (!y_single && !both_mul && !both_store) {
                    at[i + 1] = (uint32_t)t;
                    i++;
                }
            }
            t += c;
        }
        return t;
    }
    if (model == M_M4) {
        for (size_t i = 0; i < n; i++) {
            const insn_info *x = &in[i];
            at[i] = (uint32_t)t;
            if (x->flags & F_DIV) t += 7;
            else if (x->cls == C_BR) t += 2;
            else if (x->cls == C_LDST) t += (x->flags & F_SINGLE) ? 1u + x->xfer : 2;
            else t += 1;
        }
        return t;
    }
    for (size_t i = 0; i < n; i++) at[i] = 0;
    return 0;
}

static void on_marker(unsigned int vcpu_index, void *udata)
{
    const marker_info *m = (const marker_info *)udata;
    uint64_t before[NCNT];
    (void)vcpu_index;
    for (int k = 0; k < NCNT; k++) before[k] = cnt[k] - m->pending[k];
    if (m->kind == 0) {
        for (int k = 0; k < NCNT; k++) start_snapshot[k] = before[k] + m->self[k];
        in_region = true;
    } else if (in_region) {
        uint64_t d[NCNT];
        in_region = false;
        for (int k = 0; k < NCNT; k++) d[k] = before[k] - start_snapshot[k];
        fprintf(out, "region %" PRIu64 "\n", d[0]);
        fprintf(out, "classes");
        for (int k = 1; k < NCNT; k++) fprintf(out, " %" PRIu64, d[k]);
        fprintf(out, "\n");
        fflush(out);
    } else {
        fprintf(out, "unpaired_stop\n");
        fflush(out);
    }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    insn_info *info = calloc(n ? n : 1, sizeof *info);
    uint32_t *at = calloc(n ? n : 1, sizeof *at);
    uint64_t per[NCLASS] = {0};
    (void)id;
    if (!info || !at) {
        free(info);
        free(at);
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &cnt[0], n);
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint8_t buf[4] = {0, 0, 0, 0};
        size_t sz = qemu_plugin_insn_size(insn);
        memcpy(buf, qemu_plugin_insn_data(insn), sz < 4 ? sz : 4);
        info[i] = classify(buf, sz);
        per[info[i].cls]++;
    }
    const uint64_t cycles = schedule(info, n, at);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &cnt[0], n);
    for (int k = 0; k < NCLASS; k++)
        if (per[k]) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &cnt[1 + k], per[k]);
    if (cycles) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &cnt[NCNT - 1], cycles);
    for (size_t i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t va = qemu_plugin_insn_vaddr(insn);
        if (va != start_addr && va != stop_addr) continue;
        marker_info *m = calloc(1, sizeof *m); /* kept for the plugin's lifetime */
        if (!m) continue;
        m->kind = va == start_addr ? 0 : 1;
        m->pending[0] = n - i;
        for (size_t j = i; j < n; j++) m->pending[1 + info[j].cls]++;
        m->pending[NCNT - 1] = cycles - at[i];
        m->self[0] = 1;
        m->self[1 + info[i].cls] = 1;
        m->self[NCNT - 1] = (i + 1 < n ? at[i + 1] : cycles) - at[i];
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, m);
    }
    free(info);
    free(at);
}

static void on_exit_cb(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    fprintf(out, "total %" PRIu64 "\n", cnt[0]);
    fflush(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    (void)info;
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "start=", 6) == 0) {
            start_addr = strtoull(argv[i] + 6, NULL, 0) & ~(uint64_t)1;
        } else if (strncmp(argv[i], "stop=", 5) == 0) {
            stop_addr = strtoull(argv[i] + 5, NULL, 0) & ~(uint64_t)1;
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else if (strcmp(argv[i], "model=m4") == 0) {
            model = M_M4;
        } else if (strcmp(argv[i], "model=m7") == 0) {
            model = M_M7;
        } else if (strcmp(argv[i], "model=m55") == 0) {
            model = M_M55;
        } else {
            fprintf(stderr, "dtmm insn-count plugin: unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    out = path ? fopen(path, "w") : stderr;
    if (out == NULL) {
        fprintf(stderr, "dtmm insn-count plugin: cannot open '%s'\n", path);
        return -1;
    }
    fprintf(out, "dtmm-insn-count 1\n");
    fflush(out);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
