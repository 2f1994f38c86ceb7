#!/usr/bin/env python3
"""Conv kernel micro-benchmarks: the DTMM paper's Fig. 6(b) and Fig. 14 on QEMU.

Executed instructions per 3x3 conv layer (counted by QEMU, **not cycles**) on the
Cortex-M55 (Helium MVE; DSP and scalar builds for the lane study) and the Cortex-M7
(DSP) for dense, DTMM (FWCS; R = 2/4/8, no-ilp, scalar), CSR, pattern and structured
pruning at 50 / 75 / 90 %, with kept MACs per instruction; every output verified bit
for bit against a NumPy reference before its count is kept. See
:mod:`dtmm.bench.kernels`.

Writes its tables into ``BENCHMARKS.md`` between ``<!-- bench_kernels:start -->`` and
``<!-- bench_kernels:end -->`` (not with ``--quick`` or ``--no-write``).

Usage: ``python scripts/bench_kernels.py [--json] [--quick] [--no-write] [--seed 0]
[--targets cortex-m55 cortex-m7] [--out BENCHMARKS.md]``
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.bench.kernels import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
