"""Channel surgery on a torch model: dead output channels leave the ``nn.Module`` itself.

:func:`dtmm.prune.dead.remove_dead_channels` removes constant (dead) channels from the
float *IR*; this module does the same to the *torch* model, so that fine-tuning, QAT
and evaluation see the physically smaller network that will be deployed (and can
train away the border error of folded constants, see below).

The IR pass is the specification, and it is reused rather than re-implemented: the
masked model is captured, :func:`~dtmm.prune.dead.remove_dead_channels` decides which
channels leave (the same tie rules: a channel leaves only when every op touching it
agrees, e.g. a residual ``Add`` channel only when it is dead on *both* sides; graph
outputs, softmax and flattened maps not read by a ``Linear`` pin channels) and what
constant each removed channel carries, and :func:`shrink_model` then applies exactly
that decision to the torch modules:

* a ``Conv2d`` / ``Linear`` producer loses the removed output rows of its weight and
  bias; the ``BatchNorm2d`` right after a conv loses the same channels (weight, bias,
  running statistics);
* a depthwise ``Conv2d`` (``groups == in_channels``) loses removed input channels
  together with their ``mult`` output channels (``groups`` shrinks with them);
* a ``Conv2d`` consumer of a removed channel ``c`` with constant value ``v_c`` gets
  ``bias[o] += v_c * sum_{kh,kw} w[o, c, kh, kw]`` (before its BatchNorm, where the IR
  folds the same amount after BN folding) and loses input channel ``c``; a ``Linear``
  consumer of a flattened ``(C, H, W)`` map (torch column ``c * H * W + p``) folds and
  drops the ``H * W`` columns of channel ``c``. A consumer without a bias gets one.
* residual adds, pools, concat and flatten need no change: they adapt to the channel
  count. An explicit ``x.view(N, F)`` / ``x.reshape(N, F)`` becomes ``(N, -1)``.

Masks (:class:`dtmm.prune.masks.WeightMask` parametrizations) on kept weights are
carried over, sliced the same way, so the shrunk model trains under the same masks.

**Exactness.** In eval mode the shrunk model computes what the masked model computes
wherever :func:`remove_dead_channels` reports the fold exact
(``result.report.is_exact``). A constant channel folded into a zero-padded conv is
over-counted at the padded border (the padding contributes 0, not ``v_c``), so such a
consumer's output is exact only at pixels whose window lies inside the map, and
everything downstream of it differs slightly; ``report.approximate_consumers`` names
those consumers. The shrunk torch model and the shrunk IR graph
(``result.graph``) carry the same approximation, so they agree everywhere. In train
mode, BatchNorm re-normalises each batch, so removing a constant channel before a BN
changes nothing there but the border effect.

Example:
    >>> import torch, torch.nn as nn
    >>> from dtmm.prune.masks import apply_masks
    >>> m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    ...                   nn.Conv2d(4, 2, 1)).eval()
    >>> keep = torch.ones(4, 3, 3, 3, dtype=torch.bool); keep[1] = False   # filter 1 dead
    >>> _ = apply_masks(m, {"0": keep})
    >>> r = shrink_model(m, (3, 6, 6))
    >>> r.removed, r.model.get_submodule("0").out_channels, r.model.get_submodule("3").in_channels
    ({'0': [1]}, 3, 3)
    >>> x = torch.rand(2, 3, 6, 6)
    >>> bool(torch.allclose(r.model(x), m(x), atol=1e-5)), r.report.is_exact
    (True, True)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
import torch.fx as fx
from torch import nn
from torch.nn.utils import parametrize

from dtmm.errors import GraphError
from dtmm.graph.ir import Conv2D, DepthwiseConv2D, FullyConnected, Graph, Reshape
from dtmm.prune.dead import DeadChannelReport, remove_dead_channels
from dtmm.prune.layout import PruneError
from dtmm.prune.masks import WeightMask, apply_masks, get_masks, remove_masks

__all__ = ["shrink_model", "ShrinkResult", "ChannelMap", "dead_filters_of", "rebuild_shrunk"]


@dataclass(frozen=True)
class ChannelMap:
    """Which original channels a module kept: ``kept_in`` / ``kept_out`` are ascending ids.

    New channel ``i`` is original channel ``kept_out[i]`` (likewise for inputs). For a
    depthwise conv both lists index its (grouped) channels. ``added_bias``: the module
    had no bias and got one to absorb folded constants.
    """

    kept_in: tuple[int, ...]
    kept_out: tuple[int, ...]
    added_bias: bool = False

    def to_json(self) -> dict:
        """``{"kept_in": [...], "kept_out": [...], "added_bias": bool}`` (see :func:`rebuild_shrunk`)."""
        return {"kept_in": list(self.kept_in), "kept_out": list(self.kept_out), "added_bias": self.added_bias}

    @staticmethod
    def from_json(obj) -> "ChannelMap":
        """Inverse of :meth:`to_json`; also accepts a :class:`ChannelMap`."""
        if isinstance(obj, ChannelMap):
            return obj
        try:
            return ChannelMap(tuple(int(i) for i in obj["kept_in"]), tuple(int(i) for i in obj["kept_out"]),
                              bool(obj.get("added_bias", False)))
        except (KeyError, TypeError, ValueError):
            raise PruneError(f"a channel map must be {{'kept_in': [...], 'kept_out': [...]}}, got {obj!r}") from None


@dataclass
class ShrinkResult:
    """What :func:`shrink_model` returns.

    * ``model``: the new, smaller ``torch.fx.GraphModule`` (same module names, same
      train/eval mode as the input; the input model is not modified);
    * ``report``: the :class:`~dtmm.prune.dead.DeadChannelReport` of the IR pass
      (``removed`` / ``values`` / ``folded`` / ``kept``, original channel ids, keyed by
      IR op names: module paths for conv / linear, fx node names for adds);
    * ``graph``: the shrunk float IR graph (``remove_dead_channels(capture(masked))``);
      ``capture(model)`` has the same ops and tensor shapes;
    * ``channels``: module name -> :class:`ChannelMap` for every module that changed
      (convs, linears, batchnorms);
    * ``removed``: conv / linear module name -> its removed output channels (original ids).
    """

    model: fx.GraphModule
    report: DeadChannelReport
    graph: Graph
    channels: dict[str, ChannelMap] = field(default_factory=dict)
    removed: dict[str, list[int]] = field(default_factory=dict)

    def channels_json(self) -> dict[str, dict]:
        """``channels`` as plain JSON data, for :func:`rebuild_shrunk` (e.g. when resuming)."""
        return {k: v.to_json() for k, v in self.channels.items()}


def _n_out(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


def _effective_weight(m: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return m.weight.detach().clone()


def _check_parametrizations(model: nn.Module) -> None:
    for name, mod in model.named_modules():
        if parametrize.is_parametrized(mod):
            for pname, plist in mod.parametrizations.items():
                bad = [type(p).__name__ for p in plist if not isinstance(p, WeightMask)]
                if pname != "weight" or bad:
                    raise PruneError(f"shrink_model: module {name!r} has parametrization(s) "
                                     f"{bad or [pname]} on {pname!r}; only pruning masks (WeightMask) "
                                     "are supported (shrink before prepare_qat)")


def dead_filters_of(model: nn.Module) -> dict[str, list[int]]:
    """Output channels whose effective weights are all zero, per ``Conv2d`` / ``Linear``.

    With masks applied this lists the filters whose every weight is masked (whole
    filters pruned by a beta, or filters that lost all their filterlets). Depthwise
    convs are included (a depthwise channel is dead when its kernel is all zero).

    Example:
        >>> m = nn.Sequential(nn.Conv2d(1, 3, 1))
        >>> with torch.no_grad():
        ...     m[0].weight[2] = 0
        >>> dead_filters_of(m)
        {'0': [2]}
    """
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = _effective_weight(mod)
            ids = torch.nonzero(~(w.reshape(w.shape[0], -1) != 0).any(dim=1)).flatten().tolist()
            if ids:
                out[name] = [int(i) for i in ids]
    return out


def _vector_layout(g: Graph, t: str) -> tuple[int, int]:
    """(positions P, channels C) of a 1-D IR tensor read by a FullyConnected.

    A flattened ``(H, W, C)`` map has ``P = H * W``; a pooled or dense vector ``P = 1``.
    """
    shape = g.tensors[t].shape
    if len(shape) != 1:
        raise GraphError(f"tensor {t!r}: a fully connected input must be 1-D, got {shape}")
    cur = t
    while True:
        p = g.producer(cur)
        if not isinstance(p, Reshape):
            return 1, int(shape[0])
        src = g.tensors[p.inputs[0]].shape
        if len(src) == 3:
            return int(src[0]) * int(src[1]), int(src[2])
        cur = p.inputs[0]


def _bn_after(gm: fx.GraphModule) -> dict[str, str]:
    """Conv module name -> name of the BatchNorm2d module that directly follows it (fused by capture)."""
    mods = dict(gm.named_modules())
    out = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(node.target), nn.Conv2d):
            users = list(node.users)
            if (len(users) == 1 and users[0].op == "call_module"
                    and isinstance(mods.get(users[0].target), nn.BatchNorm2d)):
                out[str(node.target)] = str(users[0].target)
    return out


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _param(src: torch.Tensor, like: torch.Tensor | None) -> nn.Parameter:
    req = like.requires_grad if like is not None else True
    return nn.Parameter(src.detach().clone().contiguous(), requires_grad=req)


def _new_conv(m: nn.Conv2d, kin: list[int], kout: list[int], delta: torch.Tensor | None) -> nn.Conv2d:
    w = m.parametrizations["weight"].original if parametrize.is_parametrized(m, "weight") else m.weight
    depthwise = m.groups > 1 and m.groups == m.in_channels
    if depthwise:
        groups, w_new = len(kin), w.detach()[kout]
    elif m.groups == 1:
        groups, w_new = 1, w.detach()[kout][:, kin]
    else:
        raise PruneError(f"conv with groups={m.groups} (only 1 or depthwise) cannot be shrunk")
    has_bias = m.bias is not None or (delta is not None and bool(torch.any(delta != 0)))
    new = nn.Conv2d(len(kin), len(kout), m.kernel_size, stride=m.stride, padding=m.padding,
                    dilation=m.dilation, groups=groups, bias=has_bias, padding_mode=m.padding_mode,
                    device=w.device, dtype=w.dtype)
    new.weight = _param(w_new, w)
    if has_bias:
        b = m.bias.detach()[kout].clone() if m.bias is not None else torch.zeros(len(kout), dtype=w.dtype,
                                                                                  device=w.device)
        if delta is not None:
            b = b + delta[kout].to(b.dtype)
        new.bias = _param(b, m.bias)
    new.train(m.training)
    return new


def _new_linear(m: nn.Linear, kin: list[int], kout: list[int], delta: torch.Tensor | None) -> nn.Linear:
    w = m.parametrizations["weight"].original if parametrize.is_parametrized(m, "weight") else m.weight
    has_bias = m.bias is not None or (delta is not None and bool(torch.any(delta != 0)))
    new = nn.Linear(len(kin), len(kout), bias=has_bias, device=w.device, dtype=w.dtype)
    new.weight = _param(w.detach()[kout][:, kin], w)
    if has_bias:
        b = m.bias.detach()[kout].clone() if m.bias is not None else torch.zeros(len(kout), dtype=w.dtype,
                                                                                  device=w.device)
        if delta is not None:
            b = b + delta[kout].to(b.dtype)
        new.bias = _param(b, m.bias)
    new.train(m.training)
    return new


def _new_bn(bn: nn.BatchNorm2d, keep: list[int]) -> nn.BatchNorm2d:
    ref = bn.running_mean if bn.running_mean is not None else bn.weight
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats,
                         device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
    idx = torch.tensor(keep, dtype=torch.long)
    with torch.no_grad():
        if bn.affine:
            new.weight = _param(bn.weight.detach()[idx], bn.weight)
            new.bias = _param(bn.bias.detach()[idx], bn.bias)
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def _flatten_views(gm: fx.GraphModule) -> None:
    """``x.view(N, F)`` / ``x.reshape(N, F)`` with an explicit F -> ``(N, -1)`` (F changes)."""
    for node in gm.graph.nodes:
        if node.op == "call_method" and node.target in ("view", "reshape") and len(node.args) == 3:
            if isinstance(node.args[2], int) and node.args[2] != -1:
                node.args = (node.args[0], node.args[1], -1)


def shrink_model(model: nn.Module, input_shape: tuple[int, int, int],
                 channels: Mapping[str, Iterable[int]] | None = None) -> ShrinkResult:
    """Remove dead output channels from a torch model; return a physically smaller copy.

    ``channels`` maps conv / linear module names to output channels to remove (their
    effective, i.e. masked, weights must be all zero); ``None`` means every filter
    whose effective weights are all zero (:func:`dead_filters_of`). Whether a listed
    channel really leaves, and what its constant output folds into, follows
    :func:`dtmm.prune.dead.remove_dead_channels` exactly (see the module docstring);
    ``result.report.kept`` says why a dead channel stayed.

    ``model`` must be capturable by :func:`dtmm.graph.capture.capture` on inputs of
    shape ``input_shape`` ``(C, H, W)``; the only parametrizations allowed are pruning
    masks (shrink before :func:`dtmm.quant.fake.prepare_qat`). The input model is
    not modified. Raises :class:`~dtmm.prune.layout.PruneError` /
    :class:`~dtmm.errors.GraphError` naming the module for anything it cannot do.

    Example:
        >>> import torch, torch.nn as nn
        >>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        >>> with torch.no_grad():
        ...     m[0].weight[[0, 2]] = 0; m[0].bias[[0, 2]] = 0.5
        >>> r = shrink_model(m, (1, 6, 6))
        >>> r.channels["0"].kept_out, tuple(r.model.get_submodule("3").weight.shape)
        ((1, 3), (3, 32))
        >>> x = torch.rand(2, 1, 6, 6)
        >>> bool(torch.allclose(r.model(x), m(x), atol=1e-5))
        True
    """
    from dtmm.graph.capture import capture

    _check_parametrizations(model)
    was_training = model.training
    baked = remove_masks(copy.deepcopy(model)).eval()
    g = capture(baked, tuple(input_shape))
    weighted = {op.name: op for op in g.weighted_ops()}
    mods = dict(model.named_modules())
    if channels is None:
        dead = {k: v for k, v in dead_filters_of(model).items() if k in weighted}
    else:
        dead = {}
        for name, ids in channels.items():
            if name not in mods:
                raise PruneError(f"shrink_model: no module named {name!r} in the model")
            if name not in weighted:
                raise PruneError(f"shrink_model: module {name!r} ({type(mods[name]).__name__}) is not a "
                                 "conv / linear layer of the captured graph")
            ids = sorted({int(c) for c in ids})
            if ids:
                dead[name] = ids
    g2, rep = remove_dead_channels(g, dead)

    gm = fx.symbolic_trace(copy.deepcopy(model))
    bn_of = _bn_after(gm)
    gmods = dict(gm.named_modules())
    masks = get_masks(gm)
    result = ShrinkResult(model=gm, report=rep, graph=g2)
    new_masks: dict[str, torch.Tensor] = {}
    for name, op in weighted.items():
        m = gmods[name]
        rout = set(rep.removed.get(name, []))
        src = op.inputs[0]
        prod = g.producer(src)
        key = prod.name if prod is not None else src
        rin = rep.removed.get(key, [])
        vals = rep.values.get(key, {})
        if not rout and not rin:
            continue
        w_eff = _effective_weight(m).to(torch.float64)
        delta = None
        if isinstance(op, DepthwiseConv2D):
            n_in = m.in_channels
            kin = [c for c in range(n_in) if c not in set(rin)]
        elif isinstance(op, Conv2D):
            n_in = m.in_channels
            kin = [c for c in range(n_in) if c not in set(rin)]
            if rin:
                v = torch.tensor([vals[c] for c in rin], dtype=torch.float64)
                delta = w_eff[:, rin].sum(dim=(2, 3)) @ v
        elif isinstance(op, FullyConnected):
            P, C = _vector_layout(g, src)
            n_in = m.in_features
            if P * C != n_in:
                raise GraphError(f"module {name!r}: {n_in} input features but the IR input is {P} x {C}")
            gone = {c * P + p: vals[c] for c in rin for p in range(P)}
            kin = [i for i in range(n_in) if i not in gone]
            if gone:
                cols = sorted(gone)
                delta = w_eff[:, cols] @ torch.tensor([gone[i] for i in cols], dtype=torch.float64)
        else:                                              # pragma: no cover - weighted_ops is these three
            continue
        kout = [o for o in range(_n_out(m)) if o not in rout]
        if isinstance(m, nn.Conv2d):
            new = _new_conv(m, kin, kout, delta)
        else:
            new = _new_linear(m, kin, kout, delta)
        _set_module(gm, name, new)
        result.channels[name] = ChannelMap(tuple(kin), tuple(kout), m.bias is None and new.bias is not None)
        if rout:
            result.removed[name] = sorted(rout)
        if name in masks:
            mk = masks[name][kout]
            new_masks[name] = mk if isinstance(op, DepthwiseConv2D) else mk[:, kin]
        bn = bn_of.get(name)
        if bn is not None and rout:
            _set_module(gm, bn, _new_bn(gmods[bn], kout))
            result.channels[bn] = ChannelMap(tuple(kout), tuple(kout))
    if new_masks:
        apply_masks(gm, new_masks)
    _flatten_views(gm)
    gm.graph.lint()
    gm.recompile()
    gm.train(was_training)
    _check_same_shapes(gm, g2, input_shape)
    return result


def _check_same_shapes(gm: fx.GraphModule, want: Graph, input_shape) -> None:
    from dtmm.graph.capture import capture

    got = capture(remove_masks(copy.deepcopy(gm)).eval(), tuple(input_shape))
    a = [(op.name, op.kind, tuple(got.tensors[op.output].shape)) for op in got.ops]
    b = [(op.name, op.kind, tuple(want.tensors[op.output].shape)) for op in want.ops]
    if a != b:                                            # a bug in this module: say where
        diff = next(((x, y) for x, y in zip(a, b) if x != y), (a[len(b):], b[len(a):]))
        raise GraphError(f"shrink_model: the shrunk torch model does not capture to the shrunk IR "
                         f"graph (first difference: {diff[0]} vs {diff[1]})")


def rebuild_shrunk(model: nn.Module, channels: Mapping[str, ChannelMap | Mapping]) -> fx.GraphModule:
    """The architecture of a shrunk model, rebuilt from its channel maps (no files run as code).

    ``model`` is a fresh instance of the original (unshrunk) architecture and
    ``channels`` the :attr:`ShrinkResult.channels` (or :meth:`ShrinkResult.channels_json`)
    of a :func:`shrink_model` call on it. Returns a ``GraphModule`` with the same
    module names and shapes as that call's result (weights are sliced from ``model``;
    nothing is folded), ready for ``load_state_dict`` /
    :func:`dtmm.prune.masks.load_masked_state_dict` of the shrunk model's saved state.
    This is how a shrunk model is reloaded without pickling code.

    Example:
        >>> import torch, torch.nn as nn
        >>> from dtmm.prune.masks import apply_masks, load_masked_state_dict
        >>> net = lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
        >>> keep = torch.ones(4, 1, 3, 3, dtype=torch.bool); keep[2] = False
        >>> m = apply_masks(net(), {"0": keep})
        >>> r = shrink_model(m.eval(), (1, 5, 5))
        >>> again = rebuild_shrunk(net(), r.channels_json())
        >>> _ = load_masked_state_dict(again, r.model.state_dict())
        >>> x = torch.rand(2, 1, 5, 5)
        >>> bool(torch.equal(again.eval()(x), r.model(x)))
        True
    """
    maps = {k: ChannelMap.from_json(v) for k, v in channels.items()}
    _check_parametrizations(model)
    gm = fx.symbolic_trace(copy.deepcopy(model))
    mods = dict(gm.named_modules())
    for name, cm in maps.items():
        m = mods.get(name)
        if m is None:
            raise PruneError(f"rebuild_shrunk: no module named {name!r} in the model")
        kin, kout = list(cm.kept_in), list(cm.kept_out)
        if isinstance(m, nn.Conv2d):
            n_in, n_out = m.in_channels, m.out_channels
        elif isinstance(m, nn.Linear):
            n_in, n_out = m.in_features, m.out_features
        elif isinstance(m, nn.BatchNorm2d):
            n_in = n_out = m.num_features
        else:
            raise PruneError(f"rebuild_shrunk: module {name!r} is a {type(m).__name__}, not a conv, linear "
                             "or batchnorm")
        if any(not 0 <= i < n_in for i in kin) or any(not 0 <= o < n_out for o in kout):
            raise PruneError(f"rebuild_shrunk: channel map of {name!r} has ids outside its "
                             f"{n_in} inputs / {n_out} outputs")
        delta = torch.zeros(n_out, dtype=torch.float64) if cm.added_bias and m.bias is None else None
        if delta is not None:
            delta[kout] = 1.0                    # a nonzero placeholder: the bias is created (values load)
        if isinstance(m, nn.Conv2d):
            new = _new_conv(m, kin, kout, delta)
        elif isinstance(m, nn.Linear):
            new = _new_linear(m, kin, kout, delta)
        else:
            new = _new_bn(m, kout)
        _set_module(gm, name, new)
    _flatten_views(gm)
    gm.graph.lint()
    gm.recompile()
    gm.train(model.training)
    return gm
