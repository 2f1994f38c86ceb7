"""Untrusted model files (issue 12): hostile names never become code, every field is validated
at read time, outputs never destroy a user's files, errors are clear, and a small fuzz run.

Every hostile or damaged file here is built by the test itself from a real dtmm file.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from flatbuffers import flexbuffers

from dtmm.cli import main
from dtmm.codegen.platform import cache_dir, toolchain_available
from dtmm.errors import BuildError, ModelFileError, OutputPathError
from dtmm.runtime.synth import SynthGraph
from dtmm.tflite._schema import FILE_IDENTIFIER, schema
from dtmm.tflite.export import to_tflite_bytes
from dtmm.tflite.reader import read_tflite
from dtmm.util.text import safe_name, terminal_safe

need_arm = pytest.mark.skipif(toolchain_available("cortex-m55") is not None,
                              reason="needs arm-none-eabi-gcc and qemu-system-arm")


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def small_graph(channels: int = 1, seed: int = 3):
    """conv -> max pool -> conv -> global avg pool -> reshape -> fc, on 8x8 inputs."""
    sg = SynthGraph((8, 8, channels), seed=seed)
    sg.conv(4, 3, pads="same", activation="relu")
    sg.max_pool(2)
    sg.conv(6, 3, pads="same", activation="relu")
    sg.global_avg_pool()
    sg.reshape((6,))
    sg.fc(10)
    return sg.finish()


def model_t(data: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


def pack(model: schema.ModelT) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def tensor_index(model, name: str) -> int:
    for i, t in enumerate(model.subgraphs[0].tensors):
        if (t.name.decode() if isinstance(t.name, bytes) else t.name) == name:
            return i
    raise KeyError(name)


def rename(data: bytes, tensor_names: dict[int, str | bytes], op_names: dict[int, str]) -> bytes:
    """The file with tensors and (metadata) op names renamed."""
    m = model_t(data)
    for i, n in tensor_names.items():
        m.subgraphs[0].tensors[i].name = n
    md = next(md for md in m.metadata if md.name in (b"dtmm", "dtmm"))
    meta = json.loads(bytes(m.buffers[md.buffer].data))
    for j, n in op_names.items():
        meta["ops"][j]["name"] = n
        meta["ops"][j]["source"] = n
    m.buffers[md.buffer].data = np.frombuffer(json.dumps(meta).encode(), np.uint8).copy()
    return pack(m)


# ----------------------------------------------------------------------------- 1. names


FORBIDDEN = ("*/", "/*", "//", "\n", "\r", "\\", "??", "#", "\x00", '"')


@pytest.mark.parametrize("name", ["a */ b", "a /* b", "a // b", "a\nb", "a\\b", "a??=b", "a#b",
                                  "a\x00b", "caf\u00e9", 'a"b', "a" * 1000, "/" * 9, "*" * 9,
                                  "x/ /*/ */"])
def test_safe_name_removes_every_dangerous_sequence(name):
    s = safe_name(name)
    assert len(s) <= 64 and s.isascii() and s.isprintable()
    for bad in FORBIDDEN:
        assert bad not in s, (name, s, bad)
    assert not set(s) - set(" _-.,:;@()[]{}<>=+!%&|~^/abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def test_terminal_safe_strips_control_codes():
    assert terminal_safe("\x1b[31mred\x1b[0m \x1b]0;title\x07ok\x9b\u202e") == "red ok"


PWN_MARK = "DTMM_PWNED_MARKER"


def hostile_model(tmp_path: Path, payload_only: bool = False) -> tuple[Path, Path, Path]:
    """(benign file, hostile file, the file a successful injection would create).

    The hostile file names its tensors and ops with comment breakers, newlines,
    preprocessor lines, trigraphs, NUL, non-ASCII and a payload that, if it ever
    reached C as code, would create ``pwned`` when the model runs (on the host through
    libc, on QEMU through semihosting). ``payload_only``: every name is the payload (a file that, were
    names pasted into C, would compile and run it: see
    ``test_the_payload_would_run_if_names_were_pasted``).
    """
    pwned = tmp_path / "pwned"
    # C statements: pasted into a comment inside dtmm_model_run they would run at inference
    payload = (f'x */ {{ extern void *fopen(const char *, const char *); '
               f'fopen("{pwned}", "w"); }} /* {PWN_MARK}')
    g = small_graph()
    data = to_tflite_bytes(g)
    m = model_t(data)
    n_t = len(m.subgraphs[0].tensors)
    hostile_t = [payload, "in\n#include </etc/passwd>\n", "a //b ??/ \\", "nul\x00x",
                 "\u202ecaf\u00e9\x1b[31m", "*/" * 40]
    tensors = {i: hostile_t[i % len(hostile_t)] + f" {i}" for i in range(n_t)}
    ops = {j: [payload, "op */ #define DTMM_MODEL_NUM_OPS 0 /*", "\x1b[2J clear"][j % 3] + f" {j}"
           for j in range(len(g.ops))}
    if payload_only:            # graph input and output keep their names (model.h is file scope)
        io = {int(i) for i in m.subgraphs[0].inputs} | {int(i) for i in m.subgraphs[0].outputs}
        tensors = {i: f"{payload} t{i}" for i in range(n_t) if i not in io}
        ops = {j: f"{payload} o{j}" for j in range(len(g.ops))}
    benign, hostile = tmp_path / "benign.tflite", tmp_path / "hostile.tflite"
    benign.write_bytes(data)
    hostile.write_bytes(rename(data, tensors, ops))
    return benign, hostile, pwned


def test_the_payload_would_run_if_names_were_pasted(tmp_path, monkeypatch):
    """The injection test can fail: with the sanitizer bypassed (names pasted into the C
    comments, as before issue 12), the payload file compiles, runs when the model runs
    and creates its file."""
    import dtmm.codegen.render as render
    from dtmm.codegen.backends import build_host_model

    monkeypatch.setenv("DTMM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(render, "safe_name", lambda name, limit=0: str(name))
    _, hostile, pwned = hostile_model(tmp_path, payload_only=True)
    g = read_tflite(hostile.read_bytes())
    build_host_model(g)(np.zeros((1,) + g.tensors[g.inputs[0]].shape, np.int8))
    assert pwned.exists()          # it ran (already at load: dtmm_model_check has the comments)


def strip_comments(c: str) -> str:
    return re.sub(r"/\*.*?\*/", "", c, flags=re.S)


def test_hostile_names_never_reach_c_as_code(tmp_path, capsys):
    from dtmm.codegen.emit import project_files
    from dtmm.codegen.plan import plan_model

    benign, hostile, pwned = hostile_model(tmp_path)
    g = read_tflite(hostile.read_bytes())
    assert any(PWN_MARK in n for n in g.tensors)          # the names did come through
    for target in ("host", "cortex-m55"):
        files = project_files(plan_model(g, target))
        ref = project_files(plan_model(read_tflite(benign.read_bytes()), target))
        assert sorted(files) == sorted(ref)
        for name in ("model.c", "model.h", "Makefile", "main.c"):
            text = files[name].decode("ascii")          # ASCII only: no name bytes got through
            assert PWN_MARK not in strip_comments(text)
            assert strip_comments(text) == strip_comments(ref[name].decode()), name
            for comment in re.findall(r"/\*(.*?)\*/", text, flags=re.S):
                assert "/*" not in comment and "#" not in comment and "??" not in comment
        if "platform/link.ld" in files:
            assert PWN_MARK not in files["platform/link.ld"].decode()

    # inspect: clean output, no terminal control codes
    code, out, err = run_cli(capsys, "inspect", hostile)
    assert code == 0 and "\x1b" not in out + err and "\u202e" not in out
    code, out, _ = run_cli(capsys, "inspect", hostile, "--json")
    assert code == 0 and "\x1b" not in out and json.loads(out)["layers"]

    # verify --backend host: the library is built and loaded into this process
    npz = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y=np.arange(40) % 10)
    res = {}
    (tmp_path / "p").mkdir()
    _, payload, pwned2 = hostile_model(tmp_path / "p", payload_only=True)
    for f in (benign, hostile, payload):
        code, out, err = run_cli(capsys, "verify", f, "--backend", "host", "--data", f"npz:{npz}",
                                 "--samples", "8", "--json")
        assert code == 0, err
        res[f] = json.loads(out)
    for f in (hostile, payload):
        assert res[f]["bit_exact"] and res[f]["accuracy"] == res[benign]["accuracy"]
    assert not pwned.exists() and not pwned2.exists()

    # export: the project builds, runs and prints what the benign project prints
    outs = {}
    for k, f in enumerate((benign, hostile, payload)):
        d = tmp_path / f"exp-{k}"
        code, _, err = run_cli(capsys, "export", f, "--target", "host", "--out", d)
        assert code == 0, err
        if shutil.which("make"):
            assert subprocess.run(["make", "-s"], cwd=d, capture_output=True).returncode == 0
            run = subprocess.run(["./model_demo"], cwd=d, capture_output=True, text=True)
            assert run.returncode == 0
            outs[f] = run.stdout
    assert not pwned.exists() and not pwned2.exists()
    if outs:
        assert outs[hostile] == outs[benign] == outs[payload]


@need_arm
def test_hostile_names_on_qemu_m55(tmp_path, capsys):
    benign, hostile, pwned = hostile_model(tmp_path)
    (tmp_path / "p").mkdir()
    _, payload, pwned2 = hostile_model(tmp_path / "p", payload_only=True)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.random.default_rng(1).integers(0, 256, (40, 8, 8), dtype=np.uint8),
             y=np.arange(40) % 10)
    for f in (hostile, payload):
        code, out, err = run_cli(capsys, "verify", f, "--backend", "qemu-m55", "--data",
                                 f"npz:{npz}", "--samples", "2", "--json")
        assert code == 0, err
        assert json.loads(out)["bit_exact"] is True
    assert not pwned.exists() and not pwned2.exists()


# ----------------------------------------------------------------------------- 2. validation


@pytest.fixture(scope="module")
def base_file():
    return to_tflite_bytes(small_graph())


def with_quant(data: bytes, tensor: str, scale=None, zp=None) -> bytes:
    m = model_t(data)
    t = m.subgraphs[0].tensors[tensor_index(m, tensor)]
    if scale is not None:
        t.quantization.scale = np.asarray([scale], np.float32)
    if zp is not None:
        t.quantization.zeroPoint = np.asarray([zp], np.int64)
    return pack(m)


@pytest.mark.parametrize("zp", [128, -129, 1000, 2 ** 40, -2 ** 31])
def test_out_of_range_zero_points_are_refused(base_file, zp):
    name = read_tflite(base_file).ops[0].output
    with pytest.raises(ModelFileError, match=rf"tensor \d+ \('{name}'\): quantization "
                                             rf"zero_point\[0\] = {zp} is outside"):
        read_tflite(with_quant(base_file, name, zp=zp))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_scales_are_refused(base_file, scale):
    name = read_tflite(base_file).ops[0].output
    with pytest.raises(ModelFileError, match=r"scale\[0\] = .* is not a finite float32 > 0"):
        read_tflite(with_quant(base_file, name, scale=scale))


def test_scale_with_unrepresentable_multiplier_is_refused(base_file):
    g = read_tflite(base_file)
    with pytest.raises(ModelFileError, match=r"operator 0 .*CONV_2D.*needs a requantization "
                                             r"shift of \d+, outside \[-31, 30\]"):
        read_tflite(with_quant(base_file, g.ops[0].output, scale=1e-30))
    with pytest.raises(ModelFileError, match=r"conv1/bias'\): bias scale\[0\] = .* is not input "
                                             r"scale x weight scale"):
        read_tflite(with_quant(base_file, g.inputs[0], scale=1e20))


def test_damaged_bias_byte_is_refused_with_its_file_offset(base_file):
    """One damaged byte in a builtin conv's bias: refused at read time, naming the tensor,
    the channel and the byte's file offset (it was an OverflowError in the reference)."""
    m = model_t(base_file)
    bidx = tensor_index(m, "conv1/bias")
    buf = m.subgraphs[0].tensors[bidx].buffer
    raw = bytearray(m.buffers[buf].data)
    c = next(c for c in range(len(raw) // 4) if raw[4 * c + 3] == 0)   # a bias >= 0
    raw[4 * c + 3] = 0x80                                   # its high byte damaged
    m.buffers[buf].data = np.frombuffer(bytes(raw), np.uint8).copy()
    data = pack(m)
    with pytest.raises(ModelFileError) as e:
        read_tflite(data)
    msg = str(e.value)
    assert "operator 0" in msg and f"output channel {c} can overflow the int32 accumulator" in msg
    off = int(re.search(rf"bias\[{c}\] at file offset (\d+)", msg).group(1))
    assert data[off:off + 4] == bytes(raw[4 * c:4 * c + 4])


def test_damaged_weights_are_refused_when_they_can_overflow(base_file):
    """Every weight of a conv set to -128 with a huge bias: the int32 bound fails."""
    m = model_t(base_file)
    conv = read_tflite(base_file).ops[2].name
    widx = tensor_index(m, f"{conv}/weight")
    bidx = tensor_index(m, f"{conv}/bias")
    t = m.subgraphs[0].tensors
    m.buffers[t[widx].buffer].data = np.full(len(m.buffers[t[widx].buffer].data), 0x80, np.uint8)
    b = np.frombuffer(bytes(m.buffers[t[bidx].buffer].data), "<i4").copy()
    b[:] = 2 ** 31 - 1000
    m.buffers[t[bidx].buffer].data = np.frombuffer(b.tobytes(), np.uint8).copy()
    with pytest.raises(ModelFileError, match=r"operator 2 .*output channel 0 can overflow"):
        read_tflite(pack(m))


def test_unequal_pool_quantization_is_refused_at_read_time(base_file):
    g = read_tflite(base_file)
    pool = next(o for o in g.ops if o.kind == "max_pool2d")
    q = g.tensors[pool.output].qparams
    with pytest.raises(ModelFileError, match=r"operator 1 .*MAX_POOL_2D.*TFLite Micro requires "
                                             r"them equal for max_pool2d"):
        read_tflite(with_quant(base_file, pool.output, scale=q.s * 2))


def test_unequal_reshape_quantization_is_refused_at_read_time(base_file):
    g = read_tflite(base_file)
    rs = next(o for o in g.ops if o.kind == "reshape")
    with pytest.raises(ModelFileError, match=r"RESHAPE.*requires them equal for reshape"):
        read_tflite(with_quant(base_file, rs.output, zp=g.tensors[rs.output].qparams.zp + 1))


def test_graph_output_that_is_its_input_is_refused(base_file):
    m = model_t(base_file)
    m.subgraphs[0].outputs = np.asarray(m.subgraphs[0].inputs, np.int32)
    with pytest.raises(ModelFileError, match="is also a graph input"):
        read_tflite(pack(m))


def test_operators_out_of_order_are_refused(base_file):
    m = model_t(base_file)
    ops = m.subgraphs[0].operators
    ops[0], ops[2] = ops[2], ops[0]
    with pytest.raises(ModelFileError, match="execution order"):
        read_tflite(pack(m))


def test_cycle_is_refused(base_file):
    """conv1 reads conv2's output: a cycle (conv1 -> pool -> conv2 -> conv1)."""
    m = model_t(base_file)
    sub = m.subgraphs[0]
    sub.operators[0].inputs = np.asarray([sub.operators[2].outputs[0], *sub.operators[0].inputs[1:]],
                                         np.int32)
    with pytest.raises(ModelFileError):
        read_tflite(pack(m))


def test_wrong_builtin_options_type_is_refused(base_file):
    m = model_t(base_file)
    m.subgraphs[0].operators[1].builtinOptions = schema.SoftmaxOptionsT()
    m.subgraphs[0].operators[1].builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    with pytest.raises(ModelFileError, match=r"operator 1 \(MAX_POOL_2D\): builtin options are "
                                             r"SoftmaxOptions, expected Pool2DOptions"):
        read_tflite(pack(m))


def test_softmax_beta_and_output_quantization_checked():
    sg = SynthGraph((4, 4, 2), seed=0)
    sg.conv(3, 1)
    sg.reshape((48,))
    sg.softmax()
    data = to_tflite_bytes(sg.finish())
    m = model_t(data)
    sm = m.subgraphs[0].operators[-1]
    sm.builtinOptions.beta = float("nan")
    with pytest.raises(ModelFileError, match="softmax beta = nan"):
        read_tflite(pack(m))
    out = read_tflite(data).outputs[0]
    with pytest.raises(ModelFileError, match="softmax needs 1/256 and -128"):
        read_tflite(with_quant(data, out, zp=-127))


def test_custom_op_options_still_checked():
    from dtmm.graph.compressed import compress_graph

    sg = SynthGraph((6, 6, 3), seed=1)
    sg.conv(4, 3, pads=1)
    data = to_tflite_bytes(compress_graph(sg.finish(), {"conv1": "fwcs"}))
    m = model_t(data)
    op = m.subgraphs[0].operators[0]
    opts = flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8)))
    opts["stride_h"] = 0
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
    with pytest.raises(ModelFileError, match=r"custom option 'stride_h' = 0"):
        read_tflite(pack(m))


def damaged_files(base: bytes, n: int = 40, seed: int = 5) -> list[bytes]:
    from dtmm.fuzz.mutate import mutant
    return [mutant(base, seed, i).data for i in range(n)] + [b"", b"\x00" * 64, base[:100],
                                                              os.urandom(3000)]


def test_no_plain_exception_escapes_any_verb(tmp_path, capsys, base_file):
    """inspect, verify and export on damaged files: exit 0, 1 or 2, never 3 (a traceback)."""
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((40, 8, 8), np.uint8), y=np.arange(40) % 10)
    for i, data in enumerate(damaged_files(base_file)):
        f = tmp_path / f"m{i}.tflite"
        f.write_bytes(data)
        for args in (["inspect", f], ["verify", f, "--data", f"npz:{npz}", "--samples", "2"],
                     ["export", f, "--out", tmp_path / f"e{i}"]):
            code, out, err = run_cli(capsys, *args)
            assert code in (0, 1, 2), (i, args[0], err[-2000:])
            assert "Traceback" not in err and "\x1b" not in err + out
            if code == 2:
                assert err.startswith("error: "), err
                if args[0] == "inspect":              # a file-reading error names the file
                    assert err.startswith(f"error: {f}: "), err


# ----------------------------------------------------------------------------- 3. sanitizers


def test_sanitizer_flags_catch_undefined_behaviour(tmp_path):
    """The flags test-sanitize and the fuzz harness use do abort on UB (so a clean run means
    something): a shift by 40 and a signed overflow, as found in issue 12."""
    from dtmm.codegen.platform.toolchain import SANITIZE_FLAGS, tool_env

    src = tmp_path / "ub.c"
    src.write_text("#include <stdint.h>\n#include <stdlib.h>\n"
                   "int main(int argc, char **argv) { int32_t s = atoi(argv[1]);"
                   " int32_t x = 1 << s; int32_t y = INT32_MAX - 1 + atoi(argv[2]);"
                   " return (x ^ y) & 1; }\n")
    exe = tmp_path / "ub"
    subprocess.run(["gcc", *SANITIZE_FLAGS, "-O1", str(src), "-o", str(exe)], check=True,
                   env=tool_env())
    ok = subprocess.run([str(exe), "3", "0"], capture_output=True, text=True, env=tool_env())
    assert ok.returncode in (0, 1) and "runtime error" not in ok.stderr
    for args in (["40", "0"], ["3", "5"]):
        bad = subprocess.run([str(exe), *args], capture_output=True, text=True, env=tool_env())
        assert bad.returncode != 0 and "runtime error" in bad.stderr


def test_fuzz_c_stage_reports_sanitizer_findings(tmp_path):
    """A generated model whose requantization shifts were damaged to 40 after planning (the
    planner and the reader refuse such shifts) is caught by the harness's sanitized C
    stage as undefined behaviour, not passed."""
    from dtmm.codegen.emit import project_files
    from dtmm.codegen.plan import plan_model
    from dtmm.fuzz.harness import Result, run_c_batch

    sg = SynthGraph((4, 4, 2), seed=0)
    sg.conv(3, 1)
    g = sg.finish()
    g.ops[0].quant.shift[:] = 40
    with pytest.raises(BuildError, match="shift 40..40 outside"):
        plan_model(g, "host")
    g.ops[0].quant.shift[:] = 1
    plan = plan_model(g, "host")
    files = project_files(plan)
    c = files["model.c"].decode()
    decl = re.search(r"static const int32_t L0_conv2d_shift\[3\][^=]*= \{([^}]*)\}", c)
    files["model.c"] = (c[:decl.start(1)] + "\n    40, 40, 40,\n" + c[decl.end(1):]).encode()
    x = np.zeros((4,) + plan.input.shape, np.int8)
    good = to_tflite_bytes(small_graph())
    gp = plan_model(read_tflite(good), "host")
    gf = project_files(gp)
    from dtmm.runtime.reference import run_reference
    gx = np.random.default_rng(0).integers(-128, 128, (4,) + gp.input.shape).astype(np.int8)
    batch = [Result(0, "bad", "structure", "shift 40", "reference_only",
                    c={"model.c": files["model.c"], "model.h": files["model.h"],
                       "in_bytes": plan.input.nbytes, "out_bytes": plan.output.nbytes,
                       "inputs": x.tobytes(), "expected": bytes(4 * plan.output.nbytes)}),
             Result(1, "good", "structure", "none", "reference_only",
                    c={"model.c": gf["model.c"], "model.h": gf["model.h"],
                       "in_bytes": gp.input.nbytes, "out_bytes": gp.output.nbytes,
                       "inputs": gx.tobytes(),
                       "expected": run_reference(read_tflite(good), gx).tobytes()})]
    run_c_batch(batch, cache_dir() / "fuzz")          # the kernel archive is content-hashed
    assert batch[0].outcome == "sanitizer" and "shift exponent 40" in batch[0].detail
    assert batch[1].outcome == "exact"                     # the batch went on after the finding


# ----------------------------------------------------------------------------- 4. fuzz (small)


def test_small_fuzz_run_has_no_failures(tmp_path):
    """300 mutants (structure-aware and byte-level) of the harness's base files through the
    reader, the reference and the sanitized host C build: no exception, mismatch, hang,
    crash or sanitizer finding. The full run is `make fuzz` (BENCHMARKS.md)."""
    from dtmm.fuzz.harness import FAILURES, fuzz

    results, summary = fuzz(300, seed=2024)
    bad = [(r.index, r.base, r.outcome, r.what, r.detail) for r in results if r.outcome in FAILURES]
    assert not bad, bad[:5]
    c = summary["counts"]
    assert summary["n"] == 300 and c["rejected"] > 30 and c["exact"] > 30
    assert summary["kinds"]["structure"] > 100 and summary["kinds"]["bytes"] > 50


# ----------------------------------------------------------------------------- 5. accepted input


@pytest.mark.parametrize("channels", [2, 5, 17])
def test_npz_data_with_any_channel_count_verifies(tmp_path, capsys, channels):
    g = small_graph(channels)
    f = tmp_path / "m.tflite"
    f.write_bytes(to_tflite_bytes(g))
    rng = np.random.default_rng(channels)
    for layout, x in (("nhwc", rng.integers(0, 256, (30, 8, 8, channels), dtype=np.uint8)),
                      ("nchw", rng.integers(0, 256, (30, channels, 8, 8), dtype=np.uint8))):
        npz = tmp_path / f"{layout}.npz"
        np.savez(npz, x=x, y=np.arange(30) % 10)
        code, out, err = run_cli(capsys, "verify", f, "--backend", "host", "--data", f"npz:{npz}",
                                 "--samples", "6", "--json")
        assert code == 0, err
        assert json.loads(out)["bit_exact"]


def test_npz_layout_rules(tmp_path):
    from dtmm.data.files import load_npz
    from dtmm.errors import DataError

    p = tmp_path / "a.npz"
    np.savez(p, x=np.zeros((2, 6, 6, 6), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match="add an array layout="):
        load_npz(p)
    assert load_npz(p, expect=(6, 6, 6)).input_shape == (6, 6, 6)
    np.savez(p, x=np.zeros((2, 4, 6, 8), np.uint8), y=[0, 1], layout="NHWC")
    assert load_npz(p).input_shape == (8, 4, 6)
    np.savez(p, x=np.zeros((2, 17, 40, 40), np.uint8), y=[0, 1])
    assert load_npz(p).input_shape == (17, 40, 40)


def test_folder_of_npy_samples_with_five_channels(tmp_path):
    from dtmm.data import load_dataset

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            np.save(tmp_path / c / f"{i}.npy", np.full((4, 6, 5), i * 40, np.uint8))
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.input_shape == (5, 4, 6) and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.isclose(ds.x[1].max(), 40 / 255)


def test_maxpool_padding_tflite_cannot_express_is_exported_exactly():
    """PyTorch's MaxPool2d(3, 2, padding=1) (not TFLite SAME on an even input) goes out as
    PADV2(-128) + VALID max pool and back; reference == TFLite Micro == host C."""
    import torch
    import torch.nn as nn

    from dtmm.codegen.backends import build_host_model
    from dtmm.graph.capture import capture
    from dtmm.quant.quantize import quantize_graph
    from dtmm.runtime.reference import run_reference
    from dtmm.tflite.tflm import run_tflm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    qg = quantize_graph(capture(net, (2, 8, 8)),
                        [np.random.default_rng(0).random((16, 8, 8, 2), np.float32)])
    data = to_tflite_bytes(qg)
    codes = [c.builtinCode for c in model_t(data).operatorCodes]
    assert schema.BuiltinOperator.PADV2 in codes
    g = read_tflite(data)
    assert next(o for o in g.ops if o.kind == "max_pool2d").pads == (1, 1, 1, 1)
    x = np.random.default_rng(1).integers(-128, 128, (8, 8, 8, 2)).astype(np.int8)
    want = run_reference(qg, x)
    assert (run_reference(g, x) == want).all()
    assert (run_tflm(data, x) == want).all()
    assert (build_host_model(g)(x) == want).all()


def test_dilation_is_refused_by_the_c_backends_with_a_clear_error(tmp_path, capsys):
    sg = SynthGraph((9, 9, 2), seed=0)
    sg.conv(3, 3, dilation=2)
    f = tmp_path / "dil.tflite"
    f.write_bytes(to_tflite_bytes(sg.finish()))
    code, _, err = run_cli(capsys, "export", f, "--out", tmp_path / "o")
    assert code == 2 and "dilation (2, 2)" in err and "reference and TFLite Micro" in err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- 6. user data


def test_reexport_keeps_the_users_files(tmp_path, capsys, base_file):
    f = tmp_path / "m.tflite"
    f.write_bytes(base_file)
    out = tmp_path / "proj"
    assert run_cli(capsys, "export", f, "--out", out)[0] == 0
    (out / "app.c").write_text("int app(void) { return 42; }\n")
    (out / "dtmm_input.bin").write_bytes(b"\x05" * 64)
    assert run_cli(capsys, "export", f, "--target", "cortex-m4", "--out", out)[0] == 0
    assert (out / "app.c").read_text() == "int app(void) { return 42; }\n"
    assert (out / "dtmm_input.bin").read_bytes() == b"\x05" * 64
    assert (out / "platform" / "link.ld").is_file()                 # now a Cortex-M project
    assert not (out / "platform" / "dtmm_platform_host.c").exists()  # the host file is gone
    (out / "Makefile").write_text("# my own\n")
    code, _, err = run_cli(capsys, "export", f, "--out", out)
    assert code == 2 and "Makefile: it changed since dtmm wrote it" in err
    assert (out / "Makefile").read_text() == "# my own\n"


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_outputs_respect_the_umask(tmp_path, capsys, base_file, mask):
    f = tmp_path / "m.tflite"
    f.write_bytes(base_file)
    old = os.umask(mask)
    try:
        out = tmp_path / "new" / "proj"
        assert run_cli(capsys, "export", f, "--out", out)[0] == 0
    finally:
        os.umask(old)
    for p in [out, out.parent, out / "kernels"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o777 & ~mask, p
    for p in [out / "model.c", out / "Makefile", out / ".dtmm-manifest.json"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, p


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    """A bad --out is reported first, even when the data / checkpoint / model are bad too
    (so nothing long ran before the check)."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, want in ((a_file, "exists and is not a folder"),
                      (a_file / "sub", "cannot be created")):
        for args in (["train", "--model", "resnet8", "--data", "npz:/nonexistent.npz", "--out", out],
                     ["quantize", "--checkpoint", "/nonexistent.pt", "--data", "digits", "--out", out],
                     ["prune", "--checkpoint", "/nonexistent.pt", "--data", "digits", "--granularity",
                      "filterlet", "--ratio", "0.5", "--out", out],
                     ["export", "/nonexistent.tflite", "--out", out],
                     ["plan", "--checkpoint", "/nonexistent.pt", "--data", "digits", "--out",
                      out / "plan.json"],
                     ["calibrate", "--target", "cortex-m4", "--out", out / "c.json"]):
            code, _, err = run_cli(capsys, *args)
            assert code == 2 and str(out) in err, (args[0], err)
            assert want in err or "cannot be created" in err, (args[0], err)
    for args in (["plan", "--checkpoint", "/nonexistent.pt", "--data", "digits", "--out", a_file],
                 ["calibrate", "--target", "cortex-m4", "--out", a_file]):
        code, _, err = run_cli(capsys, *args)                # a user's file as the output file
        assert code == 2 and f"refusing to overwrite {a_file}: dtmm did not write it" in err
    assert a_file.read_text() == "x"


def test_output_name_taken_by_a_users_file_is_refused_before_work(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "model_int8.tflite").write_bytes(b"my own model")
    code, _, err = run_cli(capsys, "quantize", "--checkpoint", "/nonexistent.pt", "--data",
                           "digits", "--out", out)
    assert code == 2 and "model_int8.tflite: dtmm did not write it" in err
    assert (out / "model_int8.tflite").read_bytes() == b"my own model"


@pytest.mark.parametrize("ratio", ["1.0", "1.5", "-0.1"])
def test_ratio_that_removes_everything_is_refused(tmp_path, capsys, ratio):
    code, _, err = run_cli(capsys, "prune", "--checkpoint", "/nonexistent.pt", "--data", "digits",
                           "--granularity", "filter", "--ratio", ratio, "--out", tmp_path / "o")
    assert code == 2 and f"--ratio {float(ratio)}" in err and "[0, 1)" in err


def test_file_errors_name_the_file_and_what_was_expected(tmp_path, capsys):
    import torch
    import torch.nn as nn

    whole = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3)), whole)
    code, _, err = run_cli(capsys, "quantize", "--checkpoint", whole, "--data", "digits", "--out",
                           tmp_path / "q")
    assert code == 2 and str(whole) in err and "whole nn.Module" in err
    assert "expected a dtmm checkpoint" in err and "\x1b" not in err

    rnd = tmp_path / "random.tflite"
    rnd.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    code, _, err = run_cli(capsys, "inspect", rnd)
    assert code == 2 and str(rnd) in err and "not a .tflite file" in err

    code, _, err = run_cli(capsys, "verify", tmp_path, "--data", "digits")
    assert code == 2 and str(tmp_path) in err and "is a folder" in err and ".tflite" in err
    code, _, err = run_cli(capsys, "quantize", "--checkpoint", tmp_path, "--data", "digits",
                           "--out", tmp_path / "q")
    assert code == 2 and "is a folder" in err


def test_terminal_codes_from_a_file_never_reach_the_terminal(tmp_path, capsys, base_file):
    m = model_t(base_file)
    m.subgraphs[0].tensors[0].name = "\x1b[31mred\x1b]0;pwned\x07"
    f = tmp_path / "m.tflite"
    f.write_bytes(pack(m))
    code, out, err = run_cli(capsys, "inspect", f)
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    m.subgraphs[0].tensors[0].quantization.zeroPoint = np.asarray([999], np.int64)
    f.write_bytes(pack(m))
    code, out, err = run_cli(capsys, "inspect", f)
    assert code == 2 and "zero_point[0] = 999" in err and "\x1b" not in err and "\x07" not in err


def test_damaged_checkpoints_and_datasets_only_raise_dtmm_errors(tmp_path):
    """Byte-level damage to a real checkpoint and a real .npz: each load succeeds or raises
    a DtmmError (ModelFileError / DataError) naming the file, never another exception."""
    import torch

    from dtmm.data.files import load_npz
    from dtmm.errors import DtmmError
    from dtmm.train import load_checkpoint, save_checkpoint
    from dtmm.zoo import build_model

    ck = save_checkpoint(tmp_path / "c.pt", build_model("dscnn", (1, 8, 8), 4, seed=0),
                         model_name="dscnn", input_shape=(1, 8, 8), num_classes=4)
    npz = tmp_path / "d.npz"
    np.savez_compressed(npz, x=np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8),
                        y=np.arange(6) % 3)
    rng = np.random.default_rng(0)
    for path, load in ((ck, load_checkpoint), (npz, load_npz)):
        good = path.read_bytes()
        for trial in range(30):
            data = bytearray(good)
            if trial % 3 == 0:
                data = data[:int(rng.integers(1, len(data)))]
            else:
                for p in rng.integers(0, len(data), int(rng.integers(1, 20))):
                    data[int(p)] = int(rng.integers(256))
            bad = tmp_path / f"bad{trial}{path.suffix}"
            bad.write_bytes(bytes(data))
            try:
                load(bad)
            except DtmmError as e:
                assert str(bad) in str(e), str(e)
    meta = torch.load(ck, weights_only=True)
    meta["input_shape"] = [1, 10 ** 6, 10 ** 6]
    torch.save(meta, tmp_path / "huge.pt")
    with pytest.raises(ModelFileError, match=r"input_shape .* sizes in \[1, 4096\]"):
        load_checkpoint(tmp_path / "huge.pt")
