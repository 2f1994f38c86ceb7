"""Run mutants of real dtmm files through the reader, the reference and the sanitized C build.

For each mutant (see :mod:`dtmm.fuzz.mutate`):

1. :func:`dtmm.tflite.reader.read_tflite` (in a worker process, with a time limit):
   a :class:`~dtmm.errors.DtmmError` is a clean rejection;
2. an accepted file runs through :func:`dtmm.runtime.reference.run_reference` on four
   inputs (all -128, all 127, all zero point, random) and is planned for the host
   (:func:`dtmm.codegen.plan.plan_model`; a clean :class:`~dtmm.errors.DtmmError` there,
   e.g. dilation, which the C kernels do not support, is a clean refusal);
3. accepted, planned files are compiled in batches into one executable per batch, with
   the same kernels, defines and generated ``model.c`` as the host backend, under
   ``-fsanitize=address,undefined -fno-sanitize-recover=all``; each model runs on its
   four inputs, and its outputs must equal the reference byte for byte.

Outcomes (:data:`OUTCOMES`): ``rejected`` (clean error at read time), ``refused_by_c``
(clean error from the C code generator), ``exact`` (accepted, C == reference),
``reference_only`` (accepted, C stage not run), and the failures: ``exception`` (any
other exception, or an error from the reference on a file the reader accepted),
``mismatch`` (C output differs from the reference, or a kernel returned an error),
``hang`` (time limit), ``crash`` (a signal without a sanitizer report) and ``sanitizer``
(an AddressSanitizer or UndefinedBehaviorSanitizer report).

Example:
    >>> bases = base_models()
    >>> sorted(bases)
    ['cnn', 'padded', 'residual']
    >>> r = run_python(bases, "cnn", seed=1, index=0)
    >>> r.outcome in OUTCOMES
    True
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["OUTCOMES", "FAILURES", "Result", "base_models", "run_python", "run_c_batch",
           "fuzz", "SANITIZE_FLAGS"]

OUTCOMES = ("rejected", "refused_by_c", "exact", "reference_only", "exception", "mismatch",
            "hang", "crash", "sanitizer")
FAILURES = ("exception", "mismatch", "hang", "crash", "sanitizer")
from dtmm.codegen.platform.toolchain import SANITIZE_FLAGS  # noqa: E402 - one definition
_PY_TIME_LIMIT_S = 20
_C_TIME_LIMIT_S = 120
_N_INPUTS = 4


@dataclass
class Result:
    """The outcome of one mutant; ``c`` holds what the C stage needs for accepted files."""

    index: int
    base: str
    kind: str
    what: str
    outcome: str
    detail: str = ""
    c: dict | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------- base files


def base_models() -> dict[str, bytes]:
    """Small real dtmm ``.tflite`` files covering every op and format the reader accepts.

    Written by dtmm's exporter from seeded quantized graphs (:class:`dtmm.runtime.synth.SynthGraph`,
    compressed by :func:`dtmm.graph.compressed.compress_graph`): builtin conv, depthwise,
    fully connected, max / average pool, add, concatenation, reshape, softmax, an
    explicit PAD and a PADV2 before a max pool, and the three custom formats (FWCS,
    CSR, pattern) and the compressed fully connected op (FWCS over input runs).
    """
    from dtmm.formats.pattern import pattern_mask
    from dtmm.graph.compressed import compress_graph
    from dtmm.runtime.synth import SynthGraph
    from dtmm.tflite.export import to_tflite_bytes

    out = {}
    sg = SynthGraph((8, 8, 3), seed=11)
    sg.conv(8, 3, pads="same", activation="relu")
    sg.max_pool(2)
    sg.conv(8, 3, pads="same", activation="relu6", depthwise_multiplier=1)
    sg.conv(8, 3, pads="same", activation="relu")                  # -> FWCS
    sg.global_avg_pool()
    sg.reshape((8,))
    sg.fc(5)
    sg.softmax()
    g = sg.finish()
    fw = g.ops[3]
    fw.weight[:, 0, :, :] = 0                                       # prune filterlets
    fw.weight[::2, 1, 1, :] = 0
    fc = next(o for o in g.ops if o.kind == "fully_connected")      # -> compressed FC
    fc.weight[1] = 0                                                # (an output with no run)
    fc.weight[3, :] = 0
    out["cnn"] = to_tflite_bytes(compress_graph(g, {fw.name: "fwcs", fc.name: "fwcs"}))

    sg = SynthGraph((6, 6, 4), seed=12)
    a = sg.conv(6, 3, pads="same", activation="relu")
    b = sg.conv(6, 3, pads="same", activation="none")              # -> CSR
    c = sg.add(a, b, activation="relu")
    d = sg.conv(6, 1, x=c)
    sg.set_qparams(d, sg.g.tensors[c].qparams)
    sg.concat([c, d])
    p = sg.conv(8, 3, pads="same", activation="relu")               # -> pattern
    sg.max_pool(2, x=p)
    g = sg.finish()
    csr_op, pat_op = g.ops[1], g.ops[5]
    csr_op.weight[np.abs(csr_op.weight) < 60] = 0
    pat_op.weight[~pattern_mask(pat_op.weight)] = 0                 # prune to library patterns
    out["residual"] = to_tflite_bytes(compress_graph(g, {csr_op.name: "csr", pat_op.name: "pattern"}))

    sg = SynthGraph((7, 7, 2), seed=13)
    sg.conv(4, 3, stride=2, pads=(1, 0, 2, 1), activation="relu")   # explicit PAD op
    sg.max_pool(3, stride=1, pads=(1, 0, 1, 0))                      # PADV2(-128) + VALID pool
    sg.conv(4, 2, stride=1, pads=None, activation="none")
    sg.fc(3)
    out["padded"] = to_tflite_bytes(sg.finish())
    return out


# ----------------------------------------------------------------------------- Python stage


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _inputs(shape, zp: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((_N_INPUTS,) + tuple(shape), np.int8)
    x[0], x[1], x[2] = -128, 127, zp
    x[3] = rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)
    return x


def run_python(bases: dict[str, bytes], base: str, seed: int, index: int, *, c_stage: bool = True
               ) -> Result:
    """Stages 1-2 for mutant ``index`` of ``bases[base]`` (see the module docstring)."""
    from dtmm.codegen.emit import project_files
    from dtmm.codegen.plan import plan_model
    from dtmm.errors import DtmmError
    from dtmm.fuzz.mutate import mutant
    from dtmm.runtime.reference import run_reference
    from dtmm.tflite.reader import read_tflite

    m = mutant(bases[base], seed, index)
    res = Result(index, base, m.kind, m.what, "rejected")
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, _PY_TIME_LIMIT_S)
    stage = "read"
    try:
        try:
            g = read_tflite(m.data)
        except DtmmError as e:
            res.detail = str(e)[:300]
            return res
        stage = "reference"
        xs = {n: _inputs(g.tensors[n].shape, g.tensors[n].qparams.zp, seed + index)
              for n in g.inputs}
        ref = run_reference(g, xs if len(xs) > 1 else next(iter(xs.values())))
        if not c_stage:
            res.outcome = "reference_only"
            return res
        stage = "codegen"
        try:
            plan = plan_model(g, "host")
            files = project_files(plan)
        except DtmmError as e:
            res.outcome, res.detail = "refused_by_c", str(e)[:300]
            return res
        x = next(iter(xs.values()))
        res.outcome = "reference_only"
        res.c = {"model.c": files["model.c"], "model.h": files["model.h"],
                 "in_bytes": int(plan.input.nbytes), "out_bytes": int(plan.output.nbytes),
                 "inputs": x.tobytes(), "expected": np.asarray(ref, np.int8).tobytes()}
        return res
    except _Timeout:
        res.outcome, res.detail = "hang", f"no result after {_PY_TIME_LIMIT_S} s ({stage})"
        return res
    except Exception as e:  # noqa: BLE001 - this is what the fuzzer looks for
        res.outcome, res.detail = "exception", f"{stage}: {type(e).__name__}: {str(e)[:300]}"
        return res
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


_BASES: dict[str, bytes] = {}


def _init_worker(bases: dict[str, bytes]) -> None:
    _BASES.update(bases)
    try:
        import torch   # noqa: F401 - only if something imported it: keep it to one thread
        torch.set_num_threads(1)
    except ImportError:
        pass


def _work(jobs: list[tuple[str, int]], seed: int, c_stage: bool) -> list[Result]:
    return [run_python(_BASES, base, seed, i, c_stage=c_stage) for base, i in jobs]


# ----------------------------------------------------------------------------- C stage


_PUBLIC = ("dtmm_model_invoke_batch", "dtmm_model_invoke", "dtmm_model_input", "dtmm_model_output",
           "dtmm_model_run", "dtmm_model_check", "dtmm_model_failed_op")


def _cc_flags() -> list[str]:
    from dtmm.codegen.emit import CSRC_DIR

    return ["-O1", "-g", "-std=c99", *SANITIZE_FLAGS, "-DDTMM_TARGET_HOST=1",
            '-DDTMM_TARGET_NAME="host"', "-DDTMM_HOST_FAST=1", f"-I{CSRC_DIR}"]


def _kernel_archive(cache: Path) -> Path:
    """Every ``dtmm/csrc`` kernel compiled once with the sanitizers (cached by content hash)."""
    from dtmm.codegen.emit import CSRC_DIR

    srcs = sorted(CSRC_DIR.glob("*.c"))
    h = hashlib.sha256(" ".join(_cc_flags()).encode())
    for p in srcs + sorted(CSRC_DIR.glob("*.h")):
        h.update(p.name.encode() + p.read_bytes())
    out = cache / f"libdtmm_kernels_san_{h.hexdigest()[:16]}.a"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="kern-", dir=cache))
    try:
        subprocess.run(["gcc", "-c", *_cc_flags(), *map(str, srcs)], cwd=tmp, check=True,
                       capture_output=True, text=True)
        subprocess.run(["ar", "rcs", "lib.a", *sorted(p.name for p in tmp.glob("*.o"))], cwd=tmp,
                       check=True, capture_output=True)
        os.replace(tmp / "lib.a", out)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"sanitized kernel build failed: {e.stderr}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _driver(batch: list[Result]) -> str:
    decl, rows = [], []
    for j, r in enumerate(batch):
        decl.append(f"int dtmm_m{j}_invoke(const int8_t *in, int8_t *out); "
                    f"int dtmm_m{j}_check(void); extern int32_t dtmm_m{j}_failed_op;")
        rows.append(f"    {{dtmm_m{j}_invoke, dtmm_m{j}_check, &dtmm_m{j}_failed_op, "
                    f"{r.c['in_bytes']}, {r.c['out_bytes']}}},")
    return f"""#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
{chr(10).join(decl)}
static const struct {{ int (*invoke)(const int8_t *, int8_t *); int (*check)(void);
                      int32_t *failed; long in_bytes, out_bytes; }} models[] = {{
{chr(10).join(rows)}
}};
int main(int argc, char **argv)
{{
    const int n = (int)(sizeof models / sizeof models[0]);
    for (int j = argc > 1 ? atoi(argv[1]) : 0; j < n; j++) {{
        char path[64];
        snprintf(path, sizeof path, "in%d.bin", j);
        FILE *f = fopen(path, "rb");
        if (!f) return 9;
        int8_t *in = malloc((size_t)(models[j].in_bytes * {_N_INPUTS}));
        int8_t *out = malloc((size_t)models[j].out_bytes);
        if (!in || !out || fread(in, 1, (size_t)(models[j].in_bytes * {_N_INPUTS}), f)
                           != (size_t)(models[j].in_bytes * {_N_INPUTS})) return 9;
        fclose(f);
        printf("BEGIN %d\\n", j);
        fflush(stdout);
        const int bad = models[j].check();
        if (bad) printf("CHECK %d %d\\n", j, bad);
        for (int i = 0; i < {_N_INPUTS}; i++) {{
            const int rc = models[j].invoke(in + (long)i * models[j].in_bytes, out);
            printf("OUT %d %d %d %d ", j, i, rc, (int)*models[j].failed);
            for (long b = 0; b < models[j].out_bytes; b++) printf("%02x", (unsigned)(uint8_t)out[b]);
            printf("\\n");
        }}
        fflush(stdout);
        free(in);
        free(out);
    }}
    printf("DONE\\n");
    return 0;
}}
"""


def _sanitizer_report(text: str) -> bool:
    return ("ERROR: AddressSanitizer" in text or "runtime error:" in text
            or "ERROR: LeakSanitizer" in text or "UndefinedBehaviorSanitizer" in text)


def run_c_batch(batch: list[Result], cache: Path) -> None:
    """Stage 3 for accepted results (``r.c`` set): sets each ``r.outcome`` and ``r.detail``."""
    lib = _kernel_archive(cache)
    work = Path(tempfile.mkdtemp(prefix="fuzz-batch-", dir=cache))
    try:
        wrappers = []
        for j, r in enumerate(batch):
            d = work / f"m{j}"
            d.mkdir()
            (d / "model.c").write_bytes(r.c["model.c"])
            (d / "model.h").write_bytes(r.c["model.h"])
            (work / f"in{j}.bin").write_bytes(r.c["inputs"])
            defs = "".join(f"#define {s} {s.replace('dtmm_model_', f'dtmm_m{j}_')}\n" for s in _PUBLIC)
            (work / f"w{j}.c").write_text(defs + f'#include "m{j}/model.c"\n')
            wrappers.append(f"w{j}.c")
        (work / "driver.c").write_text(_driver(batch))
        proc = subprocess.run(["gcc", *_cc_flags(), "-o", "fuzz", "driver.c", *wrappers, str(lib),
                               "-lm"], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            # a model that does not compile: the generator emitted invalid C - find which
            for r in batch:
                r.outcome, r.detail = "exception", f"C build failed: {proc.stderr[-300:]}"
            return
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87")
        env.pop("LD_PRELOAD", None)
        start = 0
        while start < len(batch):
            try:
                proc = subprocess.run(["./fuzz", str(start)], cwd=work, capture_output=True,
                                      text=True, errors="replace", env=env, timeout=_C_TIME_LIMIT_S)
                out, err, rc = proc.stdout, proc.stderr, proc.returncode
                timed_out = False
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
                err, rc, timed_out = "", None, True
            last = start
            for line in out.splitlines():
                parts = line.split()
                if parts[:1] == ["BEGIN"]:
                    last = int(parts[1])
                elif parts[:1] == ["OUT"]:
                    _check_output(batch[int(parts[1])], int(parts[2]), int(parts[3]),
                                  int(parts[4]), parts[5] if len(parts) > 5 else "")
                elif parts[:1] == ["CHECK"]:
                    r = batch[int(parts[1])]
                    r.outcome, r.detail = "mismatch", f"dtmm_model_check() = {parts[2]}"
            if rc == 0 and "DONE" in out:
                break
            r = batch[last]
            if timed_out:
                r.outcome, r.detail = "hang", f"C model ran over {_C_TIME_LIMIT_S} s"
            elif _sanitizer_report(err):
                m = re.search(r"(ERROR: \w+Sanitizer[^\n]*|[^\n]*runtime error:[^\n]*)", err)
                r.outcome, r.detail = "sanitizer", (m.group(1) if m else err[-300:])[:300]
            else:
                r.outcome, r.detail = "crash", f"exit status {rc}: {err[-200:]}"
            start = last + 1
        for r in batch:
            if r.outcome == "reference_only":
                r.outcome = "exact"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_output(r: Result, i: int, rc: int, failed: int, hexdata: str) -> None:
    if r.outcome not in ("reference_only",):
        return
    n = r.c["out_bytes"]
    if rc != 0:
        r.outcome, r.detail = "mismatch", f"input {i}: kernel status {rc} in op {failed}"
        return
    want = r.c["expected"][i * n:(i + 1) * n]
    got = bytes.fromhex(hexdata)
    if got != want:
        k = next(b for b in range(n) if b >= len(got) or got[b] != want[b])
        r.outcome, r.detail = "mismatch", f"input {i}: output byte {k} differs from the reference"


# ----------------------------------------------------------------------------- driver


def _progress(total: int, desc: str, quiet: bool):
    import sys

    if quiet:
        return None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, unit="mutant")
        except ImportError:
            pass
    return None


def fuzz(n: int, seed: int, *, workers: int | None = None, c_stage: bool = True,
         c_batch: int = 48, cache: Path | None = None, quiet: bool = True,
         log=None) -> tuple[list[Result], dict]:
    """Run ``n`` mutants (spread over the base files) with ``seed``; return every result
    and a summary ``{"counts": {outcome: n}, "seconds": ..., ...}``."""
    from dtmm.codegen.platform import cache_dir

    t0 = time.time()
    bases = base_models()
    names = sorted(bases)
    jobs = [(names[i % len(names)], i) for i in range(n)]
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    chunk = 40
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    results: list[Result] = []
    bar = _progress(n, "reader + reference", quiet)
    say = log or (lambda msg: None)
    import multiprocessing as mp
    ctx = mp.get_context("spawn")

    def run_chunks(chs):
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(bases,)) as ex:
            futs = [(c, ex.submit(_work, c, seed, c_stage)) for c in chs]
            broken = []
            for c, f in futs:
                try:
                    got = f.result()
                except BrokenProcessPool:
                    broken.append(c)
                    continue
                results.extend(got)
                if bar is not None:
                    bar.update(len(got))
                elif len(results) % 1000 < chunk:
                    say(f"  {len(results)}/{n} mutants read and run ({time.time() - t0:.0f} s)")
            return broken

    broken = run_chunks(chunks)
    for c in broken:             # a worker died: rerun that chunk one mutant per process
        for job in c:
            if run_chunks([[job]]):
                base, i = job
                from dtmm.fuzz.mutate import mutant
                m = mutant(bases[base], seed, i)
                results.append(Result(i, base, m.kind, m.what, "crash", "the Python worker died"))
    if bar is not None:
        bar.close()
    t_py = time.time() - t0
    results.sort(key=lambda r: r.index)
    todo = [r for r in results if r.c is not None and r.outcome == "reference_only"]
    if c_stage and todo:
        cache = Path(cache) if cache is not None else cache_dir() / "fuzz"
        cache.mkdir(parents=True, exist_ok=True)
        _kernel_archive(cache)
        batches = [todo[i:i + c_batch] for i in range(0, len(todo), c_batch)]
        say(f"  C stage: {len(todo)} accepted mutants in {len(batches)} sanitized builds")
        done = 0
        with ThreadPoolExecutor(workers) as ex:
            for _ in ex.map(lambda b: run_c_batch(b, cache), batches):
                done += 1
                if done % 20 == 0:
                    say(f"  {done}/{len(batches)} C batches ({time.time() - t0:.0f} s)")
    for r in results:
        r.c = None
    counts = {o: 0 for o in OUTCOMES}
    for r in results:
        counts[r.outcome] += 1
    kinds = {k: sum(1 for r in results if r.kind == k) for k in ("structure", "bytes")}
    return results, {"counts": counts, "n": len(results), "seed": seed, "kinds": kinds,
                     "bases": {b: len(bases[b]) for b in names},
                     "seconds": round(time.time() - t0, 1), "python_seconds": round(t_py, 1),
                     "c_builds": (len(todo) + c_batch - 1) // c_batch if c_stage else 0}
