#!/usr/bin/env python3
"""Train the tiny YOLO on the composited faces (faces-det) and report AP@0.5, float and int8.

The data are COMPOSITED (LFW face crops pasted onto non-face pictures, see
dtmm/data/faces_det.py), not FDDB: the number is a check that detection trains and
survives int8, not a comparison with the paper's 60.29% AP on FDDB. Split 70/30 by
fold (the paper's FDDB split ratio; test faces never appear in training). Int8: min/max
calibration on 256 training images, AP from the NumPy integer reference, the host C
model (generated code) checked byte-equal to the reference on test images, and the
Cortex-M55 firmware run under QEMU on 2 test images (byte-equal; executed instructions,
not cycles; flash and RAM of the linked image).

Writes its table into BENCHMARKS.md between its markers (unless --no-write) and prints it.

    python scripts/train_yolo_faces.py [--epochs 12] [--images 1500] [--threads 2] [--no-write]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dtmm.benchmd import write_section  # noqa: E402
from dtmm.data import load_faces_det, split  # noqa: E402
from dtmm.detect import DetectionTask, average_precision, decode_nhwc  # noqa: E402
from dtmm.graph.capture import capture  # noqa: E402
from dtmm.quant.quantize import dequantize, quantize_graph, quantize_input  # noqa: E402
from dtmm.runtime.reference import run_reference  # noqa: E402
from dtmm.train import train  # noqa: E402
from dtmm.zoo import build_model  # noqa: E402


def _nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 shared cores)")
    ap.add_argument("--c-images", type=int, default=8, help="test images run through the host C model")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    ds = load_faces_det(args.images)
    tr, _, te = split(ds, val=0.0, test=0.3, seed=args.seed)
    print(f"faces-det: {len(ds)} images, train {len(tr)} ({tr.n_boxes} faces), "
          f"test {len(te)} ({te.n_boxes} faces), built in {time.time() - t0:.1f} s", flush=True)
    task = DetectionTask()
    net = build_model("yolo", ds.input_shape, 1, seed=args.seed)
    t1 = time.time()
    res = train(net, tr, te, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                optimizer="adam", weight_decay=0.0, seed=args.seed, task=task)
    train_s = time.time() - t1
    for e in res.history:
        print(f"epoch {e.epoch}: train loss {e.train_loss:.3f}, responsible-anchor recall "
              f"{e.train_acc:.3f}, test loss {e.val_loss:.3f}, test AP@0.5 {e.val_acc:.4f} "
              f"({e.seconds:.0f} s)", flush=True)
    ap_float = res.val_acc

    net.eval()
    g = capture(net, ds.input_shape)
    calib = _nhwc(tr.x[:256])
    qg = quantize_graph(g, [calib[i:i + 64] for i in range(0, len(calib), 64)])
    qin, qout = qg.tensors[qg.inputs[0]].qparams, qg.tensors[qg.outputs[0]].qparams
    xq = quantize_input(_nhwc(te.x), qin)
    yq = np.concatenate([run_reference(qg, xq[i:i + 64]) for i in range(0, len(xq), 64)])
    _, h, w = ds.input_shape
    dets = decode_nhwc(dequantize(yq, qout), task.layout, (h, w),
                       score_threshold=task.score_threshold, nms_iou=task.nms_iou,
                       max_detections=task.max_detections)
    ap_int8 = average_precision(dets, list(te.boxes)).ap

    c_note = "not run"
    try:
        from dtmm.codegen.backends import build_host_model

        k = min(args.c_images, len(xq))
        got = build_host_model(qg)(xq[:k])
        c_note = f"{'byte-equal' if np.array_equal(got, yq[:k]) else 'MISMATCH'} on {k} test images"
    except Exception as e:  # noqa: BLE001 - report, do not hide: the table says what happened
        c_note = f"host C build failed: {type(e).__name__}: {e}"
    m55 = None
    try:
        from dtmm.codegen.backends import build_firmware, run_firmware

        r = run_firmware(build_firmware(qg, "cortex-m55"), xq[:2])
        m55 = (bool(np.array_equal(r.outputs, yq[:2])), r.instructions_per_inference, r.flash_bytes,
               r.ram_bytes, r.arena_bytes)
    except Exception as e:  # noqa: BLE001 - no Arm toolchain / QEMU: say so in the table
        m55 = f"not run: {type(e).__name__}: {e}"
    n_params = sum(p.numel() for p in net.parameters())
    lines = [
        "## Tiny YOLO on composited faces (detection)",
        "",
        "`" + " ".join(["python", "scripts/train_yolo_faces.py"] + sys.argv[1:]) + "`: the zoo's `yolo` (1x112x112 input, 7x7 grid, 2 anchors, "
        f"{n_params:,} parameters) trained from scratch with Adam (lr {args.lr}, cosine, batch "
        f"{args.batch_size}, {args.epochs} epochs, random horizontal flips) on `faces-det`, "
        "**a composited set** (LFW face crops pasted onto non-face pictures; not FDDB), split "
        "70/30 by fold so that no test face is seen in training. AP@0.5 is PASCAL VOC "
        "all-points AP (`dtmm.detect.average_precision`), detections at score >= 0.01, NMS "
        "IoU 0.45. Int8: min/max calibration on 256 training images, AP of the NumPy integer "
        "reference's dequantized head. The test split is scored after every epoch for the "
        "printed curve only: the model reported is the last epoch's (no selection). Train time "
        "is wall time on this project's 2 shared cores. Not comparable with the paper's "
        "60.29% AP, which is on real FDDB images.",
        "",
        "| images (train / test) | faces (train / test) | epochs | train time | AP@0.5 float | "
        "AP@0.5 int8 | host C vs reference |",
        "|---|---|---:|---:|---:|---:|---|",
        f"| {len(tr)} / {len(te)} | {tr.n_boxes} / {te.n_boxes} | {args.epochs} | "
        f"{train_s / 60:.1f} min ({args.threads} threads) | {ap_float:.4f} | {ap_int8:.4f} | {c_note} |",
    ]
    if isinstance(m55, tuple):
        exact, ins, flash, ram, arena = m55
        lines += ["", "Cortex-M55 (QEMU, MVE build) of the int8 model above, 2 test images:", "",
                  "| byte-equal to reference | instructions / inference | flash B | RAM B | arena B |",
                  "|---|---:|---:|---:|---:|",
                  f"| {exact} | {ins:,} | {flash:,} | {ram:,} | {arena:,} |"]
    else:
        lines += ["", f"Cortex-M55: {m55}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("train_yolo_faces", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
