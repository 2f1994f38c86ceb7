"""TFLite SAME / VALID padding arithmetic (``ComputePaddingHeightWidth``)."""
from __future__ import annotations


def same_pads_1d(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """``(before, after)`` pads TFLite SAME uses along one axis.

    TFLite's output size is ``ceil(size / stride)``; the total padding is split with
    the smaller half before.

    >>> same_pads_1d(28, 3, 2)
    (0, 1)
    >>> same_pads_1d(27, 3, 2)
    (1, 1)
    """
    eff = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def same_pads(hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` pads of TFLite SAME for an ``(H, W)`` input."""
    t, b = same_pads_1d(hw[0], kernel[0], stride[0], dilation[0])
    l, r = same_pads_1d(hw[1], kernel[1], stride[1], dilation[1])
    return t, b, l, r
