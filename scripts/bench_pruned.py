#!/usr/bin/env python3
"""A pruned zoo model against its dense self on Cortex-M (QEMU): executed instructions.

ResNet-8 (28x28x1, 10 classes; BatchNorm statistics as after training, a seeded
stand-in as in ``bench_models.py``) is pruned one shot (``dtmm.pipeline.oneshot.prune_model``:
L2 filterlet importance, the same ratio in every conv layer, dead channels removed,
int8, FWCS) at 30 / 50 / 70 / 90 / 95 % of filterlets and deployed as C. Each model runs
under QEMU on the Cortex-M55 and M7 with 4 real mnist5k test images, every output byte
checked against the NumPy reference; the firmware is built with per-op markers, so the
table also says which ops the instructions go to. **Executed instructions counted by
QEMU, not cycles**; beside them the counting plugin's estimated-cycles model
(:mod:`dtmm.bench.cycles`, a model, not a measurement). Issue 11's goal: at 90 % of
filterlets pruned, at most 0.35x the dense model's instructions on the M55.

Writes its tables into BENCHMARKS.md (section ``bench_pruned``).

    python scripts/bench_pruned.py [--model resnet8] [--ratios 0.3 0.5 0.7 0.9 0.95] [--no-write]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.pipeline.data import load_splits, to_nhwc
from dtmm.benchmd import write_section  # noqa: E402
from dtmm.codegen.backends import build_firmware, run_firmware  # noqa: E402
from dtmm.graph.capture import capture  # noqa: E402
from dtmm.pipeline.oneshot import PruneSpec, prune_model
from dtmm.quant.quantize import quantize_graph, quantize_input  # noqa: E402
from dtmm.runtime.reference import run_reference  # noqa: E402
from dtmm.zoo import build_model, trained_like_batchnorm  # noqa: E402

TARGETS = ("cortex-m55", "cortex-m7")
GOAL_RATIO, GOAL_BOUND, GOAL_TARGET = 0.9, 0.35, "cortex-m55"


def _kind(step) -> str:
    name = type(step.call).__name__.replace("Call", "")
    return {"Fwcs": "FWCS conv", "Conv": "dense conv", "Pool": "pool", "Fc": "fully connected",
            "Add": "add", "Softmax": "softmax", "Concat": "concat", "Alias": "reshape",
            "Depthwise": "depthwise", "Csr": "CSR conv", "Pattern": "pattern conv"}.get(name, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--ratios", nargs="+", type=float, default=[0.3, 0.5, 0.7, 0.9, 0.95])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    _, tr, _, te = load_splits("mnist5k")
    calib = to_nhwc(tr.x[:128])
    torch.manual_seed(0)
    net = trained_like_batchnorm(build_model(args.model, (1, 28, 28), 10)).eval()
    graphs = {0.0: quantize_graph(capture(net, (1, 28, 28)), [calib[:64], calib[64:]])}
    for r in args.ratios:
        graphs[r] = prune_model(net, (1, 28, 28), PruneSpec("filterlet", r, "l2"), tr.x[:512],
                                tr.y[:512]).graph
        print(f"pruned {r:.0%} ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows, ops = [], {}
    for ratio, g in graphs.items():
        x = quantize_input(to_nhwc(te.x[:4]), g.tensors[g.inputs[0]].qparams)
        want = run_reference(g, x)
        kept = sum(int(op.fmt.arr.size) if getattr(op, "fmt", None) is not None
                   else int(np.count_nonzero(op.weight))
                   for op in g.ops if getattr(op, "fmt", None) is not None
                   or getattr(op, "weight", None) is not None)
        for target in TARGETS:
            fw = build_firmware(g, target, profile=True)
            res = run_firmware(fw, x)
            exact = bool(np.array_equal(res.outputs, want))
            cyc = res.estimated_cycles[0] if res.estimated_cycles else None
            rows.append((ratio, target, res.instructions_per_inference, min(res.instructions),
                         max(res.instructions), cyc, kept, res.const_bytes, exact))
            per = {}
            for st, n in zip(fw.plan.steps, res.op_instructions[0]):
                per[_kind(st)] = per.get(_kind(st), 0) + int(n)
            ops[ratio, target] = per
            print(rows[-1], flush=True)
    dense = {t: next(r for r in rows if r[0] == 0.0 and r[1] == t) for t in TARGETS}
    L = [f"## A pruned model against its dense self on Cortex-M ({args.model}, QEMU)", "",
         f"`python scripts/bench_pruned.py` ({time.perf_counter() - t0:.0f} s): {args.model} "
         "(28x28x1, 10 classes, BatchNorm as after training: a seeded stand-in), pruned one shot "
         "(`dtmm.pipeline.oneshot.prune_model`: L2 filterlet importance, the same ratio in every conv "
         "layer, dead channels removed, FWCS, int8) and deployed as C; 4 real mnist5k test images "
         "per target, every output byte equal to the NumPy reference (`bit-exact`). "
         "**Instructions are executed instructions per inference counted by QEMU, not cycles** "
         "(min-max over the 4 images in brackets); est. cycles = the counting plugin's model "
         "(`dtmm.bench.cycles`), **an estimate, not latency measured**. Const bytes = the C "
         "model's constant data.", "",
         "| filterlets pruned | target | instructions | x dense | est. cycles (model) | x dense "
         "| kept weights | const B | bit-exact |",
         "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for ratio, t, ins, lo, hi, cyc, kept, cb, exact in rows:
        d = dense[t]
        cx = "-" if cyc is None or not d[5] else f"{cyc / d[5]:.3f}x"
        L.append(f"| {ratio:.0%} | {t} | {ins:,} ({lo:,}-{hi:,}) | {ins / d[2]:.3f}x | "
                 f"{'-' if cyc is None else f'{cyc:,}'} | {cx} | {kept:,} | {cb:,} | {exact} |")
    L.append("")
    g = next((r for r in rows if abs(r[0] - GOAL_RATIO) < 1e-9 and r[1] == GOAL_TARGET), None)
    if g is not None:
        x = g[2] / dense[GOAL_TARGET][2]
        verdict = "met" if x <= GOAL_BOUND else f"**not met: {100 * (x / GOAL_BOUND - 1):+.0f} % over**"
        L.append(f"Issue 11 goal: {args.model} with {GOAL_RATIO:.0%} of filterlets pruned at most "
                 f"{GOAL_BOUND}x the dense model's instructions on the {GOAL_TARGET}: "
                 f"**{x:.3f}x**, {verdict}.")
        L.append("")
    kinds = sorted({k for per in ops.values() for k in per})
    L.append("Instructions per op kind (per-op markers, `build_firmware(..., profile=True)`):")
    L.append("")
    L.append("| filterlets pruned | target | " + " | ".join(kinds) + " |")
    L.append("|---:|---|" + "---:|" * len(kinds))
    for (ratio, t), per in ops.items():
        L.append(f"| {ratio:.0%} | {t} | " + " | ".join(f"{per.get(k, 0):,}" for k in kinds) + " |")
    L.append("")
    text = "\n".join(L) + "\n"
    print(text)
    if not args.no_write:
        write_section("bench_pruned", text)
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
