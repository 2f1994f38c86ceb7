#!/usr/bin/env python3
"""Fine-tuning study: ResNet-8 on mnist5k, one-shot 50% filterlet pruning, then fine-tuning.

Measures, on the mnist5k test split (1,000 images; split as the CLI splits it):

1. the dense model (trained ``--dense-epochs`` with the built-in trainer), float and int8 (PTQ);
2. one-shot pruning of 50% of the filterlets of every conv (l2 importance, as
   ``dtmm.oneshot.prune_torch`` does), before fine-tuning: raw, and with BatchNorm
   statistics re-estimated on training images;
3. dead channels removed from the torch model (``dtmm.prune.surgery.shrink_model``), then
   ``--ft-epochs`` of masked fine-tuning (``dtmm.train.finetune.fine_tune``; SGD, cosine),
   without and with knowledge distillation from the dense model (alpha 0.5, T 4);
4. gradual pruning (Zhu & Gupta schedule) from the dense model to the same 50% over the
   same number of epochs, for comparison;
5. int8 of the best fine-tuned model: post-training quantization (256 calibration images)
   against ``--qat-epochs`` of quantization-aware fine-tuning with the learned ranges
   carried into the export (``dtmm.quant.fake.quantize_qat``); the int8 numbers come from
   the integer reference executor; also how often the exported int8 logits differ from the
   fake-quant model's integers.

Writes ``runs/finetune_study.json`` (not BENCHMARKS.md: the compress benchmark will own
the published numbers). Deterministic for a given seed and thread count.

    python scripts/finetune_study.py [--dense-epochs 15] [--ft-epochs 5] [--qat-epochs 2]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtmm import prune, workflows  # noqa: E402
from dtmm.graph.capture import capture  # noqa: E402
from dtmm.oneshot import recalibrate_batchnorm  # noqa: E402
from dtmm.prune.surgery import shrink_model  # noqa: E402
from dtmm.quant.fake import integer_outputs, prepare_qat, quantize_qat  # noqa: E402
from dtmm.quant.quantize import quantize_graph  # noqa: E402
from dtmm.train import (Distillation, FineTuneConfig, GradualPruning, evaluate, fine_tune,  # noqa: E402
                        train)
from dtmm.zoo import build_model  # noqa: E402


def int8_accuracy(qg, x, y) -> tuple[float, np.ndarray]:
    out = workflows.int8_predict(qg, x)
    return float((out.argmax(-1) == y).mean()), out


def ptq(model, shape, calib_x):
    g = capture(prune.remove_masks(copy.deepcopy(model)).eval(), shape)
    c = workflows.to_nhwc(calib_x)
    return quantize_graph(g, [c[i:i + 64] for i in range(0, len(c), 64)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense-epochs", type=int, default=15)
    ap.add_argument("--ft-epochs", type=int, default=5)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on shared cores, see dtmm.train.trainer)")
    ap.add_argument("--out", default="runs/finetune_study.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    ds, tr, va, te = workflows.load_splits("mnist5k")
    shape = ds.input_shape
    order = np.random.default_rng(0).permutation(len(tr))
    calib_x = tr.x[order[:256]]
    res: dict = {"model": "resnet8", "dataset": "mnist5k", "test_images": len(te), "seed": args.seed,
                 "threads": torch.get_num_threads(), "ratio": args.ratio, "steps": {}}

    def log(msg):
        print(f"[{time.perf_counter() - t_all:7.1f} s] {msg}", flush=True)

    # 1. dense
    t = time.perf_counter()
    dense = build_model("resnet8", shape, ds.num_classes, seed=args.seed)
    hist = train(dense, tr, va, epochs=args.dense_epochs, lr=0.05, weight_decay=5e-4, seed=args.seed)
    res["dense"] = {"epochs": args.dense_epochs, "float_test": evaluate(dense, te)[0],
                    "val_by_epoch": [round(h.val_acc, 4) for h in hist.history],
                    "int8_ptq_test": int8_accuracy(ptq(dense, shape, calib_x), te.x, te.y)[0],
                    "seconds": round(time.perf_counter() - t, 1)}
    log(f"dense: {res['dense']}")

    # 2. one-shot 50% filterlets (l2), before fine-tuning
    pruned = copy.deepcopy(dense).eval()
    layers = prune.prunable_layers(pruned, include_linear=False)
    scores = prune.l2(pruned, list(layers), "filterlet")
    prune.apply_masks(pruned, prune.masks_from_scores(pruned, scores, "filterlet", args.ratio))
    raw = evaluate(pruned, te)[0]
    recalibrate_batchnorm(pruned, tr.x[order], 64, 8)
    res["oneshot"] = {"float_test_raw": raw, "float_test_bn_recalibrated": evaluate(pruned, te)[0],
                      "sparsity": prune.sparsity(pruned)}
    log(f"one-shot: raw {raw:.4f}, BN re-estimated {res['oneshot']['float_test_bn_recalibrated']:.4f}")

    # 3. shrink, then fine-tune without / with distillation
    t = time.perf_counter()
    shr = shrink_model(pruned, shape)
    res["shrink"] = {"removed": {k: len(v) for k, v in shr.removed.items()},
                     "kept_by_add": {k: len(v) for k, v in shr.report.kept_by_add.items()},
                     "border_exact": shr.report.is_exact,
                     "float_test_after_shrink": evaluate(shr.model, te)[0],
                     "seconds": round(time.perf_counter() - t, 2)}
    log(f"shrink: {res['shrink']}")
    tuned = {}
    for name, distill in (("no_kd", None), ("kd", Distillation(alpha=0.5, temperature=4.0))):
        model = copy.deepcopy(shr.model)
        t = time.perf_counter()
        cfg = FineTuneConfig(epochs=args.ft_epochs, lr=0.01, distill=distill, seed=args.seed)
        r = fine_tune(model, tr, va, config=cfg, teacher=dense if distill else None)
        tuned[name] = model
        res["steps"][f"finetune_{name}"] = {
            "float_test": evaluate(model, te)[0], "val_by_epoch": [round(h.val_acc, 4) for h in r.history],
            "int8_ptq_test": int8_accuracy(ptq(model, shape, calib_x), te.x, te.y)[0],
            "seconds": round(time.perf_counter() - t, 1)}
        log(f"fine-tune {name}: {res['steps'][f'finetune_{name}']}")

    # 4. gradual pruning from the dense model to the same ratios
    t = time.perf_counter()
    grad = copy.deepcopy(dense)
    cfg = FineTuneConfig(epochs=args.ft_epochs, lr=0.01, seed=args.seed,
                         gradual=GradualPruning({n: args.ratio for n in layers}, granularity="filterlet",
                                                scorer="l2", updates=10))
    r = fine_tune(grad, tr, va, config=cfg)
    res["steps"]["gradual"] = {"float_test": evaluate(grad, te)[0],
                               "val_by_epoch": [round(h.val_acc, 4) for h in r.history],
                               "sparsity_by_epoch": [h.sparsity for h in r.history],
                               "int8_ptq_test": int8_accuracy(ptq(grad, shape, calib_x), te.x, te.y)[0],
                               "seconds": round(time.perf_counter() - t, 1)}
    log(f"gradual: {res['steps']['gradual']}")

    # 5. PTQ vs QAT of the better fine-tuned model
    best = max(("no_kd", "kd"), key=lambda k: res["steps"][f"finetune_{k}"]["float_test"])
    base = tuned[best]
    t = time.perf_counter()
    q = prepare_qat(base)
    cfg = FineTuneConfig(epochs=args.qat_epochs, lr=0.001, seed=args.seed)
    fine_tune(q, tr, va, config=cfg)
    _, qg = quantize_qat(q, shape)
    acc_qat, out = int8_accuracy(qg, te.x, te.y)
    want = integer_outputs(q, torch.from_numpy(te.x))
    diff = np.abs(out.astype(int) - want.astype(int))
    res["steps"]["qat"] = {
        "from": best, "epochs": args.qat_epochs, "int8_test": acc_qat,
        "fake_quant_float_test": evaluate(q, te)[0],
        "int8_ptq_test_same_start": res["steps"][f"finetune_{best}"]["int8_ptq_test"],
        "logit_bytes_differing_from_fake_quant": round(float((diff > 0).mean()), 4),
        "logit_max_step_difference": int(diff.max()),
        "argmax_agreement_with_fake_quant": float((out.argmax(1) == want.argmax(1)).mean()),
        "seconds": round(time.perf_counter() - t, 1)}
    log(f"qat: {res['steps']['qat']}")
    res["seconds"] = round(time.perf_counter() - t_all, 1)
    workflows.atomic_write_json(args.out, res)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
