"""Weight layouts, layer discovery and the pruning error type.

Pruning decisions in :mod:`dtmm.prune` are made on weights in the channel-last
layout the MCU stores them in:

* ``nn.Conv2d`` weight, torch ``(O, I/groups, KH, KW)`` -> OHWI ``(O, KH, KW, I/groups)``;
* ``nn.Linear`` weight ``(O, I)`` stays ``(O, I)``.

A depthwise convolution (``groups == in_channels > 1``) therefore has OHWI shape
``(C * mult, KH, KW, 1)``: one single-channel kernel per output channel. (The IR and
TFLite store depthwise weights as ``(1, KH, KW, C * mult)``; that is the same
numbers, transposed. Masks here stay in the per-output-channel view above.)

Masks handed to :func:`dtmm.prune.masks.apply_masks` are in the module's own torch
layout (OIHW / OI); :func:`to_ohwi` and :func:`from_ohwi` convert both ways and
work on NumPy arrays and torch tensors alike.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from dtmm.errors import DtmmError

__all__ = [
    "PruneError",
    "to_ohwi",
    "from_ohwi",
    "is_depthwise",
    "prunable_layers",
    "resolve_layers",
    "weight_ohwi",
    "weight_param",
]


class PruneError(DtmmError):
    """A pruning request dtmm cannot honour (bad ratio, unknown layer, unsupported granularity)."""


def to_ohwi(w):
    """Convert a torch-layout weight (OIHW conv or OI linear) to channel-last OHWI / OI.

    Works on NumPy arrays and torch tensors; 2-D inputs are returned unchanged.

    Example:
        >>> import numpy as np
        >>> to_ohwi(np.zeros((8, 3, 5, 5))).shape
        (8, 5, 5, 3)
        >>> to_ohwi(np.zeros((10, 40))).shape
        (10, 40)
    """
    if w.ndim == 4:
        return w.permute(0, 2, 3, 1) if isinstance(w, torch.Tensor) else np.transpose(w, (0, 2, 3, 1))
    if w.ndim == 2:
        return w
    raise PruneError(f"expected a 4-D conv or 2-D linear weight, got shape {tuple(w.shape)}")


def from_ohwi(w):
    """Inverse of :func:`to_ohwi`: OHWI -> OIHW (2-D inputs unchanged).

    Example:
        >>> import numpy as np
        >>> w = np.random.rand(8, 3, 5, 5)
        >>> bool(np.array_equal(from_ohwi(to_ohwi(w)), w))
        True
    """
    if w.ndim == 4:
        return w.permute(0, 3, 1, 2) if isinstance(w, torch.Tensor) else np.transpose(w, (0, 3, 1, 2))
    if w.ndim == 2:
        return w
    raise PruneError(f"expected a 4-D OHWI or 2-D weight, got shape {tuple(w.shape)}")


def is_depthwise(module: nn.Module) -> bool:
    """True for a depthwise ``nn.Conv2d`` (``groups == in_channels > 1``).

    Example:
        >>> is_depthwise(nn.Conv2d(8, 8, 3, groups=8)), is_depthwise(nn.Conv2d(8, 8, 3))
        (True, False)
    """
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def prunable_layers(model: nn.Module, *, include_depthwise: bool = False,
                    include_linear: bool = True) -> dict[str, nn.Module]:
    """The ``nn.Conv2d`` / ``nn.Linear`` modules of ``model`` by qualified name, in module order.

    Depthwise convolutions are left out by default: their filterlets are single
    weights (``C_in`` per group is 1), so filterlet pruning of them is plain
    unstructured pruning, which FWCS stores worse than dense. Pass
    ``include_depthwise=True`` to score and prune them anyway.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(), nn.LazyLinear(2))
        >>> list(prunable_layers(m))
        ['0', '3']
        >>> list(prunable_layers(m, include_depthwise=True, include_linear=False))
        ['0', '1']
    """
    out: dict[str, nn.Module] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            if is_depthwise(mod) and not include_depthwise:
                continue
            out[name] = mod
        elif include_linear and isinstance(mod, nn.Linear):
            out[name] = mod
    return out


def resolve_layers(model: nn.Module, layers: Iterable[str] | Mapping[str, nn.Module] | None
                   ) -> dict[str, nn.Module]:
    """Map layer names to modules; ``None`` means :func:`prunable_layers` with defaults.

    Raises :class:`PruneError` for a name that is not a conv / linear module of ``model``.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> list(resolve_layers(m, ["0"]))
        ['0']
    """
    if layers is None:
        return prunable_layers(model)
    if isinstance(layers, Mapping):
        return dict(layers)
    if isinstance(layers, str):
        layers = [layers]
    mods = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    for name in layers:
        mod = mods.get(name)
        if mod is None:
            known = ", ".join(prunable_layers(model, include_depthwise=True)) or "(none)"
            raise PruneError(f"unknown layer {name!r}; prunable layers are: {known}")
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            raise PruneError(f"layer {name!r} is a {type(mod).__name__}, not nn.Conv2d / nn.Linear")
        out[name] = mod
    return out


def weight_param(module: nn.Module) -> torch.Tensor:
    """The trainable weight ``Parameter`` of a conv / linear module.

    For a module masked with :func:`dtmm.prune.masks.apply_masks` this is the
    parametrization's ``original`` (whose pruned entries are kept at zero).

    Example:
        >>> conv = nn.Conv2d(3, 4, 3)
        >>> weight_param(conv) is conv.weight
        True
    """
    p = getattr(module, "parametrizations", None)
    if p is not None and "weight" in p:
        return p["weight"].original
    return module.weight


def weight_ohwi(module: nn.Module) -> np.ndarray:
    """The module's effective (masked, if masked) weight as a float64 OHWI / OI NumPy array.

    Example:
        >>> weight_ohwi(nn.Conv2d(3, 4, (1, 5))).shape
        (4, 1, 5, 3)
    """
    with torch.no_grad():
        return to_ohwi(module.weight.detach().to(torch.float64).cpu().numpy()).copy()
