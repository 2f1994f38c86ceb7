"""Optional, seeded batch augmentations for :func:`dtmm.train.train`.

An augmentation is any callable ``aug(x, generator) -> x`` taking a float
NCHW batch and a :class:`torch.Generator` (seeded by the trainer, so runs
repeat exactly). None is applied unless you pass ``augment=`` to ``train``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dtmm.errors import InvalidArgument

__all__ = ["RandomShift", "RandomHFlip", "Compose"]


class RandomShift:
    """Shift each image by up to ``max_shift`` pixels in each direction, zero fill.

    Example:
        >>> import torch
        >>> x = torch.ones(3, 1, 4, 4)
        >>> RandomShift(1)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 4, 4])
    """

    def __init__(self, max_shift: int = 2):
        if max_shift < 0:
            raise InvalidArgument(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = int(max_shift)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        s = self.max_shift
        if s == 0:
            return x
        n, _, h, w = x.shape
        xp = F.pad(x, (s, s, s, s))
        off = torch.randint(0, 2 * s + 1, (n, 2), generator=generator).tolist()
        return torch.stack([xp[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(off)])

    def __repr__(self) -> str:
        return f"RandomShift({self.max_shift})"


class RandomHFlip:
    """Mirror each image left-right with probability ``p`` (not for digits/text).

    Example:
        >>> import torch
        >>> x = torch.arange(4.).reshape(1, 1, 1, 4)
        >>> RandomHFlip(1.0)(x, torch.Generator()).flatten().tolist()
        [3.0, 2.0, 1.0, 0.0]
    """

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator) < self.p
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def __repr__(self) -> str:
        return f"RandomHFlip({self.p})"


class Compose:
    """Apply several augmentations in order.

    Example:
        >>> import torch
        >>> aug = Compose([RandomShift(1), RandomHFlip()])
        >>> aug(torch.ones(2, 1, 3, 3), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 3, 3])
    """

    def __init__(self, augs):
        self.augs = list(augs)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for a in self.augs:
            x = a(x, generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.augs!r})"
