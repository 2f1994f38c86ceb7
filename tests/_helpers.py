"""Helpers shared by several test files (imported as a plain module; pytest puts tests/ on sys.path)."""
import numpy as np
import torch.nn as nn

from dtmm.zoo import trained_like_batchnorm


def realistic_bn(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics as after training (see :func:`dtmm.zoo.trained_like_batchnorm`)."""
    return trained_like_batchnorm(model, seed)


def assert_bytes_equal(got: np.ndarray, want: np.ndarray, what: str = "output") -> None:
    """Exact equality of integer outputs; on failure name the count and the first mismatches."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} mismatching bytes, first at {bad[:5].tolist()}: "
                           f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]}")
