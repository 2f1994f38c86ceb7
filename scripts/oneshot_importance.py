#!/usr/bin/env python3
"""One-shot pruning without fine-tuning: accuracy by importance scorer, granularity and ratio.

Trains ResNet-8 on mnist5k, then for each (granularity, importance, ratio) prunes every conv
layer in one shot with `dtmm.pipeline.oneshot.prune_torch` (BatchNorm statistics re-estimated on
training images afterwards) and reports float accuracy on the whole test split; also the
same without BatchNorm re-estimation, to show what it buys. Writes BENCHMARKS.md section
``oneshot``.

    python scripts/oneshot_importance.py [--epochs 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm.pipeline.data import load_splits
from dtmm.pipeline.evaluate import float_accuracy
from dtmm.pipeline.oneshot import PruneSpec, prune_torch
from dtmm.pipeline.train import train_command
from dtmm.benchmd import write_section  # noqa: E402
from dtmm.train import load_checkpoint  # noqa: E402

CASES = [("filterlet", "l1"), ("filterlet", "l2"), ("filterlet", "taylor"), ("element", "l1"),
         ("filter", "l1"), ("filter", "chip")]
RATIOS = (0.1, 0.3, 0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    _, tr, _, te = load_splits("mnist5k")
    order = np.random.default_rng(0).permutation(len(tr))
    xt, yt = tr.x[order], tr.y[order]
    with tempfile.TemporaryDirectory() as tmp:
        train_command(model="resnet8", data="mnist5k", epochs=args.epochs, out=tmp,
                                progress=False)
        net, _ = load_checkpoint(Path(tmp) / "checkpoint.pt")
    dense = float_accuracy(net, te.x, te.y)
    rows = []
    for gran, imp in CASES:
        for r in RATIOS:
            spec = PruneSpec(gran, r, imp)
            pruned, _ = prune_torch(net, spec, xt, yt)
            acc = float_accuracy(pruned, te.x, te.y)
            with mock.patch("dtmm.pipeline.oneshot.recalibrate_batchnorm", lambda *a, **k: None):
                stale, _ = prune_torch(net, spec, xt, yt)
            acc_stale = float_accuracy(stale, te.x, te.y)
            rows.append((gran, imp, r, acc, acc_stale))
            print(rows[-1], flush=True)
    lines = [
        "## One-shot pruning accuracy (no fine-tuning)",
        "",
        f"`python scripts/oneshot_importance.py --epochs {args.epochs}`: ResNet-8 trained "
        f"{args.epochs} epochs on mnist5k (dense float test accuracy {dense:.4f}, 1,000 test images); "
        "every conv layer pruned by the same ratio of its units, one shot, scores from 8 training "
        "batches of 64. `BN re-estimated` is what `dtmm prune` does (BatchNorm statistics "
        "recomputed on 512 training images after pruning); `stale BN` keeps the trained statistics.",
        "",
        "| granularity | importance | ratio | float acc, BN re-estimated | float acc, stale BN |",
        "|---|---|---:|---:|---:|",
    ]
    for gran, imp, r, a, s in rows:
        lines.append(f"| {gran} | {imp} | {r:.0%} | {a:.4f} | {s:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("oneshot", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
