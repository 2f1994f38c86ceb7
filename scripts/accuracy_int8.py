#!/usr/bin/env python3
"""Float vs int8 accuracy of zoo models trained on bundled MNIST (mnist5k).

Trains each model with `dtmm train`'s code path, quantizes it with `dtmm quantize`'s
(min/max calibration on 256 training images), and evaluates float (PyTorch) and int8
(NumPy reference executor, bit-exact with TFLite Micro) accuracy on the whole test split.
Writes its table into BENCHMARKS.md between its markers and prints it.

    python scripts/accuracy_int8.py [--models resnet8 vgg11] [--epochs 4]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.pipeline.quantize import quantize_command
from dtmm.pipeline.train import train_command
from dtmm.pipeline.verify import verify_command
from dtmm.benchmd import write_section  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet8", "vgg11"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            t0 = time.time()
            out = Path(tmp) / name
            train_command(model=name, data="mnist5k", epochs=args.epochs, seed=args.seed,
                                    out=str(out), progress=False)
            q = quantize_command(checkpoint=str(out / "checkpoint.pt"), data="mnist5k",
                                           out=str(out))
            v = verify_command(model=q["tflite"], backend="tflm", data="mnist5k", samples=1000)
            rows.append((name, q["float_accuracy"], q["int8_accuracy"], q["tflite_bytes"],
                         v["bit_exact"], v["samples"], time.time() - t0))
            print(rows[-1], flush=True)
    lines = [
        "## int8 vs float accuracy on mnist5k",
        "",
        f"`python scripts/accuracy_int8.py --epochs {args.epochs} --seed {args.seed}`: each model trained "
        f"{args.epochs} epochs (Adam, cosine) on the training split (3,500 images), min/max calibration on "
        "256 training images, accuracy on the whole test split (1,000 images). int8 accuracy is the NumPy "
        "reference executor's; `TFLM bit-exact` compares TFLite Micro's output bytes with it on all "
        "1,000 test images.",
        "",
        "| model | float acc | int8 acc | int8 - float (pp) | .tflite bytes | TFLM bit-exact | seconds |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, fa, ia, nbytes, exact, n, sec in rows:
        lines.append(f"| {name} | {fa:.4f} | {ia:.4f} | {100 * (ia - fa):+.2f} | {nbytes:,} | "
                     f"{exact} ({n}) | {sec:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("accuracy_int8", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
