"""Masks on a torch model, so that training only ever updates the kept weights.

:func:`apply_masks` registers a :class:`WeightMask` parametrization
(``torch.nn.utils.parametrize``) on each masked module's ``weight``:

* the forward pass sees ``original * mask``;
* the gradient reaching ``original`` is ``mask * dL/dweight``, i.e. zero where pruned;
* ``original`` itself is zeroed where pruned when the mask is applied (the
  parametrization's ``right_inverse``), so weight decay (``wd * 0``), momentum and
  Adam's moments stay exactly zero there: no optimizer step revives a pruned weight.
  The weight ``Parameter`` object is kept (PyTorch ``set_``\\ s it in place), so an
  optimizer built before or after :func:`apply_masks` holds the right tensor.

Masks are bool tensors in the module's own layout (OIHW for ``nn.Conv2d``, OI for
``nn.Linear``); :func:`masks_to_torch` / :func:`masks_to_ohwi` convert from / to the
OHWI masks the granularities produce. The mask is a buffer, so it is part of
``state_dict()`` (key ``<module>.parametrizations.weight.<k>.mask``); load such a state
dict into a freshly built model with :func:`load_masked_state_dict`.
:func:`remove_masks` bakes the masks into plain weights (e.g. before graph capture).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from dtmm.prune.granularity import Granularity, get_granularity
from dtmm.prune.layout import PruneError, from_ohwi, resolve_layers, to_ohwi
from dtmm.prune.select import load_ratios

__all__ = [
    "WeightMask",
    "apply_masks",
    "get_masks",
    "remove_masks",
    "load_masked_state_dict",
    "masks_to_torch",
    "masks_to_ohwi",
    "masks_from_scores",
    "sparsity",
]

_MASK_KEY = re.compile(r"^(?:(?P<mod>.*)\.)?parametrizations\.weight\.(?P<idx>\d+)\.mask$")


class WeightMask(nn.Module):
    """Parametrization multiplying a weight by a fixed bool mask (kept in buffer ``mask``).

    Example:
        >>> wm = WeightMask(torch.tensor([True, False]))
        >>> wm(torch.tensor([2.0, 3.0])).tolist()
        [2.0, 0.0]
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask).to(torch.bool).clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask.to(w.dtype)

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask.to(w.dtype)


def _own_masks(module: nn.Module) -> list[tuple[int, WeightMask]]:
    if not parametrize.is_parametrized(module, "weight"):
        return []
    return [(i, p) for i, p in enumerate(module.parametrizations["weight"]) if isinstance(p, WeightMask)]


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor | np.ndarray]) -> nn.Module:
    """Mask the weights of the named modules (``{module_name: bool mask in OIHW / OI}``).

    A module that is masked already gets its mask replaced. Pruned entries of the
    stored weight are set to zero. Returns ``model`` (modified in place).

    Example:
        >>> m = nn.Sequential(nn.Linear(3, 2))
        >>> _ = apply_masks(m, {"0": torch.tensor([[True, False, True], [False, True, True]])})
        >>> int((m[0].weight == 0).sum())
        2
    """
    mods = dict(model.named_modules())
    for name, mask in masks.items():
        mod = mods.get(name)
        if mod is None:
            raise PruneError(f"apply_masks: no module named {name!r} in the model")
        if not isinstance(getattr(mod, "weight", None), torch.Tensor):
            raise PruneError(f"apply_masks: module {name!r} ({type(mod).__name__}) has no weight tensor")
        t = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask)
        if t.dtype != torch.bool:
            raise PruneError(f"apply_masks: mask of {name!r} must be bool, got {t.dtype}")
        w = mod.weight
        if tuple(t.shape) != tuple(w.shape):
            raise PruneError(f"apply_masks: mask of {name!r} has shape {tuple(t.shape)}, weight has "
                             f"{tuple(w.shape)} (masks use the module's own OIHW / OI layout)")
        t = t.to(w.device)
        own = _own_masks(mod)
        if own:
            for _, wm in own:
                wm.mask.copy_(t)
            with torch.no_grad():
                original = mod.parametrizations["weight"].original
                original.mul_(t.to(original.dtype))
        else:
            parametrize.register_parametrization(mod, "weight", WeightMask(t))
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module_name: bool mask}`` (copies, module layout) of every masked module.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 1))
        >>> _ = apply_masks(m, {"0": torch.tensor([[True, False]])})
        >>> get_masks(m)["0"].tolist()
        [[True, False]]
    """
    out = {}
    for name, mod in model.named_modules():
        own = _own_masks(mod)
        if own:
            m = own[0][1].mask.clone()
            for _, wm in own[1:]:
                m &= wm.mask
            out[name] = m
    return out


def _unparametrize_weight(mod: nn.Module) -> None:
    """Bake ``mod.weight``'s whole parametrization chain into a plain Parameter.

    Like ``parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)``
    (the Parameter object is kept, so optimizers stay valid) but safe for deep copies:
    a ``copy.deepcopy`` of a parametrized module shares its injected class with the
    original, and torch's removal deletes the ``weight`` property from that shared
    class, which breaks the original. Here the module just leaves the class.
    """
    if len(mod.parametrizations) > 1:                   # other tensors parametrized too: torch's way
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
        return
    plist = mod.parametrizations["weight"]
    original = plist.original
    with torch.no_grad():
        original.copy_(mod.weight)
    del mod._modules["parametrizations"]
    mod.__class__ = type(mod).__bases__[0]
    mod.register_parameter("weight", original)


def remove_masks(model: nn.Module, names: Iterable[str] | None = None) -> nn.Module:
    """Bake masks into plain weights and drop the parametrizations (all, or those in ``names``).

    The result has ordinary ``weight`` parameters holding exact zeros where pruned.
    When other parametrizations share the weight, only the mask entries are dropped
    (the stored weight is already zero where pruned); a mask that is not the first
    entry then raises :class:`PruneError`.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 1))
        >>> _ = apply_masks(m, {"0": torch.tensor([[True, False]])})
        >>> _ = remove_masks(m)
        >>> parametrize.is_parametrized(m[0]), m[0].weight[0, 1].item()
        (False, 0.0)
    """
    mods = dict(model.named_modules())
    targets = list(mods) if names is None else list(names)
    for name in targets:
        mod = mods.get(name)
        if mod is None:
            raise PruneError(f"remove_masks: no module named {name!r} in the model")
        own = _own_masks(mod)
        if not own:
            continue
        plist = mod.parametrizations["weight"]
        if len(own) == len(plist):
            _unparametrize_weight(mod)
            continue
        if any(i != k for k, (i, _) in enumerate(own)):
            raise PruneError(f"remove_masks: module {name!r} has its mask after another parametrization; "
                             "remove that one first")
        with torch.no_grad():
            for _, wm in own:
                plist.original.mul_(wm.mask.to(plist.original.dtype))
        for i, _ in reversed(own):
            del plist[i]
    return model


def load_masked_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
    """Load a state dict saved from a masked model into a freshly built (unmasked) one.

    Masks found in ``state_dict`` (``<module>.parametrizations.weight.<k>.mask``) are
    first applied with :func:`apply_masks`, which creates the parametrizations the keys
    need; then ``model.load_state_dict(state_dict, strict)`` runs and its result is
    returned.

    Example:
        >>> src = nn.Sequential(nn.Linear(2, 1))
        >>> _ = apply_masks(src, {"0": torch.tensor([[False, True]])})
        >>> dst = nn.Sequential(nn.Linear(2, 1))
        >>> _ = load_masked_state_dict(dst, src.state_dict())
        >>> get_masks(dst)["0"].tolist(), bool(torch.equal(dst[0].weight, src[0].weight))
        ([[False, True]], True)
    """
    found: dict[str, torch.Tensor] = {}
    for key, val in state_dict.items():
        m = _MASK_KEY.match(key)
        if m is not None:
            mod = m.group("mod") or ""
            found[mod] = found[mod] & val.to(torch.bool) if mod in found else val.to(torch.bool)
    if found:
        apply_masks(model, found)
    return model.load_state_dict(state_dict, strict=strict)


def masks_to_torch(masks: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """OHWI / OI NumPy keep-masks -> bool tensors in the torch OIHW / OI layout.

    Example:
        >>> masks_to_torch({"c": np.ones((8, 3, 3, 2), bool)})["c"].shape
        torch.Size([8, 2, 3, 3])
    """
    return {n: torch.from_numpy(np.ascontiguousarray(from_ohwi(np.asarray(m, dtype=bool)))) for n, m in masks.items()}


def masks_to_ohwi(masks: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Bool tensors in OIHW / OI -> OHWI / OI NumPy keep-masks (inverse of :func:`masks_to_torch`).

    Example:
        >>> masks_to_ohwi({"c": torch.ones(8, 2, 3, 3, dtype=torch.bool)})["c"].shape
        (8, 3, 3, 2)
    """
    return {n: np.ascontiguousarray(to_ohwi(torch.as_tensor(m).to(torch.bool).cpu().numpy())) for n, m in masks.items()}


def masks_from_scores(model: nn.Module, scores: Mapping[str, np.ndarray], granularity: str | Granularity,
                      ratios, *, default: float | None = None) -> dict[str, torch.Tensor]:
    """Per-layer keep-masks (torch layout, ready for :func:`apply_masks`) from unit scores.

    ``ratios`` is a number for every scored layer, a dict or a JSON file path
    ``{layer_name: ratio}`` (see :func:`dtmm.prune.select.load_ratios`; names must be
    scored layers). Layers without a ratio are left unmasked unless ``default`` is set.

    Example:
        >>> from dtmm.prune.importance import l1
        >>> m = nn.Sequential(nn.Conv2d(2, 4, 3))
        >>> masks = masks_from_scores(m, l1(m, ["0"], "filter"), "filter", {"0": 0.5})
        >>> int(masks["0"].reshape(4, -1).all(1).sum())
        2
    """
    g = get_granularity(granularity)
    mods = resolve_layers(model, list(scores))
    per_layer = load_ratios(ratios, list(scores), default=default)
    out = {}
    for name, r in per_layer.items():
        shape = tuple(to_ohwi(mods[name].weight.detach()).shape)
        out[name] = masks_to_torch({name: g.build_mask(scores[name], r, shape)})[name]
    return out


def sparsity(model: nn.Module) -> dict[str, float]:
    """Share of pruned weights of every masked module.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2))
        >>> sparsity(apply_masks(m, {"0": torch.tensor([[True, False], [False, False]])}))
        {'0': 0.75}
    """
    return {n: 1.0 - float(m.sum()) / m.numel() for n, m in get_masks(model).items()}
