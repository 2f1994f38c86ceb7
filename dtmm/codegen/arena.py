"""Static SRAM arena planning: tensor liveness, kernel scratch, offsets.

:func:`plan_arena` places every activation tensor of a quantized graph and every
op's kernel scratch buffer in one static arena and reports

* ``peak_live``: the largest sum of (aligned) buffer sizes live at any one op, a
  lower bound on any placement's arena size;
* ``size``: the arena size achieved by greedy-by-size first-fit placement (as
  TFLite Micro's ``GreedyMemoryPlanner``), ``>= peak_live``, 16-byte aligned.

Liveness, over op positions ``0 .. len(ops) - 1`` in graph order:

* a tensor lives from its producer's position to its last consumer's position
  (inclusive); a graph input from position 0; a graph output to the last position
  (it is copied out after the last op); a tensor nobody reads lives only at its producer;
* an op's inputs and output are therefore live together: kernels never run in place;
* a :class:`~dtmm.graph.ir.Reshape` output aliases its input (NHWC data is already in
  the reshaped order): both share one buffer, whose lifetime is the union;
* a channel :class:`~dtmm.graph.ir.Concat` of vectors (one pixel: NHWC concatenation
  is then a concatenation of byte runs) whose inputs are each produced by an op of
  their own (:func:`concat_in_place`) runs without a copy: its inputs are placed side by
  side inside the output's buffer (each at its channel offset), one buffer whose
  lifetime is the union of theirs; the C model emits no code for it. A concat of
  tensors with more than one pixel interleaves the inputs per pixel and stays a copy;
* op ``i``'s scratch lives at position ``i`` only.

Scratch sizes come from :mod:`dtmm.codegen.scratch` (:func:`scratch_bytes`): the
Python twin of each kernel's ``*_get_buffer_size``, for the ISA path the target
compiles (:func:`isa_path`) and the target's pointer width, tested equal to the C
functions on every path (host and Cortex-M under QEMU). The generated model re-checks
them against its own build at start-up (``dtmm_model_check()``).

Planning is pure arithmetic on the graph (no compiler, no I/O): ~0.3 ms for a zoo
model.

Example:
    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((8, 8, 4), seed=0)
    >>> _ = sg.conv(8, 3, pads="same", activation="relu")
    >>> g = sg.finish()
    >>> p = plan_arena(g, "cortex-m4")
    >>> p.scratch[g.ops[0].name]          # DSP path: 2 int16 im2col rows of 3*3*4
    144
    >>> p.size >= p.peak_live, p.size % 16
    (True, 0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from dtmm.errors import BuildError
from dtmm.graph.ir import Concat, Conv2D, Graph, Reshape

__all__ = ["ArenaPlan", "Buffer", "plan_arena", "scratch_bytes", "isa_path", "liveness",
           "concat_in_place", "ALIGN", "ISA_PATHS"]

#: The kernels' ISA paths (dtmm_isa.h).
ISA_PATHS = ("scalar", "dsp", "mve")
#: Alignment of every buffer in the arena (and of the arena size), in bytes.
ALIGN = 16


def _align(n: int, a: int = ALIGN) -> int:
    return (int(n) + a - 1) // a * a


def isa_path(target: str, simd: str = "auto") -> str:
    """The kernels' ISA path a build for ``target`` compiles: ``"mve"``, ``"dsp"`` or ``"scalar"``.

    Mirrors ``dtmm_isa.h`` for builds through :mod:`dtmm.codegen.platform`.

    >>> isa_path("cortex-m55"), isa_path("cortex-m55", "dsp"), isa_path("cortex-m7"), isa_path("host")
    ('mve', 'dsp', 'dsp', 'scalar')
    """
    from dtmm.codegen.platform import get_target

    t = get_target(target)
    defs = t.isa_defines(simd)
    if t.is_host or "DTMM_FORCE_SCALAR" in defs:
        return "scalar"
    if "DTMM_ARCH_MVE" in defs:
        return "mve"
    if "DTMM_ARCH_DSP" in defs:
        return "dsp"
    return "scalar"


def scratch_bytes(op, graph: Graph, isa: str, pointer_bytes: int = 4) -> int:
    """Kernel scratch bytes of ``op`` on ISA path ``isa`` with ``pointer_bytes``-wide pointers.

    Computed by the formulas of :mod:`dtmm.codegen.scratch` (the Python twin of each
    kernel's ``*_get_buffer_size``, tested equal to it on every ISA path and pointer
    width); no compiler is involved.

    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((8, 8, 4), seed=0); _ = sg.conv(8, 3, pads="same"); g = sg.finish()
    >>> scratch_bytes(g.ops[0], g, "dsp"), scratch_bytes(g.ops[0], g, "scalar")
    (144, 0)
    """
    from dtmm.codegen.scratch import layer_scratch

    if isa not in ISA_PATHS:
        raise BuildError(f"isa must be one of {ISA_PATHS}, got {isa!r}")
    kind = getattr(op, "kind", "")
    if isinstance(op, Conv2D):
        o, kh, kw, cin = (int(d) for d in op.weight.shape)
    elif kind == "compressed_conv2d":
        o, kh, kw, cin = op.weight_shape
        kind = op.format_name
        if kind not in ("fwcs", "csr", "pattern"):
            raise BuildError(f"op {op.name!r}: unknown compressed format {kind!r}")
    else:
        return 0                                        # depthwise, FC, pools, add, softmax, ...
    h, w = (int(d) for d in graph.tensors[op.inputs[0]].shape[:2])
    extra = {"n_patterns": len(op.fmt.library)} if kind == "pattern" else {}   # the layer's own
    return layer_scratch(kind, isa, pointer_bytes, in_h=h, in_w=w, c_in=cin, kh=kh, kw=kw, c_out=o,
                         **extra)


@dataclass(frozen=True)
class Buffer:
    """One arena buffer: an activation tensor (with its aliases) or an op's scratch.

    ``first``/``last``: op positions (inclusive) during which it must stay intact.
    """

    name: str
    nbytes: int
    first: int
    last: int
    tensors: tuple[str, ...] = ()
    scratch_of: str | None = None
    #: byte offset of a member tensor inside the buffer (an in-place concat's inputs)
    suboffsets: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ArenaPlan:
    """The planned static arena of one model on one target.

    ``size``: arena bytes (16-byte aligned); ``offsets``: byte offset of every activation
    tensor (aliases share their root's offset); ``peak_live``: lower bound (max bytes
    live at one op, sizes 16-byte aligned); ``scratch``: scratch bytes per op name (ops
    without scratch absent); ``scratch_offsets``: where each op's scratch lies;
    ``buffers``: the placed buffers; ``isa``: the ISA path the scratch sizes assume.
    """

    size: int
    offsets: Mapping[str, int]
    peak_live: int
    scratch: Mapping[str, int]
    scratch_offsets: Mapping[str, int] = field(default_factory=dict)
    buffers: tuple[Buffer, ...] = ()
    isa: str = "scalar"

    @property
    def activation_bytes(self) -> int:
        """Bytes of distinct activation buffers (no scratch), unaligned sum, for reports."""
        return sum(b.nbytes for b in self.buffers if b.scratch_of is None)


def _tensor_nbytes(graph: Graph, name: str, any_dtype: bool = False) -> int:
    t = graph.tensors[name]
    if not any_dtype and t.dtype not in ("int8", "uint8"):
        raise BuildError(f"tensor {name!r} is {t.dtype}: the arena planner needs an int8 graph")
    return t.size


def concat_in_place(graph: Graph, op) -> bool:
    """True if ``op`` is a channel concat that runs without a copy (see the module
    docstring): one pixel, at least two inputs, each a distinct tensor produced by an op
    that is neither a reshape nor another concat, none a graph input or output.

    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((4, 4, 3), seed=0)
    >>> a = sg.fc(8, x=sg.reshape((48,))); b = sg.fc(4, x=sg.reshape((48,), x="input"))
    >>> sg.set_qparams(b, sg.g.tensors[a].qparams)          # concat inputs share qparams
    >>> c = sg.concat([a, b]); g = sg.finish()
    >>> concat_in_place(g, g.ops[-1])
    True
    """
    if not isinstance(op, Concat) or len(op.inputs) < 2 or len(set(op.inputs)) != len(op.inputs):
        return False
    shape = graph.tensors[op.output].shape
    if op.axis not in (-1, len(shape) - 1) or _pixels(shape) != 1:
        return False
    producer = {o.output: o for o in graph.ops}
    for t in op.inputs:
        p = producer.get(t)
        if (p is None or isinstance(p, (Reshape, Concat)) or t in graph.inputs
                or t in graph.outputs):
            return False
    return True


def _pixels(shape) -> int:
    n = 1
    for d in tuple(shape)[:-1]:
        n *= int(d)
    return n


def liveness(graph: Graph, *, any_dtype: bool = False) -> list[Buffer]:
    """Activation buffers with lifetimes (Reshape outputs merged into their input's buffer).

    Sizes are int8 bytes (one per element); ``any_dtype`` accepts a float graph too (its
    tensors counted as if quantized, for planning before quantization).

    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((4, 4, 2), seed=0); _ = sg.conv(3, 1); g = sg.finish()
    >>> [(b.name, b.first, b.last) for b in liveness(g)]
    [('input', 0, 0), ('conv1_out', 0, 0)]
    """
    n = len(graph.ops)
    root: dict[str, str] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    sub: dict[str, dict[str, int]] = {}

    def touch(r: str, i: int) -> None:
        first[r] = min(first.get(r, i), i)
        last[r] = max(last.get(r, i), i)

    for name in graph.inputs:
        root[name] = name
        members[name] = [name]
        touch(name, 0)
    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            if t not in root:
                raise BuildError(f"op {op.name!r}: input {t!r} is used before it is produced")
            touch(root[t], i)
        if concat_in_place(graph, op):
            # the inputs' buffers become parts of the output's, side by side
            members[op.output] = [op.output]
            sub[op.output] = {}
            off = 0
            for t in op.inputs:
                r = root[t]
                for m in members.pop(r):
                    root[m] = op.output
                    members[op.output].append(m)
                    sub[op.output][m] = off
                touch(op.output, first.pop(r))
                touch(op.output, last.pop(r))
                off += _tensor_nbytes(graph, t, any_dtype)
            root[op.output] = op.output
            touch(op.output, i)
        elif isinstance(op, Reshape) and len(op.inputs) == 1:
            r = root[op.inputs[0]]
            if (_tensor_nbytes(graph, op.output, any_dtype)
                    != _tensor_nbytes(graph, op.inputs[0], any_dtype)):
                raise BuildError(f"op {op.name!r} (reshape): {op.inputs[0]!r} and {op.output!r} "
                                 f"differ in size")
            root[op.output] = r
            members[r].append(op.output)
        else:
            root[op.output] = op.output
            members[op.output] = [op.output]
            touch(op.output, i)
    for name in graph.outputs:
        if name not in root:
            raise BuildError(f"graph output {name!r} is never produced")
        touch(root[name], max(n - 1, 0))
    return [Buffer(r, _tensor_nbytes(graph, r, any_dtype), first[r], last[r], tuple(members[r]),
                   suboffsets=dict(sub.get(r, {})))
            for r in members]


def place(sizes, firsts, lasts, names, overlaps=None) -> tuple[list[int], int]:
    """Greedy-by-size first-fit placement; returns (offset of each buffer, arena end).

    Largest (16-byte aligned) buffer first, ties by first use then name; each goes at the
    lowest offset where it overlaps no placed buffer that is live at the same time. Plain
    lists in, so the scheduler can call it thousands of times (the planner calls it too);
    ``overlaps[i]`` may give, precomputed, the buffers whose lifetimes meet buffer ``i``'s.

    >>> place([32, 16, 16], [0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    ([0, 32, 0], 48)
    """
    n = len(sizes)
    al = [(int(x) + ALIGN - 1) // ALIGN * ALIGN for x in sizes]
    if overlaps is None:
        overlaps = [[j for j in range(n) if j != i and firsts[j] <= lasts[i] and firsts[i] <= lasts[j]]
                    for i in range(n)]
    order = sorted(range(n), key=lambda i: (-al[i], firsts[i], names[i]))
    offs = [0] * n
    done = [False] * n
    end = 0
    for i in order:
        need = al[i]
        busy = sorted((offs[j], offs[j] + al[j]) for j in overlaps[i] if done[j])
        off = 0
        for o, e in busy:
            if off + need <= o:
                break
            if e > off:
                off = e
        offs[i] = off
        done[i] = True
        if off + need > end:
            end = off + need
    return offs, end


def _place(buffers: list[Buffer]) -> dict[str, int]:
    offs, _ = place([b.nbytes for b in buffers], [b.first for b in buffers],
                    [b.last for b in buffers], [b.name for b in buffers])
    return {b.name: o for b, o in zip(buffers, offs)}


def plan_arena(graph: Graph, target: str = "host", *, simd: str = "auto",
               isa: str | None = None) -> ArenaPlan:
    """Plan the static arena of a quantized ``graph`` for ``target`` (see the module docstring).

    Args:
        graph: a quantized graph (int8 activations).
        target: ``"host"``, ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m55"`` (decides the
            kernels' ISA path and so their scratch sizes).
        simd: ``"auto"``, ``"dsp"`` or ``"scalar"`` as for :func:`dtmm.codegen.platform.build`.
        isa: override of the ISA path (``"scalar"``, ``"dsp"``, ``"mve"``), for host builds
            that emulate a Cortex-M path (``-DDTMM_EMULATE_MVE``); default: the target's.

    Returns:
        An :class:`ArenaPlan`.

    >>> from dtmm.runtime.synth import SynthGraph
    >>> sg = SynthGraph((6, 6, 2), seed=0)
    >>> _ = sg.conv(4, 3, pads="same"); g = sg.finish()
    >>> p = plan_arena(g, "host")
    >>> p.offsets["input"] != p.offsets[g.outputs[0]], p.size == p.peak_live
    (True, True)
    """
    if isa is None:
        isa = isa_path(target, simd)
    elif isa not in ISA_PATHS:
        raise BuildError(f"isa must be one of {ISA_PATHS}, got {isa!r}")
    from dtmm.codegen.platform import get_target

    pointer_bytes = get_target(target).pointer_bytes
    buffers = liveness(graph)
    scratch: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        s = scratch_bytes(op, graph, isa, pointer_bytes)
        if s:
            scratch[op.name] = s
            buffers.append(Buffer(f"{op.name}/scratch", s, i, i, (), op.name))
    n = max(len(graph.ops), 1)
    live = [0] * n
    for b in buffers:
        for i in range(b.first, b.last + 1):
            live[i] += _align(b.nbytes)
    offs = _place(buffers)
    size = max((offs[b.name] + _align(b.nbytes) for b in buffers), default=0)
    offsets: dict[str, int] = {}
    scratch_offsets: dict[str, int] = {}
    for b in buffers:
        if b.scratch_of is not None:
            scratch_offsets[b.scratch_of] = offs[b.name]
        for t in b.tensors:
            offsets[t] = offs[b.name] + b.suboffsets.get(t, 0)
    return ArenaPlan(size=_align(size), offsets=offsets, peak_live=max(live),
                     scratch=scratch, scratch_offsets=scratch_offsets, buffers=tuple(buffers),
                     isa=isa)
