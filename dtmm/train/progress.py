"""Progress of long runs: a tqdm bar on a terminal, plain lines with elapsed time and an
estimate of the time remaining otherwise.

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

__all__ = ["Progress", "Ticker", "Reporter", "ticker", "format_seconds"]


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


# ------------------------------------------------------------------ other long loops


class Ticker:
    """Progress of a loop over ``total`` items (pruned models measured, calibration graphs,
    QEMU runs): a tqdm bar on a terminal, otherwise a plain line every tenth of the loop
    (and at its end) with the elapsed time and an estimate of the time remaining.

    ``say``: where plain lines go instead of ``stream`` (a ``progress`` callback).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> t = Ticker("sensitivity", 4, unit="model", stream=out)
        >>> for _ in range(4):
        ...     t.update()
        >>> t.close()
        >>> out.getvalue().splitlines()[-1].startswith("sensitivity: 4/4 models | elapsed ")
        True
    """

    def __init__(self, desc: str, total: int, *, unit: str = "step", quiet: bool = False,
                 stream: TextIO | None = None, say=None):
        self.desc, self.total, self.unit = desc, max(int(total), 0), unit
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.say = say
        self.k = 0
        self.t0 = time.perf_counter()
        self.every = max(1, -(-self.total // 10))
        self.bar = None
        if not quiet and say is None and _is_tty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, unit=unit, desc=desc, leave=False, file=self.stream)

    def update(self, n: int = 1, text: str | None = None) -> None:
        """``n`` more items done; ``text`` (optional) is added to this item's line."""
        self.k += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if self.quiet or not (self.k % self.every == 0 or self.k >= self.total):
            return
        elapsed = time.perf_counter() - self.t0
        left = elapsed / max(self.k, 1) * max(self.total - self.k, 0)
        units = self.unit + ("s" if self.total != 1 else "")
        line = (f"{self.desc}: {self.k}/{self.total} {units}{': ' + text if text else ''} | "
                f"elapsed {format_seconds(elapsed)}, ~{format_seconds(left)} left")
        if self.say is not None:
            self.say(line)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Reporter:
    """A ``progress`` callback for the pipeline: called with a line, prints it (to standard
    error) unless ``quiet``; :func:`ticker` asks it for a :class:`Ticker` (a bar on a
    terminal). :meth:`step` times one step of a verb and prints ``[k/n] title: summary``.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> say = Reporter(stream=out, steps=2)
        >>> with say.step("load the checkpoint") as s:
        ...     s.summary = "resnet8"
        >>> out.getvalue().startswith("[1/2] load the checkpoint: resnet8 (")
        True
    """

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, steps: int | None = None):
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.steps = steps
        self.k = 0

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=self.stream, flush=True)

    def ticker(self, desc: str, total: int, unit: str = "step") -> Ticker:
        return Ticker(desc, total, unit=unit, quiet=self.quiet, stream=self.stream)

    def step(self, title: str) -> "_Step":
        self.k += 1
        tag = f"[{self.k}/{self.steps}]" if self.steps else f"[{self.k}]"
        return _Step(self, tag, title)


class _Step:
    def __init__(self, rep: Reporter, tag: str, title: str):
        self.rep, self.tag, self.title, self.summary = rep, tag, title, "done"

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.rep(f"{self.tag} {self.title}: {self.summary} "
                     f"({format_seconds(time.perf_counter() - self.t0)})")


def ticker(progress, desc: str, total: int, unit: str = "step") -> Ticker:
    """The :class:`Ticker` for a ``progress`` callback: a :class:`Reporter`'s (a bar on a
    terminal), plain lines through any other callable, or a silent one for ``None``."""
    if progress is None:
        return Ticker(desc, total, unit=unit, quiet=True)
    if hasattr(progress, "ticker"):
        return progress.ticker(desc, total, unit)
    return Ticker(desc, total, unit=unit, say=progress)
