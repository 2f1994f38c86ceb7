"""``dtmm inspect``: the per-layer byte report of a (compressed) ``.tflite`` file.

``file_bytes`` is the file's size (number (a) of :mod:`dtmm.formats.footprint`); the
report's ``total_bytes`` is the generated C model's const data (number (b)).
"""
from __future__ import annotations

from dtmm.pipeline.modelfiles import read_model


def inspect_command(model: str) -> dict:
    """``dtmm inspect``: the storage report of a (compressed) ``.tflite`` file."""
    from dtmm.report import inspect_graph

    graph, data = read_model(model)
    rep = inspect_graph(graph)
    return {"model": str(model), "file_bytes": len(data), **rep}
