"""The requantization constants TFLite Micro computes at Prepare time from float32 scales.

A ``.tflite`` file stores only scales and zero points; TFLM derives multipliers and
shifts from them when the interpreter is built. :func:`tflm_quant` repeats that
derivation for one IR op, so the reader can fill in constants and the exporter
can check that a graph's stored constants are the ones TFLM will use.

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((4, 4, 2), seed=0)
    >>> _ = sg.conv(3, 1)
    >>> g = sg.finish()
    >>> q = tflm_quant(g, g.ops[0])
    >>> bool((q.multiplier == g.ops[0].quant.multiplier).all())
    True
"""
from __future__ import annotations

import numpy as np

from dtmm.errors import GraphError
from dtmm.graph.ir import (Add, AddQuant, Conv2D, ConvQuant, DepthwiseConv2D, FullyConnected,
                           Graph, Op, Softmax, SoftmaxQuant)
from dtmm.quant import arith

__all__ = ["tflm_quant", "check_quant"]


def tflm_quant(graph: Graph, op: Op) -> ConvQuant | AddQuant | SoftmaxQuant | None:
    """Constants TFLM derives for ``op`` from the graph's scales (None for ops without any).

    Conv/depthwise: ``PopulateConvolutionQuantizationParams`` (a single weight scale is
    broadcast to every output channel). FC: ``GetQuantizedConvolutionMultipler``
    (float32 product) for a per-tensor weight scale, per-channel like conv otherwise.
    """
    def s(name: str) -> float:
        q = graph.tensors[name].qparams
        if q is None:
            raise GraphError(f"op {op.name!r}: tensor {name!r} has no qparams")
        return q.s

    if isinstance(op, (Conv2D, DepthwiseConv2D, FullyConnected)):
        if op.quant is None:
            raise GraphError(f"op {op.name!r}: no weight scales (quant is None)")
        w_scale = np.atleast_1d(np.asarray(op.quant.w_scale, np.float32))
        in_s, out_s = s(op.inputs[0]), s(op.output)
        if isinstance(op, FullyConnected) and w_scale.size == 1:
            m, sh = arith.fc_multiplier(in_s, w_scale[0], out_s)
            return ConvQuant(w_scale=w_scale, multiplier=np.array([m], np.int32),
                             shift=np.array([sh], np.int32))
        mult, shift = arith.conv_multipliers(in_s, w_scale, out_s)
        nout = op.weight.shape[3] if isinstance(op, DepthwiseConv2D) else op.weight.shape[0]
        if mult.size == 1 and nout > 1 and not isinstance(op, FullyConnected):
            mult, shift = np.repeat(mult, nout), np.repeat(shift, nout)
        return ConvQuant(w_scale=w_scale, multiplier=mult, shift=shift)
    if isinstance(op, Add):
        return AddQuant(**arith.add_params(s(op.inputs[0]), s(op.inputs[1]), s(op.output)))
    if isinstance(op, Softmax):
        return SoftmaxQuant(**arith.softmax_params(s(op.inputs[0]), op.beta))
    return None


def check_quant(graph: Graph, op: Op) -> None:
    """Raise GraphError if ``op``'s stored constants differ from what TFLM will compute."""
    want = tflm_quant(graph, op)
    if want is None:
        return
    have = op.quant
    for field, value in vars(want).items():
        if field == "w_scale":
            continue
        got = getattr(have, field, None)
        if got is None or not np.array_equal(np.asarray(got, np.int64).ravel(),
                                             np.asarray(value, np.int64).ravel()):
            raise GraphError(
                f"op {op.name!r} ({op.kind}): stored {field} {np.asarray(got).ravel()[:4]} differs "
                f"from what TFLite Micro derives from the scales {np.asarray(value).ravel()[:4]}; "
                f"recompute the constants with dtmm.quant.arith")
