"""A channel concat of vectors runs without a copy: the arena places its inputs side by
side inside the output's buffer and the C model emits no code for it; bit-exact with the
reference on the host and on QEMU. A concat of images (more than one pixel) stays a copy."""
import numpy as np
import pytest

from dtmm.codegen import backends
from dtmm.codegen.arena import concat_in_place, plan_arena
from dtmm.codegen.plan import AliasCall, ConcatCall, plan_model
from dtmm.formats import footprint
from dtmm.runtime.reference import run_reference
from dtmm.runtime.synth import SynthGraph

from _helpers import needs_qemu


def _vectors():
    sg = SynthGraph((4, 4, 3), seed=0)
    a = sg.fc(8, x=sg.reshape((48,)))
    b = sg.fc(6, x=sg.reshape((48,), x="input"))
    sg.set_qparams(b, sg.g.tensors[a].qparams)
    c = sg.concat([a, b])
    _ = sg.fc(5, x=c)
    return sg, sg.finish(), (a, b, c)


def _images():
    sg = SynthGraph((4, 4, 3), seed=0)
    a = sg.conv(4, 1)
    b = sg.conv(2, 1, x="input")
    sg.set_qparams(b, sg.g.tensors[a].qparams)
    _ = sg.concat([a, b])
    return sg, sg.finish()


def test_vectors_are_placed_side_by_side_and_no_code_is_emitted():
    sg, g, (a, b, c) = _vectors()
    op = next(o for o in g.ops if o.kind == "concat")
    assert concat_in_place(g, op)
    for target in ("host", "cortex-m55"):
        ar = plan_arena(g, target)
        assert ar.offsets[a] == ar.offsets[c] and ar.offsets[b] == ar.offsets[c] + 8
        plan = plan_model(g, target)
        step = next(s for s in plan.steps if s.op_kind == "concat")
        assert isinstance(step.call, AliasCall)
        assert plan.const_bytes == footprint.graph_bytes(g, plan.target_info.pointer_bytes).total
    x = sg.random_input(4)
    assert np.array_equal(backends.build_host_model(g)(x), run_reference(g, x))


def test_images_stay_a_copy():
    sg, g = _images()
    op = next(o for o in g.ops if o.kind == "concat")
    assert not concat_in_place(g, op)
    plan = plan_model(g, "host")
    assert isinstance(next(s for s in plan.steps if s.op_kind == "concat").call, ConcatCall)
    x = sg.random_input(2)
    assert np.array_equal(backends.build_host_model(g)(x), run_reference(g, x))


@needs_qemu
@pytest.mark.qemu
def test_in_place_concat_on_qemu():
    sg, g, _ = _vectors()
    x = sg.random_input(2)
    res = backends.run_firmware(backends.build_firmware(g, "cortex-m55"), x)
    assert np.array_equal(res.outputs, run_reference(g, x))
