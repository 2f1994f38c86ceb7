/*
 * dtmm_kernel_driver.c - see dtmm_kernel_driver.h.
 *
 * ints layout per op (dims are n, h, w, c; conv params cp are stride_h, stride_w,
 * pad_top, pad_bottom, pad_left, pad_right, in_zp, out_zp, act_min, act_max):
 *   CONV       in, filter, out, cp                     blobs x, w, bias, mult, shift
 *   CONV_FWCS  in, out, cp, size kh kw c_out cptr_bits fidx_bits
 *                                                      blobs x, arr, cptr, fidx, bias, mult, shift
 *   CONV_CSR   in, out, cp, kh kw c_in c_out col_bits rowptr_bits
 *                                                      blobs x, values, col, rowptr, bias, mult, shift
 *   CONV_PATTERN in, out, cp, n_patterns c_in c_out kptr_bits kchan_bits
 *                                                      blobs x, patterns, kptr, kchan, kpat,
 *                                                            values, bias, mult, shift
 *   DEPTHWISE  in, filter, out, cp, depth_multiplier   blobs x, w, bias, mult, shift
 *   FC         cp, per_channel batches in_f out_f      blobs x, w, bias, mult, shift
 *   FC_FWCS    cp, per_channel batches in_f, size kh kw c_out cptr_bits fidx_bits
 *                                                      blobs x, arr, cptr, fidx, offset, mult, shift
 *   MAX/AVG_POOL pool params (10), in, out             blobs x
 *   ADD        add params (12), size                   blobs a, b
 *   REQUANT    size                                    blobs acc, mult, shift (out int32)
 *   FWCS_CONFIG (none)                                 out int32 {R, isa: 0 scalar 1 dsp 2 mve}
 *   SCRATCH_SIZE op, then that op's ints              out int32: its scratch size here
 */
#include "dtmm_kernel_driver.h"

#include <string.h>

#include "dtmm_kernels.h"

static const int32_t *read_dims(const int32_t *a, dtmm_dims *d)
{
    d->n = a[0];
    d->h = a[1];
    d->w = a[2];
    d->c = a[3];
    return a + 4;
}

static const int32_t *read_cp(const int32_t *a, dtmm_conv_params *p)
{
    p->stride_h = a[0];
    p->stride_w = a[1];
    p->pad_top = a[2];
    p->pad_bottom = a[3];
    p->pad_left = a[4];
    p->pad_right = a[5];
    p->in_zp = a[6];
    p->out_zp = a[7];
    p->act_min = a[8];
    p->act_max = a[9];
    return a + 10;
}

static void read_fwcs(const int32_t *a, const void *const *b, dtmm_fwcs *fw)
{
    fw->arr = (const int8_t *)b[1];
    fw->cptr = b[2];
    fw->fidx = b[3];
    fw->size = a[0];
    fw->kh = a[1];
    fw->kw = a[2];
    fw->c_out = a[3];
    fw->cptr_bits = a[4];
    fw->fidx_bits = a[5];
}

static void read_pattern(const int32_t *a, const void *const *b, dtmm_pattern *pw)
{
    pw->n_patterns = a[0];
    pw->c_in = a[1];
    pw->c_out = a[2];
    pw->kptr_bits = a[3];
    pw->kchan_bits = a[4];
    pw->patterns = (const uint8_t *)b[1];
    pw->kptr = b[2];
    pw->kchan = b[3];
    pw->kpat = (const uint8_t *)b[4];
    pw->values = (const int8_t *)b[5];
}

static void read_csr(const int32_t *a, const void *const *b, dtmm_csr *cw)
{
    cw->values = (const int8_t *)b[1];
    cw->col = b[2];
    cw->rowptr = b[3];
    cw->kh = a[0];
    cw->kw = a[1];
    cw->c_in = a[2];
    cw->c_out = a[3];
    cw->col_bits = a[4];
    cw->rowptr_bits = a[5];
}

int32_t dtmm_driver_scratch_size(int32_t op, const int32_t *ints)
{
    dtmm_dims in, f, out;
    dtmm_conv_params cp;
    const int32_t *a = ints;
    switch (op) {
    case DTMM_OP_CONV:
        a = read_dims(a, &in);
        read_dims(a, &f);
        return dtmm_conv_s8_get_buffer_size(&in, &f);
    case DTMM_OP_CONV_FWCS: {
        dtmm_fwcs fw;
        const void *nb[4] = {0, 0, 0, 0};
        a = read_cp(read_dims(read_dims(a, &in), &out), &cp);
        read_fwcs(a, nb, &fw);
        return dtmm_conv_fwcs_s8_get_buffer_size(&in, &fw);
    }
    case DTMM_OP_CONV_CSR: {
        dtmm_csr cw;
        const void *nb[4] = {0, 0, 0, 0};
        a = read_cp(read_dims(read_dims(a, &in), &out), &cp);
        read_csr(a, nb, &cw);
        return dtmm_conv_csr_s8_get_buffer_size(&in, &cw);
    }
    case DTMM_OP_CONV_PATTERN: {
        dtmm_pattern pw;
        const void *nb[6] = {0, 0, 0, 0, 0, 0};
        a = read_cp(read_dims(read_dims(a, &in), &out), &cp);
        read_pattern(a, nb, &pw);
        return dtmm_conv_pattern_s8_get_buffer_size(&in, &pw);
    }
    case DTMM_OP_DEPTHWISE: case DTMM_OP_FC: case DTMM_OP_FC_FWCS: case DTMM_OP_MAX_POOL:
    case DTMM_OP_AVG_POOL: case DTMM_OP_ADD: case DTMM_OP_REQUANT: case DTMM_OP_FWCS_CONFIG:
    case DTMM_OP_SCRATCH_SIZE:
        return 0;
    default:
        return -1;
    }
}

int32_t dtmm_driver_call(int32_t op, const int32_t *ints, const void *const *b, void *out,
                         void *scratch)
{
    dtmm_dims in, f, od;
    dtmm_conv_params cp;
    dtmm_requant_params q;
    const int32_t *a = ints;
    switch (op) {
    case DTMM_OP_CONV:
        a = read_cp(read_dims(read_dims(read_dims(a, &in), &f), &od), &cp);
        q.multiplier = (const int32_t *)b[3];
        q.shift = (const int32_t *)b[4];
        return dtmm_conv_s8(&cp, &q, &in, (const int8_t *)b[0], &f, (const int8_t *)b[1],
                            (const int32_t *)b[2], &od, (int8_t *)out, scratch);
    case DTMM_OP_CONV_FWCS: {
        dtmm_fwcs fw;
        a = read_cp(read_dims(read_dims(a, &in), &od), &cp);
        read_fwcs(a, b, &fw);
        q.multiplier = (const int32_t *)b[5];
        q.shift = (const int32_t *)b[6];
        return dtmm_conv_fwcs_s8(&cp, &q, &in, (const int8_t *)b[0], &fw, (const int32_t *)b[4],
                                 &od, (int8_t *)out, scratch);
    }
    case DTMM_OP_CONV_CSR: {
        dtmm_csr cw;
        a = read_cp(read_dims(read_dims(a, &in), &od), &cp);
        read_csr(a, b, &cw);
        q.multiplier = (const int32_t *)b[5];
        q.shift = (const int32_t *)b[6];
        return dtmm_conv_csr_s8(&cp, &q, &in, (const int8_t *)b[0], &cw, (const int32_t *)b[4],
                                &od, (int8_t *)out, scratch);
    }
    case DTMM_OP_CONV_PATTERN: {
        dtmm_pattern pw;
        a = read_cp(read_dims(read_dims(a, &in), &od), &cp);
        read_pattern(a, b, &pw);
        q.multiplier = (const int32_t *)b[7];
        q.shift = (const int32_t *)b[8];
        return dtmm_conv_pattern_s8(&cp, &q, &in, (const int8_t *)b[0], &pw, (const int32_t *)b[6],
                                    &od, (int8_t *)out, scratch);
    }
    case DTMM_OP_DEPTHWISE:
        a = read_cp(read_dims(read_dims(read_dims(a, &in), &f), &od), &cp);
        q.multiplier = (const int32_t *)b[3];
        q.shift = (const int32_t *)b[4];
        return dtmm_depthwise_conv_s8(&cp, &q, a[0], &in, (const int8_t *)b[0], &f,
                                      (const int8_t *)b[1], (const int32_t *)b[2], &od,
                                      (int8_t *)out);
    case DTMM_OP_FC:
        a = read_cp(a, &cp);
        q.multiplier = (const int32_t *)b[3];
        q.shift = (const int32_t *)b[4];
        return dtmm_fully_connected_s8(&cp, &q, a[0], a[1], a[2], a[3], (const int8_t *)b[0],
                                       (const int8_t *)b[1], (const int32_t *)b[2], (int8_t *)out);
    case DTMM_OP_FC_FWCS: {
        dtmm_fwcs fw;
        a = read_cp(a, &cp);
        /* a: per_channel batches in_features | size kh kw c_out cptr_bits fidx_bits */
        read_fwcs(a + 3, b, &fw);
        q.multiplier = (const int32_t *)b[5];
        q.shift = (const int32_t *)b[6];
        return dtmm_fully_connected_fwcs_s8(&cp, &q, a[0], a[1], a[2], &fw, (const int32_t *)b[4],
                                            (const int8_t *)b[0], (int8_t *)out);
    }
    case DTMM_OP_MAX_POOL:
    case DTMM_OP_AVG_POOL: {
        dtmm_pool_params pp;
        pp.filter_h = a[0];
        pp.filter_w = a[1];
        pp.stride_h = a[2];
        pp.stride_w = a[3];
        pp.pad_top = a[4];
        pp.pad_bottom = a[5];
        pp.pad_left = a[6];
        pp.pad_right = a[7];
        pp.act_min = a[8];
        pp.act_max = a[9];
        read_dims(read_dims(a + 10, &in), &od);
        return op == DTMM_OP_MAX_POOL
                   ? dtmm_max_pool_s8(&pp, &in, (const int8_t *)b[0], &od, (int8_t *)out)
                   : dtmm_avg_pool_s8(&pp, &in, (const int8_t *)b[0], &od, (int8_t *)out);
    }
    case DTMM_OP_ADD: {
        dtmm_add_params ap;
        ap.in1_zp = a[0];
        ap.in2_zp = a[1];
        ap.out_zp = a[2];
        ap.left_shift = a[3];
        ap.in1_multiplier = a[4];
        ap.in1_shift = a[5];
        ap.in2_multiplier = a[6];
        ap.in2_shift = a[7];
        ap.out_multiplier = a[8];
        ap.out_shift = a[9];
        ap.act_min = a[10];
        ap.act_max = a[11];
        return dtmm_add_s8(&ap, (const int8_t *)b[0], (const int8_t *)b[1], (int8_t *)out, a[12]);
    }
    case DTMM_OP_REQUANT:
        dtmm_requantize_s32((const int32_t *)b[0], (const int32_t *)b[1], (const int32_t *)b[2],
                            (int32_t *)out, a[0]);
        return DTMM_OK;
    case DTMM_OP_FWCS_CONFIG: {
        const char *isa = "";
        int32_t r[2];
        r[0] = dtmm_conv_fwcs_s8_config(&isa);
        r[1] = isa[0] == 'm' ? 2 : isa[0] == 'd' ? 1 : 0;
        memcpy(out, r, sizeof r);
        return DTMM_OK;
    }
    case DTMM_OP_SCRATCH_SIZE: { /* this build's answer, e.g. on a 32-bit target */
        const int32_t n = dtmm_driver_scratch_size(a[0], a + 1);
        memcpy(out, &n, sizeof n);
        return DTMM_OK;
    }
    default:
        return DTMM_ERR_ARG;
    }
}
