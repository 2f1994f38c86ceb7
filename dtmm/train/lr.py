"""Learning-rate schedules, evaluated per optimizer step: cosine, step, constant; optional warm-up.

A schedule is a small frozen dataclass; :meth:`LRSchedule.lr` gives the learning rate
of 0-based optimizer step ``step`` of a run of ``total_steps`` steps with
``steps_per_epoch`` steps per epoch:

* warm-up (``warmup_epochs > 0``): linear from ``base_lr / warmup_steps`` to
  ``base_lr`` over the first ``warmup_steps = round(warmup_epochs * steps_per_epoch)``
  steps; the schedule proper runs over the remaining steps;
* ``"cosine"``: ``final + (base - final) * (1 + cos(pi * t / T)) / 2`` with
  ``final = base * final_frac`` (t, T counted after warm-up);
* ``"step"``: ``base * gamma ** (epoch_after_warmup // step_epochs)``;
* ``"constant"``: ``base``.

Example:
    >>> s = LRSchedule("cosine")
    >>> [round(s.lr(0.1, t, steps_per_epoch=5, total_steps=10), 4) for t in (0, 5, 9)]
    [0.1, 0.05, 0.0024]
    >>> w = LRSchedule("constant", warmup_epochs=1)
    >>> [w.lr(0.1, t, steps_per_epoch=4, total_steps=8) for t in (0, 3, 4)]
    [0.025, 0.1, 0.1]
    >>> [LRSchedule("step", step_epochs=1, gamma=0.5).lr(0.1, t, 2, 6) for t in (0, 2, 4)]
    [0.1, 0.05, 0.025]
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dtmm.errors import DtmmError

__all__ = ["LRSchedule", "SCHEDULES", "cosine_lr"]

#: Names :class:`LRSchedule` accepts.
SCHEDULES = ("cosine", "step", "constant")


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine-annealed learning rate for 0-based ``step`` of ``total_steps`` (ends near 0).

    Example:
        >>> cosine_lr(0.1, 0, 10), round(cosine_lr(0.1, 5, 10), 6)
        (0.1, 0.05)
    """
    if total_steps <= 0:
        return base_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / total_steps))


@dataclass(frozen=True)
class LRSchedule:
    """A per-step learning-rate schedule (see the module docstring)."""

    kind: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 1          # "step": decay every this many epochs
    gamma: float = 0.1            # "step": decay factor
    final_frac: float = 0.0       # "cosine": final lr as a share of the base lr

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise DtmmError(f"unknown learning-rate schedule {self.kind!r}; choose from {SCHEDULES}")
        if self.warmup_epochs < 0:
            raise DtmmError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.step_epochs < 1:
            raise DtmmError(f"step_epochs must be >= 1, got {self.step_epochs}")
        if not 0 < self.gamma <= 1:
            raise DtmmError(f"gamma must lie in (0, 1], got {self.gamma}")
        if not 0 <= self.final_frac <= 1:
            raise DtmmError(f"final_frac must lie in [0, 1], got {self.final_frac}")

    def lr(self, base_lr: float, step: int, steps_per_epoch: int, total_steps: int) -> float:
        """Learning rate of 0-based optimizer ``step``."""
        warm = min(int(round(self.warmup_epochs * steps_per_epoch)), total_steps)
        if step < warm:
            return base_lr * (step + 1) / warm
        t, span = step - warm, max(total_steps - warm, 1)
        if self.kind == "constant":
            return base_lr
        if self.kind == "step":
            return base_lr * self.gamma ** ((t // max(steps_per_epoch, 1)) // self.step_epochs)
        final = base_lr * self.final_frac
        return final + (base_lr - final) * 0.5 * (1.0 + math.cos(math.pi * t / span))
