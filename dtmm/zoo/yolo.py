"""The DTMM paper's tiny YOLO for face detection (FDDB, 112x112 input, a 7x7 grid).

The paper gives the input (112x112x3), the widths (16 to 256), the int8 model size
(2071 KB) and that a 1x1 head predicts on a 7x7 grid, not the exact layer list; this is
our reading of it, in the style of tiny-YOLO (3x3 conv + BN + ReLU, 2x2 max-pools)::

    conv16 pool | conv32 pool | conv64 pool | conv128 pool | conv256 conv256 conv256 | head

Four pools take 112 to 7; the head is a 1x1 ``Conv2d(256, 5 * A)`` with bias and no
activation, laid out as :mod:`dtmm.detect.yolo` documents (per anchor ``t_o, t_x, t_y,
t_w, t_h``). 1,576,346 trainable parameters on 3x112x112 with the default two anchors
(about 1.58 MB of int8 weights, against the paper's 2071 KB model): the paper's exact
layers are not known. ReLU instead of leaky ReLU: dtmm's graph capture and int8 kernels fuse
ReLU / ReLU6 only.

Input sizes must be multiples of 16 (the grid is ``H / 16 x W / 16``). One class only:
``num_classes`` must be 1 (a face detector); multi-class heads are not built.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from dtmm.detect.yolo import YoloLayout
from dtmm.zoo._layers import check_input_shape, conv_bn
from dtmm.zoo.errors import ZooError

#: Conv widths; a 2x2 max-pool follows each of the first four.
YOLO_WIDTHS = (16, 32, 64, 128, 256, 256, 256)
_POOLED = 4


class TinyYOLO(nn.Module):
    """Tiny YOLO: 7 conv+BN+ReLU layers, 4 max-pools, a 1x1 detection head.

    ``layout`` (anchors) sets the head's channels; ``model.layout`` keeps it for
    decoding (:func:`dtmm.detect.yolo.decode`).

    Example:
        >>> import torch
        >>> m = TinyYOLO((1, 112, 112), 1).eval()
        >>> tuple(m(torch.zeros(2, 1, 112, 112)).shape)
        (2, 10, 7, 7)
    """

    def __init__(self, input_shape, num_classes: int = 1, layout: YoloLayout | None = None):
        super().__init__()
        c, h, w = check_input_shape("yolo", input_shape, num_classes)
        if int(num_classes) != 1:
            raise ZooError(f"yolo: the tiny YOLO here is a one-class detector (faces); "
                           f"num_classes must be 1, got {num_classes}")
        if h % 16 or w % 16:
            raise ZooError(f"yolo: input height and width must be multiples of 16 (4 pools), "
                           f"got {h}x{w}")
        self.layout = layout or YoloLayout()
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, width in enumerate(YOLO_WIDTHS, start=1):
            layers[f"conv{i}"] = conv_bn(c, width, 3)
            c = width
            if i <= _POOLED:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.head = nn.Conv2d(c, self.layout.channels, 1, bias=True)
        self.grid = (h // 16, w // 16)

    def forward(self, x):
        return self.head(self.features(x))
