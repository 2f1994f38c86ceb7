"""Loss-change estimators of a strategy: first-order Taylor (the paper) and measured sensitivity.

Both are tables, so that a strategy's predicted loss change is a sum of look-ups
(additive over channel groups and layers, like the paper's Eq. 3):

``delta(s) = sum_g G_g[beta_g] + sum_i L_i[beta_out(i), option_i]``

* :func:`taylor_loss` (paper Eq. 2): a pruned unit changes the loss by about
  ``|sum_unit dL/dw * w|`` (gradient of the training loss, eval mode), the unit being a
  filterlet; a removed filter counts as all its filterlets removed (the sum of their
  estimates, so that filters and filterlets are judged alike). ``G_g`` sums it over the
  filters a group removes (every producer's filter of each removed channel), ``L_i``
  over the filterlets the layer's ``alpha`` removes from its surviving filters.
  Units are chosen by the same Taylor scores (:mod:`dtmm.schedule.select`).
* :func:`sensitivity_loss`: one-shot Taylor is noisy on a converged model, so this one
  *measures*: each group alone at each ``beta`` and each layer alone at each ``alpha``
  (a coarser grid, linearly interpolated) is pruned with the chosen importance scorer,
  BatchNorm statistics re-estimated on training images, and the validation loss
  measured; ``G_g`` and ``L_i`` are the increases over the unpruned model (``L_i`` is
  measured with ``beta = 0`` and used for every ``beta``). Results are cached on disk
  by a hash of the weights, data and grids, before any plan is solved.

Scores (:func:`unit_scores`) come from :mod:`dtmm.prune.importance` on the torch model.

The loss is the model's task loss (:mod:`dtmm.train.task`): ``loss_fn(outputs, targets)``,
the mean over a batch, with ``y`` / ``val_y`` arrays of targets aligned with the images
(:func:`dtmm.pipeline.tasks.targets`: labels, or padded boxes for detection); default
cross-entropy on labels.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from dtmm.schedule.select import UnitScores, fc_run_scores, group_order, removed_channels
from dtmm.schedule.space import ScheduleError, Space

__all__ = ["TableLoss", "unit_scores", "taylor_loss", "sensitivity_loss", "torch_masks", "fc_to_ir",
           "fc_to_torch",
           "LOSS_MODELS", "DEFAULT_LOSS_MODEL", "SENSITIVITY_ALPHAS"]

LOSS_MODELS = ("taylor", "sensitivity")
#: The loss model of ``dtmm plan`` / ``dtmm compress`` when none is named: measured
#: sensitivity ranks strategies far better than one-shot Taylor on a converged model
#: (Spearman 0.69 against 0.32 on ResNet-8, BENCHMARKS.md ``bench_schedule``).
DEFAULT_LOSS_MODEL = "sensitivity"
#: Filterlet ratios at which :func:`sensitivity_loss` measures each layer.
#: Bumped when what :func:`sensitivity_loss` measures changes (part of its cache key).
SENSITIVITY_VERSION = 3
SENSITIVITY_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class TableLoss:
    """Additive loss-change tables (see the module docstring).

    ``groups[g]``: one value per ``beta`` of the grid (zeros for a pinned group);
    ``layers[i]``: ``(n_betas, n_options)`` (row = the output group's beta index).
    """

    name: str
    groups: list[np.ndarray]
    layers: list[np.ndarray]
    importance: str

    def delta(self, s) -> float:
        v = 0.0
        for g, b in zip(self.groups, s.betas):
            v += g[b]
        for t, (li, oi) in zip(self.layers, enumerate(s.options)):
            v += t[self._row(li, s), oi]
        return float(v)

    def _row(self, li: int, s) -> int:
        return s.betas[self.out_groups[li]] if self.layers[li].shape[0] > 1 else 0

    def bind(self, space: Space) -> "TableLoss":
        self.out_groups = [ly.out_group for ly in space.layers]
        return self

    def layer_delta(self, li: int, s) -> float:
        return float(self.layers[li][self._row(li, s), s.options[li]])

    def to_json(self) -> dict:
        return {"name": self.name, "importance": self.importance,
                "groups": [g.tolist() for g in self.groups],
                "layers": [t.tolist() for t in self.layers]}

    @staticmethod
    def from_json(obj: dict, space: Space) -> "TableLoss":
        t = TableLoss(obj["name"], [np.asarray(g, np.float64) for g in obj["groups"]],
                      [np.asarray(x, np.float64) for x in obj["layers"]], obj["importance"])
        if len(t.groups) != len(space.groups) or len(t.layers) != len(space.layers):
            raise ScheduleError("cached loss tables do not match the model's layers")
        return t.bind(space)


# ------------------------------------------------------------------------ scores


def _layer_batches(x: np.ndarray, y: np.ndarray, batch: int, n: int):
    import torch

    out = []
    for i in range(0, min(len(x), batch * n), batch):
        out.append((torch.from_numpy(np.ascontiguousarray(x[i:i + batch])),
                    torch.from_numpy(np.asarray(y[i:i + batch]))))
    return out


def unit_scores(net, space: Space, scorer: str, x: np.ndarray | None = None,
                y: np.ndarray | None = None, *, batches: int = 8, batch_size: int = 64,
                loss_fn=None) -> UnitScores:
    """Filter and filterlet scores of every layer of ``space`` (torch module names);
    ``loss_fn``: the Taylor scorer's loss (module docstring)."""
    from dtmm import prune

    names = [ly.name for ly in space.layers]
    mods = dict(net.named_modules())
    missing = [n for n in names if n not in mods]
    if missing:
        raise ScheduleError(f"the model has no module {missing[0]!r} (the captured graph's layer "
                            f"names must be the torch module names)")
    fn = prune.get_scorer(scorer)
    kw = {}
    if scorer in ("taylor", "chip"):
        if x is None or len(x) == 0:
            raise ScheduleError(f"{scorer} importance needs training data")
        kw = {"data": _layer_batches(x, y, batch_size, batches), "batches": batches}
    elements = None
    if scorer == "taylor":          # one backward pass set, reduced per filterlet
        contrib = prune.taylor_contributions(net, names, loss_fn=loss_fn, **kw)
        fl = {n: np.abs(prune.FILTERLET.reduce(c, c.shape)) for n, c in contrib.items()}
        # a removed filter is all its filterlets removed: its estimate is the sum of theirs
        # (|sum over the filter| would cancel signs and favour whole filters over the
        # same weights removed as filterlets)
        f = {n: v.reshape(mods[n].weight.shape[0], -1).sum(axis=1) for n, v in fl.items()}
        elements = {n: np.abs(c).reshape(c.shape[0], -1) for n, c in contrib.items()}
    else:
        f = fn(net, names, "filter", **kw)
        fl = fn(net, names, "filterlet", **kw) if scorer != "chip" else prune.l2(net, names, "filterlet")
    filt = {ly.name: np.asarray(f[ly.name], np.float64) for ly in space.layers}
    flt = {ly.name: np.asarray(fl[ly.name], np.float64).reshape(ly.c_out, ly.positions)
           for ly in space.layers if ly.kind == "conv"}
    # fully connected runs: per-weight values in the IR's column order, summed per run of
    # the (pruned) inputs (select.fc_run_scores): Taylor |sum dL/dw * w|, else |w| (l1) or w**2
    fc_in = {}
    for ly in space.layers:
        if ly.kind != "fc":
            continue
        if scorer == "taylor":
            v = np.asarray(contrib[ly.name], np.float64)
        else:
            w = mods[ly.name].weight.detach().cpu().numpy().astype(np.float64)
            v = np.abs(w) if scorer == "l1" else w * w
        fc_in[ly.name] = fc_to_ir(space, ly, v.reshape(ly.c_out, ly.c_in))
    red = "abs_sum" if scorer == "taylor" else "sum"
    out = UnitScores(filt, flt, scorer, elements=elements, fc_inputs=fc_in, fc_reduce=red)
    for ly in space.layers:
        if ly.kind == "fc":
            flt[ly.name] = fc_run_scores(out, ly, np.arange(ly.c_in))
            if scorer == "taylor":                       # a filter: the sum of its runs
                filt[ly.name] = flt[ly.name].sum(axis=1)
    return out


def _fc_layout(space: Space, ly) -> tuple[int, int]:
    """``(positions, channels)`` of a fully connected layer's input (a flattened ``(H, W, C)``
    map: ``H * W`` and ``C``; a vector: 1 and its length)."""
    p = space.tensors[ly.in_tensor].positions
    if p < 1 or ly.c_in % p:
        raise ScheduleError(f"layer {ly.name!r}: {ly.c_in} inputs from {p} positions")
    return p, ly.c_in // p


def fc_to_ir(space: Space, ly, a: np.ndarray) -> np.ndarray:
    """A fully connected layer's (O, I) array from torch's column order (NCHW flatten,
    ``c * H*W + p``) into the IR's (NHWC, ``p * C + c``; the capture permutes the columns)."""
    p, c = _fc_layout(space, ly)
    return np.ascontiguousarray(np.asarray(a).reshape(-1, c, p).transpose(0, 2, 1).reshape(a.shape[0], -1))


def fc_to_torch(space: Space, ly, a: np.ndarray) -> np.ndarray:
    """The inverse of :func:`fc_to_ir`."""
    p, c = _fc_layout(space, ly)
    return np.ascontiguousarray(np.asarray(a).reshape(-1, p, c).transpose(0, 2, 1).reshape(a.shape[0], -1))


# ------------------------------------------------------------------------ taylor


def taylor_loss(space: Space, scores: UnitScores, selection: UnitScores | None = None) -> TableLoss:
    """Tables of the paper's first-order estimate (see the module docstring).

    ``scores``: Taylor scores (:func:`unit_scores` with ``"taylor"``); ``selection``: the
    scores that choose the units (a baseline's own ranking; default the Taylor scores
    themselves). FWCS layers are estimated per filterlet, CSR and pattern layers per
    weight (``|dL/dw * w|``), removed filters by the sum of their filterlets.
    """
    from dtmm.schedule.select import layer_mask

    if scores.name != "taylor":
        raise ScheduleError("taylor_loss needs Taylor scores (unit_scores(..., 'taylor'))")
    sel = selection or scores
    order = group_order(space, sel)
    nb = len(space.betas)
    groups = []
    for g in space.groups:
        t = np.zeros(nb)
        if g.pinned is None:
            s = sum(np.asarray(scores.filters[p]) for p in g.producers)
            for bi, b in enumerate(space.betas):
                t[bi] = float(s[removed_channels(space, order, g.index, b)].sum())
        groups.append(t)
    layers = []
    for ly in space.layers:
        opts = space.options(ly)
        g = space.groups[ly.out_group]
        rows = nb if g.pinned is None else 1
        fl = scores.filterlets[ly.name]
        t = np.zeros((rows, len(opts)))
        for bi in range(rows):
            alive = np.ones(ly.c_out, bool)
            alive[removed_channels(space, order, g.index, space.betas[bi])] = False
            kept_out = int(alive.sum())
            for oi, (fmt, a) in enumerate(opts):
                if fmt == "dense" or (fmt == "fwcs" and a == 0):
                    continue
                m = layer_mask(space, ly, fmt, a, alive, kept_out, sel)
                if fmt == "fwcs":
                    keep = (m.reshape(ly.c_out, ly.positions, -1).any(axis=-1) if ly.kind == "conv"
                            else m.reshape(ly.c_out, -1)[:, ::16])
                    t[bi, oi] = float(fl[alive[:, None] & ~keep].sum())
                else:
                    if scores.elements is None:
                        raise ScheduleError("element-level Taylor scores are needed for CSR / pattern")
                    el = scores.elements[ly.name]
                    t[bi, oi] = float(el[alive[:, None] & ~m.reshape(ly.c_out, -1)].sum())
        layers.append(t)
    return TableLoss("taylor", groups, layers, sel.name).bind(space)


# ------------------------------------------------------------------------ sensitivity


def torch_masks(space: Space, masks: dict[str, np.ndarray], removed: dict[int, np.ndarray],
                net) -> dict:
    """Torch-layout (OIHW / OI) bool masks from :func:`~dtmm.schedule.select.strategy_masks`'
    OHWI / OI keep-masks (a fully connected mask's columns back in torch's order)."""
    import torch

    mods = dict(net.named_modules())
    out = {}
    for ly in space.layers:
        m = np.asarray(masks[ly.name], bool)
        w = mods[ly.name].weight
        t = m.transpose(0, 3, 1, 2) if m.ndim == 4 else fc_to_torch(space, ly, m)
        t = torch.from_numpy(np.array(t, dtype=bool, copy=True))
        if tuple(t.shape) != tuple(w.shape):
            raise ScheduleError(f"layer {ly.name!r}: mask {tuple(t.shape)} vs weight {tuple(w.shape)}")
        out[ly.name] = t
    del removed
    return out


def _val_loss(net, x: np.ndarray, y: np.ndarray, batch: int = 256, loss_fn=None) -> float:
    import torch
    import torch.nn.functional as F

    net.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))
            yb = torch.from_numpy(np.asarray(y[i:i + batch]))
            if loss_fn is None:
                tot += float(F.cross_entropy(net(xb), yb, reduction="sum"))
            else:                                           # a mean over the batch
                tot += float(loss_fn(net(xb), yb)) * len(yb)
            n += len(yb)
    return tot / max(n, 1)


def _pruned_loss(net, space, strategy, scores, train_x, val_x, val_y, bn_batches,
                 loss_fn=None) -> float:
    import copy

    from dtmm.prune.batchnorm import recalibrate_batchnorm
    from dtmm.prune import apply_masks, remove_masks
    from dtmm.schedule.select import strategy_masks

    m = copy.deepcopy(net).eval()
    fl, removed = strategy_masks(space, strategy, scores)
    apply_masks(m, torch_masks(space, fl, removed, m))
    remove_masks(m)
    recalibrate_batchnorm(m, train_x, 64, bn_batches)
    return _val_loss(m, val_x, val_y, loss_fn=loss_fn)


def _cache_key(net, space, scores, train_x, val_x, alphas, bn_batches, loss_name=None) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    for a in (train_x[:64 * bn_batches], val_x):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps([SENSITIVITY_VERSION, space.alphas, space.betas, list(alphas), scores.name, bn_batches,
                         [ly.name for ly in space.layers], [list(space.options(l)) for l in space.layers]]
                        ).encode())
    if loss_name is not None:                  # another task's loss (classification: none)
        h.update(loss_name.encode())
    return h.hexdigest()[:24]


def sensitivity_loss(net, space: Space, scores: UnitScores, train_x: np.ndarray,
                     val_x: np.ndarray, val_y: np.ndarray, *, alphas=SENSITIVITY_ALPHAS,
                     bn_batches: int = 4, cache_dir=None, progress=None, loss_fn=None,
                     loss_name: str | None = None) -> TableLoss:
    """Measured per-group / per-layer loss increases (see the module docstring).

    ``loss_fn``: the task's loss (default cross-entropy); ``loss_name`` names it in the
    cache key (``None`` for cross-entropy)."""
    from dtmm.schedule.costs import Strategy
    from dtmm.train.progress import ticker

    key = _cache_key(net, space, scores, train_x, val_x, alphas, bn_batches, loss_name)
    path = None
    if cache_dir is not None:
        from pathlib import Path

        path = Path(cache_dir) / f"sensitivity-{key}.json"
        if path.is_file():
            try:
                return TableLoss.from_json(json.loads(path.read_text()), space)
            except (ValueError, KeyError, ScheduleError):
                pass                                        # stale or damaged: measure again
    base = _val_loss(net.eval(), val_x, val_y, loss_fn=loss_fn)
    nb = len(space.betas)
    opts = [space.options(ly) for ly in space.layers]
    dense = [o.index(("dense", 0.0)) if ("dense", 0.0) in o else 0 for o in opts]
    zero_b = tuple(0 for _ in space.groups)
    jobs = [("g", g.index, bi) for g in space.groups if g.pinned is None for bi in range(1, nb)]
    # every pruned format of every layer (FWCS for dtmm, CSR / pattern for the baselines):
    # the measured alphas, snapped to the layer's grid for that format
    curves: dict[tuple[int, str], dict[float, float]] = {}
    for li, o in enumerate(opts):
        for fmt in dict.fromkeys(f for f, a in o if f != "dense" and a > 0):
            curves[(li, fmt)] = {0.0: 0.0}
            seen = set()
            for a in alphas:
                oi = _nearest_option(o, a, fmt)
                if oi not in seen:
                    seen.add(oi)
                    jobs.append(("l", li, oi))
    groups = [np.zeros(nb) for _ in space.groups]
    bar = ticker(progress, "sensitivity: pruned models measured", len(jobs), unit="model")
    for k, (kind, idx, v) in enumerate(jobs):
        if kind == "g":
            b = list(zero_b)
            b[idx] = v
            s = Strategy(tuple(b), tuple(dense))
            groups[idx][v] = _pruned_loss(net, space, s, scores, train_x, val_x, val_y, bn_batches,
                                          loss_fn) - base
        else:
            o = list(dense)
            o[idx] = v
            s = Strategy(zero_b, tuple(o))
            fmt, a = opts[idx][v]
            curves[(idx, fmt)][a] = (_pruned_loss(net, space, s, scores, train_x, val_x, val_y,
                                                         bn_batches, loss_fn) - base)
        bar.update()
    bar.close()
    layers = []
    for li, ly in enumerate(space.layers):
        t = np.zeros((1, len(opts[li])))
        for oi, (fmt, a) in enumerate(opts[li]):
            c = curves.get((li, fmt))
            if c is not None:
                xs = sorted(c)
                t[0, oi] = float(np.interp(a, xs, [c[x] for x in xs]))
        layers.append(t)
    out = TableLoss("sensitivity", groups, layers, scores.name).bind(space)
    if path is not None:
        _write_json(path, out.to_json())
    return out


def _write_json(path, obj) -> None:
    """Cache file through a temporary file and a rename (a cache, so a failure is ignored)."""
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except OSError:
        pass


def _nearest_option(opts, alpha: float, want: str = "fwcs") -> int:
    best, bi = None, 0
    for oi, (fmt, a) in enumerate(opts):
        if fmt == want and (best is None or abs(a - alpha) < best):
            best, bi = abs(a - alpha), oi
    return bi
