"""Accuracy of float and int8 models on NCHW images, and capture + quantize in one call."""
from __future__ import annotations

import numpy as np

from dtmm.errors import DataError
from dtmm.pipeline.data import SPLIT_SEED, batches, to_nhwc


def calibration_images(train, n: int = 256) -> np.ndarray:
    """The calibration images of a training split: the first ``n`` of its seed-0 permutation.

    One choice for every stage that quantizes a model (``dtmm quantize``, ``dtmm compress``,
    the benchmarks' dense baselines), so the dense int8 model, and its metric, is the same
    wherever it is reported.

    >>> from types import SimpleNamespace
    >>> calibration_images(SimpleNamespace(x=np.arange(10)), 4).tolist()
    [4, 6, 2, 7]
    """
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train.x))
    return train.x[order[:n]]


def quantize_model(net, input_shape, calib_x_nchw: np.ndarray, calibration: str = "minmax"):
    """Capture + calibrate + quantize a torch model; return (float graph, int8 graph)."""
    from dtmm.graph.capture import capture
    from dtmm.quant.quantize import quantize_graph

    if len(calib_x_nchw) == 0:
        raise DataError("the calibration set is empty")
    g = capture(net, tuple(input_shape))
    qg = quantize_graph(g, batches(to_nhwc(calib_x_nchw), 64), method=calibration)
    return g, qg



def int8_predict(qgraph, x_nchw: np.ndarray, batch: int = 128) -> np.ndarray:
    """int8 outputs of the reference executor for float NCHW inputs."""
    from dtmm.quant.quantize import quantize_input
    from dtmm.runtime.reference import run_reference

    qin = qgraph.tensors[qgraph.inputs[0]].qparams
    outs = [run_reference(qgraph, quantize_input(xb, qin)) for xb in batches(to_nhwc(x_nchw), batch)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.int8)



def float_accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    net.eval()
    with torch.no_grad():
        pred = np.concatenate([net(torch.from_numpy(xb)).argmax(1).numpy() for xb in batches(x, 256)])
    return float((pred == y).mean())

