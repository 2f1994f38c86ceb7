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

:func:`train_dense` is the same recipe on the split every ``dtmm`` step uses
(:func:`dtmm.pipeline.data.load_splits`: train / validation / test 70 / 10 / 20 %, by
fold): the dense checkpoint of ``dtmm bench paper``, runs/dense/yolo-e<E>/checkpoint.pt
with a dense.json (train_seconds, test AP@0.5 float and int8).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dtmm.benchmd import write_section  # noqa: E402
from dtmm.data import load_faces_det, split  # noqa: E402
from dtmm.graph.capture import capture  # noqa: E402
from dtmm.quant.quantize import dequantize, quantize_graph, quantize_input  # noqa: E402
from dtmm.runtime.reference import run_reference  # noqa: E402
from dtmm.train import train  # noqa: E402
from dtmm.train.task import task_for  # noqa: E402
from dtmm.zoo import build_model  # noqa: E402

#: The recipe (Adam, cosine, batch 32, random flips), shared by main() and train_dense().
LR, BATCH, EPOCHS = 2e-3, 32, 12
RUNS = Path(__file__).resolve().parents[1] / "runs" / "dense"


def _nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def checkpoint(epochs: int | None = None) -> Path:
    """The paper benchmark's dense YOLO checkpoint (written by :func:`train_dense`);
    ``epochs`` default :data:`EPOCHS`."""
    return RUNS / f"yolo-e{epochs or EPOCHS}" / "checkpoint.pt"


def train_dense(epochs: int | None = None, data: str = "faces-det", seed: int = 0) -> dict:
    """Train the dense YOLO on the pipeline's split of ``data`` with this script's recipe
    (``epochs`` default :data:`EPOCHS`); write ``checkpoint(epochs)`` and its ``dense.json``
    (``train_seconds``, test AP@0.5 float / int8); reused when present."""
    from dtmm.pipeline.data import load_splits
    from dtmm.pipeline.evaluate import calibration_images, quantize_model
    from dtmm.pipeline.tasks import check_splits, choose, int8_metric
    from dtmm.train import evaluate, save_checkpoint
    from dtmm.util.files import write_outputs

    epochs = epochs or EPOCHS
    out = checkpoint(epochs).parent
    info = out / "dense.json"
    if info.is_file() and checkpoint(epochs).is_file():
        return json.loads(info.read_text())
    ds, tr, va, te = load_splits(data)
    net = build_model("yolo", ds.input_shape, ds.num_classes, seed=seed)
    task = choose(ds, net)
    check_splits(task, train=tr, validation=va, test=te)
    t0 = time.time()
    res = train(net, tr, va, epochs=epochs, lr=LR, batch_size=BATCH, optimizer="adam",
                weight_decay=0.0, seed=seed, task=task)
    secs = time.time() - t0
    ap_float, _ = evaluate(net, te, task=task)
    _, qg = quantize_model(net.eval(), ds.input_shape, calibration_images(tr))
    d = {"model": "yolo", "data": data, "epochs": epochs, "train_seconds": round(secs, 1),
         "metric": task.metric_name, "val": [round(h.val_acc, 4) for h in res.history],
         "test_float": round(ap_float, 4), "test_int8": round(int8_metric(task, qg, te), 4)}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint(epochs), net, model_name="yolo", input_shape=ds.input_shape,
                    num_classes=ds.num_classes, dataset=data,
                    extra={"seed": seed, "epochs": epochs, "test_ap50": ap_float})
    write_outputs(out, {"dense.json": (json.dumps(d, indent=1) + "\n").encode()})
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=BATCH)
    ap.add_argument("--lr", type=float, default=LR)
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
    net = build_model("yolo", ds.input_shape, 1, seed=args.seed)
    task = task_for(ds, net)
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
    ap_int8 = task.score_outputs(dequantize(yq, qout), te)        # as dtmm compress scores int8

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
