"""Compression methods as scheduler spaces: DTMM and the paper's baselines on equal footing.

Every method is planned by the same scheduler under the same budgets; what differs is the
method's decision space (which formats and ratios each layer may take), how it ranks the
units it removes, and therefore its byte, SRAM, instruction and loss model (each format's
own, from :mod:`dtmm.formats`, :mod:`dtmm.codegen.scratch` and the calibrated latency
kinds):

================  ===========================  ==================================  ==============
method            space                        unit ranking                        format
================  ===========================  ==================================  ==============
``dtmm``          beta (filters) x alpha       Taylor (paper Eq. 2) or l1 / l2      dense / FWCS
                  (filterlets)
``chip``          beta only                    CHIP channel independence            dense (smaller)
``l1-filter``     beta only                    filter L1 norm (Li et al.)           dense (smaller)
``patdnn``        alpha = kernels removed      pattern by L2 energy from a library  pattern
                  (3x3 layers; 4 of 9 weights  derived from the model, connectivity
                  kept in every kept kernel)   by kept-kernel norm
``unstructured``  alpha = weights removed      magnitude ``|w|``                    CSR
================  ===========================  ==================================  ==============

The loss model (Taylor by default, or measured sensitivity) estimates the units each
method's own ranking removes, so a baseline is judged by what it would really prune.

Example:
    >>> METHOD_SPACES["chip"].formats, METHOD_SPACES["chip"].filters, METHOD_SPACES["patdnn"].filters
    (('dense',), True, False)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.schedule.select import UnitScores
from dtmm.schedule.space import ScheduleError, Space

__all__ = ["MethodSpace", "METHOD_SPACES", "method_names", "method_scores", "method_space",
           "get_method_space"]


@dataclass(frozen=True)
class MethodSpace:
    """A method's decision space and unit ranking (see the module docstring)."""

    name: str
    formats: tuple[str, ...]
    filters: bool             # may remove whole filters (beta)
    fine: bool                # has a fine ratio (alpha)
    ranking: str              # how units are ranked for removal


METHOD_SPACES = {
    "dtmm": MethodSpace("dtmm", ("dense", "fwcs"), True, True, "taylor"),
    "chip": MethodSpace("chip", ("dense",), True, False, "chip"),
    "l1-filter": MethodSpace("l1-filter", ("dense",), True, False, "l1"),
    "patdnn": MethodSpace("patdnn", ("dense", "pattern"), False, True, "energy"),
    "unstructured": MethodSpace("unstructured", ("dense", "csr"), False, True, "magnitude"),
}


def method_names() -> tuple[str, ...]:
    return tuple(METHOD_SPACES)


def get_method_space(name: str) -> MethodSpace:
    try:
        return METHOD_SPACES[name]
    except KeyError:
        raise ScheduleError(f"unknown method {name!r}; choose from {', '.join(METHOD_SPACES)}") from None


def method_space(graph, method: str, *, alpha_step: float | None = None,
                 beta_step: float | None = None, beta_max: float | None = None) -> Space:
    """The decision space of ``method`` on an IR graph (its formats; beta and alpha grids only
    where the method has them)."""
    from dtmm.schedule.space import (DEFAULT_ALPHA_STEP, DEFAULT_BETA_MAX, DEFAULT_BETA_STEP,
                                     alpha_grid, beta_grid, build_space)

    ms = get_method_space(method)
    alphas = alpha_grid(alpha_step or DEFAULT_ALPHA_STEP) if ms.fine else (0.0,)
    betas = (beta_grid(beta_step or DEFAULT_BETA_STEP, DEFAULT_BETA_MAX if beta_max is None else beta_max)
             if ms.filters else (0.0,))
    return build_space(graph, alphas=alphas, betas=betas, formats=ms.formats)


def method_scores(net, space: Space, method: str, x, y, *, taylor: UnitScores | None = None,
                  importance: str | None = None, batches: int = 8, batch_size: int = 64,
                  library_size: int = 8, loss_fn=None) -> UnitScores:
    """The unit ranking of ``method`` for every layer of ``space`` (higher = kept longer);
    ``loss_fn``: the task's loss for Taylor importance (default cross-entropy)."""
    from dtmm import prune
    from dtmm.prune.baselines import patdnn_library, pattern_choice
    from dtmm.prune.layout import weight_ohwi
    from dtmm.schedule.loss import _layer_batches, unit_scores

    m = get_method_space(method)
    mods = dict(net.named_modules())
    names = [ly.name for ly in space.layers]
    if method == "dtmm":
        imp = importance or "taylor"
        if imp == "taylor" and taylor is not None:
            return taylor
        return unit_scores(net, space, imp, x, y, batches=batches, batch_size=batch_size,
                           loss_fn=loss_fn)
    base = unit_scores(net, space, "l2")
    if m.ranking in ("chip", "l1"):
        f = prune.l1(net, names, "filter")
        if m.ranking == "chip":          # feature-map independence of every conv's filters
            convs = [ly.name for ly in space.layers if ly.kind == "conv"]
            data = _layer_batches(x, y, batch_size, batches)
            f.update(prune.get_scorer("chip")(net, convs, "filter", data=data, batches=len(data)))
        filters = {n: np.asarray(f[n], np.float64) for n in names}
        return UnitScores(filters, base.filterlets, m.ranking)
    w = {n: weight_ohwi(mods[n]) for n in names}
    if m.ranking == "magnitude":
        elements = {n: np.abs(w[n]).reshape(w[n].shape[0], -1).astype(np.float64) for n in names}
        return UnitScores(base.filters, base.filterlets, "magnitude", elements=elements)
    # PatDNN: a library from the model's 3x3 layers, each kernel's best pattern, kept energy
    three = [n for n in names if w[n].ndim == 4 and w[n].shape[1:3] == (3, 3)]
    if not three:
        raise ScheduleError("PatDNN prunes 3x3 convs, and the model has none")
    lib = patdnn_library([w[n] for n in three], k=library_size)
    kernels, patterns = {}, {}
    libm = np.zeros((len(lib), 9))
    for i, pat in enumerate(lib):
        libm[i, list(pat)] = 1.0
    for n in three:
        pid = pattern_choice(w[n], lib)                                   # (O, I)
        e = (w[n] ** 2).transpose(0, 3, 1, 2).reshape(w[n].shape[0], w[n].shape[3], 9)
        kernels[n] = np.sqrt((e * libm[pid]).sum(axis=-1))
        patterns[n] = pid
    return UnitScores(base.filters, base.filterlets, "energy", kernels=kernels, patterns=patterns,
                      library=tuple(tuple(int(v) for v in p) for p in lib))
