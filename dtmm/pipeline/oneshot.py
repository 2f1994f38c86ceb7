"""One-shot pruning of a trained model into a compressed int8 graph (no fine-tuning yet).

The steps, each from its own module:

1. score the units of every prunable conv layer (:mod:`dtmm.prune` scorers, on
   training batches, model in eval mode);
2. choose which units to prune per layer (one ratio for all, or a ``{layer: ratio}``
   mapping / JSON file) and bake the masks into a copy of the model;
3. capture the pruned model (:func:`dtmm.graph.capture.capture`) and remove dead
   output channels, folding their constants into consumers
   (:func:`dtmm.prune.remove_dead_channels`);
4. quantize (:func:`dtmm.quant.quantize.quantize_graph`);
5. store every pruned conv in its granularity's format (filterlet -> FWCS,
   element -> CSR, pattern -> pattern; filter pruning needs none: the layer simply
   got smaller in step 3).

Pattern pruning applies to 3x3 convs only (as PatDNN). Linear layers are not pruned by this
pipeline (a pruned fully connected layer can be stored as FWCS runs of 16 inputs,
:class:`dtmm.graph.compressed.CompressedFullyConnected`, but no scorer selects them here
yet); depthwise layers neither (a depthwise filterlet is a single weight).

Example:
    >>> import numpy as np, torch, torch.nn as nn
    >>> from dtmm.pipeline.oneshot import PruneSpec, prune_model
    >>> torch.manual_seed(0) is not None
    True
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
    ...                     nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    >>> x = np.random.default_rng(0).random((16, 1, 6, 6), dtype=np.float32)
    >>> y = np.arange(16) % 3
    >>> r = prune_model(net, (1, 6, 6), PruneSpec("filterlet", 0.5, "l1"), x, y)
    >>> sorted(r.formats.items())
    [('0', 'fwcs'), ('2', 'fwcs')]
    >>> r.layer_kept["2"]
    0.5
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from dtmm.errors import DtmmError
from dtmm.graph.capture import capture
from dtmm.graph.ir import Graph
from dtmm.prune.batchnorm import recalibrate_batchnorm
from dtmm.quant.quantize import quantize_graph

#: Files ``dtmm prune`` writes into its ``--out`` folder.
PRUNE_OUTPUTS = ("model.tflite", "summary.json")
FORMAT_OF = {"filterlet": "fwcs", "element": "csr", "pattern": "pattern", "filter": None}
IMPORTANCE = ("taylor", "l1", "l2", "chip")


@dataclass(frozen=True)
class PruneSpec:
    """What to prune: granularity, ratio(s) and importance scorer.

    ``ratios`` is one float for every prunable conv layer, a ``{layer: ratio}``
    mapping, or the path of a JSON file holding such a mapping. ``batches`` is the
    number of training batches used by data-driven scorers (taylor, chip).
    """

    granularity: str
    ratios: float | Mapping[str, float] | str
    importance: str = "l2"
    batches: int = 8
    batch_size: int = 64

    def __post_init__(self):
        if self.granularity not in FORMAT_OF:
            raise DtmmError(f"unknown granularity {self.granularity!r}; choose from {tuple(FORMAT_OF)}")
        if self.importance not in IMPORTANCE:
            raise DtmmError(f"unknown importance {self.importance!r}; choose from {IMPORTANCE}")
        if self.importance == "chip" and self.granularity != "filter":
            raise DtmmError("CHIP channel independence scores whole filters: use --granularity filter")


@dataclass
class PruneResult:
    float_graph: Graph                      # pruned, dead channels removed, float
    qgraph: Graph                           # int8, dense-with-zeros weights
    graph: Graph                            # int8, pruned layers in their storage format
    formats: dict[str, str]                 # layer -> storage format
    layer_kept: dict[str, float]            # layer -> kept share of its original weights
    dead_channels: dict[str, list[int]] = field(default_factory=dict)
    dead_exact: bool = True


def _batches(x: np.ndarray, y: np.ndarray, size: int, n: int):
    out = []
    for i in range(0, min(len(x), size * n), size):
        out.append((torch.from_numpy(x[i:i + size]), torch.from_numpy(np.asarray(y[i:i + size]))))
    return out


def prune_torch(net: nn.Module, spec: PruneSpec, x: np.ndarray, y: np.ndarray
                ) -> tuple[nn.Module, dict[str, float]]:
    """A copy of ``net`` with the chosen units zeroed; returns it and each layer's ratio."""
    from dtmm import prune

    net = copy.deepcopy(net).eval()
    layers = prune.prunable_layers(net, include_depthwise=False, include_linear=False)
    if spec.granularity == "pattern":          # PatDNN patterns are defined on 3x3 kernels only
        layers = {n: m for n, m in layers.items() if tuple(m.kernel_size) == (3, 3)}
    if not layers:
        raise DtmmError(f"the model has no conv layers that {spec.granularity} pruning applies to")
    ratios = prune.load_ratios(spec.ratios, list(layers))
    ratios = {k: v for k, v in ratios.items() if v > 0}
    if not ratios:
        return net, {}
    scorer = prune.get_scorer(spec.importance)
    # a seeded shuffle: datasets are often stored class by class, and the first batches
    # must represent every class for both importance and BatchNorm statistics
    order = np.random.default_rng(0).permutation(len(x))[:spec.batch_size * spec.batches]
    x, y = x[order], np.asarray(y)[order]
    data = _batches(x, y, spec.batch_size, spec.batches)
    if not data:
        raise DtmmError("no data to score importance with (empty training split)")
    scores = scorer(net, list(ratios), spec.granularity, data=data, loss_fn=nn.CrossEntropyLoss(),
                    batches=len(data))
    masks = prune.masks_from_scores(net, scores, spec.granularity, ratios)
    for name, m in masks.items():
        if not bool(torch.as_tensor(m).any()):
            raise DtmmError(f"pruning ratio {ratios.get(name)} removes every unit of layer {name!r} "
                            f"({spec.granularity} granularity): its output would no longer depend "
                            f"on its input; use a smaller ratio for it")
    prune.apply_masks(net, masks)
    prune.remove_masks(net)
    recalibrate_batchnorm(net, x, spec.batch_size, spec.batches)
    return net, ratios



def prune_model(net: nn.Module, input_shape, spec: PruneSpec, x_train: np.ndarray, y_train: np.ndarray,
                calib_samples: int = 256, calibration: str = "minmax") -> PruneResult:
    """Prune, remove dead channels, quantize and compress ``net`` (see module docstring)."""
    from dtmm.graph.compressed import compress_graph
    from dtmm.prune import remove_dead_channels

    pruned, ratios = prune_torch(net, spec, x_train, y_train)
    g0 = capture(pruned, tuple(input_shape))
    original = {op.name: int(op.weight.size) for op in g0.weighted_ops()}
    g, report = remove_dead_channels(g0)
    calib = np.ascontiguousarray(x_train[:calib_samples].transpose(0, 2, 3, 1))
    if len(calib) == 0:
        raise DtmmError("no calibration data (empty training split)")
    qg = quantize_graph(g, [calib[i:i + 64] for i in range(0, len(calib), 64)], method=calibration)
    fmt = FORMAT_OF[spec.granularity]
    formats = {}
    if fmt is not None:
        formats = {op.name: fmt for op in qg.ops if op.name in ratios and op.kind == "conv2d"}
    cg = compress_graph(qg, formats) if formats else qg
    kept = {}
    for op in g.weighted_ops():
        if op.name in ratios:
            kept[op.name] = round(float(np.count_nonzero(op.weight)) / original[op.name], 6)
    return PruneResult(float_graph=g, qgraph=qg, graph=cg, formats=formats, layer_kept=kept,
                       dead_channels={k: [int(c) for c in v] for k, v in report.removed.items()},
                       dead_exact=report.is_exact)


def prune_command(*, checkpoint: str, data: str, granularity: str, out: str,
                  ratio: float | None = None, ratios: str | None = None, importance: str = "l2",
                  calib_samples: int = 256, eval_samples: int | None = None,
                  model: str | None = None, quiet: bool = True) -> dict:
    """``dtmm prune``: prune a checkpoint in one shot, quantize, write ``out/model.tflite``
    (compressed) and ``out/summary.json``. Nothing is written if any step fails.

    ``model``: the checkpoint's model (zoo name or ``path/to/file.py:factory``; default: the
    one the checkpoint records). Unless ``quiet``, one line per step on standard error."""
    from dtmm.pipeline.data import SPLIT_SEED, to_nhwc
    from dtmm.pipeline.evaluate import float_accuracy, int8_predict
    from dtmm.util.files import check_output_path, write_outputs
    from dtmm.graph.float_exec import run_float
    from dtmm.report import inspect_graph
    from dtmm.tflite.export import to_tflite_bytes
    from dtmm.pipeline import models as M
    from dtmm.train.progress import Reporter

    if (ratio is None) == (ratios is None):
        raise DtmmError("give exactly one of --ratio R or --ratios FILE.json")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise DtmmError(f"--ratio {ratio}: the share of units to prune must be in [0, 1); "
                        f"{ratio} would remove " + ("every unit of every layer, so the model's output "
                                                    "would no longer depend on its input"
                                                    if ratio >= 1.0 else "a negative share"))
    out_dir = check_output_path(out, names=PRUNE_OUTPUTS)     # before any work
    say = Reporter(quiet=quiet, steps=3)
    with say.step("load the checkpoint and the data") as st:
        net, meta, ds, tr, _, te = M.load_with_data(checkpoint, model, data)
        st.summary = f"{meta.model_name}, {len(tr)} training / {len(te)} test images"
    with say.step(f"score ({importance}), prune ({granularity}), quantize") as st:
        spec = PruneSpec(granularity, ratio if ratio is not None else ratios, importance)
        order = np.random.default_rng(SPLIT_SEED).permutation(len(tr))
        res = prune_model(net, meta.input_shape, spec, tr.x[order], tr.y[order],
                          calib_samples=calib_samples)
        model_bytes = to_tflite_bytes(res.graph)
        st.summary = f"{len(res.layer_kept)} layers pruned, {len(model_bytes):,} B .tflite"
    with say.step("evaluate") as st:
        xe, ye = (te.x, te.y) if eval_samples is None else (te.x[:eval_samples], te.y[:eval_samples])
        dense_acc = float_accuracy(net, xe, ye)
        pruned_acc = float((run_float(res.float_graph, to_nhwc(xe)).argmax(-1) == ye).mean())
        int8_acc = float((int8_predict(res.graph, xe).argmax(-1) == ye).mean())
        st.summary = (f"float {dense_acc:.4f} unpruned, {pruned_acc:.4f} pruned; int8 {int8_acc:.4f} "
                      f"on {len(ye)} test images")
    rep = inspect_graph(res.graph)
    dense_rep = inspect_graph(res.qgraph)
    summary = {
        "model": meta.model_name, "dataset": data, "granularity": granularity,
        "importance": importance, "format": FORMAT_OF[granularity] or "dense",
        "ratios": ratio if ratio is not None else ratios, "layer_kept": res.layer_kept,
        "dead_channels": res.dead_channels, "dead_channel_folding_exact": res.dead_exact,
        "eval_samples": int(len(ye)), "float_accuracy_unpruned": round(dense_acc, 4),
        "float_accuracy_pruned": round(pruned_acc, 4), "int8_accuracy": round(int8_acc, 4),
        "tflite_bytes": len(model_bytes), "total_bytes": rep["total_bytes"], "bytes": rep["bytes"],
        "dense_int8_total_bytes": dense_rep["total_bytes"], "layers": rep["layers"],
    }
    write_outputs(out_dir, {"model.tflite": model_bytes,
                                      "summary.json": (json.dumps(summary, indent=2) + "\n").encode()})
    return {"tflite": str(out_dir / "model.tflite"), "summary": str(out_dir / "summary.json"),
            **{k: summary[k] for k in ("float_accuracy_unpruned", "float_accuracy_pruned",
                                       "int8_accuracy", "total_bytes", "dense_int8_total_bytes")}}


def inspect_command(model: str) -> dict:
    """``dtmm inspect``: the storage report of a (compressed) ``.tflite`` file."""
    from dtmm.report import inspect_graph
    from dtmm.pipeline.modelfiles import read_model

    graph, data = read_model(model)
    rep = inspect_graph(graph)
    return {"model": str(model), "file_bytes": len(data), **rep}
