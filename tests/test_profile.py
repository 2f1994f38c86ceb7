"""Per-op instruction profile of a generated model under QEMU (``-DDTMM_PROFILE``)."""
from dtmm.codegen.backends import build_firmware, run_firmware
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph

from _helpers import assert_bytes_equal, needs_qemu


def _graph():
    sg = SynthGraph((8, 8, 3), seed=3)
    a = sg.conv(8, 3, pads="same", activation="relu")
    b = sg.conv(8, 3, pads="same", x=a)
    sg.add(a, b, activation="relu")
    sg.max_pool(2)
    sg.reshape((4 * 4 * 8,))
    sg.fc(5)
    return sg, sg.finish()


@needs_qemu
def test_profile_counts_every_op_and_keeps_outputs():
    sg, g = _graph()
    x = sg.random_input(3)
    plain = run_firmware(build_firmware(g, "cortex-m55"), x)
    prof_fw = build_firmware(g, "cortex-m55", profile=True)
    prof = run_firmware(prof_fw, x)
    assert_bytes_equal(prof.outputs, run_reference(g, x))
    assert_bytes_equal(plain.outputs, prof.outputs)
    assert plain.op_instructions is None
    assert len(prof.op_instructions) == 3
    kinds = [s.op_kind for s in prof_fw.plan.steps]
    for row, total in zip(prof.op_instructions, plain.instructions):
        assert len(row) == len(g.ops)
        for k, c in zip(kinds, row):
            assert (c == 0) == (k == "reshape"), (k, c)
        # the ops are the whole inference but for dtmm_model_invoke's input/output copies
        assert 0 < total - sum(row) < 2000
    # the same inputs give the same counts (QEMU counts repeat exactly)
    again = run_firmware(prof_fw, x)
    assert again.op_instructions == prof.op_instructions


def test_profile_needs_a_qemu_backend(tmp_path, capsys):
    from dtmm.cli import main
    from dtmm.tflite.export import to_tflite_bytes

    sg = SynthGraph((28, 28, 1), seed=0)
    sg.conv(4, 3, pads="same")
    sg.reshape((28 * 28 * 4,))
    sg.fc(10)
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite_bytes(sg.finish()))
    rc = main(["verify", str(path), "--backend", "host", "--data", "mnist5k", "--samples", "2",
               "--profile"])
    assert rc == 2
    assert "--profile needs a QEMU backend" in capsys.readouterr().err
