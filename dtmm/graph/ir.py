"""A small typed intermediate representation of a CNN, channel-last as on MCUs.

Layout conventions (the same everywhere in dtmm):

* Activations are NHWC. Tensor shapes in the IR exclude the batch dimension:
  ``(H, W, C)`` for feature maps, ``(F,)`` for vectors.
* Convolution weights are OHWI ``(C_out, KH, KW, C_in)``; depthwise weights are
  ``(1, KH, KW, C_in * depth_multiplier)`` as in TFLite; fully connected weights
  are ``(O, I)``.
* Padding is explicit: ``pads = (top, bottom, left, right)``. Exporters decide
  whether that is TFLite ``SAME``, ``VALID`` or needs a PAD op.

A graph is *float* (weights float32, bias float32, no qparams) after capture and
*quantized* (weights int8, bias int32, every tensor with :class:`QParams`, every
op with its requantization constants) after :func:`dtmm.quant.quantize_graph`.

Example:
    >>> import numpy as np
    >>> from dtmm.graph.ir import Graph, TensorSpec, Conv2D, Activation
    >>> g = Graph()
    >>> _ = g.add_tensor(TensorSpec("x", (8, 8, 3)))
    >>> _ = g.add_tensor(TensorSpec("y", (8, 8, 4)))
    >>> _ = g.add_op(Conv2D(name="conv", inputs=["x"], output="y",
    ...     weight=np.zeros((4, 3, 3, 3), np.float32), bias=np.zeros(4, np.float32),
    ...     stride=(1, 1), pads=(1, 1, 1, 1), activation=Activation.RELU))
    >>> g.inputs, g.outputs = ["x"], ["y"]
    >>> g.validate()
    >>> g.producer("y").name
    'conv'
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from dtmm.errors import GraphError


class Activation(str, enum.Enum):
    """Fused activation of an op's output (applied as an integer clamp once quantized)."""

    NONE = "none"
    RELU = "relu"
    RELU6 = "relu6"


@dataclass(frozen=True)
class QParams:
    """Affine quantization parameters: ``real = scale * (q - zero_point)``.

    ``scale`` is float32 (as stored in a ``.tflite`` file), ``zero_point`` int32.
    Per-tensor parameters have one element; per-channel ones have one per channel
    along ``axis``.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    def __post_init__(self) -> None:
        s = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        z = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int32))
        if s.shape != z.shape:
            raise GraphError(f"QParams: scale shape {s.shape} != zero_point shape {z.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise GraphError(f"QParams: scales must be finite and > 0, got {s[:4]}")
        object.__setattr__(self, "scale", s)
        object.__setattr__(self, "zero_point", z)

    @staticmethod
    def per_tensor(scale: float, zero_point: int) -> "QParams":
        return QParams(np.float32(scale), np.int32(zero_point))

    @property
    def is_per_tensor(self) -> bool:
        return self.scale.size == 1

    @property
    def s(self) -> float:
        """The per-tensor scale as a Python float (float32 value, widened)."""
        if not self.is_per_tensor:
            raise GraphError("QParams.s asked of per-channel parameters")
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        if not self.is_per_tensor:
            raise GraphError("QParams.zp asked of per-channel parameters")
        return int(self.zero_point[0])

    def same_as(self, other: "QParams | None") -> bool:
        return (other is not None and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))


@dataclass
class TensorSpec:
    """An activation tensor: name, shape without batch, dtype and (once quantized) qparams."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    qparams: QParams | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


# ----------------------------------------------------------------------------- ops


@dataclass
class ConvQuant:
    """Requantization constants of a conv / FC op, computed as TFLite Micro does."""

    w_scale: np.ndarray          # float32, (C_out,) (per-channel) or (1,)
    multiplier: np.ndarray       # int32, (C_out,)
    shift: np.ndarray            # int32, (C_out,) TFLite convention: >0 left, <0 right


@dataclass
class AddQuant:
    """TFLite int8 ADD constants (see ``dtmm.quant.arith.add_params``)."""

    left_shift: int
    in1_multiplier: int
    in1_shift: int
    in2_multiplier: int
    in2_shift: int
    out_multiplier: int
    out_shift: int


@dataclass
class SoftmaxQuant:
    """TFLite int8 SOFTMAX constants (see ``dtmm.quant.arith.softmax_params``)."""

    beta_multiplier: int
    beta_left_shift: int
    diff_min: int


@dataclass
class Op:
    """Base of every op: a unique name, input tensor names, one output tensor name.

    ``source`` records where the op came from (module path / fx node) for errors.
    """

    name: str
    inputs: list[str]
    output: str
    source: str = field(default="", kw_only=True)

    kind = "op"


@dataclass
class Conv2D(Op):
    weight: np.ndarray = None            # OHWI
    bias: np.ndarray = None              # (C_out,)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    activation: Activation = Activation.NONE
    quant: ConvQuant | None = None

    kind = "conv2d"

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[1]), int(self.weight.shape[2])


@dataclass
class DepthwiseConv2D(Op):
    weight: np.ndarray = None            # (1, KH, KW, C_in * depth_multiplier)
    bias: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    depth_multiplier: int = 1
    activation: Activation = Activation.NONE
    quant: ConvQuant | None = None

    kind = "depthwise_conv2d"

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[1]), int(self.weight.shape[2])


@dataclass
class FullyConnected(Op):
    weight: np.ndarray = None            # (O, I)
    bias: np.ndarray = None              # (O,)
    activation: Activation = Activation.NONE
    quant: ConvQuant | None = None

    kind = "fully_connected"


@dataclass
class MaxPool2D(Op):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    kind = "max_pool2d"


@dataclass
class AvgPool2D(Op):
    """Average pool; padded positions are excluded from the count (TFLite semantics).

    A global average pool is an AvgPool2D whose kernel is the whole input.
    """

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    kind = "avg_pool2d"


@dataclass
class Add(Op):
    activation: Activation = Activation.NONE
    quant: AddQuant | None = None

    kind = "add"


@dataclass
class Concat(Op):
    """Concatenation along the channel (last) axis. Inputs share the output's qparams."""

    axis: int = -1

    kind = "concat"


@dataclass
class Reshape(Op):
    shape: tuple[int, ...] = ()

    kind = "reshape"


@dataclass
class Softmax(Op):
    beta: float = 1.0
    quant: SoftmaxQuant | None = None

    kind = "softmax"


WEIGHTED_OPS = (Conv2D, DepthwiseConv2D, FullyConnected)


# --------------------------------------------------------------------------- graph


@dataclass
class Graph:
    """Tensors, ops in topological order, graph inputs and outputs."""

    tensors: dict[str, TensorSpec] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    # -- building
    def add_tensor(self, t: TensorSpec) -> TensorSpec:
        if t.name in self.tensors:
            raise GraphError(f"tensor {t.name!r} defined twice")
        self.tensors[t.name] = t
        return t

    def add_op(self, op: Op) -> Op:
        if any(o.name == op.name for o in self.ops):
            raise GraphError(f"op name {op.name!r} used twice")
        self.ops.append(op)
        return op

    # -- queries
    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise GraphError(f"no op named {name!r}")

    def producer(self, tensor: str) -> Op | None:
        for o in self.ops:
            if o.output == tensor:
                return o
        return None

    def consumers(self, tensor: str) -> list[Op]:
        return [o for o in self.ops if tensor in o.inputs]

    def weighted_ops(self) -> Iterator[Op]:
        return (o for o in self.ops if isinstance(o, WEIGHTED_OPS))

    @property
    def is_quantized(self) -> bool:
        return all(t.qparams is not None for t in self.tensors.values())

    def validate(self) -> None:
        """Check names, topological order and weight layouts; raise GraphError naming the op."""
        defined = set(self.inputs)
        for name in self.inputs:
            if name not in self.tensors:
                raise GraphError(f"graph input {name!r} has no TensorSpec")
        for o in self.ops:
            for i in o.inputs:
                if i not in self.tensors:
                    raise GraphError(f"op {o.name!r}: input tensor {i!r} is not defined")
                if i not in defined:
                    raise GraphError(f"op {o.name!r}: input {i!r} used before it is produced")
            if o.output not in self.tensors:
                raise GraphError(f"op {o.name!r}: output tensor {o.output!r} is not defined")
            if o.output in defined:
                raise GraphError(f"op {o.name!r}: tensor {o.output!r} produced twice")
            defined.add(o.output)
            if isinstance(o, Conv2D):
                cin = self.tensors[o.inputs[0]].shape[-1]
                if o.weight.ndim != 4 or o.weight.shape[3] != cin:
                    raise GraphError(f"op {o.name!r}: weight {o.weight.shape} is not OHWI with C_in={cin}")
            if isinstance(o, WEIGHTED_OPS):
                nout = o.weight.shape[0] if not isinstance(o, DepthwiseConv2D) else o.weight.shape[3]
                if o.bias is None or o.bias.shape != (nout,):
                    raise GraphError(f"op {o.name!r}: bias must have shape ({nout},)")
        for name in self.outputs:
            if name not in defined:
                raise GraphError(f"graph output {name!r} is never produced")
