"""Quantized convolutions whose int8 weights are held in a compressed storage format.

:class:`CompressedConv2D` is a quantized ``Conv2D`` (same ``bias``, ``stride``,
``pads``, ``dilation``, ``activation`` and per-channel :class:`~dtmm.graph.ir.ConvQuant`)
whose OHWI weight lives in ``fmt``: a :class:`~dtmm.formats.FWCS`,
:class:`~dtmm.formats.CSR` or :class:`~dtmm.formats.Pattern` object (see
:mod:`dtmm.formats`). It is a separate op kind (``"compressed_conv2d"``), not a
``Conv2D`` subclass, so code that reads ``op.weight`` never meets it by accident;
:func:`densify` gives the equivalent dense ``Conv2D`` (zeros where pruned).

* :func:`compress_graph` replaces chosen quantized ``Conv2D`` ops of a graph by
  compressed ones;
* :func:`densify` / :func:`dense_equivalent` go back to builtin ``Conv2D`` ops (for
  TFLite Micro, which cannot run dtmm's custom operators, and for comparisons);
* :mod:`dtmm.runtime.reference` runs ``CompressedConv2D`` straight from its format
  arrays, bit-exactly like the dense-with-zeros conv;
* :mod:`dtmm.tflite.custom_ops` writes / reads it as a ``.tflite`` custom operator.

Default masks (``masks=None`` or an op missing from ``masks``), derived from the int8
weights at the format's granularity, so that a weight that was already pruned at that
granularity is stored losslessly:

``"fwcs"``    a filterlet (the ``C_in`` weights at one ``(o, kh, kw)``) is kept iff any of
              its weights is non-zero (kept filterlets are stored whole, zeros included);
``"csr"``     an element is kept iff it is non-zero;
``"pattern"`` a 3x3 kernel ``(o, :, :, i)`` is kept iff any of its weights is non-zero, and
              keeps the first pattern of the layer's library that holds all its non-zeros
              (:func:`dtmm.formats.pattern.lossless_mask`). A kernel whose non-zeros no
              library pattern holds is refused (FormatError naming layer, kernel and
              positions): storage never changes a weight. Prune first (e.g.
              :func:`dtmm.formats.pattern.pattern_mask`, or :class:`dtmm.prune.Pattern`
              in training) and give the same library.

The library of a pattern layer is ``libraries[op_name]`` (PatDNN derives one from the
model, :func:`dtmm.prune.derive_pattern_library`), else the built-in
:data:`dtmm.formats.pattern.PATTERNS`; the encoded layer carries it
(``op.fmt.library``), and every later stage (reference, ``.tflite``, C code) uses it.

An explicit mask is passed to the format's encoder unchanged: FWCS takes a filterlet
mask ``(C_out, KH, KW)`` or an element mask constant within filterlets; CSR and pattern
take an element mask of the weight's shape (pattern: per kernel empty or one pattern of
the layer's library).

Example:
    >>> import numpy as np
    >>> from dtmm.runtime.synth import SynthGraph
    >>> from dtmm.runtime.reference import run_reference
    >>> sg = SynthGraph((6, 6, 3), seed=0)
    >>> _ = sg.conv(4, 3, pads="same", activation="relu")
    >>> g = sg.finish()
    >>> g.ops[0].weight[:, 0, 0, :] = 0                 # prune filterlet (kh=0, kw=0)
    >>> cg = compress_graph(g, {"conv1": "fwcs"})
    >>> op = cg.ops[0]
    >>> op.kind, op.format_name, op.fmt.n_filterlets
    ('compressed_conv2d', 'fwcs', 32)
    >>> x = sg.random_input(2)
    >>> bool((run_reference(cg, x) == run_reference(g, x)).all())
    True
    >>> bool((densify(op).weight == g.ops[0].weight).all())
    True
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from dtmm import formats as _formats
from dtmm.errors import FormatError, GraphError
from dtmm.formats import CSR, FWCS, Pattern
from dtmm.formats.pattern import PATTERNS, lossless_mask
from dtmm.graph.ir import Activation, Conv2D, ConvQuant, FullyConnected, Graph, Op

__all__ = ["CompressedConv2D", "CompressedFullyConnected", "COMPRESSED_FORMATS", "compress_graph",
           "compress_op", "densify", "dense_equivalent", "has_compressed_ops"]

COMPRESSED_FORMATS = ("fwcs", "csr", "pattern")
"""Storage formats a :class:`CompressedConv2D` may hold."""

_FMT_NAMES = {FWCS: "fwcs", CSR: "csr", Pattern: "pattern"}


@dataclass
class CompressedConv2D(Op):
    """A quantized conv whose OHWI int8 weight is stored in ``fmt`` (FWCS, CSR or Pattern).

    ``fmt.shape`` is the weight shape ``(C_out, KH, KW, C_in)``; ``bias`` int32
    ``(C_out,)``; ``quant`` per-channel requantization constants exactly as for
    :class:`~dtmm.graph.ir.Conv2D`.
    """

    fmt: FWCS | CSR | Pattern = None
    bias: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    activation: Activation = Activation.NONE
    quant: ConvQuant | None = None

    kind = "compressed_conv2d"

    @property
    def format_name(self) -> str:
        """``"fwcs"``, ``"csr"`` or ``"pattern"``."""
        try:
            return _FMT_NAMES[type(self.fmt)]
        except KeyError:
            raise GraphError(f"op {self.name!r}: fmt is a {type(self.fmt).__name__}, not an FWCS, "
                             f"CSR or Pattern object") from None

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """The dense OHWI weight shape ``(C_out, KH, KW, C_in)``."""
        return tuple(int(d) for d in self.fmt.shape)

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight_shape[1], self.weight_shape[2]

    def verify(self, c_in: int | None = None) -> None:
        """Verify the format arrays (and ``bias``/``quant`` sizes); raise FormatError/GraphError.

        ``c_in``: the input tensor's channel count, when known.
        """
        shape = self.weight_shape
        if len(shape) != 4:
            raise GraphError(f"op {self.name!r}: compressed weight shape {shape} is not OHWI")
        if c_in is not None and shape[3] != c_in:
            raise GraphError(f"op {self.name!r}: weight {shape} is not OHWI with C_in={c_in}")
        _formats.verify(self.fmt, shape)
        if self.bias is None or np.asarray(self.bias).shape != (shape[0],):
            raise GraphError(f"op {self.name!r}: bias must have shape ({shape[0]},)")


@dataclass
class CompressedFullyConnected(Op):
    """A quantized fully connected layer whose (O, I) int8 weight is stored in FWCS.

    ``fmt`` is an :class:`~dtmm.formats.FWCS` of shape ``(O, I)``: kept runs ("filterlets")
    of ``fmt.size`` contiguous inputs (default 16; the last run of a row is shorter when
    ``size`` does not divide ``I``). ``bias`` int32 ``(O,)``; ``quant`` exactly as for
    :class:`~dtmm.graph.ir.FullyConnected` (per tensor or per output channel).

    >>> from dtmm.formats import fwcs
    >>> w = np.zeros((3, 40), np.int8); w[0, :16] = 1; w[2, 32:] = -1
    >>> op = CompressedFullyConnected("fc", ["x"], "y", fmt=fwcs.encode(w),
    ...                               bias=np.zeros(3, np.int32))
    >>> op.kind, op.weight_shape, op.fmt.cptr.tolist(), op.fmt.fidx.tolist()
    ('compressed_fully_connected', (3, 40), [0, 32], [0, 1, 1, 2])
    """

    fmt: FWCS = None
    bias: np.ndarray = None
    activation: Activation = Activation.NONE
    quant: ConvQuant | None = None

    kind = "compressed_fully_connected"

    @property
    def format_name(self) -> str:
        if not isinstance(self.fmt, FWCS):
            raise GraphError(f"op {self.name!r}: fmt is a {type(self.fmt).__name__}, not an FWCS "
                             f"object")
        return "fwcs"

    @property
    def weight_shape(self) -> tuple[int, int]:
        """The dense weight shape ``(O, I)``."""
        return tuple(int(d) for d in self.fmt.shape)

    def verify(self, in_features: int | None = None) -> None:
        """Verify the format arrays and ``bias``; raise FormatError / GraphError."""
        shape = self.weight_shape
        if self.format_name != "fwcs" or len(shape) != 2:
            raise GraphError(f"op {self.name!r}: compressed FC weight shape {shape} is not (O, I)")
        if in_features is not None and shape[1] != in_features:
            raise GraphError(f"op {self.name!r}: weight {shape} does not take {in_features} inputs")
        _formats.verify(self.fmt, shape)
        if self.bias is None or np.asarray(self.bias).shape != (shape[0],):
            raise GraphError(f"op {self.name!r}: bias must have shape ({shape[0]},)")


_COMPRESSED_OPS = (CompressedConv2D, CompressedFullyConnected)


def has_compressed_ops(graph: Graph) -> bool:
    """True if any op of ``graph`` is a :class:`CompressedConv2D` or
    :class:`CompressedFullyConnected`."""
    return any(isinstance(o, _COMPRESSED_OPS) for o in graph.ops)


def _default_mask(fmt_name: str, w: np.ndarray, library, name: str):
    if fmt_name == "pattern":
        if w.ndim != 4 or w.shape[1:3] != (3, 3):
            raise FormatError(f"pattern: only 3x3 convs can be pattern-encoded, weight {w.shape}")
        return lossless_mask(w, library=library, name=name)
    return None          # fwcs: filterlets with a non-zero; csr: non-zero elements


def compress_op(op: Conv2D | FullyConnected, fmt_name: str, mask=None, *, library=None,
                size: int | None = None) -> CompressedConv2D | CompressedFullyConnected:
    """One quantized ``Conv2D`` as a :class:`CompressedConv2D` in ``fmt_name``, or a
    quantized ``FullyConnected`` as a :class:`CompressedFullyConnected` (``"fwcs"`` only;
    ``size``: its run length, default 16).

    ``mask``: see the module docstring (None: derived from the non-zero weights; FC: a
    run is kept iff it has a non-zero weight). ``library``: the pattern library
    (``"pattern"`` only; None: the built-in :data:`~dtmm.formats.pattern.PATTERNS`).
    """
    if isinstance(op, FullyConnected):
        if fmt_name != "fwcs":
            raise FormatError(f"op {op.name!r}: a fully connected layer compresses to 'fwcs' "
                              f"only, not {fmt_name!r}")
        w = np.asarray(op.weight)
        if w.dtype != np.int8 or w.ndim != 2 or op.quant is None or \
                np.asarray(op.bias).dtype != np.int32:
            raise GraphError(f"op {op.name!r}: compression needs a quantized FC (int8 (O, I) "
                             f"weight, int32 bias, quant constants)")
        fmt = _formats.fwcs.encode(w, mask, name=op.name, size=size)
        return CompressedFullyConnected(name=op.name, inputs=list(op.inputs), output=op.output,
                                        source=op.source, fmt=fmt,
                                        bias=np.asarray(op.bias, np.int32).copy(),
                                        activation=Activation(op.activation),
                                        quant=copy.deepcopy(op.quant))
    if not isinstance(op, Conv2D):
        raise GraphError(f"op {op.name!r} ({op.kind}): only Conv2D and FullyConnected ops can be "
                         f"compressed")
    if fmt_name not in COMPRESSED_FORMATS:
        raise FormatError(f"op {op.name!r}: format {fmt_name!r} is not one of {COMPRESSED_FORMATS}")
    w = np.asarray(op.weight)
    if w.dtype != np.int8 or op.quant is None or np.asarray(op.bias).dtype != np.int32:
        raise GraphError(f"op {op.name!r}: compression needs a quantized conv (int8 weight, int32 "
                         f"bias, quant constants); got {w.dtype} / {np.asarray(op.bias).dtype}")
    kw = {}
    if fmt_name == "pattern":
        kw["library"] = PATTERNS if library is None else library
    elif library is not None:
        raise FormatError(f"op {op.name!r}: a pattern library is given but the format is "
                          f"{fmt_name!r}")
    if mask is None:
        mask = _default_mask(fmt_name, w, kw.get("library"), op.name)
    fmt = _formats.encode(fmt_name, w, mask, name=op.name, **kw)
    return CompressedConv2D(name=op.name, inputs=list(op.inputs), output=op.output, source=op.source,
                            fmt=fmt, bias=np.asarray(op.bias, np.int32).copy(),
                            stride=tuple(op.stride), pads=tuple(op.pads),
                            dilation=tuple(op.dilation), activation=Activation(op.activation),
                            quant=copy.deepcopy(op.quant))


def compress_graph(qgraph: Graph, formats: dict[str, str],
                   masks: dict[str, np.ndarray] | None = None, *,
                   libraries: dict[str, object] | None = None) -> Graph:
    """A copy of the quantized ``qgraph`` with the named ``Conv2D`` ops compressed.

    Args:
        qgraph: a quantized graph (not modified).
        formats: ``{op_name: "fwcs" | "csr" | "pattern"}``.
        masks: optional ``{op_name: bool mask}``; ops without one get the default mask
            derived from their non-zero int8 weights (see the module docstring).
        libraries: optional ``{op_name: pattern library}`` for ``"pattern"`` ops (a
            sequence of 4-position tuples, e.g. ``dtmm.prune.Pattern(...).library``);
            ops without one use :data:`dtmm.formats.pattern.PATTERNS`.

    Raises:
        GraphError: an unknown op name, or an op that is not a quantized Conv2D.
        FormatError: the format cannot hold the weight/mask (e.g. pattern on 5x5, a
            pattern kernel no library pattern holds, a library that is not 4-of-9).

    Example (a library derived from the weights, kept through storage):
        >>> from dtmm.runtime.synth import SynthGraph
        >>> from dtmm.formats.pattern import pattern_mask
        >>> sg = SynthGraph((6, 6, 2), seed=0); _ = sg.conv(3, 3, pads=1); g = sg.finish()
        >>> lib = [(0, 1, 2, 4), (4, 6, 7, 8)]             # not in the built-in library
        >>> w = g.ops[0].weight; w[~pattern_mask(w, library=lib)] = 0
        >>> cg = compress_graph(g, {"conv1": "pattern"}, libraries={"conv1": lib})
        >>> cg.ops[0].fmt.library, bool((densify(cg.ops[0]).weight == w).all())
        (((0, 1, 2, 4), (4, 6, 7, 8)), True)
    """
    masks = dict(masks or {})
    libraries = dict(libraries or {})
    names = {o.name for o in qgraph.ops}
    unknown = [n for n in list(formats) + list(masks) + list(libraries) if n not in names]
    if unknown:
        raise GraphError(f"compress_graph: no op named {unknown[0]!r}")
    extra = [n for n in masks if n not in formats]
    if extra:
        raise GraphError(f"compress_graph: a mask is given for {extra[0]!r} but no format")
    extra = [n for n in libraries if formats.get(n) != "pattern"]
    if extra:
        raise GraphError(f"compress_graph: a pattern library is given for {extra[0]!r}, whose "
                         f"format is {formats.get(extra[0])!r}, not 'pattern'")
    g = copy.deepcopy(qgraph)
    g.ops = [compress_op(o, formats[o.name], masks.get(o.name), library=libraries.get(o.name))
             if o.name in formats else o for o in g.ops]
    return g


def densify(op: CompressedConv2D | CompressedFullyConnected) -> Conv2D | FullyConnected:
    """The equivalent builtin ``Conv2D`` / ``FullyConnected`` (decoded weight, zeros where
    pruned).

    >>> from dtmm.formats import fwcs
    >>> w = np.ones((2, 1, 1, 3), np.int8)
    >>> c = CompressedConv2D("c", ["x"], "y", fmt=fwcs.encode(w), bias=np.zeros(2, np.int32))
    >>> densify(c).weight.shape
    (2, 1, 1, 3)
    """
    if isinstance(op, CompressedFullyConnected):
        return FullyConnected(name=op.name, inputs=list(op.inputs), output=op.output,
                              source=op.source, weight=_formats.decode(op.fmt),
                              bias=np.asarray(op.bias, np.int32).copy(),
                              activation=Activation(op.activation), quant=copy.deepcopy(op.quant))
    if not isinstance(op, CompressedConv2D):
        raise GraphError(f"densify: op {op.name!r} ({op.kind}) is not a compressed conv")
    return Conv2D(name=op.name, inputs=list(op.inputs), output=op.output, source=op.source,
                  weight=_formats.decode(op.fmt), bias=np.asarray(op.bias, np.int32).copy(),
                  stride=tuple(op.stride), pads=tuple(op.pads), dilation=tuple(op.dilation),
                  activation=Activation(op.activation), quant=copy.deepcopy(op.quant))


def dense_equivalent(graph: Graph) -> Graph:
    """A copy of ``graph`` with every :class:`CompressedConv2D` replaced by :func:`densify`.

    TFLite Micro cannot run dtmm's custom operators; export this graph to compare
    TFLM with the reference run of the compressed graph::

        run_tflm(to_tflite_bytes(dense_equivalent(g)), x) == run_reference(g, x)
    """
    g = copy.deepcopy(graph)
    g.ops = [densify(o) if isinstance(o, _COMPRESSED_OPS) else o for o in g.ops]
    return g
