"""Per-layer storage report of an int8 graph: format, kept share of weights, bytes by category.

Bytes are the generated C model's constant bytes, op by op, as
:mod:`dtmm.formats.footprint` defines them (weights / index / quant / meta, the paper's
Fig. 13 split): a builtin conv or fully connected layer is a dense tensor, a compressed
conv its format's arrays; every op adds its C parameter structs (meta), so pools and
adds show a few bytes of meta too.

Example:
    >>> import numpy as np, torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> from dtmm.quant.quantize import quantize_graph
    >>> g = capture(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 2)), (1, 4, 4))
    >>> qg = quantize_graph(g, [np.random.default_rng(0).random((4, 4, 4, 1), np.float32)])
    >>> rep = inspect_graph(qg)
    >>> [(l["name"], l["format"], l["bytes"]["weights"]) for l in rep["layers"] if l["bytes"]["total"]]
    [('0', 'dense', 36), ('2', 'dense', 32)]
    >>> rep["total_bytes"] == sum(rep["bytes"].values())
    True
"""
from __future__ import annotations

import numpy as np

from dtmm import formats
from dtmm.formats import footprint
from dtmm.formats.common import ByteCount
from dtmm.graph.ir import Graph

CATEGORIES = ("weights", "index", "quant", "meta")


def _layer_bytes(op, pointer_bytes: int) -> tuple[str, float, ByteCount, int]:
    """(format, kept ratio, bytes in the C model, weight count of the dense layer) of one op."""
    bc = footprint.op_bytes(op, pointer_bytes=pointer_bytes)
    fmt = getattr(op, "fmt", None)
    if fmt is not None:                                           # CompressedConv2D
        dense_n = int(np.prod(op.weight_shape))
        kept = int(np.count_nonzero(formats.decode(fmt))) if dense_n else 0
        return op.format_name, (kept / dense_n if dense_n else 0.0), bc, dense_n
    w = getattr(op, "weight", None)
    if w is None:
        return "-", 0.0, bc, 0
    n = int(w.size)
    return "dense", (float(np.count_nonzero(w)) / n if n else 0.0), bc, n


def inspect_graph(graph: Graph, pointer_bytes: int = footprint.POINTER_BYTES) -> dict:
    """A JSON-ready report: ``total_bytes``, ``bytes`` by category, ``layers`` (see module doc).

    ``total_bytes`` is the generated C model's constant bytes (:mod:`dtmm.formats.footprint`,
    number (b)) at ``pointer_bytes``-wide pointers (4: Cortex-M).
    """
    layers = []
    total = ByteCount(0, 0, 0, 0)
    for op in graph.ops:
        fmt, kept, bc, n = _layer_bytes(op, pointer_bytes)
        total = total + bc
        layers.append({"name": op.name, "op": op.kind, "format": fmt, "weights": n,
                       "kept_ratio": round(kept, 6), "bytes": {**bc.as_dict(), "total": bc.total}})
    by_cat = {k: int(v) for k, v in total.as_dict().items() if k in CATEGORIES}
    return {"total_bytes": int(total.total), "bytes": by_cat, "layers": layers}


def format_report(rep: dict) -> str:
    """The report as an aligned text table."""
    rows = [("layer", "op", "format", "kept", "weights", "index", "quant", "meta", "total")]
    for l in rep["layers"]:
        b = l["bytes"]
        rows.append((l["name"], l["op"], l["format"], f"{l['kept_ratio']:.3f}" if l["weights"] else "-",
                     *(f"{b[k]:,}" for k in (*CATEGORIES, "total"))))
    b = rep["bytes"]
    rows.append(("TOTAL", "", "", "", *(f"{b[k]:,}" for k in CATEGORIES), f"{rep['total_bytes']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0 or j == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
