"""Fake quantization for quantization-aware fine-tuning (QAT), matching dtmm's int8 scheme.

Pieces a training loop can hold on its own:

* :class:`FakeQuantize` - per-tensor asymmetric int8 activation fake-quant with a
  moving min/max observer (straight-through estimator for the rounding); its
  parameters come from :func:`dtmm.quant.calibrate.choose_qparams`, the very function
  the int8 export uses, and it rounds in float64 as :func:`~dtmm.quant.quantize.quantize_input`;
* :class:`AvgPoolFakeQuant` - the rounding of an int8 average pool (TFLite rounds the
  mean of the raw int8 values half away from zero), with the input's parameters;
* :class:`WeightFakeQuant` - a ``torch.nn.utils.parametrize`` parametrization that
  fake-quantizes a weight per output channel, symmetric in [-127, 127], exactly
  like :func:`dtmm.quant.quantize.quantize_weights`;
* :func:`fold_batchnorm` - a copy of a model with every Conv2d+BatchNorm2d pair folded
  (so weight fake-quant sees the weights that will be deployed); pruning masks stay;
* :func:`prepare_qat` - fold BN, parametrize conv/linear weights (after their pruning
  masks, which keep holding), insert activation fake-quant where the int8 graph has a
  requantized tensor. The result is an ordinary ``nn.Module`` (a
  ``torch.fx.GraphModule``) that trains with any loop (e.g.
  :func:`dtmm.train.finetune.fine_tune`);
* :func:`strip_qat` + :func:`learned_ranges` - the float model for
  :func:`dtmm.graph.capture.capture` and the activation ranges learned under
  fake-quant, which :func:`dtmm.quant.quantize.quantize_graph` takes as ``ranges=`` so
  the int8 model uses them instead of recalibrating; :func:`quantize_qat` does all three.

**How a fake-quant module maps to an IR tensor.** Each :class:`FakeQuantize` records in
``observes`` the IR op whose output it quantizes: the module path of the conv /
linear it follows (capture names those ops by module path), the fx node name of the
residual add it follows (capture names adds by node name), or :data:`INPUT_KEY` for the
model input. ReLU / ReLU6 after them is fused in the IR, so the fake-quant sits after
the activation, on the same tensor. :func:`learned_ranges` returns ``{observes: (lo, hi)}``;
``quantize_graph`` maps each key to that op's output tensor (or the graph input) and
refuses keys that name no op. Pools, flatten and concat keep their input's parameters
in int8, so their tensors take their range from their group.

**How close the export is.** The exported int8 model computes each layer with integer
arithmetic (int32 bias at scale ``s_in * s_w``, fixed-point requantization), the
fake-quant model in float with a float bias. They agree on almost every value; where
they differ, the float value was within a small fraction of an LSB of a rounding
boundary (``tests/test_qat.py`` measures it). Concat inputs share one set of int8
parameters (the union of their learned ranges), which fake-quant does not simulate.

Example:
    >>> import torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    ...                   nn.Flatten(), nn.Linear(64, 2))
    >>> q = prepare_qat(m)
    >>> q(torch.rand(2, 1, 4, 4)).shape
    torch.Size([2, 2])
    >>> sorted(f.observes for f in q.modules() if isinstance(f, FakeQuantize))
    ['0', '4', '<input>']
    >>> sorted(learned_ranges(q))
    ['0', '4', '<input>']
"""
from __future__ import annotations

import copy
import operator
from typing import Iterable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from dtmm.errors import QuantizationError
from dtmm.quant.calibrate import choose_qparams

__all__ = ["FakeQuantize", "AvgPoolFakeQuant", "WeightFakeQuant", "fold_batchnorm", "prepare_qat",
           "strip_qat", "learned_ranges", "integer_outputs", "quantize_qat", "INPUT_KEY"]

#: Key of the model input's range in :func:`learned_ranges` (and ``quantize_graph(ranges=...)``).
INPUT_KEY = "<input>"


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # noqa: D102
        return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g


def _round(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (as the int8 export), identity gradient."""
    return _RoundSTE.apply(x)


class FakeQuantize(nn.Module):
    """Per-tensor asymmetric int8 fake quantization with an EMA min/max observer.

    In training mode the observed range is updated (``momentum`` EMA after the
    first batch); in eval mode it is frozen. The scale and zero point are
    :func:`~dtmm.quant.calibrate.choose_qparams` of the range (real 0 exactly
    representable), and ``x / scale`` is rounded in float64, as the int8 export
    quantizes. ``observes`` names the IR op whose output this quantizes (see the
    module docstring).
    """

    def __init__(self, momentum: float = 0.1, observes: str = ""):
        super().__init__()
        self.momentum = momentum
        self.observes = observes
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"observes={self.observes!r}"

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)`` as float64 scalars (the scale is a float32 value)."""
        qp = choose_qparams(float(self.lo), float(self.hi))
        dev = self.lo.device
        return (torch.tensor(qp.s, dtype=torch.float64, device=dev),
                torch.tensor(float(qp.zp), dtype=torch.float64, device=dev))

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
        q = torch.clamp(_round(x.double() / scale) + zp, -128, 127)
        return ((q - zp) * scale).to(x.dtype)


class AvgPoolFakeQuant(nn.Module):
    """The rounding of an int8 average pool, with the parameters of the fake-quant before it.

    TFLite's int8 average pool keeps its input's scale and zero point and rounds the
    mean of the *raw* int8 values half away from zero. This computes that from the
    float pool output: ``v = x / s + zp`` is snapped to the nearest multiple of
    ``1 / count`` (the mean of ``count`` integers; this removes float summation
    error) and rounded. ``count`` is the window size, or, for a global pool, taken
    from the pool's input (``forward(x, src)``). Gradient: identity.
    """

    def __init__(self, source: FakeQuantize, count: int | None = None):
        super().__init__()
        object.__setattr__(self, "_source", source)      # a reference, not a second submodule
        self.count = count

    def __deepcopy__(self, memo):
        new = AvgPoolFakeQuant.__new__(AvgPoolFakeQuant)
        memo[id(self)] = new
        nn.Module.__init__(new)
        object.__setattr__(new, "_source", copy.deepcopy(self._source, memo))
        new.count = self.count
        new.training = self.training
        return new

    def forward(self, x: torch.Tensor, src: torch.Tensor | None = None) -> torch.Tensor:
        fq = self._source
        if not bool(fq.initialized):
            return x
        count = self.count if src is None else int(src.shape[-1] * src.shape[-2])
        scale, zp = fq.qparams()
        v = x.double() / scale + zp
        v = v + (torch.round(v * count) / count - v).detach()
        q = torch.clamp(_round(v), -128, 127)
        return ((q - zp) * scale).to(x.dtype)


class WeightFakeQuant(nn.Module):
    """Parametrization: symmetric int8 fake-quant per slice along ``axis`` (0 = out channels).

    ``axis=None`` quantizes per tensor (as dtmm does for fully connected layers). The
    scale is ``float32(max|w|) / 127`` in float32 and ``w / scale`` is rounded in
    float64, exactly as :func:`dtmm.quant.quantize.symmetric_weight_scales` and
    :func:`~dtmm.quant.quantize.quantize_weights` do at export, so the exported int8
    weights are the integers this simulates.
    """

    def __init__(self, axis: int | None = 0):
        super().__init__()
        self.axis = axis

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        wd = w.detach().float()
        if self.axis is None:
            m = wd.abs().max()
        else:
            dims = [d for d in range(w.dim()) if d != self.axis]
            m = wd.abs().amax(dim=dims, keepdim=True)
        scale = torch.where(m > 0, m, torch.ones_like(m)) / 127.0           # float32, as the export
        q = torch.clamp(_round(w.double() / scale.double()), -127, 127)
        return (q * scale.double()).to(w.dtype)


def _mask_only_chain(conv: nn.Module, what: str) -> None:
    from dtmm.prune.masks import WeightMask

    if parametrize.is_parametrized(conv, "weight"):
        bad = [type(p).__name__ for p in conv.parametrizations["weight"] if not isinstance(p, WeightMask)]
        if bad:
            raise QuantizationError(f"{what}: weight parametrization(s) {bad} present; fold BatchNorm "
                                    "before prepare_qat adds weight fake-quant")


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """Return a traced copy of ``model`` with each BatchNorm2d that follows a Conv2d folded in.

    Works on masked models: the BN scale multiplies the stored weight
    (``parametrizations.weight.original``) and the mask keeps applying on top, which
    is the same as scaling the masked weight (the scale is per output channel).
    The model's own train/eval mode is kept; BN running statistics are used.

    Example:
        >>> import torch, torch.nn as nn
        >>> from dtmm.prune import apply_masks
        >>> m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
        >>> m[1].running_var.fill_(4.0)
        tensor([4., 4.])
        >>> _ = apply_masks(m, {"0": torch.ones(2, 1, 3, 3, dtype=torch.bool)})
        >>> x = torch.rand(1, 1, 5, 5)
        >>> bool(torch.allclose(fold_batchnorm(m)(x), m(x), atol=1e-6))
        True
    """
    was_training = model.training
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
        _mask_only_chain(conv, f"conv {prev.target!r}")
        with torch.no_grad():
            gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
            beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
            k = gamma / torch.sqrt(bn.running_var + bn.eps)
            stored = (conv.parametrizations["weight"].original if parametrize.is_parametrized(conv, "weight")
                      else conv.weight)
            stored.mul_(k.view(-1, 1, 1, 1).to(stored.dtype))
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_b = (b - bn.running_mean) * k + beta
            conv.bias = nn.Parameter(new_b.detach().clone())
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.train(was_training)
    return gm


def _is_relu(node: fx.Node, mods) -> bool:
    if node.op == "call_module":
        m = mods[node.target]
        return isinstance(m, (nn.ReLU, nn.ReLU6)) or (isinstance(m, nn.Hardtanh) and m.min_val == 0.0
                                                       and m.max_val == 6.0)
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, F.relu6)
    return node.op == "call_method" and node.target == "relu"


_PASS_THROUGH_MODULES = (nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)
_PASS_THROUGH_FUNCTIONS = (F.max_pool2d, torch.flatten)


def _avg_pool_count(node: fx.Node, mods) -> tuple[bool, int | None] | None:
    """``(global, count)`` of an average-pool node, or None if the node is not one."""
    if node.op == "call_module":
        m = mods[node.target]
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return True, None
        if isinstance(m, nn.AvgPool2d):
            k = (m.kernel_size, m.kernel_size) if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
            return False, int(k[0]) * int(k[1])
    if node.op == "call_function":
        if node.target is F.adaptive_avg_pool2d or node.target is torch.mean:
            return True, None
        if node.target is F.avg_pool2d:
            k = node.kwargs.get("kernel_size", node.args[1] if len(node.args) > 1 else None)
            k = (k, k) if isinstance(k, int) else tuple(k)
            return False, int(k[0]) * int(k[1])
    if node.op == "call_method" and node.target == "mean":
        return True, None
    return None


def _source_fake_quant(node: fx.Node, mods) -> FakeQuantize | None:
    """The FakeQuantize whose parameters tensor ``node`` carries (through max pool / flatten)."""
    cur = node
    while isinstance(cur, fx.Node):
        if cur.op == "call_module" and isinstance(mods.get(cur.target), FakeQuantize):
            return mods[cur.target]
        passes = ((cur.op == "call_module" and isinstance(mods.get(cur.target), _PASS_THROUGH_MODULES))
                  or (cur.op == "call_function" and cur.target in _PASS_THROUGH_FUNCTIONS)
                  or (cur.op == "call_method" and cur.target in ("view", "reshape", "flatten")))
        if not passes:
            return None
        cur = cur.args[0]
    return None


def prepare_qat(model: nn.Module) -> fx.GraphModule:
    """Fold BN and insert weight and activation fake-quant for fine-tuning in the loop.

    Activation fake-quant (:class:`FakeQuantize`) is placed after the model input and
    after every conv / linear / residual add (after its ReLU when one follows), i.e.
    where the int8 graph requantizes; an :class:`AvgPoolFakeQuant` follows every
    average pool. Max pools, flatten and concat keep their input's parameters in int8,
    so they get none. Conv / linear weights get :class:`WeightFakeQuant` *after* any
    pruning mask (the chain is ``mask -> fake-quant``), so masks keep holding: the
    gradient to a pruned weight stays zero, and ``get_masks`` / ``apply_masks`` work on
    the result as on the input. The returned model is in the input's train/eval mode.
    """
    gm = fold_batchnorm(model)
    mods = dict(gm.named_modules())
    for name, m in list(mods.items()):
        if isinstance(m, nn.Conv2d):
            _mask_only_chain(m, f"conv {name!r}")
            parametrize.register_parametrization(m, "weight", WeightFakeQuant(axis=0))
        elif isinstance(m, nn.Linear):
            _mask_only_chain(m, f"linear {name!r}")
            parametrize.register_parametrization(m, "weight", WeightFakeQuant(axis=None))
    counter = 0
    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            key = INPUT_KEY
        elif node.op == "call_module" and isinstance(mods.get(node.target), (nn.Conv2d, nn.Linear)):
            key = str(node.target)
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            key = node.name
        else:
            continue
        users = list(node.users)
        anchor = users[0] if len(users) == 1 and _is_relu(users[0], mods) else node
        fq_name = f"fake_quant_{counter}"
        counter += 1
        gm.add_submodule(fq_name, FakeQuantize(observes=key))
        with gm.graph.inserting_after(anchor):
            fq = gm.graph.call_module(fq_name, (anchor,))
        anchor.replace_all_uses_with(fq, delete_user_cb=lambda u: u is not fq)
    mods = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        info = _avg_pool_count(node, mods)
        if info is None:
            continue
        src = _source_fake_quant(node.args[0], mods)
        if src is None:
            continue
        is_global, count = info
        name = f"fake_quant_{counter}"
        counter += 1
        gm.add_submodule(name, AvgPoolFakeQuant(src, count))
        with gm.graph.inserting_after(node):
            args = (node, node.args[0]) if is_global else (node,)
            fq = gm.graph.call_module(name, args)
        node.replace_all_uses_with(fq, delete_user_cb=lambda u: u is not fq)
    gm.graph.lint()
    gm.recompile()
    gm.train(model.training)
    return gm


def strip_qat(model: fx.GraphModule) -> fx.GraphModule:
    """A copy with fake-quant removed and weights kept float (ready for :func:`capture`).

    Other weight parametrizations (pruning masks) are baked into the returned weights.
    The activation ranges the fake-quant modules learned are read by
    :func:`learned_ranges` (from the QAT model, before or after stripping a copy).
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
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target),
                                                   (FakeQuantize, AvgPoolFakeQuant)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def learned_ranges(model: nn.Module) -> dict[str, tuple[float, float]]:
    """``{observes: (lo, hi)}`` of every :class:`FakeQuantize` of a QAT model.

    Keys are IR op names (conv / linear module paths, add node names) or
    :data:`INPUT_KEY`; pass the dict as ``quantize_graph(graph, ..., ranges=...)``.
    Raises :class:`QuantizationError` for a fake-quant that never observed data (run
    the QAT model in train mode on data first) or two that claim the same tensor.
    """
    out: dict[str, tuple[float, float]] = {}
    for name, m in model.named_modules():
        if not isinstance(m, FakeQuantize):
            continue
        if not m.observes:
            raise QuantizationError(f"fake-quant {name!r} does not record which tensor it observes "
                                    "(build QAT models with prepare_qat)")
        if not bool(m.initialized):
            raise QuantizationError(f"fake-quant {name!r} ({m.observes!r}) never observed data: run the "
                                    "QAT model in train mode on some batches first")
        if m.observes in out:
            raise QuantizationError(f"two fake-quant modules observe {m.observes!r}")
        out[m.observes] = (float(m.lo), float(m.hi))
    return out


def _output_fake_quant(model: fx.GraphModule) -> FakeQuantize:
    mods = dict(model.named_modules())
    out = next(n for n in model.graph.nodes if n.op == "output")
    arg = out.args[0]
    if isinstance(arg, (tuple, list)) and len(arg) == 1:
        arg = arg[0]
    if not (isinstance(arg, fx.Node) and arg.op == "call_module" and isinstance(mods.get(arg.target), FakeQuantize)):
        raise QuantizationError("the QAT model's output is not produced by a FakeQuantize "
                                "(build it with prepare_qat; a final softmax is not supported here)")
    return mods[arg.target]


@torch.no_grad()
def integer_outputs(model: fx.GraphModule, x: torch.Tensor) -> np.ndarray:
    """The int8 values the QAT model's final fake-quant produces for ``x`` (eval mode).

    These are the numbers the exported int8 model should output (NCHW batch in,
    ``(N, classes)`` int8 out).

    Example:
        >>> import torch, torch.nn as nn
        >>> q = prepare_qat(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
        >>> _ = q(torch.rand(8, 1, 2, 2))                       # observe ranges (train mode)
        >>> integer_outputs(q, torch.rand(2, 1, 2, 2)).dtype
        dtype('int8')
    """
    fq = _output_fake_quant(model)
    was = model.training
    model.eval()
    try:
        y = model(x).double()
    finally:
        model.train(was)
    scale, zp = fq.qparams()
    q = torch.round(y / scale) + zp                 # y = (q - zp) * scale exactly up to float error
    return torch.clamp(q, -128, 127).to(torch.int8).cpu().numpy()


def quantize_qat(model: fx.GraphModule, input_shape: tuple[int, int, int],
                 calibration: Iterable[np.ndarray] | None = None, *, method: str = "minmax"):
    """Export a QAT model: strip, capture, quantize with the learned activation ranges.

    Returns ``(float_graph, int8_graph)``. ``calibration`` (NHWC float batches) is only
    needed for tensors no fake-quant observed (there are none in a
    :func:`prepare_qat` model of the supported ops).

    Example:
        >>> import torch, torch.nn as nn
        >>> q = prepare_qat(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))
        >>> _ = q(torch.rand(4, 1, 4, 4))
        >>> g, qg = quantize_qat(q, (1, 4, 4))
        >>> qg.is_quantized, qg.tensors[qg.inputs[0]].qparams.s == q.fake_quant_0.qparams()[0].item()
        (True, True)
    """
    from dtmm.graph.capture import capture
    from dtmm.quant.quantize import quantize_graph

    ranges = learned_ranges(model)
    g = capture(strip_qat(model), tuple(input_shape))
    return g, quantize_graph(g, calibration, method=method, ranges=ranges)
