"""DS-CNN, the MLPerf Tiny keyword-spotting model."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dtmm.zoo._layers import check_input_shape, conv_bn, down_stride

DSCNN_WIDTH = 64
DSCNN_BLOCKS = 4


class DSCNN(nn.Module):
    """MLPerf Tiny KWS DS-CNN (the 64-channel "DS-CNN S" variant).

    ``conv 10x4 stride 2 -> 64, BN, ReLU`` then four depthwise-separable blocks
    ``[depthwise 3x3 + BN + ReLU, pointwise 1x1 64 + BN + ReLU]``, global
    average pool, linear. The reference's dropout layers are left out (they
    are identities at inference).

    Small inputs: the first kernel is clamped to the input, ``(min(10, H),
    min(4, W))`` (8x8 digits get an 8x4 kernel), and its stride drops to 1 if
    the input is 1 pixel high or wide. Padding is PyTorch-style
    ``(kh // 2, kw // 2)``, so a 49x10 MFCC input gives a 25x6 map (Keras
    ``same`` would give 25x5).
    """

    def __init__(self, input_shape, num_classes: int):
        super().__init__()
        c, h, w = check_input_shape("dscnn", input_shape, num_classes)
        kh, kw = min(10, h), min(4, w)
        s = down_stride(h, w)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        layers["conv0"] = conv_bn(c, DSCNN_WIDTH, (kh, kw), s)
        for i in range(1, DSCNN_BLOCKS + 1):
            layers[f"dw{i}"] = conv_bn(DSCNN_WIDTH, DSCNN_WIDTH, 3, groups=DSCNN_WIDTH)
            layers[f"pw{i}"] = conv_bn(DSCNN_WIDTH, DSCNN_WIDTH, 1)
        self.features = nn.Sequential(layers)
        self.first_kernel = (kh, kw)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(DSCNN_WIDTH, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.features(x))))
