"""Float execution of a *float* IR graph (NHWC), used for calibration and to check capture.

Runs each op with ``torch.nn.functional`` for speed and returns every tensor, so
calibration can observe intermediate ranges.

Example:
    >>> import numpy as np, torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> from dtmm.graph.float_exec import run_float_all
    >>> g = capture(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), (1, 4, 4))
    >>> vals = run_float_all(g, np.ones((2, 4, 4, 1), np.float32))
    >>> vals[g.outputs[0]].shape
    (2, 4, 4, 2)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dtmm.errors import GraphError
from dtmm.graph.ir import (Activation, Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, Reshape, Softmax)


def _act(y: torch.Tensor, act: Activation) -> torch.Tensor:
    if act == Activation.RELU:
        return F.relu(y)
    if act == Activation.RELU6:
        return F.relu6(y)
    return y


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def _pad(x: torch.Tensor, pads, value=0.0) -> torch.Tensor:
    t, b, l, r = pads
    return F.pad(x, (l, r, t, b), value=value) if any(pads) else x


def _eval_op(op, args: list[torch.Tensor]) -> torch.Tensor:
    if isinstance(op, (Conv2D, DepthwiseConv2D)):
        x = _pad(_nchw(args[0]), op.pads)
        if isinstance(op, Conv2D):
            w = torch.from_numpy(op.weight).permute(0, 3, 1, 2)
            groups = 1
        else:
            w = torch.from_numpy(op.weight).permute(3, 0, 1, 2)
            groups = x.shape[1]
        y = F.conv2d(x, w.float(), torch.from_numpy(op.bias).float(), stride=op.stride,
                     dilation=op.dilation, groups=groups)
        return _nhwc(_act(y, op.activation))
    if isinstance(op, FullyConnected):
        x = args[0].reshape(args[0].shape[0], -1)          # an (H, W, C) input is read flat, NHWC
        return _act(F.linear(x, torch.from_numpy(op.weight), torch.from_numpy(op.bias)), op.activation)
    if isinstance(op, MaxPool2D):
        x = _pad(_nchw(args[0]), op.pads, value=float("-inf"))
        return _nhwc(F.max_pool2d(x, op.kernel, op.stride))
    if isinstance(op, AvgPool2D):
        x = _nchw(args[0])
        ones = torch.ones_like(x[:, :1])
        s = F.avg_pool2d(_pad(x, op.pads), op.kernel, op.stride, divisor_override=1)
        n = F.avg_pool2d(_pad(ones, op.pads), op.kernel, op.stride, divisor_override=1)
        return _nhwc(s / n)
    if isinstance(op, Add):
        return _act(args[0] + args[1], op.activation)
    if isinstance(op, Concat):
        axis = op.axis if op.axis < 0 else op.axis + 1       # IR axes exclude the batch
        return torch.cat(args, dim=axis)
    if isinstance(op, Reshape):
        return args[0].reshape((args[0].shape[0],) + tuple(op.shape))
    if isinstance(op, Softmax):
        return F.softmax(args[0] * op.beta, dim=-1)
    raise GraphError(f"op {op.name!r}: no float implementation for {op.kind}")


def run_float_all(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run a float graph on a batch ``x`` (N, H, W, C) and return every tensor by name."""
    if x.shape[1:] != graph.tensors[graph.inputs[0]].shape:
        raise GraphError(f"input batch shape {x.shape[1:]} != graph input shape "
                         f"{graph.tensors[graph.inputs[0]].shape}")
    vals = {graph.inputs[0]: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))}
    with torch.no_grad():
        for op in graph.ops:
            vals[op.output] = _eval_op(op, [vals[i] for i in op.inputs])
    return {k: v.numpy() for k, v in vals.items()}


def run_float(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run a float graph on a batch (N, H, W, C); return its (first) output."""
    return run_float_all(graph, x)[graph.outputs[0]]
