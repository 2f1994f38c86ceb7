"""Residual networks: ResNet-8 (MLPerf Tiny) and the DTMM paper's ResNet-12."""

from __future__ import annotations

import operator

from torch import nn

from dtmm.zoo._layers import check_input_shape, conv_bn, conv_out, down_stride


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut, ReLU after the add.

    ``conv1 (stride s) -> BN -> ReLU -> conv2 -> BN``, plus the shortcut:
    identity when shape is unchanged, else a 1x1 projection with stride ``s``
    (``Conv2d(bias=False) + BN`` by default, or a plain biased ``Conv2d`` when
    ``projection_bn=False``, as in MLPerf Tiny's ResNet-8).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, *, projection_bn: bool = True):
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.conv2 = conv_bn(c_out, c_out, 3, relu=False)
        if stride != 1 or c_in != c_out:
            if projection_bn:
                self.shortcut = conv_bn(c_in, c_out, 1, stride, relu=False)
            else:
                self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, padding=0, bias=True)
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        return self.relu(operator.add(out, self.shortcut(x)))


class _ResNet(nn.Module):
    def __init__(self, name, input_shape, num_classes, stem_width, stages, projection_bn):
        super().__init__()
        c, h, w = check_input_shape(name, input_shape, num_classes)
        self.stem = conv_bn(c, stem_width, 3)
        c = stem_width
        blocks = []
        for width, stride in stages:
            s = down_stride(h, w) if stride == 2 else 1
            blocks.append(BasicBlock(c, width, s, projection_bn=projection_bn))
            h, w = conv_out(h, 3, s, 1), conv_out(w, 3, s, 1)
            c = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


class ResNet8(_ResNet):
    """MLPerf Tiny image-classification ResNet-8.

    ``stem conv3x3 16`` then three basic blocks of widths 16/32/64 at strides
    1/2/2; the strided blocks use a 1x1 projection shortcut which, as in the
    MLPerf reference, is a biased conv without BN. Global average pool, dense.
    All other convs are ``bias=False`` and followed by BN. MLPerf's Keras model
    keeps those conv biases (redundant before BN) and counts BN running
    statistics, giving 78,666 parameters; here 77,946 trainable parameters on
    3x32x32 (78,666 - 240 biases - 480 BN statistics).
    """

    def __init__(self, input_shape, num_classes: int):
        super().__init__("resnet8", input_shape, num_classes, 16,
                         ((16, 1), (32, 2), (64, 2)), projection_bn=False)


class ResNet12(_ResNet):
    """ResNet-12 of the DTMM paper's evaluation.

    ``stem conv3x3 32`` then four basic blocks (one per stage) of widths
    32/64/128/256; stages 2-4 run at stride 2 with ``1x1 conv + BN``
    projection shortcuts. Global average pool, linear.
    """

    def __init__(self, input_shape, num_classes: int):
        super().__init__("resnet12", input_shape, num_classes, 32,
                         ((32, 1), (64, 2), (128, 2), (256, 2)), projection_bn=True)
