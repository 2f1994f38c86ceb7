"""One byte model: dtmm.formats.footprint's const bytes equal what the compiler puts in model.o.

For each zoo model (dense, and its convs in FWCS / CSR / pattern, and filters pruned across
residual adds) the plan's const bytes (the footprint, number (b)) equal the summed sizes
of the read-only data sections of the compiled model.c, on Cortex-M55 (32-bit pointers)
and on the host (64-bit pointers); dtmm inspect reports the same per-layer bytes.
"""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dtmm.codegen.emit import build_defines, cached_project
from dtmm.codegen.plan import plan_model
from dtmm.codegen.platform import SUPPORT_DIR, get_target
from dtmm.data import load_dataset
from dtmm.formats import footprint
from dtmm.graph.capture import capture
from dtmm.graph.compressed import compress_graph
from dtmm.prune import remove_dead_channels
from dtmm.quant.quantize import quantize_graph
from dtmm.report import inspect_graph
from dtmm.zoo import MODEL_NAMES, build_model

from _helpers import needs_qemu, realistic_bn

# read-only data; on a PIE host, consts holding pointers go to .data.rel.ro (read-only after
# relocation)
_RODATA = (".rodata", ".dtmm_large_const", ".data.rel.ro")


def _compile_rodata(plan) -> int:
    """Summed size of model.o's read-only data sections for the plan's target."""
    t = plan.target_info
    proj = cached_project(plan)
    cc = "gcc" if t.is_host else "arm-none-eabi-gcc"
    size = "size" if t.is_host else "arm-none-eabi-size"
    defs = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in build_defines(plan).items()]
    obj = proj.parent / f"{proj.name}.{t.name}.footprint.o"
    subprocess.run([cc, "-O2", "-std=c99", "-fdata-sections", "-c", str(proj / "model.c"),
                    "-o", str(obj), f"-I{proj}", f"-I{proj / 'kernels'}", f"-I{SUPPORT_DIR}",
                    *t.compile_flags(plan.simd), *defs], check=True, capture_output=True)
    out = subprocess.run([size, "-A", str(obj)], check=True, capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(_RODATA) and parts[1].isdigit():
            total += int(parts[1])
    return total


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", limit=32, seed=2)
    return ds.x.transpose(0, 2, 3, 1).copy()


def _zoo(name, digits, prune=None):
    torch.manual_seed(0)
    net = realistic_bn(build_model(name, (1, 8, 8), 10), seed=1)
    if prune is not None:
        prune(net)
    g, _ = remove_dead_channels(capture(net, (1, 8, 8)))
    return quantize_graph(g, [digits])


def _masks(qg, fmt, rng):
    """A random mask in ``fmt``'s granularity for every 3x3 (pattern) or any conv."""
    formats, masks = {}, {}
    for op in qg.ops:
        if op.kind != "conv2d" or (fmt == "pattern" and op.kernel != (3, 3)):
            continue
        o, kh, kw, c = op.weight.shape
        formats[op.name] = fmt
        if fmt == "fwcs":
            masks[op.name] = rng.random((o, kh, kw)) < 0.4
    return formats, masks


def _prune_tied_filters(net):
    """Zero filters 0 and 3 on both sides of ResNet-8's first residual add (stem and the
    block's second conv, with their BatchNorm biases), so the channel leaves the graph."""
    with torch.no_grad():
        for conv, bn in ((net.stem.conv, net.stem.bn), (net.layers[0].conv2.conv, net.layers[0].conv2.bn)):
            conv.weight[[0, 3]] = 0
            bn.bias[[0, 3]] = 0


def _check(qg):
    for target in ("cortex-m55", "host"):
        plan = plan_model(qg, target)
        pb = get_target(target).pointer_bytes
        assert plan.const_bytes == footprint.graph_bytes(qg, pb).total
        assert plan.const_bytes == _compile_rodata(plan), target
    rep = inspect_graph(qg)
    assert rep["total_bytes"] == plan_model(qg, "cortex-m55").const_bytes


needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")


@needs_arm
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_dense_zoo_const_bytes_equal_model_o(name, digits):
    _check(_zoo(name, digits))


@needs_arm
@pytest.mark.parametrize("fmt", ["fwcs", "csr", "pattern"])
def test_compressed_const_bytes_equal_model_o(fmt, digits):
    qg = _zoo("resnet8", digits)
    formats, masks = _masks(qg, fmt, np.random.default_rng(0))
    _check(compress_graph(qg, formats, masks))


@needs_arm
def test_filters_pruned_across_a_residual_add(digits):
    qg = _zoo("resnet8", digits, prune=_prune_tied_filters)
    stem = qg.op("stem.conv")
    assert stem.weight.shape[0] == 14          # 16 filters, 2 removed on both sides of the add
    _check(qg)
    formats, masks = _masks(qg, "fwcs", np.random.default_rng(1))
    _check(compress_graph(qg, formats, masks))


@needs_arm
def test_concat_const_bytes_equal_model_o():
    from dtmm.runtime.synth import SynthGraph

    sg = SynthGraph((6, 6, 3), seed=0)
    a = sg.conv(4, 3, pads="same")
    b = sg.conv(5, 1, x="input")
    sg.set_qparams(b, sg.g.tensors[a].qparams)
    sg.concat([a, b])
    sg.max_pool(2)
    _check(sg.finish())
