"""Capture a PyTorch ``nn.Module`` into the channel-last float IR with torch.fx.

Supported (anything else is refused with an :class:`UnsupportedOpError` naming
the fx node, the module path and the op):

* ``nn.Conv2d`` (any kernel, stride, dilation, zero padding incl. ``'same'``;
  ``groups=1`` or depthwise ``groups=C_in``), preceded optionally by
  ``nn.ZeroPad2d`` / ``F.pad`` (folded into the conv's pads);
* ``nn.BatchNorm2d`` directly after a conv (folded into its weights and bias);
* ``nn.ReLU`` / ``nn.ReLU6`` / ``F.relu`` / ``F.relu6`` / ``torch.relu`` fused
  into the producing conv, linear or add;
* ``nn.MaxPool2d`` (any padding: exported as PADV2 with -128 plus a VALID pool when it is
  not TFLite SAME), ``nn.AvgPool2d`` (no padding), ``nn.AdaptiveAvgPool2d(1)``,
  ``x.mean((2, 3))``;
* ``nn.Flatten`` / ``torch.flatten`` / ``x.view(N, -1)`` / ``x.reshape``;
* ``nn.Linear``; residual ``+`` / ``torch.add``; ``torch.cat(dim=1)``;
* a final ``nn.Softmax(dim=1)`` / ``F.softmax``; ``nn.Identity`` and ``nn.Dropout``
  (no-ops in eval mode).

Flatten of a feature map with spatial size > 1 changes element order between
NCHW and NHWC; the capture permutes the next Linear layer's input columns so
the IR computes exactly what the PyTorch model computes.

Example:
    >>> import torch.nn as nn
    >>> from dtmm.graph.capture import capture
    >>> m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    ...                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    >>> g = capture(m, (1, 8, 8))
    >>> [op.kind for op in g.ops]
    ['conv2d', 'avg_pool2d', 'reshape', 'fully_connected']
    >>> g.tensors[g.outputs[0]].shape
    (3,)
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from dtmm.errors import GraphError, UnsupportedOpError
from dtmm.graph.ir import (Activation, Add, AvgPool2D, Concat, Conv2D, DepthwiseConv2D,
                           FullyConnected, Graph, MaxPool2D, Op, Reshape, Softmax, TensorSpec)

__all__ = ["capture"]


@dataclass
class _Value:
    """What an fx node evaluates to in the IR: a tensor name plus layout facts."""

    tensor: str
    # For a flattened feature map: the (H, W, C) it came from (NHWC order in the IR).
    flat_from: tuple[int, int, int] | None = None
    # Pads waiting to be folded into the next conv: (top, bottom, left, right).
    pending_pads: tuple[int, int, int, int] | None = None


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Capturer:
    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int]):
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.modules = dict(model.named_modules())
        self.g = Graph()
        self.values: dict[fx.Node, _Value] = {}
        self.counter: dict[str, int] = {}

    # ----------------------------------------------------------------- helpers
    def _fail(self, node: fx.Node, what: str) -> None:
        path = node.target if node.op == "call_module" else "-"
        op = type(self.modules[node.target]).__name__ if node.op == "call_module" else str(
            getattr(node.target, "__name__", node.target))
        raise UnsupportedOpError(f"node {node.name!r} (module path {path!r}, op {op}): {what}")

    def _name(self, base: str) -> str:
        n = self.counter.get(base, 0)
        self.counter[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            self._fail(node, "produces something other than one tensor")
        s = tuple(int(d) for d in meta.shape)[1:]          # drop batch
        return (s[1], s[2], s[0]) if len(s) == 3 else s     # CHW -> HWC

    def _new_tensor(self, node: fx.Node, base: str) -> str:
        name = self._name(base)
        self.g.add_tensor(TensorSpec(name, self._shape(node)))
        return name

    def _value(self, node: fx.Node, arg) -> _Value:
        if not isinstance(arg, fx.Node) or arg not in self.values:
            self._fail(node, f"input {arg!r} is not a captured tensor")
        return self.values[arg]

    def _plain(self, node: fx.Node, arg) -> str:
        v = self._value(node, arg)
        if v.pending_pads is not None:
            self._fail(node, "zero padding must be followed directly by a Conv2d")
        if v.flat_from is not None and self._is_feature_map(v.flat_from):
            self._fail(node, "a flattened feature map may only feed a Linear layer")
        return v.tensor

    @staticmethod
    def _is_feature_map(hwc) -> bool:
        return hwc[0] * hwc[1] > 1

    def _users(self, node: fx.Node) -> list[fx.Node]:
        return list(node.users)

    def _module_path(self, node: fx.Node) -> str:
        return str(node.target) if node.op == "call_module" else node.name

    # ------------------------------------------------------------------ driver
    def run(self) -> Graph:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            try:
                gm = fx.symbolic_trace(model)
            except Exception as e:  # torch raises many kinds of errors while tracing
                raise GraphError(f"torch.fx could not trace {type(model).__name__}: {e}") from e
            self.modules = dict(gm.named_modules())
            example = torch.zeros((1,) + self.input_shape)
            try:
                with torch.no_grad():
                    ShapeProp(gm).propagate(example)
            except Exception as e:
                raise GraphError(f"model does not run on input shape {self.input_shape}: {e}") from e
            self.fused: set[fx.Node] = set()
            for node in gm.graph.nodes:
                if node in self.fused:
                    continue
                self._visit(node)
        finally:
            model.train(was_training)
        self.g.validate()
        return self.g

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if self.g.inputs:
                self._fail(node, "only single-input models are supported")
            if len(self.input_shape) != 3:
                raise GraphError(f"input_shape must be (C, H, W), got {self.input_shape}")
            name = self._new_tensor(node, "input")
            self.g.inputs.append(name)
            self.values[node] = _Value(name)
            return
        if node.op == "output":
            out = node.args[0]
            if isinstance(out, (tuple, list)):
                if len(out) != 1:
                    self._fail(node, "only single-output models are supported")
                out = out[0]
            self.g.outputs.append(self._plain(node, out))
            return
        if node.op == "call_module":
            mod = self.modules[node.target]
            handler = _MODULE_HANDLERS.get(type(mod))
            if handler is None:
                self._fail(node, "unsupported module")
            handler(self, node, mod)
            return
        if node.op == "call_function":
            handler = _FUNCTION_HANDLERS.get(node.target)
            if handler is None:
                self._fail(node, "unsupported function")
            handler(self, node)
            return
        if node.op == "call_method":
            handler = _METHOD_HANDLERS.get(node.target)
            if handler is None:
                self._fail(node, f"unsupported tensor method .{node.target}()")
            handler(self, node)
            return
        if node.op == "get_attr":
            self._fail(node, "parameters used directly in forward() are not supported")
        self._fail(node, f"unsupported fx node kind {node.op}")

    # ----------------------------------------------------- fusion of BN / ReLU
    def _single_user(self, node: fx.Node) -> fx.Node | None:
        users = self._users(node)
        return users[0] if len(users) == 1 else None

    def _is_bn(self, node: fx.Node | None) -> bool:
        return (node is not None and node.op == "call_module"
                and isinstance(self.modules[node.target], nn.BatchNorm2d))

    def _activation_of(self, node: fx.Node | None) -> Activation | None:
        if node is None:
            return None
        if node.op == "call_module":
            m = self.modules[node.target]
            if isinstance(m, nn.ReLU6):
                return Activation.RELU6
            if isinstance(m, nn.ReLU):
                return Activation.RELU
            if isinstance(m, nn.Hardtanh) and m.min_val == 0.0 and m.max_val == 6.0:
                return Activation.RELU6
        if node.op == "call_function" and node.target in (F.relu, torch.relu):
            return Activation.RELU
        if node.op == "call_function" and node.target is F.relu6:
            return Activation.RELU6
        if node.op == "call_method" and node.target == "relu":
            return Activation.RELU
        return None

    def _fuse_tail(self, node: fx.Node, allow_bn: bool):
        """Return (last fused node, bn module or None, activation)."""
        last, bn = node, None
        nxt = self._single_user(last)
        if allow_bn and self._is_bn(nxt):
            bn = self.modules[nxt.target]
            self.fused.add(nxt)
            last = nxt
            nxt = self._single_user(last)
        act = self._activation_of(nxt)
        if act is not None:
            self.fused.add(nxt)
            last = nxt
        return last, bn, act or Activation.NONE

    # ------------------------------------------------------------------- ops
    def conv(self, node: fx.Node, m: nn.Conv2d) -> None:
        src = self._value(node, node.args[0])
        if src.flat_from is not None:
            self._fail(node, "Conv2d on a flattened tensor")
        if m.padding_mode != "zeros":
            self._fail(node, f"padding_mode={m.padding_mode!r} (only zeros)")
        cin = m.in_channels
        kh, kw = m.kernel_size
        sh, sw = m.stride
        dh, dw = m.dilation
        if m.padding == "same":
            # PyTorch 'same' (stride 1): total = d*(k-1), extra on the bottom/right
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = [th // 2, th - th // 2, tw // 2, tw - tw // 2]
        elif m.padding == "valid":
            pads = [0, 0, 0, 0]
        else:
            ph, pw = m.padding
            pads = [ph, ph, pw, pw]
        if src.pending_pads is not None:
            pads = [a + b for a, b in zip(pads, src.pending_pads)]
        last, bn, act = self._fuse_tail(node, allow_bn=True)
        w = m.weight.detach().double().numpy()                      # OIHW (groups: O, I/g, H, W)
        b = (m.bias.detach().double().numpy() if m.bias is not None
             else np.zeros(m.out_channels))
        if bn is not None:
            if bn.running_mean is None or bn.running_var is None:
                self._fail(node, "BatchNorm2d without running statistics (track_running_stats=False)")
            mean = bn.running_mean.detach().double().numpy()
            var = bn.running_var.detach().double().numpy()
            gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(mean)
            beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(mean)
            k = gamma / np.sqrt(var + bn.eps)
            w = w * k[:, None, None, None]
            b = (b - mean) * k + beta
        out = self._new_tensor(last, self._module_path(node).replace(".", "_") or "conv")
        name = self._module_path(node)
        common = dict(name=name, inputs=[src.tensor], output=out, source=f"{node.name} ({name})",
                      bias=b.astype(np.float32), stride=(sh, sw), pads=tuple(pads),
                      dilation=(dh, dw), activation=act)
        if m.groups == 1:
            op: Op = Conv2D(weight=np.ascontiguousarray(w.transpose(0, 2, 3, 1)).astype(np.float32),
                            **common)
        elif m.groups == cin:
            mult = m.out_channels // cin
            # torch (C*mult, 1, KH, KW) -> TFLite (1, KH, KW, C*mult); channel o = c*mult + j in both
            wd = np.ascontiguousarray(w.transpose(1, 2, 3, 0)).astype(np.float32)
            op = DepthwiseConv2D(weight=wd, depth_multiplier=mult, **common)
        else:
            self._fail(node, f"groups={m.groups} (only 1 or depthwise groups=in_channels)")
        self.g.add_op(op)
        self.values[last] = _Value(out)

    def linear(self, node: fx.Node, m: nn.Linear) -> None:
        src = self._value(node, node.args[0])
        if src.pending_pads is not None:
            self._fail(node, "padding before a Linear layer")
        w = m.weight.detach().double().numpy()
        if src.flat_from is not None and self._is_feature_map(src.flat_from):
            h, wd, c = src.flat_from
            # torch column index c*H*W + y*W + x  ->  IR (NHWC) index (y*W + x)*C + c
            w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        elif len(self.g.tensors[src.tensor].shape) != 1:
            self._fail(node, "Linear on a tensor that is not flattened (apply it after Flatten)")
        last, _, act = self._fuse_tail(node, allow_bn=False)
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_features)
        out = self._new_tensor(last, self._module_path(node).replace(".", "_"))
        name = self._module_path(node)
        self.g.add_op(FullyConnected(name=name, inputs=[src.tensor], output=out,
                                     source=f"{node.name} ({name})",
                                     weight=np.ascontiguousarray(w).astype(np.float32),
                                     bias=b.astype(np.float32), activation=act))
        self.values[last] = _Value(out)

    def _pool(self, node, kind, kernel, stride, padding, ceil_mode, extra_ok=True):
        src = self._plain(node, node.args[0])
        if ceil_mode:
            self._fail(node, "ceil_mode=True pooling")
        kernel, stride = _pair(kernel), _pair(stride if stride is not None else kernel)
        ph, pw = _pair(padding)
        if kind == "avg" and (ph or pw):
            self._fail(node, "average pooling with padding (TFLite excludes padding from the count)")
        if not extra_ok:
            self._fail(node, "dilation is not supported for pooling")
        out = self._new_tensor(node, self._module_path(node).replace(".", "_"))
        name = self._module_path(node)
        cls = MaxPool2D if kind == "max" else AvgPool2D
        self.g.add_op(cls(name=name, inputs=[src], output=out, source=f"{node.name} ({name})",
                          kernel=kernel, stride=stride, pads=(ph, ph, pw, pw)))
        self.values[node] = _Value(out)

    def maxpool_mod(self, node, m: nn.MaxPool2d) -> None:
        self._pool(node, "max", m.kernel_size, m.stride, m.padding, m.ceil_mode,
                   extra_ok=_pair(m.dilation) == (1, 1) and not m.return_indices)

    def avgpool_mod(self, node, m: nn.AvgPool2d) -> None:
        if m.divisor_override is not None:
            self._fail(node, "divisor_override")
        self._pool(node, "avg", m.kernel_size, m.stride, m.padding, m.ceil_mode)

    def global_pool(self, node: fx.Node, keepdim: bool) -> None:
        src = self._plain(node, node.args[0])
        h, w, c = self.g.tensors[src].shape
        name = self._module_path(node)
        pooled = self._name(name.replace(".", "_"))
        self.g.add_tensor(TensorSpec(pooled, (1, 1, c)))
        self.g.add_op(AvgPool2D(name=name, inputs=[src], output=pooled, source=f"{node.name} ({name})",
                                kernel=(h, w), stride=(h, w)))
        if keepdim:
            self.values[node] = _Value(pooled)
        else:
            out = self._name(pooled + "_flat")
            self.g.add_tensor(TensorSpec(out, (c,)))
            self.g.add_op(Reshape(name=name + ".flatten", inputs=[pooled], output=out,
                                  source=f"{node.name} ({name})", shape=(c,)))
            self.values[node] = _Value(out, flat_from=(1, 1, c))

    def adaptive_avg_mod(self, node, m: nn.AdaptiveAvgPool2d) -> None:
        if _pair(m.output_size) != (1, 1):
            self._fail(node, f"AdaptiveAvgPool2d({m.output_size}) (only output size 1)")
        self.global_pool(node, keepdim=True)

    def flatten(self, node: fx.Node, start_dim: int = 1, end_dim: int = -1) -> None:
        if start_dim != 1 or end_dim not in (-1, 3):
            self._fail(node, f"flatten(start_dim={start_dim}, end_dim={end_dim}) (only from dim 1)")
        v = self._value(node, node.args[0])
        if v.pending_pads is not None:
            self._fail(node, "padding before flatten")
        shape = self.g.tensors[v.tensor].shape
        if len(shape) == 1:
            self.values[node] = v
            return
        name = self._module_path(node)
        out = self._name(name.replace(".", "_"))
        self.g.add_tensor(TensorSpec(out, (int(np.prod(shape)),)))
        self.g.add_op(Reshape(name=name, inputs=[v.tensor], output=out, source=f"{node.name} ({name})",
                              shape=(int(np.prod(shape)),)))
        self.values[node] = _Value(out, flat_from=tuple(shape))

    def flatten_mod(self, node, m: nn.Flatten) -> None:
        self.flatten(node, m.start_dim, m.end_dim)

    def identity(self, node, m=None) -> None:
        self.values[node] = self._value(node, node.args[0])

    def zeropad(self, node, pad) -> None:
        src = self._value(node, node.args[0])
        if len(pad) != 4:
            self._fail(node, f"padding {pad} (only 2-D (left, right, top, bottom) padding)")
        left, right, top, bottom = (int(p) for p in pad)
        if min(pad) < 0:
            self._fail(node, "negative padding (cropping)")
        prev = src.pending_pads or (0, 0, 0, 0)
        self.values[node] = _Value(src.tensor, pending_pads=(prev[0] + top, prev[1] + bottom,
                                                             prev[2] + left, prev[3] + right))

    def zeropad_mod(self, node, m: nn.ZeroPad2d) -> None:
        self.zeropad(node, m.padding)

    def pad_fn(self, node) -> None:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 0.0)
        if mode != "constant" or (value or 0.0) != 0.0:
            self._fail(node, f"F.pad(mode={mode!r}, value={value}) (only zero padding)")
        self.zeropad(node, pad)

    def add(self, node: fx.Node) -> None:
        a, b = node.args[0], node.args[1]
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
            self._fail(node, "adding a constant (only tensor + tensor residual adds)")
        if node.kwargs.get("alpha", 1) != 1:
            self._fail(node, "torch.add with alpha != 1")
        ta, tb = self._plain(node, a), self._plain(node, b)
        if self.g.tensors[ta].shape != self.g.tensors[tb].shape:
            self._fail(node, f"add of shapes {self.g.tensors[ta].shape} and {self.g.tensors[tb].shape} "
                             "(broadcasting is not supported)")
        last, _, act = self._fuse_tail(node, allow_bn=False)
        out = self._new_tensor(last, node.name)
        self.g.add_op(Add(name=node.name, inputs=[ta, tb], output=out, source=node.name, activation=act))
        self.values[last] = _Value(out)

    def cat(self, node: fx.Node) -> None:
        tensors = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        rank = len(node.meta["tensor_meta"].shape)
        if rank != 4 or dim not in (1, -3):
            self._fail(node, f"torch.cat(dim={dim}) (only channel concat, dim=1, of feature maps)")
        names = [self._plain(node, t) for t in tensors]
        out = self._new_tensor(node, node.name)
        self.g.add_op(Concat(name=node.name, inputs=names, output=out, source=node.name, axis=-1))
        self.values[node] = _Value(out)

    def softmax(self, node: fx.Node, dim) -> None:
        src = self._plain(node, node.args[0])
        if len(self.g.tensors[src].shape) != 1 or dim not in (1, -1):
            self._fail(node, f"softmax(dim={dim}) (only over the class vector of a classifier)")
        if self._users(node) and any(u.op != "output" for u in self._users(node)):
            self._fail(node, "softmax must be the final op")
        out = self._new_tensor(node, node.name)
        self.g.add_op(Softmax(name=self._module_path(node), inputs=[src], output=out, source=node.name))
        self.values[node] = _Value(out)

    def relu_standalone(self, node: fx.Node) -> None:
        self._fail(node, "ReLU that does not directly follow a Conv2d, BatchNorm2d, Linear or add "
                         "(it cannot be fused)")


def _fn_flatten(c: _Capturer, node: fx.Node) -> None:
    start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
    end = node.kwargs.get("end_dim", node.args[2] if len(node.args) > 2 else -1)
    c.flatten(node, start, end)


def _method_view(c: _Capturer, node: fx.Node) -> None:
    shape = node.args[1:] if len(node.args) > 1 else node.kwargs.get("shape", ())
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    rest = [s for s in shape[1:]]
    first = shape[0] if shape else None
    batch_ok = isinstance(first, fx.Node) or first in (-1, 1)
    total = int(np.prod(c._shape(node)))
    if len(shape) == 2 and batch_ok and rest[0] in (-1, total):
        c.flatten(node, 1, -1)
        return
    c._fail(node, f".{node.target}{tuple(shape)} (only flattening to (N, -1))")


def _method_size(c: _Capturer, node: fx.Node) -> None:
    users = c._users(node)
    if all(u.op == "call_method" and u.target in ("view", "reshape") for u in users):
        c.fused.add(node)  # only used as the batch dimension of a flatten
        return
    c._fail(node, "x.size() used for anything but x.view(x.size(0), -1)")


def _mean(c: _Capturer, node: fx.Node) -> None:
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    keepdim = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
    dims = tuple(sorted(d % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])))
    if dims != (2, 3):
        c._fail(node, f"mean over dims {dims} (only the spatial dims (2, 3))")
    c.global_pool(node, keepdim=bool(keepdim))


def _fn_adaptive(c: _Capturer, node: fx.Node) -> None:
    size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
    if _pair(size) != (1, 1):
        c._fail(node, f"adaptive_avg_pool2d({size}) (only output size 1)")
    c.global_pool(node, keepdim=True)


def _fn_maxpool(c: _Capturer, node: fx.Node) -> None:
    a, k = node.args, node.kwargs
    get = lambda i, n, d: k.get(n, a[i] if len(a) > i else d)  # noqa: E731
    kernel = get(1, "kernel_size", None)
    c._pool(node, "max", kernel, get(2, "stride", None) or kernel, get(3, "padding", 0),
            get(5, "ceil_mode", False), extra_ok=_pair(get(4, "dilation", 1)) == (1, 1))


def _fn_avgpool(c: _Capturer, node: fx.Node) -> None:
    a, k = node.args, node.kwargs
    get = lambda i, n, d: k.get(n, a[i] if len(a) > i else d)  # noqa: E731
    kernel = get(1, "kernel_size", None)
    c._pool(node, "avg", kernel, get(2, "stride", None) or kernel, get(3, "padding", 0),
            get(4, "ceil_mode", False))


def _softmax_fn(c: _Capturer, node: fx.Node) -> None:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    c.softmax(node, dim)


_MODULE_HANDLERS = {
    nn.Conv2d: _Capturer.conv,
    nn.Linear: _Capturer.linear,
    nn.MaxPool2d: _Capturer.maxpool_mod,
    nn.AvgPool2d: _Capturer.avgpool_mod,
    nn.AdaptiveAvgPool2d: _Capturer.adaptive_avg_mod,
    nn.Flatten: _Capturer.flatten_mod,
    nn.Identity: _Capturer.identity,
    nn.Dropout: _Capturer.identity,
    nn.ZeroPad2d: _Capturer.zeropad_mod,
    nn.Softmax: lambda c, n, m: c.softmax(n, m.dim),
    nn.ReLU: lambda c, n, m: c.relu_standalone(n),
    nn.ReLU6: lambda c, n, m: c.relu_standalone(n),
    nn.BatchNorm2d: lambda c, n, m: c._fail(n, "BatchNorm2d that does not directly follow a Conv2d"),
}

_FUNCTION_HANDLERS = {
    operator.add: _Capturer.add,
    torch.add: _Capturer.add,
    torch.cat: _Capturer.cat,
    torch.concat: _Capturer.cat,
    torch.flatten: _fn_flatten,
    torch.mean: _mean,
    F.adaptive_avg_pool2d: _fn_adaptive,
    F.max_pool2d: _fn_maxpool,
    F.avg_pool2d: _fn_avgpool,
    F.softmax: _softmax_fn,
    torch.softmax: _softmax_fn,
    F.pad: _Capturer.pad_fn,
    F.relu: _Capturer.relu_standalone,
    torch.relu: _Capturer.relu_standalone,
    F.relu6: _Capturer.relu_standalone,
}

_METHOD_HANDLERS = {
    "view": _method_view,
    "reshape": _method_view,
    "flatten": lambda c, n: c.flatten(n, n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0),
                                      n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)),
    "size": _method_size,
    "mean": _mean,
    "softmax": _softmax_fn,
    "relu": _Capturer.relu_standalone,
}


def capture(model: nn.Module, input_shape: tuple[int, int, int]) -> Graph:
    """Trace ``model`` (eval mode) and return its float IR for inputs of shape ``(C, H, W)``.

    BatchNorm is folded, ReLU/ReLU6 fused; weights become OHWI, activations NHWC.
    Raises :class:`UnsupportedOpError` naming the node, module path and op of the
    first thing that cannot be represented.
    """
    return _Capturer(model, tuple(input_shape)).run()
