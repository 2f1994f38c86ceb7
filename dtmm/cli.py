"""The ``dtmm`` command line. Each verb is a thin layer over :mod:`dtmm.pipeline`.

Exit status: 0 on success, 1 when ``verify`` finds a mismatch, 2 on a user error
(``error: ...`` on stderr), 3 on an internal error.
"""
from __future__ import annotations

import argparse
import json
import sys

from dtmm.errors import DtmmError
from dtmm.util.text import terminal_safe

BENCHES = {"kernels": "conv kernel micro-benchmarks on QEMU M55/M7 (executed instructions, not cycles)",
           "paper": "the paper's evaluation (Fig. 11-15): every method compressed at several sizes"}
EPILOG = ("Datasets: mnist5k, digits, faces (bundled); cifar10:/path, folder:/path, npz:/path (local); "
          "detection (--model yolo; the metric is AP@0.5): faces-det (bundled, composited), fddb:/path.")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a zoo model or your own on a dataset", epilog=EPILOG)
    p.add_argument("--model", required=True,
                   help="zoo name (see `dtmm models`) or path/to/file.py:factory (your own: a "
                        "function returning a torch.nn.Module, called with input_shape= and "
                        "num_classes= when it takes them)")
    p.add_argument("--data", required=True, help="dataset spec")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default per optimizer)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use at most N samples (stratified)")
    p.add_argument("--out", required=True, help="output directory (gets checkpoint.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")


def _add_quantize(sub) -> None:
    p = sub.add_parser("quantize", help="int8-quantize a checkpoint and export .tflite", epilog=EPILOG)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--model", help="the checkpoint's model: zoo name or path/to/file.py:factory "
                                   "(default: the one the checkpoint records)")
    p.add_argument("--data", required=True, help="dataset spec for calibration and evaluation")
    p.add_argument("--calibration", choices=["minmax", "percentile", "mse"], default="minmax")
    p.add_argument("--calib-samples", type=int, default=256)
    p.add_argument("--eval-samples", type=int, default=None, help="limit test-split evaluation")
    p.add_argument("--out", required=True, help="output directory (gets model_int8.tflite, summary.json)")
    p.add_argument("--quiet", action="store_true", help="no per-step lines")


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="run a .tflite on a backend and compare with the reference",
                       epilog=EPILOG)
    p.add_argument("model", help="an int8 .tflite written by dtmm")
    p.add_argument("--backend", choices=["reference", "tflm", "host", "qemu-m4", "qemu-m7", "qemu-m55"],
                   default="reference",
                   help="host: generated C model via ctypes; qemu-*: firmware under QEMU "
                        "(adds instruction counts and flash/RAM)")
    p.add_argument("--board", help="qemu-* backends: link the firmware against a real board's flash "
                                   "and SRAM (see `dtmm boards`); its core must be the backend's")
    p.add_argument("--data", required=True)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--profile", action="store_true",
                   help="QEMU backends: executed instructions of every op (a second build with "
                        "per-op markers)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress of the QEMU runs")


def _add_prune(sub) -> None:
    p = sub.add_parser("prune", help="prune a checkpoint in one shot, quantize, write a compressed "
                                     ".tflite", epilog=EPILOG)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--model", help="the checkpoint's model: zoo name or path/to/file.py:factory "
                                   "(default: the one the checkpoint records)")
    p.add_argument("--data", required=True, help="dataset spec (importance, calibration, evaluation)")
    p.add_argument("--granularity", choices=["filterlet", "filter", "element", "pattern"],
                   help="unit of --ratio/--ratios pruning (a plan sets its own)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=float, help="share of units to prune in every conv layer")
    g.add_argument("--ratios", help="JSON file {layer_name: ratio}")
    g.add_argument("--plan", help="a plan written by dtmm plan (per-layer format, alpha, beta)")
    p.add_argument("--importance", choices=["taylor", "l1", "l2", "chip"], default="l2",
                   help="unit importance (default l2: the most accurate for one-shot pruning in "
                        "BENCHMARKS.md's oneshot table; taylor is the paper's loss-change estimate)")
    p.add_argument("--calib-samples", type=int, default=256)
    p.add_argument("--eval-samples", type=int, default=None)
    p.add_argument("--out", required=True, help="output directory (gets model.tflite, summary.json)")
    p.add_argument("--quiet", action="store_true", help="no per-step lines")


def _add_plan(sub) -> None:
    p = sub.add_parser("plan", help="choose per-layer pruning (format, filter and filterlet ratios) "
                                    "under flash / SRAM / loss budgets", epilog=EPILOG)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--model", help="the checkpoint's model: zoo name or path/to/file.py:factory "
                                   "(default: the one the checkpoint records)")
    p.add_argument("--data", required=True, help="dataset spec (scores, loss estimates)")
    p.add_argument("--target", choices=["cortex-m4", "cortex-m7", "cortex-m55"], default="cortex-m55")
    p.add_argument("--flash", help="firmware flash budget, e.g. 512KB, 0.5MiB, 65536 (K = 1024)")
    p.add_argument("--ram", help="SRAM budget (arena + static data + 16 KiB stack), e.g. 128KB")
    p.add_argument("--max-instructions", help="instructions per inference budget, e.g. 3M")
    p.add_argument("--model-bytes", help="budget of the model's constant data alone (weights, "
                   "index, quantization; no code), e.g. 28KB")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--max-loss-increase", type=float,
                   help="loss budget (nats); minimises instructions under it (the paper's objective)")
    g.add_argument("--objective", choices=["min-loss"], help="minimise the loss change instead")
    p.add_argument("--solver", choices=["anneal", "exact"], default="anneal")
    p.add_argument("--loss-model", choices=["taylor", "sensitivity"], default=None,
                   help="sensitivity (default): each layer pruned alone and measured; taylor: the "
                        "paper's first-order estimate")
    p.add_argument("--method", default="dtmm",
                   choices=["dtmm", "chip", "l1-filter", "patdnn", "unstructured"],
                   help="dtmm, or a baseline planned by the same scheduler")
    p.add_argument("--importance", choices=["taylor", "l1", "l2"], default=None,
                   help="unit selection (taylor for the taylor loss model; default l2 with sensitivity)")
    p.add_argument("--calibration", help="latency calibration JSON (default: the one shipped for "
                                         "the target; see dtmm calibrate)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=20000, help="annealing steps")
    p.add_argument("--out", required=True, help="plan file to write (plan.json)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.add_argument("--quiet", action="store_true")


def _add_compress(sub) -> None:
    p = sub.add_parser("compress", help="budgets in, a pruned, fine-tuned, int8, verified model out",
                       epilog=EPILOG)
    p.add_argument("--model", help="zoo model name or path/to/file.py:factory (trained here unless "
                                   "--checkpoint is given)")
    p.add_argument("--checkpoint", help="a trained checkpoint to compress")
    p.add_argument("--data", required=True, help="dataset spec")
    p.add_argument("--target", default=None,
                   help="cortex-m4, cortex-m7 or cortex-m55 (default: the board's core, else cortex-m55)")
    p.add_argument("--board", help="a real board (see `dtmm boards`): sets --target, the --flash / "
                                   "--ram budgets not given, and links against its memory")
    p.add_argument("--method", default="dtmm",
                   help="dtmm (filters + filterlets, FWCS), or a baseline: chip, l1-filter (whole "
                        "filters), patdnn (patterns + connectivity), unstructured (CSR)")
    p.add_argument("--flash", help="firmware flash budget, e.g. 512KB (K = 1024)")
    p.add_argument("--ram", help="SRAM budget (firmware RAM + stack), e.g. 256KB")
    p.add_argument("--max-instructions", help="instructions per inference budget, e.g. 3M")
    p.add_argument("--model-bytes", help="budget of the model's constant data alone (weights, "
                   "index, quantization; no code), e.g. 28KB")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--max-accuracy-drop", type=float, default=None,
                   help="int8 test accuracy (detection: AP@0.5) may drop at most this many "
                        "percentage points (default 0.5)")
    g.add_argument("--max-loss-increase", type=float,
                   help="plan with the paper's objective: fewest instructions with the predicted "
                        "loss change under this budget")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=None,
                   help="fine-tuning learning rate (default: 0.01; detection 1e-4)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None,
                   help="fine-tuning optimizer (default: sgd with momentum 0.9; detection: adam)")
    p.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine",
                   help="fine-tuning learning-rate schedule")
    p.add_argument("--distill", action="store_true", help="distil from the unpruned model")
    p.add_argument("--gradual", action="store_true",
                   help="reach the plan's filterlet ratios gradually during fine-tuning (Zhu & Gupta's "
                        "polynomial schedule; whole filters are removed first)")
    p.add_argument("--qat", choices=["auto", "always", "never"], default="auto",
                   help="quantization-aware fine-tuning: when post-training quantization misses "
                        "the accuracy bound (auto: the one of the two more accurate on the "
                        "validation split is kept), always, or never")
    p.add_argument("--train-epochs", type=int, default=10, help="dense training epochs (no --checkpoint)")
    p.add_argument("--solver", choices=["anneal", "exact"], default="exact")
    p.add_argument("--loss-model", choices=["taylor", "sensitivity"], default=None,
                   help="sensitivity (default): each layer pruned alone and measured; taylor: the "
                        "paper's first-order estimate (faster, ranks plans worse: BENCHMARKS.md)")
    p.add_argument("--max-attempts", type=int, default=3, help="plans tried when the accuracy bound is missed")
    p.add_argument("--verify-samples", type=int, default=64, help="test images run under QEMU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--out", required=True, help="output folder (new, empty, or an earlier run's)")
    p.add_argument("--json", action="store_true", help="print summary.json")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="measure layer instruction counts under QEMU and fit the "
                                         "scheduler's latency model")
    p.add_argument("--target", choices=["cortex-m4", "cortex-m7", "cortex-m55"], required=True)
    p.add_argument("--quick", action="store_true", help="a small designed set (about a minute)")
    p.add_argument("--board-csv", help="fit on a real board's measured cycles instead (see README)")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    p.add_argument("--quiet", action="store_true")


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="per-layer format, kept ratio and bytes of a .tflite")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a self-contained C project (model + kernels + Makefile)")
    p.add_argument("model", help="an int8 .tflite written by dtmm")
    p.add_argument("--target", choices=["host", "cortex-m4", "cortex-m7", "cortex-m55"], default=None,
                   help="default: the board's core, else host")
    p.add_argument("--board", help="a real board (see `dtmm boards`): sets --target and links against "
                                   "its flash and SRAM; a model that does not fit is refused")
    p.add_argument("--out", required=True, help="output directory")


def _say(args):
    """The ``progress`` callback of a verb: lines on standard error (a bar for long loops on
    a terminal), nothing with ``--quiet``."""
    from dtmm.train.progress import Reporter

    return Reporter(quiet=bool(getattr(args, "quiet", False)))


def _emulator_note(target: str, board: str | None) -> None:
    """On standard error: cortex-m4 / m7 without --board use the emulator's 4 MiB maps."""
    from dtmm.codegen.platform.boards import emulator_note

    note = None if board is not None or target == "host" else emulator_note(target)
    if note:
        print(note, file=sys.stderr)


def _compress(args) -> int:
    from dtmm.pipeline.compress import CompressConfig, compress_command

    target = args.target
    if args.board is not None:
        from dtmm.codegen.platform.boards import resolve_target
        target = resolve_target(args.target, args.board, "cortex-m55").name
    _emulator_note(target or "cortex-m55", args.board)
    cfg = CompressConfig(target=target or "cortex-m55", board=args.board, method=args.method, flash=args.flash, ram=args.ram,
                         max_instructions=args.max_instructions, model_bytes=args.model_bytes,
                         max_accuracy_drop=(None if args.max_loss_increase is not None else
                                            (0.5 if args.max_accuracy_drop is None else args.max_accuracy_drop)),
                         max_loss_increase=args.max_loss_increase, solver=args.solver,
                         epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                         schedule=args.schedule,
                         distill=args.distill, gradual=args.gradual, qat=args.qat,
                         train_epochs=args.train_epochs,
                         seed=args.seed, max_attempts=args.max_attempts,
                         verify_samples=args.verify_samples,
                         **({"loss_model": args.loss_model} if args.loss_model else {}))
    res = compress_command(model=args.model, checkpoint=args.checkpoint, data=args.data,
                           out=args.out, config=cfg, resume=args.resume, quiet=args.quiet)
    s = res.summary
    if args.json:
        _out(json.dumps(s, indent=1))
    else:
        _out(_compress_table(s, res.files))
    ok = all(v["met"] for v in s["budgets_met"].values()) and all(
        v.get("bit_exact", True) for v in s["verify"].values())
    return 0 if ok else 1


def _compress_table(s: dict, files: dict) -> str:
    acc = s["accuracy"]
    metric = s.get("metric", "accuracy")
    rows = [("", "dense", "compressed")]
    rows.append((f"float {metric}", f"{acc['float_before']:.4f}", f"{acc['float_after']:.4f}"))
    rows.append((f"int8 {metric}", f"{acc['int8_before']:.4f}", f"{acc['int8_after']:.4f}"))
    lines = [f"{r[0]:<16}{r[1]:>10}{r[2]:>12}" for r in rows]
    lines.append(f"(test split, {acc['test_images']} images)")
    for k, v in s["budgets_met"].items():
        ok = "  met" if v["met"] else "  NOT MET"
        if k == "accuracy":
            lines.append(f"{'int8 ' + metric:<16}{v['value']:>10.4f} >= {v['bound']:.4f}{ok}")
            continue
        lines.append(f"{k:<16}{v['value']:>10,.0f} of {v['budget']:,.0f}{ok}"
                     + (" (measured)" if v.get("measured") else " (predicted)"))
    for k, v in s["verify"].items():
        lines.append(f"{k:<16}" + (f"skipped: {v['skipped']}" if "skipped" in v else
                                   f"{'bit-exact' if v['bit_exact'] else 'MISMATCH'} on {v['samples']} "
                                   f"images, {metric} " + ("-" if v["accuracy"] is None
                                                           else f"{v['accuracy']:.4f}")))
    lines.append(f"report: {files['report.html']} ({files['report.md']})")
    return "\n".join(lines)


def _calibrate(args) -> int:
    from pathlib import Path

    from dtmm.util.files import check_output_file, write_output_file
    from dtmm.schedule import calibrate as C
    from dtmm.codegen.arena import isa_path

    out = Path(args.out)
    if out.is_dir():
        raise DtmmError(f"--out {args.out}: is a directory; give the calibration file's path")
    check_output_file(out)                        # before the measurements
    if args.board_csv:
        model = C.from_board_csv(args.board_csv, args.target, isa_path(args.target))
        obj = C.calibration_json(model)
    else:
        obj = C.run_calibration(args.target, quick=args.quick, progress=_say(args))
    write_output_file(out, (json.dumps(obj, indent=2) + "\n").encode())
    ho = obj["meta"].get("held_out") or obj["meta"]["train"]
    print(json.dumps({"calibration": str(out), "target": args.target, "isa": obj["isa"],
                      "unit": obj["meta"]["unit"],
                      "held_out_mean_rel_error" if "held_out" in obj["meta"] else "fit_mean_rel_error":
                          round(ho["mean_rel_error"], 4),
                      "samples": ho["samples"]}, indent=2))
    return 0


def _profile_table(rows: list[dict]) -> str:
    w = max([len(r["op"]) for r in rows] + [2])
    lines = [f"{'op':<{w}}  {'kind':<18} {'instructions':>13}  share"]
    for r in rows:
        share = "" if r["share"] is None else f"{100 * r['share']:5.1f}%"
        lines.append(f"{r['op']:<{w}}  {r['kind']:<18} {r['instructions']:>13,}  {share}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtmm", description="Deploy pruned int8 TinyML CNNs on MCUs.")
    p.add_argument("--version", action="version", version=f"dtmm {__import__('dtmm').__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    _add_train(sub)
    _add_quantize(sub)
    _add_verify(sub)
    _add_export(sub)
    _add_prune(sub)
    _add_plan(sub)
    _add_compress(sub)
    _add_calibrate(sub)
    _add_inspect(sub)
    b = sub.add_parser("bench", help="benchmarks (results written into BENCHMARKS.md)",
                       description="dtmm bench kernels|paper [--quick] [--json] ...; "
                                   "`dtmm bench WHAT --help` lists its options.")
    b.add_argument("bench", choices=list(BENCHES), metavar="WHAT", help=", ".join(BENCHES))
    b.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    sub.add_parser("models", help="list the model zoo")
    sub.add_parser("boards", help="list the real boards --board knows (flash, SRAM, core)")
    d = sub.add_parser("demo", help="train ResNet-8 on bundled MNIST, compress it for a Cortex-M55 "
                                    "budget, verify it bit-exactly on the host and under QEMU")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--model", default="resnet8")
    d.add_argument("--epochs", type=int, default=12, help="dense training epochs")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    return p


def _out(text: str) -> None:
    """Print a verb's result; names from files never carry terminal control codes."""
    print(terminal_safe(text))


def _dispatch(args) -> int:
    from dtmm.pipeline.export import export_command
    from dtmm.pipeline.quantize import quantize_command
    from dtmm.pipeline.train import train_command
    from dtmm.pipeline.verify import verify_command

    if args.verb == "train":
        res = train_command(model=args.model, data=args.data, epochs=args.epochs,
                                      batch_size=args.batch_size, lr=args.lr,
                                      optimizer=args.optimizer, seed=args.seed, limit=args.limit,
                                      out=args.out, progress=not args.quiet)
        _out(json.dumps(res, indent=2))
        return 0
    if args.verb == "quantize":
        res = quantize_command(checkpoint=args.checkpoint, model=args.model, quiet=args.quiet,
                               data=args.data,
                                         calibration=args.calibration,
                                         calib_samples=args.calib_samples,
                                         eval_samples=args.eval_samples, out=args.out)
        _out(json.dumps(res, indent=2))
        return 0
    if args.verb == "export":
        res = export_command(model=args.model, target=args.target, out=args.out, board=args.board)
        _emulator_note(res["target"], args.board)
        _out(json.dumps(res, indent=2))
        return 0
    if args.verb == "verify":
        if args.backend in ("qemu-m4", "qemu-m7"):
            _emulator_note("cortex-" + args.backend[5:], args.board)
        res = verify_command(model=args.model, backend=args.backend, data=args.data,
                                       samples=args.samples, profile=args.profile, board=args.board,
                                       progress=_say(args))
        if args.json:
            _out(json.dumps(res))
        else:
            lines = [f"{k:>12}: {v}" for k, v in res.items() if k != "profile"]
            if "profile" in res:
                lines.append(_profile_table(res["profile"]))
            _out("\n".join(lines))
        return 0 if res["bit_exact"] else 1
    if args.verb == "prune" and args.plan:
        from dtmm.pipeline.planning import prune_with_plan
        res = prune_with_plan(checkpoint=args.checkpoint, model=args.model, progress=_say(args),
                              data=args.data, plan=args.plan,
                              out=args.out, calib_samples=args.calib_samples,
                              eval_samples=args.eval_samples)
        _out(json.dumps(res, indent=2))
        return 0
    if args.verb == "prune":
        from dtmm.pipeline.oneshot import prune_command
        if args.granularity is None:
            raise DtmmError("--granularity is required with --ratio / --ratios")
        res = prune_command(checkpoint=args.checkpoint, model=args.model, quiet=args.quiet,
                            data=args.data,
                            granularity=args.granularity, ratio=args.ratio, ratios=args.ratios,
                            importance=args.importance, calib_samples=args.calib_samples,
                            eval_samples=args.eval_samples, out=args.out)
        _out(json.dumps(res, indent=2))
        return 0
    if args.verb == "plan":
        from dtmm.pipeline.planning import plan_command
        res = plan_command(checkpoint=args.checkpoint, model=args.model, data=args.data, out=args.out,
                           target=args.target, flash=args.flash, ram=args.ram,
                           max_instructions=args.max_instructions, max_loss=args.max_loss_increase,
                           model_bytes=args.model_bytes, objective="loss" if args.objective == "min-loss" else None,
                           solver=args.solver, loss_model=args.loss_model,
                           importance=args.importance, calibration=args.calibration,
                           seed=args.seed, iterations=args.iterations, method=args.method,
                           progress=_say(args))
        table = res.pop("table")
        _out(json.dumps(res, indent=2) if args.json else table + f"\nplan written to {res['plan']}")
        return 0
    if args.verb == "calibrate":
        return _calibrate(args)
    if args.verb == "compress":
        return _compress(args)
    if args.verb == "inspect":
        from dtmm.pipeline.inspect import inspect_command
        from dtmm.report import format_report
        res = inspect_command(args.model)
        _out(json.dumps(res) if args.json else format_report(res))
        return 0
    if args.verb == "bench":
        # parsed here, not in build_parser: the benchmarks import torch, --help must not
        import importlib

        mod = importlib.import_module(f"dtmm.bench.{args.bench}")
        add_cli_arguments, run_cli = mod.add_cli_arguments, mod.run_cli
        p = add_cli_arguments(argparse.ArgumentParser(prog=f"dtmm bench {args.bench}",
                                                      description=BENCHES[args.bench]))
        return run_cli(p.parse_args(args.bench_args), command=f"dtmm bench {args.bench}")
    if args.verb == "boards":
        from dtmm.codegen.platform.boards import board_table
        print(board_table())
        return 0
    if args.verb == "models":
        from dtmm.zoo import DETECTION_MODEL_NAMES, MODEL_NAMES
        print("\n".join(MODEL_NAMES + tuple(f"{m} (detection: --data faces-det)" for m in
                                            DETECTION_MODEL_NAMES)))
        return 0
    if args.verb == "demo":
        from dtmm.pipeline.demo import demo_command
        return demo_command(out=args.out, model=args.model, epochs=args.epochs, seed=args.seed,
                            quiet=args.quiet)
    raise AssertionError(args.verb)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except DtmmError as e:
        print(f"error: {terminal_safe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # output piped into e.g. `head`, which closed early
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception:  # a bug in dtmm: show it, with a distinct status
        import traceback
        traceback.print_exc()
        print("internal error (a bug in dtmm; please report it with the traceback above)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
