"""Helpers shared by several test files (imported as a plain module; pytest puts tests/ on sys.path)."""
import shutil

import numpy as np
import pytest
import torch.nn as nn

from dtmm.zoo import trained_like_batchnorm


_QEMU_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-nm", "arm-none-eabi-size", "qemu-system-arm")
#: Skip marker for tests that build Cortex-M firmware and run it under QEMU.
needs_qemu = pytest.mark.skipif(
    any(shutil.which(t) is None for t in _QEMU_TOOLS),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (apt-get install qemu-system-arm "
           "gcc-arm-none-eabi libnewlib-arm-none-eabi)")


def small_net_source(factory: str) -> str:
    """Python source of a user's model file: ``factory(input_shape, num_classes)`` returning
    a small conv net (3 convs + BatchNorm, global pool, linear), as a test writes it to disk."""
    return f'''import torch.nn as nn

def {factory}(input_shape, num_classes):
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
'''


def realistic_bn(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics as after training (see :func:`dtmm.zoo.trained_like_batchnorm`)."""
    return trained_like_batchnorm(model, seed)


def assert_bytes_equal(got: np.ndarray, want: np.ndarray, what: str = "output") -> None:
    """Exact equality of integer outputs; on failure name the count and the first mismatches."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{what}: {len(bad)} mismatching bytes, first at {bad[:5].tolist()}: "
                           f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]}")
