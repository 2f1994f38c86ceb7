"""``dtmm export``: the self-contained C project of a ``.tflite`` for a target."""
from __future__ import annotations

from dtmm.errors import DtmmError
from dtmm.pipeline.modelfiles import read_model
from dtmm.util.files import check_output_path

EXPORT_TARGETS = ("host", "cortex-m4", "cortex-m7", "cortex-m55")


def export_command(*, model: str, target: str | None = None, out: str,
                   board: str | None = None) -> dict:
    """Write the self-contained C project of the int8 ``.tflite`` ``model`` for ``target``.

    ``out`` gets ``model.h``/``model.c``, ``main.c``, a ``Makefile``, a ``README.md`` and the
    kernels and platform support files it needs (see :mod:`dtmm.codegen.emit`); it is
    written to a temporary directory and renamed into place.

    ``board`` (see ``dtmm boards``) sets the target to the board's core and links against
    the board's flash and SRAM: the firmware is linked first (when arm-none-eabi-gcc is
    installed) and a model that does not fit raises
    :class:`~dtmm.codegen.platform.RegionOverflowError` naming the region and the overflow,
    before anything is written.
    """
    from dtmm.codegen.emit import project_files, write_project
    from dtmm.codegen.plan import plan_model
    from dtmm.codegen.platform.boards import resolve_target

    if target is not None and target not in EXPORT_TARGETS:
        raise DtmmError(f"unknown target {target!r}; known: {', '.join(EXPORT_TARGETS)}")
    spec = resolve_target(target, board, "host")
    check_output_path(out)
    qg, _ = read_model(model)
    plan = plan_model(qg, spec)
    files = project_files(plan)
    check_output_path(out, names=list(files))
    fit = _check_fit(qg, spec) if spec.board else None
    dest = write_project(plan, out, files=files)
    res = {"out": str(dest), "target": plan.target, "isa": plan.arena.isa,
           "ops": len(plan.steps), "arena_bytes": plan.arena.size,
           "arena_lower_bound_bytes": plan.arena.peak_live, "const_bytes": plan.const_bytes,
           "files": sorted(files)}
    if spec.board:
        res["board"] = {"name": spec.board, **fit}
    return res


def _check_fit(qg, spec) -> dict:
    """Link the firmware for a board's target (raises RegionOverflowError when it does not fit)."""
    from dtmm.codegen.backends import build_firmware
    from dtmm.codegen.platform import size, toolchain_available

    why = toolchain_available(spec)
    if why is not None:
        return {"fit_checked": False,
                "note": f"{why}: the fit is checked when the project is built (make)"}
    fw = build_firmware(qg, spec)
    flash, ram = size(fw.artifact)
    return {"fit_checked": True, "flash_bytes": flash, "ram_bytes": ram - fw.harness_ram_bytes,
            "flash_region_bytes": sum(r.size for r in spec.regions if r.role == "code"),
            "ram_region_bytes": sum(r.size for r in spec.regions if r.role == "ram")}
