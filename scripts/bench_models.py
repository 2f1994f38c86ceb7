#!/usr/bin/env python3
"""Deploy every zoo model (28x28x1, 10 classes) as C and measure it on each target.

Each model gets BatchNorm statistics as after training (a seeded stand-in: instruction
counts barely depend on weight values), is calibrated and quantized on real mnist5k
training images, and its generated C model runs on the host and under QEMU on
Cortex-M4 / M7 / M55 with 4 real test images. Every output byte is checked against
the NumPy reference. Reports executed instructions per inference (QEMU counts, not
cycles), flash and RAM of the firmware, and the planned arena against its lower bound.
Writes its table into BENCHMARKS.md (section ``bench_models``).

    python scripts/bench_models.py [--models resnet8 ...] [--no-write]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.pipeline.data import load_splits, to_nhwc
from dtmm.benchmd import write_section  # noqa: E402
from dtmm.codegen.backends import build_firmware, run_firmware  # noqa: E402
from dtmm.graph.capture import capture  # noqa: E402
from dtmm.quant.quantize import quantize_graph, quantize_input  # noqa: E402
from dtmm.runtime.reference import run_reference  # noqa: E402
from dtmm.zoo import MODEL_NAMES, build_model, trained_like_batchnorm  # noqa: E402

TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    _, tr, _, te = load_splits("mnist5k")
    calib = to_nhwc(tr.x[:128])
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        net = trained_like_batchnorm(build_model(name, (1, 28, 28), 10))
        qg = quantize_graph(capture(net, (1, 28, 28)), [calib[:64], calib[64:]])
        x = quantize_input(to_nhwc(te.x[:4]), qg.tensors[qg.inputs[0]].qparams)
        want = run_reference(qg, x)
        macs = sum(int(op.weight.size) * int(np.prod(qg.tensors[op.output].shape[:-1]))
                   for op in qg.weighted_ops())
        for target in TARGETS:
            res = run_firmware(build_firmware(qg, target), x)
            exact = bool(np.array_equal(res.outputs, want))
            rows.append((name, macs, target, res.instructions_per_inference, min(res.instructions),
                         max(res.instructions), res.flash_bytes, res.ram_bytes, res.arena_bytes,
                         res.arena_peak_live, exact))
            print(rows[-1], flush=True)
    lines = [
        "## Zoo models deployed as C on Cortex-M (QEMU)",
        "",
        "`python scripts/bench_models.py`: 28x28x1 input, 10 classes, int8, calibrated on mnist5k "
        "training images; 4 real test images per target, every output byte equal to the NumPy "
        "reference (`bit-exact`). **Instructions are executed instructions per inference counted by "
        "QEMU, not cycles** (min-max over the 4 images in brackets). Flash = the linked firmware "
        "(code, weights, startup, libc, harness); RAM = data + bss (arena included, 16 KiB stack "
        "excluded); arena = the planned static arena vs the liveness lower bound. MACs = dense "
        "multiply-accumulates per inference.",
        "",
        "| model | MACs | target | instructions | MACs / instruction | flash B | RAM B | arena B "
        "(lower bound) | bit-exact |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, macs, target, ins, lo, hi, flash, ram, arena, peak, exact in rows:
        lines.append(f"| {name} | {macs:,} | {target} | {ins:,} ({lo:,}-{hi:,}) | {macs / ins:.2f} | "
                     f"{flash:,} | {ram:,} | {arena:,} ({peak:,}) | {exact} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("bench_models", text)
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
