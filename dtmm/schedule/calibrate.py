"""Latency calibration: measure a designed set of layers under QEMU, fit the model.

``dtmm calibrate --target cortex-m55 --out FILE.json`` builds synthetic models whose
layers span the decision space (1x1 / 3x3 / 5x5 convs, stride 1 and 2, C_in from 1 to
256, dense and FWCS at filterlet ratios 0-0.95, CSR and pattern for the baselines,
depthwise, fully connected, pools, add, softmax), compiles each as firmware with
per-op markers (``-DDTMM_PROFILE``, the same generated code and kernels a deployed
model runs) and runs it under QEMU: every op's executed instructions are one sample.
:func:`dtmm.schedule.latency.fit` then fits the coefficients of each cost kind, and a
second, *held-out* set of shapes (never used in the fit) measures how well the model
predicts layers it has not seen; both errors go into the file's ``meta``.

A user may instead bring measurements from a real board as CSV
(:func:`from_board_csv`); the model is then fitted on cycles and says so.

This module does I/O and runs compilers; planning (:mod:`dtmm.schedule`) only reads the
resulting file.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass

import numpy as np

from dtmm.schedule.latency import LatencyModel, OpShape, features, fit, op_shape
from dtmm.schedule.space import ScheduleError

__all__ = ["LayerSpec", "GraphSpec", "design", "build_graph", "measure", "calibrate",
           "from_board_csv", "evaluate", "CSV_COLUMNS", "CSV_OPTIONAL"]


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a calibration graph, reading the graph input.

    ``op``: ``conv``, ``fwcs``, ``csr``, ``pattern``, ``dw``, ``maxpool``, ``avgpool``,
    ``add``, ``fc`` (+ ``softmax`` after it), ``fcf`` (an FWCS fully connected layer; ``k``
    its source: 0 the flattened input, 1 the globally average-pooled input, ``k > 1`` a
    dense fully connected layer of ``k`` outputs on the pooled input, so that runs of 16
    leave short tails); ``ratio``: share of the format's units pruned.
    """

    op: str
    c_out: int = 0
    k: int = 3
    stride: int = 1
    ratio: float = 0.0


@dataclass(frozen=True)
class GraphSpec:
    input: tuple[int, int, int]
    layers: tuple[LayerSpec, ...]


def _convs(c: int, big: bool) -> list[LayerSpec]:
    co = 64 if c >= 64 else 32
    co5 = 32 if c >= 128 else co
    out = [LayerSpec("conv", co, 3, 1), LayerSpec("conv", co, 3, 2), LayerSpec("conv", co, 1, 1),
           LayerSpec("conv", co5, 5, 1), LayerSpec("conv", 16, 3, 1)]
    alphas = (0.0, 0.3, 0.5, 0.7, 0.9, 0.95) if big else (0.0, 0.5, 0.9)
    out += [LayerSpec("fwcs", co, 3, 1, a) for a in alphas]
    out += [LayerSpec("fwcs", co, 3, 2, a) for a in (0.5, 0.9)]
    out += [LayerSpec("fwcs", co5, 5, 1, a) for a in (0.5, 0.9)]
    out += [LayerSpec("fwcs", 16, 3, 1, 0.7), LayerSpec("fwcs", co, 1, 1, 0.0)]
    # few filterlets in all (< 4 per kernel position): the DSP kernel's non-widening path
    out += [LayerSpec("fwcs", 8, 3, 1, 0.9), LayerSpec("fwcs", 4, 3, 1, 0.5),
            LayerSpec("fwcs", 16, 3, 2, 0.95), LayerSpec("fwcs", 8, 5, 1, 0.9)]
    out += [LayerSpec("csr", co, 3, 1, r) for r in (0.5, 0.9)]
    out += [LayerSpec("pattern", co, 3, 1, r) for r in (0.5, 0.9)]
    return out


def _others(h: int, w: int, c: int) -> list[LayerSpec]:
    out = [LayerSpec("dw", c, 3, 1), LayerSpec("dw", c, 3, 2), LayerSpec("maxpool", c, 2, 2),
           LayerSpec("avgpool", c, 2, 2), LayerSpec("maxpool", c, 3, 2), LayerSpec("add", c),
           # windows other than 2x2 (else taps = 4 x outputs and the fit cannot tell
           # per-tap from per-output costs): 3x3 stride 1 and a global pool
           LayerSpec("avgpool", c, 3, 1), LayerSpec("maxpool", c, 3, 1)]
    if h == w and h * w <= 255:       # (longer windows take the DSP avg pool's C loop)
        out += [LayerSpec("avgpool", c, h, h), LayerSpec("maxpool", c, h, h)]
    if h * w * c <= 8192:
        out.append(LayerSpec("fc", 10))
    return out


def _fc_fwcs(h: int, w: int, c: int, held_out: bool = False) -> list[LayerSpec]:
    """FWCS fully connected layers on a flattened map (inputs a multiple of 16 here), on
    the pooled vector and behind a dense layer of a width that leaves a short last run."""
    flat, pooled = h * w * c <= 4096, h == w and h * w <= 255
    if held_out:
        return (([LayerSpec("fcf", 12, 0, ratio=0.6)] if flat else [])
                + ([LayerSpec("fcf", 20, 1, ratio=0.3), LayerSpec("fcf", 14, 72, ratio=0.6)] if pooled else []))
    out = [LayerSpec("fcf", 10, 0, ratio=a) for a in (0.0, 0.5, 0.9)] if flat else []
    if h * w * c <= 2048:
        out.append(LayerSpec("fcf", 24, 0, ratio=0.7))
    if pooled:
        out += [LayerSpec("fcf", 16, 1, ratio=0.5), LayerSpec("fcf", 10, 40, ratio=0.5),
                LayerSpec("fcf", 33, 100, ratio=0.3), LayerSpec("fcf", 12, 200, ratio=0.8)]
    return out


_TRAIN = ((32, 32, 1), (32, 32, 3), (28, 28, 8), (16, 16, 16), (16, 16, 32), (8, 8, 64),
          (8, 8, 128), (4, 4, 256), (12, 12, 24),
          # C_in that the MVE FWCS asm loop does not take (the generic loop): beta pruning
          # makes such widths
          (12, 12, 48), (6, 6, 80),
          # a few output pixels, not a multiple of the FWCS kernel's 4-pixel block (VGG-11's
          # last stage at 28x28 input)
          (3, 3, 128))
_HELD_OUT = ((24, 24, 4), (10, 10, 48), (6, 6, 96), (20, 20, 12), (14, 14, 20), (5, 5, 64))
_QUICK = ((16, 16, 3), (8, 8, 32), (4, 4, 64))


def design(*, quick: bool = False, held_out: bool = False) -> list[GraphSpec]:
    """The designed calibration graphs (``held_out``: the validation set of other shapes)."""
    if held_out:
        specs = []
        for h, w, c in _HELD_OUT:
            co = 40 if c < 64 else 72
            layers = [LayerSpec("conv", co, 3, 1), LayerSpec("conv", co, 1, 1),
                      LayerSpec("conv", co, 3, 2), LayerSpec("fwcs", co, 3, 1, 0.4),
                      LayerSpec("fwcs", co, 3, 1, 0.8), LayerSpec("fwcs", co, 5, 1, 0.6),
                      LayerSpec("fwcs", co, 3, 2, 0.75), LayerSpec("csr", co, 3, 1, 0.7),
                      LayerSpec("pattern", co, 3, 1, 0.7), LayerSpec("fwcs", 8, 3, 1, 0.85),
                      LayerSpec("fwcs", 12, 3, 2, 0.9)] + _others(h, w, c) + _fc_fwcs(h, w, c, True)
            specs.append(GraphSpec((h, w, c), tuple(layers)))
        return specs
    shapes = _QUICK if quick else _TRAIN
    return [GraphSpec(s, tuple(_convs(s[2], not quick) + _others(*s) + _fc_fwcs(*s))) for s in shapes]


def _mask_count(n: int, ratio: float) -> int:
    from dtmm.prune.select import num_pruned

    return n - num_pruned(n, ratio)


def build_graph(spec: GraphSpec, seed: int = 0):
    """A quantized synthetic graph of ``spec`` (every layer reads the input; compressed
    layers get seeded random masks of the requested ratio)."""
    from dtmm.formats.pattern import pattern_mask
    from dtmm.graph.compressed import compress_graph
    from dtmm.runtime.synth import SynthGraph

    rng = np.random.default_rng(seed)
    h, w, c = spec.input
    sg = SynthGraph((h, w, c), seed=seed)
    x = sg.last
    formats, masks = {}, {}
    for ly in spec.layers:
        if ly.op in ("conv", "fwcs", "csr", "pattern"):
            sg.conv(ly.c_out, ly.k, stride=ly.stride, pads="same", activation="relu", x=x)
            name = sg.g.ops[-1].name
            wt = sg.g.ops[-1].weight
            o, kh, kw, ci = wt.shape
            if ly.op == "fwcs":          # exactly the count the scheduler plans, >= 1 per filter
                k = kh * kw
                keep = max(o, _mask_count(o * k, ly.ratio))
                m = np.zeros((o, k), bool)
                m[np.arange(o), rng.integers(0, k, o)] = True
                rest = np.flatnonzero(~m.ravel())
                m.flat[rng.permutation(rest)[:keep - o]] = True
                formats[name], masks[name] = "fwcs", m.reshape(o, kh, kw)
            elif ly.op == "csr":
                m = np.zeros(wt.size, bool)
                m[rng.permutation(wt.size)[:_mask_count(wt.size, ly.ratio)]] = True
                formats[name], masks[name] = "csr", m.reshape(wt.shape)
            elif ly.op == "pattern":
                kk = np.zeros(o * ci, bool)
                kk[rng.permutation(o * ci)[:_mask_count(o * ci, ly.ratio)]] = True
                formats[name], masks[name] = "pattern", pattern_mask(wt, kk.reshape(o, ci))
        elif ly.op == "dw":
            sg.depthwise(ly.k, stride=ly.stride, pads="same", activation="relu", x=x)
        elif ly.op == "maxpool":
            sg.max_pool(ly.k, stride=ly.stride, pads="same", x=x)
        elif ly.op == "avgpool":
            sg.avg_pool(ly.k, stride=ly.stride, pads="same", x=x)
        elif ly.op == "add":
            b = sg.conv(c, 1, x=x)
            sg.add(x, b, activation="relu")
        elif ly.op == "fc":
            flat = sg.reshape((h * w * c,), x=x)
            sg.fc(ly.c_out, x=flat)
            sg.softmax()
        elif ly.op == "fcf":            # random kept runs, >= 1 per output (the scheduler's count)
            if ly.k == 0:
                v = sg.reshape((h * w * c,), x=x)
            else:
                v = sg.reshape((c,), x=sg.global_avg_pool(x=x))
                if ly.k > 1:
                    v = sg.fc(ly.k, activation="relu", x=v)
            sg.fc(ly.c_out, x=v)
            op = sg.g.ops[-1]
            o, n = op.weight.shape
            npos = -(-n // min(16, n))
            keep = max(o, _mask_count(o * npos, ly.ratio))
            m = np.zeros((o, npos), bool)
            m[np.arange(o), rng.integers(0, npos, o)] = True
            rest = np.flatnonzero(~m.ravel())
            m.flat[rng.permutation(rest)[:keep - o]] = True
            formats[op.name], masks[op.name] = "fwcs", m
        else:
            raise ScheduleError(f"unknown calibration layer op {ly.op!r}")
    g = sg.finish()
    return compress_graph(g, formats, masks) if formats else g


def measure(graph, target: str, *, simd: str = "auto", with_invoke: bool = False,
            seed: int = 0) -> list[tuple[OpShape, float, str]]:
    """``(shape, executed instructions, op name)`` of every op of ``graph`` on ``target``
    (one image under QEMU, per-op markers), outputs checked bit-exact against the
    reference; ``with_invoke`` adds the ``dtmm_model_invoke`` copies (a second build)."""
    from dtmm.codegen.backends import build_firmware, run_firmware
    from dtmm.runtime.reference import run_reference

    rng = np.random.default_rng(seed)
    shape = graph.tensors[graph.inputs[0]].shape
    x = rng.integers(-128, 128, size=(1, *shape)).astype(np.int8)
    fw = build_firmware(graph, target, simd=simd, profile=True)
    res = run_firmware(fw, x)
    want = run_reference(graph, x)
    if not np.array_equal(res.outputs, want):
        raise ScheduleError(f"calibration model on {target}: output differs from the reference")
    row = res.op_instructions[0]
    out = []
    for s, op in zip(fw.plan.steps, graph.ops):
        sh = op_shape(op, graph)
        if sh is not None:
            out.append((sh, float(row[s.index]), op.name))
    if with_invoke:
        total = run_firmware(build_firmware(graph, target, simd=simd), x).instructions[0]
        out.append((OpShape("invoke", c_in=int(np.prod(shape)),
                            c_out=int(np.prod(graph.tensors[graph.outputs[0]].shape))),
                    float(total - sum(row)), "dtmm_model_invoke"))
    return out


def evaluate(model: LatencyModel, samples) -> dict:
    """Relative errors of ``model`` on measured samples, per kind and overall."""
    per: dict[str, list[float]] = {}
    for shape, y, _ in samples:
        kind, _f = features(shape, model.isa)
        per.setdefault(kind, []).append(abs(model.predict(shape) - y) / max(y, 1.0))
    allv = [v for vs in per.values() for v in vs]
    return {"samples": len(allv), "mean_rel_error": float(np.mean(allv)) if allv else None,
            "max_rel_error": float(np.max(allv)) if allv else None,
            "per_kind": {k: {"samples": len(v), "mean_rel_error": float(np.mean(v)),
                             "max_rel_error": float(np.max(v))} for k, v in sorted(per.items())}}


def calibrate(target: str, *, quick: bool = False, simd: str = "auto", progress=None,
              held_out: bool = True) -> tuple[LatencyModel, list, list]:
    """Measure the designed graphs on ``target`` and fit; returns (model, train, held-out)."""
    from dtmm.codegen.arena import isa_path

    isa = isa_path(target, simd)
    from dtmm.train.progress import ticker

    t0 = time.time()
    train: list = []
    specs = design(quick=quick)
    bar = ticker(progress, f"calibrate {target}: graphs measured", len(specs), unit="graph")
    for i, spec in enumerate(specs):
        train += measure(build_graph(spec, seed=i), target, simd=simd, with_invoke=i < 3, seed=i)
        bar.update(text=f"{spec.input}")
    bar.close()
    coef, stats = fit([(s, y) for s, y, _ in train], isa)
    model = LatencyModel(target, isa, coef, {"unit": "instructions", "source": "qemu",
                                             "quick": bool(quick), "fit": stats})
    test: list = []
    if held_out:
        hs = design(held_out=True)
        hs = hs if not quick else hs[:2]
        bar = ticker(progress, f"calibrate {target}: held-out graphs measured", len(hs), unit="graph")
        for i, spec in enumerate(hs):
            test += measure(build_graph(spec, seed=100 + i), target, simd=simd, seed=100 + i)
            bar.update(text=f"{spec.input}")
        bar.close()
        model.meta["held_out"] = evaluate(model, test)
    model.meta["train"] = evaluate(model, train)
    model.meta["seconds"] = round(time.time() - t0, 1)
    return model, train, test


#: Columns of a board measurement CSV (see the README): one measured layer per row.
CSV_COLUMNS = ("kind", "out_h", "out_w", "c_in", "c_out", "kh", "kw", "in_h", "in_w", "kept",
               "cycles")
#: Optional columns of the CSV (default: stride 1, no padding, depth multiplier 1, no short
#: runs); the depthwise and pool models count the taps inside the input from them, and an
#: ``fc_fwcs`` row's ``tail`` is how many of its kept runs are the short last run.
CSV_OPTIONAL = {"stride_h": 1, "stride_w": 1, "pad_t": 0, "pad_l": 0, "mult": 1, "tail": 0}


def from_board_csv(path, target: str, isa: str) -> LatencyModel:
    """Fit a latency model on a real board's measurements (a CSV with :data:`CSV_COLUMNS`;
    ``kind`` as in :class:`~dtmm.schedule.latency.OpShape`; ``kept`` the kept filterlets /
    weights / kernels of a compressed layer, else 0; optionally :data:`CSV_OPTIONAL`,
    the stride, top / left padding and depth multiplier). The model's unit is cycles."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScheduleError(f"{p}: cannot read the measurements ({e.strerror})") from None
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ScheduleError(f"{p}: no measurements (expected a header line {','.join(CSV_COLUMNS)})")
    missing = [c for c in CSV_COLUMNS if c not in rows[0]]
    if missing:
        raise ScheduleError(f"{p}: missing column(s) {', '.join(missing)}; expected "
                            f"{','.join(CSV_COLUMNS)}")
    samples = []
    for i, r in enumerate(rows, start=2):
        try:
            ints = {c: int(r[c]) for c in CSV_COLUMNS[1:-1]}
            ints.update({c: int(r[c]) if (r.get(c) or "").strip() else d
                         for c, d in CSV_OPTIONAL.items()})
            cycles = float(r["cycles"])
        except (TypeError, ValueError):
            raise ScheduleError(f"{p}: line {i}: every column but kind must be a number") from None
        if cycles <= 0 or min(ints.values()) < 0:
            raise ScheduleError(f"{p}: line {i}: values must be >= 0 and cycles > 0")
        shape = OpShape(r["kind"].strip(), **ints)
        features(shape, isa)                                    # validates the kind
        samples.append((shape, cycles, f"line {i}"))
    coef, stats = fit([(s, y) for s, y, _ in samples], isa)
    model = LatencyModel(target, isa, coef, {"unit": "cycles", "source": str(p), "fit": stats})
    model.meta["train"] = evaluate(model, samples)
    return model


# ------------------------------------------------------------------- code sizes

_CODE_KINDS = ("conv", "fwcs", "csr", "pattern", "dw", "fc", "maxpool", "avgpool", "add",
               "softmax", "concat", "fcfwcs")


def _code_graph(kinds: list[str], seed: int):
    """A small chain graph with the given op kinds (for code-size measurements)."""
    from dtmm.formats.pattern import pattern_mask
    from dtmm.graph.compressed import compress_graph
    from dtmm.runtime.synth import SynthGraph

    rng = np.random.default_rng(seed)
    sg = SynthGraph((8, 8, 4), seed=seed)
    formats, masks = {}, {}
    fc_done = False
    for k in kinds:
        if fc_done:
            break
        if k in ("conv", "fwcs", "csr", "pattern"):
            sg.conv(8, 3, pads="same", activation="relu")
            op = sg.g.ops[-1]
            o, kh, kw, c = op.weight.shape
            if k == "fwcs":
                m = rng.random((o, kh, kw)) < 0.5
                m[:, 1, 1] = True
                formats[op.name], masks[op.name] = "fwcs", m
            elif k == "csr":
                formats[op.name], masks[op.name] = "csr", rng.random(op.weight.shape) < 0.5
            elif k == "pattern":
                formats[op.name] = "pattern"
                masks[op.name] = pattern_mask(op.weight, rng.random((o, c)) < 0.7)
        elif k == "dw":
            sg.depthwise(3, pads="same")
        elif k == "maxpool":
            sg.max_pool(3, stride=1, pads="same")
        elif k == "avgpool":
            sg.avg_pool(3, stride=1, pads="same")
        elif k == "add":
            a = sg.last
            b = sg.conv(sg.g.tensors[a].shape[-1], 1, x=a)
            sg.add(a, b)
        elif k == "concat":
            a = sg.last
            b = sg.conv(4, 1, x=a)
            c2 = sg.conv(4, 1, x=a)
            sg.set_qparams(c2, sg.g.tensors[b].qparams)
            sg.concat([b, c2])
        elif k in ("fc", "softmax", "fcfwcs"):
            h, w, c = sg.g.tensors[sg.last].shape
            sg.reshape((h * w * c,))
            sg.fc(10)
            if k == "softmax":
                sg.softmax()
            if k == "fcfwcs":
                op = sg.g.ops[-1]
                m = rng.random((10, -(-h * w * c // 16))) < 0.5
                m[:, 0] = True
                formats[op.name], masks[op.name] = "fwcs", m
            fc_done = True
    g = sg.finish()
    return compress_graph(g, formats, masks) if formats else g


def _code_features(graph, plan) -> tuple[dict[str, int], int, int]:
    from dtmm.formats.footprint import OP_ARRAYS

    kinds: dict[str, int] = {}
    for op in graph.ops:
        k = op.format_name if op.kind == "compressed_conv2d" else op.kind   # FWCS FC: its kind
        kinds[k] = kinds.get(k, 0) + 1
    n_arrays = sum(OP_ARRAYS.get(k, 0) * n for k, n in kinds.items())
    return kinds, n_arrays, plan.const_bytes


def measure_code_sizes(target: str, *, n_graphs: int = 36, seed: int = 0, progress=None):
    """Fit the :class:`~dtmm.schedule.flash.CodeSizes` of ``target`` on ``n_graphs`` firmwares
    of random op mixes (built, not run); returns ``(table, rows)`` where each row is
    ``(kinds, n_arrays, const_bytes, measured flash, predicted flash)``."""
    from scipy.optimize import nnls

    from dtmm.codegen.backends import build_firmware
    from dtmm.codegen.plan import KERNEL_SOURCES
    from dtmm.codegen.platform import size
    from dtmm.schedule.flash import CodeSizes
    from dtmm.tflite.export import to_tflite_bytes

    from dtmm.train.progress import ticker

    rng = np.random.default_rng(seed)
    t0 = time.time()
    rows, rams, tfl = [], [], []
    bar = ticker(progress, f"code sizes {target}: firmwares built", n_graphs, unit="firmware")
    for i in range(n_graphs):
        n = int(rng.integers(1, 6))
        kinds = [str(k) for k in rng.choice(_CODE_KINDS, size=n)]
        if i < 2 * len(_CODE_KINDS):                  # each kind alone, once and twice in a row
            kinds = [_CODE_KINDS[i // 2]] * (1 + i % 2)   # (separates its kernel from its calls)
        g = _code_graph(kinds, seed + i)
        fw = build_firmware(g, target)
        flash, ram = size(fw.artifact)
        feats = _code_features(g, fw.plan)
        rows.append((feats[0], feats[1], feats[2], flash))
        rams.append(ram - fw.harness_ram_bytes - fw.plan.arena.size)
        from dtmm import formats as F

        data = sum(F.byte_count(op.fmt).weights + F.byte_count(op.fmt).index
                   if getattr(op, "fmt", None) is not None else int(np.asarray(op.weight).size)
                   for op in g.ops if hasattr(op, "fmt") or hasattr(op, "weight"))
        chans = sum(int(g.tensors[op.output].shape[-1]) for op in g.ops
                    if hasattr(op, "fmt") or hasattr(op, "weight"))
        tfl.append(([1.0, data, chans, len(g.ops), len(g.tensors)], len(to_tflite_bytes(g))))
        bar.update()
    bar.close()
    files = sorted({KERNEL_SOURCES[k] for r in rows for k in r[0] if k in KERNEL_SOURCES})
    kinds_all = sorted({k for r in rows for k in r[0]})
    cols = ["base", "per_array"] + [f"kernel:{f}" for f in files] + [f"call:{k}" for k in kinds_all]
    a, y = [], []
    for kinds, n_arr, const, flash in rows:
        used = {KERNEL_SOURCES[k] for k in kinds if k in KERNEL_SOURCES}
        a.append([1.0, n_arr] + [1.0 if f in used else 0.0 for f in files]
                 + [float(kinds.get(k, 0)) for k in kinds_all])
        y.append(flash - const)
    x, _ = nnls(np.array(a), np.array(y, np.float64))
    coef = dict(zip(cols, x))
    ta = np.array([r for r, _ in tfl])
    tx, _ = nnls(ta, np.array([v for _, v in tfl], np.float64))
    table = CodeSizes(target, coef["base"], {f: coef[f"kernel:{f}"] for f in files},
                      {k: coef[f"call:{k}"] for k in kinds_all}, coef["per_array"],
                      int(round(float(np.median(rams)))),
                      dict(zip(["base", "data", "channels", "ops", "tensors"], tx.tolist())))
    out = []
    errs = []
    for (kinds, n_arr, const, flash) in rows:
        pred = table.firmware_flash(const, kinds, n_arrays=n_arr)
        out.append((kinds, n_arr, const, flash, pred))
        errs.append(abs(pred - flash) / flash)
    terr = [abs(float(np.dot(r, tx)) - v) / v for r, v in tfl]
    table.meta = {"firmwares": n_graphs, "mean_rel_error": float(np.mean(errs)),
                  "max_rel_error": float(np.max(errs)), "static_ram_spread":
                  [int(min(rams)), int(max(rams))], "tflite_mean_rel_error": float(np.mean(terr)),
                  "tflite_max_rel_error": float(np.max(terr)), "seconds": round(time.time() - t0, 1)}
    return table, out


def calibration_json(model: LatencyModel, code=None) -> dict:
    """The calibration file's content: the latency model, plus the code-size table."""
    obj = model.to_json()
    if code is not None:
        obj["code"] = code.to_json()
    return obj


def run_calibration(target: str, *, quick: bool = False, progress=None) -> dict:
    """``dtmm calibrate``: latency samples + fit + held-out check, and the code sizes."""
    model, _, _ = calibrate(target, quick=quick, progress=progress)
    code, _ = measure_code_sizes(target, n_graphs=12 if quick else 36, progress=progress)
    return calibration_json(model, code)
