"""Budgets, objectives and their checks: what a plan must meet and what it minimises.

Two objectives over the same space and cost model:

``"instructions"`` (the paper's Eq. 8): minimise the predicted instructions subject to
    loss change <= ``max_loss``, flash <= ``flash``, SRAM <= ``ram``;
``"loss"``: minimise the predicted loss change subject to flash, SRAM and optionally
    ``max_instructions``.

``flash`` is compared with the firmware's flash (number (c): const data + code); ``ram``
with the arena + the firmware's static data + its reserved stack (all of the SRAM the
model needs on the chip); ``model_bytes`` with the model's constant data alone (number
(b): weights, index, quantization and metadata arrays of the generated model, exact;
the kernel code is not counted), for a model stored in a flash partition of its own or
compared by model size as the paper does.

Sizes parse in the usual units, binary as MCU datasheets use them:

>>> parse_size("512KB"), parse_size("0.5MiB"), parse_size("65536"), parse_size("1.5 kb")
(524288, 524288, 65536, 1536)
>>> parse_size("-3KB")
Traceback (most recent call last):
dtmm.schedule.space.ScheduleError: size '-3KB' must be positive
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dtmm.schedule.space import ScheduleError

__all__ = ["Budgets", "Problem", "parse_size", "parse_count", "OBJECTIVES", "violations"]

OBJECTIVES = ("instructions", "loss")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "mib": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3, "gib": 1024 ** 3}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text, what: str = "size") -> int:
    """Bytes from ``512KB``, ``0.5MiB``, ``64k``, ``65536`` (K = 1024, case-insensitive)."""
    if isinstance(text, bool):
        raise ScheduleError(f"{what} {text!r} is not a size")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        s = str(text)
        if s.strip().startswith("-"):
            raise ScheduleError(f"{what} {s!r} must be positive")
        m = _SIZE.match(s)
        if not m:
            raise ScheduleError(f"{what} {s!r} is not a size (examples: 512KB, 0.5MiB, 65536)")
        value, unit = float(m.group(1)), m.group(2).lower()
        if unit not in _UNITS:
            raise ScheduleError(f"{what} {s!r}: unknown unit {m.group(2)!r} (use B, KB, MB or "
                                f"KiB, MiB)")
    n = value * _UNITS[unit]
    if not math.isfinite(n) or n < 1:
        raise ScheduleError(f"{what} {text!r} must be positive")
    return int(round(n))


def parse_count(text, what: str = "count") -> float:
    """A positive count such as ``2.5e6``, ``3000000`` or ``3M`` (K = 1000 here).

    >>> parse_count("3M"), parse_count("2.5e6")
    (3000000.0, 2500000.0)
    """
    mult = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
    s = str(text).strip()
    m = re.match(r"^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)$", s)
    if not m or s.startswith("-"):
        raise ScheduleError(f"{what} {text!r} is not a positive number (examples: 3000000, 2.5e6, 3M)")
    v = float(m.group(1)) * mult[m.group(2).lower()]
    if not math.isfinite(v) or v <= 0:
        raise ScheduleError(f"{what} {text!r} must be positive")
    return v


@dataclass(frozen=True)
class Budgets:
    """Limits a plan must meet (None: no limit)."""

    flash: int | None = None
    ram: int | None = None
    max_instructions: float | None = None
    max_loss: float | None = None
    model_bytes: int | None = None

    def __post_init__(self):
        for name in ("flash", "ram", "max_instructions", "model_bytes"):
            v = getattr(self, name)
            if v is not None and not (v > 0):
                raise ScheduleError(f"budget {name} must be positive, got {v}")
        if self.max_loss is not None and not (self.max_loss >= 0 and math.isfinite(self.max_loss)):
            raise ScheduleError(f"the loss budget must be a finite value >= 0, got {self.max_loss}")

    def to_json(self) -> dict:
        return {"flash_bytes": self.flash, "sram_bytes": self.ram,
                "max_instructions": self.max_instructions, "max_loss_increase": self.max_loss,
                "model_bytes": self.model_bytes}


@dataclass(frozen=True)
class Problem:
    objective: str
    budgets: Budgets

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ScheduleError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "instructions" and self.budgets.max_loss is None:
            raise ScheduleError("minimising instructions needs a loss budget (--max-loss-increase); "
                                "or minimise the loss change (--objective min-loss)")

    def value(self, c) -> float:
        return c.instructions if self.objective == "instructions" else c.delta_loss

    def key(self, c) -> tuple:
        """Order of two solutions: the objective, ties broken by the other one, then by flash
        (so that among equally accurate plans the fastest and smallest wins)."""
        other = c.delta_loss if self.objective == "instructions" else c.instructions
        return (round(self.value(c), 12), round(other, 9), c.flash_bytes)


def violations(c, b: Budgets) -> dict[str, float]:
    """Relative amounts by which costs ``c`` exceed each budget (only those exceeded)."""
    out = {}
    if b.flash is not None and c.flash_bytes > b.flash:
        out["flash"] = (c.flash_bytes - b.flash) / b.flash
    if b.model_bytes is not None and c.const_bytes > b.model_bytes:
        out["model_bytes"] = (c.const_bytes - b.model_bytes) / b.model_bytes
    if b.ram is not None and c.sram_bytes > b.ram:
        out["ram"] = (c.sram_bytes - b.ram) / b.ram
    if b.max_instructions is not None and c.instructions > b.max_instructions:
        out["instructions"] = (c.instructions - b.max_instructions) / b.max_instructions
    if b.max_loss is not None and c.delta_loss > b.max_loss + 1e-12:
        out["loss"] = (c.delta_loss - b.max_loss) / max(b.max_loss, 1e-3)
    return out
