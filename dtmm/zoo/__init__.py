"""Model zoo: the CNNs of the DTMM paper and MLPerf Tiny, as plain PyTorch.

Every model is built from ``Conv2d`` (padding ``kernel // 2``, stride 1 or 2,
``bias=False`` before BN), ``BatchNorm2d``, ``ReLU``, ``MaxPool2d``,
``AdaptiveAvgPool2d(1)``, ``Flatten``, ``Linear`` and residual ``operator.add``,
so ``torch.fx.symbolic_trace`` captures it. Models adapt to small inputs
(8x8, 25x25, 28x28, 32x32) instead of shrinking a map to zero; each class
docstring states its rule.

Trainable parameter counts (``sum(p.numel() for p in model.parameters())``,
BN running statistics not counted) on each model's canonical input:

===================  =============  =======  ==========
model                input (C,H,W)  classes  parameters
===================  =============  =======  ==========
``vgg11``            3x32x32        10       1,913,834
``resnet12``         3x32x32        10       1,228,970
``resnet8``          3x32x32        10       77,946
``dscnn``            1x49x10        12       23,180
``mobilenetv1_025``  3x96x96        2        213,586
``yolo``             3x112x112      1        1,576,346
===================  =============  =======  ==========

:data:`MODEL_NAMES` are the classifiers (output ``(N, classes)`` logits);
:data:`DETECTION_MODEL_NAMES` the detectors: ``yolo``, the paper's tiny YOLO
(:class:`~dtmm.zoo.yolo.TinyYOLO`: one class, inputs a multiple of 16, output the
``(N, 5 * anchors, H / 16, W / 16)`` head decoded by :mod:`dtmm.detect.yolo`).
:func:`build_model` builds both.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dtmm.zoo.dscnn import DSCNN
from dtmm.zoo.errors import ZooError
from dtmm.zoo.mobilenet import MobileNetV1
from dtmm.zoo.resnet import BasicBlock, ResNet8, ResNet12
from dtmm.zoo.vgg import VGG11
from dtmm.zoo.yolo import TinyYOLO

__all__ = ["build_model", "trained_like_batchnorm", "MODEL_NAMES", "DETECTION_MODEL_NAMES",
           "CANONICAL", "ZooError", "VGG11", "ResNet8", "ResNet12", "BasicBlock", "DSCNN",
           "MobileNetV1", "TinyYOLO"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "vgg11": VGG11,
    "resnet12": ResNet12,
    "resnet8": ResNet8,
    "dscnn": DSCNN,
    "mobilenetv1_025": MobileNetV1,
}
_DETECTORS: dict[str, Callable[..., nn.Module]] = {"yolo": TinyYOLO}

#: The classifiers :func:`build_model` builds.
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
#: The detectors :func:`build_model` builds.
DETECTION_MODEL_NAMES: tuple[str, ...] = tuple(_DETECTORS)
_BUILDERS.update(_DETECTORS)

#: name -> (canonical input shape, classes, trainable parameters); see the table above.
CANONICAL: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "vgg11": ((3, 32, 32), 10, 1_913_834),
    "resnet12": ((3, 32, 32), 10, 1_228_970),
    "resnet8": ((3, 32, 32), 10, 77_946),
    "dscnn": ((1, 49, 10), 12, 23_180),
    "mobilenetv1_025": ((3, 96, 96), 2, 213_586),
    "yolo": ((3, 112, 112), 1, 1_576_346),
}


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                *, seed: int | None = None) -> nn.Module:
    """Build zoo model ``name`` for inputs of shape ``(C, H, W)``.

    With ``seed`` the initial weights come from ``torch.manual_seed(seed)``
    without disturbing the global RNG; without it, from the global RNG.
    Raises :class:`ZooError` (a :class:`~dtmm.errors.DtmmError`) for an
    unknown name, listing the valid ones.

    Example:
        >>> import torch
        >>> m = build_model("resnet8", (1, 28, 28), 10, seed=0)
        >>> tuple(m(torch.zeros(2, 1, 28, 28)).shape)
        (2, 10)
    """
    key = str(name).strip().lower()
    if key not in _BUILDERS:
        raise ZooError(f"unknown model {name!r}; valid: "
                       f"{', '.join(MODEL_NAMES + DETECTION_MODEL_NAMES)}")
    if seed is None:
        return _BUILDERS[key](tuple(input_shape), int(num_classes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _BUILDERS[key](tuple(input_shape), int(num_classes))


def trained_like_batchnorm(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every BatchNorm2d seeded statistics like a trained model's; return it in eval mode.

    A freshly built model's BatchNorm is the identity (mean 0, variance 1, weight 1,
    bias 0), which hides folding and quantization bugs and gives untypical activation
    ranges. Tests and benchmarks that need no trained weights (bit-exactness, instruction
    counts) use this instead of training.

    Example:
        >>> m = trained_like_batchnorm(build_model("resnet8", (1, 8, 8), 10))
        >>> bn = next(x for x in m.modules() if isinstance(x, nn.BatchNorm2d))
        >>> bool((bn.running_var != 1).all()), m.training
        (True, False)
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.2
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.2
    return model.eval()

