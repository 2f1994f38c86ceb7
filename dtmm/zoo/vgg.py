"""VGG-11 as used in the DTMM paper's evaluation (CIFAR-10 / MNIST scale widths)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dtmm.zoo._layers import check_input_shape, conv_bn, conv_out

#: Conv widths per group; a 2x2 max-pool follows every group.
VGG11_GROUPS = ((32, 32), (64, 64), (128, 128, 128), (256, 256, 256))


class VGG11(nn.Module):
    """Ten 3x3 conv+BN+ReLU layers in four groups, a max-pool after each group.

    Layout (``features``)::

        conv32 conv32 pool | conv64 conv64 pool | conv128 x3 pool | conv256 x3 pool

    A ``MaxPool2d(2)`` is skipped when the map is already smaller than 2 in
    either dimension (e.g. 8x8 input: 8 -> 4 -> 2 -> 1, the fourth pool is
    skipped). The classifier is ``Flatten -> Linear(256, num_classes)``,
    preceded by ``AdaptiveAvgPool2d(1)`` when the final map is larger than
    1x1 (e.g. 2x2 for 32x32 inputs), so any input size works.
    """

    def __init__(self, input_shape, num_classes: int):
        super().__init__()
        c, h, w = check_input_shape("vgg11", input_shape, num_classes)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for g, widths in enumerate(VGG11_GROUPS, start=1):
            for i, width in enumerate(widths, start=1):
                layers[f"conv{g}_{i}"] = conv_bn(c, width, 3)
                c = width
            if min(h, w) >= 2:
                layers[f"pool{g}"] = nn.MaxPool2d(2)
                h, w = conv_out(h, 2, 2, 0), conv_out(w, 2, 2, 0)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if (h, w) != (1, 1) else nn.Identity()
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))
