"""``dtmm quantize``: a checkpoint to an int8 ``.tflite`` (post-training quantization)."""
from __future__ import annotations

import json

from dtmm.errors import DataError
from dtmm.pipeline.evaluate import calibration_images, float_accuracy, int8_predict, quantize_model
from dtmm.util.files import check_output_path, write_outputs

#: Files ``dtmm quantize`` writes into its ``--out`` folder.
QUANTIZE_OUTPUTS = ("model_int8.tflite", "summary.json")


def quantize_command(*, checkpoint: str, data: str, out: str, calibration: str = "minmax",
                     calib_samples: int = 256, eval_samples: int | None = None,
                     model: str | None = None, quiet: bool = True) -> dict:
    """Quantize a checkpoint; write ``out/model_int8.tflite`` and ``out/summary.json``.

    ``model``: the checkpoint's model (zoo name or ``path/to/file.py:factory``; default: the
    one the checkpoint records). Unless ``quiet``, one line per step on standard error."""
    from dtmm.pipeline import models as M
    from dtmm.tflite.export import to_tflite_bytes
    from dtmm.train.progress import Reporter

    if calib_samples < 1:
        raise DataError("--calib-samples must be >= 1")
    out_dir = check_output_path(out, names=QUANTIZE_OUTPUTS)    # before any work
    say = Reporter(quiet=quiet, steps=3)
    with say.step("load the checkpoint and the data") as st:
        net, meta, ds, tr, _, te = M.load_with_data(checkpoint, model, data)
        st.summary = f"{meta.model_name}, {len(tr)} training / {len(te)} test images"
    with say.step(f"quantize ({calibration} calibration)") as st:
        calib = calibration_images(tr, calib_samples)
        g, qg = quantize_model(net, meta.input_shape, calib, calibration)
        model_bytes = to_tflite_bytes(qg)
        st.summary = f"{len(calib)} calibration images, {len(model_bytes):,} B .tflite"
    with say.step("evaluate float and int8") as st:
        xe, ye = (te.x, te.y) if eval_samples is None else (te.x[:eval_samples], te.y[:eval_samples])
        facc = float_accuracy(net, xe, ye)
        iacc = float((int8_predict(qg, xe).argmax(-1) == ye).mean())
        st.summary = f"float {facc:.4f}, int8 {iacc:.4f} on {len(ye)} test images"
    summary = {
        "model": meta.model_name, "dataset": data, "calibration": calibration,
        "calibration_samples": int(len(calib)), "eval_samples": int(len(ye)),
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

