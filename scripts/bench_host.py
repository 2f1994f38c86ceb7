#!/usr/bin/env python3
"""Host C model vs TFLite Micro's Python interpreter vs the NumPy reference: int8 inference speed.

For each model: train briefly on mnist5k (the speed does not depend on the weights, the
accuracy shown does), quantize, then evaluate the whole test split (1,000 images) with

* the generated C model built as a host shared library (``dtmm verify --backend host``),
* TFLite Micro's Python interpreter (``tflite_micro.runtime.Interpreter``) on the same .tflite,
* dtmm's NumPy integer reference executor,

checking that all three give the same output bytes. Wall-clock seconds on this machine,
measured in one run, so the ratios compare like with like. With ``--pruned`` the first
model is also pruned one shot (L2 filterlet importance, dead channels removed, FWCS) at
those ratios and its compressed host C model timed the same way (TFLM runs the dense
equivalent, which must give the same bytes): the host fast path of the FWCS kernel
should make evaluating a pruned model no slower than the dense one. Host timings are
the best of ``--repeat`` runs (the machine is shared). Writes its table into
BENCHMARKS.md (section ``bench_host``).

    python scripts/bench_host.py [--models resnet8 vgg11] [--epochs 2] [--pruned 0.5 0.9]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.pipeline.data import load_splits, to_nhwc
from dtmm.pipeline.quantize import quantize_command
from dtmm.pipeline.train import train_command
from dtmm.benchmd import write_section  # noqa: E402
from dtmm.codegen.backends import build_host_model  # noqa: E402
from dtmm.graph.compressed import dense_equivalent  # noqa: E402
from dtmm.pipeline.oneshot import PruneSpec, prune_model  # noqa: E402
from dtmm.tflite.export import to_tflite_bytes  # noqa: E402
from dtmm.train import load_checkpoint  # noqa: E402
from dtmm.quant.quantize import quantize_input  # noqa: E402
from dtmm.runtime.reference import run_reference  # noqa: E402
from dtmm.tflite.reader import read_tflite  # noqa: E402
from dtmm.tflite.tflm import run_tflm  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet8", "vgg11"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--pruned", nargs="*", type=float, default=[0.5, 0.9],
                    help="filterlet ratios at which the first model is also pruned and timed")
    ap.add_argument("--repeat", type=int, default=5, help="host runs per model (best kept)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    _, tr, _, te = load_splits("mnist5k")
    rows = []

    def measure(label, g, model_bytes, tflm_bytes):
        xq = quantize_input(to_nhwc(te.x), g.tensors[g.inputs[0]].qparams)
        host, t_build = _timed(lambda: build_host_model(g))
        y_host, t_host = _timed(lambda: host(xq))
        for _ in range(args.repeat - 1):
            t_host = min(t_host, _timed(lambda: host(xq))[1])
        y_tflm, t_tflm = _timed(lambda: run_tflm(tflm_bytes, xq))
        y_ref, t_ref = _timed(lambda: np.concatenate([run_reference(g, xq[i:i + 128])
                                                      for i in range(0, len(xq), 128)]))
        exact = bool(np.array_equal(y_host, y_tflm) and np.array_equal(y_host, y_ref))
        acc = float((y_host.reshape(len(xq), -1).argmax(-1) == te.y).mean())
        rows.append((label, len(xq), acc, t_host, t_tflm, t_ref, t_build, exact))
        print(rows[-1], flush=True)
        return model_bytes
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            out = Path(tmp) / name
            train_command(model=name, data="mnist5k", epochs=args.epochs, out=str(out),
                                    progress=False)
            q = quantize_command(checkpoint=str(out / "checkpoint.pt"), data="mnist5k",
                                           out=str(out), eval_samples=100)
            model_bytes = Path(q["tflite"]).read_bytes()
            measure(name, read_tflite(model_bytes), model_bytes, model_bytes)
            if name != args.models[0]:
                continue
            net, meta = load_checkpoint(str(out / "checkpoint.pt"))
            for r in args.pruned:
                res = prune_model(net, meta.input_shape, PruneSpec("filterlet", r, "l2"),
                                  tr.x[:1024], tr.y[:1024])
                data = to_tflite_bytes(res.graph)
                g = read_tflite(data)          # the compressed file, as a user would run it
                measure(f"{name}, {r:.0%} filterlets pruned (FWCS)", g, data,
                        to_tflite_bytes(dense_equivalent(g)))
    lines = [
        "## Host C model vs TFLite Micro (Python) vs NumPy reference",
        "",
        f"`python scripts/bench_host.py --epochs {args.epochs}`: int8 inference of the whole mnist5k "
        f"test split (1,000 images, batch of all) on this machine ({os.cpu_count()} cores, shared "
        f"with other work), wall-clock seconds (host: best of {args.repeat} runs). Host = the "
        "generated C model as a shared library "
        "(`dtmm verify --backend host`); TFLM = `tflite_micro.runtime.Interpreter` (reference kernels) "
        "on the same .tflite (for a pruned model: on its dense equivalent, TFLM has no dtmm custom "
        "ops); reference = dtmm's NumPy executor. `same bytes` checks all three agree. Pruned rows: "
        "the first model pruned one shot (L2 filterlet importance, dead channels removed, FWCS); "
        "their accuracy is without fine-tuning.",
        "",
        "| model | images | int8 accuracy | host s | TFLM s | NumPy ref s | host speed-up vs TFLM | "
        "host build s (first, cached after) | same bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, n, acc, th, tt, tr, tb, exact in rows:
        lines.append(f"| {name} | {n} | {acc:.4f} | {th:.2f} | {tt:.2f} | {tr:.2f} | {tt / th:.1f}x | "
                     f"{tb:.1f} | {exact} |")
    base = next((r for r in rows if r[0] == args.models[0]), None)
    if base is not None:
        for r in rows:
            if r[0].startswith(f"{args.models[0]}, "):
                lines.append("")
                break
        for r in rows:
            if r[0].startswith(f"{args.models[0]}, "):
                lines.append(f"- {r[0]}: host {r[3]:.2f} s vs dense {base[3]:.2f} s "
                             f"({base[3] / r[3]:.2f}x the dense model's speed)")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("bench_host", text)
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
