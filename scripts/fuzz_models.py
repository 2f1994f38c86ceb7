#!/usr/bin/env python3
"""Fuzz dtmm's model reader, reference executor and generated C with damaged model files.

Every mutant of dtmm's base files (see :mod:`dtmm.fuzz.mutate`: structure-aware
mutations of every flatbuffer field dtmm reads, and byte-level ones) goes through the
reader and the NumPy reference; every accepted one is also compiled, with the host
backend's kernels and generated model, under AddressSanitizer and
UndefinedBehaviorSanitizer and compared with the reference byte for byte
(:mod:`dtmm.fuzz.harness`). The outcome table goes into BENCHMARKS.md (section
``fuzz``), written by this script.

    python scripts/fuzz_models.py --mutants 10000 --seed 12      # `make fuzz`
    python scripts/fuzz_models.py --mutants 300 --no-write        # a quick look

Exit status 1 if any mutant ended in a failure outcome (exception, mismatch, hang,
crash, sanitizer finding).
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.benchmd import write_section  # noqa: E402
from dtmm.fuzz.harness import FAILURES, fuzz  # noqa: E402
from dtmm.fuzz.mutate import STRUCTURE_TARGETS  # noqa: E402

LABELS = {
    "rejected": "rejected cleanly at read time (a `DtmmError` naming the problem)",
    "refused_by_c": "accepted; refused cleanly by the C code generator (e.g. dilation)",
    "exact": "accepted; reference == host C under ASan/UBSan, byte for byte",
    "reference_only": "accepted; reference only (C stage not run)",
    "exception": "any other exception (reader, reference or code generator)",
    "mismatch": "accepted; C output differs from the reference, or a kernel error",
    "hang": "hang (over 20 s in Python or 120 s in C)",
    "crash": "crash (a signal, no sanitizer report)",
    "sanitizer": "sanitizer finding (AddressSanitizer / UndefinedBehaviorSanitizer)",
}


def table(results, summary) -> str:
    c = summary["counts"]
    n = summary["n"]
    lines = [
        f"Mutants: **{n:,}**, seed **{summary['seed']}** "
        f"({summary['kinds']['structure']:,} structure-aware, {summary['kinds']['bytes']:,} "
        f"byte-level), of {len(summary['bases'])} base files written by dtmm "
        f"({', '.join(f'`{k}` {v:,} B' for k, v in summary['bases'].items())}). "
        f"Measured by `scripts/fuzz_models.py --mutants {n} --seed {summary['seed']}` in "
        f"{summary['seconds']:.0f} s on {platform.machine()} ({summary['python_seconds']:.0f} s "
        f"reader + reference, {summary['c_builds']} sanitized C builds of up to 48 models each).",
        "",
        "| outcome | mutants | share |",
        "|---|---:|---:|",
    ]
    for k in ("rejected", "refused_by_c", "exact", "reference_only", *FAILURES):
        if k == "reference_only" and not c[k]:
            continue
        lines.append(f"| {LABELS[k]} | {c[k]:,} | {100.0 * c[k] / max(n, 1):.1f}% |")
    bad = sum(c[k] for k in FAILURES)
    lines += ["", f"Failures (the last five rows): **{bad}**"
              + (" (goal: 0 of at least 10,000 mutants: met)." if bad == 0 and n >= 10000
                 else " (goal: 0 of at least 10,000 mutants: NOT met)." if n >= 10000
                 else f" (a run of {n:,}; the goal is 0 of at least 10,000).")]
    by_target = collections.Counter()
    for r in results:
        if r.kind == "structure":
            by_target.update(t for t in re.findall(r"\[([a-z_]+)\] ", r.what)
                             if t in STRUCTURE_TARGETS)
    if by_target:
        lines += ["", "Structure-aware mutations applied, by target (a mutant gets 1 to 3; see "
                  "`dtmm.fuzz.mutate`): " + ", ".join(f"`{k}` {v:,}" for k, v in
                                                       sorted(by_target.items())) + "."]
    byte_kinds = collections.Counter()
    for r in results:
        if r.kind == "bytes":
            byte_kinds[next((k for k in ("bit flips", "run of", "random bytes", "truncated",
                                         "appended") if k in r.what), "other")] += 1
    if byte_kinds:
        lines += ["", "Byte-level mutations: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(byte_kinds.items())) + "."]
    fallback = sum(1 for r in results if r.outcome == "rejected"
                   and "malformed .tflite file:" in r.detail)
    lines += ["", f"Rejections through the reader's generic fallback (a flatbuffers decoding "
                  f"error, message `malformed .tflite file: ...`, rather than a check naming the "
                  f"field): {fallback}."]
    if bad:
        lines += ["", "First failures (seed, index: what was mutated -> outcome: detail):", ""]
        for r in [r for r in results if r.outcome in FAILURES][:10]:
            lines.append(f"* {summary['seed']}, {r.index} ({r.base}): {r.what[:100]} -> "
                         f"{r.outcome}: {r.detail[:160]}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-c", action="store_true", help="reader + reference only")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--json", type=Path, default=None, help="also write every result here")
    args = ap.parse_args(argv)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    log(f"fuzzing {args.mutants} mutants, seed {args.seed}")
    results, summary = fuzz(args.mutants, args.seed, workers=args.workers,
                            c_stage=not args.no_c, quiet=False, log=log)
    text = table(results, summary)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": [
            {k: getattr(r, k) for k in ("index", "base", "kind", "what", "outcome", "detail")}
            for r in results]}, indent=1))
    if not args.no_write:
        write_section("fuzz", "## Fuzzing the model reader and the generated C (issue 12)\n\n"
                      + text)
        log("BENCHMARKS.md section 'fuzz' written")
    return 1 if any(summary["counts"][k] for k in FAILURES) else 0


if __name__ == "__main__":
    sys.exit(main())
