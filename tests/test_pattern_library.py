"""A pattern library of the layer's own (PatDNN derives it from the model) survives every stage:
compress_graph, the .tflite writer/reader, the NumPy reference and the host C build, bit-exactly,
with the kept weights unchanged; what cannot carry it is refused with a clear error."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from dtmm import prune
from dtmm.codegen.backends import build_firmware, build_host_model, run_firmware
from dtmm.codegen.platform import toolchain_available
from dtmm.codegen.plan import plan_model
from dtmm.errors import FormatError, GraphError, ModelFileError
from dtmm.formats import byte_count, estimate_bytes, pattern
from dtmm.formats.footprint import graph_bytes, meta_bytes
from dtmm.graph.capture import capture
from dtmm.graph.compressed import compress_graph, densify
from dtmm.quant.quantize import quantize_graph, quantize_input
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph
from dtmm.tflite.custom_ops import options_of
from dtmm.tflite.export import to_tflite_bytes
from dtmm.tflite.reader import read_tflite

from _helpers import assert_bytes_equal

#: 6 patterns, none of them in the built-in library (corners, rows, diagonals, ...)
LIB = ((0, 2, 6, 8), (0, 1, 2, 4), (2, 4, 6, 7), (0, 4, 8, 5), (3, 5, 1, 7), (6, 7, 8, 3))


def _pattern_graph(lib=LIB, seed=3):
    sg = SynthGraph((7, 7, 5), seed=seed)
    sg.conv(6, 3, pads=1, activation="relu")
    sg.conv(4, 3, stride=2, pads=(0, 1, 1, 0))
    g = sg.finish()
    rng = np.random.default_rng(seed)
    for op in g.ops:
        w = op.weight
        keep = rng.random((w.shape[0], w.shape[3])) < 0.7             # connectivity pruning
        w[~pattern.pattern_mask(w, keep, library=lib)] = 0
    return sg, g


def test_custom_library_end_to_end_bit_exact():
    sg, g = _pattern_graph()
    libs = {op.name: LIB for op in g.ops}
    cg = compress_graph(g, {op.name: "pattern" for op in g.ops}, libraries=libs)
    canon = pattern.check_library(LIB)
    assert canon != pattern.PATTERNS and not set(canon) & set(pattern.PATTERNS)
    for op, dense in zip(cg.ops, g.ops):
        assert op.fmt.library == canon
        assert np.array_equal(densify(op).weight, dense.weight)          # kept weights unchanged
        assert int(op.fmt.pid.max()) >= 1                                # several patterns used
        bc = byte_count(op.fmt)
        assert bc.meta == meta_bytes("pattern", n_patterns=len(LIB))     # the layer's own table
        assert bc.meta - meta_bytes("pattern", n_patterns=8) == 4 * (len(LIB) - 8)
        assert bc == estimate_bytes("pattern", op.weight_shape, kept=op.fmt.n_kernels,
                                    n_patterns=len(LIB))
    x = sg.random_input(6, seed=1)
    want = run_reference(g, x)
    assert_bytes_equal(run_reference(cg, x), want, "reference, compressed vs dense")
    # .tflite: the library is stored in the custom op and read back
    data = to_tflite_bytes(cg)
    rg = read_tflite(data)
    for op, orig in zip(rg.ops, cg.ops):
        assert op.fmt.library == canon
        for f in ("values", "pid", "kidx", "kptr"):
            assert np.array_equal(getattr(op.fmt, f), getattr(orig.fmt, f))
    assert_bytes_equal(run_reference(rg, x), want, "reference after .tflite round trip")
    # C: the plan's pattern table is the layer's library; host builds on every ISA path agree
    plan = plan_model(cg, "host")
    assert plan.const_bytes == graph_bytes(cg, pointer_bytes=8).total    # one byte model
    consts = {c.cname: c.data for c in plan.consts}
    for step in plan.steps:
        assert step.call.n_patterns == len(LIB)
        assert consts[step.call.patterns].reshape(-1, 4).tolist() == [list(p) for p in canon]
    for isa in ("scalar", "dsp", "mve"):
        assert_bytes_equal(build_host_model(cg, isa=isa)(x), want, f"host C ({isa})")


@pytest.mark.skipif(toolchain_available("cortex-m55") is not None,
                    reason=str(toolchain_available("cortex-m55")))
def test_custom_library_on_cortex_m55_qemu():
    sg, g = _pattern_graph()
    cg = compress_graph(g, {op.name: "pattern" for op in g.ops},
                        libraries={op.name: LIB for op in g.ops})
    x = sg.random_input(2, seed=4)
    assert_bytes_equal(run_firmware(build_firmware(cg, "cortex-m55"), x).outputs,
                       run_reference(g, x), "Cortex-M55 (MVE) under QEMU")


def test_refuses_what_cannot_carry_the_library():
    sg, g = _pattern_graph()
    with pytest.raises(FormatError, match=r"'conv1': kernel \(o=\d+, i=\d+\) has non-zero weights"):
        compress_graph(g, {"conv1": "pattern"})                  # built-in library: would change weights
    with pytest.raises(FormatError, match="exactly 4 weights"):
        compress_graph(g, {"conv1": "pattern"}, libraries={"conv1": [(0, 4, 8)]})
    with pytest.raises(FormatError, match="both"):
        compress_graph(g, {"conv1": "pattern"}, libraries={"conv1": [(0, 1, 2, 4), (4, 2, 1, 0)]})
    with pytest.raises(GraphError, match="not 'pattern'"):
        compress_graph(g, {"conv1": "csr"}, libraries={"conv1": LIB})
    with pytest.raises(GraphError, match="no op named"):
        compress_graph(g, {"conv1": "pattern"}, libraries={"nope": LIB})
    with pytest.raises(FormatError, match="1..256"):
        pattern.check_library([])


def _with_patterns(data: bytes, codes) -> bytes:
    """The .tflite ``data`` with the first custom op's ``patterns`` option replaced."""
    from flatbuffers import flexbuffers

    from dtmm.tflite.reader import load_model
    from dtmm.tflite._schema import schema
    import flatbuffers

    m = load_model(data)
    op = m.subgraphs[0].operators[0]
    opts = flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8)))
    opts["patterns"] = codes
    op.customOptions = list(flexbuffers.Dumps(opts))
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("codes,match", [
    ([0b111], "exactly 4 weights"),                              # 3 positions
    ([27, 27], "both"),                                          # duplicate pattern
    ([27, 600], "9-bit"),                                        # not a 9-bit mask
    ([], "1..256"),
    ("27", "not a list"),
])
def test_reader_verifies_the_stored_library(codes, match):
    sg, g = _pattern_graph()
    cg = compress_graph(g, {"conv1": "pattern"}, libraries={"conv1": LIB})
    data = to_tflite_bytes(cg)
    assert options_of(cg.ops[0])["patterns"] == pattern.library_codes(LIB)
    with pytest.raises(ModelFileError, match=f"operator 0 .*patterns.*{match}"):
        read_tflite(_with_patterns(data, codes))


def test_reader_rejects_pid_beyond_a_short_library():
    sg, g = _pattern_graph(lib=LIB[:2])
    cg = compress_graph(g, {"conv1": "pattern"}, libraries={"conv1": LIB[:2]})
    assert int(cg.ops[0].fmt.pid.max()) == 1
    data = to_tflite_bytes(cg)
    read_tflite(data)                                            # valid as written
    with pytest.raises(ModelFileError, match="pid.*no such pattern"):
        read_tflite(_with_patterns(data, pattern.library_codes(LIB[:1])))


def test_patdnn_torch_model_library_round_trip():
    """PatDNN flow on a torch model: a library derived from the model, pattern + connectivity
    masks with it, capture, int8, compress: the layer keeps the derived library and its weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3)).eval()
    layers = ["0", "3"]
    scores = prune.l2(net, layers, "pattern")
    ohwi = {n: s.reshape(prune.weight_ohwi(dict(net.named_modules())[n]).shape)
            for n, s in scores.items()}
    lib = prune.derive_pattern_library(ohwi.values(), k=8, include_centre=False)
    assert set(lib) - set(pattern.PATTERNS)                       # a library of the model's own
    gran = prune.Pattern(lib)
    masks = prune.masks_from_scores(net, scores, gran, {"0": 0.25, "3": 0.5})
    prune.apply_masks(net, masks)
    prune.remove_masks(net)
    x = np.random.default_rng(0).random((8, 6, 6, 2), dtype=np.float32)
    qg = quantize_graph(capture(net, (2, 6, 6)), [x])
    cg = compress_graph(qg, {n: "pattern" for n in layers}, libraries={n: lib for n in layers})
    for n in layers:
        assert cg.op(n).fmt.library == pattern.check_library(lib)
        assert np.array_equal(densify(cg.op(n)).weight, qg.op(n).weight)
    xq = quantize_input(x, qg.tensors[qg.inputs[0]].qparams)
    assert_bytes_equal(run_reference(cg, xq), run_reference(qg, xq))
    rg = read_tflite(to_tflite_bytes(cg))
    assert_bytes_equal(run_reference(rg, xq), run_reference(qg, xq), "after .tflite")
    with pytest.raises(FormatError, match="no pattern of the layer's library"):
        compress_graph(copy.deepcopy(qg), {n: "pattern" for n in layers})
