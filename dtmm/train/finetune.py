"""Fine-tuning under pruning masks: the built-in trainer and the contract a user's trainer meets.

The fine-tuning step of the compression pipeline is a callable, :data:`FineTuneFn`::

    FineTuneFn = Callable[[nn.Module, FineTuneContext], FineTuneResult | None]

It receives the pruned model (masks applied as :class:`dtmm.prune.masks.WeightMask`
parametrizations) and a :class:`FineTuneContext` (train / val loaders, the masks to
hold, an optional teacher, the epoch budget, the device, the built-in trainer's
settings and a :meth:`~FineTuneContext.check_masks` helper), and trains the model
**in place**. Its obligations:

* keep every module, its name and its mask parametrization (the weights it trains
  are ``module.parametrizations.weight.original``; ``module.weight`` is the masked
  view). Any optimizer works: the gradient reaching a masked weight is zero and the
  forward pass multiplies by the mask, so no step can make a pruned weight count;
* never turn a pruned weight back on (masks may only lose entries, e.g. by gradual
  pruning);
* return a :class:`FineTuneResult` (its ``history`` may be empty) or ``None``.

:func:`fine_tune` runs such a callable (the built-in :func:`default_fine_tune` when
none is given), then calls ``ctx.check_masks(model)``, which raises
:class:`MaskError` naming the module if a mask was lost or a pruned weight revived,
and returns the result (evaluating the model on the val loader when the callable
returned ``None``). The same contract runs under ``torchrun`` with
``DistributedDataParallel`` (``examples/ddp_finetune.py``).

The built-in trainer, :func:`default_fine_tune`, with :class:`FineTuneConfig`:

* the task's loss (``FineTuneConfig.task``, :mod:`dtmm.train.task`; default
  classification: cross-entropy), or knowledge distillation from a teacher
  (:class:`Distillation`): for classification
  ``loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``
  (Hinton et al. 2015; ``T^2`` keeps the soft gradients' scale independent of ``T``); for
  a task with a ``distill_loss(student, teacher)`` (detection:
  :meth:`dtmm.detect.DetectionTask.distill_loss`, soft targets on the YOLO head; ``T``
  unused) ``loss = alpha * distill_loss + (1 - alpha) * task.loss``;
* an optimizer by name (``sgd``, ``adam``, ``adamw``) or any factory, with a
  per-step :class:`~dtmm.train.lr.LRSchedule` (cosine, step, constant, warm-up);
* optional gradual pruning (:class:`GradualPruning`) with the polynomial schedule of
  Zhu & Gupta (2017) (see :func:`polynomial_sparsity`);
* seeded: the same seed, data and thread count give bit-identical weights on CPU
  (weight updates inside a forked torch RNG seeded with ``seed``; a
  :class:`DatasetLoader` draws epoch ``e``'s order from ``SeedSequence([seed, e])``;
  a loader or sampler with ``set_epoch`` gets it called each epoch);
* per-epoch :class:`~dtmm.train.trainer.EpochStats` (train loss, val loss / the task's
  metric, lr, seconds, sparsity) in the result; progress through
  :class:`~dtmm.train.progress.Progress` (``quiet`` silences it).

Example:
    >>> import torch, torch.nn as nn
    >>> from dtmm.data import load_dataset, split
    >>> from dtmm.prune import apply_masks
    >>> tr, va, _ = split(load_dataset("digits", limit=200), val=0.2, test=0.0)
    >>> torch.manual_seed(0) is not None
    True
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10))
    >>> keep = torch.rand(8, 1, 3, 3) > 0.5
    >>> _ = apply_masks(net, {"0": keep})
    >>> res = fine_tune(net, DatasetLoader(tr, 32), DatasetLoader(va, 64),
    ...                 config=FineTuneConfig(epochs=2, lr=0.05), quiet=True)
    >>> len(res.history), bool(torch.all(net[0].weight[~keep] == 0))
    (2, True)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dtmm.data.dataset import Dataset, iterate_batches
from dtmm.errors import DataError, DtmmError
from dtmm.train.lr import LRSchedule
from dtmm.train.progress import Progress
from dtmm.train.task import CLASSIFICATION, ClassificationTask, Task
from dtmm.train.trainer import (EpochStats, OptimizerFactory, _epoch_seed, device_of, evaluate,
                                make_optimizer, run_epoch)

__all__ = ["FineTuneFn", "FineTuneContext", "FineTuneResult", "FineTuneConfig", "Distillation",
           "GradualPruning", "MaskError", "DatasetLoader", "fine_tune", "default_fine_tune",
           "distillation_loss", "polynomial_sparsity", "unwrap"]


class MaskError(DtmmError):
    """A fine-tuning step lost a mask or revived a pruned weight."""


# ----------------------------------------------------------------------------- data


class DatasetLoader:
    """Re-iterable, seeded batches of a :class:`~dtmm.data.Dataset` (a tiny DataLoader).

    Each ``iter()`` yields ``(x, y)`` torch batches (``task.batches``: a
    :class:`~dtmm.data.DetectionDataset` with ``task`` a detection task gives ``(x, boxes)``;
    default classification); with ``shuffle`` the order of
    epoch ``e`` (see :meth:`set_epoch`) comes from ``SeedSequence([seed, e])``, as in
    :func:`dtmm.train.train`. Without ``set_epoch`` calls, each ``iter()`` advances
    the epoch by one.

    Example:
        >>> import numpy as np
        >>> ds = Dataset(np.zeros((5, 1, 2, 2), np.float32), np.arange(5) % 2, ("a", "b"), "toy")
        >>> [len(y) for _, y in DatasetLoader(ds, 2, shuffle=False)]
        [2, 2, 1]
    """

    def __init__(self, ds: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 task: Task | None = None):
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.ds, self.batch_size, self.shuffle, self.seed = ds, int(batch_size), shuffle, int(seed)
        self.task = CLASSIFICATION if task is None else task
        self._epoch: int | None = None
        self._auto = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.ds) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch if self._epoch is not None else self._auto
        self._auto += 1
        if isinstance(self.task, ClassificationTask):
            return iterate_batches(self.ds, self.batch_size, shuffle=self.shuffle,
                                   seed=_epoch_seed(self.seed, epoch))
        return iter(self.task.batches(self.ds, self.batch_size, shuffle=self.shuffle,
                                      seed=_epoch_seed(self.seed, epoch)))


def _as_loader(data, batch_size: int, seed: int, shuffle: bool, task: Task | None = None):
    from dtmm.data.detection import DetectionDataset

    if data is None:
        return None
    if isinstance(data, (Dataset, DetectionDataset)):
        if isinstance(data, DetectionDataset) and _is_classification(task):
            raise DataError(f"dataset {data.name!r} holds boxes: fine-tune a detector on it with "
                            f"FineTuneConfig(task=dtmm.detect.DetectionTask())")
        if len(data) == 0:
            raise DataError(f"dataset {data.name!r} is empty")
        return DatasetLoader(data, batch_size, shuffle=shuffle, seed=seed, task=task)
    return data


def _is_classification(task) -> bool:
    return task is None or isinstance(task, ClassificationTask)


def _evaluate(model: nn.Module, loader, task: Task | None):
    """``(metric, loss)`` on the val loader: the task's own evaluation on the dataset a
    :class:`DatasetLoader` holds; ``(None, None)`` for another task's loader of another kind
    (only a whole dataset can be scored by AP)."""
    if _is_classification(task):
        return evaluate(model, loader)
    if isinstance(loader, DatasetLoader):
        return evaluate(model, loader.ds, batch_size=loader.batch_size, task=task)
    return None, None


def _set_epoch(loader, epoch: int) -> None:
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        fn = getattr(obj, "set_epoch", None)
        if callable(fn):
            fn(epoch)


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from a teacher: ``alpha`` weights the soft loss, ``temperature`` T."""

    alpha: float = 0.5
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise DtmmError(f"distillation alpha must lie in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise DtmmError(f"distillation temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class GradualPruning:
    """Gradual pruning toward per-layer final ratios (Zhu & Gupta 2017).

    * ``final``: ``{module: ratio}`` (share of ``granularity`` units pruned at the
      end) or ``{module: (beta, alpha)}`` (DTMM joint filter + filterlet pruning,
      :func:`dtmm.prune.joint_mask`; each of beta and alpha follows the schedule);
    * ``scorer``: a :mod:`dtmm.prune.importance` name or callable, evaluated on the
      current (masked) weights at each pruning step; data-driven scorers get
      ``score_batches`` training batches;
    * timing: pruning steps at optimizer steps ``t0 + k * dt``, ``k = 1..n``, with
      ``t0 = start_epoch * steps_per_epoch``, ``t0 + n * dt = end_epoch *
      steps_per_epoch`` (default ``end_epoch``: 3/4 of the epochs, so the last
      quarter fine-tunes the final masks) and ``n = updates`` (capped at the number
      of steps in between);
    * the initial ratio ``s_i`` of a layer is its share of already-pruned units.

    Masks only lose entries: an already-pruned unit stays pruned (its score is set
    below every live unit's before selection, and the new mask is ANDed with the
    old), so a layer whose current sparsity exceeds the schedule keeps it.
    """

    final: Mapping[str, float | tuple[float, float]]
    granularity: str = "filterlet"
    scorer: str | Callable = "l2"
    start_epoch: float = 0.0
    end_epoch: float | None = None
    updates: int = 10
    score_batches: int = 4

    def __post_init__(self) -> None:
        if not self.final:
            raise DtmmError("gradual pruning needs at least one layer in `final`")
        if self.updates < 1:
            raise DtmmError(f"gradual pruning updates must be >= 1, got {self.updates}")
        if self.start_epoch < 0 or (self.end_epoch is not None and self.end_epoch < self.start_epoch):
            raise DtmmError(f"gradual pruning needs 0 <= start_epoch <= end_epoch, got "
                            f"{self.start_epoch}, {self.end_epoch}")


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings of the built-in trainer (a user's :data:`FineTuneFn` may read or ignore them)."""

    epochs: int = 5
    lr: float = 0.01
    optimizer: str | OptimizerFactory = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64                 # only used to batch a Dataset given instead of a loader
    schedule: LRSchedule = field(default_factory=LRSchedule)
    distill: Distillation | None = None
    gradual: GradualPruning | None = None
    seed: int = 0
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    #: what is learnt (:mod:`dtmm.train.task`): the loss, the training metric, the validation
    #: metric and how a Dataset is batched; default classification
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise DtmmError(f"epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise DtmmError(f"learning rate must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise DtmmError(f"batch_size must be >= 1, got {self.batch_size}")


# ----------------------------------------------------------------------------- contract


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers (else ``model``)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


@dataclass
class FineTuneResult:
    """What a fine-tuning step did.

    ``history``: one :class:`~dtmm.train.trainer.EpochStats` per epoch (may be empty for
    a user's trainer); ``steps``: optimizer steps; ``seconds``: wall time; ``masks``:
    the final ``{module: bool mask}``; ``pruning_steps``: ``(step, {module: sparsity})``
    for each gradual-pruning update; ``val_acc`` / ``val_loss``: after the last epoch.
    """

    history: list[EpochStats] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    pruning_steps: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    val_acc: float | None = None
    val_loss: float | None = None


@dataclass
class FineTuneContext:
    """Everything a :data:`FineTuneFn` gets besides the model (see the module docstring).

    ``masks`` are the masks at the start (``{module: bool tensor}``, module layout);
    the built-in gradual pruner shrinks them as it goes. ``config`` holds the built-in
    trainer's settings; ``epochs`` is ``config.epochs``.
    """

    train_loader: Iterable
    val_loader: Iterable | None
    masks: dict[str, torch.Tensor]
    teacher: nn.Module | None
    device: torch.device
    config: FineTuneConfig
    quiet: bool = False

    @property
    def epochs(self) -> int:
        return self.config.epochs

    def check_masks(self, model: nn.Module, *, exact: bool | None = None) -> None:
        """Raise :class:`MaskError` unless ``model`` still holds the masks.

        Every module of :attr:`masks` must still carry a mask parametrization; its mask
        must keep nothing that :attr:`masks` prunes (``exact=True``: equal it; the
        default is exact unless gradual pruning is configured) and its effective weight
        must be exactly zero wherever its mask prunes. DDP / DataParallel wrappers are
        looked through.
        """
        from dtmm.prune.masks import get_masks

        exact = self.config.gradual is None if exact is None else exact
        inner = unwrap(model)
        have = get_masks(inner)
        mods = dict(inner.named_modules())
        for name, want in self.masks.items():
            if name not in have:
                raise MaskError(f"module {name!r} lost its pruning mask during fine-tuning")
            got = have[name].to(want.device)
            if got.shape != want.shape:
                raise MaskError(f"module {name!r}: mask shape changed from {tuple(want.shape)} to "
                                f"{tuple(got.shape)}")
            revived = int((got & ~want).sum())
            if revived:
                raise MaskError(f"module {name!r}: {revived} pruned weights were turned back on")
            if exact and not torch.equal(got, want):
                raise MaskError(f"module {name!r}: mask changed ({int((want & ~got).sum())} weights "
                                "newly pruned) although no gradual pruning was asked for")
            with torch.no_grad():
                w = mods[name].weight
                bad = int((w[~got.to(w.device)] != 0).sum())
            if bad:
                raise MaskError(f"module {name!r}: {bad} masked weights are nonzero")


#: A fine-tuning step: trains the model in place under its masks (see the module docstring).
FineTuneFn = Callable[[nn.Module, FineTuneContext], "FineTuneResult | None"]


# ----------------------------------------------------------------------------- pieces


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE``.

    Example:
        >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([0])
        >>> bool(torch.isclose(distillation_loss(s, s, y, 0.0, 4.0), F.cross_entropy(s, y)))
        True
        >>> float(distillation_loss(s, s, y, 1.0, 4.0))            # same logits: no soft loss
        0.0
    """
    T = float(temperature)
    soft = F.kl_div(F.log_softmax(student / T, dim=1), F.log_softmax(teacher / T, dim=1),
                    reduction="batchmean", log_target=True) * (T * T)
    if alpha >= 1.0:
        return alpha * soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student, targets)


def polynomial_sparsity(step: int, s_initial: float, s_final: float, t0: int, n: int, dt: float) -> float:
    """Zhu & Gupta's schedule ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3``.

    Clamped to ``s_i`` before ``t0`` and ``s_f`` after ``t0 + n * dt``.

    Example:
        >>> [round(polynomial_sparsity(t, 0.0, 0.8, 0, 4, 10), 4) for t in (0, 10, 20, 40, 99)]
        [0.0, 0.4625, 0.7, 0.8, 0.8]
    """
    span = n * dt
    if span <= 0:
        return s_final
    frac = min(max((step - t0) / span, 0.0), 1.0)
    return s_final + (s_initial - s_final) * (1.0 - frac) ** 3


class _GradualPruner:
    """Recompute masks at the schedule's pruning steps (see :class:`GradualPruning`)."""

    def __init__(self, spec: GradualPruning, model: nn.Module, ctx: FineTuneContext, steps_per_epoch: int,
                 epochs: int):
        from dtmm.prune import apply_masks, get_granularity, get_masks, resolve_layers
        from dtmm.prune.granularity import Pattern, UnitGranularity

        self.spec, self.model, self.ctx = spec, model, ctx
        self.g = get_granularity(spec.granularity)
        if not isinstance(self.g, UnitGranularity) or isinstance(self.g, Pattern):
            raise DtmmError(f"gradual pruning supports unit granularities (filterlet, filter, element), "
                            f"not {self.g.name!r}")
        self.mods = resolve_layers(unwrap(model), list(spec.final))
        self.joint = {k: isinstance(v, (tuple, list)) for k, v in spec.final.items()}
        have = get_masks(unwrap(model))
        fresh = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.mods.items() if n not in have}
        if fresh:
            apply_masks(unwrap(model), fresh)
            ctx.masks.update({k: v.clone() for k, v in fresh.items()})
        end = spec.end_epoch if spec.end_epoch is not None else max(spec.start_epoch, 0.75 * epochs)
        self.t0 = int(round(spec.start_epoch * steps_per_epoch))
        t_end = max(int(round(end * steps_per_epoch)), self.t0)
        self.n = max(1, min(spec.updates, t_end - self.t0))
        self.dt = (t_end - self.t0) / self.n
        self.when = {self.t0 + int(round(k * self.dt)): k for k in range(1, self.n + 1)}
        self.initial = self._initial_ratios(have)
        self.events: list[tuple[int, dict[str, float]]] = []

    def _initial_ratios(self, have) -> dict[str, tuple[float, float] | float]:
        from dtmm.prune.layout import to_ohwi

        out = {}
        for name in self.spec.final:
            m = have.get(name)
            shape = tuple(to_ohwi(self.mods[name].weight.detach()).shape)
            if m is None:
                out[name] = (0.0, 0.0) if self.joint[name] else 0.0
                continue
            mk = to_ohwi(m).cpu().numpy()
            if self.joint[name]:
                dead = float((~mk.reshape(mk.shape[0], -1).any(1)).mean())
                live_units = self._alive(mk, shape)
                n_live_filters = max(int((mk.reshape(mk.shape[0], -1).any(1)).sum()), 1)
                per_filter = self.g.num_units(shape) / mk.shape[0]
                alpha = 1.0 - live_units.sum() / (n_live_filters * per_filter)
                out[name] = (dead, float(max(alpha, 0.0)))
            else:
                out[name] = float(1.0 - self._alive(mk, shape).mean())
        return out

    def _alive(self, mask_ohwi: np.ndarray, shape) -> np.ndarray:
        ids = self.g.unit_ids(shape).ravel()
        return np.bincount(ids, weights=mask_ohwi.ravel().astype(np.float64),
                           minlength=self.g.num_units(shape)) > 0

    def __call__(self, step: int) -> None:
        k = self.when.get(step)
        if k is None:
            return
        self.update(step)

    def _ratio(self, name: str, step: int):
        s_i, s_f = self.initial[name], self.spec.final[name]
        if self.joint[name]:
            return tuple(polynomial_sparsity(step, a, b, self.t0, self.n, self.dt) for a, b in zip(s_i, s_f))
        return polynomial_sparsity(step, s_i, float(s_f), self.t0, self.n, self.dt)

    def update(self, step: int) -> None:
        from dtmm.prune import FILTER, apply_masks, get_masks, get_scorer, joint_mask
        from dtmm.prune.layout import from_ohwi, to_ohwi

        inner = unwrap(self.model)
        scorer = self.spec.scorer if callable(self.spec.scorer) else get_scorer(self.spec.scorer)
        data = None
        if self.spec.score_batches > 0:
            data = []
            for i, b in enumerate(self.ctx.train_loader):
                if i >= self.spec.score_batches:
                    break
                data.append((b[0].to(self.ctx.device), b[1].to(self.ctx.device)))
        names = list(self.spec.final)
        was = inner.training
        task = self.ctx.config.task
        crit = nn.CrossEntropyLoss() if _is_classification(task) else task.loss
        scores = scorer(inner, names, self.g, data=data, loss_fn=crit, batches=max(len(data or []), 1))
        fscores = (scorer(inner, [n for n in names if self.joint[n]], FILTER, data=data,
                          loss_fn=crit, batches=max(len(data or []), 1))
                   if any(self.joint.values()) else {})
        inner.train(was)
        have = get_masks(inner)
        new, spars = {}, {}
        for name in names:
            old = to_ohwi(have[name]).cpu().numpy()
            shape = old.shape
            alive = self._alive(old, shape)
            sc = np.asarray(scores[name], dtype=np.float64).copy()
            low = (sc.min() if sc.size else 0.0) - 1.0 - abs(sc.min() if sc.size else 0.0)
            sc[~alive] = low
            r = self._ratio(name, step)
            if self.joint[name]:
                fs = np.asarray(fscores[name], dtype=np.float64).copy()
                fdead = ~old.reshape(shape[0], -1).any(1)
                fs[fdead] = (fs.min() - 1.0 - abs(fs.min())) if fs.size else 0.0
                mk = joint_mask(fs, sc, shape, r[0], r[1], fine=self.g)
            else:
                mk = self.g.build_mask(sc, r, shape)
            mk = mk & old
            new[name] = torch.from_numpy(np.ascontiguousarray(from_ohwi(mk))).to(have[name].device)
            spars[name] = round(1.0 - float(mk.mean()), 6)
        apply_masks(inner, new)
        for name, m in new.items():
            self.ctx.masks[name] = m.clone()
        self.events.append((step, spars))


def _zero_pruned_state(opt: torch.optim.Optimizer, model: nn.Module) -> None:
    """Zero optimizer state (momentum, Adam moments) at masked positions after a mask update."""
    from dtmm.prune.masks import get_masks

    inner = unwrap(model)
    mods = dict(inner.named_modules())
    for name, mk in get_masks(inner).items():
        p = mods[name].parametrizations["weight"].original
        st = opt.state.get(p, {})
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                v.mul_(mk.to(v.dtype))


def _sparsity(model: nn.Module, names) -> float | None:
    from dtmm.prune.masks import get_masks

    ms = [m for n, m in get_masks(unwrap(model)).items() if n in names]
    if not ms:
        return None
    total = sum(m.numel() for m in ms)
    return round(1.0 - sum(int(m.sum()) for m in ms) / total, 6)


def _steps_per_epoch(loader) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        return None
    return int(n)


# ----------------------------------------------------------------------------- built-in trainer


def _loss_fn(cfg: FineTuneConfig, teacher: nn.Module | None):
    """``loss_fn(outputs, y, x)`` of the built-in trainer: the task's loss, or distillation."""
    task, dist = cfg.task, cfg.distill
    if _is_classification(task):
        if dist is None:
            return lambda logits, y, x: F.cross_entropy(logits, y)

        def classify(logits, y, x):
            with torch.no_grad():
                t = teacher(x)
            return distillation_loss(logits, t, y, dist.alpha, dist.temperature)
        return classify
    if dist is None:
        return lambda out, y, x: task.loss(out, y)
    soft = getattr(task, "distill_loss", None)
    if soft is None:
        raise DtmmError(f"the {task.name} task has no distill_loss(student, teacher): distillation "
                        f"is not available for it")

    def distilled(out, y, x):
        with torch.no_grad():
            t = teacher(x)
        hard = task.loss(out, y)
        return hard if dist.alpha == 0 else dist.alpha * soft(out, t) + (1.0 - dist.alpha) * hard
    return distilled


def default_fine_tune(model: nn.Module, ctx: FineTuneContext) -> FineTuneResult:
    """The built-in :data:`FineTuneFn`: trains ``model`` in place as ``ctx.config`` says.

    See the module docstring for the loss, schedule, gradual pruning and seeding.
    ``ctx.train_loader`` must be re-iterable (a :class:`DatasetLoader`, a
    ``DataLoader``, a list of batches); its length (``len()``, or one pass to count
    when it has none) sets the steps per epoch. The masks are checked after every
    epoch.
    """
    cfg = ctx.config
    device = ctx.device
    spe = _steps_per_epoch(ctx.train_loader)
    if spe is None:
        spe = sum(1 for _ in ctx.train_loader)
    if spe == 0:
        raise DataError("the training loader yields no batches")
    total = cfg.epochs * spe
    teacher = ctx.teacher
    if cfg.distill is not None and teacher is None:
        raise DtmmError("distillation was asked for but no teacher model was given")
    result = FineTuneResult()
    t_start = time.perf_counter()
    was_training = model.training
    rng_devices = [] if device.type == "cpu" else [device]
    bar = Progress("finetune", cfg.epochs, spe, quiet=ctx.quiet)
    try:
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(cfg.seed)
            gen = torch.Generator().manual_seed(cfg.seed)
            pruner = None
            if cfg.gradual is not None:
                pruner = _GradualPruner(cfg.gradual, model, ctx, spe, cfg.epochs)
            params = [p for p in model.parameters() if p.requires_grad]
            opt = make_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay, cfg.momentum)
            if teacher is not None:
                teacher.eval()

            loss_fn = _loss_fn(cfg, teacher)

            before = None
            if pruner is not None:
                def before(step):
                    if step in pruner.when:
                        pruner.update(step)
                        _zero_pruned_state(opt, model)

            watched = list(ctx.masks)
            step = 0
            for epoch in range(cfg.epochs):
                t_epoch = time.perf_counter()
                _set_epoch(ctx.train_loader, epoch)
                tot = run_epoch(model, ctx.train_loader, opt, step=step,
                                lr_at=lambda s: cfg.schedule.lr(cfg.lr, s, spe, total),
                                loss_fn=loss_fn, device=device, augment=cfg.augment, generator=gen,
                                before_step=before, progress=bar, epoch=epoch + 1,
                                metric_fn=None if _is_classification(cfg.task) else cfg.task.batch_metric)
                step = tot.step
                ctx.check_masks(model)
                val_acc = val_loss = None
                if ctx.val_loader is not None:
                    val_acc, val_loss = _evaluate(model, ctx.val_loader, cfg.task)
                result.history.append(EpochStats(
                    epoch=epoch + 1, train_loss=tot.loss, train_acc=tot.acc, val_loss=val_loss,
                    val_acc=val_acc, lr_end=cfg.schedule.lr(cfg.lr, max(step - 1, 0), spe, total),
                    seconds=time.perf_counter() - t_epoch, sparsity=_sparsity(model, watched)))
                bar.epoch_done(epoch + 1, result.history[-1].summary())
            result.steps = step
            if pruner is not None:
                result.pruning_steps = pruner.events
    finally:
        bar.close()
        model.train(was_training)
    result.seconds = time.perf_counter() - t_start
    if result.history:
        result.val_acc, result.val_loss = result.history[-1].val_acc, result.history[-1].val_loss
    return result


def fine_tune(model: nn.Module, train, val=None, *, config: FineTuneConfig | None = None,
              teacher: nn.Module | None = None, fn: FineTuneFn | None = None,
              device: torch.device | str | None = None, quiet: bool = False) -> FineTuneResult:
    """Fine-tune ``model`` in place under its masks with ``fn`` (default: the built-in trainer).

    ``train`` / ``val``: a :class:`~dtmm.data.Dataset` or, with a detection
    ``config.task``, a :class:`~dtmm.data.DetectionDataset` (batched by
    ``config.batch_size`` through the task, shuffled with ``config.seed``), or a
    re-iterable of ``(x, y)`` batches (e.g. a ``DataLoader``; a task other than
    classification scores only a dataset: its validation metric is then ``None``).
    ``teacher``: the unpruned model, for distillation (or a user's own use). ``device``:
    where to train (the model and teacher are moved there); default: where the model is.
    The masks held are the model's masks now (:func:`dtmm.prune.get_masks`). After ``fn`` returns, :meth:`FineTuneContext.check_masks` runs (raising
    :class:`MaskError`); if ``fn`` returned ``None``, the result holds the final
    validation numbers only. ``result.masks`` are the final masks.

    Example (a user's trainer; the contract of :data:`FineTuneFn`):
        >>> import torch, torch.nn as nn
        >>> from dtmm.prune import apply_masks
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> _ = apply_masks(net, {"1": torch.tensor([[True, False, True, True]] * 2)})
        >>> def my_trainer(model, ctx):
        ...     opt = torch.optim.RMSprop(model.parameters(), lr=0.01)
        ...     for _ in range(ctx.epochs):
        ...         for x, y in ctx.train_loader:
        ...             opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
        >>> data = [(torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)))]
        >>> res = fine_tune(net, data, data, config=FineTuneConfig(epochs=2), fn=my_trainer)
        >>> res.val_acc is not None, float(net[1].weight[0, 1].detach())
        (True, 0.0)
    """
    from dtmm.prune.masks import get_masks

    cfg = config or FineTuneConfig()
    dev = torch.device(device) if device is not None else device_of(model)
    if device is not None:
        model.to(dev)
        if teacher is not None:
            teacher.to(dev)
    ctx = FineTuneContext(
        train_loader=_as_loader(train, cfg.batch_size, cfg.seed, shuffle=True, task=cfg.task),
        val_loader=_as_loader(val, max(cfg.batch_size, 256), cfg.seed, shuffle=False, task=cfg.task),
        masks={k: v.clone() for k, v in get_masks(unwrap(model)).items()},
        teacher=teacher, device=dev, config=cfg, quiet=quiet)
    if ctx.train_loader is None:
        raise DataError("fine-tuning needs training data")
    start_masks = {k: v.clone() for k, v in ctx.masks.items()}
    t0 = time.perf_counter()
    res = (fn or default_fine_tune)(model, ctx)
    if res is not None and not isinstance(res, FineTuneResult):
        raise DtmmError(f"the fine-tuning function returned {type(res).__name__}; it must return a "
                        "FineTuneResult or None")
    # the start masks bound what may be kept; gradual pruning may only have removed more
    FineTuneContext(ctx.train_loader, None, start_masks, None, dev, cfg).check_masks(model, exact=False)
    ctx.check_masks(model, exact=False)
    if res is None:
        res = FineTuneResult(seconds=time.perf_counter() - t0)
        if ctx.val_loader is not None:
            res.val_acc, res.val_loss = _evaluate(model, ctx.val_loader, cfg.task)
    elif res.val_acc is None and res.history and res.history[-1].val_acc is not None:
        res.val_acc, res.val_loss = res.history[-1].val_acc, res.history[-1].val_loss
    res.masks = {k: v.clone() for k, v in get_masks(unwrap(model)).items()}
    return res
