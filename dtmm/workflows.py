"""The work behind each CLI verb, callable from Python too.

Every verb computes everything in memory first and writes its files last,
each through a temporary file and an atomic rename, so a failure never leaves a
half-written output.

Splits: every verb splits a dataset with the same fixed seed (:data:`SPLIT_SEED`)
into train / validation / test, so ``quantize`` calibrates on training images
and ``verify`` and accuracy figures use the test split, never seen in training.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from dtmm.errors import DataError, DtmmError, ModelFileError

SPLIT_SEED = 0
DEFAULT_LR = {"adam": 2e-3, "adamw": 2e-3, "sgd": 0.05}
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2


# ------------------------------------------------------------------ file helpers
# They live in dtmm.util.files (importable by every stage); re-exported here because
# callers import them from dtmm.workflows.
from dtmm.util.files import (atomic_write_bytes, atomic_write_json,  # noqa: E402,F401
                             check_output_file, check_output_path, record_outputs,
                             write_output_file, write_outputs)


def read_model_file(model: str) -> bytes:
    """The bytes of the ``.tflite`` file ``model``, or a ModelFileError naming it and saying
    what is wrong (missing, a folder, unreadable)."""
    path = Path(os.path.expanduser(str(model)))
    if path.is_dir():
        raise ModelFileError(f"{model}: is a folder; expected an int8 .tflite file written by dtmm")
    if not path.exists():
        raise ModelFileError(f"{model}: no such file; expected an int8 .tflite file written by dtmm")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{model}: cannot read it ({e.strerror or e}); expected an int8 "
                             f".tflite file") from None


def read_model(model: str):
    """:func:`read_model_file` parsed by :func:`dtmm.tflite.reader.read_tflite` (every field
    validated); errors name the file."""
    from dtmm.tflite.reader import read_tflite

    data = read_model_file(model)
    try:
        return read_tflite(data), data
    except ModelFileError as e:
        raise ModelFileError(f"{model}: {e}") from None


# ----------------------------------------------------------------------- data

def load_splits(spec: str, expect: tuple[int, int, int] | None = None):
    """(dataset, train, val, test) for a dataset spec, split deterministically.

    ``expect``: the ``(C, H, W)`` input of the model the data is for, if known."""
    from dtmm.data import load_dataset, split

    ds = load_dataset(spec, expect=expect)
    train, val, test = split(ds, val=VAL_FRACTION, test=TEST_FRACTION, seed=SPLIT_SEED)
    return ds, train, val, test


def to_nhwc(x_nchw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x_nchw, np.float32).transpose(0, 2, 3, 1))


def check_dataset_matches(ds, meta, spec: str) -> None:
    """Refuse a dataset whose input shape or class count differs from a checkpoint's."""
    if tuple(ds.input_shape) != tuple(meta.input_shape) or ds.num_classes != meta.num_classes:
        raise DataError(f"dataset {spec!r} has inputs {ds.input_shape} and {ds.num_classes} classes, "
                        f"but the checkpoint expects {tuple(meta.input_shape)} and "
                        f"{meta.num_classes} classes")


def batches(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


# ---------------------------------------------------------------------- train

#: File names the verbs write into their ``--out`` folder.
CHECKPOINT_NAME = "checkpoint.pt"
QUANTIZE_OUTPUTS = ("model_int8.tflite", "summary.json")

def train_command(*, model: str, data: str, epochs: int, out: str, seed: int = 0,
                  batch_size: int = 64, lr: float | None = None, optimizer: str = "adam",
                  limit: int | None = None, progress: bool = True) -> dict:
    """Train zoo model ``model`` on ``data`` and write ``out/checkpoint.pt``."""
    import torch

    from dtmm.train import evaluate, save_checkpoint, train
    from dtmm.zoo import build_model

    if epochs < 1:
        raise DtmmError(f"--epochs must be >= 1, got {epochs}")
    out_dir = check_output_path(out, names=[CHECKPOINT_NAME])     # before any training
    ds, tr, va, te = load_splits(data)
    if limit is not None:  # limit applies to the training split only
        idx = np.random.default_rng(seed).permutation(len(tr))[:limit]
        tr = tr.subset(np.sort(idx))
    torch.manual_seed(seed)
    net = build_model(model, ds.input_shape, ds.num_classes)
    t0 = time.time()
    if lr is None:
        lr = DEFAULT_LR[optimizer]
    res = train(net, tr, va, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                weight_decay=5e-4 if optimizer == "sgd" else 0.0, seed=seed, progress=progress)
    acc, loss = evaluate(net, te)
    check_output_path(out_dir, names=[CHECKPOINT_NAME])     # still ours to write?
    path = out_dir / CHECKPOINT_NAME
    save_checkpoint(path, net, model_name=model, input_shape=ds.input_shape,
                    num_classes=ds.num_classes, dataset=data,
                    extra={"seed": seed, "epochs": epochs, "test_accuracy": acc})
    record_outputs(out_dir, [CHECKPOINT_NAME])
    return {"checkpoint": str(path), "model": model, "dataset": data, "epochs": epochs,
            "train_seconds": round(time.time() - t0, 1), "test_accuracy": round(acc, 4),
            "test_loss": round(loss, 4), "steps": res.steps}


# ------------------------------------------------------------------- quantize

def quantize_model(net, input_shape, calib_x_nchw: np.ndarray, calibration: str = "minmax"):
    """Capture + calibrate + quantize a torch model; return (float graph, int8 graph)."""
    from dtmm.graph.capture import capture
    from dtmm.quant.quantize import quantize_graph

    if len(calib_x_nchw) == 0:
        raise DataError("the calibration set is empty")
    g = capture(net, tuple(input_shape))
    qg = quantize_graph(g, batches(to_nhwc(calib_x_nchw), 64), method=calibration)
    return g, qg


def int8_predict(qgraph, x_nchw: np.ndarray, batch: int = 128) -> np.ndarray:
    """int8 outputs of the reference executor for float NCHW inputs."""
    from dtmm.quant.quantize import quantize_input
    from dtmm.runtime.reference import run_reference

    qin = qgraph.tensors[qgraph.inputs[0]].qparams
    outs = [run_reference(qgraph, quantize_input(xb, qin)) for xb in batches(to_nhwc(x_nchw), batch)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.int8)


def float_accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    net.eval()
    with torch.no_grad():
        pred = np.concatenate([net(torch.from_numpy(xb)).argmax(1).numpy() for xb in batches(x, 256)])
    return float((pred == y).mean())


def quantize_command(*, checkpoint: str, data: str, out: str, calibration: str = "minmax",
                     calib_samples: int = 256, eval_samples: int | None = None) -> dict:
    """Quantize a checkpoint; write ``out/model_int8.tflite`` and ``out/summary.json``."""
    from dtmm.tflite.export import to_tflite_bytes
    from dtmm.train import load_checkpoint

    if calib_samples < 1:
        raise DataError("--calib-samples must be >= 1")
    out_dir = check_output_path(out, names=QUANTIZE_OUTPUTS)    # before any work
    net, meta = load_checkpoint(checkpoint)
    ds, tr, _, te = load_splits(data, meta.input_shape)
    check_dataset_matches(ds, meta, data)
    idx = np.random.default_rng(SPLIT_SEED).permutation(len(tr))[:calib_samples]
    g, qg = quantize_model(net, meta.input_shape, tr.x[np.sort(idx)], calibration)
    model_bytes = to_tflite_bytes(qg)
    xe, ye = (te.x, te.y) if eval_samples is None else (te.x[:eval_samples], te.y[:eval_samples])
    facc = float_accuracy(net, xe, ye)
    iacc = float((int8_predict(qg, xe).argmax(-1) == ye).mean())
    summary = {
        "model": meta.model_name, "dataset": data, "calibration": calibration,
        "calibration_samples": int(len(idx)), "eval_samples": int(len(ye)),
        "float_accuracy": round(facc, 4), "int8_accuracy": round(iacc, 4),
        "tflite_bytes": len(model_bytes),
        "input": _qp_json(qg.tensors[qg.inputs[0]]), "output": _qp_json(qg.tensors[qg.outputs[0]]),
        "layers": [_layer_json(qg, op) for op in qg.ops],
    }
    write_outputs(out_dir, {"model_int8.tflite": model_bytes,
                            "summary.json": (json.dumps(summary, indent=2) + "\n").encode()})
    return {"tflite": str(out_dir / "model_int8.tflite"), "summary": str(out_dir / "summary.json"),
            **{k: summary[k] for k in ("float_accuracy", "int8_accuracy", "tflite_bytes")}}


def _qp_json(t) -> dict:
    return {"name": t.name, "shape": list(t.shape), "scale": float(t.qparams.s),
            "zero_point": int(t.qparams.zp)}


def _layer_json(g, op) -> dict:
    d = {"name": op.name, "op": op.kind, "output_shape": list(g.tensors[op.output].shape)}
    w = getattr(op, "weight", None)
    if w is not None:
        d["weights"] = int(w.size)
        d["weight_shape"] = list(w.shape)
    return d


# --------------------------------------------------------------------- verify

def verify_command(*, model: str, backend: str, data: str, samples: int = 100,
                   profile: bool = False) -> dict:
    """Run ``model`` on ``backend`` over test images and compare with the reference.

    ``profile`` (QEMU backends): also build the model with per-op markers and report
    each op's executed instructions on the first image (``profile`` list).
    """
    from dtmm.quant.quantize import quantize_input
    from dtmm.runtime.reference import run_reference

    if samples < 1:
        raise DataError("--samples must be >= 1")
    if profile and backend not in CODEGEN_BACKENDS[1:]:
        raise DtmmError(f"--profile needs a QEMU backend ({', '.join(CODEGEN_BACKENDS[1:])}), "
                        f"not {backend!r}: only the emulator counts instructions")
    path = Path(model)
    qg, model_bytes = read_model(model)
    if len(qg.inputs) != 1 or len(qg.tensors[qg.inputs[0]].shape) != 3:
        raise ModelFileError(f"{model}: verify needs one (H, W, C) image input, the model has "
                             f"{[list(qg.tensors[n].shape) for n in qg.inputs]}")
    want = qg.tensors[qg.inputs[0]].shape
    ds, _, _, te = load_splits(data, (want[2], want[0], want[1]))
    if len(te) == 0:
        raise DataError(f"dataset {data!r} ({len(ds)} images, {ds.num_classes} classes) leaves no "
                        f"test images after the {TEST_FRACTION:.0%} stratified split; use more "
                        f"images per class")
    got = tuple(to_nhwc(te.x[:1]).shape[1:])
    if tuple(want) != got:
        raise DataError(f"model {path.name} expects NHWC inputs {tuple(want)} but dataset {data!r} "
                        f"gives {got}")
    x, y = te.x[:samples], te.y[:samples]
    xq = quantize_input(to_nhwc(x), qg.tensors[qg.inputs[0]].qparams)
    ref = np.concatenate([run_reference(qg, xb) for xb in batches(xq, 128)])
    extra: dict = {}
    if backend == "reference":
        outs = ref
    elif backend == "tflm":
        from dtmm.graph.compressed import dense_equivalent, has_compressed_ops
        from dtmm.tflite.export import to_tflite_bytes
        from dtmm.tflite.tflm import run_tflm
        # TFLM has no DTMM custom ops: it runs the dense equivalent (pruned weights as zeros),
        # which must match the compressed layers run from their formats byte for byte.
        outs = run_tflm(to_tflite_bytes(dense_equivalent(qg)) if has_compressed_ops(qg) else model_bytes, xq)
    elif backend in CODEGEN_BACKENDS:
        outs, extra = _run_codegen_backend(qg, backend, xq, profile=profile)
    else:
        raise DtmmError(f"unknown backend {backend!r}; known: reference, tflm, "
                        f"{', '.join(CODEGEN_BACKENDS)}")
    diff = outs.reshape(len(x), -1) != ref.reshape(len(x), -1)
    bad_samples = np.flatnonzero(diff.any(axis=1))
    return {
        "backend": backend, "model": str(path), "dataset": data, "samples": int(len(x)),
        "bit_exact": bool(not diff.any()), "mismatches": int(diff.sum()),
        "mismatched_samples": int(len(bad_samples)),
        "first_mismatch": int(bad_samples[0]) if len(bad_samples) else None,
        "accuracy": round(float((outs.reshape(len(x), -1).argmax(-1) == y).mean()), 4),
        **extra,
    }


#: verify backends that run the generated C model (see :mod:`dtmm.codegen.backends`).
CODEGEN_BACKENDS = ("host", "qemu-m4", "qemu-m7", "qemu-m55")


def _run_codegen_backend(qg, backend: str, xq: np.ndarray,
                         profile: bool = False) -> tuple[np.ndarray, dict]:
    """Outputs of the generated C model on ``backend`` and the measurements to report."""
    from dtmm.codegen.backends import BACKEND_TARGETS, build_firmware, build_host_model, run_firmware

    target = BACKEND_TARGETS[backend]
    t0 = time.time()
    if target == "host":
        model = build_host_model(qg)
        t1 = time.time()
        outs = model(xq)
        dt = time.time() - t1
        return outs, {"target": "host", "build_seconds": round(t1 - t0, 2),
                      "run_seconds": round(dt, 3),
                      "images_per_second": round(len(xq) / dt, 1) if dt > 0 else None,
                      "arena_bytes": model.plan.arena.size,
                      "arena_lower_bound_bytes": model.plan.arena.peak_live,
                      "const_bytes": model.plan.const_bytes}
    fw = build_firmware(qg, target)
    res = run_firmware(fw, xq)
    ins = res.instructions
    prof = {}
    if profile:
        pres = run_firmware(build_firmware(qg, target, profile=True), xq[:1])
        if not np.array_equal(pres.outputs, res.outputs[:1]):
            raise DtmmError("the profiling build's output differs from the normal build's")
        row = pres.op_instructions[0]
        total = res.instructions_per_inference
        prof = {"profile": [{"op": s.op_name, "kind": s.op_kind, "instructions": int(row[s.index]),
                             "share": round(row[s.index] / total, 4) if total else None}
                            for s in fw.plan.steps],
                "profile_ops_total": int(sum(row)),
                "profile_note": "executed instructions of each op's kernel call on image 0 "
                                "(QEMU count, not cycles); the rest of "
                                "instructions_per_inference is dtmm_model_invoke's input/output "
                                "copies"}
    return res.outputs, {
        "target": target,
        "instructions_per_inference": res.instructions_per_inference,
        "instructions_min": int(min(ins)), "instructions_max": int(max(ins)),
        "instructions_note": "executed instructions counted by QEMU around one "
                             "dtmm_model_invoke (not cycles)",
        "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes,
        "arena_bytes": res.arena_bytes, "arena_lower_bound_bytes": res.arena_peak_live,
        "const_bytes": res.const_bytes, "seconds": round(time.time() - t0, 2), **prof,
    }


# --------------------------------------------------------------------- export

EXPORT_TARGETS = ("host", "cortex-m4", "cortex-m7", "cortex-m55")


def export_command(*, model: str, target: str, out: str) -> dict:
    """Write the self-contained C project of the int8 ``.tflite`` ``model`` for ``target``.

    ``out`` gets ``model.h``/``model.c``, ``main.c``, a ``Makefile`` and the kernels and
    platform support files it needs (see :mod:`dtmm.codegen.emit`); it is written to a
    temporary directory and renamed into place.
    """
    from dtmm.codegen.emit import project_files, write_project
    from dtmm.codegen.plan import plan_model

    if target not in EXPORT_TARGETS:
        raise DtmmError(f"unknown target {target!r}; known: {', '.join(EXPORT_TARGETS)}")
    check_output_path(out)
    qg, _ = read_model(model)
    plan = plan_model(qg, target)
    files = project_files(plan)
    check_output_path(out, names=list(files))
    dest = write_project(plan, out, files=files)
    return {"out": str(dest), "target": plan.target, "isa": plan.arena.isa,
            "ops": len(plan.steps), "arena_bytes": plan.arena.size,
            "arena_lower_bound_bytes": plan.arena.peak_live, "const_bytes": plan.const_bytes,
            "files": sorted(files)}


# ----------------------------------------------------------------------- demo

def demo_command(*, out: str = "runs/demo", model: str = "resnet8", epochs: int = 3, seed: int = 0,
                 prune_ratio: float = 0.3) -> int:
    """The whole chain on bundled MNIST, printing each step: train -> int8 -> .tflite verified
    against TFLite Micro -> one-shot filterlet pruning to FWCS -> the generated C model run on
    the host and on an emulated Cortex-M55, every output byte compared with the reference."""
    from dtmm.oneshot import prune_command

    data = "mnist5k"
    print(f"[1/4] training {model} on {data} for {epochs} epochs ...", flush=True)
    tr = train_command(model=model, data=data, epochs=epochs, seed=seed, out=out)
    print(f"      float test accuracy {tr['test_accuracy']:.4f} ({tr['train_seconds']} s)")
    print("[2/4] int8 quantization + .tflite export ...", flush=True)
    q = quantize_command(checkpoint=tr["checkpoint"], data=data, out=out)
    print(f"      float {q['float_accuracy']:.4f} -> int8 {q['int8_accuracy']:.4f}, "
          f"{q['tflite_bytes']} bytes: {q['tflite']}")
    print(f"[3/4] pruning {prune_ratio:.0%} of the filterlets of every conv (one shot, FWCS) ...",
          flush=True)
    p = prune_command(checkpoint=tr["checkpoint"], data=data, granularity="filterlet",
                      ratio=prune_ratio, out=str(Path(out) / "pruned"))
    print(f"      int8 accuracy {p['int8_accuracy']:.4f} (no fine-tuning), weights + index + quant "
          f"{p['total_bytes']:,} bytes vs {p['dense_int8_total_bytes']:,} dense: {p['tflite']}")
    print("[4/4] every backend against the NumPy reference, byte for byte ...", flush=True)
    ok = True
    runs = [(q["tflite"], "tflm", 200), (q["tflite"], "host", 1000), (q["tflite"], "qemu-m55", 4),
            (p["tflite"], "tflm", 200), (p["tflite"], "host", 1000), (p["tflite"], "qemu-m55", 4)]
    for path, backend, n in runs:
        v = verify_command(model=path, backend=backend, data=data, samples=n)
        tag = "dense " if path == q["tflite"] else "pruned"
        line = (f"      {tag} {backend:>8}: {n:>4} images bit_exact={v['bit_exact']} "
                f"accuracy={v['accuracy']:.4f}")
        if "instructions_per_inference" in v:
            line += (f" {v['instructions_per_inference']:,} instructions/inference (QEMU count, "
                     f"not cycles), flash {v['flash_bytes']:,} B, RAM {v['ram_bytes']:,} B")
        elif "images_per_second" in v:
            line += f" {v['images_per_second']:,.0f} images/s"
        print(line, flush=True)
        ok &= v["bit_exact"]
    print("done." if ok else "MISMATCH: see above.")
    return 0 if ok else 1
