"""The DTMM paper's comparison methods (Sec. V) as pruning recipes: unit + scorer + format.

Every method is a :class:`Method`: which units it removes (a granularity of
:mod:`dtmm.prune.granularity`), how it ranks them (a scorer of
:mod:`dtmm.prune.importance`), and how the pruned layer is stored and run:

=================  ===================  ===================  =========  =======================
method             granularity          importance           format     runs on
=================  ===================  ===================  =========  =======================
``dtmm``           filterlet            taylor (Eq. 2)       fwcs       ``dtmm_conv_fwcs_s8``
``chip``           filter               chip                 dense      ``dtmm_conv_s8`` (smaller)
``l1-filter``      filter               l1                   dense      ``dtmm_conv_s8`` (smaller)
``patdnn``         pattern (derived)    energy               pattern    ``dtmm_conv_pattern_s8``
``unstructured``   element              l1 (= ``|w|``)       csr        ``dtmm_conv_csr_s8``
=================  ===================  ===================  =========  =======================

* **CHIP** (Sui et al., NeurIPS 2021) ranks a layer's filters by the channel independence
  of the feature maps they produce (:func:`dtmm.prune.importance.channel_independence`): a
  map that is a linear combination of the others carries little of the layer's rank and is
  removed first. The maps are taken after the filter's BatchNorm / ReLU
  (:func:`activation_taps`).
* **L1-norm filter pruning** (Li et al., ICLR 2017) removes the filters of least
  ``sum |w|``.
* **PatDNN** (Niu et al., ASPLOS 2020) keeps, in every 3x3 kernel, the 4-position pattern
  of a model-wide library that holds the most L2 energy, and *connectivity pruning* removes
  whole kernels (an input-to-output channel connection) of least norm. The library is
  derived from the model (:func:`patdnn_library`: the most frequent top-4 shapes, centre
  always in) and travels with every layer into storage
  (:func:`dtmm.graph.compressed.compress_graph` ``libraries=``). 3x3 conv layers only.
* **Unstructured** magnitude pruning keeps exactly the largest ``|w|`` of a layer.

Filter methods shrink the model (dead filters are removed by
:func:`dtmm.prune.remove_dead_channels`), so they need no sparse format; ``ratio`` always
counts the method's own units (filters, kernels, weights, filterlets).

The numpy functions (:func:`magnitude_mask`, :func:`l1_filter_ranking`,
:func:`connectivity_mask`, :func:`pattern_choice`, :func:`patdnn_masks`,
:func:`chip_ranking`) work on OHWI arrays and state each rule exactly;
:func:`method_masks` applies a method to a torch model and returns masks ready for
:func:`dtmm.prune.apply_masks`.

Example:
    >>> import numpy as np
    >>> w = np.array([[[[3.0, -1.0]]], [[[0.5, 0.2]]], [[[-2.0, 2.5]]]])     # (3, 1, 1, 2)
    >>> magnitude_mask(w, 0.5).reshape(3, 2).astype(int).tolist()
    [[1, 0], [0, 0], [1, 1]]
    >>> l1_filter_ranking(w).tolist()           # least important filter first
    [1, 0, 2]
    >>> get_method("patdnn").format
    'pattern'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from dtmm.prune.granularity import (ELEMENT, FILTER, KERNEL, Pattern, derive_pattern_library,
                                    get_granularity)
from dtmm.prune.importance import channel_independence, get_scorer
from dtmm.prune.layout import PruneError, resolve_layers, weight_ohwi
from dtmm.prune.masks import masks_from_scores, masks_to_torch
from dtmm.prune.select import load_ratios

__all__ = ["Method", "METHODS", "get_method", "MethodMasks", "method_masks", "magnitude_mask",
           "l1_filter_ranking", "l1_filter_mask", "connectivity_mask", "pattern_choice",
           "patdnn_library", "patdnn_masks", "chip_ranking", "activation_taps"]


@dataclass(frozen=True)
class Method:
    """A pruning method: unit (granularity name), ranking (scorer name), storage format.

    ``format`` is the storage format of a pruned conv (``"dense"``: structured, the
    layer simply becomes smaller); ``structured`` says whether the method removes whole
    output channels; ``source`` names the method's paper.
    """

    name: str
    granularity: str
    importance: str
    format: str
    structured: bool
    source: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("dtmm", "filterlet", "taylor", "fwcs", False, "Han et al., DTMM (this paper)"),
    Method("chip", "filter", "chip", "dense", True, "Sui et al., CHIP, NeurIPS 2021"),
    Method("l1-filter", "filter", "l1", "dense", True, "Li et al., Pruning Filters, ICLR 2017"),
    Method("patdnn", "pattern", "energy", "pattern", False, "Niu et al., PatDNN, ASPLOS 2020"),
    Method("unstructured", "element", "l1", "csr", False, "magnitude pruning (Han et al. 2015)"),
)}
"""The methods by name (see the module docstring)."""


def get_method(name: str | Method) -> Method:
    """A method by name (``"dtmm"``, ``"chip"``, ``"l1-filter"``, ``"patdnn"``,
    ``"unstructured"``) or a :class:`Method` passed through.

    >>> get_method("chip").granularity, get_method("unstructured").format
    ('filter', 'csr')
    """
    if isinstance(name, Method):
        return name
    try:
        return METHODS[str(name)]
    except KeyError:
        raise PruneError(f"unknown pruning method {name!r}; choose one of {sorted(METHODS)}") from None


# ----------------------------------------------------------------------------- numpy rules


def _ohwi(weight, what: str = "weight") -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim not in (2, 4) or w.size == 0:
        raise PruneError(f"{what} must be a non-empty OHWI (4-D) or (O, I) array, got shape {w.shape}")
    return w


def magnitude_mask(weight, sparsity: float) -> np.ndarray:
    """Unstructured magnitude pruning: keep exactly the largest ``|w|``.

    ``num_pruned(n, sparsity)`` weights of least magnitude are removed (ties: the lower
    flat OHWI index is removed first), all others kept.

    >>> magnitude_mask(np.array([[0.1, -0.9, 0.5, -0.3]]), 0.5).tolist()
    [[False, True, True, False]]
    """
    w = _ohwi(weight)
    return ELEMENT.build_mask(np.abs(w).ravel(), sparsity, w.shape)


def l1_filter_ranking(weight) -> np.ndarray:
    """Li et al. 2017: filter indices ordered by ``sum |w|`` of each filter, least first.

    Ties keep index order. ``weight`` is OHWI (or ``(O, I)``).

    >>> l1_filter_ranking(np.array([[1.0, 1.0], [0.0, 3.0], [-0.5, 0.4]])).tolist()
    [2, 0, 1]
    """
    w = _ohwi(weight)
    return np.argsort(FILTER.reduce(np.abs(w), w.shape), kind="stable")


def l1_filter_mask(weight, ratio: float) -> np.ndarray:
    """Keep-mask removing the ``num_pruned(C_out, ratio)`` filters of least L1 norm.

    >>> l1_filter_mask(np.array([[1.0, 1.0], [0.0, 3.0], [-0.5, 0.4]]), 0.34).tolist()
    [[True, True], [True, True], [False, False]]
    """
    w = _ohwi(weight)
    return FILTER.build_mask(FILTER.reduce(np.abs(w), w.shape), ratio, w.shape)


def connectivity_mask(weight, ratio: float) -> np.ndarray:
    """PatDNN connectivity pruning: remove the kernels ``(o, :, :, i)`` of least L2 norm.

    ``num_pruned(C_out * C_in, ratio)`` kernels are removed whole (ties: lower
    ``o * C_in + i`` first); the others are kept unchanged.

    >>> w = np.ones((2, 3, 3, 2)); w[0, :, :, 1] = 0.1; w[1, :, :, 0] = 0.2
    >>> connectivity_mask(w, 0.5)[:, 1, 1, :].tolist()
    [[True, False], [False, True]]
    """
    w = _ohwi(weight)
    return KERNEL.build_mask(np.sqrt(KERNEL.reduce(w * w, w.shape)), ratio, w.shape)


def pattern_choice(weight, library) -> np.ndarray:
    """PatDNN pattern selection: per 3x3 kernel, the index of the ``library`` pattern that
    keeps the most L2 energy ``sum_{p in pattern} w_p^2`` (ties: the lower index).

    ``weight`` is OHWI ``(O, 3, 3, I)``; returns int64 ``(O, I)``.

    >>> w = np.zeros((1, 3, 3, 1)); w[0, 0, 0] = w[0, 0, 1] = w[0, 1, 0] = 2.0; w[0, 2, 2] = 3.5
    >>> int(pattern_choice(w, [(0, 1, 3, 4), (4, 5, 7, 8)])[0, 0])   # energy 12.25 beats 12
    1
    """
    w = _ohwi(weight)
    if w.ndim != 4 or w.shape[1:3] != (3, 3):
        raise PruneError(f"pattern selection needs 3x3 OHWI kernels, got weight shape {w.shape}")
    lib = Pattern(library).library_matrix().astype(np.float64)           # (P, 9)
    e = (w * w).transpose(0, 3, 1, 2).reshape(w.shape[0], w.shape[3], 9)
    return np.argmax(e @ lib.T, axis=-1)


def patdnn_library(weights: Iterable[np.ndarray], k: int = 8, *, size: int = 4) -> tuple:
    """PatDNN's library from a model's 3x3 OHWI weights: the ``k`` most frequent shapes of
    each kernel's ``size`` largest-energy positions, the centre always in
    (:func:`dtmm.prune.derive_pattern_library` on ``w^2``).

    >>> w = np.zeros((4, 3, 3, 2)); w[:, 0, :, :] = 1.0; w[:, 1, 1, :] = 2.0
    >>> patdnn_library([w], k=1)
    ((0, 1, 2, 4),)
    """
    return derive_pattern_library([np.square(_ohwi(w)) for w in weights], k=k, size=size,
                                  include_centre=True)


def patdnn_masks(weights: Mapping[str, np.ndarray], ratios, *, k: int = 8,
                 library=None) -> tuple[tuple, dict[str, np.ndarray]]:
    """PatDNN on a set of 3x3 OHWI layers: ``(library, {layer: keep-mask})``.

    The library is :func:`patdnn_library` of all the layers (or ``library``); each kernel
    keeps its :func:`pattern_choice`; then connectivity pruning removes the share
    ``ratios[layer]`` of kernels whose kept energy is least (the L2 norm of the kernel
    after pattern pruning). ``ratios``: one float or ``{layer: ratio}``.

    >>> w = np.ones((2, 3, 3, 2)); w[1, :, :, 1] = 0.1
    >>> lib, m = patdnn_masks({"c": w}, 0.25, k=2)
    >>> lib, int(m["c"].sum()), bool(m["c"][1, :, :, 1].any())
    (((0, 1, 2, 4), (0, 1, 3, 4)), 12, False)
    """
    ws = {n: _ohwi(w, f"layer {n!r} weight") for n, w in weights.items()}
    for n, w in ws.items():
        if w.ndim != 4 or w.shape[1:3] != (3, 3):
            raise PruneError(f"PatDNN prunes 3x3 conv layers only; layer {n!r} has weight shape "
                             f"{w.shape}")
    lib = patdnn_library(ws.values(), k=k) if library is None else Pattern(library).library
    gran = Pattern(lib)
    per_layer = load_ratios(ratios, list(ws))
    return lib, {n: gran.build_mask((w * w).ravel(), per_layer[n], w.shape) for n, w in ws.items()}


def chip_ranking(features) -> np.ndarray:
    """CHIP: channel indices of a batch of feature maps ``(N, C, H, W)`` ordered by mean
    channel independence, least independent (first to prune) first.

    >>> f = torch.zeros(1, 3, 1, 3); f[0, 0, 0, 0] = 1.0; f[0, 1, 0, 1] = 1.0
    >>> f[0, 2, 0, :2] = 0.5 ** 0.5   # channel 2 = (channel 0 + channel 1) / sqrt(2), same norm
    >>> chip_ranking(f).tolist()
    [2, 0, 1]
    """
    ci = channel_independence(torch.as_tensor(features)).mean(0).cpu().numpy()
    return np.argsort(ci, kind="stable")


# ----------------------------------------------------------------------------- torch models


def activation_taps(model: nn.Module, layers: Iterable[str]) -> dict[str, str]:
    """For each conv layer, the module whose output CHIP should measure: the end of the
    ``Conv2d -> BatchNorm2d -> ReLU/ReLU6`` chain that follows it (each link the only user
    of the one before), found by tracing the model with torch.fx. Layers whose chain
    cannot be followed (untraceable model, functional ReLU) are left out: CHIP then uses
    the conv's own output.

    >>> m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 1))
    >>> activation_taps(m, ["0", "3"])
    {'0': '2'}
    """
    import torch.fx as fx

    layers = list(layers)
    try:
        gm = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure: fall back to the conv outputs
        return {}
    mods = dict(model.named_modules())
    taps = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in layers:
            continue
        cur, end = node, None
        while len(cur.users) == 1:
            u = next(iter(cur.users))
            m = mods.get(u.target) if u.op == "call_module" else None
            if isinstance(m, nn.BatchNorm2d):
                cur = end = u
                continue
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                end = u
            break
        if end is not None:
            taps[node.target] = end.target
    return taps


@dataclass
class MethodMasks:
    """What :func:`method_masks` returns.

    ``masks``: ``{layer: keep-mask}`` in torch layout (for :func:`dtmm.prune.apply_masks`);
    ``formats``: ``{layer: storage format}`` of the pruned layers (empty for structured
    methods: their layers become smaller dense ones); ``library``: the PatDNN pattern
    library (pass ``{layer: library}`` to ``compress_graph(libraries=...)``), else None.
    """

    method: Method
    masks: dict[str, torch.Tensor]
    formats: dict[str, str]
    library: tuple | None = None


def method_masks(method: str | Method, model: nn.Module, layers: Iterable[str] | None, ratios, *,
                 data: Iterable | None = None, loss_fn=None, batches: int = 8,
                 library_size: int = 8) -> MethodMasks:
    """Score ``layers`` of ``model`` the way ``method`` does and build its keep-masks.

    ``ratios``: one float or ``{layer: ratio}`` (shares of the method's units, see the
    module docstring); ``data`` (batches of ``(x, y)``) for the data-driven scorers
    (taylor, chip). PatDNN derives one library of ``library_size`` patterns from all the
    scored 3x3 layers and refuses other layers. The model is not modified.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> r = method_masks("patdnn", net, ["0", "2"], 0.5)
        >>> len(r.library), r.formats, int(r.masks["2"].sum())   # 8 of 16 kernels x 4 weights
        (8, {'0': 'pattern', '2': 'pattern'}, 32)
        >>> method_masks("l1-filter", net, ["0"], 0.5).masks["0"].reshape(4, -1).all(1).sum().item()
        2
    """
    m = get_method(method)
    mods = resolve_layers(model, layers)
    names = list(mods)
    if m.name == "patdnn":
        ws = {n: weight_ohwi(mod) for n, mod in mods.items()}
        lib, masks = patdnn_masks(ws, ratios, k=library_size)
        return MethodMasks(m, masks_to_torch(masks), {n: m.format for n in names}, lib)
    scorer = get_scorer(m.importance)
    kw = {}
    if m.importance == "chip":
        kw["taps"] = activation_taps(model, names)
    scores = scorer(model, names, get_granularity(m.granularity), data=data, loss_fn=loss_fn,
                    batches=batches, **kw)
    masks = masks_from_scores(model, scores, m.granularity, ratios)
    formats = {} if m.structured else {n: m.format for n in names}
    return MethodMasks(m, masks, formats)
