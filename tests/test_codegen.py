"""Code generation: arena planning, the generated C model on the host and under QEMU
(bit-exact with the NumPy reference), instruction counts, sizes, overflow errors, export."""
import dataclasses
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

from dtmm.codegen import arena as A
from dtmm.codegen.backends import build_firmware, build_host_model, run_firmware
from dtmm.codegen.emit import project_files, write_project
from dtmm.codegen.plan import plan_model
from dtmm.codegen.platform import (MemoryRegion, RegionOverflowError, build, get_target,
                                   toolchain_available)
from dtmm.data import load_dataset
from dtmm.errors import BuildError
from dtmm.graph.capture import capture
from dtmm.formats.pattern import pattern_mask
from dtmm.graph.compressed import compress_graph as _compress_graph
from dtmm.quant.quantize import quantize_graph, quantize_input
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph
from dtmm.zoo import MODEL_NAMES, build_model

from _helpers import assert_bytes_equal as assert_same  # noqa: E402
from _helpers import realistic_bn  # noqa: E402


def compress_graph(g, formats):
    """compress_graph after pattern-pruning the "pattern" layers (storage never prunes)."""
    import copy
    g = copy.deepcopy(g)
    for name, fmt in formats.items():
        if fmt == "pattern":
            w = g.op(name).weight
            w[~pattern_mask(w)] = 0
    return _compress_graph(g, formats)


QEMU_TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55")
need_arm = pytest.mark.skipif(toolchain_available("cortex-m4") is not None,
                              reason=str(toolchain_available("cortex-m4")))


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", limit=48, seed=2)
    return ds.x.transpose(0, 2, 3, 1).copy()


_ZOO: dict = {}


def zoo_graph(name: str, digits):
    """(quantized 8x8 zoo graph, int8 real test images) calibrated on real digits."""
    if name not in _ZOO:
        torch.manual_seed(0)
        net = realistic_bn(build_model(name, (1, 8, 8), 10), seed=1)
        qg = quantize_graph(capture(net, (1, 8, 8)), [digits[:32]])
        _ZOO[name] = qg, quantize_input(digits[32:], qg.tensors[qg.inputs[0]].qparams)
    return _ZOO[name]


def residual_graph() -> tuple[SynthGraph, object]:
    sg = SynthGraph((8, 8, 4), seed=3)
    a = sg.conv(8, 3, pads="same", activation="relu")
    b = sg.conv(8, 3, pads="same", activation="relu")
    c = sg.conv(8, 1, x=a)
    d = sg.add(b, c, activation="relu")
    e = sg.conv(16, 3, stride=2, pads="same", activation="relu", x=d)
    f = sg.add(e, sg.conv(16, 1, stride=2, x=a))
    sg.global_avg_pool(x=f)
    sg.reshape((16,))
    sg.fc(10)
    sg.softmax()
    return sg, sg.finish()


# ----------------------------------------------------------------------------- arena


def brute_force_liveness(graph, isa: str) -> tuple[int, list[set[str]]]:
    """Peak of the bytes live at each op, simulated op by op with reference counts
    (independent of dtmm.codegen.arena): a tensor is freed after its last reader;
    a reshape output shares its input's storage; sizes rounded up to 16 bytes."""
    root = {n: n for n in graph.inputs}
    readers: dict[str, int] = {}
    for op in graph.ops:
        if op.kind == "reshape":
            root[op.output] = root[op.inputs[0]]
        else:
            root[op.output] = op.output
    for op in graph.ops:
        for t in op.inputs:
            readers[root[t]] = readers.get(root[t], 0) + 1
    for t in graph.outputs:
        readers[root[t]] = readers.get(root[t], 0) + 1       # read by the copy-out
    size = {r: -(-graph.tensors[r].size // 16) * 16 for r in set(root.values())}
    live = {root[n] for n in graph.inputs}
    peak, sets = 0, []
    for op in graph.ops:
        live.add(root[op.output])
        scratch = A.scratch_bytes(op, graph, isa)
        peak = max(peak, sum(size[r] for r in live) + -(-scratch // 16) * 16)
        sets.append(set(live))
        for t in op.inputs:
            readers[root[t]] -= 1
            if readers[root[t]] == 0:
                live.discard(root[t])
        if readers.get(root[op.output], 0) == 0:
            live.discard(root[op.output])                        # never read
    return peak, sets


def test_arena_matches_brute_force_liveness_on_residual_graph():
    _, g = residual_graph()
    host = A.plan_arena(g, "host")
    assert host.peak_live == host.size == brute_force_liveness(g, "scalar")[0]
    p = A.plan_arena(g, "cortex-m7")                             # with im2col scratch
    peak, live_sets = brute_force_liveness(g, "dsp")
    assert p.peak_live == peak <= p.size
    assert p.size % 16 == 0 and all(o % 16 == 0 for o in p.offsets.values())
    # buffers live at the same op never share a byte (scratch included)
    iv = {b.name: (p.offsets[b.tensors[0]] if b.tensors else p.scratch_offsets[b.scratch_of],
                   b.nbytes, b.first, b.last) for b in p.buffers}
    names = list(iv)
    for i, m in enumerate(names):
        for n in names[i + 1:]:
            o1, s1, f1, l1 = iv[m]
            o2, s2, f2, l2 = iv[n]
            if f1 <= l2 and f2 <= l1:
                assert o1 + s1 <= o2 or o2 + s2 <= o1, f"{m} and {n} overlap"
            assert max(o1 + s1, o2 + s2) <= p.size
    # the residual input `a` stays live until its last reader (the second shortcut conv)
    a = g.ops[0].output
    last_reader = max(i for i, op in enumerate(g.ops) if a in op.inputs)
    assert all(a in live_sets[i] for i in range(0, last_reader + 1))
    # a reshape output aliases its input
    r = next(op for op in g.ops if op.kind == "reshape")
    assert p.offsets[r.output] == p.offsets[r.inputs[0]]


def test_arena_scratch_follows_the_isa_path_and_is_cheap():
    _, g = residual_graph()
    conv = g.ops[0].name
    k = 3 * 3 * 4
    assert A.plan_arena(g, "host").scratch.get(conv, 0) == 0                 # plain C
    assert A.plan_arena(g, "cortex-m4").scratch[conv] >= 2 * k               # int16 im2col
    assert A.plan_arena(g, "cortex-m55").scratch[conv] > 0                   # MVE path
    assert A.plan_arena(g, "cortex-m55", simd="scalar").scratch.get(conv, 0) == 0
    import time
    t0 = time.perf_counter()
    for _ in range(200):
        A.plan_arena(g, "cortex-m55")
    assert (time.perf_counter() - t0) / 200 < 0.01                           # < 10 ms a plan


def test_scratch_mismatch_is_caught_by_the_model_check(tmp_path):
    """A plan whose scratch sizes do not match the compiled kernels is refused at load."""
    from dtmm.codegen.backends import HostModel

    _, g = residual_graph()
    plan = plan_model(g, "host", isa="scalar")                 # plans 0 bytes for dense conv
    proj = write_project(plan, tmp_path / "p")
    srcs = [proj / "model.c"] + [proj / "kernels" / s for s in plan.kernel_sources]
    art = build("host", srcs, include_dirs=[proj, proj / "kernels"], kind="shared",
                defines={"DTMM_EMULATE_DSP": 1}, out_dir=tmp_path / "b")   # ... needs 4 * K
    with pytest.raises(BuildError, match="scratch"):
        HostModel(plan, art.path)


# ----------------------------------------------------------------------------- host


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_host_equals_reference(name, digits):
    qg, xq = zoo_graph(name, digits)
    ref = run_reference(qg, xq)
    assert_same(build_host_model(qg)(xq), ref, f"{name} host (default: plain C, host variant)")
    assert_same(build_host_model(qg, isa="dsp")(xq), ref, f"{name} host (dsp path)")
    assert_same(build_host_model(qg, isa="scalar", native=False, workers=1)(xq), ref,
                f"{name} host (plain C, portable flags)")


def test_synthetic_ops_host_equal_reference():
    """Softmax (TFLM-exact), concat, reshape, depthwise, pools, residual adds."""
    sg = SynthGraph((9, 9, 3), seed=5)
    a = sg.conv(6, 3, pads="same", activation="relu6")
    b = sg.depthwise(3, multiplier=2, pads="same", activation="relu", x=a)
    c = sg.conv(12, 1, x=a)
    sg.set_qparams(c, sg.g.tensors[b].qparams)
    d = sg.concat([b, c])
    e = sg.max_pool(3, stride=2, pads="same", x=d)
    sg.avg_pool(2, stride=2, pads=(0, 1, 0, 1), x=e)
    sg.reshape((3 * 3 * 24,))
    sg.fc(7)
    sg.softmax(beta=0.7)
    g = sg.finish()
    x = sg.random_input(40, seed=9)
    assert_same(build_host_model(g)(x), run_reference(g, x), "synthetic host")
    assert_same(build_host_model(g, isa="dsp")(x), run_reference(g, x), "synthetic host dsp")
    assert_same(build_host_model(g, native=False)(x), run_reference(g, x), "synthetic host C")


def test_host_variant_equals_reference_and_plain_c():
    """The default host build (DTMM_HOST_FAST, -O3 -march=native): small-K and blocked
    dense conv, depthwise (multiplier 1), residual add, FC; and the same bytes as the
    portable build and the emulated DSP path."""
    sg = SynthGraph((11, 9, 1), seed=21)
    a = sg.conv(24, 3, pads="same", activation="relu")                 # K = 9: small-K path
    b = sg.conv(33, 3, pads="same", activation="relu6", x=a)           # K = 216, odd C_out
    c = sg.depthwise(3, pads="same", activation="relu", x=b)
    d = sg.conv(33, 1, x=a)
    sg.add(c, d, activation="relu")
    e = sg.conv(48, 3, stride=2, pads="same")                          # K = 297
    sg.global_avg_pool(x=e)
    sg.reshape((48,))
    sg.fc(10)
    g = sg.finish()
    x = sg.random_input(37, seed=2)
    want = run_reference(g, x)
    m = build_host_model(g)
    assert m.plan.arena.isa == "scalar"
    assert_same(m(x), want, "host variant")
    assert_same(build_host_model(g, workers=1)(x[:5]), want[:5], "host variant, 1 worker")
    assert_same(build_host_model(g, native=False)(x), want, "host variant, portable flags")


def _pruned_graph(seed: int = 4):
    sg = SynthGraph((8, 8, 8), seed=seed)
    sg.conv(16, 3, pads="same", activation="relu")
    sg.conv(16, 3, pads="same", activation="relu")
    sg.conv(8, 3, stride=2, pads="same")
    sg.global_avg_pool()
    sg.reshape((8,))
    sg.fc(5)
    g = sg.finish()
    rng = np.random.default_rng(seed)
    convs = [op for op in g.ops if op.kind == "conv2d"]
    for op in convs:                                    # filterlet + element + pattern pruning
        w = op.weight
        w[rng.random(w.shape[:3]) < 0.5] = 0
        w[0] = 0                                        # a dead filter
    return sg, g, [op.name for op in convs]


@pytest.mark.parametrize("fmt", ["fwcs", "csr", "pattern"])
def test_compressed_formats_host_equal_reference(fmt):
    sg, g, convs = _pruned_graph()
    cg = compress_graph(g, {n: fmt for n in convs})
    x = sg.random_input(20, seed=1)
    want = run_reference(cg, x)
    plan = plan_model(cg, "host")
    assert {s.op_kind for s in plan.steps} >= {"compressed_conv2d"}
    assert_same(build_host_model(cg)(x), want, f"{fmt} host")
    assert_same(build_host_model(cg, isa="dsp")(x), want, f"{fmt} host dsp")


def test_plan_errors_name_the_op():
    sg = SynthGraph((8, 8, 2), seed=0)
    sg.conv(4, 3, dilation=2)
    with pytest.raises(BuildError, match="conv1.*dilation"):
        plan_model(sg.finish(), "host")


# ----------------------------------------------------------------------------- QEMU


@need_arm
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_qemu_equals_reference(name, digits):
    qg, xq = zoo_graph(name, digits)
    x = xq[:3]
    ref = run_reference(qg, x)
    for target in QEMU_TARGETS:
        res = run_firmware(build_firmware(qg, target), x)
        assert_same(res.outputs, ref, f"{name} on {target}")
        assert len(res.instructions) == 3 and min(res.instructions) > 0
        assert res.flash_bytes > res.const_bytes > 0
        assert res.ram_bytes >= res.arena_bytes >= res.arena_peak_live


@need_arm
def test_instruction_counts_repeat_exactly(digits):
    qg, xq = zoo_graph("resnet8", digits)
    x = np.concatenate([xq[:2], xq[:2]])                     # the same images twice
    fw = build_firmware(qg, "cortex-m55")
    a = run_firmware(fw, x).instructions
    b = run_firmware(fw, x).instructions
    assert a == b and a[:2] == a[2:]


@need_arm
@pytest.mark.parametrize("fmt", ["fwcs", "csr", "pattern"])
def test_compressed_formats_qemu_equal_reference(fmt):
    sg, g, convs = _pruned_graph()
    cg = compress_graph(g, {n: fmt for n in convs})
    x = sg.random_input(3, seed=2)
    want = run_reference(cg, x)
    for target in QEMU_TARGETS:
        assert_same(run_firmware(build_firmware(cg, target), x).outputs, want, f"{fmt} {target}")


def _pruned_zoo_graph(name, digits, fmt):
    """A zoo graph whose convs keep the 40% largest filterlets (int8 magnitude), compressed."""
    import copy
    qg, xq = zoo_graph(name, digits)
    qg = copy.deepcopy(qg)
    names = []
    for op in qg.ops:
        if op.kind != "conv2d" or (fmt == "pattern" and op.kernel != (3, 3)):
            continue
        w = op.weight.astype(np.int32)
        score = np.abs(w).sum(axis=3)                          # one score per filterlet
        keep = score >= np.quantile(score, 0.6)
        op.weight = np.where(keep[..., None], op.weight, 0).astype(np.int8)
        names.append(op.name)
    return compress_graph(qg, {n: fmt for n in names}), xq


@need_arm
@pytest.mark.parametrize("fmt", ["fwcs", "csr", "pattern"])
def test_pruned_resnet8_every_backend_on_real_images(fmt, digits):
    """A pruned zoo model in every format: reference == host == M4 == M7 == M55 == TFLM
    (dense equivalent) on real digit images."""
    from dtmm.graph.compressed import dense_equivalent, has_compressed_ops
    from dtmm.tflite.export import to_tflite_bytes
    from dtmm.tflite.reader import read_tflite
    from dtmm.tflite.tflm import run_tflm
    cg, xq = _pruned_zoo_graph("resnet8", digits, fmt)
    assert has_compressed_ops(cg)
    cg = read_tflite(to_tflite_bytes(cg))                      # through the compressed file
    x = xq[:4]
    want = run_reference(cg, x)
    assert_same(build_host_model(cg)(x), want, f"{fmt} host")
    assert_same(run_tflm(to_tflite_bytes(dense_equivalent(cg)), x), want, f"{fmt} tflm")
    for target in QEMU_TARGETS:
        assert_same(run_firmware(build_firmware(cg, target), x).outputs, want, f"{fmt} {target}")


@need_arm
def test_synthetic_ops_qemu_equal_reference():
    sg, g = residual_graph()
    x = sg.random_input(4, seed=3)
    want = run_reference(g, x)
    for target in QEMU_TARGETS:
        assert_same(run_firmware(build_firmware(g, target), x).outputs, want, f"residual {target}")


@need_arm
@pytest.mark.parametrize("opt,defines", [("-O0", None), ("-Os", None), ("-Og", {"DTMM_NO_ASM": None})])
def test_kernels_build_and_match_below_o2(opt, defines):
    """The kernels' asm loops need -O2 / -O3 (GCC cannot allocate their 14 registers at -O0,
    -Og, -O1 or -Os: "impossible constraints"); elsewhere they build as C and intrinsics by
    themselves (-O0, -Os) or with DTMM_NO_ASM (-Og, -O1). Every target builds a model with a
    dense conv, a depthwise conv and FWCS convs at C_in 16 and 32 (the DSP and MVE asm
    paths' shapes), and its outputs equal the reference's."""
    sg = SynthGraph((8, 8, 4), seed=9)
    sg.conv(16, 3, pads="same", activation="relu")                     # dense (MVE dot_2x3)
    sg.depthwise(3, pads="same", activation="relu")
    sg.conv(32, 3, pads="same", activation="relu")                     # FWCS, C_in 16
    sg.conv(16, 3, stride=2, pads="same")                              # FWCS, C_in 32
    sg.global_avg_pool()
    sg.reshape((16,))
    sg.fc(5)
    g = sg.finish()
    rng = np.random.default_rng(9)
    fwcs = [op.name for op in g.ops if op.kind == "conv2d"][1:]
    for name in fwcs:
        w = g.op(name).weight
        w[rng.random(w.shape[:3]) < 0.6] = 0
    cg = compress_graph(g, {n: "fwcs" for n in fwcs})
    x = sg.random_input(2, seed=4)
    want = run_reference(cg, x)
    for target in QEMU_TARGETS:
        res = run_firmware(build_firmware(cg, target, opt=opt, defines=defines), x)
        assert_same(res.outputs, want, f"{target} {opt}")


def test_exported_makefile_turns_the_asm_off_below_o2(tmp_path):
    """The bare-metal project's Makefile adds -DDTMM_NO_ASM unless CFLAGS' last -O level is
    -O2, -O3 or -Ofast (make's own evaluation of the generated rule, no compiler needed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    sg, g = residual_graph()
    files = project_files(plan_model(g, get_target("cortex-m4")))
    (tmp_path / "Makefile").write_text(files["Makefile"].decode() + "\nshow:\n\t@echo $(DEFS)\n")
    for cflags, off in (("-O2 -g", False), ("-O3", False), ("-Os -g", True), ("-Og", True),
                        ("-O2 -O1", True), ("-O0 -O2", False), ("-g", True)):
        out = subprocess.run(["make", "-s", "-C", str(tmp_path), "show", f"CFLAGS={cflags}"],
                             capture_output=True, text=True, check=True).stdout
        assert ("-DDTMM_NO_ASM" in out) == off, (cflags, out)


def _tiny_target(code_kib: int, ram_kib: int):
    m4 = get_target("cortex-m4")
    return dataclasses.replace(m4, name="tiny-m4", regions=(
        MemoryRegion("CODE", 0x0, code_kib * 1024, "rx", "code"),
        MemoryRegion("RAM", 0x20000000, ram_kib * 1024, "rwx", "ram")))


@need_arm
def test_overflow_names_the_region():
    sg = SynthGraph((16, 16, 8), seed=1)
    sg.conv(32, 3, pads="same")
    sg.reshape((16 * 16 * 32,))
    sg.fc(16)                                            # 131 KiB of weights
    g = sg.finish()
    with pytest.raises(RegionOverflowError) as e:
        build_firmware(g, _tiny_target(64, 256))
    assert e.value.region == "CODE" and "CODE" in str(e.value)
    with pytest.raises(RegionOverflowError) as e:        # arena 8 KiB + 8 KiB ... > RAM
        build_firmware(g, _tiny_target(1024, 24))
    assert e.value.region == "RAM"


@need_arm
def test_large_model_on_m55_uses_the_large_region(digits):
    qg, xq = zoo_graph("vgg11", digits)
    plan = plan_model(qg, "cortex-m55")
    assert plan.const_bytes > 512 * 1024 and any(c.large for c in plan.consts)
    assert not any(c.large for c in plan_model(qg, "cortex-m4").consts)


# ----------------------------------------------------------------------------- export


def test_exported_host_project_builds_standalone(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    sg, g = residual_graph()
    out = write_project(plan_model(g, "host"), tmp_path / "proj")
    proc = subprocess.run(["make", "-s"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "libdtmm_model.so").is_file()
    x = sg.random_input(3, seed=4)
    (out / "dtmm_input.bin").write_bytes(x.tobytes())
    run = subprocess.run(["./model_demo"], cwd=out, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    from dtmm.codegen.platform import parse_hex
    want = run_reference(g, x)
    for i in range(3):
        assert_same(parse_hex(run.stdout, f"y{i}", np.int8), want[i], f"demo image {i}")


@need_arm
def test_exported_cortex_m_project_builds_with_make(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    _, g = residual_graph()
    out = write_project(plan_model(g, "cortex-m7"), tmp_path / "fw")
    proc = subprocess.run(["make", "-s"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "firmware.elf").is_file()


def test_write_project_replaces_its_own_files_only(tmp_path):
    """A re-export replaces dtmm's files, removes the ones it no longer needs and keeps the
    user's (the data-loss bug of issue 12: app.c and dtmm_input.bin were deleted)."""
    _, g = residual_graph()
    out = tmp_path / "p"
    files = project_files(plan_model(g, "host"))
    write_project(plan_model(g, "host"), out, files={**files, "kernels/old_kernel.c": b"/* x */"})
    (out / "app.c").write_text("int app(void) { return 1; }\n")
    (out / "dtmm_input.bin").write_bytes(b"\x01\x02")
    write_project(plan_model(g, "host"), out)
    assert (out / "app.c").read_text().startswith("int app")
    assert (out / "dtmm_input.bin").read_bytes() == b"\x01\x02"
    assert not (out / "kernels" / "old_kernel.c").exists()        # dtmm's, no longer needed
    assert (out / "model.c").read_bytes() == files["model.c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]     # no temp files left behind
    assert not [p for p in out.rglob("*.tmp")]


# ----------------------------------------------------------------------------- pipeline verbs


def test_verify_and_export_commands(tmp_path, digits):
    from dtmm.tflite.export import to_tflite_bytes
    from dtmm.pipeline.export import export_command
    from dtmm.pipeline.verify import verify_command

    qg, _ = zoo_graph("dscnn", digits)
    model = tmp_path / "m.tflite"
    model.write_bytes(to_tflite_bytes(qg))
    v = verify_command(model=str(model), backend="host", data="digits", samples=200)
    assert v["bit_exact"] and v["samples"] == 200 and v["arena_bytes"] > 0
    if toolchain_available("cortex-m4") is None:
        v = verify_command(model=str(model), backend="qemu-m4", data="digits", samples=3)
        assert v["bit_exact"] and v["instructions_per_inference"] > 0 and v["flash_bytes"] > 0
    e = export_command(model=str(model), target="cortex-m55", out=str(tmp_path / "exp"))
    assert "model.c" in e["files"] and "platform/link.ld" in e["files"]


def test_export_never_replaces_a_directory_of_user_files(tmp_path):
    from dtmm.errors import OutputPathError

    sg, g = residual_graph()
    plan = plan_model(g, "host")
    mine = tmp_path / "firmware"
    mine.mkdir()
    (mine / "main.c").write_text("int main(void) { return 0; }\n")
    with pytest.raises(OutputPathError, match="main.c: dtmm did not write it"):
        write_project(plan, mine)
    assert (mine / "main.c").read_text().startswith("int main")
    assert sorted(p.name for p in mine.iterdir()) == ["main.c"]    # nothing written at all
    out = write_project(plan, tmp_path / "proj")
    (out / "model.c").write_text("/* edited by the user */\n")
    with pytest.raises(OutputPathError, match="model.c: it changed since dtmm wrote it"):
        write_project(plan, out)
    assert (out / "model.c").read_text() == "/* edited by the user */\n"

@need_arm
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
def test_linker_map_parts_add_up_to_the_firmware_flash(target):
    """Fig. 15's breakdown: every flash byte of the linked image goes to exactly one part,
    each FWCS-using firmware links the FWCS kernel, and the model data is the generated
    model's constants (at least its weight bytes)."""
    from dtmm.codegen.platform import size
    from dtmm.codegen.platform.linkmap import flash_parts

    sg, g, convs = _pruned_graph()
    cg = compress_graph(g, {n: "fwcs" for n in convs})
    fw = build_firmware(cg, target)
    parts = flash_parts(fw.artifact)
    assert parts["flash"] == size(fw.artifact)[0]
    assert parts["kernels"]["dtmm_conv_fwcs_s8.c"] > 500
    assert "dtmm_conv_csr_s8.c" not in parts["kernels"]
    assert parts["model_code"] > 0 and parts["libc"] > 0 and parts["startup"] > 0
    # the model data is the plan's constant data plus the op descriptors (their alignment)
    assert fw.plan.const_bytes <= parts["model_data"] <= fw.plan.const_bytes + 2048


def test_linker_map_parser_reads_split_and_fill_lines():
    from dtmm.codegen.platform.linkmap import MapError, parse_map

    text = """Memory Configuration
Linker script and memory map

.text           0x00000100      0x40
 .text.dtmm_conv_s8
                0x00000100       0x30 /tmp/a.o
                0x00000100                dtmm_conv_s8
 *fill*         0x00000130        0x2 
 .text          0x00000134        0xc lib/libc.a(lib_a-exit.o)
.dtmm_large_const
                0x30000000       0x10
 .dtmm_large_const.w
                0x30000000       0x10 /tmp/m.o
"""
    outs, ins = parse_map(text)
    assert outs == {".text": 0x40, ".dtmm_large_const": 0x10}
    assert ins == [(".text", ".text.dtmm_conv_s8", 0x100, 0x30, "/tmp/a.o"),
                   (".text", "*fill*", 0x130, 2, ""),
                   (".text", ".text", 0x134, 0xc, "lib/libc.a(lib_a-exit.o)"),
                   (".dtmm_large_const", ".dtmm_large_const.w", 0x30000000, 0x10, "/tmp/m.o")]
    with pytest.raises(MapError, match="not a GNU ld map"):
        parse_map("hello")
