"""``dtmm verify``: a model on a backend, every output byte against the NumPy reference."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dtmm.errors import DataError, DtmmError, ModelFileError
from dtmm.pipeline.data import TEST_FRACTION, batches, load_splits, to_nhwc
from dtmm.pipeline.modelfiles import read_model

#: verify backends that run the generated C model (see :mod:`dtmm.codegen.backends`).
CODEGEN_BACKENDS = ("host", "qemu-m4", "qemu-m7", "qemu-m55")


def verify_command(*, model: str, backend: str, data: str, samples: int = 100,
                   profile: bool = False, progress=None, board: str | None = None) -> dict:
    """Run ``model`` on ``backend`` over test images and compare with the reference.

    ``board`` (QEMU backends, see ``dtmm boards``): link the firmware against that board's
    flash and SRAM (its core must be the backend's); a model that does not fit raises
    :class:`~dtmm.codegen.platform.RegionOverflowError` naming the region and the overflow.

    ``profile`` (QEMU backends): also build the model with per-op markers and report
    each op's executed instructions on the first image (``profile`` list).
    ``progress``: a callback (:class:`dtmm.train.progress.Reporter`: a bar on a terminal)
    told how many images the QEMU runs have done.
    """
    from dtmm.quant.quantize import quantize_input
    from dtmm.runtime.reference import run_reference

    if samples < 1:
        raise DataError("--samples must be >= 1")
    if board is not None:
        from dtmm.codegen.backends import BACKEND_TARGETS
        from dtmm.codegen.platform.boards import get_board
        if backend not in CODEGEN_BACKENDS[1:]:
            raise DtmmError(f"--board needs a QEMU backend ({', '.join(CODEGEN_BACKENDS[1:])}), "
                            f"not {backend!r}")
        b = get_board(board)
        if BACKEND_TARGETS[backend] != b.core:
            raise DtmmError(f"--board {b.name} is a {b.core} board ({b.mcu}); use --backend "
                            f"qemu-{b.core.removeprefix('cortex-')}")
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
        outs, extra = _run_codegen_backend(qg, backend, xq, profile=profile, progress=progress,
                                           board=board)
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



#: images per QEMU run when progress is reported (one line / bar step each)
PROGRESS_CHUNK = 16


def run_firmware_progress(fw, xq: np.ndarray, progress=None, desc: str = "qemu"):
    """:func:`dtmm.codegen.backends.run_firmware` over ``xq`` in runs of
    :data:`PROGRESS_CHUNK` images, reporting the images done to ``progress`` (a bar on a
    terminal, plain lines with elapsed and remaining time otherwise); one result."""
    from dataclasses import replace

    from dtmm.codegen.backends import run_firmware
    from dtmm.train.progress import ticker

    if progress is None or len(xq) <= PROGRESS_CHUNK:
        with ticker(progress, f"{desc}: images run", len(xq), unit="image") as bar:
            res = run_firmware(fw, xq)
            bar.update(len(xq))
        return res
    parts = []
    with ticker(progress, f"{desc}: images run", len(xq), unit="image") as bar:
        for i in range(0, len(xq), PROGRESS_CHUNK):
            parts.append(run_firmware(fw, xq[i:i + PROGRESS_CHUNK]))
            bar.update(len(parts[-1].outputs))
    cyc = [c for p in parts for c in (p.estimated_cycles or [])]
    ops = [r for p in parts for r in (p.op_instructions or ())]
    return replace(parts[0], outputs=np.concatenate([p.outputs for p in parts]),
                   instructions=[c for p in parts for c in p.instructions],
                   op_instructions=tuple(ops) if parts[0].op_instructions is not None else None,
                   estimated_cycles=cyc if len(cyc) == len(xq) else None)


def _run_codegen_backend(qg, backend: str, xq: np.ndarray, profile: bool = False,
                         progress=None, board: str | None = None) -> tuple[np.ndarray, dict]:
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
    from dtmm.codegen.platform.boards import resolve_target
    spec = resolve_target(target, board, target)     # the board's memory sizes, if one is given
    fw = build_firmware(qg, spec)
    res = run_firmware_progress(fw, xq, progress, backend)
    ins = res.instructions
    prof = (op_profile(qg, spec, xq[:1], res.outputs[:1], res.instructions_per_inference)
            if profile else {})
    return res.outputs, {
        "target": target, **({"board": spec.board} if spec.board else {}),
        "instructions_per_inference": res.instructions_per_inference,
        "instructions_min": int(min(ins)), "instructions_max": int(max(ins)),
        "instructions_note": "executed instructions counted by QEMU around one "
                             "dtmm_model_invoke (not cycles)",
        "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes,
        "arena_bytes": res.arena_bytes, "arena_lower_bound_bytes": res.arena_peak_live,
        "const_bytes": res.const_bytes, "seconds": round(time.time() - t0, 2), **prof,
    }


def op_profile(qg, target: str, x1: np.ndarray, expected: np.ndarray, total: int) -> dict:
    """Each op's executed instructions for the one int8 image ``x1`` on a Cortex-M ``target``
    (one build with per-op markers, one QEMU run): ``profile`` (op, kind, instructions,
    share of ``total``, the plain build's instructions per inference), ``profile_ops_total``
    and ``profile_note``. ``expected``: the plain build's output for ``x1``, which the
    profiling build must reproduce."""
    from dtmm.codegen.backends import build_firmware, run_firmware

    fw = build_firmware(qg, target, profile=True)
    pres = run_firmware(fw, x1)
    if not np.array_equal(pres.outputs, expected):
        raise DtmmError("the profiling build's output differs from the normal build's")
    row = pres.op_instructions[0]
    return {"profile": [{"op": s.op_name, "kind": s.op_kind, "instructions": int(row[s.index]),
                         "share": round(row[s.index] / total, 4) if total else None}
                        for s in fw.plan.steps],
            "profile_ops_total": int(sum(row)),
            "profile_note": "executed instructions of each op's kernel call on image 0 "
                            "(QEMU count, not cycles); the rest of "
                            "instructions_per_inference is dtmm_model_invoke's input/output "
                            "copies"}
