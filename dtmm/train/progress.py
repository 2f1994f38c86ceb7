"""Progress of long training runs: a tqdm bar on a terminal, plain lines otherwise.

:class:`Progress` writes to ``stream`` (standard error by default, so that standard
output stays clean for ``--json`` results):

* when ``stream`` is a terminal: a tqdm bar over optimizer steps, with the epoch and
  the running loss as postfix;
* otherwise (a log file, CI, a pipe): one plain line per epoch with the epoch's
  numbers, the elapsed time and an estimate of the time remaining (elapsed time per
  epoch so far times the epochs left);
* ``quiet=True``: nothing at all.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress("finetune", epochs=2, steps_per_epoch=3, stream=out)
    >>> p.step(loss=0.5)
    >>> p.epoch_done(1, "train loss 0.500")
    >>> p.close()
    >>> out.getvalue().startswith("finetune epoch 1/2: train loss 0.500 | elapsed ")
    True
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``12.3 s``, ``4 min 05 s``, ``1 h 02 min``.

    Example:
        >>> format_seconds(12.34), format_seconds(245), format_seconds(3720)
        ('12.3 s', '4 min 05 s', '1 h 02 min')
    """
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Report training progress (see the module docstring)."""

    def __init__(self, desc: str, epochs: int, steps_per_epoch: int | None = None, *,
                 quiet: bool = False, stream: TextIO | None = None):
        self.desc = desc
        self.epochs = int(epochs)
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.bar = None
        if not quiet and _is_tty(self.stream):
            from tqdm.auto import tqdm

            total = None if steps_per_epoch is None else self.epochs * int(steps_per_epoch)
            self.bar = tqdm(total=total, unit="step", desc=desc, leave=False, file=self.stream)

    @property
    def plain(self) -> bool:
        """True when plain per-epoch lines are written (not quiet, not a terminal)."""
        return not self.quiet and self.bar is None

    def step(self, **postfix) -> None:
        """One optimizer step done (updates the bar; plain mode prints nothing per step)."""
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix({k: (f"{v:.3f}" if isinstance(v, float) else v)
                                      for k, v in postfix.items()}, refresh=False)

    def epoch_done(self, epoch: int, text: str) -> None:
        """Epoch ``epoch`` (1-based) finished; ``text`` summarises its numbers."""
        elapsed = time.perf_counter() - self.t0
        left = elapsed / max(epoch, 1) * max(self.epochs - epoch, 0)
        line = (f"{self.desc} epoch {epoch}/{self.epochs}: {text} | elapsed {format_seconds(elapsed)}, "
                f"~{format_seconds(left)} left")
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        elif not self.quiet:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
