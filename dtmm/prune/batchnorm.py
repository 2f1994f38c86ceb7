"""Re-estimating BatchNorm statistics after pruning (no labels, no weight change).

Example:
    >>> import numpy as np, torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    >>> recalibrate_batchnorm(m, np.random.default_rng(0).random((16, 1, 6, 6), np.float32), 8, 2)
    >>> int(m[1].num_batches_tracked)
    2
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

__all__ = ["recalibrate_batchnorm"]


def recalibrate_batchnorm(net: nn.Module, x: np.ndarray, batch_size: int = 64, batches: int = 8) -> None:
    """Re-estimate BatchNorm running statistics of a pruned model on training images.

    Pruning shifts every conv's output distribution, and stale BN statistics then
    mis-normalise it; re-estimating them (no labels, no weight change) recovers much
    of the one-shot accuracy loss. Weights, masks and BN affine parameters are untouched.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(x) == 0:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = net.training
    net.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                      # cumulative average over the batches below
        m.train()
    with torch.no_grad():
        for i in range(0, min(len(x), batch_size * batches), batch_size):
            net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])))
    for m, (mom, tr) in zip(bns, saved):
        m.momentum = mom
        m.train(tr)
    net.train(was_training)

