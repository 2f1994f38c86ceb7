"""Shared building blocks and spatial-size bookkeeping for the model zoo.

Every convolution uses PyTorch-style padding ``kernel // 2``; the helpers track
the feature-map size so that models adapt to small inputs instead of shrinking
a map to zero.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dtmm.zoo.errors import ZooError


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution/pooling along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def down_stride(h: int, w: int) -> int:
    """Stride for a layer the reference architecture runs at stride 2.

    Stride 2 is kept while both spatial dims are at least 2; once the map is
    1 pixel high or wide the step runs at stride 1 in both dims (with padding
    ``k // 2`` a size-1 axis cannot shrink further, and halving only the other
    axis would distort the architecture's aspect handling).
    """
    return 2 if min(h, w) >= 2 else 1


def conv_bn(c_in: int, c_out: int, kernel, stride: int = 1, *, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    """``Conv2d(bias=False) -> BatchNorm2d [-> ReLU]`` with padding ``kernel // 2``."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    layers = OrderedDict(
        conv=nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=(kh // 2, kw // 2),
                       groups=groups, bias=False),
        bn=nn.BatchNorm2d(c_out),
    )
    if relu:
        layers["relu"] = nn.ReLU(inplace=False)
    return nn.Sequential(layers)


def check_input_shape(name: str, input_shape, num_classes: int) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ZooError(f"{name}: input_shape must be (C, H, W), got {input_shape!r}") from None
    if min(c, h, w) < 1:
        raise ZooError(f"{name}: input_shape dims must be >= 1, got {(c, h, w)}")
    if int(num_classes) < 1:
        raise ZooError(f"{name}: num_classes must be >= 1, got {num_classes}")
    return c, h, w
