"""Importance scorers: plain callables returning one score per pruning unit per layer.

Every scorer has the signature::

    scorer(model, layers=None, granularity="filterlet", *, data=None, loss_fn=None,
           batches=...) -> dict[layer_name, np.ndarray]   # float64, one value per unit

``layers`` is an iterable of module names (or ``None`` for
:func:`dtmm.prune.layout.prunable_layers`), ``granularity`` a name or a
:class:`~dtmm.prune.granularity.Granularity`. Higher score = more important. Scorers
that need no data ignore ``data`` / ``loss_fn`` / ``batches``. Scores are computed on
the effective weights, so a model masked with :func:`dtmm.prune.masks.apply_masks`
scores its pruned weights as zero.

Built in (also in :data:`SCORERS`):

* :func:`taylor` -- first-order Taylor, the DTMM paper's Eq. (2):
  ``|sum_{w in unit} dL/dw * w|``. The signed per-weight products are summed over the
  unit *before* the absolute value (:func:`taylor_contributions` gives those products).
* :func:`l1`, :func:`l2` -- ``sum |w|`` and ``sqrt(sum w^2)`` per unit.
* :func:`energy` -- ``sum w^2`` per unit (squared L2). Per weight it is ``w^2``, so with
  the ``pattern`` granularity the chosen pattern is the one keeping the most L2 energy
  (PatDNN's rule), and connectivity pruning drops the kernels whose kept energy is least.
* :func:`chip` -- CHIP's channel independence (Sui et al., NeurIPS 2021), filters only.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dtmm.prune.granularity import Granularity, get_granularity
from dtmm.prune.layout import PruneError, resolve_layers, to_ohwi, weight_ohwi, weight_param

__all__ = ["Scorer", "taylor", "taylor_contributions", "l1", "l2", "energy", "chip",
           "channel_independence", "SCORERS", "get_scorer"]

#: Type of an importance scorer (see the module docstring).
Scorer = Callable[..., "dict[str, np.ndarray]"]


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _split_batch(batch):
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise PruneError("empty batch in calibration data")
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _check_batches(batches: int) -> int:
    if int(batches) < 1:
        raise PruneError(f"batches must be >= 1, got {batches}")
    return int(batches)


def taylor_contributions(model: nn.Module, layers: Iterable[str] | None = None, *,
                         data: Iterable, loss_fn: Callable | None = None, batches: int = 8
                         ) -> dict[str, np.ndarray]:
    """Signed per-weight first-order terms ``(dL/dw) * w`` in OHWI / OI, float64.

    ``dL/dw`` is the gradient of the mean loss over the first ``batches`` batches of
    ``data`` (an iterable of ``(inputs, targets)``), computed in eval mode (BatchNorm
    uses running statistics, dropout is off). ``loss_fn(outputs, targets)`` defaults to
    cross-entropy. The model's ``.grad`` fields, train/eval mode and ``requires_grad``
    flags are left as they were.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
        >>> data = [(torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0]))]
        >>> c = taylor_contributions(m, ["0"], data=data)
        >>> c["0"].shape
        (2, 3, 3, 1)
    """
    mods = resolve_layers(model, layers)
    batches = _check_batches(batches)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    params = [weight_param(m) for m in mods.values()]
    was_training = model.training
    flags = [p.requires_grad for p in params]
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    dev = _device(model)
    n = 0
    try:
        model.eval()
        for p in params:
            p.requires_grad_(True)
        for batch in data:
            if n >= batches:
                break
            x, y = _split_batch(batch)
            x = x.to(dev)
            y = y.to(dev) if isinstance(y, torch.Tensor) else y
            loss = loss_fn(model(x), y)
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(grads, gs):
                if g is not None:
                    acc += g.detach().to(torch.float64)
            n += 1
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)
    if n == 0:
        raise PruneError("taylor importance needs calibration data; got no batches")
    out = {}
    for (name, mod), g in zip(mods.items(), grads):
        out[name] = to_ohwi((g / n).cpu().numpy()) * weight_ohwi(mod)
    return out


def taylor(model: nn.Module, layers: Iterable[str] | None = None,
           granularity: str | Granularity = "filterlet", *, data: Iterable | None = None,
           loss_fn: Callable | None = None, batches: int = 8) -> dict[str, np.ndarray]:
    """First-order Taylor importance per unit, DTMM Eq. (2): ``|sum_unit (dL/dw) * w|``.

    The estimate of the loss change when the unit is zeroed. See
    :func:`taylor_contributions` for how the gradient is obtained.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
        >>> data = [(torch.randn(8, 3, 6, 6), torch.randint(0, 2, (8,)))] * 2
        >>> s = taylor(m, ["0", "2"], "filterlet", data=data, batches=2)
        >>> s["0"].shape, s["2"].shape     # 4*3*3 filterlets; 2 rows x ceil(64/16) runs
        ((36,), (8,))
    """
    if data is None:
        raise PruneError("taylor importance needs calibration data (data=...)")
    g = get_granularity(granularity)
    contrib = taylor_contributions(model, layers, data=data, loss_fn=loss_fn, batches=batches)
    return {name: np.abs(g.reduce(c, c.shape)) for name, c in contrib.items()}


def l1(model: nn.Module, layers: Iterable[str] | None = None,
       granularity: str | Granularity = "filterlet", **_ignored) -> dict[str, np.ndarray]:
    """L1 norm of each unit's weights: ``sum |w|``.

    Example:
        >>> conv = nn.Conv2d(2, 1, 1, bias=False)
        >>> with torch.no_grad(): _ = conv.weight.copy_(torch.tensor([[[[1.0]], [[-2.0]]]]))
        >>> l1(nn.Sequential(conv), ["0"], "filter")["0"].tolist()
        [3.0]
    """
    g = get_granularity(granularity)
    out = {}
    for name, mod in resolve_layers(model, layers).items():
        w = weight_ohwi(mod)
        out[name] = g.reduce(np.abs(w), w.shape)
    return out


def l2(model: nn.Module, layers: Iterable[str] | None = None,
       granularity: str | Granularity = "filterlet", **_ignored) -> dict[str, np.ndarray]:
    """L2 norm of each unit's weights: ``sqrt(sum w^2)``.

    Example:
        >>> conv = nn.Conv2d(2, 1, 1, bias=False)
        >>> with torch.no_grad(): _ = conv.weight.copy_(torch.tensor([[[[3.0]], [[-4.0]]]]))
        >>> l2(nn.Sequential(conv), ["0"], "filter")["0"].tolist()
        [5.0]
    """
    g = get_granularity(granularity)
    out = {}
    for name, mod in resolve_layers(model, layers).items():
        w = weight_ohwi(mod)
        out[name] = np.sqrt(g.reduce(w * w, w.shape))
    return out


def energy(model: nn.Module, layers: Iterable[str] | None = None,
           granularity: str | Granularity = "filterlet", **_ignored) -> dict[str, np.ndarray]:
    """L2 energy of each unit's weights: ``sum w^2`` (the square of :func:`l2`).

    Sums over units of per-weight energies, so a pattern's score is the energy it keeps.

    Example:
        >>> conv = nn.Conv2d(2, 1, 1, bias=False)
        >>> with torch.no_grad(): _ = conv.weight.copy_(torch.tensor([[[[3.0]], [[-4.0]]]]))
        >>> energy(nn.Sequential(conv), ["0"], "filter")["0"].tolist()
        [25.0]
    """
    g = get_granularity(granularity)
    out = {}
    for name, mod in resolve_layers(model, layers).items():
        w = weight_ohwi(mod)
        out[name] = g.reduce(w * w, w.shape)
    return out


def channel_independence(features: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """CHIP channel independence of one batch of feature maps ``(N, C, H, W)``.

    For each sample, ``A`` is the ``C x (H*W)`` matrix of its feature map rows and
    ``CI_c = ||A||_* - ||A with row c set to 0||_*`` (nuclear norms). Returns the
    ``(N, C)`` float64 tensor. ``chunk`` bounds how many masked copies are decomposed
    at once (memory ``chunk * C * H * W`` doubles).

    Example:
        >>> a = torch.zeros(1, 2, 1, 2); a[0, 0, 0, 0] = 3.0; a[0, 1, 0, 1] = 4.0
        >>> channel_independence(a).tolist()   # orthogonal rows: each removes its own norm
        [[3.0, 4.0]]
    """
    if features.ndim == 2:
        features = features[:, :, None, None]
    if features.ndim != 4:
        raise PruneError(f"channel independence needs (N, C, H, W) features, got {tuple(features.shape)}")
    a = features.detach().to(torch.float64).flatten(2)           # (N, C, HW)
    n, c, _ = a.shape
    full = torch.linalg.svdvals(a).sum(-1)                       # (N,)
    out = torch.empty(n, c, dtype=torch.float64, device=a.device)
    eye = torch.eye(c, dtype=torch.float64, device=a.device)
    for s in range(n):
        for j0 in range(0, c, chunk):
            j1 = min(c, j0 + chunk)
            keep = (1.0 - eye[j0:j1])[:, :, None]                # (k, C, 1)
            out[s, j0:j1] = full[s] - torch.linalg.svdvals(a[s][None] * keep).sum(-1)
    return out


def chip(model: nn.Module, layers: Iterable[str] | None = None,
         granularity: str | Granularity = "filter", *, data: Iterable | None = None,
         batches: int = 5, taps: Mapping[str, str] | None = None, **_ignored) -> dict[str, np.ndarray]:
    """CHIP channel-independence importance of each output channel (filter granularity only).

    Runs the first ``batches`` batches of ``data`` through ``model`` in eval mode and
    averages :func:`channel_independence` of each layer's output feature maps over all
    samples. CHIP measures the maps after the activation: ``taps`` maps a layer name to
    the name of the module whose output to use instead of the conv's own (e.g. the
    ``nn.ReLU`` after it); a tapped module must run once per forward pass. Only
    ``nn.Conv2d`` layers are supported.

    Raises :class:`PruneError` for any granularity other than ``"filter"``.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> s = chip(m, ["0"], "filter", data=[torch.randn(2, 3, 6, 6)], taps={"0": "1"})
        >>> s["0"].shape
        (4,)
    """
    g = get_granularity(granularity)
    if g.name != "filter":
        raise PruneError(f"CHIP channel independence is only defined for filter granularity, not {g.name!r}")
    if data is None:
        raise PruneError("chip importance needs calibration data (data=...)")
    batches = _check_batches(batches)
    mods = resolve_layers(model, layers)
    all_mods = dict(model.named_modules())
    taps = dict(taps or {})
    unknown = [k for k in taps if k not in mods]
    if unknown:
        raise PruneError(f"taps name layer(s) {unknown} that are not being scored")
    sums: dict[str, torch.Tensor] = {}
    count = {name: 0 for name in mods}
    calls: dict[str, int] = {}
    hooks = []

    def make_hook(name: str):
        def hook(_mod, _inp, out):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] > 1:
                raise PruneError(f"CHIP tap for layer {name!r} ran more than once in one forward pass "
                                 "(a shared module?): tap a module used once")
            ci = channel_independence(out)
            sums[name] = sums.get(name, 0) + ci.sum(0)
            count[name] += ci.shape[0]
        return hook

    for name, mod in mods.items():
        if not isinstance(mod, nn.Conv2d):
            raise PruneError(f"CHIP needs conv feature maps; layer {name!r} is a {type(mod).__name__}")
        tap = taps.get(name, name)
        if tap not in all_mods:
            raise PruneError(f"tap module {tap!r} for layer {name!r} not found in the model")
        hooks.append(all_mods[tap].register_forward_hook(make_hook(name)))
    was_training = model.training
    dev = _device(model)
    n = 0
    try:
        model.eval()
        with torch.no_grad():
            for batch in data:
                if n >= batches:
                    break
                x, _ = _split_batch(batch)
                calls.clear()
                model(x.to(dev))
                n += 1
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if n == 0:
        raise PruneError("chip importance needs calibration data; got no batches")
    out = {}
    for name, mod in mods.items():
        if count[name] == 0:
            raise PruneError(f"layer {name!r} (or its tap) never ran during the CHIP forward passes")
        ci = (sums[name] / count[name]).cpu().numpy()
        if ci.shape != (mod.out_channels,):
            raise PruneError(f"tap of layer {name!r} gives {ci.shape[0]} channels, layer has {mod.out_channels}")
        out[name] = ci
    return out


#: The built-in scorers by name.
SCORERS: dict[str, Scorer] = {"taylor": taylor, "l1": l1, "l2": l2, "energy": energy,
                              "chip": chip}


def get_scorer(s: str | Scorer) -> Scorer:
    """Look a scorer up by name (``"taylor"``, ``"l1"``, ``"l2"``, ``"energy"``, ``"chip"``) or
    pass a callable through.

    Example:
        >>> get_scorer("l1") is l1
        True
    """
    if isinstance(s, str):
        try:
            return SCORERS[s]
        except KeyError:
            raise PruneError(f"unknown importance scorer {s!r}; choose one of {sorted(SCORERS)}") from None
    if callable(s):
        return s
    raise PruneError(f"not a scorer: {s!r}")
