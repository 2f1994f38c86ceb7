"""MobileNetV1 with width multiplier 0.25 (the MLPerf Tiny visual-wake-words model)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dtmm.zoo._layers import check_input_shape, conv_bn, conv_out, down_stride

#: (output channels, reference stride) of the stem and the 13 separable blocks at alpha 0.25.
MOBILENETV1_025_LAYERS = (
    (8, 2),
    (16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2),
    (128, 1), (128, 1), (128, 1), (128, 1), (128, 1),
    (256, 2), (256, 1),
)


class MobileNetV1(nn.Module):
    """MobileNetV1, alpha 0.25: channels 8, 16, 32, 32, 64, 64, 128 x6, 256, 256.

    ``stem conv3x3 stride 2 -> 8`` then 13 blocks ``[depthwise 3x3 (groups=C)
    + BN + ReLU, pointwise 1x1 + BN + ReLU]``, global average pool, linear.
    Activations are ReLU (not ReLU6): int8 quantization clips the range anyway
    and plain ReLU folds into every kernel's output clamp.

    Small inputs: the reference has five stride-2 steps (/32). A step runs at
    stride 2 only while the map is at least 2x2; once it is 1 pixel high or
    wide the remaining steps run at stride 1, so 28x28 gives
    14, 7, 4, 2, 1 and 8x8 gives 4, 2, 1, 1, 1.
    """

    def __init__(self, input_shape, num_classes: int):
        super().__init__()
        c, h, w = check_input_shape("mobilenetv1_025", input_shape, num_classes)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, (width, ref_stride) in enumerate(MOBILENETV1_025_LAYERS):
            s = down_stride(h, w) if ref_stride == 2 else 1
            if i == 0:
                layers["conv0"] = conv_bn(c, width, 3, s)
            else:
                layers[f"dw{i}"] = conv_bn(c, c, 3, s, groups=c)
                layers[f"pw{i}"] = conv_bn(c, width, 1)
            h, w = conv_out(h, 3, s, 1), conv_out(w, 3, s, 1)
            c = width
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.features(x))))
