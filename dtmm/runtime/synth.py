"""Build small *quantized* graphs with random int8 weights, for tests and kernel benchmarks.

Every layer gets random (seeded) int8 weights, int32 bias, per-channel weight
scales and an output scale chosen so that about three standard deviations of
the accumulator span the int8 range (measured on a small random calibration
batch run through the reference kernels as the graph grows); requantization
constants come from :mod:`dtmm.quant.arith` exactly as TFLite Micro computes
them from the scales.

Example:
    >>> import numpy as np
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.runtime.reference import run_reference
    >>> sg = SynthGraph((8, 8, 3), seed=0)
    >>> _ = sg.conv(4, 3, pads="same", activation="relu")
    >>> _ = sg.max_pool(2)
    >>> g = sg.finish()
    >>> run_reference(g, sg.random_input(2)).shape
    (2, 4, 4, 4)
"""
from __future__ import annotations

import numpy as np

from dtmm.graph.ir import (Activation, Add, AddQuant, AvgPool2D, Concat, Conv2D, ConvQuant,
                           DepthwiseConv2D, FullyConnected, Graph, MaxPool2D, QParams, Reshape,
                           Softmax, SoftmaxQuant, TensorSpec)
from dtmm.quant import arith
from dtmm.runtime import reference
from dtmm.runtime.reference import conv_output_size
from dtmm.tflite._padding import same_pads
from dtmm.errors import InvalidArgument

__all__ = ["SynthGraph"]


class SynthGraph:
    """Incrementally build a random quantized graph; each method returns the new tensor name.

    Methods take ``x`` (a tensor name, default: the last tensor produced).
    """

    def __init__(self, input_shape: tuple[int, ...], seed: int = 0, in_scale: float | None = None,
                 in_zp: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.g = Graph()
        self._n = 0
        scale = in_scale if in_scale is not None else float(self.rng.uniform(0.01, 0.1))
        zp = in_zp if in_zp is not None else int(self.rng.integers(-40, 40))
        self.last = self._tensor("input", tuple(input_shape), QParams.per_tensor(scale, zp))
        self.g.inputs = [self.last]
        # int8 values of every tensor on a calibration batch, to choose sensible scales.
        self.calib: dict[str, np.ndarray] = {self.last: self.random_input(32, seed=seed + 1)}

    # -- helpers
    def _tensor(self, name: str, shape, qparams: QParams) -> str:
        self.g.add_tensor(TensorSpec(name, tuple(int(s) for s in shape), "int8", qparams))
        return name

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"{kind}{self._n}"

    def _q(self, name: str) -> QParams:
        return self.g.tensors[name].qparams

    def _shape(self, name: str) -> tuple[int, ...]:
        return self.g.tensors[name].shape

    def _rms(self, x: str) -> float:
        """RMS of ``x - zero_point`` on the calibration batch (the accumulator's input)."""
        v = self.calib[x].astype(np.float64) - self._q(x).zp
        return max(1.0, float(np.sqrt(np.mean(v * v))))

    def _out_qparams(self, x: str, w_scale: np.ndarray, k: int) -> QParams:
        sigma = np.sqrt(k) * self._rms(x) * 73.0 * self._q(x).s * float(np.mean(w_scale))
        scale = 3.0 * sigma / 128.0 * float(self.rng.uniform(0.7, 1.5))
        return QParams.per_tensor(scale, int(self.rng.integers(-30, 30)))

    def _weights(self, shape, nch: int, k: int, x: str):
        w = self.rng.integers(-127, 128, size=shape, dtype=np.int64).astype(np.int8)
        w_scale = self.rng.uniform(0.005, 0.02, size=nch).astype(np.float32)
        bias = self.rng.integers(-3, 4, size=nch) * int(np.sqrt(k) * self._rms(x) * 73 / 4)
        return w, bias.astype(np.int32), w_scale

    def _added(self, y: str) -> str:
        """Run the op just added on the calibration batch; make ``y`` the current tensor."""
        op = self.g.ops[-1]
        self.calib[y] = reference._KERNELS[type(op)](op, self.g, *[self.calib[i] for i in op.inputs])
        self.last = y
        return y

    @staticmethod
    def _pads(pads, hw, kernel, stride, dilation=(1, 1)):
        if pads is None:
            return (0, 0, 0, 0)
        if pads == "same":
            return same_pads(hw, kernel, stride, dilation)
        if isinstance(pads, int):
            return (pads, pads, pads, pads)
        return tuple(int(p) for p in pads)

    # -- layers
    def conv(self, cout: int, kernel, stride=1, pads=None, dilation=1, activation="none",
             depthwise_multiplier: int | None = None, x: str | None = None) -> str:
        """Conv2D (or DepthwiseConv2D when ``depthwise_multiplier`` is given).

        ``pads``: None (valid), ``"same"`` (TFLite SAME), an int (symmetric) or a 4-tuple.
        """
        x = x or self.last
        h, w, cin = self._shape(x)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        st = (stride, stride) if isinstance(stride, int) else tuple(stride)
        dl = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        p = self._pads(pads, (h, w), (kh, kw), st, dl)
        oh = conv_output_size(h, kh, st[0], p[0], p[1], dl[0])
        ow = conv_output_size(w, kw, st[1], p[2], p[3], dl[1])
        in_q = self._q(x)
        if depthwise_multiplier is not None:
            cout = cin * depthwise_multiplier
            wt, bias, w_scale = self._weights((1, kh, kw, cout), cout, kh * kw, x)
        else:
            wt, bias, w_scale = self._weights((cout, kh, kw, cin), cout, kh * kw * cin, x)
        kdepth = kh * kw if depthwise_multiplier is not None else kh * kw * cin
        out_q = self._out_qparams(x, w_scale, kdepth)
        if Activation(activation) == Activation.RELU6 and out_q.s > 6.0 / 150:
            out_q = QParams.per_tensor(6.0 / 150, out_q.zp)   # keep the relu6 bound in range
        mult, shift = arith.conv_multipliers(in_q.s, w_scale, out_q.s)
        name = self._name("dwconv" if depthwise_multiplier is not None else "conv")
        y = self._tensor(name + "_out", (oh, ow, cout), out_q)
        common = dict(name=name, inputs=[x], output=y, weight=wt, bias=bias, stride=st, pads=p,
                      dilation=dl, activation=Activation(activation),
                      quant=ConvQuant(w_scale=w_scale, multiplier=mult, shift=shift))
        if depthwise_multiplier is not None:
            self.g.add_op(DepthwiseConv2D(depth_multiplier=depthwise_multiplier, **common))
        else:
            self.g.add_op(Conv2D(**common))
        return self._added(y)

    def depthwise(self, kernel, multiplier=1, **kw) -> str:
        return self.conv(0, kernel, depthwise_multiplier=multiplier, **kw)

    def fc(self, units: int, activation="none", x: str | None = None) -> str:
        x = x or self.last
        nin = int(np.prod(self._shape(x)))
        in_q = self._q(x)
        wt, bias, w_scale = self._weights((units, nin), 1, nin, x)
        bias = self.rng.integers(-3, 4, size=units) * int(np.sqrt(nin) * self._rms(x) * 73 / 4)
        out_q = self._out_qparams(x, w_scale, nin)
        m, s = arith.fc_multiplier(in_q.s, w_scale[0], out_q.s)
        name = self._name("fc")
        y = self._tensor(name + "_out", (units,), out_q)
        self.g.add_op(FullyConnected(name=name, inputs=[x], output=y, weight=wt,
                                     bias=bias.astype(np.int32), activation=Activation(activation),
                                     quant=ConvQuant(w_scale=w_scale[:1],
                                                     multiplier=np.array([m], np.int32),
                                                     shift=np.array([s], np.int32))))
        return self._added(y)

    def _pool(self, cls, kernel, stride=None, pads=None, x: str | None = None) -> str:
        x = x or self.last
        h, w, c = self._shape(x)
        k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        st = k if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
        p = self._pads(pads, (h, w), k, st)
        oh, ow = conv_output_size(h, k[0], st[0], p[0], p[1]), conv_output_size(w, k[1], st[1], p[2], p[3])
        name = self._name("maxpool" if cls is MaxPool2D else "avgpool")
        y = self._tensor(name + "_out", (oh, ow, c), self._q(x))
        self.g.add_op(cls(name=name, inputs=[x], output=y, kernel=k, stride=st, pads=p))
        return self._added(y)

    def max_pool(self, kernel, stride=None, pads=None, x: str | None = None) -> str:
        return self._pool(MaxPool2D, kernel, stride, pads, x)

    def avg_pool(self, kernel, stride=None, pads=None, x: str | None = None) -> str:
        return self._pool(AvgPool2D, kernel, stride, pads, x)

    def global_avg_pool(self, x: str | None = None) -> str:
        x = x or self.last
        h, w, _ = self._shape(x)
        return self._pool(AvgPool2D, (h, w), (1, 1), None, x)

    def add(self, a: str, b: str, activation="none", out_scale: float | None = None) -> str:
        s1, s2 = self._q(a).s, self._q(b).s
        so = out_scale if out_scale is not None else (s1 + s2) * float(self.rng.uniform(0.8, 1.5))
        out_q = QParams.per_tensor(so, int(self.rng.integers(-30, 30)))
        name = self._name("add")
        y = self._tensor(name + "_out", self._shape(a), out_q)
        p = arith.add_params(s1, s2, out_q.s)
        self.g.add_op(Add(name=name, inputs=[a, b], output=y, activation=Activation(activation),
                          quant=AddQuant(**p)))
        return self._added(y)

    def concat(self, xs: list[str]) -> str:
        """Concat along channels; inputs must share qparams (use ``requant`` convs upstream)."""
        shape = list(self._shape(xs[0]))
        shape[-1] = sum(self._shape(x)[-1] for x in xs)
        name = self._name("concat")
        y = self._tensor(name + "_out", shape, self._q(xs[0]))
        self.g.add_op(Concat(name=name, inputs=list(xs), output=y, axis=-1))
        return self._added(y)

    def reshape(self, shape, x: str | None = None) -> str:
        x = x or self.last
        name = self._name("reshape")
        y = self._tensor(name + "_out", shape, self._q(x))
        self.g.add_op(Reshape(name=name, inputs=[x], output=y, shape=tuple(shape)))
        return self._added(y)

    def softmax(self, beta: float = 1.0, x: str | None = None) -> str:
        x = x or self.last
        name = self._name("softmax")
        y = self._tensor(name + "_out", self._shape(x), QParams.per_tensor(1.0 / 256, -128))
        p = arith.softmax_params(self._q(x).s, beta)
        self.g.add_op(Softmax(name=name, inputs=[x], output=y, beta=beta, quant=SoftmaxQuant(**p)))
        return self._added(y)

    def set_qparams(self, name: str, qparams: QParams) -> None:
        """Override a tensor's qparams (e.g. to make concat inputs share them); only valid
        before the tensor is consumed, and recomputes its producer's constants."""
        self.g.tensors[name].qparams = qparams
        op = self.g.producer(name)
        if isinstance(op, (Conv2D, DepthwiseConv2D)):
            op.quant.multiplier, op.quant.shift = arith.conv_multipliers(
                self._q(op.inputs[0]).s, op.quant.w_scale, qparams.s)
        elif isinstance(op, FullyConnected):
            m, s = arith.fc_multiplier(self._q(op.inputs[0]).s, op.quant.w_scale[0], qparams.s)
            op.quant.multiplier, op.quant.shift = np.array([m], np.int32), np.array([s], np.int32)
        elif op is not None:
            raise InvalidArgument(f"set_qparams: cannot re-derive constants of {op.kind} {op.name!r}")
        if op is not None:
            if op is not self.g.ops[-1]:
                raise InvalidArgument(f"set_qparams: {name!r} is not the output of the last op")
            self._added(name)                # re-run the calibration batch

    # -- results
    def finish(self, outputs: list[str] | None = None) -> Graph:
        self.g.outputs = list(outputs) if outputs else [self.last]
        self.g.validate()
        return self.g

    def random_input(self, n: int, seed: int | None = None) -> np.ndarray:
        rng = self.rng if seed is None else np.random.default_rng(seed)
        shape = self._shape(self.g.inputs[0])
        return rng.integers(-128, 128, size=(n,) + shape, dtype=np.int64).astype(np.int8)
