"""Fake quantization for quantization-aware fine-tuning (QAT), matching dtmm's int8 scheme.

Pieces a training loop can hold on its own:

* :class:`FakeQuantize` - per-tensor asymmetric int8 activation fake-quant with a
  moving min/max observer (straight-through estimator for the rounding);
* :class:`WeightFakeQuant` - a ``torch.nn.utils.parametrize`` parametrization that
  fake-quantizes a weight per output channel, symmetric in [-127, 127], exactly
  like :func:`dtmm.quant.quantize.quantize_weights`;
* :func:`fold_batchnorm` - a copy of a model with every Conv2d+BatchNorm2d pair folded
  (so weight fake-quant sees the weights that will be deployed);
* :func:`prepare_qat` - fold BN, parametrize conv/linear weights, insert activation
  fake-quant where the int8 graph has a requantized tensor. The result is an
  ordinary ``nn.Module`` (a ``torch.fx.GraphModule``) that trains with any loop and
  can be captured by :func:`dtmm.graph.capture.capture` after :func:`strip_qat`.

Example:
    >>> import torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    ...                   nn.Flatten(), nn.Linear(64, 2))
    >>> q = prepare_qat(m)
    >>> q(torch.rand(2, 1, 4, 4)).shape
    torch.Size([2, 2])
    >>> sum(isinstance(x, FakeQuantize) for x in q.modules())
    3
"""
from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

__all__ = ["FakeQuantize", "WeightFakeQuant", "fold_batchnorm", "prepare_qat", "strip_qat"]


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g


def _round(x: torch.Tensor) -> torch.Tensor:
    return _RoundSTE.apply(x)


class FakeQuantize(nn.Module):
    """Per-tensor asymmetric int8 fake quantization with an EMA min/max observer.

    In training mode the observed range is updated (``momentum`` EMA after the
    first batch); in eval mode it is frozen. Real 0 is exactly representable.
    """

    def __init__(self, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        scale = torch.clamp((hi - lo) / 255.0, min=1e-8)
        zp = torch.clamp(torch.round(-128 - lo / scale), -128, 127)
        return scale, zp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if not bool(self.initialized):
                    self.lo.copy_(lo)
                    self.hi.copy_(hi)
                    self.initialized.fill_(True)
                else:
                    self.lo.lerp_(lo, self.momentum)
                    self.hi.lerp_(hi, self.momentum)
        if not bool(self.initialized):
            return x
        scale, zp = self.qparams()
        q = torch.clamp(_round(x / scale) + zp, -128, 127)
        return (q - zp) * scale


class WeightFakeQuant(nn.Module):
    """Parametrization: symmetric int8 fake-quant per slice along ``axis`` (0 = out channels).

    ``axis=None`` quantizes per tensor (as dtmm does for fully connected layers).
    """

    def __init__(self, axis: int | None = 0):
        super().__init__()
        self.axis = axis

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            m = w.detach().abs().max()
        else:
            dims = [d for d in range(w.dim()) if d != self.axis]
            m = w.detach().abs().amax(dim=dims, keepdim=True)
        scale = torch.where(m > 0, m, torch.ones_like(m)) / 127.0
        return torch.clamp(_round(w / scale), -127, 127) * scale


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """Return a traced copy of ``model`` with each BatchNorm2d that follows a Conv2d folded in."""
    gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    mods = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(mods[node.target], nn.BatchNorm2d):
            continue
        prev = node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module"
                and isinstance(mods[prev.target], nn.Conv2d) and len(prev.users) == 1):
            continue
        conv, bn = mods[prev.target], mods[node.target]
        with torch.no_grad():
            gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
            beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
            k = gamma / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(k.view(-1, 1, 1, 1))
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_b = (b - bn.running_mean) * k + beta
            conv.bias = nn.Parameter(new_b)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _is_relu(node: fx.Node, mods) -> bool:
    if node.op == "call_module":
        return isinstance(mods[node.target], (nn.ReLU, nn.ReLU6))
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, F.relu6)
    return node.op == "call_method" and node.target == "relu"


def prepare_qat(model: nn.Module) -> fx.GraphModule:
    """Fold BN and insert weight and activation fake-quant for fine-tuning in the loop.

    Activation fake-quant is placed after the model input and after every
    conv / linear / residual add (after its ReLU when one follows), i.e. where
    the int8 graph requantizes. Pools, flatten and concat keep their input's
    parameters in int8, so they get none.
    """
    gm = fold_batchnorm(model)
    mods = dict(gm.named_modules())
    for name, m in list(mods.items()):
        if isinstance(m, nn.Conv2d):
            parametrize.register_parametrization(m, "weight", WeightFakeQuant(axis=0))
        elif isinstance(m, nn.Linear):
            parametrize.register_parametrization(m, "weight", WeightFakeQuant(axis=None))
    counter = 0
    for node in list(gm.graph.nodes):
        producing = (node.op == "placeholder"
                     or (node.op == "call_module" and isinstance(mods.get(node.target), (nn.Conv2d, nn.Linear)))
                     or (node.op == "call_function" and node.target in (operator.add, torch.add)))
        if not producing:
            continue
        users = list(node.users)
        anchor = users[0] if len(users) == 1 and _is_relu(users[0], mods) else node
        fq_name = f"fake_quant_{counter}"
        counter += 1
        gm.add_submodule(fq_name, FakeQuantize())
        with gm.graph.inserting_after(anchor):
            fq = gm.graph.call_module(fq_name, (anchor,))
        anchor.replace_all_uses_with(fq, delete_user_cb=lambda u: u is not fq)
    gm.graph.lint()
    gm.recompile()
    return gm


def strip_qat(model: fx.GraphModule) -> fx.GraphModule:
    """A copy with fake-quant removed and weights kept float (ready for :func:`capture`).

    Other weight parametrizations (pruning masks) are baked into the returned weights.
    """
    gm = copy.deepcopy(model)
    for name, m in gm.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            # Not parametrize.remove_parametrizations: a deep copy shares the injected
            # parametrized class with the original, and removing it would break the original.
            # Keep every other parametrization's effect (e.g. pruning masks), drop fake-quant.
            chain = m.parametrizations["weight"]
            with torch.no_grad():
                w = chain.original.detach().clone()
                for p in chain:
                    if not isinstance(p, WeightFakeQuant):
                        w = p(w)
            m.__class__ = type(m).__bases__[0]
            del m._modules["parametrizations"]
            m.weight = nn.Parameter(w)
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), FakeQuantize):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
