"""``dtmm bench paper``: the shapes of the DTMM paper's evaluation (Fig. 11-15) on our models and data.

Every point is a ``dtmm compress`` run (one per model x method x size): the same
scheduler under the same budgets, the same fine-tuning, the same quantization, each
method with its own format and kernel (:mod:`dtmm.schedule.methods`). Sizes are
model-data budgets (``--model-bytes``: the generated model's constant data, weights +
index + quantization, without the kernel code) of ``frac`` of the dense int8 model's;
SRAM 256 KB (the paper's; YOLO 512 KB: its dense firmware needs 268 KB). Runs are resumable (each one's folder keeps
its finished steps) and run in parallel processes (``--jobs``).

* **Fig. 11**: per model and method, the smallest model whose int8 test accuracy is at
  most 0.5 pp below the dense int8 model, with its Cortex-M55 instructions (QEMU counts,
  not cycles) and SRAM;
* **Fig. 12**: int8 accuracy against model size, every method at every size (PNG plot);
* **Fig. 13**: size breakdown (weights / index / quant / other) of the Fig. 11 models;
* **Fig. 14**: the DTMM model's whole-model instructions on the M55 with the DTMM operator
  ablated (no weight reuse; plain C) and with 16 / 2 / 1 SIMD lanes;
* **Fig. 15**: the code dtmm adds to a firmware per target (kernels and model code,
  measured from linked images; the paper: TFLM 30 KB + 4 KB for its operator) and the
  fine-tuning time against the dense training time;
* the paper's headline claims beside ours.

The full run: the classifiers on mnist5k (dense checkpoints from scripts/train_dense.py)
and the tiny YOLO on the composited faces, ``faces-det`` (its dense checkpoint from
scripts/train_yolo_faces.py's recipe, :func:`train_yolo_faces.train_dense`), whose
"accuracy" is AP@0.5 everywhere (the report names each model's metric; "pp" are points of
that metric). Fine-tuning epochs are a per-model setting (:data:`MODEL_EPOCHS`, recorded
in the results): a YOLO epoch costs far more than a classifier's.

``--quick`` is a small version for CI (ResNet-8 on the 8x8 digits, two sizes, three
methods, one fine-tuning epoch): it exercises every step and writes its JSON, not
BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Job", "jobs", "run_job", "run_paper_bench", "add_cli_arguments", "run_cli", "PAPER"]

#: The paper's figures used as the yardstick (measured there, not here).
PAPER = {
    "size_vs_chip": 39.53, "size_vs_patdnn": 11.92, "latency_vs_chip": 1.09,
    "latency_vs_patdnn": 68.70, "fwcs_vs_csr_90": 49.6, "index_overhead": (1.1, 3.2),
    "pruned_per_layer_vgg11": (37.5, 99.0), "tflm_code_kb": 30, "dtmm_operator_kb": 4,
    "finetune_over_training": 0.5,
}
FULL_MODELS = {"resnet8": ("dtmm", "chip", "patdnn", "l1-filter", "unstructured"),
               "vgg11": ("dtmm", "chip", "patdnn"), "resnet12": ("dtmm", "chip", "patdnn"),
               "yolo": ("dtmm", "chip", "patdnn")}
#: The full run's data set, and the models that use another (detection).
FULL_DATA = "mnist5k"
MODEL_DATA = {"yolo": "faces-det"}
#: The full run's fine-tuning epochs, and the models that use fewer: a YOLO epoch (1,050
#: images of 112x112) takes about 20 s on one thread, and every YOLO run also pays for
#: AP scoring on the int8 reference and 34M-instruction QEMU runs; 5 epochs keep its
#: fine-tuning under half its dense training (12 epochs), the paper's ratio.
FULL_EPOCHS = 10
MODEL_EPOCHS = {"yolo": 5}
#: SRAM budgets other than the paper's 256 KB: the dense YOLO's firmware takes 252 KB of
#: RAM + the 16 KiB stack, so at 256 KB a method that cannot remove filters (PatDNN) has
#: no plan at all; 512 KB is the Cortex-M55 board's data TCM (where the arena lives).
FULL_RAM = "256KB"
MODEL_RAM = {"yolo": "512KB"}
FRACTIONS = (0.6, 0.4, 0.25, 0.15, 0.08)
QUICK_FRACTIONS = (0.5, 0.25)


@dataclass(frozen=True)
class Job:
    model: str
    method: str
    frac: float
    checkpoint: str
    data: str
    out: str
    model_bytes: int
    epochs: int
    verify_samples: int
    loss_model: str
    ram: str = FULL_RAM                # SRAM budget


def _dense(checkpoint: str, data: str) -> dict:
    """Flash, const bytes and instructions of the dense int8 model on the Cortex-M55, and its
    int8 test metric (``int8_accuracy``: accuracy, or AP@0.5 for detection; ``metric``)."""
    from dtmm.codegen.backends import build_firmware, run_firmware
    from dtmm.pipeline.data import load_splits, to_nhwc
    from dtmm.pipeline.evaluate import calibration_images, quantize_model
    from dtmm.pipeline.tasks import choose, int8_metric
    from dtmm.quant.quantize import quantize_input
    from dtmm.train import load_checkpoint

    net, meta = load_checkpoint(checkpoint)
    ds, tr, _, te = load_splits(data)
    task = choose(ds, net, meta.input_shape)
    _, qg = quantize_model(net, meta.input_shape, calibration_images(tr))
    x = quantize_input(to_nhwc(te.x[:1]), qg.tensors[qg.inputs[0]].qparams)
    res = run_firmware(build_firmware(qg, "cortex-m55"), x)
    acc = int8_metric(task, qg, te)
    # the dense weight count of every layer the scheduler prunes (the plan's layer names)
    weights = {op.name: int(op.weight.size) for op in qg.ops if op.kind in ("conv2d", "fully_connected")}
    return {"flash_bytes": res.flash_bytes, "const_bytes": res.const_bytes, "ram_bytes": res.ram_bytes,
            "instructions": res.instructions_per_inference, "int8_accuracy": acc,
            "metric": task.metric_name, "layer_weights": weights}


def _per_model(v, model: str):
    """``v[model]`` for a per-model setting (a dict), else ``v``."""
    return v[model] if isinstance(v, dict) else v


def jobs(root: Path, models: dict, fractions, checkpoints: dict, dense: dict, data: str | dict, *,
         epochs: int | dict, verify_samples: int, loss_model: str) -> list[Job]:
    """The runs, size-major: the first size of every (model, method) comes first, so that
    parallel workers do not measure the same sensitivity table at once (the later sizes
    read it from the cache). ``data`` and ``epochs``: one for all models or ``{model: ...}``."""
    out = []
    for frac in fractions:
        for model, methods in models.items():
            d = dense[model]
            for method in methods:
                out.append(Job(model, method, frac, str(checkpoints[model]), _per_model(data, model),
                               str(root / model / f"{method}-{int(round(frac * 100)):02d}"),
                               int(frac * d["const_bytes"]), _per_model(epochs, model),
                               verify_samples, loss_model, MODEL_RAM.get(model, FULL_RAM)))
    return out


def _dense_checkpoint(model: str, repo: Path) -> tuple[Path, float]:
    """The full run's dense checkpoint of ``model`` (trained first when missing) and its
    training seconds: scripts/train_yolo_faces.py for the detector, scripts/train_dense.py
    (the longer run) for the classifiers."""
    if str(repo / "scripts") not in sys.path:
        sys.path.insert(0, str(repo / "scripts"))
    if model in MODEL_DATA:                          # the detector: its own recipe and data
        import train_yolo_faces

        ck = train_yolo_faces.checkpoint()
        if not ck.is_file() or not (ck.parent / "dense.json").is_file():
            train_yolo_faces.train_dense(data=MODEL_DATA[model])
    else:
        import train_dense

        ck = train_dense.checkpoint(model)
        if not ck.is_file():
            train_dense._train(model, 2 * train_dense.EPOCHS[model])
    return ck, json.loads((ck.parent / "dense.json").read_text())["train_seconds"]


def run_job(job: Job) -> dict:
    """One compress run (resumed if its folder holds a finished or interrupted one)."""
    import torch

    from dtmm.errors import DtmmError
    from dtmm.pipeline.compress import CompressConfig, compress_command

    torch.set_num_threads(1)
    cfg = CompressConfig(target="cortex-m55", method=job.method, model_bytes=job.model_bytes, ram=job.ram,
                         max_accuracy_drop=None, epochs=job.epochs, qat="never", max_attempts=1,
                         verify_samples=job.verify_samples, loss_model=job.loss_model)
    t0 = time.time()
    done = Path(job.out) / "summary.json"
    resumed = done.is_file()
    try:
        if resumed:
            s = json.loads(done.read_text())
        else:
            s = compress_command(model=None, checkpoint=job.checkpoint, data=job.data, out=job.out,
                                 config=cfg, resume=Path(job.out).exists(), quiet=True).summary
    except DtmmError as e:
        return {**asdict(job), "error": str(e), "seconds": round(time.time() - t0, 1)}
    return {**asdict(job), "seconds": round(time.time() - t0, 1), "resumed": resumed, "summary": _slim(s)}


def _slim(s: dict) -> dict:
    keep = ("flash_bytes", "const_bytes", "ram_bytes", "arena_bytes", "instructions_per_inference",
            "accuracy", "seconds", "method", "verify")
    out = {k: s[k] for k in keep if k in s}
    out["breakdown"] = {k: sum(ly["bytes"][k] for ly in s["plan"]["layers"]) for k in
                        ("weights", "index", "quant", "meta")}
    out["layers"] = [{**{k: ly[k] for k in ("name", "kind", "format", "alpha", "beta", "c_out",
                                            "c_out_dense", "kept_units")},
                      "weights": ly["bytes"]["weights"]} for ly in s["plan"]["layers"]]
    return out


def run_paper_bench(*, quick: bool = False, jobs_n: int = 2, root: Path | None = None,
                    progress=None, models: tuple[str, ...] | None = None) -> dict:
    """Every (model, method, size) compress run, resumed from ``root``; ``models``: a subset
    of :data:`FULL_MODELS` for the full run (the report names what was left out)."""
    from dtmm.benchmd import DEFAULT_PATH

    say = progress or (lambda m: None)
    repo = DEFAULT_PATH.parent
    root = root or repo / "runs" / ("bench_paper_quick" if quick else "bench_paper")
    t0 = time.time()
    if quick:
        from dtmm.pipeline.train import train_command

        data, models, fracs, epochs, vs = "digits", {"resnet8": ("dtmm", "chip", "patdnn")}, QUICK_FRACTIONS, 1, 4
        ck = root / "dense" / "checkpoint.pt"
        if not ck.is_file():
            train_command(model="resnet8", data=data, epochs=4, out=str(ck.parent), progress=False)
        checkpoints = {"resnet8": ck}
        train_seconds = {"resnet8": None}
        model_data, model_epochs = {m: data for m in models}, {m: epochs for m in models}
    else:
        if models:
            bad = sorted(set(models) - set(FULL_MODELS))
            if bad:
                from dtmm.errors import InvalidArgument

                raise InvalidArgument(f"--models: unknown {', '.join(bad)}; choose from "
                                      f"{', '.join(FULL_MODELS)}")
        subset = {m: FULL_MODELS[m] for m in FULL_MODELS if not models or m in models}
        data, models, fracs, epochs, vs = FULL_DATA, subset, FRACTIONS, FULL_EPOCHS, 32
        model_data = {m: MODEL_DATA.get(m, FULL_DATA) for m in models}
        model_epochs = {m: MODEL_EPOCHS.get(m, FULL_EPOCHS) for m in models}
        checkpoints, train_seconds = {}, {}
        for m in models:
            checkpoints[m], train_seconds[m] = _dense_checkpoint(m, repo)
    dense = {m: _dense(str(checkpoints[m]), model_data[m]) for m in models}
    # --quick is a smoke test of the whole path: the fast Taylor tables; the full run the
    # default (measured sensitivity), as a user's dtmm compress would
    from dtmm.schedule.loss import DEFAULT_LOSS_MODEL

    loss_model = "taylor" if quick else DEFAULT_LOSS_MODEL
    todo = jobs(root, models, fracs, checkpoints, dense, model_data, epochs=model_epochs,
                verify_samples=vs, loss_model=loss_model)
    say(f"bench paper: {len(todo)} compress runs in {jobs_n} processes")
    results = []
    if jobs_n <= 1:
        for j in todo:
            results.append(run_job(j))
            say(f"  {j.model} {j.method} {j.frac:.2f}: {_line(results[-1])}")
    else:
        with ProcessPoolExecutor(jobs_n) as ex:
            for j, r in zip(todo, ex.map(run_job, todo)):
                results.append(r)
                say(f"  {j.model} {j.method} {j.frac:.2f}: {_line(r)} ({time.time() - t0:.0f} s)")
    extra = {"code": _code_sizes(results, dense), "ablation": _ablation(results, model_data, dense)}
    return {"quick": quick, "data": data, "loss_model": loss_model,
            "left_out": [] if quick else [m for m in FULL_MODELS if m not in models],
            "epochs": epochs, "model_data": model_data, "model_epochs": model_epochs,
            "metrics": {m: dense[m]["metric"] for m in models},
            "dense": dense, "runs": results, "train_seconds": train_seconds,
            "seconds": round(time.time() - t0, 1), **extra, "paper": PAPER}


def _line(r: dict) -> str:
    if "error" in r:
        return f"not run: {r['error'][:90]}"
    s = r["summary"]
    return (f"{s['const_bytes']:,} B, int8 {s['accuracy'].get('metric', 'accuracy')} "
            f"{s['accuracy']['int8_after']:.4f}")


def _dtmm_picks(results: list[dict], dense: dict):
    """Per model: ``(model, run, accurate, graph)`` of the DTMM model Fig. 14 and Fig. 15 are
    measured on: the Fig. 11 pick (within 0.5 pp of the dense int8 metric), else the
    smallest DTMM run (``accurate`` False); models with no finished DTMM run are skipped."""
    from dtmm.pipeline.modelfiles import read_model

    for model in sorted({r["model"] for r in results}):
        runs = [r for r in results if r["model"] == model and r["method"] == "dtmm"]
        best = fig11_choice(runs, dense[model]["int8_accuracy"])
        accurate = best is not None
        best = best or fig11_choice(runs, None)
        if best is not None:
            yield model, best, accurate, read_model(str(Path(best["out"]) / "model.tflite"))[0]


def _code_sizes(results: list[dict], dense: dict) -> dict:
    """Per model and target: the flash of the Fig. 11 DTMM model's firmware by part, read
    from the linker map of the linked image (:func:`dtmm.codegen.platform.linkmap.flash_parts`):
    kernels, generated model code, model data, start-up + harness, C library."""
    from dtmm.codegen.backends import build_firmware
    from dtmm.codegen.platform import size
    from dtmm.codegen.platform.linkmap import flash_parts

    out = {}
    for model, best, _, cg in _dtmm_picks(results, dense):
        out[model] = {}
        for t in ("cortex-m4", "cortex-m7", "cortex-m55"):
            fw = build_firmware(cg, t)
            parts = flash_parts(fw.artifact)
            parts.update(flash_measured=size(fw.artifact)[0], frac=best["frac"], method="dtmm")
            out[model][t] = parts
    return out


def _ablation(results: list[dict], data: str | dict, dense: dict) -> dict:
    """Whole-model M55 instructions of the smallest accurate DTMM model (within 0.5 pp of
    the dense int8 metric; the smallest of all where none is), operator ablated / lanes
    reduced (the paper's Fig. 14 on a model); ``data``: one for all or ``{model: data}``."""
    from dtmm.codegen.backends import build_firmware, run_firmware
    from dtmm.pipeline.data import load_splits, to_nhwc
    from dtmm.quant.quantize import quantize_input

    out = {}
    for model, best, accurate, cg in _dtmm_picks(results, dense):
        _, _, _, te = load_splits(_per_model(data, model))
        x = quantize_input(to_nhwc(te.x[:1]), cg.tensors[cg.inputs[0]].qparams)
        row = {}
        for tag, simd, defines in (("full, 16 lanes (MVE)", "auto", None),
                                   ("no weight reuse (w/o-ins)", "auto", {"DTMM_FWCS_VARIANT_NO_ILP": 1}),
                                   ("2 lanes (DSP)", "dsp", None), ("1 lane (plain C)", "scalar", None)):
            res = run_firmware(build_firmware(cg, "cortex-m55", simd=simd, defines=defines), x)
            row[tag] = res.instructions_per_inference
        out[model] = {"frac": best["frac"], "accurate": accurate, "instructions": row}
    return out


def fig11_choice(rows: list[dict], dense_acc: float | None, drop_pp: float = 0.5) -> dict | None:
    """The smallest run whose int8 accuracy is within ``drop_pp`` of the dense model (any
    run if ``dense_acc`` is None)."""
    ok = [r for r in rows if "summary" in r and (dense_acc is None or
          100 * (dense_acc - r["summary"]["accuracy"]["int8_after"]) <= drop_pp + 1e-9)]
    return min(ok, key=lambda r: r["summary"]["const_bytes"]) if ok else None


# ------------------------------------------------------------------------- report


def metric_of(b: dict, model: str) -> str:
    """The test metric of ``model`` in results ``b`` (accuracy; AP@0.5 for detection)."""
    return b.get("metrics", {}).get(model) or b["dense"].get(model, {}).get("metric") or "accuracy"


def _settings_text(b: dict) -> tuple[str, str]:
    """Fine-tuning epochs and data of the models in ``b`` (per model where they differ)."""
    models = list(b["dense"])
    ep = {m: b.get("model_epochs", {}).get(m, b.get("epochs", 10)) for m in models}
    data = {m: b.get("model_data", {}).get(m, b["data"]) for m in models}

    def groups(d: dict) -> dict:
        out: dict = {}
        for m, v in d.items():
            out.setdefault(v, []).append(m)
        return out

    g = groups(ep)
    epochs = (f"{next(iter(g))} fine-tuning epochs" if len(g) <= 1 else "fine-tuning epochs per model: "
              + ", ".join(f"{e} ({', '.join(ms)})" for e, ms in g.items()))
    epochs += " (the task's optimizer: SGD at 0.01; detection Adam at 1e-4)"
    parts = []
    for d, ms in groups(data).items():
        metric = metric_of(b, ms[0])
        note = ("1 pp = 10 images" if d == "mnist5k" else
                f"the metric is {metric}, pp are points of it" if metric != "accuracy" else "")
        note += "; composited images, not FDDB" if d == "faces-det" else ""
        parts.append(f"{d}{' for ' + ', '.join(ms) if len(data) > 1 and len(set(data.values())) > 1 else ''}"
                     f" (test split{', ' + note if note else ''})")
    return f"{epochs}, post-training", f"Data: {'; '.join(parts)}; one seed."


def render_markdown(b: dict, command: str, plot: str | None) -> str:
    epochs, data = _settings_text(b)
    L = ["## The paper's evaluation on our models (Fig. 11-15)"
         + (f": {', '.join(b['dense'])}" if b.get("left_out") else ""), "",
         f"`{command}` ({_duration(b)}). Every point is one `dtmm compress` run: "
         f"Cortex-M55, exact solver, {b.get('loss_model', 'taylor')} loss model, "
         f"{epochs} "
         "quantization, model-data budget (`--model-bytes`: weights + index + quantization, no "
         "kernel code) = a fraction of the dense int8 model's, SRAM 256 KB (YOLO: 512 KB, its "
         "dense firmware needs 268 KB); the same scheduler, fine-tuning and quantization for every method, each with "
         f"its own format and kernel. {data} "
         "**Instructions are QEMU executed-instruction counts, not cycles.**", ""]
    if b.get("left_out"):
        L += [f"**Not run in this table: {', '.join(b['left_out'])}** (a partial run of the full "
              "benchmark; the command above, without `--models`, runs every model and resumes "
              "these runs).", ""]
    L += ["### Fig. 11: smallest model within 0.5 pp of the dense int8 accuracy (detection: AP@0.5)", "",
          "| model | method | model data B | flash B | SRAM B | M55 instructions | metric | int8 (dense) |",
          "|---|---|---:|---:|---:|---:|---|---:|"]
    picks = {}
    for model, d in b["dense"].items():
        for method in sorted({r["method"] for r in b["runs"] if r["model"] == model}):
            rows = [r for r in b["runs"] if r["model"] == model and r["method"] == method]
            p = fig11_choice(rows, d["int8_accuracy"])
            picks[(model, method)] = p
            if p is None:
                why = ("no size tried is reachable under the budgets (see Fig. 12)"
                       if rows and all("error" in r for r in rows) else
                       "none of the sizes tried stays within 0.5 pp")
                L.append(f"| {model} | {method} | {why} | | | | "
                         f"{metric_of(b, model)} | ({d['int8_accuracy']:.4f}) |")
                continue
            s = p["summary"]
            L.append(f"| {model} | {method} | {s['const_bytes']:,} | {s['flash_bytes']:,} | "
                     f"{s['ram_bytes']:,} | {s['instructions_per_inference']:,} | {metric_of(b, model)} | "
                     f"{s['accuracy']['int8_after']:.4f} ({d['int8_accuracy']:.4f}) |")
    L += ["", _claims(b, picks), "", reading(b, picks), "", "### Fig. 12: int8 accuracy (detection: AP@0.5) against model data", "",
          "| model | metric | method | " + " | ".join(f"{f:.0%} of dense" for f in sorted({r['frac'] for r in b['runs']}, reverse=True)) + " |",
          "|---|---|---|" + "---:|" * len({r['frac'] for r in b['runs']})]
    fr = sorted({r["frac"] for r in b["runs"]}, reverse=True)
    for model in b["dense"]:
        for method in sorted({r["method"] for r in b["runs"] if r["model"] == model}):
            cells = []
            for f in fr:
                r = next((r for r in b["runs"] if r["model"] == model and r["method"] == method
                          and r["frac"] == f), None)
                if r is None or "error" in r:
                    cells.append("unreachable" if r is not None else "")
                else:
                    s = r["summary"]
                    cells.append(f"{s['accuracy']['int8_after']:.3f} ({s['const_bytes'] / 1024:.0f} KB)")
            L.append(f"| {model} | {metric_of(b, model)} | {method} | " + " | ".join(cells) + " |")
    if plot:
        L += ["", f"![accuracy against size]({plot})"]
    L += ["", "### Fig. 13: size breakdown of the Fig. 11 models (bytes of model data)", "",
          "| model | method | weights | index | quant | other | index share |", "|---|---|---:|---:|---:|---:|---:|"]
    for (model, method), p in picks.items():
        if p is None:
            continue
        bd = p["summary"]["breakdown"]
        tot = sum(bd.values())
        L.append(f"| {model} | {method} | {bd['weights']:,} ({100 * bd['weights'] / tot:.1f} %) | "
                 f"{bd['index']:,} | {bd['quant']:,} | {bd['meta']:,} | "
                 f"{100 * index_share(p['summary']):.1f} % |")
    L += ["", "### Fig. 14: the DTMM operator ablated, whole model on the Cortex-M55", "",
          "| model | full, 16 lanes | no weight reuse | 2 lanes (DSP) | 1 lane (plain C) |", "|---|---:|---:|---:|---:|"]
    for model, a in b["ablation"].items():
        ins = a["instructions"]
        base = ins["full, 16 lanes (MVE)"]
        L.append(f"| {model} ({a['frac']:.0%}{'' if a.get('accurate', True) else ', none within 0.5 pp'}) | " + " | ".join(
            f"{v:,} ({v / base:.2f}x)" for v in ins.values()) + " |")
    L += ["", "### Fig. 15: code added to a firmware, and fine-tuning time", "",
          "The flash of each Fig. 11 DTMM model's firmware by part, read from the linker map of the "
          "linked image (`dtmm.codegen.platform.linkmap`; bytes). What dtmm adds to a user's "
          "firmware is the kernels and the generated model code (the start-up, harness and C "
          "library are this project's test firmware). The paper: TFLite Micro with the needed "
          "operators 30 KB, its DTMM operator +4 KB (measured there, not here).", "",
          "| model | target | kernels (of which FWCS) | model code | dtmm adds (kernels + model code) | model data | start-up + harness | C library | padding | flash |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, per_target in b["code"].items():
        for t, c in per_target.items():
            k = sum(c["kernels"].values())
            L.append(f"| {model} | {t} | {k:,} ({c['kernels'].get('dtmm_conv_fwcs_s8.c', 0):,}) | "
                     f"{c['model_code']:,} | {k + c['model_code']:,} | {c['model_data']:,} | "
                     f"{c['startup']:,} | {c['libc']:,} | {c['padding']:,} | {c['flash']:,} |")
    L += ["", "| model | dense training s | fine-tuning epochs | fine-tuning s (DTMM, Fig. 11 model) | "
              "ratio (paper: about 0.5) |", "|---|---:|---:|---:|---:|"]
    for model in b["dense"]:
        p = picks.get((model, "dtmm"))
        ts = b["train_seconds"].get(model)
        if p is None or not ts:
            continue
        ft = next((v for k, v in p["summary"]["seconds"].items() if k.startswith("finetune")), None)
        if ft:
            ep = b.get("model_epochs", {}).get(model, b.get("epochs", 10))
            L.append(f"| {model} | {ts:.0f} | {ep} | {ft:.0f} | {ft / ts:.2f} |")
    return "\n".join(L)


def _duration(b: dict) -> str:
    """This call's wall time, and how many of its runs an earlier call had finished.

    >>> _duration({"seconds": 31, "runs": [{"resumed": True}, {"resumed": False}, {}]})
    'this call 31 s; 1 of its 3 compress runs finished by an earlier call and read back'
    >>> _duration({"seconds": 600, "runs": [{"resumed": False}]})
    '10 min'
    """
    n = sum(bool(r.get("resumed")) for r in b["runs"])
    s = b["seconds"]
    text = f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"
    if n:
        text = (f"this call {text}; {n} of its {len(b['runs'])} compress runs finished by an "
                "earlier call and read back")
    return text


def _claims(b: dict, picks: dict) -> str:
    """Our reading of the paper's headline ratios from the Fig. 11 picks."""
    out = ["**Headline claims, paper vs ours** (paper figures measured there, on CIFAR-10 / VWW / "
           "FDDB with their own baselines; ours from the Fig. 11 rows above):", ""]
    sizes, lats = {"chip": [], "patdnn": []}, {"chip": [], "patdnn": []}
    for model in b["dense"]:
        d = picks.get((model, "dtmm"))
        for other in ("chip", "patdnn"):
            o = picks.get((model, other))
            if d is None or o is None:
                continue
            sizes[other].append(100 * (1 - d["summary"]["const_bytes"] / o["summary"]["const_bytes"]))
            lats[other].append(100 * (1 - d["summary"]["instructions_per_inference"]
                                      / o["summary"]["instructions_per_inference"]))
    for other, key_s, key_l in (("chip", "size_vs_chip", "latency_vs_chip"),
                                ("patdnn", "size_vs_patdnn", "latency_vs_patdnn")):
        if sizes[other]:
            ms = sum(sizes[other]) / len(sizes[other])
            ml = sum(lats[other]) / len(lats[other])
            out.append(f"- DTMM vs {other.upper()}: {abs(ms):.1f} % {'smaller' if ms >= 0 else 'larger'} "
                       f"on average (paper {PAPER[key_s]} % smaller), {abs(ml):.1f} % "
                       f"{'fewer' if ml >= 0 else 'more'} instructions (paper {PAPER[key_l]} % "
                       f"lower latency); "
                       f"{len(sizes[other])} model(s) where both stay within 0.5 pp.")
        else:
            out.append(f"- DTMM vs {other.upper()}: no model where both stayed within 0.5 pp at the sizes tried.")
    shares = {m: index_share(p["summary"]) for (m, meth), p in picks.items() if meth == "dtmm" and p}
    if shares:
        lo, hi = PAPER["index_overhead"]
        out.append(f"- Index overhead of DTMM's Fig. 11 models (index bytes / model data): "
                   f"{_pct_range(shares.values())} (paper {lo}-{hi} %); "
                   + ", ".join(f"{m} {100 * v:.1f} %" for m, v in shares.items()) + ".")
    ranges = {}
    for (m, meth), p in picks.items():
        lw = b["dense"].get(m, {}).get("layer_weights")
        if meth == "dtmm" and p and lw:
            r = pruned_per_layer(p["summary"], lw)
            if r:
                ranges[m] = r
    if ranges:
        lo, hi = PAPER["pruned_per_layer_vgg11"]
        out.append(f"- Share of each conv layer's weights pruned in DTMM's Fig. 11 models (paper, "
                   f"VGG-11: {lo}-{hi} %): "
                   + "; ".join(f"{m} {_pct_range(r.values())} over {len(r)} layers"
                               for m, r in ranges.items()) + ".")
    out.append(f"- FWCS vs CSR bytes at 90 % pruning (paper {PAPER['fwcs_vs_csr_90']} % smaller): "
               "measured per layer by `scripts/bench_storage.py`, in the Storage section at the top "
               "of this file, not by this benchmark.")
    return "\n".join(out)


def reading(b: dict, picks: dict) -> str:
    """Why the headline ratios come out as they do, from the same run: what the plans
    optimize, how the other methods do at DTMM's Fig. 11 budget, and each method's
    instructions per kept weight (the cost of its format and kernel per multiply)."""
    out = ["**Reading** (from the rows of this section):", "",
           "- What is optimized: every method's plan minimizes the predicted accuracy loss under "
           "the model-data and SRAM budgets; none minimizes instructions (the paper's DTMM "
           "scheduler minimizes latency under a loss bound), so a method's instructions follow "
           "from what it keeps and from its kernel, not from a latency objective."]
    same, ipw, floor = [], [], []
    for model, d in b["dense"].items():
        p = picks.get((model, "dtmm"))
        if p is None:
            continue
        if p["frac"] == min(r["frac"] for r in b["runs"] if r["model"] == model) and any(
                (q or {}).get("frac") == p["frac"] for (m2, meth), q in picks.items()
                if m2 == model and meth != "dtmm"):
            floor.append(model)
        cells = []
        for r in b["runs"]:
            if r["model"] == model and r["frac"] == p["frac"] and r["method"] != "dtmm":
                cells.append(f"{r['method']} {'unreachable' if 'error' in r else _pp(r, d)}")
        if cells:
            same.append(f"{model} at {p['frac']:.0%} (DTMM {_pp(p, d)}): " + ", ".join(sorted(cells)))
        per = []
        for (m2, method), q in sorted(picks.items()):
            w = q and q["summary"]["breakdown"]["weights"]
            if m2 == model and w:
                per.append(f"{method} {q['summary']['instructions_per_inference'] / w:.0f}")
        if per:
            ipw.append(f"{model}: " + ", ".join(per))
    if same:
        out.append("- Size: the other methods at the budget of DTMM's Fig. 11 model (int8 metric "
                   "change from dense, pp): " + "; ".join(same) + ". A method that loses more than "
                   "0.5 pp at that budget has its Fig. 11 model at another size, if at any.")
    if floor:
        out.append(f"- The sweep's floor: for {', '.join(floor)} DTMM's Fig. 11 model is at the "
                   "smallest size tried and another method stays within 0.5 pp there too, so "
                   "their size ratio only says how fully each fills the same budget; smaller "
                   "sizes would show where they part.")
    if ipw:
        out.append("- Instructions per kept weight (M55 instructions / weight bytes of the Fig. 11 "
                   "model): " + "; ".join(ipw) + ". Filter pruning (CHIP, L1-filter) leaves smaller "
                   "dense layers for the dense kernel, which multiplies two filters' weight vectors "
                   "with three input pixels per pass; FWCS keeps the filters and reuses each "
                   "filterlet's weights across 4 output pixels, but gathers and indexes each kept "
                   "filterlet, so it spends more instructions per weight it keeps.")
    return "\n".join(out)


def _pp(r: dict, dense: dict) -> str:
    return f"{100 * (r['summary']['accuracy']['int8_after'] - dense['int8_accuracy']):+.1f}"


def index_share(summary: dict) -> float:
    """Index bytes over all model data of a run's summary (:func:`_slim`'s breakdown).

    >>> index_share({"breakdown": {"weights": 90, "index": 5, "quant": 4, "meta": 1}})
    0.05
    """
    bd = summary["breakdown"]
    return bd["index"] / sum(bd.values())


def pruned_per_layer(summary: dict, dense_weights: dict[str, int]) -> dict[str, float]:
    """Per conv layer, the share of its dense weights that a run removed (whole filters, the
    filters of pruned inputs, filterlets, single weights: all of them count), from the plan's
    stored weight bytes (int8: a byte per weight) and the dense model's weight counts.

    >>> s = {"layers": [{"name": "c1", "kind": "conv", "weights": 72},
    ...                 {"name": "fc", "kind": "fc", "weights": 10}]}
    >>> pruned_per_layer(s, {"c1": 288, "fc": 40})
    {'c1': 0.75}
    """
    return {ly["name"]: 1 - ly["weights"] / dense_weights[ly["name"]] for ly in summary["layers"]
            if ly.get("kind") == "conv" and ly.get("weights") is not None and ly["name"] in dense_weights}


def _pct_range(vals) -> str:
    v = sorted(vals)
    return f"{100 * v[0]:.1f}-{100 * v[-1]:.1f} %" if len(v) > 1 else f"{100 * v[0]:.1f} %"


def _plot(b: dict, path: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = list(b["dense"])
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        for method in sorted({r["method"] for r in b["runs"] if r["model"] == model}):
            pts = sorted((r["summary"]["const_bytes"] / 1024, 100 * r["summary"]["accuracy"]["int8_after"])
                         for r in b["runs"] if r["model"] == model and r["method"] == method and "summary" in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.axhline(100 * b["dense"][model]["int8_accuracy"] - 0.5, color="grey", ls=":", lw=1)
        ax.set_title(model)
        ax.set_xlabel("model data (KB)")
        ax.set_ylabel(f"int8 test {metric_of(b, model)} (%)")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    from dtmm.util.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


# ------------------------------------------------------------------------- CLI


def add_cli_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--quick", action="store_true", help="a small version (CI): ResNet-8 on digits")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--jobs", type=int, default=2, help="compress runs in parallel processes")
    p.add_argument("--models", nargs="+", default=None,
                   help=f"a subset of the full run's models ({', '.join(FULL_MODELS)}; default all)")
    p.add_argument("--out", type=Path, default=None, help="where the runs go (resumable)")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    return p


def section_for(models) -> tuple[str, str]:
    """The BENCHMARKS.md section and the docs/ plot of a full run (``models`` None or every
    model) or of a partial one (a section of its own per set of models, next to the full
    run's, so that a partial run never replaces another run's tables).

    >>> section_for(None)
    ('bench_paper', 'paper_fig12.png')
    >>> section_for(["yolo", "resnet12"])
    ('bench_paper_resnet12_yolo', 'paper_fig12_resnet12_yolo.png')
    """
    if not models or set(models) >= set(FULL_MODELS):
        section = "bench_paper"
    else:
        section = "bench_paper_" + "_".join(m for m in FULL_MODELS if m in models)
    return section, _plot_name(section)


def _plot_name(section: str) -> str:
    """The docs/ plot of a bench_paper section (its models' suffix, if any)."""
    return f"paper_fig12{section.removeprefix('bench_paper')}.png"


def write_report(md: str, section: str, bench_md: Path, docs: Path, log=lambda m: None) -> None:
    """Write ``section`` of ``bench_md`` (a partial run's right after the full run's); a full
    run's section replaces every partial run's, and their plots in ``docs`` go with them."""
    from dtmm.benchmd import remove_section, section_names, write_section

    write_section(section, md, bench_md, after="bench_paper")
    log(f"(wrote section {section} into {bench_md})")
    if section == "bench_paper":
        for old in section_names(bench_md):
            if old.startswith("bench_paper_"):
                remove_section(old, bench_md)
                png = docs / _plot_name(old)
                if png.is_file():
                    png.unlink()
                log(f"(removed the partial run's section {old}: the full run replaces it)")


def run_cli(args: argparse.Namespace, command: str = "dtmm bench paper") -> int:
    from dtmm.benchmd import DEFAULT_PATH

    log = (lambda m: print(m, file=sys.stderr, flush=True))
    b = run_paper_bench(quick=args.quick, jobs_n=args.jobs, root=args.out, progress=log,
                        models=tuple(args.models) if args.models else None)
    root = args.out or DEFAULT_PATH.parent / "runs" / ("bench_paper_quick" if args.quick else "bench_paper")
    from dtmm.util.files import atomic_write_bytes

    atomic_write_bytes(Path(root) / "paper.json", json.dumps(b, indent=1, default=str).encode())
    section, plot_name = section_for(None if args.quick else args.models)
    docs = DEFAULT_PATH.parent / "docs"
    plot = None
    if not args.quick and not args.no_write:
        plot = _plot(b, docs / plot_name)
        plot = f"docs/{plot}" if plot else None
    md = render_markdown(b, command + (" --quick" if args.quick else "")
                         + (f" --models {' '.join(args.models)}" if args.models else ""), plot)
    print(json.dumps(b, indent=1, default=str) if args.json else md)
    if not args.quick and not args.no_write:
        write_report(md, section, DEFAULT_PATH, docs, log)
    return 0
