"""Benchmarks that measure dtmm's kernels and formats (used by ``scripts/bench_*.py``).

* :mod:`dtmm.bench.kernels` - the paper's conv micro-benchmarks (Fig. 6(b), Fig. 14):
  executed instructions per layer under QEMU for dense, DTMM (FWCS), its ablations,
  CSR, pattern and structured pruning; :func:`run_kernel_bench`.
"""
from dtmm.bench.kernels import (KernelBench, KernelMismatchError, KernelRow, run_kernel_bench)

__all__ = ["KernelBench", "KernelMismatchError", "KernelRow", "run_kernel_bench"]
