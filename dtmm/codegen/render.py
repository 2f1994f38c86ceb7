"""Render stage of code generation: a :class:`~dtmm.codegen.plan.ModelPlan` -> C text.

Pure functions from plan to strings; no decisions are taken here (they are all in
the plan) and nothing is written (see :mod:`dtmm.codegen.emit`).

Nothing read from a model file becomes code: every C identifier is made by dtmm
(``L<index>_<op kind>``, e.g. ``L3_conv2d_w``), and every file-provided name shown in a comment
goes through :func:`dtmm.util.text.safe_name`.

* :func:`render_model_h` / :func:`render_model_c`: the model's public header and its
  implementation (constants, the static arena, ``dtmm_model_run`` calling the kernels
  in order, ``dtmm_model_invoke``, ``dtmm_model_invoke_batch``, ``dtmm_model_check``);
* :func:`render_harness`: a ``main.c`` that streams the inputs one at a time through
  ``dtmm_input_next`` and prints each output with ``dtmm_print_hex`` and, for a classifier,
  the predicted class (between ``dtmm_bench_start``/``dtmm_bench_stop`` markers around each
  ``dtmm_model_invoke``);
* :func:`render_readme`: the project's ``README.md`` (build, formats, API, memory);
* :func:`render_makefile`: a Makefile for the host (shared library + demo) or a
  Cortex-M target (firmware.elf, ``make run`` on QEMU).

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.codegen.plan import plan_model
    >>> sg = SynthGraph((4, 4, 2), seed=0); _ = sg.conv(3, 1)
    >>> plan = plan_model(sg.finish(), "host")
    >>> "int dtmm_model_invoke(const int8_t *in, int8_t *out);" in render_model_h(plan)
    True
    >>> "dtmm_conv_s8(&L0_conv2d_cp" in render_model_c(plan)
    True
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np

from dtmm.codegen import plan as P
from dtmm.util.text import safe_name

__all__ = ["render_model_h", "render_model_c", "render_harness", "render_makefile", "render_const",
           "render_readme", "classifier_classes"]

_CTYPE = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t",
          np.dtype(np.uint16): "uint16_t", np.dtype(np.int32): "int32_t",
          np.dtype(np.uint32): "uint32_t"}


def _int_text(v: int, dtype: np.dtype) -> str:
    if dtype == np.int32 and v == -(2 ** 31):
        return "(-2147483647 - 1)"
    if dtype == np.uint32:
        return f"{v}u"
    return str(v)


def render_const(c: P.ConstArray, per_line: int = 24) -> str:
    """One ``static const`` C array (16-byte aligned; ``DTMM_LARGE_CONST`` when ``c.large``).

    >>> import numpy as np
    >>> print(render_const(P.ConstArray("w", np.array([1, -2, 3], np.int8))))
    static const int8_t w[3] __attribute__((aligned(16), used)) = {
        1, -2, 3,
    };
    """
    dt = c.data.dtype
    ctype = _CTYPE[dt]
    vals = c.data.tolist()
    if dt == np.int32 or dt == np.uint32:
        items = [_int_text(v, dt) for v in vals]
    else:
        items = list(map(str, vals))
    if not items:
        items = ["0"]
    # used: kept even where the compiler folds every read (the byte model counts it)
    attrs = "__attribute__((aligned(16), used))" + (" DTMM_LARGE_CONST" if c.large else "")
    body = ",\n    ".join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))
    return (f"static const {ctype} {c.cname}[{max(1, c.data.size)}] {attrs} = {{\n"
            f"    {body},\n}};")


def _struct(ctype: str, name: str, obj, only=None) -> str:
    names = only or [f.name for f in fields(obj)]
    inits = ", ".join(f".{n} = {int(getattr(obj, n))}" for n in names)
    return f"static const {ctype} {name} = {{{inits}}};"


def _dims(name: str, d: P.Dims) -> str:
    return _struct("dtmm_dims", name, d)


def _arena(t: P.TensorRef) -> str:
    return f"ARENA({t.offset})"


def _scratch(s: P.Step) -> str:
    return f"ARENA({s.scratch_offset})" if s.scratch_offset is not None else "NULL"


def _rq(cid: str, rq) -> str:
    return f"static const dtmm_requant_params {cid}_q = {{{rq.multiplier}, {rq.shift}}};"


#: Compressed-conv call -> (kernel ``dtmm_conv_<kind>_s8``, C weight struct, its name suffix).
_SPARSE_KERNELS = {P.FwcsCall: ("fwcs", "dtmm_fwcs", "fw"), P.CsrCall: ("csr", "dtmm_csr", "csr"),
                   P.PatternCall: ("pattern", "dtmm_pattern", "pat")}
_SPARSE_COMMON = frozenset(f.name for f in fields(P.SparseConvCall))


def _decls_and_call(s: P.Step) -> tuple[list[str], str | None, str | None]:
    """(static declarations, the kernel call expression, a scratch check expression)."""
    c, cid = s.call, s.cid
    d: list[str] = []
    if isinstance(c, (P.ConvCall, P.FwcsCall, P.CsrCall, P.PatternCall, P.DepthwiseCall)):
        d.append(_struct("dtmm_conv_params", f"{cid}_cp", c.params))
        d.append(_rq(cid, c.rq))
        d.append(_dims(f"{cid}_in", c.in_dims))
        d.append(_dims(f"{cid}_out", c.out_dims))
    head = f"&{cid}_cp, &{cid}_q, &{cid}_in, {_arena(c.x)}" if hasattr(c, "params") else ""
    if isinstance(c, P.ConvCall):
        d.append(_dims(f"{cid}_fd", c.filter_dims))
        return (d, f"dtmm_conv_s8({head}, &{cid}_fd, {c.weights}, {c.rq.bias}, &{cid}_out, "
                   f"{_arena(c.y)}, {_scratch(s)})",
                f"dtmm_conv_s8_get_buffer_size(&{cid}_in, &{cid}_fd)")
    if isinstance(c, P.SparseConvCall):
        kind, ctype, suffix = _SPARSE_KERNELS[type(c)]
        names = [f.name for f in fields(c) if f.name not in _SPARSE_COMMON and f.name != "rq"]
        inits = ", ".join(f".{n} = {getattr(c, n)}" for n in names)
        d.append(f"static const {ctype} {cid}_{suffix} = {{{inits}}};")
        fn = f"dtmm_conv_{kind}_s8"
        return (d, f"{fn}({head}, &{cid}_{suffix}, {c.rq.bias}, &{cid}_out, {_arena(c.y)}, "
                   f"{_scratch(s)})",
                f"{fn}_get_buffer_size(&{cid}_in, &{cid}_{suffix})")
    if isinstance(c, P.DepthwiseCall):
        d.append(_dims(f"{cid}_fd", c.filter_dims))
        return (d, f"dtmm_depthwise_conv_s8(&{cid}_cp, &{cid}_q, {c.depth_multiplier}, &{cid}_in, "
                   f"{_arena(c.x)}, &{cid}_fd, {c.weights}, {c.rq.bias}, &{cid}_out, "
                   f"{_arena(c.y)})", None)
    if isinstance(c, P.FcCall):
        d.append(_struct("dtmm_conv_params", f"{cid}_cp", c.params))
        d.append(_rq(cid, c.rq))
        return (d, f"dtmm_fully_connected_s8(&{cid}_cp, &{cid}_q, {c.per_channel}, 1, "
                   f"{c.in_features}, {c.out_features}, {_arena(c.x)}, {c.weights}, {c.rq.bias}, "
                   f"{_arena(c.y)})", None)
    if isinstance(c, P.FwcsFcCall):
        d.append(_struct("dtmm_conv_params", f"{cid}_cp", c.params))
        d.append(_rq(cid, c.rq))
        fw = ", ".join(f".{n} = {getattr(c, n)}" for n in
                       ("arr", "cptr", "fidx", "size", "kh", "kw", "c_out", "cptr_bits", "fidx_bits"))
        d.append(f"static const dtmm_fwcs {cid}_fw = {{{fw}}};")
        return (d, f"dtmm_fully_connected_fwcs_s8(&{cid}_cp, &{cid}_q, {c.per_channel}, 1, "
                   f"{c.in_features}, &{cid}_fw, {c.rq.bias}, {_arena(c.x)}, {_arena(c.y)})", None)
    if isinstance(c, P.PoolCall):
        t, b, l, r = c.pads
        d.append(f"static const dtmm_pool_params {cid}_pp = {{.filter_h = {c.filter_h}, "
                 f".filter_w = {c.filter_w}, .stride_h = {c.stride_h}, .stride_w = {c.stride_w}, "
                 f".pad_top = {t}, .pad_bottom = {b}, .pad_left = {l}, .pad_right = {r}, "
                 f".act_min = -128, .act_max = 127}};")
        d.append(_dims(f"{cid}_in", c.in_dims))
        d.append(_dims(f"{cid}_out", c.out_dims))
        fn = "dtmm_max_pool_s8" if c.is_max else "dtmm_avg_pool_s8"
        return (d, f"{fn}(&{cid}_pp, &{cid}_in, {_arena(c.x)}, &{cid}_out, {_arena(c.y)})", None)
    if isinstance(c, P.AddCall):
        names = ["in1_zp", "in2_zp", "out_zp", "left_shift", "in1_multiplier", "in1_shift",
                 "in2_multiplier", "in2_shift", "out_multiplier", "out_shift", "act_min", "act_max"]
        d.append(_struct("dtmm_add_params", f"{cid}_ap", c, names))
        return (d, f"dtmm_add_s8(&{cid}_ap, {_arena(c.a)}, {_arena(c.b)}, {_arena(c.y)}, {c.size})",
                None)
    if isinstance(c, P.SoftmaxCall):
        return (d, f"dtmm_softmax_s8({_arena(c.x)}, {c.rows}, {c.depth}, {c.beta_multiplier}, "
                   f"{c.beta_left_shift}, {c.diff_min}, {_arena(c.y)})", None)
    if isinstance(c, P.ConcatCall):
        ins = ", ".join(_arena(t) for t in c.xs)
        return (d, f"concat_s8({_arena(c.y)}, {c.pixels}, {len(c.xs)}, "
                   f"(const int8_t *const[]){{{ins}}}, {cid}_chans)", None)
    if isinstance(c, P.AliasCall):
        return d, None, None
    raise TypeError(f"render: no renderer for {type(c).__name__}")


def _describe(s: P.Step) -> str:
    c = s.call
    if isinstance(c, P.AddCall):
        ins = [c.a, c.b]
    elif isinstance(c, P.ConcatCall):
        ins = list(c.xs)
    else:
        ins = [c.x]
    txt = (", ".join(f"{safe_name(t.name)}@{t.offset}" for t in ins)
           + f" -> {safe_name(c.y.name)}@{c.y.offset}")
    if s.scratch_bytes:
        txt += f", scratch {s.scratch_bytes} B @{s.scratch_offset}"
    return f"/* op {s.index}: {safe_name(s.op_name)} ({safe_name(s.op_kind)}): {txt} */"


def render_model_h(plan: P.ModelPlan) -> str:
    """The generated ``model.h``."""
    ishape = "x".join(map(str, plan.input.shape))
    oshape = "x".join(map(str, plan.output.shape))
    return f"""/*
 * model.h - generated by dtmm.codegen for target {plan.target} (kernel ISA path: {plan.arena.isa}).
 *
 * Input  {safe_name(plan.input.name)}: int8 NHWC {ishape}, scale {plan.input_scale!r}, zero point {plan.input_zero_point}
 * Output {safe_name(plan.output.name)}: int8 {oshape}, scale {plan.output_scale!r}, zero point {plan.output_zero_point}
 * Static arena: {plan.arena.size} bytes (lower bound {plan.arena.peak_live}); constants: {plan.const_bytes} bytes.
 */
#ifndef DTMM_MODEL_H
#define DTMM_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define DTMM_MODEL_INPUT_BYTES {plan.input.nbytes}
#define DTMM_MODEL_OUTPUT_BYTES {plan.output.nbytes}
#define DTMM_MODEL_ARENA_BYTES {plan.arena.size}
#define DTMM_MODEL_CONST_BYTES {plan.const_bytes}
#define DTMM_MODEL_NUM_OPS {len(plan.steps)}
#define DTMM_MODEL_INPUT_SCALE {plan.input_scale!r}f
#define DTMM_MODEL_INPUT_ZERO_POINT {plan.input_zero_point}
#define DTMM_MODEL_OUTPUT_SCALE {plan.output_scale!r}f
#define DTMM_MODEL_OUTPUT_ZERO_POINT {plan.output_zero_point}

/* Run one inference: copy `in` (DTMM_MODEL_INPUT_BYTES) into the arena, run every
 * kernel, copy the result to `out` (DTMM_MODEL_OUTPUT_BYTES).  Returns 0, or the first
 * kernel error (a negative dtmm_status; dtmm_model_failed_op names the op). */
int dtmm_model_invoke(const int8_t *in, int8_t *out);
/* n inferences on consecutive inputs / outputs; stops at the first error. */
int dtmm_model_invoke_batch(const int8_t *in, int8_t *out, int32_t n);
/* Zero-copy use: write the input at dtmm_model_input(), call dtmm_model_run(), read
 * the output at dtmm_model_output() (valid until the next run). */
int8_t *dtmm_model_input(void);
const int8_t *dtmm_model_output(void);
int dtmm_model_run(void);
/* 0 if every kernel's scratch need (its _get_buffer_size in this build) fits the
 * planned scratch, else 1 + the index of the first op that does not. */
int dtmm_model_check(void);
/* Index of the op whose kernel failed in the last run, -1 if none. */
extern int32_t dtmm_model_failed_op;

#ifdef __cplusplus
}}
#endif
#endif /* DTMM_MODEL_H */
"""


_CONCAT_HELPER = """
/* Channel concatenation of NHWC tensors (raw int8 copy, shared qparams). */
static dtmm_status concat_s8(int8_t *out, int32_t pixels, int32_t n, const int8_t *const *ins,
                             const int32_t *chans)
{
    for (int32_t p = 0; p < pixels; p++) {
        for (int32_t i = 0; i < n; i++) {
            memcpy(out, ins[i] + p * chans[i], (size_t)chans[i]);
            out += chans[i];
        }
    }
    return DTMM_OK;
}
"""


def render_model_c(plan: P.ModelPlan) -> str:
    """The generated ``model.c``."""
    decls: list[str] = []
    body: list[str] = []
    checks: list[str] = []
    for s in plan.steps:
        d, call, check = _decls_and_call(s)
        decls.extend(d)
        body.append("    " + _describe(s))
        if call is None:
            body.append("    /* reshape: the output aliases the input, no code */")
        else:
            body.append("    DTMM_PROF_BEGIN();")
            body.append(f"    rc = {call};")
            body.append("    DTMM_PROF_END();")
            body.append(f"    if (rc != DTMM_OK) {{ dtmm_model_failed_op = {s.index}; return rc; }}")
        if check is not None:
            checks.append(f"    if ({check} > {s.scratch_bytes}) return {s.index + 1};"
                          f"  /* {safe_name(s.op_name)} */")
    includes = "".join(f'#include "{h}"\n' for h in plan.kernel_headers
                       if h in ("dtmm_kernels.h", "dtmm_softmax_s8.h"))
    uses_concat = any(isinstance(s.call, P.ConcatCall) for s in plan.steps)
    consts = "\n".join(render_const(c) for c in plan.consts)
    arena_attr = " DTMM_LARGE_BSS" if plan.arena_large else ""
    notes = "".join(f" * {n}\n" for n in plan.notes)
    return f"""/*
 * model.c - generated by dtmm.codegen for target {plan.target} (kernel ISA path: {plan.arena.isa}).
 * {len(plan.steps)} ops; static arena {plan.arena.size} bytes; constants {plan.const_bytes} bytes.
{notes} */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
{includes}
#if defined(DTMM_TARGET_CORTEX_M)
#  ifndef DTMM_LARGE_CONST
#    define DTMM_LARGE_CONST __attribute__((section(".dtmm_large_const")))
#  endif
#  ifndef DTMM_LARGE_BSS
#    define DTMM_LARGE_BSS __attribute__((section(".dtmm_large_bss")))
#  endif
#else
#  ifndef DTMM_LARGE_CONST
#    define DTMM_LARGE_CONST
#  endif
#  ifndef DTMM_LARGE_BSS
#    define DTMM_LARGE_BSS
#  endif
#endif

/* Per-op profiling (-DDTMM_PROFILE, Cortex-M under QEMU): each kernel call is one
 * dtmm_bench_start / dtmm_bench_stop region, so the counting plugin reports the
 * executed instructions of every op (``dtmm verify --profile``). */
#ifdef DTMM_PROFILE
void dtmm_bench_start(void);
void dtmm_bench_stop(void);
#  define DTMM_PROF_BEGIN() dtmm_bench_start()
#  define DTMM_PROF_END() dtmm_bench_stop()
#else
#  define DTMM_PROF_BEGIN() ((void)0)
#  define DTMM_PROF_END() ((void)0)
#endif

/* ------------------------------------------------------------------ constants */
{consts}

/* ------------------------------------------------------------------ arena */
static int8_t dtmm_arena[{plan.arena.size}] __attribute__((aligned(16))){arena_attr};
#define ARENA(off) (dtmm_arena + (off))

/* ------------------------------------------------------------------ op parameters */
{chr(10).join(decls)}
{_CONCAT_HELPER if uses_concat else ""}
int32_t dtmm_model_failed_op = -1;

int8_t *dtmm_model_input(void) {{ return ARENA({plan.input.offset}); }}
const int8_t *dtmm_model_output(void) {{ return ARENA({plan.output.offset}); }}

int dtmm_model_run(void)
{{
    dtmm_status rc = DTMM_OK;
    dtmm_model_failed_op = -1;
{chr(10).join(body)}
    return (int)rc;
}}

int dtmm_model_invoke(const int8_t *in, int8_t *out)
{{
    memcpy(ARENA({plan.input.offset}), in, DTMM_MODEL_INPUT_BYTES);
    const int rc = dtmm_model_run();
    if (rc == 0) memcpy(out, ARENA({plan.output.offset}), DTMM_MODEL_OUTPUT_BYTES);
    return rc;
}}

int dtmm_model_invoke_batch(const int8_t *in, int8_t *out, int32_t n)
{{
    for (int32_t i = 0; i < n; i++) {{
        const int rc = dtmm_model_invoke(in + (size_t)i * DTMM_MODEL_INPUT_BYTES,
                                         out + (size_t)i * DTMM_MODEL_OUTPUT_BYTES);
        if (rc != 0) return rc;
    }}
    return 0;
}}

int dtmm_model_check(void)
{{
{chr(10).join(checks)}
    return 0;
}}
"""


def classifier_classes(plan: P.ModelPlan) -> int | None:
    """Number of classes when the output is a class-score vector (one row of ``n > 1``
    scores), else None: the harness then prints the raw output only."""
    shape = tuple(int(v) for v in plan.output.shape)
    if not shape or shape[-1] < 2 or int(np.prod(shape[:-1])) != 1:
        return None
    return shape[-1]


def render_harness(classes: int | None = None) -> str:
    """``main.c``: run the model on every input of the run and print each output.

    Streams the inputs one at a time with ``dtmm_input_next`` (any number; none: one run on
    zeros). Per input ``i`` prints ``DTMM_HEX y<i> <nbytes> <hex>`` (the raw int8 output) and,
    for a classifier (``classes`` scores), ``DTMM_CLASS y<i> <class> <score>``: the argmax of
    the output (the first on ties, like ``numpy.argmax``) and its int8 score. Exit code 0,
    3 (scratch check failed), 4 (a kernel error, printed as ``DTMM_MODEL_ERROR``) or 5 (the
    input is not a whole number of inputs, printed as ``DTMM_INPUT_ERROR``).
    """
    if classes is not None and int(classes) < 2:
        raise ValueError(f"classes must be >= 2, got {classes!r}")
    cls_def = (f"#define DTMM_NUM_CLASSES {int(classes)}\n" if classes is not None else "")
    cls_print = ("""
#ifdef DTMM_NUM_CLASSES
        {
            int best = 0;
            for (int k = 1; k < DTMM_NUM_CLASSES; k++)
                if (harness_out[k] > harness_out[best]) best = k;
            printf("DTMM_CLASS %s %d %d\\n", name, best, (int)harness_out[best]);
        }
#endif""")
    return f"""/* main.c - generated by dtmm.codegen: run the model on every input of this run.
 *
 * Inputs: dtmm_input.bin, raw int8 NHWC inputs of DTMM_MODEL_INPUT_BYTES each, back to
 * back, any number of them (read one at a time); without it, one run on zeros.
 * Per input i it prints
 *   DTMM_HEX y<i> <nbytes> <hex>       the raw int8 output (DTMM_MODEL_OUTPUT_BYTES)
 *   DTMM_CLASS y<i> <class> <score>    classifiers: the predicted class (argmax) and its int8 score
 * Exit code: 0; 3 scratch check failed; 4 kernel error; 5 input not a whole number of inputs.
 */
#include <stdint.h>
#include <stdio.h>

#include "dtmm_platform.h"
#include "model.h"
{cls_def}
static int8_t harness_in[DTMM_MODEL_INPUT_BYTES] __attribute__((aligned(16))) DTMM_LARGE_BSS;
static int8_t harness_out[DTMM_MODEL_OUTPUT_BYTES] __attribute__((aligned(16))) DTMM_LARGE_BSS;

static void image_name(char *name, unsigned i)
{{
    char tmp[12];
    int n = 0;
    do {{ tmp[n++] = (char)('0' + i % 10); i /= 10; }} while (i);
    name[0] = 'y';
    for (int j = 0; j < n; j++) name[1 + j] = tmp[n - 1 - j];
    name[n + 1] = 0;
}}

int main(void)
{{
    const int bad = dtmm_model_check();
    if (bad) {{
        printf("DTMM_SCRATCH_MISMATCH op %d\\n", bad - 1);
        return 3;
    }}
    for (unsigned i = 0;; i++) {{
        const size_t got = dtmm_input_next(harness_in, DTMM_MODEL_INPUT_BYTES);
        if (got == 0 && i > 0) break;              /* end of the inputs */
        if (got != 0 && got != DTMM_MODEL_INPUT_BYTES) {{
            printf("DTMM_INPUT_ERROR input %u has %u of %u bytes: the input file must hold "
                   "whole inputs\\n", i, (unsigned)got, (unsigned)DTMM_MODEL_INPUT_BYTES);
            return 5;
        }}
        char name[16];
        image_name(name, i);
#ifndef DTMM_PROFILE
        dtmm_bench_start(); /* with DTMM_PROFILE, model.c marks each op instead */
#endif
        const int rc = dtmm_model_invoke(harness_in, harness_out);
#ifndef DTMM_PROFILE
        dtmm_bench_stop();
#endif
        if (rc != 0) {{
            printf("DTMM_MODEL_ERROR image %u op %d status %d\\n", i, (int)dtmm_model_failed_op, rc);
            return 4;
        }}
        dtmm_print_hex(name, harness_out, DTMM_MODEL_OUTPUT_BYTES);{cls_print}
        if (got == 0) break;                       /* no input file: the one run on zeros */
    }}
    return 0;
}}
"""


def render_makefile(plan: P.ModelPlan, *, target_flags: list[str], defines: dict[str, object],
                    qemu_machine: str | None) -> str:
    """A standalone ``Makefile`` for the emitted project (see :mod:`dtmm.codegen.emit`)."""
    kernels = " ".join(f"kernels/{s}" for s in plan.kernel_sources)
    dflags = " ".join(f"-D{k}" if v is None else f"-D{k}={v}" for k, v in defines.items())
    if qemu_machine is None:
        return f"""# Generated by dtmm.codegen: host build of the model.
#   make            -> libdtmm_model.so (dtmm_model_invoke, dtmm_model_invoke_batch) and model_demo
#   ./model_demo    -> runs the model on dtmm_input.bin (raw int8 inputs) or on zeros
CC ?= gcc
CFLAGS ?= -O2 -std=c99 -Wall -Wextra -Wno-unused-parameter
DEFS = {dflags}
INC = -I. -Ikernels -Iplatform
KERNELS = {kernels}

all: libdtmm_model.so model_demo

libdtmm_model.so: model.c model.h $(KERNELS)
\t$(CC) $(CFLAGS) $(DEFS) $(INC) -shared -fPIC model.c $(KERNELS) -o $@

model_demo: main.c model.c model.h $(KERNELS)
\t$(CC) $(CFLAGS) $(DEFS) $(INC) main.c model.c $(KERNELS) platform/dtmm_platform_host.c platform/dtmm_platform_common.c -o $@ -lm

clean:
\trm -f libdtmm_model.so model_demo

.PHONY: all clean
"""
    flags = " ".join(target_flags)
    return f"""# Generated by dtmm.codegen: bare-metal build of the model for {plan.target}.
#   make            -> firmware.elf (startup, semihosting I/O, linker script in platform/)
#   make run        -> runs it under QEMU ({qemu_machine}); inputs from dtmm_input.bin if present
CC = arm-none-eabi-gcc
CFLAGS ?= -O2 -g -ffunction-sections -fdata-sections -Wall -Wextra -Wno-unused-parameter
CPU = {flags}
DEFS = {dflags}
# The kernels' hand-scheduled asm loops need GCC at -O2 or -O3 (at -O1 / -Og it cannot
# allocate their registers, and the preprocessor cannot tell those from -O2): at any other
# last -O level in CFLAGS the same loops build in C (same outputs, more instructions).
ifeq ($(filter -O2 -O3 -Ofast,$(lastword $(filter -O%,$(CFLAGS)))),)
DEFS += -DDTMM_NO_ASM
endif
INC = -I. -Ikernels -Iplatform
KERNELS = {kernels}
PLATFORM = platform/startup_cortex_m.S platform/syscalls_cortex_m.c platform/dtmm_platform_common.c
LDFLAGS = -nostartfiles --specs=nano.specs -Wl,--gc-sections -Wl,--no-warn-rwx-segments \\
          -Wl,-T,platform/link.ld -Wl,-Map,firmware.map -lm

all: firmware.elf

firmware.elf: main.c model.c model.h $(KERNELS) $(PLATFORM) platform/link.ld
\t$(CC) $(CFLAGS) $(CPU) $(DEFS) $(INC) main.c model.c $(KERNELS) $(PLATFORM) -o $@ $(LDFLAGS)

run: firmware.elf
\tqemu-system-arm -M {qemu_machine} -display none -monitor none -serial null \\
\t  -semihosting-config enable=on,target=native -kernel firmware.elf

clean:
\trm -f firmware.elf firmware.map

.PHONY: all run clean
"""


def _kib(n: int) -> str:
    return f"{n:,} bytes ({n / 1024:.1f} KiB)"


def render_readme(plan: P.ModelPlan, *, stack_bytes: int) -> str:
    """The project's ``README.md``: how to build and run it, the input and output formats,
    the C API of ``model.h`` and the memory the model needs.

    Every number is read from ``plan`` (the same fields ``model.h`` / ``model.c`` are
    rendered from) or from the target / board the plan is for; ``stack_bytes`` is the
    stack the generated linker script reserves.
    """
    t = plan.target_info
    ishape = tuple(int(v) for v in plan.input.shape)
    oshape = tuple(int(v) for v in plan.output.shape)
    classes = classifier_classes(plan)
    layout = {3: "NHWC (batch 1): height x width x channels, channels fastest",
              1: "a flat vector"}.get(len(ishape), "row-major, last dimension fastest")
    cb = plan.const_breakdown
    lines = [
        f"# dtmm model for {t.display_name}",
        "",
        f"Generated by `dtmm export` (kernel ISA path: {plan.arena.isa}, {len(plan.steps)} ops). "
        "A self-contained C99 project: the model (`model.h`, `model.c`), the kernels it calls "
        "(`kernels/`), a demo `main.c` and the platform support code (`platform/`).",
        "",
        "## Build and run",
        "",
    ]
    if t.is_host:
        lines += [
            "Needs `gcc` and `make` (any C99 compiler works: set `CC`).",
            "",
            "```sh",
            "make                 # libdtmm_model.so (the model) and model_demo (main.c)",
            "./model_demo         # runs on dtmm_input.bin in the current folder, else once on zeros",
            "```",
        ]
    else:
        regions = "".join(f"\n| {r.name} | 0x{r.origin:08X} | {_kib(r.size)} | {r.role} |"
                          + (f" {r.description} |" if r.description else " |") for r in t.regions)
        lines += [
            "Needs the GNU Arm Embedded toolchain (`arm-none-eabi-gcc` with newlib-nano; Debian/Ubuntu: "
            "`apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi`) and, for `make run`, QEMU "
            "(`qemu-system-arm`, package `qemu-system-arm`).",
            "",
            "```sh",
            "make                 # firmware.elf (and firmware.map)",
            f"make run             # runs it under QEMU -M {t.qemu_machine}; inputs from dtmm_input.bin",
            "```",
            "",
            f"Compiler flags for the core: `{' '.join(t.compile_flags(plan.simd))}`. "
            "Output goes through Arm semihosting (QEMU prints it; on a board, a debugger with "
            "semihosting enabled shows it).",
            "",
            "The instruction counts dtmm reports are at `-O2` (the default `CFLAGS`). The kernels' "
            "hand-scheduled asm loops need GCC at `-O2` or `-O3`; with another last `-O` level "
            "in `CFLAGS` (`make CFLAGS=-Os`, a `-O0` debug build) the Makefile defines "
            "`DTMM_NO_ASM` and the same loops build in C: the same outputs, more instructions. "
            "In your own build system, define `DTMM_NO_ASM` when compiling the kernels at "
            "`-O1` or `-Og` (at `-O0`, `-Os` and `-Oz` they do it themselves).",
            "",
            "The linker script `platform/link.ld` has these memory regions; `make` fails with "
            "`region ... overflowed by N bytes` when the firmware does not fit one of them:",
            "",
            "| region | origin | length | holds | |",
            "|---|---|---|---|---|" + regions,
        ]
        if t.board:
            lines += ["", f"The lengths are those of the board **{t.board}**; the origins are the "
                          f"emulator's ({t.qemu_machine}), so the same firmware runs under QEMU. "
                          "For the board itself, move the origins to the chip's memory map "
                          "(e.g. flash at 0x08000000 on STM32) and add its clock / UART setup."]
        elif t.name in ("cortex-m4", "cortex-m7"):
            lines += ["", f"These are the emulator's ({t.qemu_machine}) sizes, larger than most "
                          f"{t.name} chips: `dtmm export --board NAME` links against a real "
                          "board's flash and SRAM (`dtmm boards` lists them)."]
    lines += [
        "",
        "## Input",
        "",
        f"- one input: int8, shape {'x'.join(map(str, ishape))} ({layout}), "
        f"{plan.input.nbytes} bytes (`DTMM_MODEL_INPUT_BYTES`);",
        f"- quantization: scale {plan.input_scale!r}, zero point {plan.input_zero_point} "
        "(`DTMM_MODEL_INPUT_SCALE`, `DTMM_MODEL_INPUT_ZERO_POINT`). From a float input `x` "
        "(preprocessed as in training): `q = clamp(round(x / scale) + zero_point, -128, 127)`, "
        "rounding halves away from zero;",
        f"- `dtmm_input.bin` for the demo: any number of inputs, raw bytes back to back "
        f"({plan.input.nbytes} bytes each). In Python: "
        "`q.astype(numpy.int8).tofile(\"dtmm_input.bin\")` for a batch `q` of shape "
        f"(N, {', '.join(map(str, ishape))}).",
        "",
        "## Output",
        "",
        f"- int8, shape {'x'.join(map(str, oshape))}, {plan.output.nbytes} bytes "
        "(`DTMM_MODEL_OUTPUT_BYTES`);",
        f"- quantization: scale {plan.output_scale!r}, zero point {plan.output_zero_point} "
        "(`DTMM_MODEL_OUTPUT_SCALE`, `DTMM_MODEL_OUTPUT_ZERO_POINT`): "
        "`value = scale * (q - zero_point)`;",
    ]
    if classes is not None:
        lines.append(f"- {classes} classes: the predicted class is the index of the largest "
                     "output byte (the scale is positive, so the int8 argmax is the float one).")
    lines += [
        "",
        "The demo (`main.c`) prints, per input `i`:",
        "",
        "```",
        "DTMM_HEX y<i> <nbytes> <hex bytes>      the raw int8 output",
    ]
    if classes is not None:
        lines.append("DTMM_CLASS y<i> <class> <score>        the predicted class and its int8 score")
    lines += [
        "```",
        "",
        "and exits with 0, or 3 (scratch check failed), 4 (a kernel error: `DTMM_MODEL_ERROR`), "
        "5 (`dtmm_input.bin` is not a whole number of inputs: `DTMM_INPUT_ERROR`).",
        "",
        "## Calling the model from your own firmware",
        "",
        "Compile `model.c` and `kernels/*.c` with your sources (include paths `.` and `kernels/`) "
        "and the defines in the Makefile's `DEFS` line (they select the kernels' ISA path); "
        "`main.c` and `platform/` are the demo's and are not needed. There is no init call and "
        "no heap: the arena is a static array in `model.c`. The API (`model.h`):",
        "",
        "```c",
        "#include \"model.h\"",
        "",
        "static int8_t in[DTMM_MODEL_INPUT_BYTES], out[DTMM_MODEL_OUTPUT_BYTES];",
        "",
        "/* once, at start-up (optional): 0 if every kernel's scratch fits the plan */",
        "if (dtmm_model_check() != 0) { /* built with other kernels than exported */ }",
        "/* fill `in` (quantized as above), then: */",
        "int rc = dtmm_model_invoke(in, out);   /* 0, or a negative kernel status; the op that",
        "                                          failed is dtmm_model_failed_op */",
        "",
        "/* zero-copy: write the input in place, run, read the output in place */",
        "int8_t *x = dtmm_model_input();        /* DTMM_MODEL_INPUT_BYTES */",
        "rc = dtmm_model_run();",
        "const int8_t *y = dtmm_model_output(); /* DTMM_MODEL_OUTPUT_BYTES, valid until the next run */",
        "",
        "/* n inputs back to back */",
        "rc = dtmm_model_invoke_batch(ins, outs, n);",
        "```",
        "",
        "The model is not reentrant (one static arena): call it from one thread at a time.",
        "",
        "## Memory",
        "",
        "| what | bytes | where |",
        "|---|---|---|",
        f"| model constants (`DTMM_MODEL_CONST_BYTES`) | {plan.const_bytes} | flash (read-only) |",
        f"| - of which weights / index / quantization / other | {cb.weights} / {cb.index} / "
        f"{cb.quant} / {cb.meta} | |",
        f"| arena: activations and scratch (`DTMM_MODEL_ARENA_BYTES`) | {plan.arena.size} | SRAM |",
    ]
    if not t.is_host:
        lines.append(f"| stack reserved by `platform/link.ld` | {stack_bytes} | SRAM |")
    lines += [
        "",
        f"The arena's lower bound (largest set of tensors live at once) is {plan.arena.peak_live} "
        "bytes. Code (kernels, `model.c`), C library and start-up code come on top of the "
        "constants in flash; `arm-none-eabi-size firmware.elf` (or `firmware.map`) gives the "
        "linked totals.",
    ]
    if not t.is_host and t.board:
        from dtmm.codegen.platform.boards import get_board

        b = get_board(t.board)
        lines.append("")
        lines.append(f"The board {b.name} ({b.mcu}) has {_kib(b.flash_bytes)} of flash and "
                     f"{_kib(b.sram_bytes)} of SRAM ({b.source}).")
    if plan.notes:
        lines += ["", "Placement: " + "; ".join(plan.notes) + "."]
    return "\n".join(lines) + "\n"
