"""``dtmm export``: the self-contained C project of a ``.tflite`` for a target."""
from __future__ import annotations

from dtmm.errors import DtmmError
from dtmm.pipeline.modelfiles import read_model
from dtmm.util.files import check_output_path

EXPORT_TARGETS = ("host", "cortex-m4", "cortex-m7", "cortex-m55")


def export_command(*, model: str, target: str, out: str) -> dict:
    """Write the self-contained C project of the int8 ``.tflite`` ``model`` for ``target``.

    ``out`` gets ``model.h``/``model.c``, ``main.c``, a ``Makefile`` and the kernels and
    platform support files it needs (see :mod:`dtmm.codegen.emit`); it is written to a
    temporary directory and renamed into place.
    """
    from dtmm.codegen.emit import project_files, write_project
    from dtmm.codegen.plan import plan_model

    if target not in EXPORT_TARGETS:
        raise DtmmError(f"unknown target {target!r}; known: {', '.join(EXPORT_TARGETS)}")
    check_output_path(out)
    qg, _ = read_model(model)
    plan = plan_model(qg, target)
    files = project_files(plan)
    check_output_path(out, names=list(files))
    dest = write_project(plan, out, files=files)
    return {"out": str(dest), "target": plan.target, "isa": plan.arena.isa,
            "ops": len(plan.steps), "arena_bytes": plan.arena.size,
            "arena_lower_bound_bytes": plan.arena.peak_live, "const_bytes": plan.const_bytes,
            "files": sorted(files)}

