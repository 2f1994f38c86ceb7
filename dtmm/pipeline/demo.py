"""``dtmm demo``: the whole job on bundled data, with no arguments.

Trains ResNet-8 on the bundled MNIST digits (``mnist5k``), compresses it with
``dtmm compress`` for a Cortex-M55 budget well below its dense size (flash 64 KB
against the dense firmware's ~97 KB), verifies the generated C model bit for bit on the
host and under QEMU (or, without QEMU, says how to install it and verifies on the host),
and prints a summary, where the report is and what to run next. A second ``dtmm demo``
resumes the first one's folder (each finished step is kept).
"""
from __future__ import annotations

import sys

__all__ = ["demo_command"]


def demo_command(*, out: str = "runs/demo", model: str = "resnet8", epochs: int = 12, seed: int = 0,
                 flash: str = "64KB", ram: str = "64KB", quiet: bool = False) -> int:
    from dtmm.pipeline.compress import CompressConfig, compress_command

    def say(msg: str = "") -> None:
        print(msg, flush=True)

    say(f"dtmm demo: train {model} on bundled MNIST digits (mnist5k), compress it for a "
        f"Cortex-M55 with {flash} of flash and {ram} of SRAM, verify it bit for bit.")
    cfg = CompressConfig(target="cortex-m55", flash=flash, ram=ram, max_accuracy_drop=0.5,
                         train_epochs=epochs, epochs=5, seed=seed, verify_samples=200)
    res = compress_command(model=model, data="mnist5k", out=out, config=cfg, resume=True, quiet=quiet)
    s = res.summary
    acc = s["accuracy"]
    dense = s.get("dense_on_target") or {}
    say("")
    say(f"{'':<32}{'dense int8':>14}{'compressed':>14}")
    say(f"{'test accuracy, float':<32}{acc['float_before']:>14.4f}{acc['float_after']:>14.4f}"
        f"   ({acc['test_images']} test images)")
    say(f"{'test accuracy, int8':<32}{acc['int8_before']:>14.4f}{acc['int8_after']:>14.4f}")
    if dense:
        say(f"{'flash (firmware), bytes':<32}{dense['flash_bytes']:>14,}{s['flash_bytes']:>14,}"
            f"   (budget {s['budgets']['flash_bytes']:,})")
        say(f"{'model data, bytes':<32}{dense['const_bytes']:>14,}{s['const_bytes']:>14,}")
        say(f"{'RAM (firmware), bytes':<32}{dense['ram_bytes']:>14,}{s['ram_bytes']:>14,}"
            f"   (+ 16 KiB stack; budget {s['budgets']['sram_bytes']:,})")
        say(f"{'instructions per inference':<32}{dense['instructions_per_inference']:>14,}"
            f"{s['instructions_per_inference']:>14,}   (QEMU counts, not cycles)")
    for k, v in s["verify"].items():
        if "skipped" in v:
            say(f"{k}: not run: {v['skipped']}")
        else:
            say(f"{k}: {'bit-exact' if v['bit_exact'] else 'MISMATCH'} with the NumPy reference on "
                f"{v['samples']} test images, accuracy {v['accuracy']:.4f}"
                + (" (on the emulated Cortex-M55)" if k.startswith("qemu") else ""))
    ok = all(v["met"] for v in s["budgets_met"].values()) and all(
        v.get("bit_exact", True) for v in s["verify"].values())
    say("")
    say(f"report:  {res.files['report.md']}, with plots: {res.files['report.html']}")
    say(f"next:    dtmm export {res.files['model.tflite']} --target cortex-m55 --out {out}/fw")
    if not ok:
        bad = [k for k, v in s["budgets_met"].items() if not v["met"]]
        say(f"NOT MET: {', '.join(bad) or 'bit-exactness'} (see the report)", )
        print("demo: a budget or check was not met", file=sys.stderr)
    return 0 if ok else 1
