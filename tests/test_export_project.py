"""The exported C project as a product: its README, its main.c (predicted classes, any
number of inputs) and real boards (``--board``: linked against the chip's flash / SRAM)."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from dtmm.cli import main
from dtmm.codegen.plan import plan_model
from dtmm.codegen.platform import RegionOverflowError, get_target, parse_hex
from dtmm.codegen.platform.boards import BOARDS, get_board
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph
from dtmm.tflite.export import to_tflite_bytes
from dtmm.tflite.reader import read_tflite

from _helpers import needs_qemu  # noqa: E402

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _classifier():
    """A tiny int8 classifier: 8x8x3 input, conv + fc, 10 classes (predictions vary by input)."""
    sg = SynthGraph((8, 8, 3), seed=3)
    sg.conv(8, 3, pads="same", activation="relu")
    sg.reshape((8 * 8 * 8,))
    sg.fc(10)
    return sg, sg.finish()


def _fat():
    """About 640 KiB of fc weights: more than the STM32F446RE's 512 KiB of flash."""
    sg = SynthGraph((16, 16, 8), seed=1)
    sg.conv(32, 3, pads="same")
    sg.reshape((16 * 16 * 32,))
    sg.fc(80)
    return sg, sg.finish()


def _tflite(tmp_path, g, name="m.tflite"):
    p = tmp_path / name
    p.write_bytes(to_tflite_bytes(g))
    return p


def _classes(stdout: str) -> dict[int, int]:
    return {int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"^DTMM_CLASS y(\d+) (\d+) -?\d+$", stdout, re.M)}


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@needs_qemu
@needs_make
def test_exported_m55_project_runs_20_inputs_and_predicts_the_reference_classes(tmp_path, capsys):
    sg, g = _classifier()
    model = _tflite(tmp_path, g)
    code, _, err = _cli(capsys, "export", model, "--target", "cortex-m55", "--out", tmp_path / "p")
    assert code == 0, err
    proj = tmp_path / "p"
    assert subprocess.run(["make", "-s"], cwd=proj, capture_output=True, text=True).returncode == 0
    x = sg.random_input(20, seed=1)                     # more than the old cap of 16
    (proj / "dtmm_input.bin").write_bytes(x.tobytes())
    run = subprocess.run(["make", "-s", "run"], cwd=proj, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    want = run_reference(read_tflite(model.read_bytes()), x)
    got = _classes(run.stdout)
    assert sorted(got) == list(range(20))
    assert [got[i] for i in range(20)] == want.reshape(20, -1).argmax(-1).tolist()
    assert len(set(got.values())) > 1                   # the inputs are told apart
    for i in (0, 19):                                   # the raw lines are still there
        np.testing.assert_array_equal(parse_hex(run.stdout, f"y{i}", np.int8), want[i])


@needs_make
def test_host_demo_streams_inputs_and_refuses_a_partial_one(tmp_path, capsys):
    sg, g = _classifier()
    code, _, err = _cli(capsys, "export", _tflite(tmp_path, g), "--out", tmp_path / "h")
    assert code == 0, err
    proj = tmp_path / "h"
    assert subprocess.run(["make", "-s"], cwd=proj, capture_output=True, text=True).returncode == 0
    run = subprocess.run(["./model_demo"], cwd=proj, capture_output=True, text=True)
    assert run.returncode == 0 and sorted(_classes(run.stdout)) == [0]      # no input: one run on zeros
    x = sg.random_input(40, seed=2)
    (proj / "dtmm_input.bin").write_bytes(x.tobytes())
    run = subprocess.run(["./model_demo"], cwd=proj, capture_output=True, text=True)
    assert run.returncode == 0
    got = _classes(run.stdout)
    assert [got[i] for i in range(40)] == run_reference(g, x).reshape(40, -1).argmax(-1).tolist()
    (proj / "dtmm_input.bin").write_bytes(x[:3].tobytes() + x[3].tobytes()[:50])
    run = subprocess.run(["./model_demo"], cwd=proj, capture_output=True, text=True)
    assert run.returncode == 5 and "DTMM_INPUT_ERROR input 3 has 50 of 192 bytes" in run.stdout
    assert sorted(_classes(run.stdout)) == [0, 1, 2]


def test_readme_states_the_plans_numbers(tmp_path, capsys):
    _, g = _classifier()
    model = _tflite(tmp_path, g)
    code, out, err = _cli(capsys, "export", model, "--target", "cortex-m55", "--out", tmp_path / "p")
    assert code == 0, err
    text = (tmp_path / "p" / "README.md").read_text()
    plan = plan_model(read_tflite(model.read_bytes()), "cortex-m55")

    def number(label):
        m = re.search(re.escape(label) + r"`\) \| (\d+) \|", text)
        assert m, f"{label} not in README"
        return int(m.group(1))

    assert number("DTMM_MODEL_ARENA_BYTES") == plan.arena.size
    assert number("DTMM_MODEL_CONST_BYTES") == plan.const_bytes
    assert "int8, shape 8x8x3 (NHWC" in text and f"{plan.input.nbytes} bytes" in text
    assert f"scale {plan.input_scale!r}, zero point {plan.input_zero_point}" in text
    assert f"scale {plan.output_scale!r}, zero point {plan.output_zero_point}" in text
    assert "10 classes" in text and "arm-none-eabi-gcc" in text and "dtmm_model_invoke" in text
    assert "stack reserved by `platform/link.ld` | 16384 |" in text


@needs_qemu
def test_board_refuses_a_model_that_does_not_fit_naming_region_and_overflow(tmp_path, capsys):
    from dtmm.codegen.backends import build_firmware

    _, g = _fat()
    model = _tflite(tmp_path, g)
    plan = plan_model(g, "cortex-m4")
    assert plan.const_bytes > 512 * 1024
    code, out, err = _cli(capsys, "export", model, "--board", "nucleo-f446re", "--out", tmp_path / "p")
    assert code == 2 and not (tmp_path / "p").exists()
    m = re.search(r"does not fit nucleo-f446re \(cortex-m4\): region CODE \(512 KiB at 0x00000000, "
                  r"code: STM32F446RE flash\) overflowed by (\d+) bytes", err)
    assert m, err
    assert int(m.group(1)) >= plan.const_bytes - 512 * 1024
    # the same model links for the emulator's 4 MiB map: the board is what refuses it
    assert build_firmware(g, "cortex-m4").artifact.path.is_file()
    # verify's QEMU backend with the board refuses it too, before running anything
    from dtmm.pipeline.verify import _run_codegen_backend
    with pytest.raises(RegionOverflowError) as e:
        _run_codegen_backend(g, "qemu-m4", np.zeros((1, 16, 16, 8), np.int8), board="nucleo-f446re")
    assert e.value.region == "CODE" and e.value.overflow_bytes == int(m.group(1))


@needs_qemu
@needs_make
def test_a_model_that_fits_builds_and_runs_for_the_board(tmp_path, capsys):
    sg, g = _classifier()
    code, out, err = _cli(capsys, "export", _tflite(tmp_path, g), "--board", "nucleo-f446re",
                          "--out", tmp_path / "p")
    assert code == 0, err
    import json
    res = json.loads(out)
    assert res["target"] == "cortex-m4" and res["board"]["fit_checked"] is True
    assert 0 < res["board"]["flash_bytes"] <= 512 * 1024 and res["board"]["ram_bytes"] > 0
    proj = tmp_path / "p"
    ld = (proj / "platform" / "link.ld").read_text()
    assert "CODE (rx) : ORIGIN = 0x00000000, LENGTH = 0x80000" in ld
    assert "RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 0x20000" in ld
    assert "nucleo-f446re" in (proj / "README.md").read_text()
    assert subprocess.run(["make", "-s"], cwd=proj, capture_output=True, text=True).returncode == 0
    x = sg.random_input(3, seed=5)
    (proj / "dtmm_input.bin").write_bytes(x.tobytes())
    run = subprocess.run(["make", "-s", "run"], cwd=proj, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    got = _classes(run.stdout)
    assert [got[i] for i in range(3)] == run_reference(g, x).reshape(3, -1).argmax(-1).tolist()
    # verify's QEMU backend links and runs it for the board as well
    from dtmm.pipeline.verify import _run_codegen_backend
    outs, extra = _run_codegen_backend(g, "qemu-m4", x, board="nucleo-f446re")
    np.testing.assert_array_equal(outs, run_reference(g, x))
    assert extra["board"] == "nucleo-f446re" and extra["flash_bytes"] == res["board"]["flash_bytes"]


def test_target_without_board_notes_the_emulator_map_and_board_checks(tmp_path, capsys):
    _, g = _classifier()
    model = _tflite(tmp_path, g)
    code, _, err = _cli(capsys, "export", model, "--target", "cortex-m4", "--out", tmp_path / "a")
    assert code == 0 and "4 MiB" in err and "--board" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "export", model, "--target", "cortex-m55", "--out", tmp_path / "b")
    assert code == 0 and "4 MiB" not in err
    code, _, err = _cli(capsys, "export", model, "--board", "nucleo-f446re", "--target", "cortex-m7",
                        "--out", tmp_path / "c")
    assert code == 2 and "nucleo-f446re is a cortex-m4 board" in err and not (tmp_path / "c").exists()
    code, _, err = _cli(capsys, "export", model, "--board", "arduino-uno", "--out", tmp_path / "d")
    assert code == 2 and "unknown board 'arduino-uno'" in err and "nucleo-f446re" in err
    code, _, err = _cli(capsys, "verify", model, "--backend", "qemu-m55", "--board", "nucleo-f446re",
                        "--data", "digits")
    assert code == 2 and "use --backend qemu-m4" in err
    code, _, err = _cli(capsys, "compress", "--model", "resnet8", "--data", "digits", "--board",
                        "nucleo-f746zg", "--target", "cortex-m4", "--out", tmp_path / "e")
    assert code == 2 and "nucleo-f746zg is a cortex-m7 board" in err and not (tmp_path / "e").exists()


def test_board_table_and_compress_budgets(capsys):
    from dtmm.errors import DtmmError
    from dtmm.pipeline.compress import CompressConfig, _budgets, _check_config

    code, out, _ = _cli(capsys, "boards")
    assert code == 0
    for name in ("nucleo-f446re", "nucleo-f746zg", "mps3-an547"):
        assert name in out
    assert re.search(r"nucleo-f446re\s+STM32F446RE\s+cortex-m4\s+512 KiB\s+128 KiB", out)
    for b in BOARDS.values():                          # every board fits the emulator's map
        t = b.target()
        assert t.name == b.core and t.qemu_machine == get_target(b.core).qemu_machine
    b = _budgets(CompressConfig(target="cortex-m4", board="nucleo-f446re"))
    assert (b.flash, b.ram) == (512 * 1024, 128 * 1024)
    b = _budgets(CompressConfig(target="cortex-m4", board="nucleo-f446re", ram="100KB"))
    assert (b.flash, b.ram) == (512 * 1024, 100 * 1024)
    _check_config(CompressConfig(target="cortex-m7", board="nucleo-f746zg"))     # a budget enough
    with pytest.raises(DtmmError, match="is a cortex-m4 board"):
        _check_config(CompressConfig(target="cortex-m55", board="nucleo-f446re"))
    assert get_board("NUCLEO-F446RE").flash_bytes == 512 * 1024
