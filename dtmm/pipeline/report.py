"""The compress report's content: sections (text, a table, a plot) from ``summary.json``.

:func:`report_sections` turns a compress summary into :class:`Section` objects;
:func:`compress_report` renders them as ``report.md`` and
:mod:`dtmm.pipeline.report_html` as the self-contained ``report.html`` with the plots
of :mod:`dtmm.pipeline.report_plots`. :func:`size_breakdown` is the Fig. 13 split of
the dense and the compressed model that the compress report step adds to the summary.

Example:
    >>> s = {"model": "resnet8", "dataset": "digits", "target": "cortex-m55", "method": "dtmm",
    ...      "flash_bytes": 50000, "const_bytes": 30000, "ram_bytes": 20000, "arena_bytes": 19000,
    ...      "instructions_per_inference": 123456, "tflite_bytes": 40000,
    ...      "budgets_met": {"flash": {"budget": 65536, "value": 50000, "met": True, "measured": True}},
    ...      "accuracy": {"float_before": 0.9, "int8_before": 0.9, "float_after": 0.89,
    ...                   "int8_after": 0.89, "test_images": 300}, "quantization": "ptq",
    ...      "plan": {"layers": []}, "attempts": [{"attempt": 1, "int8_after": 0.89,
    ...      "accuracy_bound_met": True, "settings": {}}], "verify": {"host": {"samples": 300,
    ...      "bit_exact": True, "accuracy": 0.89}}, "fine_tuning": {"epochs": 2, "distill": False,
    ...      "history": [], "val_accuracy_after_pruning": 0.5}, "seconds": {"dense": 1.0}}
    >>> "| flash | 65,536 B | 50,000 B (measured) | yes |" in compress_report(s)
    True
    >>> [sec.title for sec in report_sections(s)][:2]
    ['Budgets', 'Accuracy (test split)']
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dtmm.errors import InvalidArgument

__all__ = ["Section", "Bad", "report_sections", "compress_report", "size_breakdown",
           "budget_rows", "layer_instructions", "layer_pruning", "example_summary", "title",
           "SIZE_CATEGORIES"]

#: The Fig. 13 categories; ``other`` is the C parameter structs (footprint's ``meta``).
SIZE_CATEGORIES = ("weights", "index", "quant", "other")
_REQUIRED = ("model", "dataset", "target", "accuracy", "budgets_met", "plan", "verify",
             "fine_tuning", "flash_bytes", "ram_bytes", "instructions_per_inference")


class Bad(str):
    """A table cell that reports a failure (bold in Markdown, highlighted in HTML)."""


@dataclass
class Section:
    """One part of the report: ``key`` names its plot (:data:`dtmm.pipeline.report_plots.PLOTS`)
    and its HTML anchor; ``text`` paragraphs and cells are plain text (renderers escape them)."""

    key: str
    title: str
    text: list[str] = field(default_factory=list)
    headers: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = field(default_factory=list)
    align: str = ""                 # one of "l" / "r" per column
    plot: str | None = None         # key of the plot drawn for this section, if any


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else (f"{v:,.0f}" if isinstance(v, float) and v > 100 else str(v))


def _check(s: dict) -> None:
    if not isinstance(s, dict):
        raise InvalidArgument(f"a compress summary must be a dict, got {type(s).__name__}")
    missing = [k for k in _REQUIRED if k not in s]
    if missing:
        raise InvalidArgument(f"not a dtmm compress summary: missing {', '.join(missing)}")


def _target_verify(s: dict) -> tuple[str, dict] | None:
    """The QEMU backend's verify entry that ran (not skipped), if any."""
    for k, v in s.get("verify", {}).items():
        if k.startswith("qemu") and "skipped" not in v:
            return k, v
    return None


# ----------------------------------------------------------------------------- data


def size_breakdown(dense_graph, compressed_graph) -> dict:
    """Constant bytes of the generated C model by category (:data:`SIZE_CATEGORIES`), dense
    and compressed, and per layer: the dense layer's weight count, the weights the
    compressed layer stores (int8: its ``weights`` bytes; a dense layer stores its zeros
    too), both layers' bytes (:func:`dtmm.report.inspect_graph`).

    >>> import numpy as np, torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> from dtmm.quant.quantize import quantize_graph
    >>> g = capture(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 2)), (1, 4, 4))
    >>> qg = quantize_graph(g, [np.random.default_rng(0).random((4, 4, 4, 1), np.float32)])
    >>> b = size_breakdown(qg, qg)
    >>> b["dense"] == b["compressed"], b["dense"]["weights"], [l["name"] for l in b["layers"]]
    (True, 68, ['0', '2'])
    """
    from dtmm.report import inspect_graph

    def split(rep):
        d = {k: int(rep["bytes"].get("meta" if k == "other" else k, 0)) for k in SIZE_CATEGORIES}
        return {**d, "total": int(rep["total_bytes"])}

    rd, rc = inspect_graph(dense_graph), inspect_graph(compressed_graph)
    comp = {ly["name"]: ly for ly in rc["layers"]}
    layers = []
    for ly in rd["layers"]:
        c = comp.get(ly["name"])
        if not ly["weights"] or c is None:
            continue
        layers.append({"name": ly["name"], "format": c["format"], "dense_weights": int(ly["weights"]),
                       "stored_weights": int(c["bytes"]["weights"]),
                       "dense_bytes": int(ly["bytes"]["total"]), "bytes": int(c["bytes"]["total"])})
    return {"dense": split(rd), "compressed": split(rc), "layers": layers,
            "note": "constant bytes of the generated C model; other: the ops' C parameter structs"}


def budget_rows(s: dict) -> list[dict]:
    """Flash, SRAM and instructions: ``value`` (the compressed model), ``dense`` (the dense
    model on the target, when run), ``budget`` (None when not set), ``measured``, ``unit``."""
    _check(s)
    b = s.get("budgets", {})
    dense = s.get("dense_on_target") or {}
    stack = s["plan"].get("predicted", {}).get("stack_bytes", 16 * 1024)
    measured = _target_verify(s) is not None
    met = s["budgets_met"]
    sram = met["sram"]["value"] if "sram" in met else s["ram_bytes"] + stack
    rows = [
        {"metric": "flash", "unit": "B", "value": s["flash_bytes"], "budget": b.get("flash_bytes"),
         "dense": dense.get("flash_bytes"), "measured": measured, "note": "code + model data"},
        {"metric": "model data", "unit": "B", "value": s.get("const_bytes"), "budget": b.get("model_bytes"),
         "dense": dense.get("const_bytes"), "measured": True,
         "note": "the generated model's constant data (exact)"},
        {"metric": "SRAM", "unit": "B", "value": sram, "budget": b.get("sram_bytes"),
         "dense": dense["ram_bytes"] + stack if "ram_bytes" in dense else None,
         "measured": measured, "note": f"firmware RAM + {stack:,} B stack"},
        {"metric": "instructions", "unit": "", "value": s["instructions_per_inference"],
         "budget": b.get("max_instructions"), "dense": dense.get("instructions_per_inference"),
         "measured": measured, "note": "per inference, QEMU count (not cycles)"},
    ]
    return rows


def layer_pruning(s: dict) -> list[dict]:
    """Per planned layer: ``name``, ``format``, ``alpha`` (filterlets removed), ``beta``
    (filters removed), ``removed`` (share of the dense layer's weights removed, None when
    the summary has no :func:`size_breakdown`), ``c_out`` / ``c_out_dense``."""
    _check(s)
    per = {ly["name"]: ly for ly in (s.get("size_breakdown") or {}).get("layers", [])}
    out = []
    for ly in s["plan"]["layers"]:
        sb = per.get(ly["name"])
        removed = (1 - sb["stored_weights"] / sb["dense_weights"]) if sb and sb["dense_weights"] else None
        out.append({"name": ly["name"], "format": ly["format"], "alpha": float(ly["alpha"]),
                    "beta": float(ly["beta"]), "removed": removed, "c_out": ly.get("c_out"),
                    "c_out_dense": ly.get("c_out_dense"), "bytes": ly["bytes"]["total"]})
    return out


def layer_instructions(s: dict) -> tuple[list[dict], bool]:
    """Per op: ``name``, ``kind``, ``measured`` (QEMU per-op profile of one image, None when
    the target did not run) and ``predicted`` (the plan's cost model, None for ops it does
    not plan); second value: whether measurements are present. Ops that run no code
    (a reshape) are left out."""
    _check(s)
    pred = {ly["name"]: ly.get("predicted_instructions") for ly in s["plan"]["layers"]}
    tv = _target_verify(s)
    prof = tv[1].get("profile") if tv else None
    if prof:
        return ([{"name": p["op"], "kind": p["kind"], "measured": int(p["instructions"]),
                  "predicted": pred.get(p["op"])} for p in prof if p["instructions"]], True)
    return ([{"name": ly["name"], "kind": ly.get("kind", ""), "measured": None,
              "predicted": ly.get("predicted_instructions")} for ly in s["plan"]["layers"]
             if ly.get("predicted_instructions") is not None], False)


# ----------------------------------------------------------------------------- sections


def _budgets(s: dict) -> Section:
    units = {"flash": " B", "model_bytes": " B", "sram": " B", "instructions": "", "accuracy": ""}
    rows = []
    for k, v in s["budgets_met"].items():
        lim = v.get("budget", v.get("bound"))
        how = " (measured)" if v.get("measured") else (" (predicted)" if "measured" in v else "")
        rows.append((metric_name(s) if k == "accuracy" else k, f"{_n(lim)}{units.get(k, '')}",
                     f"{_n(v['value'])}{units.get(k, '')}{how}",
                     "yes" if v["met"] else Bad("no")))
    text = [f"Flash {s['flash_bytes']:,} B (of which model data {s.get('const_bytes', 0):,} B); RAM "
            f"{s['ram_bytes']:,} B (arena {s.get('arena_bytes', 0):,} B; the firmware's stack comes on "
            f"top); {_n(s['instructions_per_inference'])} executed instructions per inference (QEMU "
            f"count, not cycles); compressed .tflite {s.get('tflite_bytes', 0):,} B."]
    if _target_verify(s) is None:
        text.append("The target did not run (see Verification): flash, SRAM and instructions are "
                    "the plan's predictions.")
    return Section("budgets", "Budgets", text, ("budget", "limit", "reached", "met"), rows, "lrrl",
                   plot="budgets")


def metric_name(s: dict) -> str:
    """The task's metric a compress summary reports ("accuracy"; "AP@0.5" for detection)."""
    return s.get("metric") or s.get("accuracy", {}).get("metric") or "accuracy"


def _f4(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _accuracy(s: dict) -> Section:
    acc, ft = s["accuracy"], s["fine_tuning"]
    m = metric_name(s)
    rows = [("dense", f"{acc['float_before']:.4f}", f"{acc['int8_before']:.4f}"),
            ("compressed", f"{acc['float_after']:.4f}",
             f"{acc['int8_after']:.4f} ({s.get('quantization', 'ptq')})")]
    text = [f"{acc.get('test_images', '?')} test images. Fine-tuning: {ft['epochs']} epochs"
            f"{' with distillation' if ft.get('distill') else ''}; validation {m} right after "
            f"pruning {ft['val_accuracy_after_pruning']:.4f}."]
    if "accuracy" in s["budgets_met"]:
        text.append(f"int8 {m} bound: {s['budgets_met']['accuracy']['bound']:.4f}.")
    title = "Accuracy (test split)" if m == "accuracy" else f"Accuracy: {m} (test split)"
    return Section("accuracy", title, text, ("", "float", "int8"), rows, "lrr",
                   plot="accuracy")


def _pruning(s: dict) -> Section:
    rows = []
    for ly in layer_pruning(s):
        rows.append((ly["name"], ly["format"], f"{ly['alpha']:.2f}", f"{ly['beta']:.3f}",
                     "-" if ly["removed"] is None else f"{ly['removed']:.3f}",
                     f"{ly['c_out']}/{ly['c_out_dense']}", f"{ly['bytes']:,}"))
    text = ["alpha: share of the kept filters' filterlets removed (FWCS); beta: share of the "
            "layer's filters removed; removed: share of the dense layer's weights the deployed "
            "layer no longer stores."]
    return Section("pruning", "Per-layer pruning (plan)", text,
                   ("layer", "format", "alpha", "beta", "removed", "C_out", "bytes"), rows, "llrrrrr",
                   plot="pruning")


def _sizes(s: dict) -> Section | None:
    sb = s.get("size_breakdown")
    if not sb:
        return None
    d, c = sb["dense"], sb["compressed"]
    rows = [(k, f"{d[k]:,}", f"{c[k]:,}") for k in (*SIZE_CATEGORIES, "total")]
    share = c["total"] / d["total"] if d["total"] else float("nan")
    text = [f"Constant bytes of the generated C model (the paper's Fig. 13 split): "
            f"{d['total']:,} B dense, {c['total']:,} B compressed ({share:.1%} of dense). "
            f"other: the ops' C parameter structs."]
    return Section("sizes", "Size breakdown", text, ("category", "dense (B)", "compressed (B)"), rows,
                   "lrr", plot="sizes")


def _instructions(s: dict) -> Section | None:
    rows, measured = layer_instructions(s)
    if not rows:
        return None
    total = s["instructions_per_inference"]
    out = []
    for r in rows:
        m, p = r["measured"], r["predicted"]
        share = f"{m / total:.1%}" if m is not None and total else "-"
        out.append((r["name"], r["kind"], "-" if m is None else f"{m:,}",
                    "-" if p is None else f"{_n(p)}", share))
    if measured:
        tv = _target_verify(s)
        text = [f"Executed instructions of each op's kernel call on {tv[0]} for one test image "
                f"(QEMU count, not cycles), next to the plan's prediction (conv / fully connected "
                f"layers only). The rest of the {total:,} instructions per inference is the input / "
                f"output copies."]
    else:
        text = ["Predicted by the plan's cost model: the target did not run, so there is no "
                "measured per-op profile."]
    return Section("instructions", "Per-layer instructions on the target", text,
                   ("layer", "op", "measured", "predicted", "share"), out, "llrrr", plot="instructions")


def _finetune(s: dict) -> Section:
    ft = s["fine_tuning"]
    h = ft.get("history") or []

    def f(v, spec=".4f"):
        return "-" if v is None else format(v, spec)

    rows = [(str(e.get("epoch", i + 1)), f(e.get("train_loss")), f(e.get("val_loss")),
             f(e.get("train_acc")), f(e.get("val_acc")), f(e.get("lr_end"), ".2e")) for i, e in enumerate(h)]
    m = metric_name(s)
    text = [f"Validation {m} right after pruning (epoch 0): {ft['val_accuracy_after_pruning']:.4f}."]
    if m != "accuracy":
        text.append(f"val acc: validation {m}; train acc: the task's training signal.")
    if not h:
        text.append("No per-epoch history (no fine-tuning epochs, or a trainer that reports none).")
    return Section("finetune", "Fine-tuning", text,
                   ("epoch", "train loss", "val loss", "train acc", "val acc", "lr"), rows, "rrrrrr",
                   plot="finetune" if h else None)


def _attempts(s: dict) -> Section:
    rows = [(str(at["attempt"]), f"{at['int8_after']:.4f}",
             "met" if at["accuracy_bound_met"] else Bad("missed"), at.get("next") or "")
            for at in s.get("attempts", [])]
    return Section("attempts", "Attempts", [], ("attempt", "int8", "bound", "next"), rows, "rrll")


def _verify(s: dict) -> Section:
    rows = []
    for k, v in s["verify"].items():
        if "skipped" in v:
            rows.append((k, "-", f"skipped: {v['skipped']}", "-"))
        else:
            rows.append((k, str(v["samples"]), "yes" if v["bit_exact"] else Bad("no"), _f4(v["accuracy"])))
    text = []
    if s.get("seconds"):
        text.append("Step times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items()))
    return Section("verify", "Verification", text, ("backend", "images", "bit-exact", metric_name(s)),
                   rows, "lrlr")


def report_sections(s: dict) -> list[Section]:
    """The report's sections, in order (size and instruction sections when their data exist)."""
    _check(s)
    secs = [_budgets(s), _accuracy(s), _pruning(s), _sizes(s), _instructions(s), _finetune(s),
            _attempts(s), _verify(s)]
    return [x for x in secs if x is not None]


def title(s: dict) -> str:
    """The report's title line (plain text)."""
    return f"dtmm compress: {s['model']} on {s['dataset']} for {s['target']}"


# ----------------------------------------------------------------------------- markdown


def _md_cell(c) -> str:
    c = str(c).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return c


def compress_report(s: dict) -> str:
    """Markdown: budgets and what was reached, accuracy before / after, the plan, sizes,
    per-layer instructions, fine-tuning, verification (the plots are in ``report.html``)."""
    secs = report_sections(s)
    L = [f"# {title(s)}", "", "Plots: `report.html` (one self-contained page).", ""]
    for sec in secs:
        L += [f"## {sec.title}", ""]
        if sec.rows:
            L.append("| " + " | ".join(_md_cell(h) for h in sec.headers) + " |")
            L.append("|" + "|".join("---:" if a == "r" else "---" for a in sec.align) + "|")
            for r in sec.rows:
                L.append("| " + " | ".join(f"**{_md_cell(c)}**" if isinstance(c, Bad) else _md_cell(c)
                                          for c in r) + " |")
            L.append("")
        for t in sec.text:
            L += [t, ""]
    return "\n".join(L).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- example


def example_summary(model: str = "mynet.py:small") -> dict:
    """A compress summary with the shape and numbers of a real small run (three FWCS convs and
    a dense classifier on ``digits`` for the Cortex-M55), for examples and tests.

    >>> s = example_summary()
    >>> [ly["format"] for ly in s["plan"]["layers"]]
    ['fwcs', 'fwcs', 'fwcs', 'dense']
    >>> "## Size breakdown" in compress_report(s)
    True
    """
    names = ["0", "3", "6", "11"]
    plan_layers = []
    for name, fmt, a, b, co, cod, by, pi, kind in (
            ("0", "fwcs", 0.1, 0.125, 14, 16, (114, 129, 168, 116), 43592, "conv"),
            ("3", "fwcs", 0.1, 0.125, 28, 32, (3178, 256, 336, 116), 76903, "conv"),
            ("6", "fwcs", 0.1, 0.125, 28, 32, (6356, 256, 336, 116), 30143, "conv"),
            ("11", "dense", 0.0, 0.0, 10, 10, (280, 0, 48, 120), 3595, "fc")):
        plan_layers.append({"name": name, "format": fmt, "alpha": a, "beta": b, "c_out": co,
                            "c_out_dense": cod, "kind": kind, "predicted_instructions": pi,
                            "bytes": {"weights": by[0], "index": by[1], "quant": by[2], "meta": by[3],
                                      "total": sum(by)}})
    sb_layers = [{"name": n, "format": f, "dense_weights": dw, "stored_weights": kw, "dense_bytes": db,
                  "bytes": ly["bytes"]["total"]}
                 for n, f, dw, kw, db, ly in zip(names, ["fwcs", "fwcs", "fwcs", "dense"],
                                                [144, 4608, 9216, 320], [114, 3178, 6356, 280],
                                                [384, 4820, 9428, 424], plan_layers)]
    prof = [("0", "conv2d", 44871), ("2", "relu", 0), ("3", "conv2d", 80112), ("6", "conv2d", 31020),
            ("9", "avg_pool2d", 2318), ("10", "reshape", 0), ("11", "fully_connected", 3880)]
    total = 170836
    return {
        "model": model, "dataset": "digits", "target": "cortex-m55", "method": "dtmm",
        "flash_bytes": 29388, "const_bytes": 11925, "ram_bytes": 5250, "arena_bytes": 4096,
        "instructions_per_inference": total, "tflite_bytes": 15920,
        "budgets": {"flash_bytes": 40960, "sram_bytes": 40960, "max_instructions": 200000,
                    "max_loss_increase": None, "max_accuracy_drop_pp": 2.0},
        "budgets_met": {"flash": {"budget": 40960, "value": 29388, "met": True, "measured": True},
                        "sram": {"budget": 40960, "value": 21634, "met": True, "measured": True,
                                 "note": "firmware RAM + 16,384 B stack"},
                        "instructions": {"budget": 200000, "value": total, "met": True, "measured": True},
                        "accuracy": {"bound": 0.7042, "value": 0.7409, "met": True}},
        "accuracy": {"float_before": 0.727, "int8_before": 0.7242, "float_after": 0.7465,
                     "int8_after": 0.7409, "test_images": 359},
        "quantization": "ptq",
        "plan": {"layers": plan_layers, "predicted": {"stack_bytes": 16384, "instructions": 154233,
                                                      "flash_bytes": 29339, "sram_bytes": 21628}},
        "attempts": [{"attempt": 1, "int8_after": 0.7409, "float_after": 0.7465,
                      "accuracy_bound_met": True, "settings": {}}],
        "chosen_attempt": 1,
        "verify": {"host": {"samples": 359, "bit_exact": True, "mismatches": 0, "accuracy": 0.7409},
                   "qemu-m55": {"samples": 16, "bit_exact": True, "mismatches": 0, "accuracy": 0.75,
                                "instructions_per_inference": total, "flash_bytes": 29388,
                                "ram_bytes": 5250,
                                "profile": [{"op": o, "kind": k, "instructions": c} for o, k, c in prof]}},
        "dense_on_target": {"flash_bytes": 30636, "ram_bytes": 4786, "const_bytes": 15704,
                            "instructions_per_inference": 167964},
        "size_breakdown": {"dense": {"weights": 14288, "index": 0, "quant": 960, "other": 456,
                                     "total": 15704},
                           "compressed": {"weights": 9928, "index": 641, "quant": 888, "other": 468,
                                          "total": 11925},
                           "layers": sb_layers},
        "fine_tuning": {"epochs": 3, "distill": False, "val_accuracy_after_pruning": 0.7039,
                        "history": [{"epoch": e + 1, "train_loss": tl, "val_loss": vl, "train_acc": ta,
                                     "val_acc": va, "lr_end": lr}
                                    for e, (tl, vl, ta, va, lr) in enumerate(
                                        ((1.80, 1.74, 0.710, 0.793, 7.5e-3), (1.52, 1.49, 0.772, 0.806, 2.5e-3),
                                         (1.41, 1.44, 0.791, 0.812, 6e-5)))]},
        "dense": {"source": "trained here", "train_epochs": 12},
        "seconds": {"dense": 2.0, "plan1": 0.6, "finetune1": 0.4, "quantize1": 0.7, "export": 0.1,
                    "verify": 7.9},
    }
