"""The compress report: ``report.md`` from ``summary.json``'s content.

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
"""
from __future__ import annotations

__all__ = ["compress_report"]


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else (f"{v:,.0f}" if isinstance(v, float) and v > 100 else str(v))


def compress_report(s: dict) -> str:
    """Markdown: budgets and what was reached, accuracy before / after, the plan, verification."""
    acc = s["accuracy"]
    L = [f"# dtmm compress: {s['model']} on {s['dataset']} for {s['target']}", "",
         "## Budgets", "", "| budget | limit | reached | met |", "|---|---:|---:|---|"]
    units = {"flash": " B", "sram": " B", "instructions": "", "accuracy": ""}
    for k, v in s["budgets_met"].items():
        lim = v.get("budget", v.get("bound"))
        how = " (measured)" if v.get("measured") else (" (predicted)" if "measured" in v else "")
        L.append(f"| {k} | {_n(lim)}{units.get(k, '')} | {_n(v['value'])}{units.get(k, '')}{how} | "
                 f"{'yes' if v['met'] else '**no**'} |")
    L += ["", f"Flash {s['flash_bytes']:,} B (of which model data {s['const_bytes']:,} B); RAM "
              f"{s['ram_bytes']:,} B (arena {s['arena_bytes']:,} B; the firmware's stack comes on top); "
              f"{_n(s['instructions_per_inference'])} executed instructions per inference (QEMU count, "
              f"not cycles); compressed .tflite {s['tflite_bytes']:,} B.", "",
          "## Accuracy (test split)", "", "| | float | int8 |", "|---|---:|---:|",
          f"| dense | {acc['float_before']:.4f} | {acc['int8_before']:.4f} |",
          f"| compressed | {acc['float_after']:.4f} | {acc['int8_after']:.4f} ({s['quantization']}) |", "",
          f"{acc['test_images']} test images. Fine-tuning: {s['fine_tuning']['epochs']} epochs"
          f"{' with distillation' if s['fine_tuning']['distill'] else ''}; validation accuracy right "
          f"after pruning {s['fine_tuning']['val_accuracy_after_pruning']:.4f}.", "",
          "## Attempts", ""]
    for at in s["attempts"]:
        L.append(f"- attempt {at['attempt']}: int8 {at['int8_after']:.4f}, bound "
                 f"{'met' if at['accuracy_bound_met'] else 'missed'}"
                 + (f"; next: {at['next']}" if at.get("next") else ""))
    L += ["", "## Plan", "", "| layer | format | alpha | beta | C_out | bytes |", "|---|---|---:|---:|---:|---:|"]
    for ly in s["plan"]["layers"]:
        L.append(f"| {ly['name']} | {ly['format']} | {ly['alpha']:.2f} | {ly['beta']:.3f} | "
                 f"{ly['c_out']}/{ly['c_out_dense']} | {ly['bytes']['total']:,} |")
    L += ["", "## Verification", "", "| backend | images | bit-exact | accuracy |", "|---|---:|---|---:|"]
    for k, v in s["verify"].items():
        if "skipped" in v:
            L.append(f"| {k} | - | skipped: {v['skipped']} | - |")
        else:
            L.append(f"| {k} | {v['samples']} | {'yes' if v['bit_exact'] else '**no**'} | {v['accuracy']:.4f} |")
    L += ["", "Step times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items())]
    return "\n".join(L) + "\n"
